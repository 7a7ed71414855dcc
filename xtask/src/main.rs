//! `cargo xtask`: the project's automation, written in Rust (the cargo-xtask convention).
//!
//! `cargo xtask <command>` is an alias (in `.cargo/config.toml`) for running this binary.
//!
//! - `main.rs`: the command line and the commands (`setup`, `build`, `run`, `dev`, `test`)
//! - `autobahn.rs`: the Autobahn|Testsuite (RFC 6455 conformance) against the server's
//!   own WebSocket code, its Python 2.7 virtualenv and its report
//! - `setup.rs`: installs the tools the commands need, each only when missing
//! - `lockfile.rs`: reads package versions out of `Cargo.lock`
//! - `exec.rs`: runs child processes with the tool `PATH` and names their failures

mod autobahn;
mod devproxy;
mod exec;
mod lockfile;
mod setup;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::exec::Env;
use crate::setup::Scope;

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  setup [--test]          install what is missing: wasm32 target, trunk, wasm-bindgen CLI,
                          wasm-opt (binaryen from npm into .tools/); --test adds rustfmt,
                          clippy, Chromium and chromedriver
  build | dist            trunk build --release: the bundle in dist/
  run [-- SERVER_ARGS]    build the bundle, then run the release server on it
                          (http://127.0.0.1:8124 unless SERVER_ARGS say otherwise)
  dev [-- SERVER_ARGS]    the debug server in the background, `trunk serve` on :8081, and on
                          http://127.0.0.1:8080 a proxy: /socket.io/ (WebSocket and
                          long-polling) to the server, the rest to trunk; Ctrl-C stops all
  test                    fmt, clippy, unit and integration tests, the bundle, browser tests
  autobahn [--peer duplex|tungstenite] [--cases 6.*,7.1.6]
                          the Autobahn|Testsuite fuzzingclient (RFC 6455 conformance, all
                          cases by default) against a WebSocket echo on the server's own
                          framing, or on tokio-tungstenite; counts per group, the cases not
                          OK, fails if any FAILED (installs the suite: Python 2.7, pyenv's)
  fuzz [SECONDS]          each cargo-fuzz target for SECONDS (default 60); installs cargo-fuzz
  soak [-- SOAK_ARGS]     N connections with heartbeats against the release server, RSS
                          at start, peak and after (default 10,000 connections)
  bench [-- BENCH_ARGS]   duplex vs Node socket.io vs socketioxide vs bare WebSocket ceilings,
                          then chaos: duplex and Node (recovery on) behind a proxy that cuts
                          connections, items delivered, missing, duplicated, reordered
                          (--no-chaos skips it), then the client: bundle sizes and page load
                          to news in headless Chromium (builds the release bundle first
                          unless --no-client or --only servers|chaos)
";

#[derive(Debug, PartialEq, Eq)]
enum Task {
    Setup(Scope),
    Build,
    Run(Vec<OsString>),
    Dev(Vec<OsString>),
    Test,
    Fuzz(u64),
    Autobahn(autobahn::Options),
    Soak(Vec<OsString>),
    Bench(Vec<OsString>),
    Help,
}

fn main() -> ExitCode {
    let task = match parse_args(std::env::args_os().skip(1).collect()) {
        Ok(task) => task,
        Err(error) => {
            eprintln!("xtask: {error:#}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse_args(mut args: Vec<OsString>) -> Result<Task> {
    if args.is_empty() {
        return Ok(Task::Help);
    }
    let command = args.remove(0);
    let command = command
        .to_str()
        .with_context(|| format!("unknown command {command:?}"))?;
    // `cargo xtask run -- --port 9000` reaches us as `run -- --port 9000`.
    let forwarded = |mut rest: Vec<OsString>| {
        if rest.first().is_some_and(|first| first == "--") {
            rest.remove(0);
        }
        rest
    };
    let no_args = |task: Task, rest: &[OsString]| match rest {
        [] => Ok(task),
        [first, ..] => bail!("`{command}` takes no arguments, got {first:?}"),
    };
    match command {
        "setup" => match args.as_slice() {
            [] => Ok(Task::Setup(Scope::Build)),
            [flag] if flag == "--test" => Ok(Task::Setup(Scope::Test)),
            [first, ..] => bail!("`setup` takes only `--test`, got {first:?}"),
        },
        "build" | "dist" => no_args(Task::Build, &args),
        "run" => Ok(Task::Run(forwarded(args))),
        "dev" => Ok(Task::Dev(forwarded(args))),
        "test" => no_args(Task::Test, &args),
        "fuzz" => match args.as_slice() {
            [] => Ok(Task::Fuzz(60)),
            [seconds] => seconds
                .to_str()
                .and_then(|s| s.parse().ok())
                .map(Task::Fuzz)
                .with_context(|| format!("`fuzz` takes a number of seconds, got {seconds:?}")),
            [_, extra, ..] => bail!("`fuzz` takes one argument, got {extra:?} too"),
        },
        "autobahn" => autobahn_args(&args).map(Task::Autobahn),
        "soak" => Ok(Task::Soak(forwarded(args))),
        "bench" => Ok(Task::Bench(forwarded(args))),
        "help" | "-h" | "--help" => Ok(Task::Help),
        other => bail!("unknown command `{other}`"),
    }
}

fn run(task: Task) -> Result<()> {
    if task == Task::Help {
        print!("{USAGE}");
        return Ok(());
    }
    let env = Env::from_env()?;
    match task {
        Task::Help => Ok(()),
        Task::Setup(scope) => setup::setup(&env, scope),
        Task::Build => {
            setup::setup(&env, Scope::Build)?;
            trunk_build(&env)?;
            eprintln!("xtask: bundle written to {}", env.dist().display());
            Ok(())
        }
        Task::Run(server_args) => {
            setup::setup(&env, Scope::Build)?;
            trunk_build(&env)?;
            run_server(&env, server_args)
        }
        Task::Dev(server_args) => {
            setup::setup(&env, Scope::Build)?;
            dev(&env, server_args)
        }
        Task::Test => test(&env),
        Task::Fuzz(seconds) => fuzz(&env, seconds),
        Task::Autobahn(options) => autobahn::autobahn(&env, &options),
        Task::Soak(args) => loadgen(&env, "soak", args),
        Task::Bench(args) => bench(&env, args),
    }
}

/// `autobahn [--peer NAME] [--cases LIST]`, also as `--peer=NAME` and `--cases=LIST`.
fn autobahn_args(args: &[OsString]) -> Result<autobahn::Options> {
    let mut options = autobahn::Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let arg = arg
            .to_str()
            .with_context(|| format!("unknown argument {arg:?}"))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().and_then(|v| v.to_str()).map(str::to_owned))
                .with_context(|| format!("`{flag}` needs a value"))
        };
        match flag {
            "--peer" => {
                let name = value()?;
                options.peer = autobahn::Peer::parse(&name).with_context(|| {
                    format!("`--peer` takes duplex or tungstenite, got {name:?}")
                })?;
            }
            "--cases" => {
                options.cases = value()?
                    .split(',')
                    .filter(|case| !case.is_empty())
                    .map(str::to_owned)
                    .collect();
                if options.cases.is_empty() {
                    bail!("`--cases` takes case patterns such as 6.*,7.1.6");
                }
            }
            other => bail!("`autobahn` takes --peer and --cases, got {other:?}"),
        }
    }
    Ok(options)
}

/// `duplex-loadgen bench`, with the release bundle built first when its client section
/// runs, and the bundle and browser passed the way the browser tests get them.
fn bench(env: &Env, args: Vec<OsString>) -> Result<()> {
    let mut envs: Vec<(&str, OsString)> = Vec::new();
    if bench_runs_client(&args) {
        setup::setup(env, Scope::Build)?;
        trunk_build(env)?;
        envs.push(("DUPLEX_DIST", env.dist().into_os_string()));
        // Where `setup --test` installs them, unless the caller points elsewhere.
        for (var, default) in [
            ("CHROMEDRIVER", "/usr/bin/chromedriver"),
            ("CHROMIUM", "/usr/bin/chromium"),
        ] {
            envs.push((var, std::env::var_os(var).unwrap_or_else(|| default.into())));
        }
    }
    loadgen_with(env, "bench", args, &envs)
}

/// Whether `duplex-loadgen bench ARGS` runs its client section (not with `--no-client`
/// or `--only` another section).
fn bench_runs_client(args: &[OsString]) -> bool {
    let mut previous: Option<&OsString> = None;
    for arg in args {
        let only_other = match arg.to_str().and_then(|a| a.strip_prefix("--only=")) {
            Some(section) => section != "client",
            None => previous.is_some_and(|p| p == "--only") && arg != "client",
        };
        if arg == "--no-client" || only_other {
            return false;
        }
        previous = Some(arg);
    }
    true
}

/// The cargo-fuzz targets in `fuzz/`, each for `seconds`. cargo-fuzz runs on stable
/// with `--sanitizer none`; a crash stops at once with its input in
/// `fuzz/artifacts/<target>/` (turn it into a regression test).
fn fuzz(env: &Env, seconds: u64) -> Result<()> {
    if exec::run(env.cargo().args(["fuzz", "--version"])).is_err() {
        eprintln!("xtask: cargo-fuzz missing, installing it");
        exec::run(env.cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    }
    for target in [
        "websocket_decode",
        "engineio_decode",
        "socketio_decode",
        "server_session",
    ] {
        eprintln!("\nxtask fuzz: {target} for {seconds} s");
        exec::run(env.cargo().args([
            "fuzz",
            "run",
            "--sanitizer",
            "none",
            target,
            "--",
            &format!("-max_total_time={seconds}"),
            "-print_final_stats=1",
        ]))
        .with_context(|| format!("fuzz target {target} found a failure"))?;
    }
    Ok(())
}

/// `duplex-loadgen <command>` in release, with the release server it drives.
fn loadgen(env: &Env, command: &str, args: Vec<OsString>) -> Result<()> {
    loadgen_with(env, command, args, &[])
}

/// `loadgen` with environment variables for it.
fn loadgen_with(
    env: &Env,
    command: &str,
    args: Vec<OsString>,
    envs: &[(&str, OsString)],
) -> Result<()> {
    exec::run(env.cargo().args([
        "build",
        "--release",
        "-p",
        "duplex-server",
        "-p",
        "duplex-loadgen",
    ]))?;
    exec::run(
        env.cargo()
            .args(["run", "--release", "-p", "duplex-loadgen", "--", command])
            .args(args)
            .envs(envs.iter().map(|(k, v)| (k, v))),
    )
}

/// `trunk build --release` at the root: Trunk.toml builds index.html into `dist/`.
fn trunk_build(env: &Env) -> Result<()> {
    fetch_crates(env)?;
    exec::run(
        env.command("trunk")
            .args(["build", "--release", "--offline"]),
    )
}

/// Downloads every locked crate, so that trunk can run `--offline`.
///
/// Offline, trunk fails at once with a clear message when a tool's version does not match
/// instead of retrying downloads from an unreachable internet for half a minute; but it
/// also passes `--offline` to cargo, so the client's crates must be on disk first.
/// A no-op (well under a second) when they are.
fn fetch_crates(env: &Env) -> Result<()> {
    exec::run(env.cargo().args(["fetch", "--quiet"]))
}

/// Runs the release server on the bundle. On Unix the process becomes cargo (which in turn
/// becomes the server), so Ctrl-C and the exit status are the server's own.
fn run_server(env: &Env, server_args: Vec<OsString>) -> Result<()> {
    let mut command = env.cargo();
    command
        .args(["run", "--release", "-p", "duplex-server", "--", "--dist"])
        .arg(env.dist())
        .args(server_args);
    eprintln!("$ {}", exec::display(&command));
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = command.exec();
        Err(error).context("cannot start cargo")
    }
    #[cfg(not(unix))]
    {
        let status = command.status().context("cannot start cargo")?;
        if !status.success() {
            bail!("the server exited with {status}");
        }
        Ok(())
    }
}

/// The debug server in the background, `trunk serve` in the foreground.
///
/// Ctrl-C in the terminal reaches the whole foreground process group, so trunk and the
/// server both stop on their own; when trunk exits any other way, the server is killed here.
/// Where `cargo xtask dev` serves the page.
const DEV_PORT: u16 = 8080;

fn dev(env: &Env, server_args: Vec<OsString>) -> Result<()> {
    // Build first, so the server starts at once and its compile output does not interleave
    // with trunk's.
    fetch_crates(env)?;
    exec::run(env.cargo().args(["build", "-p", "duplex-server"]))?;
    let mut server_command = env.cargo();
    // The dev proxy forwards the page's Origin (the dev address): let it in.
    server_command
        .args(["run", "-p", "duplex-server", "--"])
        .args([
            "--allow-origin",
            "http://127.0.0.1:8080",
            "--allow-origin",
            "http://localhost:8080",
        ])
        .args(&server_args);
    eprintln!("$ {} &", exec::display(&server_command));
    let mut server = server_command
        .spawn()
        .context("cannot start the server with cargo run")?;

    // The page's address: /socket.io/ (WebSocket and long-polling) to the
    // server, the rest to trunk, which serves on the port after it.
    let proxy = devproxy::bind(SocketAddr::from(([127, 0, 0, 1], DEV_PORT)))?;
    devproxy::spawn(
        proxy,
        devproxy::Backends {
            server: SocketAddr::from(([127, 0, 0, 1], 8124)),
            trunk: SocketAddr::from(([127, 0, 0, 1], DEV_PORT + 1)),
        },
    );
    eprintln!(
        "xtask: open http://127.0.0.1:{DEV_PORT}/ — /socket.io/ goes to the server (WebSocket and \
         long-polling), the rest to trunk serve on :{}",
        DEV_PORT + 1
    );
    let trunk = exec::run(env.command("trunk").args([
        "serve",
        "--offline",
        "--port",
        &(DEV_PORT + 1).to_string(),
    ]));

    match server.try_wait() {
        Ok(Some(status)) => eprintln!("xtask: the server had already exited ({status})"),
        _ => {
            eprintln!("xtask: stopping the server");
            // Kill fails only if the process is gone already, which is what we want.
            let _ = server.kill();
            let _ = server.wait();
        }
    }
    trunk
}

/// The full test suite, fail-fast, with a summary.
fn test(env: &Env) -> Result<()> {
    let mut suite = Suite::default();
    let result = test_steps(env, &mut suite);
    suite.print_summary(result.is_ok());
    let screenshot = env.target_dir().join("screenshot.png");
    if result.is_ok() && screenshot.is_file() {
        eprintln!(
            "  screenshot of the connected page: {}",
            screenshot.display()
        );
    }
    result
}

fn test_steps(env: &Env, suite: &mut Suite) -> Result<()> {
    let dist = env.dist();

    suite.step("rustfmt check", || {
        // Only rustfmt is needed here; the slow part of setup comes after this quick check.
        setup::rust_component(env, "rustfmt", "fmt")?;
        exec::run(env.cargo().args(["fmt", "--all", "--", "--check"]))
    })?;
    suite.step("setup (tools, Chromium)", || setup::setup(env, Scope::Test))?;
    suite.step("clippy (native crates)", || {
        exec::run(env.cargo().args([
            "clippy",
            "--workspace",
            "--exclude",
            "duplex-client",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    suite.step("clippy (wasm client)", || {
        exec::run(env.cargo().args([
            "clippy",
            "-p",
            "duplex-client",
            "--target",
            "wasm32-unknown-unknown",
            "--",
            "-D",
            "warnings",
        ]))
    })?;
    suite.step("unit and integration tests", || {
        exec::run(env.cargo().args([
            "test",
            "--workspace",
            "--exclude",
            "duplex-client",
            "--exclude",
            "duplex-e2e",
        ]))
    })?;
    suite.step("client unit tests (native)", || {
        exec::run(env.cargo().args(["test", "-p", "duplex-client"]))
    })?;
    suite.step(
        "protocol tests as the browser builds it (no default features)",
        || {
            exec::run(env.cargo().args([
                "test",
                "-p",
                "duplex-protocol",
                "--no-default-features",
                "--lib",
                "--tests",
            ]))
        },
    )?;
    suite.step("release bundle (trunk build)", || trunk_build(env))?;
    suite.step("browser tests (headless Chromium)", || {
        // One test at a time: each starts a server, chromedriver and Chromium, and two
        // cores running several browsers at once make timeouts flaky.
        exec::run(
            env.cargo()
                .args(["test", "-p", "duplex-e2e", "--", "--test-threads=1"])
                .env("DUPLEX_DIST", &dist)
                .env("CHROMEDRIVER", "/usr/bin/chromedriver")
                .env("CHROMIUM", "/usr/bin/chromium"),
        )
    })?;
    Ok(())
}

/// Timed, named steps, so a failure says which step it was and the end shows them all.
#[derive(Default)]
struct Suite {
    done: Vec<(String, Duration, bool)>,
}

impl Suite {
    fn step(&mut self, name: &str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        let number = self.done.len() + 1;
        eprintln!("\nxtask test: step {number}: {name}");
        let start = Instant::now();
        let result = f();
        self.done
            .push((name.to_owned(), start.elapsed(), result.is_ok()));
        result.with_context(|| format!("test step {number} ({name}) failed"))
    }

    fn print_summary(&self, passed: bool) {
        eprintln!("\nxtask test summary:");
        for (index, (name, elapsed, ok)) in self.done.iter().enumerate() {
            let mark = if *ok { "ok    " } else { "FAILED" };
            eprintln!(
                "  {mark} {:>2}. {name:<36} {:>7.1}s",
                index + 1,
                elapsed.as_secs_f64()
            );
        }
        let total: Duration = self.done.iter().map(|(_, elapsed, _)| *elapsed).sum();
        let verdict = if passed { "all passed" } else { "FAILED" };
        eprintln!("  {verdict} in {:.0}s", total.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse_args(args(&[])).ok(), Some(Task::Help));
        assert_eq!(parse_args(args(&["dist"])).ok(), Some(Task::Build));
        assert_eq!(
            parse_args(args(&["setup", "--test"])).ok(),
            Some(Task::Setup(Scope::Test))
        );
        assert_eq!(
            parse_args(args(&["run", "--", "--listen", "0.0.0.0:80"])).ok(),
            Some(Task::Run(args(&["--listen", "0.0.0.0:80"])))
        );
        assert_eq!(
            parse_args(args(&["dev", "--verbose"])).ok(),
            Some(Task::Dev(args(&["--verbose"])))
        );
        assert!(parse_args(args(&["test", "extra"])).is_err());
        assert!(bench_runs_client(&args(&["--quick", "--only", "client"])));
        assert!(bench_runs_client(&args(&["--servers", "duplex"])));
        assert!(!bench_runs_client(&args(&["--no-client"])));
        assert!(!bench_runs_client(&args(&["--only", "servers"])));
        assert!(!bench_runs_client(&args(&["--only=servers"])));
        assert!(!bench_runs_client(&args(&[
            "--only", "chaos", "--repeat", "1"
        ])));
        assert!(!bench_runs_client(&args(&["--only=chaos"])));
        assert!(bench_runs_client(&args(&["--only=client"])));
        assert!(bench_runs_client(&args(&["--no-chaos"])));
        assert!(parse_args(args(&["deploy"])).is_err());
        assert_eq!(
            parse_args(args(&["autobahn"])).ok(),
            Some(Task::Autobahn(autobahn::Options::default()))
        );
        assert_eq!(
            parse_args(args(&[
                "autobahn",
                "--peer",
                "tungstenite",
                "--cases=6.*,7.1.6"
            ]))
            .ok(),
            Some(Task::Autobahn(autobahn::Options {
                peer: autobahn::Peer::Tungstenite,
                cases: vec!["6.*".into(), "7.1.6".into()],
            }))
        );
        assert!(parse_args(args(&["autobahn", "--peer", "ws"])).is_err());
        assert!(parse_args(args(&["autobahn", "--cases"])).is_err());
    }
}
