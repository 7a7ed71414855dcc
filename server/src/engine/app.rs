//! A bare Engine.IO application ([`EngineHandler`], mounted with [`EngineApp`]):
//! messages in and out of a session, no Socket.IO on top (the upstream
//! Engine.IO suite's echo server is one).

use std::sync::Arc;

use protocol::session::{
    CloseReason, EngineConfig, EngineEvent, EngineSession, Probe, ProtocolError, Transport,
};
use protocol::{Frame, Time};

use super::{DisconnectReason, Factory, Handshake, Link, LinkReceiver, Machine, SendError};

/// A message from or to a bare Engine.IO client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineMessage {
    Text(String),
    Binary(Vec<u8>),
}

/// A bare Engine.IO application.
pub trait EngineHandler: Send + Sync + 'static {
    fn on_open(&self, _socket: &EngineSocket) {}
    fn on_message(&self, socket: &EngineSocket, message: EngineMessage);
    fn on_close(&self, _socket: &EngineSocket, _reason: &DisconnectReason) {}
}

/// A bare Engine.IO client, as its handler sees it.
#[derive(Debug, Clone)]
pub struct EngineSocket {
    sid: Arc<str>,
    link: Arc<Link<EngineMessage>>,
}

impl EngineSocket {
    pub fn sid(&self) -> &str {
        &self.sid
    }

    /// Queues a message for the client.
    pub fn send(&self, message: EngineMessage) -> Result<(), SendError> {
        self.link.send(message)
    }

    /// Closes the session.
    pub fn close(&self) {
        self.link.close(DisconnectReason::ServerDisconnect);
    }
}

/// Mounts an [`EngineHandler`]: opens a session per client.
pub struct EngineApp<H> {
    handler: Arc<H>,
    config: EngineConfig,
    outbound_limit: usize,
    epoch: tokio::time::Instant,
}

impl<H: EngineHandler> EngineApp<H> {
    pub fn new(handler: H, config: EngineConfig, outbound_limit: usize) -> Self {
        EngineApp {
            handler: Arc::new(handler),
            config,
            outbound_limit,
            epoch: tokio::time::Instant::now(),
        }
    }
}

impl<H: EngineHandler> Factory for EngineApp<H> {
    type Machine = EngineMachine<H>;

    fn open(
        &self,
        sid: String,
        transport: Transport,
        _handshake: Handshake,
    ) -> (EngineMachine<H>, LinkReceiver<EngineMessage>) {
        let (link, rx) = Link::new(self.outbound_limit);
        let session = EngineSession::new(sid.clone(), self.config, transport, self.now());
        let socket = EngineSocket {
            sid: sid.into(),
            link,
        };
        self.handler.on_open(&socket);
        let machine = EngineMachine {
            session,
            handler: self.handler.clone(),
            socket,
            closing: None,
            told: false,
        };
        (machine, rx)
    }

    fn now(&self) -> Time {
        self.epoch.elapsed()
    }

    fn instant(&self, time: Time) -> tokio::time::Instant {
        self.epoch + time
    }

    fn engine_config(&self) -> EngineConfig {
        self.config
    }

    fn outbound_limit(&self) -> usize {
        self.outbound_limit
    }
}

/// A bare Engine.IO session driving an [`EngineHandler`].
pub struct EngineMachine<H> {
    session: EngineSession,
    handler: Arc<H>,
    socket: EngineSocket,
    closing: Option<DisconnectReason>,
    told: bool,
}

impl<H: EngineHandler> Machine for EngineMachine<H> {
    type Command = EngineMessage;

    fn engine(&self) -> &EngineSession {
        &self.session
    }

    fn handle_frame(&mut self, frame: Frame, now: Time) -> Result<(), ProtocolError> {
        self.session.handle_frame(frame, now)
    }

    fn handle_probe_frame(&mut self, frame: Frame) -> Result<Probe, ProtocolError> {
        self.session.handle_probe_frame(frame)
    }

    fn probe_failed(&mut self) {
        self.session.probe_failed();
    }

    fn handle_timeout(&mut self, now: Time) {
        self.session.handle_timeout(now);
    }

    fn handle_command(&mut self, command: EngineMessage, _now: Time) {
        match command {
            EngineMessage::Text(text) => self.session.send_message(text),
            EngineMessage::Binary(bytes) => self.session.send_binary(bytes),
        }
    }

    fn close(&mut self, reason: DisconnectReason) {
        self.closing.get_or_insert(reason);
        self.session.close(CloseReason::LocalClose);
    }

    fn transport_closed(&mut self, reason: CloseReason) {
        self.session.abort(reason);
    }

    fn dispatch(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                EngineEvent::Message(text) => self
                    .handler
                    .on_message(&self.socket, EngineMessage::Text(text)),
                EngineEvent::Binary(bytes) => self
                    .handler
                    .on_message(&self.socket, EngineMessage::Binary(bytes)),
                EngineEvent::Closed(_) if !self.told => {
                    self.told = true;
                    let reason = self.reason();
                    self.handler.on_close(&self.socket, &reason);
                }
                EngineEvent::Closed(_) => {}
            }
        }
    }

    fn poll_timeout(&self) -> Option<Time> {
        self.session.poll_timeout()
    }

    fn poll_transmit(&mut self) -> Option<Frame> {
        self.session.poll_transmit()
    }

    fn reason(&self) -> DisconnectReason {
        DisconnectReason::of(self.closing.as_ref(), self.session.close_reason())
    }
}
