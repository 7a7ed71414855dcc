//! The `use_socket` hook: owns the page's connection to the server.
//!
//! The hook's effect starts a local task, the driver, that moves data between a
//! transport — a gloo-net WebSocket, or HTTP long-polling ([`polling`]) — and a
//! [`Connection`] (the protocol session plus the page's reactions): frames from
//! the server, commands from the page, and a timer for the session's next
//! deadline go in; frames to send, page [`Action`]s and transport requests come
//! out. The page holds a [`SocketHandle`] to send commands.
//!
//! Which transport: a WebSocket first; if it fails before the server's open
//! packet, the same attempt goes on over long-polling, which then probes the
//! upgrade to WebSocket as the official client does (see [`crate::transport`]
//! for what the page remembers). Long-polling keeps one GET waiting and one POST
//! at a time carrying every frame queued meanwhile; once a probe is answered
//! (`3probe`) no new request starts, and when none is in flight the session's
//! `5` goes out on the WebSocket, followed by the frames that waited: nothing is
//! reordered.
//!
//! One run of [`drive`] is one session, which may span many transports: when the
//! session loses its transport it says so ([`TransportRequest::Close`]), waits
//! out its backoff, then asks for a new one ([`TransportRequest::Open`]), and the
//! driver opens it and keeps feeding the same session — pending acks, buffered
//! emits and the recovery offset survive. The driver returns when the session
//! ends: "Disconnect", a refusal, or the component going away. "Reconnect" bumps
//! the effect's generation and starts a new session. The browser's `online`
//! event cuts a pending backoff short ([`Command::RetryNow`]).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either, LocalBoxFuture};
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use gloo_timers::future::TimeoutFuture;
use protocol::engineio::{frames_to_payload, payload_to_frames};
use protocol::{Frame, Time};
use yew::prelude::*;

use crate::browser;
use crate::connection::{self, Command, Connection, TransportRequest};
use crate::polling::{self, Request};
use crate::state::Action;
use crate::transport::{PathMemory, Transport};
use crate::url::Endpoint;

/// Commands waiting for the driver. The driver takes each one as soon as the
/// event loop lets it run, so this only fills if the page outruns the browser; a
/// command that does not fit is refused and the user is told ([`Action::EmitRefused`]).
const COMMAND_QUEUE: usize = 32;

/// The page's side of the connection: sends commands to the running driver.
#[derive(Clone)]
pub struct SocketHandle {
    /// The current driver's queue; `None` while no session runs.
    commands: Rc<RefCell<Option<mpsc::Sender<Command>>>>,
    dispatch: Callback<Action>,
    reconnect: Callback<()>,
}

impl PartialEq for SocketHandle {
    fn eq(&self, other: &Self) -> bool {
        // Same hook instance; the callbacks only ever do the same thing.
        Rc::ptr_eq(&self.commands, &other.commands)
    }
}

impl SocketHandle {
    /// Hands `command` to the driver. If it cannot take it (no session, or the
    /// queue is full) the page is told why, next to the form that asked, and
    /// `false` is returned.
    pub fn send(&self, command: Command) -> bool {
        let refused: Box<dyn FnOnce(String) -> Action> = match &command {
            Command::Emit { event, .. } => {
                let event = event.clone();
                Box::new(move |reason| Action::EmitRefused { event, reason })
            }
            Command::Publish(_) => Box::new(|reason| Action::EmitRefused {
                event: "publish".to_owned(),
                reason,
            }),
            Command::Join(channel) | Command::Leave(channel) => {
                let verb = if matches!(command, Command::Join(_)) {
                    "join"
                } else {
                    "leave"
                };
                let channel = channel.clone();
                Box::new(move |reason| Action::ChannelError {
                    message: format!("could not {verb} {channel:?}: {reason}"),
                })
            }
            Command::RetryNow | Command::Disconnect => {
                return send_to(&self.commands, command).is_ok();
            }
        };
        match send_to(&self.commands, command) {
            Ok(()) => true,
            Err(reason) => {
                self.dispatch.emit(refused(reason));
                false
            }
        }
    }

    /// Drops the current session (if any) and starts a new one.
    pub fn reconnect(&self) {
        self.reconnect.emit(());
    }
}

fn send_to(
    commands: &RefCell<Option<mpsc::Sender<Command>>>,
    command: Command,
) -> Result<(), String> {
    let mut commands = commands.borrow_mut();
    let sender = commands.as_mut().ok_or("not connected")?;
    sender.try_send(command).map_err(|err| {
        if err.is_full() {
            "too many commands waiting for the connection".to_owned()
        } else {
            "the connection is closed (press Reconnect)".to_owned()
        }
    })
}

/// Connects the page to its server and keeps the connection while the component
/// is mounted: state changes are dispatched to `dispatch`. `channels` are the
/// page's news channels, joined again by a session started with "Reconnect".
#[hook]
pub fn use_socket(dispatch: Callback<Action>, channels: &[String]) -> SocketHandle {
    // Bumped by "Reconnect": the effect below tears down and starts over.
    let generation = use_state(|| 0_u32);
    let commands = use_mut_ref(|| None::<mpsc::Sender<Command>>);
    // What the page learnt about the way to its server, for the page's life.
    let memory = use_memo((), |()| Cell::new(PathMemory::default()));

    {
        let commands = commands.clone();
        let dispatch = dispatch.clone();
        // Read when the effect runs, i.e. for a new session only.
        let channels = channels.to_vec();
        let memory = memory.clone();
        use_effect_with(*generation, move |_| {
            // Set synchronously on teardown so a stopping driver can never report
            // into the page after its successor started.
            let stopped = Rc::new(Cell::new(false));
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            match browser::endpoint() {
                Err(err) => dispatch.emit(Action::InvalidServer {
                    message: err.to_string(),
                }),
                Ok(endpoint) => {
                    let (tx, rx) = mpsc::channel(COMMAND_QUEUE);
                    *commands.borrow_mut() = Some(tx);
                    let report = {
                        let stopped = stopped.clone();
                        move |action| {
                            if !stopped.get() {
                                dispatch.emit(action);
                            }
                        }
                    };
                    let config = connection::page_config(
                        browser::token().as_deref(),
                        browser::random_seed(),
                    );
                    let conn = Connection::new(config, channels);
                    wasm_bindgen_futures::spawn_local(drive(
                        endpoint, conn, memory, rx, stop_rx, report,
                    ));
                }
            }
            move || {
                stopped.set(true);
                let _ = stop_tx.send(());
                commands.borrow_mut().take();
            }
        });
    }

    // The browser's idea of the network, for the status; and when it comes back,
    // a reconnection waiting out its backoff goes at once.
    {
        let commands = commands.clone();
        let dispatch = dispatch.clone();
        use_effect_with((), move |()| {
            if !browser::is_online() {
                dispatch.emit(Action::Network { online: false });
            }
            let offline = {
                let dispatch = dispatch.clone();
                browser::on_window("offline", move || {
                    dispatch.emit(Action::Network { online: false });
                })
            };
            let online = browser::on_window("online", move || {
                dispatch.emit(Action::Network { online: true });
                let _ = send_to(&commands, Command::RetryNow);
            });
            move || drop((offline, online))
        });
    }

    let reconnect = {
        let generation = generation.clone();
        Callback::from(move |()| generation.set(generation.wrapping_add(1)))
    };
    SocketHandle {
        commands,
        dispatch,
        reconnect,
    }
}

/// One WebSocket, split so that reading and writing can wait independently.
type Ws = (SplitSink<WebSocket, Message>, SplitStream<WebSocket>);

/// An upgrade probe: the WebSocket with the server's first frame on it, or why
/// there is none.
type ProbeResult = Result<(Ws, Frame), String>;

/// What carries the session's frames.
enum Link {
    /// Nothing: between transports (waiting out a backoff), or the session is over.
    None,
    WebSocket(Ws),
    Polling(Polling),
}

/// Long-polling: the requests in flight and the upgrade in progress.
#[derive(Default)]
struct Polling {
    get: Option<Request<Result<String, String>>>,
    post: Option<Request<Result<String, String>>>,
    /// A probe WebSocket waiting for the server's answer.
    probe: Option<LocalBoxFuture<'static, ProbeResult>>,
    /// The probe succeeded: no new request starts, and once none is in flight
    /// this frame (`5`) goes out on this WebSocket, which then carries everything.
    upgrading: Option<(Ws, Frame)>,
    /// A probe was started on this transport (one try, as the official client).
    probed: bool,
}

/// Something the driver woke up for.
enum Wake {
    WebSocket(Option<Result<Message, WebSocketError>>),
    Get(Result<String, String>),
    Post(Result<String, String>),
    Probe(ProbeResult),
    Command(Option<Command>),
    Stop,
    Timer,
}

/// How long a new transport may take to bring the server's open packet, as
/// Socket.IO's `timeout` option (the session has no deadline before it).
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an upgrade probe may take before polling carries on without it.
const PROBE_TIMEOUT_MS: u32 = 10_000;

/// How long the goodbye (the last POST of a closing polling session) may take.
const GOODBYE_TIMEOUT_MS: u32 = 3_000;

/// Most frames waiting for the next POST. While more wait, the driver reads
/// neither commands (the page's queue fills and refuses, [`COMMAND_QUEUE`]) nor
/// GETs (the server keeps its packets, within its own bound), so a slow POST
/// cannot make the page hoard frames.
const POLLING_OUTBOX: usize = 256;

/// One session: runs `conn` over as many transports to `endpoint` as
/// reconnection asks for, until the session ends (`stop` firing or the command
/// queue being dropped both say goodbye to the server first). `memory` is what
/// the page learnt about the way to its server; it outlives the session.
async fn drive(
    endpoint: Endpoint,
    conn: Connection,
    memory: Rc<Cell<PathMemory>>,
    mut commands: mpsc::Receiver<Command>,
    mut stop: oneshot::Receiver<()>,
    report: impl Fn(Action),
) {
    let mut driver = Driver {
        endpoint,
        conn,
        memory,
        link: Link::None,
        outbox: VecDeque::new(),
        fell_back: None,
        opening_deadline: None,
        cache_seed: browser::random_seed(),
        requests: 0,
        report,
    };
    driver.open(driver.memory.get().first(), None, true);

    loop {
        // One step at a time, transport changes first: frames queued after a
        // reconnect must go to the new transport, never the old one.
        if let Some(request) = driver.conn.poll_transport() {
            driver.drop_link();
            if request == TransportRequest::Open {
                driver.open(driver.memory.get().first(), None, false);
            }
            continue;
        }
        if let Some(frame) = driver.conn.poll_transmit() {
            driver.transmit(frame).await;
            continue;
        }
        while let Some(action) = driver.conn.poll_action() {
            (driver.report)(action);
        }
        driver.settle();
        if driver.conn.is_closed() {
            break;
        }
        driver.finish_upgrade().await;
        driver.start_requests();

        // Backpressure while polling: see `POLLING_OUTBOX`.
        let reading = driver.outbox.len() < POLLING_OUTBOX;
        let timer = match driver.next_deadline() {
            Some(at) => Either::Left(TimeoutFuture::new(ceil_millis(
                at.saturating_sub(browser::now()),
            ))),
            None => Either::Right(future::pending()),
        };
        let command = if reading {
            Either::Left(commands.next())
        } else {
            Either::Right(future::pending())
        };
        // Biased (in this order) rather than random: deterministic, and no random
        // number generator in the bundle.
        let wake = futures::select_biased! {
            wake = next_on_link(&mut driver.link, reading).fuse() => wake,
            command = command.fuse() => Wake::Command(command),
            _ = stop => Wake::Stop,
            () = timer.fuse() => Wake::Timer,
        };
        driver.handle(wake);
    }

    driver.goodbye().await;
}

/// The driver's state for one session.
struct Driver<R> {
    endpoint: Endpoint,
    conn: Connection,
    memory: Rc<Cell<PathMemory>>,
    link: Link,
    /// Frames waiting for the next POST (polling only; a WebSocket takes them at once).
    outbox: VecDeque<Frame>,
    /// Why this attempt's WebSocket failed, while the attempt goes on over polling.
    fell_back: Option<String>,
    /// When the transport being opened must have brought the open packet.
    opening_deadline: Option<Time>,
    /// Cache busters (`t=`): a per-session prefix and a counter.
    cache_seed: u64,
    requests: u64,
    report: R,
}

impl<R: Fn(Action)> Driver<R> {
    /// Opens a transport of `kind` for a new Engine.IO session; `fallback` is why
    /// this attempt's WebSocket failed. `first`: the session's first transport.
    fn open(&mut self, kind: Transport, fallback: Option<String>, first: bool) {
        self.drop_link();
        self.opening_deadline = Some(browser::now() + OPEN_TIMEOUT);
        let url = match kind {
            Transport::WebSocket => self.endpoint.websocket_url(None),
            Transport::Polling => {
                let t = cache_buster(self.cache_seed, &mut self.requests);
                self.endpoint.polling_url(None, &t)
            }
        };
        if first {
            (self.report)(Action::Connecting { url: url.clone() });
        }
        (self.report)(Action::Opening {
            transport: kind,
            url: url.clone(),
            fallback: fallback.clone(),
        });
        self.fell_back = fallback;
        match kind {
            Transport::WebSocket => match WebSocket::open(&url) {
                Ok(ws) => self.link = Link::WebSocket(ws.split()),
                // A page policy may forbid WebSockets and not fetch: polling may work.
                Err(err) => self.websocket_failed(format!("cannot open a WebSocket: {err}")),
            },
            Transport::Polling => {
                self.link = Link::Polling(Polling {
                    get: Some(polling::get(&url)),
                    ..Polling::default()
                });
            }
        }
    }

    /// Drops the transport (and whatever it had in flight: requests are aborted,
    /// a WebSocket is closed) with the frames it did not send.
    fn drop_link(&mut self) {
        close(std::mem::replace(&mut self.link, Link::None));
        self.outbox.clear();
        self.opening_deadline = None;
    }

    fn sid(&self) -> Option<String> {
        self.conn.handshake().map(|open| open.sid.clone())
    }

    /// Hands a frame of the session to the transport.
    async fn transmit(&mut self, frame: Frame) {
        match &mut self.link {
            Link::WebSocket((sink, _)) => {
                // The session only makes frames once a transport's open packet
                // arrived, so the socket is open and `send` does not wait.
                if let Err(err) = sink.send(to_message(frame)).await {
                    self.conn.transport_closed(describe(&err), browser::now());
                }
            }
            Link::Polling(_) => self.outbox.push_back(frame),
            // No transport: the session has already given the frame up.
            Link::None => {}
        }
    }

    /// Once the transport being opened brought the open packet: no more opening
    /// deadline, and a polling handshake after a failed WebSocket teaches the page
    /// that WebSockets are blocked on the way.
    fn settle(&mut self) {
        if self.opening_deadline.is_none() || self.conn.handshake().is_none() {
            return;
        }
        self.opening_deadline = None;
        if matches!(self.link, Link::Polling(_)) {
            let mut memory = self.memory.get();
            memory.polling_opened(self.fell_back.is_some());
            self.memory.set(memory);
        }
        self.fell_back = None;
    }

    fn next_deadline(&self) -> Option<Time> {
        [self.conn.poll_timeout(), self.opening_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    /// While polling with the handshake done: a POST for what waits (one at a
    /// time), a GET always waiting, and the upgrade probe when the server offers one.
    fn start_requests(&mut self) {
        let Some(sid) = self.sid() else {
            return;
        };
        let may_probe = self.conn.can_upgrade() && self.memory.get().may_probe();
        let max_payload = self.conn.handshake().map_or(u64::MAX, |o| o.max_payload);
        let Link::Polling(polling) = &mut self.link else {
            return;
        };
        if polling.upgrading.is_some() {
            return;
        }
        if polling.post.is_none() && !self.outbox.is_empty() {
            let payload = polling::take_payload(&mut self.outbox, max_payload);
            let t = cache_buster(self.cache_seed, &mut self.requests);
            polling.post = Some(polling::post(
                &self.endpoint.polling_url(Some(&sid), &t),
                payload,
            ));
        }
        if polling.get.is_none() && self.outbox.len() < POLLING_OUTBOX {
            let t = cache_buster(self.cache_seed, &mut self.requests);
            polling.get = Some(polling::get(&self.endpoint.polling_url(Some(&sid), &t)));
        }
        if may_probe && !polling.probed {
            polling.probed = true;
            polling.probe = Some(probe(
                self.endpoint.websocket_url(Some(&sid)),
                self.conn.probe_request(),
            ));
        }
    }

    /// Upgrade, last step: once the probe succeeded and no polling request is in
    /// flight, sends `5` on the probe's WebSocket, which carries the session from
    /// then on, starting with the frames that waited meanwhile.
    async fn finish_upgrade(&mut self) {
        let Link::Polling(polling) = &mut self.link else {
            return;
        };
        if polling.get.is_some() || polling.post.is_some() {
            return;
        }
        let Some(((mut sink, stream), upgrade)) = polling.upgrading.take() else {
            return;
        };
        if let Err(err) = sink.send(to_message(upgrade)).await {
            // The server never saw the `5`: the session carries on polling.
            self.probe_failed(describe(&err));
            return;
        }
        self.link = Link::WebSocket((sink, stream));
        let mut memory = self.memory.get();
        memory.upgraded();
        self.memory.set(memory);
        (self.report)(Action::Upgraded);
        for frame in std::mem::take(&mut self.outbox) {
            self.transmit(frame).await;
        }
    }

    fn probe_failed(&mut self, reason: String) {
        let mut memory = self.memory.get();
        memory.probe_failed();
        self.memory.set(memory);
        (self.report)(Action::ProbeFailed { reason });
    }

    /// This attempt's WebSocket failed. Before the open packet, the attempt goes
    /// on over long-polling; after it, the transport is lost.
    fn websocket_failed(&mut self, why: String) {
        if self.conn.handshake().is_none() {
            self.open(Transport::Polling, Some(why), false);
        } else {
            self.conn.transport_closed(why, browser::now());
        }
    }

    /// A polling request failed: the transport is lost. After a failed WebSocket
    /// the reason names both failures.
    fn polling_failed(&mut self, why: String) {
        let why = match self.fell_back.take() {
            Some(websocket) => format!("{websocket}; then {why}"),
            None => why,
        };
        self.conn.transport_closed(why, browser::now());
    }

    fn handle(&mut self, wake: Wake) {
        let now = browser::now();
        match wake {
            Wake::WebSocket(Some(Ok(message))) => self.conn.handle_frame(to_frame(message), now),
            Wake::WebSocket(Some(Err(err))) => self.websocket_failed(describe(&err)),
            Wake::WebSocket(None) => self.websocket_failed("the WebSocket closed".to_owned()),
            Wake::Get(result) => {
                if let Link::Polling(polling) = &mut self.link {
                    polling.get = None;
                }
                match result {
                    Ok(body) => self.on_payload(&body, now),
                    Err(why) => self.polling_failed(why),
                }
            }
            Wake::Post(result) => {
                if let Link::Polling(polling) = &mut self.link {
                    polling.post = None;
                }
                if let Err(why) = result {
                    self.polling_failed(why);
                }
            }
            Wake::Probe(result) => {
                if let Link::Polling(polling) = &mut self.link {
                    polling.probe = None;
                }
                let upgrade = result.and_then(|(ws, answer)| {
                    self.conn
                        .handle_probe_response(answer)
                        .map(|upgrade| (ws, upgrade))
                        .map_err(|err| format!("the probe was not answered with 3probe: {err}"))
                });
                match upgrade {
                    Ok(upgrading) => {
                        if let Link::Polling(polling) = &mut self.link {
                            polling.upgrading = Some(upgrading);
                        }
                    }
                    Err(why) => self.probe_failed(why),
                }
            }
            Wake::Command(Some(command)) => self.conn.handle_command(command, now),
            Wake::Command(None) | Wake::Stop => self.conn.handle_command(Command::Disconnect, now),
            Wake::Timer => {
                if self.opening_deadline.is_some_and(|at| now >= at) {
                    self.opening_deadline = None;
                    let why = format!("no handshake within {} s", OPEN_TIMEOUT.as_secs());
                    if matches!(self.link, Link::WebSocket(_)) {
                        self.websocket_failed(why);
                    } else {
                        self.polling_failed(why);
                    }
                }
                self.conn.handle_timeout(now);
            }
        }
    }

    /// A GET's body: its packets, in order, to the session. An empty body carries
    /// nothing (a server releasing the request).
    fn on_payload(&mut self, body: &str, now: Time) {
        if body.is_empty() {
            return;
        }
        match payload_to_frames(body) {
            Ok(frames) => {
                for frame in frames {
                    self.conn.handle_frame(frame, now);
                }
            }
            Err(err) => self
                .conn
                .transport_closed(format!("invalid long-polling payload: {err}"), now),
        }
    }

    /// The session is closed: its last frames (the goodbye after "Disconnect")
    /// went to a WebSocket already; on polling they go in one last POST, after
    /// the one in flight, within [`GOODBYE_TIMEOUT_MS`]. Then the transport closes.
    async fn goodbye(mut self) {
        let (mut polling, sid) = match (std::mem::replace(&mut self.link, Link::None), self.sid()) {
            (Link::Polling(polling), Some(sid)) => (polling, sid),
            (link, _) => {
                close(link);
                return;
            }
        };
        let payload = frames_to_payload(&self.outbox);
        let t = cache_buster(self.cache_seed, &mut self.requests);
        let url = self.endpoint.polling_url(Some(&sid), &t);
        let in_flight = polling.post.take();
        let last_post = async move {
            if let Some(post) = in_flight {
                let _ = post.await;
            }
            if !payload.is_empty() {
                let _ = polling::post(&url, payload).await;
            }
        };
        futures::select_biased! {
            () = last_post.fuse() => {}
            () = TimeoutFuture::new(GOODBYE_TIMEOUT_MS).fuse() => {}
        }
        // Only now is the GET aborted: the server reads the close packet first.
        drop(polling);
    }
}

/// A fresh `t=` for a polling request: the session's seed and a request counter,
/// so that no cache along the way can answer with an old response.
fn cache_buster(seed: u64, requests: &mut u64) -> String {
    *requests += 1;
    format!("{:x}.{requests}", seed & 0xffff_ffff)
}

/// The next thing to happen on the transport: a WebSocket message, or a polling
/// request or probe completing. `reading`: whether to take what the server sends
/// (not while too many frames wait for a POST); POSTs and probes complete regardless.
async fn next_on_link(link: &mut Link, reading: bool) -> Wake {
    match link {
        Link::WebSocket((_, stream)) if reading => Wake::WebSocket(stream.next().await),
        Link::Polling(polling) => {
            future::poll_fn(|cx| {
                if let (true, Some(get)) = (reading, &mut polling.get) {
                    if let Poll::Ready(result) = get.poll_unpin(cx) {
                        return Poll::Ready(Wake::Get(result));
                    }
                }
                if let Some(post) = &mut polling.post {
                    if let Poll::Ready(result) = post.poll_unpin(cx) {
                        return Poll::Ready(Wake::Post(result));
                    }
                }
                if let Some(probe) = &mut polling.probe {
                    if let Poll::Ready(result) = probe.poll_unpin(cx) {
                        return Poll::Ready(Wake::Probe(result));
                    }
                }
                Poll::Pending
            })
            .await
        }
        Link::WebSocket(_) | Link::None => future::pending().await,
    }
}

/// Upgrade, first half: opens a WebSocket for the session at `url`, sends
/// `request` (the session's `2probe`) and returns the socket with the server's
/// first frame, for the session to judge. Dropping it closes the socket.
fn probe(url: String, request: Frame) -> LocalBoxFuture<'static, ProbeResult> {
    let attempt = async move {
        let (mut sink, mut stream) = WebSocket::open(&url)
            .map_err(|err| format!("cannot open a WebSocket: {err}"))?
            .split();
        // `send` waits for the socket to open (or fail).
        sink.send(to_message(request))
            .await
            .map_err(|err| describe(&err))?;
        match stream.next().await {
            Some(Ok(answer)) => Ok(((sink, stream), to_frame(answer))),
            Some(Err(err)) => Err(describe(&err)),
            None => Err("the WebSocket closed before answering the probe".to_owned()),
        }
    };
    async move {
        futures::select_biased! {
            result = attempt.fuse() => result,
            () = TimeoutFuture::new(PROBE_TIMEOUT_MS).fuse() => {
                Err(format!("no answer to the probe within {} s", PROBE_TIMEOUT_MS / 1000))
            }
        }
    }
    .boxed_local()
}

/// Closes a transport now: a WebSocket with 1000 (normal closure) rather than
/// whenever its halves are dropped, polling requests aborted; nothing more is
/// read from it.
fn close(link: Link) {
    match link {
        Link::WebSocket(ws) => close_websocket(ws),
        Link::Polling(polling) => {
            if let Some((ws, _)) = polling.upgrading {
                close_websocket(ws);
            }
        }
        Link::None => {}
    }
}

fn close_websocket((sink, stream): Ws) {
    if let Ok(ws) = sink.reunite(stream) {
        let _ = ws.close(Some(1000), None);
    }
}

/// Why a WebSocket failed, for the status line.
fn describe(err: &WebSocketError) -> String {
    match err {
        WebSocketError::ConnectionError => "the WebSocket connection failed".to_owned(),
        WebSocketError::ConnectionClose(close) if close.reason.is_empty() => {
            format!("the WebSocket closed with code {}", close.code)
        }
        WebSocketError::ConnectionClose(close) => format!(
            "the WebSocket closed with code {}: {}",
            close.code, close.reason
        ),
        WebSocketError::MessageSendError(err) => format!("cannot send on the WebSocket: {err}"),
        other => other.to_string(),
    }
}

fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::Text(text),
        Frame::Binary(bytes) => Message::Bytes(bytes),
    }
}

fn to_frame(message: Message) -> Frame {
    match message {
        Message::Text(text) => Frame::Text(text),
        Message::Bytes(bytes) => Frame::Binary(bytes),
    }
}

/// Whole milliseconds, rounded up so the timer never fires before the deadline,
/// and at most `setTimeout`'s limit (2^31 - 1 ms; beyond it browsers fire at once).
fn ceil_millis(d: Duration) -> u32 {
    const MAX_TIMEOUT_MS: u32 = i32::MAX as u32;
    u32::try_from(crate::state::whole_millis(d, 999))
        .map_or(MAX_TIMEOUT_MS, |ms| ms.min(MAX_TIMEOUT_MS))
}
