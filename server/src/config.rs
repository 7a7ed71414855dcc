//! Server settings. The binary fills them from flags and environment variables.

use std::path::PathBuf;
use std::time::Duration;

use protocol::session::ServerConfig;

use crate::rooms::RecoveryConfig;

/// Everything the server can be told.
#[derive(Debug, Clone)]
pub struct Config {
    /// The trunk build folder served at `/`.
    pub dist: PathBuf,
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// A client that joins no namespace within this is closed.
    pub connect_timeout: Duration,
    /// Largest message accepted from a client, in bytes.
    pub max_payload: usize,
    /// Frames that may wait for one slow client before it is disconnected.
    pub outbound_queue: usize,
    /// How long shutdown waits for connections to close.
    pub shutdown_timeout: Duration,
    /// Connection state recovery (missed broadcasts replayed after a reconnect);
    /// `None`, the library default as in Socket.IO, turns it off. The binary turns
    /// it on with a 2-minute window.
    pub recovery: Option<RecoveryConfig>,
    /// A shared token the news app requires in each client's CONNECT auth.
    pub token: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        let session = ServerConfig::default();
        Config {
            dist: PathBuf::from("dist"),
            ping_interval: session.ping_interval,
            ping_timeout: session.ping_timeout,
            connect_timeout: session.connect_timeout,
            max_payload: session.max_payload,
            outbound_queue: 1024,
            shutdown_timeout: Duration::from_secs(10),
            recovery: None,
            token: None,
        }
    }
}

impl Config {
    /// The per-session protocol settings.
    pub fn session_config(&self) -> SessionSettings {
        SessionSettings {
            protocol: ServerConfig {
                ping_interval: self.ping_interval,
                ping_timeout: self.ping_timeout,
                connect_timeout: self.connect_timeout,
                max_payload: self.max_payload,
                ..ServerConfig::default()
            },
            outbound_queue: self.outbound_queue,
            recovery: self.recovery,
        }
    }
}

impl SessionSettings {
    /// The Engine.IO part of the settings.
    pub fn engine_config(&self) -> protocol::session::EngineConfig {
        protocol::session::EngineConfig {
            ping_interval: self.protocol.ping_interval,
            ping_timeout: self.protocol.ping_timeout,
            max_payload: self.protocol.max_payload,
        }
    }
}

/// What each connection needs to know.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub protocol: ServerConfig,
    /// Capacity of each connection's outbound queue.
    pub outbound_queue: usize,
    pub recovery: Option<RecoveryConfig>,
}
