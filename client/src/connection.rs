//! One connection's behaviour, without I/O: the protocol's `ClientSession` plus what
//! this page does with it.
//!
//! `socket.rs` moves frames and timer ticks between the browser and a
//! [`Connection`]; the connection turns session events into page [`Action`]s and
//! carries out the tutorial's behaviour (answer every `news` with `my other event`).
//! Keeping this apart from the gloo-net shell means the page's reactions are
//! unit-tested natively, with the same time-as-a-parameter style as the protocol.

use std::collections::VecDeque;

use protocol::app::{Handshake, MyData, MyOtherEvent, News, Publish, PublishNews};
use protocol::event::{self, Event};
use protocol::session::client::ClientState;
use protocol::session::{ClientConfig, ClientEvent, ClientSession, CloseReason};
use protocol::{Frame, Time};
use serde_json::Value;

use crate::state::{Action, Dir};

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
    /// Leave the namespace and close the session.
    Disconnect,
}

/// A client session and the page's reactions to it.
#[derive(Debug)]
pub struct Connection {
    session: ClientSession,
    actions: VecDeque<Action>,
}

impl Default for Connection {
    fn default() -> Self {
        Connection::new(ClientConfig::default())
    }
}

impl Connection {
    pub fn new(config: ClientConfig) -> Self {
        Connection {
            session: ClientSession::new(config),
            actions: VecDeque::new(),
        }
    }

    /// A frame arrived from the server. A protocol error closes the session; the
    /// close comes out as [`Action::Closed`] with the error as its reason.
    pub fn handle_frame(&mut self, frame: Frame, now: Time) {
        // The error is also the session's close reason, reported by `pump`.
        let _ = self.session.handle_frame(frame, now);
        self.pump(now);
    }

    pub fn handle_command(&mut self, command: Command, now: Time) {
        match command {
            Command::Emit { event, args, ack } => self.emit(event, args, ack, now),
            Command::Publish(publish) => self.emit_typed::<PublishNews>(&publish, now),
            Command::Disconnect => self.session.disconnect(),
        }
        self.pump(now);
    }

    /// The time from [`poll_timeout`](Self::poll_timeout) was reached.
    pub fn handle_timeout(&mut self, now: Time) {
        self.session.handle_timeout(now);
        self.pump(now);
    }

    /// The WebSocket closed or failed under the session.
    pub fn transport_closed(&mut self, why: String, now: Time) {
        self.session
            .transport_closed(CloseReason::Transport(why), now);
        self.pump(now);
    }

    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.session.poll_transmit()
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
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
                ClientEvent::Connected { sid, .. } => {
                    self.actions.push_back(Action::Connected { sid });
                }
                ClientEvent::ConnectError { message, .. } => {
                    self.actions.push_back(Action::ConnectRefused { message });
                }
                ClientEvent::Event { id, name, args, .. } => {
                    self.on_event(&name, &args, now);
                    if let Some(id) = id {
                        // The page has no handler that answers; an empty ack at least
                        // tells the server that the event arrived.
                        let _ = self.session.ack(id, Vec::new());
                    }
                }
                ClientEvent::Ack { id, args, .. } => {
                    self.actions
                        .push_back(Action::AckReceived { id, args, at: now });
                }
                ClientEvent::AckTimeout { id } => {
                    self.actions.push_back(Action::AckTimedOut { id });
                }
                ClientEvent::Disconnected => {
                    // Removed from the namespace: the session would idle on, joined to
                    // nothing, so close it. (Reconnecting is the page's decision.)
                    self.actions.push_back(Action::NamespaceLeft);
                    self.session.disconnect();
                }
                // The page does not configure reconnection yet: a lost transport
                // ends the session (`Closed`), so these never come.
                ClientEvent::TransportLost(_)
                | ClientEvent::Reconnecting { .. }
                | ClientEvent::OpenTransport { .. } => {}
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
