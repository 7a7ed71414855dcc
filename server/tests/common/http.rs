//! A small HTTP/1.1 client for the long-polling tests: one request per TCP
//! connection (`Connection: close`), the response read to its end, and the body
//! decoded whether it came with a `Content-Length` or chunked.
//!
//! It uses only `TcpStream`'s readiness API (`readable`/`try_read`), so it needs no
//! tokio feature beyond `net`.

use std::io;
use std::net::SocketAddr;

use tokio::net::TcpStream;

use super::PATIENCE;

/// A response, read to the end.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lowercase, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone())
            .unwrap_or_else(|e| panic!("response body is not UTF-8: {e}: {self:?}"))
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON: {e}: {:?}", self.text()))
    }
}

/// Sends `method target` to `addr` with `body` (and its `Content-Length`) and
/// reads the response. An error means the connection failed or the response was
/// not HTTP/1.1 as expected.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
) -> io::Result<Response> {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(body) = body {
        head.push_str("Content-Type: text/plain;charset=UTF-8\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or_default());

    let stream = TcpStream::connect(addr).await?;
    // A server may answer (413, 400) and close before reading the whole body: the
    // write then fails, but its response is still there to read.
    let written = write_all(&stream, &bytes).await;
    let raw = read_to_end(&stream).await?;
    if raw.is_empty() {
        written?;
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    parse(&raw)
}

/// `request`, failing the test if there is no response within [`PATIENCE`].
pub async fn send(addr: SocketAddr, method: &str, target: &str, body: Option<&[u8]>) -> Response {
    tokio::time::timeout(PATIENCE, request(addr, method, target, body))
        .await
        .unwrap_or_else(|_| panic!("no response to {method} {target} within {PATIENCE:?}"))
        .unwrap_or_else(|e| panic!("{method} {target} failed: {e}"))
}

pub async fn get(addr: SocketAddr, target: &str) -> Response {
    send(addr, "GET", target, None).await
}

pub async fn post(addr: SocketAddr, target: &str, body: &str) -> Response {
    send(addr, "POST", target, Some(body.as_bytes())).await
}

async fn write_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        stream.writable().await?;
        match stream.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn read_to_end(stream: &TcpStream) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        stream.readable().await?;
        match stream.try_read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Parses a complete response: status line, headers, and a body delimited by
/// chunked encoding, `Content-Length`, or the end of the connection.
pub fn parse(raw: &[u8]) -> io::Result<Response> {
    let end = find(raw, b"\r\n\r\n").ok_or_else(|| {
        invalid(format!(
            "no end of headers in {:?}",
            String::from_utf8_lossy(raw)
        ))
    })?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let (Some(version), Some(code)) = (parts.next(), parts.next()) else {
        return Err(invalid(format!("bad status line {status_line:?}")));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad status line {status_line:?}")));
    }
    let status: u16 = code
        .parse()
        .map_err(|_| invalid(format!("bad status code in {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let rest = &raw[end + 4..];
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked =
        header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| invalid(format!("bad content-length {length:?}")))?;
        if rest.len() < length {
            return Err(invalid(format!(
                "body cut short: {} of {length} bytes",
                rest.len()
            )));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body (RFC 9112 §7.1); chunk extensions and trailers are ignored.
fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or_else(|| invalid("chunk size line cut short"))?;
        let line = std::str::from_utf8(&rest[..line_end])
            .map_err(|_| invalid("chunk size is not UTF-8"))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| invalid(format!("bad chunk size {line:?}")))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return Err(invalid("chunk cut short"));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
