//! Building what the load generator runs: the duplex server, the peers.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// The repository's root (this crate's parent folder).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.to_owned(), Path::to_owned)
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to `root` when relative), else
/// `<root>/target`; where `cargo build --release` leaves the duplex server.
pub fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// Runs `cargo ARGS` in `dir` (the cargo that runs us, when cargo ran us).
pub fn cargo(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(Command::new(cargo).args(args).current_dir(dir))
}

/// Runs a command to completion, its output going to ours.
pub fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    anyhow::ensure!(status.success(), "{cmd:?} failed: {status}");
    Ok(())
}
