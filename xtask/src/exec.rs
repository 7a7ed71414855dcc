//! Child processes: the workspace paths, the tool `PATH`, and running commands with
//! their command line echoed and their failures named.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// Where things are, and the environment every child process gets.
pub struct Env {
    /// The workspace root (the parent of xtask's own manifest directory).
    pub root: PathBuf,
    /// The cargo to run: `$CARGO` (set by `cargo run`, the exact cargo that started us), else `cargo`.
    cargo: OsString,
    /// `<root>/.tools/node_modules/.bin`, then `<cargo home>/bin`, then the inherited `PATH`.
    /// npm's binaryen comes first because trunk runs the first `wasm-opt` on `PATH`, and
    /// Debian's older one cannot read current rustc output.
    path: OsString,
}

impl Env {
    pub fn from_env() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .context("xtask's manifest directory has no parent")?
            .to_path_buf();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());

        let mut dirs = vec![tools_bin(&root), cargo_home().join("bin")];
        if let Some(inherited) = std::env::var_os("PATH") {
            dirs.extend(std::env::split_paths(&inherited));
        }
        let path = std::env::join_paths(dirs).context("a PATH entry contains ':'")?;
        Ok(Self { root, cargo, path })
    }

    /// `<root>/.tools`, where npm installs binaryen (and any test packages).
    pub fn tools_dir(&self) -> PathBuf {
        self.root.join(".tools")
    }

    /// `<root>/.tools/node_modules/.bin`.
    pub fn tools_bin(&self) -> PathBuf {
        tools_bin(&self.root)
    }

    /// The bundle trunk builds.
    pub fn dist(&self) -> PathBuf {
        self.root.join("dist")
    }

    /// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<root>/target`.
    pub fn target_dir(&self) -> PathBuf {
        match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => self.root.join(dir),
            None => self.root.join("target"),
        }
    }

    /// A command run in the workspace root with the tool `PATH`.
    ///
    /// std looks a relative program up in the `PATH` given to the command, so `trunk` and
    /// `wasm-bindgen` resolve through `~/.cargo/bin` even when the caller's `PATH` lacks it.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.current_dir(&self.root).env("PATH", &self.path);
        command
    }

    /// `cargo` with the tool `PATH`.
    pub fn cargo(&self) -> Command {
        self.command(&self.cargo)
    }
}

fn tools_bin(root: &Path) -> PathBuf {
    root.join(".tools").join("node_modules").join(".bin")
}

fn cargo_home() -> PathBuf {
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        return home.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".cargo")
}

/// Runs `command` with inherited stdio, echoing it first; a non-zero exit is an error.
pub fn run(command: &mut Command) -> Result<()> {
    let line = display(command);
    eprintln!("$ {line}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// The trimmed stdout of `command` if it starts and succeeds; `None` otherwise.
///
/// Used for `--version` probes, so a missing program is an answer, not an error.
pub fn probe(command: &mut Command) -> Option<String> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The command line as a shell user would type it (program name without its directory).
pub fn display(command: &Command) -> String {
    let program = Path::new(command.get_program())
        .file_name()
        .unwrap_or(command.get_program())
        .to_string_lossy()
        .into_owned();
    std::iter::once(program)
        .chain(command.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_drops_the_program_directory() {
        let mut command = Command::new("/usr/local/bin/cargo");
        command.args(["fmt", "--all", "--", "--check"]);
        assert_eq!(display(&command), "cargo fmt --all -- --check");
    }

    #[test]
    fn probe_reports_missing_programs_as_none() {
        assert_eq!(probe(&mut Command::new("xtask-no-such-program")), None);
    }
}
