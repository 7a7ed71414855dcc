//! `cargo xtask autobahn`: the Autobahn|Testsuite's fuzzing client (RFC 6455
//! conformance) against an echo server built on the server's own WebSocket code
//! (`server/examples/ws_echo.rs`: `transport::ws` and `protocol::websocket`), or
//! on tokio-tungstenite for comparison (`--peer tungstenite`).
//!
//! The suite is a Python 2.7 program (PyPI `autobahntestsuite`): it is installed
//! with pinned versions into a virtualenv under `<target>/autobahn/venv`, made
//! once and remade when the pins change. The echo server listens on a free
//! loopback port and is stopped at the end, whatever happens. The report
//! (`<target>/autobahn/<peer>/reports/index.json`) is summed up per group of
//! cases; any FAILED case fails the command.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::exec::{self, Env, probe};

/// The virtualenv tool, run from a folder of its own by the Python 2.7 found:
/// the last release that runs on and creates Python 2.7 environments.
const VIRTUALENV: &str = "virtualenv==20.15.1";

/// The suite and everything it imports, pinned: the set pip resolves for
/// `autobahntestsuite` on Python 2.7 (Twisted 19.10 is the one it accepts, the
/// rest are the last releases for 2.7). `wsaccel` (autobahn's C UTF-8
/// validator and masking, built from source: it needs a C compiler) keeps the
/// 16 MiB cases of group 9 fast.
const REQUIREMENTS: &str = "\
autobahntestsuite==25.10.1
autobahn==0.10.9
Twisted==19.10.0
txaio==2.1.0
wsaccel==0.6.6
ujson==2.0.3
zope.interface==4.6.0
Automat==22.10.0
attrs==21.4.0
constantly==15.1.0
hyperlink==21.0.0
idna==2.10
incremental==16.10.1
PyHamcrest==1.10.1
typing==3.10.0.0
six==1.16.0
klein==17.10.0
Werkzeug==1.0.1
Jinja2==2.11.3
MarkupSafe==1.1.1
pyOpenSSL==19.1.0
cryptography==3.3.2
cffi==1.15.1
pycparser==2.21
enum34==1.1.10
ipaddress==1.0.23
service-identity==18.1.0
pyasn1==0.5.1
pyasn1-modules==0.3.0
unittest2==1.1.0
linecache2==1.0.0
traceback2==1.4.0
argparse==1.4.0
";

/// pip on Python 2.7 warns at every call that both are old (pip 19, pyenv's,
/// only hears `PYTHONWARNINGS`).
const QUIET_PIP: [(&str, &str); 3] = [
    ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
    ("PIP_NO_PYTHON_VERSION_WARNING", "1"),
    ("PYTHONWARNINGS", "ignore"),
];

/// The Python that `pyenv install` gets when no 2.7 is found.
const PYENV_VERSION: &str = "2.7.18";

/// Which echo server the suite talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `transport::ws` + `protocol::websocket`, the server's own.
    Duplex,
    /// tokio-tungstenite, the library the tests use as an independent client.
    Tungstenite,
}

impl Peer {
    pub fn parse(name: &str) -> Option<Peer> {
        match name {
            "duplex" => Some(Peer::Duplex),
            "tungstenite" => Some(Peer::Tungstenite),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Peer::Duplex => "duplex",
            Peer::Tungstenite => "tungstenite",
        }
    }
}

/// What `cargo xtask autobahn` runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub peer: Peer,
    /// The suite's case patterns (`*`, `6.*`, `7.1.6`).
    pub cases: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            peer: Peer::Duplex,
            cases: vec!["*".to_owned()],
        }
    }
}

pub fn autobahn(env: &Env, options: &Options) -> Result<()> {
    let start = Instant::now();
    let dir = env.target_dir().join("autobahn");
    let wstest = install_suite(env, &dir)?;
    exec::run(env.cargo().args([
        "build",
        "--release",
        "-p",
        "duplex-server",
        "--example",
        "ws_echo",
    ]))?;
    let binary = env
        .target_dir()
        .join("release")
        .join("examples")
        .join(format!("ws_echo{}", std::env::consts::EXE_SUFFIX));

    let peer = options.peer.name();
    let run_dir = dir.join(peer);
    let reports = run_dir.join("reports");
    if reports.exists() {
        // An earlier run's cases must not be read as this one's.
        fs::remove_dir_all(&reports)
            .with_context(|| format!("cannot remove {}", reports.display()))?;
    }
    fs::create_dir_all(&run_dir).with_context(|| format!("cannot create {}", run_dir.display()))?;

    let suite_start = Instant::now();
    {
        let server = EchoServer::start(&binary, options.peer)?;
        let spec = run_dir.join("spec.json");
        fs::write(
            &spec,
            spec_json(peer, &server.addr, &reports, &options.cases),
        )
        .with_context(|| format!("cannot write {}", spec.display()))?;
        let log_path = run_dir.join("wstest.log");
        let log = fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        eprintln!(
            "xtask autobahn: fuzzingclient against {peer} on ws://{} (log: {})",
            server.addr,
            log_path.display()
        );
        let mut command = Command::new(&wstest);
        command
            .args(["-m", "fuzzingclient", "-s"])
            .arg(&spec)
            .current_dir(&run_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the log file")?)
            .stderr(log);
        if let Err(error) = exec::run(&mut command) {
            print_tail(&log_path, 15);
            return Err(error.context(format!("see {}", log_path.display())));
        }
        // The server is stopped here, as it is when anything above fails.
    }
    let suite_time = suite_start.elapsed();

    let index = reports.join("index.json");
    let text =
        fs::read_to_string(&index).with_context(|| format!("cannot read {}", index.display()))?;
    let cases = parse_report(&text, peer)?;
    let summary = Summary::of(&cases);
    println!(
        "\nAutobahn|Testsuite fuzzingclient against {peer}: {} cases in {:.0} s ({:.0} s in all)\n",
        cases.len(),
        suite_time.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    print!("{summary}");
    println!("\nreport: {}", reports.join("index.html").display());
    if summary.failed > 0 {
        bail!("{} case(s) FAILED against {peer}", summary.failed);
    }
    Ok(())
}

/// The last `lines` lines of the file at `path`, on stderr (nothing if it
/// cannot be read: the caller's error names the file).
fn print_tail(path: &Path, lines: usize) {
    if let Ok(text) = fs::read_to_string(path) {
        let all: Vec<&str> = text.lines().collect();
        for line in &all[all.len().saturating_sub(lines)..] {
            eprintln!("  | {line}");
        }
    }
}

/// The suite's virtualenv, made (or remade, when [`REQUIREMENTS`] changed) with
/// a Python 2.7: virtualenv into a folder of its own first, then the suite
/// into a fresh environment. Returns the `wstest` program.
fn install_suite(env: &Env, dir: &Path) -> Result<PathBuf> {
    let venv = dir.join("venv");
    let wstest = venv.join("bin").join("wstest");
    // Written last: its presence says the install finished with these pins.
    let stamp = venv.join("duplex-requirements.txt");
    if wstest.is_file() && fs::read_to_string(&stamp).is_ok_and(|pins| pins == REQUIREMENTS) {
        eprintln!("xtask autobahn: suite installed ({})", venv.display());
        return Ok(wstest);
    }
    let python = python27(env)?;
    eprintln!(
        "xtask autobahn: installing the suite into {} with {}",
        venv.display(),
        python.display()
    );
    if venv.exists() {
        fs::remove_dir_all(&venv).with_context(|| format!("cannot remove {}", venv.display()))?;
    }
    let bootstrap = dir.join("virtualenv");
    exec::run(
        Command::new(&python)
            .args(["-m", "pip", "install", "--quiet", "--upgrade", "--target"])
            .arg(&bootstrap)
            .arg(VIRTUALENV)
            .envs(QUIET_PIP),
    )?;
    exec::run(
        Command::new(&python)
            .args(["-m", "virtualenv", "--quiet"])
            .arg(&venv)
            .env("PYTHONPATH", &bootstrap),
    )?;
    let requirements = dir.join("requirements.txt");
    fs::write(&requirements, REQUIREMENTS)
        .with_context(|| format!("cannot write {}", requirements.display()))?;
    exec::run(
        Command::new(venv.join("bin").join("pip"))
            .args(["install", "--quiet", "-r"])
            .arg(&requirements)
            .envs(QUIET_PIP),
    )?;
    fs::write(&stamp, REQUIREMENTS).with_context(|| format!("cannot write {}", stamp.display()))?;
    Ok(wstest)
}

/// A Python 2.7: `$AUTOBAHN_PYTHON`, else `python2.7` on the `PATH`, else the
/// newest 2.7 pyenv has, else one `pyenv install` builds.
fn python27(env: &Env) -> Result<PathBuf> {
    let is_27 = |python: &Path| {
        probe(Command::new(python).args([
            "-c",
            "import sys; sys.stdout.write('%d.%d' % sys.version_info[:2])",
        ]))
        .is_some_and(|version| version == "2.7")
    };
    if let Some(python) = std::env::var_os("AUTOBAHN_PYTHON") {
        let python = PathBuf::from(python);
        if !is_27(&python) {
            bail!("AUTOBAHN_PYTHON={} is not a Python 2.7", python.display());
        }
        return Ok(python);
    }
    let on_path = PathBuf::from("python2.7");
    if is_27(&on_path) {
        return Ok(on_path);
    }
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".pyenv")));
    let installed = |root: &Path| -> Option<PathBuf> {
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir(root.join("versions"))
            .ok()?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let name = entry.file_name().into_string().ok()?;
                let patch = name.strip_prefix("2.7.")?.parse().ok()?;
                Some((patch, entry.path().join("bin").join("python")))
            })
            .collect();
        versions.sort();
        versions
            .into_iter()
            .map(|(_, python)| python)
            .rfind(|python| is_27(python))
    };
    if let Some(python) = pyenv_root.as_deref().and_then(installed) {
        return Ok(python);
    }
    if probe(env.command("pyenv").arg("--version")).is_some() {
        eprintln!("xtask autobahn: no Python 2.7 found, building {PYENV_VERSION} with pyenv");
        exec::run(
            env.command("pyenv")
                .args(["install", "--skip-existing", PYENV_VERSION]),
        )?;
        if let Some(python) = probe(env.command("pyenv").args(["root"]))
            .map(PathBuf::from)
            .and_then(|root| installed(&root))
        {
            return Ok(python);
        }
    }
    bail!(
        "the Autobahn|Testsuite needs Python 2.7: install pyenv (or put python2.7 on the PATH), \
         or point AUTOBAHN_PYTHON at one"
    )
}

/// The echo server, killed when dropped.
struct EchoServer {
    child: Child,
    /// Held open: the server also stops when it reaches its end (when we exit
    /// without dropping this, killed).
    _stdin: Option<ChildStdin>,
    addr: String,
}

impl EchoServer {
    /// Starts `binary` on a free loopback port and waits for the line that says
    /// which one.
    fn start(binary: &Path, peer: Peer) -> Result<EchoServer> {
        let mut child = Command::new(binary)
            .args(["--peer", peer.name(), "--addr", "127.0.0.1:0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let mut server = EchoServer {
            child,
            _stdin: stdin,
            addr: String::new(),
        };
        let mut line = String::new();
        if let Some(stdout) = stdout {
            BufReader::new(stdout)
                .read_line(&mut line)
                .context("cannot read the echo server's address")?;
        }
        server.addr = line
            .trim()
            .strip_prefix("listening on ")
            .with_context(|| format!("the echo server did not start (it said {line:?})"))?
            .to_owned();
        Ok(server)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // Fails only if it has exited already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fuzzing client's spec: every case in `cases` against `agent` at `addr`,
/// reports into `outdir`. `failByDrop: false` is the fuzzer's own default
/// (a peer that drops the TCP connection after a proper close is not failed).
fn spec_json(agent: &str, addr: &str, outdir: &Path, cases: &[String]) -> String {
    let spec = json!({
        "options": { "failByDrop": false },
        "outdir": outdir,
        "servers": [{ "agent": agent, "url": format!("ws://{addr}") }],
        "cases": cases,
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    format!("{spec:#}\n")
}

/// How a case went, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Informational,
    Unimplemented,
    NonStrict,
    Failed,
}

impl Verdict {
    const ALL: [Verdict; 5] = [
        Verdict::Ok,
        Verdict::NonStrict,
        Verdict::Informational,
        Verdict::Unimplemented,
        Verdict::Failed,
    ];

    fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "OK",
            Verdict::NonStrict => "NON-STRICT",
            Verdict::Informational => "INFORMATIONAL",
            Verdict::Unimplemented => "UNIMPLEMENTED",
            Verdict::Failed => "FAILED",
        }
    }

    /// The suite's behaviour strings; anything else (the closing handshake's
    /// `WRONG CODE`, `UNCLEAN`, `FAILED BY CLIENT`, or a string this does not
    /// know) is a failure.
    fn of(behavior: &str) -> Verdict {
        match behavior {
            "OK" => Verdict::Ok,
            "NON-STRICT" => Verdict::NonStrict,
            "INFORMATIONAL" => Verdict::Informational,
            "UNIMPLEMENTED" => Verdict::Unimplemented,
            _ => Verdict::Failed,
        }
    }
}

/// One case of the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// `6.4.3`.
    pub id: String,
    /// The suite's verdict on the messages exchanged.
    pub behavior: String,
    /// Its verdict on the closing handshake.
    pub behavior_close: String,
    /// The close code the peer sent, if it sent one.
    pub close_code: Option<u64>,
}

impl Case {
    /// The worse of the two verdicts: a case whose messages were right but
    /// whose close was not (wrong code, not clean) fails too.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(&self.behavior).max(Verdict::of(&self.behavior_close))
    }

    /// The case's group: `6` for `6.4.3`.
    pub fn group(&self) -> u32 {
        self.numbers().first().copied().unwrap_or(0)
    }

    /// `6.4.10` as `[6, 4, 10]`, to sort numerically.
    fn numbers(&self) -> Vec<u32> {
        self.id.split('.').map(|n| n.parse().unwrap_or(0)).collect()
    }
}

/// The cases of `agent` in the suite's `index.json`, in numeric order.
pub fn parse_report(json: &str, agent: &str) -> Result<Vec<Case>> {
    let index: Value = serde_json::from_str(json).context("the report is not JSON")?;
    let cases = index
        .get(agent)
        .and_then(Value::as_object)
        .with_context(|| format!("the report has no cases for {agent:?}"))?;
    let mut parsed = Vec::with_capacity(cases.len());
    for (id, case) in cases {
        let field = |name: &str| -> Result<String> {
            case.get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("case {id} has no {name:?}"))
        };
        parsed.push(Case {
            id: id.clone(),
            behavior: field("behavior")?,
            behavior_close: field("behaviorClose")?,
            close_code: case.get("remoteCloseCode").and_then(Value::as_u64),
        });
    }
    if parsed.is_empty() {
        bail!("the report has no cases for {agent:?}");
    }
    parsed.sort_by_key(Case::numbers);
    Ok(parsed)
}

/// The suite's names for its groups.
fn group_name(group: u32) -> &'static str {
    match group {
        1 => "Framing",
        2 => "Pings/Pongs",
        3 => "Reserved Bits",
        4 => "Opcodes",
        5 => "Fragmentation",
        6 => "UTF-8 Handling",
        7 => "Close Handling",
        9 => "Limits/Performance",
        10 => "Misc",
        12 => "Compression (payloads)",
        13 => "Compression (parameters)",
        _ => "",
    }
}

/// Counts per group and verdict, and the cases that were not OK.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// group → counts in the order of [`Verdict::ALL`].
    groups: BTreeMap<u32, [usize; 5]>,
    not_ok: Vec<Case>,
    pub failed: usize,
}

impl Summary {
    pub fn of(cases: &[Case]) -> Summary {
        let mut summary = Summary::default();
        for case in cases {
            let verdict = case.verdict();
            let column = Verdict::ALL
                .iter()
                .position(|v| *v == verdict)
                .expect("every verdict is in ALL");
            summary.groups.entry(case.group()).or_default()[column] += 1;
            if verdict == Verdict::Failed {
                summary.failed += 1;
            }
            if verdict != Verdict::Ok {
                summary.not_ok.push(case.clone());
            }
        }
        summary
    }

    fn totals(&self) -> [usize; 5] {
        let mut totals = [0; 5];
        for counts in self.groups.values() {
            for (total, count) in totals.iter_mut().zip(counts) {
                *total += count;
            }
        }
        totals
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let row = |f: &mut fmt::Formatter<'_>, label: &str, counts: &[usize; 5]| {
            write!(f, "{label:<31}")?;
            for (verdict, count) in Verdict::ALL.iter().zip(counts) {
                write!(f, " {count:>width$}", width = verdict.label().len().max(5))?;
            }
            writeln!(f)
        };
        write!(f, "{:<31}", "group")?;
        for verdict in Verdict::ALL {
            write!(f, " {:>5}", verdict.label())?;
        }
        writeln!(f)?;
        for (group, counts) in &self.groups {
            row(f, &format!("{group:>2} {}", group_name(*group)), counts)?;
        }
        row(f, "   all", &self.totals())?;
        // Groups 12 and 13 are permessage-deflate, which the server does not
        // offer: all UNIMPLEMENTED, listed by their count alone.
        let listed: Vec<&Case> = self
            .not_ok
            .iter()
            .filter(|case| case.verdict() != Verdict::Unimplemented)
            .collect();
        let unimplemented = self.not_ok.len() - listed.len();
        writeln!(f, "\nnot OK: {}", listed.len())?;
        for case in listed {
            let code = case
                .close_code
                .map_or_else(|| "none".to_owned(), |code| code.to_string());
            writeln!(
                f,
                "  {:<8} {:<13} close: {} (code {code})",
                case.id, case.behavior, case.behavior_close
            )?;
        }
        if unimplemented > 0 {
            writeln!(f, "  and {unimplemented} UNIMPLEMENTED (not listed)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the suite's `index.json`, cut down.
    const REPORT: &str = r#"{
        "duplex": {
            "1.1.1": {"behavior": "OK", "behaviorClose": "OK", "duration": 1,
                      "remoteCloseCode": 1000, "reportfile": "duplex_case_1_1_1.json"},
            "6.4.10": {"behavior": "OK", "behaviorClose": "OK", "remoteCloseCode": 1007},
            "6.4.3": {"behavior": "NON-STRICT", "behaviorClose": "OK", "remoteCloseCode": 1007},
            "7.1.6": {"behavior": "INFORMATIONAL", "behaviorClose": "INFORMATIONAL",
                      "remoteCloseCode": 1000},
            "7.9.1": {"behavior": "OK", "behaviorClose": "WRONG CODE", "remoteCloseCode": 1000},
            "12.1.1": {"behavior": "UNIMPLEMENTED", "behaviorClose": "OK",
                       "remoteCloseCode": null},
            "2.10": {"behavior": "FAILED", "behaviorClose": "OK", "remoteCloseCode": 1002}
        }
    }"#;

    #[test]
    fn report_cases_are_read_in_numeric_order() {
        let cases = parse_report(REPORT, "duplex").expect("a valid report");
        let ids: Vec<&str> = cases.iter().map(|case| case.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "1.1.1", "2.10", "6.4.3", "6.4.10", "7.1.6", "7.9.1", "12.1.1"
            ]
        );
        assert_eq!(cases[2].behavior, "NON-STRICT");
        assert_eq!(cases[2].close_code, Some(1007));
        assert_eq!(cases[6].close_code, None);
        assert!(
            parse_report(REPORT, "tungstenite").is_err(),
            "another agent"
        );
        assert!(parse_report("{}", "duplex").is_err());
        assert!(
            parse_report(r#"{"duplex": {}}"#, "duplex").is_err(),
            "no cases"
        );
        let missing = r#"{"duplex": {"1.1.1": {"behavior": "OK"}}}"#;
        assert!(parse_report(missing, "duplex").is_err(), "no behaviorClose");
    }

    #[test]
    fn failed_messages_or_a_failed_close_fail_the_run() {
        let cases = parse_report(REPORT, "duplex").expect("a valid report");
        let verdicts: Vec<Verdict> = cases.iter().map(Case::verdict).collect();
        assert_eq!(
            verdicts,
            [
                Verdict::Ok,
                Verdict::Failed,
                Verdict::NonStrict,
                Verdict::Ok,
                Verdict::Informational,
                Verdict::Failed,
                Verdict::Unimplemented,
            ]
        );
        let summary = Summary::of(&cases);
        assert_eq!(summary.failed, 2, "2.10 and 7.9.1's wrong close code");
        // OK, NON-STRICT, INFORMATIONAL, UNIMPLEMENTED, FAILED per group.
        assert_eq!(summary.groups[&6], [1, 1, 0, 0, 0]);
        assert_eq!(summary.groups[&7], [0, 0, 1, 0, 1]);
        assert_eq!(summary.groups[&12], [0, 0, 0, 1, 0]);
        assert_eq!(summary.totals(), [2, 1, 1, 1, 2]);
        let ids: Vec<&str> = summary.not_ok.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["2.10", "6.4.3", "7.1.6", "7.9.1", "12.1.1"]);

        let clean = parse_report(
            r#"{"duplex": {"1.1.1": {"behavior": "OK", "behaviorClose": "OK"},
                           "6.4.3": {"behavior": "NON-STRICT", "behaviorClose": "OK"}}}"#,
            "duplex",
        )
        .expect("a valid report");
        assert_eq!(Summary::of(&clean).failed, 0);
    }

    #[test]
    fn the_spec_names_the_peer_and_its_port() {
        let spec = spec_json(
            "duplex",
            "127.0.0.1:4321",
            Path::new("/tmp/reports"),
            &["*".to_owned()],
        );
        let spec: Value = serde_json::from_str(&spec).expect("JSON");
        assert_eq!(spec["servers"][0]["agent"], "duplex");
        assert_eq!(spec["servers"][0]["url"], "ws://127.0.0.1:4321");
        assert_eq!(spec["outdir"], "/tmp/reports");
        assert_eq!(spec["cases"], json!(["*"]));
    }
}
