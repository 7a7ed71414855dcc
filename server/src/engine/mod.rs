//! The bare Engine.IO layer: what every session has whatever runs on top of it.
//!
//! - [`Machine`]: a sans-I/O session plus the application on top, as the transport
//!   task drives it. The Socket.IO layer is one machine (it builds on this layer,
//!   never the reverse); a bare Engine.IO application ([`EngineHandler`], mounted
//!   with [`EngineApp`], in `app`) is another.
//! - `handshake`: [`Handshake`], what the application sees of the opening request.
//! - [`Link`]: the bounded queue (and kill switch) through which the application
//!   talks to a session's task from anywhere.
//! - [`DisconnectReason`] and [`SendError`], shared by both layers.
//!
//! Nothing here knows warp: the transports live in [`crate::transport`].

use std::fmt;
use std::sync::{Arc, Mutex};

use protocol::session::{
    CloseReason, EngineConfig, EngineSession, Probe, ProtocolError, Transport,
};
use protocol::{Frame, Time};
use thiserror::Error;

use crate::queue::{BoundedQueue, Refused};
use crate::stop::Stop;

mod app;
mod handshake;

pub use app::{EngineApp, EngineHandler, EngineMachine, EngineMessage, EngineSocket};
pub use handshake::{Handshake, Headers, query_pairs};

/// Why a client went away. Every disconnect reaches the application with one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DisconnectReason {
    #[error("client left the namespace")]
    ClientNamespaceDisconnect,
    #[error("client closed the connection")]
    ClientClosed,
    #[error("ping timeout")]
    PingTimeout,
    #[error("transport error: {0}")]
    Transport(String),
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error("message too large: {0}")]
    MessageTooLarge(String),
    #[error("client too slow: its outbound queue is full")]
    SlowClient,
    #[error("server shutting down")]
    ServerShutdown,
    #[error("disconnected by the server")]
    ServerDisconnect,
    /// Its client reconnected and recovered the session on another connection
    /// before this one was seen to fail.
    #[error("replaced by a reconnection of the same session")]
    Replaced,
}

impl DisconnectReason {
    /// Why a session ended: the server's own reason if it closed it (`closing`),
    /// else what the session saw.
    pub(crate) fn of(closing: Option<&DisconnectReason>, closed: Option<&CloseReason>) -> Self {
        match closing {
            Some(reason) => reason.clone(),
            None => closed.map_or(DisconnectReason::ClientClosed, DisconnectReason::from),
        }
    }
}

impl From<&CloseReason> for DisconnectReason {
    fn from(reason: &CloseReason) -> Self {
        match reason {
            CloseReason::PeerClosed => DisconnectReason::ClientClosed,
            CloseReason::LocalClose => DisconnectReason::ServerDisconnect,
            CloseReason::PingTimeout | CloseReason::ServerSilent => DisconnectReason::PingTimeout,
            CloseReason::ConnectTimeout => DisconnectReason::Protocol(reason.to_string()),
            CloseReason::Protocol(e @ ProtocolError::PayloadTooLarge { .. }) => {
                DisconnectReason::MessageTooLarge(e.to_string())
            }
            CloseReason::Protocol(e) => DisconnectReason::Protocol(e.to_string()),
            CloseReason::Transport(e) => DisconnectReason::Transport(e.clone()),
        }
    }
}

/// Why a send did not go out.
#[derive(Debug, Error)]
pub enum SendError {
    #[error("the connection is closed")]
    Closed,
    #[error("the client's outbound queue is full; it is being disconnected")]
    QueueFull,
    #[error(transparent)]
    Event(#[from] protocol::event::EventError),
}

/// The application's handle on a session's task: a bounded command queue and a
/// kill switch. When the queue is full the client is not keeping up: it is
/// disconnected ([`DisconnectReason::SlowClient`]) rather than buffered without
/// bound or silently skipped. The queue allocates only for what waits
/// ([`BoundedQueue`]).
pub(crate) struct Link<C> {
    queue: BoundedQueue<C>,
    kill: Stop,
    kill_reason: Mutex<Option<DisconnectReason>>,
    /// Whether the session is on WebSocket (set when it opens there or upgrades).
    websocket: std::sync::atomic::AtomicBool,
}

impl<C> fmt::Debug for Link<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl<C> Link<C> {
    /// A link with a queue of `capacity`, and the receiving end for the task.
    pub(crate) fn new(capacity: usize) -> (Arc<Link<C>>, LinkReceiver<C>) {
        let link = Arc::new(Link {
            queue: BoundedQueue::new(capacity),
            kill: Stop::new(),
            kill_reason: Mutex::new(None),
            websocket: std::sync::atomic::AtomicBool::new(false),
        });
        (link.clone(), LinkReceiver(link))
    }

    /// The session is on WebSocket from now on.
    pub(crate) fn set_websocket(&self) {
        self.websocket
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the session is on WebSocket.
    pub(crate) fn is_websocket(&self) -> bool {
        self.websocket.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queues `command`, or tells why not.
    fn push(&self, command: C) -> Result<(), SendError> {
        self.queue.push(command).map_err(|refused| match refused {
            Refused::Closed => SendError::Closed,
            Refused::Full => SendError::QueueFull,
        })
    }

    pub(crate) fn send(&self, command: C) -> Result<(), SendError> {
        let sent = self.push(command);
        if let Err(SendError::QueueFull) = sent {
            self.close(DisconnectReason::SlowClient);
        }
        sent
    }

    /// Queues `command` if there is room; otherwise drops it (for volatile emits).
    /// Returns whether it was queued.
    pub(crate) fn send_volatile(&self, command: C) -> bool {
        self.push(command).is_ok()
    }

    /// Asks the task to close the connection for `reason` (the first reason wins).
    pub(crate) fn close(&self, reason: DisconnectReason) {
        self.kill_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert(reason);
        self.kill.fire();
    }

    pub(crate) fn kill_reason(&self) -> DisconnectReason {
        self.kill_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or(DisconnectReason::ServerDisconnect)
    }
}

/// The task's end of a [`Link`]. When it goes, however the task ends, the link
/// refuses new commands ([`SendError::Closed`]) and drops those waiting.
pub struct LinkReceiver<C>(Arc<Link<C>>);

impl<C> fmt::Debug for LinkReceiver<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkReceiver").finish_non_exhaustive()
    }
}

impl<C> LinkReceiver<C> {
    /// The next command, if one is waiting.
    pub(crate) fn try_recv(&self) -> Option<C> {
        self.0.queue.try_pop()
    }

    /// The task is running a turn and will look for commands before it next
    /// waits ([`BoundedQueue::busy`]).
    pub(crate) fn busy(&self) {
        self.0.queue.busy();
    }

    /// The next command. Cancel-safe: a command stays queued until returned.
    pub(crate) async fn recv(&self) -> C {
        self.0.queue.pop().await
    }

    /// The link's kill switch, for the task to watch.
    pub(crate) fn kill_switch(&self) -> &Stop {
        &self.0.kill
    }

    /// Why the kill switch was pulled.
    pub(crate) fn kill_reason(&self) -> DisconnectReason {
        self.0.kill_reason()
    }
}

impl<C> Drop for LinkReceiver<C> {
    fn drop(&mut self) {
        // An ack request's reply channel dropped here tells its caller the
        // connection closed.
        self.0.queue.close();
    }
}

/// A session and the application on top of it, as a transport task drives it.
/// Everything here is synchronous: the task does the waiting.
pub trait Machine: Send + 'static {
    /// What the application sends the task through its [`Link`].
    type Command: Send + 'static;

    /// The Engine.IO session (transport, upgrade state, closure).
    fn engine(&self) -> &EngineSession;
    fn handle_frame(&mut self, frame: Frame, now: Time) -> Result<(), ProtocolError>;
    fn handle_probe_frame(&mut self, frame: Frame) -> Result<Probe, ProtocolError>;
    fn probe_failed(&mut self);
    fn handle_timeout(&mut self, now: Time);
    fn handle_command(&mut self, command: Self::Command, now: Time);
    /// The server ends the session for `reason` (a close packet goes out).
    fn close(&mut self, reason: DisconnectReason);
    /// The transport is gone.
    fn transport_closed(&mut self, reason: CloseReason);
    /// Delivers pending events to the application.
    fn dispatch(&mut self);
    fn poll_timeout(&self) -> Option<Time>;
    fn poll_transmit(&mut self) -> Option<Frame>;
    /// Whether a namespace CONNECT was accepted since the last call: its reply is
    /// among the frames to write, and what the application sends on connect
    /// should follow in a write of its own.
    fn take_connect_answered(&mut self) -> bool {
        false
    }
    /// Why the session ended, as the application was told.
    fn reason(&self) -> DisconnectReason;
}

/// Opens sessions: one [`Machine`] per client.
pub trait Factory: Send + Sync + 'static {
    type Machine: Machine;
    /// A new session `sid` on `transport`, and the receiving end of its link.
    fn open(
        &self,
        sid: String,
        transport: Transport,
        handshake: Handshake,
    ) -> (
        Self::Machine,
        LinkReceiver<<Self::Machine as Machine>::Command>,
    );
    /// The session clock.
    fn now(&self) -> Time;
    /// The instant a session time stands for.
    fn instant(&self, time: Time) -> tokio::time::Instant;
    fn engine_config(&self) -> EngineConfig;
    /// Frames that may wait for one client before it is disconnected as too slow.
    fn outbound_limit(&self) -> usize;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_link_refuses_and_pulls_the_kill_switch() {
        let (link, rx) = Link::<u32>::new(2);
        assert!(link.send(1).is_ok());
        assert!(link.send_volatile(2));
        // Volatile: skipped, the connection carries on.
        assert!(!link.send_volatile(3));
        assert!(!link.kill.is_fired());
        assert!(matches!(link.send(4), Err(SendError::QueueFull)));
        assert!(link.kill.is_fired());
        assert_eq!(link.kill_reason(), DisconnectReason::SlowClient);
        assert_eq!(
            (rx.try_recv(), rx.try_recv(), rx.try_recv()),
            (Some(1), Some(2), None)
        );
    }

    #[test]
    fn a_gone_task_closes_the_link_and_drops_what_waited() {
        let (link, rx) = Link::<Arc<()>>::new(4);
        let item = Arc::new(());
        assert!(link.send(item.clone()).is_ok());
        drop(rx);
        assert_eq!(
            Arc::strong_count(&item),
            1,
            "the waiting command was dropped"
        );
        assert!(matches!(link.send(item), Err(SendError::Closed)));
    }

    #[test]
    fn a_drained_backlog_gives_its_memory_back() {
        let (link, rx) = Link::<u64>::new(1024);
        for i in 0..1000 {
            assert!(link.send(i).is_ok());
        }
        for i in 0..1000 {
            assert_eq!(rx.try_recv(), Some(i), "in order");
        }
        assert_eq!(rx.try_recv(), None);
        assert_eq!(link.queue.allocated(), 0);
    }

    #[tokio::test]
    async fn recv_waits_for_the_next_command() {
        let (link, rx) = Link::<u32>::new(8);
        let waiter = tokio::spawn(async move { (rx.recv().await, rx.recv().await) });
        tokio::task::yield_now().await;
        assert!(link.send(7).is_ok());
        tokio::task::yield_now().await;
        assert!(link.send(8).is_ok());
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("no panic");
        assert_eq!(got, (7, 8));
    }
}
