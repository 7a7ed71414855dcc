//! What happens to the sockets, told to the Admin UI (development mode).
//!
//! [`AdminObserver`] is called on connection tasks, and for room changes under
//! a namespace's lock: it copies what it is told into an owned [`Message`] and
//! `try_send`s it on a bounded queue, never waiting. When the queue is full
//! the message is dropped and counted, and the pump's picture is marked stale.
//!
//! [`Pump`], a task of its own, turns the messages into the UI's events and
//! keeps the picture ([`Picture`]) of every socket as the UI was told it:
//! `all_sockets` is made from it, so that it agrees with the events around it
//! (a room in a socket's `rooms` is never `room_joined` again: the UI would
//! count the socket twice). After a drop the picture is rebuilt from the
//! namespaces and every admin gets a fresh `all_sockets` (which replaces the
//! UI's whole list).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use protocol::Args;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

use super::wire::{self, iso8601, now_ms};
use super::{ADMIN_NAMESPACE, Shared};
use crate::socketio::{Io, Observed, Observer, Socket};

/// The least time between two rebuilds of the picture after drops.
const RESYNC_EVERY: Duration = Duration::from_secs(1);

/// Something that happened, owned, with when (ms since the epoch).
#[derive(Debug)]
pub(crate) enum Message {
    Connected {
        socket: Socket,
        at: u64,
    },
    Disconnected {
        socket: Socket,
        reason: &'static str,
        rooms: Vec<String>,
        at: u64,
    },
    Joined {
        nsp: String,
        room: String,
        id: String,
        at: u64,
    },
    Left {
        nsp: String,
        room: String,
        id: String,
        at: u64,
    },
    EventReceived {
        nsp: String,
        id: String,
        name: String,
        args: Args,
        at: u64,
    },
    EventSent {
        nsp: String,
        ids: Vec<String>,
        name: String,
        args: Args,
        at: u64,
    },
    Upgraded {
        nsp: String,
        id: String,
    },
    /// A new admin socket: send it `all_sockets`.
    Welcome(Socket),
}

/// The observer of every namespace: queues, never waits.
#[derive(Debug)]
pub(crate) struct AdminObserver {
    shared: Arc<Shared>,
}

impl AdminObserver {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        AdminObserver { shared }
    }
}

impl Observer for AdminObserver {
    /// In development mode, while an admin is connected (Node's `event_sent`).
    fn wants_sent_events(&self) -> bool {
        self.shared.development() && self.shared.admins_connected()
    }

    fn observe(&self, observed: Observed<'_>) {
        let at = now_ms();
        let message = match observed {
            Observed::Connected(socket) => Message::Connected {
                socket: socket.clone(),
                at,
            },
            Observed::Disconnected {
                socket,
                reason,
                rooms,
            } => Message::Disconnected {
                socket: socket.clone(),
                reason: wire::reason(reason),
                rooms: rooms.to_vec(),
                at,
            },
            Observed::Joined { nsp, room, id } => Message::Joined {
                nsp: nsp.to_owned(),
                room: room.to_owned(),
                id: id.to_owned(),
                at,
            },
            Observed::Left { nsp, room, id } => Message::Left {
                nsp: nsp.to_owned(),
                room: room.to_owned(),
                id: id.to_owned(),
                at,
            },
            Observed::EventReceived { socket, name, args } => {
                // The admin namespace's own commands are not reported (Node
                // neither: the UI would list its own traffic), and events are
                // only copied while someone looks.
                if socket.nsp() == ADMIN_NAMESPACE || !self.shared.admins_connected() {
                    return;
                }
                Message::EventReceived {
                    nsp: socket.nsp().to_owned(),
                    id: socket.id().to_owned(),
                    name: name.to_owned(),
                    args: args.clone(),
                    at,
                }
            }
            Observed::EventSent {
                nsp,
                ids,
                name,
                args,
            } => {
                // Never the admin namespace's own (each report is one: a loop).
                if nsp == ADMIN_NAMESPACE {
                    return;
                }
                Message::EventSent {
                    nsp: nsp.to_owned(),
                    ids: ids.to_vec(),
                    name: name.to_owned(),
                    args: args.clone(),
                    at,
                }
            }
            Observed::Upgraded(socket) => Message::Upgraded {
                nsp: socket.nsp().to_owned(),
                id: socket.id().to_owned(),
            },
        };
        self.shared.send(message);
    }
}

/// A socket as the UI knows it.
struct Known {
    socket: Socket,
    /// When it joined its namespace (ms since the epoch): its handshake's `issued`.
    issued: u64,
    /// Its rooms besides its own.
    rooms: BTreeSet<String>,
}

/// Every socket the UI was told of, by namespace then id.
#[derive(Default)]
struct Picture {
    namespaces: HashMap<String, HashMap<String, Known>>,
}

impl Picture {
    fn get_mut(&mut self, nsp: &str, id: &str) -> Option<&mut Known> {
        self.namespaces.get_mut(nsp)?.get_mut(id)
    }

    /// `socket` (in `rooms`) connected at `at`: its serialisation if it is
    /// new. A recovered socket that took over the id of one still here
    /// replaces it silently (the UI knows the id already).
    fn connected(&mut self, socket: Socket, rooms: Vec<String>, at: u64) -> Option<Value> {
        let sockets = self.namespaces.entry(socket.nsp().to_owned()).or_default();
        if let Some(known) = sockets.get_mut(socket.id()) {
            known.socket = socket;
            known
                .rooms
                .extend(rooms.into_iter().filter(|r| *r != known.socket.id()));
            return None;
        }
        let rooms: BTreeSet<String> = rooms.into_iter().filter(|r| r != socket.id()).collect();
        let value = wire::socket(&socket, at, &rooms);
        sockets.insert(
            socket.id().to_owned(),
            Known {
                socket,
                issued: at,
                rooms,
            },
        );
        Some(value)
    }

    /// Whether `socket` was known (and is forgotten now); not when another
    /// socket took its id over meanwhile.
    fn disconnected(&mut self, socket: &Socket) -> bool {
        let Some(sockets) = self.namespaces.get_mut(socket.nsp()) else {
            return false;
        };
        match sockets.get(socket.id()) {
            Some(known) if known.socket.same(socket) => {
                sockets.remove(socket.id());
                true
            }
            _ => false,
        }
    }

    /// Whether socket `id` of `nsp` joining `room` is news to the UI.
    fn joined(&mut self, nsp: &str, id: &str, room: &str) -> bool {
        room != id
            && self
                .get_mut(nsp, id)
                .is_some_and(|known| known.rooms.insert(room.to_owned()))
    }

    /// Whether socket `id` of `nsp` leaving `room` is news to the UI.
    fn left(&mut self, nsp: &str, id: &str, room: &str) -> bool {
        self.get_mut(nsp, id)
            .is_some_and(|known| known.rooms.remove(room))
    }

    /// Every known socket, serialised, namespaces in order.
    fn all(&self) -> Vec<Value> {
        let mut names: Vec<&String> = self.namespaces.keys().collect();
        names.sort();
        names
            .into_iter()
            .flat_map(|nsp| self.namespaces[nsp].values())
            .map(|known| wire::socket(&known.socket, known.issued, &known.rooms))
            .collect()
    }

    /// The picture made anew from the namespaces; `issued` kept for the
    /// sockets already known.
    fn rebuild(&mut self, io: &Arc<Io>) {
        let now = now_ms();
        let mut namespaces: HashMap<String, HashMap<String, Known>> = HashMap::new();
        for nsp in io.namespaces() {
            let sockets = namespaces.entry(nsp.clone()).or_default();
            for socket in io.sockets(&nsp) {
                let issued = self
                    .get_mut(&nsp, socket.id())
                    .map_or(now, |known| known.issued);
                let rooms = socket
                    .rooms()
                    .into_iter()
                    .filter(|room| room != socket.id())
                    .collect();
                sockets.insert(
                    socket.id().to_owned(),
                    Known {
                        socket,
                        issued,
                        rooms,
                    },
                );
            }
        }
        self.namespaces = namespaces;
    }
}

/// The task that tells the admins.
pub(crate) struct Pump {
    shared: Arc<Shared>,
    io: Arc<Io>,
    picture: Picture,
}

impl Pump {
    pub(crate) fn new(shared: Arc<Shared>, io: Arc<Io>) -> Self {
        Pump {
            shared,
            io,
            picture: Picture::default(),
        }
    }

    pub(crate) async fn run(
        mut self,
        mut queue: mpsc::Receiver<Message>,
        shutdown: CancellationToken,
    ) {
        // A storm that keeps the queue full would otherwise have the picture
        // rebuilt after every message: at most one rebuild per RESYNC_EVERY.
        let mut last_resync: Option<Instant> = None;
        loop {
            let due = last_resync.map_or_else(Instant::now, |at| at + RESYNC_EVERY);
            let stale = self.shared.lost.load(Ordering::Acquire);
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = queue.recv() => match message {
                    Some(message) => self.handle(message),
                    None => return,
                },
                () = tokio::time::sleep_until(due), if stale => {}
            }
            if Instant::now() >= due && self.shared.lost.swap(false, Ordering::AcqRel) {
                self.resync();
                last_resync = Some(Instant::now());
            }
        }
    }

    /// Emits to every admin socket of this server: the picture is this
    /// server's, so are the events that keep it up to date.
    fn tell(&self, name: &str, args: Vec<Value>) {
        if self.shared.admins_connected() {
            self.io.of(ADMIN_NAMESPACE).local().emit_raw(name, args);
        }
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Connected { socket, at } => {
                // Its rooms now (its own among them, unless it is gone already:
                // then it is not reported at all). Rooms joined since are in
                // them, and their `Joined` messages are recognised as known.
                let rooms = socket.rooms();
                if rooms.is_empty() {
                    return;
                }
                if let Some(value) = self.picture.connected(socket, rooms, at) {
                    self.tell("socket_connected", vec![value, json!(iso8601(at))]);
                }
            }
            Message::Disconnected {
                socket,
                reason,
                rooms,
                at,
            } => {
                if !self.picture.disconnected(&socket) {
                    return;
                }
                let (nsp, id, at) = (socket.nsp(), socket.id(), json!(iso8601(at)));
                self.tell(
                    "socket_disconnected",
                    vec![json!(nsp), json!(id), json!(reason), at.clone()],
                );
                // The UI removes a socket from its rooms on these only.
                let own = std::iter::once(id.to_owned());
                for room in own.chain(rooms.into_iter().filter(|room| room != id)) {
                    self.tell(
                        "room_left",
                        vec![json!(nsp), json!(room), json!(id), at.clone()],
                    );
                }
            }
            Message::Joined { nsp, room, id, at } => {
                if self.picture.joined(&nsp, &id, &room) {
                    self.tell(
                        "room_joined",
                        vec![json!(nsp), json!(room), json!(id), json!(iso8601(at))],
                    );
                }
            }
            Message::Left { nsp, room, id, at } => {
                if self.picture.left(&nsp, &id, &room) {
                    self.tell(
                        "room_left",
                        vec![json!(nsp), json!(room), json!(id), json!(iso8601(at))],
                    );
                }
            }
            Message::EventReceived {
                nsp,
                id,
                name,
                args,
                at,
            } => {
                self.tell(
                    "event_received",
                    vec![json!(nsp), json!(id), event(name, args), json!(iso8601(at))],
                );
            }
            Message::EventSent {
                nsp,
                ids,
                name,
                args,
                at,
            } => {
                let event = event(name, args);
                for id in ids {
                    self.tell(
                        "event_sent",
                        vec![json!(nsp), json!(id), event.clone(), json!(iso8601(at))],
                    );
                }
            }
            Message::Upgraded { nsp, id } => {
                if self.picture.get_mut(&nsp, &id).is_some() {
                    self.tell(
                        "socket_updated",
                        vec![json!({"id": id, "nsp": nsp, "transport": "websocket"})],
                    );
                }
            }
            Message::Welcome(admin) => {
                // An admin that left meanwhile cannot take it: nothing to do.
                let _ = admin.emit_raw("all_sockets", vec![Value::Array(self.picture.all())]);
            }
        }
    }

    /// Messages were dropped: the picture is made anew, and every admin gets it.
    fn resync(&mut self) {
        tracing::warn!(
            dropped = self.shared.dropped.load(Ordering::Relaxed),
            "admin UI events dropped (queue full): sending every admin a fresh all_sockets"
        );
        self.picture.rebuild(&self.io);
        self.tell("all_sockets", vec![Value::Array(self.picture.all())]);
    }
}

/// An event as the UI shows it: `[name, ...args]`.
fn event(name: String, args: Args) -> Value {
    let mut event = Vec::with_capacity(1 + args.len());
    event.push(Value::String(name));
    event.extend(args.into_values());
    Value::Array(event)
}
