//! The servers the upstream compliance suites (socketio/engine.io-protocol and
//! socketio/socket.io-protocol, `test-suite/`) expect, started in-process on
//! 127.0.0.1:0 with their settings: pingInterval 300 ms, pingTimeout 200 ms,
//! maxPayload 1000000, connectTimeout 1000 ms.
//!
//! - [`Server::engine_echo`]: bare Engine.IO at `/engine.io/`, every message sent
//!   back as is.
//! - [`Server::socketio_contract`]: Socket.IO at `/socket.io/`; on connection to `/`
//!   or `/custom` emit `auth` with the CONNECT payload, `message` → `message-back`
//!   with the same arguments, `message-with-ack` → ack with the same arguments.

use std::time::Duration;

use duplex_server::Config;
use duplex_server::engine::EngineApp;
use duplex_server::socketio::{Io, IoBuilder};
use tokio_util::sync::CancellationToken;

use super::eio::{Endpoint, Flavor};

// The contract the `compliance` example serves, shared rather than rewritten.
#[path = "../../examples/compliance/contract.rs"]
mod contract;

#[allow(unused_imports)] // each test binary uses a different part
pub use contract::{CONNECT_TIMEOUT, Contract, Echo, MAX_PAYLOAD, PING_INTERVAL, PING_TIMEOUT};

/// The suites' settings, without a client bundle.
pub fn config() -> Config {
    Config {
        dist: std::env::temp_dir().join("duplex-no-bundle"),
        ..contract::config()
    }
}

/// A server running in the test's runtime.
pub struct Server {
    pub endpoint: Endpoint,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn listener() -> tokio::net::TcpListener {
    duplex_server::bind("127.0.0.1:0".parse().expect("valid address"))
        .await
        .expect("bind 127.0.0.1:0")
}

impl Server {
    /// Bare Engine.IO echo at `/engine.io/`.
    pub async fn engine_echo() -> Server {
        let listener = listener().await;
        let addr = listener.local_addr().expect("bound address");
        let settings = config().session_config();
        let app = EngineApp::new(Echo, settings.engine_config(), settings.outbound_queue);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(duplex_server::serve_engine(
            listener,
            "engine.io",
            app,
            shutdown.clone(),
        ));
        Server {
            endpoint: Endpoint {
                addr,
                path: "/engine.io/",
                flavor: Flavor::EngineEcho,
            },
            shutdown,
            task,
        }
    }

    /// The Socket.IO suite's contract at `/socket.io/`: `/` and `/custom`.
    pub async fn socketio_contract() -> Server {
        Server::socketio(|io| io.namespace("/", Contract).namespace("/custom", Contract)).await
    }

    /// Any Socket.IO application at `/socket.io/`, with the suites' settings.
    pub async fn socketio(namespaces: impl FnOnce(IoBuilder) -> IoBuilder) -> Server {
        let listener = listener().await;
        let addr = listener.local_addr().expect("bound address");
        let config = config();
        let io = namespaces(Io::builder(config.session_config())).build();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(duplex_server::serve(listener, config, io, shutdown.clone()));
        Server {
            endpoint: Endpoint {
                addr,
                path: "/socket.io/",
                flavor: Flavor::SocketIo,
            },
            shutdown,
            task,
        }
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops within its shutdown deadline")
            .expect("server task did not panic")
            .expect("server ran without error");
    }
}
