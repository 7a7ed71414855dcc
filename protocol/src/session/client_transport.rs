//! The client's transports, sans I/O: which one carries the session, and what to
//! ask of the network next. It sits beside a [`ClientSession`](super::ClientSession):
//! the session says what to send and when the transport is lost or wanted again;
//! this machine says how — "open a WebSocket", "start a GET", "start a POST",
//! "open the probe WebSocket", "send the upgrade" ([`Step`]) — and the browser's
//! and the native client's shells only start those requests and feed their
//! results back.
//!
//! The rules, as the official client's:
//! - Long-polling keeps one GET always waiting and one POST at a time carrying
//!   every frame queued meanwhile, as many as fit in the server's `maxPayload`
//!   ([`engineio::take_payload`]).
//! - When the server offers the upgrade, one probe WebSocket is opened with the
//!   session's sid and sends `2probe`; once it is answered `3probe`, polling
//!   pauses (no new request starts, frames wait here), and when no request is in
//!   flight `5` goes out on that WebSocket, which carries everything from then
//!   on, starting with the frames that waited: no frame overtakes another. A
//!   failed probe (refused, wrongly answered, or not answered within
//!   [`TransportConfig::probe_timeout`]) leaves the session on polling.
//! - [`Transports::WebSocketOrPolling`] (the browser): a WebSocket first; when it
//!   fails before the server's open packet (a proxy refusing `Upgrade`), the same
//!   attempt goes on over long-polling at once. What that teaches is kept in a
//!   [`PathMemory`] the page keeps for its life.
//! - A transport being opened must bring the open packet within
//!   [`TransportConfig::open_timeout`]; the session has no deadline before it.
//! - Reconnection is the session's decision: [`ClientTransport::close`] when it
//!   reports the transport lost, [`ClientTransport::open`] when it asks for a new one.
//!
//! Every request carries its own query: `EIO=4&transport=...&t=<cache buster>&sid=...`
//! ([`engineio::polling_query`], [`engineio::websocket_query`]).

use std::collections::VecDeque;
use std::time::Duration;

use crate::Time;
use crate::engineio::{self, DecodeError, Frame, OpenPacket, Packet};
use crate::session::{ProtocolError, Transport};

/// Which transports a client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    /// A WebSocket from the first request.
    WebSocketOnly,
    /// HTTP long-polling only.
    PollingOnly,
    /// Long-polling, upgraded to a WebSocket when the server offers it.
    PollingThenUpgrade,
    /// As a browser: a WebSocket first (or polling, when the [`PathMemory`] says
    /// WebSockets are blocked), falling back to polling within the same attempt
    /// when the WebSocket fails before the open packet; polling probes the
    /// upgrade unless a probe failed before.
    WebSocketOrPolling,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportConfig {
    pub transports: Transports,
    /// How long a new transport may take to bring the server's open packet.
    pub open_timeout: Duration,
    /// How long an upgrade probe may take to be answered before polling carries
    /// on without it.
    pub probe_timeout: Duration,
    /// Most frames waiting for a POST: while that many wait, no GET is started
    /// (and the shell should stop reading what would make more), so a slow POST
    /// cannot make the client hoard frames. `None`: no bound.
    pub max_queued: Option<usize>,
    /// The cache busters' prefix (`t=<seed in hex>.<request number>`).
    pub seed: u64,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            transports: Transports::WebSocketOnly,
            open_timeout: Duration::from_secs(20),
            probe_timeout: Duration::from_secs(10),
            max_queued: None,
            seed: 0,
        }
    }
}

/// What the client learnt about the way to its server (kept across sessions by
/// the browser, for the page's life).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PathMemory {
    /// A WebSocket failed before its handshake and long-polling then worked.
    websocket_blocked: bool,
    /// An upgrade probe failed.
    probe_failed: bool,
}

impl PathMemory {
    /// The transport a new Engine.IO session starts on.
    pub fn first(self) -> Transport {
        if self.websocket_blocked {
            Transport::Polling
        } else {
            Transport::WebSocket
        }
    }

    /// The server's open packet arrived over long-polling; `after_websocket_failed`:
    /// this attempt's WebSocket had failed before its handshake.
    pub fn polling_opened(&mut self, after_websocket_failed: bool) {
        if after_websocket_failed {
            self.websocket_blocked = true;
        }
    }

    /// Whether a session on polling should probe the upgrade the server offers.
    pub fn may_probe(self) -> bool {
        !self.probe_failed
    }

    /// An upgrade probe failed (no answer, a refusal, a wrong answer).
    pub fn probe_failed(&mut self) {
        self.probe_failed = true;
    }

    /// An upgrade to WebSocket went through: WebSockets work after all.
    pub fn upgraded(&mut self) {
        self.websocket_blocked = false;
    }
}

/// Why the transport was lost, for [`ClientSession::transport_closed`](super::ClientSession::transport_closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// A request or socket failed, or no open packet came in time. After a
    /// WebSocket that failed first (the fallback), the reason names both.
    Transport(String),
    /// A GET's body was not a long-polling payload.
    Payload(DecodeError),
}

/// What the shell must do next, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Open a new transport (a new Engine.IO session): a WebSocket with
    /// [`websocket_query`](engineio::websocket_query)`(None)`, or long-polling's
    /// handshake GET with [`polling_query`](engineio::polling_query)`(None, t)`.
    /// Its result comes back as a GET's, or through [`ClientTransport::websocket_failed`].
    /// `fallback`: why this attempt's WebSocket failed, when polling takes over.
    Open {
        transport: Transport,
        t: Option<String>,
        fallback: Option<String>,
    },
    /// Start a long-polling GET for the session `sid`; its result goes to
    /// [`ClientTransport::get_done`].
    Get { sid: String, t: String },
    /// Start a long-polling POST of `payload`; its result goes to
    /// [`ClientTransport::post_done`].
    Post {
        sid: String,
        t: String,
        payload: String,
    },
    /// Send a frame on the WebSocket (a failure goes to [`ClientTransport::websocket_failed`]).
    Send(Frame),
    /// Open the probe WebSocket for the session `sid`, send `request` (`2probe`)
    /// on it and hand its first frame (or why there is none) to
    /// [`ClientTransport::probe_done`]. Keep the socket. (The machine bounds
    /// the wait.)
    Probe { sid: String, request: Frame },
    /// Send this frame (`5`) on the probe's WebSocket and tell
    /// [`ClientTransport::upgrade_sent`]; once sent, that socket is the transport
    /// and polling's requests are dropped.
    Upgrade(Frame),
    /// The upgrade went through (after `upgrade_sent(Ok)`).
    Upgraded,
    /// The probe failed: close its WebSocket; polling goes on.
    ProbeFailed(String),
    /// Close the transport: abort its requests, close its WebSockets (the
    /// probe's too); nothing more is read from it.
    Close,
    /// The transport is lost: tell the session (which then calls [`ClientTransport::close`]).
    Lost(Failure),
}

/// Where the session's frames go.
#[derive(Debug)]
enum Active {
    /// Nothing: between transports, or never opened.
    None,
    WebSocket,
    Polling(Polling),
}

/// Long-polling: what is in flight and how far the upgrade went.
#[derive(Debug, Default)]
struct Polling {
    get: bool,
    post: bool,
    /// The probe was started on this transport (one try, as the official client).
    probed: bool,
    /// When the probe in flight must have been answered.
    probe_deadline: Option<Time>,
    upgrade: ProbeStage,
}

#[derive(Debug, Default, PartialEq, Eq)]
enum ProbeStage {
    #[default]
    None,
    /// The probe WebSocket is waiting for its answer.
    Probing,
    /// Answered `3probe`: polling is paused until no request is in flight.
    Paused,
    /// `5` was handed to the shell; waiting for `upgrade_sent`.
    Sending,
}

/// What the open packet said that matters here.
#[derive(Debug)]
struct Opened {
    sid: String,
    max_payload: u64,
    /// The server offers the upgrade to WebSocket.
    upgradable: bool,
}

/// The client's transport machine: see the module's documentation.
#[derive(Debug)]
pub struct ClientTransport {
    config: TransportConfig,
    memory: PathMemory,
    active: Active,
    /// The current transport's Engine.IO session, once its open packet arrived.
    open: Option<Opened>,
    /// Frames waiting for a POST or for the upgrade, or (on a WebSocket) to be
    /// handed over as [`Step::Send`]s.
    queue: VecDeque<Frame>,
    /// Steps waiting for the shell, taken in this order by [`poll_step`](Self::poll_step)
    /// before the sends and requests (flags rather than a queue of steps: at
    /// most one of each can be pending, and it is smaller code in the browser
    /// bundle).
    close_pending: bool,
    open_pending: Option<Step>,
    lost: Option<Failure>,
    probe_failure: Option<String>,
    upgraded: bool,
    /// When the transport being opened must have brought the open packet.
    opening_deadline: Option<Time>,
    /// Why this attempt's WebSocket failed, while the attempt goes on over polling.
    fell_back: Option<String>,
    /// Requests made, for the cache busters.
    requests: u64,
}

impl ClientTransport {
    pub fn new(config: TransportConfig, memory: PathMemory) -> Self {
        ClientTransport {
            config,
            memory,
            active: Active::None,
            open: None,
            queue: VecDeque::new(),
            close_pending: false,
            open_pending: None,
            lost: None,
            probe_failure: None,
            upgraded: false,
            opening_deadline: None,
            fell_back: None,
            requests: 0,
        }
    }

    /// What was learnt about the way to the server (for the next sessions).
    pub fn memory(&self) -> PathMemory {
        self.memory
    }

    /// What carries the frames now, if anything.
    pub fn transport(&self) -> Option<Transport> {
        match self.active {
            Active::None => None,
            Active::WebSocket => Some(Transport::WebSocket),
            Active::Polling(_) => Some(Transport::Polling),
        }
    }

    /// Whether as many frames wait for a POST as [`TransportConfig::max_queued`]
    /// allows: the shell reads nothing that would make more until they went.
    pub fn is_backlogged(&self) -> bool {
        self.config
            .max_queued
            .is_some_and(|max| self.queue.len() >= max)
    }

    /// Opens a transport for a new Engine.IO session (the first, or a
    /// reconnection attempt's), closing the current one if any.
    pub fn open(&mut self, now: Time) {
        let kind = match self.config.transports {
            Transports::WebSocketOnly => Transport::WebSocket,
            Transports::PollingOnly | Transports::PollingThenUpgrade => Transport::Polling,
            Transports::WebSocketOrPolling => self.memory.first(),
        };
        self.open_kind(kind, None, now);
    }

    fn open_kind(&mut self, kind: Transport, fallback: Option<String>, now: Time) {
        self.close();
        self.opening_deadline = Some(now + self.config.open_timeout);
        self.fell_back.clone_from(&fallback);
        let t = match kind {
            Transport::WebSocket => {
                self.active = Active::WebSocket;
                None
            }
            Transport::Polling => {
                self.active = Active::Polling(Polling {
                    get: true,
                    ..Polling::default()
                });
                Some(cache_buster(self.config.seed, &mut self.requests))
            }
        };
        self.open_pending = Some(Step::Open {
            transport: kind,
            t,
            fallback,
        });
    }

    /// The transport is gone (the session lost it) or given up on: its requests
    /// and sockets close, and the frames it did not send are dropped.
    pub fn close(&mut self) {
        if !matches!(self.active, Active::None) {
            self.close_pending = true;
        }
        self.open_pending = None;
        self.active = Active::None;
        self.open = None;
        self.queue.clear();
        self.opening_deadline = None;
    }

    /// A frame from the session, to send on the current transport.
    pub fn send(&mut self, frame: Frame) {
        match &self.active {
            Active::WebSocket | Active::Polling(_) => self.queue.push_back(frame),
            // No transport: the session has already given the frame up.
            Active::None => {}
        }
    }

    /// The session received the server's open packet on the transport being
    /// opened: the session's requests (and the upgrade probe) can start.
    pub fn opened(&mut self, open: &OpenPacket) {
        if self.open.is_some() || matches!(self.active, Active::None) {
            return;
        }
        self.open = Some(Opened {
            sid: open.sid.clone(),
            max_payload: open.max_payload,
            upgradable: open.upgrades.iter().any(|u| u == "websocket"),
        });
        self.opening_deadline = None;
        if matches!(self.active, Active::Polling(_)) {
            self.memory.polling_opened(self.fell_back.is_some());
        }
        self.fell_back = None;
    }

    /// A GET (the handshake's or the session's) completed: the frames its body
    /// carried, for the session, in order.
    pub fn get_done(&mut self, result: Result<&str, String>) -> Vec<Frame> {
        let Active::Polling(polling) = &mut self.active else {
            return Vec::new();
        };
        polling.get = false;
        match result {
            // An empty answer carries nothing (a server releasing the request).
            Ok("") => Vec::new(),
            Ok(body) => engineio::payload_to_frames(body).unwrap_or_else(|e| {
                self.lose(Failure::Payload(e));
                Vec::new()
            }),
            Err(why) => {
                self.polling_failed(why);
                Vec::new()
            }
        }
    }

    /// A POST completed.
    pub fn post_done(&mut self, result: Result<(), String>) {
        if let Active::Polling(polling) = &mut self.active {
            polling.post = false;
        }
        if let Err(why) = result {
            self.polling_failed(why);
        }
    }

    /// The WebSocket carrying the session (or being opened) failed or closed.
    /// Before the open packet, with [`Transports::WebSocketOrPolling`], the
    /// attempt goes on over long-polling; otherwise the transport is lost.
    pub fn websocket_failed(&mut self, why: String, now: Time) {
        if !matches!(self.active, Active::WebSocket) {
            return;
        }
        if self.open.is_none() && self.config.transports == Transports::WebSocketOrPolling {
            self.open_kind(Transport::Polling, Some(why), now);
        } else {
            self.lose(Failure::Transport(why));
        }
    }

    /// The probe WebSocket's first frame from the server, or why there is none.
    pub fn probe_done(&mut self, answer: Result<Frame, String>) {
        let Active::Polling(polling) = &mut self.active else {
            return;
        };
        if polling.upgrade != ProbeStage::Probing {
            return;
        }
        let answered = answer.and_then(|frame| {
            match Packet::decode(frame) {
                Ok(Packet::Pong(data)) if data == "probe" => Ok(()),
                Ok(_) => Err(ProtocolError::Unexpected("invalid probe response")),
                Err(e) => Err(ProtocolError::from(e)),
            }
            .map_err(|e| format!("the probe was not answered with 3probe: {e}"))
        });
        polling.probe_deadline = None;
        match answered {
            Ok(()) => polling.upgrade = ProbeStage::Paused,
            Err(why) => self.probe_failed(why),
        }
    }

    /// The `5` of [`Step::Upgrade`] was sent on the probe's WebSocket, or could
    /// not be (then the server never saw it: polling goes on).
    pub fn upgrade_sent(&mut self, result: Result<(), String>) {
        let Active::Polling(polling) = &mut self.active else {
            return;
        };
        if polling.upgrade != ProbeStage::Sending {
            return;
        }
        match result {
            Ok(()) => {
                self.active = Active::WebSocket;
                self.memory.upgraded();
                // The frames that waited follow, as sends.
                self.upgraded = true;
            }
            Err(why) => self.probe_failed(why),
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) should be called.
    pub fn poll_timeout(&self) -> Option<Time> {
        let probe = match &self.active {
            Active::Polling(polling) => polling.probe_deadline,
            Active::None | Active::WebSocket => None,
        };
        match (self.opening_deadline, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time `now` was reached: a transport that has not brought the open packet
    /// within the open timeout has failed; a probe not answered within the probe
    /// timeout has failed (polling goes on).
    pub fn handle_timeout(&mut self, now: Time) {
        if let Active::Polling(polling) = &mut self.active
            && polling.probe_deadline.is_some_and(|at| now >= at)
        {
            polling.probe_deadline = None;
            let why = format!(
                "no answer to the probe within {}",
                DisplayDuration(self.config.probe_timeout)
            );
            self.probe_failed(why);
        }
        if self.opening_deadline.is_none_or(|at| now < at) {
            return;
        }
        self.opening_deadline = None;
        let why = format!(
            "no handshake within {}",
            DisplayDuration(self.config.open_timeout)
        );
        if matches!(self.active, Active::WebSocket) {
            self.websocket_failed(why, now);
        } else {
            self.polling_failed(why);
        }
    }

    /// The next thing for the shell to do, at `now`.
    pub fn poll_step(&mut self, now: Time) -> Option<Step> {
        if std::mem::take(&mut self.close_pending) {
            return Some(Step::Close);
        }
        if let Some(open) = self.open_pending.take() {
            return Some(open);
        }
        if let Some(failure) = self.lost.take() {
            return Some(Step::Lost(failure));
        }
        if let Some(why) = self.probe_failure.take() {
            return Some(Step::ProbeFailed(why));
        }
        if std::mem::take(&mut self.upgraded) {
            return Some(Step::Upgraded);
        }
        match self.active {
            Active::WebSocket => self.queue.pop_front().map(Step::Send),
            Active::Polling(_) => self.advance(now),
            Active::None => None,
        }
    }

    /// The session is closed, on long-polling: one last POST carrying what it
    /// left (its close packet), all of it, to send after the POST in flight if
    /// any (then close the transport); `None` when nothing is left or the
    /// transport is not long-polling. Nothing new starts. (On a WebSocket its
    /// frames are ordinary [`Step::Send`]s.)
    pub fn goodbye(&mut self) -> Option<Step> {
        let (Active::Polling(_), Some(open)) = (&self.active, &self.open) else {
            return None;
        };
        if self.queue.is_empty() {
            return None;
        }
        let sid = open.sid.clone();
        let payload = engineio::frames_to_payload(&self.queue);
        self.queue.clear();
        Some(Step::Post {
            sid,
            t: cache_buster(self.config.seed, &mut self.requests),
            payload,
        })
    }

    /// Long-polling with the open packet in: the upgrade's last step when the
    /// pause found no request in flight, else a POST for what waits, a GET always
    /// waiting, and the probe when the server offers the upgrade.
    fn advance(&mut self, now: Time) -> Option<Step> {
        let open = self.open.as_ref()?;
        let may_probe = match self.config.transports {
            Transports::PollingThenUpgrade => true,
            Transports::WebSocketOrPolling => self.memory.may_probe(),
            Transports::WebSocketOnly | Transports::PollingOnly => false,
        } && open.upgradable;
        let Active::Polling(polling) = &mut self.active else {
            return None;
        };
        match polling.upgrade {
            ProbeStage::Paused if !polling.get && !polling.post => {
                polling.upgrade = ProbeStage::Sending;
                return Some(Step::Upgrade(Packet::Upgrade.into_frame()));
            }
            ProbeStage::Paused | ProbeStage::Sending => return None,
            ProbeStage::None | ProbeStage::Probing => {}
        }
        if !polling.post && !self.queue.is_empty() {
            polling.post = true;
            return Some(Step::Post {
                sid: open.sid.clone(),
                t: cache_buster(self.config.seed, &mut self.requests),
                payload: engineio::take_payload(&mut self.queue, Some(open.max_payload)),
            });
        }
        // Counted after the POST took its frames.
        let backlogged = self
            .config
            .max_queued
            .is_some_and(|max| self.queue.len() >= max);
        if !polling.get && !backlogged {
            polling.get = true;
            return Some(Step::Get {
                sid: open.sid.clone(),
                t: cache_buster(self.config.seed, &mut self.requests),
            });
        }
        if may_probe && !polling.probed {
            polling.probed = true;
            polling.upgrade = ProbeStage::Probing;
            polling.probe_deadline = Some(now + self.config.probe_timeout);
            return Some(Step::Probe {
                sid: open.sid.clone(),
                request: Packet::Ping("probe".to_owned()).into_frame(),
            });
        }
        None
    }

    fn probe_failed(&mut self, why: String) {
        if let Active::Polling(polling) = &mut self.active {
            polling.upgrade = ProbeStage::None;
            polling.probe_deadline = None;
        }
        self.memory.probe_failed();
        self.probe_failure = Some(why);
    }

    /// A polling request failed: the transport is lost. After a failed WebSocket
    /// the reason names both failures.
    fn polling_failed(&mut self, why: String) {
        if !matches!(self.active, Active::Polling(_)) {
            return;
        }
        let why = match self.fell_back.take() {
            Some(websocket) => format!("{websocket}; then {why}"),
            None => why,
        };
        self.lose(Failure::Transport(why));
    }

    fn lose(&mut self, failure: Failure) {
        self.close();
        self.lost = Some(failure);
    }
}

/// A duration in whole seconds or else milliseconds, as `Debug` writes them
/// (`20s`, `400ms`), without its general formatting code (the browser bundle
/// counts its bytes).
struct DisplayDuration(Duration);

impl std::fmt::Display for DisplayDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let millis = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        let (n, unit) = if millis % 1000 == 0 {
            (millis / 1000, "s")
        } else {
            (millis, "ms")
        };
        write!(f, "{n}{unit}")
    }
}

/// A fresh `t=`: the seed and a request counter, so that no cache along the way
/// can answer with an old response.
fn cache_buster(seed: u64, requests: &mut u64) -> String {
    *requests += 1;
    format!("{seed:x}.{requests}")
}

#[cfg(test)]
mod tests;
