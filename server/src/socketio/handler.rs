//! What an application implements and receives: [`Handler`] (one per
//! namespace), the events it gets ([`IncomingEvent`], [`ConnectRequest`]) and
//! the acks it answers or waits for ([`AckReply`], [`AckResponse`], [`AckError`]).

use std::sync::Arc;
use std::time::Duration;

use protocol::event::{Event, EventError};
use protocol::{Args, socketio};
use serde_json::Value;
use thiserror::Error;

use super::Io;
use super::socket::{Connection, Outbound, Socket};
use crate::engine::{DisconnectReason, Handshake, SendError};

/// Why an emit with ack got no reply.
#[derive(Debug, Error)]
pub enum AckError {
    #[error("no ack within {0:?}")]
    Timeout(Duration),
    #[error("the connection closed before the ack arrived")]
    Closed,
    #[error(transparent)]
    Send(#[from] SendError),
}

/// A reply to an ack request.
#[derive(Debug, Clone, PartialEq)]
pub struct AckResponse {
    pub args: Vec<Value>,
    pub attachments: Vec<Vec<u8>>,
}

/// An event received from a client.
#[derive(Debug)]
pub struct IncomingEvent {
    pub name: String,
    /// As they arrived: parsed into values only if read ([`Args::values`]),
    /// sent back as they came by an echo.
    pub args: Args,
    pub attachments: Vec<Vec<u8>>,
    /// Set when the client asked for an ack.
    pub ack: Option<AckReply>,
}

impl IncomingEvent {
    /// Reads the payload as typed event `E`.
    pub fn decode<E: Event>(&self) -> Result<E::Payload, EventError> {
        self.args.decode::<E>()
    }
}

/// The means to answer an event that asked for an ack. Answer at most once
/// (enforced: `send` consumes it).
#[derive(Debug)]
pub struct AckReply {
    pub(crate) id: u64,
    pub(crate) nsp: String,
    pub(crate) conn: Arc<Connection>,
}

impl AckReply {
    /// Answers with `args`: values, or the [`Args`] of an event as they came.
    pub fn send(self, args: impl Into<Args>) -> Result<(), SendError> {
        self.send_with_attachments(args, Vec::new())
    }

    pub fn send_with_attachments(
        self,
        args: impl Into<Args>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), SendError> {
        let frame = socketio::ack_frame(&self.nsp, self.id, &args.into(), attachments.len());
        crate::metrics::metrics().acks_sent.inc();
        self.conn.send(Outbound::encoded(frame, &attachments))
    }
}

/// A client asking to join a namespace, for [`Handler::authorize`].
#[derive(Debug)]
pub struct ConnectRequest<'a> {
    pub nsp: &'a str,
    /// The CONNECT auth payload (`{}` when none was sent).
    pub auth: &'a Value,
    pub handshake: &'a Handshake,
}

/// An application's behaviour in one namespace. Methods run on the connection's
/// task: keep them short and spawn for anything slow.
pub trait Handler: Send + Sync + 'static {
    /// Connect middleware: `Err(message)` refuses the client with CONNECT_ERROR
    /// `{"message": message}`.
    fn authorize(&self, _request: &ConnectRequest<'_>) -> Result<(), String> {
        Ok(())
    }

    /// The client joined the namespace.
    fn on_connect(&self, _socket: &Socket) {}

    /// The client emitted an event.
    fn on_event(&self, socket: &Socket, event: IncomingEvent);

    /// The client left the namespace, for `reason`.
    fn on_disconnect(&self, _socket: &Socket, _reason: &DisconnectReason) {}

    /// Another server of the cluster emitted an event for the servers
    /// (Socket.IO's `serverSideEmit`).
    fn on_server_side_emit(&self, _io: &Arc<Io>, _event: ServerSideEvent) {}
}

/// An event from another server of the cluster (`io.serverSideEmit`).
#[derive(Debug)]
pub struct ServerSideEvent {
    pub name: String,
    pub args: Vec<Value>,
    /// Set when the sender waits for an answer: call it once, with one value.
    pub ack: Option<ServerSideAck>,
}

/// The means to answer a server-side emit that asked for an ack.
pub struct ServerSideAck(pub(crate) Box<dyn FnOnce(Value) + Send>);

impl ServerSideAck {
    /// Answers with `value` (the sender gets it among the others' answers).
    pub fn send(self, value: Value) {
        (self.0)(value);
    }
}

impl std::fmt::Debug for ServerSideAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerSideAck")
    }
}
