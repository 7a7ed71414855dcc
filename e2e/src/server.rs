//! The real duplex server for a test: bound on `127.0.0.1:0`, serving the trunk bundle
//! named by `DUPLEX_DIST`, on a tokio runtime of its own.
//!
//! The runtime is owned here, not by the test, because the WebDriver client blocks: the
//! test thread talks to chromedriver while the server's tasks run on the runtime's workers.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::runtime::Runtime;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long `stop` waits for `run` to return: more than the server's own default grace
/// period for closing connections.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

const HOW_TO_RUN: &str = "run `cargo xtask test` (it builds the bundle)";

/// The bundle directory from `DUPLEX_DIST`; an error, never a skip, when it is not there.
pub fn dist_from_env() -> Result<PathBuf> {
    let Some(dist) = std::env::var_os("DUPLEX_DIST") else {
        bail!("DUPLEX_DIST is not set: {HOW_TO_RUN}");
    };
    let dist = PathBuf::from(dist);
    if !dist.join("index.html").is_file() {
        bail!(
            "DUPLEX_DIST={} has no index.html: {HOW_TO_RUN}",
            dist.display()
        );
    }
    Ok(dist)
}

/// A running server; dropping it shuts the server down.
pub struct TestServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
    runtime: Option<Runtime>,
}

impl TestServer {
    /// Starts the server on the bundle from `DUPLEX_DIST`, default settings otherwise.
    pub fn start() -> Result<Self> {
        let config = duplex_server::Config {
            dist: dist_from_env()?,
            ..Default::default()
        };
        Self::start_with(config)
    }

    /// Starts the server with `config` on an ephemeral port.
    pub fn start_with(config: duplex_server::Config) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("duplex-server")
            .enable_all()
            .build()
            .context("cannot build the server's tokio runtime")?;
        let listener = runtime
            .block_on(duplex_server::bind(SocketAddr::from(([127, 0, 0, 1], 0))))
            .context("cannot bind the server on 127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let task = runtime.spawn(duplex_server::run(listener, config, shutdown.clone()));
        Ok(Self {
            addr,
            shutdown,
            task: Some(task),
            runtime: Some(runtime),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits until `GET /readyz` answers 200 (in a cluster: connected to Redis).
    pub fn wait_ready(&self) -> Result<()> {
        use http_body_util::Empty;
        use hyper::body::Bytes;
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::TokioExecutor;

        let runtime = self.runtime.as_ref().context("the server has stopped")?;
        let uri: hyper::Uri = format!("http://{}/readyz", self.addr).parse()?;
        runtime.block_on(async {
            let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let status = client.get(uri.clone()).await.map(|r| r.status());
                if matches!(status, Ok(s) if s.is_success()) {
                    return Ok(());
                }
                if tokio::time::Instant::now() > deadline {
                    bail!("{uri} is not ready after 10 s (last: {status:?})");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }

    /// The page's address, e.g. `http://127.0.0.1:41234/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    /// Shuts the server down gracefully and reports how `run` ended.
    pub fn stop(mut self) -> Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<()> {
        self.shutdown.cancel();
        let (Some(task), Some(runtime)) = (self.task.take(), self.runtime.take()) else {
            return Ok(());
        };
        let outcome =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), task).await });
        // Whatever is left (connections still closing) is dropped without waiting long.
        runtime.shutdown_timeout(Duration::from_secs(1));
        match outcome {
            Err(_elapsed) => {
                bail!("the server did not shut down within {STOP_TIMEOUT:?} of cancellation")
            }
            Ok(Err(join_error)) => bail!("the server task failed: {join_error}"),
            Ok(Ok(Err(io_error))) => Err(io_error).context("the server's run returned an error"),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Err(error) = self.stop_inner() {
            eprintln!("duplex-e2e: {error:#}");
        }
    }
}
