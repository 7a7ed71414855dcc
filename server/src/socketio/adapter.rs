//! The seam between a namespace's sockets and where its rooms and its recovery
//! log are kept: [`Adapter`], after Socket.IO's adapter interface (membership
//! by socket id, the rooms a broadcast reaches, persisting and restoring the
//! session of a socket that went away, the log of packets to replay).
//! [`InMemoryAdapter`], this server's own memory, is the default; an adapter
//! shared by several servers (Redis) plugs in here without touching the
//! sockets. The namespace that owns it holds it under its lock, so an adapter
//! needs no locking of its own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use protocol::{Args, Frame, Time};
use serde_json::Value;

/// Which sockets of a namespace an emit goes to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Target {
    /// Sockets in any of these rooms; every socket when empty.
    pub rooms: Vec<String>,
    /// Minus sockets in any of these rooms.
    pub except_rooms: Vec<String>,
    /// Minus this socket (`socket.broadcast()`, `socket.to(room)`).
    pub except_socket: Option<String>,
}

impl Target {
    /// Whether socket `socket_id`, in `rooms` (and, implicitly, its own room),
    /// is a recipient.
    pub fn matches(&self, socket_id: &str, rooms: &HashSet<String>) -> bool {
        if self.except_socket.as_deref() == Some(socket_id) {
            return false;
        }
        let within = |r: &String| r == socket_id || rooms.contains(r);
        if self.except_rooms.iter().any(within) {
            return false;
        }
        self.rooms.is_empty() || self.rooms.iter().any(within)
    }
}

/// Recovery settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryConfig {
    /// How long a disconnected socket's session and missed packets are kept.
    pub window: Duration,
    /// Most packets kept in the log; older ones are dropped first, and a socket
    /// whose offset fell out of the log starts fresh (and is told so).
    pub max_packets: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        RecoveryConfig {
            window: Duration::from_secs(120),
            max_packets: 10_000,
        }
    }
}

/// Where a packet stands in a namespace's order of emits, as clients see it
/// (the last argument of every logged event): a counter on one server (`7`),
/// a Redis stream's entry id in a cluster (`1796566870302-0`, as Node's Redis
/// Streams adapter makes them). Both read as `ms-seq`; a counter is `0-n`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Offset {
    pub ms: u64,
    pub seq: u64,
}

impl Offset {
    /// The `n`th offset of a server's own counter.
    pub fn counter(n: u64) -> Offset {
        Offset { ms: 0, seq: n }
    }

    /// Reads `n` or `ms-seq`; `None` for anything else (a client can send any
    /// string).
    pub fn parse(text: &str) -> Option<Offset> {
        let digits = |s: &str| {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        match text.split_once('-') {
            Some((ms, seq)) => Some(Offset {
                ms: digits(ms)?,
                seq: digits(seq)?,
            }),
            None => Some(Offset::counter(digits(text)?)),
        }
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ms == 0 {
            write!(f, "{}", self.seq)
        } else {
            write!(f, "{}-{}", self.ms, self.seq)
        }
    }
}

#[derive(Debug)]
struct Logged {
    offset: Offset,
    at: Time,
    target: Target,
    frames: Arc<[Frame]>,
}

/// What recovery restores of a socket: kept when it went away, for it to come
/// back to, or taken from it when its client came back first.
#[derive(Debug, Clone)]
pub struct Session {
    pub socket_id: String,
    pub rooms: HashSet<String>,
    pub data: Value,
    /// The last offset logged before the socket joined: where a client that
    /// never got an event with an offset resumes from.
    pub base: Offset,
}

/// What this server did that the other servers of a cluster must do too, as a
/// namespace hands it to its adapter: under the namespace's lock, so in the
/// order it happened here. The in-memory adapter has no one to tell; a shared
/// adapter (Redis) publishes it. What other servers did comes back through
/// [`Broadcast::local`](super::Broadcast::local), which does not forward.
#[derive(Debug, Clone, Copy)]
pub enum Forward<'a> {
    /// An event for the sockets `target` designates (binary arguments as
    /// placeholders, their bytes in `attachments`).
    Broadcast {
        target: &'a Target,
        name: &'a str,
        args: &'a Args,
        attachments: &'a [Vec<u8>],
        volatile: bool,
    },
    /// The sockets `target` designates join `room`.
    Join { target: &'a Target, room: &'a str },
    /// The sockets `target` designates leave `room`.
    Leave { target: &'a Target, room: &'a str },
    /// The sockets `target` designates leave the namespace (`close`: their
    /// whole connection closes).
    Disconnect { target: &'a Target, close: bool },
}

/// Where a namespace's rooms, sessions of departed sockets and recovery log
/// live. Rooms hold socket ids; a socket's own room (named by its id) is
/// implicit and never stored. Methods run under the namespace's lock.
pub trait Adapter: fmt::Debug + Send + 'static {
    /// Socket `id` joins `room`.
    fn add(&mut self, id: &str, room: String);
    /// Socket `id` leaves `room`.
    fn del(&mut self, id: &str, room: &str);
    /// Socket `id` leaves every room; returns the rooms it was in.
    fn del_all(&mut self, id: &str) -> HashSet<String>;
    /// The rooms socket `id` joined (not its own).
    fn socket_rooms(&self, id: &str) -> Option<&HashSet<String>>;
    /// The ids of the sockets in `room` (not counting own rooms).
    fn members(&self, room: &str) -> Option<&HashSet<String>>;
    /// Every room with members (not counting own rooms).
    fn rooms(&self) -> Vec<String>;

    /// Whether sessions are kept for recovery and packets logged for replay.
    fn recovery_enabled(&self) -> bool;
    /// The offset of the next packet logged (`None` without recovery).
    fn next_offset(&mut self) -> Option<Offset>;
    /// The last offset assigned so far (0 before any).
    fn last_offset(&self) -> Offset;
    /// Logs a packet sent to `target` under `offset`, for replay.
    fn log(&mut self, offset: Offset, target: Target, frames: Arc<[Frame]>, now: Time);
    /// Keeps the session of a socket that went away under its private id.
    fn persist_session(&mut self, pid: &str, session: Session, now: Time);
    /// The session persisted under `pid`, if it is still within the window.
    fn persisted(&mut self, pid: &str, now: Time) -> Option<&Session>;
    /// Takes the session persisted under `pid`.
    fn restore_session(&mut self, pid: &str) -> Option<Session>;
    /// The frames logged after `offset` that socket `id`, in `rooms`, was to
    /// get, in order; `None` if some of them are no longer kept (or `offset`
    /// was never sent).
    fn missed(&self, offset: Offset, id: &str, rooms: &HashSet<String>) -> Option<Vec<Frame>>;

    /// Whether sessions of departed sockets are kept elsewhere (in a cluster,
    /// on Redis): a private id not known here is then looked up there
    /// ([`Cluster::take_session`](super::Cluster::take_session)) before the
    /// socket is admitted.
    fn sessions_elsewhere(&self) -> bool {
        false
    }

    /// Packets after this offset are all in the log (those up to it may not
    /// be): where a replay from elsewhere must reach.
    fn floor(&self) -> Offset {
        Offset::default()
    }

    /// Packets up to `offset` may have been given out without being logged
    /// here (a cluster's stream before this server read it): a client that
    /// last got one of them cannot recover here; later ones are logged.
    fn missing_up_to(&mut self, offset: Offset) {
        let _ = offset;
    }

    /// The namespace has no socket left here: keep only what a client coming
    /// back could use, and give the rest back (a namespace lives as long as the
    /// server, so what its busiest moment grew must not stay).
    fn on_empty(&mut self, now: Time) {
        let _ = now;
    }

    /// Tells the other servers of the cluster what this one did (nothing to
    /// tell without a cluster). Runs under the namespace's lock: it must not
    /// block, only queue. True when the cluster hands a broadcast back to be
    /// delivered in the cluster's order, with the cluster's offset
    /// ([`Io::deliver_logged`](super::Io::deliver_logged)): the namespace must
    /// then not deliver it now.
    fn forward(&mut self, op: Forward<'_>) -> bool {
        let _ = op;
        false
    }
}

/// This server's memory: rooms by id, and (with recovery) the log and the
/// persisted sessions, bounded by the window and `max_packets`.
#[derive(Debug, Default)]
pub struct InMemoryAdapter {
    /// Room → ids of the sockets in it.
    rooms: HashMap<String, HashSet<String>>,
    /// Socket id → the rooms it joined (not its own).
    membership: HashMap<String, HashSet<String>>,
    recovery: Option<Recovery>,
}

impl InMemoryAdapter {
    pub fn new(recovery: Option<RecoveryConfig>) -> Self {
        InMemoryAdapter {
            recovery: recovery.map(|config| Recovery {
                config,
                last: Offset::default(),
                floor: Offset::default(),
                log: VecDeque::new(),
                saved: HashMap::new(),
            }),
            ..InMemoryAdapter::default()
        }
    }
}

impl Adapter for InMemoryAdapter {
    fn add(&mut self, id: &str, room: String) {
        self.rooms
            .entry(room.clone())
            .or_default()
            .insert(id.to_owned());
        self.membership
            .entry(id.to_owned())
            .or_default()
            .insert(room);
    }

    fn del(&mut self, id: &str, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
        if let Some(rooms) = self.membership.get_mut(id) {
            rooms.remove(room);
        }
    }

    fn del_all(&mut self, id: &str) -> HashSet<String> {
        let rooms = self.membership.remove(id).unwrap_or_default();
        for room in &rooms {
            if let Some(members) = self.rooms.get_mut(room) {
                members.remove(id);
                if members.is_empty() {
                    self.rooms.remove(room);
                }
            }
        }
        rooms
    }

    fn socket_rooms(&self, id: &str) -> Option<&HashSet<String>> {
        self.membership.get(id)
    }

    fn members(&self, room: &str) -> Option<&HashSet<String>> {
        self.rooms.get(room)
    }

    fn rooms(&self) -> Vec<String> {
        self.rooms.keys().cloned().collect()
    }

    fn recovery_enabled(&self) -> bool {
        self.recovery.is_some()
    }

    fn next_offset(&mut self) -> Option<Offset> {
        let recovery = self.recovery.as_ref()?;
        Some(Offset::counter(recovery.last.seq + 1))
    }

    fn last_offset(&self) -> Offset {
        self.recovery
            .as_ref()
            .map_or_else(Offset::default, |r| r.last)
    }

    fn log(&mut self, offset: Offset, target: Target, frames: Arc<[Frame]>, now: Time) {
        if let Some(recovery) = &mut self.recovery {
            recovery.last = recovery.last.max(offset);
            recovery.log.push_back(Logged {
                offset,
                at: now,
                target,
                frames,
            });
            recovery.prune(now);
        }
    }

    fn persist_session(&mut self, pid: &str, session: Session, now: Time) {
        if let Some(recovery) = &mut self.recovery {
            recovery.prune(now);
            recovery.saved.insert(pid.to_owned(), (session, now));
        }
    }

    fn persisted(&mut self, pid: &str, now: Time) -> Option<&Session> {
        let recovery = self.recovery.as_mut()?;
        recovery.prune(now);
        recovery.saved.get(pid).map(|(session, _)| session)
    }

    fn restore_session(&mut self, pid: &str) -> Option<Session> {
        self.recovery
            .as_mut()?
            .saved
            .remove(pid)
            .map(|(session, _)| session)
    }

    fn floor(&self) -> Offset {
        self.recovery
            .as_ref()
            .map_or_else(Offset::default, |r| r.floor)
    }

    fn missing_up_to(&mut self, offset: Offset) {
        if let Some(recovery) = &mut self.recovery {
            recovery.floor = recovery.floor.max(offset);
            recovery.last = recovery.last.max(offset);
        }
    }

    fn on_empty(&mut self, now: Time) {
        self.rooms = HashMap::new();
        self.membership = HashMap::new();
        if let Some(recovery) = &mut self.recovery {
            recovery.prune(now);
            if recovery.saved.is_empty() {
                // Nobody left to replay to, and nobody who may come back: the
                // log (a socket's greeting, say) can only be dropped.
                recovery.floor = recovery.last;
                recovery.log = VecDeque::new();
                recovery.saved = HashMap::new();
            }
        }
    }

    fn missed(&self, offset: Offset, id: &str, rooms: &HashSet<String>) -> Option<Vec<Frame>> {
        let recovery = self.recovery.as_ref()?;
        // Packets after `offset` must all still be there (none dropped after
        // it), and `offset` must have been given out.
        if offset < recovery.floor || offset > recovery.last {
            return None;
        }
        Some(
            recovery
                .log
                .iter()
                .filter(|l| l.offset > offset && l.target.matches(id, rooms))
                .flat_map(|l| l.frames.iter().cloned())
                .collect(),
        )
    }
}

#[derive(Debug)]
struct Recovery {
    config: RecoveryConfig,
    /// The last offset given out.
    last: Offset,
    /// Packets after this one are all in the log (those up to it may be gone).
    floor: Offset,
    log: VecDeque<Logged>,
    /// Sessions of sockets that went away, by pid, with when.
    saved: HashMap<String, (Session, Time)>,
}

impl Recovery {
    fn prune(&mut self, now: Time) {
        let window = self.config.window;
        while self.log.front().is_some_and(|l| {
            self.log.len() > self.config.max_packets || now.saturating_sub(l.at) > window
        }) {
            if let Some(dropped) = self.log.pop_front() {
                self.floor = self.floor.max(dropped.offset);
            }
        }
        self.saved
            .retain(|_, (_, at)| now.saturating_sub(*at) <= window);
    }
}
