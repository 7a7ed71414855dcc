//! The side-by-side benchmarks (issue 6): duplex, Node socket.io 4, socketioxide
//! and two bare tokio-tungstenite servers (one with its own tiny wire, one
//! answering in Socket.IO's wire format), driven by the same generator in one run.
//!
//! For each repeat, each server in turn (alternating, so that a drift of the
//! machine spreads over all of them) is started fresh as a child process on
//! 127.0.0.1 and run through every scenario ([`scenarios`]); then it is killed.
//! The report ([`report`]) gives the median of the repeats with duplex/peer and
//! duplex/ceiling ratios, the out-of-order and missing counts, and the CPU of the
//! server and of the generator (a generator near 100% per core is the limit,
//! not the server). Raw samples go to `target/bench/results.json`.
//!
//! Peers are built on demand ([`peers`]); one that cannot be built is reported
//! as missing, with the reason, and the others still run.
//!
//! After the servers, the chaos section ([`chaos`]) puts duplex and the Node peer,
//! both with connection state recovery, behind the same seeded proxy that delays and
//! cuts connections, and counts the news items official clients miss, get twice or
//! out of order.
//!
//! Once per run, the client section ([`client`]) reports what the browser gets
//! from the release build: the bundle's sizes and the time from page load to the
//! first news item in headless Chromium. `--only servers|chaos|client` runs one
//! section, `--no-chaos` and `--no-client` skip one.

pub mod chaos;
pub mod client;
pub mod cluster;
pub mod peers;
pub mod report;
pub mod scenarios;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde::Serialize;

use crate::source::Sources;
use crate::{build, sys};
use chaos::{ChaosResults, ChaosSizes};
use client::{ClientOptions, ClientResults};
use peers::{Launch, PeerOptions, Prepared, Server};
use scenarios::{Sample, Sizes, Target};

/// A part of the bench that `--only` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Section {
    /// The servers side by side: connect, echo, fan-out, memory.
    Servers,
    /// duplex and Node socket.io (both with recovery) behind a proxy that cuts
    /// connections: items missing, duplicated, reordered.
    Chaos,
    /// The release bundle's sizes and page load to news in headless Chromium.
    Client,
    /// Fan-out across three servers on one Redis, duplex against Node with
    /// @socket.io/redis-streams-adapter (only with `--only cluster`).
    Cluster,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Runs of every figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    pub repeat: usize,
    /// Small sizes, one run: a smoke check of the harness.
    #[arg(long)]
    pub quick: bool,
    /// Servers to run (default: all five; the chaos section runs those of duplex and
    /// node among them).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub servers: Vec<Server>,
    /// Use the binaries already built (and node_modules already installed).
    #[arg(long)]
    pub no_build: bool,
    /// Keep duplex's connection state recovery on, as its binary's default is;
    /// off by default here because none of the peers runs it.
    #[arg(long)]
    pub duplex_recovery: bool,
    /// The bare servers' WebSocket read buffer in bytes. 4 KiB, as the
    /// generator's: tungstenite's default (128 KiB) is zero-filled before every
    /// read, which costs a sequential echo more than everything else the bare
    /// server does, and a ceiling should be the best a bare server does.
    #[arg(long, default_value_t = 4096)]
    pub bare_read_buffer: usize,
    /// Where results.json and results.md go.
    #[arg(long, default_value = "target/bench")]
    pub out: PathBuf,
    /// Run one section only.
    #[arg(long, value_enum)]
    pub only: Option<Section>,
    /// Only the server scenarios whose key starts with one of these (e.g.
    /// `fanout`, `echo-c100`, `connect-10000`): for a quick look at one figure.
    #[arg(long, value_delimiter = ',')]
    pub scenarios: Vec<String>,
    /// Skip the chaos section (duplex and Node behind a proxy that cuts connections).
    #[arg(long, conflicts_with = "only")]
    pub no_chaos: bool,
    /// Skip the client section (bundle sizes, page load in Chromium).
    #[arg(long, conflicts_with = "only")]
    pub no_client: bool,
    /// Page loads in headless Chromium (the first, with an empty cache, is also
    /// reported apart as cold); 3 with --quick.
    #[arg(long, default_value_t = 7)]
    pub loads: usize,
    /// The release bundle the client section measures (`cargo xtask build` makes it).
    #[arg(long, env = "DUPLEX_DIST", default_value = "dist")]
    pub dist: PathBuf,
    #[arg(long, env = "CHROMEDRIVER", default_value = "/usr/bin/chromedriver")]
    pub chromedriver: PathBuf,
    #[arg(long, env = "CHROMIUM", default_value = "/usr/bin/chromium")]
    pub chromium: PathBuf,
}

/// The JSON file's contents.
#[derive(Debug, Serialize)]
struct Results<'a> {
    command: Vec<String>,
    unix_time: u64,
    quick: bool,
    repeat: usize,
    /// `None` when the servers section did not run.
    sizes: Option<&'a Sizes>,
    machine: Machine,
    servers: Vec<ServerStatus>,
    duplex_recovery: bool,
    bare_read_buffer: usize,
    samples: &'a [Sample],
    medians: &'a [report::Median],
    /// `None` when the chaos section did not run.
    chaos: Option<&'a ChaosResults>,
    /// `None` when the client section did not run.
    client: Option<&'a ClientResults>,
}

#[derive(Debug, Serialize)]
struct Machine {
    cpus: usize,
    kernel: String,
}

#[derive(Debug, Serialize)]
struct ServerStatus {
    name: &'static str,
    measured: bool,
    missing_because: Option<String>,
}

/// What the servers section measured.
struct ServersRun {
    sizes: Sizes,
    repeat: usize,
    statuses: Vec<(Server, Option<String>)>,
    samples: Vec<Sample>,
    medians: Vec<report::Median>,
    /// duplex, when it could be prepared (the client section reuses it).
    duplex: Option<Launch>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<bool> {
    let root = build::workspace_root();
    let out = root.join(&args.out);
    let options = PeerOptions {
        root: root.clone(),
        dist: root.join(&args.dist),
        no_build: args.no_build,
        duplex_recovery: args.duplex_recovery,
        bare_read_buffer: args.bare_read_buffer,
    };
    let wants = |section| args.only.is_none_or(|only| only == section);
    let mut passed = true;

    if args.only == Some(Section::Cluster) {
        println!("bench: cluster section");
        let (sizes, repeat) = if args.quick {
            (cluster::ClusterSizes::quick(), 1)
        } else {
            (cluster::ClusterSizes::full(), args.repeat.max(1))
        };
        let runs = cluster::run(&options, sizes, repeat, &out).await?;
        let table = cluster::markdown(&runs, sizes);
        println!();
        println!("{table}");
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        std::fs::write(out.join("cluster.md"), &table)?;
        std::fs::write(
            out.join("cluster.json"),
            serde_json::to_string_pretty(&runs)?,
        )?;
        println!(
            "bench: cluster results in {}",
            out.join("cluster.md").display()
        );
        return Ok(!runs.is_empty() && runs.iter().all(|r| r.errors.is_empty()));
    }

    let servers = if wants(Section::Servers) {
        Some(run_servers(&args, &options, &out).await?)
    } else {
        None
    };

    let chaos = if wants(Section::Chaos) && !args.no_chaos {
        println!("bench: chaos section");
        let (sizes, repeat) = if args.quick {
            (ChaosSizes::quick(), 1)
        } else {
            (ChaosSizes::full(), args.repeat.max(1))
        };
        let results = chaos::run(&options, &args.servers, sizes, repeat, &out).await?;
        // A failed measurement fails the run, as does a section asked for alone that
        // measured nothing; a server that misses items does not (the table says so).
        if results.failed() || (args.only == Some(Section::Chaos) && results.runs.is_empty()) {
            passed = false;
        }
        Some(results)
    } else {
        None
    };

    let client = if wants(Section::Client) && !args.no_client {
        println!("bench: client section");
        let launch = match servers.as_ref().and_then(|s| s.duplex.clone()) {
            Some(launch) => Ok(launch),
            None => match peers::prepare(Server::Duplex, &options) {
                Prepared::Ready(launch) => Ok(launch),
                Prepared::Missing(why) => Err(why),
            },
        };
        let client_options = ClientOptions {
            dist: options.dist.clone(),
            loads: if args.quick { 3 } else { args.loads.max(1) },
            chromedriver: args.chromedriver.clone(),
            chromium: args.chromium.clone(),
            log: out.join("logs/client-duplex.log"),
        };
        let results = client::run(&client_options, launch).await;
        // A failed measurement fails the run; a skipped one only when it was asked for alone.
        if results.page_load.is_none()
            && (!results.page_load_skipped || args.only == Some(Section::Client))
        {
            passed = false;
        }
        Some(results)
    } else {
        None
    };

    let mut table = String::new();
    if let Some(s) = &servers {
        table.push_str(&report::markdown(
            &s.sizes,
            &s.statuses,
            &s.medians,
            s.repeat,
        ));
    }
    if let Some(c) = &chaos {
        if !table.is_empty() {
            table.push('\n');
        }
        table.push_str(&report::chaos_markdown(c));
    }
    if let Some(c) = &client {
        if !table.is_empty() {
            table.push('\n');
        }
        table.push_str(&report::client_markdown(c));
    }
    println!();
    println!("{table}");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let results = Results {
        command: std::env::args().collect(),
        unix_time: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        quick: args.quick,
        repeat: servers.as_ref().map_or(0, |s| s.repeat),
        sizes: servers.as_ref().map(|s| &s.sizes),
        machine: Machine {
            cpus: std::thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
        },
        servers: servers
            .iter()
            .flat_map(|s| &s.statuses)
            .map(|(s, why)| ServerStatus {
                name: s.name(),
                measured: why.is_none(),
                missing_because: why.clone(),
            })
            .collect(),
        duplex_recovery: args.duplex_recovery,
        bare_read_buffer: args.bare_read_buffer,
        samples: servers.as_ref().map_or(&[], |s| &s.samples),
        medians: servers.as_ref().map_or(&[], |s| &s.medians),
        chaos: chaos.as_ref(),
        client: client.as_ref(),
    };
    let json = serde_json::to_string_pretty(&results).context("results serialize")?;
    std::fs::write(out.join("results.json"), json)?;
    std::fs::write(out.join("results.md"), &table)?;
    println!(
        "bench: raw results in {}",
        out.join("results.json").display()
    );
    Ok(passed)
}

/// The servers side by side: every scenario on every server, `repeat` times.
async fn run_servers(
    args: &BenchArgs,
    options: &PeerOptions,
    out: &std::path::Path,
) -> anyhow::Result<ServersRun> {
    let sizes = if args.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let repeat = if args.quick { 1 } else { args.repeat.max(1) };
    let largest = sizes.connect.iter().copied().max().unwrap_or(0);
    let fd_limit = sys::raise_fd_limit()?;
    sys::check_fd_budget(fd_limit, largest as u64 + 128)?;
    let selected: Vec<Server> = if args.servers.is_empty() {
        Server::ALL.to_vec()
    } else {
        Server::ALL
            .into_iter()
            .filter(|s| args.servers.contains(s))
            .collect()
    };
    let mut ready = Vec::new();
    let mut statuses: Vec<(Server, Option<String>)> = Vec::new();
    for server in selected {
        println!("bench: preparing {}", server.name());
        match peers::prepare(server, options) {
            Prepared::Ready(launch) => {
                ready.push((server, launch));
                statuses.push((server, None));
            }
            Prepared::Missing(why) => {
                println!("bench: {} cannot run: {why}", server.name());
                statuses.push((server, Some(why)));
            }
        }
    }
    anyhow::ensure!(!ready.is_empty(), "no server could be prepared");

    let sources = Arc::new(Sources::new(Sources::default_per_address()));
    let mut samples: Vec<Sample> = Vec::new();
    for rep in 0..repeat {
        for (server, launch) in &ready {
            let log = out.join(format!("logs/{}-{rep}.log", server.name()));
            let mut process = launch.start(*server, &log)?;
            process
                .wait_ready(Duration::from_secs(30))
                .await
                .with_context(|| format!("starting {}", server.name()))?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let chosen = sizes.scenarios().into_iter().enumerate().filter(|(_, s)| {
                args.scenarios.is_empty()
                    || args
                        .scenarios
                        .iter()
                        .any(|p| s.key().starts_with(p.as_str()))
            });
            for (i, scenario) in chosen {
                let target = Target {
                    server: &process,
                    dialect: server.dialect(),
                    sources: &sources,
                    sizes: &sizes,
                };
                let sample = match scenarios::run(&target, rep, &scenario, i == 0).await {
                    Ok(sample) => sample,
                    Err(e) => Sample::failed(server.name(), rep, &scenario, &e),
                };
                println!("{}", summary(&sample));
                samples.push(sample);
                // Let closed connections finish on the server's side.
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Err(e) = process.check_alive() {
                    println!("bench: {e:#}");
                    break;
                }
            }
        }
    }
    let medians = report::medians(&samples);
    let duplex = ready
        .iter()
        .find(|(s, _)| *s == Server::Duplex)
        .map(|(_, launch)| launch.clone());
    Ok(ServersRun {
        sizes,
        repeat,
        statuses,
        samples,
        medians,
        duplex,
    })
}

/// One line per sample, as the run goes.
fn summary(s: &Sample) -> String {
    let figures: Vec<String> = s
        .metrics
        .iter()
        .map(|(k, v)| format!("{k}={v:.1}"))
        .collect();
    let mut line = format!(
        "bench: {:<12} run {} {:<18} {}  ooo={} missing={} failed={} cpu server={:.0}% gen={:.0}% softirq={:.0}% other={:.0}%",
        s.server,
        s.rep + 1,
        s.scenario,
        figures.join(" "),
        s.out_of_order,
        s.missing,
        s.failed_connections,
        s.server_cpu_pct,
        s.generator_cpu_pct,
        s.softirq_cpu_pct,
        s.other_cpu_pct
    );
    if let Some(e) = &s.first_error {
        line.push_str(&format!("  first error: {e}"));
    }
    line
}
