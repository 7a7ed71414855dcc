//! This server's membership of a cluster on Redis.
//!
//! Every namespace's adapter is an [`InMemoryAdapter`] for this server's own
//! sockets plus a forwarder: what the namespace hands it ([`Forward`]) becomes a
//! cluster [`Message`] queued, without waiting, on a bounded outbox. One task
//! writes the outbox to Redis in order (`XADD` to the stream, pipelined); one
//! task reads the stream (`XREAD BLOCK`) from where it stopped and does here
//! what the other servers did, through [`Broadcast::local`] so that it is not
//! forwarded again. A server skips its own entries: its sockets got them when
//! they were emitted.
//!
//! With connection state recovery, the stream orders every broadcast: this
//! server's own are delivered to its sockets when read back (marked with a
//! `mid` field), with the entry id as offset like every other server's, and
//! every server logs every broadcast so that a client recovers on any of them;
//! sessions of departed sockets are kept in Redis (`sio:session:<pid>`, Node's
//! format) and taken by the server the client comes back to.
//!
//! Redis away (at start or later) never stops local delivery: emits reach
//! this server's sockets at once (without offset, with recovery), the outbox
//! keeps what the others must hear until Redis is back, and both tasks
//! reconnect with a backoff. The
//! policy when the outbox is full (`outbox` messages waiting): a new message is
//! dropped and counted ([`RedisCluster::dropped`]), so the other servers' clients
//! miss it; a pipeline in flight when the connection fails is counted as lost
//! too, since Redis may or may not have taken it (sending it again could double
//! it). The reader resumes after the last entry it read, so no entry written
//! meanwhile is missed by this server.
//!
//! - `stream`: the writer and the reader of the stream;
//! - `requests`: requests over pub/sub (fetching sockets, broadcasts with acks,
//!   server-side emits), this server's and the answers to the others';
//! - `adapter`: `RedisAdapter`, a namespace's adapter in the cluster.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use serde_json::{Map, Value};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::wire::{Body, Message, Opts, StoredSession};
use crate::socketio::{
    Adapter, InMemoryAdapter, Io, IoBuilder, RecoveryConfig, ServerSideAck, ServerSideEvent, Target,
};

/// Why a cluster could not be set up.
#[derive(Debug, Error)]
pub enum ClusterError {
    #[error("invalid Redis URL {url:?}: {source}")]
    Url {
        url: String,
        source: redis::RedisError,
    },
}

/// Where the cluster lives and how this server uses it. The defaults are the
/// Node adapter's.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// The stream every server writes to and reads (`socket.io`).
    pub stream: String,
    /// The stream is trimmed to about this many entries (`MAXLEN ~`).
    pub max_len: usize,
    /// Most entries read at once.
    pub read_count: usize,
    /// How long a read waits for new entries before asking again.
    pub block: Duration,
    /// Most messages waiting for Redis; past that new ones are dropped.
    pub outbox: usize,
}

impl RedisOptions {
    pub fn new(url: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            stream: "socket.io".to_owned(),
            max_len: 10_000,
            read_count: 100,
            block: Duration::from_secs(5),
            outbox: 10_000,
        }
    }
}

/// Most messages written in one pipeline.
const BATCH: usize = 256;
/// How long connecting, and a command other than the blocking read, may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnection delays: doubled from the first to the last.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(2));

/// This server in a cluster on Redis.
#[derive(Debug)]
pub struct RedisCluster {
    /// How the other servers tell this one's messages: 16 hex digits, as Node's.
    uid: String,
    options: RedisOptions,
    client: redis::Client,
    outbox: mpsc::Sender<Outgoing>,
    /// Taken by the writer task when it starts.
    outbox_receiver: Mutex<Option<mpsc::Receiver<Outgoing>>>,
    writer_up: AtomicBool,
    reader_up: AtomicBool,
    subscriber_up: AtomicBool,
    /// This server's requests waiting for the others' answers, by request id.
    requests: Mutex<HashMap<String, Request>>,
    /// A connection for this server's own commands (`PUBSUB NUMSUB`).
    commands: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    dropped: AtomicU64,
    lost: AtomicU64,
    /// The id of this server's next ordered broadcast (`publish_ordered`).
    next_mid: AtomicU64,
    /// This server's ordered broadcasts it delivered already (Redis was away).
    skip: Mutex<HashSet<u64>>,
}

/// Where sessions are kept: `sio:session:<pid>`, as Node's adapter keeps them.
const SESSION_PREFIX: &str = "sio:session:";
/// Most ordered broadcasts remembered as delivered already.
const SKIP_LIMIT: usize = 100_000;
/// How many times a CONNECT looks for its session, and how long apart: the
/// server the client left may store it a moment after the client is back.
const SESSION_LOOKUPS: (usize, Duration) = (3, Duration::from_millis(100));

impl RedisCluster {
    /// Checks the URL; connects only when started.
    pub fn new(options: RedisOptions) -> Result<Arc<Self>, ClusterError> {
        let client =
            redis::Client::open(options.url.as_str()).map_err(|source| ClusterError::Url {
                url: options.url.clone(),
                source,
            })?;
        let (outbox, receiver) = mpsc::channel(options.outbox.max(1));
        Ok(Arc::new(RedisCluster {
            uid: random_id(),
            options,
            client,
            outbox,
            outbox_receiver: Mutex::new(Some(receiver)),
            writer_up: AtomicBool::new(false),
            reader_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            requests: Mutex::new(HashMap::new()),
            commands: tokio::sync::Mutex::new(None),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            next_mid: AtomicU64::new(0),
            skip: Mutex::new(HashSet::new()),
        }))
    }

    /// This server's id in the cluster.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Whether this server's connections to Redis (writer, stream reader,
    /// subscriber) are up.
    pub fn is_connected(&self) -> bool {
        self.writer_up.load(Ordering::Relaxed)
            && self.reader_up.load(Ordering::Relaxed)
            && self.subscriber_up.load(Ordering::Relaxed)
    }

    /// Messages dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Messages of pipelines that failed in flight (Redis may have taken them).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    /// Makes `builder`'s namespaces members of this cluster: their adapters
    /// forward to it, and requests that need the other servers' answers go
    /// through it. Then [`start`](Self::start) it with the built `Io`.
    pub fn configure(self: &Arc<Self>, builder: IoBuilder) -> IoBuilder {
        builder.adapter(self.adapter()).cluster(self.clone())
    }

    /// The adapter factory for [`IoBuilder::adapter`](crate::socketio::IoBuilder::adapter):
    /// each namespace's adapter forwards to this cluster.
    pub fn adapter(
        self: &Arc<Self>,
    ) -> impl Fn(&str, Option<RecoveryConfig>) -> Box<dyn Adapter> + Send + Sync + 'static {
        let cluster = self.clone();
        move |nsp: &str, recovery: Option<RecoveryConfig>| {
            Box::new(RedisAdapter {
                local: InMemoryAdapter::new(recovery),
                recovery,
                nsp: nsp.to_owned(),
                cluster: cluster.clone(),
            }) as Box<dyn Adapter>
        }
    }

    /// Starts the writer and the reader for `io`, until `shutdown`.
    pub fn start(self: &Arc<Self>, io: &Arc<Io>, shutdown: CancellationToken) {
        let receiver = self
            .outbox_receiver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let Some(receiver) = receiver else {
            warn!("the Redis cluster was started twice; the second start does nothing");
            return;
        };
        info!(uid = %self.uid, url = %self.options.url, stream = %self.options.stream, "joining the Redis cluster");
        tokio::spawn(
            self.clone()
                .write(receiver, Arc::downgrade(io), shutdown.clone()),
        );
        tokio::spawn(self.clone().read(Arc::downgrade(io), shutdown.clone()));
        tokio::spawn(
            self.clone()
                .subscribe(Arc::downgrade(io), io.namespaces(), shutdown),
        );
    }

    /// Queues `message` for the other servers; never waits. False if the
    /// outbox was full and it was dropped.
    fn publish(&self, message: Message) -> bool {
        self.send(Outgoing::Message {
            message,
            to: None,
            mid: None,
        })
    }

    /// Queues a broadcast that this server delivers to its own sockets when
    /// it reads it back from the stream, in the stream's order and with its
    /// entry id as offset (recovery). Returns false when it must be delivered
    /// here now instead, without an offset: Redis is unreachable (local
    /// delivery does not wait for it; the entry is still written when Redis is
    /// back, and skipped here then) or the outbox is full.
    fn publish_ordered(&self, message: Message) -> bool {
        let mid = self.next_mid.fetch_add(1, Ordering::Relaxed);
        let up = self.writer_up.load(Ordering::Relaxed);
        if !up {
            self.skip_mid(mid);
        }
        // Delivered here now, without offset, when it cannot be written now.
        let queued = self.send(Outgoing::Message {
            message,
            to: None,
            mid: Some(mid),
        });
        up && queued
    }

    /// This server's entry `mid` was delivered here already: skip it when
    /// read. False if it was marked so before.
    fn skip_mid(&self, mid: u64) -> bool {
        let mut skip = self
            .skip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if skip.len() >= SKIP_LIMIT {
            // Entries Redis never took (a pipeline cut in flight) stay here:
            // forget them rather than grow.
            skip.clear();
        }
        skip.insert(mid)
    }

    /// Whether this server's entry `mid` was delivered here already (forgets it).
    fn skipped(&self, mid: u64) -> bool {
        self.skip
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&mid)
    }

    /// Keeps a departed socket's session in Redis for `ttl`, for any server
    /// of the cluster to recover it.
    fn persist(&self, session: &StoredSession, ttl: Duration) {
        self.send(Outgoing::Session {
            key: format!("{SESSION_PREFIX}{}", session.pid),
            value: session.encode(),
            ttl,
        });
    }

    /// Queues `body` as an answer to server `uid`'s request in `nsp`.
    fn reply(&self, nsp: &str, uid: &str, body: Body) {
        self.send(Outgoing::Message {
            message: Message {
                uid: self.uid.clone(),
                nsp: nsp.to_owned(),
                body,
            },
            to: Some(format!("socket.io#{nsp}#{uid}#")),
            mid: None,
        });
    }

    /// Queues `outgoing`; false if the outbox was full and it was dropped.
    fn send(&self, outgoing: Outgoing) -> bool {
        match self.outbox.try_send(outgoing) {
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if dropped.is_power_of_two() {
                    warn!(
                        dropped,
                        "the Redis outbox is full: messages for the other servers are dropped"
                    );
                }
                false
            }
            // Closed: the writer is gone with the server.
            _ => true,
        }
    }

    async fn connect(
        &self,
        response_timeout: Option<Duration>,
    ) -> redis::RedisResult<MultiplexedConnection> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(response_timeout);
        self.client
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }
}

/// What the outbox holds.
#[derive(Debug)]
// Nearly everything queued is a message: boxing it would allocate for each.
#[allow(clippy::large_enum_variant)]
enum Outgoing {
    /// A message: to the stream or the public channel by its type, or to one
    /// server's private channel (`to`) when it answers a request. `mid`: a
    /// broadcast this server delivers when it reads it back (written as an
    /// extra field of the entry, which Node ignores).
    Message {
        message: Message,
        to: Option<String>,
        mid: Option<u64>,
    },
    /// A departed socket's session (`SET key value PX ttl`).
    Session {
        key: String,
        value: String,
        ttl: Duration,
    },
}

/// After a failed attempt to reach Redis: marks that connection (`up`) down,
/// warns once per outage (`what`: which connection, and what happens
/// meanwhile), and waits the backoff. False if the server is shutting down.
async fn retry_after(
    error: &redis::RedisError,
    what: &str,
    up: &AtomicBool,
    delay: &mut Duration,
    shutdown: &CancellationToken,
) -> bool {
    if up.swap(false, Ordering::Relaxed) || *delay == BACKOFF.0 {
        warn!(%error, "Redis unreachable ({what})");
    }
    pause(delay, shutdown).await
}

/// Waits `delay` (doubled for next time, up to the last backoff step); false
/// if the server is shutting down.
async fn pause(delay: &mut Duration, shutdown: &CancellationToken) -> bool {
    let wait = *delay;
    *delay = (*delay * 2).min(BACKOFF.1);
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = shutdown.cancelled() => false,
    }
}

/// Hands a server-side emit (`[name, ...args]`) to the namespace's handler.
fn server_side_emit(io: &Arc<Io>, nsp: &str, packet: Vec<Value>, ack: Option<ServerSideAck>) {
    let mut packet = packet.into_iter();
    let Some(Value::String(name)) = packet.next() else {
        return;
    };
    io.on_server_side_emit(
        nsp,
        ServerSideEvent {
            name,
            args: packet.collect(),
            ack,
        },
    );
}

/// A stream entry's fields as text or bytes (what `Message::from_entry` reads).
fn entry_fields(entry: &redis::streams::StreamId) -> impl Iterator<Item = (&str, &[u8])> {
    entry.map.iter().filter_map(|(name, value)| match value {
        redis::Value::BulkString(bytes) => Some((name.as_str(), bytes.as_slice())),
        redis::Value::SimpleString(text) => Some((name.as_str(), text.as_bytes())),
        _ => None,
    })
}

fn target(opts: Opts) -> Target {
    Target {
        rooms: opts.rooms,
        except_rooms: opts.except,
        except_socket: None,
    }
}

fn opts(target: &Target, volatile: bool) -> Opts {
    let mut except = target.except_rooms.clone();
    except.extend(target.except_socket.iter().cloned());
    let mut flags = Map::new();
    if volatile {
        flags.insert("volatile".to_owned(), Value::Bool(true));
    }
    Opts {
        rooms: target.rooms.clone(),
        except,
        flags,
    }
}

/// 16 random hex digits, as Node's adapter makes its ids.
fn random_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: the time still tells servers apart.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes = (nanos as u64).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

mod adapter;
use self::adapter::RedisAdapter;
use self::requests::Request;
mod replay;
mod requests;
mod stream;
