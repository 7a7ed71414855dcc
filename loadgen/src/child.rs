//! A server under test, run as a child process: started on a port we chose,
//! waited for until it accepts, watched through `/proc`, killed when dropped.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::task::JoinHandle;

use crate::sys;

/// A running server. Dropping it kills the process (so an error or a panic in
/// the generator never leaves a server behind).
#[derive(Debug)]
pub struct ServerProcess {
    name: String,
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `cmd` (which must make the server listen on `addr`), its output going
    /// to `log`. Its stdin is a pipe we hold: a server that exits when stdin closes
    /// (the Node peer) also goes away if the generator is killed outright.
    pub fn spawn(
        name: &str,
        mut cmd: Command,
        addr: SocketAddr,
        log: &Path,
    ) -> anyhow::Result<Self> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        cmd.stdin(Stdio::piped()).stdout(out).stderr(err);
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}: {cmd:?}"))?;
        Ok(ServerProcess {
            name: name.to_owned(),
            child,
            addr,
            log: log.to_owned(),
        })
    }

    /// Waits until the server accepts TCP connections on its address.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "{} exited ({status}) before listening on {}; its output is in {}",
                    self.name,
                    self.addr,
                    self.log.display()
                );
            }
            if tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "{} does not listen on {} after {timeout:?}; its output is in {}",
                self.name,
                self.addr,
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the server has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            Some(status) => anyhow::bail!(
                "{} exited ({status}); its output is in {}",
                self.name,
                self.log.display()
            ),
            None => Ok(()),
        }
    }

    pub fn rss_kib(&self) -> anyhow::Result<u64> {
        sys::rss_kib(self.pid())
    }

    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        sys::cpu_time(Some(self.pid()))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // SIGKILL: nothing the server does at shutdown is being measured.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Samples a process's RSS every `period` in the background and keeps the peak.
#[derive(Debug)]
pub struct RssSampler {
    peak: Arc<Mutex<u64>>,
    task: JoinHandle<()>,
}

impl RssSampler {
    pub fn start(pid: u32, period: Duration) -> Self {
        // A std Mutex: held for one comparison, never across an await.
        let peak = Arc::new(Mutex::new(0));
        let shared = Arc::clone(&peak);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Ok(rss) = sys::rss_kib(pid) else { return };
                let mut peak = shared.lock().expect("no panic while holding the lock");
                *peak = (*peak).max(rss);
            }
        });
        RssSampler { peak, task }
    }

    /// The highest RSS seen so far, in KiB, with `now` (a sample taken by the
    /// caller) included.
    pub fn peak_with(&self, now: u64) -> u64 {
        let mut peak = self.peak.lock().expect("no panic while holding the lock");
        *peak = (*peak).max(now);
        *peak
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}
