//! Transports: the only code that knows warp. They turn HTTP requests and
//! WebSocket messages into `protocol` frames and back, and fire the session's timers.
//!
//! - [`query`]: validation of the Engine.IO query (`EIO`, `transport`, `sid`), with
//!   the error codes and messages the reference server answers.
//! - [`websocket`]: the WebSocket transport: one task per connection driving a
//!   `ServerSession`.

pub mod query;
pub mod websocket;
