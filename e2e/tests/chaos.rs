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
//!   half WebSocket only;
//! - `oversized_messages_close_1009_with_reason`: official clients sending 2 MB and 8 MB
//!   over WebSocket (three rounds of both) are closed with 1009 and a reason while a
//!   bystander keeps doing round trips (`interop/oversized.mjs`; no proxy).
//!
//! The server runs with connection state recovery and short heartbeats ([`HEARTBEAT`]).
//! A test connects its clients (the proxy already cutting), publishes 1000 items 2 to
//! 5 ms apart, keeps cutting for 2 s more and until there were at least [`MIN_CUTS`], then
//! only delays while the clients settle; all within [`EXCHANGE_TIMEOUT`].
//!
//! Every run is seeded: `DUPLEX_CHAOS_SEED=<u64>` replays a seed (as closely as the
//! scheduler allows), otherwise one is drawn; it is printed, and a failure names it.
//! `DUPLEX_CHAOS_RECOVERY=off` runs the server without connection state recovery, to see
//! the harness catch the losses. They need Node.js and `npm ci` in `interop/`, no bundle:
//!
//! ```text
//! cargo test -p duplex-e2e --test chaos -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::BuildHasher;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use duplex_e2e::chaos::Rng;
use duplex_e2e::{ChaosConfig, ChaosProxy, TestServer};
use duplex_native::{Backoff, Client, Options, Status, Transports};
use duplex_server::rooms::RecoveryConfig;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// Clients behind the proxy, in each test.
const CLIENTS: usize = 50;
/// News items published, in each test.
const ITEMS: usize = 1000;
/// Cuts each test must have seen.
const MIN_CUTS: u64 = 100;
/// The proxy's budget: enough that it does not run out before the publishing ends (the
/// test stops the cuts itself, see [`CutControl`]).
const MAX_CUTS: u64 = 2000;
/// Once everything is published, cuts go on for at least the first of these (to hit the
/// reconnections and replays that follow) and until there were [`MIN_CUTS`], for at most
/// the second; then the proxy only delays, and the clients settle.
const CUTS_AFTER_PUBLISHING: (Duration, Duration) =
    (Duration::from_secs(2), Duration::from_secs(10));
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
        let summary = chaos.rt.block_on(native_clients(chaos))?;
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
        if !outcome.status.success() || summary["ok"] != json!(true) || !problems.is_empty() {
            bail!(
                "oversized messages: {}\n{}\nsummary: {summary}\nexit: {}",
                problems.join("; "),
                outcome.failures(),
                outcome.status
            );
        }
        Ok(())
    })
}

fn official_client_under_chaos(name: &str, websocket_only: bool) -> Result<()> {
    let chaos = Chaos::start(name)?;
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
        let outcome = run_script("chaos-clients.mjs", &args, Some(&chaos.proxy))?;
        let summary = outcome.summary.clone().unwrap_or(Value::Null);
        if !outcome.status.success() || summary["ok"] != json!(true) {
            bail!(
                "not every client got every item exactly once in order: {} missing, {} \
                 duplicated, {} out of order over {} clients ({} failing)\n{}\nsummary: \
                 {summary}\nproxy: {}\nexit: {}",
                summary["missing"],
                summary["duplicated"],
                summary["reordered"],
                summary["clients"],
                summary["failingClients"],
                outcome.failures(),
                chaos.proxy.stats(),
                outcome.status
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
    _alone: MutexGuard<'static, ()>,
}

/// Held by the running test: these tests run one at a time (each loads the machine
/// with 50 clients, and its timings are part of what it checks).
static ALONE: Mutex<()> = Mutex::new(());

impl Chaos {
    fn start(name: &str) -> Result<Chaos> {
        // A test that failed (panicked) while holding it does not concern the next.
        let alone = ALONE.lock().unwrap_or_else(PoisonError::into_inner);
        let seed = seed()?;
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
        let server = TestServer::start_with(duplex_server::Config {
            dist,
            recovery,
            ping_interval: HEARTBEAT.0,
            ping_timeout: HEARTBEAT.1,
            shutdown_timeout: Duration::from_secs(2),
            ..duplex_server::Config::default()
        })?;
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
        let proxy = rt.block_on(ChaosProxy::start(server.addr(), config))?;
        Ok(Chaos {
            name: name.to_owned(),
            seed,
            started: Instant::now(),
            proxy,
            rt,
            server,
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

/// `DUPLEX_CHAOS_SEED`, or a random one.
fn seed() -> Result<u64> {
    match std::env::var("DUPLEX_CHAOS_SEED") {
        Ok(seed) => seed
            .trim()
            .parse()
            .with_context(|| format!("DUPLEX_CHAOS_SEED={seed:?} is not a u64")),
        // std's per-process random hasher keys, mixed with the time: random enough.
        Err(_) => {
            Ok(std::collections::hash_map::RandomState::new()
                .hash_one(std::time::SystemTime::now()))
        }
    }
}

/// The phases of an exchange as the proxy saw them: cuts go on while the clients connect
/// and while the items are published, and for a while after, to hit the reconnections
/// and replays; then, once there were [`MIN_CUTS`], the proxy stops cutting so that the
/// clients can settle.
struct CutControl {
    connected: Option<(Instant, u64)>,
    published: Option<(Instant, u64)>,
    stopped: bool,
}

impl CutControl {
    fn new() -> CutControl {
        CutControl {
            connected: None,
            published: None,
            stopped: false,
        }
    }

    fn connected(&mut self, proxy: &ChaosProxy) {
        self.connected
            .get_or_insert_with(|| (Instant::now(), proxy.stats().cuts()));
    }

    fn published(&mut self, proxy: &ChaosProxy) {
        self.published
            .get_or_insert_with(|| (Instant::now(), proxy.stats().cuts()));
    }

    fn tick(&mut self, proxy: &ChaosProxy) {
        let Some((published, _)) = self.published else {
            return;
        };
        let since = published.elapsed();
        let cuts = proxy.stats().cuts();
        let enough = since >= CUTS_AFTER_PUBLISHING.0 && cuts >= MIN_CUTS;
        if self.stopped || !(enough || since >= CUTS_AFTER_PUBLISHING.1 || !proxy.is_cutting()) {
            return;
        }
        self.stopped = true;
        proxy.stop_cutting();
        let before_connected = self.connected.map_or(0, |(_, cuts)| cuts);
        let before_published = self.published.map_or(0, |(_, cuts)| cuts);
        println!(
            "cuts: {before_connected} while the clients connected, {} while publishing, {} in \
             the {:.1} s after; stopped cutting: {}",
            before_published - before_connected,
            cuts - before_published,
            since.as_secs_f64(),
            proxy.stats()
        );
    }
}

// --- the Node scripts ---

/// How a Node script ended.
struct ScriptOutcome {
    status: ExitStatus,
    /// The JSON of its `summary` line.
    summary: Option<Value>,
    /// Its `FAIL` lines and its stderr.
    fail_lines: Vec<String>,
}

impl ScriptOutcome {
    fn failures(&self) -> String {
        let mut text = String::new();
        for line in self.fail_lines.iter().take(FAIL_LINES) {
            let _ = writeln!(text, "{line}");
        }
        if self.fail_lines.len() > FAIL_LINES {
            let _ = writeln!(
                text,
                "... and {} more lines (see the test's output)",
                self.fail_lines.len() - FAIL_LINES
            );
        }
        text
    }
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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

/// Runs `node <script> <args>` in `interop/`, echoing its output; when it prints
/// `published`, lets [`CutControl`] stop `proxy`'s cuts.
fn run_script(script: &str, args: &[String], proxy: Option<&ChaosProxy>) -> Result<ScriptOutcome> {
    let interop = interop_dir()?;
    println!("node {script} {}", args.join(" "));
    let mut child = Command::new("node")
        .arg(script)
        .args(args)
        .current_dir(&interop)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting node (is Node.js installed?)")?;
    let (lines_tx, lines) = mpsc::channel::<(bool, String)>();
    for (is_stderr, pipe) in [
        (
            false,
            Box::new(child.stdout.take().context("node's stdout")?) as Box<dyn Read + Send>,
        ),
        (
            true,
            Box::new(child.stderr.take().context("node's stderr")?) as Box<dyn Read + Send>,
        ),
    ] {
        let lines_tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send((is_stderr, line)).is_err() {
                    break;
                }
            }
        });
    }
    drop(lines_tx);
    let mut child = Killed(child);
    let started = Instant::now();
    let mut cuts = CutControl::new();
    let mut summary = None;
    let mut fail_lines = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok((false, line)) => {
                println!("  node | {line}");
                if let Some(proxy) = proxy {
                    if line.starts_with("connected ") {
                        cuts.connected(proxy);
                    } else if line == "published" {
                        cuts.published(proxy);
                    }
                }
                if let Some(json) = line.strip_prefix("summary ") {
                    summary = Some(serde_json::from_str(json).context("the summary line")?);
                } else if line.starts_with("FAIL") {
                    fail_lines.push(line);
                }
            }
            Ok((true, line)) => {
                println!("  node stderr | {line}");
                fail_lines.push(format!("stderr: {line}"));
            }
            // Both pipes closed: the script is done.
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Some(proxy) = proxy {
            cuts.tick(proxy);
        }
        if started.elapsed() > SCRIPT_LIMIT {
            bail!(
                "node {script} still running after {SCRIPT_LIMIT:?}: killed\n{}",
                fail_lines.join("\n")
            );
        }
    }
    let status = child.0.wait().context("waiting for node")?;
    println!(
        "node {script} exited ({status}) after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(ScriptOutcome {
        status,
        summary,
        fail_lines,
    })
}

// --- the native clients ---

/// What arrived at one native client, and what happened to its connection.
struct Record {
    index: usize,
    transports: Transports,
    /// Item numbers in the order they arrived (with repeats).
    arrivals: Vec<usize>,
    counts: Vec<u32>,
    distinct: usize,
    /// Items and notes, with the milliseconds since the test started.
    log: Vec<(u64, Entry)>,
    sids: Vec<String>,
    ever_connected: bool,
    /// When it first connected (milliseconds since the test started).
    first_connected: u64,
    /// Connections after the first, recovered or fresh (at least: the status is a
    /// watch, which an observer may see skip a step).
    recovered: usize,
    fresh: usize,
}

enum Entry {
    Item(usize),
    Note(String),
}

/// Missing, duplicated and out-of-order items of one client.
struct Check {
    missing: Vec<usize>,
    duplicated: Vec<usize>,
    reordered: Vec<usize>,
}

impl Record {
    fn new(index: usize, transports: Transports) -> Record {
        Record {
            index,
            transports,
            arrivals: Vec::new(),
            counts: vec![0; ITEMS],
            distinct: 0,
            log: Vec::new(),
            sids: Vec::new(),
            ever_connected: false,
            first_connected: 0,
            recovered: 0,
            fresh: 0,
        }
    }

    fn item(&mut self, at: u64, k: usize) {
        self.log.push((at, Entry::Item(k)));
        self.arrivals.push(k);
        if let Some(count) = self.counts.get_mut(k) {
            if *count == 0 {
                self.distinct += 1;
            }
            *count += 1;
        }
    }

    fn note(&mut self, at: u64, note: String) {
        self.log.push((at, Entry::Note(note)));
    }

    fn status(&mut self, at: u64, status: &Status) {
        match status {
            Status::Connected { sid, recovered } => {
                if self.ever_connected {
                    if *recovered {
                        self.recovered += 1;
                    } else {
                        self.fresh += 1;
                    }
                } else {
                    self.first_connected = at;
                }
                self.ever_connected = true;
                if !self.sids.contains(sid) {
                    self.sids.push(sid.clone());
                }
                self.note(at, format!("connected sid={sid} recovered={recovered}"));
            }
            Status::Reconnecting {
                attempt,
                delay,
                reason,
                ..
            } => self.note(
                at,
                format!("reconnecting (attempt {attempt} in {delay:?}): {reason:?}"),
            ),
            Status::Connecting { attempt } => self.note(at, format!("connecting {attempt:?}")),
            Status::Refused(message) => self.note(at, format!("refused: {message}")),
            Status::Closed(reason) => self.note(at, format!("closed: {reason:?}")),
        }
    }

    fn check(&self) -> Check {
        let missing = (0..ITEMS).filter(|&k| self.counts[k] == 0).collect();
        let duplicated = (0..ITEMS)
            .flat_map(|k| std::iter::repeat_n(k, self.counts[k].saturating_sub(1) as usize))
            .collect();
        let mut seen = vec![false; ITEMS];
        let mut highest = None;
        let mut reordered = Vec::new();
        for &k in self.arrivals.iter().filter(|&&k| k < ITEMS) {
            if std::mem::replace(&mut seen[k], true) {
                continue;
            }
            if highest.is_some_and(|h| k < h) {
                reordered.push(k);
            }
            highest = highest.max(Some(k));
        }
        Check {
            missing,
            duplicated,
            reordered,
        }
    }

    /// The log with runs of consecutive items folded into one line each.
    fn timeline(&self) -> Vec<String> {
        /// A run of items (`first..=last`, from `at` to `until`), or a note.
        struct Line<'a> {
            at: u64,
            until: u64,
            items: Option<(usize, usize)>,
            note: &'a str,
        }
        let mut lines: Vec<Line<'_>> = Vec::new();
        for (at, entry) in &self.log {
            let at = *at;
            match entry {
                Entry::Item(k) => match lines.last_mut() {
                    Some(Line {
                        until,
                        items: Some((_, last)),
                        ..
                    }) if *k == *last + 1 => {
                        *last = *k;
                        *until = at;
                    }
                    _ => lines.push(Line {
                        at,
                        until: at,
                        items: Some((*k, *k)),
                        note: "",
                    }),
                },
                Entry::Note(note) => lines.push(Line {
                    at,
                    until: at,
                    items: None,
                    note,
                }),
            }
        }
        lines
            .into_iter()
            .map(
                |Line {
                     at,
                     until,
                     items,
                     note,
                 }| match items {
                    Some((first, last)) if first == last => format!("{at} ms item {first}"),
                    Some((first, last)) => format!("{at}-{until} ms items {first}..{last}"),
                    None => format!("{at} ms {note}"),
                },
            )
            .collect()
    }

    /// Lines naming this client, its problems, the events around the first one and its
    /// connection history.
    fn describe(&self, check: &Check, detailed: bool) -> String {
        let mut problems = Vec::new();
        for (what, items) in [
            ("missing", &check.missing),
            ("duplicated", &check.duplicated),
            ("out of order", &check.reordered),
        ] {
            if !items.is_empty() {
                problems.push(format!("{what} {} [{}]", items.len(), ranges(items)));
            }
        }
        let mut text = format!(
            "client {} ({:?}; sids {}; {} recovered, {} fresh reconnects): {}\n",
            self.index,
            self.transports,
            self.sids.join(", "),
            self.recovered,
            self.fresh,
            problems.join("; ")
        );
        if !detailed {
            return text;
        }
        let timeline = self.timeline();
        let first = check
            .missing
            .first()
            .or(check.duplicated.first())
            .or(check.reordered.first());
        if let Some(&first) = first {
            let _ = writeln!(text, "  around item {first}:");
            let index = timeline
                .iter()
                .position(|line| {
                    items_of(line).is_some_and(|(a, b)| {
                        if check.missing.is_empty() {
                            a <= first && first <= b
                        } else {
                            b > first
                        }
                    })
                })
                .unwrap_or(timeline.len());
            for line in &timeline[index.saturating_sub(5)..(index + 4).min(timeline.len())] {
                let _ = writeln!(text, "    {line}");
            }
        }
        let history: Vec<&String> = timeline
            .iter()
            .filter(|line| items_of(line).is_none())
            .collect();
        let _ = writeln!(text, "  connection history ({} entries):", history.len());
        for line in history.iter().rev().take(40).rev() {
            let _ = writeln!(text, "    {line}");
        }
        text
    }
}

/// The item range of a timeline line, if it is one.
fn items_of(line: &str) -> Option<(usize, usize)> {
    let (_, rest) = line.split_once(" ms item")?;
    let rest = rest.trim_start_matches('s').trim();
    match rest.split_once("..") {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => {
            let k = rest.parse().ok()?;
            Some((k, k))
        }
    }
}

/// `1, 4..9, 12`, at most 12 runs.
fn ranges(numbers: &[usize]) -> String {
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < numbers.len() {
        let mut j = i;
        while j + 1 < numbers.len() && numbers[j + 1] == numbers[j] + 1 {
            j += 1;
        }
        runs.push(if i == j {
            numbers[i].to_string()
        } else {
            format!("{}..{}", numbers[i], numbers[j])
        });
        i = j + 1;
    }
    if runs.len() > 12 {
        format!("{}, … ({} runs)", runs[..12].join(", "), runs.len())
    } else {
        runs.join(", ")
    }
}

type Shared = Arc<Mutex<Record>>;

fn lock(record: &Shared) -> std::sync::MutexGuard<'_, Record> {
    record
        .lock()
        .expect("a record's lock is never held by a panicking thread")
}

/// The item number of a `news` event `{"hello": "item-<k>"}`.
fn item_number(event: &duplex_native::Incoming) -> Option<usize> {
    if event.name != "news" {
        return None;
    }
    event.args.first()?["hello"]
        .as_str()?
        .strip_prefix("item-")?
        .parse()
        .ok()
}

/// One native client behind the proxy: connects, then records every event and status
/// until the test ends (its task is aborted then).
async fn native_client(url: String, transports: Transports, record: Shared, started: Instant) {
    let ms = move || u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let options = Options {
        transports,
        reconnection: Some(Backoff::default()),
        connect_timeout: NATIVE_CONNECT_TIMEOUT,
        ..Options::default()
    };
    // `connect` resolves once connected, retrying (with the backoff) for at most
    // `connect_timeout`; tried again until the exchange's deadline.
    let mut client: Client = loop {
        lock(&record).note(ms(), format!("connecting over {transports:?}"));
        match duplex_native::connect(&url, options.clone()).await {
            Ok(client) => break client,
            Err(e) => {
                lock(&record).note(ms(), format!("connect failed: {e}"));
                if started.elapsed() > EXCHANGE_TIMEOUT {
                    return;
                }
            }
        }
    };
    let mut status = client.status();
    let now = status.borrow_and_update().clone();
    lock(&record).status(ms(), &now);
    loop {
        tokio::select! {
            event = client.next_event() => {
                let Some(event) = event else {
                    lock(&record).note(ms(), "no more events: the client is closed".into());
                    return;
                };
                match item_number(&event) {
                    Some(k) => lock(&record).item(ms(), k),
                    None if event.name == "handshake" => {}
                    None => lock(&record).note(ms(), format!("{} {}", event.name, Value::from(event.args))),
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = status.borrow_and_update().clone();
                lock(&record).status(ms(), &now);
            }
        }
    }
}

/// 50 native clients behind the proxy, half polling-then-upgrade and half WebSocket only,
/// and a publisher connected directly; returns the summary, or an error naming the
/// clients that missed, repeated or reordered items.
async fn native_clients(chaos: &Chaos) -> Result<Value> {
    let started = Instant::now();
    let deadline = started + EXCHANGE_TIMEOUT;
    let records: Vec<Shared> = (0..CLIENTS)
        .map(|index| {
            let transports = if index % 2 == 0 {
                Transports::PollingThenUpgrade
            } else {
                Transports::WebSocketOnly
            };
            Arc::new(Mutex::new(Record::new(index, transports)))
        })
        .collect();
    // Dropped at the end of the test: aborts the clients, which disconnect.
    let mut clients = JoinSet::new();
    for record in &records {
        let transports = lock(record).transports;
        clients.spawn(native_client(
            chaos.proxy.url(),
            transports,
            record.clone(),
            started,
        ));
    }
    let all = |done: &dyn Fn(&Record) -> bool| records.iter().all(|r| done(&lock(r)));
    while !all(&|r| r.ever_connected) {
        if Instant::now() > deadline {
            let never: Vec<usize> = records
                .iter()
                .map(|r| lock(r))
                .filter(|r| !r.ever_connected)
                .map(|r| r.index)
                .collect();
            bail!("clients {never:?} never connected");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    {
        let last = records
            .iter()
            .map(|r| lock(r))
            .max_by_key(|r| r.first_connected)
            .expect("there are clients");
        println!(
            "connected {CLIENTS} clients at {} ms (the last: client {}, {:?})",
            started.elapsed().as_millis(),
            last.index,
            last.transports
        );
        if last.first_connected > 5000 {
            for line in last.timeline().iter().take(30) {
                println!("  client {}: {line}", last.index);
            }
        }
    }
    let mut cuts = CutControl::new();
    cuts.connected(&chaos.proxy);

    let publisher = duplex_native::connect(
        &format!("http://{}", chaos.server.addr()),
        Options {
            transports: Transports::WebSocketOnly,
            ..Options::default()
        },
    )
    .await
    .context("the publisher cannot connect to the server directly")?
    // It receives every item too: drop them as they come, or its reads would stop.
    .into_emitter();
    let mut rng = Rng::new(chaos.seed ^ 0x5eed);
    let publishing = Instant::now();
    for k in 0..ITEMS {
        publisher
            .emit("publish", vec![json!({ "text": format!("item-{k}") })])
            .await
            .with_context(|| format!("publishing item {k}"))?;
        tokio::time::sleep(Duration::from_millis(2 + rng.next_u64() % 4)).await;
    }
    let publish_ms = publishing.elapsed().as_millis();
    println!("published {ITEMS} items in {publish_ms} ms");

    cuts.published(&chaos.proxy);
    let complete = loop {
        cuts.tick(&chaos.proxy);
        if all(&|r| r.distinct == ITEMS) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let settle_ms = publishing.elapsed().as_millis() - publish_ms;
    println!(
        "{} every item {settle_ms} ms after publishing",
        if complete {
            "every client has"
        } else {
            "not every client has"
        }
    );
    // Late duplicates (a replay of what had arrived already) come right behind.
    tokio::time::sleep(Duration::from_secs(1)).await;
    ensure!(
        matches!(&*publisher.status().borrow(), Status::Connected { .. }),
        "the publisher, connected directly, lost its connection: {:?}",
        publisher.status().borrow()
    );

    let mut failing = String::new();
    let mut failing_count = 0;
    let mut totals: BTreeMap<&str, usize> = BTreeMap::new();
    for record in &records {
        let record = lock(record);
        let check = record.check();
        *totals.entry("delivered").or_default() += record.distinct;
        *totals.entry("missing").or_default() += check.missing.len();
        *totals.entry("duplicated").or_default() += check.duplicated.len();
        *totals.entry("reordered").or_default() += check.reordered.len();
        *totals.entry("recovered").or_default() += record.recovered;
        *totals.entry("fresh").or_default() += record.fresh;
        if !(check.missing.is_empty() && check.duplicated.is_empty() && check.reordered.is_empty())
        {
            failing.push_str(&record.describe(&check, failing_count < 5));
            failing_count += 1;
        }
    }
    let summary = json!({
        "clients": CLIENTS,
        "items": ITEMS,
        "expected": CLIENTS * ITEMS,
        "totals": totals,
        "failingClients": failing_count,
        "publishMs": publish_ms,
        "settleMs": settle_ms,
        "elapsedMs": started.elapsed().as_millis(),
    });
    publisher.disconnect().await;
    if failing_count > 0 {
        bail!(
            "{failing_count} of {CLIENTS} native clients did not get every item exactly once in \
             order\n{failing}summary: {summary}\nproxy: {}",
            chaos.proxy.stats()
        );
    }
    Ok(summary)
}
