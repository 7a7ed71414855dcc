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
//!
//! - `socket`: [`Socket`] and what goes to a connection's task;
//! - `broadcast`: [`Broadcast`], emits to many sockets;
//! - `handler`: [`Handler`] and what it receives and answers;
//! - `namespace`: one namespace's sockets and its adapter;
//! - `adapter`: [`Adapter`], where rooms, departed sockets' sessions and the
//!   recovery log live ([`InMemoryAdapter`] by default);
//! - `machine`: [`SocketIoMachine`], one client's session.

mod adapter;
mod broadcast;
mod handler;
mod machine;
mod namespace;
mod observer;
mod remote;
mod socket;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use protocol::event::{self, Event, EventError};
use protocol::session::ServerConfig;
use protocol::{Args, Frame, Time, socketio};
use serde_json::Value;

pub use self::adapter::{
    Adapter, Forward, InMemoryAdapter, Offset, RecoveryConfig, Session, Target,
};
pub use self::broadcast::{Broadcast, BroadcastAckError};
pub use self::handler::{
    AckError, AckReply, AckResponse, ConnectRequest, Handler, IncomingEvent, ServerSideAck,
    ServerSideEvent,
};
pub use self::machine::SocketIoMachine;
use self::namespace::Namespace;
pub use self::observer::{Observed, Observer};
pub use self::remote::{
    Cluster, ClusterStatus, FetchError, Pending, RemoteAcks, RemoteSocket, ServerSideEmitError,
};
pub use self::socket::{AckRequest, Outbound, Socket};
use self::socket::{Connection, SocketParts};
pub use crate::engine::{DisconnectReason, Handshake, Headers, SendError};

impl SessionSettings {
    /// The Engine.IO part of the settings.
    pub fn engine_config(&self) -> protocol::session::EngineConfig {
        protocol::session::EngineConfig {
            ping_interval: self.protocol.ping_interval,
            ping_timeout: self.protocol.ping_timeout,
            max_payload: self.protocol.max_payload,
        }
    }
}

/// What each connection needs to know.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub protocol: ServerConfig,
    /// Capacity of each connection's outbound queue.
    pub outbound_queue: usize,
    pub recovery: Option<RecoveryConfig>,
}

/// Makes the adapter of a namespace, given its name and the recovery settings.
pub type AdapterFactory = dyn Fn(&str, Option<RecoveryConfig>) -> Box<dyn Adapter> + Send + Sync;

/// Builds an [`Io`].
pub struct IoBuilder {
    settings: SessionSettings,
    handlers: HashMap<String, Arc<dyn Handler>>,
    adapter: Box<AdapterFactory>,
    cluster: Option<Arc<dyn Cluster>>,
    observer: Option<Arc<dyn Observer>>,
}

impl IoBuilder {
    /// Tells `observer` what happens to the sockets of every namespace.
    pub fn observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Serves namespace `nsp` (e.g. `/`, `/admin`) with `handler`.
    pub fn namespace(mut self, nsp: &str, handler: impl Handler) -> Self {
        self.handlers.insert(nsp.to_owned(), Arc::new(handler));
        self
    }

    /// Keeps each namespace's rooms, departed sessions and recovery log in the
    /// adapter `make` returns for it (by default an [`InMemoryAdapter`]).
    pub fn adapter(
        mut self,
        make: impl Fn(&str, Option<RecoveryConfig>) -> Box<dyn Adapter> + Send + Sync + 'static,
    ) -> Self {
        self.adapter = Box::new(make);
        self
    }

    /// Asks `cluster` what needs the other servers' answers (fetching their
    /// sockets); set with the cluster's adapter.
    pub fn cluster(mut self, cluster: Arc<dyn Cluster>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    pub fn build(self) -> Arc<Io> {
        let recovery = self.settings.recovery;
        let namespaces = self
            .handlers
            .into_iter()
            .map(|(name, handler)| {
                let adapter = (self.adapter)(&name, recovery);
                let state = Mutex::new(
                    Namespace::with_adapter(adapter).observed_by(&name, self.observer.clone()),
                );
                (name, Nsp { handler, state })
            })
            .collect();
        Arc::new_cyclic(|me| Io {
            me: me.clone(),
            settings: self.settings,
            namespaces,
            cluster: self.cluster,
            observer: self.observer,
            epoch: tokio::time::Instant::now(),
        })
    }
}

/// What admitting a socket came to.
pub(crate) enum Admission {
    Joined(Socket),
    /// The namespace is not served.
    Refused,
    /// The session `pid` may be kept elsewhere: fetch it, then
    /// [`Io::admit_fetched`].
    Fetch {
        parts: Box<SocketParts>,
        pid: String,
        offset: Option<String>,
    },
}

/// The frames of event `name` with `args` (and binary `attachments`) in `nsp`,
/// `offset` (when given) appended as last argument, as Socket.IO's recovery
/// has it.
pub(crate) fn event_frames(
    nsp: &str,
    name: &str,
    mut args: Args,
    attachments: Vec<Vec<u8>>,
    offset: Option<Offset>,
) -> Arc<[Frame]> {
    if let Some(offset) = offset {
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
    std::iter::once(frame)
        .chain(binaries.iter().cloned().map(Frame::Binary))
        .collect()
}

/// Queues an event for the sockets `target` designates in `ns`: encoded once,
/// `offset` (when given) appended as last argument and the frames logged under
/// it. Returns how many sockets took it.
#[allow(clippy::too_many_arguments)] // the parts of one emit
fn deliver(
    ns: &mut Namespace,
    nsp: &str,
    target: &Target,
    name: &str,
    args: Args,
    attachments: Vec<Vec<u8>>,
    volatile: bool,
    offset: Option<Offset>,
    now: Time,
) -> usize {
    let observer = ns.sent_events_observer();
    let watched = observer.as_ref().map(|_| args.clone());
    let frames = event_frames(nsp, name, args, attachments, offset);
    let mut delivered = 0;
    let mut dropped = 0;
    let mut ids = Vec::new();
    ns.for_each_recipient(target, |socket| {
        if socket.send_shared(&frames, volatile) {
            delivered += 1;
            if observer.is_some() {
                ids.push(socket.id().to_owned());
            }
        } else if volatile {
            dropped += 1;
        }
    });
    if let (Some(observer), Some(args), false) = (observer, watched, ids.is_empty()) {
        observer.observe(Observed::EventSent {
            nsp,
            ids: &ids,
            name,
            args: &args,
        });
    }
    if dropped > 0 {
        crate::metrics::metrics().volatile_dropped.inc_by(dropped);
    }
    if let Some(offset) = offset {
        ns.log(offset, target.clone(), frames, now);
    }
    delivered
}

/// One namespace of the server: its handler, and its sockets, rooms and
/// recovery log behind a lock of their own (a std Mutex, not a tokio one: it is
/// never held across an `.await`; emits only queue frames while holding it).
/// Connects, joins and broadcasts in one namespace do not wait for another's.
struct Nsp {
    handler: Arc<dyn Handler>,
    state: Mutex<Namespace>,
}

/// A Socket.IO server: its namespaces and the sockets connected to them.
pub struct Io {
    /// Itself, for the sockets it creates (they point back without keeping it alive).
    me: Weak<Io>,
    settings: SessionSettings,
    /// The namespaces served, fixed when the server is built (a client asking
    /// for another is refused), so the map itself needs no lock.
    namespaces: HashMap<String, Nsp>,
    /// The other servers, when this one is in a cluster.
    cluster: Option<Arc<dyn Cluster>>,
    observer: Option<Arc<dyn Observer>>,
    epoch: tokio::time::Instant,
}

impl fmt::Debug for Io {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Io")
            .field("namespaces", &self.namespaces.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Io {
    pub fn builder(settings: SessionSettings) -> IoBuilder {
        IoBuilder {
            settings,
            handlers: HashMap::new(),
            adapter: Box::new(|_, recovery| Box::new(InMemoryAdapter::new(recovery))),
            cluster: None,
            observer: None,
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
        self.namespaces.get(nsp).map(|n| n.handler.clone())
    }

    /// Namespace `nsp`'s state, locked, if it is served.
    fn lock(&self, nsp: &str) -> Option<MutexGuard<'_, Namespace>> {
        let nsp = self.namespaces.get(nsp)?;
        Some(nsp.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Runs `f` on namespace `nsp`'s state, if it is served.
    pub(crate) fn with_namespace<T>(
        &self,
        nsp: &str,
        f: impl FnOnce(&mut Namespace) -> T,
    ) -> Option<T> {
        self.lock(nsp).map(|mut ns| f(&mut ns))
    }

    /// Admits a socket to `nsp`: recovers the session `recover = (pid, offset)`
    /// names if it can, else makes a fresh one. The socket is registered in its
    /// rooms and the packets it missed are queued for it under one lock, so
    /// nothing sent meanwhile is missed or doubled. A recovered session whose
    /// old socket was still connected (its client came back before the server
    /// saw the old transport go) takes over from it: the old socket leaves the
    /// namespace under the same lock and its connection is closed as replaced.
    /// When sessions are kept elsewhere (a cluster) and `pid` is not known
    /// here, the caller fetches it ([`Admission::Fetch`]) and comes back to
    /// [`admit_fetched`](Self::admit_fetched).
    pub(crate) fn join_namespace(
        &self,
        mut parts: SocketParts,
        recover: Option<(String, Option<String>)>,
        conn: &Arc<Connection>,
    ) -> Admission {
        let now = self.now();
        let Some(mut ns) = self.lock(&parts.nsp) else {
            return Admission::Refused;
        };
        let mut rooms = Vec::new();
        let mut missed = Vec::new();
        let mut replaced = None;
        if ns.recovery_enabled() {
            let asked = recover.is_some();
            let restored = match recover {
                Some((pid, offset)) => match ns.recover(&pid, offset.as_deref(), now) {
                    Some(recovered) => Some((pid, recovered)),
                    None if ns.sessions_elsewhere() => {
                        return Admission::Fetch {
                            parts: Box::new(parts),
                            pid,
                            offset,
                        };
                    }
                    None => None,
                },
                None => None,
            };
            if asked {
                crate::metrics::metrics().recovery(restored.is_some());
            }
            match restored {
                Some((pid, recovered)) => {
                    parts.id = recovered.session.socket_id;
                    parts.data = recovered.session.data;
                    parts.base_offset = recovered.session.base;
                    parts.pid = Some(pid);
                    parts.recovered = true;
                    rooms = recovered.session.rooms.into_iter().collect();
                    missed = recovered.missed;
                    replaced = recovered.replaced;
                }
                None => {
                    parts.pid = Some(namespace::pid_for(&parts.id));
                    parts.base_offset = ns.last_offset();
                }
            }
        }
        let socket = self.register(&mut ns, parts, rooms, missed, conn);
        drop(ns);
        if let Some(old) = replaced {
            // Its client has left that connection for this one. (The same
            // connection connecting the namespace again keeps going.)
            if !old.on(conn) {
                old.close_as(DisconnectReason::Replaced);
            }
        }
        Admission::Joined(socket)
    }

    /// Admits a socket whose session `pid` was looked up elsewhere
    /// ([`Admission::Fetch`]): recovered if `session` was found and every
    /// packet it missed after `offset` is in the log here (or, `replayed`,
    /// read from the cluster up to where the log begins), else fresh.
    pub(crate) fn admit_fetched(
        &self,
        mut parts: SocketParts,
        pid: String,
        offset: Option<String>,
        session: Option<Session>,
        replayed: Option<(Offset, Vec<Frame>)>,
        conn: &Arc<Connection>,
    ) -> Option<Socket> {
        let mut ns = self.lock(&parts.nsp)?;
        let recovered = session.and_then(|session| {
            let missed = match replayed {
                // The cluster's record up to `reach`, then the log from there
                // (which must still begin no later).
                Some((reach, mut frames)) => {
                    frames.extend(ns.recover_fetched(&session, Some(&reach.to_string()))?);
                    frames
                }
                None => ns.recover_fetched(&session, offset.as_deref())?,
            };
            Some((session, missed))
        });
        let mut rooms = Vec::new();
        let mut missed = Vec::new();
        crate::metrics::metrics().recovery(recovered.is_some());
        match recovered {
            Some((session, frames)) => {
                // Until its client gets an event it resumes from where it was.
                parts.base_offset = match offset.as_deref().and_then(Offset::parse) {
                    Some(offset) => offset,
                    None => session.base,
                };
                parts.id = session.socket_id;
                parts.data = session.data;
                parts.pid = Some(pid);
                parts.recovered = true;
                rooms = session.rooms.into_iter().collect();
                missed = frames;
            }
            None => {
                parts.pid = Some(namespace::pid_for(&parts.id));
                parts.base_offset = ns.last_offset();
            }
        }
        Some(self.register(&mut ns, parts, rooms, missed, conn))
    }

    /// Makes the socket of `parts` on `conn`, puts it in `ns` in `rooms`, and
    /// queues the frames it `missed`: under the caller's lock, so nothing sent
    /// meanwhile is missed or doubled.
    fn register(
        &self,
        ns: &mut Namespace,
        parts: SocketParts,
        rooms: Vec<String>,
        missed: Vec<Frame>,
        conn: &Arc<Connection>,
    ) -> Socket {
        let socket = Socket::new(parts, conn.clone(), self.me.clone(), self.is_observed());
        ns.insert(&socket, rooms);
        if !missed.is_empty() {
            // One command for the whole replay: however long, it takes one slot of
            // the queue (the log that holds it is bounded).
            socket.send_frames(missed);
        }
        socket
    }

    /// Every namespace's packets up to `offset` were given out before this
    /// server could log them (see [`Adapter::missing_up_to`]).
    pub(crate) fn missing_up_to(&self, offset: Offset) {
        for nsp in self.namespaces.keys() {
            self.with_namespace(nsp, |ns| ns.missing_up_to(offset));
        }
    }

    /// Whether namespace `nsp` has given out `offset` yet (a cluster's reader
    /// may be a moment behind the server a client comes from).
    pub(crate) fn has_reached(&self, nsp: &str, offset: &str) -> bool {
        match Offset::parse(offset) {
            Some(offset) => self
                .with_namespace(nsp, |ns| ns.last_offset() >= offset)
                .unwrap_or(true),
            // Never will: no reason to wait.
            None => true,
        }
    }

    /// Removes `socket` from its namespace; keeps its session for recovery when
    /// it went away for a reason it may come back from. A socket that a
    /// recovery replaced is gone from the namespace already: nothing to do.
    pub(crate) fn leave_namespace(&self, socket: &Socket, reason: &DisconnectReason) {
        let now = self.now();
        if let Some(mut ns) = self.lock(socket.nsp()) {
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
                let saved = Session {
                    socket_id: socket.id().to_owned(),
                    rooms,
                    data: socket.data(),
                    base: socket.base_offset(),
                };
                ns.save(pid, saved, now);
            }
            ns.release_if_empty(now);
        }
    }

    /// Emits to the sockets of `nsp` that `target` designates. The packet is
    /// encoded once (with its recovery offset when recovery is on) and each
    /// recipient's queue gets the frames. A recipient whose queue is full is
    /// disconnected as too slow, or for a volatile emit skips the packet.
    /// Unless `local`, the adapter forwards it to the other servers of a
    /// cluster; a cluster that orders broadcasts itself (with recovery) hands
    /// it back to [`deliver_logged`](Self::deliver_logged), and the count
    /// returned is then of the sockets it is on its way to.
    #[allow(clippy::too_many_arguments)] // the parts of one emit
    pub(crate) fn emit_to(
        &self,
        nsp: &str,
        target: &Target,
        name: &str,
        args: Args,
        attachments: Vec<Vec<u8>>,
        volatile: bool,
        local: bool,
    ) -> usize {
        let now = self.now();
        let Some(mut ns) = self.lock(nsp) else {
            return 0;
        };
        if !local {
            let deferred = ns.forward(Forward::Broadcast {
                target,
                name,
                args: &args,
                attachments: &attachments,
                volatile,
            });
            if deferred {
                let mut recipients = 0;
                ns.for_each_recipient(target, |_| recipients += 1);
                return recipients;
            }
        }
        let offset = if volatile { None } else { ns.next_offset() };
        deliver(
            &mut ns,
            nsp,
            target,
            name,
            args,
            attachments,
            volatile,
            offset,
            now,
        )
    }

    /// Delivers a broadcast that the cluster put in order, under its offset:
    /// logged for replay whether or not a socket here gets it, since a client
    /// of another server may recover here.
    pub(crate) fn deliver_logged(
        &self,
        nsp: &str,
        offset: Offset,
        target: &Target,
        name: &str,
        args: Args,
        attachments: Vec<Vec<u8>>,
    ) -> usize {
        let now = self.now();
        let Some(mut ns) = self.lock(nsp) else {
            return 0;
        };
        let offset = ns.recovery_enabled().then_some(offset);
        deliver(
            &mut ns,
            nsp,
            target,
            name,
            args,
            attachments,
            false,
            offset,
            now,
        )
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

    /// Emits `name` with `args` to the other servers of the cluster (their
    /// handlers' [`Handler::on_server_side_emit`]); nothing without a cluster.
    pub async fn server_side_emit(&self, nsp: &str, name: &str, args: Vec<Value>) {
        if let Some(cluster) = self.cluster.clone() {
            let _ = cluster.server_side_emit(nsp, name, args, None).await;
        }
    }

    /// Like [`server_side_emit`](Self::server_side_emit), and waits at most
    /// `timeout` for every other server's answer. Without a cluster: none.
    pub async fn server_side_emit_with_ack(
        &self,
        nsp: &str,
        name: &str,
        args: Vec<Value>,
        timeout: std::time::Duration,
    ) -> Result<Vec<Value>, ServerSideEmitError> {
        match self.cluster.clone() {
            Some(cluster) => {
                cluster
                    .server_side_emit(nsp, name, args, Some(timeout))
                    .await
            }
            None => Ok(Vec::new()),
        }
    }

    /// Hands an event from another server to `nsp`'s handler.
    pub(crate) fn on_server_side_emit(self: &Arc<Self>, nsp: &str, event: ServerSideEvent) {
        if let Some(handler) = self.handler(nsp) {
            handler.on_server_side_emit(self, event);
        }
    }

    /// The namespaces served.
    pub fn namespaces(&self) -> Vec<String> {
        self.namespaces.keys().cloned().collect()
    }

    pub(crate) fn cluster(&self) -> Option<&Arc<dyn Cluster>> {
        self.cluster.as_ref()
    }

    /// Whether an observer watches the sockets.
    pub(crate) fn is_observed(&self) -> bool {
        self.observer.is_some()
    }

    /// Whether the observer wants to hear of events sent.
    pub(crate) fn wants_sent_events(&self) -> bool {
        self.observer
            .as_ref()
            .is_some_and(|observer| observer.wants_sent_events())
    }

    /// Tells the observer, if there is one.
    pub(crate) fn observe(&self, observed: Observed<'_>) {
        if let Some(observer) = &self.observer {
            observer.observe(observed);
        }
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
            false,
        ))
    }
}
