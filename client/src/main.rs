//! duplex's browser client: the classic Socket.IO tutorial page, in Rust.
//!
//! The page connects to the server over WebSocket, logs the `news` it receives and
//! answers it with `my other event`, sends any event you type (with an ack if you
//! like), joins news channels and publishes news to one or to every open page, and
//! explains its own WebSocket handshake. A lost connection is re-established with
//! Socket.IO's backoff on new WebSockets under the same session: emits made
//! meanwhile wait, and a server with connection state recovery replays the news
//! missed. Layout:
//! - [`url`]: where to connect (page origin, `?server=`, `<meta name="duplex-server">`)
//!   and with which token (`?token=`, `<meta name="duplex-token">`).
//! - [`state`]: everything the page shows, a pure reducer over [`state::Action`]s.
//! - [`connection`]: the protocol's client session plus the page's reactions, no I/O.
//! - [`socket`]: the `use_socket` hook, the gloo-net WebSockets driving a connection.
//! - [`browser`]: the clock, randomness, online/offline and the other browser calls.
//! - [`app`] and [`components`]: the Yew view; state reaches components by context.
//!
//! The client never builds wire strings by hand: frames come from the `protocol`
//! crate's `ClientSession` and typed events.

mod app;
mod browser;
mod components;
mod connection;
mod socket;
mod state;
mod url;

fn main() {
    yew::Renderer::<app::App>::new().render();
}
