//! A client's presence in one namespace ([`Socket`]) and what goes to its
//! connection's task ([`Outbound`]): frames encoded by the sender, emits that
//! wait for an ack, a namespace disconnect.

use std::fmt;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use protocol::event::{self, Event};
use protocol::{Args, Frame, socketio};
use serde_json::Value;
use tokio::sync::oneshot;

use super::Io;
use super::adapter::{Offset, Target};
use super::broadcast::Broadcast;
use super::handler::{AckError, AckResponse};
use crate::engine::{DisconnectReason, Handshake, Link, SendError};

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
    /// A namespace CONNECT whose session was looked up in the cluster: admit it.
    Admit(Box<FetchedSession>),
}

/// A CONNECT waiting for its session from the cluster, and what came back.
#[derive(Debug)]
pub struct FetchedSession {
    pub(crate) parts: SocketParts,
    pub(crate) pid: String,
    pub(crate) offset: Option<String>,
    pub(crate) session: Option<super::adapter::Session>,
    /// What the session missed before this server's log begins, read from the
    /// cluster: the frames, and the offset they reach (the log's floor then).
    pub(crate) replayed: Option<(Offset, Vec<Frame>)>,
}

/// An emit that waits for the client's ack.
#[derive(Debug)]
pub struct AckRequest {
    pub(super) nsp: String,
    pub(super) name: String,
    pub(super) args: Vec<Value>,
    pub(super) timeout: Duration,
    pub(super) reply: oneshot::Sender<Result<AckResponse, AckError>>,
}

impl Outbound {
    /// `packet`, encoded for the wire.
    fn packet(packet: &socketio::Packet) -> Outbound {
        let (frame, attachments) = packet.encode_frame();
        Outbound::encoded(frame, attachments)
    }

    /// An encoded packet's frame followed by its binary attachments.
    pub(super) fn encoded(frame: Frame, attachments: &[Vec<u8>]) -> Outbound {
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
    base_offset: Offset,
    /// Application data (the authenticated user, say); restored by recovery.
    data: Mutex<Value>,
    handshake: Arc<Handshake>,
    /// Whether its server has an observer (asked on each direct emit, which
    /// then need not reach the server otherwise).
    observed: bool,
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
        parts: SocketParts,
        conn: Arc<Connection>,
        io: Weak<Io>,
        observed: bool,
    ) -> Self {
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
                observed,
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

    /// The transport its connection is on now: `"polling"` or `"websocket"`.
    pub fn transport(&self) -> &'static str {
        if self.inner.conn.is_websocket() {
            "websocket"
        } else {
            "polling"
        }
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
        b.except_socket(self.id());
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
        self.inner
            .conn
            .send(Outbound::encoded(frame, attachments))?;
        if self.inner.observed
            && let Some(io) = self.inner.io.upgrade()
            && io.wants_sent_events()
        {
            io.observe(super::Observed::EventSent {
                nsp: self.nsp(),
                ids: &[self.id().to_owned()],
                name,
                args,
            });
        }
        Ok(())
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
            // Forwarded in a cluster, as Node's adapter does: the other servers
            // log it too, so that the client can recover it on any of them.
            .emit_to(
                self.nsp(),
                &target,
                name,
                args.into(),
                attachments,
                false,
                false,
            ) {
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

    /// Closes the client's whole connection for `reason`.
    pub(super) fn close_as(&self, reason: DisconnectReason) {
        self.inner.conn.close(reason);
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

    pub(crate) fn base_offset(&self) -> Offset {
        self.inner.base_offset
    }

    /// Whether `self` and `other` are the same socket (not merely the same id:
    /// a recovered socket keeps the id of the one it replaces).
    pub(crate) fn same(&self, other: &Socket) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Whether this socket's messages go through `conn`.
    pub(super) fn on(&self, conn: &Arc<Connection>) -> bool {
        Arc::ptr_eq(&self.inner.conn, conn)
    }
}

/// What a socket is made of, before it is bound to its connection.
#[derive(Debug)]
pub(crate) struct SocketParts {
    pub id: String,
    pub nsp: String,
    pub auth: Value,
    pub pid: Option<String>,
    pub recovered: bool,
    pub base_offset: Offset,
    pub data: Value,
    pub handshake: Arc<Handshake>,
}
