//! The Yew page against the official Node `socket.io` 4 server: the bundle is
//! served by duplex, the page's socket points at the Node server on another port
//! (cross-origin, `?server=`), and the tutorial's exchange works.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use duplex_e2e::webdriver::{Check, poll_until};
use duplex_e2e::{ChromeDriver, TestServer};

const TIMEOUT: Duration = Duration::from_secs(30);

/// The Node tutorial server (`interop/tutorial-server.mjs`), killed on drop.
struct NodePeer {
    child: Child,
    port: u16,
}

impl NodePeer {
    fn start() -> Result<NodePeer> {
        let interop = Path::new(env!("CARGO_MANIFEST_DIR")).join("../interop");
        if !interop.join("node_modules/socket.io").is_dir() {
            bail!(
                "{} has no node_modules/socket.io: run `cargo xtask test` (it runs `npm ci` in interop/)",
                interop.display()
            );
        }
        let mut child = Command::new("node")
            .arg("tutorial-server.mjs")
            .current_dir(&interop)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting node (is Node.js installed?)")?;
        let stdout = child.stdout.take().context("node's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading node's first line")?;
        let port = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("expected `listening <port>` from node, got {line:?}"))?;
        Ok(NodePeer { child, port })
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn page_served_by_duplex_talks_to_the_node_server() -> Result<()> {
    let node = NodePeer::start()?;
    let server = TestServer::start()?;
    let driver = ChromeDriver::start()?;
    let page = driver.new_session()?;
    let url = format!("{}?server=http://127.0.0.1:{}", server.url(), node.port);
    page.goto(&url)?;
    page.wait_for_text("#status", |t| t.trim() == "connected", TIMEOUT)?;
    page.wait_for_text("#news", |t| t.contains("world"), TIMEOUT)?;
    // The Node server echoes `my other event` back: it shows in the log as `in`.
    let script = "return Array.from(document.querySelectorAll('#log li.entry')).map(e => \
        [e.dataset.dir, e.querySelector('.event').textContent, e.querySelector('.payload').textContent]);";
    let echoed = poll_until(TIMEOUT, "the echo of `my other event` from node", || {
        let entries = page.execute(script, vec![])?;
        let found = entries.as_array().into_iter().flatten().any(|e| {
            e[0] == "in"
                && e[1] == "my other event"
                && e[2]
                    .as_str()
                    .unwrap_or_default()
                    .replace(' ', "")
                    .contains(r#""my":"data""#)
        });
        Ok(if found {
            Check::Done(())
        } else {
            Check::Waiting(entries.to_string())
        })
    });
    if echoed.is_err() {
        let _ = page.screenshot(&duplex_e2e::target_dir().join("node-peer-failure.png"));
    }
    echoed?;
    page.delete()?;
    server.stop()
}
