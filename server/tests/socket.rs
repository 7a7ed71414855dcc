//! The Socket.IO endpoint over real sockets: handshake, the tutorial's exchange,
//! echo and acks, publish, heartbeat, and hostile input closing only its own
//! connection.

mod common;

use std::time::Duration;

use common::{PATIENCE, RawClient, TestServer};
use duplex_server::Config;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

#[tokio::test]
async fn open_packet_has_the_handshake_fields() {
    let server = TestServer::default().await;
    let mut c = RawClient::open(&server.ws_url()).await;
    let open = c.recv_text().await;
    let json: Value = serde_json::from_str(open.strip_prefix('0').expect("open packet"))
        .expect("open payload is JSON");
    assert!(
        json["sid"].as_str().is_some_and(|s| s.len() >= 16),
        "{json}"
    );
    assert_eq!(json["upgrades"], json!([]));
    assert_eq!(json["pingInterval"], 25000);
    assert_eq!(json["pingTimeout"], 20000);
    assert_eq!(json["maxPayload"], 1_000_000);
    server.stop().await;
}

#[tokio::test]
async fn connect_then_news_then_handshake() {
    let server = TestServer::default().await;
    let (mut c, sid) = RawClient::connect(&server).await;
    assert!(sid.len() >= 16);
    assert_eq!(c.recv_text().await, r#"42["news",{"hello":"world"}]"#);
    let handshake = c.recv_text().await;
    let json: Value =
        serde_json::from_str(handshake.strip_prefix("42").expect("event")).expect("event JSON");
    assert_eq!(json[0], "handshake");
    let info = &json[1];
    assert_eq!(
        info["upgrade"].as_str().map(str::to_lowercase).as_deref(),
        Some("websocket")
    );
    assert_eq!(info["secWebsocketVersion"], "13");
    assert_eq!(info["status"], "101 Switching Protocols");
    assert_eq!(info["pingInterval"], 25000);
    // The accept value is what RFC 6455 derives from the key we sent.
    let key = info["secWebsocketKey"].as_str().expect("key reported");
    let accept = info["secWebsocketAccept"]
        .as_str()
        .expect("accept reported");
    assert_eq!(
        accept,
        tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes())
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_namespace_is_refused() {
    let server = TestServer::default().await;
    let mut c = RawClient::open(&server.ws_url()).await;
    c.recv_text().await;
    c.send("40/nope,").await;
    assert_eq!(
        c.recv_text().await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    // The session survives; "/" still works.
    c.send("40").await;
    assert!(c.recv_text().await.starts_with("40{"));
    server.stop().await;
}

#[tokio::test]
async fn my_other_event_is_echoed() {
    let server = TestServer::default().await;
    let (mut c, _) = RawClient::connect_greeted(&server).await;
    c.send(r#"42["my other event",{"my":"data"}]"#).await;
    assert_eq!(c.recv_text().await, r#"42["my other event",{"my":"data"}]"#);
    server.stop().await;
}

#[tokio::test]
async fn events_are_echoed_and_acked_with_the_same_arguments() {
    let server = TestServer::default().await;
    let (mut c, _) = RawClient::connect_greeted(&server).await;
    c.send(r#"4212["custom",1,"two",{"three":[3]}]"#).await;
    assert_eq!(c.recv_text().await, r#"42["custom",1,"two",{"three":[3]}]"#);
    assert_eq!(c.recv_text().await, r#"4312[1,"two",{"three":[3]}]"#);
    // Without an ack id: only the echo.
    c.send(r#"42["other"]"#).await;
    assert_eq!(c.recv_text().await, r#"42["other"]"#);
    c.round_trip(99).await;
    server.stop().await;
}

/// Arguments the server does not read go back as the client wrote them:
/// spacing, the spelling of numbers (one past what an f64 holds exactly),
/// escapes. A typed event's payload is read from that text too.
#[tokio::test]
async fn echoes_carry_the_arguments_as_they_arrived() {
    let server = TestServer::default().await;
    let (mut c, _) = RawClient::connect_greeted(&server).await;
    let args = r#"1.50 , "\u00e9\n" , {"big":123456789012345678901234, "b" : [ ] }"#;
    c.send(&format!(r#"4213[ "custom" , {args} ] "#)).await;
    assert_eq!(c.recv_text().await, format!(r#"42["custom",{args}]"#));
    assert_eq!(c.recv_text().await, format!("4313[{args}]"));
    c.send(r#"42[ "my other event" , { "my" : "data" } ]"#)
        .await;
    assert_eq!(
        c.recv_text().await,
        r#"42["my other event",{ "my" : "data" }]"#
    );
    c.send(r#"427[ "publish" , { "text" : "spaced" } ]"#).await;
    let news = c.recv_text().await;
    assert!(news.starts_with(r#"42["news",{"hello":"spaced""#), "{news}");
    assert_eq!(c.recv_text().await, r#"437[{"delivered":1}]"#);
    server.stop().await;
}

#[tokio::test]
async fn binary_events_are_echoed() {
    let server = TestServer::default().await;
    let (mut c, _) = RawClient::connect_greeted(&server).await;
    c.send(r#"451-7["bytes",{"_placeholder":true,"num":0}]"#)
        .await;
    c.send_message(Message::binary(vec![1u8, 2, 3])).await;
    assert_eq!(
        c.recv_text().await,
        r#"451-["bytes",{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(c.recv().await, Some(Message::binary(vec![1u8, 2, 3])));
    assert_eq!(
        c.recv_text().await,
        r#"461-7[{"_placeholder":true,"num":0}]"#
    );
    assert_eq!(c.recv().await, Some(Message::binary(vec![1u8, 2, 3])));
    server.stop().await;
}

#[tokio::test]
async fn publish_reaches_every_other_client() {
    let server = TestServer::default().await;
    let (mut publisher, publisher_sid) = RawClient::connect_greeted(&server).await;
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(RawClient::connect_greeted(&server).await.0);
    }
    publisher
        .send(r#"425["publish",{"text":"extra, extra"}]"#)
        .await;
    let news = format!(r#"42["news",{{"hello":"extra, extra","from":"{publisher_sid}"}}]"#);
    // The publisher gets the news too, and an ack saying how many got it.
    assert_eq!(publisher.recv_text().await, news);
    assert_eq!(publisher.recv_text().await, r#"435[{"delivered":4}]"#);
    for c in &mut others {
        assert_eq!(c.recv_text().await, news);
    }
    // A malformed publish is refused with a clear error, and nothing is broadcast.
    publisher.send(r#"426["publish",{"txt":1}]"#).await;
    let reply = publisher.recv_text().await;
    assert!(
        reply.starts_with(r#"436[{"error":"#) && reply.contains("text"),
        "{reply}"
    );
    others[0].round_trip(1).await;
    server.stop().await;
}

fn fast_heartbeat() -> Config {
    Config {
        dist: std::env::temp_dir().join("duplex-no-bundle"),
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..Config::default()
    }
}

#[tokio::test]
async fn ping_after_ping_interval_and_pong_keeps_the_connection() {
    let server = TestServer::start(fast_heartbeat()).await;
    let (mut c, _) = RawClient::connect_greeted(&server).await;
    let opened = tokio::time::Instant::now();
    for _ in 0..3 {
        assert_eq!(c.recv_text().await, "2");
        c.send("3").await;
    }
    // Three pings, each pingInterval after the open packet or the previous pong.
    assert!(
        opened.elapsed() >= Duration::from_millis(800),
        "pinged too early"
    );
    c.round_trip(1).await;
    server.stop().await;
}

#[tokio::test]
async fn no_pong_closes_the_connection() {
    let server = TestServer::start(fast_heartbeat()).await;
    let (mut c, _) = RawClient::connect_greeted(&server).await;
    assert_eq!(c.recv_text().await, "2");
    c.expect_closed(PATIENCE).await;
    server.stop().await;
}

/// Each hostile input closes the connection that sent it, while a bystander on the
/// same server keeps its round trips working.
#[tokio::test]
async fn malformed_input_closes_only_that_connection() {
    let server = TestServer::default().await;
    let (mut bystander, _) = RawClient::connect_greeted(&server).await;
    let oversized = format!(r#"42["big","{}"]"#, "x".repeat(1_000_001));
    let invalid_utf8 = Message::Frame(Frame::message(
        vec![b'4', b'2', 0xff, 0xfe],
        OpCode::Data(Data::Text),
        true,
    ));
    let cases: Vec<(&str, Message)> = vec![
        ("unknown type", Message::text("4abc")),
        ("non-array event", Message::text("42{}")),
        ("bad ack id", Message::text(r#"42abc["x"]"#)),
        ("unknown engine.io type", Message::text("9")),
        ("client ping", Message::text("2")),
        ("invalid UTF-8", invalid_utf8),
        ("oversized message", Message::text(oversized)),
        ("binary without header", Message::binary(vec![1u8, 2])),
    ];
    for (i, (name, message)) in cases.into_iter().enumerate() {
        let (mut c, _) = RawClient::connect_greeted(&server).await;
        c.send_message(message).await;
        let close = c.expect_closed(PATIENCE).await;
        if name == "oversized message" {
            assert_eq!(close.as_ref().map(|c| c.0), Some(1009), "{name}: {close:?}");
        }
        bystander.round_trip(i as u64).await;
    }
    server.stop().await;
}

/// A message far over maxPayload is refused from its frame header while the
/// client is still sending it: the server reads and drops the rest until the
/// client closes, so the close frame with 1009 and its reason reaches the
/// client at any size (dropping the socket with unread data would reset the
/// connection, and the client would see 1006 and no reason).
#[tokio::test]
async fn oversized_messages_of_any_size_get_1009_and_the_reason() {
    let server = TestServer::default().await;
    let (mut bystander, _) = RawClient::connect_greeted(&server).await;
    for (i, size) in [1_100_000, 2_000_000, 8_000_000].into_iter().enumerate() {
        let (mut c, _) = RawClient::connect_greeted(&server).await;
        let big = format!(r#"42["big","{}"]"#, "x".repeat(size));
        // The client finishes sending: a client whose write fails (a reset)
        // reports the connection lost (1006) before it reads the close frame.
        let sent = c.ws.send(Message::text(big)).await;
        assert!(sent.is_ok(), "{size} bytes: the send failed: {sent:?}");
        let close = c.expect_closed(PATIENCE).await;
        let (code, reason) = close.unwrap_or_else(|| panic!("{size} bytes: no close frame"));
        assert_eq!(code, 1009, "{size} bytes: {reason}");
        assert!(reason.contains("too large"), "{size} bytes: {reason:?}");
        bystander.round_trip(i as u64).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn bad_engine_io_queries_are_refused() {
    let server = TestServer::default().await;
    for query in [
        "EIO=3&transport=websocket",
        "transport=websocket",
        "EIO=4&transport=smoke",
    ] {
        let url = format!("ws://{}/socket.io/?{query}", server.addr);
        let err = tokio_tungstenite::connect_async(url)
            .await
            .expect_err("the upgrade is refused");
        match err {
            tokio_tungstenite::tungstenite::Error::Http(response) => {
                assert_eq!(response.status(), 400, "{query}");
            }
            other => panic!("{query}: expected an HTTP 400, got {other:?}"),
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn shutdown_tells_clients() {
    let server = TestServer::default().await;
    let (mut c, _) = RawClient::connect_greeted(&server).await;
    let shutdown = server.shutdown.clone();
    let stopping = tokio::spawn(server.stop());
    shutdown.cancel();
    assert_eq!(c.recv_text().await, "1", "an engine.io close packet first");
    let close = c.expect_closed(PATIENCE).await;
    assert_eq!(close.map(|c| c.0), Some(1001));
    stopping.await.expect("server stopped");
}

#[tokio::test]
async fn news_channels_reach_their_subscribers_only() {
    let server = TestServer::default().await;
    let (mut fan, _) = RawClient::connect_greeted(&server).await;
    let (mut other, _) = RawClient::connect_greeted(&server).await;
    let (mut publisher, publisher_sid) = RawClient::connect_greeted(&server).await;
    fan.send(r#"421["join",{"channel":"sports"}]"#).await;
    assert_eq!(fan.recv_text().await, r#"431[{"channels":["sports"]}]"#);
    fan.send(r#"422["join",{"channel":""}]"#).await;
    let refused = fan.recv_text().await;
    assert!(
        refused.contains(r#""error":"invalid channel name"#),
        "{refused}"
    );

    publisher
        .send(r#"423["publish",{"text":"goal!","channel":"sports"}]"#)
        .await;
    assert_eq!(publisher.recv_text().await, r#"433[{"delivered":1}]"#);
    assert_eq!(
        fan.recv_text().await,
        format!(r#"42["news",{{"hello":"goal!","from":"{publisher_sid}","channel":"sports"}}]"#)
    );
    // The non-subscriber got nothing: its next message is the answer to its own probe.
    other.round_trip(7).await;

    fan.send(r#"424["leave",{"channel":"sports"}]"#).await;
    assert_eq!(fan.recv_text().await, r#"434[{"channels":[]}]"#);
    publisher
        .send(r#"425["publish",{"text":"again","channel":"sports"}]"#)
        .await;
    assert_eq!(publisher.recv_text().await, r#"435[{"delivered":0}]"#);
    fan.round_trip(8).await;
    server.stop().await;
}

#[tokio::test]
async fn token_middleware_refuses_with_a_clear_message() {
    let server = TestServer::start(Config {
        dist: std::env::temp_dir().join("duplex-no-bundle"),
        token: Some("s3cret".into()),
        ..Config::default()
    })
    .await;
    for (auth, expected) in [
        ("", "authentication required"),
        (r#"{"token":"nope"}"#, "invalid token"),
    ] {
        let mut c = RawClient::open(&server.ws_url()).await;
        c.recv_text().await;
        c.send(&format!("40{auth}")).await;
        let refusal = c.recv_text().await;
        assert!(
            refusal.starts_with(r#"44{"message":""#) && refusal.contains(expected),
            "{refusal}"
        );
    }
    let mut c = RawClient::open(&server.ws_url()).await;
    c.recv_text().await;
    c.send(r#"40{"token":"s3cret"}"#).await;
    assert!(c.recv_text().await.starts_with(r#"40{"sid":"#));
    assert_eq!(c.recv_text().await, r#"42["news",{"hello":"world"}]"#);
    server.stop().await;
}
