//! Which transport carries the page's session, as the page shows it. The rules
//! — a WebSocket first, long-polling when it fails before the server's open
//! packet, what the page learns from that ([`PathMemory`](protocol::session::PathMemory))
//! and the upgrade probe — are the protocol's `ClientTransport`, which
//! `socket.rs` drives.

/// What carries the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    /// HTTP long-polling: a GET always waiting for the server's packets, one POST
    /// at a time carrying the page's.
    Polling,
}

impl Transport {
    /// The exact `#transport` text (browser tests compare it).
    pub fn label(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Polling => "polling",
        }
    }
}

impl From<protocol::session::Transport> for Transport {
    fn from(transport: protocol::session::Transport) -> Self {
        match transport {
            protocol::session::Transport::WebSocket => Transport::WebSocket,
            protocol::session::Transport::Polling => Transport::Polling,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // What the page learns (`PathMemory`) is tested with the machine, in protocol.
    #[test]
    fn labels() {
        assert_eq!(Transport::Polling.label(), "polling");
        assert_eq!(Transport::WebSocket.label(), "websocket");
        assert_eq!(
            Transport::from(protocol::session::Transport::Polling),
            Transport::Polling
        );
    }
}
