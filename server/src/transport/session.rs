//! The task behind every Engine.IO session.
//!
//! The task owns its [`Machine`] (the sans-I/O session and the application on top)
//! and whatever transport the session has right now: a WebSocket, or a pending
//! long-polling GET. It waits on everything that can happen — a WebSocket message,
//! a polling request or an upgrade handed over by the routes, a command from the
//! application's bounded [`Link`](crate::engine), the session's next timer, the
//! kill switch and server shutdown — feeds it to the machine, and sends the
//! machine's frames on the current transport. Frames queued before an upgrade go
//! out on the new transport in order: nothing is lost or reordered.
//!
//! Bounded memory: while polling, at most `outbound_limit` frames wait for the
//! client's next GET; past that the client is disconnected as too slow. On
//! WebSocket a write that blocks (a client that stopped reading) is abandoned as
//! soon as the application's queue overflows and pulls the kill switch.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use protocol::engineio::frames_to_payload;
use protocol::session::{CloseReason, Probe, ProtocolError, Transport};
use protocol::websocket::{FrameError, Message};
use protocol::{Frame, Time};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::inbox::{Inbox, InboxReceiver, Input, PollError};
use super::registry::SessionRegistry;
use super::ws::{WebSocket, WsError};
use crate::engine::{DisconnectReason, Factory, LinkReceiver, Machine};
use crate::stop::Watch;

/// How long the final frames (the close packet) may take to go out.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// Most extra messages or commands taken at once before writing: enough to batch
/// a burst into one write (a broadcast storm's frames fill `ws::WRITE_BUFFER`),
/// few enough that one busy client cannot starve the timers and other inputs of
/// its own task for long (a turn handles at most this many, then writes and
/// looks at everything else).
const BATCH: usize = 256;

/// The pause between a CONNECT reply and the events sent on connect.
const CONNECT_PACING: Duration = Duration::from_millis(1);

/// How long a polling GET that arrives while an upgrade probe is open waits for
/// what the probe's WebSocket may already have on its way (a long-poll GET
/// waits anyway; the reactor may not have seen those bytes yet).
const PROBE_GRACE: Duration = Duration::from_millis(5);

/// A noop packet: what a long-polling GET gets when it must return with nothing.
const NOOP: &str = "6";

pub(super) struct SessionTask<F: Factory> {
    endpoint: Arc<SessionRegistry<F>>,
    sid: String,
    machine: F::Machine,
    /// The WebSocket the session runs on, once it does. One task reads and
    /// writes it, never both at once, so it is not split.
    active: Option<Box<WebSocket>>,
    /// A WebSocket probing for an upgrade.
    probe: Option<Box<WebSocket>>,
    /// A long-polling GET waiting for frames.
    pending_get: Option<oneshot::Sender<Result<String, PollError>>>,
    /// What makes long-polling requests safe to send again: allocated by the
    /// first polling request, so a WebSocket session holds one word for it.
    polls: Option<Box<Polls>>,
    /// The time of this turn of the task's loop, once read: one clock read
    /// for a message and the replies its handlers queue. Forgotten when the
    /// task waits.
    turn_time: Option<Time>,
}

impl<F: Factory> SessionTask<F> {
    /// The task of a session just opened; `ws` is its WebSocket if it opened on one.
    pub(super) fn new(
        endpoint: Arc<SessionRegistry<F>>,
        sid: String,
        machine: F::Machine,
        ws: Option<WebSocket>,
    ) -> Self {
        SessionTask {
            endpoint,
            sid,
            machine,
            active: ws.map(Box::new),
            probe: None,
            pending_get: None,
            polls: None,
            turn_time: None,
        }
    }

    /// The task: an `async` block rather than an `async fn`, because an async fn
    /// moves its arguments into locals and its state would hold the task twice.
    #[allow(clippy::manual_async_fn)] // on purpose: see above
    pub(super) fn run(
        mut self,
        commands: LinkReceiver<<F::Machine as Machine>::Command>,
        inputs: InboxReceiver,
    ) -> impl Future<Output = ()> {
        async move {
            // Everything the loop waits on that outlives one turn of it is made once:
            // a turn (one per burst of traffic) then costs no timer registration and no
            // waiter-list insertion.
            let endpoint = self.endpoint.clone();
            let kill = commands.kill_switch();
            let shutdown = &endpoint.shutdown;
            let killed = kill.cancelled();
            let shut_down = shutdown.cancelled();
            let timer = tokio::time::sleep(Duration::ZERO);
            tokio::pin!(killed, shut_down, timer);
            let (mut kill_watch, mut shutdown_watch) = (Watch::default(), Watch::default());
            let mut armed = None;
            let limit = self.endpoint.factory.outbound_limit();
            // Whether this turn already wrote what the handlers queued in it.
            let mut replied = false;
            loop {
                // A new turn: what the handlers send during it (replies
                // through this connection's own link) is taken below, so it
                // must not wake the task for another turn.
                commands.busy();
                self.machine.dispatch();
                if self.machine.engine().is_closed() {
                    break;
                }
                match self.machine.engine().transport() {
                    Transport::WebSocket => {
                        let connect_answered = self.machine.take_connect_answered();
                        if let Some(ws) = &mut self.active {
                            let writes = self.machine.engine().pending_transmits() > 0;
                            let flushed = tokio::select! {
                                r = flush(ws, &mut self.machine) => r,
                                () = kill_watch.fired(kill, killed.as_mut()) => {
                                    self.on_kill(&commands);
                                    Ok(())
                                }
                                () = shutdown_watch.fired(shutdown, shut_down.as_mut()) => {
                                    self.on_shutdown(&commands);
                                    Ok(())
                                }
                            };
                            if writes {
                                // A write may wait on a slow client: what follows
                                // reads the clock again.
                                self.turn_time = None;
                            }
                            if let Err(e) = flushed {
                                self.machine
                                    .transport_closed(CloseReason::Transport(e.to_string()));
                                continue;
                            }
                        }
                        // A GET left over from before the upgrade: release it.
                        self.answer_get(NOOP.to_owned());
                        // What the handlers just queued for this client (an echo
                        // and its ack, the events sent on connect) goes out now,
                        // in one write, instead of waiting for another turn. Once
                        // per turn, so that a stream of commands cannot starve
                        // reads and timers.
                        if !replied && self.take_commands(&commands, None, BATCH) > 0 {
                            replied = true;
                            if connect_answered {
                                // The events sent on connect follow the CONNECT
                                // reply a moment later, in a write of their own,
                                // as Socket.IO's Node server sends them (after
                                // the reply's write completes): clients that
                                // handle the messages of one network read
                                // together, like the upstream compliance suite,
                                // see the reply first, on its own.
                                tokio::time::sleep(CONNECT_PACING).await;
                                self.turn_time = None;
                            }
                            continue;
                        }
                    }
                    Transport::Polling => {
                        // What the handlers queued joins the answer to the GET.
                        if self.take_commands(&commands, None, BATCH) > 0 {
                            self.machine.dispatch();
                        }
                        if self.machine.engine().pending_transmits() > limit {
                            self.machine.close(DisconnectReason::SlowClient);
                            continue;
                        }
                        if self.machine.engine().pending_transmits() > 0 {
                            if self.pending_get.is_some() {
                                let payload = self.drain_payload();
                                self.answer_get(payload);
                            }
                        } else if self.machine.engine().is_probing() {
                            // Let the client pause polling while the upgrade completes.
                            self.answer_get(NOOP.to_owned());
                        }
                    }
                }
                if self.machine.engine().is_closed() {
                    continue;
                }
                replied = false;

                let factory = &self.endpoint.factory;
                let wake = self.machine.poll_timeout().map(|t| factory.instant(t));
                if wake != armed {
                    if let Some(deadline) = wake {
                        timer.as_mut().reset(deadline);
                    }
                    armed = wake;
                }
                self.turn_time = None;
                tokio::select! {
                    biased;
                    () = shutdown_watch.fired(shutdown, shut_down.as_mut()) => {
                        self.on_shutdown(&commands);
                    }
                    () = kill_watch.fired(kill, killed.as_mut()) => {
                        self.on_kill(&commands);
                    }
                    message = next_message(&mut self.active) => {
                        // One clock read for what arrived together.
                        let now = self.now();
                        self.on_message(message, now);
                        // Whatever else the client already sent is handled now, so the
                        // replies go out together in one write.
                        for _ in 0..BATCH {
                            if self.machine.engine().is_closed() {
                                break;
                            }
                            let Some(Some(more)) = self.active.as_mut().and_then(|ws| ws.next_now()) else {
                                break;
                            };
                            self.on_message(Some(more), now);
                        }
                    }
                    // Rare (an upgrade, a polling request): boxed, so that every idle
                    // session's task does not reserve room for them.
                    message = next_message(&mut self.probe) => Box::pin(self.on_probe(message)).await,
                    input = inputs.0.recv() => {
                        // What the probing WebSocket already received comes first:
                        // a client that sent `5` then polls must find the session
                        // upgraded, whichever connection the server reads first.
                        while let Some(Some(message)) =
                            self.probe.as_mut().and_then(|ws| ws.next().now_or_never())
                        {
                            Box::pin(self.on_probe(Some(message))).await;
                        }
                        // Only a GET waits: it carries nothing, and after `5` it must
                        // be refused. A POST carries packets the client sent while
                        // polling: taken as it comes.
                        if matches!(input, Input::Get { .. }) && self.probe.is_some() {
                            Box::pin(self.probe_grace()).await;
                        }
                        Box::pin(self.on_input(input)).await;
                    }
                    command = commands.recv() => {
                        // With what the application queued meanwhile: one write
                        // for a burst of broadcasts instead of one per frame.
                        self.take_commands(&commands, Some(command), BATCH);
                    }
                    () = get_abandoned(&mut self.pending_get) => {
                        self.pending_get = None;
                        self.machine.transport_closed(CloseReason::Transport(
                            "long-polling request aborted".into(),
                        ));
                    }
                    () = &mut timer, if armed.is_some() => {
                        // Re-armed next turn, from the session's next deadline.
                        armed = None;
                        let now = self.now();
                        self.machine.handle_timeout(now);
                    }
                }
            }
            self.machine.dispatch();
            Box::pin(self.goodbye(&inputs.0)).await;
            // New requests for this sid are refused from now on.
            self.endpoint.sessions().remove(&self.sid);
            info!(sid = %self.sid, reason = %self.machine.reason(), "session closed");
        }
    }

    /// Hands the machine `first` (a command already received) and up to `max`
    /// commands already queued; returns how many.
    fn take_commands(
        &mut self,
        commands: &LinkReceiver<<F::Machine as Machine>::Command>,
        first: Option<<F::Machine as Machine>::Command>,
        max: usize,
    ) -> usize {
        let mut next = first;
        let mut taken = 0;
        while taken < max {
            let Some(command) = next.take().or_else(|| commands.try_recv()) else {
                break;
            };
            // The turn's time: read here only if nothing else in the turn did.
            let now = self.now();
            self.machine.handle_command(command, now);
            taken += 1;
        }
        taken
    }

    /// The time of this turn, read from the clock the first time it is asked.
    fn now(&mut self) -> Time {
        *self
            .turn_time
            .get_or_insert_with(|| self.endpoint.factory.now())
    }

    /// The server is shutting down. What the application already queued was
    /// accepted: it goes out before the close packet.
    fn on_shutdown(&mut self, commands: &LinkReceiver<<F::Machine as Machine>::Command>) {
        self.take_commands(commands, None, usize::MAX);
        self.machine.close(DisconnectReason::ServerShutdown);
    }

    /// The application pulled the kill switch (or the queue overflowed).
    fn on_kill(&mut self, commands: &LinkReceiver<<F::Machine as Machine>::Command>) {
        let reason = commands.kill_reason();
        self.machine.close(reason);
    }

    /// Everything queued, as one long-polling body.
    fn drain_payload(&mut self) -> String {
        let frames: Vec<Frame> = std::iter::from_fn(|| self.machine.poll_transmit()).collect();
        frames_to_payload(&frames)
    }

    fn on_message(&mut self, message: Option<Result<Message, WsError>>, now: Time) {
        let frame = match message {
            Some(Ok(Message::Text(text))) => Frame::Text(text),
            Some(Ok(Message::Binary(bytes))) => Frame::Binary(bytes),
            Some(Ok(Message::Close(_))) => {
                self.machine.transport_closed(CloseReason::PeerClosed);
                return;
            }
            // WebSocket-level pings are answered by the WebSocket itself.
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return,
            Some(Err(e)) => {
                warn!(sid = %self.sid, error = %e, "websocket error");
                let reason = self.read_error(e);
                self.machine.transport_closed(reason);
                return;
            }
            None => {
                self.machine
                    .transport_closed(CloseReason::Transport("connection lost".into()));
                return;
            }
        };
        if let Err(e) = self.machine.handle_frame(frame, now) {
            warn!(sid = %self.sid, error = %e, "closing session: invalid input");
        }
    }

    /// Why the session ends after a read error: a message past maxPayload is too
    /// large (1009), any other invalid frame the peer's protocol error (1002, or
    /// 1007 on the wire for invalid UTF-8: see `WebSocket::close`); anything else
    /// is the transport failing.
    fn read_error(&self, error: WsError) -> CloseReason {
        match error {
            WsError::Frame(FrameError::TooLarge { size, .. }) => {
                CloseReason::Protocol(ProtocolError::PayloadTooLarge {
                    size: usize::try_from(size).unwrap_or(usize::MAX),
                    max: self.endpoint.factory.engine_config().max_payload,
                })
            }
            WsError::Frame(e) => CloseReason::Protocol(ProtocolError::WebSocket(e)),
            e => CloseReason::Transport(e.to_string()),
        }
    }

    async fn on_probe(&mut self, message: Option<Result<Message, WsError>>) {
        let frame = match message {
            Some(Ok(Message::Text(text))) => Some(Frame::Text(text)),
            Some(Ok(Message::Binary(bytes))) => Some(Frame::Binary(bytes)),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => return,
            _ => None,
        };
        let outcome = frame.map(|f| self.machine.handle_probe_frame(f));
        match outcome {
            Some(Ok(Probe::Reply(reply))) => {
                if let Some(ws) = &mut self.probe {
                    let mut reply = Some(reply);
                    if ws.write_frames(|| reply.take()).await.is_err() {
                        self.probe = None;
                        self.machine.probe_failed();
                    }
                }
            }
            Some(Ok(Probe::Upgraded)) => {
                debug!(sid = %self.sid, "upgraded to websocket");
                self.active = self.probe.take();
            }
            Some(Err(e)) => {
                debug!(sid = %self.sid, error = %e, "upgrade probe refused");
                if let Some(mut ws) = self.probe.take() {
                    let _ = ws.close(None).await;
                }
                self.machine.probe_failed();
            }
            None => {
                self.probe = None;
                self.machine.probe_failed();
            }
        }
    }

    /// A polling GET came while a probe WebSocket is open: its messages sent
    /// before the request (`2probe`, `5`) may be in flight, not yet reported
    /// readable. They are handled first, for up to [`PROBE_GRACE`] or until the
    /// upgrade completes or the probe ends, so that a GET sent after `5` is
    /// refused as the protocol says, whichever connection the server reads first.
    async fn probe_grace(&mut self) {
        let grace = tokio::time::sleep(PROBE_GRACE);
        tokio::pin!(grace);
        while self.probe.is_some() && self.machine.engine().transport() == Transport::Polling {
            tokio::select! {
                biased;
                message = next_message(&mut self.probe) => self.on_probe(message).await,
                () = &mut grace => break,
            }
        }
    }

    async fn on_input(&mut self, input: Input) {
        let now = self.now();
        // A deadline that passed while the timer had not fired yet still counts:
        // a request arriving after the ping timeout finds the session closed.
        if self.machine.poll_timeout().is_some_and(|t| t <= now) {
            self.machine.handle_timeout(now);
        }
        if self.machine.engine().is_closed() {
            // Dropping the request's reply channel answers it with a 400.
            return;
        }
        let upgraded = self.machine.engine().transport() == Transport::WebSocket;
        match input {
            Input::Get { reply, .. } if upgraded => {
                let _ = reply.send(Err(PollError::Upgraded));
            }
            Input::Get { reply, t }
                if self
                    .polls
                    .as_deref()
                    .is_some_and(|p| p.is_answered(t.as_deref())) =>
            {
                // Sent again: its first answer never arrived. The same frames.
                let answered = self.polls.as_deref().and_then(|p| p.answered.as_ref());
                let payload = answered.map(|(_, payload)| payload.clone());
                let _ = reply.send(Ok(payload.unwrap_or_else(|| NOOP.to_owned())));
                debug!(sid = %self.sid, "a polling GET sent again gets its answer again");
            }
            Input::Get { reply, t }
                if self.pending_get.is_some()
                    && t.is_some()
                    && self.polls.as_deref().is_some_and(|p| p.pending_t == t) =>
            {
                // Sent again while the first is still pending here: that one's
                // connection is gone; this one waits in its place.
                self.pending_get = Some(reply);
            }
            Input::Get { reply, .. } if self.pending_get.is_some() => {
                let _ = reply.send(Err(PollError::DuplicateGet));
                // Overlapping GETs: the client lost track of its transport (as
                // Node's server, a transport error, which recovery may resume).
                self.machine.close(DisconnectReason::Transport(
                    PollError::DuplicateGet.to_string(),
                ));
            }
            Input::Get { reply, t } => {
                // A new GET: the client got the previous answer.
                let polls = self.polls.get_or_insert_with(Box::default);
                polls.answered = None;
                polls.pending_t = t;
                self.pending_get = Some(reply);
            }
            Input::Post { reply, .. } if upgraded => {
                let _ = reply.send(Err(PollError::Upgraded));
            }
            Input::Post { reply, t, .. }
                if t.is_some() && self.polls.as_deref().is_some_and(|p| p.posted_t == t) =>
            {
                // Sent again after it was taken: its packets are not taken twice.
                let _ = reply.send(Ok(()));
            }
            Input::Post { body, reply, t } => {
                self.polls.get_or_insert_with(Box::default).posted_t = t;
                let result = match protocol::engineio::payload_to_frames(&body) {
                    Ok(frames) => frames
                        .into_iter()
                        .try_for_each(|f| self.machine.handle_frame(f, now))
                        .map_err(|e| PollError::BadPayload(e.to_string())),
                    Err(e) => {
                        let e = protocol::session::ProtocolError::from(e);
                        self.machine
                            .transport_closed(CloseReason::Protocol(e.clone()));
                        Err(PollError::BadPayload(e.to_string()))
                    }
                };
                if let Err(e) = &result {
                    warn!(sid = %self.sid, error = %e, "closing session: invalid input");
                }
                let _ = reply.send(result);
            }
            Input::PostFailed if upgraded => {}
            Input::PostFailed => {
                debug!(sid = %self.sid, "closing session: a POST was cut mid-body");
                self.machine.transport_closed(CloseReason::Transport(
                    "polling request cut before its body was complete".into(),
                ));
            }
            Input::Upgrade(ws) => {
                if self.probe.is_some() || !self.machine.engine().can_upgrade() {
                    debug!(sid = %self.sid, "second websocket for the session refused");
                    let mut ws = ws;
                    let _ = ws.close(None).await;
                } else {
                    self.probe = Some(ws);
                }
            }
        }
    }

    /// The remaining frames (the close packet) on the current transport, then a
    /// WebSocket close frame whose code and reason say why, bounded in time.
    async fn goodbye(&mut self, inputs: &Inbox) {
        let reason = self.machine.reason();
        if let Some(mut ws) = self.probe.take() {
            let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, ws.close(None)).await;
        }
        match self.active.take() {
            Some(mut ws) => {
                let (code, text) = close_code(&reason);
                let machine = &mut self.machine;
                let goodbye = async {
                    // After the client's close frame (answered already) nothing
                    // more may be sent: the remaining frames are dropped then.
                    match flush(&mut ws, machine).await {
                        Ok(()) | Err(WsError::Closing) => {}
                        Err(e) => return Err(e),
                    }
                    ws.close_and_drain(Some((code, &text))).await
                };
                if let Ok(Err(e)) = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, goodbye).await {
                    debug!(sid = %self.sid, error = %e, "closing the websocket failed");
                }
            }
            None => {
                // Long-polling: the last frames go to the pending GET. A client that
                // closed the session itself may have a GET racing its close POST:
                // that one is answered too. An empty answer is a noop.
                let closed_by_client =
                    self.machine.engine().close_reason() == Some(&CloseReason::PeerClosed);
                if self.pending_get.is_none() && closed_by_client {
                    let deadline = tokio::time::Instant::now() + CLOSE_FLUSH_TIMEOUT;
                    while let Ok(input) = tokio::time::timeout_at(deadline, inputs.recv()).await {
                        match input {
                            Input::Get { reply, t } => {
                                self.pending_get = Some(reply);
                                self.polls.get_or_insert_with(Box::default).pending_t = t;
                                break;
                            }
                            Input::Post { reply, .. } => {
                                let _ = reply.send(Err(PollError::Closed));
                            }
                            Input::Upgrade(_) | Input::PostFailed => {}
                        }
                    }
                }
                let mut payload = self.drain_payload();
                if payload.is_empty() {
                    payload = NOOP.to_owned();
                }
                self.answer_get(payload);
            }
        }
    }

    /// Answers the pending GET, if any, with `payload`, and keeps the payload
    /// for a request with the same cache buster: one that a browser sends again
    /// because the first one's connection failed, perhaps after the answer left
    /// here (Chromium retries a GET whose reused connection closes before any
    /// response byte). It gets the same frames again instead of losing them.
    fn answer_get(&mut self, payload: String) {
        let Some(get) = self.pending_get.take() else {
            return;
        };
        if let Some(polls) = self.polls.as_deref_mut()
            && let Some(t) = polls.pending_t.take()
        {
            polls.answered = Some((t, payload.clone()));
        }
        let _ = get.send(Ok(payload));
    }
}

/// The long-polling requests' cache busters (`t`), so that a request sent again
/// is answered as the first one was: a GET with the frames that went to it, a
/// POST without taking its packets twice.
#[derive(Debug, Default)]
struct Polls {
    /// The pending GET's.
    pending_t: Option<String>,
    /// The last GET answered: its `t` and its answer, until the next GET shows
    /// that the client got it.
    answered: Option<(String, String)>,
    /// The last POST taken.
    posted_t: Option<String>,
}

impl Polls {
    /// Whether `t` is the cache buster of the last GET answered.
    fn is_answered(&self, t: Option<&str>) -> bool {
        matches!((&self.answered, t), (Some(answered), Some(t)) if answered.0 == t)
    }
}

/// Writes every frame the machine has for the client, then flushes: one write
/// for the batch (more only past `ws::WRITE_BUFFER`).
async fn flush<M: Machine>(ws: &mut WebSocket, machine: &mut M) -> Result<(), WsError> {
    if machine.engine().pending_transmits() == 0 {
        return Ok(());
    }
    ws.write_frames(|| machine.poll_transmit()).await
}

async fn next_message(ws: &mut Option<Box<WebSocket>>) -> Option<Result<Message, WsError>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

async fn get_abandoned(get: &mut Option<oneshot::Sender<Result<String, PollError>>>) {
    match get {
        Some(sender) => sender.closed().await,
        None => std::future::pending().await,
    }
}

/// The WebSocket close code and reason for a disconnect (RFC 6455 §7.4.1).
fn close_code(reason: &DisconnectReason) -> (u16, String) {
    let code = match reason {
        DisconnectReason::MessageTooLarge(_) => 1009,
        DisconnectReason::Protocol(_) => 1002,
        DisconnectReason::SlowClient => 1008,
        DisconnectReason::ServerShutdown => 1001,
        _ => 1000,
    };
    // A close reason must fit in a control frame: 123 bytes.
    let mut text = reason.to_string();
    if text.len() > 123 {
        let mut end = 120;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    (code, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_say_why() {
        assert_eq!(close_code(&DisconnectReason::ServerShutdown).0, 1001);
        assert_eq!(
            close_code(&DisconnectReason::MessageTooLarge("x".into())).0,
            1009
        );
        let (_, text) = close_code(&DisconnectReason::Protocol("é".repeat(100)));
        assert!(text.len() <= 123);
    }
}
