//! A small HTTP/1.1 client for long-polling: one request per TCP connection.
//!
//! Engine.IO long-polling needs little of HTTP: a GET that waits for packets and a
//! POST that sends them, both answered `200` with a short text body. Each request
//! opens its own connection with `Connection: close`, so there is no connection
//! reuse to get wrong; the response is read with its `Content-Length`, as
//! `Transfer-Encoding: chunked` (Node's http server may answer that way), or to the
//! end of the connection. [`parse_response`] works on bytes alone, so the parsing
//! is unit-tested on fixed byte strings.

use std::io;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest response accepted, headers and body: far above any Engine.IO payload a
/// server sends (`maxPayload` is 1 MB by default), low enough to stop a runaway
/// peer from filling memory.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Largest header section accepted.
const MAX_HEADERS: usize = 64 * 1024;

/// Why a request failed.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("malformed http response: {0}")]
    Malformed(&'static str),
    #[error("http response larger than {0} bytes")]
    TooLarge(usize),
    #[error("connection closed before the response was complete")]
    UnexpectedEof,
    #[error("http status {status}: {body}")]
    Status { status: u16, body: String },
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Header names lowercased, values trimmed, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The request methods long-polling uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// Sends one request to `host:port` and reads its response.
///
/// `host` is as it appears in a URL (`127.0.0.1`, `[::1]`, `localhost`); `target`
/// is the path and query. A POST body is sent as `text/plain;charset=UTF-8`, the
/// content type Engine.IO clients use for text payloads.
pub async fn request(
    host: &str,
    port: u16,
    method: Method,
    target: &str,
    body: Option<&[u8]>,
) -> Result<Response, HttpError> {
    let addr_host = host.trim_start_matches('[').trim_end_matches(']');
    let mut stream = TcpStream::connect((addr_host, port)).await?;
    stream.set_nodelay(true)?;
    stream
        .write_all(&encode_request(host, port, method, target, body))
        .await?;
    let mut buf = Vec::with_capacity(4096);
    loop {
        if let Some((response, _)) = parse_response(&buf, false)? {
            return Ok(response);
        }
        if buf.len() >= MAX_RESPONSE {
            return Err(HttpError::TooLarge(MAX_RESPONSE));
        }
        let read = stream.read_buf(&mut buf).await?;
        if read == 0 {
            return parse_response(&buf, true)?
                .map(|(response, _)| response)
                .ok_or(HttpError::UnexpectedEof);
        }
    }
}

/// The bytes of a request.
pub fn encode_request(
    host: &str,
    port: u16,
    method: Method,
    target: &str,
    body: Option<&[u8]>,
) -> Vec<u8> {
    let method = match method {
        Method::Get => "GET",
        Method::Post => "POST",
    };
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: */*\r\nConnection: close\r\n"
    );
    if let Some(body) = body {
        head.push_str("Content-Type: text/plain;charset=UTF-8\r\n");
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some(body) = body {
        out.extend_from_slice(body);
    }
    out
}

/// How the body's end is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    /// No length given: the body runs to the end of the connection.
    UntilClose,
}

/// Parses a response from the start of `buf`. `Ok(None)`: more bytes are needed.
/// `eof`: the connection has closed, so `buf` is all there is (a body without a
/// length ends here). On success, also returns how many bytes the response took.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(Response, usize)>, HttpError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        if buf.len() > MAX_HEADERS {
            return Err(HttpError::TooLarge(MAX_HEADERS));
        }
        return if eof && !buf.is_empty() {
            Err(HttpError::UnexpectedEof)
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| HttpError::Malformed("header section is not utf-8"))?;
    let mut lines = head.split("\r\n");
    let status = parse_status_line(lines.next().unwrap_or_default())?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or(HttpError::Malformed("header line without a colon"))?;
        if name.is_empty() || name.ends_with(' ') || name.ends_with('\t') {
            return Err(HttpError::Malformed("invalid header name"));
        }
        headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let body_start = head_end + 4;
    let rest = &buf[body_start..];

    let framing = framing(status, &headers)?;
    let (body, used) = match framing {
        Framing::Length(len) => {
            if len > MAX_RESPONSE {
                return Err(HttpError::TooLarge(MAX_RESPONSE));
            }
            if rest.len() < len {
                return if eof {
                    Err(HttpError::UnexpectedEof)
                } else {
                    Ok(None)
                };
            }
            (rest[..len].to_vec(), len)
        }
        Framing::Chunked => match parse_chunked(rest)? {
            Some(done) => done,
            None if eof => return Err(HttpError::UnexpectedEof),
            None => return Ok(None),
        },
        Framing::UntilClose => {
            if !eof {
                return Ok(None);
            }
            (rest.to_vec(), rest.len())
        }
    };
    Ok(Some((
        Response {
            status,
            headers,
            body,
        },
        body_start + used,
    )))
}

fn parse_status_line(line: &str) -> Result<u16, HttpError> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::Malformed("not an HTTP/1.x status line"));
    }
    let code = parts.next().unwrap_or_default();
    if code.len() != 3 {
        return Err(HttpError::Malformed("invalid status code"));
    }
    code.parse()
        .map_err(|_| HttpError::Malformed("invalid status code"))
}

fn framing(status: u16, headers: &[(String, String)]) -> Result<Framing, HttpError> {
    // RFC 9112 §6.3: these responses never have a body.
    if status == 204 || status == 304 || (100..200).contains(&status) {
        return Ok(Framing::Length(0));
    }
    let chunked = headers
        .iter()
        .filter(|(n, _)| n == "transfer-encoding")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .next_back()
        .is_some_and(|last| last.eq_ignore_ascii_case("chunked"));
    if chunked {
        return Ok(Framing::Chunked);
    }
    let mut lengths = headers
        .iter()
        .filter(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse::<usize>());
    match lengths.next() {
        None => Ok(Framing::UntilClose),
        Some(Err(_)) => Err(HttpError::Malformed("invalid content-length")),
        Some(Ok(len)) => {
            // Repeated Content-Length headers must agree (RFC 9110 §8.6).
            if lengths.all(|other| other.as_ref().is_ok_and(|o| *o == len)) {
                Ok(Framing::Length(len))
            } else {
                Err(HttpError::Malformed("conflicting content-length headers"))
            }
        }
    }
}

/// Decodes a chunked body from the start of `buf`: the body and the bytes used,
/// or `None` while incomplete. Chunk extensions and trailers are skipped.
fn parse_chunked(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    // First pass: find the chunks without copying, so an incomplete body costs one
    // step per chunk on every read rather than a copy of everything so far.
    let mut pos = 0;
    let mut chunks = Vec::new();
    loop {
        let Some(line_len) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[pos..pos + line_len])
            .map_err(|_| HttpError::Malformed("chunk size line is not utf-8"))?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        if size_text.is_empty() || size_text.len() > 16 {
            return Err(HttpError::Malformed("invalid chunk size"));
        }
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| HttpError::Malformed("invalid chunk size"))?;
        pos += line_len + 2;
        if size == 0 {
            break;
        }
        let total: usize = chunks.iter().map(|&(_, len)| len).sum();
        if total.saturating_add(size) > MAX_RESPONSE {
            return Err(HttpError::TooLarge(MAX_RESPONSE));
        }
        if buf.len() < pos + size + 2 {
            return Ok(None);
        }
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(HttpError::Malformed("chunk not followed by CRLF"));
        }
        chunks.push((pos, size));
        pos += size + 2;
    }
    // Trailer fields, then an empty line.
    loop {
        let Some(line_len) = find(&buf[pos..], b"\r\n") else {
            return Ok(None);
        };
        pos += line_len + 2;
        if line_len == 0 {
            break;
        }
    }
    let mut body = Vec::with_capacity(chunks.iter().map(|&(_, len)| len).sum());
    for (start, len) in chunks {
        body.extend_from_slice(&buf[start..start + len]);
    }
    Ok(Some((body, pos)))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(bytes: &[u8]) -> Response {
        let (response, used) = parse_response(bytes, false)
            .expect("valid")
            .expect("complete");
        assert_eq!(used, bytes.len());
        response
    }

    #[test]
    fn content_length_body() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: 16\r\n\r\n4hello\x1ebAQIDBA==";
        let response = complete(bytes);
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("content-type"),
            Some("text/plain; charset=UTF-8")
        );
        assert_eq!(response.body, b"4hello\x1ebAQIDBA==");
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        for end in 0..bytes.len() {
            assert_eq!(
                parse_response(&bytes[..end], false).expect("valid prefix"),
                None,
                "{end}"
            );
        }
        assert_eq!(complete(bytes).body, b"ok");
    }

    #[test]
    fn bytes_after_the_body_are_left_alone() {
        let bytes = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1";
        let (response, used) = parse_response(bytes, false)
            .expect("valid")
            .expect("complete");
        assert_eq!(response.body, b"ok");
        assert_eq!(used, bytes.len() - "HTTP/1.1".len());
    }

    #[test]
    fn chunked_body_with_extension_and_trailer() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            6\r\n4hello\r\n\
            1;ext=1\r\n\x1e\r\n\
            A\r\n42[\"news\"]\r\n\
            0\r\nX-Trailer: yes\r\n\r\n";
        let response = complete(bytes);
        assert_eq!(response.body, b"4hello\x1e42[\"news\"]");
        for end in 0..bytes.len() {
            assert_eq!(
                parse_response(&bytes[..end], false).expect("valid prefix"),
                None,
                "{end}"
            );
        }
    }

    #[test]
    fn chunked_without_trailer_overrides_content_length() {
        let bytes = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n2\r\nok\r\n0\r\n\r\n";
        assert_eq!(complete(bytes).body, b"ok");
    }

    #[test]
    fn body_until_close() {
        let bytes = b"HTTP/1.0 200 OK\r\nConnection: close\r\n\r\n4hi";
        assert_eq!(parse_response(bytes, false).expect("valid"), None);
        let (response, _) = parse_response(bytes, true)
            .expect("valid")
            .expect("complete at eof");
        assert_eq!(response.body, b"4hi");
    }

    #[test]
    fn truncated_at_eof_is_an_error() {
        assert!(matches!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nok", true),
            Err(HttpError::UnexpectedEof)
        ));
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nok",
                true
            ),
            Err(HttpError::UnexpectedEof)
        ));
        assert!(matches!(
            parse_response(b"HTTP/1.1 200", true),
            Err(HttpError::UnexpectedEof)
        ));
        assert_eq!(parse_response(b"", true).expect("nothing yet"), None);
    }

    #[test]
    fn error_status_and_empty_body() {
        let response = complete(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(response.status, 400);
        assert!(response.body.is_empty());
        let response = complete(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(response.status, 204);
    }

    #[test]
    fn malformed_responses_are_errors() {
        for bytes in [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 abc OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX",
        ] {
            assert!(
                matches!(parse_response(bytes, false), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[test]
    fn oversized_bodies_are_refused_before_they_arrive() {
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_RESPONSE + 1
        );
        assert!(matches!(
            parse_response(head.as_bytes(), false),
            Err(HttpError::TooLarge(_))
        ));
        assert!(matches!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFF\r\n",
                false
            ),
            Err(HttpError::TooLarge(_))
        ));
    }

    #[test]
    fn request_bytes() {
        assert_eq!(
            encode_request(
                "127.0.0.1",
                3000,
                Method::Get,
                "/socket.io/?EIO=4&transport=polling&t=1",
                None
            ),
            b"GET /socket.io/?EIO=4&transport=polling&t=1 HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            encode_request("[::1]", 80, Method::Post, "/p", Some(b"40")),
            b"POST /p HTTP/1.1\r\nHost: [::1]:80\r\nAccept: */*\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 2\r\n\r\n40"
        );
    }

    #[tokio::test]
    async fn request_over_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0; 4096];
            let mut got = Vec::new();
            while find(&got, b"\r\n\r\n40").is_none() {
                let n = socket.read(&mut buf).await.expect("read");
                got.extend_from_slice(&buf[..n]);
            }
            // Answer in pieces, chunked, as Node may.
            for piece in [
                &b"HTTP/1.1 200 OK\r\nTransfer-"[..],
                b"Encoding: chunked\r\n\r\n2\r",
                b"\nok\r\n0\r\n\r\n",
            ] {
                socket.write_all(piece).await.expect("write");
                socket.flush().await.expect("flush");
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            String::from_utf8(got).expect("utf-8 request")
        });
        let response = request("127.0.0.1", port, Method::Post, "/x?y=1", Some(b"40"))
            .await
            .expect("response");
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"ok");
        let sent = server.await.expect("server task");
        assert!(sent.starts_with("POST /x?y=1 HTTP/1.1\r\n"), "{sent}");
    }
}
