//! A small, blocking W3C WebDriver client for chromedriver and headless Chromium.
//!
//! - `ChromeDriver`: the chromedriver process on a free port; stopped on drop
//! - `Session`: one browser (its own fresh profile directory); navigation, scripts,
//!   screenshots, waiting; deleted on drop
//! - `Element`: a found element; text, attributes, clicks, typing
//! - `poll_until`: the 50 ms polling loop every wait is built on
//!
//! Commands are JSON over plain HTTP (`crate::http`). Failures are `anyhow` errors naming
//! the command; WebDriver's own errors (`no such element`, ...) are a `WebDriverError`
//! inside, so callers can tell "not there yet" from a real failure.

use std::fmt;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::http;

/// The key under which W3C WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How often every wait polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Bound on one command; starting a browser on a busy 2-core machine takes seconds.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

const DEFAULT_CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// An error reported by the WebDriver server itself (the `value.error` of a non-200 reply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebDriverError {
    pub status: u16,
    /// The W3C error code, e.g. `no such element`, `stale element reference`.
    pub error: String,
    pub message: String,
}

impl fmt::Display for WebDriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.error, self.status, self.message)
    }
}

impl std::error::Error for WebDriverError {}

/// Whether `error` is WebDriver's `code` (e.g. `no such element`) somewhere in its chain.
pub fn is_webdriver_error(error: &anyhow::Error, code: &str) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<WebDriverError>())
        .any(|webdriver| webdriver.error == code)
}

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

/// Sends one WebDriver command and returns the reply's `value`.
fn call(addr: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
    call_with_timeout(addr, method, path, body, COMMAND_TIMEOUT)
}

fn call_with_timeout(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Value> {
    let command = || format!("webdriver {method} {path}");
    let body = body.map(Value::to_string);
    let response = http::request(
        addr,
        method,
        path,
        body.as_deref().map(str::as_bytes),
        timeout,
    )
    .with_context(command)?;
    let mut reply: Value = if response.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&response.body).with_context(|| {
            format!(
                "{}: reply is not JSON: {}",
                command(),
                String::from_utf8_lossy(&response.body)
            )
        })?
    };
    let value = reply
        .get_mut("value")
        .map(Value::take)
        .unwrap_or(Value::Null);
    if response.status != 200 {
        let text = |key: &str| {
            value
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let error = WebDriverError {
            status: response.status,
            error: text("error"),
            message: text("message"),
        };
        return Err(anyhow::Error::new(error).context(command()));
    }
    Ok(value)
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

/// A chromedriver process listening on a free port of 127.0.0.1.
pub struct ChromeDriver {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
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
            _dir: dir,
        };
        driver.wait_ready(Duration::from_secs(30))?;
        Ok(driver)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let addr = self.addr;
        let log = self.log.clone();
        let child = &mut self.child;
        poll_until(timeout, "chromedriver to be ready", || {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "chromedriver exited ({status}) before it was ready; its log: {}",
                    log.display()
                );
            }
            let state =
                match call_with_timeout(addr, "GET", "/status", None, Duration::from_secs(2)) {
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
        let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| DEFAULT_CHROMIUM.to_owned());
        self.new_session_with(&chromium)
    }

    /// Starts the headless Chromium at `chromium` with a fresh profile directory.
    pub fn new_session_with(&self, chromium: &str) -> Result<Session> {
        let profile = TempDir::new("profile")?;
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "goog:chromeOptions": {
                        "binary": chromium,
                        "args": [
                            "--headless",
                            "--no-sandbox",
                            "--disable-gpu",
                            "--disable-quic",
                            "--no-first-run",
                            "--disable-background-networking",
                            "--disable-component-update",
                            "--disable-sync",
                            "--disable-dev-shm-usage",
                            "--window-size=1280,1400",
                            format!("--user-data-dir={}", profile.path().display()),
                        ]
                    }
                }
            }
        });
        let reply =
            call(self.addr, "POST", "/session", Some(&capabilities)).with_context(|| {
                format!(
                    "cannot start a Chromium session ({chromium}); chromedriver's log: {}",
                    self.log.display()
                )
            })?;
        let id = reply
            .get("sessionId")
            .and_then(Value::as_str)
            .with_context(|| format!("new session reply has no sessionId: {reply}"))?
            .to_owned();
        Ok(Session {
            addr: self.addr,
            id,
            deleted: false,
            _profile: profile,
        })
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // `/shutdown` lets chromedriver quit its browsers; kill it if it does not go.
        let _ = call_with_timeout(self.addr, "GET", "/shutdown", None, Duration::from_secs(5));
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
    addr: SocketAddr,
    id: String,
    deleted: bool,
    /// Removed after the browser is gone (fields drop after `Drop::drop` ran).
    _profile: TempDir,
}

impl Session {
    pub fn id(&self) -> &str {
        &self.id
    }

    fn command(&self, method: &str, suffix: &str, body: Option<&Value>) -> Result<Value> {
        call(
            self.addr,
            method,
            &format!("/session/{}{suffix}", self.id),
            body,
        )
    }

    /// Navigates and waits for the page's load event.
    pub fn goto(&self, url: &str) -> Result<()> {
        self.command("POST", "/url", Some(&json!({ "url": url })))
            .with_context(|| format!("cannot open {url}"))?;
        Ok(())
    }

    /// The first element matching a CSS selector (`no such element` error if none).
    pub fn find(&self, selector: &str) -> Result<Element<'_>> {
        let reply = self.command(
            "POST",
            "/element",
            Some(&json!({ "using": "css selector", "value": selector })),
        )?;
        Element::from_reply(self, &reply)
    }

    /// Every element matching a CSS selector, in document order.
    pub fn find_all(&self, selector: &str) -> Result<Vec<Element<'_>>> {
        let reply = self.command(
            "POST",
            "/elements",
            Some(&json!({ "using": "css selector", "value": selector })),
        )?;
        reply
            .as_array()
            .with_context(|| format!("find elements reply is not an array: {reply}"))?
            .iter()
            .map(|item| Element::from_reply(self, item))
            .collect()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) and returns its result.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value> {
        self.command(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Sends a Chrome DevTools Protocol command through chromedriver's `goog/cdp/execute`
    /// (e.g. `Page.addScriptToEvaluateOnNewDocument`) and returns its result.
    pub fn execute_cdp(&self, cmd: &str, params: Value) -> Result<Value> {
        self.command(
            "POST",
            "/goog/cdp/execute",
            Some(&json!({ "cmd": cmd, "params": params })),
        )
        .with_context(|| format!("CDP command {cmd}"))
    }

    /// Writes a PNG of the viewport to `path`, creating its directory.
    pub fn screenshot(&self, path: &Path) -> Result<()> {
        let reply = self.command("GET", "/screenshot", None)?;
        let encoded = reply
            .as_str()
            .with_context(|| format!("screenshot reply is not a string: {reply}"))?;
        let png =
            protocol::base64::decode(encoded.trim()).context("screenshot is not valid base64")?;
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
                Err(error) if is_webdriver_error(&error, "no such element") => {
                    return Ok(Check::Waiting(format!("no element matches `{selector}`")));
                }
                Err(error) if is_webdriver_error(&error, "stale element reference") => {
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

    /// Ends the session (closes the browser), reporting failure; drop does it quietly.
    pub fn delete(mut self) -> Result<()> {
        self.deleted = true;
        self.command("DELETE", "", None).map(drop)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = call_with_timeout(
                self.addr,
                "DELETE",
                &format!("/session/{}", self.id),
                None,
                Duration::from_secs(15),
            );
        }
    }
}

/// An element found in a session's current page.
pub struct Element<'s> {
    session: &'s Session,
    id: String,
}

impl<'s> Element<'s> {
    fn from_reply(session: &'s Session, reply: &Value) -> Result<Self> {
        let id = reply
            .get(ELEMENT_KEY)
            .and_then(Value::as_str)
            .with_context(|| format!("reply is not an element reference: {reply}"))?
            .to_owned();
        Ok(Self { session, id })
    }

    fn command(&self, method: &str, suffix: &str, body: Option<&Value>) -> Result<Value> {
        self.session
            .command(method, &format!("/element/{}{suffix}", self.id), body)
    }

    /// The rendered text (WebDriver's "Get Element Text", like `innerText`).
    pub fn text(&self) -> Result<String> {
        let reply = self.command("GET", "/text", None)?;
        reply
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("element text reply is not a string: {reply}"))
    }

    /// An HTML attribute, `None` when absent.
    pub fn attribute(&self, name: &str) -> Result<Option<String>> {
        let reply = self.command("GET", &format!("/attribute/{name}"), None)?;
        Ok(reply.as_str().map(str::to_owned))
    }

    /// A DOM property (e.g. `checked`, `value`) as JSON.
    pub fn property(&self, name: &str) -> Result<Value> {
        self.command("GET", &format!("/property/{name}"), None)
    }

    pub fn click(&self) -> Result<()> {
        self.command("POST", "/click", Some(&json!({}))).map(drop)
    }

    /// Empties an input or textarea.
    pub fn clear(&self) -> Result<()> {
        self.command("POST", "/clear", Some(&json!({}))).map(drop)
    }

    /// Types `text` into the element, as key presses (input events included).
    pub fn send_keys(&self, text: &str) -> Result<()> {
        self.command("POST", "/value", Some(&json!({ "text": text })))
            .map(drop)
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

    /// A one-shot HTTP server: returns the request it read and answers `reply`.
    fn serve_once(reply: &'static str) -> (SocketAddr, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a test port");
        let addr = listener.local_addr().expect("bound address");
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().expect("one connection");
            let mut request = Vec::new();
            let mut buffer = [0u8; 1024];
            // The test requests are small: read until the announced body is complete.
            loop {
                let n = stream.read(&mut buffer).expect("read request");
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|line| line.strip_prefix("Content-Length: "))
                        .map_or(0, |n| n.parse::<usize>().expect("numeric length"));
                    if body.len() >= length || n == 0 {
                        break;
                    }
                }
            }
            stream.write_all(reply.as_bytes()).expect("write reply");
            String::from_utf8_lossy(&request).into_owned()
        });
        (addr, server)
    }

    #[test]
    fn call_sends_json_and_returns_the_value() {
        let (addr, server) = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Length: 25\r\n\r\n{\"value\":{\"sessionId\":7}}",
        );
        let value = call(addr, "POST", "/session", Some(&json!({ "a": 1 }))).expect("200 reply");
        assert_eq!(value, json!({ "sessionId": 7 }));
        let request = server.join().expect("server thread");
        assert!(
            request.starts_with("POST /session HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Connection: close\r\n"), "{request}");
        assert!(request.contains("Content-Length: 7\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\n{\"a\":1}"), "{request}");
    }

    #[test]
    fn call_turns_error_replies_into_webdriver_errors() {
        let (addr, server) = serve_once(
            "HTTP/1.1 404 Not Found\r\nContent-Length: 70\r\n\r\n\
             {\"value\":{\"error\":\"no such element\",\"message\":\"gone\",\"stacktrace\":\"\"}}",
        );
        let error = call(addr, "GET", "/session/s/element/e/text", None).expect_err("404 reply");
        server.join().expect("server thread");
        assert!(is_webdriver_error(&error, "no such element"), "{error:#}");
        let message = format!("{error:#}");
        assert!(
            message.contains("GET /session/s/element/e/text"),
            "{message}"
        );
        assert!(message.contains("gone"), "{message}");
    }

    #[test]
    fn webdriver_errors_are_found_in_the_chain() {
        let error = anyhow::Error::new(WebDriverError {
            status: 404,
            error: "no such element".into(),
            message: "Unable to locate element".into(),
        })
        .context("webdriver POST /session/x/element");
        assert!(is_webdriver_error(&error, "no such element"));
        assert!(!is_webdriver_error(&error, "stale element reference"));
        assert!(format!("{error:#}").contains("no such element (HTTP 404)"));
    }
}
