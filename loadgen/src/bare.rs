//! The ceiling: a bare tokio-tungstenite WebSocket server doing the same work as
//! the Socket.IO app contract with none of the protocol, and its tiny text format.
//!
//! - On connection the server sends `hello` (the greeting).
//! - `e<seq>` (an echo request) is answered with two frames, `E<seq>` (the echoed
//!   event) then `A<seq>` (the ack): as many frames as a Socket.IO server sends.
//! - `p<text>` (publish) sends `n<text>` to every connection, the sender included.
//!
//! Each connection's outbound queue is bounded (`--queue`, 1024 like duplex's
//! default); a connection whose queue is full is disconnected, never silently
//! skipped, so the fan-out's "missing" count stays honest.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use crate::conn::{Incoming, parse_published};

/// Listen backlog of every server the harness runs.
pub const BACKLOG: u32 = 1024;

const GREETING: &str = "hello";

pub fn is_greeting(text: &str) -> bool {
    text == GREETING
}

pub fn echo_request(seq: u64) -> String {
    format!("e{seq}")
}

pub fn publish_request(text: &str) -> String {
    format!("p{text}")
}

/// Reads one of the server's frames.
pub fn parse_reply(text: &str) -> Incoming {
    let mut chars = text.chars();
    let kind = chars.next();
    let rest = chars.as_str();
    let seq = || rest.parse().ok();
    match kind {
        Some('E') => seq().map_or(Incoming::Other, Incoming::Echo),
        Some('A') => seq().map_or(Incoming::Other, Incoming::Ack),
        Some('n') => parse_published(rest).map_or(Incoming::Other, Incoming::News),
        _ => Incoming::Other,
    }
}

/// A connection's queue and the switch that disconnects it.
#[derive(Debug, Clone)]
struct Peer {
    tx: mpsc::Sender<Message>,
    kill: CancellationToken,
}

/// Every live connection, for broadcasts. A std Mutex: held for a map update or
/// one pass of `try_send`s, never across an await.
type Registry = Arc<Mutex<HashMap<u64, Peer>>>;

/// Serves on `addr` until the process is killed.
pub async fn serve(
    addr: SocketAddr,
    queue: usize,
    read_buffer: Option<usize>,
) -> anyhow::Result<()> {
    let config = read_buffer.map(|size| WebSocketConfig::default().read_buffer_size(size));
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot bind {addr}"))?;
    let listener = socket.listen(BACKLOG)?;
    let registry: Registry = Arc::default();
    let ids = AtomicU64::new(0);
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors and the like: that connection only.
            Err(e) => {
                eprintln!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            connection(stream, id, queue, config, &registry).await;
            registry
                .lock()
                .expect("no panic while holding the lock")
                .remove(&id);
        });
    }
}

async fn connection(
    stream: TcpStream,
    id: u64,
    queue: usize,
    config: Option<WebSocketConfig>,
    registry: &Registry,
) {
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, config).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(queue);
    let kill = CancellationToken::new();
    let _ = tx.try_send(Message::text(GREETING));
    registry
        .lock()
        .expect("no panic while holding the lock")
        .insert(
            id,
            Peer {
                tx: tx.clone(),
                kill: kill.clone(),
            },
        );
    let writer = async {
        while let Some(message) = rx.recv().await {
            sink.feed(message).await?;
            // Everything already queued goes out in the same write.
            while let Ok(message) = rx.try_recv() {
                sink.feed(message).await?;
            }
            sink.flush().await?;
        }
        Ok::<_, tokio_tungstenite::tungstenite::Error>(())
    };
    let reader = async {
        while let Some(Ok(message)) = source.next().await {
            let Message::Text(text) = message else {
                if message.is_close() {
                    return;
                }
                continue;
            };
            let text = text.as_str();
            if let Some(seq) = text.strip_prefix('e') {
                let sent = tx
                    .try_send(Message::text(format!("E{seq}")))
                    .and_then(|()| tx.try_send(Message::text(format!("A{seq}"))));
                if sent.is_err() {
                    return;
                }
            } else if let Some(news) = text.strip_prefix('p') {
                let message = Message::text(format!("n{news}"));
                let peers = registry.lock().expect("no panic while holding the lock");
                for peer in peers.values() {
                    if peer.tx.try_send(message.clone()).is_err() {
                        // Full: this client is too slow; it is disconnected.
                        peer.kill.cancel();
                    }
                }
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        () = reader => {}
        () = kill.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conn::published_text;

    #[test]
    fn replies_parse() {
        assert_eq!(parse_reply("E12"), Incoming::Echo(12));
        assert_eq!(parse_reply("A7"), Incoming::Ack(7));
        let news = format!("n{}", published_text(3));
        assert_eq!(parse_reply(&news), Incoming::News(3));
        assert_eq!(parse_reply(GREETING), Incoming::Other);
        assert_eq!(parse_reply("Ax"), Incoming::Other);
    }
}
