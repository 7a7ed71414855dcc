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
use protocol::{Args, Frame, Time, socketio};
use serde_json::Value;
use thiserror::Error;
use tracing::{debug, info};

use tokio::sync::oneshot;

use crate::config::SessionSettings;
use crate::engine::{Factory, Link, LinkReceiver, Machine};
use crate::rooms::{Namespace, SavedSocket, Target};

/// What the application sees of the HTTP request that opened the connection.
#[derive(Debug, Clone, Default)]
pub struct Handshake {
    /// The Engine.IO session id.
    pub sid: String,
    /// Request target, e.g. `/socket.io/?EIO=4&transport=websocket`.
    pub uri: String,
    /// Request headers, names in lowercase, in the order received.
    pub headers: Headers,
    /// The `Sec-WebSocket-Accept` the server answered with.
    pub websocket_accept: Option<String>,
    pub remote: Option<SocketAddr>,
}

impl Handshake {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }
}

/// Request headers, kept for the whole connection in two allocations (one
/// buffer of text, one of offsets) rather than two strings per header: every
/// connection holds its handshake, idle or not.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Every name then its value, back to back.
    text: Box<str>,
    /// Where each name ends and its value ends, in `text`.
    ends: Box<[(u32, u32)]>,
}

impl Headers {
    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every header, as received.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, value_end)| {
            let (n, v) = (name_end as usize, value_end as usize);
            let header = (&self.text[start..n], &self.text[n..v]);
            start = v;
            header
        })
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl<N: AsRef<str>, V: AsRef<str>> FromIterator<(N, V)> for Headers {
    /// Headers past 4 GiB of text in all are left out (a request that large
    /// never gets this far).
    fn from_iter<I: IntoIterator<Item = (N, V)>>(headers: I) -> Self {
        let mut text = String::new();
        let mut ends = Vec::new();
        for (name, value) in headers {
            let (name, value) = (name.as_ref(), value.as_ref());
            let Ok(value_end) = u32::try_from(text.len() + name.len() + value.len()) else {
                break;
            };
            text.push_str(name);
            let name_end = value_end - value.len() as u32;
            text.push_str(value);
            ends.push((name_end, value_end));
        }
        Headers {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
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
///
/// Packets are encoded by whoever sends them, so the connection's task only
/// queues frames; the rare large requests are boxed to keep every slot of the
/// bounded queue small (32 bytes).
#[derive(Debug)]
pub enum Outbound {
    /// An encoded packet for this client alone (a direct emit, an ack reply).
    Frame(Frame),
    /// Several encoded frames for this client alone, in order (a packet with
    /// binary attachments; a recovery replay).
    Frames(Vec<Frame>),
    /// A broadcast: encoded once, the same frames shared by every recipient.
    Shared(Arc<[Frame]>),
    EmitWithAck(Box<AckRequest>),
    DisconnectNamespace(String),
}

/// An emit that waits for the client's ack.
#[derive(Debug)]
pub struct AckRequest {
    nsp: String,
    name: String,
    args: Vec<Value>,
    timeout: Duration,
    reply: oneshot::Sender<Result<AckResponse, AckError>>,
}

impl Outbound {
    /// `packet`, encoded for the wire.
    fn packet(packet: &socketio::Packet) -> Outbound {
        let (frame, attachments) = packet.encode_frame();
        Outbound::encoded(frame, attachments)
    }

    /// An encoded packet's frame followed by its binary attachments.
    fn encoded(frame: Frame, attachments: &[Vec<u8>]) -> Outbound {
        if attachments.is_empty() {
            return Outbound::Frame(frame);
        }
        let mut frames = Vec::with_capacity(1 + attachments.len());
        frames.push(frame);
        frames.extend(attachments.iter().cloned().map(Frame::Binary));
        Outbound::Frames(frames)
    }
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
    /// Private session id, for connection state recovery (when enabled).
    pid: Option<String>,
    recovered: bool,
    /// The last recovery offset before the socket joined (or the one it
    /// recovered from): where it resumes if its client got no event since.
    base_offset: u64,
    /// Application data (the authenticated user, say); restored by recovery.
    data: Mutex<Value>,
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
    pub(crate) fn new(parts: SocketParts, conn: Arc<Connection>, io: Weak<Io>) -> Self {
        Socket {
            inner: Arc::new(SocketInner {
                id: parts.id,
                nsp: parts.nsp,
                auth: parts.auth,
                pid: parts.pid,
                recovered: parts.recovered,
                base_offset: parts.base_offset,
                data: Mutex::new(parts.data),
                handshake: parts.handshake,
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

    /// Whether this socket resumed a previous one (same id, rooms and data, missed
    /// packets replayed) through connection state recovery.
    pub fn recovered(&self) -> bool {
        self.inner.recovered
    }

    /// The application's data for this socket (`null` until set).
    pub fn data(&self) -> Value {
        self.inner
            .data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Replaces the application's data for this socket.
    pub fn set_data(&self, data: Value) {
        *self
            .inner
            .data
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = data;
    }

    /// Joins `room`.
    pub fn join(&self, room: &str) {
        self.io()
            .with_namespace(self.nsp(), |ns| ns.join(self.id(), room.to_owned()));
    }

    /// Leaves `room` (a socket cannot leave its own room).
    pub fn leave(&self, room: &str) {
        self.io()
            .with_namespace(self.nsp(), |ns| ns.leave(self.id(), room));
    }

    /// The rooms this socket is in, its own id among them.
    pub fn rooms(&self) -> Vec<String> {
        self.io()
            .with_namespace(self.nsp(), |ns| ns.rooms_of(self.id()))
            .unwrap_or_default()
    }

    /// Emits to the sockets in `room` but this one.
    pub fn to(&self, room: &str) -> Broadcast {
        self.broadcast().to(room)
    }

    /// Emits to every socket of the namespace but this one.
    pub fn broadcast(&self) -> Broadcast {
        let mut b = Broadcast::new(self.io(), self.nsp());
        b.target.except_socket = Some(self.id().to_owned());
        b
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
    pub fn emit_raw(&self, name: &str, args: impl Into<Args>) -> Result<(), SendError> {
        self.emit_with_attachments(name, args, Vec::new())
    }

    /// Emits an event carrying binary attachments (referenced from `args` by
    /// [`socketio::placeholder`]s).
    ///
    /// With connection state recovery on, the emit goes through the socket's own
    /// room, as in Socket.IO: it is logged for replay and carries its offset as
    /// last argument (so every event the client gets advances its offset).
    pub fn emit_with_attachments(
        &self,
        name: &str,
        args: impl Into<Args>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), SendError> {
        let args = args.into();
        if self.inner.pid.is_some() {
            return self.emit_logged(name, args.into_values(), attachments);
        }
        self.emit_ref(name, &args, &attachments)
    }

    /// [`emit_with_attachments`](Self::emit_with_attachments) from borrowed
    /// arguments, encoded straight from them: for a handler that needs them
    /// afterwards (an echo that also acks with them) and would otherwise copy.
    pub fn emit_ref(
        &self,
        name: &str,
        args: &Args,
        attachments: &[Vec<u8>],
    ) -> Result<(), SendError> {
        if self.inner.pid.is_some() {
            return self.emit_logged(name, args.values().to_vec(), attachments.to_vec());
        }
        let frame = socketio::event_frame(self.nsp(), None, name, args, attachments.len());
        self.inner.conn.send(Outbound::encoded(frame, attachments))
    }

    /// An emit with connection state recovery on: through the socket's own room.
    fn emit_logged(
        &self,
        name: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), SendError> {
        let target = Target {
            rooms: vec![self.id().to_owned()],
            ..Target::default()
        };
        match self
            .io()
            .emit_to(self.nsp(), &target, name, args.into(), attachments, false)
        {
            0 => Err(SendError::Closed),
            _ => Ok(()),
        }
    }

    /// Emits an event that may be dropped if the client cannot take it now (its
    /// queue is full): for data that is soon stale, like positions or typing.
    pub fn emit_volatile(&self, name: &str, args: Vec<Value>) {
        self.inner
            .conn
            .send_volatile(Outbound::packet(&socketio::Packet::event(
                self.nsp(),
                name,
                args,
            )));
    }

    /// Emits `name` and waits for the client's ack, at most `timeout`.
    pub async fn emit_with_ack(
        &self,
        name: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<AckResponse, AckError> {
        let (reply, response) = oneshot::channel();
        self.inner
            .conn
            .send(Outbound::EmitWithAck(Box::new(AckRequest {
                nsp: self.inner.nsp.clone(),
                name: name.to_owned(),
                args,
                timeout,
                reply,
            })))?;
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

    /// Queues frames for this client alone (a recovery replay).
    pub(crate) fn send_frames(&self, frames: Vec<Frame>) -> bool {
        self.inner.conn.send(Outbound::Frames(frames)).is_ok()
    }

    /// Queues a broadcast's frames: the recipient's task copies them into its own
    /// queue, so the emitter's cost per recipient is a reference count.
    pub(crate) fn send_shared(&self, frames: &Arc<[Frame]>, volatile: bool) -> bool {
        let command = Outbound::Shared(Arc::clone(frames));
        if volatile {
            self.inner.conn.send_volatile(command)
        } else {
            self.inner.conn.send(command).is_ok()
        }
    }

    pub(crate) fn pid(&self) -> Option<&str> {
        self.inner.pid.as_deref()
    }

    pub(crate) fn base_offset(&self) -> u64 {
        self.inner.base_offset
    }

    /// Whether `self` and `other` are the same socket (not merely the same id:
    /// a recovered socket keeps the id of the one it replaces).
    pub(crate) fn same(&self, other: &Socket) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether this socket's messages go through `conn`.
    fn on(&self, conn: &Arc<Connection>) -> bool {
        Arc::ptr_eq(&self.inner.conn, conn)
    }
}

/// What a socket is made of, before it is bound to its connection.
pub(crate) struct SocketParts {
    pub id: String,
    pub nsp: String,
    pub auth: Value,
    pub pid: Option<String>,
    pub recovered: bool,
    pub base_offset: u64,
    pub data: Value,
    pub handshake: Arc<Handshake>,
}

/// An emit to several sockets of a namespace: `io.of("/").to("room").except("x")`.
/// Built by [`Io::of`], [`Io::to`], [`Socket::to`], [`Socket::broadcast`].
#[derive(Debug, Clone)]
pub struct Broadcast {
    io: Arc<Io>,
    nsp: String,
    target: Target,
    volatile: bool,
}

impl Broadcast {
    fn new(io: Arc<Io>, nsp: &str) -> Self {
        Broadcast {
            io,
            nsp: nsp.to_owned(),
            target: Target::default(),
            volatile: false,
        }
    }

    /// Only sockets in `room` (several `to`s: sockets in any of them).
    pub fn to(mut self, room: &str) -> Self {
        self.target.rooms.push(room.to_owned());
        self
    }

    /// Not the sockets in `room`.
    pub fn except(mut self, room: &str) -> Self {
        self.target.except_rooms.push(room.to_owned());
        self
    }

    /// Recipients that cannot take the packet now skip it instead of being
    /// disconnected, and it is not kept for recovery.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Emits typed event `E`; returns how many sockets it was queued for.
    pub fn emit<E: Event>(&self, payload: &E::Payload) -> Result<usize, EventError> {
        Ok(self.emit_raw(E::NAME, event::encode::<E>(payload)?))
    }

    /// Emits `name` with `args`; returns how many sockets it was queued for.
    pub fn emit_raw(&self, name: &str, args: impl Into<Args>) -> usize {
        self.io.emit_to(
            &self.nsp,
            &self.target,
            name,
            args.into(),
            Vec::new(),
            self.volatile,
        )
    }

    /// The sockets this broadcast would reach now.
    pub fn sockets(&self) -> Vec<Socket> {
        self.io
            .with_namespace(&self.nsp, |ns| ns.recipients(&self.target))
            .unwrap_or_default()
    }

    /// Removes every targeted socket from the namespace.
    pub fn disconnect(&self) {
        for socket in self.sockets() {
            let _ = socket.disconnect();
        }
    }
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
            namespaces: Mutex::new(HashMap::new()),
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
    /// Sockets and rooms by namespace. A std Mutex, not a tokio one: it is never held
    /// across an `.await`; emits only queue frames (`try_send`) while holding it.
    namespaces: Mutex<HashMap<String, Namespace>>,
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

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Namespace>> {
        self.namespaces
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on namespace `nsp`'s state, if it has any.
    pub(crate) fn with_namespace<T>(
        &self,
        nsp: &str,
        f: impl FnOnce(&mut Namespace) -> T,
    ) -> Option<T> {
        self.lock().get_mut(nsp).map(f)
    }

    /// Admits a socket to `nsp`: recovers the session `recover = (pid, offset)`
    /// names if it can, else makes a fresh one. The socket is registered in its
    /// rooms and the packets it missed are queued for it under one lock, so
    /// nothing sent meanwhile is missed or doubled. A recovered session whose
    /// old socket was still connected (its client came back before the server
    /// saw the old transport go) takes over from it: the old socket leaves the
    /// namespace under the same lock and its connection is closed as replaced.
    pub(crate) fn join_namespace(
        &self,
        mut parts: SocketParts,
        recover: Option<(String, Option<String>)>,
        conn: &Arc<Connection>,
    ) -> Socket {
        let now = self.now();
        let recovery = self.settings.recovery;
        let mut namespaces = self.lock();
        let ns = namespaces
            .entry(parts.nsp.clone())
            .or_insert_with(|| Namespace::new(recovery));
        let mut rooms = Vec::new();
        let mut missed = Vec::new();
        let mut replaced = None;
        if ns.recovery_enabled() {
            let restored = recover.and_then(|(pid, offset)| {
                ns.recover(&pid, offset.as_deref(), now).map(|r| (pid, r))
            });
            match restored {
                Some((pid, recovered)) => {
                    parts.id = recovered.saved.socket_id;
                    parts.data = recovered.saved.data;
                    parts.base_offset = recovered.saved.base;
                    parts.pid = Some(pid);
                    parts.recovered = true;
                    rooms = recovered.saved.rooms.into_iter().collect();
                    missed = recovered.missed;
                    replaced = recovered.replaced;
                }
                None => {
                    parts.pid = Some(crate::rooms::pid_for(&parts.id));
                    parts.base_offset = ns.last_offset();
                }
            }
        }
        let socket = Socket::new(parts, conn.clone(), self.me.clone());
        ns.insert(&socket, rooms);
        if !missed.is_empty() {
            // One command for the whole replay: however long, it takes one slot of
            // the queue (the log that holds it is bounded).
            socket.send_frames(missed);
        }
        drop(namespaces);
        if let Some(old) = replaced {
            // Its client has left that connection for this one. (The same
            // connection connecting the namespace again keeps going.)
            if !old.on(conn) {
                old.inner.conn.close(DisconnectReason::Replaced);
            }
        }
        socket
    }

    /// Removes `socket` from its namespace; keeps its session for recovery when
    /// it went away for a reason it may come back from. A socket that a
    /// recovery replaced is gone from the namespace already: nothing to do.
    pub(crate) fn leave_namespace(&self, socket: &Socket, reason: &DisconnectReason) {
        let now = self.now();
        let mut namespaces = self.lock();
        if let Some(ns) = namespaces.get_mut(socket.nsp()) {
            if !ns.socket(socket.id()).is_some_and(|s| s.same(socket)) {
                return;
            }
            let rooms = ns.remove(socket.id());
            // Socket.IO's recoverable reasons: the transport went away, or the
            // server is restarting (the client comes back to a peer, or to us).
            let comes_back = matches!(
                reason,
                DisconnectReason::ClientClosed
                    | DisconnectReason::PingTimeout
                    | DisconnectReason::Transport(_)
                    | DisconnectReason::SlowClient
                    | DisconnectReason::ServerShutdown
                    | DisconnectReason::Replaced
            );
            if let (Some(pid), true) = (socket.pid(), comes_back) {
                let saved = SavedSocket {
                    socket_id: socket.id().to_owned(),
                    rooms,
                    data: socket.data(),
                    base: socket.base_offset(),
                };
                ns.save(pid, saved, now);
            }
            if ns.is_empty() {
                namespaces.remove(socket.nsp());
            }
        }
    }

    /// Emits to the sockets of `nsp` that `target` designates. The packet is
    /// encoded once (with its recovery offset when recovery is on) and each
    /// recipient's queue gets the frames. A recipient whose queue is full is
    /// disconnected as too slow, or for a volatile emit skips the packet.
    pub(crate) fn emit_to(
        &self,
        nsp: &str,
        target: &Target,
        name: &str,
        mut args: Args,
        attachments: Vec<Vec<u8>>,
        volatile: bool,
    ) -> usize {
        let now = self.now();
        let mut namespaces = self.lock();
        let Some(ns) = namespaces.get_mut(nsp) else {
            return 0;
        };
        let offset = if volatile { None } else { ns.next_offset() };
        if let Some(offset) = offset {
            // Socket.IO's recovery convention: the offset is the last argument.
            let mut values = args.into_values();
            values.push(Value::String(offset.to_string()));
            args = values.into();
        }
        let packet = socketio::Packet::Event {
            nsp: nsp.to_owned(),
            id: None,
            name: name.to_owned(),
            args,
            attachments,
        };
        let (frame, binaries) = packet.encode_frame();
        let frames: Arc<[Frame]> = std::iter::once(frame)
            .chain(binaries.iter().cloned().map(Frame::Binary))
            .collect();
        let mut delivered = 0;
        ns.for_each_recipient(target, |socket| {
            if socket.send_shared(&frames, volatile) {
                delivered += 1;
            }
        });
        if let Some(offset) = offset {
            ns.log(offset, target.clone(), frames, now);
        }
        delivered
    }

    /// Emits to every socket of `nsp`.
    pub fn of(self: &Arc<Self>, nsp: &str) -> Broadcast {
        Broadcast::new(self.clone(), nsp)
    }

    /// Emits to the sockets of `nsp` in `room`.
    pub fn to(self: &Arc<Self>, nsp: &str, room: &str) -> Broadcast {
        self.of(nsp).to(room)
    }

    /// The sockets connected to `nsp` now.
    pub fn sockets(self: &Arc<Self>, nsp: &str) -> Vec<Socket> {
        self.of(nsp).sockets()
    }

    /// How many sockets are connected to `nsp`.
    pub fn socket_count(&self, nsp: &str) -> usize {
        self.with_namespace(nsp, |ns| ns.len()).unwrap_or(0)
    }

    /// The rooms of `nsp` that have sockets in them (each socket's own room too).
    pub fn rooms(&self, nsp: &str) -> Vec<String> {
        self.with_namespace(nsp, |ns| ns.room_names())
            .unwrap_or_default()
    }

    /// The socket `id` of `nsp`, if connected.
    pub fn socket(&self, nsp: &str, id: &str) -> Option<Socket> {
        self.with_namespace(nsp, |ns| ns.socket(id).cloned())
            .flatten()
    }

    /// Emits typed event `E` to every socket of `nsp`. Returns how many sockets it
    /// was queued for.
    pub fn broadcast<E: Event>(
        &self,
        nsp: &str,
        payload: &E::Payload,
    ) -> Result<usize, EventError> {
        Ok(self.emit_to(
            nsp,
            &Target::default(),
            E::NAME,
            event::encode::<E>(payload)?.into(),
            Vec::new(),
            false,
        ))
    }
}

impl Factory for Io {
    type Machine = SocketIoMachine;

    fn open(
        &self,
        sid: String,
        transport: Transport,
        mut handshake: Handshake,
    ) -> (SocketIoMachine, LinkReceiver<Outbound>) {
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
            connect_answered: false,
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
    /// A CONNECT was just accepted; the reply has not been written yet.
    connect_answered: bool,
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
        // Recovery credentials travel in the auth object (`pid`, `offset`), as the
        // Socket.IO client sends them; the application sees the rest.
        let mut auth = auth;
        // A client that got no event since it connected has a pid and no
        // offset: it resumes from where its socket joined.
        let recover = match auth.as_object_mut() {
            Some(map) => match (map.remove("pid"), map.remove("offset")) {
                (Some(Value::String(pid)), Some(Value::String(offset))) => {
                    Some((pid, Some(offset)))
                }
                (Some(Value::String(pid)), None | Some(Value::Null)) => Some((pid, None)),
                _ => None,
            },
            None => None,
        };
        let parts = SocketParts {
            id: crate::sid::generate(),
            nsp: nsp.clone(),
            auth,
            pid: None,
            recovered: false,
            base_offset: 0,
            data: Value::Null,
            handshake: self.handshake.clone(),
        };
        // The CONNECT answer must precede the replayed packets. Joining queues the
        // replay on the link, which the task reads only after this dispatch; the
        // answer is written to the session now, so it goes first either way.
        let socket = self.io.join_namespace(parts, recover, &self.conn);
        let mut reply = serde_json::Map::new();
        reply.insert("sid".into(), Value::String(socket.id().to_owned()));
        if let Some(pid) = socket.pid() {
            reply.insert("pid".into(), Value::String(pid.to_owned()));
        }
        self.session.accept_connect_with(&nsp, Value::Object(reply));
        self.connect_answered = true;
        debug!(%sid, %nsp, socket = socket.id(), recovered = socket.recovered(), "namespace joined");
        handler.on_connect(&socket);
        self.sockets.insert(nsp, (socket, handler));
    }

    fn leave(&mut self, nsp: &str, reason: &DisconnectReason) {
        if let Some((socket, handler)) = self.sockets.remove(nsp) {
            self.io.leave_namespace(&socket, reason);
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
            Outbound::Frames(frames) => {
                for frame in frames {
                    self.session.send_frame(frame);
                }
            }
            Outbound::Shared(frames) => {
                for frame in frames.iter() {
                    self.session.send_frame(frame.clone());
                }
            }
            Outbound::EmitWithAck(request) => {
                let AckRequest {
                    nsp,
                    name,
                    args,
                    timeout,
                    reply,
                } = *request;
                let id = self
                    .session
                    .emit_with_ack(&nsp, &name, args, Vec::new(), timeout, now);
                self.acks.insert(id, (timeout, reply));
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
                            nsp,
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

    fn take_connect_answered(&mut self) -> bool {
        std::mem::take(&mut self.connect_answered)
    }

    fn reason(&self) -> DisconnectReason {
        DisconnectReason::of(self.closing.as_ref(), self.session.close_reason())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn headers_keep_order_and_find_names_in_any_case() {
        let headers: super::Headers = [("host", "a:1"), ("x-empty", ""), ("upgrade", "websocket")]
            .into_iter()
            .collect();
        assert_eq!(headers.len(), 3);
        assert_eq!(headers.get("Upgrade"), Some("websocket"));
        assert_eq!(headers.get("x-empty"), Some(""));
        assert_eq!(headers.get("cookie"), None);
        let all: Vec<(&str, &str)> = headers.iter().collect();
        assert_eq!(
            all,
            [("host", "a:1"), ("x-empty", ""), ("upgrade", "websocket")]
        );
        assert!(super::Headers::default().is_empty());
    }
}
