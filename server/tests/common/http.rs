//! The long-polling tests' HTTP client: hyper's (the one the native client
//! uses), one pool per test thread, so a test's requests reuse their
//! connections as a browser's do.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

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
/// reads the response. An error means the connection failed or the response
/// was not complete HTTP/1.1.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
) -> io::Result<Response> {
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{target}"));
    if let Some(body) = body {
        // Explicit, even for an empty body: hyper leaves it out for some methods.
        builder = builder
            .header("content-type", "text/plain;charset=UTF-8")
            .header("content-length", body.len());
    }
    let request = builder
        .body(Full::new(Bytes::copy_from_slice(body.unwrap_or_default())))
        .map_err(io::Error::other)?;
    let response = client().request(request).await.map_err(io::Error::other)?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(io::Error::other)?
        .to_bytes()
        .to_vec();
    Ok(Response {
        status,
        headers,
        body,
    })
}

thread_local! {
    /// A pool per thread: its connections are tasks of the runtime that made
    /// them, and each `#[tokio::test]` runs its own runtime on its own thread.
    static CLIENT: RefCell<Option<Client<HttpConnector, Full<Bytes>>>> =
        const { RefCell::new(None) };
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    CLIENT.with(|client| {
        client
            .borrow_mut()
            .get_or_insert_with(|| Client::builder(TokioExecutor::new()).build_http())
            .clone()
    })
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
