//! Connection state recovery through every window of a reconnection, one fault at
//! a time, against the real news app: a long-poll cut with its GET pending, a
//! client gone with no request in flight, a cut during the upgrade probe and
//! right after it, a cut before the CONNECT reply and one during the replay. In
//! each, news is published meanwhile and the client, presenting its pid and the
//! offset of the last event it got, resumes its session on a new connection with
//! every missed item exactly once, in order (the randomised version of all this
//! is the chaos tests' job, in `e2e/tests/chaos.rs`).

mod common;

use std::time::Duration;

use common::{PATIENCE, RawClient, TestServer, http};
use duplex_server::Config;
use duplex_server::socketio::RecoveryConfig;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

async fn server() -> TestServer {
    TestServer::start(Config {
        dist: std::env::temp_dir().join("duplex-no-bundle"),
        recovery: Some(RecoveryConfig::default()),
        ..Config::default()
    })
    .await
}

/// What a client needs to resume: its socket id (to check it got the same one
/// back), its pid, and the offset of the last event it got.
#[derive(Debug, Clone)]
struct Credentials {
    socket_id: String,
    pid: String,
    offset: Option<String>,
}

impl Credentials {
    /// Takes in the packets a client got: the CONNECT reply, then events.
    fn see(&mut self, packets: &[String]) {
        for packet in packets {
            if let Some(reply) = packet.strip_prefix("40") {
                let reply: Value = serde_json::from_str(reply).expect("CONNECT reply JSON");
                self.socket_id = reply["sid"].as_str().expect("sid").to_owned();
                self.pid = reply["pid"]
                    .as_str()
                    .expect("a pid: recovery is on")
                    .to_owned();
            } else if let Some(offset) = offset_of(packet) {
                self.offset = Some(offset);
            }
        }
    }

    fn auth(&self) -> Value {
        match &self.offset {
            Some(offset) => json!({"pid": self.pid, "offset": offset}),
            None => json!({"pid": self.pid}),
        }
    }
}

/// An event's recovery offset: its last argument.
fn offset_of(packet: &str) -> Option<String> {
    let array: Vec<Value> = serde_json::from_str(packet.strip_prefix("42")?).ok()?;
    array.last()?.as_str().map(str::to_owned)
}

/// The text of a published news item (`42["news",{"hello":"item-3",...},"17"]`).
fn item_of(packet: &str) -> Option<String> {
    let array: Vec<Value> = serde_json::from_str(packet.strip_prefix("42")?).ok()?;
    if array.first()? != "news" {
        return None;
    }
    let text = array.get(1)?["hello"].as_str()?;
    text.starts_with("item-").then(|| text.to_owned())
}

/// A long-polling session, spoken by hand.
struct Polling {
    server: std::net::SocketAddr,
    target: String,
}

impl Polling {
    /// Opens a session, joins `/` and reads the greeting.
    async fn connect(server: &TestServer) -> (Polling, Credentials) {
        let open = http::get(server.addr, "/socket.io/?EIO=4&transport=polling").await;
        let json: Value = serde_json::from_str(open.text().strip_prefix('0').expect("open packet"))
            .expect("open JSON");
        let sid = json["sid"].as_str().expect("sid");
        let polling = Polling {
            server: server.addr,
            target: format!("/socket.io/?EIO=4&transport=polling&sid={sid}"),
        };
        assert_eq!(polling.post("40").await, 200);
        let mut credentials = Credentials {
            socket_id: String::new(),
            pid: String::new(),
            offset: None,
        };
        // The CONNECT reply, `news` and `handshake`.
        let mut packets = Vec::new();
        while packets
            .iter()
            .filter(|p: &&String| p.starts_with("42"))
            .count()
            < 2
        {
            packets.extend(polling.get().await);
        }
        credentials.see(&packets);
        (polling, credentials)
    }

    async fn post(&self, body: &str) -> u16 {
        http::post(self.server, &self.target, body).await.status
    }

    async fn get(&self) -> Vec<String> {
        let response = http::get(self.server, &self.target).await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.text().split('\x1e').map(str::to_owned).collect()
    }

    /// A GET whose connection ends while it waits.
    async fn cut_pending_get(&self) {
        let mut stream = tokio::net::TcpStream::connect(self.server)
            .await
            .expect("connect");
        let head = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n\r\n",
            self.target, self.server
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        // Long enough for the server to take the GET as pending.
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
    }
}

/// A client connected directly that publishes news (acked, so each is broadcast
/// before the next step of the test).
struct Publisher {
    client: RawClient,
    next: u64,
}

impl Publisher {
    async fn connect(server: &TestServer) -> Publisher {
        let (mut client, _) = RawClient::connect(server).await;
        // The greeting (`news`, `handshake`), with recovery offsets.
        until_quiet(&mut client).await;
        Publisher { client, next: 0 }
    }

    async fn publish(&mut self, text: &str) {
        self.next += 1;
        let id = self.next;
        self.client
            .send(&format!(r#"42{id}["publish",{{"text":"{text}"}}]"#))
            .await;
        let ack = format!("43{id}");
        tokio::time::timeout(PATIENCE, async {
            loop {
                let text = self.client.recv_text().await;
                if text == "2" {
                    self.client.send("3").await;
                }
                if text.starts_with(&ack) {
                    return;
                }
            }
        })
        .await
        .expect("the publish is acked");
    }

    async fn publish_items(&mut self, range: std::ops::Range<usize>) {
        for k in range {
            self.publish(&format!("item-{k}")).await;
        }
    }
}

/// Opens a WebSocket session and sends the CONNECT with `credentials`; the
/// reply has not been read.
async fn resume_raw(server: &TestServer, credentials: &Credentials) -> RawClient {
    let mut client = RawClient::open(&server.ws_url()).await;
    assert!(client.recv_text().await.starts_with('0'), "open packet");
    client.send(&format!("40{}", credentials.auth())).await;
    client
}

/// What a resumed session gets until it has been quiet for a while.
async fn until_quiet(client: &mut RawClient) -> Vec<String> {
    let mut packets = Vec::new();
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(300), client.recv()).await
    {
        match message {
            tokio_tungstenite::tungstenite::Message::Text(text) if text.as_str() == "2" => {
                client.send("3").await;
            }
            tokio_tungstenite::tungstenite::Message::Text(text) => packets.push(text.to_string()),
            _ => {}
        }
    }
    packets
}

/// Resumes with `credentials` and checks the session came back with `expected`
/// items, once each, in order, and nothing else of the news.
async fn resume_expecting(
    server: &TestServer,
    credentials: &Credentials,
    expected: std::ops::Range<usize>,
) -> RawClient {
    let mut client = resume_raw(server, credentials).await;
    let packets = until_quiet(&mut client).await;
    let reply: Value = serde_json::from_str(
        packets
            .first()
            .and_then(|p| p.strip_prefix("40"))
            .unwrap_or_else(|| panic!("a CONNECT reply first: {packets:?}")),
    )
    .expect("JSON");
    assert_eq!(
        reply["sid"], credentials.socket_id,
        "the session was recovered, not started afresh ({reply})"
    );
    let items: Vec<String> = packets.iter().filter_map(|p| item_of(p)).collect();
    let expected: Vec<String> = expected.map(|k| format!("item-{k}")).collect();
    assert_eq!(
        items, expected,
        "every missed item once, in order: {packets:?}"
    );
    client
}

#[tokio::test]
async fn a_long_poll_cut_with_its_get_pending() {
    let server = server().await;
    let mut publisher = Publisher::connect(&server).await;
    let (polling, credentials) = Polling::connect(&server).await;
    polling.cut_pending_get().await;
    publisher.publish_items(0..5).await;
    resume_expecting(&server, &credentials, 0..5).await;
    server.stop().await;
}

#[tokio::test]
async fn a_long_polling_client_gone_with_no_request_in_flight() {
    let server = server().await;
    let mut publisher = Publisher::connect(&server).await;
    let (polling, credentials) = Polling::connect(&server).await;
    // The old session is alive as far as the server knows: it holds these for a GET.
    publisher.publish_items(0..5).await;
    resume_expecting(&server, &credentials, 0..5).await;
    // The old session was closed as replaced.
    let response = http::get(polling.server, &polling.target).await;
    assert_eq!(response.status, 400, "{}", response.text());
    server.stop().await;
}

#[tokio::test]
async fn a_cut_during_the_upgrade_probe_and_right_after_it() {
    for send_upgrade in [false, true] {
        let server = server().await;
        let mut publisher = Publisher::connect(&server).await;
        let (polling, credentials) = Polling::connect(&server).await;
        let sid = polling
            .target
            .rsplit("sid=")
            .next()
            .expect("sid")
            .to_owned();
        // A GET waits, as the official client keeps one while it probes.
        let pending = {
            let (addr, target) = (polling.server, polling.target.clone());
            tokio::spawn(async move { http::get(addr, &target).await })
        };
        let mut probe = RawClient::open(&format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket&sid={sid}",
            server.addr
        ))
        .await;
        probe.send("2probe").await;
        assert_eq!(probe.recv_text().await, "3probe");
        // The pending GET is answered (a noop) so that the client can pause polling.
        let answered = tokio::time::timeout(PATIENCE, pending)
            .await
            .expect("the GET is answered during the probe")
            .expect("no panic");
        assert_eq!(answered.status, 200);
        if send_upgrade {
            probe.send("5").await;
        }
        drop(probe);
        publisher.publish_items(0..5).await;
        resume_expecting(&server, &credentials, 0..5).await;
        server.stop().await;
    }
}

#[tokio::test]
async fn a_cut_before_the_connect_reply_then_one_during_the_replay() {
    let server = server().await;
    let mut publisher = Publisher::connect(&server).await;
    let mut client = RawClient::open(&server.ws_url()).await;
    assert!(client.recv_text().await.starts_with('0'), "open packet");
    client.send("40").await;
    let mut credentials = Credentials {
        socket_id: String::new(),
        pid: String::new(),
        offset: None,
    };
    credentials.see(&until_quiet(&mut client).await);
    drop(client);
    publisher.publish_items(0..10).await;

    // 1. The CONNECT goes out, and the connection is cut before its reply.
    let cut = resume_raw(&server, &credentials).await;
    drop(cut);
    // 2. This one gets the reply and the first three replayed items, then is cut.
    let mut partial = resume_raw(&server, &credentials).await;
    let mut got: Vec<String> = Vec::new();
    while got.iter().filter(|p| item_of(p).is_some()).count() < 3 {
        got.push(partial.recv_text().await);
    }
    drop(partial);
    credentials.see(&got);
    let seen: Vec<String> = got.iter().filter_map(|p| item_of(p)).collect();
    assert_eq!(seen, ["item-0", "item-1", "item-2"]);
    // 3. The rest, once.
    publisher.publish_items(10..12).await;
    resume_expecting(&server, &credentials, 3..12).await;
    server.stop().await;
}

/// A browser sends a GET again, with the same cache buster, when the connection
/// it had reused closes before any response byte arrives (Chromium does): the
/// first answer may have left the server and been lost on the way. The second
/// GET gets the same frames, so nothing is lost while the session goes on; a
/// GET with a new cache buster then takes what comes next. A POST sent again is
/// not taken twice.
#[tokio::test]
async fn a_polling_request_sent_again_gets_the_same_answer() {
    let server = server().await;
    let mut publisher = Publisher::connect(&server).await;
    let (polling, _) = Polling::connect(&server).await;
    let target = |t: &str| format!("{}&t={t}", polling.target);
    let get = |t: &'static str| {
        let (addr, target) = (polling.server, target(t));
        tokio::spawn(async move { http::get(addr, &target).await })
    };
    let items = |response: &http::Response| -> Vec<String> {
        response.text().split('\x1e').filter_map(item_of).collect()
    };

    let first = get("a1");
    tokio::time::sleep(Duration::from_millis(50)).await;
    publisher.publish_items(0..1).await;
    let first = first.await.expect("no panic");
    assert_eq!(items(&first), ["item-0"]);
    // Its answer was "lost": the same request again gets the same frames.
    let again = get("a1").await.expect("no panic");
    assert_eq!(again.status, 200, "{}", again.text());
    assert_eq!(items(&again), ["item-0"], "the same answer again");
    // The next request waits for what comes next.
    let next = get("a2");
    tokio::time::sleep(Duration::from_millis(50)).await;
    publisher.publish_items(1..2).await;
    assert_eq!(items(&next.await.expect("no panic")), ["item-1"]);

    // A POST sent again is answered without taking its packets twice.
    let post = format!("{}&t=p1", polling.target);
    let echo = r#"42["echo me",1]"#;
    assert_eq!(http::post(polling.server, &post, echo).await.status, 200);
    assert_eq!(http::post(polling.server, &post, echo).await.status, 200);
    let got = http::get(polling.server, &target("a3")).await.text();
    assert_eq!(
        got.matches("echo me").count(),
        1,
        "one echo for a POST sent twice: {got:?}"
    );
    server.stop().await;
}
