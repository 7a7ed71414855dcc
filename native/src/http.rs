//! Long-polling's HTTP: hyper's client, which keeps connections alive as a
//! browser does, so a session's GETs and POSTs reuse two connections instead of
//! opening one per request.
//!
//! Engine.IO long-polling needs little of HTTP: a GET that waits for packets and a
//! POST that sends them, both answered `200` with a short text body. Anything
//! else is an error carrying the status and the server's message.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::{Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use thiserror::Error;

/// Largest response body accepted: far above any Engine.IO payload a server
/// sends (`maxPayload` is 1 MB by default), low enough to stop a runaway peer
/// from filling memory.
pub const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// How long an idle pooled connection is kept. A session always has a GET
/// waiting, so its connection is idle only between a response and the next GET.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request failed.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("request failed: {0}")]
    Send(#[from] hyper_util::client::legacy::Error),
    #[error("reading the response failed: {0}")]
    Body(String),
    #[error("http response larger than {0} bytes")]
    TooLarge(usize),
    #[error("http status {status}: {body}")]
    Status { status: u16, body: String },
}

/// One client's connection pool: cheap to clone (the clones share it).
#[derive(Debug, Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for HttpClient {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        // Nagle off: Engine.IO payloads are small and latency-sensitive.
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .build(connector);
        HttpClient { client }
    }
}

impl HttpClient {
    /// A GET of `url`: the body of a `200` answer.
    pub async fn get(&self, url: &str) -> Result<String, HttpError> {
        self.request(Method::GET, url, Bytes::new()).await
    }

    /// A POST of `body` to `url` as `text/plain;charset=UTF-8`, the content type
    /// Engine.IO clients use for text payloads: the body of a `200` answer.
    pub async fn post(&self, url: &str, body: String) -> Result<String, HttpError> {
        self.request(Method::POST, url, Bytes::from(body)).await
    }

    async fn request(&self, method: Method, url: &str, body: Bytes) -> Result<String, HttpError> {
        let mut request = Request::builder()
            .method(method.clone())
            .uri(url)
            .header(header::ACCEPT, "*/*");
        if method == Method::POST {
            request = request.header(header::CONTENT_TYPE, "text/plain;charset=UTF-8");
        }
        let response = self.client.request(request.body(Full::new(body))?).await?;
        let status = response.status();
        // Refused from its Content-Length, before it arrives.
        if response.body().size_hint().lower() > MAX_RESPONSE as u64 {
            return Err(HttpError::TooLarge(MAX_RESPONSE));
        }
        let body = Limited::new(response.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    HttpError::TooLarge(MAX_RESPONSE)
                } else {
                    HttpError::Body(e.to_string())
                }
            })?
            .to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        if status == StatusCode::OK {
            Ok(body)
        } else {
            Err(HttpError::Status {
                status: status.as_u16(),
                body,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Reads one request head and its `Content-Length` body from `socket`.
    async fn read_request(socket: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> String {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().expect("length"))
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + length {
                    let request = String::from_utf8_lossy(&buf[..end + 4 + length]).into_owned();
                    buf.drain(..end + 4 + length);
                    return request;
                }
            }
            let mut chunk = [0; 4096];
            let n = socket.read(&mut chunk).await.expect("read");
            assert!(n > 0, "client closed the connection");
            buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Two requests over one connection (kept alive), the second answered chunked
    /// in pieces, as Node's http server may; then an error status.
    #[tokio::test]
    async fn requests_share_a_connection_and_bodies_arrive_in_pieces() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = Vec::new();
            let first = read_request(&mut socket, &mut buf).await;
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .expect("write");
            let second = read_request(&mut socket, &mut buf).await;
            for piece in [
                &b"HTTP/1.1 200 OK\r\nTransfer-"[..],
                b"Encoding: chunked\r\n\r\n3\r",
                b"\n6\x1e6\r\n0\r\n\r\n",
            ] {
                socket.write_all(piece).await.expect("write");
                socket.flush().await.expect("flush");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let third = read_request(&mut socket, &mut buf).await;
            socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 15\r\n\r\nSession ID unk.")
                .await
                .expect("write");
            (first, second, third)
        });
        let client = HttpClient::default();
        let url = format!("http://127.0.0.1:{port}/socket.io/?EIO=4&transport=polling&t=a");
        assert_eq!(
            client.post(&url, "40".to_owned()).await.expect("post"),
            "ok"
        );
        assert_eq!(client.get(&url).await.expect("get"), "6\x1e6");
        match client.get(&url).await {
            Err(HttpError::Status { status: 400, body }) => assert_eq!(body, "Session ID unk."),
            other => panic!("expected a 400, got {other:?}"),
        }
        let (first, second, third) = server.await.expect("server task");
        assert!(
            first.starts_with("POST /socket.io/?EIO=4&transport=polling&t=a HTTP/1.1\r\n"),
            "{first}"
        );
        assert!(
            first.contains("content-type: text/plain;charset=UTF-8"),
            "{first}"
        );
        assert!(first.ends_with("\r\n\r\n40"), "{first}");
        assert!(second.starts_with("GET /socket.io/"), "{second}");
        assert!(third.starts_with("GET /socket.io/"), "{third}");
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused_and_a_cut_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = Vec::new();
            read_request(&mut socket, &mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                MAX_RESPONSE + 1
            );
            socket.write_all(head.as_bytes()).await.expect("write");
            let (mut socket, _) = listener.accept().await.expect("accept");
            read_request(&mut socket, &mut buf).await;
            socket
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .await
                .expect("write");
            // Dropped: the connection ends seven bytes short.
        });
        let client = HttpClient::default();
        let url = format!("http://127.0.0.1:{port}/");
        assert!(matches!(
            client.get(&url).await,
            Err(HttpError::TooLarge(MAX_RESPONSE))
        ));
        assert!(matches!(client.get(&url).await, Err(HttpError::Body(_))));
    }
}
