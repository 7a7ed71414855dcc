//! The WebSocket upgrade, done here rather than by warp's `ws()` filter so that we
//! choose tungstenite's buffers: warp builds every connection with
//! `WebSocketConfig::default()`, whose 128 KiB read buffer is allocated up front
//! for each connection, idle or not.
//!
//! [`Upgrade::from_request`] validates the request (RFC 6455 §4.2.1),
//! [`Upgrade::into_response`] answers `101 Switching Protocols` and, once hyper
//! hands the connection over, runs a callback with the [`WebSocket`].

use std::future::Future;

use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tracing::debug;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

use super::routes::websocket_accept;

/// A server-side WebSocket on an upgraded HTTP/1.1 connection.
pub type WebSocket = WebSocketStream<TokioIo<Upgraded>>;

/// Read buffer of each connection, allocated when it opens. Messages longer than
/// this grow it as they arrive (up to the message limit); an idle connection
/// costs only this.
pub const READ_BUFFER: usize = 4 * 1024;

/// Outgoing frames are gathered up to this many bytes before a write (the
/// session task also flushes after each batch). Not allocated up front.
pub const WRITE_BUFFER: usize = 4 * 1024;

/// The largest single outgoing message the write buffer accepts, beyond the
/// frames gathered before it, when maxPayload is small. The buffer holds at most
/// [`WRITE_BUFFER`] plus one message: the sink waits for a blocked write to drain
/// before it takes the next one.
pub const MIN_OUTGOING_MESSAGE: usize = 1024 * 1024;

/// tungstenite's settings for one connection with this `max_payload`.
///
/// Incoming messages and frames are refused by the library past twice maxPayload,
/// before they are buffered; the session enforces the exact limit with a clear
/// reason. The write buffer is bounded at [`WRITE_BUFFER`] plus one message of
/// max([`MIN_OUTGOING_MESSAGE`], 2 × maxPayload).
pub fn config(max_payload: usize) -> WebSocketConfig {
    let max_incoming = max_payload.saturating_mul(2).max(1024);
    let max_outgoing = max_incoming.max(MIN_OUTGOING_MESSAGE);
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_write_buffer_size(WRITE_BUFFER.saturating_add(max_outgoing))
        .max_message_size(Some(max_incoming))
        .max_frame_size(Some(max_incoming))
}

/// A valid WebSocket upgrade request, not answered yet.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl Upgrade {
    /// The upgrade `method` and `headers` ask for, if they ask for a valid one
    /// (GET, `Connection: upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version:
    /// 13`, a `Sec-WebSocket-Key`) and hyper can hand the connection over.
    pub fn from_request(
        method: &Method,
        headers: &HeaderMap,
        on_upgrade: Option<OnUpgrade>,
    ) -> Option<Upgrade> {
        let valid = method == Method::GET
            && has_token(headers, &header::CONNECTION, "upgrade")
            && has_token(headers, &header::UPGRADE, "websocket")
            && headers
                .get(header::SEC_WEBSOCKET_VERSION)
                .is_some_and(|v| v.as_bytes().trim_ascii() == b"13");
        if !valid {
            return None;
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .filter(|key| !key.as_bytes().trim_ascii().is_empty())?;
        Some(Upgrade {
            key: key.clone(),
            on_upgrade: on_upgrade?,
        })
    }

    /// `101 Switching Protocols`; once the connection is handed over, `then` runs
    /// (on a task of its own) with the WebSocket configured by `config`.
    pub fn into_response<F, Fut>(self, config: WebSocketConfig, then: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = websocket_accept(&String::from_utf8_lossy(self.key.as_bytes()));
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    let socket =
                        WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                    then(socket).await;
                }
                Err(e) => debug!(error = %e, "websocket upgrade failed"),
            }
        });
        let mut response = Response::default();
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// Whether some `name` header lists `token` (comma-separated, case-insensitive).
fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const VALID: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn valid(method: &Method, pairs: &[(&'static str, &'static str)]) -> bool {
        let on_upgrade = hyper::upgrade::on(warp::http::Request::new(()));
        Upgrade::from_request(method, &headers(pairs), Some(on_upgrade)).is_some()
    }

    #[test]
    fn upgrade_requests_are_validated() {
        assert!(valid(&Method::GET, &VALID));
        assert!(!valid(&Method::POST, &VALID));
        for (i, missing) in VALID.iter().enumerate() {
            let mut pairs = VALID.to_vec();
            pairs.remove(i);
            assert!(!valid(&Method::GET, &pairs), "without {missing:?}");
        }
        let mut pairs = VALID.to_vec();
        pairs[0] = ("connection", "keep-alive");
        assert!(!valid(&Method::GET, &pairs));
        pairs[0] = ("connection", "upgrades");
        assert!(!valid(&Method::GET, &pairs));
        let mut pairs = VALID.to_vec();
        pairs[2] = ("sec-websocket-version", "8");
        assert!(!valid(&Method::GET, &pairs));
        let mut pairs = VALID.to_vec();
        pairs[3] = ("sec-websocket-key", "");
        assert!(!valid(&Method::GET, &pairs));
        let none = Upgrade::from_request(&Method::GET, &headers(&VALID), None);
        assert!(none.is_none(), "no connection to take over");
    }

    #[test]
    fn config_buffers_are_small_and_bounded() {
        let c = config(1_000_000);
        assert_eq!(c.read_buffer_size, READ_BUFFER);
        assert_eq!(c.write_buffer_size, WRITE_BUFFER);
        assert_eq!(c.max_message_size, Some(2_000_000));
        assert_eq!(c.max_frame_size, Some(2_000_000));
        assert_eq!(c.max_write_buffer_size, WRITE_BUFFER + 2_000_000);
        assert_eq!(
            config(100).max_write_buffer_size,
            WRITE_BUFFER + MIN_OUTGOING_MESSAGE
        );
    }
}
