//! Socket.IO v5 compliance, in Rust, against the real server: every behaviour the
//! upstream suite (socketio/socket.io-protocol `test-suite/`) checks, with the
//! suite's server contract started in-process (`/` and `/custom`: `auth` on
//! connection, `message` → `message-back`, `message-with-ack` → ack; pingInterval
//! 300 ms, pingTimeout 200 ms, connectTimeout 1000 ms).
//!
//! The suite's Engine.IO cases run against `/socket.io/` (`common::engine_cases`);
//! its Socket.IO cases run over both transports (`polling::*`, `websocket::*`).
//! Plus: server-sent events and client events, text and binary, are neither lost
//! nor reordered across the polling → WebSocket upgrade.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use common::compliance::{CONNECT_TIMEOUT, Server};
use common::eio::{Client, Packet, Transport};
use duplex_server::socketio::{Handler, IncomingEvent, Socket};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The shared Engine.IO cases (`common::engine_cases`) at `/socket.io/`.
macro_rules! engine_cases {
    ($($case:ident),* $(,)?) => {
        mod engine {
            $(
                #[tokio::test]
                async fn $case() {
                    let server = crate::Server::socketio_contract().await;
                    crate::common::engine_cases::$case(server.endpoint).await;
                    server.stop().await;
                }
            )*
        }
    };
}

common::engine_cases::for_each_case!(engine_cases);

/// Each Socket.IO case over polling and over WebSocket, against its own server.
macro_rules! both_transports {
    ($($case:ident),* $(,)?) => {
        mod polling {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::$case(crate::Transport::Polling).await;
                }
            )*
        }
        mod websocket {
            $(
                #[tokio::test]
                async fn $case() {
                    crate::$case(crate::Transport::WebSocket).await;
                }
            )*
        }
    };
}

both_transports!(
    // connect
    connect_to_main_namespace,
    connect_to_main_namespace_with_auth,
    connect_to_custom_namespace,
    connect_to_custom_namespace_with_auth,
    unknown_namespace_is_refused,
    invalid_handshake_closes,
    no_handshake_closes_after_connect_timeout,
    // disconnect
    disconnect_from_main_namespace_keeps_the_session,
    disconnect_from_custom_namespace,
    event_to_a_namespace_left_closes,
    // message
    plain_text_event,
    binary_event,
    plain_text_event_with_ack,
    binary_event_with_ack,
    invalid_packet_type_closes,
    invalid_payload_closes,
    invalid_ack_id_closes,
    unicode_survives,
);

/// Opens a session on the contract server over `transport`.
async fn open(transport: Transport) -> (Server, Client) {
    let server = Server::socketio_contract().await;
    let client = Client::open(server.endpoint, transport).await;
    (server, client)
}

/// Reads a CONNECT answer `40<nsp,>{"sid":..}` and returns the Socket.IO sid.
fn connected_sid(packet: &str, prefix: &str) -> String {
    let json = packet
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected {prefix}{{..}}, got {packet:?}"));
    let json: Value = serde_json::from_str(json).expect("CONNECT payload is JSON");
    let object = json.as_object().expect("CONNECT payload is an object");
    assert_eq!(
        object.keys().collect::<Vec<_>>(),
        ["sid"],
        "only a sid: {json}"
    );
    object["sid"].as_str().expect("sid is a string").to_owned()
}

/// Joins `/` and reads `40{"sid":..}` and `42["auth",{}]`.
async fn join_main(c: &mut Client) {
    c.send("40").await;
    connected_sid(&c.recv_text().await, "40");
    assert_eq!(c.recv_text().await, r#"42["auth",{}]"#);
}

async fn connect_case(transport: Transport, send: &str, prefix: &str, auth: &str) {
    let (server, mut c) = open(transport).await;
    c.send(send).await;
    let sid = connected_sid(&c.recv_text().await, prefix);
    // A Socket.IO id, not the Engine.IO session's.
    assert_ne!(sid, c.sid);
    assert_eq!(c.recv_text().await, auth);
    server.stop().await;
}

async fn connect_to_main_namespace(transport: Transport) {
    connect_case(transport, "40", "40", r#"42["auth",{}]"#).await;
}

async fn connect_to_main_namespace_with_auth(transport: Transport) {
    connect_case(
        transport,
        r#"40{"token":"123"}"#,
        "40",
        r#"42["auth",{"token":"123"}]"#,
    )
    .await;
}

async fn connect_to_custom_namespace(transport: Transport) {
    connect_case(
        transport,
        "40/custom,",
        "40/custom,",
        r#"42/custom,["auth",{}]"#,
    )
    .await;
}

async fn connect_to_custom_namespace_with_auth(transport: Transport) {
    connect_case(
        transport,
        r#"40/custom,{"token":"abc"}"#,
        "40/custom,",
        r#"42/custom,["auth",{"token":"abc"}]"#,
    )
    .await;
}

async fn unknown_namespace_is_refused(transport: Transport) {
    let (server, mut c) = open(transport).await;
    // Without the trailing comma, as the suite sends it.
    c.send("40/random").await;
    assert_eq!(
        c.recv_text().await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    c.send("40/random,").await;
    assert_eq!(
        c.recv_text().await,
        r#"44/random,{"message":"Invalid namespace"}"#
    );
    // The session is still there: `/` can be joined.
    join_main(&mut c).await;
    server.stop().await;
}

async fn invalid_handshake_closes(transport: Transport) {
    let (server, mut c) = open(transport).await;
    c.send_unchecked(&[Packet::text("4abc")]).await;
    c.expect_closed().await;
    server.stop().await;
}

async fn no_handshake_closes_after_connect_timeout(transport: Transport) {
    let (server, mut c) = open(transport).await;
    let opened = Instant::now();
    // Answer every ping, so it is the missing CONNECT that ends the session.
    let deadline = opened + common::PATIENCE;
    let mut before = Vec::new();
    loop {
        assert!(Instant::now() < deadline, "still open; received {before:?}");
        match c.try_recv_any().await {
            Ok(Packet::Text(t)) if t == "2" => {
                let _ = c.send_unchecked(&[Packet::text("3")]).await;
            }
            Ok(packet) => before.push(packet),
            Err(_) => break,
        }
    }
    assert!(
        opened.elapsed() >= CONNECT_TIMEOUT / 2,
        "closed after {:?}, before connectTimeout",
        opened.elapsed()
    );
    // At most a close packet and noops came, never a Socket.IO packet.
    assert!(
        before
            .iter()
            .all(|p| *p == Packet::text("1") || *p == Packet::text("6")),
        "{before:?}"
    );
    server.stop().await;
}

async fn disconnect_from_main_namespace_keeps_the_session(transport: Transport) {
    let (server, mut c) = open(transport).await;
    join_main(&mut c).await;
    c.send("41").await;
    // Nothing answers the DISCONNECT: the next packet is the heartbeat.
    assert_eq!(c.recv_any().await, Packet::text("2"));
    c.send("3").await;
    // The session is alive: `/` can be joined again.
    join_main(&mut c).await;
    c.send(r#"42["message","back"]"#).await;
    assert_eq!(c.recv_text().await, r#"42["message-back","back"]"#);
    server.stop().await;
}

async fn disconnect_from_custom_namespace(transport: Transport) {
    let (server, mut c) = open(transport).await;
    join_main(&mut c).await;
    // Without trailing commas, as the suite sends them.
    c.send("40/custom").await;
    connected_sid(&c.recv_text().await, "40/custom,");
    assert_eq!(c.recv_text().await, r#"42/custom,["auth",{}]"#);
    c.send("41/custom").await;
    c.send(r#"42["message","message to main namespace"]"#).await;
    assert_eq!(
        c.recv_text().await,
        r#"42["message-back","message to main namespace"]"#
    );
    server.stop().await;
}

/// As in Socket.IO, a packet for a namespace the client has not joined (or has
/// left) is an invalid state: the server closes the session.
async fn event_to_a_namespace_left_closes(transport: Transport) {
    let (server, mut c) = open(transport).await;
    join_main(&mut c).await;
    c.send("41").await;
    let packet = Packet::text(r#"42["message","to the namespace left"]"#);
    if let Some(r) = c.send_unchecked(&[packet]).await {
        common::eio::assert_error_body(&r);
    }
    c.expect_closed().await;
    server.stop().await;
}

async fn plain_text_event(transport: Transport) {
    let (server, mut c) = open(transport).await;
    join_main(&mut c).await;
    c.send(r#"42["message",1,"2",{"3":[true]}]"#).await;
    assert_eq!(
        c.recv_text().await,
        r#"42["message-back",1,"2",{"3":[true]}]"#
    );
    // In a namespace too.
    c.send("40/custom,").await;
    c.recv_text().await;
    c.recv_text().await;
    c.send(r#"42/custom,["message",null]"#).await;
    assert_eq!(c.recv_text().await, r#"42/custom,["message-back",null]"#);
    server.stop().await;
}

const TWO_PLACEHOLDERS: &str = r#"{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}"#;

async fn binary_event(transport: Transport) {
    let (server, mut c) = open(transport).await;
    join_main(&mut c).await;
    c.send_all(&[
        Packet::Text(format!(r#"452-["message",{TWO_PLACEHOLDERS}]"#)),
        Packet::Binary(vec![1, 2, 3]),
        Packet::Binary(vec![4, 5, 6]),
    ])
    .await;
    assert_eq!(
        c.recv_text().await,
        format!(r#"452-["message-back",{TWO_PLACEHOLDERS}]"#)
    );
    assert_eq!(c.recv().await, Packet::Binary(vec![1, 2, 3]));
    assert_eq!(c.recv().await, Packet::Binary(vec![4, 5, 6]));
    server.stop().await;
}

async fn plain_text_event_with_ack(transport: Transport) {
    let (server, mut c) = open(transport).await;
    join_main(&mut c).await;
    c.send(r#"42456["message-with-ack",1,"2",{"3":[false]}]"#)
        .await;
    assert_eq!(c.recv_text().await, r#"43456[1,"2",{"3":[false]}]"#);
    // In a namespace: the ack carries it.
    c.send("40/custom,").await;
    c.recv_text().await;
    c.recv_text().await;
    c.send(r#"42/custom,7["message-with-ack"]"#).await;
    assert_eq!(c.recv_text().await, "43/custom,7[]");
    server.stop().await;
}

async fn binary_event_with_ack(transport: Transport) {
    let (server, mut c) = open(transport).await;
    join_main(&mut c).await;
    c.send_all(&[
        Packet::Text(format!(r#"452-789["message-with-ack",{TWO_PLACEHOLDERS}]"#)),
        Packet::Binary(vec![1, 2, 3]),
        Packet::Binary(vec![4, 5, 6]),
    ])
    .await;
    assert_eq!(c.recv_text().await, format!("462-789[{TWO_PLACEHOLDERS}]"));
    assert_eq!(c.recv().await, Packet::Binary(vec![1, 2, 3]));
    assert_eq!(c.recv().await, Packet::Binary(vec![4, 5, 6]));
    server.stop().await;
}

/// Sends `packet` on a joined session and expects the session closed.
async fn invalid_closes(transport: Transport, packet: &str) {
    let (server, mut c) = open(transport).await;
    join_main(&mut c).await;
    if let Some(r) = c.send_unchecked(&[Packet::text(packet)]).await {
        common::eio::assert_error_body(&r);
    }
    let before = c.expect_closed().await;
    assert!(
        !before
            .iter()
            .any(|p| matches!(p, Packet::Text(t) if t.starts_with("4"))),
        "{packet}: answered {before:?}"
    );
    server.stop().await;
}

async fn invalid_packet_type_closes(transport: Transport) {
    invalid_closes(transport, "4abc").await;
}

async fn invalid_payload_closes(transport: Transport) {
    invalid_closes(transport, "42{}").await;
}

async fn invalid_ack_id_closes(transport: Transport) {
    invalid_closes(
        transport,
        r#"42abc["message-with-ack",1,"2",{"3":[false]}]"#,
    )
    .await;
}

async fn unicode_survives(transport: Transport) {
    let (server, mut c) = open(transport).await;
    join_main(&mut c).await;
    let text = r#"42["message","héllo wörld ✓ 😀 \u0000 \"q\""]"#;
    c.send(text).await;
    let back = c.recv_text().await;
    let args: Value = serde_json::from_str(back.strip_prefix("42").expect("event")).expect("JSON");
    assert_eq!(
        args,
        json!(["message-back", "héllo wörld ✓ 😀 \u{0} \"q\""])
    );
    server.stop().await;
}

// --- upgrade: nothing lost, nothing reordered ---

/// `start` → emits `tick` n (n = 0, 1, ...) every millisecond, every odd tick with
/// a binary attachment (n as 4 big-endian bytes), until `stop` → `stopped` [count].
/// `message` → `message-back` with the same arguments.
#[derive(Default)]
struct Ticker {
    running: Mutex<HashMap<String, CancellationToken>>,
}

impl Handler for Ticker {
    fn on_event(&self, socket: &Socket, event: IncomingEvent) {
        match event.name.as_str() {
            "start" => {
                let stop = CancellationToken::new();
                self.running
                    .lock()
                    .expect("not poisoned")
                    .insert(socket.id().to_owned(), stop.clone());
                let socket = socket.clone();
                tokio::spawn(async move {
                    let mut n: u32 = 0;
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            () = tokio::time::sleep(Duration::from_millis(1)) => {}
                        }
                        let sent = if n % 2 == 1 {
                            socket.emit_with_attachments(
                                "tick",
                                vec![json!(n), json!({"_placeholder": true, "num": 0})],
                                vec![n.to_be_bytes().to_vec()],
                            )
                        } else {
                            socket.emit_raw("tick", vec![json!(n)])
                        };
                        if sent.is_err() {
                            return; // the client is gone
                        }
                        n += 1;
                    }
                    let _ = socket.emit_raw("stopped", vec![json!(n)]);
                });
            }
            "stop" => {
                if let Some(stop) = self
                    .running
                    .lock()
                    .expect("not poisoned")
                    .remove(socket.id())
                {
                    stop.cancel();
                }
            }
            "message" => {
                let _ = socket.emit_raw("message-back", event.args);
            }
            _ => {}
        }
    }
}

/// What the client saw, in order.
#[derive(Debug, PartialEq)]
enum Seen {
    Tick(u32),
    Back(u32),
    Stopped(u32),
}

/// Reads one Socket.IO event (and its attachment) from the ticker.
async fn next_seen(c: &mut Client) -> (Seen, Transport) {
    let text = c.recv_text().await;
    let transport = c.transport();
    if let Some(json) = text.strip_prefix("451-") {
        let args: Value = serde_json::from_str(json).expect("event JSON");
        assert_eq!(args[0], "tick", "{text}");
        let n = u32::try_from(args[1].as_u64().expect("tick number")).expect("u32");
        assert_eq!(args[2], json!({"_placeholder": true, "num": 0}), "{text}");
        assert_eq!(
            c.recv().await,
            Packet::Binary(n.to_be_bytes().to_vec()),
            "attachment of tick {n}"
        );
        return (Seen::Tick(n), transport);
    }
    let args: Value = serde_json::from_str(
        text.strip_prefix("42")
            .unwrap_or_else(|| panic!("expected an event, got {text:?}")),
    )
    .expect("event JSON");
    let n = u32::try_from(args[1].as_u64().expect("a number")).expect("u32");
    let seen = match args[0].as_str() {
        Some("tick") => Seen::Tick(n),
        Some("message-back") => Seen::Back(n),
        Some("stopped") => Seen::Stopped(n),
        _ => panic!("unexpected {text:?}"),
    };
    (seen, transport)
}

/// Server-initiated events stream while the client upgrades, and the client's own
/// events go over polling before and during the probe and over WebSocket after:
/// every tick arrives once, in order, each attachment right after its packet, and
/// the client's events are answered in the order sent.
#[tokio::test]
async fn upgrade_loses_and_reorders_nothing() {
    let server = Server::socketio(|io| io.namespace("/", Ticker::default())).await;
    let mut c = Client::open(server.endpoint, Transport::Polling).await;
    c.send("40").await;
    connected_sid(&c.recv_text().await, "40");
    c.send(r#"42["start"]"#).await;
    let message = |n: u32| Packet::Text(format!(r#"42["message",{n}]"#));

    let mut seen = Vec::new();
    c.send_all(&(0..5).map(message).collect::<Vec<_>>()).await;
    while seen
        .iter()
        .filter(|(_, t)| *t == Transport::Polling)
        .count()
        < 10
    {
        seen.push(next_seen(&mut c).await);
    }
    c.start_upgrade().await;
    c.send_all(&(5..10).map(message).collect::<Vec<_>>()).await;
    seen.push(next_seen(&mut c).await);
    c.finish_upgrade().await;
    for n in 10..15 {
        c.send_all(&[message(n)]).await;
    }
    while seen
        .iter()
        .filter(|(_, t)| *t == Transport::WebSocket)
        .count()
        < 10
    {
        seen.push(next_seen(&mut c).await);
    }
    c.send(r#"42["stop"]"#).await;
    loop {
        let next = next_seen(&mut c).await;
        let done = matches!(next.0, Seen::Stopped(_));
        seen.push(next);
        if done {
            break;
        }
    }

    let Some((Seen::Stopped(count), _)) = seen.last() else {
        unreachable!("the loop ends on stopped")
    };
    let ticks: Vec<u32> = seen
        .iter()
        .filter_map(|(s, _)| match s {
            Seen::Tick(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(
        ticks,
        (0..*count).collect::<Vec<_>>(),
        "ticks lost or reordered"
    );
    let backs: Vec<u32> = seen
        .iter()
        .filter_map(|(s, _)| match s {
            Seen::Back(n) => Some(*n),
            _ => None,
        })
        .collect();
    assert_eq!(
        backs,
        (0..15).collect::<Vec<_>>(),
        "answers lost or reordered"
    );
    server.stop().await;
}
