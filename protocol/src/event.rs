//! Typed events: an event's name and payload type, declared once and checked by the
//! compiler at both ends.
//!
//! ```
//! use protocol::{event::{decode, encode}, Event};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, PartialEq, Serialize, Deserialize)]
//! struct Chat { text: String }
//! struct ChatEvent;
//! impl Event for ChatEvent {
//!     const NAME: &'static str = "chat";
//!     type Payload = Chat;
//! }
//!
//! let args = encode::<ChatEvent>(&Chat { text: "hi".into() }).unwrap();
//! assert_eq!(decode::<ChatEvent>(&args).unwrap(), Chat { text: "hi".into() });
//! ```

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use thiserror::Error;

/// An event: its wire name and the type of its (single) argument.
pub trait Event {
    /// The name on the wire, the first element of the EVENT array.
    const NAME: &'static str;
    /// The argument that follows the name.
    type Payload: Serialize + DeserializeOwned;
}

/// Why a typed event could not be encoded or decoded.
#[derive(Debug, Error)]
pub enum EventError {
    #[error("event {event:?} has no argument")]
    MissingArgument { event: &'static str },
    #[error("event {event:?} has an invalid payload: {source}")]
    InvalidPayload {
        event: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The arguments of event `E` carrying `payload`.
pub fn encode<E: Event>(payload: &E::Payload) -> Result<Vec<Value>, EventError> {
    serde_json::to_value(payload)
        .map(|v| vec![v])
        .map_err(|source| EventError::InvalidPayload {
            event: E::NAME,
            source,
        })
}

/// Reads event `E`'s payload from its arguments (the first one; others are ignored).
pub fn decode<E: Event>(args: &[Value]) -> Result<E::Payload, EventError> {
    let first = args
        .first()
        .ok_or(EventError::MissingArgument { event: E::NAME })?;
    E::Payload::deserialize(first).map_err(|source| EventError::InvalidPayload {
        event: E::NAME,
        source,
    })
}

/// Declares a typed event: `event!(News, "news", NewsItem);`
#[macro_export]
macro_rules! event {
    ($(#[$meta:meta])* $ty:ident, $name:literal, $payload:ty) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $ty;
        impl $crate::event::Event for $ty {
            const NAME: &'static str = $name;
            type Payload = $payload;
        }
    };
}
