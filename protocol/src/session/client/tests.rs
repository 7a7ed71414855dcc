use super::*;
use crate::app::{MyData, MyOtherEvent};
use serde_json::json;

const MS: Duration = Duration::from_millis(1);
const OPEN: &str =
    r#"0{"sid":"s1","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#;

fn text(s: &str) -> Frame {
    Frame::Text(s.to_owned())
}

fn drain(s: &mut ClientSession) -> Vec<Frame> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn events(s: &mut ClientSession) -> Vec<ClientEvent> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn connected() -> ClientSession {
    let mut s = ClientSession::new(ClientConfig::default());
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    s.handle_frame(text(r#"40{"sid":"sock"}"#), Time::ZERO)
        .expect("valid");
    drain(&mut s);
    events(&mut s);
    s
}

#[test]
fn handshake_sends_connect_with_auth() {
    let mut s = ClientSession::new(ClientConfig {
        auth: Some(json!({"token": "123"})),
        ..ClientConfig::default()
    });
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    assert_eq!(drain(&mut s), vec![text(r#"40{"token":"123"}"#)]);
    assert!(matches!(&events(&mut s)[..], [ClientEvent::Open(o)] if o.sid == "s1"));
    s.handle_frame(text(r#"40{"sid":"abc"}"#), MS)
        .expect("valid");
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::Connected {
            sid: "abc".into(),
            recovered: false
        }]
    );
    assert_eq!(s.state(), &ClientState::Connected { sid: "abc".into() });
}

#[test]
fn custom_namespace() {
    let mut s = ClientSession::new(ClientConfig {
        namespace: "/admin".into(),
        ..ClientConfig::default()
    });
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    assert_eq!(drain(&mut s), vec![text("40/admin,")]);
    s.handle_frame(text(r#"44/admin,{"message":"nope"}"#), MS)
        .expect("valid");
    assert!(matches!(
        &events(&mut s)[..],
        [ClientEvent::Open(_), ClientEvent::ConnectError { message, .. }] if message == "nope"
    ));
}

#[test]
fn answers_pings_and_detects_silent_server() {
    let mut s = connected();
    assert_eq!(s.poll_timeout(), Some(500 * MS));
    s.handle_frame(text("2"), 300 * MS).expect("valid");
    assert_eq!(drain(&mut s), vec![text("3")]);
    assert_eq!(s.poll_timeout(), Some(800 * MS));
    s.handle_timeout(799 * MS);
    assert!(s.is_connected());
    s.handle_timeout(800 * MS);
    assert_eq!(s.state(), &ClientState::Closed);
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::Closed(CloseReason::ServerSilent)]
    );
}

#[test]
fn emits_before_connect_are_buffered_in_order() {
    let mut s = ClientSession::new(ClientConfig {
        max_buffered: 2,
        ..ClientConfig::default()
    });
    s.emit("a", vec![]).expect("buffered");
    s.emit_event::<MyOtherEvent>(&MyData { my: "data".into() })
        .expect("buffered");
    assert!(matches!(s.emit("c", vec![]), Err(EmitError::BufferFull(2))));
    assert!(drain(&mut s).is_empty());
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    assert_eq!(drain(&mut s), vec![text("40")]);
    s.handle_frame(text(r#"40{"sid":"x"}"#), MS).expect("valid");
    assert_eq!(
        drain(&mut s),
        vec![
            text(r#"42["a"]"#),
            text(r#"42["my other event",{"my":"data"}]"#)
        ]
    );
}

#[test]
fn acks_match_their_caller_or_time_out() {
    let mut s = connected();
    let a = s
        .emit_with_ack("q", vec![json!(1)], Time::ZERO)
        .expect("sent");
    let b = s.emit_with_ack("q", vec![json!(2)], 5 * MS).expect("sent");
    assert_eq!(
        drain(&mut s),
        vec![text(r#"420["q",1]"#), text(r#"421["q",2]"#)]
    );
    s.handle_frame(text(r#"431["two"]"#), 10 * MS)
        .expect("valid");
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::Ack {
            id: b,
            args: vec![json!("two")],
            attachments: vec![]
        }]
    );
    // Keep the server alive past the ack timeout.
    s.handle_frame(text("2"), 9_000 * MS).expect("valid");
    s.handle_timeout(10_000 * MS);
    assert!(events(&mut s).contains(&ClientEvent::AckTimeout { id: a }));
}

#[test]
fn close_fails_pending_acks() {
    let mut s = connected();
    let a = s.emit_with_ack("q", vec![], Time::ZERO).expect("sent");
    s.transport_closed(CloseReason::Transport("reset".into()), MS);
    assert_eq!(
        events(&mut s),
        vec![
            ClientEvent::AckTimeout { id: a },
            ClientEvent::Closed(CloseReason::Transport("reset".into()))
        ]
    );
    assert!(matches!(s.emit("x", vec![]), Err(EmitError::Closed)));
}

#[test]
fn server_events_and_ack_requests() {
    let mut s = connected();
    s.handle_frame(text(r#"42["news",{"hello":"world"}]"#), MS)
        .expect("valid");
    s.handle_frame(text(r#"427["question"]"#), MS)
        .expect("valid");
    let evs = events(&mut s);
    assert_eq!(
        evs[0],
        ClientEvent::Event {
            id: None,
            name: "news".into(),
            args: vec![json!({"hello": "world"})],
            attachments: vec![]
        }
    );
    assert!(matches!(&evs[1], ClientEvent::Event { id: Some(7), .. }));
    s.ack(7, vec![json!("answer")]).expect("sent");
    assert_eq!(drain(&mut s), vec![text(r#"437["answer"]"#)]);
}

#[test]
fn disconnect_sends_namespace_disconnect_and_close() {
    let mut s = connected();
    s.disconnect();
    assert_eq!(drain(&mut s), vec![text("41"), text("1")]);
    assert_eq!(s.state(), &ClientState::Closed);
}

#[test]
fn polling_payloads_feed_the_same_session() {
    let mut s = ClientSession::new(ClientConfig::default());
    let body = format!("{OPEN}\x1e40{{\"sid\":\"x\"}}\x1e42[\"news\",1]");
    for frame in crate::engineio::payload_to_frames(&body).expect("valid payload") {
        s.handle_frame(frame, Time::ZERO).expect("valid");
    }
    assert!(s.is_connected());
}

fn reconnecting(seed: u64) -> ClientSession {
    ClientSession::new(ClientConfig {
        reconnection: Some(Backoff::default()),
        seed,
        ..ClientConfig::default()
    })
}

#[test]
fn reconnects_with_backoff_then_recovers() {
    let mut s = reconnecting(7);
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    s.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), MS)
        .expect("valid");
    s.handle_frame(text(r#"42["news",{"n":1},"17"]"#), MS)
        .expect("valid");
    assert_eq!(s.last_offset(), Some("17"));
    drain(&mut s);
    events(&mut s);

    s.transport_closed(CloseReason::Transport("reset".into()), 10 * MS);
    let evs = events(&mut s);
    let ClientEvent::Reconnecting { attempt: 0, delay } = evs[1] else {
        panic!("{evs:?}");
    };
    assert!(delay >= 500 * MS && delay <= 1500 * MS, "{delay:?}");
    assert_eq!(s.poll_timeout(), Some(10 * MS + delay));
    // Emits while away are buffered.
    s.emit("queued", vec![]).expect("buffered");
    s.handle_timeout(10 * MS + delay - MS);
    assert!(events(&mut s).is_empty());
    s.handle_timeout(10 * MS + delay);
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::OpenTransport { attempt: 0 }]
    );

    // The new transport fails too: attempt 1, about twice as long.
    s.transport_closed(CloseReason::Transport("refused".into()), 2000 * MS);
    let evs = events(&mut s);
    assert!(
        matches!(evs[1], ClientEvent::Reconnecting { attempt: 1, delay }
        if delay >= 1000 * MS && delay <= 3000 * MS),
        "{evs:?}"
    );
    let due = s.poll_timeout().expect("scheduled");
    s.handle_timeout(due);
    events(&mut s);

    // This one works: CONNECT carries pid and offset, the server recovers.
    s.handle_frame(text(OPEN), due).expect("valid");
    assert_eq!(drain(&mut s), vec![text(r#"40{"pid":"p1","offset":"17"}"#)]);
    s.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), due)
        .expect("valid");
    assert!(events(&mut s).contains(&ClientEvent::Connected {
        sid: "a".into(),
        recovered: true
    }));
    assert_eq!(drain(&mut s), vec![text(r#"42["queued"]"#)]);
    // Backoff starts over after a success.
    s.transport_closed(CloseReason::PeerClosed, due + MS);
    assert!(
        events(&mut s)
            .iter()
            .any(|e| matches!(e, ClientEvent::Reconnecting { attempt: 0, .. }))
    );
}

#[test]
fn recovery_offsets_are_taken_off_the_arguments() {
    let mut s = connected();
    // No pid: a trailing string is data.
    s.handle_frame(text(r#"42["x",1,"two"]"#), MS)
        .expect("valid");
    assert!(matches!(&events(&mut s)[..], [ClientEvent::Event { args, .. }] if args.len() == 2));
    let mut s = reconnecting(1);
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    s.handle_frame(text(r#"40{"sid":"a","pid":"p"}"#), MS)
        .expect("valid");
    events(&mut s);
    s.handle_frame(text(r#"42["x",1,"two","7"]"#), MS)
        .expect("valid");
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::Event {
            id: None,
            name: "x".into(),
            args: vec![json!(1), json!("two")],
            attachments: vec![]
        }]
    );
    assert_eq!(s.last_offset(), Some("7"));
    // An event asking for an ack carries no offset.
    s.handle_frame(text(r#"429["q","keep"]"#), MS)
        .expect("valid");
    assert!(
        matches!(&events(&mut s)[..], [ClientEvent::Event { args, .. }] if args == &vec![json!("keep")])
    );
    assert_eq!(s.last_offset(), Some("7"));
}

#[test]
fn an_event_replayed_after_it_came_live_is_handed_on_once() {
    let mut s = reconnecting(1);
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    s.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), MS)
        .expect("valid");
    events(&mut s);
    for frame in [
        r#"42["x",1,"a7"]"#,
        r#"42["x",2,"b9"]"#,
        r#"42["x",1,"a7"]"#,
    ] {
        s.handle_frame(text(frame), MS).expect("valid");
    }
    let got: Vec<ClientEvent> = events(&mut s);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(s.repeats_dropped(), 1);
    assert_eq!(s.last_offset(), Some("b9"));
    // Without a pid the last string is data, and nothing is dropped.
    let mut plain = reconnecting(1);
    plain.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    plain
        .handle_frame(text(r#"40{"sid":"a"}"#), MS)
        .expect("valid");
    events(&mut plain);
    for _ in 0..2 {
        plain
            .handle_frame(text(r#"42["x","same"]"#), MS)
            .expect("valid");
    }
    assert_eq!(events(&mut plain).len(), 2);
}

#[test]
fn a_session_that_got_no_event_presents_its_pid_alone() {
    let mut s = reconnecting(1);
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    s.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), MS)
        .expect("valid");
    drain(&mut s);
    s.transport_closed(CloseReason::PeerClosed, MS);
    let due = s.poll_timeout().expect("scheduled");
    s.handle_timeout(due);
    s.handle_frame(text(OPEN), due).expect("valid");
    assert_eq!(drain(&mut s), vec![text(r#"40{"pid":"p1"}"#)]);
}

#[test]
fn a_fresh_session_after_reconnect_is_reported() {
    let mut s = reconnecting(1);
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    s.handle_frame(text(r#"40{"sid":"a","pid":"p1"}"#), MS)
        .expect("valid");
    s.handle_frame(text(r#"42["x","5"]"#), MS).expect("valid");
    s.transport_closed(CloseReason::PeerClosed, MS);
    let due = s.poll_timeout().expect("scheduled");
    s.handle_timeout(due);
    s.handle_frame(text(OPEN), due).expect("valid");
    s.handle_frame(text(r#"40{"sid":"b","pid":"p2"}"#), due)
        .expect("valid");
    assert!(events(&mut s).contains(&ClientEvent::Connected {
        sid: "b".into(),
        recovered: false
    }));
    assert_eq!(s.last_offset(), None);
}

#[test]
fn jitter_spreads_clients_dropped_together() {
    let delays: Vec<Duration> = (0..200u64)
        .map(|seed| {
            let mut s = reconnecting(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
            s.transport_closed(CloseReason::PeerClosed, Time::ZERO);
            s.poll_timeout().expect("scheduled")
        })
        .collect();
    let min = delays.iter().min().expect("some");
    let max = delays.iter().max().expect("some");
    assert!(*max - *min > 500 * MS, "{min:?}..{max:?}");
}

#[test]
fn reconnect_now_skips_the_delay_but_not_ack_deadlines() {
    let mut s = reconnecting(5);
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    s.handle_frame(text(r#"40{"sid":"a"}"#), Time::ZERO)
        .expect("valid");
    let id = s.emit_with_ack("q", vec![], Time::ZERO).expect("sent");
    s.transport_closed(CloseReason::PeerClosed, MS);
    events(&mut s);
    s.reconnect_now();
    assert_eq!(
        events(&mut s),
        vec![ClientEvent::OpenTransport { attempt: 0 }]
    );
    // The ack still has its full 10 s.
    assert_eq!(s.poll_timeout(), Some(Time::from_secs(10)));
    s.handle_timeout(Time::from_secs(10));
    assert_eq!(events(&mut s), vec![ClientEvent::AckTimeout { id }]);
}

#[test]
fn explicit_disconnect_cancels_reconnection() {
    let mut s = reconnecting(3);
    s.handle_frame(text(OPEN), Time::ZERO).expect("valid");
    s.transport_closed(CloseReason::PeerClosed, MS);
    s.disconnect();
    assert_eq!(s.state(), &ClientState::Closed);
    assert_eq!(s.poll_timeout(), None);
    assert!(matches!(s.emit("x", vec![]), Err(EmitError::Closed)));
}

#[test]
fn attempts_run_out() {
    let mut s = ClientSession::new(ClientConfig {
        reconnection: Some(Backoff {
            max_attempts: Some(1),
            ..Backoff::default()
        }),
        ..ClientConfig::default()
    });
    s.transport_closed(CloseReason::Transport("refused".into()), MS);
    let due = s.poll_timeout().expect("one attempt");
    s.handle_timeout(due);
    s.transport_closed(CloseReason::Transport("refused".into()), due);
    assert_eq!(s.state(), &ClientState::Closed);
}

#[test]
fn binary_emits_and_acks() {
    let mut s = connected();
    let id = s
        .emit_binary(
            "file",
            vec![socketio::placeholder(0)],
            vec![vec![1, 2]],
            Some(MS),
        )
        .expect("sent");
    assert_eq!(id, Some(0));
    assert_eq!(
        drain(&mut s),
        vec![
            text(r#"451-0["file",{"_placeholder":true,"num":0}]"#),
            Frame::Binary(vec![1, 2])
        ]
    );
    s.ack_with_attachments(3, vec![socketio::placeholder(0)], vec![vec![9]])
        .expect("sent");
    assert_eq!(
        drain(&mut s),
        vec![
            text(r#"461-3[{"_placeholder":true,"num":0}]"#),
            Frame::Binary(vec![9])
        ]
    );
}

#[test]
fn garbage_from_server_closes() {
    let mut s = connected();
    assert!(s.handle_frame(text("4zzz"), MS).is_err());
    assert_eq!(s.state(), &ClientState::Closed);
}
