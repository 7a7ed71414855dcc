//! Several servers as one cluster on a real Redis (`redis-server` on loopback,
//! started by the tests): duplex servers in-process, and a Node.js Socket.IO 4
//! server with `@socket.io/redis-streams-adapter` (interop/cluster-node.mjs).
//! Clients speak Socket.IO over a raw WebSocket, so they see the exact packets.

mod common;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::redis::RedisServer;
use common::{PATIENCE, RawClient};
use duplex_server::Config;
use duplex_server::cluster::{RedisCluster, RedisOptions};
use duplex_server::socketio::{
    Handler, IncomingEvent, Io, RecoveryConfig, ServerSideEvent, Socket,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The cluster tests' app, the same events as interop/cluster-node.mjs:
/// `publish` [v], `to` [room, v], `join` [room], `rooms` [],
/// `select-join`/`select-leave` [room, other], `select-disconnect` [room],
/// `fetch` [room or null] (ack: the ids of the cluster's sockets there, sorted,
/// or `{"error": ...}`), `ask` [ms] (every other socket of the cluster is
/// asked `question`; ack: `{"answers": sorted first args, "missing": n}`),
/// `sse` [name, with_ack] (a server-side emit; ack: `{"responses": sorted}`
/// or "sent"). Server-side: `ping` answers "pong-duplex", `hello` [who]
/// emits news "server said <who>" to this server's clients.
struct ClusterApp;

impl Handler for ClusterApp {
    fn on_event(&self, socket: &Socket, event: IncomingEvent) {
        let arg = |i: usize| event.args.values().get(i).cloned().unwrap_or(Value::Null);
        let text = |i: usize| arg(i).as_str().unwrap_or_default().to_owned();
        let io = socket.io();
        let reply = match event.name.as_str() {
            "publish" => json!(io.of("/").emit_raw("news", vec![arg(0)])),
            "to" => json!(io.to("/", &text(0)).emit_raw("news", vec![arg(1)])),
            "join" => {
                socket.join(&text(0));
                json!(socket.rooms())
            }
            "rooms" => json!(socket.rooms()),
            "select-join" => json!(io.to("/", &text(0)).join(&text(1))),
            "select-leave" => json!(io.to("/", &text(0)).leave(&text(1))),
            "select-disconnect" => {
                io.to("/", &text(0)).disconnect();
                json!("ok")
            }
            "fetch" => {
                let selection = match arg(0) {
                    Value::String(room) => io.to("/", &room),
                    _ => io.of("/"),
                };
                let ack = event.ack;
                tokio::spawn(async move {
                    let reply = match selection.fetch_sockets(Duration::from_secs(2)).await {
                        Ok(sockets) => {
                            let mut ids: Vec<String> = sockets.into_iter().map(|s| s.id).collect();
                            ids.sort();
                            json!(ids)
                        }
                        Err(e) => json!({"error": e.to_string()}),
                    };
                    if let Some(ack) = ack {
                        let _ = ack.send(vec![reply]);
                    }
                });
                return;
            }
            "sse" => {
                let (name, with_ack) = (text(0), arg(1).as_bool() == Some(true));
                let ack = event.ack;
                tokio::spawn(async move {
                    let reply = if with_ack {
                        match io
                            .server_side_emit_with_ack("/", &name, vec![], Duration::from_secs(2))
                            .await
                        {
                            Ok(mut responses) => {
                                responses.sort_by_key(Value::to_string);
                                json!({"responses": responses})
                            }
                            Err(e) => json!({"error": e.to_string()}),
                        }
                    } else {
                        io.server_side_emit("/", &name, vec![json!("hi")]).await;
                        json!("sent")
                    };
                    if let Some(ack) = ack {
                        let _ = ack.send(vec![reply]);
                    }
                });
                return;
            }
            "ask" => {
                let timeout = Duration::from_millis(arg(0).as_u64().unwrap_or(1000));
                let others = socket.broadcast();
                let ack = event.ack;
                tokio::spawn(async move {
                    let (responses, missing) =
                        match others.emit_with_ack("question", vec![], timeout).await {
                            Ok(responses) => (responses, 0),
                            Err(e) => (e.responses, e.missing),
                        };
                    let mut answers: Vec<Value> = responses
                        .into_iter()
                        .filter_map(|r| r.args.into_iter().next())
                        .collect();
                    answers.sort_by_key(Value::to_string);
                    if let Some(ack) = ack {
                        let _ = ack.send(vec![json!({"answers": answers, "missing": missing})]);
                    }
                });
                return;
            }
            _ => Value::Null,
        };
        if let Some(ack) = event.ack {
            let _ = ack.send(vec![reply]);
        }
    }

    fn on_server_side_emit(&self, io: &Arc<Io>, event: ServerSideEvent) {
        match event.name.as_str() {
            "ping" => {
                if let Some(ack) = event.ack {
                    ack.send(json!("pong-duplex"));
                }
            }
            "hello" => {
                let who = event.args.first().and_then(Value::as_str).unwrap_or("?");
                io.of("/")
                    .local()
                    .emit_raw("news", vec![json!(format!("server said {who}"))]);
            }
            _ => {}
        }
    }
}

/// A duplex server in the cluster.
struct Node {
    addr: SocketAddr,
    io: Arc<Io>,
    cluster: Arc<RedisCluster>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Node {
    /// Starts a node and waits until it is connected to Redis; with
    /// connection state recovery, as the binary runs by default.
    async fn start(redis: &RedisServer) -> Node {
        let node = Node::spawn(redis, true).await;
        node.wait_connected(PATIENCE).await;
        node
    }

    /// Starts a node without connection state recovery: its own broadcasts
    /// reach its sockets at once, not in the stream's order.
    async fn start_without_recovery(redis: &RedisServer) -> Node {
        let node = Node::spawn(redis, false).await;
        node.wait_connected(PATIENCE).await;
        node
    }

    /// Three nodes on `redis`, each connected.
    async fn three(redis: &RedisServer) -> [Node; 3] {
        [
            Node::start(redis).await,
            Node::start(redis).await,
            Node::start(redis).await,
        ]
    }

    /// Starts a node, connected to Redis or not.
    async fn spawn(redis: &RedisServer, recovery: bool) -> Node {
        let listener = duplex_server::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let config = Config {
            dist: std::env::temp_dir().join("duplex-no-bundle"),
            recovery: recovery.then(RecoveryConfig::default),
            metrics: duplex_server::config::MetricsEndpoint::Main,
            ..Config::default()
        };
        let cluster = RedisCluster::new(RedisOptions::new(redis.url())).expect("valid url");
        let io = cluster
            .configure(Io::builder(config.session_config()).namespace("/", ClusterApp))
            .build();
        let shutdown = CancellationToken::new();
        cluster.start(&io, shutdown.clone());
        let task = tokio::spawn(duplex_server::serve(
            listener,
            config,
            io.clone(),
            shutdown.clone(),
        ));
        Node {
            addr,
            io,
            cluster,
            shutdown,
            task,
        }
    }

    /// Waits, at most `within`, until every connection of the node to Redis is up.
    async fn wait_connected(&self, within: Duration) {
        tokio::time::timeout(within, async {
            while !self.cluster.is_connected() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the node connects to Redis");
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("stops")
            .expect("no panic")
            .expect("no error");
    }
}

/// The Node.js server of interop/cluster-node.mjs, stopped when dropped.
struct NodeJs {
    addr: SocketAddr,
    child: Child,
}

impl NodeJs {
    fn start(redis: &RedisServer) -> NodeJs {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace")
            .to_path_buf();
        let interop: PathBuf = root.join("interop");
        assert!(
            interop
                .join("node_modules/@socket.io/redis-streams-adapter")
                .is_dir(),
            "interop/node_modules lacks @socket.io/redis-streams-adapter: `cargo xtask test` runs `npm ci` there"
        );
        let mut child = Command::new("node")
            .arg(interop.join("cluster-node.mjs"))
            .arg(redis.url())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("reads the node server's first line");
        let port: u16 = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening <port>`, got {line:?}"));
        NodeJs {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        }
    }
}

impl Drop for NodeJs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Socket.IO client joined to `/` over a raw WebSocket.
struct Client {
    raw: RawClient,
    sid: String,
    next_ack: u64,
    /// Packets that arrived while waiting for an ack.
    pending: VecDeque<String>,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        let mut raw =
            RawClient::open(&format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")).await;
        let open = raw.recv_text().await;
        assert!(open.starts_with("0{"), "{open}");
        raw.send("40").await;
        let mut c = Client {
            raw,
            sid: String::new(),
            next_ack: 0,
            pending: VecDeque::new(),
        };
        loop {
            let text = c.recv().await;
            if let Some(connected) = text.strip_prefix("40") {
                let data: Value = serde_json::from_str(connected).expect("json");
                c.sid = data["sid"].as_str().expect("sid").to_owned();
                return c;
            }
        }
    }

    /// The next Socket.IO packet, answering pings.
    async fn recv(&mut self) -> String {
        if let Some(text) = self.pending.pop_front() {
            return text;
        }
        self.recv_live().await
    }

    async fn recv_live(&mut self) -> String {
        loop {
            let text = self.raw.recv_text().await;
            if text == "2" {
                self.raw.send("3").await;
                continue;
            }
            return text;
        }
    }

    /// Emits `name` with `args` and waits for the ack's first argument.
    async fn call(&mut self, name: &str, args: Value) -> Value {
        self.next_ack += 1;
        let id = self.next_ack;
        let mut array = vec![json!(name)];
        array.extend(args.as_array().cloned().unwrap_or_default());
        self.raw
            .send(&format!("42{id}{}", Value::Array(array)))
            .await;
        let prefix = format!("43{id}");
        loop {
            let text = tokio::time::timeout(PATIENCE, self.recv_live())
                .await
                .expect("an ack in time");
            match text.strip_prefix(&prefix) {
                Some(rest) => {
                    let args: Value = serde_json::from_str(rest).expect("ack json");
                    return args[0].clone();
                }
                None => self.pending.push_back(text),
            }
        }
    }

    /// The next `news` event's value.
    async fn news(&mut self) -> Value {
        let text = self.recv().await;
        let array: Vec<Value> = serde_json::from_str(
            text.strip_prefix("42")
                .unwrap_or_else(|| panic!("expected an event, got {text:?}")),
        )
        .expect("json");
        assert_eq!(array[0], "news", "{text}");
        array[1].clone()
    }

    /// The news that arrives until nothing has for `quiet`.
    async fn news_until_quiet(&mut self, quiet: Duration) -> Vec<Value> {
        let mut got = Vec::new();
        loop {
            if let Some(text) = self.pending.pop_front() {
                got.push(parse_news(&text));
                continue;
            }
            match tokio::time::timeout(quiet, self.recv_live()).await {
                Ok(text) => got.push(parse_news(&text)),
                Err(_) => return got,
            }
        }
    }

    async fn silent(&mut self) {
        let got = self.news_until_quiet(Duration::from_millis(300)).await;
        assert!(got.is_empty(), "unexpected news {got:?}");
    }

    async fn rooms(&mut self) -> Vec<String> {
        let mut rooms: Vec<String> = self
            .call("rooms", json!([]))
            .await
            .as_array()
            .expect("rooms")
            .iter()
            .map(|r| r.as_str().unwrap_or_default().to_owned())
            .collect();
        rooms.sort();
        rooms
    }

    /// Waits for a `question` that asks for an ack and answers it with this
    /// socket's id.
    async fn answer(&mut self) {
        let text = self.recv().await;
        let rest = text
            .strip_prefix("42")
            .unwrap_or_else(|| panic!("expected an event, got {text:?}"));
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        assert!(digits > 0, "the question asks for an ack: {text}");
        let (id, args) = rest.split_at(digits);
        assert!(args.starts_with(r#"["question""#), "{text}");
        let sid = self.sid.clone();
        self.raw.send(&format!("43{id}{}", json!([sid]))).await;
    }

    /// Sends `name` with `args` asking for an ack with id `id`, without
    /// waiting for it; [`Client::ack`] reads it.
    async fn ask(&mut self, id: u64, name: &str, args: Value) {
        let mut array = vec![json!(name)];
        array.extend(args.as_array().cloned().unwrap_or_default());
        self.raw
            .send(&format!("42{id}{}", Value::Array(array)))
            .await;
    }

    /// The first argument of the ack with id `id`, other packets skipped.
    async fn ack(&mut self, id: u64) -> Value {
        let prefix = format!("43{id}");
        loop {
            let text = self.recv().await;
            if let Some(rest) = text.strip_prefix(&prefix) {
                return serde_json::from_str::<Value>(rest).expect("json")[0].clone();
            }
        }
    }

    /// Waits until this client's rooms include (or not) `room`.
    async fn wait_in_room(&mut self, room: &str, inside: bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.rooms().await.iter().any(|r| r == room) != inside {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} is {}in {room} after {PATIENCE:?}",
                self.sid,
                if inside { "not " } else { "still " }
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn parse_news(text: &str) -> Value {
    let array: Vec<Value> = serde_json::from_str(
        text.strip_prefix("42")
            .unwrap_or_else(|| panic!("expected an event, got {text:?}")),
    )
    .expect("json");
    assert_eq!(array[0], "news", "{text}");
    array[1].clone()
}

#[tokio::test]
async fn a_publish_on_one_node_reaches_every_node_once_in_order() {
    let redis = RedisServer::start();
    let nodes = Node::three(&redis).await;
    let mut clients = Vec::new();
    for node in &nodes {
        clients.push(Client::connect(node.addr).await);
    }
    clients.push(Client::connect(nodes[1].addr).await);
    // Two publishers on two nodes, interleaved.
    for k in 0..50 {
        for (publisher, base) in [(0, 0), (2, 1000)] {
            let delivered = clients[publisher].call("publish", json!([base + k])).await;
            assert_eq!(delivered, 1, "one local recipient on the publisher's node");
        }
    }
    for (i, client) in clients.iter_mut().enumerate() {
        let got = client.news_until_quiet(Duration::from_millis(500)).await;
        for base in [0, 1000] {
            let from: Vec<i64> = got
                .iter()
                .filter_map(Value::as_i64)
                .filter(|n| (base..base + 1000).contains(n))
                .collect();
            let expected: Vec<i64> = (base..base + 50).collect();
            assert_eq!(
                from, expected,
                "client {i}: the publisher at {base}'s items, once, in order"
            );
        }
        assert_eq!(got.len(), 100, "client {i}: nothing else: {got:?}");
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test]
async fn room_operations_from_one_node_act_on_the_sockets_of_another() {
    let redis = RedisServer::start();
    let [n1, n2, n3] = Node::three(&redis).await;
    let mut c1 = Client::connect(n1.addr).await;
    let mut c2 = Client::connect(n2.addr).await;
    let mut c3 = Client::connect(n3.addr).await;
    c2.call("join", json!(["a"])).await;

    // From n1: the sockets in "a" (c2, on n2) join "b".
    assert_eq!(
        c1.call("select-join", json!(["a", "b"])).await,
        0,
        "none on n1"
    );
    c2.wait_in_room("b", true).await;
    // From n3: to "b" reaches c2 only.
    c3.call("to", json!(["b", "to b"])).await;
    assert_eq!(c2.news().await, json!("to b"));
    c1.silent().await;
    c3.silent().await;
    // Leave, by selection, from n3.
    c3.call("select-leave", json!(["a", "b"])).await;
    c2.wait_in_room("b", false).await;
    // Disconnect, by selection, from n1: c2 leaves the namespace.
    c1.call("select-disconnect", json!(["a"])).await;
    let text = c2.recv().await;
    assert_eq!(text, "41", "c2 is disconnected from /");
    c3.call("publish", json!(["after"])).await;
    assert_eq!(c1.news().await, json!("after"));
    assert_eq!(c3.news().await, json!("after"));
    for node in [n1, n2, n3] {
        node.stop().await;
    }
}

#[tokio::test]
async fn a_node_js_server_with_the_redis_streams_adapter_is_a_member() {
    let redis = RedisServer::start();
    let duplex = Node::start(&redis).await;
    let node = NodeJs::start(&redis);
    let mut cd = Client::connect(duplex.addr).await;
    let mut cn = Client::connect(node.addr).await;

    // The Node server reads the stream from the first XREAD it sends: publish
    // from duplex until it shows, then start from a quiet cluster.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        cd.call("publish", json!(["sync"])).await;
        let got = cn.news_until_quiet(Duration::from_millis(100)).await;
        if !got.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Node server never saw duplex's publish"
        );
    }
    cd.news_until_quiet(Duration::from_millis(300)).await;
    cn.news_until_quiet(Duration::from_millis(300)).await;

    // Both ways, in order.
    for k in 0..20 {
        cd.call("publish", json!([format!("d{k}")])).await;
        cn.call("publish", json!([format!("n{k}")])).await;
    }
    for (who, c) in [("duplex's client", &mut cd), ("Node's client", &mut cn)] {
        let got = c.news_until_quiet(Duration::from_millis(500)).await;
        for prefix in ["d", "n"] {
            let items: Vec<&str> = got
                .iter()
                .filter_map(Value::as_str)
                .filter(|s| s.starts_with(prefix))
                .collect();
            let expected: Vec<String> = (0..20).map(|k| format!("{prefix}{k}")).collect();
            assert_eq!(items, expected, "{who}: {prefix} items once, in order");
        }
        assert_eq!(got.len(), 40, "{who}: {got:?}");
    }

    // What the Redis Streams emitter writes reaches duplex's client (and Node's).
    let mut conn = redis.connection();
    let _: String = redis::cmd("XADD")
        .arg("socket.io")
        .arg("MAXLEN")
        .arg("~")
        .arg(10_000)
        .arg("*")
        .arg("uid")
        .arg("emitter")
        .arg("nsp")
        .arg("/")
        .arg("type")
        .arg("3")
        .arg("data")
        .arg(r#"{"packet":{"type":2,"data":["news","from the emitter"],"nsp":"/"},"opts":{"rooms":[],"flags":{},"except":[]}}"#)
        .query(&mut conn)
        .expect("XADD");
    assert_eq!(cd.news().await, json!("from the emitter"));
    assert_eq!(cn.news().await, json!("from the emitter"));

    // Room operations both ways: Node makes duplex's socket join, duplex's
    // broadcast to that room reaches it; duplex makes Node's socket join.
    cd.call("join", json!(["a"])).await;
    cn.call("select-join", json!(["a", "b"])).await;
    cd.wait_in_room("b", true).await;
    cn.call("to", json!(["b", "to b from node"])).await;
    assert_eq!(cd.news().await, json!("to b from node"));
    cn.call("join", json!(["c"])).await;
    cd.call("select-join", json!(["c", "e"])).await;
    cn.wait_in_room("e", true).await;
    cd.call("to", json!(["e", "to e from duplex"])).await;
    assert_eq!(cn.news().await, json!("to e from duplex"));
    cd.silent().await;
    cn.silent().await;

    // Requests over pub/sub, both ways: each server fetches the other's
    // sockets, and Node's broadcast with acks is answered by duplex's client.
    let both = sorted_ids(&[&cd, &cn]);
    assert_eq!(
        cd.call("fetch", json!([null])).await,
        both,
        "duplex fetches Node's"
    );
    assert_eq!(
        cn.call("fetch", json!([null])).await,
        both,
        "Node fetches duplex's"
    );
    cn.ask(900, "ask", json!([3000])).await;
    cd.answer().await;
    cn.answer().await;
    let reply = cn.ack(900).await;
    assert_eq!(reply["err"], Value::Null, "{reply}");
    let mut answers: Vec<String> = reply["responses"]
        .as_array()
        .expect("responses")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect();
    answers.sort();
    assert_eq!(json!(answers), both, "every client of both servers acked");
    // And duplex's broadcast with acks reaches Node's client.
    cd.ask(901, "ask", json!([3000])).await;
    cn.answer().await;
    assert_eq!(
        cd.ack(901).await,
        json!({"answers": [cn.sid.clone()], "missing": 0}),
        "Node counted its client and relayed its ack"
    );
    drop(node);
    duplex.stop().await;
}

#[tokio::test]
async fn redis_stopped_and_restarted_under_load_loses_only_what_is_counted() {
    redis_stopped_and_restarted(true).await;
}

#[tokio::test]
async fn without_recovery_too_redis_stopped_and_restarted_loses_only_what_is_counted() {
    redis_stopped_and_restarted(false).await;
}

/// With recovery, a node's own broadcasts normally reach its sockets through
/// the stream; while Redis is away they must reach them at once all the same.
async fn redis_stopped_and_restarted(recovery: bool) {
    let mut redis = RedisServer::start();
    let (n1, n2) = if recovery {
        (Node::start(&redis).await, Node::start(&redis).await)
    } else {
        (
            Node::start_without_recovery(&redis).await,
            Node::start_without_recovery(&redis).await,
        )
    };
    let mut c1 = Client::connect(n1.addr).await;
    let mut c1b = Client::connect(n1.addr).await;
    let mut c2 = Client::connect(n2.addr).await;
    c1.call("publish", json!(["before"])).await;
    for c in [&mut c1, &mut c1b, &mut c2] {
        assert_eq!(c.news().await, json!("before"));
    }

    redis.stop();
    // Local delivery goes on at once while Redis is away.
    for k in 0..20 {
        c1.call("publish", json!([format!("during{k}")])).await;
        for c in [&mut c1, &mut c1b] {
            assert_eq!(
                c.news().await,
                json!(format!("during{k}")),
                "local delivery"
            );
        }
    }
    c2.silent().await;

    redis.restart();
    n1.wait_connected(Duration::from_secs(20)).await;
    n2.wait_connected(Duration::from_secs(20)).await;
    for k in 0..5 {
        c1.call("publish", json!([format!("after{k}")])).await;
    }
    // The other node gets what waited in the outbox, in order, minus the
    // messages of the pipeline cut in flight (the first `lost`), which are
    // counted: of those, Redis may have taken a prefix before it stopped.
    let got = c2.news_until_quiet(Duration::from_millis(800)).await;
    let lost = usize::try_from(n1.cluster.lost()).expect("small");
    assert_eq!(n1.cluster.dropped(), 0, "the outbox was not full");
    assert!(lost <= 20);
    let taken = got.len().saturating_sub(20 - lost + 5);
    let mut expected: Vec<Value> = (0..taken)
        .chain(lost..20)
        .map(|k| json!(format!("during{k}")))
        .collect();
    expected.extend((0..5).map(|k| json!(format!("after{k}"))));
    assert_eq!(
        got, expected,
        "{lost} lost in flight, {taken} of them taken"
    );
    for c in [&mut c1, &mut c1b] {
        let got = c.news_until_quiet(Duration::from_millis(300)).await;
        let after: Vec<Value> = (0..5).map(|k| json!(format!("after{k}"))).collect();
        assert_eq!(got, after, "local clients get each item once");
    }
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn a_node_started_while_redis_is_unreachable_serves_its_clients_and_joins_later() {
    let mut redis = RedisServer::start();
    redis.stop();
    let lonely = Node::spawn(&redis, true).await;
    let mut c1 = Client::connect(lonely.addr).await;
    c1.call("publish", json!(["alone"])).await;
    assert_eq!(c1.news().await, json!("alone"));
    assert!(!lonely.cluster.is_connected());

    redis.restart();
    lonely.wait_connected(Duration::from_secs(20)).await;
    let other = Node::start(&redis).await;
    let mut c2 = Client::connect(other.addr).await;
    c1.call("publish", json!(["together"])).await;
    assert_eq!(c1.news().await, json!("together"));
    assert_eq!(c2.news().await, json!("together"));
    lonely.stop().await;
    other.stop().await;
}

fn sorted_ids(clients: &[&Client]) -> Value {
    let mut ids: Vec<String> = clients.iter().map(|c| c.sid.clone()).collect();
    ids.sort();
    json!(ids)
}

#[tokio::test]
async fn fetching_sockets_gets_those_of_every_node() {
    let redis = RedisServer::start();
    let [n1, n2, n3] = Node::three(&redis).await;
    let mut c1 = Client::connect(n1.addr).await;
    let mut c2 = Client::connect(n2.addr).await;
    let mut c3 = Client::connect(n3.addr).await;
    let outside = Client::connect(n2.addr).await;
    for c in [&mut c1, &mut c2, &mut c3] {
        c.call("join", json!(["r"])).await;
    }
    assert_eq!(
        c1.call("fetch", json!(["r"])).await,
        sorted_ids(&[&c1, &c2, &c3])
    );
    assert_eq!(
        c3.call("fetch", json!([null])).await,
        sorted_ids(&[&c1, &c2, &c3, &outside])
    );
    // A node that stops answering: the others' sockets come with the error.
    n3.shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), n3.task).await;
    let reply = c1.call("fetch", json!(["r"])).await;
    // n3 has left the channel (its subscription closed) or not yet: either
    // its sockets are gone from the answer, or the answer says who is missing.
    match reply {
        Value::Array(_) => assert_eq!(reply, sorted_ids(&[&c1, &c2])),
        other => assert!(
            other["error"]
                .as_str()
                .is_some_and(|e| e.contains("timeout reached")),
            "{other}"
        ),
    }
    n1.stop().await;
    n2.stop().await;
}

#[tokio::test]
async fn a_broadcast_with_acks_waits_for_the_clients_of_every_node() {
    let redis = RedisServer::start();
    let [n1, n2, n3] = Node::three(&redis).await;
    let mut c1 = Client::connect(n1.addr).await;
    let mut c1b = Client::connect(n1.addr).await;
    let mut c2 = Client::connect(n2.addr).await;
    let mut c3 = Client::connect(n3.addr).await;

    c1.ask(100, "ask", json!([3000])).await;
    for c in [&mut c1b, &mut c2, &mut c3] {
        c.answer().await;
    }
    let others = sorted_ids(&[&c1b, &c2, &c3]);
    assert_eq!(c1.ack(100).await, json!({"answers": others, "missing": 0}));

    // c3 does not answer: after the timeout, the others' acks and one missing.
    c1.ask(101, "ask", json!([500])).await;
    c1b.answer().await;
    c2.answer().await;
    let question = c3.recv().await;
    assert!(question.contains(r#"["question"]"#), "{question}");
    assert_eq!(
        c1.ack(101).await,
        json!({"answers": sorted_ids(&[&c1b, &c2]), "missing": 1})
    );
    for node in [n1, n2, n3] {
        node.stop().await;
    }
}

#[tokio::test]
async fn readiness_follows_the_link_to_redis() {
    let mut redis = RedisServer::start();
    let node = Node::start(&redis).await;
    let ready = |r: &common::http::Response| {
        (
            r.status,
            r.json()["status"].clone(),
            r.json()["redis"].clone(),
        )
    };
    let r = common::http::get(node.addr, "/readyz").await;
    assert_eq!(
        ready(&r),
        (200, json!("ready"), json!("connected")),
        "{}",
        r.text()
    );
    assert_eq!(
        common::http::get(node.addr, "/healthz").await.json()["status"],
        "alive"
    );
    let link = |text: String| {
        text.lines()
            .find(|l| l.starts_with("duplex_cluster_connected "))
            .map(str::to_owned)
    };
    assert_eq!(
        link(common::http::get(node.addr, "/metrics").await.text()).as_deref(),
        Some("duplex_cluster_connected 1"),
        "the metrics tell the link is up"
    );

    redis.stop();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = common::http::get(node.addr, "/readyz").await;
        if r.status == 503 {
            assert_eq!(ready(&r), (503, json!("not ready"), json!("unreachable")));
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still ready without Redis: {}",
            r.text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        link(common::http::get(node.addr, "/metrics").await.text()).as_deref(),
        Some("duplex_cluster_connected 0"),
        "and down"
    );
    // Alive all along, and serving its own clients.
    assert_eq!(common::http::get(node.addr, "/healthz").await.status, 200);
    let mut c = Client::connect(node.addr).await;
    c.call("publish", json!(["still here"])).await;
    assert_eq!(c.news().await, json!("still here"));

    redis.restart();
    node.wait_connected(Duration::from_secs(20)).await;
    let r = common::http::get(node.addr, "/readyz").await;
    assert_eq!(ready(&r), (200, json!("ready"), json!("connected")));
    node.stop().await;
}

#[tokio::test]
async fn server_side_emits_reach_every_other_server_node_js_included() {
    let redis = RedisServer::start();
    let (n1, n2) = (Node::start(&redis).await, Node::start(&redis).await);
    let node = NodeJs::start(&redis);
    let mut c1 = Client::connect(n1.addr).await;
    let mut c2 = Client::connect(n2.addr).await;
    let mut cn = Client::connect(node.addr).await;
    // The Node server subscribes when it starts; wait until it counts.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let expected = json!({"responses": ["pong-duplex", "pong-node"]});
    loop {
        let reply = c1.call("sse", json!(["ping", true])).await;
        if reply == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "last answer {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Node's serverSideEmitWithAck gets both duplex servers' answers.
    assert_eq!(
        cn.call("sse", json!(["ping", true])).await,
        json!({"responses": ["pong-duplex", "pong-duplex"]})
    );
    // Without an ack: every other server's handler runs, not the sender's.
    assert_eq!(c1.call("sse", json!(["hello", false])).await, json!("sent"));
    assert_eq!(c2.news().await, json!("server said hi"));
    assert_eq!(cn.news().await, json!("server said hi"));
    c1.silent().await;
    // What the Redis Streams emitter writes to the stream reaches every server.
    let mut conn = redis.connection();
    let _: String = redis::cmd("XADD")
        .arg("socket.io")
        .arg("MAXLEN")
        .arg("~")
        .arg(10_000)
        .arg("*")
        .arg(&[("uid", "emitter"), ("nsp", "/"), ("type", "9")])
        .arg("data")
        .arg(r#"{"packet":["hello","the emitter"]}"#)
        .query(&mut conn)
        .expect("XADD");
    for c in [&mut c1, &mut c2, &mut cn] {
        assert_eq!(c.news().await, json!("server said the emitter"));
    }
    drop(node);
    n1.stop().await;
    n2.stop().await;
}

/// nginx (Debian's package) in front of `servers`, configured as the README's
/// recipe: `hash $remote_addr consistent` (sticky, for long-polling) and the
/// WebSocket upgrade headers. Stopped when dropped.
struct Nginx {
    addr: SocketAddr,
    child: Child,
    _dir: PathBuf,
}

impl Nginx {
    fn start(servers: &[SocketAddr]) -> Nginx {
        const NGINX: &str = "/usr/sbin/nginx";
        assert!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: `cargo xtask test` installs it (Debian's nginx)"
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("duplex-nginx-{port}"));
        std::fs::create_dir_all(&dir).expect("nginx dir");
        let upstreams: String = servers
            .iter()
            .map(|s| format!("        server {s};\n"))
            .collect();
        let recipe = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx-cluster.conf"),
        )
        .expect("deploy/nginx-cluster.conf");
        // The recipe's http block, with this test's ports and a private prefix.
        let http = recipe
            .replace("        server 127.0.0.1:8124;\n        server 127.0.0.1:8125;\n        server 127.0.0.1:8126;\n", &upstreams)
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"));
        let d = dir.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n{http}\n}}\n"
        );
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = Command::new(NGINX)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nginx did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx {
            addr,
            child,
            _dir: dir,
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn official_clients_with_default_options_through_nginx_in_front_of_three_nodes() {
    let redis = RedisServer::start();
    let nodes = Node::three(&redis).await;
    let nginx = Nginx::start(&nodes.iter().map(|n| n.addr).collect::<Vec<_>>());
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf();
    const CLIENTS: usize = 12;
    const ITEMS: u64 = 20;
    let mut child = Command::new("node")
        .arg(root.join("interop/cluster-clients.mjs"))
        .arg(format!("http://{}", nginx.addr))
        .arg(CLIENTS.to_string())
        .arg(ITEMS.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::task::spawn_blocking(move || {
        let first = lines.next().and_then(Result::ok);
        (first, lines)
    })
    .await
    .expect("reader");
    let (first, mut lines) = ready;
    assert_eq!(first.as_deref(), Some("ready"));
    // Spread over the servers by their source addresses, every one upgraded.
    let counts: Vec<usize> = nodes.iter().map(|n| n.io.socket_count("/")).collect();
    assert_eq!(counts.iter().sum::<usize>(), CLIENTS, "{counts:?}");
    assert!(
        counts.iter().filter(|&&c| c > 0).count() >= 2,
        "one node took every client: {counts:?}"
    );

    let mut publisher = Client::connect(nodes[0].addr).await;
    for k in 0..ITEMS {
        publisher.call("publish", json!([{"k": k}])).await;
    }
    let summary = tokio::task::spawn_blocking(move || lines.next().and_then(Result::ok))
        .await
        .expect("reader")
        .expect("the clients' summary");
    let _ = child.wait();
    let clients: Vec<Value> = serde_json::from_str(&summary).expect("json");
    assert_eq!(clients.len(), CLIENTS);
    let expected: Vec<u64> = (0..ITEMS).collect();
    for (i, c) in clients.iter().enumerate() {
        assert_eq!(c["error"], Value::Null, "client {i}: {c}");
        assert_eq!(
            c["transport"], "websocket",
            "client {i} upgraded through nginx: {c}"
        );
        assert_eq!(
            c["got"],
            json!(expected),
            "client {i}: every item once, in order"
        );
    }
    drop(nginx);
    for node in nodes {
        node.stop().await;
    }
}
