//! The Node side of a chaos run, shared by the chaos tests (`tests/chaos.rs`) and the
//! chaos section of duplex-loadgen's bench: the phases of the proxy's cuts around an
//! exchange ([`CutPhases`]), and running a script of `interop/` such as
//! `chaos-clients.mjs` while reading its output ([`run_script`]).
//!
//! - The cuts go on while the clients connect and while the items are published, then
//!   for at least 2 s more and until there were a minimum of them, at most 10 s
//!   ([`CUTS_AFTER_PUBLISHING`]); then the proxy only delays, so that the clients can
//!   settle. The script's `connected N clients ...` and `published` lines mark the
//!   phases (a caller that publishes itself marks them with [`CutPhases::connected`]
//!   and [`CutPhases::published`]).
//! - [`run_script`] runs `node <script> <args>` with its stdout and stderr read line by
//!   line by two threads, hands every line to the caller (who echoes or logs it: it
//!   prints nothing itself), keeps the `summary {json}` line and the `FAIL` and stderr
//!   lines, stops the proxy's cuts when the phases say so, and kills the script at its
//!   deadline. It is async, on the caller's tokio runtime (the tests `block_on` it).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{ChaosProxy, ChaosStats};

/// Once everything is published, cuts go on for at least the first of these (to hit the
/// reconnections and replays that follow) and until there were the minimum of cuts, for
/// at most the second.
pub const CUTS_AFTER_PUBLISHING: (Duration, Duration) =
    (Duration::from_secs(2), Duration::from_secs(10));

/// How long a script that closed its stdout and stderr may take to exit before it is
/// killed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// How often [`run_script`] looks at the phases and the deadline while the script is
/// quiet.
const TICK: Duration = Duration::from_millis(50);

/// The phases of an exchange as the proxy saw them: cuts go on while the clients connect
/// and while the items are published, and for a while after, to hit the reconnections
/// and replays; then, once there were enough, they stop so that the clients can settle.
/// Time and the cut count are parameters (no proxy, no clock), except in
/// [`tick`](Self::tick).
#[derive(Debug, Clone)]
pub struct CutPhases {
    min_cuts: u64,
    /// When every client had connected, and the cuts by then.
    connected: Option<(Instant, u64)>,
    /// When the last item was published, and the cuts by then.
    published: Option<(Instant, u64)>,
    /// The cuts when the proxy stopped cutting.
    stopped: Option<u64>,
}

/// What [`CutPhases::tick`] reports when it stopped the cuts.
#[derive(Debug, Clone, Copy)]
pub struct Stopped {
    /// The cuts when every client had connected (`None`: they never all did).
    pub connected: Option<u64>,
    /// The cuts when the last item was published.
    pub published: u64,
    /// The cuts when the proxy stopped cutting.
    pub cuts: u64,
    /// From the last item published to the stop.
    pub since_published: Duration,
    /// The proxy's, once it stopped cutting.
    pub stats: ChaosStats,
}

impl CutPhases {
    /// Cuts stop after publishing once there were `min_cuts` (and the minimum time).
    pub fn new(min_cuts: u64) -> Self {
        CutPhases {
            min_cuts,
            connected: None,
            published: None,
            stopped: None,
        }
    }

    /// Every client has connected (the first call counts).
    pub fn connected(&mut self, now: Instant, cuts: u64) {
        self.connected.get_or_insert((now, cuts));
    }

    /// The last item is published (the first call counts).
    pub fn published(&mut self, now: Instant, cuts: u64) {
        self.published.get_or_insert((now, cuts));
    }

    /// Notes a line of the script's output: `connected N clients ...` once they all
    /// have, `published` once the publisher is done.
    pub fn line(&mut self, line: &str, now: Instant, cuts: u64) {
        if line.starts_with("connected ") {
            self.connected(now, cuts);
        } else if line == "published" {
            self.published(now, cuts);
        }
    }

    /// Whether the cuts must stop now: after publishing, once both the minimum time
    /// and the minimum cuts are reached, or the maximum time, or when the proxy's
    /// budget ran out. True once.
    pub fn should_stop(&mut self, now: Instant, cuts: u64, still_cutting: bool) -> bool {
        let Some((published, _)) = self.published else {
            return false;
        };
        if self.stopped.is_some() {
            return false;
        }
        let since = now.saturating_duration_since(published);
        let enough = since >= CUTS_AFTER_PUBLISHING.0 && cuts >= self.min_cuts;
        if enough || since >= CUTS_AFTER_PUBLISHING.1 || !still_cutting {
            self.stopped = Some(cuts);
            return true;
        }
        false
    }

    /// Stops `proxy`'s cuts if [`should_stop`](Self::should_stop) says so now, and
    /// tells how many there were in each phase.
    pub fn tick(&mut self, proxy: &ChaosProxy) -> Option<Stopped> {
        let now = Instant::now();
        let cuts = proxy.stats().cuts();
        if !self.should_stop(now, cuts, proxy.is_cutting()) {
            return None;
        }
        proxy.stop_cutting();
        let (published_at, published) = self.published?;
        Some(Stopped {
            connected: self.connected.map(|(_, cuts)| cuts),
            published,
            cuts,
            since_published: now.saturating_duration_since(published_at),
            stats: proxy.stats(),
        })
    }

    /// The cuts while connecting, while publishing and after, out of `total`.
    pub fn split(&self, total: u64) -> (Option<u64>, Option<u64>, Option<u64>) {
        let connected = self.connected.map(|(_, cuts)| cuts);
        let published = self.published.map(|(_, cuts)| cuts);
        let connecting = connected;
        let publishing = match (connected, published) {
            (Some(c), Some(p)) => Some(p.saturating_sub(c)),
            _ => None,
        };
        let after = published.map(|p| self.stopped.unwrap_or(total).saturating_sub(p));
        (connecting, publishing, after)
    }
}

/// A Node script to run.
#[derive(Debug, Clone, Copy)]
pub struct Script<'a> {
    /// The `node` executable (`node`: found on `PATH`).
    pub node: &'a Path,
    /// The folder it runs in: `interop/`.
    pub dir: &'a Path,
    /// Its file there, e.g. `chaos-clients.mjs`.
    pub name: &'a str,
    pub args: &'a [String],
    /// It is killed if it runs longer.
    pub limit: Duration,
}

impl Script<'_> {
    /// `node <name> <args>`, for the output.
    pub fn command_line(&self) -> String {
        format!("node {} {}", self.name, self.args.join(" "))
    }
}

/// What [`run_script`] hands to its caller as the script runs.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A line of its stdout.
    Stdout(&'a str),
    /// A line of its stderr.
    Stderr(&'a str),
    /// The phases stopped the proxy's cuts.
    StoppedCutting(&'a Stopped),
}

/// How a script ended.
#[derive(Debug)]
pub struct ScriptOutcome {
    /// `None`: it was killed, having run past its limit (or not exited within 5 s of
    /// closing its output).
    pub status: Option<ExitStatus>,
    /// From its start until it exited or was killed.
    pub elapsed: Duration,
    /// The JSON of its (last) `summary` line.
    pub summary: Option<Value>,
    /// A `summary` line that was not JSON.
    pub summary_error: Option<anyhow::Error>,
    /// Its `FAIL` lines and its stderr lines (`stderr: ...`), in order.
    pub fail_lines: Vec<String>,
}

impl ScriptOutcome {
    /// It exited, and with success.
    pub fn success(&self) -> bool {
        self.status.is_some_and(|status| status.success())
    }

    /// Its exit status, or `killed after N s`.
    pub fn exit(&self) -> String {
        match self.status {
            Some(status) => status.to_string(),
            None => format!("killed after {:.0} s", self.elapsed.as_secs_f64()),
        }
    }
}

/// The JSON of a `summary {json}` line; `None` for any other line.
pub fn summary_line(line: &str) -> Option<Result<Value>> {
    let json = line.strip_prefix("summary ")?;
    Some(serde_json::from_str(json).context("the script's summary line is not JSON"))
}

/// A child process killed when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `script`, handing each line of its output to `on`; with `cuts`, notes the
/// phases from its lines and stops the proxy's cuts when they say so (`on` hears of
/// it too). An error only when it cannot be started or waited for: a script that
/// fails, prints no summary or is killed is told by the outcome.
pub async fn run_script(
    script: &Script<'_>,
    mut cuts: Option<(&ChaosProxy, &mut CutPhases)>,
    mut on: impl FnMut(Event<'_>),
) -> Result<ScriptOutcome> {
    let mut child = Command::new(script.node)
        .arg(script.name)
        .args(script.args)
        .current_dir(script.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start node {} (is Node.js installed?)", script.name))?;
    // A bounded channel: a reader thread waits while the loop below is behind.
    let (lines_tx, mut lines) = mpsc::channel::<(bool, String)>(1024);
    for (is_stderr, pipe) in [
        (
            false,
            Box::new(child.stdout.take().context("node's stdout")?) as Box<dyn Read + Send>,
        ),
        (
            true,
            Box::new(child.stderr.take().context("node's stderr")?) as Box<dyn Read + Send>,
        ),
    ] {
        let lines_tx = lines_tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if lines_tx.blocking_send((is_stderr, line)).is_err() {
                    break;
                }
            }
        });
    }
    drop(lines_tx);
    let mut child = Killed(child);
    let started = Instant::now();
    let mut outcome = ScriptOutcome {
        status: None,
        elapsed: Duration::ZERO,
        summary: None,
        summary_error: None,
        fail_lines: Vec::new(),
    };
    let mut killed = false;
    loop {
        match tokio::time::timeout(TICK, lines.recv()).await {
            Ok(Some((false, line))) => {
                on(Event::Stdout(&line));
                if let Some((proxy, phases)) = &mut cuts {
                    phases.line(&line, Instant::now(), proxy.stats().cuts());
                }
                if let Some(summary) = summary_line(&line) {
                    match summary {
                        Ok(summary) => outcome.summary = Some(summary),
                        Err(e) => outcome.summary_error = Some(e),
                    }
                } else if line.starts_with("FAIL") {
                    outcome.fail_lines.push(line);
                }
            }
            Ok(Some((true, line))) => {
                on(Event::Stderr(&line));
                outcome.fail_lines.push(format!("stderr: {line}"));
            }
            // Both pipes closed: the script is done.
            Ok(None) => break,
            Err(_) => {}
        }
        if let Some((proxy, phases)) = &mut cuts
            && let Some(stopped) = phases.tick(proxy)
        {
            on(Event::StoppedCutting(&stopped));
        }
        if started.elapsed() > script.limit {
            killed = true;
            break;
        }
    }
    // The pipes are closed, so it is exiting; it is killed if it has not within 5 s.
    let waited = Instant::now();
    outcome.status = loop {
        if killed {
            break None;
        }
        if let Some(status) = child.0.try_wait().context("waiting for node")? {
            break Some(status);
        }
        if waited.elapsed() > EXIT_GRACE {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    outcome.elapsed = started.elapsed();
    drop(child);
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_stop_after_the_minimum_time_and_cuts_or_the_maximum_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut phases = CutPhases::new(100);
        assert!(
            !phases.should_stop(t0 + s(60), 5000, true),
            "not before publishing"
        );
        phases.line("connected 50 clients at 900 ms (the last: ...)", t0, 30);
        phases.line("published 1000 items in 4000 ms", t0 + s(4), 60);
        assert!(
            !phases.should_stop(t0 + s(5), 5000, true),
            "the progress line is not the phase"
        );
        phases.line("published", t0 + s(5), 70);
        assert!(
            !phases.should_stop(t0 + s(6), 200, true),
            "under the minimum time"
        );
        assert!(
            !phases.should_stop(t0 + s(8), 99, true),
            "under the minimum cuts"
        );
        assert!(phases.should_stop(t0 + s(8), 100, true));
        assert!(!phases.should_stop(t0 + s(9), 150, true), "once");
        assert_eq!(phases.split(150), (Some(30), Some(40), Some(30)));

        let mut few = CutPhases::new(100);
        few.line("published", t0, 10);
        assert!(!few.should_stop(t0 + s(9), 20, true));
        assert!(few.should_stop(t0 + s(15), 20, true), "the maximum time");
        assert_eq!(few.split(25), (None, None, Some(10)));

        let mut spent = CutPhases::new(100);
        spent.line("published", t0, 2000);
        assert!(spent.should_stop(t0, 2000, false), "the budget ran out");
    }

    #[test]
    fn summary_lines_are_json_and_other_lines_are_not_summaries() {
        let summary = summary_line(r#"summary {"ok":true,"clients":2}"#)
            .expect("a summary line")
            .expect("valid");
        assert_eq!(summary["clients"], 2);
        assert!(summary_line("published").is_none());
        assert!(summary_line("FAIL client 3 ...").is_none());
        assert!(summary_line("summary {not json").is_some_and(|r| r.is_err()));
    }

    #[tokio::test]
    async fn a_script_s_lines_summary_and_failures_are_read() {
        let dir = std::env::temp_dir().join(format!("duplex-e2e-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary folder");
        let script = dir.join("lines.sh");
        std::fs::write(
            &script,
            "echo connected 2 clients\necho FAIL client 1\necho oops >&2\n\
             echo 'summary {\"ok\":false}'\nexit 3\n",
        )
        .expect("the script");
        let mut seen = Vec::new();
        let outcome = run_script(
            &Script {
                node: Path::new("sh"),
                dir: &dir,
                name: "lines.sh",
                args: &[],
                limit: Duration::from_secs(10),
            },
            None,
            |event| match event {
                Event::Stdout(line) => seen.push(line.to_owned()),
                Event::Stderr(line) => seen.push(format!("err {line}")),
                Event::StoppedCutting(_) => seen.push("stopped".to_owned()),
            },
        )
        .await
        .expect("runs");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(outcome.status.and_then(|s| s.code()), Some(3));
        assert!(!outcome.success());
        assert_eq!(outcome.summary, Some(serde_json::json!({ "ok": false })));
        // stdout and stderr are read apart: their lines may interleave either way.
        let mut fail_lines = outcome.fail_lines.clone();
        fail_lines.sort();
        assert_eq!(fail_lines, ["FAIL client 1", "stderr: oops"]);
        seen.sort();
        assert_eq!(
            seen,
            [
                "FAIL client 1",
                "connected 2 clients",
                "err oops",
                r#"summary {"ok":false}"#
            ]
        );
    }

    #[tokio::test]
    async fn a_script_past_its_limit_is_killed() {
        let outcome = run_script(
            &Script {
                node: Path::new("sleep"),
                dir: &std::env::temp_dir(),
                name: "30",
                args: &[],
                limit: Duration::from_millis(200),
            },
            None,
            |_| {},
        )
        .await
        .expect("runs");
        assert!(outcome.status.is_none());
        assert!(outcome.elapsed < Duration::from_secs(5));
        assert!(outcome.exit().starts_with("killed after"));
    }
}
