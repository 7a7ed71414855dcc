//! The slices' transitions, through [`PageState::apply`] as the page applies
//! them.

use std::time::Duration;

use protocol::Time;
use protocol::app::{HandshakeInfo, NewsItem};
use protocol::engineio::OpenPacket;
use protocol::session::Transport;
use serde_json::json;

use super::connection::{Recovery, Status, transport_label};
use super::feed::{MAX_LOG_ENTRIES, MAX_NEWS_ITEMS};
use super::*;

const MS: Duration = Duration::from_millis(1);

fn open() -> OpenPacket {
    OpenPacket {
        sid: "eio1".into(),
        upgrades: vec![],
        ping_interval: 25000,
        ping_timeout: 20000,
        max_payload: 1_000_000,
    }
}

fn run(actions: impl IntoIterator<Item = Action>) -> PageState {
    let mut state = PageState::default();
    for action in actions {
        state.apply(action);
    }
    state
}

#[test]
fn connection_lifecycle() {
    let mut s = run([Action::Connecting {
        url: "ws://h/socket.io/?EIO=4&transport=websocket".into(),
    }]);
    assert_eq!(s.connection.status.label(), "connecting");
    assert!(s.connection.detail.contains("ws://h/"));
    s.apply(Action::Opened(open()));
    assert_eq!(s.connection.status, Status::Connecting);
    assert_eq!(
        s.connection.link.open.as_ref().map(|o| o.sid.as_str()),
        Some("eio1")
    );
    s.apply(Action::Connected { sid: "sock".into() });
    assert_eq!(s.connection.status.label(), "connected");
    assert_eq!(s.connection.socket_id.as_deref(), Some("sock"));
    s.apply(Action::Closed {
        reason: "the peer closed the session".into(),
    });
    assert_eq!(s.connection.status.label(), "disconnected");
    assert_eq!(s.connection.detail, "the peer closed the session");
    assert_eq!(s.connection.socket_id, None);
}

#[test]
fn first_close_reason_wins() {
    let s = run([
        Action::Connected { sid: "a".into() },
        Action::NamespaceLeft,
        Action::Closed {
            reason: "closed locally".into(),
        },
    ]);
    assert_eq!(s.connection.status, Status::Disconnected);
    assert!(
        s.connection.detail.contains("server disconnected"),
        "{}",
        s.connection.detail
    );
}

#[test]
fn reconnect_resets_the_session_but_keeps_history() {
    let s = run([
        Action::Opened(open()),
        Action::News {
            item: NewsItem {
                hello: "world".into(),
                from: None,
                channel: None,
            },
            at: MS,
        },
        Action::AckPending {
            id: 0,
            event: "q".into(),
            at: MS,
        },
        Action::Closed { reason: "x".into() },
        Action::Connecting {
            url: "ws://h".into(),
        },
    ]);
    assert_eq!(s.connection.status, Status::Connecting);
    assert_eq!(s.connection.link.open, None);
    assert_eq!(s.news.entries().len(), 1);
    assert_eq!(s.acks.pending(), 0);
    assert_eq!(s.acks.last, None);
}

#[test]
fn log_payload_is_compact_json() {
    let s = run([
        Action::Logged {
            dir: Dir::In,
            event: "news".into(),
            args: vec![json!({"hello": "world"})],
            at: MS,
        },
        Action::Logged {
            dir: Dir::Out,
            event: "two".into(),
            args: vec![json!(1), json!("b")],
            at: MS,
        },
        Action::Logged {
            dir: Dir::Out,
            event: "none".into(),
            args: vec![],
            at: MS,
        },
    ]);
    let payloads: Vec<_> = s.log.entries().iter().map(|e| e.payload.as_str()).collect();
    assert_eq!(payloads, [r#"{"hello":"world"}"#, r#"[1,"b"]"#, "[]"]);
    assert_eq!(s.log.entries()[0].dir.as_str(), "in");
    assert_eq!(s.log.entries()[1].dir.as_str(), "out");
    assert!(s.log.entries()[0].seq < s.log.entries()[1].seq);
}

#[test]
fn lists_are_bounded_oldest_first_out() {
    let s = run((0..MAX_LOG_ENTRIES + 5).map(|i| Action::Logged {
        dir: Dir::In,
        event: format!("e{i}"),
        args: vec![],
        at: MS,
    }));
    assert_eq!(s.log.entries().len(), MAX_LOG_ENTRIES);
    assert_eq!(s.log.entries()[0].event, "e5");
    let s = run((0..MAX_NEWS_ITEMS + 1).map(|i| Action::News {
        item: NewsItem {
            hello: format!("n{i}"),
            from: None,
            channel: None,
        },
        at: MS,
    }));
    assert_eq!(s.news.entries().len(), MAX_NEWS_ITEMS);
    assert_eq!(s.news.entries()[0].item.hello, "n1");
}

#[test]
fn ack_round_trip_in_ms() {
    let mut s = run([Action::AckPending {
        id: 3,
        event: "q".into(),
        at: 100 * MS,
    }]);
    assert!(
        s.acks
            .last
            .as_ref()
            .is_some_and(|a| a.to_string().contains("waiting"))
    );
    s.apply(Action::AckReceived {
        id: 3,
        args: vec![json!({"n": 42})],
        at: 103 * MS + Duration::from_micros(400),
    });
    assert_eq!(
        s.acks.last.as_ref().map(ToString::to_string).as_deref(),
        Some(r#"ack in 3 ms: [{"n":42}]"#)
    );
    assert_eq!(s.acks.pending(), 0);
    // An unknown or repeated ack changes nothing.
    assert!(!s.apply(Action::AckReceived {
        id: 3,
        args: vec![],
        at: 200 * MS,
    }));
}

#[test]
fn ack_timeout_is_reported() {
    let s = run([
        Action::AckPending {
            id: 0,
            event: "slow".into(),
            at: MS,
        },
        Action::AckTimedOut { id: 0 },
    ]);
    let text = s
        .acks
        .last
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    assert!(text.contains("timeout") && text.contains("slow"), "{text}");
}

#[test]
fn form_errors_are_set_and_cleared() {
    let mut s = run([Action::FormInvalid {
        message: "invalid JSON".into(),
    }]);
    assert_eq!(s.form.error.as_deref(), Some("invalid JSON"));
    s.apply(Action::FormSent);
    assert_eq!(s.form.error, None);
    s.apply(Action::EmitRefused {
        event: "x".into(),
        reason: "the session is closed".into(),
    });
    assert!(
        s.form
            .error
            .as_deref()
            .is_some_and(|e| e.contains("closed"))
    );
}

fn lost_at(at: Time) -> Action {
    Action::Reconnecting {
        attempt: 1,
        due: at + 800 * MS,
        reason: "the transport failed: reset".into(),
    }
}

#[test]
fn reconnecting_counts_down_to_the_next_attempt() {
    let s = run([
        Action::Connecting {
            url: "ws://h/socket.io/?EIO=4&transport=websocket".into(),
        },
        Action::Connected { sid: "a".into() },
        lost_at(1000 * MS),
    ]);
    let (status, detail) = s.connection.status_line(1000 * MS);
    assert_eq!(status.label(), "reconnecting");
    assert_eq!(
        detail,
        "attempt 1, next try in 0.8 s (the transport failed: reset)"
    );
    assert_eq!(
        s.connection.status_line(1750 * MS).1,
        "attempt 1, next try in 0.1 s (the transport failed: reset)"
    );
    assert!(s.connection.status_line(1201 * MS).1.contains("in 0.6 s"));
    // Late timers never show a negative countdown.
    assert!(s.connection.status_line(9000 * MS).1.contains("in 0.0 s"));
    assert_eq!(s.connection.socket_id, None);
}

#[test]
fn whole_millis_truncates_rounds_or_rounds_up() {
    let d = Duration::from_micros(2_499_500);
    assert_eq!(whole_millis(d, 0), 2499);
    assert_eq!(whole_millis(d, 500), 2500);
    assert_eq!(whole_millis(Duration::from_micros(2_499_001), 999), 2500);
    assert_eq!(whole_millis(Duration::from_millis(3), 999), 3);
    // Sub-microsecond parts are ignored, as `as_micros` did.
    assert_eq!(whole_millis(Duration::from_nanos(1_000_999), 999), 1);
    assert_eq!(whole_millis(Duration::MAX, 999), u64::MAX);
}

/// The slices `action` changes (a new `Rc`: their readers re-render).
fn changed_by(s: &mut PageState, action: Action) -> Vec<&'static str> {
    let before = [
        Rc::as_ptr(&s.connection).cast::<()>(),
        Rc::as_ptr(&s.news).cast(),
        Rc::as_ptr(&s.log).cast(),
        Rc::as_ptr(&s.channels).cast(),
        Rc::as_ptr(&s.acks).cast(),
        Rc::as_ptr(&s.form).cast(),
    ];
    let any = s.apply(action);
    let after = [
        Rc::as_ptr(&s.connection).cast::<()>(),
        Rc::as_ptr(&s.news).cast(),
        Rc::as_ptr(&s.log).cast(),
        Rc::as_ptr(&s.channels).cast(),
        Rc::as_ptr(&s.acks).cast(),
        Rc::as_ptr(&s.form).cast(),
    ];
    let names = ["connection", "news", "log", "channels", "acks", "form"];
    let changed: Vec<_> = (0..names.len())
        .filter(|&i| before[i] != after[i])
        .map(|i| names[i])
        .collect();
    assert_eq!(any, !changed.is_empty());
    changed
}

#[test]
fn an_action_changes_only_the_slices_that_read_it() {
    let mut s = PageState::default();
    let news = NewsItem {
        hello: "world".into(),
        from: None,
        channel: None,
    };
    let log = |event: &str| Action::Logged {
        dir: Dir::In,
        event: event.into(),
        args: vec![],
        at: MS,
    };
    assert_eq!(changed_by(&mut s, log("news")), ["log"]);
    assert_eq!(
        changed_by(&mut s, Action::News { item: news, at: MS }),
        ["news"]
    );
    assert_eq!(
        changed_by(&mut s, Action::Connected { sid: "a".into() }),
        ["connection"]
    );
    assert_eq!(
        changed_by(
            &mut s,
            Action::Channels {
                channels: vec!["sports".into()],
                error: None
            }
        ),
        ["channels"]
    );
    let pending = Action::AckPending {
        id: 0,
        event: "q".into(),
        at: MS,
    };
    assert_eq!(changed_by(&mut s, pending), ["acks"]);
    assert_eq!(changed_by(&mut s, Action::AckTimedOut { id: 1 }), [""; 0]);
    assert_eq!(
        changed_by(
            &mut s,
            Action::FormInvalid {
                message: "no".into()
            }
        ),
        ["form"]
    );
    assert_eq!(changed_by(&mut s, Action::FormSent), ["form"]);
    // Nothing to clear: nothing to show again.
    assert_eq!(changed_by(&mut s, Action::FormSent), [""; 0]);
    // A new session: the connection starts over and so do the acks it awaited.
    assert_eq!(
        changed_by(
            &mut s,
            Action::Connecting {
                url: "ws://h".into()
            }
        ),
        ["connection", "acks"]
    );
}

#[test]
fn a_new_session_keeps_what_belongs_to_the_page() {
    let ws = "ws://h/socket.io/?EIO=4&transport=websocket";
    let mut s = run([
        Action::Network { online: false },
        Action::Opening {
            transport: Transport::Polling,
            url: ws.into(),
            fallback: Some("blocked".into()),
        },
        Action::Opened(open()),
        Action::Reconnected {
            sid: "a".into(),
            recovered: true,
        },
        Action::Handshake(HandshakeInfo {
            request: "GET /socket.io/?EIO=4&transport=polling HTTP/1.1".into(),
            upgrade: String::new(),
            connection: String::new(),
            sec_websocket_version: String::new(),
            sec_websocket_key: String::new(),
            sec_websocket_accept: String::new(),
            status: "200 OK".into(),
            sid: "eio1".into(),
            ping_interval: 25000,
            ping_timeout: 20000,
        }),
        Action::AckPending {
            id: 0,
            event: "q".into(),
            at: MS,
        },
        Action::AckReceived {
            id: 0,
            args: vec![],
            at: MS,
        },
    ]);
    s.apply(Action::Connecting { url: ws.into() });
    let c = &*s.connection;
    assert_eq!(
        (c.online, c.transport, c.fallback.as_deref()),
        (false, Some(Transport::Polling), Some("blocked"))
    );
    assert_eq!(
        (&c.link, &c.socket_id, &c.handshake, c.recovery),
        (&connection::Link::default(), &None, &None, None)
    );
    assert_eq!(
        (c.status, c.detail.as_str()),
        (
            Status::Connecting,
            "opening ws://h/socket.io/?EIO=4&transport=websocket"
        )
    );
    // The answer stays on show.
    assert!(matches!(s.acks.last, Some(AckResult::Received { .. })));
}

#[test]
fn ack_map_keeps_one_value_per_id() {
    let mut acks = AckMap::default();
    acks.insert(1, "a");
    acks.insert(2, "b");
    acks.insert(1, "c");
    assert_eq!(acks.len(), 2);
    assert_eq!(acks.remove(1), Some("c"));
    assert_eq!(acks.remove(1), None);
    assert_eq!(acks.remove(2), Some("b"));
    assert_eq!(acks.len(), 0);
}

#[test]
fn an_attempt_in_progress_says_what_it_opens() {
    let mut s = run([
        Action::Connecting {
            url: "ws://h/socket.io/".into(),
        },
        lost_at(Time::ZERO),
        Action::ReconnectAttempt { attempt: 1 },
    ]);
    assert_eq!(
        s.connection.status_line(Time::ZERO),
        (
            Status::Reconnecting,
            "attempt 1: opening ws://h/socket.io/".into()
        )
    );
    s.apply(Action::Opened(open()));
    assert_eq!(
        s.connection.status_line(Time::ZERO).1,
        "attempt 1: Engine.IO session eio1 open, joining namespace /"
    );
    s.apply(Action::Reconnected {
        sid: "a".into(),
        recovered: true,
    });
    assert_eq!(
        s.connection.status_line(Time::ZERO),
        (Status::Connected, "socket id a".into())
    );
    assert_eq!(s.connection.reconnect, None);
    assert_eq!(
        s.connection.recovery.map(Recovery::label),
        Some("recovered")
    );
}

#[test]
fn a_fresh_session_after_a_reconnect_is_labelled() {
    let s = run([
        Action::Connected { sid: "a".into() },
        lost_at(Time::ZERO),
        Action::Reconnected {
            sid: "b".into(),
            recovered: false,
        },
    ]);
    assert_eq!(
        s.connection.recovery.map(Recovery::label),
        Some("new session")
    );
    // A session started by hand has no reconnect to label.
    let s = run([
        Action::Reconnected {
            sid: "b".into(),
            recovered: true,
        },
        Action::Connecting {
            url: "ws://h".into(),
        },
        Action::Connected { sid: "c".into() },
    ]);
    assert_eq!(s.connection.recovery, None);
}

#[test]
fn offline_shows_over_a_live_connection_only() {
    let mut s = run([
        Action::Connected { sid: "a".into() },
        Action::Network { online: false },
    ]);
    let (status, detail) = s.connection.status_line(Time::ZERO);
    assert_eq!(status.label(), "offline");
    assert!(
        detail.contains("still up") && detail.contains("socket id a"),
        "{detail}"
    );
    s.apply(lost_at(Time::ZERO));
    let (status, detail) = s.connection.status_line(Time::ZERO);
    assert_eq!(status, Status::Offline);
    assert!(detail.contains("attempt 1, next try in 0.8 s"), "{detail}");
    s.apply(Action::Network { online: true });
    assert_eq!(s.connection.status_line(Time::ZERO).0, Status::Reconnecting);
    // A session that ended stays "disconnected": nothing is trying.
    s.apply(Action::Network { online: false });
    s.apply(Action::Closed {
        reason: "closed locally".into(),
    });
    assert_eq!(s.connection.status_line(Time::ZERO).0, Status::Disconnected);
}

#[test]
fn pending_acks_survive_a_reconnect_of_the_same_session() {
    let mut s = run([
        Action::Connected { sid: "a".into() },
        Action::AckPending {
            id: 4,
            event: "q".into(),
            at: MS,
        },
        lost_at(2 * MS),
        Action::Reconnected {
            sid: "a".into(),
            recovered: true,
        },
    ]);
    assert_eq!(s.acks.pending(), 1);
    s.apply(Action::AckTimedOut { id: 4 });
    assert!(matches!(s.acks.last, Some(AckResult::TimedOut { .. })));
}

#[test]
fn a_refusal_outlives_the_close_that_follows() {
    let s = run([
        Action::ConnectRefused {
            message: "authentication required".into(),
        },
        Action::Closed {
            reason: "closed locally".into(),
        },
    ]);
    assert_eq!(
        s.connection.status_line(Time::ZERO),
        (Status::Refused, "authentication required".into())
    );
}

#[test]
fn channels_come_from_the_server_answer() {
    let mut s = run([Action::Channels {
        channels: vec!["sports".into(), "weather".into()],
        error: None,
    }]);
    assert_eq!(s.channels.channels, ["sports", "weather"]);
    assert_eq!(s.channels.error, None);
    s.apply(Action::Channels {
        channels: vec!["sports".into()],
        error: Some("invalid channel name \"\"".into()),
    });
    assert_eq!(s.channels.channels, ["sports"]);
    assert!(s.channels.error.is_some());
    // Reconnecting keeps them: the page re-joins them on a new session.
    s.apply(lost_at(Time::ZERO));
    s.apply(Action::Connecting {
        url: "ws://h".into(),
    });
    assert_eq!(s.channels.channels, ["sports"]);
}

#[test]
fn the_transport_and_the_fallback_are_shown() {
    let ws = "ws://h/socket.io/?EIO=4&transport=websocket";
    let poll = "http://h/socket.io/?EIO=4&transport=polling&t=1";
    let mut s = run([
        Action::Connecting { url: ws.into() },
        Action::Opening {
            transport: Transport::WebSocket,
            url: ws.into(),
            fallback: None,
        },
    ]);
    assert_eq!(
        s.connection.transport.map(transport_label),
        Some("websocket")
    );
    // The WebSocket fails before its handshake: the same attempt goes on polling.
    s.apply(Action::Opening {
        transport: Transport::Polling,
        url: poll.into(),
        fallback: Some("the WebSocket connection failed".into()),
    });
    assert_eq!(s.connection.transport.map(transport_label), Some("polling"));
    assert_eq!(
        s.connection.status_line(Time::ZERO).1,
        format!("the WebSocket connection failed; trying HTTP long-polling: opening {poll}")
    );
    s.apply(Action::Opened(open()));
    assert_eq!(s.connection.link.opened_over, Some(Transport::Polling));
    s.apply(Action::ProbeFailed {
        reason: "refused".into(),
    });
    assert_eq!(
        s.connection.link.upgrade,
        Some(Upgrade::Failed("refused".into()))
    );

    // Lost; the next transport starts on polling (remembered): the reason stays.
    s.apply(lost_at(Time::ZERO));
    assert_eq!(
        (
            s.connection.link.opened_over,
            s.connection.link.upgrade.clone()
        ),
        (None, None)
    );
    s.apply(Action::Opening {
        transport: Transport::Polling,
        url: poll.into(),
        fallback: None,
    });
    assert_eq!(
        s.connection.fallback.as_deref(),
        Some("the WebSocket connection failed")
    );
    s.apply(Action::Opened(open()));
    s.apply(Action::Upgraded);
    assert_eq!(s.connection.transport, Some(Transport::WebSocket));
    assert_eq!(s.connection.link.opened_over, Some(Transport::Polling));
    assert_eq!(s.connection.link.upgrade, Some(Upgrade::Done));

    // A WebSocket that opens by itself: no fallback to explain any more.
    s.apply(lost_at(Time::ZERO));
    s.apply(Action::Opening {
        transport: Transport::WebSocket,
        url: ws.into(),
        fallback: None,
    });
    assert_eq!(s.connection.fallback, None);
}

#[test]
fn refused_namespace() {
    let s = run([Action::ConnectRefused {
        message: "Invalid namespace".into(),
    }]);
    assert_eq!(s.connection.status.label(), "refused");
    assert_eq!(s.connection.detail, "Invalid namespace");
}
