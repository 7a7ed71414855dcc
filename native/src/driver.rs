//! The task behind a [`Client`](crate::Client): it owns the protocol's
//! `ClientSession` and the transport, and loops over "what happened" — a command
//! from a handle, a frame or polling response from the server, an upgrade probe's
//! answer, room in the events channel, a timer — feeding the session and carrying
//! out what it asks (frames to send, events to deliver, when to wake).
//!
//! Long-polling follows the JS client: one GET always waiting (unless paused), one
//! POST at a time carrying every frame queued meanwhile. With
//! [`Transports::PollingThenUpgrade`] a probe WebSocket is opened as soon as the
//! server offers the upgrade; once it answers `3probe`, polling pauses (no new GET
//! or POST; frames wait here), and when neither request is in flight the session's
//! `5` goes out on the WebSocket, which carries everything from then on. Frames
//! never overtake each other: whatever was queued during the pause follows the `5`.
//!
//! Reconnection is the session's decision: when it reports the transport lost,
//! the transport is dropped here (with any frame of the old Engine.IO session not
//! yet sent); when it asks for a new one (`OpenTransport`), one is opened as the
//! first was — a WebSocket, or a polling handshake that upgrades again — and its
//! frames feed the same session. Opening runs inside the loop like any request,
//! so commands (a `disconnect` above all) are served meanwhile, and an opening
//! that has not produced the server's handshake within `connect_timeout` counts
//! as failed (the session has no deadline before the handshake).

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use protocol::engineio::{frames_to_payload, payload_to_frames};
use protocol::session::client::{ClientState, EmitError};
use protocol::session::{
    AckId, ClientConfig, ClientEvent, ClientSession, CloseReason, ProtocolError,
};
use protocol::{Frame, Time};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tracing::{debug, trace, warn};

use crate::transport::{self, Pending, ProbeResult, Ws};
use crate::url::Endpoint;
use crate::{Ack, Command, Error, Incoming, Options, Shared, Status, Transport, Transports};

/// How long the goodbye (the last frames, the socket's close) may take.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// What carries the session's frames.
enum Link {
    /// Nothing: the transport was lost, and reconnection (if any) waits its delay.
    None,
    /// A WebSocket for a new session being opened.
    Opening(Pending<Result<Box<Ws>, String>>),
    WebSocket(Box<Ws>),
    Polling(Polling),
}

/// Long-polling state: the requests in flight and the upgrade in progress.
#[derive(Default)]
struct Polling {
    get: Option<Pending<Result<String, String>>>,
    post: Option<Pending<Result<(), String>>>,
    /// A probe WebSocket waiting for its answer.
    probe: Option<Pending<ProbeResult>>,
    /// The probe succeeded: polling is paused until no request is in flight, then
    /// this frame (`5`) goes out on this socket.
    upgrading: Option<(Box<Ws>, Frame)>,
    /// A probe was started (there is only one try, as in the JS client).
    probed: bool,
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
    endpoint: Endpoint,
    transports: Transports,
    namespace: String,
    /// How long a transport may take to bring the server's handshake.
    open_timeout: Duration,
    /// When the transport being opened must have brought the handshake.
    opening_deadline: Option<Instant>,
    session: ClientSession,
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
    /// Frames from the session waiting for the transport.
    outbox: VecDeque<Frame>,
    link: Link,
    /// Cache busters: a per-client prefix and a counter.
    cache_seed: u64,
    requests: u64,
}

impl Driver {
    pub(crate) fn new(
        endpoint: Endpoint,
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
        Driver {
            endpoint,
            transports: options.transports,
            namespace: config.namespace.clone(),
            open_timeout: options.connect_timeout,
            opening_deadline: None,
            session: ClientSession::new(config),
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
            outbox: VecDeque::new(),
            link: Link::None,
            cache_seed: random_seed(),
            requests: 0,
        }
    }

    fn now(&self) -> Time {
        self.origin.elapsed()
    }

    pub(crate) async fn run(mut self) {
        self.open();
        loop {
            self.pump();
            if self.is_closed() {
                break;
            }
            // Before the flush: frames queued during the upgrade's pause go out on
            // the new WebSocket right after the `5`.
            self.finish_upgrade().await;
            if let Err(e) = self.flush().await {
                {
                    let now = self.now();
                    self.session
                        .transport_closed(CloseReason::Transport(e), now);
                }
                continue;
            }
            self.start_requests();

            let wake = [
                self.session.poll_timeout().map(|t| self.origin + t),
                self.opening_deadline,
            ]
            .into_iter()
            .flatten()
            .min();
            let deadline = wake.unwrap_or_else(Instant::now);
            let reading = self.pending.is_empty();
            let woke = tokio::select! {
                command = self.commands.recv(), if self.commands_open => Wake::Command(command),
                wake = next_on_link(&mut self.link, reading) => wake,
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

    fn cache_buster(&mut self) -> String {
        self.requests += 1;
        format!("{:x}.{}", self.cache_seed, self.requests)
    }

    fn engine_sid(&self) -> Option<String> {
        self.session.handshake().map(|open| open.sid.clone())
    }

    /// Starts opening a transport for a new Engine.IO session (the first one, or
    /// a reconnection attempt's): a WebSocket, or the polling handshake.
    fn open(&mut self) {
        self.outbox.clear();
        self.opening_deadline = Some(Instant::now() + self.open_timeout);
        let initial = match self.transports {
            Transports::WebSocketOnly => Transport::WebSocket,
            Transports::PollingOnly | Transports::PollingThenUpgrade => Transport::Polling,
        };
        self.shared.send_if_modified(|s| {
            let changed = s.transport != initial;
            s.transport = initial;
            changed
        });
        match self.transports {
            Transports::WebSocketOnly => {
                let url = self.endpoint.websocket_url(None);
                self.link = Link::Opening(Box::pin(async move {
                    transport::open_websocket(&url)
                        .await
                        .map(Box::new)
                        .map_err(|e| e.to_string())
                }));
            }
            Transports::PollingOnly | Transports::PollingThenUpgrade => {
                let t = self.cache_buster();
                self.link = Link::Polling(Polling {
                    get: Some(transport::poll(&self.endpoint, None, &t)),
                    ..Polling::default()
                });
            }
        }
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
                    self.opening_deadline = None;
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
                    self.link = Link::None;
                    self.outbox.clear();
                    self.opening_deadline = None;
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
                    self.open();
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
        self.outbox
            .extend(std::iter::from_fn(|| self.session.poll_transmit()));
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

    /// Sends the outbox: written to a WebSocket, or as the next POST when none is
    /// in flight and polling is not paused.
    async fn flush(&mut self) -> Result<(), String> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        let sid = self.engine_sid();
        let max_payload = self.session.handshake().map(|open| open.max_payload);
        match &mut self.link {
            Link::WebSocket(ws) => {
                for frame in self.outbox.drain(..) {
                    trace!(?frame, "websocket send");
                    ws.feed(transport::to_message(frame))
                        .await
                        .map_err(|e| e.to_string())?;
                }
                ws.flush().await.map_err(|e| e.to_string())
            }
            Link::Polling(polling) if polling.post.is_none() && polling.upgrading.is_none() => {
                let Some(sid) = sid else {
                    return Ok(());
                };
                let payload = take_payload(&mut self.outbox, max_payload);
                trace!(%payload, "long-polling POST");
                self.requests += 1;
                let t = format!("{:x}.{}", self.cache_seed, self.requests);
                polling.post = Some(transport::post(&self.endpoint, &sid, &t, payload));
                Ok(())
            }
            Link::Polling(_) | Link::Opening(_) | Link::None => Ok(()),
        }
    }

    /// Keeps a GET waiting (unless paused) and starts the upgrade probe when the
    /// server offers one.
    fn start_requests(&mut self) {
        let Some(sid) = self.engine_sid() else {
            return;
        };
        let can_upgrade =
            self.transports == Transports::PollingThenUpgrade && self.session.can_upgrade();
        let Link::Polling(polling) = &mut self.link else {
            return;
        };
        if polling.get.is_none() && polling.upgrading.is_none() {
            self.requests += 1;
            let t = format!("{:x}.{}", self.cache_seed, self.requests);
            polling.get = Some(transport::poll(&self.endpoint, Some(&sid), &t));
        }
        if can_upgrade && !polling.probed {
            polling.probed = true;
            debug!(%sid, "probing the websocket upgrade");
            polling.probe = Some(transport::probe(
                self.endpoint.websocket_url(Some(&sid)),
                self.session.probe_request(),
            ));
        }
    }

    /// Upgrade, second half: once the probe succeeded and no polling request is in
    /// flight, sends `5` on the WebSocket and makes it the transport.
    async fn finish_upgrade(&mut self) {
        let Link::Polling(polling) = &mut self.link else {
            return;
        };
        if polling.get.is_some() || polling.post.is_some() {
            return;
        }
        let Some((mut ws, upgrade)) = polling.upgrading.take() else {
            return;
        };
        match ws.send(transport::to_message(upgrade)).await {
            Ok(()) => {
                debug!("upgraded to websocket");
                self.link = Link::WebSocket(ws);
                self.shared
                    .send_modify(|s| s.transport = Transport::WebSocket);
            }
            // The server never saw the `5`: the session carries on polling.
            Err(e) => debug!(error = %e, "upgrade failed, staying on long-polling"),
        }
    }

    fn handle(&mut self, wake: Wake) {
        match wake {
            Wake::Command(Some(command)) => self.on_command(command),
            Wake::Command(None) => {
                // Every handle is gone: say goodbye to the server.
                self.commands_open = false;
                self.session.disconnect();
            }
            Wake::Opened(Ok(ws)) => {
                debug!("websocket open");
                self.link = Link::WebSocket(ws);
            }
            Wake::Opened(Err(e)) => {
                self.link = Link::None;
                let now = self.now();
                self.session
                    .transport_closed(CloseReason::Transport(e), now);
            }
            Wake::WebSocket(message) => self.on_websocket(message),
            Wake::Get(result) => {
                if let Link::Polling(polling) = &mut self.link {
                    polling.get = None;
                }
                match result {
                    Ok(body) => self.on_payload(&body),
                    Err(e) => {
                        let now = self.now();
                        self.session
                            .transport_closed(CloseReason::Transport(e), now);
                    }
                }
            }
            Wake::Post(result) => {
                if let Link::Polling(polling) = &mut self.link {
                    polling.post = None;
                }
                if let Err(e) = result {
                    {
                        let now = self.now();
                        self.session
                            .transport_closed(CloseReason::Transport(e), now);
                    }
                }
            }
            Wake::Probe(result) => {
                let Link::Polling(polling) = &mut self.link else {
                    return;
                };
                polling.probe = None;
                match result {
                    Ok((ws, answer)) => match self.session.handle_probe_response(answer) {
                        Ok(upgrade) => {
                            debug!("probe answered, pausing long-polling");
                            polling.upgrading = Some((ws, upgrade));
                        }
                        Err(e) => debug!(error = %e, "probe refused, staying on long-polling"),
                    },
                    Err(e) => debug!(error = %e, "probe failed, staying on long-polling"),
                }
            }
            Wake::Timer => {
                let now = self.now();
                if self.opening_deadline.is_some_and(|d| d <= Instant::now()) {
                    // No handshake in time: this attempt failed (the session sees no
                    // deadline before the open packet).
                    self.opening_deadline = None;
                    self.link = Link::None;
                    let why = format!("no handshake within {:?}", self.open_timeout);
                    self.session
                        .transport_closed(CloseReason::Transport(why), now);
                }
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
        match message {
            Some(Ok(Message::Close(frame))) => {
                let why = frame.map_or_else(String::new, |f| format!(": {} {}", f.code, f.reason));
                self.session.transport_closed(
                    CloseReason::Transport(format!("websocket closed{why}")),
                    now,
                );
            }
            Some(Ok(message)) => {
                trace!(?message, "websocket received");
                if let Some(frame) = transport::to_frame(message) {
                    if let Err(e) = self.session.handle_frame(frame, now) {
                        warn!(error = %e, "invalid frame from the server, closing");
                    }
                }
            }
            Some(Err(e)) => self
                .session
                .transport_closed(CloseReason::Transport(e.to_string()), self.now()),
            None => self
                .session
                .transport_closed(CloseReason::Transport("connection lost".to_owned()), now),
        }
    }

    /// A polling GET's body: its packets, in order, to the session.
    fn on_payload(&mut self, body: &str) {
        // An empty answer carries nothing (a server releasing the request).
        if body.is_empty() {
            return;
        }
        trace!(%body, "long-polling GET answered");
        let now = self.now();
        match payload_to_frames(body) {
            Ok(frames) => {
                for frame in frames {
                    if let Err(e) = self.session.handle_frame(frame, now) {
                        warn!(error = %e, "invalid packet from the server, closing");
                        break;
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "invalid long-polling payload from the server, closing");
                self.session
                    .transport_closed(CloseReason::Protocol(ProtocolError::from(e)), now);
            }
        }
    }

    /// The session is closed: send what it left (the close packet after a local
    /// disconnect) and close the transport, within [`GOODBYE_TIMEOUT`]; then tell
    /// the handles and hand over the events received before the close.
    async fn goodbye(&mut self) {
        let frames: Vec<Frame> = self.outbox.drain(..).collect();
        let link = std::mem::replace(&mut self.link, Link::None);
        let sid = self.engine_sid();
        let t = self.cache_buster();
        let endpoint = self.endpoint.clone();
        let work = async move {
            match link {
                Link::WebSocket(mut ws) => {
                    for frame in frames {
                        ws.feed(transport::to_message(frame)).await?;
                    }
                    tokio_tungstenite::WebSocketStream::close(&mut ws, None).await?;
                }
                Link::Polling(mut polling) => {
                    // The last POST goes after the one in flight; the GET is dropped
                    // only then, so the server reads the close before the abort.
                    if let Some(post) = polling.post.take() {
                        let _ = post.await;
                    }
                    if let (Some(sid), false) = (sid, frames.is_empty()) {
                        let _ =
                            transport::post(&endpoint, &sid, &t, frames_to_payload(&frames)).await;
                    }
                }
                Link::Opening(_) | Link::None => {}
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

/// The next thing to happen on the transport: a WebSocket message, or a polling
/// request or probe completing. `reading`: whether to read from the server at all
/// (not while events wait for room); POSTs and probes complete regardless.
async fn next_on_link(link: &mut Link, reading: bool) -> Wake {
    match link {
        Link::Opening(opening) => Wake::Opened(opening.await),
        Link::WebSocket(ws) if reading => Wake::WebSocket(ws.next().await),
        Link::Polling(polling) => {
            tokio::select! {
                result = transport::maybe(&mut polling.get), if reading && polling.get.is_some() => Wake::Get(result),
                result = transport::maybe(&mut polling.post), if polling.post.is_some() => Wake::Post(result),
                result = transport::maybe(&mut polling.probe), if polling.probe.is_some() => Wake::Probe(result),
                else => std::future::pending().await,
            }
        }
        Link::WebSocket(_) | Link::None => std::future::pending().await,
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

/// Takes frames from the front of `outbox` for one POST: all of them, or as many
/// as fit in the server's `maxPayload` (at least one).
fn take_payload(outbox: &mut VecDeque<Frame>, max_payload: Option<u64>) -> String {
    let limit = max_payload
        .and_then(|m| usize::try_from(m).ok())
        .unwrap_or(usize::MAX);
    let mut taken = Vec::new();
    let mut size = 0usize;
    while let Some(frame) = outbox.front() {
        // Binary frames grow by a third as base64, plus the separator and prefix.
        let cost = match frame {
            Frame::Text(t) => t.len() + 1,
            Frame::Binary(b) => b.len().div_ceil(3) * 4 + 2,
        };
        if !taken.is_empty() && size + cost > limit {
            break;
        }
        size += cost;
        taken.extend(outbox.pop_front());
    }
    frames_to_payload(&taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_respect_max_payload() {
        let mut outbox: VecDeque<Frame> = ["40", "42[\"a\"]", "42[\"b\"]"]
            .into_iter()
            .map(|s| Frame::Text(s.to_owned()))
            .collect();
        assert_eq!(take_payload(&mut outbox, Some(11)), "40\x1e42[\"a\"]");
        assert_eq!(take_payload(&mut outbox, Some(1)), "42[\"b\"]");
        assert!(outbox.is_empty());
        outbox.push_back(Frame::Binary(vec![1, 2, 3, 4]));
        outbox.push_back(Frame::Text("4x".to_owned()));
        assert_eq!(take_payload(&mut outbox, None), "bAQIDBA==\x1e4x");
    }
}
