//! Emits to several sockets of a namespace: `io.of("/").to("room").except("x")`.

use std::sync::Arc;

use protocol::Args;
use protocol::event::{self, Event, EventError};

use super::Io;
use super::adapter::Target;
use super::socket::Socket;

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
    pub(super) fn new(io: Arc<Io>, nsp: &str) -> Self {
        Broadcast {
            io,
            nsp: nsp.to_owned(),
            target: Target::default(),
            volatile: false,
        }
    }

    /// Minus socket `id` (`socket.broadcast()`, `socket.to(room)`).
    pub(super) fn except_socket(&mut self, id: &str) {
        self.target.except_socket = Some(id.to_owned());
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
