//! The warp filters of one Engine.IO mount point (`/socket.io/`, `/engine.io/`):
//! handshake over polling or WebSocket, polling GET/POST for a session, and the
//! WebSocket upgrade of a polling session.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use protocol::session::Transport;
use tokio::sync::oneshot;
use tracing::{info, warn};
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::inbox::{Inbox, Input, PollError};
use super::query::{self, HandshakeError, TransportKind};
use super::registry::SessionRegistry;
use super::ws::{self, Upgrade, websocket_accept};
use crate::config::OriginPolicy;
use crate::engine::Factory;
use crate::engine::Handshake;

fn with<T: Clone + Send>(value: T) -> impl Filter<Extract = (T,), Error = Infallible> + Clone {
    warp::any().map(move || value.clone())
}

/// Who may open sessions at a mount point.
#[derive(Debug, Clone)]
pub struct Admission {
    pub origins: OriginPolicy,
    /// Most live sessions; new ones past it get 503.
    pub max_sessions: usize,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            origins: OriginPolicy::Any,
            max_sessions: usize::MAX,
        }
    }
}

/// A request's body, as far as the polling transport is concerned.
#[derive(Debug)]
enum Body {
    None,
    Bytes(Bytes),
    /// Past maxPayload: refused with 413 without being read.
    TooLarge,
    /// A POST without Content-Length: refused with 411, so no body is unbounded.
    LengthRequired,
}

/// Every route under `/<path>/`.
pub fn mount<F: Factory>(
    path: &'static str,
    endpoint: Arc<SessionRegistry<F>>,
    admission: Admission,
) -> impl Filter<Extract = (Response,), Error = warp::Rejection> + Clone {
    let raw_query = warp::query::raw().or(warp::any().map(String::new)).unify();
    // The connection hyper hands over after a 101 (validated in `handle`).
    let upgrade = warp::ext::optional::<hyper::upgrade::OnUpgrade>();
    let max = endpoint.factory().engine_config().max_payload;
    let body = warp::post()
        .and(warp::body::content_length_limit(max as u64))
        .and(warp::body::bytes())
        .map(Body::Bytes)
        .or_else(|rejection: warp::Rejection| async move {
            let body = if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
                Body::TooLarge
            } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
                Body::LengthRequired
            } else {
                Body::None
            };
            Ok::<_, warp::Rejection>((body,))
        });
    warp::path(path)
        .and(warp::path::end())
        .and(warp::method())
        .and(raw_query)
        .and(warp::header::headers_cloned())
        .and(warp::addr::remote())
        .and(upgrade)
        .and(body)
        .and(with(endpoint))
        .and(with(Arc::new(admission)))
        .then(handle)
}

#[allow(clippy::too_many_arguments)] // one argument per extracted part of the request
async fn handle<F: Factory>(
    method: Method,
    raw_query: String,
    headers: HeaderMap,
    remote: Option<SocketAddr>,
    on_upgrade: Option<hyper::upgrade::OnUpgrade>,
    body: Body,
    endpoint: Arc<SessionRegistry<F>>,
    admission: Arc<Admission>,
) -> Response {
    let origin = headers.get(header::ORIGIN).cloned();
    let origin_text = origin.as_ref().and_then(|o| o.to_str().ok());
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !admission.origins.allows(origin_text, host) {
        warn!(
            origin = origin_text.unwrap_or("?"),
            ?remote,
            "request from a forbidden origin refused"
        );
        crate::metrics::metrics().refused("origin");
        return status_json(StatusCode::FORBIDDEN, 4, "Forbidden origin");
    }
    let opens_session = !raw_query.contains("sid=");
    if opens_session && endpoint.session_count() >= admission.max_sessions {
        warn!(
            ?remote,
            limit = admission.max_sessions,
            "session refused: server full"
        );
        crate::metrics::metrics().refused("capacity");
        let message = format!("server full: {} sessions", admission.max_sessions);
        return cors(
            status_json(StatusCode::SERVICE_UNAVAILABLE, 3, &message),
            origin.as_ref(),
        );
    }
    let body = match body {
        Body::TooLarge => {
            let message = format!(
                "payload larger than maxPayload ({} bytes)",
                endpoint.factory().engine_config().max_payload
            );
            info!(?remote, "{message}");
            crate::metrics::metrics().refused("payload_too_large");
            return cors(
                status_json(StatusCode::PAYLOAD_TOO_LARGE, 3, &message),
                origin.as_ref(),
            );
        }
        Body::LengthRequired => {
            return cors(
                status_json(StatusCode::LENGTH_REQUIRED, 3, "Content-Length required"),
                origin.as_ref(),
            );
        }
        Body::Bytes(bytes) => Some(bytes),
        Body::None => None,
    };
    if method == Method::OPTIONS {
        return cors(StatusCode::NO_CONTENT.into_response(), origin.as_ref());
    }
    let query = match query::parse(&raw_query) {
        Ok(q) => q,
        Err(e) => return cors(refuse(&e, &raw_query), origin.as_ref()),
    };
    let response = match (query.transport, query.sid) {
        (TransportKind::WebSocket, sid) => {
            let Some(upgrade) = Upgrade::from_request(&method, &headers, on_upgrade) else {
                return refuse(&HandshakeError::BadRequest, &raw_query);
            };
            let config = ws::config(endpoint.factory().engine_config().max_payload);
            match sid {
                None => {
                    let handshake = handshake(&raw_query, &headers, remote);
                    upgrade.into_response(config, move |socket| async move {
                        endpoint.open(Transport::WebSocket, Some(socket), handshake);
                    })
                }
                Some(sid) => match endpoint.lookup(&sid) {
                    None => refuse(&HandshakeError::UnknownSid, &raw_query),
                    Some(session) => upgrade.into_response(config, move |socket| async move {
                        // If the session ended meanwhile (or has too many requests
                        // waiting) the socket is dropped: closed.
                        let _ = session.send(Input::Upgrade(Box::new(socket)));
                    }),
                },
            }
        }
        (TransportKind::Polling, None) if method == Method::GET => {
            let handshake = handshake(&raw_query, &headers, remote);
            let session = endpoint.open(Transport::Polling, None, handshake);
            poll_get(&session, query.t).await
        }
        (TransportKind::Polling, None) => refuse(&HandshakeError::BadMethod, &raw_query),
        (TransportKind::Polling, Some(sid)) => match endpoint.lookup(&sid) {
            None => refuse(&HandshakeError::UnknownSid, &raw_query),
            Some(session) if method == Method::GET => poll_get(&session, query.t).await,
            Some(session) if method == Method::POST => match body {
                Some(body) => poll_post(&session, body, query.t).await,
                // Its Content-Length was checked: the body could not be read in
                // full because the client's connection failed in the middle.
                None => {
                    let _ = session.send(Input::PostFailed);
                    info!(?remote, %sid, "polling POST cut before its body was complete");
                    status_json(StatusCode::BAD_REQUEST, 3, "request body incomplete")
                }
            },
            Some(_) => refuse(&HandshakeError::BadMethod, &raw_query),
        },
    };
    cors(response, origin.as_ref())
}

async fn poll_get(session: &Inbox, t: Option<String>) -> Response {
    let (reply, response) = oneshot::channel();
    if let Err(e) = session.send(Input::Get { reply, t }) {
        return poll_refused(&e);
    }
    match response.await {
        Ok(Ok(payload)) => text(StatusCode::OK, payload),
        Ok(Err(e)) => poll_refused(&e),
        Err(_) => poll_refused(&PollError::Closed),
    }
}

async fn poll_post(session: &Inbox, body: Bytes, t: Option<String>) -> Response {
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return poll_refused(&PollError::BadPayload("body is not UTF-8".into()));
    };
    let (reply, response) = oneshot::channel();
    if let Err(e) = session.send(Input::Post { body, reply, t }) {
        return poll_refused(&e);
    }
    match response.await {
        Ok(Ok(())) => text(StatusCode::OK, "ok".to_owned()),
        Ok(Err(e)) => poll_refused(&e),
        Err(_) => poll_refused(&PollError::Closed),
    }
}

fn text(status: StatusCode, body: String) -> Response {
    let mut response = warp::reply::with_status(body, status).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=UTF-8"),
    );
    response
}

fn poll_refused(error: &PollError) -> Response {
    info!(%error, "polling request refused");
    let body = HandshakeError::BadRequest.body();
    let body = serde_json::json!({ "code": body.code, "message": error.to_string() });
    warp::reply::with_status(warp::reply::json(&body), StatusCode::BAD_REQUEST).into_response()
}

fn status_json(status: StatusCode, code: u8, message: &str) -> Response {
    let body = serde_json::json!({ "code": code, "message": message });
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
}

fn refuse(error: &HandshakeError, raw_query: &str) -> Response {
    info!(query = raw_query, %error, "engine.io request refused");
    warp::reply::with_status(warp::reply::json(&error.body()), StatusCode::BAD_REQUEST)
        .into_response()
}

/// CORS headers for polling from another origin (WebSocket is not covered by CORS).
fn cors(mut response: Response, origin: Option<&HeaderValue>) -> Response {
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
    }
    response
}

/// What the page's handshake panel explains, as this server saw it.
fn handshake(raw_query: &str, headers: &HeaderMap, remote: Option<SocketAddr>) -> Handshake {
    let header_list = headers
        .iter()
        .map(|(name, value)| (name.as_str(), String::from_utf8_lossy(value.as_bytes())))
        .collect();
    let accept = headers
        .get("sec-websocket-key")
        .map(|key| websocket_accept(&String::from_utf8_lossy(key.as_bytes())));
    Handshake {
        sid: String::new(),
        uri: format!("/socket.io/?{raw_query}"),
        headers: header_list,
        websocket_accept: accept,
        remote,
    }
}
