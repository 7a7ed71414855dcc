//! Browser tests of reconnection, recovery and the token: the release bundle from trunk,
//! served by the real server, in headless Chromium. Run them with `cargo xtask test`, or
//! `DUPLEX_DIST=dist cargo test -p duplex-e2e --test reconnect` after `trunk build --release`.
//!
//! - the server goes away under an open page and comes back on the same port: the page
//!   shows `reconnecting` (attempt, countdown) and connects again by itself; an explicit
//!   Disconnect stops that, and Reconnect starts over;
//! - the page's transport is cut (a TCP proxy between page and server, `duplex_e2e::Proxy`,
//!   drops it) while a native client publishes to the page's channel: the page comes
//!   back, the server recovers its session, and the missed item shows exactly once;
//! - an emit made while cut off is buffered, its ack times out (`#ack-result`), and it
//!   goes out once the page is back;
//! - with a token configured the page is refused without it and connects with `?token=`;
//! - Chromium's offline emulation shows `offline`, and going online again reconnects at
//!   once rather than after the rest of the backoff.
//!
//! Each test owns a tokio runtime for its servers, proxy and native client; the WebDriver
//! client blocks on the test thread meanwhile.
//!
//! The page's DOM contract used here: `#status`, `#status-detail`, `#recovery`,
//! `#disconnect`, `#reconnect`, `#channel-name`, `#channel-join`, `#channels li.channel`,
//! `#channel-error`, `#news li.news-item` (with `.news-channel`), the custom event form
//! (`#event-name`, `#event-payload`, `#event-ack`, `#event-send`, `#event-error`,
//! `#ack-result`) and `#log li.entry[data-dir] .event`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use duplex_e2e::webdriver::{Check, poll_until};
use duplex_e2e::{
    ChromeDriver, Proxy, Session, WebSockets, server::dist_from_env, with_screenshot_on_failure,
};
use duplex_server::socketio::RecoveryConfig;
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Generous: a cold Chromium compiling the wasm bundle on a busy 2-core machine is slow,
/// and a reconnection may wait out a 5 s backoff on top.
const TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn the_page_reconnects_when_the_server_comes_back() -> Result<()> {
    let config = server_config()?;
    let rt = runtime()?;
    let server = Server::start(&rt, localhost(0), config.clone())?;
    let addr = server.addr;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "reconnect-server-restart", || {
        page.goto(&format!("http://{addr}/"))?;
        wait_status(&page, "connected")?;

        // The server stops (its shutdown tells the page): the page keeps trying.
        server.stop(&rt)?;
        wait_status(&page, "reconnecting")?;
        let detail = page.wait_for_text("#status-detail", has_attempt_number, TIMEOUT)?;
        println!("while the server is down, #status-detail says {detail:?}");
        let shot = duplex_e2e::target_dir().join("reconnect-reconnecting.png");
        page.screenshot(&shot)?;
        println!("screenshot of the reconnecting page: {}", shot.display());

        // Back on the same port: the page reconnects by itself. This server has no
        // recovery, so the session is new.
        let server = Server::start(&rt, addr, config.clone())?;
        wait_status(&page, "connected")?;
        page.wait_for_text("#recovery", |text| text.trim() == "new session", TIMEOUT)?;

        // An explicit Disconnect cancels reconnection, even once the server is back...
        server.stop(&rt)?;
        wait_status(&page, "reconnecting")?;
        page.find("#disconnect")?.click()?;
        wait_status(&page, "disconnected")?;
        let server = Server::start(&rt, addr, config.clone())?;
        // (longer than the first attempts' backoff, 0.5 to 1.5 s, and then some)
        std::thread::sleep(Duration::from_secs(3));
        let status = page.find("#status")?.text()?;
        ensure!(
            status.trim() == "disconnected",
            "after Disconnect the page reconnected anyway: #status is {status:?}"
        );
        // ...and Reconnect starts over.
        page.find("#reconnect")?.click()?;
        wait_status(&page, "connected")?;
        server.stop(&rt)
    })?;
    page.delete()?;
    Ok(())
}

#[test]
fn a_cut_transport_recovers_the_session_and_the_missed_news_once() -> Result<()> {
    let config = duplex_server::Config {
        recovery: Some(RecoveryConfig::default()),
        ..server_config()?
    };
    let rt = runtime()?;
    let server = Server::start(&rt, localhost(0), config)?;
    let proxy = Proxy::start(rt.handle(), server.addr, WebSockets::Allow)?;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "reconnect-recovery", || {
        // The page comes from the server; its socket goes through the proxy.
        page.goto(&format!("http://{}/?server={}", server.addr, proxy.url()))?;
        wait_status(&page, "connected")?;

        type_into(&page, "#channel-name", "sports")?;
        page.find("#channel-join")?.click()?;
        wait_channels(&page, |channels| channels == ["sports"])?;

        let publisher = rt
            .block_on(duplex_native::connect(
                &format!("http://{}", server.addr),
                duplex_native::Options {
                    transports: duplex_native::Transports::WebSocketOnly,
                    ..duplex_native::Options::default()
                },
            ))
            .context("the native publisher cannot connect")?;
        let publish = |text: &str| -> Result<Value> {
            let ack = rt
                .block_on(publisher.emit_with_ack(
                    "publish",
                    vec![json!({ "text": text, "channel": "sports" })],
                ))
                .with_context(|| format!("publishing {text:?}"))?;
            ack.args
                .into_iter()
                .next()
                .with_context(|| format!("the publish ack of {text:?} has no argument"))
        };

        // A first item while connected: the page now has an offset to recover from.
        publish("kick-off")?;
        wait_news_count(&page, "kick-off", 1)?;
        let channel = page.execute(
            "var item = Array.from(document.querySelectorAll('#news li.news-item'))\
               .find(function (li) { return li.textContent.indexOf('kick-off') >= 0; });\
             var tag = item && item.querySelector('.news-channel');\
             return tag ? tag.textContent.trim() : null;",
            Vec::new(),
        )?;
        ensure!(
            channel == json!("sports"),
            "the item's .news-channel is {channel}, expected \"sports\""
        );
        let shot = duplex_e2e::target_dir().join("reconnect-channel-joined.png");
        page.screenshot(&shot)?;
        println!(
            "screenshot of the connected page in #sports: {}",
            shot.display()
        );

        // Cut the page off; publish while it is away.
        proxy.cut();
        wait_status(&page, "reconnecting")?;
        let reply = publish("goal while you were away")?;
        println!("publish while the page was cut off: {reply}");
        ensure!(
            count_news(&page, "goal while you were away")? == 0,
            "the page got the item although its transport was cut"
        );

        // Let it back in: the server recovers the session and replays the item.
        proxy.restore();
        wait_status(&page, "connected")?;
        page.wait_for_text("#recovery", |text| text.trim() == "recovered", TIMEOUT)?;
        wait_news_count(&page, "goal while you were away", 1)?;
        // A duplicate would arrive right behind the replay: give it time to show.
        std::thread::sleep(Duration::from_secs(2));
        for text in ["goal while you were away", "kick-off"] {
            let count = count_news(&page, text)?;
            ensure!(
                count == 1,
                "{text:?} is in #news {count} times, expected once"
            );
        }
        wait_channels(&page, |channels| channels == ["sports"])?;
        let shot = duplex_e2e::target_dir().join("reconnect-recovered.png");
        page.screenshot(&shot)?;
        println!("screenshot of the recovered page: {}", shot.display());
        rt.block_on(publisher.disconnect());
        Ok(())
    })?;
    page.delete()?;
    server.stop(&rt)
}

#[test]
fn an_emit_while_cut_off_waits_for_the_connection_and_its_ack_times_out() -> Result<()> {
    let rt = runtime()?;
    let server = Server::start(&rt, localhost(0), server_config()?)?;
    let proxy = Proxy::start(rt.handle(), server.addr, WebSockets::Allow)?;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "reconnect-buffered-emit", || {
        page.goto(&format!("http://{}/?server={}", server.addr, proxy.url()))?;
        wait_status(&page, "connected")?;
        proxy.cut();
        wait_status(&page, "reconnecting")?;

        // Sent while away: accepted (buffered), not refused.
        let ack = page.find("#event-ack")?;
        if ack.property("checked")?.as_deref() != Some("true") {
            ack.click()?;
        }
        type_into(&page, "#event-name", "while-away")?;
        type_into(&page, "#event-payload", r#"{"n":7}"#)?;
        page.find("#event-send")?.click()?;
        page.wait_for_text("#ack-result", |t| t.contains("waiting"), TIMEOUT)?;
        let error = page.find("#event-error")?.text()?;
        ensure!(error.trim().is_empty(), "the emit was refused: {error:?}");

        // The page stays away longer than the 10 s ack timeout.
        let result = page.wait_for_text("#ack-result", |t| t.contains("ack timeout"), TIMEOUT)?;
        println!("#ack-result after 10 s away: {result:?}");

        // Once back, the buffered emit goes out: the server's echo arrives.
        proxy.restore();
        wait_status(&page, "connected")?;
        poll_until(TIMEOUT, "the echo of `while-away` in #log", || {
            let echoes = page.execute(
                "return Array.from(document.querySelectorAll('#log li.entry[data-dir=in] .event'))\
                   .filter(function (e) { return e.textContent.trim() === 'while-away'; }).length;",
                Vec::new(),
            )?;
            if echoes.as_u64().unwrap_or_default() >= 1 {
                Ok(Check::Done(()))
            } else {
                Ok(Check::Waiting(format!("{echoes} echoes")))
            }
        })?;
        Ok(())
    })?;
    page.delete()?;
    drop(proxy);
    server.stop(&rt)
}

#[test]
fn the_token_decides_between_refused_and_connected() -> Result<()> {
    let config = duplex_server::Config {
        token: Some("s3cret".to_owned()),
        ..server_config()?
    };
    let rt = runtime()?;
    let server = Server::start(&rt, localhost(0), config)?;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "reconnect-token", || {
        page.goto(&format!("http://{}/", server.addr))?;
        wait_status(&page, "refused")?;
        page.wait_for_text(
            "#status-detail",
            |text| text.contains("authentication required"),
            TIMEOUT,
        )?;

        page.goto(&format!("http://{}/?token=wrong", server.addr))?;
        wait_status(&page, "refused")?;
        page.wait_for_text(
            "#status-detail",
            |text| text.contains("invalid token"),
            TIMEOUT,
        )?;

        page.goto(&format!("http://{}/?token=s3cret", server.addr))?;
        wait_status(&page, "connected")?;
        Ok(())
    })?;
    page.delete()?;
    server.stop(&rt)
}

#[test]
fn offline_is_shown_and_online_reconnects_at_once() -> Result<()> {
    let rt = runtime()?;
    let server = Server::start(&rt, localhost(0), server_config()?)?;
    let addr = server.addr;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "reconnect-offline", || {
        page.goto(&format!("http://{addr}/"))?;
        wait_status(&page, "connected")?;

        // Chromium's offline emulation fires `offline` but keeps open sockets open.
        network(&page, false)?;
        wait_status(&page, "offline")?;
        page.wait_for_text("#status-detail", |t| t.contains("still up"), TIMEOUT)?;

        // The transport goes, and new ones cannot be opened while offline: the
        // backoff grows towards 5 s, even once the server is back.
        server.stop(&rt)?;
        page.wait_for_text("#status-detail", |t| t.contains("attempt"), TIMEOUT)?;
        wait_status(&page, "offline")?;
        let server = Server::start(&rt, addr, server_config()?)?;
        let wait = poll_until(TIMEOUT, "a next try at least 3 s away", || {
            let detail = page.find("#status-detail")?.text()?;
            match next_try_secs(&detail) {
                Some(secs) if secs >= 3.0 => Ok(Check::Done(secs)),
                _ => Ok(Check::Waiting(format!("#status-detail {detail:?}"))),
            }
        })?;

        // Back online: the page tries at once instead of waiting out the backoff.
        let online = Instant::now();
        network(&page, true)?;
        wait_status(&page, "connected")?;
        let took = online.elapsed();
        println!("connected {took:?} after going online (the backoff had {wait} s left)");
        ensure!(
            took < Duration::from_secs(2),
            "the page took {took:?} to reconnect after `online`; it should not wait out \
             the {wait} s left of its backoff"
        );
        server.stop(&rt)
    })?;
    page.delete()?;
    Ok(())
}

/// The `T` of `... next try in T s ...`.
fn next_try_secs(detail: &str) -> Option<f64> {
    let (_, rest) = detail.split_once("next try in ")?;
    rest.split_once(" s")?.0.parse().ok()
}

/// Chromium's network emulation: offline, or back to normal.
fn network(page: &Session, online: bool) -> Result<()> {
    let body = json!({
        "network_conditions": {
            "offline": !online,
            "latency": 0,
            "download_throughput": -1,
            "upload_throughput": -1
        }
    });
    page.vendor_command("chromium/network_conditions", body)
        .context("chromedriver refused the network conditions")?;
    Ok(())
}

/// The server's settings for these tests: the bundle from `DUPLEX_DIST` (an error, never
/// a skip, when it is missing), a short shutdown grace.
fn server_config() -> Result<duplex_server::Config> {
    Ok(duplex_server::Config {
        dist: dist_from_env()?,
        shutdown_timeout: Duration::from_secs(5),
        ..duplex_server::Config::default()
    })
}

fn localhost(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn runtime() -> Result<Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot build the test's tokio runtime")
}

/// The duplex server on a chosen address, so that a restart can take the same port.
struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl Server {
    /// Binds `addr` (port 0 for any), retrying for a few seconds while the port is still
    /// held by the server that just stopped.
    fn start(rt: &Runtime, addr: SocketAddr, config: duplex_server::Config) -> Result<Self> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match rt.block_on(duplex_server::bind(addr)) {
                Ok(listener) => break listener,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("binding {addr} again: {error}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error).with_context(|| format!("cannot bind {addr}")),
            }
        };
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = rt.spawn(duplex_server::run(listener, config, shutdown.clone()));
        Ok(Self {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    /// Cancels the server's shutdown token and waits for `run` to return.
    fn stop(mut self, rt: &Runtime) -> Result<()> {
        self.shutdown.cancel();
        let task = self.task.take().context("the server was already stopped")?;
        let stopped =
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(20), task).await });
        match stopped {
            Err(_) => bail!("the server did not stop within 20 s of its shutdown"),
            Ok(Err(join)) => bail!("the server task failed: {join}"),
            Ok(Ok(result)) => result.context("the server's run returned an error"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test must not leave the server running on the test's runtime.
        self.shutdown.cancel();
    }
}

fn wait_status(page: &Session, status: &str) -> Result<()> {
    page.wait_for_text("#status", |text| text.trim() == status, TIMEOUT)
        .with_context(|| format!("waiting for #status {status:?}"))
        .map(drop)
}

/// `attempt 3, next try in 1.2 s (...)`, or `attempt 3: opening ...`.
fn has_attempt_number(detail: &str) -> bool {
    detail
        .strip_prefix("attempt ")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_digit())
}

/// Replaces an input's content by typing `text`.
fn type_into(page: &Session, selector: &str, text: &str) -> Result<()> {
    let element = page.find(selector)?;
    element.clear()?;
    element.send_keys(text)?;
    Ok(())
}

/// How many `#news li.news-item` contain `needle`.
fn count_news(page: &Session, needle: &str) -> Result<usize> {
    let count = page.execute(
        "var needle = arguments[0];\
         return Array.from(document.querySelectorAll('#news li.news-item'))\
           .filter(function (li) { return li.textContent.indexOf(needle) >= 0; }).length;",
        vec![json!(needle)],
    )?;
    count
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .with_context(|| format!("the count script returned {count}"))
}

fn wait_news_count(page: &Session, needle: &str, count: usize) -> Result<()> {
    poll_until(
        TIMEOUT,
        &format!("{count} news item(s) containing {needle:?}"),
        || {
            let seen = count_news(page, needle)?;
            if seen == count {
                Ok(Check::Done(()))
            } else {
                Ok(Check::Waiting(format!("{seen} such items")))
            }
        },
    )
}

/// Waits until the `#channels li.channel` texts satisfy `predicate`.
fn wait_channels(page: &Session, predicate: impl Fn(&[String]) -> bool) -> Result<()> {
    poll_until(TIMEOUT, "the joined channels in #channels", || {
        let reply = page.execute(
            "return Array.from(document.querySelectorAll('#channels li.channel'))\
               .map(function (li) { return li.textContent.trim(); });",
            Vec::new(),
        )?;
        let channels: Vec<String> = serde_json::from_value(reply.clone())
            .with_context(|| format!("the channels script returned {reply}"))?;
        if predicate(&channels) {
            Ok(Check::Done(()))
        } else {
            let error = page.find("#channel-error")?.text()?;
            Ok(Check::Waiting(format!(
                "#channels {channels:?}, #channel-error {error:?}"
            )))
        }
    })
}
