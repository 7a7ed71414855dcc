//! A bare WebSocket echo server for the Autobahn|Testsuite (`cargo xtask
//! autobahn`): every text and binary message is sent back as it came, pings are
//! answered, a close is answered and ends the connection.
//!
//! - default (`--peer duplex`): the server's own WebSocket: the upgrade and the
//!   connection of `transport::ws`, framed by `protocol::websocket`, behind a warp
//!   route as the Engine.IO endpoint has it; only the Engine.IO session is missing.
//! - `--peer tungstenite`: the same echo over tokio-tungstenite, for comparison.
//!
//! It listens on loopback only (`--addr`, default `127.0.0.1:0`: a free port) and
//! prints `listening on <addr>` on stdout once it accepts connections; it runs
//! until it is killed or stdin reaches its end.
//!
//! `cargo run --release -p duplex-server --example ws_echo [-- --peer tungstenite] [--addr 127.0.0.1:9001]`

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use duplex_server::transport::ws::{self, Upgrade, WebSocket, WsError};
use futures_util::{SinkExt, StreamExt};
use protocol::Frame;
use protocol::websocket::Message;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::debug;
use tracing_subscriber::EnvFilter;
use warp::Filter;
use warp::http::{HeaderMap, Method, StatusCode};
use warp::reply::{Reply, Response};

/// The largest message echoed: Autobahn's 9.x cases send up to 16 MiB, and are
/// about speed, not about the limit.
const MAX_MESSAGE: usize = 64 * 1024 * 1024;

/// How long a closing connection waits to flush its close frame and for the
/// client to end its side (the session task's bound).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    Duplex,
    Tungstenite,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut peer = Peer::Duplex;
    let mut addr: SocketAddr = "127.0.0.1:0".parse()?;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--peer" => {
                peer = match args.next().as_deref() {
                    Some("duplex") => Peer::Duplex,
                    Some("tungstenite") => Peer::Tungstenite,
                    other => bail!("--peer takes duplex or tungstenite, got {other:?}"),
                }
            }
            "--addr" => {
                addr = args
                    .next()
                    .context("--addr needs a value")?
                    .parse()
                    .context("--addr takes IP:PORT")?;
            }
            other => bail!("unknown argument {other:?} (expected --peer NAME, --addr ADDR)"),
        }
    }
    // A test peer that echoes whatever it is sent: not for other machines.
    if !addr.ip().is_loopback() {
        bail!("--addr must be a loopback address, got {addr}");
    }
    let listener = duplex_server::bind(addr).await?;
    let addr = listener.local_addr()?;
    // The line the caller waits for (stdout is a pipe there: flush it now).
    println!("listening on {addr}");
    std::io::stdout().flush()?;

    let serve = async move {
        match peer {
            Peer::Duplex => serve_duplex(listener).await,
            Peer::Tungstenite => serve_tungstenite(listener).await,
        }
    };
    tokio::select! {
        result = serve => result,
        () = stdin_closed() => Ok(()),
        result = tokio::signal::ctrl_c() => result.context("cannot wait for Ctrl-C"),
    }
}

/// Resolves when stdin reaches its end: the caller that spawned us with a pipe
/// went away (or closed it to stop us), so the server does not outlive it.
async fn stdin_closed() {
    // A blocking read on a thread of its own: tokio's stdin is that too.
    // What it reads is dropped as it comes.
    let _ =
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await;
}

/// Every request on `/` that asks for a WebSocket gets one (400 otherwise),
/// through `transport::ws`'s upgrade.
async fn serve_duplex(listener: TcpListener) -> Result<()> {
    let route = warp::method()
        .and(warp::header::headers_cloned())
        .and(warp::ext::optional::<hyper::upgrade::OnUpgrade>())
        .map(
            |method: Method, headers: HeaderMap, on_upgrade| -> Response {
                match Upgrade::from_request(&method, &headers, on_upgrade) {
                    Some(upgrade) => upgrade.into_response(ws::config(MAX_MESSAGE), echo),
                    None => StatusCode::BAD_REQUEST.into_response(),
                }
            },
        );
    warp::serve(route).incoming(listener).run().await;
    Ok(())
}

/// Sends every message back until the client closes or fails the connection.
async fn echo(mut ws: WebSocket) {
    while let Some(message) = ws.next().await {
        let frame = match message {
            Ok(Message::Text(text)) => Frame::Text(text),
            Ok(Message::Binary(bytes)) => Frame::Binary(bytes),
            // Answered by `WebSocket::next` itself; never yielded.
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            // Its close is answered already: flush it and end our side.
            Ok(Message::Close(_)) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, ws.close_and_drain(None)).await;
                return;
            }
            // Invalid frames: a close frame with the failure's code (1002, 1007
            // or 1009: `WebSocket::close` puts it in place of this one).
            Err(WsError::Frame(e)) => {
                debug!(error = %e, "closing on an invalid frame");
                let reason = e.to_string();
                let goodbye = ws.close_and_drain(Some((e.close_code(), &reason)));
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, goodbye).await;
                return;
            }
            Err(e) => {
                debug!(error = %e, "connection failed");
                return;
            }
        };
        let mut frame = Some(frame);
        if let Err(e) = ws.write_frames(|| frame.take()).await {
            debug!(error = %e, "write failed");
            return;
        }
    }
}

/// The same echo over tokio-tungstenite (its own upgrade, pongs and close
/// replies), with the same message limit.
async fn serve_tungstenite(listener: TcpListener) -> Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(echo_tungstenite(stream));
    }
}

async fn echo_tungstenite(stream: TcpStream) {
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    let mut ws = match tokio_tungstenite::accept_async_with_config(stream, Some(config)).await {
        Ok(ws) => ws,
        Err(e) => {
            debug!(error = %e, "handshake failed");
            return;
        }
    };
    while let Some(message) = ws.next().await {
        let result = match message {
            Ok(message @ (tungstenite::Message::Text(_) | tungstenite::Message::Binary(_))) => {
                ws.send(message).await
            }
            // Pongs and close replies are queued by tungstenite and written as
            // it reads on.
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            debug!(error = %e, "connection ended");
            return;
        }
    }
}
