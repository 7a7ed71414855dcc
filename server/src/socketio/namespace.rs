//! One namespace's live state: its sockets, and its [`Adapter`] (rooms, and —
//! when connection state recovery is on — the log of packets recently sent,
//! with the sessions of sockets that went away and may come back).
//!
//! Everything here sits behind the namespace's lock (see `Io`), so "assign the
//! next offset, log the packet, queue it for every recipient" is atomic: two
//! emits reach every common recipient in offset order, and a socket recovering
//! sees each packet exactly once — either replayed from the log or delivered
//! live.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use protocol::{Frame, Time};

use super::adapter::{Adapter, Offset, Session, Target};
#[cfg(test)]
use super::adapter::{InMemoryAdapter, RecoveryConfig};
use super::observer::{Observed, Observer};
use super::socket::Socket;

/// A recovered session: what it had, the frames it missed, in order, and the
/// socket it replaces if that one was still connected (its client reconnected
/// before the server saw the old transport go).
#[derive(Debug)]
pub(crate) struct Recovered {
    pub session: Session,
    pub missed: Vec<Frame>,
    pub replaced: Option<Socket>,
}

/// The state of one namespace.
#[derive(Debug)]
pub(crate) struct Namespace {
    /// Socket id → socket: also the index of every socket's own room.
    sockets: HashMap<String, Socket>,
    adapter: Box<dyn Adapter>,
    /// Told of room changes.
    observer: Option<Arc<dyn Observer>>,
    /// This namespace's name, for the observer.
    name: String,
}

impl Namespace {
    #[cfg(test)]
    pub(crate) fn new(recovery: Option<RecoveryConfig>) -> Self {
        Namespace::with_adapter(Box::new(InMemoryAdapter::new(recovery)))
    }

    pub(crate) fn with_adapter(adapter: Box<dyn Adapter>) -> Self {
        Namespace {
            sockets: HashMap::new(),
            adapter,
            observer: None,
            name: String::new(),
        }
    }

    /// Tells `observer` (named `name`'s) room changes.
    pub(crate) fn observed_by(mut self, name: &str, observer: Option<Arc<dyn Observer>>) -> Self {
        self.name = name.to_owned();
        self.observer = observer;
        self
    }

    pub(crate) fn recovery_enabled(&self) -> bool {
        self.adapter.recovery_enabled()
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
        self.adapter.del_all(id)
    }

    /// After a removal: when no socket is left, gives back what the busiest
    /// moment grew (the map of sockets, the adapter's rooms and a log nobody can
    /// replay any more). Called once the departed socket's session is saved.
    pub(crate) fn release_if_empty(&mut self, now: Time) {
        if self.sockets.is_empty() {
            self.sockets = HashMap::new();
            self.adapter.on_empty(now);
        }
    }

    pub(crate) fn join(&mut self, id: &str, room: String) {
        if room == id || !self.sockets.contains_key(id) {
            // Its own room needs no entry.
            return;
        }
        if let Some(observer) = &self.observer
            && !self
                .adapter
                .socket_rooms(id)
                .is_some_and(|r| r.contains(&room))
        {
            observer.observe(Observed::Joined {
                nsp: &self.name,
                room: &room,
                id,
            });
        }
        self.adapter.add(id, room);
    }

    pub(crate) fn leave(&mut self, id: &str, room: &str) {
        if room == id {
            // A socket is always in its own room.
            return;
        }
        if let Some(observer) = &self.observer
            && self
                .adapter
                .socket_rooms(id)
                .is_some_and(|r| r.contains(room))
        {
            observer.observe(Observed::Left {
                nsp: &self.name,
                room,
                id,
            });
        }
        self.adapter.del(id, room);
    }

    /// The rooms socket `id` is in, its own among them.
    pub(crate) fn rooms_of(&self, id: &str) -> Vec<String> {
        if !self.sockets.contains_key(id) {
            return Vec::new();
        }
        let mut rooms: Vec<String> = self
            .adapter
            .socket_rooms(id)
            .map(|r| r.iter().cloned().collect())
            .unwrap_or_default();
        rooms.push(id.to_owned());
        rooms.sort();
        rooms
    }

    /// All rooms with at least one socket (every socket's own room among them).
    pub(crate) fn room_names(&self) -> Vec<String> {
        let mut rooms = self.adapter.rooms();
        rooms.extend(self.sockets.keys().cloned());
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

    /// Hands the adapter what the other servers of a cluster must do too.
    /// True when the cluster delivers it back in its own order (see
    /// [`Adapter::forward`]).
    pub(crate) fn forward(&mut self, op: super::adapter::Forward<'_>) -> bool {
        self.adapter.forward(op)
    }

    /// The observer, if it wants to hear of events sent.
    pub(crate) fn sent_events_observer(&self) -> Option<Arc<dyn Observer>> {
        self.observer
            .as_ref()
            .filter(|observer| observer.wants_sent_events())
            .cloned()
    }

    /// See [`Adapter::floor`].
    pub(crate) fn floor(&self) -> Offset {
        self.adapter.floor()
    }

    /// See [`Adapter::missing_up_to`].
    pub(crate) fn missing_up_to(&mut self, offset: Offset) {
        self.adapter.missing_up_to(offset);
    }

    /// Whether a private id not known here may name a session kept elsewhere.
    pub(crate) fn sessions_elsewhere(&self) -> bool {
        self.adapter.sessions_elsewhere()
    }

    /// Admits the session `session` fetched from elsewhere (see
    /// [`Adapter::sessions_elsewhere`]) if every packet after `offset` (or its
    /// base) is in the log here: returns the frames it missed, in order.
    pub(crate) fn recover_fetched(
        &self,
        session: &Session,
        offset: Option<&str>,
    ) -> Option<Vec<Frame>> {
        let offset = match offset {
            Some(offset) => Offset::parse(offset)?,
            None => session.base,
        };
        let mut rooms = session.rooms.clone();
        rooms.insert(session.socket_id.clone());
        self.adapter.missed(offset, &session.socket_id, &rooms)
    }

    /// The ids of the sockets `target` designates.
    pub(crate) fn recipient_ids(&self, target: &Target) -> Vec<String> {
        let mut ids = Vec::new();
        self.for_each_recipient(target, |socket| ids.push(socket.id().to_owned()));
        ids
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
                if let Some(members) = self.adapter.members(room) {
                    ids.extend(members.iter());
                }
                if let Some((id, _)) = self.sockets.get_key_value(room) {
                    ids.insert(id);
                }
            }
            Box::new(ids.into_iter().collect::<Vec<_>>().into_iter())
        };
        candidates
            .filter(|id| target.matches(id, self.adapter.socket_rooms(id).unwrap_or(&empty)))
            .filter_map(|id| self.sockets.get(id))
            .for_each(f);
    }

    /// The next recovery offset, when recovery is on (the caller appends it to
    /// the packet before encoding, then logs the frames under it).
    pub(crate) fn next_offset(&mut self) -> Option<Offset> {
        self.adapter.next_offset()
    }

    /// The last offset assigned so far (0 before any): a joining socket's base.
    pub(crate) fn last_offset(&self) -> Offset {
        self.adapter.last_offset()
    }

    pub(crate) fn log(&mut self, offset: Offset, target: Target, frames: Arc<[Frame]>, now: Time) {
        self.adapter.log(offset, target, frames, now);
    }

    /// Keeps what a departed socket needs to recover, under its private id.
    pub(crate) fn save(&mut self, pid: &str, session: Session, now: Time) {
        self.adapter.persist_session(pid, session, now);
    }

    /// Takes the session `pid` if it can be recovered from `offset` (the last
    /// offset its client got; `None` if it got none, then from the socket's
    /// base): persisted when its socket went away, or — when the client came
    /// back before the server noticed the old transport was gone — its socket
    /// still connected here, which is then taken out of the namespace (the
    /// caller closes it) so that nothing more is queued for it. The session
    /// must be within the window and every packet after the offset still in
    /// the log. Returns it with the frames it missed, in order.
    pub(crate) fn recover(
        &mut self,
        pid: &str,
        offset: Option<&str>,
        now: Time,
    ) -> Option<Recovered> {
        if !self.adapter.recovery_enabled() {
            return None;
        }
        let persisted = self
            .adapter
            .persisted(pid, now)
            .map(|s| (s.base, s.socket_id.clone(), s.rooms.clone()));
        let live = match persisted {
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
        let base = match (&live, &persisted) {
            (Some(socket), _) => socket.base_offset(),
            (None, Some((base, _, _))) => *base,
            (None, None) => return None,
        };
        let offset = match offset {
            Some(offset) => Offset::parse(offset)?,
            None => base,
        };
        let (socket_id, mut rooms) = match &live {
            Some(socket) => (
                socket.id().to_owned(),
                self.adapter
                    .socket_rooms(socket.id())
                    .cloned()
                    .unwrap_or_default(),
            ),
            None => {
                let (_, socket_id, rooms) = persisted?;
                (socket_id, rooms)
            }
        };
        rooms.insert(socket_id.clone());
        let Some(missed) = self.adapter.missed(offset, &socket_id, &rooms) else {
            // Not recoverable: a persisted session is spent, a live socket left alone.
            if live.is_none() {
                self.adapter.restore_session(pid);
            }
            return None;
        };
        let session = match &live {
            Some(socket) => {
                let rooms = self.remove(&socket_id);
                Session {
                    socket_id,
                    rooms,
                    data: socket.data(),
                    base,
                }
            }
            None => self.adapter.restore_session(pid)?,
        };
        // Until its client gets an event it presents no offset of its own: it
        // resumes from the one it recovered from.
        Some(Recovered {
            session: Session {
                base: offset,
                ..session
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
    use std::time::Duration;

    use serde_json::Value;

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
            base: Offset::default(),
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
            recovered.session.base,
            Offset::counter(1),
            "it resumes from there until it gets more"
        );
        // A session recovers once.
        assert!(ns.recover("pid", Some("1"), t).is_none());
    }

    #[test]
    fn an_empty_namespace_gives_back_a_log_nobody_can_replay() {
        let mut ns = Namespace::new(Some(RecoveryConfig::default()));
        let t = Time::from_secs(1);
        let mine = Target {
            rooms: vec!["s1".into()],
            ..Target::default()
        };
        for text in ["greeting", "handshake"] {
            let offset = ns.next_offset().expect("recovery on");
            ns.log(offset, mine.clone(), vec![frame(text)].into(), t);
        }
        // A session saved for recovery keeps the log...
        ns.save("pid", saved(&[]), t);
        ns.release_if_empty(t);
        let recovered = ns.recover("pid", Some("0"), t).expect("kept");
        assert_eq!(
            recovered.missed,
            vec![frame("greeting"), frame("handshake")]
        );
        // ...and once nobody can come back, it is dropped, offsets going on.
        let offset = ns.next_offset().expect("recovery on");
        assert_eq!(offset, Offset::counter(3));
        ns.log(offset, mine, vec![frame("late")].into(), t);
        ns.release_if_empty(t);
        ns.save("pid2", saved(&[]), t);
        assert_eq!(
            ns.recover("pid2", Some("2"), t).map(|r| r.missed),
            None,
            "offset 3 was dropped with the log: a fresh session, not a silent gap"
        );
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
        assert_eq!(base, Offset::counter(1));
        send(&mut ns, "after 1");
        send(&mut ns, "after 2");
        ns.save("pid", Session { base, ..saved(&[]) }, t);
        let recovered = ns.recover("pid", None, t).expect("recoverable");
        assert_eq!(recovered.missed, vec![frame("after 1"), frame("after 2")]);
    }

    #[test]
    fn offsets_read_as_counters_or_stream_ids() {
        let id = Offset::parse("1796566870302-7").expect("a stream id");
        assert_eq!(
            id,
            Offset {
                ms: 1_796_566_870_302,
                seq: 7
            }
        );
        assert_eq!(id.to_string(), "1796566870302-7");
        assert_eq!(Offset::parse("42"), Some(Offset::counter(42)));
        assert_eq!(Offset::counter(42).to_string(), "42");
        assert!(
            Offset::counter(u64::MAX) < id,
            "a counter is before any stream id"
        );
        assert!(Offset::parse("1796566870302-7") < Offset::parse("1796566870302-10"));
        for bad in [
            "",
            "x",
            "1-",
            "-1",
            "1-2-3",
            "+5",
            " 5",
            "5 ",
            "1.5",
            "99999999999999999999",
        ] {
            assert_eq!(Offset::parse(bad), None, "{bad:?}");
        }
    }

    /// A cluster's server logs the stream from where it started reading: a
    /// client whose offset is before that cannot recover there, one after can.
    #[test]
    fn a_log_that_starts_late_replays_only_what_it_saw() {
        let mut ns = Namespace::new(Some(RecoveryConfig::default()));
        let t = Time::from_secs(1);
        let id = |seq| Offset { ms: 1000, seq };
        ns.missing_up_to(id(5));
        assert_eq!(ns.last_offset(), id(5), "a joining socket's base");
        for seq in 6..=8 {
            ns.log(
                id(seq),
                Target::default(),
                vec![frame(&seq.to_string())].into(),
                t,
            );
        }
        let fetched = saved(&[]);
        assert_eq!(
            ns.recover_fetched(&fetched, Some("1000-4")),
            None,
            "before the log"
        );
        assert_eq!(
            ns.recover_fetched(&fetched, Some("1000-5")),
            Some(vec![frame("6"), frame("7"), frame("8")])
        );
        assert_eq!(
            ns.recover_fetched(&fetched, Some("1000-7")),
            Some(vec![frame("8")])
        );
        assert_eq!(
            ns.recover_fetched(&fetched, Some("1000-9")),
            None,
            "not read yet"
        );
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
