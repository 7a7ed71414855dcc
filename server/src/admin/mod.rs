//! The server side of the official Socket.IO Admin UI (`@socket.io/admin-ui`):
//! its `/admin` namespace, and its static bundle when pointed at it.
//! docs/admin-ui-protocol.md describes the protocol.
//!
//! - `namespace`: the `/admin` namespace's [`Handler`](crate::socketio::Handler):
//!   who may connect, what a new admin socket is sent (`session`, `config`,
//!   `all_sockets`), the UI's commands (`_disconnect`, `join`, `leave`, `emit`);
//! - `auth`: the credentials check (bcrypt hash or plain password) and the
//!   login sessions that let a reloaded UI back in;
//! - `pump`: the [`Observer`](crate::socketio::Observer) of every namespace,
//!   which only queues what it sees, and the task that turns the queue into
//!   the UI's events (`socket_connected`, `room_joined`, ...) while keeping the
//!   picture of the sockets that `all_sockets` is made of;
//! - `stats`: `server_stats` every 2 s;
//! - `wire`: how a socket, a timestamp, a reason look in the UI's events;
//! - `ui`: the bundle at `/admin-ui/`.
//!
//! Everything it reports is this server's (a cluster's other servers show up
//! through their own `server_stats`); its commands reach the whole cluster.

mod auth;
mod namespace;
mod pump;
mod stats;
mod ui;
mod wire;

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::socketio::{Io, IoBuilder};

pub(crate) use self::ui::ui_routes;

/// How the Admin UI's namespace is set up (`--admin-ui` and the flags after it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub auth: AdminAuth,
    /// The UI's commands (disconnect, join, leave, emit) are ignored.
    pub readonly: bool,
    /// `development` (the default, as Node's): sockets, rooms and events are
    /// reported; `production`: only the server's statistics.
    pub mode: AdminMode,
    /// How this server is named in the UI (the host name by default).
    pub server_id: Option<String>,
    /// The UI's bundle (`node_modules/@socket.io/admin-ui/ui/dist`), served at
    /// [`ADMIN_UI_PATH`] when set.
    pub ui_dist: Option<PathBuf>,
}

/// Who may use the Admin UI.
#[derive(Clone, PartialEq, Eq)]
pub enum AdminAuth {
    /// Anyone who reaches the server (chosen explicitly: `--admin-no-auth`).
    None,
    /// This user name, with this password: a bcrypt hash (`$2a$`, `$2b$`,
    /// `$2y$`), as Node's `instrument` takes it, or the password itself.
    Basic { username: String, password: String },
}

/// Without the password: a configuration gets logged.
impl fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminAuth::None => f.write_str("None"),
            AdminAuth::Basic { username, .. } => f
                .debug_struct("Basic")
                .field("username", username)
                .finish_non_exhaustive(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminMode {
    #[default]
    Development,
    Production,
}

/// Where the UI's bundle is served.
pub const ADMIN_UI_PATH: &str = "admin-ui";

/// The namespace the UI connects to (Node's default `namespaceName`).
pub const ADMIN_NAMESPACE: &str = "/admin";

/// What the observer may queue for the pump before it drops (and counts) the
/// rest; a drop makes the pump rebuild its picture of the sockets from the
/// namespaces and send every admin a fresh `all_sockets`.
const QUEUE: usize = 4096;

/// The Admin UI's server side.
#[derive(Debug)]
pub struct Admin {
    shared: Arc<Shared>,
    /// Taken by [`start`](Self::start).
    queue: Mutex<Option<mpsc::Receiver<pump::Message>>>,
}

/// What the handler, the observer and the tasks share.
#[derive(Debug)]
pub(crate) struct Shared {
    config: AdminConfig,
    credentials: auth::Credentials,
    sessions: auth::Sessions,
    queue: mpsc::Sender<pump::Message>,
    /// Set when a message was dropped: the pump resynchronises.
    lost: AtomicBool,
    /// Messages dropped since the start.
    dropped: AtomicU64,
    /// Admin sockets connected here (events are only copied for them).
    admins: AtomicUsize,
}

impl Shared {
    fn development(&self) -> bool {
        self.config.mode == AdminMode::Development
    }

    /// Queues `message` for the pump without waiting: a full queue drops it
    /// and marks the pump's picture as stale.
    fn send(&self, message: pump::Message) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.queue.try_send(message) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.lost.store(true, Ordering::Release);
        }
    }

    fn admins_connected(&self) -> bool {
        self.admins.load(Ordering::Relaxed) > 0
    }
}

impl Admin {
    pub fn new(config: AdminConfig) -> Arc<Admin> {
        let (queue, receiver) = mpsc::channel(QUEUE);
        let credentials = auth::Credentials::new(&config.auth);
        if credentials.plain_text() {
            tracing::warn!(
                "the Admin UI's password is not a bcrypt hash: it is compared as plain text \
                 (hash it, e.g. `htpasswd -bnBC 10 \"\" <password> | tr -d ':\\n'`)"
            );
        }
        Arc::new(Admin {
            shared: Arc::new(Shared {
                config,
                credentials,
                sessions: auth::Sessions::default(),
                queue,
                lost: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                admins: AtomicUsize::new(0),
            }),
            queue: Mutex::new(Some(receiver)),
        })
    }

    /// Adds the `/admin` namespace to `builder`, and (in development mode) the
    /// observer of every namespace.
    pub fn configure(self: &Arc<Self>, builder: IoBuilder) -> IoBuilder {
        let builder = builder.namespace(
            ADMIN_NAMESPACE,
            namespace::AdminNamespace::new(self.shared.clone()),
        );
        if self.shared.development() {
            builder.observer(Arc::new(pump::AdminObserver::new(self.shared.clone())))
        } else {
            builder
        }
    }

    /// Starts what runs beside the sockets: the pump of the observed events
    /// (development mode) and `server_stats` every 2 s, until `shutdown`.
    pub fn start(self: &Arc<Self>, io: &Arc<Io>, shutdown: CancellationToken) {
        let receiver = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(receiver) = receiver {
            let pump = pump::Pump::new(self.shared.clone(), io.clone());
            tokio::spawn(pump.run(receiver, shutdown.clone()));
        }
        tokio::spawn(stats::run(
            stats::Identity::new(self.shared.config.server_id.clone()),
            io.clone(),
            shutdown,
        ));
        tracing::info!(
            namespace = ADMIN_NAMESPACE,
            auth = ?self.shared.config.auth,
            readonly = self.shared.config.readonly,
            mode = ?self.shared.config.mode,
            "Socket.IO Admin UI namespace on"
        );
    }
}
