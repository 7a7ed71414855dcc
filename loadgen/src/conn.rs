//! One generated client connection, light enough to open ten thousand of:
//! a tokio-tungstenite WebSocket driven directly by the protocol crate's
//! `ClientSession` (Socket.IO), or raw text frames (the bare WebSocket ceiling).
//!
//! Every Socket.IO frame comes from the protocol crate; the only text built here
//! is the request URL and the bare server's own frames ([`crate::bare`]).
//!
//! The session handles the handshake, heartbeats and everything the server
//! sends, except the benchmark's own data path: echo requests are encoded by
//! the protocol crate (`socketio::event_frame`) with the request's `seq` as
//! their ack id, and their acks, echoed events and news are recognised here
//! ([`quick_ack`], [`quick_echo`], [`quick_news`]; an ack of another shape is
//! decoded by the protocol crate's packet decoder). On a two-core machine the
//! generator shares the cores with the server, so each microsecond it spends
//! per round trip is one the fastest server cannot use.

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use protocol::Frame;
use protocol::args::Args;
use protocol::engineio;
use protocol::session::{ClientConfig, ClientEvent, ClientSession, CloseReason};
use protocol::socketio;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::bare;
use crate::source::Sources;

/// The event the benchmarks echo (every server under test echoes it and acks it).
pub const ECHO: &str = "echo";

/// Which protocol a server under test speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Socket.IO v5 over Engine.IO v4 (duplex, Node socket.io, socketioxide).
    SocketIo,
    /// The bare WebSocket server's text frames ([`crate::bare`]).
    Bare,
}

/// What the benchmarks care about in what arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// The echoed event for request `seq`.
    Echo(u64),
    /// The ack of request `seq`.
    Ack(u64),
    /// A `news` broadcast carrying publish number `seq`.
    News(u64),
    /// Anything else (the greeting, duplex's `handshake` event, ...).
    Other,
}

/// A connected client, greeted by the server.
#[derive(Debug)]
pub enum Conn {
    /// Boxed, as the other: a few hundred bytes each, moved between tasks.
    Sio(Box<SioConn>),
    Bare(Box<BareConn>),
}

impl Conn {
    /// Opens a TCP connection from the next source address, does the WebSocket
    /// handshake and the protocol's, and waits for the server's greeting.
    pub async fn open(
        dialect: Dialect,
        server: SocketAddr,
        sources: &Sources,
    ) -> anyhow::Result<Conn> {
        let stream = sources
            .connect(server)
            .await
            .with_context(|| format!("tcp connect to {server}"))?;
        match dialect {
            Dialect::SocketIo => SioConn::open(stream, server)
                .await
                .map(|c| Conn::Sio(Box::new(c))),
            Dialect::Bare => BareConn::open(stream, server)
                .await
                .map(|c| Conn::Bare(Box::new(c))),
        }
    }

    /// Queues an echo request carrying `seq` (sent at the next [`flush`](Self::flush)).
    pub fn queue_echo(&mut self, seq: u64) -> anyhow::Result<()> {
        match self {
            Conn::Sio(c) => c.queue_echo(seq),
            Conn::Bare(c) => {
                c.queue(bare::echo_request(seq));
                Ok(())
            }
        }
    }

    /// Queues a `publish` of `text` (sent at the next flush).
    pub fn queue_publish(&mut self, text: String) -> anyhow::Result<()> {
        match self {
            Conn::Sio(c) => c.queue_publish(text),
            Conn::Bare(c) => {
                c.queue(bare::publish_request(&text));
                Ok(())
            }
        }
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        match self {
            Conn::Sio(c) => c.flush().await,
            Conn::Bare(c) => c.flush().await,
        }
    }

    /// The next thing that arrives (heartbeats are answered on the way).
    pub async fn next(&mut self) -> anyhow::Result<Incoming> {
        match self {
            Conn::Sio(c) => c.next_incoming().await,
            Conn::Bare(c) => c.next_incoming().await,
        }
    }
}

/// The generator's WebSocket settings. tungstenite's default read buffer is
/// 128 KiB, zero-filled up to its capacity before every read: ten thousand
/// clients would hold 1.25 GiB and spend their CPU in memset. Frames here are
/// small; the buffer still grows for a larger one.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

/// The Engine.IO WebSocket URL of a server.
fn socketio_url(server: SocketAddr) -> String {
    format!("ws://{server}/socket.io/?EIO=4&transport=websocket")
}

fn frame_to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(t) => Message::text(t),
        Frame::Binary(b) => Message::binary(b),
    }
}

/// A Socket.IO client on one WebSocket: the protocol's `ClientSession`, a socket,
/// and a timer for the session's deadlines (dead server, ack timeouts).
#[derive(Debug)]
pub struct SioConn {
    ws: WebSocketStream<TcpStream>,
    session: ClientSession,
    epoch: Instant,
    timer: Pin<Box<Sleep>>,
    /// What the timer is armed for: at or before the session's next deadline.
    timer_at: Option<protocol::Time>,
    /// Frames queued to the socket but not flushed yet.
    unflushed: bool,
    /// Frames for the next flush, in the order they were asked for: the
    /// session's and the echo requests encoded here.
    outbox: Vec<Frame>,
    /// Count the pongs sent (the soak checks heartbeats went on).
    count_pongs: bool,
    pongs: u64,
}

impl SioConn {
    /// Does the WebSocket and Socket.IO handshakes on `stream` and waits for the
    /// server's greeting (`news`, the app contract's first event).
    pub async fn open(stream: TcpStream, server: SocketAddr) -> anyhow::Result<SioConn> {
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            socketio_url(server),
            stream,
            Some(ws_config()),
        )
        .await
        .context("websocket handshake")?;
        let epoch = Instant::now();
        let mut conn = SioConn {
            ws,
            // It asks for no acks: the echo requests' are matched by
            // `echo_ack`, and a late one is counted, a lost one is missing.
            session: ClientSession::new(ClientConfig::default()),
            epoch,
            timer: Box::pin(tokio::time::sleep_until(epoch + Duration::from_secs(3600))),
            timer_at: None,
            unflushed: false,
            outbox: Vec::new(),
            count_pongs: false,
            pongs: 0,
        };
        let mut connected = false;
        loop {
            match conn.next_event().await? {
                ClientEvent::Connected { .. } => connected = true,
                ClientEvent::ConnectError { message, .. } => {
                    anyhow::bail!("the server refused the namespace: {message}")
                }
                ClientEvent::Event { name, .. } if connected && name == "news" => return Ok(conn),
                _ => {}
            }
        }
    }

    /// Counts the pongs sent from now on.
    pub fn count_pongs(&mut self) {
        self.count_pongs = true;
    }

    /// Pings answered since [`count_pongs`](Self::count_pongs).
    pub fn pongs(&self) -> u64 {
        self.pongs
    }

    fn now(&self) -> protocol::Time {
        self.epoch.elapsed()
    }

    /// Moves what the session wants to send behind the frames already queued,
    /// so that everything goes out in the order it was asked for.
    fn take_session_frames(&mut self) {
        while let Some(frame) = self.session.poll_transmit() {
            if self.count_pongs
                && let Frame::Text(t) = &frame
                && matches!(
                    engineio::Packet::decode_text(t),
                    Ok(engineio::Packet::Pong(_))
                )
            {
                self.pongs += 1;
            }
            self.outbox.push(frame);
        }
    }

    /// Moves what is queued into the socket's write buffer.
    async fn queue_transmit(&mut self) -> anyhow::Result<()> {
        self.take_session_frames();
        for frame in std::mem::take(&mut self.outbox) {
            self.ws
                .feed(frame_to_message(frame))
                .await
                .context("websocket write")?;
            self.unflushed = true;
        }
        Ok(())
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.queue_transmit().await?;
        if self.unflushed {
            self.ws.flush().await.context("websocket flush")?;
            self.unflushed = false;
        }
        Ok(())
    }

    /// Queues `echo` with `{"seq": seq}`, asking for an ack with id `seq`: the
    /// ack is matched here, by [`quick_ack`] (the session never asks for acks
    /// in the generator, so no id of its own can collide).
    pub fn queue_echo(&mut self, seq: u64) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.session.is_connected(),
            "echo requested while not connected"
        );
        let args = Args::from(vec![json!({ "seq": seq })]);
        self.take_session_frames();
        self.outbox
            .push(socketio::event_frame("/", Some(seq), ECHO, &args, 0));
        Ok(())
    }

    pub fn queue_publish(&mut self, text: String) -> anyhow::Result<()> {
        let payload = protocol::app::Publish {
            text,
            channel: None,
        };
        self.session
            .emit_event::<protocol::app::PublishNews>(&payload)
            .context("emit publish")?;
        self.take_session_frames();
        Ok(())
    }

    /// Sends what is pending, then waits for the session's next event, feeding
    /// it frames and timer expiries. A closed session is an error.
    pub async fn next_event(&mut self) -> anyhow::Result<ClientEvent> {
        self.next_event_until(None)
            .await?
            .context("stopped without a stop token")
    }

    /// [`next_event`](Self::next_event), or `None` once `stop` is cancelled. The
    /// stop is only observed while waiting for the socket or a timer, never
    /// between taking a frame from the session and handing it to the socket.
    pub async fn next_event_until(
        &mut self,
        stop: Option<&CancellationToken>,
    ) -> anyhow::Result<Option<ClientEvent>> {
        loop {
            match self.next_item(stop, false).await? {
                Some(Item::Event(event)) => return Ok(Some(event)),
                // Not asked for: the fast path is off.
                Some(Item::Quick(_)) => {}
                None => return Ok(None),
            }
        }
    }

    /// The next event, or with `fast` a benchmark `news` or echoed event
    /// recognised without the session (see [`quick_news`], [`quick_echo`]).
    async fn next_item(
        &mut self,
        stop: Option<&CancellationToken>,
        fast: bool,
    ) -> anyhow::Result<Option<Item>> {
        let stopped = async {
            match stop {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(stopped);
        loop {
            if let Some(event) = self.session.poll_event() {
                if let ClientEvent::Closed(reason) = &event {
                    anyhow::bail!("session closed: {reason}");
                }
                return Ok(Some(Item::Event(event)));
            }
            self.flush().await?;
            // The timer is moved only to an earlier deadline. A later one (the
            // next ack's, the server's silence deadline pushed back by every
            // frame) waits for the armed timer, which then wakes early, is a
            // no-op for the session, and is re-armed: not a timer-wheel update
            // per round trip.
            if let Some(deadline) = self.session.poll_timeout()
                && self.timer_at.is_none_or(|armed| deadline < armed)
            {
                self.timer.as_mut().reset(self.epoch + deadline);
                self.timer_at = Some(deadline);
            }
            // Biased (no random draw per frame): the stop token, then the
            // socket, then the timer, which a ready frame never polls.
            tokio::select! {
                biased;
                () = &mut stopped => return Ok(None),
                message = self.ws.next() => {
                    let frame = match message {
                        Some(Ok(Message::Text(t))) => {
                            // The session has no event pending (else we would not be
                            // waiting), so this one comes after every event returned.
                            if fast {
                                if let Some(n) = quick_news(t.as_str()) {
                                    return Ok(Some(Item::Quick(Incoming::News(n))));
                                }
                                if let Some(n) = quick_echo(t.as_str()) {
                                    return Ok(Some(Item::Quick(Incoming::Echo(n))));
                                }
                            }
                            // Acks answer the echo requests sent above the
                            // session: never handed to it (it would drop them).
                            if let Some(ack) = echo_ack(t.as_str()) {
                                return Ok(Some(Item::Quick(ack)));
                            }
                            Frame::Text(t.as_str().to_owned())
                        }
                        Some(Ok(Message::Binary(b))) => Frame::Binary(b.to_vec()),
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                        Some(Ok(Message::Close(close))) => {
                            let now = self.now();
                            let why = close.map_or_else(|| "no reason".to_owned(), |c| format!("{} {}", c.code, c.reason));
                            self.session.transport_closed(CloseReason::Transport(format!("websocket closed by the server: {why}")), now);
                            continue;
                        }
                        Some(Err(e)) => {
                            let now = self.now();
                            self.session.transport_closed(CloseReason::Transport(e.to_string()), now);
                            continue;
                        }
                        None => {
                            let now = self.now();
                            self.session.transport_closed(CloseReason::Transport("connection closed".into()), now);
                            continue;
                        }
                    };
                    let now = self.now();
                    self.session.handle_frame(frame, now).context("protocol error from the server")?;
                }
                () = self.timer.as_mut() => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                    self.timer_at = None;
                    self.timer.as_mut().reset(self.epoch + Duration::from_secs(86_400 * 365));
                }
            }
        }
    }

    async fn next_incoming(&mut self) -> anyhow::Result<Incoming> {
        let event = match self.next_item(None, true).await? {
            Some(Item::Quick(incoming)) => return Ok(incoming),
            Some(Item::Event(event)) => event,
            None => anyhow::bail!("stopped without a stop token"),
        };
        Ok(match event {
            ClientEvent::Event { name, args, .. } if name == ECHO => {
                seq_of(&args).map_or(Incoming::Other, Incoming::Echo)
            }
            ClientEvent::Event { name, args, .. } if name == "news" => args
                .first()
                .and_then(|a| a.get("hello"))
                .and_then(Value::as_str)
                .and_then(parse_published)
                .map_or(Incoming::Other, Incoming::News),
            _ => Incoming::Other,
        })
    }

    /// Sends an echo request and waits up to `timeout` for its ack, answering
    /// pings meanwhile (the soak's final liveness check).
    pub async fn ack_round_trip(
        &mut self,
        seq: u64,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        self.queue_echo(seq)?;
        tokio::time::timeout(timeout, async {
            loop {
                if let Incoming::Ack(s) = self.next_incoming().await?
                    && s == seq
                {
                    return Ok::<_, anyhow::Error>(start.elapsed());
                }
            }
        })
        .await
        .context("no ack in time")?
    }

    /// Leaves the namespace, closes the Engine.IO session and the WebSocket, and
    /// waits up to `linger` for the server to close its side.
    pub async fn close(mut self, linger: Duration) {
        self.session.disconnect();
        let _ = self.flush().await;
        let _ = self.ws.close(None).await;
        if !linger.is_zero() {
            let _ = tokio::time::timeout(linger, async {
                while let Some(Ok(_)) = self.ws.next().await {}
            })
            .await;
        }
    }
}

/// The `seq` of an echoed `{"seq": N}`.
fn seq_of(args: &[Value]) -> Option<u64> {
    args.first()?.get("seq")?.as_u64()
}

/// The text of the `n`th publish: its number, then padding to 100 bytes.
pub fn published_text(n: u64) -> String {
    let mut text = format!("{n:08}|");
    text.extend(std::iter::repeat_n('x', 100 - text.len()));
    text
}

/// What [`SioConn::next_item`] returns.
enum Item {
    Event(ClientEvent),
    /// Recognised without the session: a news or an echoed event.
    Quick(Incoming),
}

/// The publish number of a WebSocket message that is exactly a benchmark news
/// event, `42["news",{"hello":"<n>|xxx…","from":"<id>"}]` (the publisher's id,
/// as every Socket.IO server of the bench sends it; also accepted without it),
/// possibly followed by a recovery offset (`,"12"]` or `,"1796566870302-0"]`,
/// as duplex and Node with connection state recovery append it), with no
/// escapes and no ack id: recognised without a JSON parse, so that the
/// generator, receiving a million of these, does not limit the fan-out figure.
/// Anything else (other events, a different shape) goes through the session.
pub fn quick_news(text: &str) -> Option<u64> {
    let rest = text.strip_prefix(r#"42["news",{"hello":""#)?;
    // `hello` ends at the first quote; a backslash before it is an escape, which
    // the session handles. One vectorised scan: this runs once per delivery.
    let end = memchr::memchr2(b'"', b'\\', rest.as_bytes())?;
    if rest.as_bytes()[end] != b'"' {
        return None;
    }
    let (hello, mut rest) = (&rest[..end], &rest[end + 1..]);
    if let Some(from) = rest.strip_prefix(r#","from":""#) {
        let end = memchr::memchr2(b'"', b'\\', from.as_bytes())?;
        if from.as_bytes()[end] != b'"' {
            return None;
        }
        rest = &from[end + 1..];
    }
    let tail = rest == "}]"
        || rest
            .strip_prefix(r#"},""#)
            .and_then(|r| r.strip_suffix(r#""]"#))
            .is_some_and(|offset| {
                !offset.is_empty() && offset.bytes().all(|b| b.is_ascii_digit() || b == b'-')
            });
    if !tail {
        return None;
    }
    parse_published(hello)
}

/// The `seq` of a WebSocket message that is exactly an echoed benchmark event,
/// `42["echo",{"seq":N}]`, with no ack id and no offset: recognised without a
/// JSON parse (an event asks nothing of the session), so that the generator,
/// doing a parse per round trip less, leaves more of the machine to the server.
/// Acks still go through the session, which matches them to its requests.
pub fn quick_echo(text: &str) -> Option<u64> {
    let n = text
        .strip_prefix(r#"42["echo",{"seq":"#)?
        .strip_suffix("}]")?;
    if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// The `seq` of a WebSocket message that is exactly the ack of an echo request,
/// `43<seq>[{"seq":<seq>}]` (ack id and payload agree), recognised without a
/// JSON parse. Anything else goes to [`echo_ack`]'s decoder.
pub fn quick_ack(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("43")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, rest) = rest.split_at(digits);
    let seq = rest.strip_prefix(r#"[{"seq":"#)?.strip_suffix("}]")?;
    (!id.is_empty() && id == seq).then(|| id.parse().ok())?
}

/// What an ack on the main namespace (`43...`) says, if `text` is one: the
/// echo's `seq` when its id and its `{"seq": N}` agree (in any JSON spelling,
/// decoded by the protocol crate), [`Incoming::Other`] for any other ack.
fn echo_ack(text: &str) -> Option<Incoming> {
    if let Some(seq) = quick_ack(text) {
        return Some(Incoming::Ack(seq));
    }
    let packet = text.strip_prefix('4')?;
    if !packet.starts_with('3') || packet[1..].starts_with('/') {
        return None;
    }
    Some(
        match socketio::Packet::decode(packet, &socketio::Limits::default()) {
            Ok(socketio::Packet::Ack { id, args, .. }) => seq_of(args.values())
                .filter(|&seq| seq == id)
                .map_or(Incoming::Other, Incoming::Ack),
            _ => Incoming::Other,
        },
    )
}

/// The number of a published text (`None` for other news, the greeting).
pub fn parse_published(text: &str) -> Option<u64> {
    // Digits up to the `|`, read in one pass (once per fan-out delivery).
    let mut n: u64 = 0;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'0'..=b'9' => n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?,
            b'|' if i > 0 => return Some(n),
            _ => return None,
        }
    }
    None
}

/// A client of the bare WebSocket server.
#[derive(Debug)]
pub struct BareConn {
    ws: WebSocketStream<TcpStream>,
    unflushed: Vec<Message>,
}

impl BareConn {
    async fn open(stream: TcpStream, server: SocketAddr) -> anyhow::Result<BareConn> {
        let (ws, _) = tokio_tungstenite::client_async_with_config(
            format!("ws://{server}/"),
            stream,
            Some(ws_config()),
        )
        .await
        .context("websocket handshake")?;
        let mut conn = BareConn {
            ws,
            unflushed: Vec::new(),
        };
        loop {
            let message = conn
                .ws
                .next()
                .await
                .context("closed before the greeting")??;
            if let Message::Text(t) = message
                && bare::is_greeting(t.as_str())
            {
                return Ok(conn);
            }
        }
    }

    fn queue(&mut self, text: String) {
        self.unflushed.push(Message::text(text));
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if self.unflushed.is_empty() {
            return Ok(());
        }
        for message in self.unflushed.drain(..) {
            self.ws.feed(message).await.context("websocket write")?;
        }
        self.ws.flush().await.context("websocket flush")
    }

    async fn next_incoming(&mut self) -> anyhow::Result<Incoming> {
        self.flush().await?;
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(bare::parse_reply(t.as_str())),
                Some(Ok(Message::Close(_))) | None => {
                    anyhow::bail!("connection closed by the server")
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e).context("websocket read"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn benchmark_news_is_recognised_exactly() {
        let t = published_text(7);
        let frame = format!(r#"42["news",{{"hello":"{t}"}}]"#);
        assert_eq!(quick_news(&frame), Some(7));
        let from = format!(r#"42["news",{{"hello":"{t}","from":"abc"}}]"#);
        assert_eq!(quick_news(&from), Some(7));
        let channel = format!(r#"42["news",{{"hello":"{t}","from":"abc","channel":"c"}}]"#);
        assert_eq!(quick_news(&channel), None);
        // A recovery offset, a counter or a stream id, is read past.
        assert_eq!(
            quick_news(&format!(r#"42["news",{{"hello":"{t}"}},"12"]"#)),
            Some(7)
        );
        assert_eq!(
            quick_news(&format!(
                r#"42["news",{{"hello":"{t}","from":"abc"}},"1796566870302-0"]"#
            )),
            Some(7)
        );
        assert_eq!(
            quick_news(&format!(r#"42["news",{{"hello":"{t}"}},"x"]"#)),
            None
        );
        assert_eq!(
            quick_news(&format!(r#"42["news",{{"hello":"{t}"}},{{}}]"#)),
            None
        );
        // Another namespace, an escape, another event: the full session
        // handles those.
        assert_eq!(
            quick_news(&format!(r#"42/x,["news",{{"hello":"{t}"}}]"#)),
            None
        );
        assert_eq!(quick_news(r#"42["news",{"hello":"00000001|"x"}]"#), None);
        assert_eq!(
            quick_news(&format!(r#"42["echo",{{"hello":"{t}"}}]"#)),
            None
        );
        assert_eq!(quick_news(r#"42["news",{"hello":"world"}]"#), None);
    }

    #[test]
    fn benchmark_echo_is_recognised_exactly() {
        assert_eq!(quick_echo(r#"42["echo",{"seq":17}]"#), Some(17));
        assert_eq!(quick_echo(r#"42["echo",{"seq":0}]"#), Some(0));
        // An ack id, an offset, another namespace, another shape: the session.
        assert_eq!(quick_echo(r#"421["echo",{"seq":17}]"#), None);
        assert_eq!(quick_echo(r#"42["echo",{"seq":17},"off"]"#), None);
        assert_eq!(quick_echo(r#"42/x,["echo",{"seq":17}]"#), None);
        assert_eq!(quick_echo(r#"42["echo",{"seq":-1}]"#), None);
        assert_eq!(quick_echo(r#"42["echo",{"seq":1.5}]"#), None);
        assert_eq!(quick_echo(r#"42["echo",{"seq":}]"#), None);
        assert_eq!(quick_echo(r#"42["echo",{"seq":1,"x":2}]"#), None);
        assert_eq!(quick_echo(r#"431[{"seq":17}]"#), None);
    }

    #[test]
    fn echo_acks_are_recognised_and_checked() {
        assert_eq!(quick_ack(r#"4317[{"seq":17}]"#), Some(17));
        assert_eq!(quick_ack(r#"430[{"seq":0}]"#), Some(0));
        // The id and the payload disagree, no id, another shape: not quick.
        assert_eq!(quick_ack(r#"4317[{"seq":18}]"#), None);
        assert_eq!(quick_ack(r#"43[{"seq":17}]"#), None);
        assert_eq!(quick_ack(r#"4317[{"seq": 17}]"#), None);
        assert_eq!(quick_ack(r#"42["echo",{"seq":17}]"#), None);
        // Other spellings are decoded; a mismatch or another payload is Other.
        assert_eq!(echo_ack(r#"4317[ {"seq" : 17} ]"#), Some(Incoming::Ack(17)));
        assert_eq!(echo_ack(r#"4317[{"seq":18}]"#), Some(Incoming::Other));
        assert_eq!(echo_ack(r#"435["ok"]"#), Some(Incoming::Other));
        // Not an ack of the main namespace: the session's.
        assert_eq!(echo_ack(r#"43/admin,5[1]"#), None);
        assert_eq!(echo_ack(r#"42["echo",{"seq":1}]"#), None);
        assert_eq!(echo_ack("3"), None);
    }

    #[test]
    fn published_texts_are_100_bytes_and_numbered() {
        let t = published_text(42);
        assert_eq!(t.len(), 100);
        assert_eq!(parse_published(&t), Some(42));
        assert_eq!(parse_published("world"), None);
    }
}
