//! The few things the page asks the browser directly: the clock, where the page
//! came from, and a SHA-1 for checking the WebSocket handshake.
//!
//! Kept apart so the rest of the crate stays pure; these functions compile
//! natively but only work in a browser.

use std::time::Duration;

use protocol::Time;
use protocol::app::WEBSOCKET_GUID;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;

use crate::url::{self, PageLocation, UrlError};

fn performance() -> Option<web_sys::Performance> {
    web_sys::window().and_then(|w| w.performance())
}

/// Monotonic time for the protocol session: `performance.now()`.
pub fn now() -> Time {
    let ms = performance().map_or(0.0, |p| p.now());
    Duration::from_secs_f64(ms.max(0.0) / 1000.0)
}

/// The local wall-clock time (`HH:MM:SS.mmm`) of a [`now`] instant.
pub fn clock(at: Time) -> String {
    let origin = performance().map_or(0.0, |p| p.time_origin());
    let date = js_sys::Date::new(&JsValue::from_f64(origin + at.as_secs_f64() * 1000.0));
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        date.get_hours(),
        date.get_minutes(),
        date.get_seconds(),
        date.get_milliseconds()
    )
}

/// The Socket.IO WebSocket URL for this page: `?server=` beats
/// `<meta name="duplex-server">`, and neither (or blank) means the page's origin.
pub fn socket_url() -> Result<String, UrlError> {
    let window = web_sys::window();
    let location = window.as_ref().map(web_sys::Window::location);
    let protocol = location
        .as_ref()
        .and_then(|l| l.protocol().ok())
        .unwrap_or_default();
    let host = location
        .as_ref()
        .and_then(|l| l.host().ok())
        .unwrap_or_default();
    let query = location
        .as_ref()
        .and_then(|l| l.search().ok())
        .and_then(|search| web_sys::UrlSearchParams::new_with_str(&search).ok())
        .and_then(|params| params.get("server"));
    let meta = window
        .and_then(|w| w.document())
        .and_then(|d| {
            d.query_selector(r#"meta[name="duplex-server"]"#)
                .ok()
                .flatten()
        })
        .and_then(|m| m.get_attribute("content"));
    let page = PageLocation {
        protocol: &protocol,
        host: &host,
    };
    url::socket_url(
        page,
        url::server_override(query.as_deref(), meta.as_deref()),
    )
}

/// `base64(SHA-1(key + GUID))` computed by the browser (SubtleCrypto), to check the
/// server's `Sec-WebSocket-Accept`. Fails outside a secure context (plain http to a
/// host other than localhost), where browsers hide SubtleCrypto.
pub async fn websocket_accept(key: &str) -> Result<String, String> {
    let window = web_sys::window().ok_or("no window")?;
    if !window.is_secure_context() {
        return Err("SubtleCrypto needs a secure context (https or localhost)".to_owned());
    }
    let subtle = window.crypto().map_err(js_error)?.subtle();
    let input = format!("{key}{WEBSOCKET_GUID}");
    let promise = subtle
        .digest_with_str_and_u8_array("SHA-1", input.as_bytes())
        .map_err(js_error)?;
    let digest = JsFuture::from(promise).await.map_err(js_error)?;
    let bytes = js_sys::Uint8Array::new(&digest).to_vec();
    Ok(protocol::base64::encode(&bytes))
}

fn js_error(value: JsValue) -> String {
    value
        .as_string()
        .or_else(|| {
            js_sys::Reflect::get(&value, &JsValue::from_str("message"))
                .ok()
                .and_then(|m| m.as_string())
        })
        .unwrap_or_else(|| format!("{value:?}"))
}
