//! The server's warp filters, small values combined at the end (as in warp's
//! `todos` example): the Socket.IO mount point, the page, the bundle's assets.

use std::convert::Infallible;
use std::sync::Arc;

use tracing::warn;
use warp::http::StatusCode;
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::config::Config;
use crate::socketio::Io;
use crate::transport::{self, SessionRegistry};

/// Every route of the server.
pub(crate) fn routes(
    config: Arc<Config>,
    socket_io: Arc<SessionRegistry<Io>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    let health = crate::health::routes(socket_io.clone(), shutdown);
    let metrics = crate::health::metrics_route(
        socket_io.clone(),
        config.metrics == crate::config::MetricsEndpoint::Main,
    );
    let admission = transport::routes::Admission {
        origins: config.origins.clone(),
        max_sessions: config.max_connections,
    };
    transport::routes::mount("socket.io", socket_io, admission)
        .or(health)
        .unify()
        .or(metrics)
        .unify()
        .or(crate::admin::ui_routes(config.admin.clone()))
        .unify()
        .or(index(config.clone()))
        .unify()
        .or(assets(config))
        .unify()
        .recover(not_found)
        .unify()
}

fn with<T: Clone + Send>(value: T) -> impl Filter<Extract = (T,), Error = Infallible> + Clone {
    warp::any().map(move || value.clone())
}

/// `/`: the bundle's index.html, or a page that says how to build it.
fn index(
    config: Arc<Config>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::path::end()
        .and(warp::get())
        .and(with(config))
        .then(|config: Arc<Config>| async move {
            let path = config.dist.join("index.html");
            match tokio::fs::read_to_string(&path).await {
                Ok(html) => warp::reply::html(html).into_response(),
                Err(e) => {
                    warn!(path = %path.display(), error = %e,
                        "error loading index.html: build the client with `cargo xtask build` \
                         (or `trunk build --release`), or pass --dist <trunk dist folder>");
                    let page = missing_bundle_page(&path.display().to_string(), &e.to_string());
                    warp::reply::with_status(
                        warp::reply::html(page),
                        StatusCode::SERVICE_UNAVAILABLE,
                    )
                    .into_response()
                }
            }
        })
}

fn missing_bundle_page(path: &str, error: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>duplex: client bundle missing</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\">\
         <h1>Error loading index.html</h1>\
         <p>The server is running, but the web client bundle was not found at <code>{}</code> ({}).</p>\
         <p>Build it from the workspace root with <code>cargo xtask build</code> (or <code>trunk build --release</code>), \
         or start everything at once with <code>cargo xtask run</code>. To serve a bundle from elsewhere, \
         pass <code>--dist &lt;folder&gt;</code>.</p>\
         <p>The Socket.IO endpoint <code>/socket.io/</code> works meanwhile.</p></body></html>",
        esc(path),
        esc(error)
    )
}

/// The bundle's other files (wasm, js, css), with content types from their names.
fn assets(
    config: Arc<Config>,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    warp::get()
        .and(warp::fs::dir(config.dist.clone()))
        .map(Reply::into_response)
}

pub(crate) async fn not_found(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let status = if rejection.is_not_found() {
        StatusCode::NOT_FOUND
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        StatusCode::METHOD_NOT_ALLOWED
    } else {
        StatusCode::BAD_REQUEST
    };
    Ok(
        warp::reply::with_status(status.canonical_reason().unwrap_or("error"), status)
            .into_response(),
    )
}
