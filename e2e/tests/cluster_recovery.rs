//! Recovery across the servers of a cluster (issue 15): a client connected to
//! server A is cut off; 100 news items are published meanwhile (from server C,
//! 50 to everyone, 50 to a channel the client joined, and 10 to a channel it did
//! not join); it then reconnects — to server B, since the way to A now leads
//! there — and must get the 100 it missed, in order, exactly once, in the same
//! session (same id, its channel still joined), the 10 others not at all.
//!
//! Three duplex servers on one real `redis-server`, a loopback proxy in front
//! (`duplex_e2e::Proxy`, its upstream switched from A to B during the cut), and
//! — for a team moving one server at a time — A or B a Node socket.io 4 server
//! with `@socket.io/redis-streams-adapter` and recovery (`interop/cluster-node.mjs`);
//! in every case
//! both clients people use: the official `socket.io-client` with its default
//! options (`interop/cluster-recover.mjs`; long-polling, then the upgrade) and
//! duplex's native client. Needs Node.js and `npm ci` in `interop/`:
//!
//! ```text
//! cargo test -p duplex-e2e --test cluster_recovery -- --nocapture
//! ```

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use duplex_e2e::{Proxy, RedisServer, TestServer, WebSockets};
use duplex_native::{Backoff, Client, Options, Status};
use duplex_server::socketio::RecoveryConfig;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Items every client gets before the cut.
const BEFORE: usize = 10;
/// Items published to everyone, and to the client's channel, during the cut.
const MISSED_EACH: usize = 50;
/// Items published to a channel the clients did not join, during the cut.
const OTHERS: usize = 10;
const CHANNEL: &str = "sport";
const OTHER_CHANNEL: &str = "weather";
/// Any one wait of the test.
const WAIT: Duration = Duration::from_secs(20);

#[test]
fn official_and_native_clients_recover_100_missed_items_on_another_server() -> Result<()> {
    recover_across(Kind::Duplex, Kind::Duplex)
}

/// A team moving from Node to duplex one server at a time: the clients of a
/// Node server that goes away recover on a duplex server.
#[test]
fn clients_of_a_node_js_server_recover_on_a_duplex_server() -> Result<()> {
    recover_across(Kind::NodeJs, Kind::Duplex)
}

/// And back: sessions and offsets written by duplex are Node's.
#[test]
fn clients_of_a_duplex_server_recover_on_a_node_js_server() -> Result<()> {
    recover_across(Kind::Duplex, Kind::NodeJs)
}

/// Which server: duplex, or Node socket.io 4 with `@socket.io/redis-streams-adapter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Duplex,
    NodeJs,
}

/// A server of the cluster, stopped when dropped.
enum Server {
    Duplex(TestServer),
    NodeJs(NodeServer),
}

impl Server {
    fn start(kind: Kind, redis: &RedisServer) -> Result<Server> {
        Ok(match kind {
            Kind::Duplex => {
                let server = TestServer::start_with(duplex_server::Config {
                    dist: empty_dist()?,
                    redis: Some(redis.url()),
                    recovery: Some(RecoveryConfig::default()),
                    ..duplex_server::Config::default()
                })?;
                server.wait_ready()?;
                Server::Duplex(server)
            }
            Kind::NodeJs => Server::NodeJs(NodeServer::start(redis)?),
        })
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Server::Duplex(server) => server.addr(),
            Server::NodeJs(server) => server.addr,
        }
    }
}

/// The clients connect to a server of kind `first` (A), are cut off while the
/// items are published from a duplex server (C), and come back to a server of
/// kind `second` (B).
fn recover_across(first: Kind, second: Kind) -> Result<()> {
    recover_across_with(first, second, false)
}

/// A rolling restart behind a sticky balancer: the server the clients come
/// back to started after their last event, so its own log does not reach
/// back to their offsets; the rest comes from the stream itself.
#[test]
fn clients_recover_on_a_server_started_after_their_last_event() -> Result<()> {
    recover_across_with(Kind::Duplex, Kind::Duplex, true)
}

/// With `b_late`, server B starts only once every item is published.
fn recover_across_with(first: Kind, second: Kind, b_late: bool) -> Result<()> {
    let redis = RedisServer::start()?;
    let mut servers = vec![
        Server::start(first, &redis)?,
        Server::start(Kind::Duplex, &redis)?,
    ];
    if !b_late {
        servers.push(Server::start(second, &redis)?);
    }
    let (a, c) = (servers[0].addr(), servers[1].addr());
    // The observer is on B, or on C while B is not started: once it has the
    // last item, the server the clients come back to has read them all (or
    // will start after them).
    let watched = servers.last().map_or(c, Server::addr);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let proxy = Proxy::start(rt.handle(), a, WebSockets::Allow)?;

    // The channel is joined on A: duplex's app takes `{"channel"}`, the Node
    // peer a room's name.
    let join = match first {
        Kind::Duplex => json!({ "channel": CHANNEL }),
        Kind::NodeJs => json!(format!("channel:{CHANNEL}")),
    };
    // The official client, through the proxy (to A for now).
    // The last item, to everyone, after the other channel's.
    let last = format!("item-{}", BEFORE + 2 * MISSED_EACH + OTHERS);
    let mut official = NodeClient::start(&proxy.url(), &last, first == Kind::NodeJs)?;
    rt.block_on(async {
        let options = Options {
            reconnection: Some(Backoff::default()),
            ..Options::default()
        };
        let mut native = duplex_native::connect(&proxy.url(), options).await?;
        let publisher = duplex_native::connect(&format!("http://{c}"), Options::default())
            .await?
            .into_emitter();
        let mut observer =
            duplex_native::connect(&format!("http://{watched}"), Options::default()).await?;
        native.emit_with_ack("join", vec![join]).await?;
        official.wait_for("joined").await?;
        let first_sid = native.sid();

        for k in 0..BEFORE {
            publish(&publisher, k, None).await?;
        }
        let before = format!("item-{}", BEFORE - 1);
        official.wait_for(&format!("\"text\":\"{before}\"")).await?;
        let mut native_texts = texts_until(&mut native, &before).await?;

        // The cut: the way to A is gone; the items are published meanwhile.
        proxy.cut();
        let mut k = BEFORE;
        for _ in 0..MISSED_EACH {
            publish(&publisher, k, None).await?;
            publish(&publisher, k + 1, Some(CHANNEL)).await?;
            k += 2;
        }
        for _ in 0..OTHERS {
            publish(&publisher, k, Some(OTHER_CHANNEL)).await?;
            k += 1;
        }
        // The last one to everyone: B has read them all once it has that.
        publish(&publisher, k, None).await?;
        let last = format!("item-{k}");
        texts_until(&mut observer, &last).await?;

        // Back, to B.
        let b = if b_late {
            let redis = &redis;
            // Started on a thread of its own: it runs its own runtime.
            let started = tokio::task::block_in_place(|| {
                std::thread::scope(|scope| {
                    scope
                        .spawn(|| Server::start(second, redis))
                        .join()
                        .map_err(|_| anyhow::anyhow!("starting server B panicked"))?
                })
            })?;
            let b = started.addr();
            servers.push(started);
            b
        } else {
            servers[2].addr()
        };
        proxy.set_upstream(b);
        proxy.restore();
        native_texts.extend(texts_until(&mut native, &last).await?);
        // A Node server sends the missed events before its CONNECT answer: the
        // client may have them before it reports itself connected.
        let mut status = native.status();
        let connected = tokio::time::timeout(
            WAIT,
            status.wait_for(|s| matches!(s, Status::Connected { .. })),
        )
        .await
        .context("the native client did not report itself connected")?
        .context("the native client is gone")?
        .clone();
        let Status::Connected { sid, recovered } = connected else {
            bail!("the native client is not connected: {connected:?}");
        };
        ensure!(recovered, "the native client's session was not recovered");
        ensure!(
            sid == first_sid,
            "the native client's id changed: {first_sid} → {sid}"
        );
        check("native client", &native_texts, k)?;

        let summary = official.summary().await?;
        let texts: Vec<String> = summary["texts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect();
        let connects = summary["connects"].as_array().cloned().unwrap_or_default();
        ensure!(
            connects.len() == 2
                && connects[1]["recovered"] == json!(true)
                && connects[1]["id"] == connects[0]["id"],
            "the official client did not recover its session: {connects:?}"
        );
        check("official client", &texts, k)
    })
}

/// Publishes `item-<k>` from `publisher` to everyone or to `channel`.
async fn publish(
    publisher: &duplex_native::Emitter,
    k: usize,
    channel: Option<&str>,
) -> Result<()> {
    let mut item = json!({ "text": format!("item-{k}") });
    if let Some(channel) = channel {
        item["channel"] = json!(channel);
    }
    publisher.emit_with_ack("publish", vec![item]).await?;
    Ok(())
}

/// The `news` texts `client` receives until `last`.
async fn texts_until(client: &mut Client, last: &str) -> Result<Vec<String>> {
    let mut texts = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(event) = client.next_event().await {
            if event.name != "news" {
                continue;
            }
            let text = event.args[0]["hello"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let done = text == last;
            texts.push(text);
            if done {
                return Ok(());
            }
        }
        bail!(
            "the client closed before {last}: {:?}",
            client.close_reason()
        )
    })
    .await
    .with_context(|| format!("{last} did not come within {WAIT:?}; got {texts:?}"))??;
    Ok(texts)
}

/// Every item a client of the channel was to get, up to `last`, once, in order:
/// all but those sent to the other channel.
fn check(who: &str, texts: &[String], last: usize) -> Result<()> {
    let got: Vec<&str> = texts
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("item-"))
        .collect();
    let others = BEFORE + 2 * MISSED_EACH..BEFORE + 2 * MISSED_EACH + OTHERS;
    let expected: Vec<String> = (0..=last)
        .filter(|k| !others.contains(k))
        .map(|k| format!("item-{k}"))
        .collect();
    ensure!(
        got == expected.iter().map(String::as_str).collect::<Vec<_>>(),
        "the {who} got {} items, expected {} (0..={last} but the other channel's): {got:?}",
        got.len(),
        expected.len()
    );
    Ok(())
}

fn empty_dist() -> Result<std::path::PathBuf> {
    let dist = std::env::temp_dir().join("duplex-e2e-cluster-dist");
    std::fs::create_dir_all(&dist)?;
    Ok(dist)
}

/// `node interop/cluster-recover.mjs`, its lines as they come.
struct NodeClient {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
}

impl NodeClient {
    fn start(url: &str, last: &str, join_room: bool) -> Result<NodeClient> {
        let interop = interop_dir()?;
        let mut child = Command::new("node")
            .arg("cluster-recover.mjs")
            .args([url, CHANNEL, last])
            .args(join_room.then_some("--join-room"))
            .current_dir(&interop)
            .stdout(Stdio::piped())
            .spawn()
            .context("starting node")?;
        let stdout = child.stdout.take().context("node's stdout")?;
        let (send, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                println!("  node | {line}");
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(NodeClient { child, lines })
    }

    /// Waits for a line containing `needle`.
    async fn wait_for(&mut self, needle: &str) -> Result<String> {
        tokio::time::timeout(WAIT, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(needle) {
                    return Ok(line);
                }
            }
            bail!("node exited before printing {needle:?}")
        })
        .await
        .with_context(|| format!("node did not print {needle:?} within {WAIT:?}"))?
    }

    async fn summary(&mut self) -> Result<Value> {
        let line = self.wait_for("summary ").await?;
        let json = line.strip_prefix("summary ").unwrap_or(&line);
        let summary: Value = serde_json::from_str(json).context("node's summary")?;
        ensure!(
            summary["ok"] == json!(true),
            "node's client did not finish: {summary}"
        );
        Ok(summary)
    }
}

/// `node interop/cluster-node.mjs <redis> --recovery`: Node socket.io 4 with
/// the Redis Streams adapter and connection state recovery.
struct NodeServer {
    addr: SocketAddr,
    child: Child,
}

impl NodeServer {
    fn start(redis: &RedisServer) -> Result<NodeServer> {
        let mut child = Command::new("node")
            .arg("cluster-node.mjs")
            .args([redis.url().as_str(), "--recovery"])
            .current_dir(interop_dir()?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting node")?;
        let stdout = child.stdout.take().context("node's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("expected `listening <port>` from node, got {line:?}"))?;
        Ok(NodeServer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        })
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn interop_dir() -> Result<std::path::PathBuf> {
    let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop");
    ensure!(
        interop
            .join("node_modules/@socket.io/redis-streams-adapter")
            .is_dir(),
        "{} has no node_modules: run `npm ci` there (`cargo xtask test` does)",
        interop.display()
    );
    Ok(interop)
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
