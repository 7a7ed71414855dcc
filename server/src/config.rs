//! Server settings. The binary fills them from flags and environment variables.

use std::path::PathBuf;
use std::time::Duration;

use protocol::session::ServerConfig;

use crate::socketio::{RecoveryConfig, SessionSettings};

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// The trunk build folder served at `/`.
    pub dist: PathBuf,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// A client that joins no namespace within this is closed.
    pub connect_timeout: Duration,
    /// Largest message accepted from a client, in bytes.
    pub max_payload: usize,
    /// Frames that may wait for one slow client before it is disconnected.
    pub outbound_queue: usize,
    /// How long shutdown waits for connections to close.
    pub shutdown_timeout: Duration,
    /// Connection state recovery (missed broadcasts replayed after a reconnect);
    /// `None`, the library default as in Socket.IO, turns it off. The binary turns
    /// it on with a 2-minute window.
    pub recovery: Option<RecoveryConfig>,
    /// A shared token the news app requires in each client's CONNECT auth.
    pub token: Option<String>,
    /// Which web pages may connect.
    pub origins: OriginPolicy,
    /// Most sessions at once; more are refused with 503 until some close.
    pub max_connections: usize,
    /// A Redis server shared with the other servers of a cluster
    /// (`redis://host:port`); `None` keeps everything in this server's memory.
    pub redis: Option<String>,
    /// Where Prometheus metrics are served (nowhere by default).
    pub metrics: MetricsEndpoint,
    /// The official Socket.IO Admin UI's `/admin` namespace (off by default).
    pub admin: Option<crate::admin::AdminConfig>,
}

/// Where `GET /metrics` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsEndpoint {
    /// Nowhere.
    #[default]
    Off,
    /// On the server's own address, beside the app (outside the Origin check).
    Main,
    /// On an address of its own (a port the scraper reaches and clients do not).
    Separate(std::net::SocketAddr),
}

impl Default for Config {
    fn default() -> Self {
        let session = ServerConfig::default();
        Config {
            dist: PathBuf::from("dist"),
            ping_interval: session.ping_interval,
            ping_timeout: session.ping_timeout,
            connect_timeout: session.connect_timeout,
            max_payload: session.max_payload,
            outbound_queue: 1024,
            shutdown_timeout: Duration::from_secs(10),
            recovery: None,
            token: None,
            origins: OriginPolicy::Any,
            max_connections: 100_000,
            redis: None,
            metrics: MetricsEndpoint::Off,
            admin: None,
        }
    }
}

impl Config {
    /// The per-session protocol settings.
    pub fn session_config(&self) -> SessionSettings {
        SessionSettings {
            protocol: ServerConfig {
                ping_interval: self.ping_interval,
                ping_timeout: self.ping_timeout,
                connect_timeout: self.connect_timeout,
                max_payload: self.max_payload,
                ..ServerConfig::default()
            },
            outbound_queue: self.outbound_queue,
            recovery: self.recovery,
        }
    }
}

/// Which web pages may open sessions. Browsers send the page's `Origin` with both
/// the WebSocket upgrade and polling requests, and CORS does not protect
/// WebSocket: the server must check it itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// Any origin (Socket.IO's default; the library's default too).
    #[default]
    Any,
    /// Pages served by this server itself (the `Origin` names the request's
    /// `Host`), plus these origins (`scheme://host[:port]`).
    SameOriginAnd(Vec<String>),
}

impl OriginPolicy {
    /// Whether a request with `origin` (its `Origin` header) to `host` (its `Host`
    /// header) is allowed. Requests without an `Origin` do not come from a web page
    /// (native clients, curl) and are allowed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let list = match self {
            OriginPolicy::Any => return true,
            OriginPolicy::SameOriginAnd(list) => list,
        };
        let origin = origin.trim_end_matches('/');
        let same = host.is_some_and(|host| {
            origin.split_once("://").is_some_and(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host)
            })
        });
        same || list
            .iter()
            .any(|allowed| allowed.trim_end_matches('/').eq_ignore_ascii_case(origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_policy() {
        let any = OriginPolicy::Any;
        assert!(any.allows(Some("http://evil.example"), Some("127.0.0.1:8124")));
        let strict = OriginPolicy::SameOriginAnd(vec!["http://127.0.0.1:8080/".into()]);
        assert!(
            strict.allows(None, Some("127.0.0.1:8124")),
            "no Origin: not a page"
        );
        assert!(strict.allows(Some("http://127.0.0.1:8124"), Some("127.0.0.1:8124")));
        assert!(strict.allows(Some("https://LOCALHOST:8124"), Some("localhost:8124")));
        assert!(strict.allows(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8124")));
        assert!(!strict.allows(Some("http://evil.example"), Some("127.0.0.1:8124")));
        assert!(!strict.allows(Some("null"), Some("127.0.0.1:8124")));
        assert!(!strict.allows(Some("http://127.0.0.1:8125"), Some("127.0.0.1:8124")));
        assert!(!strict.allows(Some("ftp://127.0.0.1:8124"), Some("127.0.0.1:8124")));
        assert!(!strict.allows(Some("http://127.0.0.1:8124"), None));
    }
}
