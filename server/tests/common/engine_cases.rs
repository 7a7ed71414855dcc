//! The Engine.IO behaviour both upstream suites check, written once for any
//! endpoint: the Engine.IO suite runs it against the bare echo at `/engine.io/`,
//! the Socket.IO suite against `/socket.io/`. What differs between the two is how
//! to prove a session still works ([`assert_alive`]) and that a Socket.IO session
//! must join a namespace within connectTimeout (1 s) to outlive it.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use super::compliance::{PING_INTERVAL, PING_TIMEOUT};
use super::eio::{
    Endpoint, Flavor, Packet, Ws, assert_error, assert_error_body, open_json, ws_expect_closed,
    ws_next, ws_send,
};

/// The one list of the shared cases: `for_each_case!(m)` calls `m!` with every
/// case's name, and each suite's `m` makes a test of each against its server.
#[allow(unused_macros)] // each test binary uses a different part
macro_rules! for_each_case {
    ($callback:ident) => {
        $callback!(
            // handshake
            polling_opens_a_session,
            polling_refuses_an_invalid_eio,
            polling_refuses_an_invalid_transport,
            polling_refuses_an_invalid_method,
            polling_refuses_an_unknown_sid,
            polling_to_a_websocket_session_is_refused,
            ws_opens_a_session,
            ws_refuses_an_invalid_eio,
            ws_refuses_an_invalid_transport,
            // heartbeat
            polling_ping_pong,
            polling_ping_timeout,
            ws_ping_pong,
            ws_ping_timeout,
            // close
            polling_forceful_close,
            ws_forceful_close,
            // upgrade
            upgrade_probe_noop_and_upgrade,
            upgrade_then_polling_is_refused,
            upgrade_then_second_ws_is_closed,
            second_probe_while_probing_is_closed,
            websocket_session_cannot_be_upgraded,
        );
    };
}
#[allow(unused_imports)]
pub(crate) use for_each_case;

/// The next packet on `ws` that is not a ping; pings are answered with a pong.
pub async fn ws_recv(ws: &mut Ws) -> Packet {
    loop {
        match ws_next(ws).await {
            Some(Packet::Text(t)) if t == "2" => ws_send(ws, Packet::text("3")).await,
            Some(packet) => return packet,
            None => panic!("expected a packet, but the WebSocket closed"),
        }
    }
}

pub async fn ws_recv_text(ws: &mut Ws) -> String {
    match ws_recv(ws).await {
        Packet::Text(t) => t,
        other => panic!("expected a text packet, got {other:?}"),
    }
}

/// Proves the session on `ws` works: the echo answers `4hello`; a Socket.IO
/// session joins `/custom`, gets its echo, and leaves it again.
pub async fn assert_alive(ws: &mut Ws, flavor: Flavor) {
    match flavor {
        Flavor::EngineEcho => {
            ws_send(ws, Packet::text("4hello")).await;
            assert_eq!(ws_recv_text(ws).await, "4hello");
        }
        Flavor::SocketIo => {
            ws_send(ws, Packet::text("40/custom,")).await;
            let connected = ws_recv_text(ws).await;
            assert!(connected.starts_with("40/custom,{\"sid\":"), "{connected}");
            assert_eq!(ws_recv_text(ws).await, r#"42/custom,["auth",{}]"#);
            ws_send(ws, Packet::text(r#"42/custom,["message","alive"]"#)).await;
            assert_eq!(
                ws_recv_text(ws).await,
                r#"42/custom,["message-back","alive"]"#
            );
            ws_send(ws, Packet::text("41/custom,")).await;
        }
    }
}

/// For a Socket.IO endpoint, joins `/` (over a WebSocket) and reads the answer, so
/// connectTimeout does not end the session during a long heartbeat case.
async fn join_if_socketio_ws(ws: &mut Ws, flavor: Flavor) {
    if flavor == Flavor::SocketIo {
        ws_send(ws, Packet::text("40")).await;
        assert!(ws_recv_text(ws).await.starts_with("40{"));
        assert_eq!(ws_recv_text(ws).await, r#"42["auth",{}]"#);
    }
}

async fn join_if_socketio_polling(ep: &Endpoint, sid: &str) {
    if ep.flavor == Flavor::SocketIo {
        let r = ep.push(sid, "40").await;
        assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
        // The answer and the `auth` event, in one payload or in two.
        let mut packets = Vec::new();
        while packets.len() < 2 {
            let r = ep.poll(sid).await;
            assert_eq!(r.status, 200, "{r:?}");
            packets.extend(r.text().split('\x1e').map(str::to_owned));
        }
        assert_eq!(packets.len(), 2, "{packets:?}");
        assert!(packets[0].starts_with("40{"), "{packets:?}");
        assert_eq!(packets[1], r#"42["auth",{}]"#);
    }
}

fn assert_open_packet(open: &serde_json::Value, upgrades: serde_json::Value) {
    let keys: HashSet<&str> = open
        .as_object()
        .expect("open payload is an object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from([
            "sid",
            "upgrades",
            "pingInterval",
            "pingTimeout",
            "maxPayload"
        ]),
        "{open}"
    );
    assert!(
        open["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "{open}"
    );
    assert_eq!(open["upgrades"], upgrades);
    assert_eq!(open["pingInterval"], 300);
    assert_eq!(open["pingTimeout"], 200);
    assert_eq!(open["maxPayload"], 1_000_000);
}

// --- handshake, HTTP long-polling ---

pub async fn polling_opens_a_session(ep: Endpoint) {
    let r = ep.get("EIO=4&transport=polling").await;
    assert_eq!(r.status, 200, "{r:?}");
    let body = r.text();
    assert!(body.starts_with('0'), "{body:?}");
    assert_open_packet(&open_json(&body), json!(["websocket"]));
    // Every session gets its own sid.
    let (a, _) = ep.open_polling().await;
    let (b, _) = ep.open_polling().await;
    assert_ne!(a, b);
}

pub async fn polling_refuses_an_invalid_eio(ep: Endpoint) {
    for query in [
        "transport=polling",
        "EIO=abc&transport=polling",
        "EIO=3&transport=polling",
    ] {
        let r = ep.get(query).await;
        assert_error(&r, 5, "Unsupported protocol version");
    }
}

pub async fn polling_refuses_an_invalid_transport(ep: Endpoint) {
    for query in ["EIO=4", "EIO=4&transport=abc"] {
        let r = ep.get(query).await;
        assert_error(&r, 0, "Transport unknown");
    }
}

pub async fn polling_refuses_an_invalid_method(ep: Endpoint) {
    let r = ep
        .request("POST", "EIO=4&transport=polling", Some(""))
        .await;
    assert_error(&r, 2, "Bad handshake method");
    let r = ep.request("PUT", "EIO=4&transport=polling", Some("")).await;
    assert_error(&r, 2, "Bad handshake method");
}

pub async fn polling_refuses_an_unknown_sid(ep: Endpoint) {
    let query = Endpoint::sid_query("no-such-session");
    assert_error(&ep.get(&query).await, 1, "Session ID unknown");
    assert_error(&ep.post(&query, "4hello").await, 1, "Session ID unknown");
    // And over WebSocket: the upgrade request is refused.
    let ws = ep.ws("EIO=4&transport=websocket&sid=no-such-session").await;
    assert_ws_refused(ws, 1);
}

/// Polling requests for a session opened over WebSocket are refused (400 with the
/// JSON error body) and do not disturb it.
pub async fn polling_to_a_websocket_session_is_refused(ep: Endpoint) {
    let mut ws = ep
        .ws("EIO=4&transport=websocket")
        .await
        .expect("WebSocket handshake");
    let sid = match ws_next(&mut ws).await {
        Some(Packet::Text(open)) => open_json(&open)["sid"].as_str().expect("sid").to_owned(),
        other => panic!("expected an open packet, got {other:?}"),
    };
    assert_error_body(&ep.poll(&sid).await);
    assert_error_body(&ep.push(&sid, "4hello").await);
    assert_alive(&mut ws, ep.flavor).await;
}

// --- handshake, WebSocket ---

pub async fn ws_opens_a_session(ep: Endpoint) {
    let mut ws = ep
        .ws("EIO=4&transport=websocket")
        .await
        .expect("WebSocket handshake");
    match ws_next(&mut ws).await {
        Some(Packet::Text(open)) => assert_open_packet(&open_json(&open), json!([])),
        other => panic!("expected an open packet, got {other:?}"),
    }
}

/// A WebSocket request the server refuses: no session opens. Either the HTTP
/// upgrade is answered with a 400 (its JSON body carrying `code`), or the socket
/// is closed before any open packet.
fn assert_ws_refused(
    result: Result<Ws, tokio_tungstenite::tungstenite::Error>,
    code: u64,
) -> Option<Ws> {
    match result {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400, "{response:?}");
            if let Some(body) = response.body() {
                let json: serde_json::Value =
                    serde_json::from_slice(body).expect("error body is JSON");
                assert_eq!(json["code"], code, "{json}");
                assert!(json["message"].is_string(), "{json}");
            }
            None
        }
        Err(e) => panic!("expected an HTTP 400 refusal, got {e}"),
        Ok(ws) => Some(ws),
    }
}

async fn assert_ws_query_refused(ep: Endpoint, query: &str, code: u64) {
    if let Some(mut ws) = assert_ws_refused(ep.ws(query).await, code) {
        let before = ws_expect_closed(&mut ws).await;
        assert!(
            before.is_empty(),
            "{query}: a refused socket got {before:?}"
        );
    }
}

pub async fn ws_refuses_an_invalid_eio(ep: Endpoint) {
    assert_ws_query_refused(ep, "transport=websocket", 5).await;
    assert_ws_query_refused(ep, "EIO=abc&transport=websocket", 5).await;
}

pub async fn ws_refuses_an_invalid_transport(ep: Endpoint) {
    assert_ws_query_refused(ep, "EIO=4", 0).await;
    assert_ws_query_refused(ep, "EIO=4&transport=abc", 0).await;
}

// --- heartbeat ---

pub async fn polling_ping_pong(ep: Endpoint) {
    let (sid, _) = ep.open_polling().await;
    let opened = Instant::now();
    join_if_socketio_polling(&ep, &sid).await;
    for i in 0..3 {
        let r = ep.poll(&sid).await;
        assert_eq!((r.status, r.text().as_str()), (200, "2"), "ping {i}: {r:?}");
        if i == 0 {
            // The first ping comes pingInterval after the open packet, not at once.
            assert!(
                opened.elapsed() >= PING_INTERVAL / 2,
                "first ping after {:?}",
                opened.elapsed()
            );
        }
        let r = ep.push(&sid, "3").await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "ok"),
            "pong {i}: {r:?}"
        );
    }
}

pub async fn polling_ping_timeout(ep: Endpoint) {
    let (sid, _) = ep.open_polling().await;
    // No GET and no pong: the ping queued at pingInterval is never answered. The
    // margin covers scheduling only; the close is due at pingInterval + pingTimeout.
    tokio::time::sleep(PING_INTERVAL + PING_TIMEOUT + Duration::from_millis(100)).await;
    let r = ep.poll(&sid).await;
    assert_error_body(&r);
    // The session is gone for good.
    let r = ep.push(&sid, "3").await;
    assert_error_body(&r);
}

pub async fn ws_ping_pong(ep: Endpoint) {
    let mut ws = ep
        .ws("EIO=4&transport=websocket")
        .await
        .expect("WebSocket handshake");
    let opened = Instant::now();
    assert!(matches!(ws_next(&mut ws).await, Some(Packet::Text(t)) if t.starts_with('0')));
    join_if_socketio_ws(&mut ws, ep.flavor).await;
    for i in 0..3 {
        assert_eq!(ws_next(&mut ws).await, Some(Packet::text("2")), "ping {i}");
        if i == 0 {
            assert!(
                opened.elapsed() >= PING_INTERVAL / 2,
                "first ping after {:?}",
                opened.elapsed()
            );
        }
        ws_send(&mut ws, Packet::text("3")).await;
    }
    assert_alive(&mut ws, ep.flavor).await;
}

pub async fn ws_ping_timeout(ep: Endpoint) {
    let mut ws = ep
        .ws("EIO=4&transport=websocket")
        .await
        .expect("WebSocket handshake");
    assert!(matches!(ws_next(&mut ws).await, Some(Packet::Text(t)) if t.starts_with('0')));
    join_if_socketio_ws(&mut ws, ep.flavor).await;
    // Never answer: the server pings, waits pingTimeout, and closes.
    let before = ws_expect_closed(&mut ws).await;
    assert_eq!(before.first(), Some(&Packet::text("2")), "{before:?}");
}

// --- close ---

pub async fn polling_forceful_close(ep: Endpoint) {
    let (sid, _) = ep.open_polling().await;
    let (poll, push) = tokio::join!(ep.poll(&sid), async {
        // Let the GET reach the server first, as a client's pending poll would.
        tokio::time::sleep(Duration::from_millis(20)).await;
        ep.push(&sid, "1").await
    });
    assert_eq!(
        (poll.status, poll.text().as_str()),
        (200, "6"),
        "the pending GET ends with a noop: {poll:?}"
    );
    assert_eq!(push.status, 200, "{push:?}");
    assert_error_body(&ep.poll(&sid).await);
}

pub async fn ws_forceful_close(ep: Endpoint) {
    let mut ws = ep
        .ws("EIO=4&transport=websocket")
        .await
        .expect("WebSocket handshake");
    let sid = match ws_next(&mut ws).await {
        Some(Packet::Text(open)) => open_json(&open)["sid"].as_str().expect("sid").to_owned(),
        other => panic!("expected an open packet, got {other:?}"),
    };
    ws_send(&mut ws, Packet::text("1")).await;
    let before = ws_expect_closed(&mut ws).await;
    assert!(before.is_empty(), "{before:?}");
    // The sid is no longer a session.
    assert_error_body(&ep.poll(&sid).await);
}

// --- upgrade ---

async fn probe_ws(ep: &Endpoint, sid: &str) -> Ws {
    ep.ws(&format!("EIO=4&transport=websocket&sid={sid}"))
        .await
        .expect("upgrade WebSocket handshake")
}

pub async fn upgrade_probe_noop_and_upgrade(ep: Endpoint) {
    let (sid, _) = ep.open_polling().await;
    // A client always has a GET pending while polling.
    let pending = tokio::spawn({
        let sid = sid.clone();
        async move { ep.poll(&sid).await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut ws = probe_ws(&ep, &sid).await;
    ws_send(&mut ws, Packet::text("2probe")).await;
    assert_eq!(ws_next(&mut ws).await, Some(Packet::text("3probe")));
    // The pending GET is released with a noop so the client can pause polling.
    let released = pending.await.expect("GET task");
    assert_eq!(
        (released.status, released.text().as_str()),
        (200, "6"),
        "{released:?}"
    );
    // A GET while probing is answered with a noop at once, too.
    let r = ep.poll(&sid).await;
    assert_eq!((r.status, r.text().as_str()), (200, "6"), "{r:?}");
    ws_send(&mut ws, Packet::text("5")).await;
    assert_alive(&mut ws, ep.flavor).await;
}

/// Sends `2probe` and `5` back to back (not waiting for `3probe`, as the upstream
/// suite does), and waits until the session works over the WebSocket.
async fn upgrade_hastily(ep: &Endpoint, sid: &str) -> Ws {
    let mut ws = probe_ws(ep, sid).await;
    ws_send(&mut ws, Packet::text("2probe")).await;
    ws_send(&mut ws, Packet::text("5")).await;
    assert_eq!(ws_next(&mut ws).await, Some(Packet::text("3probe")));
    assert_alive(&mut ws, ep.flavor).await;
    ws
}

pub async fn upgrade_then_polling_is_refused(ep: Endpoint) {
    let (sid, _) = ep.open_polling().await;
    let mut ws = upgrade_hastily(&ep, &sid).await;
    assert_error_body(&ep.poll(&sid).await);
    assert_error_body(&ep.push(&sid, "4hello").await);
    // Refusing them did not end the session.
    assert_alive(&mut ws, ep.flavor).await;
}

pub async fn upgrade_then_second_ws_is_closed(ep: Endpoint) {
    let (sid, _) = ep.open_polling().await;
    let mut ws = upgrade_hastily(&ep, &sid).await;
    if let Some(mut second) = assert_ws_refused(
        ep.ws(&format!("EIO=4&transport=websocket&sid={sid}")).await,
        1,
    ) {
        ws_send(&mut second, Packet::text("2probe")).await;
        let before = ws_expect_closed(&mut second).await;
        assert!(before.is_empty(), "second WebSocket got {before:?}");
    }
    assert_alive(&mut ws, ep.flavor).await;
}

pub async fn second_probe_while_probing_is_closed(ep: Endpoint) {
    let (sid, _) = ep.open_polling().await;
    let mut ws = probe_ws(&ep, &sid).await;
    ws_send(&mut ws, Packet::text("2probe")).await;
    assert_eq!(ws_next(&mut ws).await, Some(Packet::text("3probe")));
    let mut second = probe_ws(&ep, &sid).await;
    ws_send(&mut second, Packet::text("2probe")).await;
    let before = ws_expect_closed(&mut second).await;
    assert!(before.is_empty(), "second probe got {before:?}");
    // The first probe completes the upgrade.
    ws_send(&mut ws, Packet::text("5")).await;
    assert_alive(&mut ws, ep.flavor).await;
}

pub async fn websocket_session_cannot_be_upgraded(ep: Endpoint) {
    let mut ws = ep
        .ws("EIO=4&transport=websocket")
        .await
        .expect("WebSocket handshake");
    let sid = match ws_next(&mut ws).await {
        Some(Packet::Text(open)) => open_json(&open)["sid"].as_str().expect("sid").to_owned(),
        other => panic!("expected an open packet, got {other:?}"),
    };
    let mut second = probe_ws(&ep, &sid).await;
    ws_send(&mut second, Packet::text("2probe")).await;
    let before = ws_expect_closed(&mut second).await;
    assert!(
        before.is_empty(),
        "probe of a WebSocket session got {before:?}"
    );
    assert_alive(&mut ws, ep.flavor).await;
}
