//! The bench's chaos section: what reaches clients whose network misbehaves.
//!
//! duplex and the Node peer, both with connection state recovery (a 2 minute window)
//! and the same short heartbeat ([`HEARTBEAT`]), each started fresh for every run
//! behind a chaos proxy of its own (duplex-e2e's `ChaosProxy`: every chunk delayed by
//! up to 150 ms with bytes kept in order, connections cut with a FIN or an RST, young
//! ones in their handshakes and upgrade probes, older ones anywhere), and driven by the
//! same clients: `interop/chaos-clients.mjs`, N official socket.io-client 4 clients
//! through the proxy (the library's default transports, then WebSocket only) and a
//! publisher connected directly that broadcasts M numbered items. The script counts,
//! per client, the items that never arrived (missing), arrived more than once
//! (duplicated) or after a later one (reordered), and the reconnections, recovered or
//! fresh; it prints a `summary {json}` line, also when it gave up at its deadline.
//!
//! The cuts follow the chaos tests' phases, and the script runs as in those tests: both
//! are duplex-e2e's (`duplex_e2e::chaos::script`: [`CutPhases`], [`script::run_script`]).
//! Cuts go on while the clients connect and while the items are published, then for at
//! least 2 s more and until there were `min_cuts`, at most 10 s; then the proxy only
//! delays while the clients settle. Each run draws a seed (`DUPLEX_CHAOS_SEED` replays
//! one) that both servers get, with the same script, proxy settings and sizes: the
//! generator is the same for both, only the server differs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use duplex_e2e::chaos::script::{self, CutPhases, Event, Script, ScriptOutcome};
use duplex_e2e::{ChaosConfig, ChaosProxy, ChaosStats};
use serde::{Deserialize, Serialize};

use super::peers::{self, Launch, PeerOptions, Prepared, Server};
use super::report;
use crate::build;

/// The servers that have connection state recovery, in the order they run.
pub const SERVERS: [Server; 2] = [Server::Duplex, Server::Node];

/// Both servers' `pingInterval` and `pingTimeout`, shorter than the defaults (25 s +
/// 20 s): engine.io-client stalls when its upgrade probe is cut after the server
/// answered it, until its heartbeat times out, then reconnects and recovers. With the
/// defaults that wait alone would outlast a run. The chaos tests use the same.
pub const HEARTBEAT: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(5));

/// The clients' `timeout` option (how long a connection attempt may take; 20 s by
/// default): engine.io-client's manager does not listen for the engine's `close` while
/// opening, so an attempt whose WebSocket is cut before the open packet waits that
/// long. The chaos tests use the same.
pub const CLIENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The whole exchange — connecting, publishing, settling — within this (the script's
/// `--timeout-ms`); past it the script reports what it counted.
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(40);

/// The script is killed if it runs this long (it stops itself 5 s after its deadline).
const SCRIPT_LIMIT: Duration = Duration::from_secs(55);

/// The proxy's cut budget: more than a run uses (the phases stop the cuts).
const MAX_CUTS: u64 = 2000;

/// `FAIL` lines of the script kept in the results of a run.
const FAIL_LINES_KEPT: usize = 20;
/// `FAIL` lines of the script echoed as the run goes (all of them are in its log).
const FAIL_LINES_SHOWN: usize = 6;

/// How many clients and items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChaosSizes {
    pub clients: usize,
    pub items: usize,
    /// Cuts the proxy makes at least before it stops (unless 10 s after publishing
    /// came first).
    pub min_cuts: u64,
}

impl ChaosSizes {
    pub fn full() -> Self {
        ChaosSizes {
            clients: 50,
            items: 1000,
            min_cuts: 100,
        }
    }

    pub fn quick() -> Self {
        ChaosSizes {
            clients: 10,
            items: 100,
            min_cuts: 20,
        }
    }
}

/// The clients' transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientMode {
    /// The library's default: HTTP long-polling, then the upgrade to WebSocket.
    Default,
    /// `transports: ["websocket"]`.
    WebsocketOnly,
}

impl ClientMode {
    pub const ALL: [ClientMode; 2] = [ClientMode::Default, ClientMode::WebsocketOnly];

    /// For file names and progress lines.
    pub fn name(self) -> &'static str {
        match self {
            ClientMode::Default => "default",
            ClientMode::WebsocketOnly => "websocket-only",
        }
    }

    /// For the tables.
    pub fn label(self) -> &'static str {
        match self {
            ClientMode::Default => "default (polling → WebSocket)",
            ClientMode::WebsocketOnly => "WebSocket only",
        }
    }
}

/// The script's `summary` line: the totals over its clients.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Summary {
    /// Every client got every item exactly once, in order, and nothing failed.
    pub ok: bool,
    pub clients: u64,
    pub items: u64,
    /// `clients × items`.
    pub expected: u64,
    /// Distinct items received, over all clients.
    pub delivered: u64,
    pub missing: u64,
    /// Arrivals after the first of the same item.
    pub duplicated: u64,
    /// Items that arrived (for the first time) after a later one.
    pub reordered: u64,
    /// Items with a number that was never published.
    pub unknown: u64,
    /// Connections after a client's first, each either recovered (`socket.recovered`)
    /// or fresh.
    pub reconnects: u64,
    pub recovered: u64,
    pub fresh: u64,
    pub connect_errors: u64,
    pub failing_clients: u64,
    /// Clients that had every item when the script stopped waiting.
    pub complete_clients: u64,
    /// Absent when the script gave up before publishing.
    pub publish_ms: Option<u64>,
    pub settle_ms: Option<u64>,
    pub elapsed_ms: u64,
}

impl Summary {
    /// Every client got every item, none twice, none out of order.
    pub fn perfect(&self) -> bool {
        self.expected > 0
            && self.delivered == self.expected
            && self.missing == 0
            && self.duplicated == 0
            && self.reordered == 0
            && self.unknown == 0
    }

    /// Some clients did not have every item when the script stopped waiting: it hit
    /// its deadline (the counts are what had arrived by then).
    pub fn timed_out(&self) -> bool {
        self.complete_clients < self.clients
    }
}

impl Summary {
    /// From the JSON of the script's `summary {json}` line.
    pub fn from_json(json: serde_json::Value) -> anyhow::Result<Summary> {
        serde_json::from_value(json).context("the script's summary line is not the JSON expected")
    }
}

/// The proxy's cuts in one run, and when they happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cuts {
    /// Client connections the proxy accepted.
    pub accepted: u64,
    pub fin: u64,
    pub rst: u64,
    /// Before every client had connected (`None`: they never all did).
    pub while_connecting: Option<u64>,
    /// From then until the last item was published.
    pub while_publishing: Option<u64>,
    /// From then until the proxy stopped cutting.
    pub after_publishing: Option<u64>,
}

impl Cuts {
    pub fn total(&self) -> u64 {
        self.fin + self.rst
    }

    fn new(stats: ChaosStats, phases: &CutPhases) -> Cuts {
        let (while_connecting, while_publishing, after_publishing) = phases.split(stats.cuts());
        Cuts {
            accepted: stats.accepted,
            fin: stats.cuts_fin,
            rst: stats.cuts_rst,
            while_connecting,
            while_publishing,
            after_publishing,
        }
    }
}

/// One run: one server, one client mode, one seed.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosRun {
    pub server: Server,
    pub mode: ClientMode,
    pub rep: usize,
    pub seed: u64,
    /// What the script counted; `None` when it printed no summary.
    pub summary: Option<Summary>,
    pub cuts: Cuts,
    /// The server's CPU time (user + system) from the script's start to its end.
    pub server_cpu_ms: Option<u64>,
    /// Server start to server stop.
    pub wall_ms: u64,
    /// The script's exit status.
    pub exit: Option<String>,
    /// What went wrong with the measurement itself (no summary, the server died).
    pub error: Option<String>,
    /// The script's first `FAIL` lines (the clients that missed, repeated or
    /// reordered items, with their histories; all of them are in its log).
    pub fail_lines: Vec<String>,
}

impl ChaosRun {
    /// The server's CPU per delivered item, in µs.
    pub fn server_cpu_us_per_item(&self) -> Option<f64> {
        let cpu = self.server_cpu_ms?;
        let delivered = self.summary.as_ref()?.delivered;
        (delivered > 0).then(|| cpu as f64 * 1000.0 / delivered as f64)
    }
}

/// Whether a server could run in the chaos section.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosStatus {
    pub server: Server,
    pub missing_because: Option<String>,
}

/// The section's results (also the JSON file's `chaos`).
#[derive(Debug, Clone, Serialize)]
pub struct ChaosResults {
    pub sizes: ChaosSizes,
    pub repeat: usize,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub client_connect_timeout_ms: u64,
    pub exchange_timeout_ms: u64,
    pub proxy: String,
    pub statuses: Vec<ChaosStatus>,
    pub runs: Vec<ChaosRun>,
    /// The runs' totals per server and client mode.
    pub rows: Vec<report::ChaosRow>,
    /// duplex got 100.000 %, no duplicate and no reordering in every run (`None`:
    /// duplex did not run).
    pub duplex_target_met: Option<bool>,
}

impl ChaosResults {
    /// Whether a measurement failed (not whether a server missed items).
    pub fn failed(&self) -> bool {
        self.runs.iter().any(|r| r.error.is_some())
    }
}

/// What every run shares.
struct Setup<'a> {
    sizes: ChaosSizes,
    node: PathBuf,
    interop: PathBuf,
    out: &'a Path,
}

/// Runs the section: `repeat` times, each client mode, each of duplex and node (among
/// `servers`, when given).
pub async fn run(
    options: &PeerOptions,
    servers: &[Server],
    sizes: ChaosSizes,
    repeat: usize,
    out: &Path,
) -> anyhow::Result<ChaosResults> {
    let wanted: Vec<Server> = if servers.is_empty() {
        SERVERS.to_vec()
    } else {
        Server::ALL
            .into_iter()
            .filter(|s| servers.contains(s))
            .collect()
    };
    let interop = prepare_interop(options);
    let mut statuses = Vec::new();
    let mut ready: Vec<(Server, Launch)> = Vec::new();
    for server in wanted {
        println!("bench: chaos: preparing {}", server.name());
        let prepared = match (&interop, SERVERS.contains(&server)) {
            // A server without recovery is reported as such, whatever the clients.
            (Err(why), true) => Prepared::Missing(why.clone()),
            _ => peers::prepare_for_chaos(server, options, HEARTBEAT.0, HEARTBEAT.1),
        };
        match prepared {
            Prepared::Ready(launch) => {
                ready.push((server, launch));
                statuses.push(ChaosStatus {
                    server,
                    missing_because: None,
                });
            }
            Prepared::Missing(why) => {
                println!("bench: chaos: {} cannot run: {why}", server.name());
                statuses.push(ChaosStatus {
                    server,
                    missing_because: Some(why),
                });
            }
        }
    }

    let mut runs = Vec::new();
    if let Ok((node, interop)) = interop {
        let setup = Setup {
            sizes,
            node,
            interop,
            out,
        };
        for rep in 0..repeat {
            for mode in ClientMode::ALL {
                if ready.is_empty() {
                    break;
                }
                let seed = duplex_e2e::chaos::seed_from_env()?;
                println!(
                    "bench: chaos run {} of {repeat}, {}: seed {seed} (DUPLEX_CHAOS_SEED={seed} replays it)",
                    rep + 1,
                    mode.label()
                );
                for (server, launch) in &ready {
                    let run = run_one(&setup, *server, launch, mode, rep, seed).await;
                    println!("{}", run_line(&run));
                    runs.push(run);
                }
            }
        }
    }
    let rows = report::chaos_rows(&runs);
    let duplex_target_met = report::duplex_target_met(&runs);
    Ok(ChaosResults {
        sizes,
        repeat,
        ping_interval_ms: millis(HEARTBEAT.0),
        ping_timeout_ms: millis(HEARTBEAT.1),
        client_connect_timeout_ms: millis(CLIENT_CONNECT_TIMEOUT),
        exchange_timeout_ms: millis(EXCHANGE_TIMEOUT),
        proxy: format!(
            "{:?}",
            ChaosConfig {
                max_cuts: MAX_CUTS,
                ..ChaosConfig::default()
            }
        ),
        statuses,
        runs,
        rows,
        duplex_target_met,
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Node and `interop/node_modules` (`npm ci` there when missing, unless `--no-build`).
fn prepare_interop(options: &PeerOptions) -> Result<(PathBuf, PathBuf), String> {
    let prepare = || -> anyhow::Result<(PathBuf, PathBuf)> {
        let node =
            peers::which("node").context("node is not installed (apt-get install nodejs npm)")?;
        let interop = options.root.join("interop");
        if !interop
            .join("node_modules/socket.io-client/package.json")
            .is_file()
        {
            anyhow::ensure!(
                !options.no_build,
                "socket.io-client is not installed: run `npm ci` in {}",
                interop.display()
            );
            let npm = peers::which("npm").context("npm is not installed (apt-get install npm)")?;
            build::run(Command::new(npm).arg("ci").current_dir(&interop))
                .context("npm ci in interop/ failed (the npm registry must be reachable)")?;
        }
        Ok((node, interop))
    };
    prepare().map_err(|e| format!("{e:#}"))
}

/// One run; what went wrong is in its `error`.
async fn run_one(
    setup: &Setup<'_>,
    server: Server,
    launch: &Launch,
    mode: ClientMode,
    rep: usize,
    seed: u64,
) -> ChaosRun {
    let started = Instant::now();
    let mut run = ChaosRun {
        server,
        mode,
        rep,
        seed,
        summary: None,
        cuts: Cuts::default(),
        server_cpu_ms: None,
        wall_ms: 0,
        exit: None,
        error: None,
        fail_lines: Vec::new(),
    };
    if let Err(e) = exchange(setup, launch, &mut run).await {
        run.error = Some(format!("{e:#}"));
    }
    run.wall_ms = millis(started.elapsed());
    run
}

/// The script's arguments, the same for every server.
pub fn script_args(
    proxied: &str,
    direct: &str,
    sizes: ChaosSizes,
    mode: ClientMode,
    seed: u64,
) -> Vec<String> {
    let mut args = vec![
        proxied.to_owned(),
        direct.to_owned(),
        "--clients".to_owned(),
        sizes.clients.to_string(),
        "--items".to_owned(),
        sizes.items.to_string(),
        "--seed".to_owned(),
        seed.to_string(),
        "--timeout-ms".to_owned(),
        millis(EXCHANGE_TIMEOUT).to_string(),
        "--connect-timeout-ms".to_owned(),
        millis(CLIENT_CONNECT_TIMEOUT).to_string(),
    ];
    if mode == ClientMode::WebsocketOnly {
        args.push("--websocket-only".to_owned());
    }
    args
}

/// The server, the proxy in front of it, the script; fills `run` as it goes.
async fn exchange(setup: &Setup<'_>, launch: &Launch, run: &mut ChaosRun) -> anyhow::Result<()> {
    let name = format!(
        "chaos-{}-{}-{}",
        run.server.name(),
        run.mode.name(),
        run.rep
    );
    let logs = setup.out.join("logs");
    let mut process = launch.start(run.server, &logs.join(format!("{name}-server.log")))?;
    process
        .wait_ready(Duration::from_secs(30))
        .await
        .with_context(|| format!("starting {}", run.server.name()))?;
    // Declared after the server: dropped (its connections closed) before it is killed.
    let proxy = ChaosProxy::start(
        process.addr(),
        ChaosConfig {
            seed: run.seed,
            max_cuts: MAX_CUTS,
            ..ChaosConfig::default()
        },
    )
    .await?;
    let args = script_args(
        &proxy.url(),
        &format!("http://{}", process.addr()),
        setup.sizes,
        run.mode,
        run.seed,
    );
    let log = logs.join(format!("{name}.log"));
    let mut phases = CutPhases::new(setup.sizes.min_cuts);
    let cpu_before = process.cpu_time()?;
    let outcome = run_script(setup, &args, &proxy, &mut phases, &log).await;
    // CPU and cuts, whatever the script did.
    if let Ok(cpu_after) = process.cpu_time() {
        run.server_cpu_ms = Some(millis(cpu_after.saturating_sub(cpu_before)));
    }
    run.cuts = Cuts::new(proxy.stats(), &phases);
    let outcome = outcome?;
    run.exit = Some(outcome.exit());
    run.fail_lines = outcome
        .fail_lines
        .into_iter()
        .take(FAIL_LINES_KEPT)
        .collect();
    let summary = match outcome.summary_error {
        Some(e) => Err(e),
        None => outcome.summary.map(Summary::from_json).transpose(),
    };
    run.summary = summary
        .map_err(|e| anyhow::anyhow!("{e:#}; the script's output is in {}", log.display()))?;
    anyhow::ensure!(
        run.summary.is_some(),
        "the script printed no summary ({}); its output is in {}",
        run.exit.as_deref().unwrap_or("?"),
        log.display()
    );
    process.check_alive()
}

/// Runs `node chaos-clients.mjs ARGS` in `interop/`, its output to `log`, its
/// progress echoed; the phases stop `proxy`'s cuts.
async fn run_script(
    setup: &Setup<'_>,
    args: &[String],
    proxy: &ChaosProxy,
    phases: &mut CutPhases,
    log: &Path,
) -> anyhow::Result<ScriptOutcome> {
    let mut log_file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let script = Script {
        node: &setup.node,
        dir: &setup.interop,
        name: "chaos-clients.mjs",
        args,
        limit: SCRIPT_LIMIT,
    };
    let command_line = script.command_line();
    println!("bench: chaos: {command_line}");
    let _ = writeln!(log_file, "{command_line}");
    let mut fail_shown = 0;
    let outcome = script::run_script(&script, Some((proxy, phases)), |event| match event {
        Event::Stdout(line) => {
            let _ = writeln!(log_file, "{line}");
            let shown = if line.starts_with("FAIL") {
                fail_shown += 1;
                fail_shown <= FAIL_LINES_SHOWN
            } else {
                is_progress(line)
            };
            if shown {
                println!("  node | {line}");
            }
        }
        Event::Stderr(line) => {
            let _ = writeln!(log_file, "stderr: {line}");
            println!("  node stderr | {line}");
        }
        Event::StoppedCutting(stopped) => {
            let show = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
            println!(
                "bench: chaos: stopped cutting: {} cuts while connecting, {} while publishing, {} after; proxy: {}",
                show(stopped.connected),
                show(stopped.connected.map(|c| stopped.published.saturating_sub(c))),
                stopped.cuts.saturating_sub(stopped.published),
                stopped.stats
            );
        }
    })
    .await?;
    let _ = writeln!(log_file, "exit: {}", outcome.exit());
    Ok(outcome)
}

/// The script's lines worth showing as the run goes (all are in its log).
fn is_progress(line: &str) -> bool {
    [
        "connected ",
        "published ",
        "every client ",
        "not every client ",
    ]
    .iter()
    .any(|p| line.starts_with(p))
}

/// One line per run, as the section goes.
fn run_line(run: &ChaosRun) -> String {
    let mut line = format!(
        "bench: chaos {:<7} {:<15} run {} seed {}:",
        run.server.name(),
        run.mode.name(),
        run.rep + 1,
        run.seed
    );
    if let Some(s) = &run.summary {
        line.push_str(&format!(
            " delivered {} % ({}/{}) missing={} duplicated={} reordered={} reconnects={} ({} recovered, {} fresh) complete clients {}/{}",
            report::percent(s.delivered, s.expected),
            s.delivered,
            s.expected,
            s.missing,
            s.duplicated,
            s.reordered,
            s.reconnects,
            s.recovered,
            s.fresh,
            s.complete_clients,
            s.clients
        ));
    }
    line.push_str(&format!(
        " cuts={} server CPU={} ({} µs/item) wall {:.1} s",
        run.cuts.total(),
        run.server_cpu_ms
            .map_or("?".to_owned(), |ms| format!("{:.2} s", ms as f64 / 1000.0)),
        run.server_cpu_us_per_item()
            .map_or("?".to_owned(), |us| format!("{us:.1}")),
        run.wall_ms as f64 / 1000.0
    ));
    if let Some(e) = &run.error {
        line.push_str(&format!("  error: {e}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `summary {json}` line as the section reads it.
    fn parse_summary_line(line: &str) -> Option<anyhow::Result<Summary>> {
        script::summary_line(line).map(|json| json.and_then(Summary::from_json))
    }

    #[test]
    fn parses_the_summary_line_the_script_prints() {
        // As chaos-clients.mjs prints it (a timed-out run: 2 clients incomplete).
        let line = r#"summary {"ok":false,"seed":"42","clients":50,"items":1000,"websocketOnly":false,"connectTimeoutMs":5000,"expected":50000,"delivered":49990,"missing":10,"duplicated":1,"reordered":2,"unknown":0,"reconnects":130,"recovered":120,"fresh":10,"connectErrors":7,"failingClients":2,"completeClients":48,"disconnectReasons":{"transport close":100},"finalTransports":{"websocket":50},"publishMs":4200,"settleMs":800,"elapsedMs":12000}"#;
        let summary = parse_summary_line(line)
            .expect("a summary line")
            .expect("valid");
        assert_eq!(summary.expected, 50_000);
        assert_eq!(summary.delivered, 49_990);
        assert_eq!(
            (summary.missing, summary.duplicated, summary.reordered),
            (10, 1, 2)
        );
        assert_eq!(
            (summary.reconnects, summary.recovered, summary.fresh),
            (130, 120, 10)
        );
        assert_eq!(summary.connect_errors, 7);
        assert_eq!(summary.publish_ms, Some(4200));
        assert!(summary.timed_out());
        assert!(!summary.perfect());
    }

    #[test]
    fn a_summary_without_publishing_has_no_publish_time() {
        // "connectTimeoutMs":"default" and no publishMs/settleMs: clients never connected.
        let line = r#"summary {"ok":false,"clients":10,"items":100,"connectTimeoutMs":"default","expected":1000,"delivered":0,"missing":1000,"completeClients":0,"elapsedMs":40000}"#;
        let summary = parse_summary_line(line)
            .expect("a summary line")
            .expect("valid");
        assert_eq!(summary.publish_ms, None);
        assert_eq!(summary.missing, 1000);
        assert!(summary.timed_out());
    }

    #[test]
    fn other_lines_are_not_summaries_and_a_broken_one_is_an_error() {
        assert!(parse_summary_line("published").is_none());
        assert!(parse_summary_line("FAIL client 3 ...").is_none());
        assert!(parse_summary_line("summary {not json").is_some_and(|r| r.is_err()));
    }

    #[test]
    fn a_perfect_summary() {
        let summary = Summary {
            ok: true,
            clients: 2,
            items: 3,
            expected: 6,
            delivered: 6,
            complete_clients: 2,
            ..Summary::default()
        };
        assert!(summary.perfect());
        assert!(!summary.timed_out());
        assert!(
            !Summary {
                duplicated: 1,
                ..summary.clone()
            }
            .perfect()
        );
        assert!(
            !Summary::default().perfect(),
            "nothing expected is no result"
        );
    }

    #[test]
    fn the_script_gets_the_same_arguments_for_every_server() {
        let args = script_args(
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            ChaosSizes::quick(),
            ClientMode::WebsocketOnly,
            7,
        );
        assert_eq!(
            args.join(" "),
            "http://127.0.0.1:1 http://127.0.0.1:2 --clients 10 --items 100 --seed 7 \
             --timeout-ms 40000 --connect-timeout-ms 5000 --websocket-only"
        );
        let default = script_args("a", "b", ChaosSizes::full(), ClientMode::Default, 7);
        assert!(!default.contains(&"--websocket-only".to_owned()));
    }
}
