//! The page's state, in slices: each a Yew `Reducible` of its own, read by the
//! components that show it.
//!
//! - [`connection`]: the session as `#status`, `#transport`, `#recovery` and
//!   `#handshake` show it (the status bar and the handshake panel).
//! - [`feed`]: the news received (`#news`) and the event log (`#log`), two slices.
//! - [`channels`]: the news channels the server says the page is in (`#channels`).
//! - [`acks`]: the acks awaited and the last one's fate (`#ack-result`).
//! - [`forms`]: why the custom event form did not send (`#event-error`).
//!
//! [`PageState::apply`] hands each [`Action`] to the slices that read it; a
//! slice it leaves as it was stays the same `Rc`, so only the components given
//! a slice that changed re-render. What a new session resets is said by replacing
//! the slice with its constructor and naming what survives, so a field added
//! later starts over with every session unless it is named there.
//!
//! The reducers are pure — times arrive inside the actions, nothing here touches
//! the browser — so every transition is unit-tested natively. Lists are bounded:
//! past [`MAX_LOG_ENTRIES`](feed::MAX_LOG_ENTRIES) /
//! [`MAX_NEWS_ITEMS`](feed::MAX_NEWS_ITEMS) the oldest entries are dropped, so a
//! page left open for days does not grow without limit.

pub mod acks;
pub mod channels;
pub mod connection;
pub mod feed;
pub mod forms;

use std::rc::Rc;

use protocol::Time;
use protocol::app::{HandshakeInfo, NewsItem};
use protocol::engineio::OpenPacket;
use protocol::session::{AckId, Transport};
use serde_json::Value;
use yew::Reducible;

pub use acks::{AckMap, AckResult, AckState};
pub use channels::ChannelsState;
pub use connection::{ConnectionState, Upgrade};
pub use feed::{Dir, LogState, NewsState};
pub use forms::FormState;

/// Everything that changes the page. The socket driver and the forms dispatch
/// them; the slices say which ones they read.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A new session to `url` is starting (the page opened, or "Reconnect").
    Connecting {
        url: String,
    },
    /// No URL could be worked out; nothing will connect.
    InvalidServer {
        message: String,
    },
    /// A transport is opening at `url`; `fallback` says why a WebSocket could not
    /// be used for this attempt (it failed before its handshake).
    Opening {
        transport: Transport,
        url: String,
        fallback: Option<String>,
    },
    /// The session moved from long-polling to a WebSocket.
    Upgraded,
    /// The upgrade probe failed: the session stays on long-polling.
    ProbeFailed {
        reason: String,
    },
    /// The Engine.IO handshake arrived (on the first transport or a later one).
    Opened(OpenPacket),
    /// The namespace accepted this session for the first time.
    Connected {
        sid: String,
    },
    /// The namespace accepted us again after a lost transport; `recovered` says
    /// whether the server resumed the session.
    Reconnected {
        sid: String,
        recovered: bool,
    },
    /// The namespace refused us.
    ConnectRefused {
        message: String,
    },
    /// The server removed us from the namespace.
    NamespaceLeft,
    /// The transport was lost (`reason`); attempt `attempt` (1 for the first)
    /// starts at `due`.
    Reconnecting {
        attempt: u32,
        due: Time,
        reason: String,
    },
    /// Attempt `attempt` started: a new transport to the same server is opening.
    ReconnectAttempt {
        attempt: u32,
    },
    /// The browser went online or offline.
    Network {
        online: bool,
    },
    /// The session ended for good; `reason` is the `CloseReason`'s Display.
    Closed {
        reason: String,
    },
    /// An event went out or came in.
    Logged {
        dir: Dir,
        event: String,
        args: Vec<Value>,
        at: Time,
    },
    /// A `news` event arrived.
    News {
        item: NewsItem,
        at: Time,
    },
    /// The `handshake` event arrived.
    Handshake(HandshakeInfo),
    /// The server's answer to a join or leave: the channels we are now in.
    Channels {
        channels: Vec<String>,
        error: Option<String>,
    },
    /// A join or leave could not be made, or got no answer.
    ChannelError {
        message: String,
    },
    /// An emit asked for ack `id`.
    AckPending {
        id: AckId,
        event: String,
        at: Time,
    },
    AckReceived {
        id: AckId,
        args: Vec<Value>,
        at: Time,
    },
    AckTimedOut {
        id: AckId,
    },
    /// The custom event form's input is not sendable.
    FormInvalid {
        message: String,
    },
    /// The custom event form's input was handed to the socket.
    FormSent,
    /// The socket refused an emit (closed, or too many waiting).
    EmitRefused {
        event: String,
        reason: String,
    },
}

/// Every slice of the page, as the root component keeps them.
#[derive(Debug, Clone, Default)]
pub struct PageState {
    pub connection: Rc<ConnectionState>,
    pub news: Rc<NewsState>,
    pub log: Rc<LogState>,
    pub channels: Rc<ChannelsState>,
    pub acks: Rc<AckState>,
    pub form: Rc<FormState>,
}

impl Reducible for PageState {
    type Action = Action;

    /// A new `PageState` when a slice changed (then `App` renders, and the
    /// components given that slice), else the same.
    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = (*self).clone();
        if next.apply(action) {
            Rc::new(next)
        } else {
            self
        }
    }
}

impl PageState {
    /// Hands `action` to the slices that read it: this is where an action's
    /// readers are listed. Returns whether one of them changed (a slice that
    /// changed is a new `Rc`).
    pub fn apply(&mut self, action: Action) -> bool {
        match action {
            // A new session: the acks awaited from the old one are given up.
            Action::Connecting { url } => {
                let acks = reduce(&mut self.acks, Action::Connecting { url: url.clone() });
                reduce(&mut self.connection, Action::Connecting { url }) | acks
            }
            Action::News { .. } => reduce(&mut self.news, action),
            Action::Logged { .. } => reduce(&mut self.log, action),
            Action::Channels { .. } | Action::ChannelError { .. } => {
                reduce(&mut self.channels, action)
            }
            Action::AckPending { .. } | Action::AckReceived { .. } | Action::AckTimedOut { .. } => {
                reduce(&mut self.acks, action)
            }
            Action::FormInvalid { .. } | Action::FormSent | Action::EmitRefused { .. } => {
                reduce(&mut self.form, action)
            }
            Action::InvalidServer { .. }
            | Action::Opening { .. }
            | Action::Upgraded
            | Action::ProbeFailed { .. }
            | Action::Opened(_)
            | Action::Connected { .. }
            | Action::Reconnected { .. }
            | Action::ConnectRefused { .. }
            | Action::NamespaceLeft
            | Action::Reconnecting { .. }
            | Action::ReconnectAttempt { .. }
            | Action::Network { .. }
            | Action::Closed { .. }
            | Action::Handshake(_) => reduce(&mut self.connection, action),
        }
    }
}

/// Reduces one slice. The slice is held here while its reducer runs, so a
/// reducer that changes it makes a copy, a new `Rc` never equal to this one; one
/// that ignores the action returns it as it was.
fn reduce<T: Reducible<Action = Action>>(slice: &mut Rc<T>, action: Action) -> bool {
    let next = Rc::clone(slice).reduce(action);
    let changed = !Rc::ptr_eq(slice, &next);
    *slice = next;
    changed
}

/// How the log shows arguments: a single argument as that value, otherwise the
/// array (`[]` for none), compact JSON either way.
pub fn payload_text(args: &[Value]) -> String {
    match args {
        [one] => json_text(one),
        many => json_text(&Value::Array(many.to_vec())),
    }
}

/// Compact JSON, as `Value`'s `Display` writes it but through the same serializer
/// as the protocol's encoder (`Display` would be one more copy of it in the wasm).
pub fn json_text(value: &Value) -> String {
    serde_json::to_string(value).expect("a JSON value always serializes")
}

/// `d` in milliseconds, `round_up` microseconds (0 truncates, 500 rounds, 999
/// rounds up) added to its sub-millisecond part first. In `u64`, not with
/// `Duration::as_millis`: 128-bit division and formatting cost the bundle ~2 KB.
pub fn whole_millis(d: Time, round_up: u32) -> u64 {
    let sub = u64::from((d.subsec_micros() + round_up) / 1000);
    d.as_secs().saturating_mul(1000).saturating_add(sub)
}

#[cfg(test)]
mod tests;
