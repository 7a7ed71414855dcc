//! The ceiling: a bare tokio-tungstenite WebSocket server doing the same work as
//! the Socket.IO app contract with none of the protocol. It speaks one of two
//! wires ([`Wire`]):
//!
//! - [`Wire::Tiny`], its own tiny text format (`bench`'s `bare`):
//!   - on connection the server sends `hello` (the greeting);
//!   - `e<seq>` (an echo request) is answered with two frames, `E<seq>` (the
//!     echoed event) then `A<seq>` (the ack): as many frames as a Socket.IO
//!     server sends;
//!   - `p<text>` (publish) sends `n<text>` to every connection, the sender included.
//! - [`Wire::SocketIo`], the same contract in Socket.IO's wire format, spliced as
//!   text with no Socket.IO library (`bench`'s `bare-sio`): the generator does
//!   exactly the work it does for a real Socket.IO server, so this is what a
//!   Socket.IO server on tokio-tungstenite could reach at best. See
//!   [`sio_reply`].
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

/// What the bare server speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wire {
    /// Its own tiny text format (`hello`, `e<seq>`, `E<seq>`, ...).
    Tiny,
    /// Socket.IO v5 over Engine.IO v4 frames, for the `/` namespace only.
    #[value(name = "socketio")]
    SocketIo,
}

/// The Engine.IO heartbeat of [`Wire::SocketIo`]: the server pings this often
/// (and says so in its open packet); clients answer, and the answers are ignored.
const PING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(25);

/// Serves on `addr` until the process is killed.
pub async fn serve(
    addr: SocketAddr,
    queue: usize,
    read_buffer: Option<usize>,
    wire: Wire,
) -> anyhow::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("cannot bind {addr}"))?;
    serve_on(socket.listen(BACKLOG)?, queue, read_buffer, wire).await
}

/// [`serve`] on a bound listener.
async fn serve_on(
    listener: tokio::net::TcpListener,
    queue: usize,
    read_buffer: Option<usize>,
    wire: Wire,
) -> anyhow::Result<()> {
    let config = read_buffer.map(|size| WebSocketConfig::default().read_buffer_size(size));
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
            connection(stream, id, queue, config, wire, &registry).await;
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
    wire: Wire,
    registry: &Registry,
) {
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, config).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(queue);
    let kill = CancellationToken::new();
    let sid = format!("bare{id:016}");
    let greeting = match wire {
        Wire::Tiny => GREETING.to_owned(),
        Wire::SocketIo => sio_open(&sid),
    };
    let _ = tx.try_send(Message::text(greeting));
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
            let reply = match wire {
                Wire::Tiny => tiny_reply(text),
                Wire::SocketIo => sio_reply(text, &sid),
            };
            let sent = match reply {
                Reply::None => Ok(()),
                Reply::Close => return,
                Reply::One(a) => tx.try_send(Message::text(a)),
                Reply::Two(a, b) => tx
                    .try_send(Message::text(a))
                    .and_then(|()| tx.try_send(Message::text(b))),
                Reply::Broadcast(news, ack_id) => {
                    let message = Message::text(news);
                    let peers = registry.lock().expect("no panic while holding the lock");
                    let mut reached = 0_usize;
                    for peer in peers.values() {
                        if peer.tx.try_send(message.clone()).is_ok() {
                            reached += 1;
                        } else {
                            // Full: this client is too slow; it is disconnected.
                            peer.kill.cancel();
                        }
                    }
                    drop(peers);
                    // The Socket.IO app acks a publish with how many it reached.
                    ack_id.map_or(Ok(()), |id| {
                        tx.try_send(Message::text(format!("43{id}[{reached}]")))
                    })
                }
            };
            if sent.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        () = reader => {}
        () = kill.cancelled() => {}
    }
}

/// What the server does with one client message.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    None,
    /// Send these frames to the client, in this order.
    One(String),
    Two(String, String),
    /// Send the frame to every client (the sender included), then, if the
    /// sender asked for an ack (this id), how many it reached.
    Broadcast(String, Option<String>),
    /// Close the connection.
    Close,
}

fn tiny_reply(text: &str) -> Reply {
    if let Some(seq) = text.strip_prefix('e') {
        Reply::Two(format!("E{seq}"), format!("A{seq}"))
    } else if let Some(news) = text.strip_prefix('p') {
        Reply::Broadcast(format!("n{news}"), None)
    } else {
        Reply::None
    }
}

/// The Engine.IO open packet of [`Wire::SocketIo`]: WebSocket only, no upgrades.
fn sio_open(sid: &str) -> String {
    format!(
        r#"0{{"sid":"{sid}","upgrades":[],"pingInterval":{},"pingTimeout":20000,"maxPayload":1000000}}"#,
        PING_INTERVAL.as_millis()
    )
}

/// The app contract in Socket.IO's wire format, by splicing text (the bare
/// server parses no JSON on the echo path, as no Socket.IO library would let it):
///
/// - `40[auth]` (CONNECT to `/`): the CONNECT reply `40{"sid":..}`, then the
///   greeting `42["news",{"hello":"world"}]`;
/// - `42[id]["echo",ARGS..]`: `42["echo",ARGS..]`, then `43id[ARGS..]` if an ack
///   was asked for;
/// - `42[id]["publish",{"text":T,..}]`: `42["news",{"hello":T,"from":sid}]` to
///   everyone, and `43id[n]` (how many it reached) if asked;
/// - `41` (DISCONNECT) and `1` (Engine.IO close): the connection is closed;
/// - anything else (pongs, other namespaces, other events): ignored.
fn sio_reply(text: &str, sid: &str) -> Reply {
    match text {
        "1" | "41" => return Reply::Close,
        _ => {}
    }
    if text.starts_with("40") && !text[2..].starts_with('/') {
        return Reply::Two(
            format!(r#"40{{"sid":"{sid}"}}"#),
            r#"42["news",{"hello":"world"}]"#.to_owned(),
        );
    }
    let Some(rest) = text.strip_prefix("42") else {
        return Reply::None;
    };
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (id, payload) = rest.split_at(digits);
    if let Some(args) = payload.strip_prefix(r#"["echo","#) {
        let echo = format!(r#"42["echo",{args}"#);
        return if id.is_empty() {
            Reply::One(echo)
        } else {
            Reply::Two(echo, format!("43{id}[{args}"))
        };
    }
    if payload.starts_with(r#"["publish","#) {
        let Ok(serde_json::Value::Array(items)) = serde_json::from_str(payload) else {
            return Reply::None;
        };
        let Some(serde_json::Value::String(news)) = items.get(1).and_then(|p| p.get("text")) else {
            return Reply::None;
        };
        let Ok(news) = serde_json::to_string(news) else {
            return Reply::None;
        };
        return Reply::Broadcast(
            format!(r#"42["news",{{"hello":{news},"from":"{sid}"}}]"#),
            (!id.is_empty()).then(|| id.to_owned()),
        );
    }
    Reply::None
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

    /// The generator's own client, against a bare server of `wire` on a free
    /// port: greeted, an echo answered with its event and its ack, a publish
    /// delivered as news.
    async fn round_trips(wire: Wire, dialect: crate::conn::Dialect) {
        use crate::conn::Conn;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve_on(listener, 16, Some(4096), wire));
        let sources = crate::source::Sources::new(8);
        let mut conn = Conn::open(dialect, addr, &sources).await.expect("open");
        conn.queue_echo(7).expect("echo");
        conn.queue_publish(published_text(3)).expect("publish");
        let mut seen = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while seen.len() < 3 {
                match conn.next().await.expect("next") {
                    Incoming::Other => {}
                    incoming => seen.push(incoming),
                }
            }
        })
        .await
        .expect("the replies in time");
        assert_eq!(
            seen,
            [Incoming::Echo(7), Incoming::Ack(7), Incoming::News(3)],
            "{wire:?}"
        );
        server.abort();
    }

    #[tokio::test]
    async fn the_generator_round_trips_on_both_wires() {
        round_trips(Wire::Tiny, crate::conn::Dialect::Bare).await;
        round_trips(Wire::SocketIo, crate::conn::Dialect::SocketIo).await;
    }

    #[test]
    fn socketio_wire_follows_the_app_contract() {
        let sid = "bare0000000000000007";
        let open = sio_open(sid);
        assert!(
            open.starts_with(r#"0{"sid":"bare0000000000000007","#),
            "{open}"
        );
        assert_eq!(
            sio_reply("40", sid),
            Reply::Two(
                r#"40{"sid":"bare0000000000000007"}"#.into(),
                r#"42["news",{"hello":"world"}]"#.into()
            )
        );
        assert_eq!(sio_reply("40/admin,", sid), Reply::None);
        assert_eq!(
            sio_reply(r#"4217["echo",{"seq":3},"x"]"#, sid),
            Reply::Two(
                r#"42["echo",{"seq":3},"x"]"#.into(),
                r#"4317[{"seq":3},"x"]"#.into()
            )
        );
        assert_eq!(
            sio_reply(r#"42["echo",{"seq":3}]"#, sid),
            Reply::One(r#"42["echo",{"seq":3}]"#.into())
        );
        let text = published_text(5);
        let Reply::Broadcast(news, None) =
            sio_reply(&format!(r#"42["publish",{{"text":"{text}"}}]"#), sid)
        else {
            panic!("a publish is broadcast");
        };
        assert_eq!(crate::conn::quick_news(&news), Some(5));
        assert_eq!(
            sio_reply(r#"423["publish",{"text":"a\"b"}]"#, sid),
            Reply::Broadcast(
                r#"42["news",{"hello":"a\"b","from":"bare0000000000000007"}]"#.into(),
                Some("3".into())
            )
        );
        assert_eq!(sio_reply(r#"42["publish",{"txt":1}]"#, sid), Reply::None);
        assert_eq!(sio_reply("3", sid), Reply::None);
        assert_eq!(sio_reply("41", sid), Reply::Close);
        assert_eq!(sio_reply("1", sid), Reply::Close);
    }
}
