//! The `use_socket` hook: owns the page's connection to the server.
//!
//! The hook's effect opens a gloo-net WebSocket and spawns a local task, the
//! driver, that moves data between it and a [`Connection`] (the protocol session
//! plus the page's reactions): frames from the socket, commands from the page, and
//! a timer for the session's next deadline go in; frames to send and page
//! [`Action`]s come out. The page holds a [`SocketHandle`] to send commands.
//!
//! One run of [`drive`] is one session, from opening the WebSocket to its close;
//! it returns when the session ends. Reconnecting is running it again: today the
//! "Reconnect" button bumps the effect's generation, and automatic reconnection
//! can loop around `drive` with a backoff in the same spot.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures::channel::{mpsc, oneshot};
use futures::future::{self, Either};
use futures::{FutureExt, SinkExt, StreamExt};
use gloo_net::websocket::Message;
use gloo_net::websocket::futures::WebSocket;
use gloo_timers::future::TimeoutFuture;
use protocol::Frame;
use yew::prelude::*;

use crate::browser;
use crate::connection::{Command, Connection};
use crate::state::Action;

/// Commands waiting for the driver. The driver takes each one as soon as the
/// event loop lets it run, so this only fills if the page outruns the browser; a
/// command that does not fit is refused and the user is told ([`Action::EmitRefused`]).
const COMMAND_QUEUE: usize = 32;

/// The page's side of the connection: sends commands to the running driver.
#[derive(Clone)]
pub struct SocketHandle {
    /// The current driver's queue; `None` while no connection runs.
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
    /// Hands `command` to the driver. If it cannot take it (no connection, or the
    /// queue is full) the page is told why and `false` is returned.
    pub fn send(&self, command: Command) -> bool {
        let event = match &command {
            Command::Emit { event, .. } => event.clone(),
            Command::Publish(_) => "publish".to_owned(),
            Command::Disconnect => return self.try_send(command).is_ok(),
        };
        match self.try_send(command) {
            Ok(()) => true,
            Err(reason) => {
                self.dispatch.emit(Action::EmitRefused { event, reason });
                false
            }
        }
    }

    fn try_send(&self, command: Command) -> Result<(), String> {
        let mut commands = self.commands.borrow_mut();
        let sender = commands.as_mut().ok_or("not connected")?;
        sender.try_send(command).map_err(|err| {
            if err.is_full() {
                "too many commands waiting for the connection".to_owned()
            } else {
                "the connection is closed".to_owned()
            }
        })
    }

    /// Drops the current connection (if any) and opens a new one.
    pub fn reconnect(&self) {
        self.reconnect.emit(());
    }
}

/// Connects the page to its server and keeps the connection while the component
/// is mounted: state changes are dispatched to `dispatch`.
#[hook]
pub fn use_socket(dispatch: Callback<Action>) -> SocketHandle {
    // Bumped by "Reconnect": the effect below tears down and starts over.
    let generation = use_state(|| 0_u32);
    let commands = use_mut_ref(|| None::<mpsc::Sender<Command>>);

    {
        let commands = commands.clone();
        let dispatch = dispatch.clone();
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
                    wasm_bindgen_futures::spawn_local(drive(url, rx, stop_rx, report));
                }
            }
            move || {
                stopped.set(true);
                let _ = stop_tx.send(());
                commands.borrow_mut().take();
            }
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

/// One session: opens `url`, runs the connection until it closes (or `stop`
/// fires or the command queue is dropped, which both say goodbye to the server
/// first), then closes the WebSocket.
async fn drive(
    url: String,
    mut commands: mpsc::Receiver<Command>,
    mut stop: oneshot::Receiver<()>,
    report: impl Fn(Action),
) {
    report(Action::Connecting { url: url.clone() });
    let mut conn = Connection::default();
    let ws = match WebSocket::open(&url) {
        Ok(ws) => ws,
        Err(err) => {
            conn.transport_closed(err.to_string(), browser::now());
            while let Some(action) = conn.poll_action() {
                report(action);
            }
            return;
        }
    };
    let (mut sink, mut stream) = ws.split();

    loop {
        while let Some(frame) = conn.poll_transmit() {
            // Frames only exist once the server's open packet arrived, so the socket
            // is open and `send` does not wait.
            if let Err(err) = sink.send(to_message(frame)).await {
                conn.transport_closed(err.to_string(), browser::now());
                while conn.poll_transmit().is_some() {}
            }
        }
        while let Some(action) = conn.poll_action() {
            report(action);
        }
        if conn.is_closed() {
            break;
        }

        let timer = match conn.poll_timeout() {
            Some(at) => Either::Left(TimeoutFuture::new(ceil_millis(
                at.saturating_sub(browser::now()),
            ))),
            None => Either::Right(future::pending()),
        };
        futures::select! {
            message = stream.next().fuse() => match message {
                Some(Ok(message)) => conn.handle_frame(to_frame(message), browser::now()),
                Some(Err(err)) => conn.transport_closed(err.to_string(), browser::now()),
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

    // Close now with 1000 (normal closure) rather than whenever the halves drop.
    if let Ok(ws) = sink.reunite(stream) {
        let _ = ws.close(Some(1000), None);
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
