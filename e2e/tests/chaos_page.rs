//! The page in headless Chromium behind the chaos proxy (issue 13): the page comes from
//! the server, its socket goes through `duplex_e2e::ChaosProxy`, which delays every chunk
//! and cuts connections (FIN or RST, young and old) at random for 30 s, while a native
//! client connected directly publishes numbered news. Every item must be on the page
//! exactly once, in order: the page reconnects by itself (over WebSocket, or long-polling
//! when an opening WebSocket was cut) and the server recovers its session each time.
//!
//! Seeded like the other chaos tests: `DUPLEX_CHAOS_SEED=<u64>` replays a seed (as
//! closely as the scheduler allows); it is printed, and a failure names it. Needs the
//! bundle (`DUPLEX_DIST`), Chromium and chromedriver: run it with `cargo xtask test`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use duplex_e2e::chaos::seed_from_env;
use duplex_e2e::webdriver::{Check, poll_until};
use duplex_e2e::{
    ChaosConfig, ChaosProxy, ChromeDriver, Session, TestServer, server::dist_from_env,
    with_screenshot_on_failure,
};
use duplex_server::socketio::RecoveryConfig;
use serde_json::{Value, json};

/// How long the network misbehaves while news is published.
const CHAOS: Duration = Duration::from_secs(30);
/// Items published during it, one every `CHAOS / ITEMS`. The page keeps its last 100
/// items, the greeting among them: all of these stay in view.
const ITEMS: usize = 90;
/// For the first connection, and for the page to settle once the cuts stop (a
/// reconnection may wait out a 5 s backoff).
const SETTLE: Duration = Duration::from_secs(30);

#[test]
fn the_page_behind_a_chaotic_network_shows_every_news_item_once_in_order() -> Result<()> {
    let seed = seed_from_env()?;
    println!("chaos page: seed {seed} (DUPLEX_CHAOS_SEED={seed} runs it again)");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot build the test's tokio runtime")?;
    let config = duplex_server::Config {
        dist: dist_from_env()?,
        recovery: Some(RecoveryConfig::default()),
        shutdown_timeout: Duration::from_secs(5),
        ..duplex_server::Config::default()
    };
    let server = TestServer::start_with(config)?;
    let addr = server.addr();
    let proxy = rt.block_on(ChaosProxy::start(
        addr,
        ChaosConfig {
            seed,
            // A page's first reconnection waits 0.5–1.5 s, later ones up to 5 s: a cut
            // every few seconds keeps it busy reconnecting, recovering and upgrading.
            young: 0.3,
            lifetime: (Duration::from_millis(500), Duration::from_millis(2500)),
            ..ChaosConfig::default()
        },
    ))?;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    let result = with_screenshot_on_failure(&page, "chaos-page", || {
        page.goto(&format!("http://{addr}/?server={}", proxy.url()))?;
        page.wait_for_text("#status", |text| text.trim() == "connected", SETTLE)
            .context("the page's first connection through the proxy")?;

        let publisher = rt
            .block_on(duplex_native::connect(
                &format!("http://{addr}"),
                duplex_native::Options {
                    transports: duplex_native::Transports::WebSocketOnly,
                    ..duplex_native::Options::default()
                },
            ))
            .context("the native publisher cannot connect")?;
        let start = Instant::now();
        for k in 0..ITEMS {
            let due = start + CHAOS * u32::try_from(k)? / u32::try_from(ITEMS)?;
            std::thread::sleep(due.saturating_duration_since(Instant::now()));
            rt.block_on(
                publisher.emit_with_ack("publish", vec![json!({ "text": format!("chaos-{k}") })]),
            )
            .with_context(|| format!("publishing chaos-{k}"))?;
        }
        proxy.stop_cutting();
        let stats = proxy.stats();
        println!(
            "chaos page: published {ITEMS} items in {:?}; proxy: {stats}",
            start.elapsed()
        );

        let last = format!("chaos-{}", ITEMS - 1);
        poll_until(SETTLE, "the last item on the page", || {
            let items = news(&page)?;
            if items.contains(&last) {
                Ok(Check::Done(()))
            } else {
                Ok(Check::Waiting(format!(
                    "{} items so far, the last {:?}",
                    items.len(),
                    items.last()
                )))
            }
        })
        .with_context(|| format!("seed {seed}"))?;
        // A duplicate would come right behind a replay: give it time to show.
        std::thread::sleep(Duration::from_secs(2));
        let items = news(&page)?;
        let report = check(&items);
        let recovery = page.find("#recovery")?.text()?;
        let transport = page.find("#transport")?.text()?;
        println!(
            "chaos page: {} items on the page, #recovery {recovery:?}, #transport {transport:?}; \
             {report}",
            items.len()
        );
        ensure!(
            report.is_clean(),
            "seed {seed} (DUPLEX_CHAOS_SEED={seed}): {report}; proxy: {stats}; the page has {items:?}"
        );
        ensure!(
            stats.cuts() >= 5,
            "seed {seed}: only {} cuts in {CHAOS:?}: the test proved little",
            stats.cuts()
        );
        rt.block_on(publisher.disconnect());
        Ok(())
    });
    page.delete()?;
    drop(proxy);
    drop(server);
    result
}

/// The texts of the page's numbered news items (`chaos-<k>`), top to bottom.
fn news(page: &Session) -> Result<Vec<String>> {
    let items = page.execute(
        "return Array.from(document.querySelectorAll('#news li.news-item .hello'))\
           .map(function (e) { return e.textContent.trim(); })\
           .filter(function (t) { return t.indexOf('chaos-') === 0; });",
        Vec::new(),
    )?;
    match items {
        Value::Array(items) => Ok(items
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()),
        other => bail!("the page's news list is not an array: {other}"),
    }
}

/// What is wrong with a list of `chaos-<k>` items, if anything.
#[derive(Debug, Default)]
struct Report {
    missing: Vec<usize>,
    duplicated: Vec<usize>,
    out_of_order: Vec<(usize, usize)>,
}

impl Report {
    fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.duplicated.is_empty() && self.out_of_order.is_empty()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} missing {:?}, {} duplicated {:?}, {} out of order {:?}",
            self.missing.len(),
            self.missing,
            self.duplicated.len(),
            self.duplicated,
            self.out_of_order.len(),
            self.out_of_order
        )
    }
}

fn check(items: &[String]) -> Report {
    let numbers: Vec<usize> = items
        .iter()
        .filter_map(|t| t.strip_prefix("chaos-")?.parse().ok())
        .collect();
    let mut seen = vec![0usize; ITEMS];
    let mut report = Report::default();
    for pair in numbers.windows(2) {
        if pair[1] <= pair[0] {
            report.out_of_order.push((pair[0], pair[1]));
        }
    }
    for &k in &numbers {
        if let Some(count) = seen.get_mut(k) {
            *count += 1;
        }
    }
    for (k, &count) in seen.iter().enumerate() {
        match count {
            0 => report.missing.push(k),
            1 => {}
            _ => report.duplicated.push(k),
        }
    }
    report
}

#[test]
fn the_report_names_what_is_missing_doubled_or_reordered() {
    let items: Vec<String> = [0, 1, 3, 3, 2]
        .iter()
        .map(|k| format!("chaos-{k}"))
        .collect();
    let report = check(&items);
    assert!(!report.is_clean());
    assert!(report.missing.contains(&4));
    assert_eq!(report.duplicated, vec![3]);
    assert_eq!(report.out_of_order, vec![(3, 3), (3, 2)]);
    let all: Vec<String> = (0..ITEMS).map(|k| format!("chaos-{k}")).collect();
    assert!(check(&all).is_clean());
}
