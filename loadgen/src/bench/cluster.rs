//! The cluster section (`--only cluster`): fan-out across three servers on one
//! Redis. For duplex and for Node socket.io 4 with
//! `@socket.io/redis-streams-adapter` in turn, a fresh `redis-server` on
//! loopback and three servers of that kind on it; subscribers spread over the
//! three, one publisher on the first. It reports deliveries per second, what
//! was missing or out of order, and the CPU of the three servers and of Redis
//! per delivery, then the latency of one publish to a subscriber on each server,
//! with the same generator for both, both with connection state recovery.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::join_all;
use serde::Serialize;
use tokio::time::sleep_until;

use super::peers::{self, PeerOptions, Prepared, Server};
use super::scenarios::{publish, receive_news};
use crate::child::ServerProcess;
use crate::conn::{Conn, Incoming, published_text};
use crate::source::Sources;
use crate::sys;

const REDIS_SERVER: &str = "/usr/bin/redis-server";
const NODES: usize = 3;

/// How big a run is.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ClusterSizes {
    pub subscribers: usize,
    pub publishes: usize,
}

impl ClusterSizes {
    pub fn full() -> Self {
        ClusterSizes {
            subscribers: 999,
            publishes: 1000,
        }
    }

    pub fn quick() -> Self {
        ClusterSizes {
            subscribers: 99,
            publishes: 100,
        }
    }
}

/// One run of one kind of server.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterRun {
    pub server: &'static str,
    pub deliveries_per_s: f64,
    pub missing: u64,
    pub out_of_order: u64,
    /// CPU of the three servers and of Redis per delivery, in nanoseconds.
    pub servers_cpu_ns_per_delivery: f64,
    pub redis_cpu_ns_per_delivery: f64,
    /// One publish at a time: from the publisher's write to the subscriber's
    /// read, on the other servers (cross-node) and on the publisher's own
    /// server, in microseconds.
    pub cross_p50_us: f64,
    pub cross_p99_us: f64,
    pub local_p50_us: f64,
    pub errors: Vec<String>,
}

/// Publishes timed one at a time, for the latency figures.
const LATENCY_SAMPLES: u64 = 500;
/// Between two timed publishes: the cluster is idle when each is sent.
const LATENCY_PAUSE: Duration = Duration::from_millis(2);

/// A `redis-server` on a free loopback port, without persistence.
struct Redis {
    child: Child,
    port: u16,
}

impl Redis {
    fn start() -> anyhow::Result<Redis> {
        anyhow::ensure!(
            Path::new(REDIS_SERVER).exists(),
            "{REDIS_SERVER} is missing (apt-get install redis-server)"
        );
        let port = sys::free_port()?;
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "redis-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Redis { child, port })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the section for duplex and Node, `repeat` times each, alternating.
pub async fn run(
    options: &PeerOptions,
    sizes: ClusterSizes,
    repeat: usize,
    out: &Path,
) -> anyhow::Result<Vec<ClusterRun>> {
    let sources = Arc::new(Sources::new(Sources::default_per_address()));
    // Both with connection state recovery (a 2 minute window), as a cluster
    // that loses nothing across servers runs: duplex's default, Node's option.
    let options = PeerOptions {
        duplex_recovery: true,
        ..options.clone()
    };
    let mut runs = Vec::new();
    for rep in 0..repeat {
        for server in [Server::Duplex, Server::Node] {
            let launch = match peers::prepare(server, &options) {
                Prepared::Ready(launch) => launch,
                Prepared::Missing(why) => {
                    println!("bench: cluster: {} cannot run: {why}", server.name());
                    continue;
                }
            };
            let redis = Redis::start()?;
            let mut args = vec!["--redis".to_owned(), redis.url()];
            if server == Server::Node {
                args.push("--recovery".to_owned());
            }
            let launch = launch.with_args(&args);
            let mut nodes = Vec::new();
            for i in 0..NODES {
                let log = out.join(format!("logs/cluster-{}-{rep}-{i}.log", server.name()));
                nodes.push(launch.start(server, &log)?);
            }
            for node in &mut nodes {
                node.wait_ready(Duration::from_secs(30)).await?;
            }
            // Let every node's stream reader start before the first publish.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let mut run = fanout(server, &nodes, redis.child.id(), &sources, sizes).await;
            if let Ok(run) = &mut run {
                match latency(server, &nodes, &sources).await {
                    Ok(figures) => {
                        [run.cross_p50_us, run.cross_p99_us, run.local_p50_us] = figures;
                    }
                    Err(e) => run.errors.push(format!("latency: {e:#}")),
                }
            }
            match run {
                Ok(run) => {
                    println!(
                        "bench: cluster {:<12} run {} deliveries_per_s={:.0} missing={} ooo={} \
                         servers_cpu_ns={:.0} redis_cpu_ns={:.0} cross_p50_us={:.0} \
                         cross_p99_us={:.0} local_p50_us={:.0}",
                        run.server,
                        rep + 1,
                        run.deliveries_per_s,
                        run.missing,
                        run.out_of_order,
                        run.servers_cpu_ns_per_delivery,
                        run.redis_cpu_ns_per_delivery,
                        run.cross_p50_us,
                        run.cross_p99_us,
                        run.local_p50_us
                    );
                    runs.push(run);
                }
                Err(e) => println!(
                    "bench: cluster {} run {} failed: {e:#}",
                    server.name(),
                    rep + 1
                ),
            }
        }
    }
    Ok(runs)
}

async fn fanout(
    server: Server,
    nodes: &[ServerProcess],
    redis_pid: u32,
    sources: &Arc<Sources>,
    sizes: ClusterSizes,
) -> anyhow::Result<ClusterRun> {
    let dialect = server.dialect();
    let addrs: Vec<SocketAddr> = nodes.iter().map(ServerProcess::addr).collect();
    let mut errors = Vec::new();
    let mut subscribers = Vec::with_capacity(sizes.subscribers);
    for i in 0..sizes.subscribers {
        match Conn::open(dialect, addrs[i % NODES], sources).await {
            Ok(conn) => subscribers.push(conn),
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    let publisher = Conn::open(dialect, addrs[0], sources).await?;
    let expected = sizes.publishes as u64;
    let subscribed = subscribers.len() as u64;
    let receivers: Vec<_> = subscribers
        .into_iter()
        .map(|conn| tokio::spawn(receive_news(conn, expected)))
        .collect();
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let publishing = tokio::spawn(publish(publisher, expected, start));
    sleep_until(start).await;
    let cpu_before: Vec<Duration> = nodes
        .iter()
        .map(ServerProcess::cpu_time)
        .collect::<anyhow::Result<_>>()?;
    let redis_before = sys::cpu_time(Some(redis_pid))?;
    let started = tokio::time::Instant::now();
    let mut received = 0;
    let mut out_of_order = 0;
    let mut last = started;
    for task in receivers {
        let s = task.await?;
        received += s.received;
        out_of_order += s.out_of_order;
        if let Some(at) = s.last {
            last = last.max(at);
        }
        if let Some(e) = s.error {
            errors.push(e);
        }
    }
    let servers_cpu: Duration = nodes
        .iter()
        .zip(cpu_before)
        .map(|(node, before)| node.cpu_time().map(|now| now.saturating_sub(before)))
        .sum::<anyhow::Result<Duration>>()?;
    let redis_cpu = sys::cpu_time(Some(redis_pid))?.saturating_sub(redis_before);
    if let Err(e) = publishing.await? {
        errors.push(format!("publisher: {e:#}"));
    }
    let time = last.duration_since(started).as_secs_f64().max(1e-9);
    let per_delivery = |cpu: Duration| cpu.as_nanos() as f64 / (received.max(1) as f64);
    Ok(ClusterRun {
        server: server.name(),
        deliveries_per_s: received as f64 / time,
        missing: (subscribed * expected).saturating_sub(received)
            + (sizes.subscribers as u64 - subscribed) * expected,
        out_of_order,
        servers_cpu_ns_per_delivery: per_delivery(servers_cpu),
        redis_cpu_ns_per_delivery: per_delivery(redis_cpu),
        cross_p50_us: f64::NAN,
        cross_p99_us: f64::NAN,
        local_p50_us: f64::NAN,
        errors,
    })
}

/// Cross-node latency: a publisher on the first server, a subscriber on each
/// server; [`LATENCY_SAMPLES`] publishes, each sent once the previous one
/// reached all three. Returns the cross-node p50 and p99 and the same-node
/// p50, in microseconds.
async fn latency(
    server: Server,
    nodes: &[ServerProcess],
    sources: &Arc<Sources>,
) -> anyhow::Result<[f64; 3]> {
    let dialect = server.dialect();
    let mut publisher = Conn::open(dialect, nodes[0].addr(), sources).await?;
    let mut subscribers = Vec::new();
    for node in nodes {
        subscribers.push(Conn::open(dialect, node.addr(), sources).await?);
    }
    let (mut cross, mut local) = (Vec::new(), Vec::new());
    for n in 0..LATENCY_SAMPLES {
        tokio::time::sleep(LATENCY_PAUSE).await;
        let sent = tokio::time::Instant::now();
        publisher.queue_publish(published_text(n))?;
        publisher.flush().await?;
        // Each subscriber's read timed on its own, all waited for at once.
        let arrivals = join_all(subscribers.iter_mut().map(|subscriber| async move {
            wait_news(subscriber, n).await?;
            anyhow::Ok(sent.elapsed().as_secs_f64() * 1e6)
        }))
        .await;
        for (i, took) in arrivals.into_iter().enumerate() {
            if i == 0 { &mut local } else { &mut cross }.push(took?);
        }
        // The publisher gets its own news too: read it, or its socket fills.
        wait_news(&mut publisher, n).await?;
    }
    Ok([
        percentile(&mut cross, 0.50),
        percentile(&mut cross, 0.99),
        percentile(&mut local, 0.50),
    ])
}

/// Reads until news item `n` (earlier ones are skipped), at most 5 s.
async fn wait_news(conn: &mut Conn, n: u64) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Incoming::News(k) = conn.next().await?
                && k >= n
            {
                return Ok(());
            }
        }
    })
    .await
    .with_context(|| format!("news item {n} did not come within 5 s"))?
}

/// The `q` quantile of `values` (sorted here), NaN when empty.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 * q).ceil() as usize).clamp(1, values.len()) - 1;
    values[index]
}

/// One figure of a run.
type Figure = fn(&ClusterRun) -> f64;

/// The section's table: medians per server and duplex/Node.
pub fn markdown(runs: &[ClusterRun], sizes: ClusterSizes) -> String {
    let median = |server: &str, f: Figure| -> Option<f64> {
        let mut v: Vec<f64> = runs
            .iter()
            .filter(|r| r.server == server)
            .map(f)
            .filter(|v| !v.is_nan())
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(v[v.len() / 2])
    };
    let mut out = format!(
        "Cluster: {} subscribers spread over {NODES} servers on one Redis, {} publishes on the first; \
         then {LATENCY_SAMPLES} publishes one at a time, timed to a subscriber on each server \
         (medians of the runs)\n\n| figure | duplex | node | duplex/node |\n|---|--:|--:|--:|\n",
        sizes.subscribers, sizes.publishes
    );
    let rows: [(&str, Figure); 6] = [
        ("deliveries/s ↑", |r| r.deliveries_per_s),
        ("servers' CPU per delivery (ns) ↓", |r| {
            r.servers_cpu_ns_per_delivery
        }),
        ("Redis CPU per delivery (ns) ↓", |r| {
            r.redis_cpu_ns_per_delivery
        }),
        ("cross-node latency p50 (µs) ↓", |r| r.cross_p50_us),
        ("cross-node latency p99 (µs) ↓", |r| r.cross_p99_us),
        ("same-node latency p50 (µs) ↓", |r| r.local_p50_us),
    ];
    for (name, f) in rows {
        let (d, n) = (median("duplex", f), median("node", f));
        let cell = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0}"));
        let ratio = match (d, n) {
            (Some(d), Some(n)) if n > 0.0 => format!("{:.2}", d / n),
            _ => "–".to_owned(),
        };
        out.push_str(&format!(
            "| {name} | {} | {} | {ratio} |\n",
            cell(d),
            cell(n)
        ));
    }
    let total = |server: &str, f: fn(&ClusterRun) -> u64| -> u64 {
        runs.iter().filter(|r| r.server == server).map(f).sum()
    };
    out.push_str(&format!(
        "| missing / out of order (all runs) | {} / {} | {} / {} | |\n",
        total("duplex", |r| r.missing),
        total("duplex", |r| r.out_of_order),
        total("node", |r| r.missing),
        total("node", |r| r.out_of_order)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(server: &'static str, rate: f64, missing: u64) -> ClusterRun {
        ClusterRun {
            server,
            deliveries_per_s: rate,
            missing,
            out_of_order: 0,
            servers_cpu_ns_per_delivery: 1e9 / rate,
            redis_cpu_ns_per_delivery: 10.0,
            cross_p50_us: 300.0,
            cross_p99_us: 900.0,
            local_p50_us: 100.0,
            errors: Vec::new(),
        }
    }

    #[test]
    fn the_table_gives_medians_ratios_and_every_loss() {
        let runs = [
            run("duplex", 3.0e6, 0),
            run("duplex", 1.0e6, 0),
            run("duplex", 2.0e6, 0),
            run("node", 2.0e5, 7),
        ];
        let table = markdown(&runs, ClusterSizes::full());
        assert!(
            table.contains("| deliveries/s ↑ | 2000000 | 200000 | 10.00 |"),
            "{table}"
        );
        assert!(table.contains("| 0 / 0 | 7 / 0 |"), "{table}");
        assert!(
            table.contains("| cross-node latency p99 (µs) ↓ | 900 | 900 | 1.00 |"),
            "{table}"
        );
        let none = markdown(&runs[..1], ClusterSizes::quick());
        assert!(none.contains("| 3000000 | – | – |"), "{none}");
    }
}
