//! The soak (issue 5): N idle Socket.IO connections kept alive by heartbeats for
//! a while, then all closed; the server's memory must come back near where it
//! started.
//!
//! Steps: build and start the release server on a free port with short
//! heartbeats; sample its RSS (start); open the connections with bounded
//! concurrency, each completing the Engine.IO and Socket.IO handshakes and reading
//! the greeting; hold them for `--seconds`, answering every ping; then each one
//! proves it is alive with one ack round trip, leaves and closes; wait for the
//! server's RSS to settle (after). The peak is sampled every 500 ms throughout.
//!
//! Pass rule: every connection connected, answered its pings, completed its final
//! round trip, and `after <= start + 25% * (peak - start) + 16 MiB`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::child::{RssSampler, ServerProcess};
use crate::conn::SioConn;
use crate::source::Sources;
use crate::{build, sys};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// Connections to open.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Seconds to keep them open once all are connected.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// The server binary; built with `cargo build --release -p duplex-server`
    /// first unless `--no-build`.
    #[arg(long, default_value = "target/release/duplex-server")]
    pub server_bin: PathBuf,
    /// Do not (re)build the server binary.
    #[arg(long)]
    pub no_build: bool,
    /// The server's heartbeat interval, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub ping_interval: u64,
    /// The server's heartbeat timeout, in milliseconds.
    #[arg(long, default_value_t = 5_000)]
    pub ping_timeout: u64,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Connections per loopback source address (127.0.0.1, 127.0.0.2, ...);
    /// default: a third of the ephemeral port range.
    #[arg(long)]
    pub per_address: Option<usize>,
}

/// How one connection fared.
#[derive(Debug, Default)]
struct Outcome {
    /// Why it failed, if it did (connect, while held, or the final round trip).
    error: Option<String>,
    pongs: u64,
    final_rtt: Option<Duration>,
}

pub async fn run(args: SoakArgs) -> anyhow::Result<bool> {
    let fd_limit = sys::raise_fd_limit()?;
    // Ours: one socket per connection plus a few; the server's (it inherits the
    // limit): the same.
    sys::check_fd_budget(fd_limit, args.connections as u64 + 64)?;
    let root = build::workspace_root();
    let server_bin = root.join(&args.server_bin);
    if !args.no_build {
        build::cargo(&root, &["build", "--release", "-p", "duplex-server"])?;
    }
    anyhow::ensure!(
        server_bin.is_file(),
        "no server binary at {}: build it with `cargo build --release -p duplex-server`",
        server_bin.display()
    );

    let port = sys::free_port()?;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut cmd = Command::new(&server_bin);
    cmd.arg("--addr")
        .arg(addr.to_string())
        .arg("--ping-interval")
        .arg(args.ping_interval.to_string())
        .arg("--ping-timeout")
        .arg(args.ping_timeout.to_string())
        .arg("--dist")
        .arg(root.join("dist"));
    if std::env::var_os("RUST_LOG").is_none() {
        // Info logs a line per connection: 10,000 lines would be measured too.
        cmd.env("RUST_LOG", "warn");
    }
    let log = root.join("target/loadgen/soak-server.log");
    let mut server = ServerProcess::spawn("duplex-server", cmd, addr, &log)?;
    server.wait_ready(Duration::from_secs(20)).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_start = server.rss_kib()?;
    let sampler = RssSampler::start(server.pid(), Duration::from_millis(500));
    println!(
        "soak: {} connections to {} (pid {}, log {}), held {} s, ping {}+{} ms; RSS at start {:.1} MiB",
        args.connections,
        addr,
        server.pid(),
        log.display(),
        args.seconds,
        args.ping_interval,
        args.ping_timeout,
        sys::mib(rss_start)
    );

    let sources = Arc::new(Sources::new(
        args.per_address
            .unwrap_or_else(Sources::default_per_address),
    ));
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let stop = CancellationToken::new();
    let alive = Arc::new(AtomicUsize::new(0));
    let (connected_tx, mut connected_rx) = mpsc::channel::<bool>(args.connections.max(1));
    let connect_start = Instant::now();
    let tasks: Vec<_> = (0..args.connections)
        .map(|i| {
            let sources = Arc::clone(&sources);
            let gate = Arc::clone(&gate);
            let stop = stop.clone();
            let alive = Arc::clone(&alive);
            let connected_tx = connected_tx.clone();
            tokio::spawn(async move {
                let opened = {
                    let _permit = gate.acquire().await.expect("the semaphore is never closed");
                    connect(&sources, addr).await
                };
                let _ = connected_tx.send(opened.is_ok()).await;
                drop(connected_tx);
                match opened {
                    Ok(conn) => {
                        alive.fetch_add(1, Ordering::Relaxed);
                        let outcome = hold(conn, i as u64, &stop).await;
                        alive.fetch_sub(1, Ordering::Relaxed);
                        outcome
                    }
                    Err(e) => Outcome {
                        error: Some(format!("connect: {e:#}")),
                        ..Outcome::default()
                    },
                }
            })
        })
        .collect();
    drop(connected_tx);
    let mut connected = 0usize;
    while let Some(ok) = connected_rx.recv().await {
        connected += usize::from(ok);
    }
    let connect_time = connect_start.elapsed();
    let connect_rate = connected as f64 / connect_time.as_secs_f64();
    println!(
        "soak: {connected}/{} connected in {:.2} s ({connect_rate:.0}/s) from {} source address(es); RSS {:.1} MiB",
        args.connections,
        connect_time.as_secs_f64(),
        sources.addresses_used(),
        sys::mib(server.rss_kib()?)
    );

    let hold_start = Instant::now();
    let hold_for = Duration::from_secs(args.seconds);
    while hold_start.elapsed() < hold_for {
        let left = hold_for.saturating_sub(hold_start.elapsed());
        tokio::time::sleep(left.min(Duration::from_secs(10))).await;
        server.check_alive()?;
        println!(
            "soak: {:>3} s held, {} alive, RSS {:.1} MiB",
            hold_start.elapsed().as_secs(),
            alive.load(Ordering::Relaxed),
            sys::mib(server.rss_kib()?)
        );
    }
    let rss_held = server.rss_kib()?;
    stop.cancel();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await.context("a connection task panicked")?);
    }
    println!("soak: all closed; waiting for the server's memory to settle");
    let rss_peak = sampler.peak_with(rss_held);
    let rss_after = settle(&server).await?;
    let rss_peak = sampler.peak_with(rss_peak);
    server.check_alive()?;
    drop(sampler);
    drop(server);

    let report = Report::new(
        &args,
        rss_start,
        rss_peak,
        rss_after,
        connect_rate,
        &outcomes,
        sources.addresses_used(),
    );
    report.print();
    Ok(report.passed())
}

async fn connect(sources: &Sources, addr: std::net::SocketAddr) -> anyhow::Result<SioConn> {
    let stream = sources.connect(addr).await.context("tcp connect")?;
    tokio::time::timeout(Duration::from_secs(30), SioConn::open(stream, addr))
        .await
        .context("handshake timed out")?
}

/// Keeps `conn` alive (answering pings) until `stop`, then checks it with one ack
/// round trip and closes it.
async fn hold(mut conn: SioConn, seq: u64, stop: &CancellationToken) -> Outcome {
    conn.count_pongs();
    let mut outcome = Outcome::default();
    loop {
        match conn.next_event_until(Some(stop)).await {
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                outcome.pongs = conn.pongs();
                outcome.error = Some(format!("while held: {e:#}"));
                return outcome;
            }
        }
    }
    match conn.ack_round_trip(seq, Duration::from_secs(30)).await {
        Ok(rtt) => outcome.final_rtt = Some(rtt),
        Err(e) => outcome.error = Some(format!("final round trip: {e:#}")),
    }
    outcome.pongs = conn.pongs();
    conn.close(Duration::from_secs(5)).await;
    outcome
}

/// Samples RSS every 500 ms, at least 3 s and at most 20 s, until four samples in
/// a row (2 s) stay within 1 MiB; returns the last.
async fn settle(server: &ServerProcess) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut recent: Vec<u64> = Vec::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss = server.rss_kib()?;
        recent.push(rss);
        let window = &recent[recent.len().saturating_sub(4)..];
        let steady = window.len() == 4
            && window.iter().max().copied().unwrap_or(0)
                - window.iter().min().copied().unwrap_or(0)
                <= 1024;
        let waited = start.elapsed();
        if (steady && waited >= Duration::from_secs(3)) || waited >= Duration::from_secs(20) {
            return Ok(rss);
        }
    }
}

/// The soak's figures and verdict.
#[derive(Debug)]
struct Report {
    connections: usize,
    seconds: u64,
    ping_interval: u64,
    addresses: usize,
    rss_start: u64,
    rss_peak: u64,
    rss_after: u64,
    connect_rate: f64,
    failures: usize,
    first_failures: Vec<String>,
    pongs_min: u64,
    pongs_mean: f64,
    pongs_expected: u64,
    rtt_p50: Duration,
    rtt_max: Duration,
}

impl Report {
    fn new(
        args: &SoakArgs,
        rss_start: u64,
        rss_peak: u64,
        rss_after: u64,
        connect_rate: f64,
        outcomes: &[Outcome],
        addresses: usize,
    ) -> Report {
        // Each connection was open for at least `seconds`: it saw at least
        // floor(seconds / interval) pings, less one for the phase of the timer.
        let pongs_expected = (args.seconds * 1000 / args.ping_interval.max(1)).saturating_sub(1);
        let mut failures: Vec<String> = outcomes.iter().filter_map(|o| o.error.clone()).collect();
        let short = outcomes
            .iter()
            .filter(|o| o.error.is_none() && o.pongs < pongs_expected)
            .count();
        if short > 0 {
            failures.push(format!(
                "{short} connection(s) answered fewer than {pongs_expected} pings"
            ));
        }
        let mut rtts: Vec<Duration> = outcomes.iter().filter_map(|o| o.final_rtt).collect();
        rtts.sort_unstable();
        let pongs: Vec<u64> = outcomes.iter().map(|o| o.pongs).collect();
        Report {
            connections: args.connections,
            seconds: args.seconds,
            ping_interval: args.ping_interval,
            addresses,
            rss_start,
            rss_peak,
            rss_after,
            connect_rate,
            failures: outcomes.iter().filter(|o| o.error.is_some()).count() + short,
            first_failures: failures.into_iter().take(5).collect(),
            pongs_min: pongs.iter().copied().min().unwrap_or(0),
            pongs_mean: pongs.iter().sum::<u64>() as f64 / pongs.len().max(1) as f64,
            pongs_expected,
            rtt_p50: rtts.get(rtts.len() / 2).copied().unwrap_or_default(),
            rtt_max: rtts.last().copied().unwrap_or_default(),
        }
    }

    /// The most RSS allowed after everyone left, in KiB.
    fn after_limit(&self) -> u64 {
        self.rss_start + self.rss_peak.saturating_sub(self.rss_start) / 4 + 16 * 1024
    }

    fn memory_ok(&self) -> bool {
        self.rss_after <= self.after_limit()
    }

    fn passed(&self) -> bool {
        self.failures == 0 && self.memory_ok()
    }

    fn print(&self) {
        let per_conn =
            self.rss_peak.saturating_sub(self.rss_start) as f64 / self.connections.max(1) as f64;
        println!();
        println!("| soak | |");
        println!("|---|---|");
        println!(
            "| connections | {} (from {} loopback source address(es)) |",
            self.connections, self.addresses
        );
        println!(
            "| held | {} s, server ping every {} ms |",
            self.seconds, self.ping_interval
        );
        println!("| connect rate | {:.0} connections/s |", self.connect_rate);
        println!("| RSS start | {:.1} MiB |", sys::mib(self.rss_start));
        println!("| RSS peak | {:.1} MiB |", sys::mib(self.rss_peak));
        println!("| RSS after | {:.1} MiB |", sys::mib(self.rss_after));
        println!("| RSS per connection at peak | {per_conn:.1} KiB |");
        println!(
            "| pings answered per connection | min {}, mean {:.1} (at least {} expected) |",
            self.pongs_min, self.pongs_mean, self.pongs_expected
        );
        println!(
            "| final ack round trip | p50 {:.1} ms, max {:.1} ms |",
            self.rtt_p50.as_secs_f64() * 1e3,
            self.rtt_max.as_secs_f64() * 1e3
        );
        println!("| failures | {} |", self.failures);
        println!(
            "| memory rule: after <= start + 25% (peak - start) + 16 MiB | {:.1} <= {:.1} MiB: {} |",
            sys::mib(self.rss_after),
            sys::mib(self.after_limit()),
            if self.memory_ok() { "pass" } else { "FAIL" }
        );
        for failure in &self.first_failures {
            println!("failure: {failure}");
        }
        println!("soak: {}", if self.passed() { "PASS" } else { "FAIL" });
    }
}
