//! Hostile input, slow clients, limits, origins and shutdown, against the real
//! news app: every case gets a clean close or a clear error, the server stays up,
//! and a bystander's round trips keep working throughout.

mod common;

use std::time::Duration;

use common::http;
use common::{PATIENCE, RawClient, TestServer};
use duplex_server::Config;
use duplex_server::config::OriginPolicy;
use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

fn no_bundle() -> std::path::PathBuf {
    std::env::temp_dir().join("duplex-no-bundle")
}

/// Opens a WebSocket to the server with an `Origin` header.
async fn ws_with_origin(
    server: &TestServer,
    origin: &str,
) -> Result<RawClient, tokio_tungstenite::tungstenite::Error> {
    let mut request = server.ws_url().into_client_request().expect("request");
    request
        .headers_mut()
        .insert("origin", origin.parse().expect("header value"));
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(ws, _)| RawClient { ws })
}

/// A raw HTTP request with extra headers; the whole response as text.
async fn raw_http(server: &TestServer, request: String) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(
        PATIENCE,
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut out),
    )
    .await
    .expect("response in time")
    .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused_with_403() {
    let server = TestServer::start(Config {
        dist: no_bundle(),
        origins: OriginPolicy::SameOriginAnd(vec!["http://allowed.example".into()]),
        ..Config::default()
    })
    .await;
    let same = format!("http://{}", server.addr);
    for origin in ["http://allowed.example", same.as_str()] {
        let mut c = ws_with_origin(&server, origin).await.expect("allowed");
        assert!(c.recv_text().await.starts_with('0'));
    }
    match ws_with_origin(&server, "http://evil.example").await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!("expected 403, got {:?}", other.map(|_| "a websocket")),
    }
    // Without an Origin (not a browser page): allowed.
    RawClient::open(&server.ws_url()).await;

    // Polling: refused without CORS headers, or allowed with them.
    let get = |origin: &str| {
        format!(
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: {}\r\nOrigin: {origin}\r\nConnection: close\r\n\r\n",
            server.addr
        )
    };
    let refused = raw_http(&server, get("http://evil.example")).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(refused.contains("Forbidden origin"));
    assert!(
        !refused
            .to_lowercase()
            .contains("access-control-allow-origin")
    );
    let allowed = raw_http(&server, get("http://allowed.example")).await;
    assert!(allowed.starts_with("HTTP/1.1 200"), "{allowed}");
    assert!(
        allowed
            .to_lowercase()
            .contains("access-control-allow-origin: http://allowed.example"),
        "{allowed}"
    );
    server.stop().await;
}

#[tokio::test]
async fn polling_post_over_max_payload_gets_413_and_no_length_gets_411() {
    let server = TestServer::start(Config {
        dist: no_bundle(),
        max_payload: 1000,
        ..Config::default()
    })
    .await;
    let open = http::get(server.addr, "/socket.io/?EIO=4&transport=polling").await;
    let json: serde_json::Value =
        serde_json::from_str(open.text().strip_prefix('0').expect("open packet")).expect("json");
    let sid = json["sid"].as_str().expect("sid").to_owned();
    let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let big = format!("4{}", "x".repeat(1000));
    let response = http::post(server.addr, &target, &big).await;
    assert_eq!(response.status, 413, "{:?}", response.text());
    assert!(
        response.text().contains("maxPayload"),
        "{}",
        response.text()
    );
    let chunked = raw_http(
        &server,
        format!(
            "POST {target} HTTP/1.1\r\nHost: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\n40/\r\n0\r\n\r\n",
            server.addr
        ),
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 411"), "{chunked}");
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_limit_get_503() {
    let server = TestServer::start(Config {
        dist: no_bundle(),
        max_connections: 2,
        ..Config::default()
    })
    .await;
    let (a, _) = RawClient::connect_greeted(&server).await;
    let (mut b, _) = RawClient::connect_greeted(&server).await;
    match tokio_tungstenite::connect_async(server.ws_url()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
        }
        other => panic!("expected 503, got {:?}", other.map(|_| "a websocket")),
    }
    let polling = http::get(server.addr, "/socket.io/?EIO=4&transport=polling").await;
    assert_eq!(polling.status, 503);
    assert!(polling.text().contains("server full"));
    b.round_trip(1).await;
    drop(a);
    // Once a session ends, a new one is admitted.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match tokio_tungstenite::connect_async(server.ws_url()).await {
            Ok(_) => break,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("never admitted again: {e}"),
        }
    }
    server.stop().await;
}

/// A client that stops reading: its queue fills and it is disconnected, while
/// everyone else gets every item, in order.
#[tokio::test]
async fn a_client_that_stops_reading_is_disconnected_and_nobody_else_suffers() {
    let server = TestServer::start(Config {
        dist: no_bundle(),
        outbound_queue: 32,
        ..Config::default()
    })
    .await;
    let (slow, _) = RawClient::connect_greeted(&server).await;
    let (mut reader, _) = RawClient::connect_greeted(&server).await;
    let (mut publisher, _) = RawClient::connect_greeted(&server).await;
    let text = "x".repeat(16 * 1024);
    let items = 600;
    for i in 0..items {
        publisher
            .send(&format!(r#"42["publish",{{"text":"{i} {text}"}}]"#))
            .await;
        // Keep the readers' own queues from overflowing: they read as we go.
        let expected = format!(r#"42["news",{{"hello":"{i} {text}""#);
        let got = reader.recv_text().await;
        assert!(got.starts_with(&expected), "reader item {i}");
        let got = publisher.recv_text().await;
        assert!(got.starts_with(&expected), "publisher item {i}");
    }
    // ~10 MB were sent to the slow client: far more than its socket buffers and
    // its 32-frame queue hold. It was disconnected; reading now, it finds the end
    // before the last item.
    let mut slow = slow;
    let mut received = 0;
    loop {
        match tokio::time::timeout(PATIENCE, slow.recv()).await {
            Ok(Some(Message::Text(_))) => received += 1,
            Ok(Some(Message::Close(frame))) => {
                if let Some(frame) = frame {
                    assert_eq!(u16::from(frame.code), 1008, "{frame:?}");
                }
                break;
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => panic!("slow client still connected after {received} messages"),
        }
    }
    assert!(
        received < items,
        "received everything ({received}): not disconnected"
    );
    reader.round_trip(9).await;
    server.stop().await;
}

/// A client that pauses reading while ~16 MB are sent to it (more than the
/// socket buffers hold, so the server's writes stop part-way: with a 32-frame
/// queue the test above is disconnected after fewer, but fewer frames than this
/// one's queue holds) gets every item, whole and in order, once it reads.
#[tokio::test]
async fn a_client_that_pauses_reading_gets_everything_in_order_afterwards() {
    let server = TestServer::start(Config {
        dist: no_bundle(),
        outbound_queue: 1024,
        ..Config::default()
    })
    .await;
    let (mut paused, _) = RawClient::connect_greeted(&server).await;
    let (mut publisher, _) = RawClient::connect_greeted(&server).await;
    let text = "y".repeat(16 * 1024);
    let items = 1000;
    for i in 0..items {
        publisher
            .send(&format!(r#"42["publish",{{"text":"{i} {text}"}}]"#))
            .await;
        let got = publisher.recv_text().await;
        assert!(got.starts_with(&format!(r#"42["news",{{"hello":"{i} "#)));
    }
    for i in 0..items {
        let got = tokio::time::timeout(PATIENCE, paused.recv_text())
            .await
            .unwrap_or_else(|_| panic!("item {i} never came"));
        let expected = format!(r#"42["news",{{"hello":"{i} {text}""#);
        assert!(
            got.starts_with(&expected),
            "item {i}: {}",
            got.get(..60).unwrap_or(&got)
        );
    }
    paused.round_trip(5).await;
    server.stop().await;
}

/// Everything the server queued before a shutdown reaches the client before its
/// close packet.
#[tokio::test]
async fn shutdown_flushes_what_was_queued_then_says_why() {
    let server = TestServer::default().await;
    let (mut c, _) = RawClient::connect_greeted(&server).await;
    // 200 acked events: each ack is queued by the server as it reads the event.
    for i in 0..200 {
        c.send(&format!(r#"42{i}["e",{i}]"#)).await;
    }
    // Wait until the server has read them all (the last echo has come back)...
    let mut echoes = 0;
    let mut acks = 0;
    while acks < 200 {
        let text = c.recv_text().await;
        if text.starts_with("42[") {
            echoes += 1;
        } else if text.starts_with("43") {
            acks += 1;
        }
    }
    assert_eq!(echoes, 200);
    // ...then publish a burst and shut down at once.
    let (mut publisher, _) = RawClient::connect_greeted(&server).await;
    for i in 0..50 {
        publisher
            .send(&format!(r#"42["publish",{{"text":"last {i}"}}]"#))
            .await;
    }
    // The publisher reads its own 50 items: all were broadcast before shutdown.
    for _ in 0..50 {
        publisher.recv_text().await;
    }
    let shutdown = server.shutdown.clone();
    let stopping = tokio::spawn(server.stop());
    shutdown.cancel();
    for i in 0..50 {
        assert!(
            c.recv_text()
                .await
                .starts_with(&format!(r#"42["news",{{"hello":"last {i}""#)),
            "item {i} before the close"
        );
    }
    assert_eq!(c.recv_text().await, "1");
    let close = c.expect_closed(PATIENCE).await;
    assert_eq!(close, Some((1001, "server shutting down".into())));
    stopping.await.expect("stopped");
}

fn text(s: &str) -> Vec<Message> {
    vec![Message::text(s)]
}

fn invalid_utf8() -> Message {
    Message::Frame(Frame::message(
        vec![b'4', b'2', b'[', 0xc3, 0x28, b']'],
        OpCode::Data(Data::Text),
        true,
    ))
}

/// The hostile matrix: each case on a fresh connection that has joined `/`.
fn websocket_cases() -> Vec<(&'static str, Vec<Message>)> {
    let placeholder = r#"{"_placeholder":true,"num":0}"#;
    vec![
        ("empty text frame", text("")),
        ("unknown engine.io type", text("9")),
        ("engine.io open from the client", text("0{}")),
        ("close with payload", text("1x")),
        ("client ping", text("2")),
        ("probe on the live transport", text("2probe")),
        ("upgrade outside a probe", text("5")),
        ("noop with payload", text("6x")),
        ("empty socket.io packet", text("4")),
        ("unknown socket.io type", text("4abc")),
        ("socket.io type 9", text("49[]")),
        ("event without payload", text("42")),
        ("event object payload", text("42{}")),
        ("event empty array", text("42[]")),
        ("event name not a string", text("42[1]")),
        ("event string payload", text(r#"42"str""#)),
        ("truncated JSON", text(r#"42["a""#)),
        ("invalid JSON", text(r#"42["a",{"b":]"#)),
        ("bad ack id", text(r#"42abc["a"]"#)),
        ("huge ack id", text(r#"4299999999999999999999["a"]"#)),
        ("ack id beyond 2^53", text(r#"429007199254740993["a"]"#)),
        ("negative ack id", text(r#"42-1["a"]"#)),
        ("ack without id", text("43[]")),
        ("ack with object payload", text("431{}")),
        ("connect with array auth", text("40/x,[1]")),
        ("disconnect with payload", text("41x")),
        ("CONNECT_ERROR from a client", text(r#"44{"message":"x"}"#)),
        ("event to a namespace not joined", text(r#"42/admin,["a"]"#)),
        ("disconnect from a namespace not joined", text("41/admin,")),
        (
            "namespace of 300 bytes",
            text(&format!("40/{},", "n".repeat(300))),
        ),
        (
            "deep nesting",
            text(&format!(
                "42[\"a\",{}{}]",
                "[".repeat(50_000),
                "]".repeat(50_000)
            )),
        ),
        (
            "deep objects",
            text(&format!(
                "42[\"a\",{}1{}]",
                "{\"k\":".repeat(5_000),
                "}".repeat(5_000)
            )),
        ),
        ("placeholder missing", text(r#"451-["a"]"#)),
        (
            "placeholder out of range",
            text(r#"451-["a",{"_placeholder":true,"num":7}]"#),
        ),
        ("too many attachments", text(r#"45999-["a"]"#)),
        ("attachment count without dash", text(r#"451["a"]"#)),
        (
            "text instead of the announced binary",
            vec![
                Message::text(format!(r#"451-["a",{placeholder}]"#)),
                Message::text(r#"42["b"]"#),
            ],
        ),
        (
            "binary with no header",
            vec![Message::binary(vec![1u8, 2, 3])],
        ),
        ("invalid UTF-8", vec![invalid_utf8()]),
        (
            "oversized text",
            text(&format!(r#"42["a","{}"]"#, "x".repeat(1_000_001))),
        ),
        (
            "oversized binary",
            vec![Message::binary(vec![0u8; 1_000_001])],
        ),
        (
            "a flood of pings",
            (0..1000).map(|_| Message::text("2")).collect(),
        ),
    ]
}

#[tokio::test]
async fn hostile_matrix_closes_each_offender_and_spares_the_bystander() {
    let server = TestServer::default().await;
    let (mut bystander, _) = RawClient::connect_greeted(&server).await;
    let cases = websocket_cases();
    assert!(cases.len() >= 40);
    for (i, (name, messages)) in cases.into_iter().enumerate() {
        let (mut c, _) = RawClient::connect_greeted(&server).await;
        for m in messages {
            // The server may close before the last of a flood is written.
            if c.ws.send(m).await.is_err() {
                break;
            }
        }
        let closed = tokio::time::timeout(PATIENCE, c.expect_closed(PATIENCE)).await;
        assert!(closed.is_ok(), "case {name:?}: not closed");
        bystander.round_trip(i as u64).await;
    }

    // Packets before any CONNECT: an event for a namespace not joined.
    let mut early = RawClient::open(&server.ws_url()).await;
    early.recv_text().await;
    early.send(r#"42["too early"]"#).await;
    early.expect_closed(PATIENCE).await;

    // Slow-loris: 50 connections that never finish their request headers do not
    // keep anyone else waiting.
    let mut loris = Vec::new();
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(server.addr)
            .await
            .expect("connect");
        s.write_all(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        loris.push(s);
    }
    bystander.round_trip(1000).await;
    let (mut late, _) = RawClient::connect_greeted(&server).await;
    late.round_trip(1001).await;
    drop(loris);
    server.stop().await;
}

#[tokio::test]
async fn hostile_polling_requests_get_clear_errors() {
    let server = TestServer::default().await;
    let (mut bystander, _) = RawClient::connect_greeted(&server).await;
    let addr = server.addr;
    let open = || async {
        let r = http::get(addr, "/socket.io/?EIO=4&transport=polling").await;
        let json: serde_json::Value =
            serde_json::from_str(r.text().strip_prefix('0').expect("open")).expect("json");
        format!(
            "/socket.io/?EIO=4&transport=polling&sid={}",
            json["sid"].as_str().expect("sid")
        )
    };
    let cases: Vec<(&str, &str, String, Option<Vec<u8>>)> = vec![
        (
            "unknown sid GET",
            "GET",
            "/socket.io/?EIO=4&transport=polling&sid=nope".into(),
            None,
        ),
        (
            "unknown sid POST",
            "POST",
            "/socket.io/?EIO=4&transport=polling&sid=nope".into(),
            Some(b"40".to_vec()),
        ),
        (
            "EIO=3",
            "GET",
            "/socket.io/?EIO=3&transport=polling".into(),
            None,
        ),
        (
            "unknown transport",
            "GET",
            "/socket.io/?EIO=4&transport=carrier".into(),
            None,
        ),
        ("PUT", "PUT", open().await, Some(b"40".to_vec())),
        (
            "POST handshake",
            "POST",
            "/socket.io/?EIO=4&transport=polling".into(),
            Some(b"40".to_vec()),
        ),
        (
            "invalid packet",
            "POST",
            open().await,
            Some(b"abc".to_vec()),
        ),
        (
            "empty record",
            "POST",
            open().await,
            Some(b"40\x1e".to_vec()),
        ),
        (
            "invalid base64",
            "POST",
            open().await,
            Some(b"b!!!".to_vec()),
        ),
        (
            "body not UTF-8",
            "POST",
            open().await,
            Some(vec![b'4', 0xff, 0xfe]),
        ),
        (
            "websocket query without upgrade",
            "GET",
            "/socket.io/?EIO=4&transport=websocket".into(),
            None,
        ),
    ];
    for (i, (name, method, target, body)) in cases.into_iter().enumerate() {
        let r = http::send(addr, method, &target, body.as_deref()).await;
        assert_eq!(r.status, 400, "case {name:?}: {}", r.text());
        let json = r.json();
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "case {name:?}: {json}"
        );
        bystander.round_trip(i as u64).await;
    }
    // A second GET while one is pending closes the session.
    let target = open().await;
    let first = {
        let target = target.clone();
        tokio::spawn(async move { http::get(addr, &target).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let second = http::get(addr, &target).await;
    assert_eq!(second.status, 400, "{}", second.text());
    let first = first.await.expect("first GET");
    assert_eq!((first.status, first.text()), (200, "1".to_owned()));
    assert_eq!(http::get(addr, &target).await.status, 400, "session closed");
    bystander.round_trip(99).await;
    server.stop().await;
}

/// A long-polling POST whose connection fails in the middle of its body (the
/// network, not the client, ended it) is a transport failure: the session
/// closes with a reason that keeps it for recovery, never as a protocol error,
/// and the client resumes it from its offset on a new connection.
#[tokio::test]
async fn a_polling_post_cut_mid_body_is_a_transport_failure_that_recovers() {
    let server = TestServer::start(Config {
        dist: no_bundle(),
        recovery: Some(duplex_server::socketio::RecoveryConfig::default()),
        ..Config::default()
    })
    .await;
    let open = http::get(server.addr, "/socket.io/?EIO=4&transport=polling").await;
    let json: serde_json::Value =
        serde_json::from_str(open.text().strip_prefix('0').expect("open packet")).expect("json");
    let sid = json["sid"].as_str().expect("sid").to_owned();
    let target = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(http::post(server.addr, &target, "40").await.status, 200);
    // The CONNECT reply, then the greeting: `news` and `handshake`, each with
    // its recovery offset as last argument.
    let mut packets: Vec<String> = Vec::new();
    while packets.iter().filter(|p| p.starts_with("42")).count() < 2 {
        let response = http::get(server.addr, &target).await;
        assert_eq!(response.status, 200, "{}", response.text());
        packets.extend(response.text().split('\x1e').map(str::to_owned));
    }
    let connect: serde_json::Value = serde_json::from_str(
        packets[0]
            .strip_prefix("40")
            .expect("the CONNECT reply first"),
    )
    .expect("json");
    let (socket_id, pid) = (connect["sid"].clone(), connect["pid"].clone());
    let last: serde_json::Value = serde_json::from_str(
        packets
            .last()
            .and_then(|p| p.strip_prefix("42"))
            .expect("event"),
    )
    .expect("json");
    let offset = last
        .as_array()
        .and_then(|a| a.last())
        .cloned()
        .expect("an offset");

    // 100 bytes announced, 12 sent, then the connection ends.
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n42[\"my other",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.shutdown().await.expect("shutdown");
    drop(stream);

    // The session is gone…
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let response = http::get(server.addr, &target).await;
        if response.status == 400 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session outlived its cut POST"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // …and kept for recovery: a new connection resumes it.
    let mut back = RawClient::open(&server.ws_url()).await;
    assert!(back.recv_text().await.starts_with('0'));
    back.send(&format!(
        "40{}",
        serde_json::json!({"pid": pid, "offset": offset})
    ))
    .await;
    let connected: serde_json::Value = serde_json::from_str(
        back.recv_text()
            .await
            .strip_prefix("40")
            .expect("a CONNECT reply"),
    )
    .expect("json");
    assert_eq!(
        connected["sid"], socket_id,
        "the session was recovered, not started afresh: {connected}"
    );
    server.stop().await;
}

#[tokio::test]
async fn health_and_readiness_answer_without_a_cluster() {
    let server = TestServer::start(Config {
        dist: no_bundle(),
        origins: duplex_server::config::OriginPolicy::SameOriginAnd(Vec::new()),
        ..Config::default()
    })
    .await;
    let alive = http::get(server.addr, "/healthz").await;
    assert_eq!(
        (alive.status, alive.json()),
        (200, serde_json::json!({"status": "alive"}))
    );
    let ready = http::get(server.addr, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(
        ready.json(),
        serde_json::json!({"shuttingDown": false, "redis": "not configured", "status": "ready"})
    );
    assert_eq!(
        ready.header("content-type"),
        Some("application/json"),
        "small JSON bodies"
    );
    server.stop().await;
}
