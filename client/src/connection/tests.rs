//! The page's reactions to a scripted server: frames in, frames, actions and
//! transport requests out, at chosen times.

use super::*;
use protocol::app::{HandshakeInfo, NewsItem};
use protocol::engineio::{self, OpenPacket};
use protocol::socketio::Packet;
use serde_json::json;
use std::time::Duration;

const MS: Duration = Duration::from_millis(1);

// The server's side of the wire is built with the protocol's own encoders, as
// the server does; the expected client frames are the spec's literal strings.
fn open_frame() -> Frame {
    engineio::Packet::Open(OpenPacket {
        sid: "eio".into(),
        upgrades: vec![],
        ping_interval: 300,
        ping_timeout: 200,
        max_payload: 1_000_000,
    })
    .into_frame()
}

fn sio(packet: &Packet) -> Frame {
    engineio::Packet::Message(packet.encode().0).into_frame()
}

fn server_event<E: Event>(payload: &E::Payload) -> Frame {
    sio(&Packet::event(
        "/",
        E::NAME,
        event::encode::<E>(payload).expect("encodes"),
    ))
}

fn text(s: &str) -> Frame {
    Frame::Text(s.to_owned())
}

fn frames(c: &mut Connection) -> Vec<Frame> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}

fn actions(c: &mut Connection) -> Vec<Action> {
    std::iter::from_fn(|| c.poll_action()).collect()
}

fn connected() -> Connection {
    let mut c = Connection::default();
    c.handle_frame(open_frame(), Time::ZERO);
    c.handle_frame(
        sio(&Packet::Connect {
            nsp: "/".into(),
            data: Some(json!({"sid": "sock"})),
        }),
        Time::ZERO,
    );
    frames(&mut c);
    actions(&mut c);
    c
}

#[test]
fn handshake_joins_the_main_namespace() {
    let mut c = Connection::default();
    c.handle_frame(open_frame(), Time::ZERO);
    assert_eq!(frames(&mut c), vec![text("40")]);
    assert!(matches!(&actions(&mut c)[..], [Action::Opened(o)] if o.sid == "eio"));
    c.handle_frame(text(r#"40{"sid":"sock"}"#), MS);
    assert_eq!(
        actions(&mut c),
        vec![Action::Connected { sid: "sock".into() }]
    );
}

#[test]
fn news_is_shown_and_answered_like_the_tutorial() {
    let mut c = connected();
    c.handle_frame(text(r#"42["news",{"hello":"world"}]"#), 5 * MS);
    assert_eq!(
        frames(&mut c),
        vec![text(r#"42["my other event",{"my":"data"}]"#)]
    );
    assert_eq!(
        actions(&mut c),
        vec![
            Action::Logged {
                dir: Dir::In,
                event: "news".into(),
                args: vec![json!({"hello": "world"})],
                at: 5 * MS,
            },
            Action::News {
                item: NewsItem {
                    hello: "world".into(),
                    from: None,
                    channel: None,
                },
                at: 5 * MS,
            },
            Action::Logged {
                dir: Dir::Out,
                event: "my other event".into(),
                args: vec![json!({"my": "data"})],
                at: 5 * MS,
            },
        ]
    );
}

#[test]
fn handshake_event_is_decoded() {
    let info = HandshakeInfo {
        request: "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1".into(),
        upgrade: "websocket".into(),
        connection: "Upgrade".into(),
        sec_websocket_version: "13".into(),
        sec_websocket_key: "dGhlIHNhbXBsZSBub25jZQ==".into(),
        sec_websocket_accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into(),
        status: "101 Switching Protocols".into(),
        sid: "eio".into(),
        ping_interval: 300,
        ping_timeout: 200,
    };
    let mut c = connected();
    c.handle_frame(server_event::<Handshake>(&info), MS);
    let acts = actions(&mut c);
    assert!(matches!(&acts[0], Action::Logged { event, .. } if event == "handshake"));
    assert_eq!(acts[1], Action::Handshake(info));
    assert!(frames(&mut c).is_empty());
}

#[test]
fn custom_event_with_ack() {
    let mut c = connected();
    c.handle_command(
        Command::Emit {
            event: "hi".into(),
            args: vec![json!({"n": 42})],
            ack: true,
        },
        10 * MS,
    );
    assert_eq!(frames(&mut c), vec![text(r#"420["hi",{"n":42}]"#)]);
    assert_eq!(
        actions(&mut c)[1],
        Action::AckPending {
            id: 0,
            event: "hi".into(),
            at: 10 * MS
        }
    );
    c.handle_frame(text(r#"430[{"n":42}]"#), 13 * MS);
    assert_eq!(
        actions(&mut c),
        vec![Action::AckReceived {
            id: 0,
            args: vec![json!({"n": 42})],
            at: 13 * MS
        }]
    );
}

#[test]
fn publish_uses_the_typed_event() {
    let mut c = connected();
    c.handle_command(
        Command::Publish(Publish {
            text: "extra".into(),
            channel: None,
        }),
        MS,
    );
    assert_eq!(
        frames(&mut c),
        vec![text(r#"42["publish",{"text":"extra"}]"#)]
    );
}

#[test]
fn server_ack_requests_are_answered() {
    let mut c = connected();
    c.handle_frame(text(r#"427["question"]"#), MS);
    assert_eq!(frames(&mut c), vec![text("437[]")]);
}

#[test]
fn emits_after_close_are_refused() {
    let mut c = connected();
    c.transport_closed("reset".into(), MS);
    assert!(c.is_closed());
    assert_eq!(
        actions(&mut c),
        vec![Action::Closed {
            reason: "the transport failed: reset".into()
        }]
    );
    c.handle_command(
        Command::Emit {
            event: "x".into(),
            args: vec![],
            ack: false,
        },
        MS,
    );
    assert!(matches!(
        &actions(&mut c)[..],
        [Action::EmitRefused { event, .. }] if event == "x"
    ));
}

#[test]
fn disconnect_says_goodbye() {
    let mut c = connected();
    c.handle_command(Command::Disconnect, MS);
    assert_eq!(frames(&mut c), vec![text("41"), text("1")]);
    assert!(c.is_closed());
    assert_eq!(
        actions(&mut c),
        vec![Action::Closed {
            reason: "closed locally".into()
        }]
    );
}

#[test]
fn removed_from_namespace_closes_the_session() {
    let mut c = connected();
    c.handle_frame(text("41"), MS);
    assert_eq!(frames(&mut c), vec![text("1")]);
    assert!(c.is_closed());
    assert_eq!(actions(&mut c)[0], Action::NamespaceLeft);
}

#[test]
fn silent_server_times_out() {
    let mut c = connected();
    assert_eq!(c.poll_timeout(), Some(500 * MS));
    c.handle_timeout(500 * MS);
    assert!(c.is_closed());
    assert!(
        matches!(&actions(&mut c)[..], [Action::Closed { reason }] if reason.contains("pingInterval"))
    );
}

// --- the page's configuration: reconnection, recovery, channels, token ---

/// An open packet whose heartbeat window (300 + 200 ms) is easy to reason about.
const OPEN: &str =
    r#"0{"sid":"eio","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#;

#[test]
fn the_page_reconnects_like_socket_io() {
    let config = page_config(None, 7);
    assert_eq!(config.reconnection, Some(Backoff::default()));
    assert_eq!(config.seed, 7);
    assert_eq!(config.auth, None);
    assert_eq!(config.max_buffered, MAX_BUFFERED);
}

fn page(token: Option<&str>, channels: &[&str]) -> Connection {
    Connection::new(
        page_config(token, 42),
        channels.iter().map(|c| (*c).to_owned()).collect(),
    )
}

fn requests(c: &mut Connection) -> Vec<TransportRequest> {
    std::iter::from_fn(|| c.poll_transport()).collect()
}

/// Loses the transport at `at`; returns when attempt 1 is due.
fn lose(c: &mut Connection, at: Time) -> Time {
    c.transport_closed("reset".into(), at);
    assert_eq!(requests(c), vec![TransportRequest::Close]);
    let acts = actions(c);
    let [
        Action::Reconnecting {
            attempt: 1,
            due,
            reason,
        },
    ] = &acts[..]
    else {
        panic!("{acts:?}");
    };
    assert_eq!(reason, "the transport failed: reset");
    // Socket.IO's first delay: 1 s ± 50%.
    assert!(*due >= at + 500 * MS && *due <= at + 1500 * MS, "{due:?}");
    assert_eq!(c.poll_timeout(), Some(*due));
    *due
}

/// A page connected with recovery: pid `p1`, and a channel news item at offset 3.
fn recovering_page() -> Connection {
    let mut c = page(None, &[]);
    c.handle_frame(text(OPEN), Time::ZERO);
    assert_eq!(frames(&mut c), vec![text("40")]);
    c.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), Time::ZERO);
    c.handle_frame(
        text(r#"42["news",{"hello":"goal","channel":"sports"},"3"]"#),
        MS,
    );
    frames(&mut c);
    actions(&mut c);
    c
}

#[test]
fn a_lost_transport_reconnects_on_a_new_one_and_recovers() {
    let mut c = recovering_page();
    let due = lose(&mut c, 10 * MS);
    c.handle_timeout(due - MS);
    assert!(requests(&mut c).is_empty());
    c.handle_timeout(due);
    assert_eq!(requests(&mut c), vec![TransportRequest::Open]);
    assert_eq!(
        actions(&mut c),
        vec![Action::ReconnectAttempt { attempt: 1 }]
    );

    // The new transport's open packet is answered with the recovery credentials.
    c.handle_frame(text(OPEN), due);
    assert_eq!(frames(&mut c), vec![text(r#"40{"pid":"p1","offset":"3"}"#)]);
    c.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), due);
    // The missed item is replayed after the CONNECT answer.
    c.handle_frame(
        text(r#"42["news",{"hello":"missed","channel":"sports"},"4"]"#),
        due,
    );
    let acts = actions(&mut c);
    assert!(matches!(&acts[0], Action::Opened(_)), "{acts:?}");
    assert_eq!(
        acts[1],
        Action::Reconnected {
            sid: "a".into(),
            recovered: true
        }
    );
    assert!(acts.contains(&Action::News {
        item: NewsItem {
            hello: "missed".into(),
            from: None,
            channel: Some("sports".into()),
        },
        at: due,
    }));
    // Recovered: the server kept our rooms, nothing is re-joined.
    assert_eq!(
        frames(&mut c),
        vec![text(r#"42["my other event",{"my":"data"}]"#)]
    );
}

#[test]
fn the_log_leaves_out_recovery_offsets() {
    let mut c = page(None, &[]);
    c.handle_frame(text(OPEN), Time::ZERO);
    c.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), Time::ZERO);
    actions(&mut c);
    c.handle_frame(text(r#"42["news",{"hello":"x"},"7"]"#), MS);
    let acts = actions(&mut c);
    assert!(
        matches!(&acts[0], Action::Logged { event, args, .. }
            if event == "news" && *args == vec![json!({"hello": "x"})]),
        "{acts:?}"
    );
    // Every event without an ack carries one; none is shown.
    c.handle_frame(text(r#"42["echo","a","b","8"]"#), MS);
    assert!(matches!(
        &actions(&mut c)[0],
        Action::Logged { args, .. } if *args == vec![json!("a"), json!("b")]
    ));
}

#[test]
fn failed_attempts_back_off() {
    let mut c = recovering_page();
    let due = lose(&mut c, Time::ZERO);
    c.handle_timeout(due);
    assert_eq!(requests(&mut c), vec![TransportRequest::Open]);
    actions(&mut c);
    // The server is still down: the new WebSocket fails before its open packet.
    c.transport_closed("the WebSocket closed with code 1006".into(), due + MS);
    assert_eq!(requests(&mut c), vec![TransportRequest::Close]);
    let acts = actions(&mut c);
    assert!(
        matches!(&acts[..], [Action::Reconnecting { attempt: 2, due: next, reason }]
            if *next >= due + 1000 * MS && *next <= due + 3001 * MS
                && reason.contains("1006")),
        "{acts:?}"
    );
}

#[test]
fn a_new_server_session_gets_the_channels_again() {
    let mut c = page(None, &[]);
    c.handle_frame(text(OPEN), Time::ZERO);
    c.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), Time::ZERO);
    frames(&mut c);
    c.handle_command(Command::Join(" sports ".into()), MS);
    assert_eq!(
        frames(&mut c),
        vec![text(r#"420["join",{"channel":"sports"}]"#)]
    );
    c.handle_frame(text(r#"430[{"channels":["sports"]}]"#), 2 * MS);
    assert!(actions(&mut c).contains(&Action::Channels {
        channels: vec!["sports".into()],
        error: None
    }));

    // No broadcast received, so no offset: the pid alone (a duplex server
    // resumes from where the socket joined; this one starts afresh).
    let due = lose(&mut c, 3 * MS);
    c.handle_timeout(due);
    c.handle_frame(text(OPEN), due);
    assert_eq!(frames(&mut c), vec![text(r#"40{"pid":"p1"}"#)]);
    c.handle_frame(text(r#"40{"sid":"b","pid":"p2"}"#), due);
    assert!(actions(&mut c).contains(&Action::Reconnected {
        sid: "b".into(),
        recovered: false
    }));
    assert_eq!(
        frames(&mut c),
        vec![text(r#"421["join",{"channel":"sports"}]"#)]
    );
    c.handle_frame(text(r#"431[{"channels":["sports"]}]"#), due);
    assert!(actions(&mut c).contains(&Action::Channels {
        channels: vec!["sports".into()],
        error: None
    }));
}

#[test]
fn reconnect_by_hand_joins_the_page_channels() {
    let mut c = page(None, &["sports", "weather"]);
    c.handle_frame(text(OPEN), Time::ZERO);
    c.handle_frame(text(r#"40{"sid":"a"}"#), Time::ZERO);
    assert_eq!(
        frames(&mut c),
        vec![
            text("40"),
            text(r#"420["join",{"channel":"sports"}]"#),
            text(r#"421["join",{"channel":"weather"}]"#),
        ]
    );
    // A first connect is not a reconnect: nothing for `#recovery`.
    assert!(actions(&mut c).contains(&Action::Connected { sid: "a".into() }));
}

#[test]
fn channel_answers_and_errors() {
    let mut c = page(None, &[]);
    c.handle_frame(text(OPEN), Time::ZERO);
    c.handle_frame(text(r#"40{"sid":"a"}"#), Time::ZERO);
    frames(&mut c);
    actions(&mut c);
    c.handle_command(Command::Join("   ".into()), MS);
    assert!(frames(&mut c).is_empty());
    assert!(matches!(
        &actions(&mut c)[..],
        [Action::ChannelError { message }] if message.contains("invalid channel name")
    ));
    c.handle_command(Command::Leave("news".into()), MS);
    assert_eq!(
        frames(&mut c),
        vec![text(r#"420["leave",{"channel":"news"}]"#)]
    );
    c.handle_frame(text(r#"430[{"channels":[],"error":"not allowed"}]"#), MS);
    assert!(actions(&mut c).contains(&Action::Channels {
        channels: vec![],
        error: Some("not allowed".into())
    }));
    // A channel request's ack is not the custom event form's ack.
    c.handle_command(Command::Join("late".into()), MS);
    actions(&mut c);
    // A ping keeps the server alive past the ack's 10 s.
    c.handle_frame(text("2"), 9_800 * MS);
    c.handle_timeout(10_001 * MS);
    let acts = actions(&mut c);
    assert!(
        matches!(&acts[..], [Action::ChannelError { message }] if message.contains("\"late\"")),
        "{acts:?}"
    );
}

#[test]
fn emits_while_away_wait_for_the_next_transport() {
    let mut c = recovering_page();
    let due = lose(&mut c, Time::ZERO);
    c.handle_command(
        Command::Publish(Publish {
            text: "later".into(),
            channel: Some("sports".into()),
        }),
        MS,
    );
    assert!(frames(&mut c).is_empty());
    assert!(matches!(&actions(&mut c)[..], [Action::Logged { event, .. }] if event == "publish"));
    c.handle_timeout(due);
    c.handle_frame(text(OPEN), due);
    c.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), due);
    assert_eq!(
        frames(&mut c),
        vec![
            text(r#"40{"pid":"p1","offset":"3"}"#),
            text(r#"42["publish",{"text":"later","channel":"sports"}]"#),
        ]
    );
}

#[test]
fn a_full_buffer_refuses_with_a_clear_error() {
    let mut c = recovering_page();
    lose(&mut c, Time::ZERO);
    for i in 0..MAX_BUFFERED {
        c.handle_command(
            Command::Emit {
                event: format!("e{i}"),
                args: vec![],
                ack: false,
            },
            MS,
        );
    }
    actions(&mut c);
    c.handle_command(
        Command::Emit {
            event: "one too many".into(),
            args: vec![],
            ack: false,
        },
        MS,
    );
    let acts = actions(&mut c);
    let [Action::EmitRefused { event, reason }] = &acts[..] else {
        panic!("{acts:?}");
    };
    assert_eq!(event, "one too many");
    assert_eq!(
        reason,
        "100 emits already wait for the connection; emit refused"
    );
}

#[test]
fn an_ack_that_cannot_complete_times_out() {
    let mut c = recovering_page();
    c.handle_command(
        Command::Emit {
            event: "q".into(),
            args: vec![],
            ack: true,
        },
        MS,
    );
    assert_eq!(frames(&mut c), vec![text(r#"420["q"]"#)]);
    actions(&mut c);
    // The transport goes before the answer comes; the server never comes back.
    let mut at = 2 * MS;
    lose(&mut c, at);
    while !actions(&mut c).contains(&Action::AckTimedOut { id: 0 }) {
        at = c.poll_timeout().expect("still trying");
        assert!(at <= 10_001 * MS, "no ack timeout by {at:?}");
        c.handle_timeout(at);
        if requests(&mut c).contains(&TransportRequest::Open) {
            c.transport_closed("refused".into(), at);
        }
    }
    assert!(!c.is_closed());
}

#[test]
fn disconnect_cancels_reconnection() {
    let mut c = recovering_page();
    lose(&mut c, Time::ZERO);
    c.handle_command(Command::Disconnect, MS);
    assert!(c.is_closed());
    assert_eq!(c.poll_timeout(), None);
    assert!(frames(&mut c).is_empty());
    assert!(requests(&mut c).is_empty());
    assert_eq!(
        actions(&mut c),
        vec![Action::Closed {
            reason: "closed locally".into()
        }]
    );
}

#[test]
fn back_online_skips_the_rest_of_the_backoff() {
    let mut c = recovering_page();
    lose(&mut c, Time::ZERO);
    c.handle_command(Command::RetryNow, 100 * MS);
    assert_eq!(requests(&mut c), vec![TransportRequest::Open]);
    // While connected it does nothing.
    let mut c = recovering_page();
    c.handle_command(Command::RetryNow, MS);
    assert!(requests(&mut c).is_empty());
    assert!(actions(&mut c).is_empty());
}

#[test]
fn a_silent_server_is_a_lost_transport() {
    let mut c = recovering_page();
    c.handle_timeout(500 * MS);
    assert_eq!(requests(&mut c), vec![TransportRequest::Close]);
    assert!(matches!(
        &actions(&mut c)[..],
        [Action::Reconnecting { attempt: 1, reason, .. }] if reason.contains("pingInterval")
    ));
}

#[test]
fn the_token_is_the_connect_auth_and_a_refusal_is_final() {
    let mut c = page(Some("s3cret"), &[]);
    c.handle_frame(text(OPEN), Time::ZERO);
    assert_eq!(frames(&mut c), vec![text(r#"40{"token":"s3cret"}"#)]);
    c.handle_frame(
        text(r#"44{"message":"invalid token: the server was started with a different --token"}"#),
        MS,
    );
    // Not retried: the Engine.IO session is closed, no transport is asked for.
    assert_eq!(frames(&mut c), vec![text("1")]);
    assert!(c.is_closed());
    assert!(requests(&mut c).is_empty());
    assert_eq!(
        actions(&mut c)[1..],
        [
            Action::ConnectRefused {
                message: "invalid token: the server was started with a different --token".into()
            },
            Action::Closed {
                reason: "closed locally".into()
            }
        ]
    );
}

#[test]
fn the_token_travels_with_the_recovery_credentials() {
    let mut c = page(Some("s3cret"), &[]);
    c.handle_frame(text(OPEN), Time::ZERO);
    c.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), Time::ZERO);
    c.handle_frame(text(r#"42["news",{"hello":"x"},"9"]"#), MS);
    frames(&mut c);
    actions(&mut c);
    let due = lose(&mut c, MS);
    c.handle_timeout(due);
    c.handle_frame(text(OPEN), due);
    assert_eq!(
        frames(&mut c),
        vec![text(r#"40{"token":"s3cret","pid":"p1","offset":"9"}"#)]
    );
}

#[test]
fn garbage_closes_with_a_protocol_error() {
    let mut c = connected();
    c.handle_frame(text("4zzz"), MS);
    assert!(c.is_closed());
    assert!(
        matches!(&actions(&mut c)[..], [Action::Closed { reason }] if reason.starts_with("protocol error"))
    );
}
