//! A loopback proxy between the page and the server, for tests of what the page does
//! when the way to its server misbehaves.
//!
//! - [`Proxy::cut`] drops every live connection and closes new ones at once, until
//!   [`Proxy::restore`]: a network cut.
//! - [`WebSockets`] says what happens to WebSocket upgrades. With [`WebSockets::Allow`]
//!   it is a plain TCP proxy. Otherwise it reads each request's head, and answers
//!   `403 Forbidden` to the refused requests carrying `Upgrade: websocket` (as some
//!   corporate proxies do) without telling the server; every other request is forwarded
//!   with `Connection: close`, so that the browser opens a new connection — and the
//!   proxy sees a new request head — for each request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The most a request head may take; a longer one is dropped.
const MAX_HEAD: usize = 64 * 1024;

/// What the proxy does with WebSocket upgrades.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebSockets {
    /// Forward everything, bytes as they come (a TCP proxy).
    Allow,
    /// Refuse every WebSocket upgrade.
    Refuse,
    /// Refuse the upgrades that open a new Engine.IO session (no `sid=`); forward those
    /// of an existing session, i.e. the probe that upgrades long-polling.
    RefuseNewSessions,
}

/// A running proxy on `127.0.0.1`; dropping it cuts every connection and stops it.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    websockets: WebSockets,
    /// WebSocket upgrades answered `403`.
    refused: AtomicUsize,
    /// A std lock, never held across an await.
    state: Mutex<CutState>,
}

struct CutState {
    open: bool,
    /// Where new connections go.
    upstream: SocketAddr,
    /// Cancelled by `cut`: every connection forwarded so far ends.
    live: CancellationToken,
}

impl Proxy {
    /// Listens on an ephemeral port of `127.0.0.1` and forwards to `upstream`, on the
    /// runtime of `handle` (the calling thread must not be one of its workers).
    pub fn start(handle: &Handle, upstream: SocketAddr, websockets: WebSockets) -> Result<Self> {
        let listener = handle
            .block_on(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))))
            .context("cannot bind the proxy")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            websockets,
            refused: AtomicUsize::new(0),
            state: Mutex::new(CutState {
                open: true,
                upstream,
                live: CancellationToken::new(),
            }),
        });
        let task = handle.spawn(accept(listener, shared.clone()));
        Ok(Self { addr, shared, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for a page's `?server=` or (with a `/`) to load it.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many WebSocket upgrades were refused so far.
    pub fn refused_upgrades(&self) -> usize {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Drops every live connection; new ones are closed at once until [`Proxy::restore`].
    pub fn cut(&self) {
        let mut state = self.shared.lock();
        state.open = false;
        state.live.cancel();
        state.live = CancellationToken::new();
    }

    /// Forwards new connections again.
    pub fn restore(&self) {
        self.shared.lock().open = true;
    }

    /// Sends new connections to `upstream` (another server of a cluster, say);
    /// live ones stay where they are.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        self.shared.lock().upstream = upstream;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, CutState> {
        self.state
            .lock()
            .expect("the proxy's lock is never held by a panicking thread")
    }

    /// The token of the live connections and where to forward, or `None` while cut.
    fn admit(&self) -> Option<(CancellationToken, SocketAddr)> {
        let state = self.lock();
        state.open.then(|| (state.live.clone(), state.upstream))
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let Some((live, upstream)) = shared.admit() else {
            // Cut off: the page's attempt fails at once.
            drop(client);
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = forward(client, upstream, &shared) => {}
                () = live.cancelled() => {}
            }
            // Dropping both streams closes both sides: the server sees its client go.
        });
    }
}

/// One client connection: checked (unless WebSockets are allowed), then forwarded.
async fn forward(mut client: TcpStream, upstream: SocketAddr, shared: &Shared) {
    let mut first = Vec::new();
    if shared.websockets != WebSockets::Allow {
        let Some((head, rest)) = read_head(&mut client).await else {
            return;
        };
        let request = Request::parse(&head);
        if request.upgrade && refuses(shared.websockets, &request.target) {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            let body = "WebSocket upgrades are refused by this proxy\n";
            let response = format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = client.write_all(response.as_bytes()).await;
            let _ = client.shutdown().await;
            return;
        }
        first = if request.upgrade {
            head.into_bytes()
        } else {
            close_after(&head).into_bytes()
        };
        first.extend_from_slice(&rest);
    }
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    if server.write_all(&first).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

fn refuses(websockets: WebSockets, target: &str) -> bool {
    match websockets {
        WebSockets::Allow => false,
        WebSockets::Refuse => true,
        WebSockets::RefuseNewSessions => {
            let query = target.split_once('?').map_or("", |(_, query)| query);
            !query.split('&').any(|pair| pair.starts_with("sid="))
        }
    }
}

/// Reads up to the end of a request head (`\r\n\r\n`): the head, and the bytes read
/// after it (the start of a body). `None` if the client goes first or sends too much.
async fn read_head(client: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let n = client.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Some((String::from_utf8(buffer).ok()?, rest));
        }
        if buffer.len() > MAX_HEAD {
            return None;
        }
    }
}

/// What the proxy needs to know of a request head.
struct Request {
    target: String,
    upgrade: bool,
}

impl Request {
    fn parse(head: &str) -> Self {
        let mut lines = head.split("\r\n");
        let target = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .unwrap_or_default()
            .to_owned();
        let upgrade = lines
            .filter_map(|line| line.split_once(':'))
            .any(|(name, value)| {
                name.trim().eq_ignore_ascii_case("upgrade")
                    && value.trim().eq_ignore_ascii_case("websocket")
            });
        Self { target, upgrade }
    }
}

/// The head with its `Connection` header replaced by `Connection: close`.
fn close_after(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end_matches("\r\n")
        .split("\r\n")
        .filter(|line| {
            !line
                .split_once(':')
                .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("connection"))
        })
        .collect();
    lines.push("Connection: close");
    let mut head = lines.join("\r\n");
    head.push_str("\r\n\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPGRADE: &str = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
                           Host: 127.0.0.1:1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n";

    #[test]
    fn upgrades_are_recognised_and_refused_by_policy() {
        let request = Request::parse(UPGRADE);
        assert!(request.upgrade);
        assert!(refuses(WebSockets::Refuse, &request.target));
        assert!(refuses(WebSockets::RefuseNewSessions, &request.target));
        assert!(!refuses(
            WebSockets::RefuseNewSessions,
            "/socket.io/?EIO=4&transport=websocket&sid=abc"
        ));
        assert!(!Request::parse("GET / HTTP/1.1\r\nHost: x\r\n\r\n").upgrade);
    }

    #[test]
    fn forwarded_requests_close_their_connection() {
        let head = "POST /socket.io/?sid=a HTTP/1.1\r\nHost: x\r\nconnection: keep-alive\r\n\
                    Content-Length: 2\r\n\r\n";
        assert_eq!(
            close_after(head),
            "POST /socket.io/?sid=a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\
             Connection: close\r\n\r\n"
        );
    }
}
