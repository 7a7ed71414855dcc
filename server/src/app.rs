//! The news & echo application: the Socket.IO tutorial, served from Rust.
//!
//! On connection to `/`: emit `news` `{"hello":"world"}`, then `handshake` (what
//! the server saw of the WebSocket upgrade). `my other event` is logged (the
//! tutorial's `console.log`) and echoed. `publish` broadcasts a news item to every
//! client. Every other event is echoed to its sender under the same name with the
//! same arguments, and acked with the same arguments when the client asks.

use protocol::Event;
use protocol::app::{Handshake, HandshakeInfo, MyOtherEvent, News, NewsItem, PublishNews};
use serde_json::json;
use tracing::{info, warn};

use crate::io::{DisconnectReason, Handler, IncomingEvent, Socket};

/// The tutorial app, a handler for the `/` namespace.
#[derive(Debug, Default)]
pub struct NewsApp;

impl NewsApp {
    pub fn new() -> Self {
        NewsApp
    }
}

/// What the page's handshake panel shows for `socket`'s connection.
pub fn handshake_info(socket: &Socket) -> HandshakeInfo {
    let hs = socket.handshake();
    let header = |name: &str| hs.header(name).unwrap_or_default().to_owned();
    let settings = socket.io().settings().protocol.clone();
    HandshakeInfo {
        request: format!("GET {} HTTP/1.1", hs.uri),
        upgrade: header("upgrade"),
        connection: header("connection"),
        sec_websocket_version: header("sec-websocket-version"),
        sec_websocket_key: header("sec-websocket-key"),
        sec_websocket_accept: hs.websocket_accept.clone().unwrap_or_default(),
        status: "101 Switching Protocols".to_owned(),
        sid: hs.sid.clone(),
        ping_interval: u64::try_from(settings.ping_interval.as_millis()).unwrap_or(u64::MAX),
        ping_timeout: u64::try_from(settings.ping_timeout.as_millis()).unwrap_or(u64::MAX),
    }
}

impl Handler for NewsApp {
    fn on_connect(&self, socket: &Socket) {
        info!(socket = socket.id(), "client connected");
        let news = NewsItem {
            hello: "world".to_owned(),
            from: None,
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
                        warn!(socket = socket.id(), error = %e, "my other event with an unexpected payload")
                    }
                }
                echo(socket, event)
            }
            PublishNews::NAME => publish(socket, event),
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
fn echo(socket: &Socket, event: IncomingEvent) -> Result<(), crate::io::SendError> {
    socket.emit_with_attachments(&event.name, event.args.clone(), event.attachments.clone())?;
    if let Some(ack) = event.ack {
        ack.send_with_attachments(event.args, event.attachments)?;
    }
    Ok(())
}

/// Broadcasts a client's news item to everyone as `news`; acks with how many
/// clients it was sent to, or with the error when the payload is not `{"text":..}`.
fn publish(socket: &Socket, event: IncomingEvent) -> Result<(), crate::io::SendError> {
    match event.decode::<PublishNews>() {
        Ok(item) => {
            let news = NewsItem {
                hello: item.text,
                from: Some(socket.id().to_owned()),
            };
            let delivered = socket.io().broadcast::<News>(socket.nsp(), &news)?;
            info!(socket = socket.id(), delivered, "news published");
            if let Some(ack) = event.ack {
                ack.send(vec![json!({ "delivered": delivered })])?;
            }
        }
        Err(e) => {
            warn!(socket = socket.id(), error = %e, "invalid publish");
            if let Some(ack) = event.ack {
                ack.send(vec![json!({ "error": e.to_string() })])?;
            }
        }
    }
    Ok(())
}
