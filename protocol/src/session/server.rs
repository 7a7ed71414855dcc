//! The server side of one Engine.IO session and the Socket.IO namespaces on it.
//!
//! It wraps an [`EngineSession`] (handshake, heartbeat, upgrade) and decodes the
//! Socket.IO packets its messages carry. A client that connects to no namespace
//! within `connectTimeout` is closed.
//!
//! Namespaces: a CONNECT becomes [`ServerEvent::Connect`]; the application decides
//! with [`ServerSession::accept_connect`] or [`ServerSession::reject_connect`].

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::time::Duration;

use serde_json::{Value, json};

use super::engine::{EngineConfig, EngineEvent, EngineSession, Probe, Transport};
use super::{AckId, CloseReason, ProtocolError};
use crate::Time;
use crate::engineio::Frame;
use crate::socketio::{self, Decoder, Limits};

/// The session's settings, announced to the client in the open packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub connect_timeout: Duration,
    /// Largest message (bytes) accepted from the client.
    pub max_payload: usize,
    pub limits: Limits,
}

impl Default for ServerConfig {
    /// Socket.IO's defaults.
    fn default() -> Self {
        ServerConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            connect_timeout: Duration::from_millis(45_000),
            max_payload: 1_000_000,
            limits: Limits::default(),
        }
    }
}

/// What the application learns from a session.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// The client asks to join `nsp`, with its auth payload, if any.
    Connect { nsp: String, auth: Option<Value> },
    /// An event from the client; `id` is set when it wants an ack.
    Event {
        nsp: String,
        id: Option<AckId>,
        name: String,
        /// As they arrived: see [`Args`](crate::Args).
        args: crate::Args,
        attachments: Vec<Vec<u8>>,
    },
    /// The client's reply to an event we sent with [`ServerSession::emit_with_ack`].
    Ack {
        nsp: String,
        id: AckId,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    },
    /// No reply arrived in time for ack `id`.
    AckTimeout { nsp: String, id: AckId },
    /// The client left `nsp`; the session stays open.
    Disconnect { nsp: String },
    /// The session ended; nothing more will happen.
    Closed(CloseReason),
}

/// One client's session, seen from the server: an Engine.IO session carrying the
/// Socket.IO namespaces.
#[derive(Debug)]
pub struct ServerSession {
    engine: EngineSession,
    config: ServerConfig,
    decoder: Decoder,
    /// Namespaces the client is connected to.
    connected: HashSet<String>,
    /// Namespaces whose CONNECT awaits the application's decision.
    pending_connect: HashSet<String>,
    connect_deadline: Option<Time>,
    next_ack_id: AckId,
    acks: BTreeMap<AckId, (String, Time)>,
    ack_deadlines: BTreeSet<(Time, AckId)>,
    events: VecDeque<ServerEvent>,
    closed: bool,
}

impl ServerSession {
    /// Opens a session over `transport`: the open packet is the first frame to send.
    pub fn new(sid: String, config: ServerConfig, transport: Transport, now: Time) -> Self {
        let engine_config = EngineConfig {
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            max_payload: config.max_payload,
        };
        ServerSession {
            engine: EngineSession::new(sid, engine_config, transport, now),
            decoder: Decoder::new(config.limits),
            connected: HashSet::new(),
            pending_connect: HashSet::new(),
            connect_deadline: Some(now + config.connect_timeout),
            next_ack_id: 0,
            acks: BTreeMap::new(),
            ack_deadlines: BTreeSet::new(),
            events: VecDeque::new(),
            closed: false,
            config,
        }
    }

    /// The Engine.IO session id.
    pub fn sid(&self) -> &str {
        self.engine.sid()
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The Engine.IO session underneath (transport and upgrade state).
    pub fn engine(&self) -> &EngineSession {
        &self.engine
    }

    /// A frame on a WebSocket probing this session for an upgrade (see
    /// [`EngineSession::handle_probe_frame`]).
    pub fn handle_probe_frame(&mut self, frame: Frame) -> Result<Probe, ProtocolError> {
        self.engine.handle_probe_frame(frame)
    }

    /// The probing WebSocket went away before completing the upgrade.
    pub fn probe_failed(&mut self) {
        self.engine.probe_failed();
    }

    /// Whether the client is connected to `nsp`.
    pub fn is_connected(&self, nsp: &str) -> bool {
        self.connected.contains(nsp)
    }

    /// Why the session closed, once it has.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.engine.close_reason()
    }

    pub fn is_closed(&self) -> bool {
        self.engine.is_closed()
    }

    /// A frame arrived from the client at `now`. A protocol violation closes the
    /// session (a [`ServerEvent::Closed`] follows) and is returned.
    pub fn handle_frame(&mut self, frame: Frame, now: Time) -> Result<(), ProtocolError> {
        let result = self
            .engine
            .handle_frame(frame, now)
            .and_then(|()| self.pump());
        self.pump_closed();
        result
    }

    /// Moves the engine's messages up into Socket.IO packets.
    fn pump(&mut self) -> Result<(), ProtocolError> {
        while let Some(event) = self.engine.poll_event() {
            let packet = match event {
                EngineEvent::Message(text) => self.decoder.feed_text(&text),
                EngineEvent::Binary(bytes) => self.decoder.feed_binary(bytes),
                EngineEvent::Closed(reason) => {
                    self.finish(reason);
                    continue;
                }
            };
            let handled = match packet {
                Ok(Some(packet)) => self.handle_packet(packet),
                Ok(None) => Ok(()),
                Err(e) => Err(ProtocolError::SocketIo(e)),
            };
            if let Err(e) = handled {
                self.engine.abort(CloseReason::Protocol(e.clone()));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Reports an engine closure that happened outside `pump`'s loop.
    fn pump_closed(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            if let EngineEvent::Closed(reason) = event {
                self.finish(reason);
            }
        }
    }

    fn handle_packet(&mut self, packet: socketio::Packet) -> Result<(), ProtocolError> {
        use socketio::Packet as P;
        match packet {
            P::Connect { nsp, data } => {
                if self.connected.contains(&nsp) || !self.pending_connect.insert(nsp.clone()) {
                    // A duplicate CONNECT is ignored, as the reference server does.
                    return Ok(());
                }
                self.events
                    .push_back(ServerEvent::Connect { nsp, auth: data });
            }
            P::Disconnect { nsp } => {
                if !self.connected.remove(&nsp) {
                    return Err(ProtocolError::Unexpected(
                        "DISCONNECT from a namespace not joined",
                    ));
                }
                self.events.push_back(ServerEvent::Disconnect { nsp });
            }
            P::Event {
                nsp,
                id,
                name,
                args,
                attachments,
            } => {
                // An event for a namespace the client has not joined (or has left)
                // has no socket to go to: like the reference server, close.
                if !self.connected.contains(&nsp) {
                    return Err(ProtocolError::Unexpected(
                        "EVENT for a namespace not joined",
                    ));
                }
                self.events.push_back(ServerEvent::Event {
                    nsp,
                    id,
                    name,
                    args,
                    attachments,
                });
            }
            P::Ack {
                nsp,
                id,
                args,
                attachments,
            } => {
                if let Some((_, deadline)) = self.acks.remove(&id) {
                    self.ack_deadlines.remove(&(deadline, id));
                    self.events.push_back(ServerEvent::Ack {
                        nsp,
                        id,
                        args: args.into_values(),
                        attachments,
                    });
                }
            }
            P::ConnectError { .. } => {
                return Err(ProtocolError::Unexpected("CONNECT_ERROR from the client"));
            }
        }
        Ok(())
    }

    /// Admits the client to `nsp` under the Socket.IO id `socket_id`.
    pub fn accept_connect(&mut self, nsp: &str, socket_id: &str) {
        self.accept_connect_with(nsp, json!({ "sid": socket_id }));
    }

    /// Admits the client with CONNECT data of our choosing (`{"sid":..,"pid":..}`
    /// with connection state recovery).
    pub fn accept_connect_with(&mut self, nsp: &str, data: Value) {
        if self.is_closed() || !self.pending_connect.remove(nsp) {
            return;
        }
        self.connected.insert(nsp.to_owned());
        self.connect_deadline = None;
        self.push_packet(&socketio::Packet::Connect {
            nsp: nsp.to_owned(),
            data: Some(data),
        });
    }

    /// Refuses the client's CONNECT to `nsp` with CONNECT_ERROR `{"message": ...}`.
    pub fn reject_connect(&mut self, nsp: &str, message: &str) {
        self.reject_connect_with(nsp, json!({ "message": message }));
    }

    /// Refuses with arbitrary CONNECT_ERROR data.
    pub fn reject_connect_with(&mut self, nsp: &str, data: Value) {
        if self.is_closed() || !self.pending_connect.remove(nsp) {
            return;
        }
        self.push_packet(&socketio::Packet::ConnectError {
            nsp: nsp.to_owned(),
            data,
        });
    }

    /// Sends a Socket.IO packet (and its attachments).
    pub fn send(&mut self, packet: &socketio::Packet) {
        self.push_packet(packet);
    }

    /// Sends an already encoded Engine.IO frame (a broadcast encoded once for all
    /// recipients).
    pub fn send_frame(&mut self, frame: Frame) {
        self.engine.send_frame(frame);
    }

    /// Emits `name` with `args` in `nsp`.
    pub fn emit(&mut self, nsp: &str, name: &str, args: Vec<Value>) {
        self.send(&socketio::Packet::event(nsp, name, args));
    }

    /// Emits an event asking for an ack; its reply arrives as [`ServerEvent::Ack`]
    /// with the returned id, or [`ServerEvent::AckTimeout`] after `timeout`.
    pub fn emit_with_ack(
        &mut self,
        nsp: &str,
        name: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
        timeout: Duration,
        now: Time,
    ) -> AckId {
        let id = self.next_ack_id;
        self.next_ack_id += 1;
        let deadline = now + timeout;
        self.acks.insert(id, (nsp.to_owned(), deadline));
        self.ack_deadlines.insert((deadline, id));
        self.send(&socketio::Packet::Event {
            nsp: nsp.to_owned(),
            id: Some(id),
            name: name.to_owned(),
            args: args.into(),
            attachments,
        });
        id
    }

    /// Answers the client's event `id` in `nsp`.
    pub fn ack(&mut self, nsp: &str, id: AckId, args: Vec<Value>, attachments: Vec<Vec<u8>>) {
        self.send(&socketio::Packet::Ack {
            nsp: nsp.to_owned(),
            id,
            args: args.into(),
            attachments,
        });
    }

    /// Removes the client from `nsp` (sends DISCONNECT); the session stays open.
    pub fn disconnect_namespace(&mut self, nsp: &str) {
        if self.connected.remove(nsp) {
            self.push_packet(&socketio::Packet::Disconnect {
                nsp: nsp.to_owned(),
            });
        }
    }

    /// Closes the session from our side: an Engine.IO close packet is the last frame.
    pub fn close(&mut self) {
        self.engine.close(CloseReason::LocalClose);
        self.pump_closed();
    }

    /// The transport failed or went away: the session ends with that reason.
    pub fn transport_closed(&mut self, reason: CloseReason) {
        self.engine.abort(reason);
        self.pump_closed();
    }

    /// Time `now` was reached: sends a due ping, enforces pong, connect and ack
    /// deadlines.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.is_closed() {
            return;
        }
        self.engine.handle_timeout(now);
        self.pump_closed();
        if self.is_closed() {
            return;
        }
        if self.connect_deadline.is_some_and(|d| now >= d) && self.connected.is_empty() {
            self.engine.close(CloseReason::ConnectTimeout);
            self.pump_closed();
            return;
        }
        while let Some(&(deadline, id)) = self.ack_deadlines.first() {
            if deadline > now {
                break;
            }
            self.ack_deadlines.pop_first();
            if let Some((nsp, _)) = self.acks.remove(&id) {
                self.events.push_back(ServerEvent::AckTimeout { nsp, id });
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.is_closed() {
            return None;
        }
        [
            self.engine.poll_timeout(),
            self.connect_deadline,
            self.ack_deadlines.first().map(|&(d, _)| d),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next frame to send, in order.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.engine.poll_transmit()
    }

    /// How many frames wait to be sent.
    pub fn pending_transmits(&self) -> usize {
        self.engine.pending_transmits()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    fn push_packet(&mut self, packet: &socketio::Packet) {
        let (frame, attachments) = packet.encode_frame();
        self.engine.send_frame(frame);
        for a in attachments {
            self.engine.send_binary(a.clone());
        }
    }

    fn finish(&mut self, reason: CloseReason) {
        if !self.closed {
            self.closed = true;
            self.connect_deadline = None;
            self.events.push_back(ServerEvent::Closed(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn text(s: &str) -> Frame {
        Frame::Text(s.to_owned())
    }

    fn config() -> ServerConfig {
        ServerConfig {
            ping_interval: 300 * MS,
            ping_timeout: 200 * MS,
            connect_timeout: 1000 * MS,
            ..ServerConfig::default()
        }
    }

    fn drain(s: &mut ServerSession) -> Vec<Frame> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    fn events(s: &mut ServerSession) -> Vec<ServerEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    /// A session whose client has joined "/".
    fn connected() -> ServerSession {
        let mut s = ServerSession::new("abc".into(), config(), Transport::WebSocket, Time::ZERO);
        drain(&mut s);
        s.handle_frame(text("40"), Time::ZERO).expect("valid");
        assert!(matches!(events(&mut s)[..], [ServerEvent::Connect { .. }]));
        s.accept_connect("/", "sock1");
        drain(&mut s);
        s
    }

    #[test]
    fn open_packet_first() {
        let mut s = ServerSession::new("abc".into(), config(), Transport::WebSocket, Time::ZERO);
        assert_eq!(
            drain(&mut s),
            vec![text(
                r#"0{"sid":"abc","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#
            )]
        );
    }

    #[test]
    fn connect_and_accept() {
        let mut s = ServerSession::new("abc".into(), config(), Transport::WebSocket, Time::ZERO);
        drain(&mut s);
        s.handle_frame(text(r#"40{"token":"123"}"#), 5 * MS)
            .expect("valid");
        assert_eq!(
            events(&mut s),
            vec![ServerEvent::Connect {
                nsp: "/".into(),
                auth: Some(json!({"token": "123"}))
            }]
        );
        s.accept_connect("/", "xyz");
        assert_eq!(drain(&mut s), vec![text(r#"40{"sid":"xyz"}"#)]);
        assert!(s.is_connected("/"));
    }

    #[test]
    fn reject_connect_sends_connect_error() {
        let mut s = ServerSession::new("abc".into(), config(), Transport::WebSocket, Time::ZERO);
        drain(&mut s);
        s.handle_frame(text("40/nope,"), Time::ZERO).expect("valid");
        events(&mut s);
        s.reject_connect("/nope", "Invalid namespace");
        assert_eq!(
            drain(&mut s),
            vec![text(r#"44/nope,{"message":"Invalid namespace"}"#)]
        );
        assert!(!s.is_connected("/nope"));
    }

    #[test]
    fn first_ping_after_interval_then_pong_keeps_alive() {
        let mut s = connected();
        assert_eq!(s.poll_timeout(), Some(300 * MS));
        s.handle_timeout(299 * MS);
        assert!(drain(&mut s).is_empty(), "no ping before pingInterval");
        s.handle_timeout(300 * MS);
        assert_eq!(drain(&mut s), vec![text("2")]);
        assert_eq!(s.poll_timeout(), Some(500 * MS));
        s.handle_frame(text("3"), 350 * MS).expect("pong is valid");
        assert_eq!(s.poll_timeout(), Some(650 * MS));
        s.handle_timeout(600 * MS);
        assert!(!s.is_closed());
        s.handle_timeout(650 * MS);
        assert_eq!(drain(&mut s), vec![text("2")]);
    }

    #[test]
    fn missing_pong_closes() {
        let mut s = connected();
        s.handle_timeout(300 * MS);
        drain(&mut s);
        s.handle_timeout(499 * MS);
        assert!(!s.is_closed());
        s.handle_timeout(500 * MS);
        assert_eq!(s.close_reason(), Some(&CloseReason::PingTimeout));
        assert_eq!(
            events(&mut s),
            vec![ServerEvent::Closed(CloseReason::PingTimeout)]
        );
        assert_eq!(s.poll_timeout(), None);
    }

    #[test]
    fn no_connect_within_timeout_closes() {
        let mut s = ServerSession::new("abc".into(), config(), Transport::WebSocket, Time::ZERO);
        drain(&mut s);
        // Keep the heartbeat going so only the connect timeout can fire.
        s.handle_timeout(300 * MS);
        s.handle_frame(text("3"), 301 * MS).expect("valid");
        s.handle_timeout(601 * MS);
        s.handle_frame(text("3"), 602 * MS).expect("valid");
        s.handle_timeout(999 * MS);
        assert!(!s.is_closed());
        s.handle_timeout(1000 * MS);
        assert_eq!(s.close_reason(), Some(&CloseReason::ConnectTimeout));
    }

    #[test]
    fn client_ping_is_a_protocol_error() {
        let mut s = connected();
        assert!(s.handle_frame(text("2"), MS).is_err());
        assert!(matches!(
            s.close_reason(),
            Some(CloseReason::Protocol(ProtocolError::Unexpected(_)))
        ));
    }

    #[test]
    fn malformed_packets_close_the_session() {
        for bad in ["4abc", "42{}", r#"42abc["a"]"#, "", "9", "4"] {
            let mut s = connected();
            assert!(s.handle_frame(text(bad), MS).is_err(), "{bad:?} accepted");
            assert!(s.is_closed(), "{bad:?} did not close");
        }
    }

    #[test]
    fn oversized_message_closes() {
        let mut s = connected();
        let big = format!("42[\"a\",\"{}\"]", "x".repeat(1_000_000));
        assert!(matches!(
            s.handle_frame(Frame::Text(big), MS),
            Err(ProtocolError::PayloadTooLarge { .. })
        ));
    }

    #[test]
    fn events_and_acks_from_client() {
        let mut s = connected();
        s.handle_frame(text(r#"4212["foo",1]"#), MS).expect("valid");
        assert_eq!(
            events(&mut s),
            vec![ServerEvent::Event {
                nsp: "/".into(),
                id: Some(12),
                name: "foo".into(),
                args: vec![json!(1)].into(),
                attachments: vec![]
            }]
        );
        s.ack("/", 12, vec![json!("bar")], vec![]);
        assert_eq!(drain(&mut s), vec![text(r#"4312["bar"]"#)]);
    }

    #[test]
    fn binary_event_from_client() {
        let mut s = connected();
        s.handle_frame(text(r#"451-["baz",{"_placeholder":true,"num":0}]"#), MS)
            .expect("valid");
        assert!(events(&mut s).is_empty());
        s.handle_frame(Frame::Binary(vec![1, 2, 3]), MS)
            .expect("valid");
        assert!(matches!(
            &events(&mut s)[..],
            [ServerEvent::Event { attachments, .. }] if attachments == &vec![vec![1, 2, 3]]
        ));
    }

    #[test]
    fn server_acks_match_and_expire() {
        let mut s = connected();
        let a = s.emit_with_ack("/", "q", vec![], vec![], 100 * MS, Time::ZERO);
        let b = s.emit_with_ack("/", "q", vec![json!(1)], vec![], 50 * MS, Time::ZERO);
        assert_eq!(
            drain(&mut s),
            vec![text(r#"420["q"]"#), text(r#"421["q",1]"#)]
        );
        assert_eq!(s.poll_timeout(), Some(50 * MS));
        s.handle_timeout(50 * MS);
        assert_eq!(
            events(&mut s),
            vec![ServerEvent::AckTimeout {
                nsp: "/".into(),
                id: b
            }]
        );
        s.handle_frame(text(&format!("43{a}[\"ok\"]")), 60 * MS)
            .expect("valid");
        assert_eq!(
            events(&mut s),
            vec![ServerEvent::Ack {
                nsp: "/".into(),
                id: a,
                args: vec![json!("ok")],
                attachments: vec![]
            }]
        );
        // A late or unknown ack is ignored.
        s.handle_frame(text(&format!("43{b}[]")), 70 * MS)
            .expect("valid");
        assert!(events(&mut s).is_empty());
    }

    #[test]
    fn namespace_disconnect_keeps_session() {
        let mut s = connected();
        s.handle_frame(text("41"), MS).expect("valid");
        assert_eq!(
            events(&mut s),
            vec![ServerEvent::Disconnect { nsp: "/".into() }]
        );
        assert!(!s.is_closed());
        // An event for the namespace it left is a protocol error, as in Socket.IO.
        assert!(s.handle_frame(text(r#"42["x"]"#), MS).is_err());
        assert!(s.is_closed());
    }

    #[test]
    fn packets_for_namespaces_not_joined_close() {
        for bad in [
            r#"42["early"]"#,
            "41/other,",
            r#"44{"message":"x"}"#,
            r#"42/other,["x"]"#,
        ] {
            let mut s =
                ServerSession::new("abc".into(), config(), Transport::WebSocket, Time::ZERO);
            if bad.contains("other") {
                s.handle_frame(text("40"), Time::ZERO).expect("valid");
                s.accept_connect("/", "x");
            }
            assert!(s.handle_frame(text(bad), MS).is_err(), "{bad}");
            assert!(s.is_closed(), "{bad}");
        }
    }

    #[test]
    fn client_close_ends_session() {
        let mut s = connected();
        s.handle_frame(text("1"), MS).expect("valid");
        assert_eq!(
            events(&mut s),
            vec![ServerEvent::Closed(CloseReason::PeerClosed)]
        );
    }
}
