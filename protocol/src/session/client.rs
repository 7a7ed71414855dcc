//! The client side of a Socket.IO connection to one namespace, across as many
//! Engine.IO sessions (transports) as reconnection takes.
//!
//! Reconnection (when [`ClientConfig::reconnection`] is set): when the transport
//! is lost the session waits a [`Backoff`] delay ([`ClientEvent::Reconnecting`]),
//! then asks its driver for a new transport ([`ClientEvent::OpenTransport`]);
//! an explicit [`ClientSession::disconnect`] cancels it. Connection state
//! recovery: the server's private session id (`pid`) and the offset of the last
//! event received are tracked and presented in the next CONNECT, and
//! [`ClientEvent::Connected`] says whether the server recovered the session.
//!
//! After the open packet the client sends CONNECT (with its auth) for its
//! namespace, answers every ping with a pong, and declares the server dead when
//! neither the open packet nor a ping has been seen for `pingInterval + pingTimeout`.
//! Emits made before the namespace is connected wait in a bounded buffer and go out,
//! in order, once it is. Acks are matched to their [`AckId`] or time out.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use serde_json::Value;
use thiserror::Error;

use super::backoff::{Backoff, Rng};
use super::{AckId, CloseReason, ProtocolError};
use crate::Time;
use crate::engineio::{self, Frame, OpenPacket};
use crate::event::{self, Event, EventError};
use crate::socketio::{self, Decoder, Limits};

/// Client settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// The namespace to join, `/` by default.
    pub namespace: String,
    /// The CONNECT auth payload.
    pub auth: Option<Value>,
    /// How long an emit waits for its ack by default.
    pub ack_timeout: Duration,
    /// Most emits kept while not connected; more are refused with
    /// [`EmitError::BufferFull`] (the caller sees it at once, nothing is dropped silently).
    pub max_buffered: usize,
    pub limits: Limits,
    /// Reconnect after losing the transport; `None` ends the session instead.
    pub reconnection: Option<Backoff>,
    /// Seed of the jitter's random numbers (the driver supplies real randomness).
    pub seed: u64,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            namespace: socketio::MAIN_NAMESPACE.to_owned(),
            auth: None,
            ack_timeout: Duration::from_secs(10),
            max_buffered: 1024,
            limits: Limits::default(),
            reconnection: None,
            seed: 0x9E37_79B9_7F4A_7C15,
        }
    }
}

/// Where the session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientState {
    /// Waiting for the server's open packet.
    Opening,
    /// Engine.IO open; CONNECT sent, waiting for the answer.
    Connecting,
    /// Joined the namespace under this Socket.IO id.
    Connected {
        sid: String,
    },
    /// Transport lost; attempt `attempt` (0 for the first) is due at `at`.
    Reconnecting {
        attempt: u32,
        at: Time,
    },
    Closed,
}

/// What the application learns from the session.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// The Engine.IO handshake: session id and heartbeat settings.
    Open(OpenPacket),
    /// The namespace accepted us. `recovered`: the server resumed our previous
    /// session (same id, rooms, and the events missed meanwhile follow).
    Connected { sid: String, recovered: bool },
    /// The namespace refused us (for example, bad auth).
    ConnectError { message: String, data: Value },
    /// An event from the server; `id` is set when it wants an ack ([`ClientSession::ack`]).
    Event {
        id: Option<AckId>,
        name: String,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    },
    /// The reply to one of our emits.
    Ack {
        id: AckId,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    },
    /// No reply in time for ack `id`.
    AckTimeout { id: AckId },
    /// The server removed us from the namespace.
    Disconnected,
    /// The transport was lost for this reason; reconnection follows.
    TransportLost(CloseReason),
    /// Attempt `attempt` (0 for the first) will start after `delay`.
    Reconnecting { attempt: u32, delay: Duration },
    /// The driver should open a new transport now (then feed its frames as usual,
    /// or call `transport_closed` if it cannot be opened).
    OpenTransport { attempt: u32 },
    /// The session ended for good.
    Closed(CloseReason),
}

/// Why an emit was refused.
#[derive(Debug, Error)]
pub enum EmitError {
    #[error("the session is closed")]
    Closed,
    #[error("{0} emits already wait for the connection; emit refused")]
    BufferFull(usize),
    #[error(transparent)]
    Event(#[from] EventError),
}

/// How many recent recovery offsets a session remembers to drop repeated
/// events: more than a replay that overlaps what came live can repeat.
const RECENT_OFFSETS: usize = 256;

/// One connection to a server, seen from the client.
#[derive(Debug)]
pub struct ClientSession {
    config: ClientConfig,
    state: ClientState,
    decoder: Decoder,
    open: Option<OpenPacket>,
    server_deadline: Option<Time>,
    next_ack_id: AckId,
    acks: BTreeMap<AckId, Time>,
    ack_deadlines: BTreeSet<(Time, AckId)>,
    buffered: VecDeque<socketio::Packet>,
    outbox: VecDeque<Frame>,
    events: VecDeque<ClientEvent>,
    /// The server's private session id, for recovery.
    pid: Option<String>,
    /// The offset of the last event received, for recovery.
    offset: Option<String>,
    /// The offsets of the last [`RECENT_OFFSETS`] events handed on, oldest
    /// first: an event that comes again (a server that replays what it had
    /// delivered live) is dropped, so the application gets each once.
    recent: VecDeque<String>,
    /// Events dropped as repeats.
    repeats: u64,
    /// Reconnection attempts since the last successful connect.
    attempt: u32,
    rng: Rng,
}

impl ClientSession {
    /// A session waiting for the server's open packet (the transport is opening).
    pub fn new(config: ClientConfig) -> Self {
        let rng = Rng::new(config.seed);
        ClientSession {
            decoder: Decoder::new(config.limits),
            config,
            state: ClientState::Opening,
            open: None,
            server_deadline: None,
            next_ack_id: 0,
            acks: BTreeMap::new(),
            ack_deadlines: BTreeSet::new(),
            buffered: VecDeque::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            pid: None,
            offset: None,
            recent: VecDeque::new(),
            repeats: 0,
            attempt: 0,
            rng,
        }
    }

    /// The offset of the last event received (recovery), if any.
    pub fn last_offset(&self) -> Option<&str> {
        self.offset.as_deref()
    }

    /// How many events were dropped because their recovery offset had been
    /// seen already (a server replaying what it had delivered live).
    pub fn repeats_dropped(&self) -> u64 {
        self.repeats
    }

    /// The CONNECT payload: the configured auth, plus `pid` once the server has
    /// given us a session to recover, and `offset`, that of the last event handed
    /// to the application, once there is one. (A pid alone says that no event
    /// came since the socket joined: a duplex server resumes it from there; the
    /// official server needs an offset and starts afresh.)
    fn connect_data(&self) -> Option<Value> {
        let Some(pid) = &self.pid else {
            return self.config.auth.clone();
        };
        let mut map = match &self.config.auth {
            Some(Value::Object(map)) => map.clone(),
            _ => serde_json::Map::new(),
        };
        map.insert("pid".into(), Value::String(pid.clone()));
        if let Some(offset) = &self.offset {
            map.insert("offset".into(), Value::String(offset.clone()));
        }
        Some(Value::Object(map))
    }

    pub fn state(&self) -> &ClientState {
        &self.state
    }

    /// The server's open packet, once received.
    pub fn handshake(&self) -> Option<&OpenPacket> {
        self.open.as_ref()
    }

    pub fn is_connected(&self) -> bool {
        matches!(self.state, ClientState::Connected { .. })
    }

    /// A frame arrived from the server at `now`. A protocol violation closes the
    /// session and is returned.
    pub fn handle_frame(&mut self, frame: Frame, now: Time) -> Result<(), ProtocolError> {
        if !matches!(
            self.state,
            ClientState::Opening | ClientState::Connecting | ClientState::Connected { .. }
        ) {
            return Ok(());
        }
        match self.process_frame(frame, now) {
            Ok(()) => Ok(()),
            Err(err) => {
                self.lose(CloseReason::Protocol(err.clone()), now);
                Err(err)
            }
        }
    }

    fn process_frame(&mut self, frame: Frame, now: Time) -> Result<(), ProtocolError> {
        match engineio::Packet::decode(frame)? {
            engineio::Packet::Open(open) => {
                if self.state != ClientState::Opening {
                    return Err(ProtocolError::Unexpected("second open packet"));
                }
                self.server_deadline = Some(now + heartbeat_window(&open));
                self.open = Some(open.clone());
                self.state = ClientState::Connecting;
                self.events.push_back(ClientEvent::Open(open));
                let connect = socketio::Packet::Connect {
                    nsp: self.config.namespace.clone(),
                    data: self.connect_data(),
                };
                self.push_packet(&connect);
                Ok(())
            }
            engineio::Packet::Ping(data) => {
                if let Some(open) = &self.open {
                    self.server_deadline = Some(now + heartbeat_window(open));
                }
                self.outbox
                    .push_back(engineio::Packet::Pong(data).into_frame());
                Ok(())
            }
            engineio::Packet::Close => {
                self.lose(CloseReason::PeerClosed, now);
                Ok(())
            }
            engineio::Packet::Message(text) => {
                if let Some(packet) = self.decoder.feed_text(&text)? {
                    self.handle_packet(packet);
                }
                Ok(())
            }
            engineio::Packet::Binary(bytes) => {
                if let Some(packet) = self.decoder.feed_binary(bytes)? {
                    self.handle_packet(packet);
                }
                Ok(())
            }
            engineio::Packet::Pong(_) | engineio::Packet::Noop | engineio::Packet::Upgrade => {
                Ok(())
            }
        }
    }

    fn handle_packet(&mut self, packet: socketio::Packet) {
        use socketio::Packet as P;
        if packet.nsp() != self.config.namespace {
            return;
        }
        match packet {
            P::Connect { data, .. } => {
                let field = |name: &str| {
                    data.as_ref()
                        .and_then(|d| d.get(name))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                let sid = field("sid").unwrap_or_default();
                let pid = field("pid");
                let recovered = pid.is_some() && pid == self.pid;
                if !recovered {
                    // A fresh session: offsets of the old one mean nothing now.
                    self.offset = None;
                    self.recent.clear();
                }
                self.pid = pid;
                self.attempt = 0;
                self.state = ClientState::Connected { sid: sid.clone() };
                self.events
                    .push_back(ClientEvent::Connected { sid, recovered });
                while let Some(p) = self.buffered.pop_front() {
                    self.push_packet(&p);
                }
            }
            P::ConnectError { data, .. } => {
                let message = match &data {
                    Value::String(s) => s.clone(),
                    other => other
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("connection refused")
                        .to_owned(),
                };
                self.events
                    .push_back(ClientEvent::ConnectError { message, data });
            }
            P::Disconnect { .. } => {
                self.state = ClientState::Connecting;
                self.events.push_back(ClientEvent::Disconnected);
            }
            P::Event {
                id,
                name,
                args,
                attachments,
                ..
            } => {
                // Socket.IO's recovery convention: with a session to recover, every
                // event that asks for no ack carries its offset as last argument.
                // It is the session's business, not the application's: taken off.
                let mut args = args.into_values();
                if self.pid.is_some()
                    && id.is_none()
                    && let Some(Value::String(_)) = args.last()
                    && let Some(Value::String(offset)) = args.pop()
                {
                    if self.recent.contains(&offset) {
                        self.repeats += 1;
                        return;
                    }
                    if self.recent.len() == RECENT_OFFSETS {
                        self.recent.pop_front();
                    }
                    self.recent.push_back(offset.clone());
                    self.offset = Some(offset);
                }
                self.events.push_back(ClientEvent::Event {
                    id,
                    name,
                    args,
                    attachments,
                });
            }
            P::Ack {
                id,
                args,
                attachments,
                ..
            } => {
                if let Some(deadline) = self.acks.remove(&id) {
                    self.ack_deadlines.remove(&(deadline, id));
                    self.events.push_back(ClientEvent::Ack {
                        id,
                        args: args.into_values(),
                        attachments,
                    });
                }
            }
        }
    }

    /// Emits `name` with `args`; buffered until connected.
    pub fn emit(&mut self, name: &str, args: Vec<Value>) -> Result<(), EmitError> {
        let packet = socketio::Packet::event(&self.config.namespace, name, args);
        self.send_or_buffer(packet)
    }

    /// Emits typed event `E`.
    pub fn emit_event<E: Event>(&mut self, payload: &E::Payload) -> Result<(), EmitError> {
        self.emit(E::NAME, event::encode::<E>(payload)?)
    }

    /// Emits `name` asking for an ack: the reply comes as [`ClientEvent::Ack`] with
    /// the returned id, or [`ClientEvent::AckTimeout`] after the ack timeout
    /// (counted from now, buffered time included).
    pub fn emit_with_ack(
        &mut self,
        name: &str,
        args: Vec<Value>,
        now: Time,
    ) -> Result<AckId, EmitError> {
        self.emit_binary(name, args, Vec::new(), Some(now))
            .map(|id| id.expect("an ack was asked for"))
    }

    /// Emits `name` with binary `attachments` (referenced from `args` by
    /// [`socketio::placeholder`]s); with `ack_from: Some(now)` it asks for an ack
    /// and returns its id.
    pub fn emit_binary(
        &mut self,
        name: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
        ack_from: Option<Time>,
    ) -> Result<Option<AckId>, EmitError> {
        let id = ack_from.map(|_| self.next_ack_id);
        let packet = socketio::Packet::Event {
            nsp: self.config.namespace.clone(),
            id,
            name: name.to_owned(),
            args: args.into(),
            attachments,
        };
        self.send_or_buffer(packet)?;
        if let (Some(id), Some(now)) = (id, ack_from) {
            self.next_ack_id += 1;
            let deadline = now + self.config.ack_timeout;
            self.acks.insert(id, deadline);
            self.ack_deadlines.insert((deadline, id));
        }
        Ok(id)
    }

    /// Answers the server's event `id`.
    pub fn ack(&mut self, id: AckId, args: Vec<Value>) -> Result<(), EmitError> {
        self.ack_with_attachments(id, args, Vec::new())
    }

    /// Answers the server's event `id` with binary attachments.
    pub fn ack_with_attachments(
        &mut self,
        id: AckId,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), EmitError> {
        let packet = socketio::Packet::Ack {
            nsp: self.config.namespace.clone(),
            id,
            args: args.into(),
            attachments,
        };
        self.send_or_buffer(packet)
    }

    fn send_or_buffer(&mut self, packet: socketio::Packet) -> Result<(), EmitError> {
        match self.state {
            ClientState::Closed => Err(EmitError::Closed),
            ClientState::Connected { .. } => {
                self.push_packet(&packet);
                Ok(())
            }
            _ if self.buffered.len() >= self.config.max_buffered => {
                Err(EmitError::BufferFull(self.buffered.len()))
            }
            _ => {
                self.buffered.push_back(packet);
                Ok(())
            }
        }
    }

    /// Leaves the namespace and closes the session for good (cancelling any
    /// reconnection).
    pub fn disconnect(&mut self) {
        if self.is_connected() {
            self.push_packet(&socketio::Packet::Disconnect {
                nsp: self.config.namespace.clone(),
            });
        }
        if matches!(
            self.state,
            ClientState::Connecting | ClientState::Connected { .. }
        ) {
            self.outbox.push_back(engineio::Packet::Close.into_frame());
        }
        self.finish(CloseReason::LocalClose);
    }

    /// The transport closed, failed, or could not be opened, at `now`.
    /// Reconnection follows if configured; otherwise the session ends.
    pub fn transport_closed(&mut self, reason: CloseReason, now: Time) {
        if matches!(
            self.state,
            ClientState::Opening | ClientState::Connecting | ClientState::Connected { .. }
        ) {
            self.lose(reason, now);
        }
    }

    /// The transport is gone: schedule the next attempt, or end.
    fn lose(&mut self, reason: CloseReason, now: Time) {
        let Some(backoff) = self.config.reconnection else {
            self.finish(reason);
            return;
        };
        if reason == CloseReason::LocalClose || !backoff.allows(self.attempt) {
            self.finish(reason);
            return;
        }
        let delay = backoff.delay(self.attempt, self.rng.next_f64());
        let attempt = self.attempt;
        self.attempt += 1;
        self.state = ClientState::Reconnecting {
            attempt,
            at: now + delay,
        };
        self.server_deadline = None;
        self.open = None;
        self.decoder = Decoder::new(self.config.limits);
        // Frames not yet handed to the dead transport are dropped: their events
        // were emitted while "connected" and are not retried (acks time out).
        self.outbox.clear();
        self.events.push_back(ClientEvent::TransportLost(reason));
        self.events
            .push_back(ClientEvent::Reconnecting { attempt, delay });
    }

    /// Starts the pending reconnection attempt at once (the network just came back),
    /// without waiting out its delay. Nothing else happens early: ack deadlines
    /// keep their time.
    pub fn reconnect_now(&mut self) {
        if let ClientState::Reconnecting { attempt, .. } = self.state {
            self.state = ClientState::Opening;
            self.events
                .push_back(ClientEvent::OpenTransport { attempt });
        }
    }

    /// Time `now` was reached: checks the server's liveness and ack deadlines,
    /// and starts a due reconnection attempt.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.state == ClientState::Closed {
            return;
        }
        if let ClientState::Reconnecting { attempt, at } = self.state
            && now >= at
        {
            self.state = ClientState::Opening;
            self.events
                .push_back(ClientEvent::OpenTransport { attempt });
        }
        while let Some(&(deadline, id)) = self.ack_deadlines.first() {
            if deadline > now {
                break;
            }
            self.ack_deadlines.pop_first();
            self.acks.remove(&id);
            self.events.push_back(ClientEvent::AckTimeout { id });
        }
        if self.server_deadline.is_some_and(|d| now >= d) {
            self.lose(CloseReason::ServerSilent, now);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.state == ClientState::Closed {
            return None;
        }
        let reconnect = match self.state {
            ClientState::Reconnecting { at, .. } => Some(at),
            _ => None,
        };
        [
            self.server_deadline,
            self.ack_deadlines.first().map(|&(d, _)| d),
            reconnect,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Frame> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    fn push_packet(&mut self, packet: &socketio::Packet) {
        let (text, attachments) = packet.encode();
        self.outbox
            .push_back(engineio::Packet::Message(text).into_frame());
        for a in attachments {
            self.outbox.push_back(Frame::Binary(a.clone()));
        }
    }

    fn finish(&mut self, reason: CloseReason) {
        if self.state == ClientState::Closed {
            return;
        }
        self.state = ClientState::Closed;
        self.server_deadline = None;
        // Acks that can no longer complete fail now rather than at their deadline.
        for id in std::mem::take(&mut self.acks).into_keys() {
            self.events.push_back(ClientEvent::AckTimeout { id });
        }
        self.ack_deadlines.clear();
        self.events.push_back(ClientEvent::Closed(reason));
    }
}

fn heartbeat_window(open: &OpenPacket) -> Duration {
    Duration::from_millis(open.ping_interval.saturating_add(open.ping_timeout))
}

#[cfg(test)]
mod tests;
