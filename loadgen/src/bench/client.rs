//! The bench's client section: what the browser gets from a release build.
//!
//! - Bundle sizes: every `dist/*.wasm` and `dist/*.js`, raw and `gzip -9` (the
//!   server sends them uncompressed; gzip is what a compressing proxy would send).
//! - Page load to news: the release duplex server serves the release `dist/`;
//!   headless Chromium loads the page N times and the page itself records
//!   `performance.now()` (ms since navigation start) when the first
//!   `#news li.news-item` enters the DOM. The first load is a fresh profile with an
//!   empty cache (cold); the others reload in the same browser (warm).
//!
//! The timestamp is taken in the page, not by polling from outside: a script
//! injected before any of the page's own (`Page.addScriptToEvaluateOnNewDocument`,
//! through chromedriver's CDP endpoint) installs a `MutationObserver` on the
//! document, so the figure does not depend on WebDriver's round trips.
//!
//! The WebDriver layer is the browser tests' (`duplex_e2e::webdriver`: fantoccini behind
//! a blocking API, on a runtime of its own); it blocks, so the browser part runs on a
//! blocking thread. Every process started here (the server, chromedriver, Chromium) is
//! stopped when its owner drops, on error too.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use duplex_e2e::webdriver::{Check, poll_until};
use duplex_e2e::{ChromeDriver, Session};
use serde::Serialize;
use serde_json::{Value, json};

use super::peers::{Launch, Server};
use super::report::median;

/// The wasm bundle's target, gzip -9, in bytes (150 KiB).
pub const WASM_GZIP_TARGET_BYTES: u64 = 150 * 1024;
/// The page-load-to-news target on localhost, in ms (strictly under).
pub const NEWS_TARGET_MS: f64 = 300.0;

/// How long one load may take before it counts as failed.
const LOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// What the client section needs.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub dist: PathBuf,
    pub loads: usize,
    pub chromedriver: PathBuf,
    pub chromium: PathBuf,
    /// Where the server's output goes.
    pub log: PathBuf,
}

/// The section's results (also the JSON file's `client`).
#[derive(Debug, Clone, Serialize)]
pub struct ClientResults {
    pub dist: String,
    pub bundle: Vec<BundleFile>,
    /// Why the sizes are not there (no dist), if so.
    pub bundle_missing_because: Option<String>,
    pub wasm_gzip_target_bytes: u64,
    pub page_load: Option<PageLoad>,
    /// Why the page load was not measured: skipped (tools or dist missing) or failed.
    pub page_load_missing_because: Option<String>,
    /// True when it was skipped for a missing prerequisite, not failed.
    pub page_load_skipped: bool,
    pub news_target_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BundleFile {
    pub name: String,
    pub raw_bytes: u64,
    /// `gzip -9 -c` of the file; `None` when gzip could not run.
    pub gzip_bytes: Option<u64>,
}

impl BundleFile {
    pub fn is_wasm(&self) -> bool {
        self.name.ends_with(".wasm")
    }
}

/// Page load to the first news item, every load, in ms since navigation start.
#[derive(Debug, Clone, Serialize)]
pub struct PageLoad {
    pub loads: Vec<Load>,
    /// Over all loads.
    pub news_median_ms: f64,
    pub news_min_ms: f64,
    pub news_max_ms: f64,
    /// The first load (fresh profile, empty cache).
    pub cold_news_ms: f64,
    /// The median of the other loads (same browser, reloaded).
    pub warm_news_median_ms: Option<f64>,
}

/// One load's marks (ms since navigation start, from the page's own clock).
#[derive(Debug, Clone, Serialize)]
pub struct Load {
    pub news_ms: f64,
    pub dom_content_loaded_ms: Option<f64>,
    /// When the last byte of the `.wasm` arrived (resource timing).
    pub wasm_fetched_ms: Option<f64>,
    pub load_event_ms: Option<f64>,
}

/// Runs the section: sizes always (when there is a dist), the page load unless a
/// prerequisite is missing (then skipped with the reason) or the duplex server is
/// not available (`launch` is `None`, with the reason).
pub async fn run(options: &ClientOptions, launch: Result<Launch, String>) -> ClientResults {
    let dist = &options.dist;
    let mut results = ClientResults {
        dist: dist.display().to_string(),
        bundle: Vec::new(),
        bundle_missing_because: None,
        wasm_gzip_target_bytes: WASM_GZIP_TARGET_BYTES,
        page_load: None,
        page_load_missing_because: None,
        page_load_skipped: false,
        news_target_ms: NEWS_TARGET_MS,
    };
    if !dist.join("index.html").is_file() {
        let why = format!(
            "no release bundle: {} has no index.html (run `cargo xtask build`, or pass --dist)",
            dist.display()
        );
        println!("bench: client: {why}");
        results.bundle_missing_because = Some(why.clone());
        results.page_load_missing_because = Some(why);
        results.page_load_skipped = true;
        return results;
    }
    match bundle_sizes(dist) {
        Ok(files) => {
            for f in &files {
                println!(
                    "bench: client: {} {} B raw, {} B gzip -9",
                    f.name,
                    f.raw_bytes,
                    f.gzip_bytes.map_or("?".to_owned(), |g| g.to_string())
                );
            }
            results.bundle = files;
        }
        Err(e) => results.bundle_missing_because = Some(format!("{e:#}")),
    }

    let missing = [&options.chromedriver, &options.chromium]
        .into_iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    let launch = if missing.is_empty() {
        launch.map_err(|why| format!("duplex: {why}"))
    } else {
        Err(format!(
            "{} not found (`cargo xtask setup --test` installs Chromium and chromedriver; \
             or pass --chromium / --chromedriver, or set CHROMIUM / CHROMEDRIVER)",
            missing.join(" and ")
        ))
    };
    let launch = match launch {
        Ok(launch) => launch,
        Err(why) => {
            println!("bench: client: page load not measured: {why}");
            results.page_load_missing_because = Some(why);
            results.page_load_skipped = true;
            return results;
        }
    };
    match page_load(options, &launch).await {
        Ok(page) => {
            println!(
                "bench: client: page load to news over {} loads: median {:.1} ms, min {:.1}, max {:.1}; cold {:.1} ms",
                page.loads.len(),
                page.news_median_ms,
                page.news_min_ms,
                page.news_max_ms,
                page.cold_news_ms
            );
            results.page_load = Some(page);
        }
        Err(e) => {
            println!("bench: client: page load failed: {e:#}");
            results.page_load_missing_because = Some(format!("{e:#}"));
        }
    }
    results
}

/// The sizes of every `.wasm` and `.js` in `dist`, by name.
fn bundle_sizes(dist: &Path) -> anyhow::Result<Vec<BundleFile>> {
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(dist).with_context(|| format!("cannot read {}", dist.display()))?
    {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !(name.ends_with(".wasm") || name.ends_with(".js")) || !path.is_file() {
            continue;
        }
        let raw_bytes = std::fs::metadata(&path)?.len();
        files.push(BundleFile {
            name,
            raw_bytes,
            gzip_bytes: gzip_size(&path),
        });
    }
    anyhow::ensure!(
        !files.is_empty(),
        "{} has no .wasm or .js file",
        dist.display()
    );
    files.sort_by(|a, b| (!a.is_wasm(), &a.name).cmp(&(!b.is_wasm(), &b.name)));
    Ok(files)
}

/// `gzip -9 -c FILE | wc -c`; `None` (with a line saying why) when gzip fails.
/// gzip, not a compression crate: the machine has it and the bench needs no more.
fn gzip_size(path: &Path) -> Option<u64> {
    match Command::new("gzip").arg("-9").arg("-c").arg(path).output() {
        Ok(out) if out.status.success() => Some(out.stdout.len() as u64),
        Ok(out) => {
            println!(
                "bench: client: gzip -9 {} failed: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            None
        }
        Err(e) => {
            println!("bench: client: cannot run gzip: {e}");
            None
        }
    }
}

/// Starts the release server on the bundle, then measures the loads.
async fn page_load(options: &ClientOptions, launch: &Launch) -> anyhow::Result<PageLoad> {
    // Dropped (killed) when this function returns, whichever way.
    let mut server = launch.start(Server::Duplex, &options.log)?;
    server
        .wait_ready(Duration::from_secs(30))
        .await
        .context("starting duplex for the page load")?;
    let url = format!("http://{}/", server.addr());
    let chromedriver = options.chromedriver.clone();
    let chromium = options.chromium.display().to_string();
    let loads = options.loads.max(1);
    let measured =
        tokio::task::spawn_blocking(move || measure_loads(&chromedriver, &chromium, &url, loads))
            .await
            .context("the browser thread panicked")??;
    server.check_alive()?;
    summarize(measured)
}

/// Records, in the page, when the first news item enters the DOM. Injected before
/// the page's own scripts, so it cannot miss it.
const MARK_NEWS: &str = r"(() => {
  const selector = '#news li.news-item';
  const mark = () => {
    if (window.__duplexNewsAt === undefined && document.querySelector(selector)) {
      window.__duplexNewsAt = performance.now();
    }
    return window.__duplexNewsAt !== undefined;
  };
  if (mark()) return;
  const observer = new MutationObserver(() => { if (mark()) observer.disconnect(); });
  observer.observe(document, { childList: true, subtree: true });
})();";

/// Reads the mark and the navigation and resource timings.
const READ_MARKS: &str = r"
  const nav = performance.getEntriesByType('navigation')[0];
  const wasm = performance.getEntriesByType('resource').find(r => r.name.endsWith('.wasm'));
  return {
    news: window.__duplexNewsAt === undefined ? null : window.__duplexNewsAt,
    dcl: nav && nav.domContentLoadedEventEnd > 0 ? nav.domContentLoadedEventEnd : null,
    load: nav && nav.loadEventEnd > 0 ? nav.loadEventEnd : null,
    wasm: wasm ? wasm.responseEnd : null,
  };";

/// One browser, `loads` navigations to `url` (each from `about:blank`, so every
/// load is a new document); blocking.
fn measure_loads(
    chromedriver: &Path,
    chromium: &str,
    url: &str,
    loads: usize,
) -> anyhow::Result<Vec<Load>> {
    let driver = ChromeDriver::start_at(chromedriver)?;
    // Declared after the driver: dropped (the browser closed) before it.
    let session = driver.new_session_with(chromium)?;
    session.execute_cdp("Page.enable", json!({}))?;
    session.execute_cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": MARK_NEWS }),
    )?;
    let mut measured = Vec::with_capacity(loads);
    for i in 0..loads {
        session.goto("about:blank")?;
        session.goto(url)?;
        let load = read_load(&session).with_context(|| format!("load {} of {url}", i + 1))?;
        println!(
            "bench: client: load {} ({}): news at {:.1} ms",
            i + 1,
            if i == 0 { "cold" } else { "warm" },
            load.news_ms
        );
        measured.push(load);
    }
    session.delete()?;
    Ok(measured)
}

/// Waits for the page's news mark and the load event, then reads them.
fn read_load(session: &Session) -> anyhow::Result<Load> {
    poll_until(LOAD_TIMEOUT, "the first #news li.news-item", || {
        let marks = session.execute(READ_MARKS, Vec::new())?;
        let get = |key: &str| marks.get(key).and_then(Value::as_f64);
        match (get("news"), get("load")) {
            (Some(news_ms), Some(load_event_ms)) => Ok(Check::Done(Load {
                news_ms,
                dom_content_loaded_ms: get("dcl"),
                wasm_fetched_ms: get("wasm"),
                load_event_ms: Some(load_event_ms),
            })),
            _ => Ok(Check::Waiting(format!("marks so far: {marks}"))),
        }
    })
}

fn summarize(loads: Vec<Load>) -> anyhow::Result<PageLoad> {
    let news: Vec<f64> = loads.iter().map(|l| l.news_ms).collect();
    let cold_news_ms = *news.first().context("no load was measured")?;
    let warm = &news[1..];
    Ok(PageLoad {
        news_median_ms: median(news.clone()),
        news_min_ms: news.iter().copied().fold(f64::INFINITY, f64::min),
        news_max_ms: news.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        cold_news_ms,
        warm_news_median_ms: (!warm.is_empty()).then(|| median(warm.to_vec())),
        loads,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(news_ms: f64) -> Load {
        Load {
            news_ms,
            dom_content_loaded_ms: None,
            wasm_fetched_ms: None,
            load_event_ms: None,
        }
    }

    #[test]
    fn summary_puts_the_first_load_apart() {
        let page = summarize(vec![load(400.0), load(120.0), load(100.0), load(140.0)])
            .expect("loads were measured");
        assert_eq!(page.cold_news_ms, 400.0);
        assert_eq!(page.warm_news_median_ms, Some(120.0));
        assert_eq!(page.news_median_ms, 130.0);
        assert_eq!(page.news_min_ms, 100.0);
        assert_eq!(page.news_max_ms, 400.0);
        assert!(summarize(Vec::new()).is_err());
    }

    #[test]
    fn bundle_sizes_list_wasm_first_with_gzip() {
        let dir = std::env::temp_dir().join(format!("loadgen-bundle-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("a.js"), "x".repeat(1000)).expect("write js");
        std::fs::write(dir.join("b_bg.wasm"), vec![0u8; 2000]).expect("write wasm");
        std::fs::write(dir.join("style.css"), "body{}").expect("write css");
        let files = bundle_sizes(&dir);
        let _ = std::fs::remove_dir_all(&dir);
        let files = files.expect("sizes");
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["b_bg.wasm", "a.js"]);
        assert_eq!(files[0].raw_bytes, 2000);
        // Repetitive input: gzip makes it far smaller (when gzip is installed).
        if let Some(gz) = files[1].gzip_bytes {
            assert!(gz < 100, "{gz}");
        }
    }
}
