//! The Engine.IO request query and its validation.

use serde::Serialize;
use thiserror::Error;

use crate::engine::query_pairs;

/// The transport a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Polling,
    WebSocket,
}

/// A valid Engine.IO query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineQuery {
    pub transport: TransportKind,
    pub sid: Option<String>,
    /// The cache buster (`t`): each polling request of a client has its own,
    /// and a request a browser sends again (its first connection failed before
    /// any answer arrived) has the same one.
    pub t: Option<String>,
}

/// Why a request is refused before any session exists. The codes are the reference
/// server's, so official clients report them as they would against Node.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HandshakeError {
    #[error("Transport unknown")]
    UnknownTransport,
    #[error("Session ID unknown")]
    UnknownSid,
    #[error("Bad handshake method")]
    BadMethod,
    #[error("Bad request")]
    BadRequest,
    #[error("Unsupported protocol version")]
    UnsupportedVersion,
}

/// The JSON body of a refusal: `{"code":5,"message":"Unsupported protocol version"}`.
#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: u8,
    pub message: String,
}

impl HandshakeError {
    pub fn code(&self) -> u8 {
        match self {
            HandshakeError::UnknownTransport => 0,
            HandshakeError::UnknownSid => 1,
            HandshakeError::BadMethod => 2,
            HandshakeError::BadRequest => 3,
            HandshakeError::UnsupportedVersion => 5,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
        }
    }
}

/// Parses a raw query string (`EIO=4&transport=websocket&t=...`).
pub fn parse(raw: &str) -> Result<EngineQuery, HandshakeError> {
    let mut eio = None;
    let mut transport = None;
    let mut sid = None;
    let mut t = None;
    for (key, value) in query_pairs(raw) {
        match key {
            "EIO" => eio = Some(value),
            "transport" => transport = Some(value),
            "sid" => sid = Some(value.to_owned()),
            "t" => t = Some(value.to_owned()),
            _ => {}
        }
    }
    let transport = match transport {
        Some("websocket") => TransportKind::WebSocket,
        Some("polling") => TransportKind::Polling,
        _ => return Err(HandshakeError::UnknownTransport),
    };
    if eio != Some("4") {
        return Err(HandshakeError::UnsupportedVersion);
    }
    Ok(EngineQuery { transport, sid, t })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_queries() {
        assert_eq!(
            parse("EIO=4&transport=websocket"),
            Ok(EngineQuery {
                transport: TransportKind::WebSocket,
                sid: None,
                t: None,
            })
        );
        assert_eq!(
            parse("transport=polling&EIO=4&t=N8hyd6w&sid=abc"),
            Ok(EngineQuery {
                transport: TransportKind::Polling,
                sid: Some("abc".into()),
                t: Some("N8hyd6w".into()),
            })
        );
    }

    #[test]
    fn invalid_queries() {
        assert_eq!(parse(""), Err(HandshakeError::UnknownTransport));
        assert_eq!(parse("EIO=4"), Err(HandshakeError::UnknownTransport));
        assert_eq!(
            parse("EIO=4&transport=carrier-pigeon"),
            Err(HandshakeError::UnknownTransport)
        );
        assert_eq!(
            parse("EIO=3&transport=websocket"),
            Err(HandshakeError::UnsupportedVersion)
        );
        assert_eq!(
            parse("transport=websocket"),
            Err(HandshakeError::UnsupportedVersion)
        );
        assert_eq!(HandshakeError::UnsupportedVersion.code(), 5);
    }
}
