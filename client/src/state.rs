//! The page's state: a Yew `Reducible` changed only by [`Action`]s, which the
//! socket driver and the forms dispatch.
//!
//! The reducer is pure — times arrive inside the actions, nothing here touches the
//! browser — so every transition is unit-tested natively. Lists are bounded: past
//! [`MAX_LOG_ENTRIES`] / [`MAX_NEWS_ITEMS`] the oldest entries are dropped, so a
//! page left open for days does not grow without limit.

use std::collections::VecDeque;
use std::fmt;
use std::rc::Rc;

use protocol::Time;
use protocol::app::{HandshakeInfo, NewsItem};
use protocol::engineio::OpenPacket;
use protocol::session::AckId;
use serde_json::Value;
use yew::Reducible;

use crate::transport::Transport;

/// Most event-log entries kept; older ones are dropped first.
pub const MAX_LOG_ENTRIES: usize = 200;
/// Most news items kept; older ones are dropped first.
pub const MAX_NEWS_ITEMS: usize = 100;

/// The connection as the page shows it in `#status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Opening a transport, or Engine.IO open and waiting for the namespace.
    Connecting,
    /// The namespace accepted us.
    Connected,
    /// The transport was lost: waiting for the next attempt, or making it.
    Reconnecting,
    /// The browser says it has no network (`navigator.onLine` false). Only ever
    /// shown (see [`AppState::status_line`]), never the connection's own state.
    Offline,
    /// The namespace refused us (CONNECT_ERROR); the page does not retry.
    Refused,
    /// No session: closed, failed, or never started.
    Disconnected,
}

impl Status {
    /// The exact `#status` text (browser tests compare it).
    pub fn label(self) -> &'static str {
        match self {
            Status::Connecting => "connecting",
            Status::Connected => "connected",
            Status::Reconnecting => "reconnecting",
            Status::Offline => "offline",
            Status::Refused => "refused",
            Status::Disconnected => "disconnected",
        }
    }

    /// Whether a session is alive (connected, or working on it).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            Status::Connecting | Status::Connected | Status::Reconnecting
        )
    }
}

/// Where a lost connection stands while it is being re-established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// 1 for the first attempt after the loss.
    pub attempt: u32,
    /// When the attempt starts (page clock).
    pub due: Time,
    /// Why the previous transport was lost.
    pub reason: String,
    /// The attempt has started: a new transport is opening.
    pub trying: bool,
}

/// How the upgrade of a session opened over long-polling went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upgrade {
    /// Probed (`2probe` → `3probe`, then `5`): the session is on a WebSocket now.
    Done,
    /// The probe failed, for this reason: the session stays on long-polling.
    Failed(String),
}

/// What the server made of a reconnect (`#recovery`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Same socket id and rooms; the events missed meanwhile were replayed.
    Recovered,
    /// The server started over: nothing missed was replayed, and the page re-joins
    /// its channels.
    NewSession,
}

impl Recovery {
    /// The exact `#recovery` text.
    pub fn label(self) -> &'static str {
        match self {
            Recovery::Recovered => "recovered",
            Recovery::NewSession => "new session",
        }
    }
}

/// Which way an event went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
}

impl Dir {
    /// The `data-dir` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// One line of the event log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Unique within the page; the list key.
    pub seq: u64,
    pub dir: Dir,
    pub event: String,
    /// Compact JSON of the arguments (see [`payload_text`]).
    pub payload: String,
    pub at: Time,
}

/// One received news item.
#[derive(Debug, Clone, PartialEq)]
pub struct NewsEntry {
    pub seq: u64,
    pub item: NewsItem,
    pub at: Time,
}

/// What became of the last emit that asked for an ack (`#ack-result`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckResult {
    Waiting {
        event: String,
    },
    Received {
        event: String,
        rtt_ms: u64,
        args: String,
    },
    TimedOut {
        event: String,
    },
}

impl fmt::Display for AckResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AckResult::Waiting { event } => write!(f, "waiting for the ack of {event:?}…"),
            AckResult::Received { rtt_ms, args, .. } => write!(f, "ack in {rtt_ms} ms: {args}"),
            AckResult::TimedOut { event } => write!(
                f,
                "ack timeout: no ack for {event:?} in time (no reply, or the connection was lost)"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
struct PendingAck {
    event: String,
    sent_at: Time,
}

/// Values by ack id. A page waits for a few acks at a time, so this is a `Vec`
/// searched from the end rather than a `BTreeMap`: every map type is ~4 KB of
/// the wasm bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct AckMap<V>(Vec<(AckId, V)>);

impl<V> Default for AckMap<V> {
    fn default() -> Self {
        AckMap(Vec::new())
    }
}

impl<V> AckMap<V> {
    /// Sets the value for `id`, replacing any earlier one.
    pub fn insert(&mut self, id: AckId, value: V) {
        self.remove(id);
        self.0.push((id, value));
    }

    pub fn remove(&mut self, id: AckId) -> Option<V> {
        let at = self.0.iter().rposition(|(key, _)| *key == id)?;
        Some(self.0.remove(at).1)
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// Everything the page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct AppState {
    /// The connection's own state; never [`Status::Offline`] (see [`Self::status_line`]).
    pub status: Status,
    /// Extra words for the status: the URL being opened, the close reason, ...
    pub detail: String,
    /// Set while [`Status::Reconnecting`].
    pub reconnect: Option<Reconnect>,
    /// What the server made of the last reconnect of this session.
    pub recovery: Option<Recovery>,
    /// What the browser last said about the network (`online`/`offline` events).
    pub online: bool,
    /// The URL of the current (or last) transport.
    pub url: Option<String>,
    /// What carries (or is about to carry) the session (`#transport`).
    pub transport: Option<Transport>,
    /// The transport that brought the current Engine.IO open packet.
    pub opened_over: Option<Transport>,
    /// Why the page uses long-polling: how a WebSocket failed before its handshake.
    pub fallback: Option<String>,
    /// The upgrade of the current session, when it was opened over long-polling.
    pub upgrade: Option<Upgrade>,
    /// The Engine.IO open packet of the current transport.
    pub open: Option<OpenPacket>,
    /// Our Socket.IO id in the namespace, while connected.
    pub socket_id: Option<String>,
    /// What the server saw of the request that opened this session (a WebSocket
    /// upgrade, or a long-polling GET).
    pub handshake: Option<HandshakeInfo>,
    /// The news channels the page is in, as the server last confirmed them; the
    /// page re-joins them when the server starts a new session.
    pub channels: Vec<String>,
    /// Why the last join/leave did not work (`#channel-error`).
    pub channel_error: Option<String>,
    pub news: VecDeque<NewsEntry>,
    pub log: VecDeque<LogEntry>,
    pub ack: Option<AckResult>,
    /// Why the custom event form did not send (`#event-error`).
    pub form_error: Option<String>,
    pending_acks: AckMap<PendingAck>,
    next_seq: u64,
    /// How many actions the page's reducer applied ([`Self::revision`]).
    revision: u64,
}

impl Default for AppState {
    fn default() -> Self {
        AppState {
            status: Status::Connecting,
            detail: "starting".to_owned(),
            reconnect: None,
            recovery: None,
            online: true,
            url: None,
            transport: None,
            opened_over: None,
            fallback: None,
            upgrade: None,
            open: None,
            socket_id: None,
            handshake: None,
            channels: Vec::new(),
            channel_error: None,
            news: VecDeque::new(),
            log: VecDeque::new(),
            ack: None,
            form_error: None,
            pending_acks: AckMap::default(),
            next_seq: 0,
            revision: 0,
        }
    }
}

/// Everything that changes the page.
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

/// Seconds from `from` to `to` with one decimal, rounded up (it reads 0.0 only
/// once the time has come) and never negative: the reconnect countdown.
fn countdown(from: Time, to: Time) -> String {
    let tenths = whole_millis(to.saturating_sub(from), 0).div_ceil(100);
    format!("{}.{}", tenths / 10, tenths % 10)
}

/// `d` in milliseconds, `round_up` microseconds (0 truncates, 500 rounds, 999
/// rounds up) added to its sub-millisecond part first. In `u64`, not with
/// `Duration::as_millis`: 128-bit division and formatting cost the bundle ~2 KB.
pub fn whole_millis(d: Time, round_up: u32) -> u64 {
    let sub = u64::from((d.subsec_micros() + round_up) / 1000);
    d.as_secs().saturating_mul(1000).saturating_add(sub)
}

impl AppState {
    /// What `#status` and `#status-detail` show at page time `now`: the
    /// connection's state, or [`Status::Offline`] over a live one while the
    /// browser says it has no network; the detail counts down to the next
    /// reconnection attempt.
    pub fn status_line(&self, now: Time) -> (Status, String) {
        let detail = match (&self.reconnect, self.status) {
            (Some(r), Status::Reconnecting) if r.trying => {
                format!("attempt {}: {}", r.attempt, self.detail)
            }
            (Some(r), Status::Reconnecting) => format!(
                "attempt {}, next try in {} s ({})",
                r.attempt,
                countdown(now, r.due),
                r.reason
            ),
            _ => self.detail.clone(),
        };
        if !self.online && self.status.is_live() {
            let still = if self.status == Status::Connected {
                "the connection is still up"
            } else {
                "trying again as soon as it is back"
            };
            return (
                Status::Offline,
                format!("the browser is offline, {still} — {detail}"),
            );
        }
        (self.status, detail)
    }

    /// The reducer proper: applies one action in place.
    pub fn apply(&mut self, action: Action) {
        match action {
            Action::Connecting { url } => {
                self.status = Status::Connecting;
                self.detail = format!("opening {url}");
                self.url = Some(url);
                self.reconnect = None;
                self.recovery = None;
                self.open = None;
                self.opened_over = None;
                self.upgrade = None;
                self.socket_id = None;
                self.handshake = None;
                // A new session numbers its acks from 0 again: old ones can never complete.
                self.pending_acks.clear();
                if matches!(self.ack, Some(AckResult::Waiting { .. })) {
                    self.ack = None;
                }
            }
            Action::InvalidServer { message } => {
                self.status = Status::Disconnected;
                self.detail = message;
            }
            Action::Opening {
                transport,
                url,
                fallback,
            } => {
                self.detail = match &fallback {
                    Some(why) => format!("{why}; trying HTTP long-polling: opening {url}"),
                    None => format!("opening {url}"),
                };
                match (fallback, transport) {
                    (Some(why), _) => self.fallback = Some(why),
                    (None, Transport::WebSocket) => self.fallback = None,
                    // Polling from the start: the page learnt earlier that it must.
                    (None, Transport::Polling) => {}
                }
                self.transport = Some(transport);
                self.url = Some(url);
                self.opened_over = None;
                self.upgrade = None;
            }
            Action::Upgraded => {
                self.transport = Some(Transport::WebSocket);
                self.upgrade = Some(Upgrade::Done);
            }
            Action::ProbeFailed { reason } => self.upgrade = Some(Upgrade::Failed(reason)),
            Action::Opened(open) => {
                self.detail = format!("Engine.IO session {} open, joining namespace /", open.sid);
                self.open = Some(open);
                self.opened_over = self.transport;
            }
            Action::Connected { sid } => self.connected(sid),
            Action::Reconnected { sid, recovered } => {
                self.recovery = Some(if recovered {
                    Recovery::Recovered
                } else {
                    Recovery::NewSession
                });
                self.connected(sid);
            }
            Action::ConnectRefused { message } => {
                self.status = Status::Refused;
                self.detail = message;
                self.reconnect = None;
                self.socket_id = None;
            }
            Action::NamespaceLeft => {
                self.status = Status::Disconnected;
                self.detail = "the server disconnected this socket".to_owned();
                self.reconnect = None;
                self.socket_id = None;
            }
            Action::Reconnecting {
                attempt,
                due,
                reason,
            } => {
                self.status = Status::Reconnecting;
                self.detail = format!("lost: {reason}");
                self.reconnect = Some(Reconnect {
                    attempt,
                    due,
                    reason,
                    trying: false,
                });
                self.socket_id = None;
                self.open = None;
                self.opened_over = None;
                self.upgrade = None;
                // Pending acks stay: the same session goes on, and an ack can still
                // arrive (emits buffered meanwhile) or time out.
            }
            Action::ReconnectAttempt { attempt } => {
                self.detail = match &self.url {
                    Some(url) => format!("opening {url}"),
                    None => "opening a new transport".to_owned(),
                };
                if let Some(r) = &mut self.reconnect {
                    r.attempt = attempt;
                    r.trying = true;
                }
            }
            Action::Network { online } => self.online = online,
            Action::Closed { reason } => {
                // The first reason is the real one: after a refusal, or after the server
                // removed us from the namespace, the page closes the session itself
                // ("closed locally").
                if !matches!(self.status, Status::Disconnected | Status::Refused) {
                    self.status = Status::Disconnected;
                    self.detail = reason;
                }
                self.reconnect = None;
                self.socket_id = None;
            }
            Action::Logged {
                dir,
                event,
                args,
                at,
            } => {
                let seq = self.next_seq();
                push_bounded(
                    &mut self.log,
                    LogEntry {
                        seq,
                        dir,
                        event,
                        payload: payload_text(&args),
                        at,
                    },
                    MAX_LOG_ENTRIES,
                );
            }
            Action::News { item, at } => {
                let seq = self.next_seq();
                push_bounded(&mut self.news, NewsEntry { seq, item, at }, MAX_NEWS_ITEMS);
            }
            Action::Handshake(info) => self.handshake = Some(info),
            Action::Channels { channels, error } => {
                self.channels = channels;
                self.channel_error = error;
            }
            Action::ChannelError { message } => self.channel_error = Some(message),
            Action::AckPending { id, event, at } => {
                self.ack = Some(AckResult::Waiting {
                    event: event.clone(),
                });
                self.pending_acks
                    .insert(id, PendingAck { event, sent_at: at });
            }
            Action::AckReceived { id, args, at } => {
                if let Some(pending) = self.pending_acks.remove(id) {
                    let rtt = at.saturating_sub(pending.sent_at);
                    self.ack = Some(AckResult::Received {
                        event: pending.event,
                        rtt_ms: round_millis(rtt),
                        args: json_text(&Value::Array(args)),
                    });
                }
            }
            Action::AckTimedOut { id } => {
                if let Some(pending) = self.pending_acks.remove(id) {
                    self.ack = Some(AckResult::TimedOut {
                        event: pending.event,
                    });
                }
            }
            Action::FormInvalid { message } => self.form_error = Some(message),
            Action::FormSent => self.form_error = None,
            Action::EmitRefused { event, reason } => {
                self.form_error = Some(format!("{event:?} was not sent: {reason}"));
            }
        }
    }

    fn connected(&mut self, sid: String) {
        self.status = Status::Connected;
        self.detail = format!("socket id {sid}");
        self.reconnect = None;
        self.socket_id = Some(sid);
    }

    /// How many acks are still awaited.
    #[cfg(test)]
    pub fn pending_acks(&self) -> usize {
        self.pending_acks.len()
    }

    /// Different for every state the page's reducer made: the app context
    /// compares this rather than whole states.
    pub fn revision(&self) -> u64 {
        self.revision
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

impl Reducible for AppState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = Rc::unwrap_or_clone(self);
        next.apply(action);
        next.revision += 1;
        Rc::new(next)
    }
}

fn push_bounded<T>(list: &mut VecDeque<T>, item: T, max: usize) {
    if list.len() >= max {
        list.pop_front();
    }
    list.push_back(item);
}

fn round_millis(d: Time) -> u64 {
    whole_millis(d, 500)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    fn open() -> OpenPacket {
        OpenPacket {
            sid: "eio1".into(),
            upgrades: vec![],
            ping_interval: 25000,
            ping_timeout: 20000,
            max_payload: 1_000_000,
        }
    }

    fn run(actions: impl IntoIterator<Item = Action>) -> AppState {
        let mut state = AppState::default();
        for action in actions {
            state.apply(action);
        }
        state
    }

    #[test]
    fn connection_lifecycle() {
        let mut s = run([Action::Connecting {
            url: "ws://h/socket.io/?EIO=4&transport=websocket".into(),
        }]);
        assert_eq!(s.status.label(), "connecting");
        assert!(s.detail.contains("ws://h/"));
        s.apply(Action::Opened(open()));
        assert_eq!(s.status, Status::Connecting);
        assert_eq!(s.open.as_ref().map(|o| o.sid.as_str()), Some("eio1"));
        s.apply(Action::Connected { sid: "sock".into() });
        assert_eq!(s.status.label(), "connected");
        assert_eq!(s.socket_id.as_deref(), Some("sock"));
        s.apply(Action::Closed {
            reason: "the peer closed the session".into(),
        });
        assert_eq!(s.status.label(), "disconnected");
        assert_eq!(s.detail, "the peer closed the session");
        assert_eq!(s.socket_id, None);
    }

    #[test]
    fn first_close_reason_wins() {
        let s = run([
            Action::Connected { sid: "a".into() },
            Action::NamespaceLeft,
            Action::Closed {
                reason: "closed locally".into(),
            },
        ]);
        assert_eq!(s.status, Status::Disconnected);
        assert!(s.detail.contains("server disconnected"), "{}", s.detail);
    }

    #[test]
    fn reconnect_resets_the_session_but_keeps_history() {
        let s = run([
            Action::Opened(open()),
            Action::News {
                item: NewsItem {
                    hello: "world".into(),
                    from: None,
                    channel: None,
                },
                at: MS,
            },
            Action::AckPending {
                id: 0,
                event: "q".into(),
                at: MS,
            },
            Action::Closed { reason: "x".into() },
            Action::Connecting {
                url: "ws://h".into(),
            },
        ]);
        assert_eq!(s.status, Status::Connecting);
        assert_eq!(s.open, None);
        assert_eq!(s.news.len(), 1);
        assert_eq!(s.pending_acks(), 0);
        assert_eq!(s.ack, None);
    }

    #[test]
    fn log_payload_is_compact_json() {
        let s = run([
            Action::Logged {
                dir: Dir::In,
                event: "news".into(),
                args: vec![json!({"hello": "world"})],
                at: MS,
            },
            Action::Logged {
                dir: Dir::Out,
                event: "two".into(),
                args: vec![json!(1), json!("b")],
                at: MS,
            },
            Action::Logged {
                dir: Dir::Out,
                event: "none".into(),
                args: vec![],
                at: MS,
            },
        ]);
        let payloads: Vec<_> = s.log.iter().map(|e| e.payload.as_str()).collect();
        assert_eq!(payloads, [r#"{"hello":"world"}"#, r#"[1,"b"]"#, "[]"]);
        assert_eq!(s.log[0].dir.as_str(), "in");
        assert_eq!(s.log[1].dir.as_str(), "out");
        assert!(s.log[0].seq < s.log[1].seq);
    }

    #[test]
    fn lists_are_bounded_oldest_first_out() {
        let s = run((0..MAX_LOG_ENTRIES + 5).map(|i| Action::Logged {
            dir: Dir::In,
            event: format!("e{i}"),
            args: vec![],
            at: MS,
        }));
        assert_eq!(s.log.len(), MAX_LOG_ENTRIES);
        assert_eq!(s.log[0].event, "e5");
        let s = run((0..MAX_NEWS_ITEMS + 1).map(|i| Action::News {
            item: NewsItem {
                hello: format!("n{i}"),
                from: None,
                channel: None,
            },
            at: MS,
        }));
        assert_eq!(s.news.len(), MAX_NEWS_ITEMS);
        assert_eq!(s.news[0].item.hello, "n1");
    }

    #[test]
    fn ack_round_trip_in_ms() {
        let mut s = run([Action::AckPending {
            id: 3,
            event: "q".into(),
            at: 100 * MS,
        }]);
        assert!(
            s.ack
                .as_ref()
                .is_some_and(|a| a.to_string().contains("waiting"))
        );
        s.apply(Action::AckReceived {
            id: 3,
            args: vec![json!({"n": 42})],
            at: 103 * MS + Duration::from_micros(400),
        });
        assert_eq!(
            s.ack.as_ref().map(ToString::to_string).as_deref(),
            Some(r#"ack in 3 ms: [{"n":42}]"#)
        );
        assert_eq!(s.pending_acks(), 0);
        // An unknown or repeated ack changes nothing.
        let before = s.clone();
        s.apply(Action::AckReceived {
            id: 3,
            args: vec![],
            at: 200 * MS,
        });
        assert_eq!(s, before);
    }

    #[test]
    fn ack_timeout_is_reported() {
        let s = run([
            Action::AckPending {
                id: 0,
                event: "slow".into(),
                at: MS,
            },
            Action::AckTimedOut { id: 0 },
        ]);
        let text = s.ack.as_ref().map(ToString::to_string).unwrap_or_default();
        assert!(text.contains("timeout") && text.contains("slow"), "{text}");
    }

    #[test]
    fn form_errors_are_set_and_cleared() {
        let mut s = run([Action::FormInvalid {
            message: "invalid JSON".into(),
        }]);
        assert_eq!(s.form_error.as_deref(), Some("invalid JSON"));
        s.apply(Action::FormSent);
        assert_eq!(s.form_error, None);
        s.apply(Action::EmitRefused {
            event: "x".into(),
            reason: "the session is closed".into(),
        });
        assert!(
            s.form_error
                .as_deref()
                .is_some_and(|e| e.contains("closed"))
        );
    }

    fn lost_at(at: Time) -> Action {
        Action::Reconnecting {
            attempt: 1,
            due: at + 800 * MS,
            reason: "the transport failed: reset".into(),
        }
    }

    #[test]
    fn reconnecting_counts_down_to_the_next_attempt() {
        let s = run([
            Action::Connecting {
                url: "ws://h/socket.io/?EIO=4&transport=websocket".into(),
            },
            Action::Connected { sid: "a".into() },
            lost_at(1000 * MS),
        ]);
        let (status, detail) = s.status_line(1000 * MS);
        assert_eq!(status.label(), "reconnecting");
        assert_eq!(
            detail,
            "attempt 1, next try in 0.8 s (the transport failed: reset)"
        );
        assert_eq!(
            s.status_line(1750 * MS).1,
            "attempt 1, next try in 0.1 s (the transport failed: reset)"
        );
        assert!(s.status_line(1201 * MS).1.contains("in 0.6 s"));
        // Late timers never show a negative countdown.
        assert!(s.status_line(9000 * MS).1.contains("in 0.0 s"));
        assert_eq!(s.socket_id, None);
    }

    #[test]
    fn whole_millis_truncates_rounds_or_rounds_up() {
        let d = Duration::from_micros(2_499_500);
        assert_eq!(whole_millis(d, 0), 2499);
        assert_eq!(whole_millis(d, 500), 2500);
        assert_eq!(whole_millis(Duration::from_micros(2_499_001), 999), 2500);
        assert_eq!(whole_millis(Duration::from_millis(3), 999), 3);
        // Sub-microsecond parts are ignored, as `as_micros` did.
        assert_eq!(whole_millis(Duration::from_nanos(1_000_999), 999), 1);
        assert_eq!(whole_millis(Duration::MAX, 999), u64::MAX);
    }

    #[test]
    fn every_reduced_action_makes_a_new_revision() {
        let first = Rc::new(AppState::default());
        let second = first.clone().reduce(Action::FormSent);
        // Even an action that changes nothing shows: the context compares revisions.
        let third = second.clone().reduce(Action::FormSent);
        assert!(first.revision() < second.revision());
        assert!(second.revision() < third.revision());
    }

    #[test]
    fn ack_map_keeps_one_value_per_id() {
        let mut acks = AckMap::default();
        acks.insert(1, "a");
        acks.insert(2, "b");
        acks.insert(1, "c");
        assert_eq!(acks.len(), 2);
        assert_eq!(acks.remove(1), Some("c"));
        assert_eq!(acks.remove(1), None);
        assert_eq!(acks.remove(2), Some("b"));
        assert_eq!(acks.len(), 0);
    }

    #[test]
    fn an_attempt_in_progress_says_what_it_opens() {
        let mut s = run([
            Action::Connecting {
                url: "ws://h/socket.io/".into(),
            },
            lost_at(Time::ZERO),
            Action::ReconnectAttempt { attempt: 1 },
        ]);
        assert_eq!(
            s.status_line(Time::ZERO),
            (
                Status::Reconnecting,
                "attempt 1: opening ws://h/socket.io/".into()
            )
        );
        s.apply(Action::Opened(open()));
        assert_eq!(
            s.status_line(Time::ZERO).1,
            "attempt 1: Engine.IO session eio1 open, joining namespace /"
        );
        s.apply(Action::Reconnected {
            sid: "a".into(),
            recovered: true,
        });
        assert_eq!(
            s.status_line(Time::ZERO),
            (Status::Connected, "socket id a".into())
        );
        assert_eq!(s.reconnect, None);
        assert_eq!(s.recovery.map(Recovery::label), Some("recovered"));
    }

    #[test]
    fn a_fresh_session_after_a_reconnect_is_labelled() {
        let s = run([
            Action::Connected { sid: "a".into() },
            lost_at(Time::ZERO),
            Action::Reconnected {
                sid: "b".into(),
                recovered: false,
            },
        ]);
        assert_eq!(s.recovery.map(Recovery::label), Some("new session"));
        // A session started by hand has no reconnect to label.
        let s = run([
            Action::Reconnected {
                sid: "b".into(),
                recovered: true,
            },
            Action::Connecting {
                url: "ws://h".into(),
            },
            Action::Connected { sid: "c".into() },
        ]);
        assert_eq!(s.recovery, None);
    }

    #[test]
    fn offline_shows_over_a_live_connection_only() {
        let mut s = run([
            Action::Connected { sid: "a".into() },
            Action::Network { online: false },
        ]);
        let (status, detail) = s.status_line(Time::ZERO);
        assert_eq!(status.label(), "offline");
        assert!(
            detail.contains("still up") && detail.contains("socket id a"),
            "{detail}"
        );
        s.apply(lost_at(Time::ZERO));
        let (status, detail) = s.status_line(Time::ZERO);
        assert_eq!(status, Status::Offline);
        assert!(detail.contains("attempt 1, next try in 0.8 s"), "{detail}");
        s.apply(Action::Network { online: true });
        assert_eq!(s.status_line(Time::ZERO).0, Status::Reconnecting);
        // A session that ended stays "disconnected": nothing is trying.
        s.apply(Action::Network { online: false });
        s.apply(Action::Closed {
            reason: "closed locally".into(),
        });
        assert_eq!(s.status_line(Time::ZERO).0, Status::Disconnected);
    }

    #[test]
    fn pending_acks_survive_a_reconnect_of_the_same_session() {
        let mut s = run([
            Action::Connected { sid: "a".into() },
            Action::AckPending {
                id: 4,
                event: "q".into(),
                at: MS,
            },
            lost_at(2 * MS),
            Action::Reconnected {
                sid: "a".into(),
                recovered: true,
            },
        ]);
        assert_eq!(s.pending_acks(), 1);
        s.apply(Action::AckTimedOut { id: 4 });
        assert!(matches!(s.ack, Some(AckResult::TimedOut { .. })));
    }

    #[test]
    fn a_refusal_outlives_the_close_that_follows() {
        let s = run([
            Action::ConnectRefused {
                message: "authentication required".into(),
            },
            Action::Closed {
                reason: "closed locally".into(),
            },
        ]);
        assert_eq!(
            s.status_line(Time::ZERO),
            (Status::Refused, "authentication required".into())
        );
    }

    #[test]
    fn channels_come_from_the_server_answer() {
        let mut s = run([Action::Channels {
            channels: vec!["sports".into(), "weather".into()],
            error: None,
        }]);
        assert_eq!(s.channels, ["sports", "weather"]);
        assert_eq!(s.channel_error, None);
        s.apply(Action::Channels {
            channels: vec!["sports".into()],
            error: Some("invalid channel name \"\"".into()),
        });
        assert_eq!(s.channels, ["sports"]);
        assert!(s.channel_error.is_some());
        // Reconnecting keeps them: the page re-joins them on a new session.
        s.apply(lost_at(Time::ZERO));
        s.apply(Action::Connecting {
            url: "ws://h".into(),
        });
        assert_eq!(s.channels, ["sports"]);
    }

    #[test]
    fn the_transport_and_the_fallback_are_shown() {
        let ws = "ws://h/socket.io/?EIO=4&transport=websocket";
        let poll = "http://h/socket.io/?EIO=4&transport=polling&t=1";
        let mut s = run([
            Action::Connecting { url: ws.into() },
            Action::Opening {
                transport: Transport::WebSocket,
                url: ws.into(),
                fallback: None,
            },
        ]);
        assert_eq!(s.transport.map(Transport::label), Some("websocket"));
        // The WebSocket fails before its handshake: the same attempt goes on polling.
        s.apply(Action::Opening {
            transport: Transport::Polling,
            url: poll.into(),
            fallback: Some("the WebSocket connection failed".into()),
        });
        assert_eq!(s.transport.map(Transport::label), Some("polling"));
        assert_eq!(
            s.status_line(Time::ZERO).1,
            format!("the WebSocket connection failed; trying HTTP long-polling: opening {poll}")
        );
        s.apply(Action::Opened(open()));
        assert_eq!(s.opened_over, Some(Transport::Polling));
        s.apply(Action::ProbeFailed {
            reason: "refused".into(),
        });
        assert_eq!(s.upgrade, Some(Upgrade::Failed("refused".into())));

        // Lost; the next transport starts on polling (remembered): the reason stays.
        s.apply(lost_at(Time::ZERO));
        assert_eq!((s.opened_over, s.upgrade.clone()), (None, None));
        s.apply(Action::Opening {
            transport: Transport::Polling,
            url: poll.into(),
            fallback: None,
        });
        assert_eq!(
            s.fallback.as_deref(),
            Some("the WebSocket connection failed")
        );
        s.apply(Action::Opened(open()));
        s.apply(Action::Upgraded);
        assert_eq!(s.transport, Some(Transport::WebSocket));
        assert_eq!(s.opened_over, Some(Transport::Polling));
        assert_eq!(s.upgrade, Some(Upgrade::Done));

        // A WebSocket that opens by itself: no fallback to explain any more.
        s.apply(lost_at(Time::ZERO));
        s.apply(Action::Opening {
            transport: Transport::WebSocket,
            url: ws.into(),
            fallback: None,
        });
        assert_eq!(s.fallback, None);
    }

    #[test]
    fn refused_namespace() {
        let s = run([Action::ConnectRefused {
            message: "Invalid namespace".into(),
        }]);
        assert_eq!(s.status.label(), "refused");
        assert_eq!(s.detail, "Invalid namespace");
    }
}
