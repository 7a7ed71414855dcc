//! The native client against the official Node `socket.io` 4 server running the
//! tutorial app (`interop/tutorial-server.mjs`), over WebSocket, long-polling, and
//! polling upgraded to WebSocket.
//!
//! Needs `node` on PATH and `interop/node_modules` (`cargo xtask test` runs
//! `npm ci` in `interop/`). Missing either fails the test: it never skips.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{Greeting, MODES};
use duplex_native::{Error, Options, connect};

/// The Node server, killed when dropped (and exiting on its own when our end of
/// its stdin closes, should this process die first).
struct NodeServer {
    child: Child,
    url: String,
}

impl NodeServer {
    fn start() -> NodeServer {
        let interop = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("interop");
        assert!(
            interop.join("node_modules").join("socket.io").is_dir(),
            "{} is missing: run `cargo xtask test` — it runs `npm ci` in interop/ \
             (or run `npm ci` in interop/ yourself)",
            interop.join("node_modules").display()
        );
        let mut child = Command::new("node")
            .arg("tutorial-server.mjs")
            .arg("0")
            .current_dir(&interop)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("could not run `node` (is Node.js on PATH?): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let port = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(port) = line.strip_prefix("listening ") {
                        break port.trim().parse::<u16>().expect("a port number");
                    }
                }
                other => {
                    let _ = child.kill();
                    panic!("the node server ended before listening: {other:?}");
                }
            }
        };
        // Keep draining its stdout (the tutorial's console.log) so it never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("[node] {line}");
            }
        });
        NodeServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn tutorial_echo_ack_and_binary_over_each_transport() {
    let server = NodeServer::start();
    for mode in MODES {
        common::tutorial_exchange(&server.url, mode, Greeting::NewsOnly).await;
    }
}

#[tokio::test]
async fn nothing_lost_or_reordered_across_the_upgrade() {
    let server = NodeServer::start();
    common::ordered_across_upgrade(&server.url, Greeting::NewsOnly, 100).await;
    common::concurrent_acks_during_upgrade(&server.url, Greeting::NewsOnly).await;
}

#[tokio::test]
async fn unknown_namespace_is_refused() {
    let server = NodeServer::start();
    for mode in MODES {
        let options = Options {
            transports: mode,
            namespace: "/nope".into(),
            ..Options::default()
        };
        match connect(&server.url, options).await {
            Err(Error::ConnectRefused(message)) => assert_eq!(message, "Invalid namespace"),
            other => panic!("expected a refusal over {mode:?}, got {other:?}"),
        }
    }
}
