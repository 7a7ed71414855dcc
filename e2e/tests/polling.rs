//! Browser tests of the long-polling fallback: the release bundle from trunk, served by
//! the real server, in headless Chromium, behind a proxy that refuses WebSockets. Run them
//! with `cargo xtask test`, or `DUPLEX_DIST=dist cargo test -p duplex-e2e --test polling`
//! after `trunk build --release`.
//!
//! - a proxy refuses every request carrying `Upgrade: websocket` (403), and the page is
//!   loaded through it: the page tries a WebSocket, falls back to HTTP long-polling and
//!   says so (`#transport`, the handshake panel), gets the news, the echo and an ack, its
//!   upgrade probe fails and it stays on polling; after the proxy cuts every connection
//!   it reconnects over polling straight away (no more WebSocket attempts), the server
//!   recovers the session, and news published meanwhile arrives once;
//! - a proxy refuses only the WebSockets that open a new session, and the page comes from
//!   the server with `?server=` naming the proxy (cross-origin polling, CORS): the page
//!   falls back to polling, then its probe gets through and the session moves to a
//!   WebSocket.
//!
//! The page's DOM contract used here: `#status`, `#transport`, `#recovery`, the handshake
//! panel (`#hs-status`, `#hs-fallback`, `#hs-probe`), `#news li.news-item`, the custom
//! event form (`#event-name`, `#event-payload`, `#event-ack`, `#event-send`,
//! `#ack-result`) and `#log li.entry[data-dir] .event`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use duplex_e2e::webdriver::{Check, poll_until};
use duplex_e2e::{
    ChromeDriver, Proxy, Session, TestServer, WebSockets, server::dist_from_env,
    with_screenshot_on_failure,
};
use duplex_server::socketio::RecoveryConfig;
use serde_json::json;
use tokio::runtime::Runtime;

/// Generous: a cold Chromium compiling the wasm bundle on a busy 2-core machine is slow,
/// and a reconnection may wait out a backoff on top.
const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn behind_a_proxy_that_refuses_websockets_the_page_uses_long_polling() -> Result<()> {
    let server = TestServer::start_with(duplex_server::Config {
        dist: dist_from_env()?,
        recovery: Some(RecoveryConfig::default()),
        shutdown_timeout: Duration::from_secs(5),
        ..duplex_server::Config::default()
    })?;
    let rt = runtime()?;
    let proxy = Proxy::start(rt.handle(), server.addr(), WebSockets::Refuse)?;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "polling-fallback", || {
        // Page and socket both through the proxy, as behind a corporate proxy.
        page.goto(&format!("{}/", proxy.url()))?;
        wait_text(&page, "#status", "connected")?;
        wait_text(&page, "#transport", "polling")?;
        ensure!(
            proxy.refused_upgrades() >= 1,
            "the page connected without trying a WebSocket first"
        );

        // The tutorial over long-polling: the news, and the echo of the page's answer.
        wait_news_count(&page, "world", 1)?;
        wait_log(&page, "in", "my other event")?;

        // The handshake panel tells the truth: a plain 200, no 101; and why.
        let status = page.wait_for_text("#hs-status", |t| !t.trim().is_empty(), TIMEOUT)?;
        ensure!(
            status.contains("200") && !status.contains("101"),
            "#hs-status says {status:?} for a long-polling session"
        );
        let why = page.find("#hs-fallback")?.text()?;
        ensure!(
            why.contains("WebSocket"),
            "#hs-fallback does not say why: {why:?}"
        );
        // The probe for the upgrade is refused too: the session stays on polling.
        let probe = page.wait_for_text("#hs-probe", |t| t.contains("failed"), TIMEOUT)?;
        println!("#hs-probe: {probe:?}");
        wait_text(&page, "#transport", "polling")?;

        // A custom event with an ack: a POST out, the ack and the echo in a GET.
        send_event(&page, "poll-test", r#"{"n":42}"#)?;
        page.wait_for_text(
            "#ack-result",
            |t| t.contains("ack in") && t.contains("42"),
            TIMEOUT,
        )?;
        wait_log(&page, "in", "poll-test")?;
        let shot = duplex_e2e::target_dir().join("polling-connected.png");
        page.screenshot(&shot)?;
        println!("screenshot of the page on long-polling: {}", shot.display());

        // The proxy cuts every connection; news is published while the page is away.
        let refused = proxy.refused_upgrades();
        proxy.cut();
        wait_text(&page, "#status", "reconnecting")?;
        let publisher = rt
            .block_on(duplex_native::connect(
                &format!("http://{}", server.addr()),
                duplex_native::Options::default(),
            ))
            .context("the native publisher cannot connect")?;
        rt.block_on(publisher.emit_with_ack(
            "publish",
            vec![json!({ "text": "news while you were polling elsewhere" })],
        ))
        .context("publishing while the page is away")?;

        // Back: over polling at once, the session recovered, the missed item there once.
        proxy.restore();
        wait_text(&page, "#status", "connected")?;
        wait_text(&page, "#transport", "polling")?;
        page.wait_for_text("#recovery", |t| t.trim() == "recovered", TIMEOUT)?;
        wait_news_count(&page, "news while you were polling elsewhere", 1)?;
        ensure!(
            proxy.refused_upgrades() == refused,
            "the page tried WebSockets again after learning they are refused ({} refusals \
             before the cut, {} after)",
            refused,
            proxy.refused_upgrades()
        );
        // And the connection works both ways after the reconnect.
        send_event(&page, "after-cut", r#"{"n":7}"#)?;
        page.wait_for_text(
            "#ack-result",
            |t| t.contains("ack in") && t.contains('7'),
            TIMEOUT,
        )?;
        rt.block_on(publisher.disconnect());
        Ok(())
    })?;
    page.delete()?;
    drop(proxy);
    server.stop()
}

#[test]
fn a_page_on_long_polling_upgrades_when_the_probe_gets_through() -> Result<()> {
    let server = TestServer::start()?;
    let rt = runtime()?;
    let proxy = Proxy::start(rt.handle(), server.addr(), WebSockets::RefuseNewSessions)?;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "polling-upgrade", || {
        // The page from the server, its socket through the proxy: cross-origin polling.
        page.goto(&format!("{}?server={}", server.url(), proxy.url()))?;
        wait_text(&page, "#status", "connected")?;
        page.wait_for_text("#hs-probe", |t| t.contains("Upgraded"), TIMEOUT)?;
        wait_text(&page, "#transport", "websocket")?;
        ensure!(
            proxy.refused_upgrades() >= 1,
            "the page connected without trying a WebSocket first"
        );
        // Opened by polling: the panel shows the 200 of that opening, not a 101.
        let status = page.find("#hs-status")?.text()?;
        ensure!(
            status.contains("200"),
            "#hs-status says {status:?} for a session opened by long-polling"
        );
        wait_news_count(&page, "world", 1)?;
        send_event(&page, "upgraded-test", r#"{"n":5}"#)?;
        page.wait_for_text(
            "#ack-result",
            |t| t.contains("ack in") && t.contains('5'),
            TIMEOUT,
        )?;
        wait_log(&page, "in", "upgraded-test")?;
        Ok(())
    })?;
    page.delete()?;
    drop(proxy);
    server.stop()
}

fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot build the test's tokio runtime")
}

/// Waits until `selector`'s text is exactly `text`.
fn wait_text(page: &Session, selector: &str, text: &str) -> Result<()> {
    page.wait_for_text(selector, |t| t.trim() == text, TIMEOUT)
        .with_context(|| format!("waiting for {selector} {text:?}"))
        .map(drop)
}

/// Emits `event` with `payload` from the custom event form, asking for an ack.
fn send_event(page: &Session, event: &str, payload: &str) -> Result<()> {
    let ack = page.find("#event-ack")?;
    if ack.property("checked")?.as_deref() != Some("true") {
        ack.click()?;
    }
    for (selector, text) in [("#event-name", event), ("#event-payload", payload)] {
        let input = page.find(selector)?;
        input.clear()?;
        input.send_keys(text)?;
    }
    page.find("#event-send")?.click()
}

/// Waits for a `#log` entry of `event` going `dir` (`in` or `out`).
fn wait_log(page: &Session, dir: &str, event: &str) -> Result<()> {
    poll_until(TIMEOUT, &format!("a #log entry {dir} {event:?}"), || {
        let count = page.execute(
            "var dir = arguments[0], event = arguments[1];\
             return Array.from(document.querySelectorAll('#log li.entry'))\
               .filter(function (e) {\
                 var name = e.querySelector('.event');\
                 return e.getAttribute('data-dir') === dir\
                   && name && name.textContent.trim() === event;\
               }).length;",
            vec![json!(dir), json!(event)],
        )?;
        if count.as_u64().unwrap_or_default() >= 1 {
            Ok(Check::Done(()))
        } else {
            Ok(Check::Waiting("not yet".to_owned()))
        }
    })
}

/// Waits until exactly `count` items of `#news` contain `needle`.
fn wait_news_count(page: &Session, needle: &str, count: u64) -> Result<()> {
    poll_until(
        TIMEOUT,
        &format!("{count} news item(s) containing {needle:?}"),
        || {
            let seen = page.execute(
                "var needle = arguments[0];\
                 return Array.from(document.querySelectorAll('#news li.news-item'))\
                   .filter(function (li) { return li.textContent.indexOf(needle) >= 0; }).length;",
                vec![json!(needle)],
            )?;
            if seen.as_u64() == Some(count) {
                Ok(Check::Done(()))
            } else {
                Ok(Check::Waiting(format!("{seen} such items")))
            }
        },
    )
}
