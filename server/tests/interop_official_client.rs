//! Interop with the official JavaScript client: the real duplex server (the news &
//! echo app) in-process, and `socket.io-client` 4 with its default options
//! (long-polling first, then the upgrade to WebSocket) driven by
//! `interop/official-client.mjs` under Node.js. The script prints one line per
//! check and exits non-zero on the first failure or after 10 s.
//!
//! Needs `node` and `interop/node_modules` (`cargo xtask test` runs `npm ci` there).

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::TestServer;

/// The script stops itself after 10 s; this only guards against a hung `node`.
const NODE_DEADLINE: Duration = Duration::from_secs(60);

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the server crate lives in the workspace")
        .to_path_buf()
}

/// Reads a child's pipe to the end on its own thread.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

#[tokio::test]
async fn official_socket_io_client_4() {
    let root = workspace_root();
    let interop = root.join("interop");
    let script = interop.join("official-client.mjs");
    assert!(script.is_file(), "{} is missing", script.display());
    assert!(
        interop.join("node_modules/socket.io-client").is_dir(),
        "{} has no node_modules/socket.io-client: run `cargo xtask test`: it runs `npm ci` in \
         interop/ (or run `npm ci` in {} yourself)",
        interop.display(),
        interop.display()
    );

    let server = TestServer::default().await;
    let url = format!("http://{}", server.addr);
    let mut child = Command::new("node")
        .arg(&script)
        .arg(&url)
        .current_dir(&root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `node` ({e}): Node.js 18 or later is needed for the interop tests")
        });
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));

    // Wait without blocking the runtime: the server runs on this thread too.
    let deadline = tokio::time::Instant::now() + NODE_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for node") {
            break Some(status);
        }
        if tokio::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stdout = stdout.join().expect("stdout reader");
    let stderr = stderr.join().expect("stderr reader");
    let report = format!("--- stdout ---\n{stdout}--- stderr ---\n{stderr}");
    match status {
        Some(status) if status.success() => println!("{report}"),
        Some(status) => panic!("the official client failed against {url} ({status}):\n{report}"),
        None => panic!("the official client hung for {NODE_DEADLINE:?} and was killed:\n{report}"),
    }
    server.stop().await;
}
