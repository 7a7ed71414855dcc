//! The connection slice: the session as the status bar (`#status`,
//! `#status-detail`, `#transport`, `#recovery`) and the handshake panel
//! (`#handshake`) show it.

use std::rc::Rc;

use protocol::Time;
use protocol::app::HandshakeInfo;
use protocol::engineio::OpenPacket;
use protocol::session::Transport;
use yew::Reducible;

use super::{Action, whole_millis};

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
    /// shown (see [`ConnectionState::status_line`]), never the connection's own state.
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

/// The exact `#transport` text (browser tests compare it).
pub fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::WebSocket => "websocket",
        Transport::Polling => "polling",
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

/// What the current transport brought; every new transport starts from `Default`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Link {
    /// Its Engine.IO open packet.
    pub open: Option<OpenPacket>,
    /// The transport that brought that open packet.
    pub opened_over: Option<Transport>,
    /// The upgrade of a session opened over long-polling.
    pub upgrade: Option<Upgrade>,
}

/// The connection slice. A new session starts from [`ConnectionState::connecting`]
/// and keeps only what belongs to the page's life (`Action::Connecting`).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionState {
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
    /// Why the page uses long-polling: how a WebSocket failed before its handshake.
    pub fallback: Option<String>,
    /// The current transport's open packet and upgrade.
    pub link: Link,
    /// Our Socket.IO id in the namespace, while connected.
    pub socket_id: Option<String>,
    /// What the server saw of the request that opened this session (a WebSocket
    /// upgrade, or a long-polling GET).
    pub handshake: Option<HandshakeInfo>,
}

impl Default for ConnectionState {
    fn default() -> Self {
        ConnectionState {
            status: Status::Connecting,
            detail: "starting".to_owned(),
            reconnect: None,
            recovery: None,
            online: true,
            url: None,
            transport: None,
            fallback: None,
            link: Link::default(),
            socket_id: None,
            handshake: None,
        }
    }
}

/// Seconds from `from` to `to` with one decimal, rounded up (it reads 0.0 only
/// once the time has come) and never negative: the reconnect countdown.
fn countdown(from: Time, to: Time) -> String {
    let tenths = whole_millis(to.saturating_sub(from), 0).div_ceil(100);
    format!("{}.{}", tenths / 10, tenths % 10)
}

impl ConnectionState {
    /// A session to `url` starting: nothing known of it yet.
    pub fn connecting(url: String) -> Self {
        ConnectionState {
            detail: format!("opening {url}"),
            url: Some(url),
            ..ConnectionState::default()
        }
    }

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

    /// Applies one of this slice's actions in place.
    fn apply(&mut self, action: Action) {
        match action {
            Action::Connecting { url } => {
                *self = ConnectionState {
                    // The page's, not the session's: the network, and what the
                    // page learnt about WebSockets (the next `Opening` says more).
                    online: self.online,
                    transport: self.transport,
                    fallback: self.fallback.take(),
                    ..ConnectionState::connecting(url)
                };
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
                self.link = Link::default();
            }
            Action::Upgraded => {
                self.transport = Some(Transport::WebSocket);
                self.link.upgrade = Some(Upgrade::Done);
            }
            Action::ProbeFailed { reason } => self.link.upgrade = Some(Upgrade::Failed(reason)),
            Action::Opened(open) => {
                self.detail = format!("Engine.IO session {} open, joining namespace /", open.sid);
                self.link.open = Some(open);
                self.link.opened_over = self.transport;
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
                self.link = Link::default();
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
            Action::Handshake(info) => self.handshake = Some(info),
            // The other slices' (`PageState::apply` does not send them here).
            _ => {}
        }
    }

    fn connected(&mut self, sid: String) {
        self.status = Status::Connected;
        self.detail = format!("socket id {sid}");
        self.reconnect = None;
        self.socket_id = Some(sid);
    }
}

impl Reducible for ConnectionState {
    type Action = Action;

    fn reduce(self: Rc<Self>, action: Action) -> Rc<Self> {
        let mut next = Rc::unwrap_or_clone(self);
        next.apply(action);
        Rc::new(next)
    }
}
