//! Emits to several sockets of a namespace: `io.of("/").to("room").except("x")`,
//! and what Socket.IO's server does with such a selection: make its sockets
//! join or leave rooms, disconnect them, fetch them, or emit and wait for every
//! one's ack.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use protocol::Args;
use protocol::event::{self, Event, EventError};
use serde_json::Value;
use thiserror::Error;

use super::Io;
use super::adapter::{Forward, Target};
use super::handler::{AckError, AckResponse};
use super::namespace::Namespace;
use super::remote::{FetchError, RemoteAcks, RemoteSocket};
use super::socket::Socket;

/// Why a broadcast with acks did not get every ack: the acks that did arrive
/// come with it, as Socket.IO hands them to its callback beside the error.
#[derive(Debug, Error)]
#[error("{missing} of {expected} sockets did not ack within {timeout:?}")]
pub struct BroadcastAckError {
    pub timeout: Duration,
    pub expected: usize,
    pub missing: usize,
    /// The acks that arrived, in no particular order.
    pub responses: Vec<AckResponse>,
}

/// An emit to several sockets of a namespace: `io.of("/").to("room").except("x")`.
/// Built by [`Io::of`], [`Io::to`], [`Socket::to`], [`Socket::broadcast`].
#[derive(Debug, Clone)]
pub struct Broadcast {
    io: Arc<Io>,
    nsp: String,
    target: Target,
    volatile: bool,
    local: bool,
}

impl Broadcast {
    pub(super) fn new(io: Arc<Io>, nsp: &str) -> Self {
        Broadcast {
            io,
            nsp: nsp.to_owned(),
            target: Target::default(),
            volatile: false,
            local: false,
        }
    }

    /// A broadcast to the sockets `target` designates (what another server of
    /// the cluster asked for).
    pub(crate) fn targeted(io: Arc<Io>, nsp: &str, target: Target, volatile: bool) -> Self {
        Broadcast {
            io,
            nsp: nsp.to_owned(),
            target,
            volatile,
            local: false,
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

    /// This server's sockets only: not forwarded to the other servers of a
    /// cluster (Socket.IO's `local` flag).
    pub fn local(mut self) -> Self {
        self.local = true;
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
            self.local,
        )
    }

    /// Emits `name` with `args` to every targeted socket and waits, at most
    /// `timeout`, for each one's ack (Socket.IO's
    /// `io.timeout(ms).emitWithAck(...)`). A socket that leaves or does not
    /// answer in time makes it an error that still carries the acks received.
    /// Like Socket.IO's, such an emit is not logged for recovery. In a cluster
    /// the other servers' sockets are asked too (unless `local`); their acks
    /// carry the first argument only, as Socket.IO's cluster does, and a server
    /// that does not say how many clients it has counts as one missing.
    pub async fn emit_with_ack(
        &self,
        name: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Result<Vec<AckResponse>, BroadcastAckError> {
        let sockets = self.sockets();
        let mut expected = sockets.len();
        let asks = sockets
            .iter()
            .map(|socket| socket.emit_with_ack(name, args.clone(), timeout));
        // The other servers' clients are asked at the same time.
        let remote = async {
            match (self.local, self.io.cluster()) {
                (false, Some(cluster)) => {
                    cluster
                        .clone()
                        .broadcast_with_ack(&self.nsp, &self.target, name, args.clone(), timeout)
                        .await
                }
                _ => RemoteAcks::default(),
            }
        };
        let (answers, remote) = futures_util::future::join(join_all(asks), remote).await;
        let mut responses = Vec::with_capacity(expected + remote.responses.len());
        for answer in answers {
            match answer {
                Ok(response) => responses.push(response),
                Err(AckError::Timeout(_) | AckError::Closed | AckError::Send(_)) => {}
            }
        }
        expected += remote.responses.len() + remote.missing_clients;
        let missing_servers = remote.missing_servers;
        responses.extend(remote.responses.into_iter().map(|first| AckResponse {
            args: vec![first],
            attachments: Vec::new(),
        }));
        if responses.len() == expected && missing_servers == 0 {
            Ok(responses)
        } else {
            Err(BroadcastAckError {
                timeout,
                expected,
                missing: expected - responses.len() + missing_servers,
                responses,
            })
        }
    }

    /// Every targeted socket joins `room` (Socket.IO's `socketsJoin`); returns
    /// how many sockets that was.
    pub fn join(&self, room: &str) -> usize {
        let op = Forward::Join {
            target: &self.target,
            room,
        };
        self.for_each_selected(op, |ns, id| ns.join(id, room.to_owned()))
    }

    /// Every targeted socket leaves `room` (Socket.IO's `socketsLeave`);
    /// returns how many sockets that was.
    pub fn leave(&self, room: &str) -> usize {
        let op = Forward::Leave {
            target: &self.target,
            room,
        };
        self.for_each_selected(op, |ns, id| ns.leave(id, room))
    }

    /// Under the namespace's lock: forwards `op` (unless `local`), then applies
    /// `f` to each targeted socket here; returns how many there were.
    fn for_each_selected(&self, op: Forward<'_>, f: impl Fn(&mut Namespace, &str)) -> usize {
        self.io
            .with_namespace(&self.nsp, |ns| {
                if !self.local {
                    ns.forward(op);
                }
                let ids = ns.recipient_ids(&self.target);
                for id in &ids {
                    f(ns, id);
                }
                ids.len()
            })
            .unwrap_or(0)
    }

    /// The sockets this broadcast would reach now (Socket.IO's `fetchSockets`).
    pub fn sockets(&self) -> Vec<Socket> {
        self.io
            .with_namespace(&self.nsp, |ns| ns.recipients(&self.target))
            .unwrap_or_default()
    }

    /// The targeted sockets of every server of the cluster (Socket.IO's
    /// `fetchSockets`): this server's, then the others' (unless `local`), whose
    /// answers are awaited at most `timeout`. Without a cluster, this server's.
    pub async fn fetch_sockets(&self, timeout: Duration) -> Result<Vec<RemoteSocket>, FetchError> {
        let mut sockets: Vec<RemoteSocket> = self.sockets().iter().map(RemoteSocket::of).collect();
        if let (false, Some(cluster)) = (self.local, self.io.cluster()) {
            match cluster
                .clone()
                .fetch_sockets(&self.nsp, &self.target, timeout)
                .await
            {
                Ok(remote) => sockets.extend(remote),
                Err(FetchError::Timeout {
                    received,
                    expected,
                    sockets: remote,
                }) => {
                    sockets.extend(remote);
                    return Err(FetchError::Timeout {
                        received,
                        expected,
                        sockets,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(sockets)
    }

    /// Removes every targeted socket from the namespace (Socket.IO's
    /// `disconnectSockets`); their connections stay open.
    pub fn disconnect(&self) {
        self.disconnect_sockets(false);
    }

    /// Closes the whole connection of every targeted socket
    /// (`disconnectSockets(true)`).
    pub fn close(&self) {
        self.disconnect_sockets(true);
    }

    fn disconnect_sockets(&self, close: bool) {
        let sockets = self
            .io
            .with_namespace(&self.nsp, |ns| {
                if !self.local {
                    ns.forward(Forward::Disconnect {
                        target: &self.target,
                        close,
                    });
                }
                ns.recipients(&self.target)
            })
            .unwrap_or_default();
        for socket in sockets {
            if close {
                socket.close();
            } else {
                let _ = socket.disconnect();
            }
        }
    }
}
