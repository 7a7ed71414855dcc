//! Browser tests for duplex: the real trunk bundle, served by the real server, driven in
//! headless Chromium through chromedriver. The tests are in `tests/`; this library is
//! their harness, in layers:
//!
//! - `webdriver`: chromedriver and headless Chromium through fantoccini, behind a small
//!   blocking API: the chromedriver process, sessions, elements, polling
//! - `server`: the duplex server on an ephemeral port, on a tokio runtime of its own (the
//!   `server` feature, on by default)
//! - `proxy`: a loopback proxy that can cut the page off, or refuse WebSocket upgrades
//!   (with the `server` feature too)
//! - `chaos`: a loopback proxy that delays, throttles and randomly cuts connections (FIN
//!   or RST), seeded, for the chaos tests of `tests/chaos.rs` and the bench's chaos
//!   section (the `chaos` feature, which `server` turns on; alone it needs no server);
//!   `chaos::script`: the phases of its cuts, and running `interop/chaos-clients.mjs`
//!   while reading its output, for both of them
//! - `deploy`: the README's deployment recipes' moving parts (`tests/recipes.rs`): the
//!   `duplex-server` binary as a child process, Debian's nginx on a recipe of `deploy/`
//!   rendered with a test's ports and paths, plain HTTP requests (with the `server`
//!   feature)
//!
//! Run them with `cargo xtask test`, which builds the bundle first and sets `DUPLEX_DIST`,
//! `CHROMEDRIVER` and `CHROMIUM`. The chaos tests of `tests/chaos.rs` need no browser and
//! no bundle, only Node.js and `npm ci` in `interop/`:
//! `cargo test -p duplex-e2e --test chaos -- --nocapture`.

#[cfg(feature = "chaos")]
pub mod chaos;
#[cfg(feature = "server")]
pub mod deploy;
#[cfg(feature = "server")]
pub mod proxy;
#[cfg(feature = "server")]
pub mod redis;
#[cfg(feature = "server")]
pub mod server;
pub mod webdriver;

use std::path::{Path, PathBuf};

#[cfg(feature = "chaos")]
pub use chaos::{ChaosConfig, ChaosProxy, ChaosStats};
#[cfg(feature = "server")]
pub use proxy::{Proxy, WebSockets};
#[cfg(feature = "server")]
pub use redis::RedisServer;
#[cfg(feature = "server")]
pub use server::TestServer;
pub use webdriver::{ChromeDriver, Element, Session};

/// The cargo target directory (`$CARGO_TARGET_DIR`, else `<workspace>/target`), where the
/// tests leave their screenshots.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e/ lives inside the workspace");
    match std::env::var_os("CARGO_TARGET_DIR") {
        // Relative to the workspace, where xtask runs cargo (tests run in e2e/).
        Some(dir) => workspace.join(dir),
        None => workspace.join("target"),
    }
}

/// Runs `test`; if it fails, saves a screenshot of `page` under [`target_dir`]
/// (`e2e-failure-<name>.png`) and names it in the error.
pub fn with_screenshot_on_failure<T>(
    page: &Session,
    name: &str,
    test: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    test().map_err(|error| {
        let path = target_dir().join(format!("e2e-failure-{name}.png"));
        match page.screenshot(&path) {
            Ok(()) => error.context(format!(
                "browser test `{name}` failed; screenshot of the page: {}",
                path.display()
            )),
            Err(shot) => error.context(format!(
                "browser test `{name}` failed; no screenshot either: {shot:#}"
            )),
        }
    })
}
