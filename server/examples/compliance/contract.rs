//! What the upstream compliance suites (socketio/socket.io-protocol and
//! socketio/engine.io-protocol, `test-suite/`) expect of a server: their
//! settings and the behaviour of their namespaces. Shared by the `compliance`
//! example and the server's own compliance tests (`tests/common/compliance.rs`).

use std::time::Duration;

use duplex_server::Config;
use duplex_server::engine::{EngineHandler, EngineMessage, EngineSocket};
use duplex_server::socketio::{Handler, IncomingEvent, Socket};

pub const PING_INTERVAL: Duration = Duration::from_millis(300);
pub const PING_TIMEOUT: Duration = Duration::from_millis(200);
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);
pub const MAX_PAYLOAD: usize = 1_000_000;

/// The suites' settings.
pub fn config() -> Config {
    Config {
        ping_interval: PING_INTERVAL,
        ping_timeout: PING_TIMEOUT,
        connect_timeout: CONNECT_TIMEOUT,
        max_payload: MAX_PAYLOAD,
        shutdown_timeout: Duration::from_secs(2),
        ..Config::default()
    }
}

/// The Socket.IO suite's namespaces (`/` and `/custom`): on connection emit
/// `auth` with the CONNECT auth payload; `message` → `message-back` with the same
/// arguments; `message-with-ack` → ack with the same arguments.
pub struct Contract;

impl Handler for Contract {
    fn on_connect(&self, socket: &Socket) {
        let _ = socket.emit_raw("auth", vec![socket.auth().clone()]);
    }

    fn on_event(&self, socket: &Socket, event: IncomingEvent) {
        match event.name.as_str() {
            "message" => {
                let _ = socket.emit_with_attachments("message-back", event.args, event.attachments);
            }
            "message-with-ack" => {
                if let Some(ack) = event.ack {
                    let _ = ack.send_with_attachments(event.args, event.attachments);
                }
            }
            _ => {}
        }
    }
}

/// The Engine.IO suite's echo: every message sent back as is.
pub struct Echo;

impl EngineHandler for Echo {
    fn on_message(&self, socket: &EngineSocket, message: EngineMessage) {
        let _ = socket.send(message);
    }
}
