//! Reconnection against duplex's own server, started in-process: a restart with
//! 200 clients connected (all come back, their attempts spread by the jitter),
//! connection state recovery through a TCP proxy that cuts one client off (missed
//! news replayed once and in order; past the window, a fresh session), and
//! `disconnect()` stopping the attempts.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Greeting, MODES, PATIENCE, expect_greeting, init_tracing, next};
use duplex_native::{Backoff, Client, CloseReason, Error, Options, Status, Transports, connect};
use duplex_server::Config;
use duplex_server::socketio::RecoveryConfig;
use protocol::app::{Channel, Channels, JoinChannel, News, NewsItem, Publish, PublishNews};
use protocol::event::{Event, encode};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// duplex's server on `127.0.0.1`, stopped by cancelling its token.
struct TestServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    /// Starts on `addr` (port 0 for any), retrying the bind for a while: a port
    /// just released by a stopped server may still be held for a moment.
    async fn start(addr: SocketAddr, config: Config) -> TestServer {
        let dist = std::env::temp_dir().join("duplex-native-test-dist");
        std::fs::create_dir_all(&dist).expect("temp dist folder");
        let give_up = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match duplex_server::bind(addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < give_up => {
                    eprintln!("bind {addr}: {e}; retrying");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("bind {addr}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("bound address");
        let shutdown = CancellationToken::new();
        let config = Config { dist, ..config };
        let task = tokio::spawn(duplex_server::run(listener, config, shutdown.clone()));
        TestServer {
            addr,
            shutdown,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cancels the token and waits for `run` to return.
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran");
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

/// What the proxy does with connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    /// Forwards bytes both ways to the server.
    Forward,
    /// Turns new connections away: accepted and closed at once, as a load
    /// balancer with no backend would.
    Refuse,
    /// Accepts new connections and never answers.
    Stall,
}

struct GateState {
    gate: Gate,
    /// Cancelled when the gate closes: every connection accepted under it ends.
    generation: CancellationToken,
}

/// A TCP proxy in front of the server that can cut its clients off: drop every
/// live connection and refuse (or stall) new ones until it is opened again.
struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<GateState>>,
    accepted: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind(any_port()).await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(GateState {
            gate: Gate::Forward,
            generation: CancellationToken::new(),
        }));
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let state = state.clone();
            let accepted = accepted.clone();
            async move {
                loop {
                    let Ok((inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    // Gate and generation read together: a connection is either cut
                    // with the others or accepted after the cut, under the new gate.
                    let (gate, generation) = {
                        let s = state.lock().expect("proxy state");
                        (s.gate, s.generation.clone())
                    };
                    match gate {
                        Gate::Forward => {
                            tokio::spawn(forward(inbound, upstream, generation));
                        }
                        Gate::Refuse => drop(inbound),
                        Gate::Stall => {
                            tokio::spawn(async move {
                                generation.cancelled().await;
                                drop(inbound);
                            });
                        }
                    }
                }
            }
        });
        Proxy {
            addr,
            state,
            accepted,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Drops every live connection; new ones meet `gate`.
    fn close(&self, gate: Gate) {
        let mut s = self.state.lock().expect("proxy state");
        s.gate = gate;
        std::mem::replace(&mut s.generation, CancellationToken::new()).cancel();
    }

    fn cut(&self) {
        self.close(Gate::Refuse);
    }

    fn restore(&self) {
        self.state.lock().expect("proxy state").gate = Gate::Forward;
    }

    /// TCP connections accepted so far (forwarded or not).
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.close(Gate::Refuse);
    }
}

async fn forward(mut inbound: TcpStream, upstream: SocketAddr, cut: CancellationToken) {
    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        () = cut.cancelled() => {}
    }
}

/// Quick attempts for the proxy tests: 50 ms doubling to 250 ms, jitter ±50%.
fn quick_backoff() -> Backoff {
    Backoff {
        min: Duration::from_millis(50),
        max: Duration::from_millis(250),
        ..Backoff::default()
    }
}

async fn connect_reconnecting(url: &str, transports: Transports, backoff: Backoff) -> Client {
    init_tracing();
    let options = Options {
        transports,
        reconnection: Some(backoff),
        ..Options::default()
    };
    tokio::time::timeout(PATIENCE, connect(url, options))
        .await
        .unwrap_or_else(|_| panic!("connect over {transports:?} timed out"))
        .unwrap_or_else(|e| panic!("connect over {transports:?}: {e}"))
}

/// Waits (within [`PATIENCE`]) for a status matching `want`; panics on a close.
async fn wait_status(
    status: &mut watch::Receiver<Status>,
    what: &str,
    want: impl Fn(&Status) -> bool,
) -> Status {
    let waited = tokio::time::timeout(PATIENCE, status.wait_for(|s| want(s) || s.is_closed()))
        .await
        .map(|found| found.map(|s| s.clone()));
    let found = match waited {
        Ok(found) => found.expect("the client's task reports"),
        Err(_) => panic!("no {what} in time: {:?}", *status.borrow()),
    };
    assert!(want(&found), "closed instead of {what}: {found:?}");
    found
}

async fn join(client: &Client, channel: &str) -> Vec<String> {
    let args = encode::<JoinChannel>(&Channel {
        channel: channel.into(),
    })
    .expect("encodes");
    let ack = client
        .emit_with_ack(JoinChannel::NAME, args)
        .await
        .expect("join acked");
    let channels: Channels = serde_json::from_value(ack.args[0].clone()).expect("channels");
    assert_eq!(channels.error, None);
    channels.channels
}

/// Publishes `text` to `channel`; returns to how many clients it went.
async fn publish(client: &Client, channel: &str, text: &str) -> u64 {
    let args = encode::<PublishNews>(&Publish {
        text: text.into(),
        channel: Some(channel.into()),
    })
    .expect("encodes");
    let ack = client
        .emit_with_ack(PublishNews::NAME, args)
        .await
        .expect("publish acked");
    ack.args[0]["delivered"]
        .as_u64()
        .unwrap_or_else(|| panic!("delivered count in {ack:?}"))
}

/// The text of a `news` item of `channel`, checking its shape: just the item
/// (the session takes the recovery offset off the arguments).
fn news_text(event: &duplex_native::Incoming, channel: &str) -> String {
    assert!(event.is::<News>(), "expected news, got {event:?}");
    let item: NewsItem = event.decode::<News>().expect("typed news");
    assert_eq!(item.channel.as_deref(), Some(channel), "{event:?}");
    assert_eq!(
        event.args.len(),
        1,
        "no offset among the arguments: {event:?}"
    );
    item.hello
}

/// Nothing arrives for a while.
async fn expect_silence(client: &mut Client, how_long: Duration) {
    if let Ok(event) = tokio::time::timeout(how_long, client.next_event()).await {
        panic!("expected nothing more, got {event:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_server_restart_every_client_comes_back_spread_by_jitter() {
    const CLIENTS: usize = 200;
    init_tracing();
    let config = || Config {
        recovery: Some(RecoveryConfig::default()),
        ..Config::default()
    };
    let server = TestServer::start(any_port(), config()).await;
    let addr = server.addr;
    let url = server.url();

    let connecting: Vec<JoinHandle<Client>> = (0..CLIENTS)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                connect_reconnecting(&url, Transports::WebSocketOnly, Backoff::default()).await
            })
        })
        .collect();
    let mut clients = Vec::with_capacity(CLIENTS);
    for task in connecting {
        clients.push(task.await.expect("connected"));
    }
    let first_sids: Vec<String> = clients.iter().map(Client::sid).collect();

    // One watcher per client: when its first attempt is due (from the status
    // `Reconnecting { attempt: 0 }`, which lasts its whole delay, at least half a
    // second), then its next `Connected`.
    let watchers: Vec<JoinHandle<(Instant, Duration, Status)>> = clients
        .iter()
        .map(|client| {
            let mut status = client.status();
            tokio::spawn(async move {
                let lost = status
                    .wait_for(|s| matches!(s, Status::Reconnecting { .. }) || s.is_closed())
                    .await
                    .expect("status")
                    .clone();
                let Status::Reconnecting {
                    attempt: 0,
                    at,
                    delay,
                    ..
                } = lost
                else {
                    panic!("expected the first attempt to be scheduled, got {lost:?}");
                };
                let back = status
                    .wait_for(|s| matches!(s, Status::Connected { .. }) || s.is_closed())
                    .await
                    .expect("status")
                    .clone();
                (at, delay, back)
            })
        })
        .collect();

    let stopping = Instant::now();
    server.stop().await;
    let server = TestServer::start(addr, config()).await;
    eprintln!(
        "server stopped and started again on {addr} in {:?}",
        stopping.elapsed()
    );

    let mut firsts = Vec::with_capacity(CLIENTS);
    let mut delays = Vec::with_capacity(CLIENTS);
    for (i, watcher) in watchers.into_iter().enumerate() {
        let (at, delay, back) = tokio::time::timeout(Duration::from_secs(30), watcher)
            .await
            .unwrap_or_else(|_| panic!("client {i} did not come back in time"))
            .expect("watcher");
        let Status::Connected { sid, recovered } = back else {
            panic!("client {i} closed instead of reconnecting: {back:?}");
        };
        // A new server knows nothing of the old sessions.
        assert!(!recovered, "client {i}");
        assert_ne!(sid, first_sids[i], "client {i} has a new session");
        firsts.push(at);
        delays.push(delay);
    }

    // Every client works again: an ack round trip each, all at once.
    let round_trips: Vec<JoinHandle<()>> = clients
        .iter()
        .enumerate()
        .map(|(i, client)| {
            let emitter = client.emitter();
            tokio::spawn(async move {
                let ack = emitter
                    .emit_with_ack("ping", vec![json!(i)])
                    .await
                    .unwrap_or_else(|e| panic!("client {i}: {e}"));
                assert_eq!(ack.args, vec![json!(i)], "client {i}");
            })
        })
        .collect();
    for task in round_trips {
        task.await.expect("round trip");
    }

    // The first attempts are spread by the jitter, not made together.
    let earliest = *firsts.iter().min().expect("clients");
    let latest = *firsts.iter().max().expect("clients");
    let mut buckets = [0usize; 64];
    for at in &firsts {
        let bucket = usize::try_from((*at - earliest).as_millis() / 100).expect("small");
        buckets[bucket.min(buckets.len() - 1)] += 1;
    }
    let last = buckets.iter().rposition(|&n| n > 0).unwrap_or(0);
    eprintln!(
        "first attempts spread over {:?}; per 100 ms: {:?}",
        latest - earliest,
        &buckets[..=last]
    );
    assert!(
        latest - earliest >= Duration::from_millis(300),
        "first attempts within {:?}",
        latest - earliest
    );
    let crowded = buckets.iter().max().copied().unwrap_or(0);
    assert!(
        crowded * 4 <= CLIENTS,
        "{crowded} of {CLIENTS} first attempts in one 100 ms bucket: {:?}",
        &buckets[..=last]
    );
    // The spread is the jitter's own, not how long the server took to tell each
    // client: the delays themselves differ as much.
    let shortest = *delays.iter().min().expect("clients");
    let longest = *delays.iter().max().expect("clients");
    assert!(
        longest - shortest >= Duration::from_millis(300),
        "delays within {shortest:?}..{longest:?}"
    );

    for client in clients {
        client.disconnect().await;
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cut_off_recovers_every_missed_news_once_in_order() {
    init_tracing();
    // Short heartbeats: should the server miss a polling client's cut (its next
    // GET not there yet), the ping timeout tells it within 2 s.
    let server = TestServer::start(
        any_port(),
        Config {
            recovery: Some(RecoveryConfig::default()),
            ping_interval: Duration::from_millis(1000),
            ping_timeout: Duration::from_millis(1000),
            ..Config::default()
        },
    )
    .await;
    let proxy = Proxy::start(server.addr).await;
    let mut publisher = common::connect_with(&server.url(), Transports::WebSocketOnly).await;
    expect_greeting(&mut publisher, Greeting::NewsThenHandshake).await;

    for mode in MODES {
        eprintln!("recovery over {mode:?}");
        let mut subscriber = connect_reconnecting(&proxy.url(), mode, quick_backoff()).await;
        expect_greeting(&mut subscriber, Greeting::NewsThenHandshake).await;
        assert_eq!(join(&subscriber, "sports").await, vec!["sports"]);
        if mode == Transports::PollingThenUpgrade {
            assert!(subscriber.wait_upgraded(PATIENCE).await, "upgraded");
        }
        // Recovery needs an offset: the client must have received one broadcast
        // (Socket.IO's convention; direct emits such as the greeting carry none).
        assert_eq!(publish(&publisher, "sports", "warm-up").await, 1);
        assert_eq!(news_text(&next(&mut subscriber).await, "sports"), "warm-up");
        let sid = subscriber.sid();
        let mut status = subscriber.status();

        // The server must have saved the session before the client comes back.
        // It sees a WebSocket go at once, and a polling client when the GET it
        // holds is aborted: let the GET that follows the news reach it first, and
        // over polling keep the cut past the heartbeat window, should it not have.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let cut_for = match mode {
            Transports::PollingOnly => Duration::from_millis(2500),
            _ => Duration::from_millis(1000),
        };
        let cut_at = Instant::now();
        proxy.cut();
        wait_status(&mut status, "reconnecting", |s| {
            matches!(s, Status::Reconnecting { .. } | Status::Connecting { .. })
        })
        .await;
        // Emits while away wait in the session's buffer.
        for n in 0..3 {
            subscriber
                .emit("queued", vec![json!(n)])
                .await
                .expect("buffered");
        }
        for i in 0..100 {
            publish(&publisher, "sports", &format!("news {i}")).await;
        }
        tokio::time::sleep_until(cut_at + cut_for).await;
        proxy.restore();

        let back = wait_status(&mut status, "connected", |s| {
            matches!(s, Status::Connected { .. })
        })
        .await;
        assert_eq!(
            back,
            Status::Connected {
                sid: sid.clone(),
                recovered: true
            }
        );
        assert_eq!(subscriber.sid(), sid);

        let mut missed = Vec::new();
        let mut queued = Vec::new();
        while missed.len() < 100 || queued.len() < 3 {
            let event = next(&mut subscriber).await;
            if event.name == "queued" {
                queued.push(event.args[0].clone());
            } else {
                missed.push(news_text(&event, "sports"));
            }
        }
        let expected: Vec<String> = (0..100).map(|i| format!("news {i}")).collect();
        assert_eq!(missed, expected, "missed news replayed in order, once");
        assert_eq!(queued, vec![json!(0), json!(1), json!(2)]);
        expect_silence(&mut subscriber, Duration::from_millis(500)).await;

        // Still subscribed, and offsets carry on.
        assert_eq!(publish(&publisher, "sports", "after").await, 1);
        assert_eq!(news_text(&next(&mut subscriber).await, "sports"), "after");
        if mode == Transports::PollingThenUpgrade {
            assert!(subscriber.wait_upgraded(PATIENCE).await, "upgraded again");
        }
        subscriber.disconnect().await;
    }
    publisher.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_recovery_window_the_client_gets_a_fresh_session() {
    init_tracing();
    let server = TestServer::start(
        any_port(),
        Config {
            recovery: Some(RecoveryConfig {
                window: Duration::from_millis(300),
                ..RecoveryConfig::default()
            }),
            ..Config::default()
        },
    )
    .await;
    let proxy = Proxy::start(server.addr).await;
    let mut publisher = common::connect_with(&server.url(), Transports::WebSocketOnly).await;
    expect_greeting(&mut publisher, Greeting::NewsThenHandshake).await;
    let mut subscriber =
        connect_reconnecting(&proxy.url(), Transports::WebSocketOnly, quick_backoff()).await;
    expect_greeting(&mut subscriber, Greeting::NewsThenHandshake).await;
    assert_eq!(join(&subscriber, "sports").await, vec!["sports"]);
    assert_eq!(publish(&publisher, "sports", "warm-up").await, 1);
    assert_eq!(news_text(&next(&mut subscriber).await, "sports"), "warm-up");
    let sid = subscriber.sid();
    let mut status = subscriber.status();

    proxy.cut();
    wait_status(&mut status, "reconnecting", |s| {
        matches!(s, Status::Reconnecting { .. } | Status::Connecting { .. })
    })
    .await;
    assert_eq!(publish(&publisher, "sports", "missed").await, 0);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.restore();

    let back = wait_status(&mut status, "connected", |s| {
        matches!(s, Status::Connected { .. })
    })
    .await;
    let Status::Connected {
        sid: new_sid,
        recovered,
    } = back
    else {
        unreachable!("waited for connected");
    };
    assert!(!recovered, "reported as a fresh session");
    assert_ne!(new_sid, sid);
    assert_eq!(subscriber.sid(), new_sid);
    // A fresh session is greeted like a new one, and is in no channel.
    expect_greeting(&mut subscriber, Greeting::NewsThenHandshake).await;
    assert_eq!(publish(&publisher, "sports", "after").await, 0);
    assert_eq!(join(&subscriber, "weather").await, vec!["weather"]);
    expect_silence(&mut subscriber, Duration::from_millis(300)).await;

    subscriber.disconnect().await;
    publisher.disconnect().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_during_reconnection_stops_the_attempts() {
    init_tracing();
    let server = TestServer::start(any_port(), Config::default()).await;
    let proxy = Proxy::start(server.addr).await;
    let backoff = Backoff {
        min: Duration::from_millis(100),
        max: Duration::from_millis(200),
        ..Backoff::default()
    };
    let mut client = connect_reconnecting(&proxy.url(), Transports::WebSocketOnly, backoff).await;
    expect_greeting(&mut client, Greeting::NewsThenHandshake).await;
    let mut status = client.status();
    let emitter = client.emitter();

    proxy.cut();
    let before = proxy.accepted();
    let retrying = wait_status(&mut status, "a third attempt", |s| {
        matches!(s, Status::Reconnecting { attempt: 2.., .. })
    })
    .await;
    let Status::Reconnecting { reason, .. } = retrying else {
        unreachable!("waited for reconnecting");
    };
    assert!(matches!(reason, CloseReason::Transport(_)), "{reason:?}");
    assert!(
        proxy.accepted() >= before + 2,
        "the attempts reached the proxy"
    );

    tokio::time::timeout(Duration::from_secs(2), client.disconnect())
        .await
        .expect("disconnect returns at once");
    assert_eq!(*status.borrow(), Status::Closed(CloseReason::LocalClose));
    let attempts = proxy.accepted();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    proxy.restore();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(proxy.accepted(), attempts, "no attempt after disconnect");
    assert_eq!(*status.borrow(), Status::Closed(CloseReason::LocalClose));
    assert!(matches!(
        emitter.emit("late", vec![]).await,
        Err(Error::Closed(CloseReason::LocalClose))
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_attempt_times_out_and_disconnect_does_not_wait_for_it() {
    init_tracing();
    let server = TestServer::start(any_port(), Config::default()).await;
    let proxy = Proxy::start(server.addr).await;
    for mode in [Transports::WebSocketOnly, Transports::PollingOnly] {
        let options = Options {
            transports: mode,
            reconnection: Some(quick_backoff()),
            // Also the time an attempt has to bring the server's handshake.
            connect_timeout: Duration::from_millis(400),
            ..Options::default()
        };
        let mut client = connect(&proxy.url(), options).await.expect("connects");
        expect_greeting(&mut client, Greeting::NewsThenHandshake).await;
        let mut status = client.status();

        // Cut first (refused: a polling request that would reach a stalled proxy
        // between two GETs would hang until the heartbeat gives up, 45 s), then
        // the proxy accepts and never answers: each attempt times out.
        proxy.cut();
        wait_status(&mut status, "reconnecting", |s| {
            matches!(s, Status::Reconnecting { .. })
        })
        .await;
        proxy.close(Gate::Stall);
        let timed_out = CloseReason::Transport("no handshake within 400ms".into());
        wait_status(
            &mut status,
            "a timed-out attempt",
            |s| matches!(s, Status::Reconnecting { reason, .. } if *reason == timed_out),
        )
        .await;
        // Now an attempt hangs on the proxy: disconnect does not wait for it.
        wait_status(&mut status, "an attempt under way", |s| {
            matches!(s, Status::Connecting { attempt: Some(1..) })
        })
        .await;
        tokio::time::timeout(Duration::from_millis(200), client.disconnect())
            .await
            .expect("disconnect returns at once");
        assert_eq!(*status.borrow(), Status::Closed(CloseReason::LocalClose));
        proxy.restore();
    }
    server.stop().await;
}
