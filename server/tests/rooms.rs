//! Rooms, broadcasts, disconnect reasons and connection state recovery, over real
//! sockets against an `Io` with a small test application.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PATIENCE, RawClient};
use duplex_server::Config;
use duplex_server::socketio::RecoveryConfig;
use duplex_server::socketio::{DisconnectReason, Handler, IncomingEvent, Io, IoBuilder, Socket};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// Events: `join`/`leave` [room] (ack: rooms), `to` [rooms[], except[], text],
/// `others` [text] (everyone but me), `kick` [], `data` [value] (set, ack: get),
/// `select-join`/`select-leave` [rooms[], room] (the sockets in any of rooms, or
/// all, join or leave room; ack: how many), `ask` [ms] (every other socket is
/// asked `question` and has ms to ack; the outcome comes back as `msg`).
#[derive(Default)]
struct RoomsApp {
    disconnects: Arc<Mutex<Vec<(String, DisconnectReason)>>>,
}

impl Handler for RoomsApp {
    fn on_event(&self, socket: &Socket, event: IncomingEvent) {
        let arg = |i: usize| event.args.values().get(i).cloned().unwrap_or(Value::Null);
        let reply = match event.name.as_str() {
            "join" => {
                socket.join(arg(0).as_str().unwrap_or_default());
                json!(socket.rooms())
            }
            "leave" => {
                socket.leave(arg(0).as_str().unwrap_or_default());
                json!(socket.rooms())
            }
            "to" => {
                let mut b = socket.io().of(socket.nsp());
                for room in arg(0).as_array().into_iter().flatten() {
                    b = b.to(room.as_str().unwrap_or_default());
                }
                for room in arg(1).as_array().into_iter().flatten() {
                    b = b.except(room.as_str().unwrap_or_default());
                }
                json!(b.emit_raw("msg", vec![arg(2)]))
            }
            "others" => json!(socket.broadcast().emit_raw("msg", vec![arg(0)])),
            "select-join" | "select-leave" => {
                let mut b = socket.io().of(socket.nsp());
                for room in arg(0).as_array().into_iter().flatten() {
                    b = b.to(room.as_str().unwrap_or_default());
                }
                let room = arg(1);
                let room = room.as_str().unwrap_or_default();
                json!(if event.name == "select-join" {
                    b.join(room)
                } else {
                    b.leave(room)
                })
            }
            "ask" => {
                let timeout = Duration::from_millis(arg(0).as_u64().unwrap_or(1000));
                let (asker, others) = (socket.clone(), socket.broadcast());
                tokio::spawn(async move {
                    let outcome = match others.emit_with_ack("question", vec![], timeout).await {
                        Ok(responses) => json!({"answers": answers(&responses), "missing": 0}),
                        Err(e) => json!({"answers": answers(&e.responses), "missing": e.missing}),
                    };
                    let _ = asker.emit_raw("msg", vec![outcome]);
                });
                Value::Null
            }
            "echo" => json!(socket.emit_raw("msg", vec![arg(0)]).is_ok()),
            "kick" => {
                let _ = socket.disconnect();
                Value::Null
            }
            "data" => {
                if !arg(0).is_null() {
                    socket.set_data(arg(0));
                }
                socket.data()
            }
            _ => Value::Null,
        };
        if let Some(ack) = event.ack {
            let _ = ack.send(vec![reply]);
        }
    }

    fn on_disconnect(&self, socket: &Socket, reason: &DisconnectReason) {
        self.disconnects
            .lock()
            .expect("test lock")
            .push((socket.id().to_owned(), reason.clone()));
    }
}

/// The first argument of each ack, sorted.
fn answers(responses: &[duplex_server::socketio::AckResponse]) -> Vec<String> {
    let mut answers: Vec<String> = responses
        .iter()
        .map(|r| {
            r.args
                .first()
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    answers.sort();
    answers
}

struct Server {
    url: String,
    io: Arc<Io>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    disconnects: Arc<Mutex<Vec<(String, DisconnectReason)>>>,
}

impl Server {
    async fn start(recovery: Option<RecoveryConfig>) -> Server {
        Server::start_with(Config {
            recovery,
            ..Config::default()
        })
        .await
    }

    async fn start_with(config: Config) -> Server {
        Server::start_built(config, |builder| builder).await
    }

    /// Starts the test app with `config`, its `Io` built through `build`.
    async fn start_built(config: Config, build: impl FnOnce(IoBuilder) -> IoBuilder) -> Server {
        let config = Config {
            dist: std::env::temp_dir().join("duplex-no-bundle"),
            ..config
        };
        let app = RoomsApp::default();
        let disconnects = app.disconnects.clone();
        let io = build(Io::builder(config.session_config()).namespace("/", app)).build();
        let listener = duplex_server::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind");
        let url = format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            listener.local_addr().expect("addr")
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(duplex_server::serve(
            listener,
            config,
            io.clone(),
            shutdown.clone(),
        ));
        Server {
            url,
            io,
            shutdown,
            task,
            disconnects,
        }
    }

    /// Opens a client that answers pings by itself and joins "/" with `auth`.
    async fn client(&self, auth: Option<Value>) -> Client {
        let mut raw = RawClient::open(&self.url).await;
        let open = raw.recv_text().await;
        assert!(open.starts_with('0'), "{open}");
        match auth {
            Some(auth) => raw.send(&format!("40{auth}")).await,
            None => raw.send("40").await,
        }
        let mut c = Client {
            raw,
            next_ack: 0,
            sid_and_pid: (String::new(), None),
            pending: std::collections::VecDeque::new(),
        };
        let connected = c.recv().await;
        let data: Value =
            serde_json::from_str(connected.strip_prefix("40").expect("connect")).expect("json");
        assert!(data["sid"].is_string(), "{data}");
        c.sid_and_pid = (
            data["sid"].as_str().unwrap_or_default().to_owned(),
            data["pid"].as_str().map(str::to_owned),
        );
        c
    }

    fn reasons_for(&self, id: &str) -> Vec<DisconnectReason> {
        self.disconnects
            .lock()
            .expect("test lock")
            .iter()
            .filter(|(sid, _)| sid == id)
            .map(|(_, r)| r.clone())
            .collect()
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

struct Client {
    raw: RawClient,
    next_ack: u64,
    sid_and_pid: (String, Option<String>),
    /// Messages that arrived while waiting for an ack.
    pending: std::collections::VecDeque<String>,
}

impl Client {
    fn sid(&self) -> &str {
        &self.sid_and_pid.0
    }

    /// The next Socket.IO message, answering pings on the way.
    async fn recv(&mut self) -> String {
        if let Some(text) = self.pending.pop_front() {
            return text;
        }
        tokio::time::timeout(PATIENCE, self.recv_live())
            .await
            .expect("a message within the patience window")
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

    /// Emits `name` with `args`, waits for the ack, returns its first argument.
    async fn call(&mut self, name: &str, args: Value) -> Value {
        self.next_ack += 1;
        let id = self.next_ack;
        let mut array = vec![json!(name)];
        array.extend(args.as_array().cloned().unwrap_or_default());
        self.raw
            .send(&format!("42{id}{}", Value::Array(array)))
            .await;
        let prefix = format!("43{id}");
        let mut others = Vec::new();
        let ack = tokio::time::timeout(PATIENCE, async {
            loop {
                let text = self.recv_live().await;
                match text.strip_prefix(&prefix) {
                    Some(rest) => return rest.to_owned(),
                    None => others.push(text),
                }
            }
        })
        .await
        .expect("an ack within the patience window");
        self.pending.extend(others);
        let args: Value = serde_json::from_str(&ack).expect("ack json");
        args[0].clone()
    }

    /// The next `msg` event's arguments.
    async fn msg(&mut self) -> Vec<Value> {
        let text = self.recv().await;
        let array: Vec<Value> =
            serde_json::from_str(text.strip_prefix("42").expect("an event")).expect("json");
        assert_eq!(array[0], "msg", "{text}");
        array[1..].to_vec()
    }

    /// Waits for the server's `question` and acks it with this socket's id.
    async fn answer(&mut self) {
        let text = self.recv().await;
        let rest = text.strip_prefix("42").expect("an event");
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        assert!(digits > 0, "the question asks for an ack: {text}");
        let (id, args) = rest.split_at(digits);
        assert_eq!(args, r#"["question"]"#, "{text}");
        let sid = self.sid().to_owned();
        self.raw.send(&format!("43{id}{}", json!([sid]))).await;
    }

    /// Waits for the server's `question` and lets it go unanswered.
    async fn ignore_question(&mut self) {
        let text = self.recv().await;
        assert!(text.contains(r#"["question"]"#), "{text}");
    }

    /// Nothing arrives for a while (other than pings).
    async fn silent(&mut self) {
        assert!(self.pending.is_empty(), "unexpected {:?}", self.pending);
        let quiet = tokio::time::timeout(Duration::from_millis(150), self.recv_live()).await;
        assert!(quiet.is_err(), "unexpected message {quiet:?}");
    }
}

fn sorted(value: Value) -> Vec<String> {
    let mut v: Vec<String> = value
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn membership_join_leave_and_own_room() {
    let server = Server::start(None).await;
    let mut c = server.client(None).await;
    let id = c.sid().to_owned();
    let mut expected = vec![id.clone(), "a".to_owned(), "b".to_owned()];
    expected.sort();
    c.call("join", json!(["a"])).await;
    assert_eq!(sorted(c.call("join", json!(["b"])).await), expected);
    let rooms = sorted(c.call("leave", json!(["a"])).await);
    assert!(rooms.contains(&id) && rooms.contains(&"b".to_owned()) && rooms.len() == 2);
    // A socket cannot leave its own room.
    assert!(sorted(c.call("leave", json!([id.clone()])).await).contains(&id));
    server.stop().await;
}

#[tokio::test]
async fn room_emits_and_exclusions() {
    let server = Server::start(None).await;
    let mut c1 = server.client(None).await;
    let mut c2 = server.client(None).await;
    let mut c3 = server.client(None).await;
    c1.call("join", json!(["a"])).await;
    c2.call("join", json!(["a"])).await;
    c2.call("join", json!(["b"])).await;
    c3.call("join", json!(["b"])).await;

    assert_eq!(c3.call("to", json!([["a"], [], "to a"])).await, 2);
    assert_eq!(c1.msg().await, vec![json!("to a")]);
    assert_eq!(c2.msg().await, vec![json!("to a")]);
    c3.silent().await;

    assert_eq!(c1.call("to", json!([["b"], ["a"], "b not a"])).await, 1);
    assert_eq!(c3.msg().await, vec![json!("b not a")]);
    c2.silent().await;

    // Several rooms: each socket once, even when in both.
    assert_eq!(c1.call("to", json!([["a", "b"], [], "a or b"])).await, 3);
    for c in [&mut c1, &mut c2, &mut c3] {
        assert_eq!(c.msg().await, vec![json!("a or b")]);
        c.silent().await;
    }

    // Everyone but the sender.
    assert_eq!(c2.call("others", json!(["hi"])).await, 2);
    assert_eq!(c1.msg().await, vec![json!("hi")]);
    assert_eq!(c3.msg().await, vec![json!("hi")]);
    c2.silent().await;

    // The whole namespace, and one socket by its own room.
    assert_eq!(c1.call("to", json!([[], [], "all"])).await, 3);
    let c3_id = c3.sid().to_owned();
    assert_eq!(c1.call("to", json!([[c3_id], [], "just you"])).await, 1);
    for c in [&mut c1, &mut c2] {
        assert_eq!(c.msg().await, vec![json!("all")]);
    }
    assert_eq!(c3.msg().await, vec![json!("all")]);
    assert_eq!(c3.msg().await, vec![json!("just you")]);

    // A socket's own room with a room it is also in: once. Excluding a socket
    // by its own room.
    let c2_id = c2.sid().to_owned();
    assert_eq!(c1.call("to", json!([[c2_id, "b"], [], "b or c2"])).await, 2);
    assert_eq!(c2.msg().await, vec![json!("b or c2")]);
    assert_eq!(c3.msg().await, vec![json!("b or c2")]);
    assert_eq!(c1.call("to", json!([["a"], [c2_id], "a not c2"])).await, 1);
    assert_eq!(c1.msg().await, vec![json!("a not c2")]);
    for c in [&mut c1, &mut c2, &mut c3] {
        c.silent().await;
    }
    // Own rooms are listed among the namespace's rooms.
    let rooms = server.io.rooms("/");
    for id in [c1.sid(), c2.sid(), c3.sid(), "a", "b"] {
        assert!(rooms.iter().any(|r| r == id), "{id} in {rooms:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn sockets_join_and_leave_rooms_by_selection() {
    let server = Server::start(None).await;
    let mut c1 = server.client(None).await;
    let mut c2 = server.client(None).await;
    let mut c3 = server.client(None).await;
    c1.call("join", json!(["a"])).await;
    c2.call("join", json!(["a"])).await;

    // The sockets in "a" join "b": c1 and c2, not c3.
    assert_eq!(c3.call("select-join", json!([["a"], "b"])).await, 2);
    assert_eq!(c3.call("to", json!([["b"], [], "to b"])).await, 2);
    assert_eq!(c1.msg().await, vec![json!("to b")]);
    assert_eq!(c2.msg().await, vec![json!("to b")]);
    c3.silent().await;
    // Everyone joins "c"; then the sockets in "a" leave it.
    assert_eq!(c3.call("select-join", json!([[], "c"])).await, 3);
    assert_eq!(c3.call("select-leave", json!([["a"], "c"])).await, 2);
    assert_eq!(c1.call("to", json!([["c"], [], "to c"])).await, 1);
    assert_eq!(c3.msg().await, vec![json!("to c")]);
    let c3_rooms = sorted(c3.call("join", json!(["d"])).await);
    assert!(c3_rooms.contains(&"c".to_owned()), "{c3_rooms:?}");
    let c1_rooms = sorted(c1.call("leave", json!(["d"])).await);
    assert_eq!(c1_rooms.len(), 3, "own, a, b: {c1_rooms:?}");
    for c in [&mut c1, &mut c2, &mut c3] {
        c.silent().await;
    }
    server.stop().await;
}

#[tokio::test]
async fn a_broadcast_waits_for_every_ack_and_says_who_did_not_answer() {
    let server = Server::start(None).await;
    let mut c1 = server.client(None).await;
    let mut c2 = server.client(None).await;
    let mut c3 = server.client(None).await;
    let mut expected = vec![c2.sid().to_owned(), c3.sid().to_owned()];
    expected.sort();

    // Everyone answers: the acks of both others, the asker not asked.
    c1.call("ask", json!([5000])).await;
    c2.answer().await;
    c3.answer().await;
    let outcome = c1.msg().await;
    assert_eq!(outcome[0]["answers"], json!(expected), "{outcome:?}");
    assert_eq!(outcome[0]["missing"], 0, "{outcome:?}");
    c1.silent().await;

    // c3 does not answer: an error after the timeout, with c2's ack in it.
    c1.call("ask", json!([300])).await;
    c2.answer().await;
    c3.ignore_question().await;
    let outcome = c1.msg().await;
    assert_eq!(outcome[0]["answers"], json!([c2.sid()]), "{outcome:?}");
    assert_eq!(outcome[0]["missing"], 1, "{outcome:?}");
    server.stop().await;
}

#[tokio::test]
async fn departed_sockets_leave_every_room() {
    let server = Server::start(None).await;
    let mut c1 = server.client(None).await;
    let mut c2 = server.client(None).await;
    c1.call("join", json!(["shared"])).await;
    c2.call("join", json!(["shared"])).await;
    c2.call("join", json!(["only-c2"])).await;
    let c2_id = c2.sid().to_owned();
    assert!(server.io.rooms("/").contains(&"only-c2".to_owned()));

    c2.raw.send("41").await; // leaves the namespace
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while server.io.socket_count("/") != 1 {
        assert!(tokio::time::Instant::now() < deadline, "socket not removed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rooms = server.io.rooms("/");
    assert!(!rooms.contains(&"only-c2".to_owned()), "{rooms:?}");
    assert!(!rooms.contains(&c2_id), "{rooms:?}");
    assert_eq!(server.io.to("/", "shared").sockets().len(), 1);
    assert_eq!(c1.call("to", json!([["shared"], [], "x"])).await, 1);
    assert_eq!(
        server.reasons_for(&c2_id),
        vec![DisconnectReason::ClientNamespaceDisconnect]
    );
    server.stop().await;
}

async fn wait_for_reason(server: &Server, id: &str) -> DisconnectReason {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(r) = server.reasons_for(id).pop() {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no disconnect for {id}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn every_disconnect_reason_reaches_the_app() {
    // A short heartbeat, for the ping timeout case; every client here is read
    // (and so answers pings) until its own case.
    let server = Server::start_with(Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;

    let mut kicked = server.client(None).await;
    kicked.raw.send("421[\"kick\"]").await;
    let id = kicked.sid().to_owned();
    assert_eq!(
        wait_for_reason(&server, &id).await,
        DisconnectReason::ServerDisconnect
    );

    let closer = server.client(None).await;
    let id = closer.sid().to_owned();
    let mut raw = closer.raw;
    raw.send("1").await; // engine.io close
    assert_eq!(
        wait_for_reason(&server, &id).await,
        DisconnectReason::ClientClosed
    );

    let silent = server.client(None).await; // never answers pings
    let id = silent.sid().to_owned();
    let reason = wait_for_reason(&server, &id).await;
    assert_eq!(reason, DisconnectReason::PingTimeout);

    let cut = server.client(None).await;
    let id = cut.sid().to_owned();
    drop(cut); // the TCP connection goes away without a goodbye
    assert!(matches!(
        wait_for_reason(&server, &id).await,
        DisconnectReason::Transport(_) | DisconnectReason::ClientClosed
    ));

    let bad = server.client(None).await;
    let id = bad.sid().to_owned();
    let mut raw = bad.raw;
    raw.send("42{}").await;
    assert!(matches!(
        wait_for_reason(&server, &id).await,
        DisconnectReason::Protocol(_)
    ));

    let mut last = server.client(None).await;
    let id = last.sid().to_owned();
    let io = server.io.clone();
    let disconnects = server.disconnects.clone();
    server.stop().await;
    assert_eq!(last.recv().await, "1");
    drop(io);
    let reasons: Vec<DisconnectReason> = disconnects
        .lock()
        .expect("lock")
        .iter()
        .filter(|(sid, _)| *sid == id)
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(reasons, vec![DisconnectReason::ServerShutdown]);
}

#[tokio::test]
async fn socket_data_is_kept_per_socket() {
    let server = Server::start(None).await;
    let mut a = server.client(None).await;
    let mut b = server.client(None).await;
    assert_eq!(
        a.call("data", json!([{"user": "ada"}])).await,
        json!({"user": "ada"})
    );
    assert_eq!(b.call("data", json!([null])).await, Value::Null);
    assert_eq!(a.call("data", json!([null])).await, json!({"user": "ada"}));
    server.stop().await;
}

/// The offset Socket.IO appends to a recoverable event: its last argument.
fn offset_of(args: &[Value]) -> String {
    args.last()
        .and_then(Value::as_str)
        .expect("an offset as last argument")
        .to_owned()
}

#[tokio::test]
async fn recovery_replays_missed_room_packets_once_in_order() {
    let server = Server::start(Some(RecoveryConfig::default())).await;
    let mut reader = server.client(None).await;
    let (reader_id, pid) = reader.sid_and_pid.clone();
    let pid = pid.expect("a pid when recovery is on");
    reader.call("join", json!(["news"])).await;
    reader.call("data", json!([{"user": "ada"}])).await;
    let mut publisher = server.client(None).await;

    publisher.call("to", json!([["news"], [], "before"])).await;
    let before = reader.msg().await;
    assert_eq!(before[0], "before");
    let offset = offset_of(&before);

    // Cut the reader's transport, not the server, then publish 100 items.
    drop(reader);
    wait_for_reason(&server, &reader_id).await;
    for i in 0..100 {
        publisher.call("to", json!([["news"], [], i])).await;
    }
    // Another room's traffic is not replayed to it.
    publisher.call("to", json!([["elsewhere"], [], "no"])).await;

    let mut back = server
        .client(Some(json!({"pid": pid, "offset": offset})))
        .await;
    assert_eq!(back.sid(), reader_id, "same socket id after recovery");
    assert_eq!(back.sid_and_pid.1.as_deref(), Some(pid.as_str()));
    let mut last = offset;
    for i in 0..100 {
        let args = back.msg().await;
        assert_eq!(args[0], json!(i), "item {i} in order");
        let o = offset_of(&args);
        assert!(o.parse::<u64>().expect("numeric") > last.parse::<u64>().expect("numeric"));
        last = o;
    }
    back.silent().await;
    // Rooms and data came back with it; live traffic continues after the replay.
    assert!(sorted(back.call("join", json!(["other"])).await).contains(&"news".to_owned()));
    assert_eq!(
        back.call("data", json!([null])).await,
        json!({"user": "ada"})
    );
    publisher.call("to", json!([["news"], [], "live"])).await;
    assert_eq!(back.msg().await[0], "live");
    server.stop().await;
}

/// With recovery on, a direct emit goes through the socket's own room, as in
/// Socket.IO: it carries an offset (so an echo cannot spoil the client's offset)
/// and is replayed if it was lost in the cut.
#[tokio::test]
async fn direct_emits_carry_offsets_and_recover_too() {
    let server = Server::start(Some(RecoveryConfig::default())).await;
    let mut reader = server.client(None).await;
    let (reader_id, pid) = reader.sid_and_pid.clone();
    assert_eq!(reader.call("echo", json!(["first"])).await, true);
    let first = reader.msg().await;
    assert_eq!(first[0], "first");
    let offset = offset_of(&first);
    // Echoed again, but never read: lost with the transport.
    assert_eq!(reader.call("echo", json!(["lost in the cut"])).await, true);
    reader.pending.clear();
    drop(reader);
    wait_for_reason(&server, &reader_id).await;
    let mut back = server
        .client(Some(json!({"pid": pid.expect("pid"), "offset": offset})))
        .await;
    assert_eq!(back.sid(), reader_id);
    assert_eq!(back.msg().await[0], "lost in the cut");
    back.silent().await;
    server.stop().await;
}

#[tokio::test]
async fn past_the_window_a_fresh_session_is_reported() {
    let server = Server::start(Some(RecoveryConfig {
        window: Duration::from_millis(200),
        max_packets: 1000,
    }))
    .await;
    let mut reader = server.client(None).await;
    let (reader_id, pid) = reader.sid_and_pid.clone();
    reader.call("join", json!(["news"])).await;
    let mut publisher = server.client(None).await;
    publisher.call("to", json!([["news"], [], "x"])).await;
    let offset = offset_of(&reader.msg().await);
    drop(reader);
    wait_for_reason(&server, &reader_id).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    publisher.call("to", json!([["news"], [], "missed"])).await;

    let mut back = server
        .client(Some(json!({"pid": pid.expect("pid"), "offset": offset})))
        .await;
    assert_ne!(back.sid(), reader_id, "a fresh socket");
    assert_ne!(back.sid_and_pid.1, None);
    // Fresh: not in the old rooms, nothing replayed.
    assert!(!sorted(back.call("leave", json!(["x"])).await).contains(&"news".to_owned()));
    back.silent().await;
    server.stop().await;
}

/// The client came back before the server saw its old transport fail (a
/// long-poll with no GET pending, a cut within milliseconds of an upgrade): its
/// old socket is still connected when the CONNECT with its pid arrives. The
/// session is recovered all the same: the old socket is closed as replaced and
/// everything after the client's offset is replayed once, in order.
#[tokio::test]
async fn a_client_back_before_its_old_transport_failed_takes_over_its_session() {
    let server = Server::start(Some(RecoveryConfig::default())).await;
    let mut reader = server.client(None).await;
    let (reader_id, pid) = reader.sid_and_pid.clone();
    let pid = pid.expect("a pid when recovery is on");
    reader.call("join", json!(["news"])).await;
    reader.call("data", json!([{"user": "ada"}])).await;
    let mut publisher = server.client(None).await;
    publisher.call("to", json!([["news"], [], "seen"])).await;
    let offset = offset_of(&reader.msg().await);
    // Sent to the old connection, which the client no longer reads.
    for i in 0..20 {
        publisher.call("to", json!([["news"], [], i])).await;
    }

    let mut back = server
        .client(Some(json!({"pid": pid, "offset": offset})))
        .await;
    assert_eq!(back.sid(), reader_id, "the same socket, recovered");
    for i in 0..20 {
        assert_eq!(back.msg().await[0], json!(i), "item {i} replayed in order");
    }
    back.silent().await;
    // The old connection is closed, and its going does not take the new one along.
    assert_eq!(
        wait_for_reason(&server, &reader_id).await,
        DisconnectReason::Replaced
    );
    assert!(
        reader.raw.expect_closed(PATIENCE).await.is_some(),
        "the replaced connection is closed"
    );
    assert!(sorted(back.call("join", json!(["other"])).await).contains(&"news".to_owned()));
    assert_eq!(
        back.call("data", json!([null])).await,
        json!({"user": "ada"})
    );
    publisher.call("to", json!([["news"], [], "live"])).await;
    assert_eq!(back.msg().await[0], "live");
    back.silent().await;

    // A cut during that replay, before the client read any of it: the next
    // reconnection (the previous one still connected, again) gets it all once more.
    for i in 20..30 {
        publisher.call("to", json!([["news"], [], i])).await;
    }
    let mut again = server
        .client(Some(json!({"pid": pid, "offset": offset})))
        .await;
    assert_eq!(again.sid(), reader_id);
    for i in (0..20)
        .map(|i| json!(i))
        .chain([json!("live")])
        .chain((20..30).map(|i| json!(i)))
    {
        assert_eq!(again.msg().await[0], i, "replayed in order");
    }
    again.silent().await;
    server.stop().await;
}

/// A client with a pid but no offset got no event since it connected (the
/// official client sends no offset then): it resumes from where it joined.
#[tokio::test]
async fn a_client_that_got_no_event_resumes_from_where_it_joined() {
    let server = Server::start(Some(RecoveryConfig::default())).await;
    let mut publisher = server.client(None).await;
    publisher
        .call("to", json!([[], [], "before it joined"]))
        .await;
    let reader = server.client(None).await;
    let (reader_id, pid) = reader.sid_and_pid.clone();
    for i in 0..5 {
        publisher.call("to", json!([[], [], i])).await;
    }
    drop(reader);
    wait_for_reason(&server, &reader_id).await;
    let mut back = server.client(Some(json!({"pid": pid.expect("pid")}))).await;
    assert_eq!(back.sid(), reader_id, "recovered");
    for i in 0..5 {
        assert_eq!(back.msg().await[0], json!(i));
    }
    back.silent().await;
    server.stop().await;
}

/// A pid that does not match a socket's secret recovers nothing, even with the
/// id of a connected socket in it.
#[tokio::test]
async fn a_guessed_pid_takes_over_nothing() {
    let server = Server::start(Some(RecoveryConfig::default())).await;
    let mut victim = server.client(None).await;
    let victim_id = victim.sid().to_owned();
    let mut intruder = server
        .client(Some(
            json!({"pid": format!("{victim_id}.AAAAAAAAAAAAAAAAAAAA"), "offset": "0"}),
        ))
        .await;
    assert_ne!(intruder.sid(), victim_id);
    intruder.silent().await;
    assert_eq!(victim.call("echo", json!(["still here"])).await, true);
    assert_eq!(victim.msg().await[0], "still here");
    server.stop().await;
}

/// An adapter that counts what the namespace asks of it and keeps everything
/// in an [`InMemoryAdapter`]: the seam another adapter (Redis) plugs into.
#[derive(Debug)]
struct Counting {
    inner: duplex_server::socketio::InMemoryAdapter,
    calls: Arc<Mutex<Vec<&'static str>>>,
}

impl Counting {
    fn note(&self, call: &'static str) {
        self.calls.lock().expect("test lock").push(call);
    }
}

impl duplex_server::socketio::Adapter for Counting {
    fn add(&mut self, id: &str, room: String) {
        self.note("add");
        self.inner.add(id, room);
    }
    fn del(&mut self, id: &str, room: &str) {
        self.note("del");
        self.inner.del(id, room);
    }
    fn del_all(&mut self, id: &str) -> std::collections::HashSet<String> {
        self.note("del_all");
        self.inner.del_all(id)
    }
    fn socket_rooms(&self, id: &str) -> Option<&std::collections::HashSet<String>> {
        self.inner.socket_rooms(id)
    }
    fn members(&self, room: &str) -> Option<&std::collections::HashSet<String>> {
        self.inner.members(room)
    }
    fn rooms(&self) -> Vec<String> {
        self.inner.rooms()
    }
    fn recovery_enabled(&self) -> bool {
        self.inner.recovery_enabled()
    }
    fn next_offset(&mut self) -> Option<duplex_server::socketio::Offset> {
        self.inner.next_offset()
    }
    fn last_offset(&self) -> duplex_server::socketio::Offset {
        self.inner.last_offset()
    }
    fn log(
        &mut self,
        offset: duplex_server::socketio::Offset,
        target: duplex_server::socketio::Target,
        frames: Arc<[protocol::Frame]>,
        now: protocol::Time,
    ) {
        self.note("log");
        self.inner.log(offset, target, frames, now);
    }
    fn persist_session(
        &mut self,
        pid: &str,
        session: duplex_server::socketio::Session,
        now: protocol::Time,
    ) {
        self.note("persist_session");
        self.inner.persist_session(pid, session, now);
    }
    fn persisted(
        &mut self,
        pid: &str,
        now: protocol::Time,
    ) -> Option<&duplex_server::socketio::Session> {
        self.inner.persisted(pid, now)
    }
    fn restore_session(&mut self, pid: &str) -> Option<duplex_server::socketio::Session> {
        self.note("restore_session");
        self.inner.restore_session(pid)
    }
    fn missed(
        &self,
        offset: duplex_server::socketio::Offset,
        id: &str,
        rooms: &std::collections::HashSet<String>,
    ) -> Option<Vec<protocol::Frame>> {
        self.inner.missed(offset, id, rooms)
    }
}

/// Rooms, broadcasts and recovery go through the namespace's adapter.
#[tokio::test]
async fn a_namespace_keeps_its_rooms_and_sessions_in_its_adapter() {
    let calls: Arc<Mutex<Vec<&'static str>>> = Arc::default();
    let recorded = calls.clone();
    let config = Config {
        recovery: Some(RecoveryConfig::default()),
        ..Config::default()
    };
    let server = Server::start_built(config, |builder| {
        builder.adapter(move |_, recovery| {
            Box::new(Counting {
                inner: duplex_server::socketio::InMemoryAdapter::new(recovery),
                calls: recorded.clone(),
            })
        })
    })
    .await;
    let mut reader = server.client(None).await;
    let (reader_id, pid) = reader.sid_and_pid.clone();
    reader.call("join", json!(["news"])).await;
    let mut publisher = server.client(None).await;
    publisher.call("to", json!([["news"], [], "hello"])).await;
    let offset = offset_of(&reader.msg().await);
    drop(reader);
    wait_for_reason(&server, &reader_id).await;
    let back = server
        .client(Some(json!({"pid": pid.expect("pid"), "offset": offset})))
        .await;
    assert_eq!(back.sid(), reader_id, "recovered through the adapter");
    let calls = calls.lock().expect("test lock").clone();
    for call in [
        "add",
        "log",
        "del_all",
        "persist_session",
        "restore_session",
    ] {
        assert!(
            calls.contains(&call),
            "{call} not asked of the adapter: {calls:?}"
        );
    }
    server.stop().await;
}
