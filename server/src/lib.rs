//! The duplex server: Socket.IO v5 over Engine.IO v4 on warp + tokio, and the
//! tutorial's news & echo application.
//!
//! Layout:
//! - [`config`]: the server's settings (flags of the binary).
//! - [`engine`]: the bare Engine.IO layer: the `Machine` a transport task drives,
//!   the bounded link the application talks through, and a way to mount a bare
//!   Engine.IO application.
//! - [`io`]: the Socket.IO layer: namespaces, their handlers, sockets, broadcast and
//!   acks in both directions. It knows nothing of warp.
//! - [`transport`]: the only module that knows warp: WebSocket, HTTP long-polling
//!   and the upgrade between them. One task per session drives its `Machine` and
//!   moves bytes and timers.
//! - [`app`]: the news & echo application, a handler of the `/` namespace.
//! - `routes`: the warp filters (static bundle, `/socket.io/`) combined at the end.
//!
//! [`run`] serves until its `CancellationToken` is cancelled, then tells every
//! client, waits for the connection tasks and returns.

pub mod admin;
pub mod app;
pub mod cluster;
pub mod config;
mod date;
pub mod engine;
mod health;
mod memory;
pub mod metrics;
mod queue;
mod routes;
mod sid;
pub mod socketio;
mod stop;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

/// Listen backlog: enough for a burst of thousands of clients reconnecting at once.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` with a listen backlog of [`LISTEN_BACKLOG`].
///
/// With `TCP_NODELAY`, which the connections it accepts inherit: a realtime
/// server's small writes (a CONNECT reply, then the events sent on connect) go
/// out at once instead of waiting for the client's delayed ACK of the previous
/// one (Nagle's algorithm). warp accepts the connections itself, so the option
/// is set here, once.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves the app on `listener` until `shutdown` is cancelled.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let mut builder = socketio::Io::builder(config.session_config())
        .namespace("/", app::NewsApp::with_token(config.token.clone()));
    let cluster = match &config.redis {
        Some(url) => {
            let cluster = cluster::RedisCluster::new(cluster::RedisOptions::new(url.clone()))
                .map_err(std::io::Error::other)?;
            builder = cluster.configure(builder);
            Some(cluster)
        }
        None => None,
    };
    let admin = config.admin.clone().map(admin::Admin::new);
    if let Some(admin) = &admin {
        builder = admin.configure(builder);
    }
    let io = builder.build();
    if let Some(cluster) = &cluster {
        cluster.start(&io, shutdown.clone());
    }
    if let Some(admin) = &admin {
        admin.start(&io, shutdown.clone());
    }
    serve(listener, config, io, shutdown)
        .await
        .map(|()| tracing::info!(%addr, "server stopped"))
}

/// Serves any Socket.IO application `io` (with the static bundle of `config`).
pub async fn serve(
    listener: TcpListener,
    config: Config,
    io: Arc<socketio::Io>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let tracker = TaskTracker::new();
    let endpoint = transport::SessionRegistry::new(io, tracker.clone(), shutdown.clone());
    let watched = endpoint.clone();
    tokio::spawn(memory::trim_after_drops(
        move || watched.session_count(),
        shutdown.clone(),
    ));
    if let config::MetricsEndpoint::Separate(metrics_addr) = config.metrics {
        let listener = bind(metrics_addr).await?;
        let route = warp::Filter::recover(
            health::metrics_route(endpoint.clone(), true),
            routes::not_found,
        );
        let stop = shutdown.clone();
        tracing::info!(%metrics_addr, "metrics on http://{metrics_addr}/metrics");
        tokio::spawn(
            warp::serve(warp::Filter::unify(route))
                .incoming(listener)
                .graceful(async move { stop.cancelled().await })
                .run(),
        );
    }
    let routes = routes::routes(Arc::new(config.clone()), endpoint, shutdown.clone());
    if !config.dist.join("index.html").is_file() {
        tracing::warn!(
            dist = %config.dist.display(),
            "no client bundle found: build it with `cargo xtask build` (or `trunk build --release`), \
             or point --dist at a trunk build folder; the socket endpoint works meanwhile"
        );
    }
    tracing::info!(%addr, dist = %config.dist.display(), "listening on http://{addr}/");
    serve_until(listener, routes, tracker, shutdown, config.shutdown_timeout).await;
    Ok(())
}

/// Serves a bare Engine.IO application at `/<path>/` until `shutdown` is cancelled.
pub async fn serve_engine<H: engine::EngineHandler>(
    listener: TcpListener,
    path: &'static str,
    app: engine::EngineApp<H>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let tracker = TaskTracker::new();
    let endpoint =
        transport::SessionRegistry::new(Arc::new(app), tracker.clone(), shutdown.clone());
    let routes = transport::routes::mount(path, endpoint, transport::routes::Admission::default());
    tracing::info!(%addr, path, "engine.io listening");
    let routes = warp::Filter::recover(routes, routes::not_found);
    serve_until(
        listener,
        warp::Filter::unify(routes),
        tracker,
        shutdown,
        std::time::Duration::from_secs(5),
    )
    .await;
    Ok(())
}

/// Runs warp on `listener` until `shutdown`, then waits (at most `deadline`) for the
/// session tasks: warp's graceful shutdown does not wait for upgraded (WebSocket)
/// connections; their tasks saw the same token, told their clients, and finish here.
async fn serve_until(
    listener: TcpListener,
    routes: impl warp::Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible>
    + Clone
    + Send
    + Sync
    + 'static,
    tracker: TaskTracker,
    shutdown: CancellationToken,
    deadline: std::time::Duration,
) {
    warp::serve(routes)
        .incoming(listener)
        .graceful(async move { shutdown.cancelled().await })
        .run()
        .await;
    tracker.close();
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = tracker.len(),
            "connections still open after the shutdown deadline"
        );
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn accepted_connections_do_not_wait_for_nagle() {
        let listener = super::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let client = tokio::net::TcpStream::connect(addr);
        let (accepted, client) = tokio::join!(listener.accept(), client);
        let (accepted, _) = accepted.expect("accept");
        let _client = client.expect("connect");
        assert!(
            accepted.nodelay().expect("getsockopt"),
            "TCP_NODELAY inherited"
        );
    }
}
