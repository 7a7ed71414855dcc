//! The page's parts. Each takes the state slices it shows as props (and
//! re-renders only when one of them changes), and the socket handle if it sends
//! commands; the element ids and classes are a contract with the browser tests.

mod channels;
mod event_form;
mod handshake;
mod log;
mod news;
mod publish;
mod status;

pub use channels::ChannelPanel;
pub use event_form::EventForm;
pub use handshake::HandshakePanel;
pub use log::EventLog;
pub use news::NewsList;
pub use publish::PublishForm;
pub use status::StatusBar;
