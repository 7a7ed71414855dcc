//! Which transport carries the page's session, and what the page has learnt
//! about the way to its server. Pure: `socket.rs` acts on it.
//!
//! The choice follows a mature Socket.IO client: a new Engine.IO session starts
//! on a WebSocket; when that WebSocket fails before the server's open packet (a
//! proxy that refuses `Upgrade: websocket`, a firewall), the same attempt goes on
//! over HTTP long-polling at once. If polling then works, something on the way
//! blocks WebSockets, and the page remembers it for its life (across
//! reconnections and "Reconnect"): later sessions start with polling rather than
//! knocking on the WebSocket door again. A session on polling probes the upgrade
//! to WebSocket when the server offers it; a failed probe is not repeated for the
//! page's life, and a successful one forgets the block.
//!
//! When polling fails too, the server is simply unreachable (down, or the network
//! is gone): nothing is learnt, and the next attempt starts with a WebSocket again.

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

/// What the page learnt about the way to its server.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PathMemory {
    /// A WebSocket failed before its handshake and long-polling then worked.
    websocket_blocked: bool,
    /// An upgrade probe failed.
    probe_failed: bool,
}

impl PathMemory {
    /// The transport a new Engine.IO session starts on.
    pub fn first(self) -> Transport {
        if self.websocket_blocked {
            Transport::Polling
        } else {
            Transport::WebSocket
        }
    }

    /// The server's open packet arrived over long-polling; `after_websocket_failed`:
    /// this attempt's WebSocket had failed before its handshake.
    pub fn polling_opened(&mut self, after_websocket_failed: bool) {
        if after_websocket_failed {
            self.websocket_blocked = true;
        }
    }

    /// Whether a session on polling should probe the upgrade the server offers.
    pub fn may_probe(self) -> bool {
        !self.probe_failed
    }

    /// An upgrade probe failed (no answer, a refusal, a wrong answer).
    pub fn probe_failed(&mut self) {
        self.probe_failed = true;
    }

    /// An upgrade to WebSocket went through: WebSockets work after all.
    pub fn upgraded(&mut self) {
        self.websocket_blocked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_first_until_polling_works_where_websocket_did_not() {
        let mut memory = PathMemory::default();
        assert_eq!(memory.first(), Transport::WebSocket);
        // The server is down: WebSocket and polling both fail, nothing is learnt.
        // Polling opened on its own (remembered earlier) teaches nothing new either.
        memory.polling_opened(false);
        assert_eq!(memory.first(), Transport::WebSocket);
        // WebSocket failed, polling worked: blocked.
        memory.polling_opened(true);
        assert_eq!(memory.first(), Transport::Polling);
        assert_eq!(Transport::Polling.label(), "polling");
    }

    #[test]
    fn one_failed_probe_stops_probing_and_an_upgrade_unblocks() {
        let mut memory = PathMemory::default();
        memory.polling_opened(true);
        assert!(memory.may_probe());
        memory.upgraded();
        assert_eq!(memory.first(), Transport::WebSocket);
        memory.polling_opened(true);
        memory.probe_failed();
        assert!(!memory.may_probe());
        assert_eq!(memory.first(), Transport::Polling);
    }
}
