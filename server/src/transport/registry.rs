//! [`SessionRegistry`]: the live Engine.IO sessions of one mount point, by sid, and
//! the factory that opens them. Opening a session spawns its task
//! ([`SessionTask`]); the routes reach a live one through its [`Inbox`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use protocol::session::Transport;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use super::inbox::{Inbox, InboxReceiver};
use super::session::SessionTask;
use super::ws::WebSocket;
use crate::engine::{Factory, Handshake};
use crate::stop::Stop;

/// The live sessions of one mount point and the factory that opens them.
pub struct SessionRegistry<F: Factory> {
    pub(super) factory: Arc<F>,
    sessions: Mutex<HashMap<String, Arc<Inbox>>>,
    tracker: TaskTracker,
    /// Fired once the server's shutdown token is cancelled: what the session
    /// tasks watch (cheaply, see [`Stop`]).
    pub(super) shutdown: Stop,
}

impl<F: Factory> SessionRegistry<F> {
    /// Must be called within a tokio runtime: a task relays `shutdown` to the
    /// sessions.
    pub fn new(factory: Arc<F>, tracker: TaskTracker, shutdown: CancellationToken) -> Arc<Self> {
        let endpoint = Arc::new(SessionRegistry {
            factory,
            sessions: Mutex::new(HashMap::new()),
            tracker,
            shutdown: Stop::new(),
        });
        let relay = Arc::downgrade(&endpoint);
        tokio::spawn(async move {
            shutdown.cancelled().await;
            if let Some(endpoint) = relay.upgrade() {
                endpoint.shutdown.fire();
            }
        });
        endpoint
    }

    pub fn factory(&self) -> &F {
        &self.factory
    }

    pub(super) fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Inbox>>> {
        // A std Mutex: held only to insert, remove or clone a sender.
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The task of session `sid`, if it is live.
    pub(crate) fn lookup(&self, sid: &str) -> Option<Arc<Inbox>> {
        self.sessions().get(sid).cloned()
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.sessions().len()
    }

    /// Opens a session over `transport` and starts its task. For WebSocket, `ws`
    /// is the upgraded socket.
    pub(crate) fn open(
        self: &Arc<Self>,
        transport: Transport,
        ws: Option<WebSocket>,
        handshake: Handshake,
    ) -> Arc<Inbox> {
        let sid = crate::sid::generate();
        let (machine, commands) = self.factory.open(sid.clone(), transport, handshake);
        let inbox = Arc::new(Inbox::new());
        self.sessions().insert(sid.clone(), inbox.clone());
        info!(%sid, ?transport, "session opened");
        let task = SessionTask::new(self.clone(), sid, machine, ws);
        self.tracker
            .spawn(task.run(commands, InboxReceiver(inbox.clone())));
        inbox
    }
}
