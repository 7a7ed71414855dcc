//! The server side of a bare Engine.IO v4 session: handshake, heartbeat, messages,
//! close, and the upgrade from long-polling to WebSocket.
//!
//! Heartbeat: the server pings `pingInterval` after the open packet (not at once),
//! then `pingInterval` after each pong; a pong must come within `pingTimeout` or
//! the session closes. A client-sent ping is a protocol error.
//!
//! Upgrade: a session opened over polling offers `"upgrades":["websocket"]`. The
//! client opens a WebSocket with the sid and sends `2probe` on it
//! ([`EngineSession::handle_probe_frame`] answers `3probe` for that socket; while
//! [`EngineSession::is_probing`], the driver answers a pending GET with a noop `6`
//! so the client can pause polling); then `5` completes the upgrade:
//! from then on [`EngineSession::transport`] is WebSocket and every queued frame goes
//! out there, in order.

use std::collections::VecDeque;
use std::time::Duration;

use super::{CloseReason, ProtocolError, millis};
use crate::Time;
use crate::engineio::{self, Frame, OpenPacket};

/// The transports of Engine.IO v4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling,
    WebSocket,
}

/// Engine.IO settings, announced in the open packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Largest message (bytes) accepted from the client.
    pub max_payload: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
        }
    }
}

/// What the layer above learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    Message(String),
    Binary(Vec<u8>),
    /// The session ended; nothing more will happen.
    Closed(CloseReason),
}

/// What a frame on a WebSocket being probed for an upgrade means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// Send this frame (`3probe`) on the probing WebSocket.
    Reply(Frame),
    /// The upgrade is complete: the WebSocket is now the session's transport.
    Upgraded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpgradeState {
    /// On polling, no probe yet.
    Available,
    /// A WebSocket answered the probe; waiting for `5`.
    Probing,
    /// On WebSocket (from the start or after an upgrade).
    Done,
}

/// One Engine.IO session, seen from the server.
#[derive(Debug)]
pub struct EngineSession {
    sid: String,
    config: EngineConfig,
    upgrade: UpgradeState,
    next_ping: Option<Time>,
    pong_deadline: Option<Time>,
    outbox: VecDeque<Frame>,
    events: VecDeque<EngineEvent>,
    closed: Option<CloseReason>,
}

impl EngineSession {
    /// Opens a session over `transport`; the open packet is the first frame to send.
    pub fn new(sid: String, config: EngineConfig, transport: Transport, now: Time) -> Self {
        let (upgrades, upgrade) = match transport {
            Transport::Polling => (vec!["websocket".to_owned()], UpgradeState::Available),
            Transport::WebSocket => (Vec::new(), UpgradeState::Done),
        };
        let open = OpenPacket {
            sid: sid.clone(),
            upgrades,
            ping_interval: millis(config.ping_interval),
            ping_timeout: millis(config.ping_timeout),
            max_payload: config.max_payload as u64,
        };
        let mut outbox = VecDeque::new();
        outbox.push_back(engineio::Packet::Open(open).into_frame());
        EngineSession {
            sid,
            config,
            upgrade,
            next_ping: Some(now + config.ping_interval),
            pong_deadline: None,
            outbox,
            events: VecDeque::new(),
            closed: None,
        }
    }

    pub fn sid(&self) -> &str {
        &self.sid
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The transport frames currently go out on.
    pub fn transport(&self) -> Transport {
        if self.upgrade == UpgradeState::Done {
            Transport::WebSocket
        } else {
            Transport::Polling
        }
    }

    /// Whether a WebSocket has answered the probe and the upgrade awaits `5`.
    pub fn is_probing(&self) -> bool {
        self.upgrade == UpgradeState::Probing
    }

    /// Whether a WebSocket may start probing now (polling, no probe under way).
    pub fn can_upgrade(&self) -> bool {
        self.closed.is_none() && self.upgrade == UpgradeState::Available
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_some()
    }

    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.closed.as_ref()
    }

    /// A frame arrived on the session's transport at `now`. A protocol violation
    /// ends the session and is returned.
    pub fn handle_frame(&mut self, frame: Frame, now: Time) -> Result<(), ProtocolError> {
        if self.closed.is_some() {
            return Ok(());
        }
        let result = self.process(frame, now);
        if let Err(e) = &result {
            self.finish(CloseReason::Protocol(e.clone()));
        }
        result
    }

    fn process(&mut self, frame: Frame, now: Time) -> Result<(), ProtocolError> {
        if frame.len() > self.config.max_payload {
            return Err(ProtocolError::PayloadTooLarge {
                size: frame.len(),
                max: self.config.max_payload,
            });
        }
        match engineio::Packet::decode(frame)? {
            engineio::Packet::Pong(_) => {
                if self.pong_deadline.take().is_some() {
                    self.next_ping = Some(now + self.config.ping_interval);
                }
            }
            engineio::Packet::Ping(_) => {
                return Err(ProtocolError::Unexpected(
                    "ping from the client (in v4 only the server pings)",
                ));
            }
            engineio::Packet::Close => self.finish(CloseReason::PeerClosed),
            engineio::Packet::Message(text) => self.events.push_back(EngineEvent::Message(text)),
            engineio::Packet::Binary(bytes) => self.events.push_back(EngineEvent::Binary(bytes)),
            engineio::Packet::Noop => {}
            engineio::Packet::Upgrade => {
                return Err(ProtocolError::Unexpected("upgrade outside a probe"));
            }
            engineio::Packet::Open(_) => {
                return Err(ProtocolError::Unexpected("open from the client"));
            }
        }
        Ok(())
    }

    /// A frame arrived on a WebSocket probing this session for an upgrade. An error
    /// means the probe failed: close that WebSocket; the session carries on.
    pub fn handle_probe_frame(&mut self, frame: Frame) -> Result<Probe, ProtocolError> {
        if self.closed.is_some() {
            return Err(ProtocolError::Unexpected("probe on a closed session"));
        }
        match (self.upgrade, engineio::Packet::decode(frame)?) {
            (UpgradeState::Available, engineio::Packet::Ping(data)) if data == "probe" => {
                self.upgrade = UpgradeState::Probing;
                Ok(Probe::Reply(engineio::Packet::Pong(data).into_frame()))
            }
            (UpgradeState::Probing, engineio::Packet::Upgrade) => {
                self.upgrade = UpgradeState::Done;
                Ok(Probe::Upgraded)
            }
            (UpgradeState::Done, _) => Err(ProtocolError::Unexpected("session already upgraded")),
            _ => Err(ProtocolError::Unexpected("invalid upgrade probe")),
        }
    }

    /// The probing WebSocket went away before `5`: polling goes on, and a later
    /// probe may try again.
    pub fn probe_failed(&mut self) {
        if self.upgrade == UpgradeState::Probing {
            self.upgrade = UpgradeState::Available;
        }
    }

    /// Queues a text message.
    pub fn send_message(&mut self, text: String) {
        self.send_frame(engineio::Packet::Message(text).into_frame());
    }

    /// Queues a binary message.
    pub fn send_binary(&mut self, bytes: Vec<u8>) {
        self.send_frame(Frame::Binary(bytes));
    }

    /// Queues an already encoded frame.
    pub fn send_frame(&mut self, frame: Frame) {
        if self.closed.is_none() {
            self.outbox.push_back(frame);
        }
    }

    /// Closes from our side for `reason`; the close packet is the last frame.
    pub fn close(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            self.outbox.push_back(engineio::Packet::Close.into_frame());
            self.finish(reason);
        }
    }

    /// Ends the session without a close packet (the transport failed, or the
    /// layer above found the peer's input invalid).
    pub fn abort(&mut self, reason: CloseReason) {
        self.finish(reason);
    }

    /// Time `now` was reached: a due ping goes out, a missed pong closes.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.closed.is_some() {
            return;
        }
        if self.pong_deadline.is_some_and(|d| now >= d) {
            self.finish(CloseReason::PingTimeout);
            return;
        }
        if self.next_ping.is_some_and(|t| now >= t) {
            self.next_ping = None;
            self.pong_deadline = Some(now + self.config.ping_timeout);
            self.outbox
                .push_back(engineio::Packet::Ping(String::new()).into_frame());
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.closed.is_some() {
            return None;
        }
        match (self.next_ping, self.pong_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next frame to send on the session's transport, in order.
    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.outbox.pop_front()
    }

    /// How many frames wait to be sent.
    pub fn pending_transmits(&self) -> usize {
        self.outbox.len()
    }

    pub fn poll_event(&mut self) -> Option<EngineEvent> {
        self.events.pop_front()
    }

    fn finish(&mut self, reason: CloseReason) {
        if self.closed.is_none() {
            self.closed = Some(reason.clone());
            self.next_ping = None;
            self.pong_deadline = None;
            self.events.push_back(EngineEvent::Closed(reason));
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

    fn config() -> EngineConfig {
        EngineConfig {
            ping_interval: 300 * MS,
            ping_timeout: 200 * MS,
            max_payload: 100,
        }
    }

    fn drain(s: &mut EngineSession) -> Vec<Frame> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    fn events(s: &mut EngineSession) -> Vec<EngineEvent> {
        std::iter::from_fn(|| s.poll_event()).collect()
    }

    #[test]
    fn polling_session_offers_websocket() {
        let mut s = EngineSession::new("a".into(), config(), Transport::Polling, Time::ZERO);
        assert_eq!(
            drain(&mut s),
            vec![text(
                r#"0{"sid":"a","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":100}"#
            )]
        );
        assert_eq!(s.transport(), Transport::Polling);
        assert!(s.can_upgrade());
    }

    #[test]
    fn messages_both_ways() {
        let mut s = EngineSession::new("a".into(), config(), Transport::WebSocket, Time::ZERO);
        drain(&mut s);
        s.handle_frame(text("4hello"), MS).expect("valid");
        s.handle_frame(Frame::Binary(vec![1, 2]), MS)
            .expect("valid");
        assert_eq!(
            events(&mut s),
            vec![
                EngineEvent::Message("hello".into()),
                EngineEvent::Binary(vec![1, 2])
            ]
        );
        s.send_message("back".into());
        s.send_binary(vec![3]);
        assert_eq!(drain(&mut s), vec![text("4back"), Frame::Binary(vec![3])]);
    }

    #[test]
    fn heartbeat() {
        let mut s = EngineSession::new("a".into(), config(), Transport::WebSocket, Time::ZERO);
        drain(&mut s);
        s.handle_timeout(299 * MS);
        assert!(drain(&mut s).is_empty());
        s.handle_timeout(300 * MS);
        assert_eq!(drain(&mut s), vec![text("2")]);
        s.handle_frame(text("3"), 400 * MS).expect("valid");
        assert_eq!(s.poll_timeout(), Some(700 * MS));
        s.handle_timeout(700 * MS);
        assert_eq!(drain(&mut s), vec![text("2")]);
        s.handle_timeout(900 * MS);
        assert_eq!(s.close_reason(), Some(&CloseReason::PingTimeout));
    }

    #[test]
    fn upgrade_from_polling() {
        let mut s = EngineSession::new("a".into(), config(), Transport::Polling, Time::ZERO);
        drain(&mut s);
        s.send_message("queued".into());
        assert_eq!(
            s.handle_probe_frame(text("2probe")),
            Ok(Probe::Reply(text("3probe")))
        );
        assert!(!s.can_upgrade(), "one probe at a time");
        assert!(s.is_probing());
        // Queued frames stay queued: they go out on whichever transport comes next.
        assert_eq!(s.pending_transmits(), 1);
        assert_eq!(s.transport(), Transport::Polling);
        assert_eq!(s.handle_probe_frame(text("5")), Ok(Probe::Upgraded));
        assert_eq!(s.transport(), Transport::WebSocket);
        assert_eq!(drain(&mut s), vec![text("4queued")]);
        assert!(s.handle_probe_frame(text("2probe")).is_err());
    }

    #[test]
    fn bad_probe_is_refused_without_closing() {
        let mut s = EngineSession::new("a".into(), config(), Transport::Polling, Time::ZERO);
        assert!(s.handle_probe_frame(text("5")).is_err());
        assert!(s.handle_probe_frame(text("4hi")).is_err());
        assert!(!s.is_closed());
        s.handle_probe_frame(text("2probe")).expect("probe");
        s.probe_failed();
        assert!(s.can_upgrade());
    }

    #[test]
    fn protocol_errors_close() {
        for bad in ["2", "5", "9", "", "0{}"] {
            let mut s = EngineSession::new("a".into(), config(), Transport::WebSocket, Time::ZERO);
            assert!(s.handle_frame(text(bad), MS).is_err(), "{bad:?}");
            assert!(s.is_closed());
        }
        let mut s = EngineSession::new("a".into(), config(), Transport::WebSocket, Time::ZERO);
        assert!(matches!(
            s.handle_frame(text(&"4".repeat(101)), MS),
            Err(ProtocolError::PayloadTooLarge {
                size: 101,
                max: 100
            })
        ));
    }

    #[test]
    fn close_sends_close_packet_last() {
        let mut s = EngineSession::new("a".into(), config(), Transport::WebSocket, Time::ZERO);
        drain(&mut s);
        s.send_message("bye".into());
        s.close(CloseReason::LocalClose);
        s.send_message("too late".into());
        assert_eq!(drain(&mut s), vec![text("4bye"), text("1")]);
        assert_eq!(
            events(&mut s),
            vec![EngineEvent::Closed(CloseReason::LocalClose)]
        );
        assert_eq!(s.poll_timeout(), None);
    }
}
