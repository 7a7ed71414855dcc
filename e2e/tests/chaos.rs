//! Chaos tests (issue 13, "no event lost whatever the network does"): clients reach the
//! duplex server through `duplex_e2e::ChaosProxy`, which delays every chunk and cuts
//! connections (FIN or RST, young and old ones) at random, while a publisher connected
//! directly broadcasts numbered news; every client must get every item exactly once, in
//! order, thanks to reconnection and connection state recovery.
//!
//! - `official_client_*`: 50 official `socket.io-client` 4 clients in Node
//!   (`interop/chaos-clients.mjs`, the library's default options or WebSocket only, with
//!   a shorter connection attempt timeout: see [`CLIENT_CONNECT_TIMEOUT`]);
//! - `native_client_under_chaos`: 50 `duplex-native` clients, half polling-then-upgrade,
//!   half WebSocket only (`tests/chaos/native.rs`);
//! - `cluster_*`: the same against three duplex servers on one Redis
//!   (`duplex_e2e::RedisServer`), the proxy sending each connection to one of them at
//!   random, so that a client reconnects to any server and recovers there what it
//!   missed (issue 15); WebSocket only, since long-polling needs a sticky balancer.
//!   The publisher is connected to the first server.
//! - `oversized_messages_close_1009_with_reason`: official clients sending 2 MB and 8 MB
//!   over WebSocket (three rounds of both) are closed with 1009 and a reason while a
//!   bystander keeps doing round trips (`interop/oversized.mjs`; no proxy).
//!
//! The server runs with connection state recovery and short heartbeats ([`HEARTBEAT`]).
//! A test connects its clients (the proxy already cutting), publishes 1000 items 2 to
//! 5 ms apart, keeps cutting for 2 s more and until there were at least [`MIN_CUTS`], then
//! only delays while the clients settle; all within [`EXCHANGE_TIMEOUT`]. The phases of
//! the cuts, and running the Node scripts while reading their output, are the library's
//! (`duplex_e2e::chaos::script`, which the bench's chaos section uses too).
//!
//! Every run is seeded: `DUPLEX_CHAOS_SEED=<u64>` replays a seed (as closely as the
//! scheduler allows), otherwise one is drawn; it is printed, and a failure names it.
//! `DUPLEX_CHAOS_RECOVERY=off` runs the server without connection state recovery, to see
//! the harness catch the losses. They need Node.js and `npm ci` in `interop/`, no bundle:
//!
//! ```text
//! cargo test -p duplex-e2e --test chaos -- --nocapture
//! ```

// The native clients live next to this file, not as a test target of their own.
#[path = "chaos/native.rs"]
mod native;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use duplex_e2e::chaos::script::{self, CutPhases, Event, Script, ScriptOutcome, Stopped};
use duplex_e2e::chaos::seed_from_env;
use duplex_e2e::{ChaosConfig, ChaosProxy, RedisServer, TestServer};
use duplex_server::socketio::RecoveryConfig;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// Clients behind the proxy, in each test.
const CLIENTS: usize = 50;
/// News items published, in each test.
const ITEMS: usize = 1000;
/// Cuts each test must have seen.
const MIN_CUTS: u64 = 100;
/// The proxy's budget: enough that it does not run out before the publishing ends (the
/// test stops the cuts itself: once everything is published, cuts go on for at least 2 s
/// and until there were [`MIN_CUTS`], at most 10 s, see [`CutPhases`]; then the proxy
/// only delays, and the clients settle).
const MAX_CUTS: u64 = 2000;
/// The whole exchange — connecting, publishing, settling — within this (the Node
/// script's own `--timeout-ms`).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(40);
/// A script still running this long after it started is killed.
const SCRIPT_LIMIT: Duration = Duration::from_secs(50);
/// The server's `pingInterval` and `pingTimeout`, shorter than the default 25 s + 20 s:
/// the official client (engine.io-client 6) stalls when its upgrade probe is cut after
/// the server answered it — polling stays paused and nothing resumes it — until its
/// heartbeat times out after `pingInterval + pingTimeout`; it then reconnects and
/// recovers. With the defaults that wait alone would outlast the test.
const HEARTBEAT: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(5));
/// The official client's `timeout` option (how long a connection attempt may take;
/// 20 s by default, the one option the official-client tests change): engine.io-client's
/// manager, while opening, does not listen for the engine's `close`, so an attempt whose
/// WebSocket is cut between the upgrade response and the Engine.IO open packet waits
/// that long before it tries again.
const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The native clients' `connect_timeout`: how long `connect` (with its retries), and then
/// each reconnection attempt's transport, may take.
const NATIVE_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How many of a failing script's `FAIL` lines go into the test's error.
const FAIL_LINES: usize = 80;

#[test]
fn official_client_default_options_under_chaos() -> Result<()> {
    official_client_under_chaos("official_client_default_options_under_chaos", false)
}

#[test]
fn official_client_websocket_only_under_chaos() -> Result<()> {
    official_client_under_chaos("official_client_websocket_only_under_chaos", true)
}

#[test]
fn native_client_under_chaos() -> Result<()> {
    let chaos = Chaos::start("native_client_under_chaos")?;
    chaos.outcome(|chaos| {
        let summary = chaos.rt.block_on(native::native_clients(chaos))?;
        chaos.expect_cuts()?;
        println!("summary {summary}");
        Ok(())
    })
}

#[test]
fn cluster_official_client_websocket_only_under_chaos() -> Result<()> {
    let chaos = Chaos::start_cluster("cluster_official_client_websocket_only_under_chaos")?;
    official_clients(chaos, true)
}

#[test]
fn cluster_native_client_under_chaos() -> Result<()> {
    let chaos = Chaos::start_cluster("cluster_native_client_under_chaos")?;
    chaos.outcome(|chaos| {
        let summary = chaos.rt.block_on(native::native_clients(chaos))?;
        chaos.expect_cuts()?;
        println!("summary {summary}");
        Ok(())
    })
}

#[test]
fn oversized_messages_close_1009_with_reason() -> Result<()> {
    let chaos = Chaos::start("oversized_messages_close_1009_with_reason")?;
    println!("(no proxy and no randomness in this test: the seed is printed for uniformity only)");
    chaos.outcome(|chaos| {
        let url = format!("http://{}", chaos.server.addr());
        let outcome = run_script(
            chaos,
            "oversized.mjs",
            &[
                url,
                "--rounds".into(),
                "3".into(),
                "--timeout-ms".into(),
                "20000".into(),
            ],
            None,
        )?;
        let summary = outcome.summary.clone().unwrap_or(Value::Null);
        let mut problems = Vec::new();
        for client in summary["clients"].as_array().into_iter().flatten() {
            let size = &client["size"];
            if client["code"] != json!(1009) {
                problems.push(format!(
                    "the {size} B client's close code is {}, expected 1009 ({})",
                    client["code"], client["reason"]
                ));
            }
            if client["closeReason"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
            {
                problems.push(format!("the {size} B client's close has no reason"));
            }
        }
        if summary["bystander"]["failedRoundTrips"] != json!(0)
            || summary["bystander"]["disconnects"] != json!(0)
        {
            problems.push(format!(
                "the bystander was disturbed: {}",
                summary["bystander"]
            ));
        }
        if !outcome.success() || summary["ok"] != json!(true) || !problems.is_empty() {
            bail!(
                "oversized messages: {}\n{}\nsummary: {summary}\nexit: {}",
                problems.join("; "),
                failures(&outcome),
                outcome.exit()
            );
        }
        Ok(())
    })
}

fn official_client_under_chaos(name: &str, websocket_only: bool) -> Result<()> {
    official_clients(Chaos::start(name)?, websocket_only)
}

fn official_clients(chaos: Chaos, websocket_only: bool) -> Result<()> {
    chaos.outcome(|chaos| {
        let mut args = vec![
            chaos.proxy.url(),
            format!("http://{}", chaos.server.addr()),
            "--clients".into(),
            CLIENTS.to_string(),
            "--items".into(),
            ITEMS.to_string(),
            "--seed".into(),
            chaos.seed.to_string(),
            "--timeout-ms".into(),
            EXCHANGE_TIMEOUT.as_millis().to_string(),
            "--connect-timeout-ms".into(),
            CLIENT_CONNECT_TIMEOUT.as_millis().to_string(),
        ];
        if websocket_only {
            args.push("--websocket-only".into());
        }
        let outcome = run_script(chaos, "chaos-clients.mjs", &args, Some(&chaos.proxy))?;
        let summary = outcome.summary.clone().unwrap_or(Value::Null);
        if !outcome.success() || summary["ok"] != json!(true) {
            bail!(
                "not every client got every item exactly once in order: {} missing, {} \
                 duplicated, {} out of order over {} clients ({} failing)\n{}\nsummary: \
                 {summary}\nproxy: {}\nexit: {}",
                summary["missing"],
                summary["duplicated"],
                summary["reordered"],
                summary["clients"],
                summary["failingClients"],
                failures(&outcome),
                chaos.proxy.stats(),
                outcome.exit()
            );
        }
        chaos.expect_cuts()
    })
}

/// The server, the proxy in front of it and the runtime the proxy (and the native
/// clients) run on. Fields drop in order: the proxy's tasks are aborted, the runtime
/// shuts down, the server stops, then the next test may start.
struct Chaos {
    name: String,
    seed: u64,
    started: Instant,
    proxy: ChaosProxy,
    rt: Runtime,
    server: TestServer,
    /// The cluster's other servers (none for a single server).
    others: Vec<TestServer>,
    /// The cluster's Redis, stopped after the servers.
    _redis: Option<RedisServer>,
    _alone: MutexGuard<'static, ()>,
}

/// Held by the running test: these tests run one at a time (each loads the machine
/// with 50 clients, and its timings are part of what it checks).
static ALONE: Mutex<()> = Mutex::new(());

impl Chaos {
    fn start(name: &str) -> Result<Chaos> {
        Chaos::start_servers(name, 1)
    }

    /// Three servers on one Redis, behind a proxy that spreads connections.
    fn start_cluster(name: &str) -> Result<Chaos> {
        Chaos::start_servers(name, 3)
    }

    fn start_servers(name: &str, servers: usize) -> Result<Chaos> {
        // A test that failed (panicked) while holding it does not concern the next.
        let alone = ALONE.lock().unwrap_or_else(PoisonError::into_inner);
        let seed = seed_from_env()?;
        println!("{name}: seed {seed} (DUPLEX_CHAOS_SEED={seed} runs it again)");
        let dist = std::env::temp_dir().join("duplex-e2e-chaos-dist");
        std::fs::create_dir_all(&dist).context("creating an empty dist folder")?;
        let recovery = match std::env::var("DUPLEX_CHAOS_RECOVERY").as_deref() {
            Ok("off") => {
                println!("DUPLEX_CHAOS_RECOVERY=off: the server has no connection state recovery");
                None
            }
            _ => Some(RecoveryConfig::default()),
        };
        let redis = (servers > 1).then(RedisServer::start).transpose()?;
        let mut cluster = (0..servers)
            .map(|_| {
                TestServer::start_with(duplex_server::Config {
                    dist: dist.clone(),
                    recovery,
                    ping_interval: HEARTBEAT.0,
                    ping_timeout: HEARTBEAT.1,
                    shutdown_timeout: Duration::from_secs(2),
                    redis: redis.as_ref().map(RedisServer::url),
                    ..duplex_server::Config::default()
                })
            })
            .collect::<Result<Vec<_>>>()?;
        for server in &cluster {
            // In a cluster: connected to Redis, reading the stream.
            server.wait_ready()?;
        }
        let upstreams: Vec<_> = cluster.iter().map(TestServer::addr).collect();
        let server = cluster.remove(0);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("chaos")
            .enable_all()
            .build()
            .context("cannot build the test's tokio runtime")?;
        let config = ChaosConfig {
            seed,
            max_cuts: MAX_CUTS,
            ..ChaosConfig::default()
        };
        println!("proxy: {config:?}");
        let proxy = rt.block_on(ChaosProxy::start_spread(upstreams, config))?;
        Ok(Chaos {
            name: name.to_owned(),
            seed,
            started: Instant::now(),
            proxy,
            rt,
            server,
            others: cluster,
            _redis: redis,
            _alone: alone,
        })
    }

    /// Runs `test`, then prints the proxy's stats and the wall time; an error names the
    /// seed.
    fn outcome(self, test: impl FnOnce(&Chaos) -> Result<()>) -> Result<()> {
        let result = test(&self);
        let stats = self.proxy.stats();
        println!(
            "{}: {} after {:.1} s; proxy: {}",
            self.name,
            if result.is_ok() { "passed" } else { "FAILED" },
            self.started.elapsed().as_secs_f64(),
            if stats.accepted == 0 {
                "unused".to_owned()
            } else {
                stats.to_string()
            }
        );
        result.map_err(|error| {
            let seed = self.seed;
            error.context(format!(
                "chaos test `{}` failed with seed {seed}; run it again with \
                 DUPLEX_CHAOS_SEED={seed} cargo test -p duplex-e2e --test chaos {} -- --nocapture",
                self.name, self.name
            ))
        })
    }

    fn expect_cuts(&self) -> Result<()> {
        let stats = self.proxy.stats();
        ensure!(
            stats.cuts() >= MIN_CUTS,
            "only {} cuts, expected at least {MIN_CUTS}: {stats}",
            stats.cuts()
        );
        Ok(())
    }
}

// --- the Node scripts ---

/// The first of a script's `FAIL` and stderr lines, for an error.
fn failures(outcome: &ScriptOutcome) -> String {
    let mut text = String::new();
    for line in outcome.fail_lines.iter().take(FAIL_LINES) {
        let _ = writeln!(text, "{line}");
    }
    if outcome.fail_lines.len() > FAIL_LINES {
        let _ = writeln!(
            text,
            "... and {} more lines (see the test's output)",
            outcome.fail_lines.len() - FAIL_LINES
        );
    }
    text
}

fn interop_dir() -> Result<PathBuf> {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop");
    if !interop.join("node_modules/socket.io-client").is_dir() {
        bail!(
            "{} has no node_modules/socket.io-client: run `npm ci` there (or `cargo xtask test`, which does)",
            interop.display()
        );
    }
    Ok(interop)
}

/// Runs `node <script> <args>` in `interop/` on the test's runtime, echoing its output;
/// with `proxy`, the cut phases stop its cuts (after the script printed `published`).
/// An error when the script was killed or its summary line is not JSON.
fn run_script(
    chaos: &Chaos,
    name: &str,
    args: &[String],
    proxy: Option<&ChaosProxy>,
) -> Result<ScriptOutcome> {
    let interop = interop_dir()?;
    let script = Script {
        node: Path::new("node"),
        dir: &interop,
        name,
        args,
        limit: SCRIPT_LIMIT,
    };
    println!("{}", script.command_line());
    let mut phases = CutPhases::new(MIN_CUTS);
    let mut outcome = chaos.rt.block_on(script::run_script(
        &script,
        proxy.map(|proxy| (proxy, &mut phases)),
        |event| match event {
            Event::Stdout(line) => println!("  node | {line}"),
            Event::Stderr(line) => println!("  node stderr | {line}"),
            Event::StoppedCutting(stopped) => print_stopped(stopped),
        },
    ))?;
    let Some(status) = outcome.status else {
        bail!(
            "node {name} still running after {SCRIPT_LIMIT:?}: killed\n{}",
            outcome.fail_lines.join("\n")
        );
    };
    if let Some(error) = outcome.summary_error.take() {
        return Err(error);
    }
    println!(
        "node {name} exited ({status}) after {:.1} s",
        outcome.elapsed.as_secs_f64()
    );
    Ok(outcome)
}

/// The cuts in each phase, once they stopped.
fn print_stopped(stopped: &Stopped) {
    let before_connected = stopped.connected.unwrap_or(0);
    println!(
        "cuts: {before_connected} while the clients connected, {} while publishing, {} in \
         the {:.1} s after; stopped cutting: {}",
        stopped.published - before_connected,
        stopped.cuts - stopped.published,
        stopped.since_published.as_secs_f64(),
        stopped.stats
    );
}
