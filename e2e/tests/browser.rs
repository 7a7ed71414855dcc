//! Browser tests: the release bundle from trunk, served by the real server, in headless
//! Chromium. Run them with `cargo xtask test` (it builds the bundle and sets `DUPLEX_DIST`).
//!
//! Each test starts its own server and chromedriver. They are plain tests: the WebDriver
//! client blocks, and the server runs on a tokio runtime owned by `TestServer`.
//!
//! The page's DOM contract, as the client implements it:
//! `#status` (`connected`), `#transport` (`websocket`), `#news li.news-item`, `#log li.entry[data-dir=in|out]` with
//! `.event` and `.payload`, the custom event form (`#event-name`, `#event-payload`,
//! `#event-ack`, `#event-send`, `#event-error`, `#ack-result`), publishing (`#publish-text`,
//! `#publish-send`) and the handshake panel (`#hs-accept`, `#hs-key`, `#hs-status`).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use duplex_e2e::webdriver::{Check, poll_until};
use duplex_e2e::{ChromeDriver, Session, TestServer, with_screenshot_on_failure};
use serde_json::Value;

/// Generous: a cold Chromium compiling the wasm bundle on a busy 2-core machine is slow.
const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn page_connects_gets_the_news_and_the_echo() -> Result<()> {
    let server = TestServer::start()?;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "connect", || {
        open_connected(&page, &server)?;

        wait_for_news(&page, "world")?;
        wait_for_log(&page, "the echo of `my other event` (in)", |entry| {
            entry.dir == "in"
                && entry.event == "my other event"
                && compact(&entry.payload).contains(r#""my":"data""#)
        })?;
        wait_for_log(&page, "`my other event` sent (out)", |entry| {
            entry.dir == "out" && entry.event == "my other event"
        })?;

        // Nothing in the way: the page is on a WebSocket, never fell back to polling.
        page.wait_for_text("#transport", |text| text.trim() == "websocket", TIMEOUT)?;
        page.wait_for_text("#hs-status", |text| text.contains("101"), TIMEOUT)?;
        let accept = page.wait_for_text("#hs-accept", |text| !text.trim().is_empty(), TIMEOUT)?;
        let digest = protocol::base64::decode(accept.trim())
            .with_context(|| format!("#hs-accept {accept:?} is not base64"))?;
        ensure!(
            digest.len() == 20,
            "#hs-accept {accept:?} should be base64 of a 20-byte SHA-1, decodes to {} bytes",
            digest.len()
        );
        page.wait_for_text("#hs-key", |text| !text.trim().is_empty(), TIMEOUT)?;

        // The screenshot of the page once the news and the echo are in.
        let path = duplex_e2e::target_dir().join("screenshot.png");
        page.screenshot(&path)?;
        println!("screenshot of the connected page: {}", path.display());
        Ok(())
    })?;
    page.delete()?;
    server.stop()
}

#[test]
fn custom_event_gets_its_ack_and_invalid_json_is_refused() -> Result<()> {
    let server = TestServer::start()?;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "custom-event", || {
        open_connected(&page, &server)?;

        let ack = page.find("#event-ack")?;
        if ack.property("checked")?.as_deref() != Some("true") {
            ack.click()?;
        }
        type_into(&page, "#event-name", "ping-test")?;
        type_into(&page, "#event-payload", r#"{"n":42}"#)?;
        page.find("#event-send")?.click()?;

        page.wait_for_text(
            "#ack-result",
            |text| text.contains("ack") && text.contains("42"),
            TIMEOUT,
        )?;
        wait_for_log(&page, "the echo of `ping-test` (in)", |entry| {
            entry.dir == "in" && entry.event == "ping-test" && entry.payload.contains("42")
        })?;
        wait_for_log(&page, "`ping-test` sent (out)", |entry| {
            entry.dir == "out" && entry.event == "ping-test"
        })?;

        // Invalid JSON: an error message, and nothing sent.
        type_into(&page, "#event-payload", "{nope")?;
        let sent_before = count_out(&page)?;
        page.find("#event-send")?.click()?;
        let error = page.wait_for_text("#event-error", |text| !text.trim().is_empty(), TIMEOUT)?;
        // Give a wrongly sent event time to show up in the log before counting.
        std::thread::sleep(Duration::from_millis(500));
        let sent_after = count_out(&page)?;
        ensure!(
            sent_after == sent_before,
            "invalid JSON was sent anyway ({sent_before} `out` entries before, {sent_after} \
             after; #event-error says {error:?})"
        );
        Ok(())
    })?;
    page.delete()?;
    server.stop()
}

#[test]
fn published_news_reaches_another_page() -> Result<()> {
    let server = TestServer::start()?;
    let driver = ChromeDriver::start()?;
    let first = driver.new_session()?;
    let second = driver.new_session()?;
    with_screenshot_on_failure(&second, "publish-second-page", || {
        with_screenshot_on_failure(&first, "publish-first-page", || {
            open_connected(&first, &server)?;
            open_connected(&second, &server)?;

            type_into(&first, "#publish-text", "hello from page one")?;
            first.find("#publish-send")?.click()?;

            wait_for_news(&second, "hello from page one").context("on the second page")?;
            wait_for_news(&first, "hello from page one").context("on the publishing page")?;
            Ok(())
        })
    })?;
    first.delete()?;
    second.delete()?;
    server.stop()
}

#[test]
fn pages_on_two_servers_of_a_cluster_see_each_other_s_news() -> Result<()> {
    let redis = duplex_e2e::RedisServer::start()?;
    let config = || -> Result<duplex_server::Config> {
        Ok(duplex_server::Config {
            dist: duplex_e2e::server::dist_from_env()?,
            redis: Some(redis.url()),
            ..Default::default()
        })
    };
    let one = TestServer::start_with(config()?)?;
    let two = TestServer::start_with(config()?)?;
    one.wait_ready()?;
    two.wait_ready()?;
    let driver = ChromeDriver::start()?;
    let first = driver.new_session()?;
    let second = driver.new_session()?;
    with_screenshot_on_failure(&second, "cluster-second-page", || {
        with_screenshot_on_failure(&first, "cluster-first-page", || {
            open_connected(&first, &one)?;
            open_connected(&second, &two)?;

            type_into(&first, "#publish-text", "from the page on server one")?;
            first.find("#publish-send")?.click()?;
            wait_for_news(&second, "from the page on server one")
                .context("on the page of server two")?;

            type_into(&second, "#publish-text", "from the page on server two")?;
            second.find("#publish-send")?.click()?;
            wait_for_news(&first, "from the page on server two")
                .context("on the page of server one")?;
            Ok(())
        })
    })?;
    first.delete()?;
    second.delete()?;
    one.stop()?;
    two.stop()
}

/// Opens the server's page and waits until `#status` is exactly `connected`.
fn open_connected(page: &Session, server: &TestServer) -> Result<()> {
    page.goto(&server.url())?;
    page.wait_for_text("#status", |text| text.trim() == "connected", TIMEOUT)
        .context("the page never connected")?;
    Ok(())
}

/// Replaces an input's or textarea's content by typing `text`.
fn type_into(page: &Session, selector: &str, text: &str) -> Result<()> {
    let element = page.find(selector)?;
    element.clear()?;
    element.send_keys(text)?;
    Ok(())
}

/// Waits for an item of `#news` whose text contains `needle`.
fn wait_for_news(page: &Session, needle: &str) -> Result<()> {
    page.wait_for_news(needle, TIMEOUT)
}

/// One `#log li.entry`, read in a single script call (not one WebDriver call per field).
#[derive(Debug)]
struct LogEntry {
    dir: String,
    event: String,
    payload: String,
}

fn log_entries(page: &Session) -> Result<Vec<LogEntry>> {
    const SCRIPT: &str = r#"
        return Array.from(document.querySelectorAll('#log li.entry')).map(function (entry) {
            var event = entry.querySelector('.event');
            var payload = entry.querySelector('.payload');
            return [
                entry.getAttribute('data-dir') || '',
                event ? event.textContent.trim() : '',
                payload ? payload.textContent : ''
            ];
        });"#;
    let reply = page.execute(SCRIPT, Vec::new())?;
    let rows = reply
        .as_array()
        .with_context(|| format!("log script returned {reply}"))?;
    rows.iter()
        .map(|row| {
            let [dir, event, payload]: [String; 3] = strings(row.clone())?
                .try_into()
                .map_err(|row| anyhow::anyhow!("log row is not 3 strings: {row:?}"))?;
            Ok(LogEntry {
                dir,
                event,
                payload,
            })
        })
        .collect()
}

/// Waits for a `#log` entry matching `predicate`; the timeout message lists the log.
fn wait_for_log(
    page: &Session,
    what: &str,
    predicate: impl Fn(&LogEntry) -> bool,
) -> Result<LogEntry> {
    poll_until(TIMEOUT, &format!("a #log entry: {what}"), || {
        let mut entries = log_entries(page)?;
        match entries.iter().position(&predicate) {
            Some(index) => Ok(Check::Done(entries.swap_remove(index))),
            None => Ok(Check::Waiting(format!("#log entries: {entries:?}"))),
        }
    })
}

fn count_out(page: &Session) -> Result<usize> {
    Ok(log_entries(page)?
        .iter()
        .filter(|entry| entry.dir == "out")
        .count())
}

/// A JSON array of strings from a script's result.
fn strings(value: Value) -> Result<Vec<String>> {
    let Value::Array(items) = value else {
        anyhow::bail!("script returned {value}, not an array");
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::String(text) => Ok(text),
            other => anyhow::bail!("script returned {other}, not a string"),
        })
        .collect()
}

/// JSON text without whitespace, so `{"my": "data"}` and `{"my":"data"}` compare equal.
fn compact(json: &str) -> String {
    json.chars().filter(|c| !c.is_whitespace()).collect()
}
