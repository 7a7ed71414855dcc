//! The other servers of a cluster, asked and waited for: what needs their
//! answers (fetching the sockets of a selection) goes through [`Cluster`],
//! which a shared adapter provides ([`IoBuilder::cluster`](super::IoBuilder::cluster)).
//! Without one, a server is its own cluster.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{Map, Value, json};
use thiserror::Error;

use super::adapter::{Offset, Session, Target};
use super::socket::Socket;
use protocol::Frame;

/// A socket of some server of the cluster, as Socket.IO's `fetchSockets`
/// describes it: its id, rooms (its own among them), data and handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    pub id: String,
    pub rooms: Vec<String>,
    pub data: Value,
    /// Node's shape: `headers`, `address`, `url`, `query`, `auth`, `time`,
    /// `issued`, `secure`, `xdomain`.
    pub handshake: Value,
}

impl RemoteSocket {
    /// How this server describes one of its own sockets.
    pub fn of(socket: &Socket) -> RemoteSocket {
        let handshake = socket.handshake();
        let headers: Map<String, Value> = handshake
            .headers
            .iter()
            .map(|(name, value)| (name.to_owned(), Value::from(value)))
            .collect();
        let query: Map<String, Value> = handshake
            .query()
            .map(|(name, value)| (name.to_owned(), Value::from(value)))
            .collect();
        RemoteSocket {
            id: socket.id().to_owned(),
            rooms: socket.rooms(),
            data: socket.data(),
            handshake: json!({
                "headers": headers,
                "address": handshake.remote.map(|a| a.ip().to_string()),
                "xdomain": handshake.header("origin").is_some(),
                "secure": false,
                "url": handshake.uri,
                "query": query,
                "auth": socket.auth(),
            }),
        }
    }

    /// As Socket.IO's cluster messages carry it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "handshake": self.handshake,
            "rooms": self.rooms,
            "data": self.data,
        })
    }

    /// Reads one from a cluster message; `None` if it has no id.
    pub fn from_json(value: &Value) -> Option<RemoteSocket> {
        Some(RemoteSocket {
            id: value.get("id")?.as_str()?.to_owned(),
            rooms: value
                .get("rooms")
                .and_then(Value::as_array)
                .map(|rooms| {
                    rooms
                        .iter()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            data: value.get("data").cloned().unwrap_or(Value::Null),
            handshake: value.get("handshake").cloned().unwrap_or(Value::Null),
        })
    }
}

/// Why the other servers' sockets could not all be fetched.
#[derive(Debug, Error)]
pub enum FetchError {
    /// Some servers did not answer in time; what did arrive comes with it.
    #[error("timeout reached: only {received} responses received out of {expected}")]
    Timeout {
        received: usize,
        expected: usize,
        sockets: Vec<RemoteSocket>,
    },
    /// The cluster could not be asked (Redis unreachable).
    #[error("the other servers cannot be reached: {0}")]
    Unavailable(String),
}

/// What the other servers answered to a broadcast with acks: each client's
/// ack (its first argument, as Socket.IO's cluster carries it), and how many
/// clients or servers did not answer in time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteAcks {
    pub responses: Vec<Value>,
    /// Clients counted by the servers that answered, minus those that acked.
    pub missing_clients: usize,
    /// Servers that did not say how many clients they have.
    pub missing_servers: usize,
}

/// What a cluster's requests return: a boxed future, so that the trait stays
/// object-safe.
pub type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// How a server's link to its cluster is doing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// Whether every connection to the cluster is up.
    pub connected: bool,
    /// Messages for the other servers dropped because they could not wait.
    pub dropped: u64,
    /// Messages that may not have reached the other servers (sent as the link failed).
    pub lost: u64,
}

/// The other servers of a cluster, for what needs their answers.
pub trait Cluster: Send + Sync + 'static {
    /// The link's state, for readiness.
    fn status(&self) -> ClusterStatus;

    /// The sockets of namespace `nsp` that `target` designates on the other
    /// servers, waiting at most `timeout` for their answers.
    fn fetch_sockets(
        self: std::sync::Arc<Self>,
        nsp: &str,
        target: &Target,
        timeout: Duration,
    ) -> Pending<Result<Vec<RemoteSocket>, FetchError>>;

    /// Emits `name` with `args` to the sockets of namespace `nsp` that `target`
    /// designates on the other servers and collects their clients' acks for at
    /// most `timeout`.
    fn broadcast_with_ack(
        self: std::sync::Arc<Self>,
        nsp: &str,
        target: &Target,
        name: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Pending<RemoteAcks>;

    /// Emits `name` with `args` to the other servers' handlers of `nsp`
    /// (`serverSideEmit`); with `timeout`, waits that long for each one's answer.
    fn server_side_emit(
        self: std::sync::Arc<Self>,
        nsp: &str,
        name: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Pending<Result<Vec<Value>, ServerSideEmitError>>;

    /// Takes the session a server of the cluster kept under private id `pid`
    /// for recovery in namespace `nsp` (once: a second take finds nothing).
    /// `None` when there is none, or the cluster cannot be reached.
    fn take_session(self: std::sync::Arc<Self>, nsp: &str, pid: &str) -> Pending<Option<Session>>;

    /// The packets of namespace `nsp` after `after` and up to `until` that
    /// `session`'s socket was to get, encoded as this server delivers them
    /// (with their offsets), read from the cluster's own record: for a client
    /// whose offset is older than this server's log. `None` when they cannot
    /// all be had (`after` is no longer kept, or the cluster is unreachable).
    fn replay(
        self: std::sync::Arc<Self>,
        nsp: &str,
        after: Offset,
        until: Offset,
        session: &Session,
    ) -> Pending<Option<Vec<Frame>>>;
}

/// Why not every other server answered a server-side emit.
#[derive(Debug, Error)]
pub enum ServerSideEmitError {
    #[error("timeout reached: only {received} responses received out of {expected}")]
    Timeout {
        received: usize,
        expected: usize,
        responses: Vec<Value>,
    },
    #[error("the other servers cannot be reached: {0}")]
    Unavailable(String),
}
