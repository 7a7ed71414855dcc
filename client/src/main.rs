//! duplex's browser client: the classic Socket.IO tutorial page, in Rust.
//!
//! The page connects to the server over WebSocket (HTTP long-polling when a
//! WebSocket cannot be opened), logs the `news` it receives and
//! answers it with `my other event`, sends any event you type (with an ack if you
//! like), joins news channels and publishes news to one or to every open page, and
//! explains its own WebSocket handshake. A lost connection is re-established with
//! Socket.IO's backoff on new transports under the same session: emits made
//! meanwhile wait, and a server with connection state recovery replays the news
//! missed. Layout:
//! - [`url`]: where to connect (page origin, `?server=`, `<meta name="duplex-server">`)
//!   and with which token (`?token=`, `<meta name="duplex-token">`).
//! - [`state`]: everything the page shows, in slices (connection, news, log,
//!   channels, acks, forms), each a pure reducer over [`state::Action`]s.
//! - [`connection`]: the protocol's client session plus the page's reactions, no I/O.
//! - [`socket`]: the `use_socket` hook, the gloo-net WebSockets or [`polling`] requests
//!   driving a connection.
//! - [`polling`]: HTTP long-polling's GETs and POSTs (fetch, aborted when dropped).
//! - [`browser`]: the clock, randomness, online/offline and the other browser calls.
//! - [`app`] and [`components`]: the Yew view; each component gets the slices it
//!   shows as props, and re-renders only when one of them changes.
//!
//! The client never builds wire strings by hand: frames come from the `protocol`
//! crate's `ClientSession` and typed events.

mod app;
mod browser;
mod components;
mod connection;
mod polling;
mod socket;
mod state;
mod url;

fn main() {
    yew::Renderer::<app::App>::new().render();
}
