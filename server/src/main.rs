//! `duplex-server`: serves the news & echo app and its web client.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Realtime news & echo over Socket.IO v5, with a Yew web client.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "DUPLEX_ADDR", default_value = "127.0.0.1:8124")]
    addr: SocketAddr,
    /// The trunk build folder to serve at `/`.
    #[arg(long, env = "DUPLEX_DIST", default_value = "dist")]
    dist: PathBuf,
    /// Milliseconds between the server's heartbeat pings.
    #[arg(long, env = "DUPLEX_PING_INTERVAL", default_value_t = 25_000)]
    ping_interval: u64,
    /// Milliseconds a client has to answer a ping.
    #[arg(long, env = "DUPLEX_PING_TIMEOUT", default_value_t = 20_000)]
    ping_timeout: u64,
    /// Seconds shutdown waits for connections to close.
    #[arg(long, env = "DUPLEX_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    shutdown_timeout: u64,
    /// Seconds a disconnected client's missed news is kept for it to recover
    /// (connection state recovery); 0 turns recovery off.
    #[arg(long, env = "DUPLEX_RECOVERY_WINDOW", default_value_t = 120)]
    recovery_window: u64,
    /// Require this token in every client's CONNECT auth (`{"token": "..."}`).
    #[arg(long, env = "DUPLEX_TOKEN")]
    token: Option<String>,
    /// Also accept pages from this origin (`scheme://host[:port]`; repeatable).
    /// Pages served by this server are always accepted. For `trunk serve`:
    /// `--allow-origin http://127.0.0.1:8080`.
    #[arg(
        long = "allow-origin",
        env = "DUPLEX_ALLOW_ORIGINS",
        value_delimiter = ','
    )]
    allow_origins: Vec<String>,
    /// Accept pages from any origin.
    #[arg(long, env = "DUPLEX_ANY_ORIGIN")]
    any_origin: bool,
    /// Largest message accepted from a client, in bytes (the Engine.IO maxPayload).
    #[arg(long, env = "DUPLEX_MAX_PAYLOAD", default_value_t = 1_000_000)]
    max_payload: usize,
    /// Most connections at once; more are refused with 503.
    #[arg(long, env = "DUPLEX_MAX_CONNECTIONS", default_value_t = 100_000)]
    max_connections: usize,
    /// Join a cluster on this Redis server (`redis://host:port`): broadcasts and
    /// room operations reach the sockets of every server on it, Node.js
    /// Socket.IO servers with @socket.io/redis-streams-adapter among them.
    #[arg(long, env = "DUPLEX_REDIS")]
    redis: Option<String>,
    /// Serve Prometheus metrics at `/metrics` on the server's address.
    #[arg(long, env = "DUPLEX_METRICS")]
    metrics: bool,
    /// Serve Prometheus metrics at `/metrics` on this address instead (e.g.
    /// `127.0.0.1:9124`, a port the scraper reaches and clients do not).
    #[arg(long, env = "DUPLEX_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Turn on the official Socket.IO Admin UI's `/admin` namespace
    /// (@socket.io/admin-ui). Needs --admin-username and --admin-password, or
    /// --admin-no-auth.
    #[arg(long, env = "DUPLEX_ADMIN_UI")]
    admin_ui: bool,
    /// The Admin UI's user name.
    #[arg(long, env = "DUPLEX_ADMIN_USERNAME")]
    admin_username: Option<String>,
    /// The Admin UI's password: a bcrypt hash (`$2b$10$...`, as Node's
    /// instrument takes it) or the password itself.
    #[arg(long, env = "DUPLEX_ADMIN_PASSWORD", hide_env_values = true)]
    admin_password: Option<String>,
    /// Let anyone who reaches the server use the Admin UI, without credentials.
    #[arg(long, env = "DUPLEX_ADMIN_NO_AUTH")]
    admin_no_auth: bool,
    /// The Admin UI may look but not act (no disconnect, join, leave, emit).
    #[arg(long, env = "DUPLEX_ADMIN_READONLY")]
    admin_readonly: bool,
    /// `development` (sockets, rooms and events reported) or `production`
    /// (server statistics only).
    #[arg(long, env = "DUPLEX_ADMIN_MODE", default_value = "development")]
    admin_mode: String,
    /// The Admin UI's bundle (`node_modules/@socket.io/admin-ui/ui/dist`), to
    /// serve at `/admin-ui/`.
    #[arg(long, env = "DUPLEX_ADMIN_UI_DIST")]
    admin_ui_dist: Option<PathBuf>,
    /// This server's name in the Admin UI (the host name by default).
    #[arg(long, env = "DUPLEX_ADMIN_SERVER_ID")]
    admin_server_id: Option<String>,
}

/// The Admin UI's settings from the flags; an error when they do not say who
/// may use it.
fn admin_config(args: &Args) -> anyhow::Result<Option<duplex_server::admin::AdminConfig>> {
    use duplex_server::admin::{AdminAuth, AdminConfig, AdminMode};
    if !args.admin_ui {
        anyhow::ensure!(
            args.admin_username.is_none()
                && args.admin_password.is_none()
                && !args.admin_no_auth
                && args.admin_ui_dist.is_none(),
            "the --admin-* options need --admin-ui"
        );
        return Ok(None);
    }
    let auth = match (
        &args.admin_username,
        &args.admin_password,
        args.admin_no_auth,
    ) {
        (Some(username), Some(password), false) => AdminAuth::Basic {
            username: username.clone(),
            password: password.clone(),
        },
        (None, None, true) => AdminAuth::None,
        (_, _, true) => anyhow::bail!("--admin-no-auth and credentials exclude each other"),
        _ => anyhow::bail!(
            "--admin-ui needs --admin-username and --admin-password (a bcrypt hash or the \
             password), or --admin-no-auth to let anyone who reaches the server in"
        ),
    };
    let mode = match args.admin_mode.as_str() {
        "development" => AdminMode::Development,
        "production" => AdminMode::Production,
        other => anyhow::bail!("--admin-mode is development or production, not {other:?}"),
    };
    Ok(Some(AdminConfig {
        auth,
        readonly: args.admin_readonly,
        mode,
        server_id: args.admin_server_id.clone(),
        ui_dist: args.admin_ui_dist.clone(),
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let admin = admin_config(&args)?;
    let metrics = match (args.metrics_addr, args.metrics) {
        (Some(addr), _) => duplex_server::config::MetricsEndpoint::Separate(addr),
        (None, true) => duplex_server::config::MetricsEndpoint::Main,
        (None, false) => duplex_server::config::MetricsEndpoint::Off,
    };
    let config = duplex_server::Config {
        dist: args.dist,
        ping_interval: Duration::from_millis(args.ping_interval),
        ping_timeout: Duration::from_millis(args.ping_timeout),
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        recovery: (args.recovery_window > 0).then(|| duplex_server::socketio::RecoveryConfig {
            window: Duration::from_secs(args.recovery_window),
            ..duplex_server::socketio::RecoveryConfig::default()
        }),
        token: args.token,
        origins: if args.any_origin {
            duplex_server::config::OriginPolicy::Any
        } else {
            duplex_server::config::OriginPolicy::SameOriginAnd(args.allow_origins)
        },
        max_payload: args.max_payload,
        max_connections: args.max_connections,
        redis: args.redis,
        metrics,
        admin,
        ..duplex_server::Config::default()
    };
    let listener = duplex_server::bind(args.addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    duplex_server::run(listener, config, shutdown).await?;
    Ok(())
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: closing connections");
    shutdown.cancel();
}
