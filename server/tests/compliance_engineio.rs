//! Engine.IO v4 compliance, in Rust, against the real server: every behaviour the
//! upstream suite (socketio/engine.io-protocol `test-suite/`) checks, over HTTP
//! long-polling and WebSocket, with the suite's server — a bare Engine.IO echo at
//! `/engine.io/`, pingInterval 300 ms, pingTimeout 200 ms — started in-process.
//! Plus: nothing is lost or reordered across the polling → WebSocket upgrade.

mod common;

use std::time::Duration;

use common::compliance::Server;
use common::eio::{
    Client, Packet, Transport, assert_error_body, ws_expect_closed, ws_next, ws_send,
};

/// The shared Engine.IO cases (`common::engine_cases`), each against its own echo server.
macro_rules! engine_cases {
    ($($case:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $case() {
            let server = Server::engine_echo().await;
            common::engine_cases::$case(server.endpoint).await;
            server.stop().await;
        }
    )*};
}

common::engine_cases::for_each_case!(engine_cases);

// --- message, HTTP long-polling ---

/// POSTs `body` (answered `ok`), then GETs and expects exactly `body` back.
async fn polling_echo(body: &str) {
    let server = Server::engine_echo().await;
    let ep = server.endpoint;
    let (sid, _) = ep.open_polling().await;
    let r = ep.push(&sid, body).await;
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    let r = ep.poll(&sid).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.text(), body);
    assert!(
        r.header("content-type")
            .is_some_and(|ct| ct.starts_with("text/plain")),
        "{r:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn polling_one_text_packet() {
    polling_echo("4hello").await;
}

#[tokio::test]
async fn polling_several_text_packets() {
    polling_echo("4test1\x1e4test2\x1e4test3").await;
}

#[tokio::test]
async fn polling_text_and_binary_packets() {
    polling_echo("4hello\x1ebAQIDBA==").await;
}

#[tokio::test]
async fn polling_utf8_text_packet() {
    polling_echo("4héllo wörld ✓ 😀").await;
}

#[tokio::test]
async fn polling_invalid_packet_closes_the_session() {
    let server = Server::engine_echo().await;
    let ep = server.endpoint;
    let (sid, _) = ep.open_polling().await;
    // The POST may be answered 400, or its connection dropped; either way the
    // session is over.
    let target = ep.target(&common::eio::Endpoint::sid_query(&sid));
    if let Ok(r) = common::http::request(ep.addr, "POST", &target, Some(b"abc")).await {
        assert_error_body(&r);
    }
    assert_error_body(&ep.poll(&sid).await);
    server.stop().await;
}

#[tokio::test]
async fn polling_duplicate_get_closes_the_session() {
    let server = Server::engine_echo().await;
    let ep = server.endpoint;
    let (sid, _) = ep.open_polling().await;
    let burst = format!("{}&t=burst", common::eio::Endpoint::sid_query(&sid));
    let (first, second) = tokio::join!(ep.poll(&sid), async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        ep.get(&burst).await
    });
    // The first GET ends with the close packet; the second is refused.
    assert_eq!(
        (first.status, first.text().as_str()),
        (200, "1"),
        "{first:?}"
    );
    assert_error_body(&second);
    assert_error_body(&ep.poll(&sid).await);
    server.stop().await;
}

// --- message, WebSocket ---

#[tokio::test]
async fn ws_text_packet() {
    let server = Server::engine_echo().await;
    let mut c = Client::open(server.endpoint, Transport::WebSocket).await;
    c.send("4hello").await;
    assert_eq!(c.recv().await, Packet::text("4hello"));
    c.send("4héllo ✓").await;
    assert_eq!(c.recv().await, Packet::text("4héllo ✓"));
    server.stop().await;
}

#[tokio::test]
async fn ws_binary_packet() {
    let server = Server::engine_echo().await;
    let mut c = Client::open(server.endpoint, Transport::WebSocket).await;
    c.send_binary(&[1, 2, 3, 4]).await;
    assert_eq!(c.recv().await, Packet::Binary(vec![1, 2, 3, 4]));
    server.stop().await;
}

#[tokio::test]
async fn ws_invalid_packet_closes_the_session() {
    let server = Server::engine_echo().await;
    let mut c = Client::open(server.endpoint, Transport::WebSocket).await;
    c.send("abc").await;
    let before = c.expect_closed().await;
    assert!(before.is_empty(), "{before:?}");
    server.stop().await;
}

#[tokio::test]
async fn binary_crosses_transports() {
    // Binary sent over WebSocket and over polling comes back in each transport's
    // own framing: a binary frame, or `b` + base64 in the payload.
    let server = Server::engine_echo().await;
    let ep = server.endpoint;
    let bytes: Vec<u8> = (0..=255).collect();
    let mut ws = Client::open(ep, Transport::WebSocket).await;
    ws.send_binary(&bytes).await;
    assert_eq!(ws.recv().await, Packet::Binary(bytes.clone()));
    let (sid, _) = ep.open_polling().await;
    let body = format!("b{}", common::eio::base64_encode(&bytes));
    assert_eq!(ep.push(&sid, &body).await.text(), "ok");
    assert_eq!(ep.poll(&sid).await.text(), body);
    server.stop().await;
}

// --- upgrade: nothing lost, nothing reordered ---

fn message(i: usize) -> Packet {
    if i % 3 == 2 {
        Packet::Binary(vec![i as u8, 0xff, 0x00])
    } else {
        Packet::Text(format!("4m{i}"))
    }
}

/// Messages sent over polling before the probe, over polling while probing, and
/// over the WebSocket after `5`: their echoes arrive exactly once each, in order,
/// some on each transport.
#[tokio::test]
async fn upgrade_loses_and_reorders_nothing() {
    let server = Server::engine_echo().await;
    let mut c = Client::open(server.endpoint, Transport::Polling).await;
    let batch = |range: std::ops::Range<usize>| range.map(message).collect::<Vec<_>>();

    // Echoes of these wait on the polling side, unread.
    c.send_all(&batch(0..10)).await;
    c.start_upgrade().await;
    // While probing, polling is still the transport.
    c.send_all(&batch(10..20)).await;
    let mut received = Vec::new();
    received.push((c.recv().await, c.transport()));
    c.send_all(&batch(20..25)).await;
    c.finish_upgrade().await;
    // Sent one by one over the WebSocket, interleaved with nothing read yet.
    c.send_all(&batch(25..40)).await;
    while received.len() < 40 {
        received.push((c.recv().await, c.transport()));
    }
    let packets: Vec<Packet> = received.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(packets, batch(0..40));
    assert_eq!(received[0].1, Transport::Polling);
    assert_eq!(received[39].1, Transport::WebSocket);
    server.stop().await;
}

/// The pending GET of a client that upgrades is released, and what the server
/// had queued for it goes out in order, once.
#[tokio::test]
async fn upgrade_with_a_get_pending_releases_it() {
    let server = Server::engine_echo().await;
    let ep = server.endpoint;
    let (sid, _) = ep.open_polling().await;
    let pending = tokio::spawn({
        let sid = sid.clone();
        async move { ep.poll(&sid).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut ws = ep
        .ws(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await
        .expect("upgrade WebSocket handshake");
    ws_send(&mut ws, Packet::text("2probe")).await;
    ws_send(&mut ws, Packet::text("5")).await;
    ws_send(&mut ws, Packet::text("4after")).await;
    assert_eq!(ws_next(&mut ws).await, Some(Packet::text("3probe")));
    let released = pending.await.expect("GET task");
    assert_eq!(
        (released.status, released.text().as_str()),
        (200, "6"),
        "{released:?}"
    );
    assert_eq!(
        common::engine_cases::ws_recv(&mut ws).await,
        Packet::text("4after")
    );
    // A close packet ends the upgraded session.
    ws_send(&mut ws, Packet::text("1")).await;
    assert!(ws_expect_closed(&mut ws).await.is_empty());
    server.stop().await;
}

// --- maxPayload on polling ---

/// A POST of exactly maxPayload bytes is a valid payload and is echoed.
#[tokio::test]
async fn polling_post_of_max_payload_is_accepted() {
    let server = Server::engine_echo().await;
    let ep = server.endpoint;
    let (sid, _) = ep.open_polling().await;
    let body = format!("4{}", "x".repeat(common::compliance::MAX_PAYLOAD - 1));
    let r = ep.push(&sid, &body).await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "ok"),
        "status {}",
        r.status
    );
    let r = ep.poll(&sid).await;
    assert_eq!(r.status, 200);
    assert!(
        r.text() == body,
        "the echo differs from the {} bytes sent",
        body.len()
    );
    server.stop().await;
}

/// A POST larger than maxPayload is refused as such: 413 Payload Too Large (what
/// the transport's routes promise), not mistaken for some other invalid input.
#[tokio::test]
async fn polling_post_over_max_payload_is_refused_with_413() {
    let server = Server::engine_echo().await;
    let ep = server.endpoint;
    let (sid, _) = ep.open_polling().await;
    let body = format!("4{}", "x".repeat(common::compliance::MAX_PAYLOAD));
    let target = ep.target(&common::eio::Endpoint::sid_query(&sid));
    let r = common::http::request(ep.addr, "POST", &target, Some(body.as_bytes()))
        .await
        .unwrap_or_else(|e| panic!("no response to an oversized POST ({e}); expected a 413"));
    assert_eq!(
        r.status,
        413,
        "an oversized POST should be refused with 413, got {} {:?}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    server.stop().await;
}

#[test]
fn payload_framing_and_base64() {
    use common::eio::{base64_decode, base64_encode, parse_payload, to_payload};
    assert_eq!(base64_encode(&[1, 2, 3, 4]), "AQIDBA==");
    assert_eq!(base64_encode(b"ab"), "YWI=");
    assert_eq!(base64_encode(b"abc"), "YWJj");
    for n in 0..10u8 {
        let bytes: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
        assert_eq!(base64_decode(&base64_encode(&bytes)), Some(bytes));
    }
    assert_eq!(base64_decode("AQI"), None);
    assert_eq!(
        parse_payload("4hello\x1ebAQIDBA=="),
        vec![Packet::text("4hello"), Packet::Binary(vec![1, 2, 3, 4])]
    );
    assert_eq!(
        to_payload(&[Packet::text("4a"), Packet::Binary(vec![1])]),
        "4a\x1ebAQ=="
    );
}
