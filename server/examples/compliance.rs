//! The server the upstream compliance suites expect (socketio/socket.io-protocol
//! and socketio/engine.io-protocol, `test-suite/`): pingInterval 300 ms,
//! pingTimeout 200 ms, maxPayload 1000000, connectTimeout 1000 ms, any Origin.
//!
//! - default: Socket.IO at `/socket.io/`. On connection to `/` or `/custom`, emit
//!   `auth` with the CONNECT auth payload; `message` → emit `message-back` with the
//!   same arguments; `message-with-ack` → ack with the same arguments. Any other
//!   namespace is refused with `{"message":"Invalid namespace"}`.
//! - `--engineio`: bare Engine.IO at `/engine.io/`, every message sent back as is.
//!
//! `cargo run --release -p duplex-server --example compliance [-- --engineio] [--addr 127.0.0.1:3000]`

use std::net::SocketAddr;
use std::time::Duration;

use duplex_server::Config;
use duplex_server::engine::{EngineApp, EngineHandler, EngineMessage, EngineSocket};
use duplex_server::io::{Handler, IncomingEvent, Io, Socket};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// The Socket.IO suite's namespaces.
struct Contract;

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

/// The Engine.IO suite's echo.
struct Echo;

impl EngineHandler for Echo {
    fn on_message(&self, socket: &EngineSocket, message: EngineMessage) {
        let _ = socket.send(message);
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .init();
    let mut engine_only = false;
    let mut addr: SocketAddr = "127.0.0.1:3000".parse()?;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--engineio" => engine_only = true,
            "--addr" => {
                addr = args
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("--addr needs a value"))?
                    .parse()?;
            }
            other => anyhow::bail!("unknown argument {other:?} (expected --engineio, --addr ADDR)"),
        }
    }
    let config = Config {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        connect_timeout: Duration::from_millis(1000),
        max_payload: 1_000_000,
        shutdown_timeout: Duration::from_secs(2),
        ..Config::default()
    };
    let listener = duplex_server::bind(addr).await?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        signal.cancel();
    });
    if engine_only {
        println!("Engine.IO compliance server on http://{addr}/engine.io/");
        let settings = config.session_config();
        let app = EngineApp::new(Echo, settings.engine_config(), settings.outbound_queue);
        duplex_server::serve_engine(listener, "engine.io", app, shutdown).await?;
    } else {
        println!("Socket.IO compliance server on http://{addr}/socket.io/");
        let io = Io::builder(config.session_config())
            .namespace("/", Contract)
            .namespace("/custom", Contract)
            .build();
        duplex_server::serve(listener, config, io, shutdown).await?;
    }
    Ok(())
}
