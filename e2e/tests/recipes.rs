//! The README's deployment recipes, each tried as written: the configuration files of
//! `deploy/` rendered with this test's ports and paths, the real `duplex-server` binary
//! as a child process, Debian's nginx, headless Chromium on the release bundle, the
//! official `socket.io-client` and `systemd-analyze`. Run by `cargo xtask test` (which
//! builds the bundle and the binary first), or:
//!
//! ```sh
//! DUPLEX_DIST=dist cargo test -p duplex-e2e --test recipes -- --test-threads=1 --nocapture
//! ```
//!
//! - `release_binary_serves_the_bundle`: `duplex-server --dist dist` serves `index.html`
//!   at `/`, the page connects over a WebSocket and shows the greeting, and SIGTERM
//!   stops the server cleanly (exit status 0)
//! - `bundle_on_nginx_with_the_server_elsewhere`: nginx serves `dist/`
//!   (`deploy/nginx-static.conf`: the wasm as `application/wasm`, gzipped, cached for
//!   good; `index.html` revalidated), the page from nginx with `?server=` connects to a
//!   server on another port started with `--allow-origin <nginx's origin>`; without it
//!   the server refuses the page's Origin (403) and the page never connects
//! - `behind_nginx_terminating_tls`: nginx with a self-signed certificate made here
//!   (`deploy/nginx-tls.conf`) in front of the server: the page over https connects with
//!   a WebSocket over wss (101 in nginx's log), the official client connects with its
//!   default transports (long-polling, then the upgrade) and gets `news`, plain http is
//!   redirected to https
//! - `systemd_unit`: `systemd-analyze verify` finds nothing to say about
//!   `deploy/duplex.service` (and does catch a misspelled directive and a missing
//!   binary), `systemd-analyze security` rates it OK, its limits agree with its
//!   settings, and its command line and environment start the real binary. Skipped,
//!   with the reason printed, where `systemd-analyze` is not installed.
//!
//! Each test starts and stops its own processes on loopback ports; every wait is bounded.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use duplex_e2e::deploy::{
    Nginx, ServerProcess, find_program, http_get, output_within, recipe, render, server_binary,
    workspace_root,
};
use duplex_e2e::server::dist_from_env;
use duplex_e2e::webdriver::{Check, TempDir, free_port, poll_until};
use duplex_e2e::{ChromeDriver, Session, with_screenshot_on_failure};
use serde_json::{Value, json};

/// Generous: a cold Chromium compiling the wasm bundle on a busy 2-core machine is slow.
const TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server has to exit after SIGTERM: its default shutdown grace period (10 s)
/// and some.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

#[test]
fn release_binary_serves_the_bundle() -> Result<()> {
    let dist = dist_from_env()?.canonicalize()?;
    let binary = server_binary()?;
    let addr = loopback(free_port()?);
    let dist_arg = dist.display().to_string();
    let server = ServerProcess::start(&binary, addr, &["--dist", &dist_arg], &[])?;
    println!(
        "recipe: {} --addr {addr} --dist {dist_arg}",
        binary.display()
    );

    let index = http_get(&server.url(), &[])?;
    ensure!(index.status == 200, "GET / answered {}", index.status);
    ensure!(
        index.body == std::fs::read(dist.join("index.html"))?,
        "GET / is not the bundle's index.html: {}",
        index.text()
    );

    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    with_screenshot_on_failure(&page, "recipe-binary", || {
        page.goto(&server.url())?;
        wait_connected(&page)?;
        wait_for_news(&page, "world")?;
        page.wait_for_text("#transport", |text| text.trim() == "websocket", TIMEOUT)?;
        Ok(())
    })?;
    page.delete()?;

    let status = server.terminate(STOP_TIMEOUT)?;
    ensure!(
        status.success(),
        "after SIGTERM the server exited with {status}"
    );
    Ok(())
}

#[test]
fn bundle_on_nginx_with_the_server_elsewhere() -> Result<()> {
    let dist = dist_from_env()?.canonicalize()?;
    let binary = server_binary()?;

    let nginx_port = free_port()?;
    let conf = render(
        &recipe("nginx-static.conf")?,
        &[
            ("listen 80;", &format!("listen 127.0.0.1:{nginx_port};")),
            (
                "root /usr/local/share/duplex/dist;",
                &format!("root {};", dist.display()),
            ),
        ],
    )?;
    let nginx = Nginx::start(&conf, &[nginx_port])?;
    let static_origin = format!("http://127.0.0.1:{nginx_port}");
    check_static_host(&static_origin, &dist).with_context(|| {
        format!(
            "nginx serving the bundle; its error log:\n{}",
            nginx.error_log()
        )
    })?;

    // The server elsewhere: another port, no bundle of its own.
    let server = ServerProcess::start(
        &binary,
        loopback(free_port()?),
        &["--allow-origin", &static_origin],
        &[],
    )?;
    let handshake = format!("{}socket.io/?EIO=4&transport=polling", server.url());
    let allowed = http_get(&handshake, &[("Origin", &static_origin)])?;
    ensure!(
        allowed.status == 200,
        "a polling handshake from {static_origin} answered {}: {}",
        allowed.status,
        allowed.text()
    );
    ensure!(
        allowed.header("access-control-allow-origin") == Some(static_origin.as_str()),
        "the polling handshake's CORS headers: {:?}",
        allowed.headers
    );
    let other = http_get(&handshake, &[("Origin", "http://127.0.0.1:1")])?;
    ensure!(
        other.status == 403,
        "a page from another origin was answered {}",
        other.status
    );

    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    let page_url =
        |server: &ServerProcess| format!("{static_origin}/?server=http://{}", server.addr());
    with_screenshot_on_failure(&page, "recipe-static-host", || {
        page.goto(&page_url(&server))?;
        wait_connected(&page)?;
        wait_for_news(&page, "world")?;
        page.wait_for_text("#transport", |text| text.trim() == "websocket", TIMEOUT)?;
        Ok(())
    })?;
    let status = server.terminate(STOP_TIMEOUT)?;
    ensure!(
        status.success(),
        "after SIGTERM the server exited with {status}"
    );

    // The same server without --allow-origin refuses the page.
    let strict = ServerProcess::start(&binary, loopback(free_port()?), &[], &[])?;
    let refused = http_get(
        &format!("{}socket.io/?EIO=4&transport=polling", strict.url()),
        &[("Origin", &static_origin)],
    )?;
    ensure!(
        refused.status == 403,
        "without --allow-origin, a polling handshake from {static_origin} answered {}",
        refused.status
    );
    with_screenshot_on_failure(&page, "recipe-static-host-refused", || {
        let refusals = || strict.log().matches("forbidden origin").count();
        let before = refusals();
        page.goto(&page_url(&strict))?;
        // The page tries a WebSocket, then long-polling, and is refused both times.
        poll_until(TIMEOUT, "the server to refuse the page's origin", || {
            Ok(match refusals() - before {
                n if n >= 2 => Check::Done(()),
                n => Check::Waiting(format!("{n} refusals logged")),
            })
        })?;
        // And it shows that it is not connected, for 3 s more.
        let deadline = Instant::now() + Duration::from_secs(3);
        let (status, detail) = loop {
            let (status, detail) = status_bar(&page)?;
            ensure!(
                status != "connected",
                "the page connected to a server that does not allow its origin"
            );
            if Instant::now() >= deadline {
                break (status, detail);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        println!("the refused page: #status {status:?}, #status-detail {detail:?}");
        // It says it is trying again, and that its transports failed.
        ensure!(
            matches!(status.as_str(), "reconnecting" | "offline") && detail.contains("failed"),
            "the refused page shows #status {status:?}, #status-detail {detail:?}"
        );
        Ok(())
    })?;
    page.delete()?;
    drop(nginx);
    Ok(())
}

/// What nginx serves on `origin` from the static recipe: the bundle, with the types and
/// caching the recipe gives it.
fn check_static_host(origin: &str, dist: &Path) -> Result<()> {
    let index = http_get(&format!("{origin}/"), &[])?;
    ensure!(index.status == 200, "GET / answered {}", index.status);
    ensure!(
        index.body == std::fs::read(dist.join("index.html"))?,
        "GET / is not the bundle's index.html"
    );
    ensure!(
        index.header("cache-control") == Some("no-cache"),
        "index.html's Cache-Control: {:?}",
        index.header("cache-control")
    );
    for (extension, content_type) in [
        ("wasm", "application/wasm"),
        ("js", "application/javascript"),
    ] {
        let name = bundle_file(dist, extension)?;
        let reply = http_get(&format!("{origin}/{name}"), &[("Accept-Encoding", "gzip")])?;
        ensure!(reply.status == 200, "GET /{name} answered {}", reply.status);
        ensure!(
            reply.header("content-type") == Some(content_type),
            "/{name} is served as {:?}, not {content_type}",
            reply.header("content-type")
        );
        ensure!(
            reply.header("content-encoding") == Some("gzip"),
            "/{name} is not gzipped: {:?}",
            reply.headers
        );
        ensure!(
            reply
                .header("cache-control")
                .is_some_and(|value| value.contains("immutable")),
            "/{name}'s Cache-Control: {:?}",
            reply.header("cache-control")
        );
    }
    Ok(())
}

/// The name of the bundle's file ending in `.{extension}`.
fn bundle_file(dist: &Path, extension: &str) -> Result<String> {
    for entry in std::fs::read_dir(dist)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == extension) {
            let name = path.file_name().context("a file has a name")?;
            return Ok(name.to_string_lossy().into_owned());
        }
    }
    bail!("{} has no .{extension} file", dist.display())
}

#[test]
fn behind_nginx_terminating_tls() -> Result<()> {
    let dist = dist_from_env()?.canonicalize()?;
    let binary = server_binary()?;
    let dist_arg = dist.display().to_string();
    let server =
        ServerProcess::start(&binary, loopback(free_port()?), &["--dist", &dist_arg], &[])?;

    let certs = TempDir::new("tls")?;
    let (cert, key) = self_signed_certificate(certs.path())?;
    let (https_port, http_port) = (free_port()?, free_port()?);
    let conf = render(
        &recipe("nginx-tls.conf")?,
        &[
            (
                "listen 443 ssl;",
                &format!("listen 127.0.0.1:{https_port} ssl;"),
            ),
            ("listen 80;", &format!("listen 127.0.0.1:{http_port};")),
            (
                "proxy_pass http://127.0.0.1:8124;",
                &format!("proxy_pass http://{};", server.addr()),
            ),
            ("/etc/ssl/duplex/fullchain.pem", &cert),
            ("/etc/ssl/duplex/privkey.pem", &key),
        ],
    )?;
    let nginx = Nginx::start(&conf, &[https_port, http_port])?;
    let site = format!("https://127.0.0.1:{https_port}");

    let redirect = http_get(&format!("http://127.0.0.1:{http_port}/"), &[])?;
    ensure!(
        redirect.status == 301
            && redirect
                .header("location")
                .is_some_and(|l| l.starts_with("https://")),
        "plain http answered {} (Location {:?})",
        redirect.status,
        redirect.header("location")
    );

    // The page over https; its socket goes to its own origin, so over wss.
    let driver = ChromeDriver::start()?;
    let page = driver.new_session_with_args(&["--ignore-certificate-errors"])?;
    with_screenshot_on_failure(&page, "recipe-tls", || {
        page.goto(&format!("{site}/"))?;
        wait_connected(&page)?;
        wait_for_news(&page, "world")?;
        page.wait_for_text("#transport", |text| text.trim() == "websocket", TIMEOUT)?;
        page.wait_for_text("#hs-status", |text| text.contains("101"), TIMEOUT)?;
        let protocol = page.execute("return location.protocol;", Vec::new())?;
        ensure!(protocol == json!("https:"), "the page is on {protocol}");
        Ok(())
    })?;
    page.delete()?;
    let log = nginx.access_log();
    ensure!(
        log.lines().any(|line| line
            .starts_with(r#"101 "websocket" "GET /socket.io/?EIO=4&transport=websocket"#)),
        "nginx's log shows no WebSocket upgrade (101) over TLS:\n{log}"
    );

    // The official client, default transports: long-polling, then the upgrade.
    let output = run_interop("recipe-client.mjs", &[&site], Duration::from_secs(30))?;
    let summary: Value = output
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .with_context(|| format!("recipe-client.mjs printed no summary: {output}"))?;
    ensure!(
        summary
            == json!({
                "opened": "polling",
                "transport": "websocket",
                "news": {"hello": "world"},
                "echo": {"my": "data"},
            }),
        "the official client through TLS: {summary}"
    );
    let log = nginx.access_log();
    ensure!(
        log.lines()
            .any(|line| line.starts_with(r#"200 "-" "GET /socket.io/?EIO=4&transport=polling"#))
            && log
                .lines()
                .any(|line| line.starts_with("101 \"websocket\"") && line.contains("&sid=")),
        "nginx's log shows no polling session upgraded to a WebSocket:\n{log}"
    );
    drop(nginx);
    let status = server.terminate(STOP_TIMEOUT)?;
    ensure!(
        status.success(),
        "after SIGTERM the server exited with {status}"
    );
    Ok(())
}

/// A key and a certificate for `127.0.0.1` (as a SAN: browsers ignore the CN), valid
/// for a day, written into `dir`; their paths.
fn self_signed_certificate(dir: &Path) -> Result<(String, String)> {
    let openssl = find_program("openssl")
        .context("openssl is not installed (it makes the test's certificate)")?;
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let output = output_within(
        Command::new(openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args([
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        Duration::from_secs(60),
    )?;
    ensure!(
        output.status.success(),
        "openssl req failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((cert.display().to_string(), key.display().to_string()))
}

/// Runs `node interop/<script> <args>` to its end, within `limit`; its stdout.
fn run_interop(script: &str, args: &[&str], limit: Duration) -> Result<String> {
    let interop = workspace_root().join("interop");
    ensure!(
        interop.join("node_modules/socket.io-client").is_dir(),
        "{} has no node_modules: run `cargo xtask setup --test` (or `npm ci` there)",
        interop.display()
    );
    let output = output_within(
        Command::new("node")
            .arg(script)
            .args(args)
            .current_dir(&interop),
        limit,
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    ensure!(
        output.status.success(),
        "node {script} failed ({}): {}{}",
        output.status,
        stdout,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

#[test]
fn systemd_unit() -> Result<()> {
    let Some(analyze) = find_program("systemd-analyze") else {
        println!(
            "skipped: systemd-analyze is not installed, so deploy/duplex.service cannot be \
             verified here (Debian: apt-get install systemd)"
        );
        return Ok(());
    };
    let binary = server_binary()?;
    let unit = recipe("duplex.service")?;
    let dir = TempDir::new("systemd")?;

    // `verify` checks that ExecStart's binary exists: the real one stands in for
    // /usr/local/bin/duplex-server.
    let installed = "ExecStart=/usr/local/bin/duplex-server ";
    let tried = render(
        &unit,
        &[(installed, &format!("ExecStart={} ", binary.display()))],
    )?;
    let path = write(dir.path(), "duplex.service", &tried)?;
    verify(&analyze, &path).context("deploy/duplex.service")?;

    // The check can fail: systemd-analyze only warns about a misspelled directive (its
    // exit status stays 0), and refuses a missing binary.
    let typo = write(
        dir.path(),
        "duplex-typo.service",
        &render(&tried, &[("NoNewPrivileges=yes", "NoNewPrivilege=yes")])?,
    )?;
    let error = verify(&analyze, &typo)
        .err()
        .context("a misspelled directive passed")?;
    ensure!(
        format!("{error:#}").contains("NoNewPrivilege"),
        "the misspelled directive's error does not name it: {error:#}"
    );
    println!("a broken unit is caught: {error:#}");
    let missing = write(
        dir.path(),
        "duplex-missing.service",
        &render(
            &unit,
            &[(installed, "ExecStart=/nonexistent/duplex-server ")],
        )?,
    )?;
    let error = verify(&analyze, &missing)
        .err()
        .context("a missing binary passed")?;
    println!("a broken unit is caught: {error:#}");

    security_exposure(&analyze, &path)?;
    start_as_the_unit_does(&unit, &binary)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// `systemd-analyze verify <unit>`: an error when it fails or says anything about the
/// unit (it only warns, exit status 0, about unknown directives and bad values). What it
/// says about other units (the host's targets it loads) is not the recipe's business.
fn verify(analyze: &Path, unit: &Path) -> Result<()> {
    let output = output_within(
        Command::new(analyze).args(["verify", "--man=no"]).arg(unit),
        Duration::from_secs(60),
    )?;
    let name = unit
        .file_name()
        .context("a unit file has a name")?
        .to_string_lossy();
    let said = String::from_utf8_lossy(&output.stderr) + String::from_utf8_lossy(&output.stdout);
    let about_it: Vec<&str> = said.lines().filter(|line| line.contains(&*name)).collect();
    let shown = if about_it.is_empty() {
        said.trim().to_owned()
    } else {
        about_it.join("; ")
    };
    ensure!(
        output.status.success() && about_it.is_empty(),
        "systemd-analyze verify {name}: {} — {shown}",
        output.status
    );
    Ok(())
}

/// `systemd-analyze security --offline=yes`: the unit's exposure rating, at most 2.0 of
/// 10 ("OK"). Skipped, with the reason, where systemd is older than 250 (no `--offline`).
fn security_exposure(analyze: &Path, unit: &Path) -> Result<()> {
    let output = output_within(
        Command::new(analyze)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(unit),
        Duration::from_secs(60),
    )?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout
        .lines()
        .find(|line| line.contains("Overall exposure level"))
    else {
        println!(
            "skipped the exposure rating: systemd-analyze security --offline=yes gave {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        return Ok(());
    };
    let exposure: f64 = line
        .rsplit(':')
        .next()
        .and_then(|rating| rating.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .with_context(|| format!("no number in {line:?}"))?;
    println!(
        "deploy/duplex.service: {}",
        line.trim_start_matches(['→', ' '])
    );
    ensure!(
        exposure <= 2.0,
        "deploy/duplex.service is exposed ({exposure}): {stdout}"
    );
    Ok(())
}

/// The unit's settings agree with each other, its environment variables are the
/// binary's, and its command line and environment start the real binary (on a loopback
/// port, with `DUPLEX_DIST`'s bundle), which SIGTERM stops cleanly within
/// `TimeoutStopSec`.
fn start_as_the_unit_does(unit: &str, binary: &Path) -> Result<()> {
    let setting = |key: &str| -> Result<&str> {
        unit.lines()
            .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("deploy/duplex.service has no {key}="))
    };
    let environment: Vec<(&str, &str)> = unit
        .lines()
        .filter_map(|line| line.strip_prefix("Environment=")?.split_once('='))
        .collect();
    let env = |name: &str| -> Result<u64> {
        let value = environment
            .iter()
            .find(|(key, _)| *key == name)
            .with_context(|| format!("deploy/duplex.service sets no {name}"))?
            .1;
        value.parse().with_context(|| format!("{name}={value}"))
    };

    // One descriptor per connection, a long-polling session's GET and POST both open.
    let files: u64 = setting("LimitNOFILE")?.parse()?;
    let connections = env("DUPLEX_MAX_CONNECTIONS")?;
    ensure!(
        files >= 2 * connections,
        "LimitNOFILE={files} is less than twice DUPLEX_MAX_CONNECTIONS={connections}"
    );
    // systemd waits for the server's own graceful shutdown before it kills.
    let stop_after: u64 = setting("TimeoutStopSec")?.parse()?;
    let shutdown = env("DUPLEX_SHUTDOWN_TIMEOUT")?;
    ensure!(
        stop_after > shutdown,
        "TimeoutStopSec={stop_after} does not leave DUPLEX_SHUTDOWN_TIMEOUT={shutdown} s to the server"
    );

    // Every DUPLEX_* variable the unit names (the commented examples too) is one of the
    // binary's: clap ignores unknown ones silently.
    let help = output_within(Command::new(binary).arg("--help"), Duration::from_secs(30))?;
    let help = String::from_utf8_lossy(&help.stdout);
    for line in unit.lines() {
        let line = line.trim_start_matches('#');
        if let Some((name, _)) = line
            .strip_prefix("Environment=")
            .and_then(|rest| rest.split_once('='))
            .filter(|(name, _)| name.starts_with("DUPLEX_"))
        {
            // `[env: NAME=]`, or `[env: NAME]` for a secret's.
            ensure!(
                help.contains(&format!("[env: {name}="))
                    || help.contains(&format!("[env: {name}]")),
                "deploy/duplex.service sets {name}, which duplex-server --help does not name"
            );
        }
    }

    // ExecStart's flags, with this test's port and bundle.
    let exec = setting("ExecStart")?;
    let mut words = exec.split_whitespace();
    ensure!(
        words.next() == Some("/usr/local/bin/duplex-server"),
        "ExecStart={exec}"
    );
    let mut args: Vec<String> = Vec::new();
    while let Some(word) = words.next() {
        let value = words
            .next()
            .with_context(|| format!("ExecStart={exec}: {word} has no value"))?;
        match word {
            // ServerProcess gives the loopback address.
            "--addr" => {}
            "--dist" => {
                let dist = dist_from_env()?.canonicalize()?;
                args.extend([word.to_owned(), dist.display().to_string()]);
            }
            _ => args.extend([word.to_owned(), value.to_owned()]),
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = ServerProcess::start(binary, loopback(free_port()?), &args, &environment)?;
    let index = http_get(&server.url(), &[])?;
    ensure!(index.status == 200, "GET / answered {}", index.status);
    let status = server.terminate(Duration::from_secs(stop_after))?;
    ensure!(
        status.success(),
        "after SIGTERM the server exited with {status}"
    );
    Ok(())
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The texts of `#status` and `#status-detail`, trimmed, read in one script (the bar
/// re-renders while a reconnection counts down).
fn status_bar(page: &Session) -> Result<(String, String)> {
    const SCRIPT: &str = "return ['#status', '#status-detail'].map(function (selector) {\
                              var element = document.querySelector(selector);\
                              return element ? element.textContent.trim() : '';\
                          });";
    let texts = page.execute(SCRIPT, Vec::new())?;
    match texts.as_array().map(Vec::as_slice) {
        Some([Value::String(status), Value::String(detail)]) => {
            Ok((status.clone(), detail.clone()))
        }
        _ => bail!("the status script returned {texts}"),
    }
}

/// Waits until `#status` is exactly `connected`.
fn wait_connected(page: &Session) -> Result<()> {
    page.wait_for_text("#status", |text| text.trim() == "connected", TIMEOUT)
        .context("the page never connected")?;
    Ok(())
}

/// Waits for an item of `#news` whose text contains `needle`.
fn wait_for_news(page: &Session, needle: &str) -> Result<()> {
    page.wait_for_news(needle, TIMEOUT)
}
