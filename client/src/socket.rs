//! The `use_socket` hook: owns the page's connection to the server.
//!
//! The hook's effect starts a local task, the driver, that moves data between a
//! transport — a gloo-net WebSocket, or HTTP long-polling ([`polling`]) — and a
//! [`Connection`] (the protocol session plus the page's reactions): frames from
//! the server, commands from the page, and a timer for the session's next
//! deadline go in; frames to send, page [`Action`]s and transport requests come
//! out. The page holds a [`SocketHandle`] to send commands.
//!
//! Which transport, and every rule of it, is the protocol's [`ClientTransport`]
//! (shared with the native client): a WebSocket first; if it fails before the
//! server's open packet, the same attempt goes on over long-polling, which then
//! probes the upgrade to WebSocket as the official client does, and the page
//! remembers what it learnt ([`PathMemory`]); one GET waiting and one POST at a
//! time; the probe's pause and the `5`; nothing reordered; no transport waits
//! more than [`OPEN_TIMEOUT`] for its open packet. The driver starts the
//! WebSockets and `fetch`es the machine asks for ([`Step`]), keeps them in
//! [`Io`], and feeds their results back.
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
use protocol::session::client_transport::{Failure, Step, TransportConfig, Transports};
use protocol::session::{ClientTransport, PathMemory};
use protocol::{Frame, Time};
use yew::prelude::*;

use crate::browser;
use crate::connection::{self, Command, Connection, TransportRequest};
use crate::polling::{self, Request};
use crate::state::Action;

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

/// The requests and sockets the transport machine asked for, in flight. Dropping
/// a request aborts it.
#[derive(Default)]
struct Io {
    /// The WebSocket carrying the session (or being opened).
    ws: Option<Ws>,
    get: Option<Request<Result<String, String>>>,
    post: Option<Request<Result<String, String>>>,
    /// A probe WebSocket waiting for the server's answer.
    probe: Option<LocalBoxFuture<'static, ProbeResult>>,
    /// The probe's socket once answered, until the upgrade completes or fails.
    probe_ws: Option<Ws>,
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
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

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
    let config = TransportConfig {
        transports: Transports::WebSocketOrPolling,
        open_timeout: OPEN_TIMEOUT,
        probe_timeout: PROBE_TIMEOUT,
        max_queued: Some(POLLING_OUTBOX),
        seed: browser::random_seed() & 0xffff_ffff,
    };
    let mut driver = Driver {
        endpoint,
        conn,
        transport: ClientTransport::new(config, memory.get()),
        memory,
        io: Io::default(),
        connecting: true,
        report,
    };
    driver.transport.open(browser::now());

    loop {
        // Transport changes first, carried out at once: frames queued after a
        // reconnect must go to the new transport, never the old one, and the
        // page hears of the new transport before what the session says next.
        if let Some(request) = driver.conn.poll_transport() {
            match request {
                TransportRequest::Close => driver.transport.close(),
                TransportRequest::Open => driver.transport.open(browser::now()),
            }
            driver.run_steps().await;
            continue;
        }
        while let Some(frame) = driver.conn.poll_transmit() {
            driver.transport.send(frame);
        }
        while let Some(action) = driver.conn.poll_action() {
            (driver.report)(action);
        }
        if let Some(open) = driver.conn.handshake() {
            driver.transport.opened(open);
        }
        driver.memory.set(driver.transport.memory());
        if driver.conn.is_closed() {
            if driver.transport.transport() == Some(protocol::session::Transport::WebSocket) {
                // Its last frames (the goodbye after "Disconnect") go now.
                driver.run_steps().await;
            }
            break;
        }
        if driver.run_steps().await {
            continue;
        }

        // Backpressure while polling: see `POLLING_OUTBOX`.
        let reading = !driver.transport.is_backlogged();
        let deadline = [driver.conn.poll_timeout(), driver.transport.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let timer = match deadline {
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
            wake = next_on_io(&mut driver.io, reading).fuse() => wake,
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
    /// Which transport, and what to ask of the network next.
    transport: ClientTransport,
    memory: Rc<Cell<PathMemory>>,
    io: Io,
    /// The session's first transport is still to be reported.
    connecting: bool,
    report: R,
}

impl<R: Fn(Action)> Driver<R> {
    /// Carries out what the transport machine asks, in order. Returns whether the
    /// connection was told its transport is lost.
    async fn run_steps(&mut self) -> bool {
        loop {
            let now = browser::now();
            let Some(step) = self.transport.poll_step(now) else {
                return false;
            };
            // One place awaits: a frame on the WebSocket (or `5` on the probe's).
            let (frame, upgrade) = match step {
                Step::Send(frame) => (frame, false),
                Step::Upgrade(frame) => {
                    // The probe's socket carries the session if `5` goes through.
                    self.io.ws = self.io.probe_ws.take();
                    (frame, true)
                }
                step => {
                    if self.step(step, now) {
                        return true;
                    }
                    continue;
                }
            };
            // The session only makes frames once a transport's open packet
            // arrived, so the socket is open and `send` does not wait.
            let sent = match &mut self.io.ws {
                Some((sink, _)) => send(sink, frame).await,
                None if upgrade => Err("the probe's WebSocket is gone".to_owned()),
                // No socket (yet): the frame is given up, as the session gave it up.
                None => Ok(()),
            };
            if upgrade {
                if sent.is_err() {
                    self.io.ws = None;
                }
                self.transport.upgrade_sent(sent);
            } else if let Err(why) = sent {
                self.transport.websocket_failed(why, now);
            }
        }
    }

    /// Carries out a step that does not wait. Returns whether the connection
    /// was told its transport is lost.
    fn step(&mut self, step: Step, now: Time) -> bool {
        match step {
            Step::Open {
                transport,
                t,
                fallback,
            } => {
                let url = match &t {
                    None => self.endpoint.websocket_url(None),
                    Some(t) => self.endpoint.polling_url(None, t),
                };
                if std::mem::take(&mut self.connecting) {
                    (self.report)(Action::Connecting { url: url.clone() });
                }
                (self.report)(Action::Opening {
                    transport,
                    url: url.clone(),
                    fallback,
                });
                if t.is_some() {
                    self.io.get = Some(polling::get(&url));
                } else {
                    match WebSocket::open(&url) {
                        Ok(ws) => self.io.ws = Some(ws.split()),
                        // A page policy may forbid WebSockets and not fetch:
                        // polling may work.
                        Err(err) => self
                            .transport
                            .websocket_failed(format!("cannot open a WebSocket: {err}"), now),
                    }
                }
            }
            Step::Get { sid, t } => {
                self.io.get = Some(polling::get(&self.endpoint.polling_url(Some(&sid), &t)));
            }
            Step::Post { sid, t, payload } => {
                let url = self.endpoint.polling_url(Some(&sid), &t);
                self.io.post = Some(polling::post(&url, payload));
            }
            Step::Probe { sid, request } => {
                self.io.probe = Some(probe(self.endpoint.websocket_url(Some(&sid)), request));
            }
            Step::Upgraded => {
                // Polling's requests are over (none was in flight).
                self.io.get = None;
                self.io.post = None;
                (self.report)(Action::Upgraded);
            }
            Step::ProbeFailed(reason) => {
                self.io.probe = None;
                self.io.probe_ws = None;
                (self.report)(Action::ProbeFailed { reason });
            }
            Step::Close => close(std::mem::take(&mut self.io)),
            Step::Lost(failure) => {
                let why = match failure {
                    Failure::Transport(why) => why,
                    Failure::Payload(err) => format!("invalid long-polling payload: {err}"),
                };
                self.conn.transport_closed(why, now);
                return true;
            }
            // Awaited by `run_steps`.
            Step::Send(_) | Step::Upgrade(_) => {}
        }
        false
    }

    fn handle(&mut self, wake: Wake) {
        let now = browser::now();
        match wake {
            Wake::WebSocket(Some(Ok(message))) => self.conn.handle_frame(to_frame(message), now),
            Wake::WebSocket(Some(Err(err))) => self.transport.websocket_failed(describe(&err), now),
            Wake::WebSocket(None) => self
                .transport
                .websocket_failed("the WebSocket closed".to_owned(), now),
            Wake::Get(result) => {
                self.io.get = None;
                for frame in self
                    .transport
                    .get_done(result.as_deref().map_err(Clone::clone))
                {
                    self.conn.handle_frame(frame, now);
                }
            }
            Wake::Post(result) => {
                self.io.post = None;
                self.transport.post_done(result.map(drop));
            }
            Wake::Probe(result) => {
                self.io.probe = None;
                let answer = result.map(|(ws, answer)| {
                    self.io.probe_ws = Some(ws);
                    answer
                });
                self.transport.probe_done(answer);
            }
            Wake::Command(Some(command)) => self.conn.handle_command(command, now),
            Wake::Command(None) | Wake::Stop => self.conn.handle_command(Command::Disconnect, now),
            Wake::Timer => {
                self.transport.handle_timeout(now);
                self.conn.handle_timeout(now);
            }
        }
    }

    /// The session is closed: its last frames (the goodbye after "Disconnect")
    /// went to a WebSocket already; on polling they go in one last POST, after
    /// the one in flight, within [`GOODBYE_TIMEOUT_MS`]. Then the transport closes.
    async fn goodbye(mut self) {
        let last = self.transport.goodbye();
        let mut io = std::mem::take(&mut self.io);
        let in_flight = io.post.take();
        let last_post = async move {
            if let Some(post) = in_flight {
                let _ = post.await;
            }
            if let Some(Step::Post { sid, t, payload }) = last {
                let _ = polling::post(&self.endpoint.polling_url(Some(&sid), &t), payload).await;
            }
        };
        futures::select_biased! {
            () = last_post.fuse() => {}
            () = TimeoutFuture::new(GOODBYE_TIMEOUT_MS).fuse() => {}
        }
        // Only now is the GET aborted: the server reads the close packet first.
        close(io);
    }
}

/// The next thing to happen on the transport: a WebSocket message, or a polling
/// request or probe completing. `reading`: whether to take what the server sends
/// (not while too many frames wait for a POST); POSTs and probes complete regardless.
async fn next_on_io(io: &mut Io, reading: bool) -> Wake {
    future::poll_fn(|cx| {
        if let (true, Some((_, stream))) = (reading, &mut io.ws)
            && let Poll::Ready(message) = stream.poll_next_unpin(cx)
        {
            return Poll::Ready(Wake::WebSocket(message));
        }
        if let (true, Some(get)) = (reading, &mut io.get)
            && let Poll::Ready(result) = get.poll_unpin(cx)
        {
            return Poll::Ready(Wake::Get(result));
        }
        if let Some(post) = &mut io.post
            && let Poll::Ready(result) = post.poll_unpin(cx)
        {
            return Poll::Ready(Wake::Post(result));
        }
        if let Some(probe) = &mut io.probe
            && let Poll::Ready(result) = probe.poll_unpin(cx)
        {
            return Poll::Ready(Wake::Probe(result));
        }
        Poll::Pending
    })
    .await
}

/// Upgrade, first half: opens a WebSocket for the session at `url`, sends
/// `request` (the session's `2probe`) and returns the socket with the server's
/// first frame, for the transport machine to judge (it also bounds the wait).
/// Dropping it closes the socket.
fn probe(url: String, request: Frame) -> LocalBoxFuture<'static, ProbeResult> {
    async move {
        let (mut sink, mut stream) = WebSocket::open(&url)
            .map_err(|err| format!("cannot open a WebSocket: {err}"))?
            .split();
        // `send` waits for the socket to open (or fail).
        send(&mut sink, request).await?;
        match stream.next().await {
            Some(Ok(answer)) => Ok(((sink, stream), to_frame(answer))),
            Some(Err(err)) => Err(describe(&err)),
            None => Err("the WebSocket closed before answering the probe".to_owned()),
        }
    }
    .boxed_local()
}

/// Sends a frame on a WebSocket; the error as the status line says it.
async fn send(sink: &mut SplitSink<WebSocket, Message>, frame: Frame) -> Result<(), String> {
    sink.send(to_message(frame))
        .await
        .map_err(|err| describe(&err))
}

/// Closes a transport now: its WebSockets with 1000 (normal closure) rather
/// than whenever their halves are dropped, polling requests aborted; nothing
/// more is read from it.
fn close(io: Io) {
    if let Some(ws) = io.ws {
        close_websocket(ws);
    }
    if let Some(ws) = io.probe_ws {
        close_websocket(ws);
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
