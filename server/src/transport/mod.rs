//! Transports: the only code that knows warp. They turn HTTP requests and
//! WebSocket messages into `protocol` frames and back, and fire the sessions' timers.
//!
//! - [`query`]: validation of the Engine.IO query (`EIO`, `transport`, `sid`), with
//!   the error codes and messages the reference server answers.
//! - [`registry`]: [`SessionRegistry`], the live sessions of one mount point by sid.
//! - `session`: the task that drives each session over WebSocket, long-polling,
//!   and the upgrade between them; `inbox`: the bounded queue through which the
//!   routes hand it polling requests and upgrades.
//! - [`routes`]: the warp filters of an Engine.IO mount point (`/socket.io/`).
//! - [`ws`]: the WebSocket upgrade and the connection after it, framed by
//!   `protocol::websocket` over a read buffer shared by the connections of a thread.

mod inbox;
pub mod query;
pub mod registry;
pub mod routes;
mod session;
pub mod ws;

pub use inbox::PollError;
pub use registry::SessionRegistry;
