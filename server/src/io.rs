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
use protocol::session::{
    CloseReason, EngineConfig, EngineSession, Probe, ProtocolError, ServerEvent, ServerSession,
    Transport,
};
use protocol::{Frame, Time, engineio, socketio};
use serde_json::Value;
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use tokio::sync::{mpsc, oneshot};

use crate::config::SessionSettings;
use crate::engine::{Factory, Link, Machine};

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

pub use crate::engine::{DisconnectReason, SendError};

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
pub enum Outbound {
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

/// The link to one client connection's task, shared by its sockets.
pub(crate) type Connection = Link<Outbound>;

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
        Arc::new_cyclic(|me| Io {
            me: me.clone(),
            settings: self.settings,
            handlers: self.handlers,
            sockets: Mutex::new(HashMap::new()),
            epoch: tokio::time::Instant::now(),
        })
    }
}

/// A Socket.IO server: its namespaces and the sockets connected to them.
pub struct Io {
    /// Itself, for the sockets it creates (they point back without keeping it alive).
    me: Weak<Io>,
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

impl Factory for Io {
    type Machine = SocketIoMachine;

    fn open(
        &self,
        sid: String,
        transport: Transport,
        mut handshake: Handshake,
    ) -> (SocketIoMachine, mpsc::Receiver<Outbound>) {
        handshake.sid.clone_from(&sid);
        let (conn, rx) = Link::new(self.settings.outbound_queue);
        let session =
            ServerSession::new(sid, self.settings.protocol.clone(), transport, self.now());
        let io = self
            .me
            .upgrade()
            .expect("an Io only opens sessions from the routes, which hold it");
        let machine = SocketIoMachine {
            io,
            conn,
            handshake: Arc::new(handshake),
            sockets: HashMap::new(),
            acks: HashMap::new(),
            closing: None,
            session,
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
        self.settings.engine_config()
    }

    fn outbound_limit(&self) -> usize {
        self.settings.outbound_queue
    }
}

/// One client's Socket.IO session: the protocol's `ServerSession` and this
/// server's sockets, handlers and pending acks for it.
pub struct SocketIoMachine {
    io: Arc<Io>,
    conn: Arc<Connection>,
    handshake: Arc<Handshake>,
    /// This connection's sockets, one per joined namespace, with their handler.
    sockets: HashMap<String, (Socket, Arc<dyn Handler>)>,
    /// Our emits waiting for the client's ack.
    acks: HashMap<u64, (Duration, oneshot::Sender<Result<AckResponse, AckError>>)>,
    /// Set when the server itself decided to close (shutdown, slow client, kick).
    closing: Option<DisconnectReason>,
    session: ServerSession,
}

impl SocketIoMachine {
    fn on_connect(&mut self, nsp: String, auth: Option<Value>) {
        let sid = &self.handshake.sid;
        let Some(handler) = self.io.handler(&nsp) else {
            info!(%sid, %nsp, "connect refused: invalid namespace");
            self.session.reject_connect(&nsp, "Invalid namespace");
            return;
        };
        let auth = auth.unwrap_or_else(|| serde_json::json!({}));
        let request = ConnectRequest {
            nsp: &nsp,
            auth: &auth,
            handshake: &self.handshake,
        };
        if let Err(message) = handler.authorize(&request) {
            info!(%sid, %nsp, %message, "connect refused by middleware");
            self.session.reject_connect(&nsp, &message);
            return;
        }
        let socket_id = crate::sid::generate();
        self.session.accept_connect(&nsp, &socket_id);
        let socket = Socket::new(
            socket_id,
            nsp.clone(),
            auth,
            self.handshake.clone(),
            self.conn.clone(),
            Arc::downgrade(&self.io),
        );
        debug!(%sid, %nsp, socket = socket.id(), "namespace joined");
        self.io.register(&socket);
        handler.on_connect(&socket);
        self.sockets.insert(nsp, (socket, handler));
    }

    fn leave(&mut self, nsp: &str, reason: &DisconnectReason) {
        if let Some((socket, handler)) = self.sockets.remove(nsp) {
            self.io.unregister(&socket);
            handler.on_disconnect(&socket, reason);
        }
    }
}

impl Machine for SocketIoMachine {
    type Command = Outbound;

    fn engine(&self) -> &EngineSession {
        self.session.engine()
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

    fn handle_command(&mut self, command: Outbound, now: Time) {
        match command {
            Outbound::Frame(frame) => self.session.send_frame(frame),
            Outbound::Packet(packet) => self.session.send(&packet),
            Outbound::EmitWithAck {
                packet,
                timeout,
                reply,
            } => {
                if let socketio::Packet::Event {
                    nsp,
                    name,
                    args,
                    attachments,
                    ..
                } = packet
                {
                    let id =
                        self.session
                            .emit_with_ack(&nsp, &name, args, attachments, timeout, now);
                    self.acks.insert(id, (timeout, reply));
                }
            }
            Outbound::DisconnectNamespace(nsp) => {
                self.session.disconnect_namespace(&nsp);
                self.leave(&nsp, &DisconnectReason::ServerDisconnect);
            }
        }
    }

    fn close(&mut self, reason: DisconnectReason) {
        self.closing.get_or_insert(reason);
        self.session.close();
    }

    fn transport_closed(&mut self, reason: CloseReason) {
        self.session.transport_closed(reason);
    }

    fn dispatch(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                ServerEvent::Connect { nsp, auth } => self.on_connect(nsp, auth),
                ServerEvent::Event {
                    nsp,
                    id,
                    name,
                    args,
                    attachments,
                } => {
                    if let Some((socket, handler)) = self.sockets.get(&nsp) {
                        let ack = id.map(|id| AckReply {
                            id,
                            nsp: nsp.clone(),
                            conn: self.conn.clone(),
                        });
                        handler.on_event(
                            socket,
                            IncomingEvent {
                                name,
                                args,
                                attachments,
                                ack,
                            },
                        );
                    }
                }
                ServerEvent::Ack {
                    id,
                    args,
                    attachments,
                    ..
                } => {
                    if let Some((_, reply)) = self.acks.remove(&id) {
                        // The caller may have stopped waiting; nothing to do then.
                        let _ = reply.send(Ok(AckResponse { args, attachments }));
                    }
                }
                ServerEvent::AckTimeout { id, .. } => {
                    if let Some((timeout, reply)) = self.acks.remove(&id) {
                        let _ = reply.send(Err(AckError::Timeout(timeout)));
                    }
                }
                ServerEvent::Disconnect { nsp } => {
                    self.leave(&nsp, &DisconnectReason::ClientNamespaceDisconnect);
                }
                ServerEvent::Closed(reason) => {
                    let reason = self
                        .closing
                        .clone()
                        .unwrap_or_else(|| DisconnectReason::from(&reason));
                    let namespaces: Vec<String> = self.sockets.keys().cloned().collect();
                    for nsp in namespaces {
                        self.leave(&nsp, &reason);
                    }
                    // Dropping the senders tells every waiting caller `Closed`.
                    self.acks.clear();
                }
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
        self.closing.clone().unwrap_or_else(|| {
            self.session
                .close_reason()
                .map_or(DisconnectReason::ClientClosed, DisconnectReason::from)
        })
    }

    fn kill_token(&self) -> CancellationToken {
        self.conn.kill_token()
    }

    fn kill_reason(&self) -> DisconnectReason {
        self.conn.kill_reason()
    }
}
