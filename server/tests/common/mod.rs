//! A real server on 127.0.0.1:0 and a raw WebSocket client speaking the wire
//! format by hand, so the tests check the exact bytes the specifications give.

#![allow(dead_code)] // each test binary uses a different part

pub mod compliance;
pub mod eio;
pub mod engine_cases;
pub mod http;
pub mod redis;

use std::net::SocketAddr;
use std::time::Duration;

use duplex_server::Config;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tokio_util::sync::CancellationToken;

/// How long to wait for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(5);

pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let listener = duplex_server::bind("127.0.0.1:0".parse().expect("valid address"))
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("bound address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(duplex_server::run(listener, config, shutdown.clone()));
        TestServer {
            addr,
            shutdown,
            task,
        }
    }

    pub async fn default() -> TestServer {
        TestServer::start(Config {
            dist: std::env::temp_dir().join("duplex-no-bundle"),
            ..Config::default()
        })
        .await
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/socket.io/?EIO=4&transport=websocket", self.addr)
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("server stops within its shutdown deadline")
            .expect("server task did not panic")
            .expect("server ran without error");
    }
}

pub struct RawClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl RawClient {
    /// Opens a WebSocket; the open packet has not been read yet.
    pub async fn open(url: &str) -> RawClient {
        let (ws, response) = connect_async(url).await.expect("websocket handshake");
        assert_eq!(response.status(), 101);
        RawClient { ws }
    }

    /// Opens, reads the open packet, joins `/` and reads `40{"sid":..}`.
    /// Returns the client and its Socket.IO id; `news` and `handshake` follow.
    pub async fn connect(server: &TestServer) -> (RawClient, String) {
        let mut c = RawClient::open(&server.ws_url()).await;
        let open = c.recv_text().await;
        assert!(open.starts_with("0{"), "expected open packet, got {open:?}");
        c.send("40").await;
        let connected = c.recv_text().await;
        let json: serde_json::Value = serde_json::from_str(
            connected
                .strip_prefix("40")
                .unwrap_or_else(|| panic!("expected 40{{..}}, got {connected:?}")),
        )
        .expect("connect payload is JSON");
        let sid = json["sid"].as_str().expect("sid is a string").to_owned();
        (c, sid)
    }

    /// Like `connect`, and also reads the greeting (`news`, then `handshake`).
    pub async fn connect_greeted(server: &TestServer) -> (RawClient, String) {
        let (mut c, sid) = RawClient::connect(server).await;
        let news = c.recv_text().await;
        assert_eq!(news, r#"42["news",{"hello":"world"}]"#);
        let handshake = c.recv_text().await;
        assert!(handshake.starts_with(r#"42["handshake","#), "{handshake}");
        (c, sid)
    }

    pub async fn send(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .await
            .expect("send to server");
    }

    pub async fn send_message(&mut self, message: Message) {
        self.ws.send(message).await.expect("send to server");
    }

    /// The next text message, skipping nothing; fails on timeout or close.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Some(Message::Text(t)) => t.to_string(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next data or close message (`None` when the stream ended).
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            let next = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a message within the patience window");
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return Some(m),
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Reads until the server closes the connection; returns the close frame's
    /// code and reason if there was one. Fails if it stays open past `within`.
    pub async fn expect_closed(&mut self, within: Duration) -> Option<(u16, String)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .expect("the server closes the connection in time");
            match next {
                Some(Ok(Message::Close(frame))) => {
                    return frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// An ack round trip through the echo: proves the connection still works.
    pub async fn round_trip(&mut self, id: u64) {
        self.send(&format!(r#"42{id}["probe",{id}]"#)).await;
        assert_eq!(self.recv_text().await, format!(r#"42["probe",{id}]"#));
        assert_eq!(self.recv_text().await, format!("43{id}[{id}]"));
    }
}
