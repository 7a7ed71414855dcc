//! The page's parts. Each reads the app context ([`crate::app::use_app`]); the
//! element ids and classes are a contract with the browser tests.

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
