//! The server's WebSockets: the upgrade (RFC 6455 §4.2), done here rather than by
//! warp's `ws()` filter, and the connection after it, framed by
//! [`protocol::websocket`] rather than by a WebSocket library.
//!
//! Why our own framing: the memory of an idle connection. A library keeps, for
//! every connection and for as long as it lives, a read buffer (and a write buffer
//! at its high-water mark). Here every connection of a thread reads into one
//! shared scratch buffer, inside a synchronous `poll_read`, and whole frames are
//! decoded from it at once; only an incomplete frame is copied into the
//! connection's own [`Decoder`], which holds nothing otherwise. Outgoing frames
//! are likewise encoded into a buffer of the thread and written from it; only
//! what the socket did not take is copied into the connection's own buffer,
//! which exists only until that is written.
//!
//! [`Upgrade::from_request`] validates the request (RFC 6455 §4.2.1),
//! [`Upgrade::into_response`] answers `101 Switching Protocols` and, once hyper
//! hands the connection over, runs a callback with the [`WebSocket`].

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::FutureExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use protocol::Frame;
use protocol::app::WEBSOCKET_GUID;
use protocol::websocket::{Decoder, FrameError, Message, OpCode, encode_close, encode_frame};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;
use warp::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use warp::reply::Response;

/// The read buffer every connection of a thread shares.
pub const READ_SCRATCH: usize = 64 * 1024;

/// Outgoing frames are encoded, up to this many bytes, into the thread's write
/// buffer and written from there (the session task also writes after each
/// batch); what the socket does not take waits in the connection's own buffer.
///
/// 64 KiB holds a whole batch of the session task (256 commands) of 100–250 byte
/// events, so a burst of broadcasts costs one `send` per client per batch: the
/// kernel's time per `send` was the largest part of the server's in a fan-out
/// (a million deliveries took 51,000 `send`s with 4 KiB and 64 commands, 20,500
/// with 16 KiB, 9,300 with 64 KiB and 256). It is also the most a slow
/// client's connection holds here beyond its bounded queue of frames.
pub const WRITE_BUFFER: usize = 64 * 1024;

/// The largest single outgoing message accepted when maxPayload is small. The
/// write buffer holds at most [`WRITE_BUFFER`] plus one message: a frame is added
/// only once what was gathered before it is written, down to less than
/// [`WRITE_BUFFER`].
pub const MIN_OUTGOING_MESSAGE: usize = 1024 * 1024;

thread_local! {
    /// Where the connections polled on this thread read. Borrowed only inside
    /// one synchronous `poll_read` and the decoding that follows it, never across
    /// an await, so one buffer per thread serves every connection.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_SCRATCH].into_boxed_slice());

    /// Where the connections polled on this thread encode a batch of outgoing
    /// frames before writing it. Borrowed only inside one synchronous poll: no
    /// allocation, growth or release per batch, whatever the number of clients.
    static WRITE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Incoming frames and messages longer than this are refused from their
    /// header, before they are buffered (close 1009).
    pub max_message: usize,
    /// Outgoing messages longer than this are refused (the connection fails).
    pub max_outgoing: usize,
}

/// The limits of a connection with this `max_payload`: incoming messages up to
/// maxPayload exactly; outgoing ones up to max([`MIN_OUTGOING_MESSAGE`], 2 ×
/// maxPayload), so the write buffer is bounded at [`WRITE_BUFFER`] plus that.
pub fn config(max_payload: usize) -> Config {
    Config {
        max_message: max_payload,
        max_outgoing: max_payload.saturating_mul(2).max(MIN_OUTGOING_MESSAGE),
    }
}

/// Why a WebSocket stopped working.
#[derive(Debug, Error)]
pub enum WsError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("invalid websocket frame: {0}")]
    Frame(#[from] FrameError),
    #[error("outgoing message of {size} bytes exceeds the limit of {max}")]
    OutgoingTooLong { size: usize, max: usize },
    #[error("the websocket is closing: nothing may be sent after the close frame")]
    Closing,
}

/// A server-side WebSocket on an upgraded HTTP/1.1 connection.
///
/// [`WebSocket::next`] yields the client's data messages and its close; pings are
/// answered (with the pong written as the connection is next read or flushed) and
/// a client's close frame is answered by echoing its code. Outgoing frames are
/// written by [`WebSocket::write_frames`].
pub struct WebSocket {
    io: TokioIo<Upgraded>,
    decoder: Decoder,
    /// Frames not written yet, from `written`. No allocation when empty.
    out: Vec<u8>,
    written: usize,
    max_outgoing: usize,
    /// The close frame is queued: nothing may follow it.
    close_queued: bool,
    /// Nothing more will be read: the client closed, the stream ended or failed.
    read_closed: bool,
    /// The client is done sending: its close frame came, or the stream ended or
    /// failed. Until then a closing server reads and drops what it sends.
    peer_done: bool,
    /// The last read took everything the socket had (it returned less than
    /// the buffer's size): until the reactor says otherwise, another finds nothing.
    drained: bool,
    /// How the client's invalid frames failed the connection (RFC 6455 §7.1.7),
    /// the code our close frame carries whatever the session's reason.
    failure: Option<u16>,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("read_pending", &self.decoder.pending_len())
            .field("write_pending", &self.pending_out())
            .field("close_queued", &self.close_queued)
            .field("read_closed", &self.read_closed)
            .finish_non_exhaustive()
    }
}

impl WebSocket {
    fn new(io: TokioIo<Upgraded>, config: Config) -> WebSocket {
        WebSocket {
            io,
            decoder: Decoder::new(config.max_message),
            out: Vec::new(),
            written: 0,
            max_outgoing: config.max_outgoing,
            close_queued: false,
            read_closed: false,
            peer_done: false,
            drained: false,
            failure: None,
        }
    }

    /// The client's next message: text, binary or its close; `None` once nothing
    /// more can be read. Cancel-safe: a message is never lost by dropping the
    /// future.
    pub async fn next(&mut self) -> Option<Result<Message, WsError>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// The client's next message if it is here already: buffered, or readable
    /// now. A read that would find nothing (the last one drained the socket
    /// and no bytes are buffered) is not tried: the caller waits with
    /// [`WebSocket::next`] for what comes later.
    pub fn next_now(&mut self) -> Option<Option<Result<Message, WsError>>> {
        if self.drained && self.decoder.pending_len() == 0 && self.pending_out() == 0 {
            return None;
        }
        self.next().now_or_never()
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, WsError>>> {
        loop {
            if self.read_closed {
                return Poll::Ready(None);
            }
            // Pongs queued by earlier reads go out first; a client that does not
            // read them is not read from either, so they cannot pile up.
            if self.pending_out() > 0 {
                match self.poll_write_out(cx) {
                    Poll::Ready(Err(e)) => {
                        self.read_closed = true;
                        self.peer_done = true;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                    Poll::Pending if self.pending_out() >= WRITE_BUFFER => return Poll::Pending,
                    _ => {}
                }
            }
            let buffered = self.decoder.decode(&[]).next();
            let decoded = match buffered {
                Some(decoded) => Some(decoded),
                None => match ready!(self.poll_read_message(cx)) {
                    Ok(Some(decoded)) => Some(decoded),
                    Ok(None) => None,
                    Err(e) => {
                        self.read_closed = true;
                        self.peer_done = true;
                        return Poll::Ready(Some(Err(e.into())));
                    }
                },
            };
            match decoded {
                // Bytes that did not complete a message: read again.
                None if !self.read_closed => continue,
                None => return Poll::Ready(None),
                Some(Ok(Message::Ping(payload))) => {
                    if !self.close_queued {
                        self.compact();
                        encode_frame(&mut self.out, OpCode::Pong, &payload);
                    }
                }
                Some(Ok(Message::Pong(_))) => {}
                Some(Ok(Message::Close(close))) => {
                    self.read_closed = true;
                    self.peer_done = true;
                    if !self.close_queued {
                        // RFC 6455 §5.5.1: answer with a close, echoing the code.
                        self.compact();
                        encode_close(&mut self.out, close.as_ref().map(|(code, _)| (*code, "")));
                        self.close_queued = true;
                    }
                    return Poll::Ready(Some(Ok(Message::Close(close))));
                }
                Some(Ok(message)) => return Poll::Ready(Some(Ok(message))),
                Some(Err(e)) => {
                    self.read_closed = true;
                    self.failure = Some(e.close_code());
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    /// One read into the thread's scratch buffer, and the first message in it;
    /// the rest is kept by the decoder. `Ok(None)`: no whole message yet, or the
    /// stream ended (then `read_closed` is set).
    fn poll_read_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<Option<Result<Message, FrameError>>>> {
        let WebSocket {
            io,
            decoder,
            read_closed,
            peer_done,
            drained,
            ..
        } = self;
        SCRATCH.with(|scratch| {
            let Ok(mut scratch) = scratch.try_borrow_mut() else {
                // Only if a read re-entered another on this thread, which none does.
                return Poll::Ready(Err(io::Error::other("read buffer in use")));
            };
            let mut buf = ReadBuf::new(&mut scratch[..]);
            ready!(Pin::new(io).poll_read(cx, &mut buf))?;
            *drained = buf.remaining() > 0;
            if buf.filled().is_empty() {
                // The client went away, perhaps in the middle of a frame.
                *read_closed = true;
                *peer_done = true;
                return Poll::Ready(Ok(None));
            }
            Poll::Ready(Ok(decoder.decode(buf.filled()).next()))
        })
    }

    fn pending_out(&self) -> usize {
        self.out.len() - self.written
    }

    /// Drops the bytes already written from the front of the write buffer.
    fn compact(&mut self) {
        if self.written > 0 {
            self.out.drain(..self.written);
            self.written = 0;
        }
    }

    /// Writes what is queued; the buffer is released once it is all written.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.out = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    async fn write_out(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_out(cx)).await?;
        poll_fn(|cx| Pin::new(&mut self.io).poll_flush(cx)).await
    }

    /// Writes the frames `next` gives until it gives none, then flushes: what an
    /// earlier write left first, then batches of up to [`WRITE_BUFFER`] bytes
    /// encoded into the thread's buffer and written from there. Only what the
    /// socket does not take is kept in the connection's own buffer (at most
    /// [`WRITE_BUFFER`] plus one message). A frame that cannot be sent (too
    /// long, or after the close) fails the write; the frames before it are sent.
    pub async fn write_frames(
        &mut self,
        mut next: impl FnMut() -> Option<Frame>,
    ) -> Result<(), WsError> {
        poll_fn(|cx| self.poll_write_frames(cx, &mut next)).await?;
        Ok(poll_fn(|cx| Pin::new(&mut self.io).poll_flush(cx)).await?)
    }

    fn poll_write_frames(
        &mut self,
        cx: &mut Context<'_>,
        next: &mut impl FnMut() -> Option<Frame>,
    ) -> Poll<Result<(), WsError>> {
        loop {
            ready!(self.poll_write_out(cx))?;
            let batch = WRITE_SCRATCH.with(|scratch| {
                let Ok(mut scratch) = scratch.try_borrow_mut() else {
                    // Only if a write re-entered another on this thread, which none does.
                    return Err(WsError::Io(io::Error::other("write buffer in use")));
                };
                scratch.clear();
                let mut failed = None;
                while scratch.len() < WRITE_BUFFER {
                    let Some(frame) = next() else { break };
                    let (opcode, payload) = match &frame {
                        Frame::Text(text) => (OpCode::Text, text.as_bytes()),
                        Frame::Binary(bytes) => (OpCode::Binary, bytes.as_slice()),
                    };
                    if let Err(e) = self.check_outgoing(payload.len()) {
                        failed = Some(e);
                        break;
                    }
                    encode_frame(&mut scratch, opcode, payload);
                }
                if scratch.is_empty() {
                    return failed.map_or(Ok(false), Err);
                }
                // Written from the thread's buffer; the rest, if the socket's
                // buffer is full, is kept by the connection.
                let mut written = 0;
                while written < scratch.len() {
                    match Pin::new(&mut self.io).poll_write(cx, &scratch[written..]) {
                        Poll::Ready(Ok(0)) => {
                            return Err(WsError::Io(io::ErrorKind::WriteZero.into()));
                        }
                        Poll::Ready(Ok(n)) => written += n,
                        Poll::Ready(Err(e)) => return Err(WsError::Io(e)),
                        // The socket's buffer is full; its waker is registered.
                        Poll::Pending => break,
                    }
                }
                self.out.extend_from_slice(&scratch[written..]);
                self.written = 0;
                // Shrink a buffer a very large message grew.
                if scratch.capacity() > 4 * WRITE_BUFFER {
                    *scratch = Vec::new();
                }
                failed.map_or(Ok(true), Err)
            });
            // `true`: a batch went out (or into `out`); the next one, once `out`
            // is written, from the top.
            if !batch? {
                return Poll::Ready(Ok(()));
            }
        }
    }

    fn check_outgoing(&self, len: usize) -> Result<(), WsError> {
        if self.close_queued {
            return Err(WsError::Closing);
        }
        if len > self.max_outgoing {
            return Err(WsError::OutgoingTooLong {
                size: len,
                max: self.max_outgoing,
            });
        }
        Ok(())
    }

    /// Ends the connection: what is queued, then a close frame with `close` (the
    /// reason cut to 123 bytes; the code is the failure's if the client's frames
    /// failed the connection), unless one was sent already, then the end of the
    /// stream. The client's own close is not awaited.
    pub async fn close(&mut self, close: Option<(u16, &str)>) -> Result<(), WsError> {
        if !self.close_queued {
            self.compact();
            let failure = self.failure;
            encode_close(
                &mut self.out,
                close.map(|(code, reason)| (failure.unwrap_or(code), reason)),
            );
            self.close_queued = true;
        }
        self.write_out().await?;
        poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await?;
        Ok(())
    }

    /// [`WebSocket::close`], then what the client still sends is read and
    /// dropped until it closes its side (RFC 6455 §7.1.1: the server waits for
    /// the client to close the TCP connection). Dropping a socket with unread
    /// data makes the kernel reset the connection, and a client reset before it
    /// read our close frame loses it (1006 instead of our code and reason): a
    /// client still sending a message over the limit when it is refused. The
    /// caller bounds the wait.
    pub async fn close_and_drain(&mut self, close: Option<(u16, &str)>) -> Result<(), WsError> {
        self.close(close).await?;
        poll_fn(|cx| self.poll_discard(cx)).await;
        Ok(())
    }

    /// Reads and drops until the client is done sending.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while !self.peer_done {
            let done = SCRATCH.with(|scratch| {
                let Ok(mut scratch) = scratch.try_borrow_mut() else {
                    return Poll::Ready(true);
                };
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match ready!(Pin::new(&mut self.io).poll_read(cx, &mut buf)) {
                    Ok(()) => Poll::Ready(buf.filled().is_empty()),
                    Err(_) => Poll::Ready(true),
                }
            });
            self.peer_done = ready!(done);
        }
        Poll::Ready(())
    }
}

/// A valid WebSocket upgrade request, not answered yet.
pub struct Upgrade {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl Upgrade {
    /// The upgrade `method` and `headers` ask for, if they ask for a valid one
    /// (GET, `Connection: upgrade`, `Upgrade: websocket`, `Sec-WebSocket-Version:
    /// 13`, a `Sec-WebSocket-Key`) and hyper can hand the connection over.
    pub fn from_request(
        method: &Method,
        headers: &HeaderMap,
        on_upgrade: Option<OnUpgrade>,
    ) -> Option<Upgrade> {
        let valid = method == Method::GET
            && has_token(headers, &header::CONNECTION, "upgrade")
            && has_token(headers, &header::UPGRADE, "websocket")
            && headers
                .get(header::SEC_WEBSOCKET_VERSION)
                .is_some_and(|v| v.as_bytes().trim_ascii() == b"13");
        if !valid {
            return None;
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .filter(|key| !key.as_bytes().trim_ascii().is_empty())?;
        Some(Upgrade {
            key: key.clone(),
            on_upgrade: on_upgrade?,
        })
    }

    /// `101 Switching Protocols`; once the connection is handed over, `then` runs
    /// (on a task of its own) with the WebSocket, limited by `config`.
    pub fn into_response<F, Fut>(self, config: Config, then: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let accept = websocket_accept(&String::from_utf8_lossy(self.key.as_bytes()));
        let on_upgrade = self.on_upgrade;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    then(WebSocket::new(TokioIo::new(upgraded), config)).await;
                }
                Err(e) => debug!(error = %e, "websocket upgrade failed"),
            }
        });
        let mut response = Response::default();
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&accept) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        response
    }
}

/// Whether some `name` header lists `token` (comma-separated, case-insensitive).
fn has_token(headers: &HeaderMap, name: &header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2): the base64 of
/// the SHA-1 of the key followed by the protocol's GUID.
pub fn websocket_accept(key: &str) -> String {
    use sha1::Digest;
    let mut sha = sha1::Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(WEBSOCKET_GUID.as_bytes());
    protocol::base64::encode(&sha.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    const VALID: [(&str, &str); 4] = [
        ("connection", "keep-alive, Upgrade"),
        ("upgrade", "WebSocket"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];

    fn valid(method: &Method, pairs: &[(&'static str, &'static str)]) -> bool {
        let on_upgrade = hyper::upgrade::on(warp::http::Request::new(()));
        Upgrade::from_request(method, &headers(pairs), Some(on_upgrade)).is_some()
    }

    #[test]
    fn upgrade_requests_are_validated() {
        assert!(valid(&Method::GET, &VALID));
        assert!(!valid(&Method::POST, &VALID));
        for (i, missing) in VALID.iter().enumerate() {
            let mut pairs = VALID.to_vec();
            pairs.remove(i);
            assert!(!valid(&Method::GET, &pairs), "without {missing:?}");
        }
        let mut pairs = VALID.to_vec();
        pairs[0] = ("connection", "keep-alive");
        assert!(!valid(&Method::GET, &pairs));
        pairs[0] = ("connection", "upgrades");
        assert!(!valid(&Method::GET, &pairs));
        let mut pairs = VALID.to_vec();
        pairs[2] = ("sec-websocket-version", "8");
        assert!(!valid(&Method::GET, &pairs));
        let mut pairs = VALID.to_vec();
        pairs[3] = ("sec-websocket-key", "");
        assert!(!valid(&Method::GET, &pairs));
        let none = Upgrade::from_request(&Method::GET, &headers(&VALID), None);
        assert!(none.is_none(), "no connection to take over");
    }

    #[test]
    fn limits_follow_max_payload() {
        let c = config(1_000_000);
        assert_eq!(c.max_message, 1_000_000);
        assert_eq!(c.max_outgoing, 2_000_000);
        assert_eq!(config(100).max_outgoing, MIN_OUTGOING_MESSAGE);
    }

    #[test]
    fn accept_key_from_rfc6455() {
        assert_eq!(
            websocket_accept("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
