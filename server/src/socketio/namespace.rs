//! One namespace's live state: its sockets, their rooms, and — when connection
//! state recovery is on — the log of packets recently sent, with the sessions of
//! sockets that went away and may come back.
//!
//! Everything here sits behind one lock per server (see `Io`), so "assign the next
//! offset, log the packet, queue it for every recipient" is atomic: two emits
//! reach every common recipient in offset order, and a socket recovering sees each
//! packet exactly once — either replayed from the log or delivered live.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use protocol::{Frame, Time};
use serde_json::Value;

use super::socket::Socket;

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
    fn matches(&self, socket_id: &str, rooms: &HashSet<String>) -> bool {
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

#[derive(Debug)]
struct Logged {
    offset: u64,
    at: Time,
    target: Target,
    frames: Arc<[Frame]>,
}

/// What recovery restores of a socket: kept when it went away, for it to come
/// back to, or taken from it when its client came back first.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    pub socket_id: String,
    pub rooms: HashSet<String>,
    pub data: Value,
    /// The last offset logged before the socket joined: where a client that
    /// never got an event with an offset resumes from.
    pub base: u64,
}

/// A recovered session: what it had, the frames it missed, in order, and the
/// socket it replaces if that one was still connected (its client reconnected
/// before the server saw the old transport go).
#[derive(Debug)]
pub(crate) struct Recovered {
    pub session: Session,
    pub missed: Vec<Frame>,
    pub replaced: Option<Socket>,
}

#[derive(Debug)]
struct Recovery {
    config: RecoveryConfig,
    next_offset: u64,
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
            self.log.pop_front();
        }
        self.saved
            .retain(|_, (_, at)| now.saturating_sub(*at) <= window);
    }
}

/// The state of one namespace.
#[derive(Debug, Default)]
pub(crate) struct Namespace {
    sockets: HashMap<String, Socket>,
    /// Room → ids of the sockets in it. Every socket is also in a room named by
    /// its id; those rooms are implicit (`sockets` is their index), which spares
    /// each connection two maps' entries.
    rooms: HashMap<String, HashSet<String>>,
    /// Socket id → the rooms it joined (not its own).
    membership: HashMap<String, HashSet<String>>,
    recovery: Option<Recovery>,
}

impl Namespace {
    pub(crate) fn new(recovery: Option<RecoveryConfig>) -> Self {
        Namespace {
            recovery: recovery.map(|config| Recovery {
                config,
                next_offset: 1,
                log: VecDeque::new(),
                saved: HashMap::new(),
            }),
            ..Namespace::default()
        }
    }

    pub(crate) fn recovery_enabled(&self) -> bool {
        self.recovery.is_some()
    }

    /// Adds `socket`, in its own room and `rooms`.
    pub(crate) fn insert(&mut self, socket: &Socket, rooms: impl IntoIterator<Item = String>) {
        let id = socket.id().to_owned();
        self.sockets.insert(id.clone(), socket.clone());
        for room in rooms {
            self.join(&id, room);
        }
    }

    /// Removes socket `id`; returns the rooms it had joined (not its own).
    pub(crate) fn remove(&mut self, id: &str) -> HashSet<String> {
        self.sockets.remove(id);
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

    pub(crate) fn join(&mut self, id: &str, room: String) {
        if room == id || !self.sockets.contains_key(id) {
            // Its own room needs no entry.
            return;
        }
        self.rooms
            .entry(room.clone())
            .or_default()
            .insert(id.to_owned());
        self.membership
            .entry(id.to_owned())
            .or_default()
            .insert(room);
    }

    pub(crate) fn leave(&mut self, id: &str, room: &str) {
        if room == id {
            // A socket is always in its own room.
            return;
        }
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

    /// The rooms socket `id` is in, its own among them.
    pub(crate) fn rooms_of(&self, id: &str) -> Vec<String> {
        if !self.sockets.contains_key(id) {
            return Vec::new();
        }
        let mut rooms: Vec<String> = self
            .membership
            .get(id)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        rooms.push(id.to_owned());
        rooms.sort();
        rooms
    }

    /// All rooms with at least one socket (every socket's own room among them).
    pub(crate) fn room_names(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self
            .rooms
            .keys()
            .chain(self.sockets.keys())
            .cloned()
            .collect();
        rooms.sort();
        rooms.dedup();
        rooms
    }

    pub(crate) fn socket(&self, id: &str) -> Option<&Socket> {
        self.sockets.get(id)
    }

    pub(crate) fn len(&self) -> usize {
        self.sockets.len()
    }

    /// The sockets `target` designates.
    pub(crate) fn recipients(&self, target: &Target) -> Vec<Socket> {
        let mut sockets = Vec::new();
        self.for_each_recipient(target, |s| sockets.push(s.clone()));
        sockets
    }

    /// Calls `f` on every socket `target` designates, each once. The hot path of
    /// every broadcast: an emit to the whole namespace (with or without one
    /// socket left out) looks nothing up.
    pub(crate) fn for_each_recipient(&self, target: &Target, mut f: impl FnMut(&Socket)) {
        if target.rooms.is_empty() && target.except_rooms.is_empty() {
            let except = target.except_socket.as_deref();
            for (id, socket) in &self.sockets {
                if except != Some(id.as_str()) {
                    f(socket);
                }
            }
            return;
        }
        let empty = HashSet::new();
        let candidates: Box<dyn Iterator<Item = &String>> = if target.rooms.is_empty() {
            Box::new(self.sockets.keys())
        } else {
            // Sockets in any listed room, each once; a room named by a socket's id
            // holds that socket.
            let mut ids: HashSet<&String> = HashSet::new();
            for room in &target.rooms {
                if let Some(members) = self.rooms.get(room) {
                    ids.extend(members.iter());
                }
                if let Some((id, _)) = self.sockets.get_key_value(room) {
                    ids.insert(id);
                }
            }
            Box::new(ids.into_iter().collect::<Vec<_>>().into_iter())
        };
        candidates
            .filter(|id| target.matches(id, self.membership.get(*id).unwrap_or(&empty)))
            .filter_map(|id| self.sockets.get(id))
            .for_each(f);
    }

    /// The next recovery offset, and logs `frames` under it, when recovery is on
    /// (the caller appends the offset to the packet before encoding).
    pub(crate) fn next_offset(&mut self) -> Option<u64> {
        let recovery = self.recovery.as_mut()?;
        let offset = recovery.next_offset;
        recovery.next_offset += 1;
        Some(offset)
    }

    /// The last offset assigned so far (0 before any): a joining socket's base.
    pub(crate) fn last_offset(&self) -> u64 {
        self.recovery.as_ref().map_or(0, |r| r.next_offset - 1)
    }

    pub(crate) fn log(&mut self, offset: u64, target: Target, frames: Arc<[Frame]>, now: Time) {
        if let Some(recovery) = &mut self.recovery {
            recovery.log.push_back(Logged {
                offset,
                at: now,
                target,
                frames,
            });
            recovery.prune(now);
        }
    }

    /// Keeps what a departed socket needs to recover, under its private id.
    pub(crate) fn save(&mut self, pid: &str, session: Session, now: Time) {
        if let Some(recovery) = &mut self.recovery {
            recovery.prune(now);
            recovery.saved.insert(pid.to_owned(), (session, now));
        }
    }

    /// Takes the session `pid` if it can be recovered from `offset` (the last
    /// offset its client got; `None` if it got none, then from the socket's
    /// base): saved when its socket went away, or — when the client came back
    /// before the server noticed the old transport was gone — its socket still
    /// connected here, which is then taken out of the namespace (the caller
    /// closes it) so that nothing more is queued for it. The session must be
    /// within the window and every packet after the offset still in the log.
    /// Returns it with the frames it missed, in order.
    pub(crate) fn recover(
        &mut self,
        pid: &str,
        offset: Option<&str>,
        now: Time,
    ) -> Option<Recovered> {
        let recovery = self.recovery.as_mut()?;
        recovery.prune(now);
        let live = match recovery.saved.get(pid) {
            Some(_) => None,
            None => {
                // A socket's pid starts with its id (see `pid_for`).
                let (socket_id, _) = pid.split_once(PID_SEPARATOR)?;
                let socket = self.sockets.get(socket_id)?;
                if socket.pid() != Some(pid) {
                    return None;
                }
                Some(socket.clone())
            }
        };
        let base = match &live {
            Some(socket) => socket.base_offset(),
            None => recovery.saved.get(pid)?.0.base,
        };
        let offset: u64 = match offset {
            Some(offset) => offset.parse().ok()?,
            None => base,
        };
        // Packets after `offset` must all still be there: the oldest kept one must
        // be at most offset + 1 (or nothing was sent since).
        let complete = match recovery.log.front() {
            Some(first) => first.offset <= offset + 1,
            None => offset + 1 >= recovery.next_offset,
        };
        if !complete || offset >= recovery.next_offset {
            // Not recoverable: a saved session is spent, a live socket left alone.
            recovery.saved.remove(pid);
            return None;
        }
        let saved = match &live {
            Some(socket) => {
                let socket_id = socket.id().to_owned();
                let rooms = self.remove(&socket_id);
                Session {
                    socket_id,
                    rooms,
                    data: socket.data(),
                    base,
                }
            }
            None => recovery.saved.remove(pid)?.0,
        };
        let recovery = self.recovery.as_ref()?;
        let mut rooms = saved.rooms.clone();
        rooms.insert(saved.socket_id.clone());
        let missed = recovery
            .log
            .iter()
            .filter(|l| l.offset > offset && l.target.matches(&saved.socket_id, &rooms))
            .flat_map(|l| l.frames.iter().cloned())
            .collect();
        // Until its client gets an event it presents no offset of its own: it
        // resumes from the one it recovered from.
        Some(Recovered {
            session: Session {
                base: offset,
                ..saved
            },
            missed,
            replaced: live,
        })
    }
}

/// Between a socket's id and the secret part of its private id.
const PID_SEPARATOR: char = '.';

/// A private id for socket `socket_id`: its id (so that the socket is found
/// while still connected), then 120 random bits that only its client knows.
pub(crate) fn pid_for(socket_id: &str) -> String {
    format!("{socket_id}{PID_SEPARATOR}{}", crate::sid::generate())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_matching() {
        let rooms: HashSet<String> = ["a".to_owned(), "s1".to_owned()].into();
        assert!(Target::default().matches("s1", &rooms));
        let to_a = Target {
            rooms: vec!["a".into()],
            ..Target::default()
        };
        assert!(to_a.matches("s1", &rooms));
        let to_b = Target {
            rooms: vec!["b".into()],
            ..Target::default()
        };
        assert!(!to_b.matches("s1", &rooms));
        let except_a = Target {
            except_rooms: vec!["a".into()],
            ..Target::default()
        };
        assert!(!except_a.matches("s1", &rooms));
        let not_me = Target {
            except_socket: Some("s1".into()),
            ..Target::default()
        };
        assert!(!not_me.matches("s1", &rooms));
    }

    fn frame(s: &str) -> Frame {
        Frame::Text(s.to_owned())
    }

    fn saved(rooms: &[&str]) -> Session {
        Session {
            socket_id: "s1".into(),
            rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
            data: Value::Null,
            base: 0,
        }
    }

    #[test]
    fn recovery_replays_what_the_socket_missed_in_order() {
        let mut ns = Namespace::new(Some(RecoveryConfig::default()));
        let t = Time::from_secs(1);
        for (text, room) in [("a1", "a"), ("b1", "b"), ("a2", "a"), ("all", "")] {
            let offset = ns.next_offset().expect("recovery on");
            let target = Target {
                rooms: if room.is_empty() {
                    vec![]
                } else {
                    vec![room.into()]
                },
                ..Target::default()
            };
            ns.log(offset, target, vec![frame(text)].into(), t);
        }
        ns.save("pid", saved(&["a"]), t);
        // The client had seen offset 1 ("a1").
        let recovered = ns.recover("pid", Some("1"), t).expect("recoverable");
        assert_eq!(recovered.session.socket_id, "s1");
        assert_eq!(recovered.missed, vec![frame("a2"), frame("all")]);
        assert!(recovered.replaced.is_none(), "it was not connected");
        assert_eq!(
            recovered.session.base, 1,
            "it resumes from there until it gets more"
        );
        // A session recovers once.
        assert!(ns.recover("pid", Some("1"), t).is_none());
    }

    #[test]
    fn recovery_fails_outside_the_window_or_past_the_log() {
        let config = RecoveryConfig {
            window: Duration::from_secs(10),
            max_packets: 2,
        };
        let mut ns = Namespace::new(Some(config));
        let t = Time::from_secs(1);
        ns.save("late", saved(&[]), t);
        assert!(
            ns.recover("late", Some("0"), t + Duration::from_secs(11))
                .is_none()
        );

        for i in 0..4 {
            let offset = ns.next_offset().expect("on");
            ns.log(
                offset,
                Target::default(),
                vec![frame(&i.to_string())].into(),
                t,
            );
        }
        // Offsets 1..=4 sent, only 3 and 4 kept: a client at 1 missed 2, which is gone.
        ns.save("p", saved(&[]), t);
        assert!(ns.recover("p", Some("1"), t).is_none());
        ns.save("q", saved(&[]), t);
        assert_eq!(
            ns.recover("q", Some("2"), t).map(|r| r.missed),
            Some(vec![frame("2"), frame("3")])
        );
        ns.save("r", saved(&[]), t);
        assert!(ns.recover("r", Some("not a number"), t).is_none());
        ns.save("s", saved(&[]), t);
        assert!(
            ns.recover("s", Some("99"), t).is_none(),
            "an offset never sent"
        );
    }

    #[test]
    fn a_client_that_got_no_event_resumes_from_where_it_joined() {
        let mut ns = Namespace::new(Some(RecoveryConfig::default()));
        let t = Time::from_secs(1);
        let send = |ns: &mut Namespace, text: &str| {
            let offset = ns.next_offset().expect("recovery on");
            ns.log(offset, Target::default(), vec![frame(text)].into(), t);
        };
        send(&mut ns, "before");
        // The socket joined after offset 1, then its client got nothing.
        let base = ns.last_offset();
        assert_eq!(base, 1);
        send(&mut ns, "after 1");
        send(&mut ns, "after 2");
        ns.save("pid", Session { base, ..saved(&[]) }, t);
        let recovered = ns.recover("pid", None, t).expect("recoverable");
        assert_eq!(recovered.missed, vec![frame("after 1"), frame("after 2")]);
    }

    #[test]
    fn pids_name_their_socket_and_cannot_be_guessed_from_it() {
        let a = pid_for("s1");
        let b = pid_for("s1");
        assert!(a.starts_with("s1."), "{a}");
        assert_ne!(a, b);
        // A pid with the right socket id and another secret recovers nothing.
        let mut ns = Namespace::new(Some(RecoveryConfig::default()));
        assert!(ns.recover("s1.guess", None, Time::from_secs(1)).is_none());
    }
}
