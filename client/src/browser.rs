//! The few things the page asks the browser directly: the clock, randomness,
//! where the page came from (server, token), whether it is online, window
//! events, and a SHA-1 for checking the WebSocket handshake.
//!
//! Kept apart so the rest of the crate stays pure; these functions compile
//! natively but only work in a browser.

use std::time::Duration;

use protocol::Time;
use protocol::app::WEBSOCKET_GUID;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::url::{self, Endpoint, PageLocation, UrlError};

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

/// A seed for the reconnection jitter: 64 bits from `crypto.getRandomValues`, or
/// from `Math.random` and the clock where that is missing.
pub fn random_seed() -> u64 {
    let mut bytes = [0_u8; 8];
    let crypto = web_sys::window()
        .and_then(|w| w.crypto().ok())
        .and_then(|c| c.get_random_values_with_u8_array(&mut bytes).ok());
    match crypto {
        Some(_) => u64::from_le_bytes(bytes),
        // Truncation is fine: any bits will do.
        None => (js_sys::Math::random() * 9_007_199_254_740_992.0) as u64 ^ now().as_nanos() as u64,
    }
}

/// The `name` parameter of the page's query string.
fn query_param(name: &str) -> Option<String> {
    let search = web_sys::window()?.location().search().ok()?;
    web_sys::UrlSearchParams::new_with_str(&search)
        .ok()?
        .get(name)
}

/// The `content` of `<meta name="{name}">`.
fn meta_content(name: &str) -> Option<String> {
    web_sys::window()?
        .document()?
        .query_selector(&format!(r#"meta[name="{name}"]"#))
        .ok()??
        .get_attribute("content")
}

/// The Socket.IO server of this page: `?server=` beats
/// `<meta name="duplex-server">`, and neither (or blank) means the page's origin.
pub fn endpoint() -> Result<Endpoint, UrlError> {
    let location = web_sys::window().map(|w| w.location());
    let protocol = location
        .as_ref()
        .and_then(|l| l.protocol().ok())
        .unwrap_or_default();
    let host = location
        .as_ref()
        .and_then(|l| l.host().ok())
        .unwrap_or_default();
    let query = query_param("server");
    let meta = meta_content("duplex-server");
    let page = PageLocation {
        protocol: &protocol,
        host: &host,
    };
    url::endpoint(
        page,
        url::server_override(query.as_deref(), meta.as_deref()),
    )
}

/// The token for the CONNECT auth: `?token=` beats `<meta name="duplex-token">`;
/// neither (or blank) means none.
pub fn token() -> Option<String> {
    let query = query_param("token");
    let meta = meta_content("duplex-token");
    url::token(query.as_deref(), meta.as_deref()).map(str::to_owned)
}

/// Whether the browser believes it has a network (`navigator.onLine`).
pub fn is_online() -> bool {
    web_sys::window().is_none_or(|w| w.navigator().on_line())
}

/// A listener for a window event; removed when dropped.
pub struct Listener {
    target: web_sys::EventTarget,
    event: &'static str,
    callback: Closure<dyn FnMut()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback(
            self.event,
            self.callback.as_ref().unchecked_ref(),
        );
    }
}

/// Calls `f` on every `event` of the window (e.g. `online`), until the returned
/// listener is dropped. `None` outside a browser window.
pub fn on_window(event: &'static str, f: impl FnMut() + 'static) -> Option<Listener> {
    let target: web_sys::EventTarget = web_sys::window()?.into();
    let callback = Closure::wrap(Box::new(f) as Box<dyn FnMut()>);
    target
        .add_event_listener_with_callback(event, callback.as_ref().unchecked_ref())
        .ok()?;
    Some(Listener {
        target,
        event,
        callback,
    })
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
