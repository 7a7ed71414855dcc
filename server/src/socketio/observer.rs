//! What happens to sockets, for whoever watches them (the Admin UI): an
//! [`Observer`] set on the [`IoBuilder`](super::IoBuilder) hears of every socket
//! that connects or leaves, every room joined or left, every event received and
//! every upgrade, in every namespace.

use super::socket::Socket;
use crate::engine::DisconnectReason;
use protocol::Args;

/// Something that happened to a socket.
#[derive(Debug)]
pub enum Observed<'a> {
    /// A socket joined its namespace (before its handler's `on_connect`); its
    /// rooms are those it starts with (a recovered socket's among them).
    Connected(&'a Socket),
    /// A socket left its namespace; `rooms`: those it was in, its own among them.
    Disconnected {
        socket: &'a Socket,
        reason: &'a DisconnectReason,
        rooms: &'a [String],
    },
    /// Socket `id` of `nsp` joined `room` (a real change: it was not in it).
    Joined {
        nsp: &'a str,
        room: &'a str,
        id: &'a str,
    },
    /// Socket `id` of `nsp` left `room` (it was in it).
    Left {
        nsp: &'a str,
        room: &'a str,
        id: &'a str,
    },
    /// A socket's client emitted an event (before its handler's `on_event`).
    EventReceived {
        socket: &'a Socket,
        name: &'a str,
        args: &'a Args,
    },
    /// An event was sent to sockets `ids` of `nsp` (a direct emit: one id; a
    /// broadcast: each recipient here). Only when the observer
    /// [wants](Observer::wants_sent_events) them.
    EventSent {
        nsp: &'a str,
        ids: &'a [String],
        name: &'a str,
        args: &'a Args,
    },
    /// A socket's connection upgraded to WebSocket.
    Upgraded(&'a Socket),
}

/// Watches sockets. Called on the connection's task, and for room changes
/// under the namespace's lock: it must not block nor touch a namespace (queue
/// what it has to do, and do it on a task of its own).
pub trait Observer: std::fmt::Debug + Send + Sync + 'static {
    fn observe(&self, observed: Observed<'_>);

    /// Whether [`Observed::EventSent`] is wanted now: asked before each emit,
    /// so that the recipients are listed only for an observer that looks.
    fn wants_sent_events(&self) -> bool {
        false
    }
}
