//! The Socket.IO layer: namespaces and their handlers, sockets, broadcast, acks.
//!
//! An application registers a [`Handler`] per namespace with [`IoBuilder`]. Each
//! client connection (driven by a transport task) admits the client to namespaces,
//! creating a [`Socket`] per namespace, and hands the handler that socket's events.
//!
//! Every socket's outbound traffic goes through its connection's bounded queue
//! ([`crate::config::Config::outbound_queue`] frames). The policy when it is full:
//! the client is not keeping up, so it is disconnected with
//! [`DisconnectReason::SlowClient`] — never buffered without bound, never silently
//! dropped while the connection carries on.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use protocol::event::{self, Event, EventError};
use protocol::session::CloseReason;
use protocol::{Frame, Time, engineio, socketio};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::config::SessionSettings;

/// What the application sees of the HTTP request that opened the connection.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// The Engine.IO session id.
    pub sid: String,
    /// Request target, e.g. `/socket.io/?EIO=4&transport=websocket`.
    pub uri: String,
    /// `HTTP/1.1`.
    pub version: String,
    /// Request headers, names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    /// The `Sec-WebSocket-Accept` the server answered with.
    pub websocket_accept: Option<String>,
    pub remote: Option<SocketAddr>,
}

impl Handshake {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Why a socket left its namespace. Every disconnect reaches the application
/// through [`Handler::on_disconnect`] with one of these.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DisconnectReason {
    #[error("client left the namespace")]
    ClientNamespaceDisconnect,
    #[error("client closed the connection")]
    ClientClosed,
    #[error("ping timeout")]
    PingTimeout,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("message too large: {0}")]
    MessageTooLarge(String),
    #[error("client too slow: its outbound queue is full")]
    SlowClient,
    #[error("server shutting down")]
    ServerShutdown,
    #[error("disconnected by the server")]
    ServerDisconnect,
}

impl From<&CloseReason> for DisconnectReason {
    fn from(reason: &CloseReason) -> Self {
        use protocol::session::ProtocolError;
        match reason {
            CloseReason::PeerClosed => DisconnectReason::ClientClosed,
            CloseReason::LocalClose => DisconnectReason::ServerDisconnect,
            CloseReason::PingTimeout | CloseReason::ServerSilent => DisconnectReason::PingTimeout,
            CloseReason::ConnectTimeout => DisconnectReason::Protocol(reason.to_string()),
            CloseReason::Protocol(ProtocolError::PayloadTooLarge { .. }) => {
                DisconnectReason::MessageTooLarge(reason.to_string())
            }
            CloseReason::Protocol(e) => DisconnectReason::Protocol(e.to_string()),
            CloseReason::Transport(e) => DisconnectReason::Transport(e.clone()),
        }
    }
}

/// Why an emit did not go out.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("the connection is closed")]
    Closed,
    #[error("the client's outbound queue is full; it is being disconnected")]
    QueueFull,
    #[error(transparent)]
    Event(#[from] EventError),
}

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

/// A request from a connection task to itself or from elsewhere in the server.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// An already encoded frame (a broadcast, encoded once for every recipient).
    Frame(Frame),
    Packet(socketio::Packet),
    EmitWithAck {
        packet: socketio::Packet,
        timeout: Duration,
        reply: oneshot::Sender<Result<AckResponse, AckError>>,
    },
    DisconnectNamespace(String),
}

/// The sending half of one client connection, shared by its sockets.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) tx: mpsc::Sender<Outbound>,
    /// Cancelled to make the connection task close the connection.
    pub(crate) kill: CancellationToken,
    pub(crate) kill_reason: Mutex<Option<DisconnectReason>>,
}

impl Connection {
    pub(crate) fn send(&self, item: Outbound) -> Result<(), SendError> {
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Closed),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.close(DisconnectReason::SlowClient);
                Err(SendError::QueueFull)
            }
        }
    }

    /// Asks the connection task to close the connection for `reason`.
    pub(crate) fn close(&self, reason: DisconnectReason) {
        let mut slot = self
            .kill_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert(reason);
        self.kill.cancel();
    }
}

/// A client's presence in one namespace: what handlers use to talk to it.
#[derive(Clone)]
pub struct Socket {
    inner: Arc<SocketInner>,
}

struct SocketInner {
    id: String,
    nsp: String,
    auth: Value,
    handshake: Arc<Handshake>,
    conn: Arc<Connection>,
    io: Weak<Io>,
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.inner.id)
            .field("nsp", &self.inner.nsp)
            .finish_non_exhaustive()
    }
}

impl Socket {
    pub(crate) fn new(
        id: String,
        nsp: String,
        auth: Value,
        handshake: Arc<Handshake>,
        conn: Arc<Connection>,
        io: Weak<Io>,
    ) -> Self {
        Socket {
            inner: Arc::new(SocketInner {
                id,
                nsp,
                auth,
                handshake,
                conn,
                io,
            }),
        }
    }

    /// The Socket.IO id (not the Engine.IO session id).
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn nsp(&self) -> &str {
        &self.inner.nsp
    }

    /// The CONNECT auth payload (`{}` when the client sent none).
    pub fn auth(&self) -> &Value {
        &self.inner.auth
    }

    /// The HTTP request that opened the connection.
    pub fn handshake(&self) -> &Handshake {
        &self.inner.handshake
    }

    /// The server this socket belongs to.
    pub fn io(&self) -> Arc<Io> {
        self.inner
            .io
            .upgrade()
            .expect("the Io outlives its connections: each connection task holds it")
    }

    /// Emits typed event `E` to this client.
    pub fn emit<E: Event>(&self, payload: &E::Payload) -> Result<(), SendError> {
        self.emit_raw(E::NAME, event::encode::<E>(payload)?)
    }

    /// Emits event `name` with `args` to this client.
    pub fn emit_raw(&self, name: &str, args: Vec<Value>) -> Result<(), SendError> {
        self.emit_with_attachments(name, args, Vec::new())
    }

    /// Emits an event carrying binary attachments (referenced from `args` by
    /// [`socketio::placeholder`]s).
    pub fn emit_with_attachments(
        &self,
        name: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), SendError> {
        self.inner
            .conn
            .send(Outbound::Packet(socketio::Packet::Event {
                nsp: self.inner.nsp.clone(),
                id: None,
                name: name.to_owned(),
                args,
                attachments,
            }))
    }

    /// Emits `name` and waits for the client's ack, at most `timeout`.
    pub async fn emit_with_ack(
        &self,
        name: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<AckResponse, AckError> {
        let (reply, response) = oneshot::channel();
        self.inner.conn.send(Outbound::EmitWithAck {
            packet: socketio::Packet::Event {
                nsp: self.inner.nsp.clone(),
                id: None,
                name: name.to_owned(),
                args,
                attachments: Vec::new(),
            },
            timeout,
            reply,
        })?;
        response.await.unwrap_or(Err(AckError::Closed))
    }

    /// Removes the client from this namespace (its connection stays open).
    pub fn disconnect(&self) -> Result<(), SendError> {
        self.inner
            .conn
            .send(Outbound::DisconnectNamespace(self.inner.nsp.clone()))
    }

    /// Closes the client's whole connection.
    pub fn close(&self) {
        self.inner.conn.close(DisconnectReason::ServerDisconnect);
    }

    pub(crate) fn send_frame(&self, frame: Frame) -> Result<(), SendError> {
        self.inner.conn.send(Outbound::Frame(frame))
    }
}

/// An event received from a client.
#[derive(Debug)]
pub struct IncomingEvent {
    pub name: String,
    pub args: Vec<Value>,
    pub attachments: Vec<Vec<u8>>,
    /// Set when the client asked for an ack.
    pub ack: Option<AckReply>,
}

impl IncomingEvent {
    /// Reads the payload as typed event `E`.
    pub fn decode<E: Event>(&self) -> Result<E::Payload, EventError> {
        event::decode::<E>(&self.args)
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
    pub fn send(self, args: Vec<Value>) -> Result<(), SendError> {
        self.send_with_attachments(args, Vec::new())
    }

    pub fn send_with_attachments(
        self,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), SendError> {
        self.conn.send(Outbound::Packet(socketio::Packet::Ack {
            nsp: self.nsp,
            id: self.id,
            args,
            attachments,
        }))
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
}

/// Builds an [`Io`].
pub struct IoBuilder {
    settings: SessionSettings,
    handlers: HashMap<String, Arc<dyn Handler>>,
}

impl IoBuilder {
    /// Serves namespace `nsp` (e.g. `/`, `/admin`) with `handler`.
    pub fn namespace(mut self, nsp: &str, handler: impl Handler) -> Self {
        self.handlers.insert(nsp.to_owned(), Arc::new(handler));
        self
    }

    pub fn build(self) -> Arc<Io> {
        Arc::new(Io {
            settings: self.settings,
            handlers: self.handlers,
            sockets: Mutex::new(HashMap::new()),
            epoch: tokio::time::Instant::now(),
        })
    }
}

/// A Socket.IO server: its namespaces and the sockets connected to them.
pub struct Io {
    settings: SessionSettings,
    handlers: HashMap<String, Arc<dyn Handler>>,
    /// Sockets by namespace, then by id. A std Mutex, not a tokio one: it is held
    /// only to insert, remove or clone handles, never across an `.await`.
    sockets: Mutex<HashMap<String, HashMap<String, Socket>>>,
    epoch: tokio::time::Instant,
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("namespaces", &self.handlers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Io {
    pub fn builder(settings: SessionSettings) -> IoBuilder {
        IoBuilder {
            settings,
            handlers: HashMap::new(),
        }
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    /// The session clock: time since this server started.
    pub fn now(&self) -> Time {
        self.epoch.elapsed()
    }

    /// The instant a session [`Time`] stands for.
    pub(crate) fn instant(&self, time: Time) -> tokio::time::Instant {
        self.epoch + time
    }

    pub(crate) fn handler(&self, nsp: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(nsp).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Socket>>> {
        self.sockets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn register(&self, socket: &Socket) {
        self.lock()
            .entry(socket.nsp().to_owned())
            .or_default()
            .insert(socket.id().to_owned(), socket.clone());
    }

    pub(crate) fn unregister(&self, socket: &Socket) {
        let mut sockets = self.lock();
        if let Some(ns) = sockets.get_mut(socket.nsp()) {
            ns.remove(socket.id());
            if ns.is_empty() {
                sockets.remove(socket.nsp());
            }
        }
    }

    /// The sockets connected to `nsp` now.
    pub fn sockets(&self, nsp: &str) -> Vec<Socket> {
        self.lock()
            .get(nsp)
            .map(|ns| ns.values().cloned().collect())
            .unwrap_or_default()
    }

    /// How many sockets are connected to `nsp`.
    pub fn socket_count(&self, nsp: &str) -> usize {
        self.lock().get(nsp).map_or(0, HashMap::len)
    }

    /// Emits typed event `E` to every socket of `nsp`. Returns how many sockets it
    /// was queued for.
    pub fn broadcast<E: Event>(
        &self,
        nsp: &str,
        payload: &E::Payload,
    ) -> Result<usize, EventError> {
        Ok(self.broadcast_raw(nsp, E::NAME, event::encode::<E>(payload)?))
    }

    /// Emits `name` with `args` to every socket of `nsp`. The packet is encoded once;
    /// each recipient's queue gets a copy of the frame. A recipient whose queue is
    /// full is disconnected (see the module docs) and does not count.
    pub fn broadcast_raw(&self, nsp: &str, name: &str, args: Vec<Value>) -> usize {
        let (text, _) = socketio::Packet::event(nsp, name, args).encode();
        let frame = engineio::Packet::Message(text).into_frame();
        // Clone the handles, then send without the lock held.
        let recipients = self.sockets(nsp);
        recipients
            .iter()
            .filter(|s| s.send_frame(frame.clone()).is_ok())
            .count()
    }
}
