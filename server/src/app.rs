//! The news & echo application: the Socket.IO tutorial, served from Rust.
//!
//! On connection to `/`: emit `news` `{"hello":"world"}`, then `handshake` (what
//! the server saw of the connection's opening request). `my other event` is logged
//! (the tutorial's `console.log`) and echoed. `join`/`leave` subscribe to news
//! channels (rooms named `channel:<name>`); `publish` sends a news item to one
//! channel's subscribers or to everyone. Every other event is echoed to its
//! sender under the same name with the same arguments, and acked with the same
//! arguments when the client asks. With a token configured, a client must present
//! it in its CONNECT auth (`{"token": "..."}`), or is refused with a clear message.

use protocol::Event;
use protocol::app::{
    Channels, Handshake, HandshakeInfo, JoinChannel, LeaveChannel, MyOtherEvent, News, NewsItem,
    PublishNews, valid_channel,
};
use serde_json::json;
use tracing::{info, warn};

use crate::socketio::{
    ConnectRequest, DisconnectReason, Handler, IncomingEvent, SendError, Socket,
};

/// The room of news channel `name`.
fn room(name: &str) -> String {
    format!("channel:{name}")
}

/// The tutorial app, a handler for the `/` namespace.
#[derive(Debug, Default)]
pub struct NewsApp {
    token: Option<String>,
}

impl NewsApp {
    pub fn new() -> Self {
        NewsApp::default()
    }

    /// Clients must present `token` in their CONNECT auth.
    pub fn with_token(token: Option<String>) -> Self {
        NewsApp { token }
    }
}

/// What the page's handshake panel shows for `socket`'s connection.
pub fn handshake_info(socket: &Socket) -> HandshakeInfo {
    let hs = socket.handshake();
    let header = |name: &str| hs.header(name).unwrap_or_default().to_owned();
    let settings = socket.io().settings().protocol.clone();
    let status = if hs.websocket_accept.is_some() {
        "101 Switching Protocols"
    } else {
        // Opened by long-polling: no WebSocket upgrade in this request (the
        // transport may upgrade later, on a request of its own).
        "200 OK (HTTP long-polling)"
    };
    HandshakeInfo {
        request: format!("GET {} HTTP/1.1", hs.uri),
        upgrade: header("upgrade"),
        connection: header("connection"),
        sec_websocket_version: header("sec-websocket-version"),
        sec_websocket_key: header("sec-websocket-key"),
        sec_websocket_accept: hs.websocket_accept.clone().unwrap_or_default(),
        status: status.to_owned(),
        sid: hs.sid.clone(),
        ping_interval: u64::try_from(settings.ping_interval.as_millis()).unwrap_or(u64::MAX),
        ping_timeout: u64::try_from(settings.ping_timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

impl Handler for NewsApp {
    fn authorize(&self, request: &ConnectRequest<'_>) -> Result<(), String> {
        let Some(expected) = &self.token else {
            return Ok(());
        };
        match request.auth.get("token").and_then(|t| t.as_str()) {
            Some(token) if token == expected => Ok(()),
            Some(_) => Err("invalid token: the server was started with a different --token".into()),
            None => Err(
                "authentication required: send the server's --token in the CONNECT auth as {\"token\": \"...\"}"
                    .into(),
            ),
        }
    }

    fn on_connect(&self, socket: &Socket) {
        info!(
            socket = socket.id(),
            recovered = socket.recovered(),
            "client connected"
        );
        if socket.recovered() {
            // Its rooms are back and the news it missed is being replayed.
            return;
        }
        let news = NewsItem {
            hello: "world".to_owned(),
            from: None,
            channel: None,
        };
        let sent = socket
            .emit::<News>(&news)
            .and_then(|()| socket.emit::<Handshake>(&handshake_info(socket)));
        if let Err(e) = sent {
            warn!(socket = socket.id(), error = %e, "could not greet client");
        }
    }

    fn on_event(&self, socket: &Socket, event: IncomingEvent) {
        let result = match event.name.as_str() {
            MyOtherEvent::NAME => {
                match event.decode::<MyOtherEvent>() {
                    // The tutorial's `console.log(data)`.
                    Ok(data) => info!(socket = socket.id(), my = %data.my, "my other event"),
                    Err(e) => {
                        warn!(socket = socket.id(), error = %e, "my other event with an unexpected payload");
                    }
                }
                echo(socket, event)
            }
            PublishNews::NAME => publish(socket, event),
            JoinChannel::NAME | LeaveChannel::NAME => channel(socket, event),
            _ => echo(socket, event),
        };
        if let Err(e) = result {
            warn!(socket = socket.id(), error = %e, "reply not sent");
        }
    }

    fn on_disconnect(&self, socket: &Socket, reason: &DisconnectReason) {
        info!(socket = socket.id(), %reason, "client disconnected");
    }
}

/// Sends the event back under the same name with the same arguments, and acks
/// with the same arguments if asked.
fn echo(socket: &Socket, event: IncomingEvent) -> Result<(), SendError> {
    socket.emit_ref(&event.name, &event.args, &event.attachments)?;
    if let Some(ack) = event.ack {
        ack.send_with_attachments(event.args, event.attachments)?;
    }
    Ok(())
}

/// Broadcasts a client's news item as `news`, to a channel's subscribers or to
/// everyone; acks with how many clients it was sent to, or with the error when
/// the payload is not `{"text": .., "channel"?: ..}`.
fn publish(socket: &Socket, event: IncomingEvent) -> Result<(), SendError> {
    let item = event
        .decode::<PublishNews>()
        .map_err(|e| e.to_string())
        .and_then(|item| match &item.channel {
            Some(c) if !valid_channel(c) => Err(format!("invalid channel name {c:?}")),
            _ => Ok(item),
        });
    let reply = match item {
        Ok(item) => {
            let news = NewsItem {
                hello: item.text,
                from: Some(socket.id().to_owned()),
                channel: item.channel.clone(),
            };
            let io = socket.io();
            let to = match &item.channel {
                Some(channel) => io.to(socket.nsp(), &room(channel)),
                None => io.of(socket.nsp()),
            };
            let delivered = to.emit::<News>(&news)?;
            info!(socket = socket.id(), channel = ?item.channel, delivered, "news published");
            json!({ "delivered": delivered })
        }
        Err(e) => {
            warn!(socket = socket.id(), error = %e, "invalid publish");
            json!({ "error": e })
        }
    };
    match event.ack {
        Some(ack) => ack.send(vec![reply]),
        None => Ok(()),
    }
}

/// `join` / `leave` a news channel; acks with the channels the client is in.
fn channel(socket: &Socket, event: IncomingEvent) -> Result<(), SendError> {
    let joining = event.name == JoinChannel::NAME;
    let error = match event.decode::<JoinChannel>() {
        Ok(c) if valid_channel(&c.channel) => {
            if joining {
                socket.join(&room(&c.channel));
            } else {
                socket.leave(&room(&c.channel));
            }
            info!(socket = socket.id(), channel = %c.channel, joining, "channel membership");
            None
        }
        Ok(c) => Some(format!("invalid channel name {:?}", c.channel)),
        Err(e) => Some(e.to_string()),
    };
    let channels = socket
        .rooms()
        .into_iter()
        .filter_map(|r| r.strip_prefix("channel:").map(str::to_owned))
        .collect();
    match event.ack {
        Some(ack) => ack.send(vec![json!(Channels { channels, error })]),
        None => Ok(()),
    }
}
