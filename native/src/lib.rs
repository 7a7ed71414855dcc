//! A native Socket.IO v5 client on tokio, for tests, tools and services that talk to
//! a Socket.IO server (duplex's or any other) from Rust.
//!
//! Layout:
//! - this file: the API — [`connect`], the [`Client`] handle, [`Emitter`], [`Options`],
//!   [`Error`](enum@Error).
//! - `driver`: the one task per client that owns the protocol crate's
//!   `ClientSession` and the transports, and moves frames, timers and commands.
//! - `transport`: WebSocket (tokio-tungstenite) and HTTP long-polling, and the
//!   probe that upgrades one to the other.
//! - [`http`]: the small HTTP/1.1 client long-polling needs.
//! - `url`: the base URL and the request targets built from it.
//!
//! The protocol itself — Engine.IO and Socket.IO encoding, heartbeat, acks, the
//! upgrade probe — is `protocol::session::ClientSession`'s: this crate never builds
//! a wire string by hand.
//!
//! ```no_run
//! # async fn demo() -> Result<(), duplex_native::Error> {
//! use duplex_native::{Options, connect};
//! use serde_json::json;
//!
//! let mut client = connect("http://127.0.0.1:8124", Options::default()).await?;
//! let news = client.next_event().await; // `news` {"hello":"world"}
//! client.emit("my other event", vec![json!({"my": "data"})]).await?;
//! let ack = client.emit_with_ack("question", vec![json!(1)]).await?;
//! client.disconnect().await;
//! # Ok(()) }
//! ```
//!
//! Queues and their policy: commands go to the task through a bounded channel
//! (an emit waits while it is full); events come back through a bounded channel of
//! [`Options::event_buffer`] and, when it is full, the task stops reading from the
//! server (backpressure: nothing is dropped, TCP pushes back on the server). Only
//! the events of the one message or polling response being read wait beyond that
//! channel. Acks and the server's pings share that read path, so take events
//! while awaiting acks (from another task: [`Client::emitter`]), or give up on
//! events with [`Client::into_emitter`]; a consumer that stalls for longer than
//! the server's heartbeat window (`pingInterval + pingTimeout`) is disconnected by
//! the server, as a slow client. The connection's [`Status`] is a
//! `tokio::sync::watch` (one slot, the latest value wins: it never holds the
//! client back, and an observer that looks late sees the current status, not
//! every step that led to it).
//!
//! Reconnection ([`Options::reconnection`], off by default): when the transport
//! is lost the client waits a [`Backoff`] delay (Socket.IO's exponential backoff
//! with jitter, so clients dropped together do not all come back at once), opens
//! a new transport of the same [`Transports`] mode and carries on with the same
//! session: emits made meanwhile wait in a bounded buffer
//! ([`Options::max_buffered`], then [`Error::BufferFull`]) and go out once the
//! namespace is connected again. Frames handed to a transport that is then lost
//! are not sent again: an emit with ack among them fails with
//! [`Error::AckTimeout`] (the server may or may not have seen it). When the
//! server has connection state recovery on, the client presents its previous
//! session and the server replays the events it missed ([`Status::Connected`]
//! says whether it did); otherwise the session is fresh — a new sid, no rooms.
//!
//! ```no_run
//! # async fn demo() -> Result<(), duplex_native::Error> {
//! use duplex_native::{Backoff, Options, Status, connect};
//! use serde_json::json;
//!
//! let options = Options {
//!     reconnection: Some(Backoff::default()),
//!     ..Options::default()
//! };
//! let client = connect("http://127.0.0.1:8124", options).await?;
//! client.emit("join", vec![json!({"channel": "sports"})]).await?;
//! let mut joined_as = client.sid();
//! let mut status = client.status();
//! while status.changed().await.is_ok() {
//!     // A clone: the watch's borrow must not be held across an await.
//!     let now = status.borrow_and_update().clone();
//!     match now {
//!         // A new sid is a fresh session (even if a later step was a recovery
//!         // of it this observer did not see): join again.
//!         Status::Connected { sid, .. } if sid != joined_as => {
//!             client.emit("join", vec![json!({"channel": "sports"})]).await?;
//!             joined_as = sid;
//!         }
//!         Status::Closed(_) | Status::Refused(_) => break,
//!         _ => {}
//!     }
//! }
//! # Ok(()) }
//! ```

mod driver;
pub mod http;
mod transport;
mod url;

use std::time::Duration;

use protocol::event::{self, Event, EventError};
use protocol::session::{AckId, ClientConfig};
use serde_json::Value;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

pub use protocol::session::{Backoff, CloseReason, Transport};

/// Which transports to use, as the official JS client's `transports` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transports {
    /// Open the session over WebSocket directly.
    WebSocketOnly,
    /// HTTP long-polling only, never upgraded.
    PollingOnly,
    /// The JS client's default: long-polling first, then upgrade to WebSocket
    /// when the server offers it.
    #[default]
    PollingThenUpgrade,
}

/// Connection settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub transports: Transports,
    /// The namespace to join, `/` by default.
    pub namespace: String,
    /// The CONNECT auth payload (`socket.auth` in the JS client).
    pub auth: Option<Value>,
    /// How long [`Client::emit_with_ack`] waits for its ack.
    pub ack_timeout: Duration,
    /// How long [`connect`] waits for the namespace to answer; also how long
    /// each transport (the first, or a reconnection attempt's) may take to bring
    /// the server's handshake before it counts as failed.
    pub connect_timeout: Duration,
    /// The Engine.IO path, `/socket.io/` by default.
    pub path: String,
    /// Events received but not yet taken by [`Client::next_event`]; when full, the
    /// client stops reading from the server until some are taken.
    pub event_buffer: usize,
    /// Reconnect after losing the transport, waiting these delays between
    /// attempts ([`Backoff::default`] is Socket.IO's: 1 s doubling up to 5 s, each
    /// moved randomly by up to ±50%, forever). `None`, the default, ends the
    /// client when its transport is lost.
    pub reconnection: Option<Backoff>,
    /// Emits and acks kept while the namespace is not connected (before the first
    /// connect, and during reconnection); more are refused at once with
    /// [`Error::BufferFull`].
    pub max_buffered: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transports: Transports::default(),
            namespace: protocol::socketio::MAIN_NAMESPACE.to_owned(),
            auth: None,
            ack_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(20),
            path: "/socket.io/".to_owned(),
            event_buffer: 256,
            reconnection: None,
            max_buffered: ClientConfig::default().max_buffered,
        }
    }
}

/// Why connecting or sending failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid server url {0}")]
    InvalidUrl(String),
    /// The namespace refused the CONNECT (`CONNECT_ERROR`), with the server's message.
    #[error("connection refused by the server: {0}")]
    ConnectRefused(String),
    #[error("no answer to the namespace connect in time")]
    ConnectTimeout,
    #[error("no ack in time")]
    AckTimeout,
    /// The session is closed (or closed while the request was pending).
    #[error("the connection is closed: {0}")]
    Closed(CloseReason),
    #[error("{0} emits already wait for the connection; emit refused")]
    BufferFull(usize),
    #[error(transparent)]
    Event(#[from] EventError),
    /// The arguments of a binary emit do not reference each attachment exactly once.
    #[error("the arguments must hold one placeholder for each of the {0} attachments")]
    Placeholders(usize),
}

/// An event from the server.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming {
    pub name: String,
    /// The arguments after the name. Binary arguments are
    /// `{"_placeholder":true,"num":N}` standing for `attachments[N]`.
    pub args: Vec<Value>,
    pub attachments: Vec<Vec<u8>>,
    /// Set when the server wants an ack: answer with [`Emitter::ack`].
    pub ack: Option<AckId>,
}

impl Incoming {
    /// The payload of typed event `E` (its first argument).
    pub fn decode<E: Event>(&self) -> Result<E::Payload, EventError> {
        event::decode::<E>(&self.args)
    }

    /// Whether this is event `E`.
    pub fn is<E: Event>(&self) -> bool {
        self.name == E::NAME
    }
}

/// The server's reply to an emit with ack.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    pub args: Vec<Value>,
    /// Binary arguments, referenced from `args` by placeholders as in [`Incoming`].
    pub attachments: Vec<Vec<u8>>,
}

/// What the handle asks of the client's task.
#[derive(Debug)]
enum Command {
    Emit {
        name: String,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
        done: oneshot::Sender<Result<(), Error>>,
    },
    EmitWithAck {
        name: String,
        args: Vec<Value>,
        reply: oneshot::Sender<Result<Ack, Error>>,
    },
    Ack {
        id: AckId,
        args: Vec<Value>,
        done: oneshot::Sender<Result<(), Error>>,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
}

/// Where the connection stands, as [`Client::status`] reports it.
///
/// Without reconnection: `Connecting`, then `Connected`, then `Closed` (or
/// `Refused`). With reconnection, a lost transport leads to `Reconnecting`, then
/// `Connecting { attempt: Some(n) }`, and either `Connected` again or, if that
/// attempt fails too, `Reconnecting` for the next one; `Closed` only after an
/// explicit disconnect, when the server ends the session, or when
/// [`Backoff::max_attempts`] run out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Opening a transport and joining the namespace: the first time
    /// (`attempt: None`) or reconnection attempt `n` (0 for the first).
    Connecting { attempt: Option<u32> },
    /// The namespace accepted us under `sid`. `recovered`: the server resumed our
    /// previous session — same `sid`, same rooms, and the events missed while
    /// away are delivered next. After a reconnection with `recovered: false` the
    /// session is fresh: a new `sid`, no rooms, missed events are lost.
    Connected { sid: String, recovered: bool },
    /// The transport was lost (or an attempt failed) because of `reason`;
    /// attempt `attempt` (0 for the first) starts after `delay`, at `at`.
    Reconnecting {
        attempt: u32,
        delay: Duration,
        at: Instant,
        reason: CloseReason,
    },
    /// The namespace refused the CONNECT with this message (the first time, or on
    /// a reconnection attempt); the client is closed.
    Refused(String),
    /// The client is closed for good.
    Closed(CloseReason),
}

impl Status {
    /// Whether the client is closed (`Closed` or `Refused`).
    pub fn is_closed(&self) -> bool {
        matches!(self, Status::Closed(_) | Status::Refused(_))
    }

    /// The error for a request the client can no longer carry out.
    fn closed_error(&self) -> Error {
        match self {
            Status::Refused(message) => Error::ConnectRefused(message.clone()),
            Status::Closed(reason) => Error::Closed(reason.clone()),
            _ => Error::Closed(CloseReason::LocalClose),
        }
    }
}

/// What the task tells every handle besides the [`Status`].
#[derive(Debug, Clone, PartialEq)]
struct Shared {
    transport: Transport,
    /// The Socket.IO id of the current (or last) namespace connection.
    sid: String,
}

/// Commands waiting for the task; an emit waits while it is full.
const COMMAND_QUEUE: usize = 64;

/// Connects to the Socket.IO server at `base_url` (`http://127.0.0.1:3000`) and
/// joins `options.namespace`. Resolves once the namespace accepted the CONNECT,
/// with [`Error::ConnectRefused`] if it refused, or with [`Error::Closed`] if the
/// transport could not be opened. With [`Options::reconnection`], a transport that
/// cannot be opened is retried until [`Options::connect_timeout`]
/// ([`Error::ConnectTimeout`]).
pub async fn connect(base_url: &str, options: Options) -> Result<Client, Error> {
    let endpoint = url::ServerUrl::parse(base_url, &options.path)?;
    let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(options.event_buffer.max(1));
    let initial = match options.transports {
        Transports::WebSocketOnly => Transport::WebSocket,
        _ => Transport::Polling,
    };
    let (shared_tx, shared_rx) = watch::channel(Shared {
        transport: initial,
        sid: String::new(),
    });
    let (status_tx, status_rx) = watch::channel(Status::Connecting { attempt: None });
    let (connected_tx, connected_rx) = oneshot::channel();
    let connect_timeout = options.connect_timeout;
    tokio::spawn(
        driver::Driver::new(
            endpoint,
            options,
            commands_rx,
            events_tx,
            shared_tx,
            status_tx,
            connected_tx,
        )
        .run(),
    );
    let emitter = Emitter {
        commands: commands_tx,
        shared: shared_rx,
        status: status_rx,
    };
    match tokio::time::timeout(connect_timeout, connected_rx).await {
        Ok(Ok(Ok(()))) => Ok(Client {
            emitter,
            events: events_rx,
        }),
        Ok(Ok(Err(e))) => Err(e),
        Ok(Err(_)) => Err(emitter.closed()),
        Err(_) => {
            // Dropping the emitter (the only command sender) ends the task.
            Err(Error::ConnectTimeout)
        }
    }
}

/// A connected client: send with the [`Emitter`] methods it offers, receive with
/// [`next_event`](Client::next_event). Dropping it (and every [`Emitter`] cloned
/// from it) disconnects.
#[derive(Debug)]
pub struct Client {
    emitter: Emitter,
    events: mpsc::Receiver<Incoming>,
}

impl Client {
    /// The Socket.IO id the namespace gave this client (the current connection's,
    /// or the last one's while reconnecting: a fresh session after a reconnection
    /// has a new one).
    pub fn sid(&self) -> String {
        self.emitter.sid()
    }

    /// The connection's status, to read now or watch: see [`Status`]. The
    /// receiver's `changed()` resolves at the next change; intermediate steps
    /// may be skipped by an observer that looks late (it is a watch: one slot,
    /// never holding the client back).
    pub fn status(&self) -> watch::Receiver<Status> {
        self.emitter.status()
    }

    /// The transport in use now.
    pub fn transport(&self) -> Transport {
        self.emitter.transport()
    }

    /// A handle that sends on this client, for another task.
    pub fn emitter(&self) -> Emitter {
        self.emitter.clone()
    }

    /// The next event from the server; `None` once the connection is closed and
    /// every event received before has been taken.
    pub async fn next_event(&mut self) -> Option<Incoming> {
        self.events.recv().await
    }

    /// Why the connection closed, if it has (`LocalClose` after a refusal).
    pub fn close_reason(&self) -> Option<CloseReason> {
        match &*self.emitter.status.borrow() {
            Status::Closed(reason) => Some(reason.clone()),
            Status::Refused(_) => Some(CloseReason::LocalClose),
            _ => None,
        }
    }

    /// Waits until the transport is WebSocket (for a polling session, once the
    /// upgrade is complete); `false` if that did not happen within `timeout`.
    pub async fn wait_upgraded(&self, timeout: Duration) -> bool {
        let mut shared = self.emitter.shared.clone();
        let mut status = self.emitter.status.clone();
        let upgraded = async {
            loop {
                if status.borrow_and_update().is_closed() {
                    return false;
                }
                if shared.borrow_and_update().transport == Transport::WebSocket {
                    return true;
                }
                // Either sender gone means the task ended: the values above are final.
                tokio::select! {
                    changed = shared.changed() => if changed.is_err() { return false },
                    changed = status.changed() => if changed.is_err() { return false },
                }
            }
        };
        tokio::time::timeout(timeout, upgraded)
            .await
            .unwrap_or(false)
    }

    /// Stops receiving: every event from now on is dropped as it arrives, so
    /// acks keep flowing without anyone reading events. Returns the sending half.
    pub fn into_emitter(self) -> Emitter {
        let Client {
            emitter, events, ..
        } = self;
        drop(events);
        emitter
    }

    /// Emits `name` with `args`; resolves once the emit is queued for sending
    /// (or buffered, while the namespace is not connected).
    pub async fn emit(&self, name: &str, args: Vec<Value>) -> Result<(), Error> {
        self.emitter.emit(name, args).await
    }

    /// Emits typed event `E`.
    pub async fn emit_event<E: Event>(&self, payload: &E::Payload) -> Result<(), Error> {
        self.emitter.emit_event::<E>(payload).await
    }

    /// Emits `name` with binary attachments; see [`Emitter::emit_binary`].
    pub async fn emit_binary(
        &self,
        name: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), Error> {
        self.emitter.emit_binary(name, args, attachments).await
    }

    /// Emits `name` and waits for the server's ack, at most
    /// [`Options::ack_timeout`].
    pub async fn emit_with_ack(&self, name: &str, args: Vec<Value>) -> Result<Ack, Error> {
        self.emitter.emit_with_ack(name, args).await
    }

    /// Answers the server's event that asked for an ack ([`Incoming::ack`]).
    pub async fn ack(&self, id: AckId, args: Vec<Value>) -> Result<(), Error> {
        self.emitter.ack(id, args).await
    }

    /// Leaves the namespace, closes the session (`41`, then `1`) and waits until
    /// that is sent.
    pub async fn disconnect(self) {
        self.emitter.disconnect().await;
    }
}

/// The sending half of a [`Client`], cheap to clone and usable from any task.
#[derive(Debug, Clone)]
pub struct Emitter {
    commands: mpsc::Sender<Command>,
    shared: watch::Receiver<Shared>,
    status: watch::Receiver<Status>,
}

impl Emitter {
    /// The transport in use now (or being opened).
    pub fn transport(&self) -> Transport {
        self.shared.borrow().transport
    }

    /// The Socket.IO id of the current (or last) namespace connection.
    pub fn sid(&self) -> String {
        self.shared.borrow().sid.clone()
    }

    /// The connection's status; see [`Client::status`].
    pub fn status(&self) -> watch::Receiver<Status> {
        let mut status = self.status.clone();
        status.mark_unchanged();
        status
    }

    /// Emits `name` with `args`; resolves once the emit is queued for sending
    /// (or buffered, while the namespace is not connected).
    pub async fn emit(&self, name: &str, args: Vec<Value>) -> Result<(), Error> {
        self.emit_binary(name, args, Vec::new()).await
    }

    /// Emits typed event `E`.
    pub async fn emit_event<E: Event>(&self, payload: &E::Payload) -> Result<(), Error> {
        self.emit(E::NAME, event::encode::<E>(payload)?).await
    }

    /// Emits `name` with binary attachments: `args` holds
    /// `protocol::socketio::placeholder(n)` where attachment `n` goes, once each.
    /// Sent as a BINARY_EVENT (`51-["name",{"_placeholder":true,"num":0}]` then the
    /// bytes); buffered like any emit while the namespace is not connected.
    pub async fn emit_binary(
        &self,
        name: &str,
        args: Vec<Value>,
        attachments: Vec<Vec<u8>>,
    ) -> Result<(), Error> {
        if !placeholders_match(&args, attachments.len()) {
            return Err(Error::Placeholders(attachments.len()));
        }
        let (done, result) = oneshot::channel();
        self.send(Command::Emit {
            name: name.to_owned(),
            args,
            attachments,
            done,
        })
        .await?;
        result.await.unwrap_or_else(|_| Err(self.closed()))
    }

    /// Emits `name` and waits for the server's ack, at most
    /// [`Options::ack_timeout`] ([`Error::AckTimeout`]).
    pub async fn emit_with_ack(&self, name: &str, args: Vec<Value>) -> Result<Ack, Error> {
        let (reply, result) = oneshot::channel();
        self.send(Command::EmitWithAck {
            name: name.to_owned(),
            args,
            reply,
        })
        .await?;
        result.await.unwrap_or_else(|_| Err(self.closed()))
    }

    /// Answers the server's event that asked for an ack ([`Incoming::ack`]).
    pub async fn ack(&self, id: AckId, args: Vec<Value>) -> Result<(), Error> {
        let (done, result) = oneshot::channel();
        self.send(Command::Ack { id, args, done }).await?;
        result.await.unwrap_or_else(|_| Err(self.closed()))
    }

    /// Leaves the namespace and closes the session for every handle; waits until
    /// the goodbye is sent (or the connection was already gone).
    pub async fn disconnect(&self) {
        let (done, finished) = oneshot::channel();
        if self.send(Command::Disconnect { done }).await.is_ok() {
            let _ = finished.await;
        }
    }

    async fn send(&self, command: Command) -> Result<(), Error> {
        self.commands.send(command).await.map_err(|_| self.closed())
    }

    /// The error for a request the task can no longer answer.
    fn closed(&self) -> Error {
        self.status.borrow().closed_error()
    }
}

/// Whether `args` hold placeholders `0..count`, each exactly once.
fn placeholders_match(args: &[Value], count: usize) -> bool {
    fn walk(value: &Value, seen: &mut [bool]) -> bool {
        if let Some(num) = protocol::socketio::placeholder_num(value) {
            return match seen.get_mut(num) {
                Some(slot) if !*slot => {
                    *slot = true;
                    true
                }
                _ => false,
            };
        }
        match value {
            Value::Array(items) => items.iter().all(|v| walk(v, seen)),
            Value::Object(map) => map.values().all(|v| walk(v, seen)),
            _ => true,
        }
    }
    let mut seen = vec![false; count];
    args.iter().all(|a| walk(a, &mut seen)) && !seen.contains(&false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::socketio::placeholder;
    use serde_json::json;

    #[test]
    fn placeholders_must_cover_each_attachment_once() {
        assert!(placeholders_match(&[json!(1)], 0));
        assert!(placeholders_match(&[placeholder(0)], 1));
        assert!(placeholders_match(
            &[json!({"a": [placeholder(1)], "b": placeholder(0)})],
            2
        ));
        assert!(!placeholders_match(&[json!(1)], 1));
        assert!(!placeholders_match(&[placeholder(0), placeholder(0)], 2));
        assert!(!placeholders_match(&[placeholder(1)], 1));
        assert!(!placeholders_match(&[placeholder(0)], 0));
    }
}
