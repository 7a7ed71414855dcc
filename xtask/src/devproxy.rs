//! The dev loop's front door (`cargo xtask dev`): one address for the page,
//! `/socket.io/` to the server — WebSocket upgrades and long-polling requests
//! alike — and everything else to `trunk serve` (the bundle, its autoreload
//! socket). trunk's own proxy forwards only WebSocket upgrades under one path,
//! so a page that falls back to long-polling in development would fail.
//!
//! Each connection is routed by its first request's path. A request that is
//! not an upgrade is forwarded with `Connection: close`, so the browser opens a
//! new connection — routed anew — for its next request; an upgrade's bytes then
//! flow both ways untouched. Threads and std only: a development tool.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;

use anyhow::{Context, Result};

/// The most a request head may take.
const MAX_HEAD: usize = 64 * 1024;

/// Where requests go.
#[derive(Debug, Clone, Copy)]
pub struct Backends {
    /// The duplex server: `/socket.io/…`.
    pub server: SocketAddr,
    /// `trunk serve`: everything else.
    pub trunk: SocketAddr,
}

/// Listens on `listener` and forwards, on threads of its own, until the
/// process ends.
pub fn spawn(listener: TcpListener, backends: Backends) {
    thread::spawn(move || {
        for client in listener.incoming().flatten() {
            thread::spawn(move || {
                if let Err(error) = forward(client, backends) {
                    eprintln!("xtask dev proxy: {error:#}");
                }
            });
        }
    });
}

/// Binds `addr` for [`spawn`].
pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} for the dev proxy"))
}

fn forward(mut client: TcpStream, backends: Backends) -> Result<()> {
    let (head, rest) = match read_head(&mut client)? {
        Some(read) => read,
        None => return Ok(()),
    };
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("/")
        .to_owned();
    let upstream = if path.starts_with("/socket.io/") || path == "/socket.io" {
        backends.server
    } else {
        backends.trunk
    };
    let upgrade = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade") && !value.trim().is_empty()
        })
    });
    let head = if upgrade { head } else { close_after(&head) };
    let mut server = TcpStream::connect(upstream)
        .with_context(|| format!("cannot reach {upstream} for {path}"))?;
    server.write_all(head.as_bytes())?;
    server.write_all(&rest)?;
    let (mut client_read, mut server_write) = (client.try_clone()?, server.try_clone()?);
    let up = thread::spawn(move || {
        let _ = io::copy(&mut client_read, &mut server_write);
        let _ = server_write.shutdown(Shutdown::Write);
    });
    let _ = io::copy(&mut server, &mut client);
    let _ = client.shutdown(Shutdown::Both);
    let _ = up.join();
    Ok(())
}

/// Reads up to the end of the request head; returns it and what came after.
fn read_head(client: &mut TcpStream) -> Result<Option<(String, Vec<u8>)>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            let head = String::from_utf8(buffer).context("a request head that is not UTF-8")?;
            return Ok(Some((head, rest)));
        }
        anyhow::ensure!(
            buffer.len() <= MAX_HEAD,
            "a request head over {MAX_HEAD} bytes"
        );
    }
}

/// `head` with `Connection: close` in place of any `Connection` header.
fn close_after(head: &str) -> String {
    let mut out = String::with_capacity(head.len() + 20);
    for line in head.trim_end_matches("\r\n").split("\r\n") {
        if line
            .split_once(':')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("connection"))
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;

    /// A backend that answers each request with its name and the request line,
    /// and echoes after an upgrade.
    fn backend(name: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                thread::spawn(move || {
                    let mut reader = io::BufReader::new(stream.try_clone().expect("clone"));
                    let mut lines = Vec::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        lines.push(line.trim_end().to_owned());
                    }
                    let mut stream = stream;
                    let upgrade = lines
                        .iter()
                        .any(|l| l.to_lowercase().starts_with("upgrade:"));
                    let close = lines.iter().any(|l| l == "Connection: close");
                    let body = format!("{name} {} close={close}", lines[0]);
                    if upgrade {
                        let _ = write!(stream, "HTTP/1.1 101 Switching Protocols\r\n\r\n{body}\n");
                        let mut echo = [0u8; 5];
                        if reader.read_exact(&mut echo).is_ok() {
                            let _ = stream.write_all(&echo);
                        }
                    } else {
                        let _ = write!(
                            stream,
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                    }
                });
            }
        });
        addr
    }

    fn ask(proxy: SocketAddr, request: &str) -> String {
        let mut stream = TcpStream::connect(proxy).expect("connect");
        stream.write_all(request.as_bytes()).expect("write");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    }

    #[test]
    fn socket_io_requests_go_to_the_server_and_the_rest_to_trunk() {
        let backends = Backends {
            server: backend("server"),
            trunk: backend("trunk"),
        };
        let listener = bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let proxy = listener.local_addr().expect("addr");
        spawn(listener, backends);

        let polling = ask(
            proxy,
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n",
        );
        assert!(
            polling.ends_with("server GET /socket.io/?EIO=4&transport=polling HTTP/1.1 close=true"),
            "{polling}"
        );
        let page = ask(proxy, "GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(
            page.ends_with("trunk GET /index.html HTTP/1.1 close=true"),
            "{page}"
        );

        // An upgrade keeps its headers and its bytes flow both ways.
        let mut ws = TcpStream::connect(proxy).expect("connect");
        ws.write_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .expect("write");
        let mut reader = io::BufReader::new(ws.try_clone().expect("clone"));
        let mut status = String::new();
        reader.read_line(&mut status).expect("status");
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        let mut blank = String::new();
        reader.read_line(&mut blank).expect("blank");
        let mut body = String::new();
        reader.read_line(&mut body).expect("body");
        assert!(body.starts_with("server GET /socket.io/"), "{body}");
        assert!(body.trim_end().ends_with("close=false"), "{body}");
        ws.write_all(b"hello").expect("write");
        let mut echo = [0u8; 5];
        reader.read_exact(&mut echo).expect("echo");
        assert_eq!(&echo, b"hello");
    }
}
