//! One session's behaviour, without I/O: the protocol's `ClientSession` plus what
//! this page does with it.
//!
//! `socket.rs` moves frames, timer ticks and transports between the browser and a
//! [`Connection`]; the connection turns session events into page [`Action`]s,
//! tells the driver when to drop its transport and open another
//! ([`TransportRequest`]), and carries out the page's behaviour: answer every
//! `news` with `my other event` (the tutorial), refuse to retry after the server
//! refused us, and re-join the page's news channels when a reconnect lands on a
//! new server session. One connection lives across every transport that
//! reconnection opens. Keeping this apart from the gloo-net shell means the page's
//! reactions are unit-tested natively, with the same time-as-a-parameter style as
//! the protocol.

use std::collections::VecDeque;

use protocol::app::{
    Channel, Channels, Handshake, JoinChannel, LeaveChannel, MyData, MyOtherEvent, News, Publish,
    PublishNews, valid_channel,
};
use protocol::engineio::OpenPacket;
use protocol::event::{self, Event};
use protocol::session::client::ClientState;
use protocol::session::{Backoff, ClientConfig, ClientEvent, ClientSession, CloseReason};
use protocol::{Frame, Time};
use serde_json::{Value, json};

use crate::state::{AckMap, Action, Dir, json_text};

/// Most emits the page keeps while it is not connected; one more is refused and
/// the user is told (`#event-error`). Emits are made by hand, so a few dozen
/// waiting means the server has been gone for a while; far fewer than the
/// protocol's default, so a page left reconnecting does not hoard them.
pub const MAX_BUFFERED: usize = 100;

/// The session settings of the page: Socket.IO's reconnection defaults (1 s
/// doubling to 5 s, ±50% jitter, forever), jitter drawn from `seed` (real
/// randomness in the browser, so pages dropped together spread out), and the
/// `token`, if any, as the CONNECT auth `{"token": ...}`.
pub fn page_config(token: Option<&str>, seed: u64) -> ClientConfig {
    ClientConfig {
        auth: token.map(|token| json!({ "token": token })),
        reconnection: Some(Backoff::default()),
        seed,
        max_buffered: MAX_BUFFERED,
        ..ClientConfig::default()
    }
}

/// What the page asks of its connection.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Emit any event; with `ack`, the reply (or its timeout) comes back as an action.
    Emit {
        event: String,
        args: Vec<Value>,
        ack: bool,
    },
    /// Ask the server to broadcast a news item.
    Publish(Publish),
    /// Subscribe to a news channel.
    Join(String),
    /// Unsubscribe from a news channel.
    Leave(String),
    /// The network is back: skip what is left of the reconnection delay.
    RetryNow,
    /// Leave the namespace and close the session; cancels reconnection.
    Disconnect,
}

/// What the driver must do with its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportRequest {
    /// The transport is lost (or given up on): close it and read no more from it.
    Close,
    /// Open a new transport to the same server and feed its frames to this
    /// connection (or call [`Connection::transport_closed`] if it cannot be opened).
    Open,
}

/// Which way a channel request went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChannelOp {
    Join,
    Leave,
}

impl ChannelOp {
    fn verb(self) -> &'static str {
        match self {
            ChannelOp::Join => "join",
            ChannelOp::Leave => "leave",
        }
    }
}

/// A client session and the page's reactions to it.
#[derive(Debug)]
pub struct Connection {
    session: ClientSession,
    actions: VecDeque<Action>,
    transport: VecDeque<TransportRequest>,
    /// The channels the server last said we are in (or that a new session starts
    /// with): re-joined whenever the server starts a new session for us.
    channels: Vec<String>,
    /// Our join/leave requests awaiting the server's [`Channels`] answer.
    channel_acks: AckMap<(ChannelOp, String)>,
    /// The namespace accepted us before: the next accept is a reconnect.
    was_connected: bool,
    /// Why the last transport was lost.
    lost: Option<String>,
}

impl Default for Connection {
    fn default() -> Self {
        Connection::new(ClientConfig::default(), Vec::new())
    }
}

impl Connection {
    /// A connection whose first transport is opening; `channels` are joined once
    /// the namespace accepts us (the page's channels when "Reconnect" starts over).
    pub fn new(config: ClientConfig, channels: Vec<String>) -> Self {
        Connection {
            session: ClientSession::new(config),
            actions: VecDeque::new(),
            transport: VecDeque::new(),
            channels,
            channel_acks: AckMap::default(),
            was_connected: false,
            lost: None,
        }
    }

    /// A frame arrived from the server. A protocol error loses the transport (and
    /// reconnection follows); the error is the reason the page shows.
    pub fn handle_frame(&mut self, frame: Frame, now: Time) {
        // The error is also the loss's reason, reported by `pump`.
        let _ = self.session.handle_frame(frame, now);
        self.pump(now);
    }

    pub fn handle_command(&mut self, command: Command, now: Time) {
        match command {
            Command::Emit { event, args, ack } => self.emit(event, args, ack, now),
            Command::Publish(publish) => self.emit_typed::<PublishNews>(&publish, now),
            Command::Join(channel) => self.channel_request(ChannelOp::Join, channel, now),
            Command::Leave(channel) => self.channel_request(ChannelOp::Leave, channel, now),
            Command::RetryNow => self.session.reconnect_now(),
            Command::Disconnect => self.session.disconnect(),
        }
        self.pump(now);
    }

    /// The time from [`poll_timeout`](Self::poll_timeout) was reached.
    pub fn handle_timeout(&mut self, now: Time) {
        self.session.handle_timeout(now);
        self.pump(now);
    }

    /// The transport closed, failed, or could not be opened.
    pub fn transport_closed(&mut self, why: String, now: Time) {
        self.session
            .transport_closed(CloseReason::Transport(why), now);
        self.pump(now);
    }

    /// The current transport's Engine.IO open packet, once it arrived.
    pub fn handshake(&self) -> Option<&OpenPacket> {
        self.session.handshake()
    }

    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.session.poll_transmit()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What the driver must do with its transport next, in order.
    pub fn poll_transport(&mut self) -> Option<TransportRequest> {
        self.transport.pop_front()
    }

    pub fn poll_timeout(&self) -> Option<Time> {
        self.session.poll_timeout()
    }

    /// Once closed, only the frames already queued (a goodbye) remain to be sent.
    pub fn is_closed(&self) -> bool {
        *self.session.state() == ClientState::Closed
    }

    /// Turns the session's events into actions and reactions.
    fn pump(&mut self, now: Time) {
        while let Some(event) = self.session.poll_event() {
            match event {
                ClientEvent::Open(open) => self.actions.push_back(Action::Opened(open)),
                ClientEvent::Connected { sid, recovered } => {
                    let action = if self.was_connected {
                        Action::Reconnected { sid, recovered }
                    } else {
                        Action::Connected { sid }
                    };
                    self.was_connected = true;
                    self.actions.push_back(action);
                    if !recovered {
                        // A new server session knows none of our channels.
                        for channel in self.channels.clone() {
                            self.channel_request(ChannelOp::Join, channel, now);
                        }
                    }
                }
                ClientEvent::ConnectError { message, .. } => {
                    // As Socket.IO's client: a refusal by the server's middleware is
                    // final, not retried (the same auth would be refused again).
                    self.actions.push_back(Action::ConnectRefused { message });
                    self.session.disconnect();
                }
                ClientEvent::Event { id, name, args, .. } => {
                    self.on_event(&name, &args, now);
                    if let Some(id) = id {
                        // The page has no handler that answers; an empty ack at least
                        // tells the server that the event arrived.
                        let _ = self.session.ack(id, Vec::new());
                    }
                }
                ClientEvent::Ack { id, args, .. } => match self.channel_acks.remove(id) {
                    Some((op, channel)) => self.on_channels(op, &channel, &args),
                    None => {
                        self.actions
                            .push_back(Action::AckReceived { id, args, at: now });
                    }
                },
                ClientEvent::AckTimeout { id } => match self.channel_acks.remove(id) {
                    Some((op, channel)) => self.actions.push_back(Action::ChannelError {
                        message: format!(
                            "no answer to {} {channel:?} in time (the connection was lost, or the server is slow)",
                            op.verb()
                        ),
                    }),
                    None => self.actions.push_back(Action::AckTimedOut { id }),
                },
                ClientEvent::Disconnected => {
                    // Removed from the namespace by the server: as Socket.IO's client,
                    // that is not retried; the session would idle on, joined to
                    // nothing, so close it.
                    self.actions.push_back(Action::NamespaceLeft);
                    self.session.disconnect();
                }
                ClientEvent::TransportLost(reason) => {
                    self.transport.push_back(TransportRequest::Close);
                    self.lost = Some(reason.to_string());
                }
                ClientEvent::Reconnecting { attempt, delay } => {
                    self.actions.push_back(Action::Reconnecting {
                        attempt: attempt + 1,
                        due: now + delay,
                        reason: self
                            .lost
                            .clone()
                            .unwrap_or_else(|| "the transport was lost".to_owned()),
                    });
                }
                ClientEvent::OpenTransport { attempt } => {
                    self.transport.push_back(TransportRequest::Open);
                    self.actions.push_back(Action::ReconnectAttempt {
                        attempt: attempt + 1,
                    });
                }
                ClientEvent::Closed(reason) => {
                    self.actions.push_back(Action::Closed {
                        reason: reason.to_string(),
                    });
                }
            }
        }
    }

    fn on_event(&mut self, name: &str, args: &[Value], now: Time) {
        self.actions.push_back(Action::Logged {
            dir: Dir::In,
            event: name.to_owned(),
            args: args.to_vec(),
            at: now,
        });
        if name == News::NAME {
            // A news item that does not decode is still in the log; it is just not shown
            // as news, and not answered.
            if let Ok(item) = event::decode::<News>(args) {
                self.actions.push_back(Action::News { item, at: now });
                // The tutorial: `socket.on('news', d => socket.emit('my other event', { my: 'data' }))`.
                let reply = MyData {
                    my: "data".to_owned(),
                };
                self.emit_typed::<MyOtherEvent>(&reply, now);
            }
        } else if name == Handshake::NAME {
            if let Ok(info) = event::decode::<Handshake>(args) {
                self.actions.push_back(Action::Handshake(info));
            }
        }
    }

    /// The server's [`Channels`] answer to a join or leave.
    fn on_channels(&mut self, op: ChannelOp, channel: &str, args: &[Value]) {
        let answer = args
            .first()
            .cloned()
            .map(serde_json::from_value::<Channels>);
        match answer {
            Some(Ok(Channels { channels, error })) => {
                self.channels.clone_from(&channels);
                self.actions.push_back(Action::Channels { channels, error });
            }
            _ => self.actions.push_back(Action::ChannelError {
                message: format!(
                    "unexpected answer to {} {channel:?}: {}",
                    op.verb(),
                    json_text(&Value::Array(args.to_vec()))
                ),
            }),
        }
    }

    /// Joins or leaves `channel`, asking for the server's [`Channels`] answer.
    fn channel_request(&mut self, op: ChannelOp, channel: String, now: Time) {
        let channel = channel.trim().to_owned();
        if !valid_channel(&channel) {
            self.actions.push_back(Action::ChannelError {
                message: format!(
                    "invalid channel name {channel:?}: 1 to {} characters, not blank",
                    protocol::app::MAX_CHANNEL_LEN
                ),
            });
            return;
        }
        let payload = Channel {
            channel: channel.clone(),
        };
        let (name, args) = match op {
            ChannelOp::Join => (JoinChannel::NAME, event::encode::<JoinChannel>(&payload)),
            ChannelOp::Leave => (LeaveChannel::NAME, event::encode::<LeaveChannel>(&payload)),
        };
        let sent = args.map_err(Into::into).and_then(|args| {
            self.session
                .emit_with_ack(name, args.clone(), now)
                .map(|id| (id, args))
        });
        match sent {
            Ok((id, args)) => {
                self.channel_acks.insert(id, (op, channel));
                self.actions.push_back(Action::Logged {
                    dir: Dir::Out,
                    event: name.to_owned(),
                    args,
                    at: now,
                });
            }
            Err(err) => self.actions.push_back(Action::ChannelError {
                message: format!("could not {} {channel:?}: {err}", op.verb()),
            }),
        }
    }

    fn emit_typed<E: Event>(&mut self, payload: &E::Payload, now: Time) {
        match event::encode::<E>(payload) {
            Ok(args) => self.emit(E::NAME.to_owned(), args, false, now),
            Err(err) => self.actions.push_back(Action::EmitRefused {
                event: E::NAME.to_owned(),
                reason: err.to_string(),
            }),
        }
    }

    fn emit(&mut self, event: String, args: Vec<Value>, ack: bool, now: Time) {
        let sent = if ack {
            self.session
                .emit_with_ack(&event, args.clone(), now)
                .map(Some)
        } else {
            self.session.emit(&event, args.clone()).map(|()| None)
        };
        match sent {
            Ok(ack_id) => {
                self.actions.push_back(Action::Logged {
                    dir: Dir::Out,
                    event: event.clone(),
                    args,
                    at: now,
                });
                if let Some(id) = ack_id {
                    self.actions
                        .push_back(Action::AckPending { id, event, at: now });
                }
            }
            Err(err) => self.actions.push_back(Action::EmitRefused {
                event,
                reason: err.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert!(
            matches!(&actions(&mut c)[..], [Action::Logged { event, .. }] if event == "publish")
        );
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
            text(
                r#"44{"message":"invalid token: the server was started with a different --token"}"#,
            ),
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
                    message: "invalid token: the server was started with a different --token"
                        .into()
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
}
