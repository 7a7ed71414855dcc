//! Requests over pub/sub: this server's (fetch sockets, broadcasts with acks,
//! server-side emits) waiting for the others' answers, and the task that
//! answers the others' requests.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::oneshot;

use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{
    BACKOFF, COMMAND_TIMEOUT, RedisCluster, SESSION_LOOKUPS, SESSION_PREFIX, opts, pause,
    random_id, retry_after, server_side_emit, target,
};
use crate::cluster::wire::{Body, EventPacket, Message, StoredSession};
use crate::socketio::{
    Broadcast, Cluster, ClusterStatus, FetchError, Io, Offset, Pending, RemoteAcks, RemoteSocket,
    ServerSideAck, ServerSideEmitError, Session, Target,
};
use protocol::Frame;

/// A request of this server waiting for the others' answers.
#[derive(Debug)]
pub(super) struct Request {
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
    pub(super) fn new(expected: usize, done: oneshot::Sender<()>) -> Request {
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
    pub(super) async fn subscribe(
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
                    let (what, up) = ("subscriber; retrying", &self.subscriber_up);
                    if !retry_after(&error, what, up, &mut delay, &shutdown).await {
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
            } => self.update(&request_id, |request| {
                request
                    .sockets
                    .extend(sockets.iter().filter_map(RemoteSocket::from_json));
                request.received += 1;
            }),
            Body::BroadcastClientCount {
                request_id,
                client_count,
            } => self.update(&request_id, |request| {
                request.received += 1;
                request.clients += usize::try_from(client_count).unwrap_or(usize::MAX);
            }),
            Body::BroadcastAck { request_id, packet } => {
                self.update(&request_id, |request| request.acks.push(packet));
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
                self.update(&request_id, |request| {
                    request.acks.push(packet);
                    request.received += 1;
                });
            }
            other => debug!(
                kind = other.kind(),
                "a cluster request this server does not answer"
            ),
        }
    }

    /// How many servers listen on `nsp`'s public channel, this one included.
    async fn server_count(&self, nsp: &str) -> redis::RedisResult<usize> {
        let mut pipe = redis::pipe();
        pipe.cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(format!("socket.io#{nsp}#"));
        let ((_, count),): ((String, usize),) = self.query(&pipe).await?;
        Ok(count)
    }

    /// Runs `pipe` on this server's connection for its own commands (made when
    /// first needed, and again after a failure).
    pub(super) async fn query<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> redis::RedisResult<T> {
        let mut commands = self.commands.lock().await;
        let conn = match &mut *commands {
            Some(conn) => conn,
            None => {
                let conn = self.connect(Some(COMMAND_TIMEOUT)).await?;
                commands.insert(conn)
            }
        };
        let reply = pipe.query_async(conn).await;
        if reply.is_err() {
            *commands = None;
        }
        reply
    }

    /// Takes (`GET` and `DEL` in one transaction, as Node's adapter does for
    /// Redis before 6.2) the session kept under `pid`, looking a few times: the
    /// server the client left may store it a moment after the client is back.
    async fn take_stored(&self, pid: &str) -> Option<StoredSession> {
        let key = format!("{SESSION_PREFIX}{pid}");
        let mut pipe = redis::pipe();
        pipe.atomic().get(&key).del(&key).ignore();
        for attempt in 0..SESSION_LOOKUPS.0 {
            if attempt > 0 {
                tokio::time::sleep(SESSION_LOOKUPS.1).await;
            }
            match self.query::<(Option<String>,)>(&pipe).await {
                Ok((Some(value),)) => {
                    return match StoredSession::decode(&value) {
                        Ok(session) => Some(session),
                        Err(error) => {
                            warn!(%error, %key, "a stored session that cannot be read: the client starts over");
                            None
                        }
                    };
                }
                Ok((None,)) => {}
                Err(error) => {
                    warn!(%error, "taking a session from Redis failed: the client starts over");
                    return None;
                }
            }
        }
        None
    }
}

impl RedisCluster {
    fn requests(&self) -> std::sync::MutexGuard<'_, HashMap<String, Request>> {
        self.requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An answer to request `id`, if it is still waiting: `f` records it, then
    /// the request is told if it is complete.
    fn update(&self, id: &str, f: impl FnOnce(&mut Request)) {
        if let Some(request) = self.requests().get_mut(id) {
            f(request);
            request.check();
        }
    }

    /// Asks the other servers listening on `nsp`: publishes the body `ask`
    /// makes of a fresh request id, then waits at most `timeout` for every
    /// answer. `Ok(None)` when no other server listens; otherwise the request
    /// as it stood, and whether every answer came. `Err` when the others
    /// cannot be asked (not subscribed, or Redis unreachable).
    async fn ask(
        &self,
        nsp: String,
        timeout: Duration,
        ask: impl FnOnce(String) -> Body,
    ) -> Result<Option<(Request, bool)>, String> {
        if !self.subscriber_up.load(Ordering::Relaxed) {
            return Err("not subscribed to Redis".to_owned());
        }
        let servers = self.server_count(&nsp).await.map_err(|e| e.to_string())?;
        // Everyone listening on the namespace's channel but this server.
        let expected = servers.saturating_sub(1);
        if expected == 0 {
            return Ok(None);
        }
        let request_id = random_id();
        let (done, finished) = oneshot::channel();
        self.requests()
            .insert(request_id.clone(), Request::new(expected, done));
        self.publish(Message {
            uid: self.uid.clone(),
            nsp,
            body: ask(request_id.clone()),
        });
        let answered = tokio::time::timeout(timeout, finished).await.is_ok();
        Ok(self
            .requests()
            .remove(&request_id)
            .map(|request| (request, answered)))
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
            let asked = self
                .ask(nsp, timeout, |request_id| Body::FetchSockets {
                    opts,
                    request_id,
                })
                .await
                .map_err(FetchError::Unavailable)?;
            match asked {
                None => Ok(Vec::new()),
                Some((request, true)) => Ok(request.sockets),
                Some((request, false)) => Err(FetchError::Timeout {
                    received: request.received,
                    expected: request.expected,
                    sockets: request.sockets,
                }),
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
            let asked = self
                .ask(nsp, timeout, |request_id| Body::ServerSideEmit {
                    packet,
                    request_id: Some(request_id),
                })
                .await
                .map_err(ServerSideEmitError::Unavailable)?;
            match asked {
                None => Ok(Vec::new()),
                Some((request, true)) => Ok(request.acks),
                Some((request, false)) => Err(ServerSideEmitError::Timeout {
                    received: request.received,
                    expected: request.expected,
                    responses: request.acks,
                }),
            }
        })
    }

    fn take_session(self: Arc<Self>, nsp: &str, pid: &str) -> Pending<Option<Session>> {
        let (nsp, pid) = (nsp.to_owned(), pid.to_owned());
        Box::pin(async move {
            let stored = self.take_stored(&pid).await?;
            debug!(%nsp, %pid, sid = %stored.sid, "session taken from Redis");
            let rooms = stored
                .rooms
                .into_iter()
                .filter(|r| *r != stored.sid)
                .collect();
            Some(Session {
                socket_id: stored.sid,
                rooms,
                data: stored.data,
                base: stored
                    .base
                    .as_deref()
                    .and_then(Offset::parse)
                    .unwrap_or_default(),
            })
        })
    }

    fn replay(
        self: Arc<Self>,
        nsp: &str,
        after: Offset,
        until: Offset,
        session: &Session,
    ) -> Pending<Option<Vec<Frame>>> {
        let (nsp, session) = (nsp.to_owned(), session.clone());
        Box::pin(async move { self.read_range(&nsp, after, until, &session).await })
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
            let body = |request_id| Body::Broadcast {
                packet: EventPacket {
                    data,
                    attachments: Vec::new(),
                    id: None,
                },
                opts,
                request_id: Some(request_id),
            };
            match self.ask(nsp, timeout, body).await {
                // The others cannot be asked: how many there are is unknown.
                Err(_) => RemoteAcks {
                    missing_servers: 1,
                    ..RemoteAcks::default()
                },
                Ok(None) => RemoteAcks::default(),
                Ok(Some((request, _))) => RemoteAcks {
                    missing_clients: request.clients.saturating_sub(request.acks.len()),
                    missing_servers: request.expected.saturating_sub(request.received),
                    responses: request.acks,
                },
            }
        })
    }
}
