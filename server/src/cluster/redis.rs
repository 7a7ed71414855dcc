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
//! Redis away (at start or later) never stops or slows local delivery: emits
//! reach this server's sockets at once, the outbox keeps what the others must
//! hear until Redis is back, and both tasks reconnect with a backoff. The
//! policy when the outbox is full (`outbox` messages waiting): a new message is
//! dropped and counted ([`RedisCluster::dropped`]), so the other servers' clients
//! miss it; a pipeline in flight when the connection fails is counted as lost
//! too, since Redis may or may not have taken it (sending it again could double
//! it). The reader resumes after the last entry it read, so no entry written
//! meanwhile is missed by this server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;

use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamReadOptions, StreamReadReply};
use serde_json::{Map, Value};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::wire::{Body, EventPacket, Message, Opts};
use crate::socketio::{
    Adapter, Broadcast, Cluster, ClusterStatus, FetchError, Forward, InMemoryAdapter, Io,
    IoBuilder, Pending, RecoveryConfig, RemoteAcks, RemoteSocket, ServerSideAck,
    ServerSideEmitError, ServerSideEvent, Session, Target,
};
use protocol::{Args, Frame, Time};

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
}

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
        tokio::spawn(self.clone().write(receiver, shutdown.clone()));
        tokio::spawn(self.clone().read(Arc::downgrade(io), shutdown.clone()));
        tokio::spawn(
            self.clone()
                .subscribe(Arc::downgrade(io), io.namespaces(), shutdown),
        );
    }

    /// Queues `message` for the other servers; never waits.
    fn publish(&self, message: Message) {
        self.send(Outgoing { message, to: None });
    }

    /// Queues `body` as an answer to server `uid`'s request in `nsp`.
    fn reply(&self, nsp: &str, uid: &str, body: Body) {
        self.send(Outgoing {
            message: Message {
                uid: self.uid.clone(),
                nsp: nsp.to_owned(),
                body,
            },
            to: Some(format!("socket.io#{nsp}#{uid}#")),
        });
    }

    fn send(&self, outgoing: Outgoing) {
        if let Err(mpsc::error::TrySendError::Full(_)) = self.outbox.try_send(outgoing) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                warn!(
                    dropped,
                    "the Redis outbox is full: messages for the other servers are dropped"
                );
            }
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

    /// Writes the outbox to Redis in order, reconnecting as needed.
    async fn write(
        self: Arc<Self>,
        mut outbox: mpsc::Receiver<Outgoing>,
        shutdown: CancellationToken,
    ) {
        let mut connection = None;
        let mut delay = BACKOFF.0;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            // Connected first (readiness tells), then waiting for messages.
            let conn = match &mut connection {
                Some(conn) => conn,
                None => match self.connect(Some(COMMAND_TIMEOUT)).await {
                    Ok(conn) => {
                        info!("connected to Redis (writer)");
                        self.writer_up.store(true, Ordering::Relaxed);
                        delay = BACKOFF.0;
                        connection.insert(conn)
                    }
                    Err(error) => {
                        if self.writer_up.swap(false, Ordering::Relaxed) || delay == BACKOFF.0 {
                            warn!(%error, "Redis unreachable (writer); messages wait in the outbox");
                        }
                        if !pause(&mut delay, &shutdown).await {
                            return;
                        }
                        continue;
                    }
                },
            };
            if batch.is_empty() {
                tokio::select! {
                    message = outbox.recv() => match message {
                        Some(message) => batch.push(message),
                        None => return,
                    },
                    () = shutdown.cancelled() => return,
                }
            }
            while batch.len() < BATCH {
                match outbox.try_recv() {
                    Ok(message) => batch.push(message),
                    Err(_) => break,
                }
            }
            let mut pipe = redis::pipe();
            for Outgoing { message, to } in &batch {
                if let Some(channel) = to {
                    pipe.publish(channel, message.to_pubsub()).ignore();
                } else if message.body.is_ephemeral() {
                    pipe.publish(format!("socket.io#{}#", message.nsp), message.to_pubsub())
                        .ignore();
                } else {
                    let fields = message.to_entry();
                    pipe.cmd("XADD")
                        .arg(&self.options.stream)
                        .arg("MAXLEN")
                        .arg("~")
                        .arg(self.options.max_len)
                        .arg("*")
                        .arg(&fields[..])
                        .ignore();
                }
            }
            match pipe.query_async::<()>(conn).await {
                Ok(()) => batch.clear(),
                Err(error) => {
                    self.lost.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    warn!(%error, lost = batch.len(), "writing to Redis failed; reconnecting");
                    batch.clear();
                    connection = None;
                    self.writer_up.store(false, Ordering::Relaxed);
                }
            }
        }
    }

    /// Reads the stream and does here what the other servers did.
    async fn read(self: Arc<Self>, io: Weak<Io>, shutdown: CancellationToken) {
        // Where to read from: the stream's end when this server joined, then
        // after each entry read; kept across reconnections.
        let mut last: Option<String> = None;
        let mut delay = BACKOFF.0;
        let block = self.options.block;
        let read_options = StreamReadOptions::default()
            .count(self.options.read_count)
            .block(block.as_millis().try_into().unwrap_or(usize::MAX));
        loop {
            let mut conn = match self.connect(Some(block + COMMAND_TIMEOUT)).await {
                Ok(conn) => conn,
                Err(error) => {
                    if self.reader_up.swap(false, Ordering::Relaxed) || delay == BACKOFF.0 {
                        warn!(%error, "Redis unreachable (reader); retrying");
                    }
                    if !pause(&mut delay, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if last.is_none() {
                match self.stream_end(&mut conn).await {
                    Ok(end) => last = Some(end),
                    Err(error) => {
                        warn!(%error, "reading the stream's end failed; retrying");
                        if !pause(&mut delay, &shutdown).await {
                            return;
                        }
                        continue;
                    }
                }
            }
            info!("connected to Redis (reader)");
            self.reader_up.store(true, Ordering::Relaxed);
            delay = BACKOFF.0;
            loop {
                let from = last.clone().unwrap_or_else(|| "0-0".to_owned());
                let stream = [self.options.stream.as_str()];
                let ids = [from.as_str()];
                let read = tokio::select! {
                    read = conn.xread_options::<_, _, Option<StreamReadReply>>(&stream, &ids, &read_options) => read,
                    () = shutdown.cancelled() => return,
                };
                match read {
                    Ok(reply) => {
                        let Some(io) = io.upgrade() else {
                            return;
                        };
                        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
                            self.receive(&io, &entry);
                            last = Some(entry.id);
                        }
                    }
                    Err(error) => {
                        warn!(%error, "reading the Redis stream failed; reconnecting");
                        self.reader_up.store(false, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }
    }

    /// The id of the stream's last entry, `0-0` when it has none.
    async fn stream_end(&self, conn: &mut MultiplexedConnection) -> redis::RedisResult<String> {
        let last: redis::streams::StreamRangeReply = conn
            .xrevrange_count(&self.options.stream, "+", "-", 1)
            .await?;
        Ok(last
            .ids
            .into_iter()
            .next()
            .map_or_else(|| "0-0".to_owned(), |entry| entry.id))
    }

    fn receive(&self, io: &Arc<Io>, entry: &redis::streams::StreamId) {
        let fields = entry.map.iter().filter_map(|(name, value)| match value {
            redis::Value::BulkString(bytes) => Some((name.as_str(), bytes.as_slice())),
            redis::Value::SimpleString(text) => Some((name.as_str(), text.as_bytes())),
            _ => None,
        });
        match Message::from_entry(fields) {
            Ok(Some(message)) if message.uid != self.uid => apply(io, message),
            Ok(_) => {}
            Err(error) => {
                debug!(id = %entry.id, %error, "skipping a stream entry that is not a cluster message")
            }
        }
    }
}

/// A message for the outbox: to the stream or the public channel by its type,
/// or to one server's private channel (`to`) when it answers a request.
#[derive(Debug)]
struct Outgoing {
    message: Message,
    to: Option<String>,
}

/// A request of this server waiting for the others' answers.
#[derive(Debug)]
struct Request {
    /// Servers expected to answer, and how many did.
    expected: usize,
    received: usize,
    /// A fetch's sockets.
    sockets: Vec<RemoteSocket>,
    /// A broadcast's acks: the clients the answering servers counted, and the
    /// acks (first arguments) received.
    clients: usize,
    acks: Vec<Value>,
    done: Option<oneshot::Sender<()>>,
}

impl Request {
    fn new(expected: usize, done: oneshot::Sender<()>) -> Request {
        Request {
            expected,
            received: 0,
            sockets: Vec::new(),
            clients: 0,
            acks: Vec::new(),
            done: Some(done),
        }
    }

    /// Signals the waiting request once every server (and, for a broadcast,
    /// every client it counted) has answered.
    fn check(&mut self) {
        if self.received >= self.expected
            && self.acks.len() >= self.clients
            && let Some(done) = self.done.take()
        {
            let _ = done.send(());
        }
    }
}

impl RedisCluster {
    /// Listens on each namespace's public channel (the others' requests) and
    /// on this server's private one (their answers), reconnecting as needed.
    /// One subscription per channel: the others count the subscribers of the
    /// public channel to know how many answers to wait for.
    async fn subscribe(
        self: Arc<Self>,
        io: Weak<Io>,
        namespaces: Vec<String>,
        shutdown: CancellationToken,
    ) {
        let mut delay = BACKOFF.0;
        loop {
            let mut pubsub = match self.client.get_async_pubsub().await {
                Ok(pubsub) => pubsub,
                Err(error) => {
                    if self.subscriber_up.swap(false, Ordering::Relaxed) || delay == BACKOFF.0 {
                        warn!(%error, "Redis unreachable (subscriber); retrying");
                    }
                    if !pause(&mut delay, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            let mut subscribed = true;
            for nsp in &namespaces {
                for channel in [
                    format!("socket.io#{nsp}#"),
                    format!("socket.io#{nsp}#{}#", self.uid),
                ] {
                    if let Err(error) = pubsub.subscribe(&channel).await {
                        warn!(%error, %channel, "subscribing failed; retrying");
                        subscribed = false;
                    }
                }
            }
            if !subscribed {
                if !pause(&mut delay, &shutdown).await {
                    return;
                }
                continue;
            }
            self.subscriber_up.store(true, Ordering::Relaxed);
            delay = BACKOFF.0;
            let mut messages = pubsub.on_message();
            loop {
                let message = tokio::select! {
                    message = messages.next() => message,
                    () = shutdown.cancelled() => return,
                };
                let Some(message) = message else {
                    warn!("the Redis subscription ended; resubscribing");
                    self.subscriber_up.store(false, Ordering::Relaxed);
                    break;
                };
                let Some(io) = io.upgrade() else {
                    return;
                };
                match Message::from_pubsub(message.get_payload_bytes()) {
                    Ok(Some(message)) if message.uid != self.uid => self.answer(&io, message),
                    Ok(_) => {}
                    Err(error) => {
                        debug!(%error, "skipping a pub/sub message that is not a cluster message")
                    }
                }
            }
        }
    }

    /// A request of another server, or an answer to one of this server's.
    fn answer(self: &Arc<Self>, io: &Arc<Io>, message: Message) {
        let nsp = message.nsp;
        let from = message.uid;
        match message.body {
            Body::FetchSockets { opts, request_id } => {
                let sockets = Broadcast::targeted(io.clone(), &nsp, target(opts), false)
                    .local()
                    .sockets()
                    .iter()
                    .map(|socket| RemoteSocket::of(socket).to_json())
                    .collect();
                self.reply(
                    &nsp,
                    &from,
                    Body::FetchSocketsResponse {
                        request_id,
                        sockets,
                    },
                );
            }
            Body::FetchSocketsResponse {
                request_id,
                sockets,
            } => {
                let mut requests = self
                    .requests
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(request) = requests.get_mut(&request_id) {
                    request
                        .sockets
                        .extend(sockets.iter().filter_map(RemoteSocket::from_json));
                    request.received += 1;
                    request.check();
                }
            }
            Body::BroadcastClientCount {
                request_id,
                client_count,
            } => {
                let mut requests = self
                    .requests
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(request) = requests.get_mut(&request_id) {
                    request.received += 1;
                    request.clients += usize::try_from(client_count).unwrap_or(usize::MAX);
                    request.check();
                }
            }
            Body::BroadcastAck { request_id, packet } => {
                let mut requests = self
                    .requests
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(request) = requests.get_mut(&request_id) {
                    request.acks.push(packet);
                    request.check();
                }
            }
            Body::Broadcast {
                packet,
                opts,
                request_id: Some(request_id),
            } => {
                // Another server's broadcast with acks: how many clients here,
                // then each one's ack as it comes.
                let timeout = opts
                    .flags
                    .get("timeout")
                    .and_then(Value::as_u64)
                    .map_or(Duration::from_secs(5), Duration::from_millis);
                let mut data = packet.data.into_iter();
                let Some(Value::String(name)) = data.next() else {
                    return;
                };
                let args: Vec<Value> = data.collect();
                let sockets = Broadcast::targeted(io.clone(), &nsp, target(opts), false)
                    .local()
                    .sockets();
                self.reply(
                    &nsp,
                    &from,
                    Body::BroadcastClientCount {
                        request_id: request_id.clone(),
                        client_count: sockets.len() as u64,
                    },
                );
                for socket in sockets {
                    let (cluster, nsp, from, request_id, name, args) = (
                        self.clone(),
                        nsp.clone(),
                        from.clone(),
                        request_id.clone(),
                        name.clone(),
                        args.clone(),
                    );
                    tokio::spawn(async move {
                        if let Ok(ack) = socket.emit_with_ack(&name, args, timeout).await {
                            let packet = ack.args.into_iter().next().unwrap_or(Value::Null);
                            cluster.reply(&nsp, &from, Body::BroadcastAck { request_id, packet });
                        }
                    });
                }
            }
            Body::ServerSideEmit { packet, request_id } => {
                let ack = request_id.map(|request_id| {
                    let (cluster, nsp, from) = (self.clone(), nsp.clone(), from.clone());
                    ServerSideAck(Box::new(move |packet: Value| {
                        cluster.reply(
                            &nsp,
                            &from,
                            Body::ServerSideEmitResponse { request_id, packet },
                        );
                    }))
                });
                server_side_emit(io, &nsp, packet, ack);
            }
            Body::ServerSideEmitResponse { request_id, packet } => {
                let mut requests = self
                    .requests
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(request) = requests.get_mut(&request_id) {
                    request.acks.push(packet);
                    request.received += 1;
                    request.check();
                }
            }
            other => debug!(
                kind = other.kind(),
                "a cluster request this server does not answer"
            ),
        }
    }

    /// How many servers listen on `nsp`'s public channel, this one included.
    async fn server_count(&self, nsp: &str) -> redis::RedisResult<usize> {
        let mut commands = self.commands.lock().await;
        let conn = match &mut *commands {
            Some(conn) => conn,
            None => {
                let conn = self.connect(Some(COMMAND_TIMEOUT)).await?;
                commands.insert(conn)
            }
        };
        let reply: redis::RedisResult<(String, usize)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(format!("socket.io#{nsp}#"))
            .query_async(conn)
            .await;
        if reply.is_err() {
            *commands = None;
        }
        reply.map(|(_, count)| count)
    }
}

impl Cluster for RedisCluster {
    fn status(&self) -> ClusterStatus {
        ClusterStatus {
            connected: self.is_connected(),
            dropped: self.dropped(),
            lost: self.lost(),
        }
    }

    fn fetch_sockets(
        self: Arc<Self>,
        nsp: &str,
        target: &Target,
        timeout: Duration,
    ) -> Pending<Result<Vec<RemoteSocket>, FetchError>> {
        let nsp = nsp.to_owned();
        let opts = opts(target, false);
        Box::pin(async move {
            if !self.subscriber_up.load(Ordering::Relaxed) {
                return Err(FetchError::Unavailable(
                    "not subscribed to Redis".to_owned(),
                ));
            }
            let servers = self
                .server_count(&nsp)
                .await
                .map_err(|e| FetchError::Unavailable(e.to_string()))?;
            // Everyone listening on the namespace's channel but this server.
            let expected = servers.saturating_sub(1);
            if expected == 0 {
                return Ok(Vec::new());
            }
            let request_id = random_id();
            let (done, finished) = oneshot::channel();
            self.requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(request_id.clone(), Request::new(expected, done));
            self.publish(Message {
                uid: self.uid.clone(),
                nsp,
                body: Body::FetchSockets {
                    opts,
                    request_id: request_id.clone(),
                },
            });
            let answered = tokio::time::timeout(timeout, finished).await.is_ok();
            let request = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&request_id);
            let Some(request) = request else {
                return Ok(Vec::new());
            };
            if answered {
                Ok(request.sockets)
            } else {
                Err(FetchError::Timeout {
                    received: request.received,
                    expected,
                    sockets: request.sockets,
                })
            }
        })
    }

    fn server_side_emit(
        self: Arc<Self>,
        nsp: &str,
        name: &str,
        args: Vec<Value>,
        timeout: Option<Duration>,
    ) -> Pending<Result<Vec<Value>, ServerSideEmitError>> {
        let nsp = nsp.to_owned();
        let mut packet = Vec::with_capacity(args.len() + 1);
        packet.push(Value::String(name.to_owned()));
        packet.extend(args);
        Box::pin(async move {
            let Some(timeout) = timeout else {
                self.publish(Message {
                    uid: self.uid.clone(),
                    nsp,
                    body: Body::ServerSideEmit {
                        packet,
                        request_id: None,
                    },
                });
                return Ok(Vec::new());
            };
            if !self.subscriber_up.load(Ordering::Relaxed) {
                return Err(ServerSideEmitError::Unavailable(
                    "not subscribed to Redis".to_owned(),
                ));
            }
            let servers = self
                .server_count(&nsp)
                .await
                .map_err(|e| ServerSideEmitError::Unavailable(e.to_string()))?;
            let expected = servers.saturating_sub(1);
            if expected == 0 {
                return Ok(Vec::new());
            }
            let request_id = random_id();
            let (done, finished) = oneshot::channel();
            self.requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(request_id.clone(), Request::new(expected, done));
            self.publish(Message {
                uid: self.uid.clone(),
                nsp,
                body: Body::ServerSideEmit {
                    packet,
                    request_id: Some(request_id.clone()),
                },
            });
            let answered = tokio::time::timeout(timeout, finished).await.is_ok();
            let request = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&request_id);
            match request {
                Some(request) if !answered => Err(ServerSideEmitError::Timeout {
                    received: request.received,
                    expected,
                    responses: request.acks,
                }),
                Some(request) => Ok(request.acks),
                None => Ok(Vec::new()),
            }
        })
    }

    fn broadcast_with_ack(
        self: Arc<Self>,
        nsp: &str,
        target: &Target,
        name: &str,
        args: Vec<Value>,
        timeout: Duration,
    ) -> Pending<RemoteAcks> {
        let nsp = nsp.to_owned();
        let mut opts = opts(target, false);
        opts.flags.insert(
            "timeout".to_owned(),
            Value::from(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX)),
        );
        let mut data = Vec::with_capacity(args.len() + 1);
        data.push(Value::String(name.to_owned()));
        data.extend(args);
        Box::pin(async move {
            let servers = match self.subscriber_up.load(Ordering::Relaxed) {
                true => self.server_count(&nsp).await.ok(),
                false => None,
            };
            let Some(servers) = servers else {
                // The others cannot be asked: how many there are is unknown.
                return RemoteAcks {
                    missing_servers: 1,
                    ..RemoteAcks::default()
                };
            };
            let expected = servers.saturating_sub(1);
            if expected == 0 {
                return RemoteAcks::default();
            }
            let request_id = random_id();
            let (done, finished) = oneshot::channel();
            self.requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(request_id.clone(), Request::new(expected, done));
            self.publish(Message {
                uid: self.uid.clone(),
                nsp,
                body: Body::Broadcast {
                    packet: EventPacket {
                        data,
                        attachments: Vec::new(),
                        id: None,
                    },
                    opts,
                    request_id: Some(request_id.clone()),
                },
            });
            let _ = tokio::time::timeout(timeout, finished).await;
            let request = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&request_id);
            match request {
                Some(request) => RemoteAcks {
                    missing_clients: request.clients.saturating_sub(request.acks.len()),
                    missing_servers: request.expected.saturating_sub(request.received),
                    responses: request.acks,
                },
                None => RemoteAcks::default(),
            }
        })
    }
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

/// Does on this server's sockets what another server did on its own.
fn apply(io: &Arc<Io>, message: Message) {
    let nsp = message.nsp.as_str();
    match message.body {
        Body::Broadcast {
            packet,
            opts,
            request_id: None,
        } => {
            let mut data = packet.data.into_iter();
            let Some(Value::String(name)) = data.next() else {
                return;
            };
            let volatile = opts.volatile();
            let target = target(opts);
            let args: Args = data.collect::<Vec<_>>().into();
            io.emit_to(
                nsp,
                &target,
                &name,
                args,
                packet.attachments,
                volatile,
                true,
            );
        }
        Body::SocketsJoin { opts, rooms } => {
            let selection = Broadcast::targeted(io.clone(), nsp, target(opts), false).local();
            for room in rooms {
                selection.join(&room);
            }
        }
        Body::SocketsLeave { opts, rooms } => {
            let selection = Broadcast::targeted(io.clone(), nsp, target(opts), false).local();
            for room in rooms {
                selection.leave(&room);
            }
        }
        Body::DisconnectSockets { opts, close } => {
            let selection = Broadcast::targeted(io.clone(), nsp, target(opts), false).local();
            if close {
                selection.close();
            } else {
                selection.disconnect();
            }
        }
        // The Redis Streams emitter writes server-side emits to the stream.
        Body::ServerSideEmit {
            packet,
            request_id: None,
        } => server_side_emit(io, nsp, packet, None),
        other => debug!(kind = other.kind(), "not a stream message; skipped"),
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

/// A namespace's adapter in a cluster: this server's sockets in memory, and
/// what the others must hear forwarded.
#[derive(Debug)]
struct RedisAdapter {
    local: InMemoryAdapter,
    nsp: String,
    cluster: Arc<RedisCluster>,
}

impl Adapter for RedisAdapter {
    fn add(&mut self, id: &str, room: String) {
        self.local.add(id, room);
    }
    fn del(&mut self, id: &str, room: &str) {
        self.local.del(id, room);
    }
    fn del_all(&mut self, id: &str) -> std::collections::HashSet<String> {
        self.local.del_all(id)
    }
    fn socket_rooms(&self, id: &str) -> Option<&std::collections::HashSet<String>> {
        self.local.socket_rooms(id)
    }
    fn members(&self, room: &str) -> Option<&std::collections::HashSet<String>> {
        self.local.members(room)
    }
    fn rooms(&self) -> Vec<String> {
        self.local.rooms()
    }
    fn recovery_enabled(&self) -> bool {
        self.local.recovery_enabled()
    }
    fn next_offset(&mut self) -> Option<u64> {
        self.local.next_offset()
    }
    fn last_offset(&self) -> u64 {
        self.local.last_offset()
    }
    fn log(&mut self, offset: u64, target: Target, frames: Arc<[Frame]>, now: Time) {
        self.local.log(offset, target, frames, now);
    }
    fn persist_session(&mut self, pid: &str, session: Session, now: Time) {
        self.local.persist_session(pid, session, now);
    }
    fn persisted(&mut self, pid: &str, now: Time) -> Option<&Session> {
        self.local.persisted(pid, now)
    }
    fn restore_session(&mut self, pid: &str) -> Option<Session> {
        self.local.restore_session(pid)
    }
    fn missed(
        &self,
        offset: u64,
        id: &str,
        rooms: &std::collections::HashSet<String>,
    ) -> Option<Vec<Frame>> {
        self.local.missed(offset, id, rooms)
    }

    fn forward(&mut self, op: Forward<'_>) {
        let body = match op {
            Forward::Broadcast {
                target,
                name,
                args,
                attachments,
                volatile,
            } => {
                let mut data = Vec::with_capacity(args.values().len() + 1);
                data.push(Value::String(name.to_owned()));
                data.extend(args.values().iter().cloned());
                Body::Broadcast {
                    packet: EventPacket {
                        data,
                        attachments: attachments.to_vec(),
                        id: None,
                    },
                    opts: opts(target, volatile),
                    request_id: None,
                }
            }
            Forward::Join { target, room } => Body::SocketsJoin {
                opts: opts(target, false),
                rooms: vec![room.to_owned()],
            },
            Forward::Leave { target, room } => Body::SocketsLeave {
                opts: opts(target, false),
                rooms: vec![room.to_owned()],
            },
            Forward::Disconnect { target, close } => Body::DisconnectSockets {
                opts: opts(target, false),
                close,
            },
        };
        self.cluster.publish(Message {
            uid: self.cluster.uid.clone(),
            nsp: self.nsp.clone(),
            body,
        });
    }
}
