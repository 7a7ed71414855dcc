//! The duplex wire protocol: Socket.IO v5 carried over Engine.IO v4, with no I/O.
//!
//! Both ends of duplex (the warp server and the Yew browser client) depend on this
//! crate, so the bytes they exchange and the events they understand are defined once.
//!
//! Layout, from the bytes up:
//! - [`base64`]: the small base64 codec the long-polling payload format needs.
//! - [`engineio`]: Engine.IO packets, WebSocket frames and the long-polling payload.
//! - [`socketio`]: Socket.IO packets (namespaces, ack ids, binary attachments) inside
//!   Engine.IO messages, and the [`socketio::Decoder`] that reassembles binary packets.
//! - [`session`]: sans-I/O state machines for one connection, the server side and the
//!   client side. They are fed frames and "the time is now T", and answer with frames
//!   to send, events for the application, and the next instant they want to be woken.
//! - [`websocket`]: RFC 6455 framing for the server side: a [`websocket::Decoder`] fed the
//!   client's bytes as they arrive, and the encoder of the server's frames.
//! - [`args`]: an event's arguments, kept as the JSON text they arrived in until read.
//! - [`event`]: typed events — an event's name and payload type declared once.
//! - [`app`]: the duplex application's own events (`news`, `my other event`, ...).
//!
//! Time is always a parameter: a [`Time`] is a monotonic duration since an origin the
//! driver picks (the server uses a `tokio::time::Instant`, the browser `performance.now()`),
//! so heartbeats, timeouts and ack expiry are tested without sleeping.

pub mod app;
pub mod args;
pub mod base64;
pub mod engineio;
pub mod event;
pub mod session;
pub mod socketio;
pub mod websocket;

pub use args::Args;
pub use engineio::Frame;
pub use event::Event;

/// A point in time: the duration since an arbitrary origin fixed by whoever drives a
/// session. Only differences between two `Time`s of the same driver mean anything.
pub type Time = std::time::Duration;
