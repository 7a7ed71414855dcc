//! A minimal HTTP/1.1 client, enough to talk to chromedriver on localhost: one request per
//! connection (`Connection: close`), the response read until it is complete (by its
//! `Content-Length` or chunked framing, else to the end of the stream), then parsed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A parsed response: status code and body bytes (headers are not needed by callers).
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole response.
///
/// `timeout` bounds the connect and each read and write; a WebDriver command that takes
/// longer (a browser start, a slow script) fails with an I/O timeout naming the request.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response> {
    let what = || format!("{method} http://{addr}{path}");
    let mut stream = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("{}: connect", what()))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;

    let mut message = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n"
    )
    .into_bytes();
    if let Some(body) = body {
        message.extend_from_slice(
            format!(
                "Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    message.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        message.extend_from_slice(body);
    }
    stream
        .write_all(&message)
        .with_context(|| format!("{}: send", what()))?;

    // Read until the response is complete, not to the end of the stream: chromedriver
    // answers `Connection: close` in kind but keeps the socket open for a while.
    let mut raw = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = stream
            .read(&mut buffer)
            .with_context(|| format!("{}: read response", what()))?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buffer[..n]);
        if is_complete(&raw) {
            break;
        }
    }
    parse_response(&raw).with_context(|| format!("{}: bad response", what()))
}

/// Whether `raw` holds a whole response: headers and the body they announce. A response
/// with neither `Content-Length` nor chunking ends only with the connection.
pub fn is_complete(raw: &[u8]) -> bool {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let Ok(head) = std::str::from_utf8(&raw[..head_end]) else {
        return false;
    };
    let body = &raw[head_end + 4..];
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if name.eq_ignore_ascii_case("content-length") {
            return value
                .trim()
                .parse::<usize>()
                .is_ok_and(|length| body.len() >= length);
        }
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().contains("chunked")
        {
            return dechunk(body).is_ok();
        }
    }
    false
}

/// Parses a complete HTTP/1.1 response.
pub fn parse_response(raw: &[u8]) -> Result<Response> {
    let head_end = find(raw, b"\r\n\r\n").context("no end of headers")?;
    let head = std::str::from_utf8(&raw[..head_end]).context("headers are not UTF-8")?;
    let rest = &raw[head_end + 4..];

    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .with_context(|| format!("bad status line {status_line:?}"))?,
        _ => bail!("bad status line {status_line:?}"),
    };

    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            bail!("bad header line {line:?}");
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .with_context(|| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }

    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = content_length {
        if rest.len() < length {
            bail!("body is {} bytes, Content-Length says {length}", rest.len());
        }
        rest[..length].to_vec()
    } else {
        // Neither: the body runs to the end of the connection.
        rest.to_vec()
    };
    Ok(Response { status, body })
}

/// Decodes a `Transfer-Encoding: chunked` body (extensions ignored, trailers dropped).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").context("chunk size line has no end")?;
        let line = std::str::from_utf8(&rest[..line_end]).context("chunk size is not UTF-8")?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .with_context(|| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            bail!("chunk of {size} bytes is truncated");
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Response {
        parse_response(raw.as_bytes()).expect("well-formed response")
    }

    #[test]
    fn parses_a_content_length_body() {
        let response = parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 31\r\nContent-Type: application/json; charset=utf-8\r\n\
             \r\n{\"value\":{\"ready\":true,\"x\":[]}}",
        );
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"{\"value\":{\"ready\":true,\"x\":[]}}");
    }

    #[test]
    fn stops_at_content_length() {
        let response = parse("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}garbage");
        assert_eq!(response.body, b"{}");
    }

    #[test]
    fn parses_an_error_status() {
        let body = r#"{"value":{"error":"no such element","message":"no such element: Unable to locate element","stacktrace":""}}"#;
        let raw = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let response = parse(&raw);
        assert_eq!(response.status, 404);
        assert_eq!(response.body, body.as_bytes());
    }

    #[test]
    fn parses_a_chunked_body() {
        let response = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\n{\"va\r\na;ext=1\r\nlue\":null}\r\n0\r\n\r\n",
        );
        assert_eq!(response.body, b"{\"value\":null}");
    }

    #[test]
    fn reads_to_the_end_without_length() {
        let response = parse("HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n");
        assert_eq!(response.status, 204);
        assert!(response.body.is_empty());
    }

    #[test]
    fn knows_when_a_response_is_complete() {
        // chromedriver's own header style: no space after the colon.
        let whole = b"HTTP/1.1 200 OK\r\nContent-Length:2\r\nConnection:close\r\n\r\n{}";
        assert!(is_complete(whole));
        assert!(!is_complete(&whole[..whole.len() - 1]));
        assert!(!is_complete(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"));
        assert!(is_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        ));
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n"
        ));
        assert!(!is_complete(b"HTTP/1.1 204 No Content\r\n\r\n"));
        assert_eq!(
            parse(std::str::from_utf8(whole).expect("ascii")).body,
            b"{}"
        );
    }

    #[test]
    fn rejects_malformed_responses() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n").is_err());
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 abc OK\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}").is_err());
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nab")
                .is_err()
        );
    }
}
