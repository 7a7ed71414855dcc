//! HTTP long-polling's requests, on the browser's `fetch` (web-sys): a GET that
//! waits for the server's packets, a POST that carries the page's. Each request
//! is a [`Request`] future that aborts the fetch when dropped, so a transport
//! given up on leaves no request holding one of the browser's few connections
//! to the server. What the payloads mean is the protocol's business.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::LocalBoxFuture;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

/// A POST's content type, as the official client sends it (a CORS-safelisted
/// type: a cross-origin POST needs no preflight).
const CONTENT_TYPE: &str = "text/plain;charset=UTF-8";

/// A request in flight; dropping it aborts the fetch.
pub struct Request<T> {
    response: LocalBoxFuture<'static, T>,
    abort: Option<web_sys::AbortController>,
}

impl<T> Future for Request<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        self.response.poll_unpin(cx)
    }
}

impl<T> Drop for Request<T> {
    fn drop(&mut self) {
        // A no-op once the response is complete.
        if let Some(abort) = &self.abort {
            abort.abort();
        }
    }
}

/// A long-polling GET of `url`: the body of the server's answer (packets joined
/// by `\x1e`).
pub fn get(url: &str) -> Request<Result<String, String>> {
    send(url, None, "GET")
}

/// A long-polling POST of `payload` to `url` (the server answers `ok`).
pub fn post(url: &str, payload: String) -> Request<Result<String, String>> {
    send(url, Some(payload), "POST")
}

/// Sends the request; its result is the body of a `200` answer, or why there is none.
fn send(url: &str, body: Option<String>, method: &'static str) -> Request<Result<String, String>> {
    // Without an AbortController (very old browsers) requests run to completion.
    let abort = web_sys::AbortController::new().ok();
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    if let Some(abort) = &abort {
        init.set_signal(Some(&abort.signal()));
    }
    if let Some(body) = body {
        init.set_body(&JsValue::from_str(&body));
        let headers = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&headers, &"Content-Type".into(), &CONTENT_TYPE.into());
        init.set_headers(&headers);
    }
    let fetch = web_sys::window()
        .ok_or_else(|| "no window".to_owned())
        .map(|window| window.fetch_with_str_and_init(url, &init));
    let response = async move {
        let answer = async {
            let response: web_sys::Response = JsFuture::from(fetch?)
                .await
                .map_err(js_error)?
                .dyn_into()
                .map_err(js_error)?;
            let status = response.status();
            let text = JsFuture::from(response.text().map_err(js_error)?)
                .await
                .map_err(js_error)?
                .as_string()
                .unwrap_or_default();
            if status == 200 {
                Ok(text)
            } else {
                Err(format!("answered {status}: {}", text.trim()))
            }
        };
        answer
            .await
            .map_err(|e: String| format!("long-polling {method} failed: {e}"))
    };
    Request {
        response: response.boxed_local(),
        abort,
    }
}

/// A rejected promise's reason: a `TypeError`'s message (`Failed to fetch`), or what it is.
fn js_error(value: JsValue) -> String {
    value
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| "request failed".to_owned())
}
