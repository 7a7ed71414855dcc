//! The `use_socket` hook: owns the page's connection to the server.
//!
//! The hook's effect starts a local task, the driver, that moves data between a
//! gloo-net WebSocket and a [`Connection`] (the protocol session plus the page's
//! reactions): frames from the socket, commands from the page, and a timer for
//! the session's next deadline go in; frames to send, page [`Action`]s and
//! transport requests come out. The page holds a [`SocketHandle`] to send
//! commands.
//!
//! One run of [`drive`] is one session, which may span many WebSockets: when the
//! session loses its transport it says so ([`TransportRequest::Close`]), waits
//! out its backoff, then asks for a new one ([`TransportRequest::Open`]), and the
//! driver opens it and keeps feeding the same session — pending acks, buffered
//! emits and the recovery offset survive. The driver returns when the session
//! ends: "Disconnect", a refusal, or the component going away. "Reconnect" bumps
//! the effect's generation and starts a new session. The browser's `online`
//! event cuts a pending backoff short ([`Command::RetryNow`]).

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either};
use futures::stream::{SplitSink, SplitStream};
use futures::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::futures::WebSocket;
use gloo_net::websocket::{Message, WebSocketError};
use gloo_timers::future::TimeoutFuture;
use protocol::Frame;
use yew::prelude::*;

use crate::browser;
use crate::connection::{self, Command, Connection, TransportRequest};
use crate::state::Action;

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

    {
        let commands = commands.clone();
        let dispatch = dispatch.clone();
        // Read when the effect runs, i.e. for a new session only.
        let channels = channels.to_vec();
        use_effect_with(*generation, move |_| {
            // Set synchronously on teardown so a stopping driver can never report
            // into the page after its successor started.
            let stopped = Rc::new(Cell::new(false));
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            match browser::socket_url() {
                Err(err) => dispatch.emit(Action::InvalidServer {
                    message: err.to_string(),
                }),
                Ok(url) => {
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
                    wasm_bindgen_futures::spawn_local(drive(url, conn, rx, stop_rx, report));
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
type Transport = (SplitSink<WebSocket, Message>, SplitStream<WebSocket>);

/// One session: opens `url`, runs `conn` over as many WebSockets to it as
/// reconnection asks for, until the session ends (`stop` firing or the command
/// queue being dropped both say goodbye to the server first).
async fn drive(
    url: String,
    mut conn: Connection,
    mut commands: mpsc::Receiver<Command>,
    mut stop: oneshot::Receiver<()>,
    report: impl Fn(Action),
) {
    report(Action::Connecting { url: url.clone() });
    let mut transport = open(&url, &mut conn);

    loop {
        // One step at a time, transport changes first: frames queued after a
        // reconnect must go to the new WebSocket, never the old one.
        if let Some(request) = conn.poll_transport() {
            close(transport.take());
            if request == TransportRequest::Open {
                transport = open(&url, &mut conn);
            }
            continue;
        }
        if let Some(frame) = conn.poll_transmit() {
            // The session only makes frames once a transport's open packet arrived,
            // so there is one, it is open, and `send` does not wait.
            if let Some((sink, _)) = &mut transport {
                if let Err(err) = sink.send(to_message(frame)).await {
                    conn.transport_closed(describe(&err), browser::now());
                }
            }
            continue;
        }
        while let Some(action) = conn.poll_action() {
            report(action);
        }
        if conn.is_closed() {
            break;
        }

        let incoming = match &mut transport {
            Some((_, stream)) => Either::Left(stream.next()),
            // Between transports: only commands, `stop` and the timer can happen.
            None => Either::Right(future::pending()),
        };
        let timer = match conn.poll_timeout() {
            Some(at) => Either::Left(TimeoutFuture::new(ceil_millis(
                at.saturating_sub(browser::now()),
            ))),
            None => Either::Right(future::pending()),
        };
        futures::select! {
            message = incoming.fuse() => match message {
                Some(Ok(message)) => conn.handle_frame(to_frame(message), browser::now()),
                Some(Err(err)) => conn.transport_closed(describe(&err), browser::now()),
                None => conn.transport_closed("the WebSocket closed".to_owned(), browser::now()),
            },
            command = commands.next() => match command {
                Some(command) => conn.handle_command(command, browser::now()),
                None => conn.handle_command(Command::Disconnect, browser::now()),
            },
            _ = stop => conn.handle_command(Command::Disconnect, browser::now()),
            () = timer.fuse() => conn.handle_timeout(browser::now()),
        }
    }

    close(transport);
}

/// A new WebSocket to `url`. Failing to connect shows up later, on its stream;
/// failing here (a malformed URL, a page policy) cannot be fixed by retrying.
fn open(url: &str, conn: &mut Connection) -> Option<Transport> {
    match WebSocket::open(url) {
        Ok(ws) => Some(ws.split()),
        Err(err) => {
            conn.give_up(
                format!("cannot open a WebSocket to {url}: {err}"),
                browser::now(),
            );
            None
        }
    }
}

/// Closes a transport now with 1000 (normal closure) rather than whenever its
/// halves are dropped; nothing more is read from it.
fn close(transport: Option<Transport>) {
    if let Some((sink, stream)) = transport {
        if let Ok(ws) = sink.reunite(stream) {
            let _ = ws.close(Some(1000), None);
        }
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
    u32::try_from(d.as_micros().div_ceil(1000)).map_or(MAX_TIMEOUT_MS, |ms| ms.min(MAX_TIMEOUT_MS))
}
