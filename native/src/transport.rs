//! The transports under a session: a WebSocket, or HTTP long-polling with at most
//! one GET and one POST in flight, and the probe that upgrades polling to a
//! WebSocket. This module moves frames; what they mean is the session's business.

use std::future::Future;
use std::pin::Pin;

use futures_util::{SinkExt, StreamExt};
use protocol::Frame;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::http::HttpClient;
use crate::url::ServerUrl;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A request or probe in flight, owned by the driver and polled in its loop.
pub type Pending<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A probe's outcome: the WebSocket with the server's first frame on it, or why
/// there is none.
pub type ProbeResult = Result<(Box<Ws>, Frame), String>;

/// Opens a WebSocket (a new session, or an upgrade when the URL has a sid).
pub async fn open_websocket(url: &str) -> Result<Ws, tungstenite::Error> {
    // Nagle off: Engine.IO frames are small and latency-sensitive.
    let (ws, _response) = tokio_tungstenite::connect_async_with_config(url, None, true).await?;
    Ok(ws)
}

pub fn to_message(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::text(text),
        Frame::Binary(bytes) => Message::binary(bytes),
    }
}

/// A WebSocket message as a frame; `None` for control messages (ping, pong and
/// close are the library's business; the end of the stream says the socket closed).
pub fn to_frame(message: Message) -> Option<Frame> {
    match message {
        Message::Text(text) => Some(Frame::Text(text.as_str().to_owned())),
        Message::Binary(bytes) => Some(Frame::Binary(bytes.to_vec())),
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) | Message::Frame(_) => None,
    }
}

/// A long-polling GET: the body of the server's answer (packets joined by `\x1e`).
pub fn poll(
    http: &HttpClient,
    endpoint: &ServerUrl,
    sid: Option<&str>,
    t: &str,
) -> Pending<Result<String, String>> {
    let (http, url) = (http.clone(), endpoint.polling_url(sid, t));
    Box::pin(async move {
        http.get(&url)
            .await
            .map_err(|e| format!("long-polling GET failed: {e}"))
    })
}

/// A long-polling POST of `payload`.
pub fn post(
    http: &HttpClient,
    endpoint: &ServerUrl,
    sid: &str,
    t: &str,
    payload: String,
) -> Pending<Result<(), String>> {
    let (http, url) = (http.clone(), endpoint.polling_url(Some(sid), t));
    Box::pin(async move {
        http.post(&url, payload)
            .await
            .map(drop)
            .map_err(|e| format!("long-polling POST failed: {e}"))
    })
}

/// Upgrade, first half: opens a WebSocket for the session at `url`, sends `request`
/// (the session's `2probe`) and returns the socket with the server's first frame,
/// for the transport machine to judge (it also bounds the wait).
pub fn probe(url: String, request: Frame) -> Pending<ProbeResult> {
    Box::pin(async move {
        let mut ws = open_websocket(&url).await.map_err(|e| e.to_string())?;
        ws.send(to_message(request))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(message)) => {
                    if let Some(frame) = to_frame(message) {
                        return Ok((Box::new(ws), frame));
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed before answering the probe".to_owned()),
            }
        }
    })
}

/// Awaits the future in `slot`, or never if there is none.
pub async fn maybe<T>(slot: &mut Option<Pending<T>>) -> T {
    match slot {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}
