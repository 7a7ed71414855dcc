//! The warp filters, small values combined at the end (as in warp's `todos`
//! example): the Socket.IO endpoint, the page, the bundle's assets.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use protocol::app::WEBSOCKET_GUID;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use crate::config::Config;
use crate::io::{Handshake, Io};
use crate::transport::query::{self, HandshakeError, TransportKind};
use crate::transport::websocket;

/// Every route of the server.
pub(crate) fn routes(
    config: Arc<Config>,
    io: Arc<Io>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> impl Filter<Extract = (Response,), Error = Infallible> + Clone {
    socket_io(io, tracker, shutdown)
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

/// `/socket.io/`: the Engine.IO endpoint.
fn socket_io(
    io: Arc<Io>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    let upgrade = warp::ws().map(Some).or(warp::any().map(|| None)).unify();
    warp::path("socket.io")
        .and(warp::path::end())
        .and(warp::method())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(upgrade)
        .and(with(io))
        .and(with(tracker))
        .and(with(shutdown))
        .map(engine_io)
}

#[allow(clippy::too_many_arguments)] // one argument per extracted part of the request
fn engine_io(
    method: Method,
    raw_query: String,
    headers: HeaderMap,
    remote: Option<SocketAddr>,
    ws: Option<warp::ws::Ws>,
    io: Arc<Io>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) -> Response {
    let query = match query::parse(&raw_query) {
        Ok(q) => q,
        Err(e) => return refuse(&e, &raw_query),
    };
    match (query.transport, ws) {
        (TransportKind::WebSocket, Some(ws)) => {
            if query.sid.is_some() {
                // Upgrading a polling session needs the polling transport, which this
                // server does not offer yet: no such session can exist.
                return refuse(&HandshakeError::UnknownSid, &raw_query);
            }
            let handshake = handshake(&method, &raw_query, &headers, remote);
            let max = io.settings().protocol.max_payload;
            // The library refuses messages far beyond maxPayload before buffering
            // them; the session enforces the exact limit with a clear reason.
            ws.max_message_size(max.saturating_mul(2).max(1024))
                .on_upgrade(move |socket| {
                    tracker.track_future(websocket::serve(socket, io, handshake, shutdown))
                })
                .into_response()
        }
        (TransportKind::WebSocket, None) => refuse(&HandshakeError::BadRequest, &raw_query),
        (TransportKind::Polling, _) if method != Method::GET && method != Method::POST => {
            refuse(&HandshakeError::BadMethod, &raw_query)
        }
        (TransportKind::Polling, _) => refuse(&HandshakeError::UnknownTransport, &raw_query),
    }
}

fn refuse(error: &HandshakeError, raw_query: &str) -> Response {
    info!(query = raw_query, %error, "engine.io request refused");
    warp::reply::with_status(warp::reply::json(&error.body()), StatusCode::BAD_REQUEST)
        .into_response()
}

/// What the page's handshake panel explains, as this server saw it.
fn handshake(
    method: &Method,
    raw_query: &str,
    headers: &HeaderMap,
    remote: Option<SocketAddr>,
) -> Handshake {
    let header_list: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let accept = headers
        .get("sec-websocket-key")
        .map(|key| websocket_accept(&String::from_utf8_lossy(key.as_bytes())));
    Handshake {
        sid: String::new(),
        uri: format!("/socket.io/?{raw_query}"),
        version: format!("HTTP/1.1 ({method})"),
        headers: header_list,
        websocket_accept: accept,
        remote,
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2): the base64 of
/// the SHA-1 of the key followed by the protocol's GUID.
pub fn websocket_accept(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    protocol::base64::encode(&sha.digest().bytes())
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

async fn not_found(rejection: warp::Rejection) -> Result<Response, Infallible> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_from_rfc6455() {
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
