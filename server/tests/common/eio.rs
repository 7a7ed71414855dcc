//! An Engine.IO v4 test client over either transport, speaking exact wire strings:
//! HTTP long-polling through [`super::http`], WebSocket through tokio-tungstenite.
//! It checks the transport's framing (the `\x1e` separator, the `b` base64 prefix
//! for binary on polling, one packet per WebSocket frame) and nothing more: the
//! tests assert the packets themselves.

use std::collections::VecDeque;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::PATIENCE;
use super::http::{self, Response};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The transports of Engine.IO v4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Polling,
    WebSocket,
}

/// What runs on top of Engine.IO at an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// The Engine.IO suite's echo (`/engine.io/`).
    EngineEcho,
    /// The Socket.IO suite's contract (`/socket.io/`).
    SocketIo,
}

/// An Engine.IO packet as it travels: the text of a text packet (type digit
/// included: `4hello`, `2`, `3probe`), or the raw bytes of a binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Text(String),
    Binary(Vec<u8>),
}

impl Packet {
    pub fn text(s: &str) -> Packet {
        Packet::Text(s.to_owned())
    }

    /// How this packet goes in a long-polling payload.
    pub fn to_payload_part(&self) -> String {
        match self {
            Packet::Text(t) => t.clone(),
            Packet::Binary(b) => format!("b{}", base64_encode(b)),
        }
    }
}

/// Splits a long-polling payload into its packets.
pub fn parse_payload(body: &str) -> Vec<Packet> {
    body.split('\x1e')
        .map(|part| match part.strip_prefix('b') {
            Some(b64) => Packet::Binary(
                base64_decode(b64).unwrap_or_else(|| panic!("invalid base64 in {body:?}")),
            ),
            None => Packet::Text(part.to_owned()),
        })
        .collect()
}

/// Joins packets into one long-polling payload.
pub fn to_payload(packets: &[Packet]) -> String {
    packets
        .iter()
        .map(Packet::to_payload_part)
        .collect::<Vec<_>>()
        .join("\x1e")
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Padded standard base64, written here so the tests do not trust the server's codec.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::new();
    for chunk in text.as_bytes().chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            let v = if i >= 4 - pad {
                0
            } else {
                B64.iter().position(|&a| a == c)? as u32
            };
            n |= v << (18 - 6 * i);
        }
        for i in 0..(3 - pad.min(2)) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Some(out)
}

/// Where an Engine.IO server listens: its address and mount path (`/engine.io/`).
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub path: &'static str,
    pub flavor: Flavor,
}

impl Endpoint {
    /// The request target for `query`: `/engine.io/?{query}`.
    pub fn target(&self, query: &str) -> String {
        format!("{}?{query}", self.path)
    }

    pub fn ws_url(&self, query: &str) -> String {
        format!("ws://{}{}", self.addr, self.target(query))
    }

    /// The polling query of session `sid`.
    pub fn sid_query(sid: &str) -> String {
        format!("EIO=4&transport=polling&sid={sid}")
    }

    pub async fn get(&self, query: &str) -> Response {
        http::get(self.addr, &self.target(query)).await
    }

    pub async fn post(&self, query: &str, body: &str) -> Response {
        http::post(self.addr, &self.target(query), body).await
    }

    pub async fn request(&self, method: &str, query: &str, body: Option<&str>) -> Response {
        http::send(
            self.addr,
            method,
            &self.target(query),
            body.map(str::as_bytes),
        )
        .await
    }

    /// A polling GET for session `sid`.
    pub async fn poll(&self, sid: &str) -> Response {
        self.get(&Self::sid_query(sid)).await
    }

    /// A polling POST of `body` for session `sid`.
    pub async fn push(&self, sid: &str, body: &str) -> Response {
        self.post(&Self::sid_query(sid), body).await
    }

    /// Opens a WebSocket for `query`: the handshake's result.
    pub async fn ws(&self, query: &str) -> Result<Ws, tungstenite::Error> {
        tokio::time::timeout(
            PATIENCE,
            tokio_tungstenite::connect_async(self.ws_url(query)),
        )
        .await
        .unwrap_or_else(|_| panic!("no WebSocket handshake answer for {query} within {PATIENCE:?}"))
        .map(|(ws, _)| ws)
    }

    /// Opens a long-polling session; returns its sid and the open packet's JSON.
    pub async fn open_polling(&self) -> (String, Value) {
        let response = self.get("EIO=4&transport=polling").await;
        assert_eq!(response.status, 200, "handshake refused: {response:?}");
        let open = open_json(&response.text());
        (sid_of(&open), open)
    }
}

/// The JSON of an open packet (`0{...}`).
pub fn open_json(packet: &str) -> Value {
    let json = packet
        .strip_prefix('0')
        .unwrap_or_else(|| panic!("expected an open packet, got {packet:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("open packet is not JSON: {e}: {json}"))
}

fn sid_of(open: &Value) -> String {
    open["sid"]
        .as_str()
        .unwrap_or_else(|| panic!("open packet without a sid: {open}"))
        .to_owned()
}

/// Reads the next data frame of a WebSocket (`None` once it is closed or broken),
/// within [`PATIENCE`].
pub async fn ws_next(ws: &mut Ws) -> Option<Packet> {
    loop {
        let next = tokio::time::timeout(PATIENCE, ws.next())
            .await
            .unwrap_or_else(|_| panic!("nothing on the WebSocket within {PATIENCE:?}"));
        match next {
            Some(Ok(Message::Text(t))) => return Some(Packet::Text(t.to_string())),
            Some(Ok(Message::Binary(b))) => return Some(Packet::Binary(b.to_vec())),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
        }
    }
}

/// Reads until the server closes the WebSocket; returns what came before the close.
/// Fails if it is still open after [`PATIENCE`].
pub async fn ws_expect_closed(ws: &mut Ws) -> Vec<Packet> {
    let mut before = Vec::new();
    while let Some(packet) = ws_next(ws).await {
        before.push(packet);
    }
    before
}

pub async fn ws_send(ws: &mut Ws, packet: Packet) {
    let message = match packet {
        Packet::Text(t) => Message::text(t),
        Packet::Binary(b) => Message::binary(b),
    };
    ws.send(message).await.expect("send on the WebSocket");
}

enum Link {
    Polling,
    WebSocket(Box<Ws>),
}

/// One Engine.IO session, on polling or WebSocket (possibly upgraded).
pub struct Client {
    pub endpoint: Endpoint,
    pub sid: String,
    /// The open packet's JSON.
    pub open: Value,
    link: Link,
    /// Packets received but not read yet (a polling payload carries several).
    buffered: VecDeque<Packet>,
    /// A WebSocket that answered the upgrade probe, until `5` is sent on it.
    probe: Option<Box<Ws>>,
}

impl Client {
    /// Opens a session over `transport` and reads the open packet.
    pub async fn open(endpoint: Endpoint, transport: Transport) -> Client {
        match transport {
            Transport::Polling => {
                let response = endpoint.get("EIO=4&transport=polling").await;
                assert_eq!(response.status, 200, "handshake refused: {response:?}");
                let mut packets: VecDeque<Packet> = parse_payload(&response.text()).into();
                let Some(Packet::Text(first)) = packets.pop_front() else {
                    panic!("expected an open packet, got {response:?}");
                };
                let open = open_json(&first);
                Client {
                    endpoint,
                    sid: sid_of(&open),
                    open,
                    link: Link::Polling,
                    buffered: packets,
                    probe: None,
                }
            }
            Transport::WebSocket => {
                let mut ws = endpoint
                    .ws("EIO=4&transport=websocket")
                    .await
                    .expect("WebSocket handshake");
                let open = match ws_next(&mut ws).await {
                    Some(Packet::Text(t)) => open_json(&t),
                    other => panic!("expected an open packet, got {other:?}"),
                };
                Client {
                    endpoint,
                    sid: sid_of(&open),
                    open,
                    link: Link::WebSocket(Box::new(ws)),
                    buffered: VecDeque::new(),
                    probe: None,
                }
            }
        }
    }

    pub fn transport(&self) -> Transport {
        match self.link {
            Link::Polling => Transport::Polling,
            Link::WebSocket(_) => Transport::WebSocket,
        }
    }

    /// Sends packets: in one POST on polling (which must answer `ok`), one frame
    /// each on WebSocket.
    pub async fn send_all(&mut self, packets: &[Packet]) {
        match &mut self.link {
            Link::Polling => {
                let response = self.endpoint.push(&self.sid, &to_payload(packets)).await;
                assert_eq!(
                    (response.status, response.text().as_str()),
                    (200, "ok"),
                    "POST refused: {response:?}"
                );
            }
            Link::WebSocket(ws) => {
                for packet in packets {
                    ws_send(ws, packet.clone()).await;
                }
            }
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.send_all(&[Packet::text(text)]).await;
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.send_all(&[Packet::Binary(bytes.to_vec())]).await;
    }

    /// Sends `packets` without checking the answer; for input the server refuses.
    /// On polling, returns the POST's response (`None` if the request failed).
    pub async fn send_unchecked(&mut self, packets: &[Packet]) -> Option<Response> {
        match &mut self.link {
            Link::Polling => http::request(
                self.endpoint.addr,
                "POST",
                &self.endpoint.target(&Endpoint::sid_query(&self.sid)),
                Some(to_payload(packets).as_bytes()),
            )
            .await
            .ok(),
            Link::WebSocket(ws) => {
                for packet in packets {
                    // The server may already have closed the socket.
                    let _ = ws.send(to_message(packet.clone())).await;
                }
                None
            }
        }
    }

    /// The next packet, whatever it is (pings and noops included). Fails if the
    /// session is closed or nothing comes within [`PATIENCE`].
    pub async fn recv_any(&mut self) -> Packet {
        match self.try_recv_any().await {
            Ok(packet) => packet,
            Err(closed) => panic!("expected a packet, but the session is closed: {closed}"),
        }
    }

    /// The next packet, or a description of how the session ended.
    pub async fn try_recv_any(&mut self) -> Result<Packet, String> {
        loop {
            if let Some(packet) = self.buffered.pop_front() {
                return Ok(packet);
            }
            match &mut self.link {
                Link::Polling => {
                    let response = self.endpoint.poll(&self.sid).await;
                    if response.status != 200 {
                        return Err(format!("GET answered {response:?}"));
                    }
                    self.buffered.extend(parse_payload(&response.text()));
                }
                Link::WebSocket(ws) => {
                    return ws_next(ws)
                        .await
                        .ok_or_else(|| "the WebSocket closed".to_owned());
                }
            }
        }
    }

    /// The next packet that is not a heartbeat or a noop; pings are answered.
    pub async fn recv(&mut self) -> Packet {
        loop {
            match self.recv_any().await {
                Packet::Text(t) if t == "2" => self.send("3").await,
                Packet::Text(t) if t == "6" => {}
                packet => return packet,
            }
        }
    }

    /// The next text packet (see [`Client::recv`]).
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Packet::Text(t) => t,
            Packet::Binary(b) => panic!("expected a text packet, got binary {b:?}"),
        }
    }

    /// Reads until the server ends the session; returns the packets received before.
    /// On polling the end is a GET refused with 400 (the JSON error body checked);
    /// on WebSocket, the socket closing. Fails if that takes longer than [`PATIENCE`].
    pub async fn expect_closed(&mut self) -> Vec<Packet> {
        let mut before: Vec<Packet> = self.buffered.drain(..).collect();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        match &mut self.link {
            Link::Polling => loop {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "session still open after {PATIENCE:?}; received {before:?}"
                );
                let response = self.endpoint.poll(&self.sid).await;
                if response.status == 200 {
                    before.extend(parse_payload(&response.text()));
                } else {
                    assert_error_body(&response);
                    return before;
                }
            },
            Link::WebSocket(ws) => {
                before.extend(ws_expect_closed(ws).await);
                before
            }
        }
    }

    /// Upgrades a polling session to WebSocket the way a client does:
    /// [`start_upgrade`](Client::start_upgrade), then
    /// [`finish_upgrade`](Client::finish_upgrade).
    pub async fn upgrade(&mut self) {
        self.start_upgrade().await;
        self.finish_upgrade().await;
    }

    /// Opens a WebSocket with the sid, sends `2probe` and waits for `3probe`. The
    /// session goes on over polling meanwhile.
    pub async fn start_upgrade(&mut self) {
        assert!(
            matches!(self.link, Link::Polling) && self.probe.is_none(),
            "upgrade from polling only, once"
        );
        let mut ws = self
            .endpoint
            .ws(&format!("EIO=4&transport=websocket&sid={}", self.sid))
            .await
            .expect("upgrade WebSocket handshake");
        ws_send(&mut ws, Packet::text("2probe")).await;
        assert_eq!(ws_next(&mut ws).await, Some(Packet::text("3probe")));
        self.probe = Some(Box::new(ws));
    }

    /// Lets the polling side finish (one GET, answered at once with what is queued
    /// or with a noop), then sends `5` on the probed WebSocket: from then on the
    /// session runs there. Packets polled meanwhile are kept for `recv`.
    pub async fn finish_upgrade(&mut self) {
        let mut ws = self.probe.take().expect("start_upgrade first");
        let response = self.endpoint.poll(&self.sid).await;
        assert_eq!(response.status, 200, "GET while probing: {response:?}");
        self.buffered.extend(parse_payload(&response.text()));
        ws_send(&mut ws, Packet::text("5")).await;
        self.link = Link::WebSocket(ws);
    }
}

fn to_message(packet: Packet) -> Message {
    match packet {
        Packet::Text(t) => Message::text(t),
        Packet::Binary(b) => Message::binary(b),
    }
}

/// A refusal: HTTP 400 with a JSON body `{"code": <number>, "message": <string>}`.
pub fn assert_error_body(response: &Response) {
    assert_eq!(response.status, 400, "expected a 400: {response:?}");
    let json = response.json();
    assert!(
        json["code"].is_u64() && json["message"].is_string(),
        "error body should be {{\"code\":..,\"message\":..}}, got {json}"
    );
    assert!(
        response
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/json")),
        "error body without a JSON content type: {response:?}"
    );
}

/// A refusal with exactly `{"code": code, "message": message}`.
pub fn assert_error(response: &Response, code: u64, message: &str) {
    assert_error_body(response);
    assert_eq!(
        response.json(),
        serde_json::json!({ "code": code, "message": message }),
        "{response:?}"
    );
}
