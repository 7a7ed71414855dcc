//! A loopback TCP proxy that does to connections what users' networks do, for the chaos
//! tests (`tests/chaos.rs`) and the chaos section of duplex-loadgen's bench: clients
//! connect to it, it connects to the server, and in between it
//!
//! - delays every chunk it reads, from either side, by a random `0..=max_delay`, without
//!   ever reordering bytes: each direction has a release time that never goes backwards,
//!   and chunks wait in a queue until they are due;
//! - optionally throttles each direction of each connection to some bytes per second;
//! - cuts connections abruptly at random moments, half of the cuts with a FIN (both sides
//!   shut down, whatever was queued dropped) and half with an RST (`SO_LINGER` 0 on both
//!   sockets, then closed). Each connection draws a lifetime when it is accepted — short
//!   (tens of milliseconds) for some, to hit handshakes, reconnections, replays and
//!   upgrade probes, longer for the others — and is cut when it reaches it, until the
//!   cut budget ([`ChaosConfig::max_cuts`]) is spent or [`ChaosProxy::stop_cutting`] is
//!   called; from then on it only delays, so that clients can settle.
//!
//! Everything random comes from [`ChaosConfig::seed`] (a splitmix64 generator: no `rand`
//! dependency), so a failing run can be told apart and replayed as closely as the
//! scheduler allows ([`seed_from_env`] takes it from `DUPLEX_CHAOS_SEED`, else draws one).
//! [`ChaosProxy::stats`] counts connections, cuts and bytes. Dropping
//! the proxy stops it and closes every connection.
//!
//! [`script`] has the rest that the tests and the bench share: when the cuts stop, and
//! running `interop/chaos-clients.mjs` (or another Node script) while reading its output.

pub mod script;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// Bytes read at once from either side.
const CHUNK: usize = 16 * 1024;

/// Bytes that may wait in one direction's queue; past that the proxy stops reading from
/// the sender until the receiver has taken some (TCP then pushes back, as a real path).
const MAX_QUEUED: usize = 1024 * 1024;

/// How long a FIN cut waits for both peers to close their side before dropping them.
const FIN_LINGER: Duration = Duration::from_secs(2);

/// What the proxy does to the connections through it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChaosConfig {
    /// Seeds every random choice.
    pub seed: u64,
    /// Each chunk read is held back by a random delay in `0..=max_delay` (bytes stay in
    /// order: a chunk never leaves before the one read before it).
    pub max_delay: Duration,
    /// Bytes per second in each direction of each connection; `None`: as fast as the
    /// peers go.
    pub throttle: Option<u64>,
    /// Cuts in all, after which connections are only delayed.
    pub max_cuts: u64,
    /// Probability that a connection draws a short lifetime, from
    /// [`young_lifetime`](Self::young_lifetime), rather than one from
    /// [`lifetime`](Self::lifetime).
    pub young: f64,
    /// The range of short lifetimes: cuts in handshakes, replays and upgrade probes.
    pub young_lifetime: (Duration, Duration),
    /// The range of the other lifetimes.
    pub lifetime: (Duration, Duration),
    /// Probability that a cut is an RST rather than a FIN.
    pub rst: f64,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        ChaosConfig {
            seed: 0,
            max_delay: Duration::from_millis(150),
            throttle: None,
            max_cuts: 200,
            young: 0.2,
            young_lifetime: (Duration::ZERO, Duration::from_millis(60)),
            lifetime: (Duration::from_millis(200), Duration::from_secs(3)),
            rst: 0.5,
        }
    }
}

/// What the proxy has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChaosStats {
    /// Client connections accepted.
    pub accepted: u64,
    /// Connections cut with a FIN.
    pub cuts_fin: u64,
    /// Connections cut with an RST.
    pub cuts_rst: u64,
    /// Bytes forwarded from clients to the server.
    pub bytes_to_server: u64,
    /// Bytes forwarded from the server to clients.
    pub bytes_to_client: u64,
}

impl ChaosStats {
    /// Cuts of either kind.
    pub fn cuts(&self) -> u64 {
        self.cuts_fin + self.cuts_rst
    }
}

impl fmt::Display for ChaosStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} connections, {} cuts ({} FIN, {} RST), {} B to the server, {} B to clients",
            self.accepted,
            self.cuts(),
            self.cuts_fin,
            self.cuts_rst,
            self.bytes_to_server,
            self.bytes_to_client
        )
    }
}

/// A running chaos proxy on `127.0.0.1`; dropping it closes every connection and stops it.
pub struct ChaosProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    config: ChaosConfig,
    /// Draws each connection's plan. A std lock, never held across an await.
    rng: Mutex<Rng>,
    /// Cleared by `stop_cutting`.
    cutting: AtomicBool,
    accepted: AtomicU64,
    /// Cuts taken from the budget, both kinds.
    cuts: AtomicU64,
    cuts_fin: AtomicU64,
    cuts_rst: AtomicU64,
    bytes_to_server: AtomicU64,
    bytes_to_client: AtomicU64,
}

impl ChaosProxy {
    /// Listens on an ephemeral port of `127.0.0.1` and forwards to `upstream`, on the
    /// current tokio runtime.
    pub async fn start(upstream: SocketAddr, config: ChaosConfig) -> Result<Self> {
        Self::start_spread(vec![upstream], config).await
    }

    /// Like [`start`](Self::start), each connection going to one of `upstreams`
    /// drawn at random (the servers of a cluster behind a load balancer with no
    /// stickiness: each reconnection lands on any of them).
    pub async fn start_spread(upstreams: Vec<SocketAddr>, config: ChaosConfig) -> Result<Self> {
        anyhow::ensure!(!upstreams.is_empty(), "the chaos proxy needs an upstream");
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .context("cannot bind the chaos proxy")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            rng: Mutex::new(Rng::new(config.seed)),
            cutting: AtomicBool::new(config.max_cuts > 0),
            config,
            accepted: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            cuts_fin: AtomicU64::new(0),
            cuts_rst: AtomicU64::new(0),
            bytes_to_server: AtomicU64::new(0),
            bytes_to_client: AtomicU64::new(0),
        });
        let task = tokio::spawn(accept(listener, upstreams.into(), shared.clone()));
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// No more cuts: from now on connections are only delayed (and throttled).
    pub fn stop_cutting(&self) {
        self.shared.cutting.store(false, Ordering::SeqCst);
    }

    /// Whether connections may still be cut.
    pub fn is_cutting(&self) -> bool {
        self.shared.cutting.load(Ordering::SeqCst)
    }

    pub fn stats(&self) -> ChaosStats {
        let s = &self.shared;
        ChaosStats {
            accepted: s.accepted.load(Ordering::SeqCst),
            cuts_fin: s.cuts_fin.load(Ordering::SeqCst),
            cuts_rst: s.cuts_rst.load(Ordering::SeqCst),
            bytes_to_server: s.bytes_to_server.load(Ordering::SeqCst),
            bytes_to_client: s.bytes_to_client.load(Ordering::SeqCst),
        }
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        // The accept task owns the connections' `JoinSet`: aborting it aborts them all,
        // and their sockets close as they are dropped.
        self.task.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Fin,
    Rst,
}

/// What is decided for a connection when it is accepted.
struct Plan {
    /// When it is cut, if cuts are still on then.
    cut_at: Instant,
    kind: Cut,
    /// Seeds its two directions' delays.
    rng: Rng,
    /// Which upstream it goes to.
    upstream: usize,
}

impl Shared {
    fn plan(&self, upstreams: usize) -> Plan {
        let mut rng = self
            .rng
            .lock()
            .expect("the chaos proxy's lock is never held by a panicking thread");
        let c = &self.config;
        let (low, high) = if rng.chance(c.young) {
            c.young_lifetime
        } else {
            c.lifetime
        };
        let lifetime = rng.duration_between(low, high);
        let kind = if rng.chance(c.rst) {
            Cut::Rst
        } else {
            Cut::Fin
        };
        let connection_rng = Rng::new(rng.next_u64());
        // Drawn only with a choice to make, so that a seed replays as before
        // with one upstream.
        let upstream = if upstreams > 1 {
            (rng.next_u64() % upstreams as u64) as usize
        } else {
            0
        };
        Plan {
            cut_at: Instant::now() + lifetime,
            kind,
            rng: connection_rng,
            upstream,
        }
    }

    /// Takes one cut from the budget, if cuts are still on.
    fn take_cut(&self, kind: Cut) -> bool {
        if !self.cutting.load(Ordering::SeqCst) {
            return false;
        }
        let max = self.config.max_cuts;
        let taken = self
            .cuts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            });
        match taken {
            // That was the last one.
            Ok(n) if n + 1 >= max => self.cutting.store(false, Ordering::SeqCst),
            Ok(_) => {}
            Err(_) => {
                self.cutting.store(false, Ordering::SeqCst);
                return false;
            }
        }
        match kind {
            Cut::Fin => self.cuts_fin.fetch_add(1, Ordering::SeqCst),
            Cut::Rst => self.cuts_rst.fetch_add(1, Ordering::SeqCst),
        };
        true
    }
}

async fn accept(listener: TcpListener, upstreams: Arc<[SocketAddr]>, shared: Arc<Shared>) {
    // Owned here so that aborting this task aborts every connection's.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else {
                    continue;
                };
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                let plan = shared.plan(upstreams.len());
                let upstream = upstreams[plan.upstream];
                connections.spawn(connection(client, upstream, plan, shared.clone()));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// One client connection: forwarded with delays until it ends or its cut comes.
async fn connection(mut client: TcpStream, upstream: SocketAddr, plan: Plan, shared: Arc<Shared>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    // Chunks are released when due, not held back further by Nagle's algorithm.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let Plan {
        cut_at,
        kind,
        mut rng,
        ..
    } = plan;
    let mut up_rng = Rng::new(rng.next_u64());
    let mut down_rng = Rng::new(rng.next_u64());
    let cut = {
        let (client_read, client_write) = client.split();
        let (server_read, server_write) = server.split();
        let config = &shared.config;
        let up = pump(
            client_read,
            server_write,
            config,
            &mut up_rng,
            &shared.bytes_to_server,
        );
        let down = pump(
            server_read,
            client_write,
            config,
            &mut down_rng,
            &shared.bytes_to_client,
        );
        // A failed write ends the connection: that peer is gone.
        let both = async { tokio::try_join!(up, down) };
        tokio::pin!(both);
        let mut armed = true;
        loop {
            tokio::select! {
                _ = &mut both => break None,
                () = tokio::time::sleep_until(cut_at), if armed => {
                    if shared.take_cut(kind) {
                        break Some(kind);
                    }
                    // Out of cuts: this connection lives on, delayed only.
                    armed = false;
                }
            }
        }
        // The queued chunks are dropped with the pumps here.
    };
    match cut {
        None => {}
        Some(Cut::Rst) => {
            // Closed with SO_LINGER 0: the kernel sends an RST instead of a FIN.
            let _ = client.set_zero_linger();
            let _ = server.set_zero_linger();
        }
        Some(Cut::Fin) => {
            let _ = client.shutdown().await;
            let _ = server.shutdown().await;
            // Read what each peer still sends until it closes too: Linux turns the close
            // of a socket with unread data into an RST, and this cut is a FIN.
            let drain = async { tokio::join!(discard(&mut client), discard(&mut server)) };
            let _ = tokio::time::timeout(FIN_LINGER, drain).await;
        }
    }
}

/// Reads and drops until the end of the stream (or an error).
async fn discard(stream: &mut TcpStream) {
    let mut buffer = [0_u8; CHUNK];
    while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
}

/// One direction of a connection: chunks read from `from` are written to `to` when due.
/// Returns `Ok` once `from` ended and everything queued went out (then `to` is shut
/// down, passing the FIN on), `Err` when a write failed.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    config: &ChaosConfig,
    rng: &mut Rng,
    forwarded: &AtomicU64,
) -> Result<(), ()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut queue: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    let mut queued = 0_usize;
    // When the last chunk queued is released: the next one never leaves before it.
    let mut release = Instant::now();
    let mut ended = false;
    let mut buffer = vec![0_u8; CHUNK];
    loop {
        if ended && queue.is_empty() {
            let _ = to.shutdown().await;
            return Ok(());
        }
        let due = queue.front().map(|(at, _)| *at);
        tokio::select! {
            read = from.read(&mut buffer), if !ended && queued < MAX_QUEUED => match read {
                // An error reading (the sender reset) ends this direction like an end of
                // stream: what was read still goes out.
                Ok(0) | Err(_) => ended = true,
                Ok(n) => {
                    let now = Instant::now();
                    let mut at = release.max(now + rng.duration_between(Duration::ZERO, config.max_delay));
                    if let Some(rate) = config.throttle {
                        let nanos = (n as u128 * 1_000_000_000) / u128::from(rate.max(1));
                        at += Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX));
                    }
                    release = at;
                    queued += n;
                    queue.push_back((at, buffer[..n].to_vec()));
                }
            },
            () = tokio::time::sleep_until(due.unwrap_or(release)), if due.is_some() => {
                let (_, chunk) = queue.pop_front().expect("a chunk is due, so one is queued");
                queued -= chunk.len();
                to.write_all(&chunk).await.map_err(drop)?;
                forwarded.fetch_add(chunk.len() as u64, Ordering::SeqCst);
            }
        }
    }
}

/// The seed of a chaos run: `DUPLEX_CHAOS_SEED` (a `u64`, to replay a run), else a random
/// one.
pub fn seed_from_env() -> Result<u64> {
    match std::env::var("DUPLEX_CHAOS_SEED") {
        Ok(seed) => seed
            .trim()
            .parse()
            .with_context(|| format!("DUPLEX_CHAOS_SEED={seed:?} is not a u64")),
        // std's per-process random hasher keys, mixed with the time: random enough, and
        // no `rand` dependency.
        Err(_) => Ok(std::hash::BuildHasher::hash_one(
            &std::collections::hash_map::RandomState::new(),
            std::time::SystemTime::now(),
        )),
    }
}

/// splitmix64: tiny, seedable, good enough to pick delays and lifetimes.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1_u64 << 53) as f64
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `low..=high` (at microsecond resolution).
    pub fn duration_between(&mut self, low: Duration, high: Duration) -> Duration {
        let span = u64::try_from(high.saturating_sub(low).as_micros()).unwrap_or(u64::MAX);
        low + Duration::from_micros(self.next_u64() % span.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::*;

    /// A server that echoes every byte back until its client closes.
    async fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut read, mut write) = stream.split();
                    let _ = tokio::io::copy(&mut read, &mut write).await;
                });
            }
        });
        addr
    }

    fn no_cuts() -> ChaosConfig {
        ChaosConfig {
            seed: 7,
            max_delay: Duration::from_millis(20),
            max_cuts: 0,
            ..ChaosConfig::default()
        }
    }

    /// Every connection is cut `after` it is accepted, with an RST with probability `rst`.
    fn cut_after(after: Duration, rst: f64) -> ChaosConfig {
        ChaosConfig {
            seed: 11,
            max_delay: Duration::ZERO,
            max_cuts: 1,
            young: 1.0,
            young_lifetime: (after, after),
            rst,
            ..ChaosConfig::default()
        }
    }

    #[tokio::test]
    async fn bytes_arrive_unchanged_and_in_order_under_delays_and_a_throttle() {
        let upstream = echo_server().await;
        let config = ChaosConfig {
            throttle: Some(4 * 1024 * 1024),
            ..no_cuts()
        };
        let proxy = ChaosProxy::start(upstream, config).await.expect("proxy");
        let stream = TcpStream::connect(proxy.addr()).await.expect("connect");
        let (mut read, mut write) = stream.into_split();
        let sent: Vec<u8> = (0..600_000_u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let writer = tokio::spawn({
            let sent = sent.clone();
            async move {
                // Writes of uneven sizes, some right after the other, some apart.
                let mut rng = Rng::new(3);
                let mut at = 0;
                while at < sent.len() {
                    let n = (1 + rng.next_u64() % 40_000) as usize;
                    let end = (at + n).min(sent.len());
                    write.write_all(&sent[at..end]).await.expect("write");
                    at = end;
                    if rng.chance(0.3) {
                        tokio::time::sleep(Duration::from_millis(rng.next_u64() % 5)).await;
                    }
                }
                write.shutdown().await.expect("shutdown");
            }
        });
        let mut received = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut received))
            .await
            .expect("the echo comes back in time")
            .expect("read");
        writer.await.expect("writer");
        assert_eq!(received.len(), sent.len());
        assert!(received == sent, "the bytes came back changed or reordered");
        let stats = proxy.stats();
        assert_eq!(stats.bytes_to_server, sent.len() as u64);
        assert_eq!(stats.bytes_to_client, sent.len() as u64);
        assert_eq!((stats.accepted, stats.cuts()), (1, 0));
    }

    #[tokio::test]
    async fn a_fin_cut_closes_both_sides() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = ChaosProxy::start(
            listener.local_addr().expect("address"),
            cut_after(Duration::from_millis(100), 0.0),
        )
        .await
        .expect("proxy");
        let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        client.write_all(b"hello").await.expect("write");
        let mut buffer = [0_u8; 16];
        let n = server.read(&mut buffer).await.expect("read");
        assert_eq!(&buffer[..n], b"hello");
        // Both ends see the end of the stream, the client after nothing at all.
        let patience = Duration::from_secs(5);
        let at_client = tokio::time::timeout(patience, client.read(&mut buffer)).await;
        assert!(matches!(at_client, Ok(Ok(0))), "client: {at_client:?}");
        let at_server = tokio::time::timeout(patience, server.read(&mut buffer)).await;
        assert!(matches!(at_server, Ok(Ok(0))), "server: {at_server:?}");
        let stats = proxy.stats();
        assert_eq!((stats.cuts_fin, stats.cuts_rst), (1, 0));
    }

    #[tokio::test]
    async fn an_rst_cut_resets_the_client_and_the_server() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let proxy = ChaosProxy::start(
            listener.local_addr().expect("address"),
            cut_after(Duration::from_millis(100), 1.0),
        )
        .await
        .expect("proxy");
        let mut client = TcpStream::connect(proxy.addr()).await.expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let mut buffer = [0_u8; 16];
        let patience = Duration::from_secs(5);
        for (side, stream) in [("client", &mut client), ("server", &mut server)] {
            let read = tokio::time::timeout(patience, stream.read(&mut buffer)).await;
            match read {
                Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => {}
                other => panic!("{side}: expected ECONNRESET, got {other:?}"),
            }
        }
        let stats = proxy.stats();
        assert_eq!((stats.cuts_fin, stats.cuts_rst), (0, 1));
    }

    #[tokio::test]
    async fn after_the_budget_connections_are_only_delayed() {
        let upstream = echo_server().await;
        let proxy = ChaosProxy::start(upstream, cut_after(Duration::from_millis(20), 0.5))
            .await
            .expect("proxy");
        let mut buffer = [0_u8; 16];
        // The first connection takes the only cut.
        let mut first = TcpStream::connect(proxy.addr()).await.expect("connect");
        let _ = tokio::time::timeout(Duration::from_secs(5), first.read(&mut buffer)).await;
        assert_eq!(proxy.stats().cuts(), 1);
        assert!(!proxy.is_cutting(), "the budget is spent");
        // The second outlives its lifetime.
        let mut second = TcpStream::connect(proxy.addr()).await.expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        second.write_all(b"still here").await.expect("write");
        let n = second.read(&mut buffer).await.expect("read");
        assert_eq!(&buffer[..n], b"still here");
        assert_eq!(proxy.stats().cuts(), 1);
    }

    #[test]
    fn the_generator_is_seeded_and_its_draws_stay_in_range() {
        let draws = |seed| {
            let mut rng = Rng::new(seed);
            (0..100).map(|_| rng.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draws(42), draws(42));
        let mut a = Rng::new(42);
        for _ in 0..1000 {
            let d = a.duration_between(Duration::from_millis(200), Duration::from_secs(3));
            assert!((Duration::from_millis(200)..=Duration::from_secs(3)).contains(&d));
            let u = a.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
