//! The browser tests' WebDriver layer: chromedriver and headless Chromium, driven with
//! fantoccini (a maintained W3C WebDriver client) behind the small blocking API the tests
//! are written in.
//!
//! - `ChromeDriver`: the chromedriver process on a free port, and the tokio runtime
//!   fantoccini runs on; stopped on drop
//! - `Session`: one browser (its own fresh profile directory); navigation, scripts,
//!   screenshots, waiting; deleted on drop
//! - `Element`: a found element; text, attributes, clicks, typing
//! - `poll_until`: the 50 ms polling loop every wait is built on
//!
//! Blocking, not async: the tests are plain `#[test]` functions that also drive servers
//! and native clients on tokio runtimes of their own (`rt.block_on(..)`), and a page read
//! step by step reads like what a user does. Each call runs fantoccini's future to its end
//! on the driver's runtime (`Runtime::block_on`), bounded by `COMMAND_TIMEOUT`; the
//! runtime's one worker runs fantoccini's connection task meanwhile. So a `Session` must
//! not be used from inside an async context (a `spawn_blocking` thread is fine).
//!
//! Failures are `anyhow` errors naming the command; fantoccini's `CmdError` is inside, so
//! callers can tell WebDriver's `no such element` ("not there yet") from a real failure.

use std::fmt::Display;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use fantoccini::error::CmdError;
use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{ClientBuilder, Locator};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::runtime::Runtime;

/// How often every wait polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Bound on one command; starting a browser on a busy 2-core machine takes seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// What one look at the page found: the awaited value, or a description of what is
/// there instead (it goes into the timeout message).
#[derive(Debug)]
pub enum Check<T> {
    Done(T),
    Waiting(String),
}

/// Runs `check` every 50 ms until it is `Done`, fails at once on its errors, and after
/// `timeout` fails with "timed out after .. waiting for {what}; last seen: ..".
pub fn poll_until<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<Check<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        match check().with_context(|| format!("while waiting for {what}"))? {
            Check::Done(value) => return Ok(value),
            Check::Waiting(state) => {
                if Instant::now() >= deadline {
                    bail!("timed out after {timeout:?} waiting for {what}; last seen: {state}");
                }
            }
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Whether `error`'s chain holds a WebDriver error that `is` recognises (e.g.
/// `CmdError::is_no_such_element`: the page has no such element yet).
pub fn is_webdriver_error(error: &anyhow::Error, is: fn(&CmdError) -> bool) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<CmdError>())
        .any(is)
}

/// Runs one fantoccini command on `runtime` until it answers or `timeout` passes.
fn run<T, E>(
    runtime: &Runtime,
    what: impl Display,
    timeout: Duration,
    command: impl Future<Output = Result<T, E>>,
) -> Result<T>
where
    E: Into<anyhow::Error>,
{
    // The timer is made inside `block_on`: it needs the runtime's context.
    match runtime.block_on(async { tokio::time::timeout(timeout, command).await }) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.into().context(format!("webdriver: {what}"))),
        Err(_elapsed) => bail!("webdriver: {what}: no answer within {timeout:?}"),
    }
}

/// One GET to chromedriver outside any session (`/status`, `/shutdown`), with the hyper
/// client fantoccini is built on; returns the reply's `value`.
async fn get(addr: SocketAddr, path: &str) -> Result<Value> {
    let client = HttpClient::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = format!("http://{addr}{path}").parse()?;
    let response = client.get(uri).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    ensure!(
        status.is_success(),
        "HTTP {status}: {}",
        String::from_utf8_lossy(&body)
    );
    let mut reply: Value = serde_json::from_slice(&body)
        .with_context(|| format!("reply is not JSON: {}", String::from_utf8_lossy(&body)))?;
    Ok(reply
        .get_mut("value")
        .map(Value::take)
        .unwrap_or(Value::Null))
}

/// A chromedriver command of a session that fantoccini does not know (`goog/cdp/execute`,
/// `chromium/network_conditions`): a POST of `body` to `/session/{id}/{path}`.
#[derive(Debug)]
struct VendorCommand {
    path: String,
    body: Value,
}

impl WebDriverCompatibleCommand for VendorCommand {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        // Sent only through a `Session`, which exists once its id is known.
        base.join(&format!(
            "session/{}/{}",
            session.unwrap_or_default(),
            self.path
        ))
    }

    fn method_and_body(&self, _url: &url::Url) -> (http::Method, Option<String>) {
        (http::Method::POST, Some(self.body.to_string()))
    }
}

/// A free TCP port on 127.0.0.1: bind port 0, read the port, let it go.
///
/// Another process could take it in between; chromedriver would then fail to start and
/// `ChromeDriver::start` says so.
pub fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).context("cannot bind 127.0.0.1:0 to find a port")?;
    Ok(listener.local_addr()?.port())
}

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Result<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| since.subsec_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir().join(format!(
            "duplex-e2e-{label}-{}-{unique}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir is not worth failing a test over.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A chromedriver process listening on a free port of 127.0.0.1, and the runtime its
/// sessions' commands run on.
pub struct ChromeDriver {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// Shared with the sessions, which outlive nothing but may be dropped in any order.
    runtime: Arc<Runtime>,
    /// Holds the log; kept after sessions end so a failure can point at it.
    _dir: TempDir,
}

impl ChromeDriver {
    /// Starts `$CHROMEDRIVER` (else `/usr/bin/chromedriver`) and waits until `/status`
    /// says it is ready.
    pub fn start() -> Result<Self> {
        let binary =
            std::env::var_os("CHROMEDRIVER").unwrap_or_else(|| DEFAULT_CHROMEDRIVER.into());
        Self::start_at(Path::new(&binary))
    }

    /// Starts the chromedriver at `binary` and waits until `/status` says it is ready.
    pub fn start_at(binary: &Path) -> Result<Self> {
        // One worker: it only carries fantoccini's HTTP to chromedriver on loopback.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("webdriver")
            .enable_all()
            .build()
            .context("cannot build the WebDriver client's tokio runtime")?;
        let port = free_port()?;
        let dir = TempDir::new("chromedriver")?;
        let log = dir.path().join("chromedriver.log");
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {} (run `cargo xtask setup --test` to install it)",
                    binary.display()
                )
            })?;
        let mut driver = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            runtime: Arc::new(runtime),
            _dir: dir,
        };
        driver.wait_ready(Duration::from_secs(30))?;
        Ok(driver)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let addr = self.addr;
        let log = self.log.clone();
        let runtime = Arc::clone(&self.runtime);
        let child = &mut self.child;
        poll_until(timeout, "chromedriver to be ready", || {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "chromedriver exited ({status}) before it was ready; its log: {}",
                    log.display()
                );
            }
            let status = run(
                &runtime,
                "GET /status",
                Duration::from_secs(2),
                get(addr, "/status"),
            );
            let state = match status {
                Ok(value) if value.get("ready") == Some(&Value::Bool(true)) => {
                    return Ok(Check::Done(()));
                }
                Ok(value) => format!("/status says {value}"),
                Err(error) => format!("{error:#}"),
            };
            Ok(Check::Waiting(state))
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where chromedriver writes its log.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Starts a headless Chromium (`$CHROMIUM`, else `/usr/bin/chromium`) with a fresh
    /// profile directory.
    pub fn new_session(&self) -> Result<Session> {
        self.new_session_with_args(&[])
    }

    /// Starts the headless Chromium at `chromium` with a fresh profile directory.
    pub fn new_session_with(&self, chromium: &str) -> Result<Session> {
        self.start_session(chromium, &[])
    }

    /// Starts a headless Chromium (`$CHROMIUM`, else `/usr/bin/chromium`) with a fresh
    /// profile directory and `extra_args` after the usual ones, e.g.
    /// `--ignore-certificate-errors` for a server with a self-signed certificate.
    pub fn new_session_with_args(&self, extra_args: &[&str]) -> Result<Session> {
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| DEFAULT_CHROMIUM.to_owned());
        self.start_session(&chromium, extra_args)
    }

    fn start_session(&self, chromium: &str, extra_args: &[&str]) -> Result<Session> {
        let profile = TempDir::new("profile")?;
        let mut args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,1400".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        args.extend(extra_args.iter().map(|&arg| arg.to_owned()));
        let mut capabilities = fantoccini::wd::Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({ "binary": chromium, "args": args }),
        );
        let url = format!("http://{}", self.addr);
        let client = run(&self.runtime, "new session", COMMAND_TIMEOUT, async {
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url)
                .await
        })
        .with_context(|| {
            format!(
                "cannot start a Chromium session ({chromium}); chromedriver's log: {}",
                self.log.display()
            )
        })?;
        Ok(Session {
            client,
            runtime: Arc::clone(&self.runtime),
            deleted: false,
            _profile: profile,
        })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // `/shutdown` lets chromedriver quit its browsers; kill it if it does not go.
        let addr = self.addr;
        let _ = run(
            &self.runtime,
            "GET /shutdown",
            Duration::from_secs(5),
            get(addr, "/shutdown"),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session; deleted (the browser closed) on drop.
pub struct Session {
    client: fantoccini::Client,
    runtime: Arc<Runtime>,
    deleted: bool,
    /// Removed after the browser is gone (fields drop after `Drop::drop` ran).
    _profile: TempDir,
}

impl Session {
    /// Runs one command of this session.
    fn run<T>(
        &self,
        what: impl Display,
        command: impl Future<Output = Result<T, CmdError>>,
    ) -> Result<T> {
        run(&self.runtime, what, COMMAND_TIMEOUT, command)
    }

    /// Navigates and waits for the page's load event.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.run(format_args!("open {url}"), self.client.goto(url))
    }

    /// The first element matching a CSS selector (`no such element` error if none).
    pub fn find(&self, selector: &str) -> Result<Element<'_>> {
        let element = self.run(
            format_args!("find `{selector}`"),
            self.client.find(Locator::Css(selector)),
        )?;
        Ok(Element {
            session: self,
            element,
        })
    }

    /// Every element matching a CSS selector, in document order.
    pub fn find_all(&self, selector: &str) -> Result<Vec<Element<'_>>> {
        let elements = self.run(
            format_args!("find all `{selector}`"),
            self.client.find_all(Locator::Css(selector)),
        )?;
        Ok(elements
            .into_iter()
            .map(|element| Element {
                session: self,
                element,
            })
            .collect())
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its result.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.run("execute script", self.client.execute(script, args))
    }

    /// Sends one of chromedriver's own commands of this session (`POST
    /// /session/{id}/{path}`, e.g. `chromium/network_conditions`), returns its `value`.
    pub fn vendor_command(&self, path: &str, body: Value) -> Result<Value> {
        let command = VendorCommand {
            path: path.to_owned(),
            body,
        };
        self.run(format_args!("POST {path}"), self.client.issue_cmd(command))
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver's `goog/cdp/execute`
    /// (e.g. `Page.addScriptToEvaluateOnNewDocument`) and returns its result.
    pub fn execute_cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        self.vendor_command("goog/cdp/execute", json!({ "cmd": cmd, "params": params }))
            .with_context(|| format!("CDP command {cmd}"))
    }

    /// Writes a PNG of the viewport to `path`, creating its directory.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let png = self.run("screenshot", self.client.screenshot())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Waits until the text of the first element matching `selector` satisfies `predicate`,
    /// and returns that text. Until then, a missing or re-rendered element only means
    /// "not yet"; the timeout message includes the element's last text.
    pub fn wait_for_text(
        &self,
        selector: &str,
        predicate: impl Fn(&str) -> bool,
        timeout: Duration,
    ) -> Result<String> {
        poll_until(timeout, &format!("the text of `{selector}`"), || {
            let text = match self.find(selector).and_then(|element| element.text()) {
                Ok(text) => text,
                Err(error) if is_webdriver_error(&error, CmdError::is_no_such_element) => {
                    return Ok(Check::Waiting(format!("no element matches `{selector}`")));
                }
                Err(error) if is_webdriver_error(&error, CmdError::is_stale_element_reference) => {
                    return Ok(Check::Waiting("the element was just re-rendered".into()));
                }
                Err(error) => return Err(error),
            };
            if predicate(&text) {
                Ok(Check::Done(text))
            } else {
                Ok(Check::Waiting(format!("its text is {text:?}")))
            }
        })
    }

    /// Waits until the page's news list (`#news li.news-item`, read in one
    /// script call per try) has an item whose text contains `needle`.
    pub fn wait_for_news(&self, needle: &str, timeout: Duration) -> Result<()> {
        const SCRIPT: &str = "return Array.from(document.querySelectorAll('#news li.news-item'))\
                              .map(function (item) { return item.textContent; });";
        poll_until(
            timeout,
            &format!("a news item containing {needle:?}"),
            || {
                let items = self.execute(SCRIPT, Vec::new())?;
                let found = items
                    .as_array()
                    .with_context(|| format!("the script returned {items}"))?
                    .iter()
                    .any(|item| item.as_str().is_some_and(|text| text.contains(needle)));
                Ok(if found {
                    Check::Done(())
                } else {
                    Check::Waiting(format!("#news items: {items}"))
                })
            },
        )
    }

    /// Ends the session (closes the browser), reporting failure; drop does it quietly.
    pub fn delete(mut self) -> Result<()> {
        self.deleted = true;
        self.run("delete session", self.client.clone().close())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.deleted {
            let close = self.client.clone().close();
            let _ = run(
                &self.runtime,
                "delete session",
                Duration::from_secs(15),
                close,
            );
        }
    }
}

/// An element found in a session's current page.
pub struct Element<'s> {
    session: &'s Session,
    element: fantoccini::elements::Element,
}

impl Element<'_> {
    /// The rendered text (WebDriver's "Get Element Text", like `innerText`).
    pub fn text(&self) -> Result<String> {
        self.session.run("element text", self.element.text())
    }

    /// An HTML attribute, `None` when absent.
    pub fn attribute(&self, name: &str) -> Result<Option<String>> {
        self.session
            .run(format_args!("attribute {name}"), self.element.attr(name))
    }

    /// A DOM property (e.g. `value`), `None` when absent; a boolean one (e.g. `checked`)
    /// is `"true"` or `"false"`.
    pub fn property(&self, name: &str) -> Result<Option<String>> {
        self.session
            .run(format_args!("property {name}"), self.element.prop(name))
    }

    pub fn click(&self) -> Result<()> {
        self.session.run("click", self.element.click())
    }

    /// Empties an input or textarea.
    pub fn clear(&self) -> Result<()> {
        self.session.run("clear", self.element.clear())
    }

    /// Types `text` into the element, as key presses (input events included).
    pub fn send_keys(&self, text: &str) -> Result<()> {
        self.session.run("send keys", self.element.send_keys(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_until_reports_the_last_state() {
        let mut looks = 0;
        let error = poll_until(Duration::from_millis(120), "the answer", || {
            looks += 1;
            Ok(Check::<()>::Waiting(format!("look {looks}")))
        })
        .expect_err("never done");
        let message = format!("{error:#}");
        assert!(message.contains("waiting for the answer"), "{message}");
        assert!(
            message.contains(&format!("last seen: look {looks}")),
            "{message}"
        );
        assert!(looks >= 2, "polled {looks} times");
    }

    #[test]
    fn poll_until_returns_when_done() {
        let mut looks = 0;
        let value = poll_until(Duration::from_secs(5), "three looks", || {
            looks += 1;
            Ok(if looks == 3 {
                Check::Done(looks)
            } else {
                Check::Waiting(String::new())
            })
        })
        .expect("done on the third look");
        assert_eq!(value, 3);
    }

    #[test]
    fn vendor_commands_post_under_the_session() {
        let command = VendorCommand {
            path: "chromium/network_conditions".into(),
            body: json!({ "a": 1 }),
        };
        let base = url::Url::parse("http://127.0.0.1:9515").expect("a valid URL");
        let url = command.endpoint(&base, Some("abc")).expect("joins");
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:9515/session/abc/chromium/network_conditions"
        );
        let (method, body) = command.method_and_body(&url);
        assert_eq!(method, http::Method::POST);
        assert_eq!(body.as_deref(), Some(r#"{"a":1}"#));
    }

    #[test]
    fn webdriver_errors_are_found_in_the_chain() {
        let error = anyhow::Error::new(CmdError::Standard(fantoccini::error::WebDriver::new(
            fantoccini::error::ErrorStatus::NoSuchElement,
            "Unable to locate element",
        )))
        .context("webdriver: find `#status`");
        assert!(is_webdriver_error(&error, CmdError::is_no_such_element));
        assert!(!is_webdriver_error(
            &error,
            CmdError::is_stale_element_reference
        ));
        let message = format!("{error:#}");
        assert!(message.contains("Unable to locate element"), "{message}");
    }
}
