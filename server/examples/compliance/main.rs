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

mod contract;

use std::net::SocketAddr;

use duplex_server::engine::EngineApp;
use duplex_server::socketio::Io;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use contract::{Contract, Echo};

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
    let config = contract::config();
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
