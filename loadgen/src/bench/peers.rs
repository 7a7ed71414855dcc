//! The servers under test: how each is built, started and spoken to.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::bare::Wire;
use crate::build;
use crate::child::ServerProcess;
use crate::conn::Dialect;
use crate::sys;

/// One of the servers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, serde::Serialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Server {
    /// The duplex server, release build.
    Duplex,
    /// Node's socket.io 4 (loadgen/peers/node-server.mjs).
    Node,
    /// socketioxide on axum (loadgen/peers/socketioxide-server).
    Socketioxide,
    /// A bare tokio-tungstenite WebSocket server with its own tiny wire: the
    /// ceiling of a WebSocket server.
    Bare,
    /// The same bare server answering in Socket.IO's wire format (no Socket.IO
    /// library): the generator works as for any Socket.IO server, so this is
    /// the best a Socket.IO server on tokio-tungstenite can do.
    BareSio,
}

impl Server {
    pub const ALL: [Server; 5] = [
        Server::Duplex,
        Server::Node,
        Server::Socketioxide,
        Server::Bare,
        Server::BareSio,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Server::Duplex => "duplex",
            Server::Node => "node",
            Server::Socketioxide => "socketioxide",
            Server::Bare => "bare",
            Server::BareSio => "bare-sio",
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            Server::Bare => Dialect::Bare,
            _ => Dialect::SocketIo,
        }
    }
}

/// How the servers are run.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub root: PathBuf,
    /// The bundle duplex serves (its release `dist/`).
    pub dist: PathBuf,
    pub no_build: bool,
    /// Keep duplex's connection state recovery on (the binary's default); off by
    /// default here, as in the peers.
    pub duplex_recovery: bool,
    /// The bare servers' WebSocket read buffer, in bytes.
    pub bare_read_buffer: usize,
}

/// A server that is ready to start, or why it is not.
#[derive(Debug, Clone)]
pub enum Prepared {
    Ready(Launch),
    Missing(String),
}

/// What starts one server.
#[derive(Debug, Clone)]
pub struct Launch {
    program: PathBuf,
    /// Arguments; `{port}` is replaced by the chosen port.
    args: Vec<String>,
    envs: Vec<(String, String)>,
}

impl Launch {
    /// The same server with `extra` arguments.
    pub fn with_args(mut self, extra: &[String]) -> Launch {
        self.args.extend_from_slice(extra);
        self
    }

    pub fn start(&self, server: Server, log: &Path) -> anyhow::Result<ServerProcess> {
        let port = sys::free_port()?;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = Command::new(&self.program);
        for arg in &self.args {
            cmd.arg(arg.replace("{port}", &port.to_string()));
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        ServerProcess::spawn(server.name(), cmd, addr, log)
    }
}

/// Builds `server` if needed and says how to start it.
pub fn prepare(server: Server, options: &PeerOptions) -> Prepared {
    let prepared = match server {
        Server::Duplex => prepare_duplex(options),
        Server::Node => prepare_node(options),
        Server::Socketioxide => prepare_socketioxide(options),
        Server::Bare => prepare_bare(options, Wire::Tiny),
        Server::BareSio => prepare_bare(options, Wire::SocketIo),
    };
    match prepared {
        Ok(launch) => Prepared::Ready(launch),
        Err(e) => Prepared::Missing(format!("{e:#}")),
    }
}

/// Builds `server` if needed and says how to start it for the chaos section: with
/// connection state recovery on (a 2 minute window in both) and the heartbeat
/// `ping_interval` / `ping_timeout`. Only duplex and the Node peer have recovery.
pub fn prepare_for_chaos(
    server: Server,
    options: &PeerOptions,
    ping_interval: Duration,
    ping_timeout: Duration,
) -> Prepared {
    let recovery_flag = match server {
        // On unless `--recovery-window 0`, which `duplex_recovery` leaves out.
        Server::Duplex => None,
        Server::Node => Some("--recovery"),
        Server::Socketioxide | Server::Bare | Server::BareSio => {
            return Prepared::Missing("no connection state recovery".to_owned());
        }
    };
    let options = PeerOptions {
        duplex_recovery: true,
        ..options.clone()
    };
    match prepare(server, &options) {
        Prepared::Ready(mut launch) => {
            launch.args.extend(recovery_flag.map(str::to_owned));
            // The same flags, in milliseconds, for both.
            launch.args.extend([
                "--ping-interval".to_owned(),
                ping_interval.as_millis().to_string(),
                "--ping-timeout".to_owned(),
                ping_timeout.as_millis().to_string(),
            ]);
            Prepared::Ready(launch)
        }
        missing => missing,
    }
}

fn prepare_duplex(options: &PeerOptions) -> anyhow::Result<Launch> {
    let root = &options.root;
    if !options.no_build {
        build::cargo(root, &["build", "--release", "-p", "duplex-server"])?;
    }
    let program = build::target_dir(root).join("release/duplex-server");
    anyhow::ensure!(program.is_file(), "no {}", program.display());
    let mut args = vec![
        "--addr".to_owned(),
        "127.0.0.1:{port}".to_owned(),
        "--dist".to_owned(),
        options.dist.display().to_string(),
    ];
    if !options.duplex_recovery {
        args.extend(["--recovery-window".to_owned(), "0".to_owned()]);
    }
    Ok(Launch {
        program,
        args,
        envs: quiet_rust_log(),
    })
}

/// `RUST_LOG=warn` unless the caller set RUST_LOG: the duplex app logs a line per
/// connection and per publish at info, which the peers do not do.
fn quiet_rust_log() -> Vec<(String, String)> {
    if std::env::var_os("RUST_LOG").is_some() {
        Vec::new()
    } else {
        vec![("RUST_LOG".to_owned(), "warn".to_owned())]
    }
}

fn prepare_node(options: &PeerOptions) -> anyhow::Result<Launch> {
    let peers = options.root.join("loadgen/peers");
    let node = which("node").context("node is not installed (apt-get install nodejs npm)")?;
    if !peers.join("node_modules/socket.io/package.json").is_file()
        || !peers
            .join("node_modules/@socket.io/redis-streams-adapter/package.json")
            .is_file()
    {
        anyhow::ensure!(
            !options.no_build,
            "socket.io is not installed: run `npm ci` in {}",
            peers.display()
        );
        let npm = which("npm").context("npm is not installed (apt-get install npm)")?;
        build::run(Command::new(npm).arg("ci").current_dir(&peers))
            .context("npm ci in loadgen/peers failed (the npm registry must be reachable)")?;
    }
    Ok(Launch {
        program: node,
        args: vec![
            peers.join("node-server.mjs").display().to_string(),
            "{port}".to_owned(),
        ],
        envs: vec![("NODE_ENV".to_owned(), "production".to_owned())],
    })
}

fn prepare_socketioxide(options: &PeerOptions) -> anyhow::Result<Launch> {
    let root = &options.root;
    let target = root.join("target/peers");
    if !options.no_build {
        let manifest = root.join("loadgen/peers/socketioxide-server/Cargo.toml");
        let manifest = manifest.display().to_string();
        let target = target.display().to_string();
        build::cargo(
            root,
            &[
                "build",
                "--release",
                "--manifest-path",
                &manifest,
                "--target-dir",
                &target,
            ],
        )
        .context("building the socketioxide peer failed (crates.io must be reachable)")?;
    }
    let program = target.join("release/socketioxide-server");
    anyhow::ensure!(program.is_file(), "no {}", program.display());
    Ok(Launch {
        program,
        args: vec!["{port}".to_owned()],
        envs: Vec::new(),
    })
}

fn prepare_bare(options: &PeerOptions, wire: Wire) -> anyhow::Result<Launch> {
    let program = std::env::current_exe().context("cannot find the loadgen binary")?;
    let wire = clap::ValueEnum::to_possible_value(&wire)
        .expect("every wire has a name")
        .get_name()
        .to_owned();
    let args = vec![
        "bare-server".to_owned(),
        "--addr".to_owned(),
        "127.0.0.1:{port}".to_owned(),
        "--wire".to_owned(),
        wire,
        "--read-buffer".to_owned(),
        options.bare_read_buffer.to_string(),
    ];
    Ok(Launch {
        program,
        args,
        envs: Vec::new(),
    })
}

/// The full path of `program` on PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}
