//! Sans-I/O sessions: one connection's protocol state, driven by its transport.
//!
//! A driver feeds a session what happened — a frame arrived at time T
//! (`handle_frame`), or time T was reached (`handle_timeout`) — then drains what the
//! session wants: frames to send (`poll_transmit`), events for the application
//! (`poll_event`) and when to be woken next (`poll_timeout`). The session never
//! reads a clock, sleeps or touches a socket, so the server's warp transport, the
//! browser's gloo-net transport and the unit tests drive the same code.

pub mod backoff;
pub mod client;
pub mod client_transport;
pub mod engine;
pub mod server;

use std::time::Duration;

use thiserror::Error;

use crate::{engineio, socketio};

pub use backoff::Backoff;
pub use client::{ClientConfig, ClientEvent, ClientSession};
pub use client_transport::{ClientTransport, PathMemory, Step, TransportConfig, Transports};
pub use engine::{EngineConfig, EngineEvent, EngineSession, Probe, Transport};
pub use server::{ServerConfig, ServerEvent, ServerSession};

/// Identifies an ack request within one session.
pub type AckId = u64;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CloseReason {
    #[error("the peer closed the session")]
    PeerClosed,
    #[error("closed locally")]
    LocalClose,
    #[error("no pong within pingTimeout")]
    PingTimeout,
    #[error("no ping from the server within pingInterval + pingTimeout")]
    ServerSilent,
    #[error("no namespace connected within connectTimeout")]
    ConnectTimeout,
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("the transport failed: {0}")]
    Transport(String),
}

/// A violation of the protocol by the peer; the session is closed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProtocolError {
    #[error("invalid engine.io packet: {0}")]
    EngineIo(#[from] engineio::DecodeError),
    #[error("invalid socket.io packet: {0}")]
    SocketIo(#[from] socketio::DecodeError),
    #[error("message of {size} bytes exceeds maxPayload of {max}")]
    PayloadTooLarge { size: usize, max: usize },
    #[error("unexpected engine.io packet: {0}")]
    Unexpected(&'static str),
    #[error("invalid websocket frame: {0}")]
    WebSocket(#[from] crate::websocket::FrameError),
}

/// Milliseconds of a duration, for the open packet.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
