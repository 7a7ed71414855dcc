//! `#handshake`: this connection explained the way the tutorial does — the HTTP
//! upgrade (as the server saw it, from its `handshake` event: a page cannot read
//! these headers itself), the Engine.IO open packet, and the namespace join.
//!
//! A session opened over HTTP long-polling is explained as what it is: a plain
//! GET answered `200 OK` (no `101`, no `Sec-WebSocket-Accept` to check), why the
//! page fell back (`#hs-fallback`), and what became of the upgrade (`#hs-probe`).

use protocol::app::WEBSOCKET_GUID;
use protocol::session::Transport;
use yew::prelude::*;

use crate::app::Slice;
use crate::browser;
use crate::state::{ConnectionState, Upgrade};

/// What the browser's own SHA-1 says about the server's `Sec-WebSocket-Accept`.
#[derive(Debug, Clone, PartialEq)]
enum AcceptCheck {
    Pending,
    Matches,
    Differs(String),
    Unavailable(String),
}

#[derive(Properties, PartialEq)]
pub struct HandshakePanelProps {
    pub connection: Slice<ConnectionState>,
}

#[component]
pub fn HandshakePanel(props: &HandshakePanelProps) -> Html {
    let state = &props.connection;
    let hs = state.handshake.as_ref();
    let check = use_state(|| AcceptCheck::Pending);

    {
        let check = check.clone();
        // Only a WebSocket opening has an accept value to check.
        let pair = hs
            .filter(|h| !h.sec_websocket_accept.is_empty())
            .map(|h| (h.sec_websocket_key.clone(), h.sec_websocket_accept.clone()));
        use_effect_with(pair, move |pair| {
            check.set(AcceptCheck::Pending);
            if let Some((key, accept)) = pair.clone() {
                wasm_bindgen_futures::spawn_local(async move {
                    check.set(match browser::websocket_accept(&key).await {
                        Ok(ours) if ours == accept => AcceptCheck::Matches,
                        Ok(ours) => AcceptCheck::Differs(ours),
                        Err(why) => AcceptCheck::Unavailable(why),
                    });
                });
            }
        });
    }

    let field = |value: Option<&str>| value.unwrap_or_default().to_owned();
    let key = field(hs.map(|h| h.sec_websocket_key.as_str()));
    let open = state.link.open.as_ref();
    let sid = hs
        .map(|h| h.sid.clone())
        .or_else(|| open.map(|o| o.sid.clone()))
        .unwrap_or_default();
    let ping_interval = hs
        .map(|h| h.ping_interval)
        .or_else(|| open.map(|o| o.ping_interval));
    let ping_timeout = hs
        .map(|h| h.ping_timeout)
        .or_else(|| open.map(|o| o.ping_timeout));
    let millis = |v: Option<u64>| v.map(|ms| format!("{ms} ms")).unwrap_or_default();
    let open_json = open
        .and_then(|o| serde_json::to_string_pretty(o).ok())
        .unwrap_or_default();
    let check_text = match (hs, &*check) {
        (None, _) => String::new(),
        (Some(_), AcceptCheck::Pending) => "checking with this browser's SHA-1…".to_owned(),
        (Some(_), AcceptCheck::Matches) => "✓ this browser computes the same value".to_owned(),
        (Some(_), AcceptCheck::Differs(ours)) => {
            format!("✗ this browser computes {ours}, the server sent something else")
        }
        (Some(_), AcceptCheck::Unavailable(why)) => format!("(not checked here: {why})"),
    };

    let by_polling = state.link.opened_over == Some(Transport::Polling);
    // The server's account of a polling opening (a WebSocket's has an accept value).
    let polling_hs = hs.filter(|h| h.sec_websocket_accept.is_empty());
    let upgrade_text = match &state.link.upgrade {
        None if open.is_some_and(|o| o.upgrades.iter().any(|u| u == "websocket")) => {
            "The server offers an upgrade (\"upgrades\": [\"websocket\"]): the page probes it with a WebSocket for this sid (2probe, answered 3probe, then 5).".to_owned()
        }
        None => "The server offers no upgrade: the session stays on long-polling.".to_owned(),
        Some(Upgrade::Done) => "Upgraded: a WebSocket for this sid answered 2probe with 3probe, the page sent 5, and that WebSocket carries the session now.".to_owned(),
        Some(Upgrade::Failed(why)) => format!("The upgrade to WebSocket failed ({why}): the session stays on long-polling."),
    };
    let fallback_text = match &state.fallback {
        Some(why) => format!("No WebSocket: {why}. So this page uses HTTP long-polling instead: a GET always waiting for the server's packets, and a POST for each batch of the page's."),
        None => "A WebSocket to this server failed earlier in this page's life, so it connects with HTTP long-polling: a GET always waiting for the server's packets, and a POST for each batch of the page's.".to_owned(),
    };

    let first_steps = if by_polling {
        html! {
            <>
                { step("1. The browser opens the session with a plain GET", html! {
                    <>
                        <p id="hs-fallback" class="hint">{ fallback_text }</p>
                        <pre id="hs-request" class="mono">{ field(polling_hs.map(|h| h.request.as_str())) }</pre>
                        { hint("No Upgrade header, no key: an ordinary HTTP request, which passes proxies that refuse WebSockets.") }
                    </>
                }) }
                { step("2. The server answers 200 OK: no protocol switch", html! {
                    <>
                        <dl>{ entry("Status", "hs-status", field(polling_hs.map(|h| h.status.as_str()))) }</dl>
                        { hint("The open packet comes in the body of that answer, and every later packet in the answers to the next GETs, several at a time, separated by the record separator (0x1E).") }
                        <p id="hs-probe" class="hint">{ upgrade_text }</p>
                    </>
                }) }
            </>
        }
    } else {
        html! {
            <>
                { step("1. The browser asks for an upgrade", html! {
                    <>
                        <pre id="hs-request" class="mono">{ field(hs.map(|h| h.request.as_str())) }</pre>
                        <dl>
                            { entry("Upgrade", "hs-upgrade", field(hs.map(|h| h.upgrade.as_str()))) }
                            { entry("Connection", "hs-connection", field(hs.map(|h| h.connection.as_str()))) }
                            { entry("Sec-WebSocket-Version", "hs-version", field(hs.map(|h| h.sec_websocket_version.as_str()))) }
                            { entry("Sec-WebSocket-Key", "hs-key", key) }
                        </dl>
                        { hint("The key is 16 random bytes, base64: a nonce that proves the answer comes from a WebSocket server.") }
                    </>
                }) }
                { step("2. The server switches protocols", html! {
                    <>
                        <dl>
                            { entry("Status", "hs-status", field(hs.map(|h| h.status.as_str()))) }
                            { entry("Sec-WebSocket-Accept", "hs-accept", field(hs.map(|h| h.sec_websocket_accept.as_str()))) }
                        </dl>
                        <p class="hint">
                            { "Accept = base64(SHA-1(key + \"" }{ WEBSOCKET_GUID }{ "\")), RFC 6455 §4.2.2. " }
                            <span id="hs-accept-check">{ check_text }</span>
                        </p>
                    </>
                }) }
            </>
        }
    };
    let max_payload = open
        .map(|o| format!("{} bytes", o.max_payload))
        .unwrap_or_default();

    html! {
        <section id="handshake" class="panel handshake">
            <h2>{ "How this connection was made" }</h2>
            if hs.is_none() {
                <p class="empty">{ "Waiting for the server's " }<code>{ "handshake" }</code>{ " event…" }</p>
            }
            <div class="steps">
                { first_steps }
                { step("3. Engine.IO opens a session", html! {
                    <>
                        <dl>
                            { entry("sid", "hs-sid", sid) }
                            { entry("pingInterval", "hs-ping-interval", millis(ping_interval)) }
                            { entry("pingTimeout", "hs-ping-timeout", millis(ping_timeout)) }
                            { entry("maxPayload", "eio-max-payload", max_payload) }
                        </dl>
                        { hint("The open packet (type 0). The server pings every pingInterval; the page answers each ping with a pong, and gives up if no ping comes within pingInterval + pingTimeout.") }
                        <pre id="eio-open" class="mono">{ open_json }</pre>
                    </>
                }) }
                { step("4. Socket.IO joins namespace /", html! {
                    <>
                        <dl>{ entry("socket id", "sio-sid", state.socket_id.clone().unwrap_or_default()) }</dl>
                        { hint("The page sends CONNECT for \"/\" and the server answers with the socket's id (not the Engine.IO sid). Events then travel as EVENT packets: a JSON array, name first.") }
                    </>
                }) }
            </div>
        </section>
    }
}

// The panel's repeated shapes as functions rather than repeated markup: every
// element an `html!` spells out is code in the wasm bundle.

/// `div.step`: a heading, then what the step shows.
fn step(title: &'static str, body: Html) -> Html {
    html! {
        <div class="step">
            <h3>{ title }</h3>
            { body }
        </div>
    }
}

/// One line of a step's `dl`: `value` in `dd#id`.
fn entry(label: &'static str, id: &'static str, value: String) -> Html {
    html! {
        <>
            <dt>{ label }</dt>
            <dd id={id}>{ value }</dd>
        </>
    }
}

/// A step's explanation.
fn hint(text: &'static str) -> Html {
    html! { <p class="hint">{ text }</p> }
}
