//! The bench's scenarios, each run against a live server process and returning
//! one [`Sample`]: its figures, what arrived out of order or never arrived, and
//! the CPU the server and the generator used meanwhile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use crate::child::ServerProcess;
use crate::conn::{Conn, Dialect, Incoming, published_text};
use crate::source::Sources;
use crate::sys;

/// The sizes of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Sizes {
    /// Connection counts of the connect scenarios, largest first.
    pub connect: Vec<usize>,
    pub echo_clients: usize,
    pub echo_seconds: u64,
    /// Requests in flight per client in the pipelined echo.
    pub pipelined: usize,
    pub fanout_subscribers: usize,
    pub fanout_publishes: usize,
    /// Handshakes in flight at once while connecting.
    pub concurrency: usize,
}

impl Sizes {
    pub fn full() -> Sizes {
        Sizes {
            connect: vec![10_000, 1_000],
            echo_clients: 100,
            echo_seconds: 10,
            pipelined: 16,
            fanout_subscribers: 1_000,
            fanout_publishes: 1_000,
            concurrency: 256,
        }
    }

    pub fn quick() -> Sizes {
        Sizes {
            connect: vec![1_000, 200],
            echo_clients: 20,
            echo_seconds: 2,
            pipelined: 16,
            fanout_subscribers: 100,
            fanout_publishes: 100,
            concurrency: 128,
        }
    }

    /// The scenarios of a run, in the order they run on each server.
    pub fn scenarios(&self) -> Vec<Scenario> {
        let mut list: Vec<Scenario> = self.connect.iter().map(|&n| Scenario::Connect(n)).collect();
        list.push(Scenario::Echo {
            clients: self.echo_clients,
            in_flight: 1,
        });
        list.push(Scenario::Echo {
            clients: self.echo_clients,
            in_flight: self.pipelined,
        });
        list.push(Scenario::Fanout {
            subscribers: self.fanout_subscribers,
            publishes: self.fanout_publishes,
        });
        list
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Open N connections (handshakes and greeting); on the first (largest) one
    /// the server's RSS per idle connection is measured too.
    Connect(usize),
    /// `clients` clients, each keeping `in_flight` ack round trips going.
    Echo { clients: usize, in_flight: usize },
    /// `subscribers` clients and one publisher sending `publishes` publishes.
    Fanout {
        subscribers: usize,
        publishes: usize,
    },
}

impl Scenario {
    /// The scenario's key in results and tables.
    pub fn key(&self) -> String {
        match *self {
            Scenario::Connect(n) => format!("connect-{n}"),
            Scenario::Echo {
                clients,
                in_flight: 1,
            } => format!("echo-c{clients}"),
            Scenario::Echo { clients, in_flight } => format!("echo-c{clients}-x{in_flight}"),
            Scenario::Fanout {
                subscribers,
                publishes,
            } => format!("fanout-{subscribers}x{publishes}"),
        }
    }
}

/// One scenario's result on one server, one repetition.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub server: String,
    pub rep: usize,
    pub scenario: String,
    /// Figures: `conn_per_s`, `rss_per_conn_kib`, `rt_per_s`, `p50_us`, ...
    pub metrics: BTreeMap<String, f64>,
    /// Deliveries that came after a later one from the same stream.
    pub out_of_order: u64,
    /// Deliveries (acks, echoed events, news) that never came.
    pub missing: u64,
    /// Connections that failed (to open, or while in use).
    pub failed_connections: u64,
    pub first_error: Option<String>,
    /// Wall time of the measured part.
    pub wall_s: f64,
    /// CPU used over the measured part, in % of one core.
    pub server_cpu_pct: f64,
    pub generator_cpu_pct: f64,
    /// CPU of everything else on the machine meanwhile (other processes), in % of
    /// one core: well above zero, the figures were disturbed.
    pub other_cpu_pct: f64,
    /// CPU of interrupts and softirqs meanwhile (mostly the loopback network
    /// stack carrying the traffic), in % of one core.
    pub softirq_cpu_pct: f64,
}

impl Sample {
    /// The server's CPU time (user + system, the share of one core times the
    /// wall time) per operation: per connection, round trip or delivery. The
    /// efficiency figure, which stays comparable when the machine is saturated
    /// and every server's rate is capped by what the generator and the kernel
    /// leave it.
    fn derive_cpu_per_op(&mut self) {
        // The rate, the figure, and its units per second.
        for (rate, per_op, unit) in [
            ("conn_per_s", "server_cpu_us_per_conn", 1e6),
            ("rt_per_s", "server_cpu_us_per_rt", 1e6),
            ("deliveries_per_s", "server_cpu_ns_per_delivery", 1e9),
        ] {
            let Some(&rate) = self.metrics.get(rate) else {
                continue;
            };
            if rate > 0.0 && self.server_cpu_pct.is_finite() {
                let seconds = self.server_cpu_pct / 100.0 / rate;
                self.metrics.insert(per_op.into(), seconds * unit);
            }
        }
    }

    fn new(server: &str, rep: usize, scenario: &Scenario) -> Sample {
        Sample {
            server: server.to_owned(),
            rep,
            scenario: scenario.key(),
            metrics: BTreeMap::new(),
            out_of_order: 0,
            missing: 0,
            failed_connections: 0,
            first_error: None,
            wall_s: 0.0,
            server_cpu_pct: 0.0,
            generator_cpu_pct: 0.0,
            other_cpu_pct: 0.0,
            softirq_cpu_pct: 0.0,
        }
    }

    fn error(&mut self, e: String) {
        self.failed_connections += 1;
        self.first_error.get_or_insert(e);
    }

    /// A sample for a scenario that could not run at all.
    pub fn failed(server: &str, rep: usize, scenario: &Scenario, e: &anyhow::Error) -> Sample {
        let mut sample = Sample::new(server, rep, scenario);
        sample.first_error = Some(format!("{e:#}"));
        sample
    }
}

/// CPU of the server and of the generator over a measured interval.
struct CpuMeter {
    pid: u32,
    start: Instant,
    server: Duration,
    generator: Duration,
    machine: sys::MachineTime,
}

impl CpuMeter {
    fn start(server: &ServerProcess) -> anyhow::Result<CpuMeter> {
        Ok(CpuMeter {
            pid: server.pid(),
            start: Instant::now(),
            server: server.cpu_time()?,
            generator: sys::cpu_time(None)?,
            machine: sys::machine_time()?,
        })
    }

    fn finish(self, sample: &mut Sample) -> anyhow::Result<()> {
        let wall = self.start.elapsed();
        self.finish_over(sample, wall)
    }

    /// Reads the CPU the server and the generator used so far, as a share of
    /// `wall` (the part of the interval in which the work happened, when the end
    /// was spent waiting for deliveries that never came).
    /// The rest of the machine is read over the whole interval.
    fn finish_over(self, sample: &mut Sample, wall: Duration) -> anyhow::Result<()> {
        let elapsed = self.start.elapsed().as_secs_f64().max(1e-3);
        let wall = wall.as_secs_f64().max(1e-3);
        let server = sys::cpu_time(Some(self.pid))?.saturating_sub(self.server);
        let generator = sys::cpu_time(None)?.saturating_sub(self.generator);
        let machine = sys::machine_time()?;
        let tasks = machine.tasks.saturating_sub(self.machine.tasks);
        let interrupts = machine.interrupts.saturating_sub(self.machine.interrupts);
        sample.wall_s = wall;
        sample.other_cpu_pct =
            tasks.saturating_sub(server + generator).as_secs_f64() / elapsed * 100.0;
        sample.softirq_cpu_pct = interrupts.as_secs_f64() / elapsed * 100.0;
        sample.server_cpu_pct = server.as_secs_f64() / wall * 100.0;
        sample.generator_cpu_pct = generator.as_secs_f64() / wall * 100.0;
        Ok(())
    }
}

/// Where the scenarios connect and how.
pub struct Target<'a> {
    pub server: &'a ServerProcess,
    pub dialect: Dialect,
    pub sources: &'a Arc<Sources>,
    pub sizes: &'a Sizes,
}

impl Target<'_> {
    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Opens `n` connections, `concurrency` handshakes at a time; returns those
    /// that opened and the errors of the others.
    async fn open_many(&self, n: usize) -> (Vec<Conn>, Vec<String>) {
        let gate = Arc::new(Semaphore::new(self.sizes.concurrency.max(1)));
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let gate = Arc::clone(&gate);
                let sources = Arc::clone(self.sources);
                let (dialect, addr) = (self.dialect, self.addr());
                tokio::spawn(async move {
                    let _permit = gate.acquire().await.expect("the semaphore is never closed");
                    match timeout(Duration::from_secs(30), Conn::open(dialect, addr, &sources))
                        .await
                    {
                        Ok(opened) => opened.map_err(|e| format!("{e:#}")),
                        Err(_) => Err("handshake timed out after 30 s".to_owned()),
                    }
                })
            })
            .collect();
        let mut conns = Vec::with_capacity(n);
        let mut errors = Vec::new();
        for task in tasks {
            match task.await {
                Ok(Ok(conn)) => conns.push(conn),
                Ok(Err(e)) => errors.push(e),
                Err(e) => errors.push(format!("connection task failed: {e}")),
            }
        }
        (conns, errors)
    }
}

/// Runs `scenario` once.
pub async fn run(
    target: &Target<'_>,
    rep: usize,
    scenario: &Scenario,
    measure_memory: bool,
) -> anyhow::Result<Sample> {
    let mut sample = Sample::new(target.server.name(), rep, scenario);
    match *scenario {
        Scenario::Connect(n) => connect(target, n, measure_memory, &mut sample).await?,
        Scenario::Echo { clients, in_flight } => {
            echo(target, clients, in_flight, &mut sample).await?
        }
        Scenario::Fanout {
            subscribers,
            publishes,
        } => fanout(target, subscribers, publishes, &mut sample).await?,
    }
    sample.derive_cpu_per_op();
    Ok(sample)
}

async fn connect(
    target: &Target<'_>,
    n: usize,
    measure_memory: bool,
    sample: &mut Sample,
) -> anyhow::Result<()> {
    let rss_before = target.server.rss_kib()?;
    let meter = CpuMeter::start(target.server)?;
    let start = Instant::now();
    let (conns, errors) = target.open_many(n).await;
    let elapsed = start.elapsed().as_secs_f64();
    meter.finish(sample)?;
    sample
        .metrics
        .insert("conn_per_s".into(), conns.len() as f64 / elapsed);
    for e in errors {
        sample.error(e);
    }
    sample.missing = sample.failed_connections;
    if measure_memory {
        // Let the server finish whatever the handshakes left (greetings written,
        // buffers released) before reading its memory.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = target.server.rss_kib()?;
        sample.metrics.insert("rss_mib".into(), sys::mib(rss));
        sample.metrics.insert(
            "rss_per_conn_kib".into(),
            rss.saturating_sub(rss_before) as f64 / conns.len().max(1) as f64,
        );
    }
    drop(conns);
    Ok(())
}

/// What one echo client saw.
#[derive(Debug, Default)]
struct EchoStats {
    sent: u64,
    acks: u64,
    echoes: u64,
    in_window: u64,
    out_of_order: u64,
    latencies_us: Vec<u32>,
    error: Option<String>,
}

async fn echo(
    target: &Target<'_>,
    clients: usize,
    in_flight: usize,
    sample: &mut Sample,
) -> anyhow::Result<()> {
    let (conns, errors) = target.open_many(clients).await;
    for e in errors {
        sample.error(e);
    }
    let duration = Duration::from_secs(target.sizes.echo_seconds);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + duration;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(echo_client(conn, start, end, in_flight)))
        .collect();
    sleep_until(start).await;
    let meter = CpuMeter::start(target.server)?;
    let mut stats = Vec::with_capacity(tasks.len());
    for task in tasks {
        stats.push(task.await?);
    }
    meter.finish(sample)?;
    let mut latencies: Vec<u32> = Vec::new();
    let mut in_window = 0;
    for s in stats {
        in_window += s.in_window;
        sample.out_of_order += s.out_of_order;
        sample.missing += (s.sent - s.acks.min(s.sent)) + (s.sent - s.echoes.min(s.sent));
        latencies.extend(s.latencies_us);
        if let Some(e) = s.error {
            sample.error(e);
        }
    }
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        f64::from(latencies[i])
    };
    sample
        .metrics
        .insert("rt_per_s".into(), in_window as f64 / duration.as_secs_f64());
    sample.metrics.insert("p50_us".into(), pct(0.50));
    sample.metrics.insert("p99_us".into(), pct(0.99));
    sample.metrics.insert("p999_us".into(), pct(0.999));
    Ok(())
}

/// Keeps `in_flight` echo requests going from `start` to `end`, then waits (up
/// to 10 s) for the replies still due. Counts acks and echoed events that come
/// after a later one (out of order) and those that never come.
async fn echo_client(mut conn: Conn, start: Instant, end: Instant, in_flight: usize) -> EchoStats {
    let mut st = EchoStats::default();
    sleep_until(start).await;
    // Requests awaiting their ack, oldest first: (seq, sent at).
    let mut pending: std::collections::VecDeque<(u64, Instant)> = Default::default();
    let mut max_ack: Option<u64> = None;
    let mut max_echo: Option<u64> = None;
    let result: anyhow::Result<()> = async {
        for _ in 0..in_flight.max(1) {
            conn.queue_echo(st.sent)?;
            pending.push_back((st.sent, Instant::now()));
            st.sent += 1;
        }
        // One timer for the whole drain, not one per message.
        let drain = tokio::time::sleep_until(end + Duration::from_secs(10));
        tokio::pin!(drain);
        loop {
            let incoming = tokio::select! {
                biased;
                incoming = conn.next() => incoming,
                () = &mut drain => return Ok(()), // what is still due is missing
            };
            // One clock read per message: its arrival, and the next request's start.
            let now = Instant::now();
            match incoming? {
                Incoming::Ack(seq) => {
                    st.acks += 1;
                    if max_ack.is_some_and(|m| seq <= m) {
                        st.out_of_order += 1;
                    }
                    max_ack = max_ack.max(Some(seq));
                    if let Some(i) = pending.iter().position(|&(s, _)| s == seq) {
                        let (_, sent_at) = pending.remove(i).expect("index from position");
                        if now <= end {
                            st.in_window += 1;
                            let us = now.duration_since(sent_at).as_micros();
                            st.latencies_us.push(u32::try_from(us).unwrap_or(u32::MAX));
                        }
                    }
                    if now < end {
                        conn.queue_echo(st.sent)?;
                        pending.push_back((st.sent, now));
                        st.sent += 1;
                    }
                }
                Incoming::Echo(seq) => {
                    st.echoes += 1;
                    if max_echo.is_some_and(|m| seq <= m) {
                        st.out_of_order += 1;
                    }
                    max_echo = max_echo.max(Some(seq));
                }
                Incoming::News(_) | Incoming::Other => {}
            }
            // Done once the window is over and everything sent came back (the
            // last reply is a message: its time is `now`).
            if now >= end && st.acks >= st.sent && st.echoes >= st.sent {
                return Ok(());
            }
        }
    }
    .await;
    if let Err(e) = result {
        st.error = Some(format!("{e:#}"));
    }
    st
}

/// What one fan-out receiver saw.
#[derive(Debug, Default)]
pub(crate) struct FanoutStats {
    pub(crate) received: u64,
    pub(crate) out_of_order: u64,
    pub(crate) last: Option<Instant>,
    pub(crate) error: Option<String>,
}

async fn fanout(
    target: &Target<'_>,
    subscribers: usize,
    publishes: usize,
    sample: &mut Sample,
) -> anyhow::Result<()> {
    let (mut conns, errors) = target.open_many(subscribers + 1).await;
    for e in errors {
        sample.error(e);
    }
    anyhow::ensure!(!conns.is_empty(), "no connection opened");
    let publisher = conns.pop().expect("not empty");
    let expected = publishes as u64;
    let receivers: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::spawn(receive_news(conn, expected)))
        .collect();
    let start = Instant::now() + Duration::from_millis(200);
    let publishing = tokio::spawn(publish(publisher, expected, start));
    sleep_until(start).await;
    let meter = CpuMeter::start(target.server)?;
    let mut received = 0;
    let mut last = start;
    let subscribed = receivers.len() as u64;
    for task in receivers {
        let s = task.await?;
        received += s.received;
        sample.out_of_order += s.out_of_order;
        last = last.max(s.last.unwrap_or(start));
        if let Some(e) = s.error {
            sample.error(e);
        }
    }
    // Over the deliveries, not the 5 s wait for missing ones.
    meter.finish_over(sample, last.duration_since(start))?;
    match publishing.await? {
        Ok(own) => {
            if let Some(e) = own.error {
                sample.error(format!("publisher: {e}"));
            }
        }
        Err(e) => sample.error(format!("publisher: {e:#}")),
    }
    sample.missing = (subscribed * expected).saturating_sub(received)
        + (subscribers as u64 - subscribed) * expected;
    let time = last.duration_since(start).as_secs_f64().max(1e-9);
    sample
        .metrics
        .insert("deliveries_per_s".into(), received as f64 / time);
    sample.metrics.insert("time_ms".into(), time * 1e3);
    Ok(())
}

/// From `start`, publishes items 0 to `expected - 1` (flushed every 16), then
/// reads the news as a subscriber does: the publisher gets them too, and must
/// keep reading so that the server never finds its queue full.
pub(crate) async fn publish(
    mut publisher: Conn,
    expected: u64,
    start: Instant,
) -> anyhow::Result<FanoutStats> {
    sleep_until(start).await;
    for i in 0..expected {
        publisher.queue_publish(published_text(i))?;
        if i % 16 == 15 {
            publisher.flush().await?;
        }
    }
    publisher.flush().await?;
    Ok(receive_news(publisher, expected).await)
}

/// Reads news until `expected` published items came, or nothing came for 5 s.
///
/// Cheap per delivery, so that the generator measures the server: one idle timer
/// for the whole stream rather than a `timeout` per delivery (a timer-wheel entry
/// made and dropped a million times), and the clock read at every 64th delivery
/// and at the last expected one, not at each. When the timer fires with nothing
/// received since it last fired, the stream has been idle for at least 5 s. If
/// deliveries are missing, `last` is the time of the 64th-or-so before the end.
pub(crate) async fn receive_news(mut conn: Conn, expected: u64) -> FanoutStats {
    const IDLE: Duration = Duration::from_secs(5);
    let mut st = FanoutStats::default();
    let mut max: Option<u64> = None;
    let mut heard: u64 = 0;
    let mut heard_at_tick = 0;
    let idle = sleep(IDLE);
    tokio::pin!(idle);
    while st.received < expected {
        // Biased: a ready delivery never polls the timer. When the timer fires,
        // `next` is waiting on the socket (or on a write the server stopped
        // reading); dropping it there loses nothing: the socket keeps what it read.
        let next = tokio::select! {
            biased;
            next = conn.next() => next,
            () = &mut idle => {
                if heard == heard_at_tick {
                    break;
                }
                heard_at_tick = heard;
                idle.as_mut().reset(Instant::now() + IDLE);
                continue;
            }
        };
        heard += 1;
        match next {
            Err(e) => {
                st.error = Some(format!("{e:#}"));
                break;
            }
            Ok(Incoming::News(n)) => {
                st.received += 1;
                if st.received % 64 == 0 || st.received == expected {
                    st.last = Some(Instant::now());
                }
                if max.is_some_and(|m| n <= m) {
                    st.out_of_order += 1;
                }
                max = max.max(Some(n));
            }
            Ok(_) => {}
        }
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_per_operation_is_the_server_share_over_the_rate() {
        let echo = Scenario::Echo {
            clients: 100,
            in_flight: 1,
        };
        let mut sample = Sample::new("duplex", 0, &echo);
        sample.metrics.insert("rt_per_s".into(), 100_000.0);
        sample.server_cpu_pct = 95.0;
        sample.derive_cpu_per_op();
        let per_rt = sample.metrics["server_cpu_us_per_rt"];
        assert!((per_rt - 9.5).abs() < 1e-9, "{per_rt}");

        let fanout = Scenario::Fanout {
            subscribers: 1000,
            publishes: 1000,
        };
        let mut sample = Sample::new("duplex", 0, &fanout);
        sample
            .metrics
            .insert("deliveries_per_s".into(), 2_000_000.0);
        sample.server_cpu_pct = 100.0;
        sample.derive_cpu_per_op();
        let per_delivery = sample.metrics["server_cpu_ns_per_delivery"];
        assert!((per_delivery - 500.0).abs() < 1e-6, "{per_delivery}");
        assert!(!sample.metrics.contains_key("server_cpu_us_per_rt"));

        // A failed run (no rate) gets no figure.
        let mut sample = Sample::new("duplex", 0, &echo);
        sample.server_cpu_pct = 95.0;
        sample.derive_cpu_per_op();
        assert!(sample.metrics.is_empty());
    }
}
