//! The task behind a [`Client`](crate::Client): it owns the protocol's
//! `ClientSession` and the transport, and loops over "what happened" — a command
//! from a handle, a frame or polling response from the server, an upgrade probe's
//! answer, room in the events channel, a timer — feeding the session and carrying
//! out what it asks (frames to send, events to deliver, when to wake).
//!
//! The transport rules — one GET waiting and one POST at a time while polling,
//! the upgrade probe and its pause, the open timeout, a new transport for each
//! reconnection attempt — are the protocol's [`ClientTransport`]: this task starts
//! the requests and sockets it asks for ([`Step`]), keeps them in [`Io`], and
//! feeds their results back. Opening runs inside the loop like any request, so
//! commands (a `disconnect` above all) are served meanwhile.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::Time;
use protocol::session::client::{ClientState, EmitError};
use protocol::session::client_transport::{self, Failure};
use protocol::session::{
    AckId, ClientConfig, ClientEvent, ClientSession, ClientTransport, CloseReason, PathMemory,
    ProtocolError, Step, TransportConfig,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, trace, warn};

use crate::http::HttpClient;
use crate::transport::{self, Pending, ProbeResult, Ws};
use crate::url::ServerUrl;
use crate::{Ack, Command, Error, Incoming, Options, Shared, Status, Transport, Transports};

/// How long an upgrade probe may take before polling carries on without it.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the goodbye (the last frames, the socket's close) may take.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// The requests and sockets the transport machine asked for, in flight.
#[derive(Default)]
struct Io {
    /// A WebSocket for a new Engine.IO session being opened.
    opening: Option<Pending<Result<Box<Ws>, String>>>,
    /// The WebSocket carrying the session.
    ws: Option<Box<Ws>>,
    get: Option<Pending<Result<String, String>>>,
    post: Option<Pending<Result<(), String>>>,
    /// A probe WebSocket waiting for its answer.
    probe: Option<Pending<ProbeResult>>,
    /// The probe's socket once answered, until the upgrade completes or fails.
    probe_ws: Option<Box<Ws>>,
}

/// Something the loop woke up for.
enum Wake {
    Command(Option<Command>),
    Opened(Result<Box<Ws>, String>),
    WebSocket(Option<Result<Message, tungstenite::Error>>),
    Get(Result<String, String>),
    Post(Result<(), String>),
    Probe(ProbeResult),
    Timer,
    Delivered,
}

pub(crate) struct Driver {
    endpoint: ServerUrl,
    /// Long-polling's connections, kept alive between requests.
    http: HttpClient,
    namespace: String,
    session: ClientSession,
    /// Which transport, and what to ask of the network next.
    transport: ClientTransport,
    io: Io,
    origin: Instant,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    events: mpsc::Sender<Incoming>,
    /// Events taken from the session but not yet into `events` (those of one
    /// message or polling response at most: the transport is not read meanwhile).
    pending: VecDeque<Incoming>,
    acks: HashMap<AckId, oneshot::Sender<Result<Ack, Error>>>,
    shared: watch::Sender<Shared>,
    status: watch::Sender<Status>,
    /// Why the last transport was lost, for the `Reconnecting` status that follows.
    lost: Option<CloseReason>,
    /// How the session is ending when the driver ended it (a refusal, the server
    /// leaving us), reported instead of the session's `LocalClose`.
    ending: Option<Status>,
    connected: Option<oneshot::Sender<Result<(), Error>>>,
    disconnect_waiters: Vec<oneshot::Sender<()>>,
}

impl Driver {
    pub(crate) fn new(
        endpoint: ServerUrl,
        options: Options,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<Incoming>,
        shared: watch::Sender<Shared>,
        status: watch::Sender<Status>,
        connected: oneshot::Sender<Result<(), Error>>,
    ) -> Driver {
        let config = ClientConfig {
            namespace: options.namespace.clone(),
            auth: options.auth,
            ack_timeout: options.ack_timeout,
            max_buffered: options.max_buffered,
            reconnection: options.reconnection,
            // Each client its own jitter: clients dropped together spread out.
            seed: random_seed(),
            ..ClientConfig::default()
        };
        let transport = ClientTransport::new(
            TransportConfig {
                transports: match options.transports {
                    Transports::WebSocketOnly => client_transport::Transports::WebSocketOnly,
                    Transports::PollingOnly => client_transport::Transports::PollingOnly,
                    Transports::PollingThenUpgrade => {
                        client_transport::Transports::PollingThenUpgrade
                    }
                },
                open_timeout: options.connect_timeout,
                probe_timeout: PROBE_TIMEOUT,
                max_queued: None,
                // Cache busters: a per-client prefix and a counter.
                seed: random_seed(),
            },
            PathMemory::default(),
        );
        Driver {
            endpoint,
            http: HttpClient::default(),
            namespace: config.namespace.clone(),
            session: ClientSession::new(config),
            transport,
            io: Io::default(),
            origin: Instant::now(),
            commands,
            commands_open: true,
            events,
            pending: VecDeque::new(),
            acks: HashMap::new(),
            shared,
            status,
            lost: None,
            ending: None,
            connected: Some(connected),
            disconnect_waiters: Vec::new(),
        }
    }

    fn now(&self) -> Time {
        self.origin.elapsed()
    }

    pub(crate) async fn run(mut self) {
        let now = self.now();
        self.transport.open(now);
        loop {
            self.pump();
            if self.is_closed() {
                break;
            }
            if self.run_steps().await {
                // The session heard of a lost transport: its events first.
                continue;
            }

            let wake = [self.session.poll_timeout(), self.transport.poll_timeout()]
                .into_iter()
                .flatten()
                .min()
                .map(|t| self.origin + t);
            let deadline = wake.unwrap_or_else(Instant::now);
            let reading = self.pending.is_empty();
            let woke = tokio::select! {
                command = self.commands.recv(), if self.commands_open => Wake::Command(command),
                wake = next_on_io(&mut self.io, reading) => wake,
                permit = self.events.reserve(), if !self.pending.is_empty() => {
                    match permit {
                        Ok(permit) => {
                            if let Some(event) = self.pending.pop_front() {
                                permit.send(event);
                            }
                        }
                        // Nobody takes events any more: drop them as they come.
                        Err(_) => self.pending.clear(),
                    }
                    Wake::Delivered
                }
                () = tokio::time::sleep_until(deadline), if wake.is_some() => Wake::Timer,
            };
            self.handle(woke);
        }
        self.goodbye().await;
    }

    fn is_closed(&self) -> bool {
        self.session.state() == &ClientState::Closed
    }

    /// Carries out what the transport machine asks, in order. Returns whether the
    /// session was told its transport is lost.
    async fn run_steps(&mut self) -> bool {
        let mut unflushed = false;
        while let Some(step) = self.transport.poll_step(self.now()) {
            match step {
                Step::Open { transport, t, .. } => {
                    self.shared.send_if_modified(|s| {
                        let changed = s.transport != transport;
                        s.transport = transport;
                        changed
                    });
                    match t {
                        None => {
                            let url = self.endpoint.websocket_url(None);
                            self.io.opening = Some(Box::pin(async move {
                                transport::open_websocket(&url)
                                    .await
                                    .map(Box::new)
                                    .map_err(|e| e.to_string())
                            }));
                        }
                        Some(t) => {
                            self.io.get =
                                Some(transport::poll(&self.http, &self.endpoint, None, &t))
                        }
                    }
                }
                Step::Get { sid, t } => {
                    self.io.get = Some(transport::poll(&self.http, &self.endpoint, Some(&sid), &t));
                }
                Step::Post { sid, t, payload } => {
                    trace!(%payload, "long-polling POST");
                    self.io.post = Some(transport::post(
                        &self.http,
                        &self.endpoint,
                        &sid,
                        &t,
                        payload,
                    ));
                }
                Step::Send(frame) => {
                    trace!(?frame, "websocket send");
                    let sent = match &mut self.io.ws {
                        Some(ws) => ws.feed(transport::to_message(frame)).await,
                        None => Ok(()),
                    };
                    unflushed = true;
                    if let Err(e) = sent {
                        let now = self.now();
                        self.transport.websocket_failed(e.to_string(), now);
                    }
                }
                Step::Probe { sid, request } => {
                    debug!(%sid, "probing the websocket upgrade");
                    self.io.probe = Some(transport::probe(
                        self.endpoint.websocket_url(Some(&sid)),
                        request,
                    ));
                }
                Step::Upgrade(frame) => {
                    let sent = match self.io.probe_ws.take() {
                        Some(mut ws) => ws
                            .send(transport::to_message(frame))
                            .await
                            .map(|()| self.io.ws = Some(ws))
                            .map_err(|e| e.to_string()),
                        None => Err("no probe socket".to_owned()),
                    };
                    self.transport.upgrade_sent(sent);
                }
                Step::Upgraded => {
                    debug!("upgraded to websocket");
                    self.shared
                        .send_modify(|s| s.transport = Transport::WebSocket);
                }
                Step::ProbeFailed(why) => {
                    // The server never saw a `5`: the session carries on polling.
                    debug!(error = %why, "probe failed, staying on long-polling");
                    self.io.probe = None;
                    self.io.probe_ws = None;
                }
                Step::Close => self.io = Io::default(),
                Step::Lost(failure) => {
                    let reason = match failure {
                        Failure::Transport(why) => CloseReason::Transport(why),
                        Failure::Payload(e) => {
                            warn!(error = %e, "invalid long-polling payload from the server, closing");
                            CloseReason::Protocol(ProtocolError::from(e))
                        }
                    };
                    let now = self.now();
                    self.session.transport_closed(reason, now);
                    return true;
                }
            }
        }
        if unflushed
            && let Some(ws) = &mut self.io.ws
            && let Err(e) = ws.flush().await
        {
            let now = self.now();
            self.transport.websocket_failed(e.to_string(), now);
            // Its steps: the transport closes, the session hears of it.
            return Box::pin(self.run_steps()).await;
        }
        false
    }

    /// Takes what the session has for us: events for the application and the
    /// handles, frames for the transport.
    fn pump(&mut self) {
        let events: Vec<ClientEvent> = std::iter::from_fn(|| self.session.poll_event()).collect();
        // Acks failed by a close come before the close event: they fail as closed.
        let closing = events.iter().find_map(|e| match e {
            ClientEvent::Closed(reason) => Some(reason.clone()),
            _ => None,
        });
        for event in events {
            match event {
                ClientEvent::Open(open) => {
                    debug!(sid = %open.sid, upgrades = ?open.upgrades, "engine.io session open");
                    self.transport.opened(&open);
                }
                ClientEvent::Connected { sid, recovered } => {
                    debug!(%sid, recovered, nsp = %self.namespace, "namespace connected");
                    self.shared.send_modify(|s| s.sid.clone_from(&sid));
                    self.status
                        .send_replace(Status::Connected { sid, recovered });
                    if let Some(connected) = self.connected.take() {
                        let _ = connected.send(Ok(()));
                    }
                }
                ClientEvent::ConnectError { message, .. } => {
                    debug!(%message, nsp = %self.namespace, "namespace refused the connection");
                    if let Some(connected) = self.connected.take() {
                        let _ = connected.send(Err(Error::ConnectRefused(message.clone())));
                    }
                    self.ending = Some(Status::Refused(message));
                    self.session.disconnect();
                }
                ClientEvent::Event {
                    id,
                    name,
                    args,
                    attachments,
                } => self.pending.push_back(Incoming {
                    name,
                    args,
                    attachments,
                    ack: id,
                }),
                ClientEvent::Ack {
                    id,
                    args,
                    attachments,
                } => {
                    if let Some(reply) = self.acks.remove(&id) {
                        let _ = reply.send(Ok(Ack { args, attachments }));
                    }
                }
                ClientEvent::AckTimeout { id } => {
                    if let Some(reply) = self.acks.remove(&id) {
                        let error = match &closing {
                            Some(reason) => Error::Closed(reason.clone()),
                            None => Error::AckTimeout,
                        };
                        let _ = reply.send(Err(error));
                    }
                }
                ClientEvent::Disconnected => {
                    // The server removed us from our only namespace: nothing is left
                    // to do on this session, and no reconnection either (as the JS
                    // client after "io server disconnect").
                    debug!(nsp = %self.namespace, "disconnected by the server");
                    self.ending = Some(Status::Closed(CloseReason::PeerClosed));
                    self.session.disconnect();
                }
                ClientEvent::TransportLost(reason) => {
                    debug!(%reason, "transport lost");
                    // Whatever the old transport still had (requests, a probe, frames
                    // of its Engine.IO session) goes with it.
                    self.transport.close();
                    self.lost = Some(reason);
                }
                ClientEvent::Reconnecting { attempt, delay } => {
                    let reason = self
                        .lost
                        .clone()
                        .unwrap_or(CloseReason::Transport("lost".to_owned()));
                    debug!(attempt, ?delay, %reason, "reconnecting");
                    // The instant the session scheduled, when it still waits for it.
                    let at = match self.session.state() {
                        ClientState::Reconnecting { attempt: a, at } if *a == attempt => {
                            self.origin + *at
                        }
                        _ => Instant::now() + delay,
                    };
                    self.status.send_replace(Status::Reconnecting {
                        attempt,
                        delay,
                        at,
                        reason,
                    });
                }
                ClientEvent::OpenTransport { attempt } => {
                    debug!(attempt, "reconnection attempt");
                    self.status.send_replace(Status::Connecting {
                        attempt: Some(attempt),
                    });
                    let now = self.now();
                    self.transport.open(now);
                }
                ClientEvent::Closed(reason) => {
                    debug!(%reason, "session closed");
                    if let Some(connected) = self.connected.take() {
                        let _ = connected.send(Err(Error::Closed(reason.clone())));
                    }
                    let status = self.ending.take().unwrap_or(Status::Closed(reason));
                    self.status.send_replace(status);
                }
            }
        }
        while let Some(frame) = self.session.poll_transmit() {
            self.transport.send(frame);
        }
        // Hand over what fits at once; the rest waits for room (see `run`).
        while !self.pending.is_empty() {
            match self.events.try_reserve() {
                Ok(permit) => {
                    if let Some(event) = self.pending.pop_front() {
                        permit.send(event);
                    }
                }
                Err(mpsc::error::TrySendError::Full(())) => break,
                Err(mpsc::error::TrySendError::Closed(())) => self.pending.clear(),
            }
        }
    }

    fn handle(&mut self, wake: Wake) {
        let now = self.now();
        match wake {
            Wake::Command(Some(command)) => self.on_command(command),
            Wake::Command(None) => {
                // Every handle is gone: say goodbye to the server.
                self.commands_open = false;
                self.session.disconnect();
            }
            Wake::Opened(Ok(ws)) => {
                debug!("websocket open");
                self.io.opening = None;
                self.io.ws = Some(ws);
            }
            Wake::Opened(Err(e)) => {
                self.io.opening = None;
                self.transport.websocket_failed(e, now);
            }
            Wake::WebSocket(message) => self.on_websocket(message),
            Wake::Get(result) => {
                self.io.get = None;
                if let Ok(body) = &result {
                    trace!(%body, "long-polling GET answered");
                }
                let frames = self
                    .transport
                    .get_done(result.as_deref().map_err(Clone::clone));
                for frame in frames {
                    if let Err(e) = self.session.handle_frame(frame, now) {
                        warn!(error = %e, "invalid packet from the server, closing");
                        break;
                    }
                }
            }
            Wake::Post(result) => {
                self.io.post = None;
                self.transport.post_done(result);
            }
            Wake::Probe(result) => {
                self.io.probe = None;
                let answer = result.map(|(ws, answer)| {
                    self.io.probe_ws = Some(ws);
                    answer
                });
                self.transport.probe_done(answer);
            }
            Wake::Timer => {
                // A transport that brought no handshake in time has failed (the
                // session sees no deadline before the open packet).
                self.transport.handle_timeout(now);
                self.session.handle_timeout(now);
            }
            Wake::Delivered => {}
        }
    }

    fn on_command(&mut self, command: Command) {
        let now = self.now();
        match command {
            Command::Emit {
                name,
                args,
                attachments,
                done,
            } => {
                let result = self
                    .session
                    .emit_binary(&name, args, attachments, None)
                    .map(drop)
                    .map_err(|e| self.emit_error(e));
                let _ = done.send(result);
            }
            Command::EmitWithAck { name, args, reply } => {
                match self.session.emit_with_ack(&name, args, now) {
                    Ok(id) => {
                        self.acks.insert(id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Err(self.emit_error(e)));
                    }
                }
            }
            Command::Ack { id, args, done } => {
                let result = self.session.ack(id, args).map_err(|e| self.emit_error(e));
                let _ = done.send(result);
            }
            Command::Disconnect { done } => {
                self.disconnect_waiters.push(done);
                self.session.disconnect();
            }
        }
    }

    fn emit_error(&self, error: EmitError) -> Error {
        match error {
            EmitError::Closed => self.status.borrow().closed_error(),
            EmitError::BufferFull(n) => Error::BufferFull(n),
            EmitError::Event(e) => Error::Event(e),
        }
    }

    fn on_websocket(&mut self, message: Option<Result<Message, tungstenite::Error>>) {
        let now = self.now();
        let why = match message {
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map_or_else(String::new, |f| format!(": {} {}", f.code, f.reason));
                format!("websocket closed{why}")
            }
            Some(Ok(message)) => {
                trace!(?message, "websocket received");
                if let Some(frame) = transport::to_frame(message)
                    && let Err(e) = self.session.handle_frame(frame, now)
                {
                    warn!(error = %e, "invalid frame from the server, closing");
                }
                return;
            }
            Some(Err(e)) => e.to_string(),
            None => "connection lost".to_owned(),
        };
        self.transport.websocket_failed(why, now);
    }

    /// The session is closed: send what it left (the close packet after a local
    /// disconnect) and close the transport, within [`GOODBYE_TIMEOUT`]; then tell
    /// the handles and hand over the events received before the close.
    async fn goodbye(&mut self) {
        // On a WebSocket the last frames are the machine's steps (nothing new
        // starts there); on long-polling one last POST.
        let now = self.now();
        let mut frames = Vec::new();
        if self.transport.transport() == Some(Transport::WebSocket) {
            while let Some(step) = self.transport.poll_step(now) {
                if let Step::Send(frame) = step {
                    frames.push(frame);
                }
            }
        }
        let last = self.transport.goodbye();
        let mut io = std::mem::take(&mut self.io);
        let (endpoint, http) = (self.endpoint.clone(), self.http.clone());
        let work = async move {
            if let Some(ws) = &mut io.ws {
                for frame in frames {
                    ws.feed(transport::to_message(frame)).await?;
                }
                tokio_tungstenite::WebSocketStream::close(ws, None).await?;
            } else {
                // The last POST goes after the one in flight; the GET is dropped
                // only then, so the server reads the close before the abort.
                if let Some(post) = io.post.take() {
                    let _ = post.await;
                }
                if let Some(Step::Post { sid, t, payload }) = last {
                    let _ = transport::post(&http, &endpoint, &sid, &t, payload).await;
                }
            }
            Ok::<(), tungstenite::Error>(())
        };
        if let Ok(Err(e)) = tokio::time::timeout(GOODBYE_TIMEOUT, work).await {
            debug!(error = %e, "closing the websocket failed");
        }
        self.status.send_if_modified(|s| {
            let open = !s.is_closed();
            if open {
                *s = Status::Closed(CloseReason::LocalClose);
            }
            open
        });
        for (_, reply) in self.acks.drain() {
            let _ = reply.send(Err(self.status.borrow().closed_error()));
        }
        for done in self.disconnect_waiters.drain(..) {
            let _ = done.send(());
        }
        // Events that arrived before the close still reach the application; this
        // waits for it to take them (or to drop the client).
        for event in self.pending.drain(..) {
            if self.events.send(event).await.is_err() {
                break;
            }
        }
    }
}

/// The next thing to happen on the transport: a WebSocket opening, a message,
/// or a polling request or probe completing. `reading`: whether to read from the
/// server at all (not while events wait for room); POSTs and probes complete
/// regardless.
async fn next_on_io(io: &mut Io, reading: bool) -> Wake {
    tokio::select! {
        result = transport::maybe(&mut io.opening), if io.opening.is_some() => Wake::Opened(result),
        message = async { io.ws.as_mut()?.next().await }, if reading && io.ws.is_some() => {
            Wake::WebSocket(message)
        }
        result = transport::maybe(&mut io.get), if reading && io.get.is_some() => Wake::Get(result),
        result = transport::maybe(&mut io.post), if io.post.is_some() => Wake::Post(result),
        result = transport::maybe(&mut io.probe), if io.probe.is_some() => Wake::Probe(result),
        else => std::future::pending().await,
    }
}

/// A seed for the reconnection jitter and the cache busters, different for each
/// client: std's `RandomState` keys come from the OS's randomness (once per
/// thread, then stepped), mixed with a process-wide counter and the time.
fn random_seed() -> u64 {
    static CLIENTS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CLIENTS.fetch_add(1, Ordering::Relaxed));
    if let Ok(since_epoch) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        hasher.write_u128(since_epoch.as_nanos());
    }
    hasher.finish()
}
