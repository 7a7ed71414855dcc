//! The moving parts of the README's deployment recipes (the files of `deploy/`), for
//! `tests/recipes.rs`:
//!
//! - `server_binary` and `ServerProcess`: the real `duplex-server` binary as a child
//!   process on a loopback port, as a deployment runs it (not the in-process
//!   `TestServer`)
//! - `recipe` and `render`: a recipe's text with a test's ports and paths put in; each
//!   replacement must match, so a recipe edited without its test fails loudly instead
//!   of testing something else
//! - `Nginx`: Debian's nginx in the foreground on a rendered recipe, its pid, logs and
//!   temp files in a directory of its own
//! - `http_get`: one plain HTTP request, for what a browser does not show (status codes,
//!   headers)
//!
//! Every wait is bounded, and every process started here is stopped on drop.

use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::webdriver::{Check, TempDir, poll_until};

/// Debian's nginx (`cargo xtask setup --test` installs it).
pub const NGINX: &str = "/usr/sbin/nginx";

/// How long a started server or nginx has to answer.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Bound on one `http_get`.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Bound on building the server binary when it is missing (a cold debug build on two
/// busy cores takes minutes).
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// The workspace's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ lives inside the workspace")
        .to_path_buf()
}

/// The text of `deploy/<name>`.
pub fn recipe(name: &str) -> Result<String> {
    let path = workspace_root().join("deploy").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))
}

/// `text` with every `(from, to)` replaced, in order; an error when a `from` is not in it.
pub fn render(text: &str, replacements: &[(&str, &str)]) -> Result<String> {
    let mut rendered = text.to_owned();
    for (from, to) in replacements {
        ensure!(
            rendered.contains(from),
            "the recipe no longer contains {from:?}: update its test"
        );
        rendered = rendered.replace(from, to);
    }
    Ok(rendered)
}

/// `name`'s path in a folder of `$PATH`, `None` when it is in none.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The `duplex-server` binary: `$DUPLEX_SERVER_BIN` (e.g. `target/release/duplex-server`),
/// else the one of this test's build profile (`target/<profile>/duplex-server`, beside
/// the test's `deps/`). That one is built with cargo first when it is missing or older
/// than the server's sources; `cargo xtask test` has built it by then.
pub fn server_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("DUPLEX_SERVER_BIN") {
        let path = PathBuf::from(path);
        ensure!(
            path.is_file(),
            "DUPLEX_SERVER_BIN={} is not a file",
            path.display()
        );
        // Absolute: the server runs in a directory of its own, and systemd wants it so.
        return Ok(path.canonicalize()?);
    }
    // Built at most once per test process; an error is kept as text (anyhow's is not Clone).
    static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BINARY
        .get_or_init(|| profile_binary().map_err(|error| format!("{error:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

fn profile_binary() -> Result<PathBuf> {
    // The test runs as target/<profile>/deps/<test>-<hash>.
    let exe = std::env::current_exe().context("cannot find the test's own executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not in target/<profile>/deps/", exe.display()))?;
    let binary = profile_dir.join(format!("duplex-server{}", std::env::consts::EXE_SUFFIX));
    let sources = newest_source()?;
    match modified(&binary) {
        Some(built) if built >= sources => return Ok(binary),
        Some(_) => println!(
            "recipes: {} is older than the server's sources: building it",
            binary.display()
        ),
        None => println!("recipes: {} is missing: building it", binary.display()),
    }
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev",
        Some(other) => other,
    };
    let target_dir = profile_dir
        .parent()
        .context("the profile folder has no parent")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .args(["build", "-p", "duplex-server", "--bin", "duplex-server"])
        .args(["--profile", profile])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    let status = wait_bounded(
        build.spawn().context("cannot run cargo")?,
        BUILD_TIMEOUT,
        "cargo build -p duplex-server",
    )?;
    ensure!(
        status.success(),
        "cargo build -p duplex-server failed ({status})"
    );
    ensure!(
        binary.is_file(),
        "cargo built duplex-server, but not at {}",
        binary.display()
    );
    Ok(binary)
}

/// The last change to what the server binary is built from.
fn newest_source() -> Result<SystemTime> {
    let root = workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    for path in [
        "server/src",
        "server/Cargo.toml",
        "protocol/src",
        "protocol/Cargo.toml",
        "Cargo.lock",
    ] {
        newest = newest.max(newest_in(&root.join(path))?);
    }
    Ok(newest)
}

fn newest_in(path: &Path) -> Result<SystemTime> {
    let metadata =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut newest = metadata.modified()?;
    if metadata.is_dir() {
        for entry in std::fs::read_dir(path)? {
            newest = newest.max(newest_in(&entry?.path())?);
        }
    }
    Ok(newest)
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Waits for `child` until `limit`, then kills it and fails.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Result<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{what} did not finish within {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `command` to its end with its output captured, killing it after `limit`.
pub fn output_within(command: &mut Command, limit: Duration) -> Result<Output> {
    let what = format!("{command:?}");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {what}"))?;
    // Read on threads, so that a full pipe cannot stall the child while it is waited for.
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let status = wait_bounded(child, limit, &what)?;
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Sends SIGTERM to `child` (what systemd and Ctrl-C send), with the `kill` command.
fn terminate(child: &Child) -> Result<()> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .context("cannot run kill")?;
    ensure!(
        status.success(),
        "kill -TERM {} failed ({status})",
        child.id()
    );
    Ok(())
}

/// The last `lines` lines of a log file, for error messages.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A `duplex-server` process; SIGTERM (then SIGKILL) on drop.
pub struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    /// Its working directory (relative paths such as the default `--dist dist` resolve
    /// there, not in the test's) and its log.
    _dir: TempDir,
}

impl ServerProcess {
    /// Runs `binary --addr <addr> <args>` with `envs` on top of this process's
    /// environment minus its `DUPLEX_*` variables (the tests' own `DUPLEX_DIST` would
    /// be read as `--dist`), and waits until `GET /healthz` answers 200.
    pub fn start(
        binary: &Path,
        addr: SocketAddr,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = TempDir::new("server")?;
        let log = dir.path().join("server.log");
        let out = File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(binary);
        command
            .arg("--addr")
            .arg(addr.to_string())
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DUPLEX_") {
                command.env_remove(name);
            }
        }
        command.envs(envs.iter().copied());
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let mut server = Self {
            child,
            addr,
            log,
            _dir: dir,
        };
        server.wait_healthy()?;
        Ok(server)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let url = format!("{}healthz", self.url());
        let log = self.log.clone();
        let child = &mut self.child;
        poll_until(START_TIMEOUT, &format!("{url} to answer 200"), || {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "duplex-server exited ({status}) before it was healthy; its log:\n{}",
                    tail(&log, 20)
                );
            }
            Ok(match http_get(&url, &[]) {
                Ok(reply) if reply.status == 200 => Check::Done(()),
                Ok(reply) => Check::Waiting(format!("HTTP {}", reply.status)),
                Err(error) => Check::Waiting(format!("{error:#}")),
            })
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// What it has logged so far (stdout and stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `within` for it to exit; how it exited.
    pub fn terminate(mut self, within: Duration) -> Result<ExitStatus> {
        terminate(&self.child)?;
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "duplex-server did not exit within {within:?} of SIGTERM; its log:\n{}",
                    tail(&self.log, 20)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        if terminate(&self.child).is_ok() {
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Debian's nginx in the foreground, one process (`master_process off`); killed on drop.
pub struct Nginx {
    child: Child,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx with `http` (a recipe's blocks, rendered) inside the `http { }` of a
    /// main configuration of its own, as Debian's `nginx.conf` would hold it (with
    /// `mime.types`), and waits until it accepts connections on every port of `ports`.
    /// Its access log (`access_log`) says for each request its status, its `Upgrade`
    /// header and its request line.
    pub fn start(http: &str, ports: &[u16]) -> Result<Self> {
        ensure!(
            Path::new(NGINX).exists(),
            "{NGINX} is missing: `cargo xtask setup --test` installs it (Debian's nginx)"
        );
        let dir = TempDir::new("nginx")?;
        let d = dir.path().display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n\
             log_format recipe '$status \"$http_upgrade\" \"$request\"';\n\
             access_log {d}/access.log recipe;\n\
             client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
             {http}\n}}\n"
        );
        let path = dir.path().join("nginx.conf");
        std::fs::write(&path, conf).with_context(|| format!("cannot write {}", path.display()))?;
        let stderr = dir.path().join("stderr.log");
        let child = Command::new(NGINX)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&path)
            // The error log before the configuration is read (else /var/log/nginx/).
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr)?)
            .spawn()
            .with_context(|| format!("cannot start {NGINX}"))?;
        let mut nginx = Self { child, dir };
        for &port in ports {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let child = &mut nginx.child;
            let error_log = nginx.dir.path().join("error.log");
            poll_until(START_TIMEOUT, &format!("nginx to listen on {addr}"), || {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "nginx exited ({status}): {}\n{}",
                        tail(&stderr, 10),
                        tail(&error_log, 10)
                    );
                }
                Ok(match TcpStream::connect(addr) {
                    Ok(_) => Check::Done(()),
                    Err(error) => Check::Waiting(error.to_string()),
                })
            })?;
        }
        Ok(nginx)
    }

    /// The access log so far: `<status> "<Upgrade header or ->" "<request line>"` per line.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An answer to `http_get`.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Vec<u8>,
}

impl HttpReply {
    /// A header's value, `None` when absent or not text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET url` over plain HTTP with `headers`, on a runtime of its own, bounded by 10 s.
/// Redirects are not followed.
pub fn http_get(url: &str, headers: &[(&str, &str)]) -> Result<HttpReply> {
    let mut request = hyper::Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .with_context(|| format!("bad request GET {url}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot build a tokio runtime for an HTTP request")?;
    let reply = runtime.block_on(async {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let response = client.request(request).await?;
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.into_body().collect().await?.to_bytes().to_vec();
            anyhow::Ok(HttpReply {
                status,
                headers,
                body,
            })
        })
        .await
    });
    match reply {
        Ok(reply) => reply.with_context(|| format!("GET {url}")),
        Err(_elapsed) => bail!("GET {url}: no answer within {REQUEST_TIMEOUT:?}"),
    }
}
