//! Installs the tools the other commands need, each only when missing.
//!
//! Every tool is probed with `--version` first (a machine may be handed over with them in
//! place), and each check prints one progress line. The measured reasons behind each
//! install command are in the project's toolchain notes; the short ones are repeated here.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::exec::{self, Env, probe};
use crate::lockfile;

const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// binaryen from npm. Debian's wasm-opt (108) and the `wasm-opt` crate (116) both fail on
/// current rustc/wasm-bindgen output (`table.fill`); 132 is the first version seen working.
const BINARYEN_VERSION: &str = "132.0.0";
const MIN_WASM_OPT: u32 = 132;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The cluster tests start their own Redis on loopback (Debian's package).
const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// And nginx in front of a cluster, as the README's recipe (Debian's package).
const NGINX: &str = "/usr/sbin/nginx";
/// The TLS recipe's test makes its self-signed certificate with it.
const OPENSSL: &str = "/usr/bin/openssl";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// npm packages the tests need, installed into `<root>/.tools` beside binaryen:
/// `(name, exact version)`. None yet; `npm_packages` installs whatever is listed here.
const TEST_NPM_PACKAGES: &[(&str, &str)] = &[];

/// Folders of the workspace with their own `package.json` whose `node_modules` the tests
/// use: `interop/` holds the official Socket.IO server and client for the server's
/// interop tests.
const TEST_NPM_PROJECTS: &[&str] = &["interop"];

/// What to install.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// What `build`, `run` and `dev` need: the wasm target, trunk, wasm-bindgen, wasm-opt.
    Build,
    /// Also what `test` needs: rustfmt, clippy, Chromium, chromedriver, the npm packages
    /// of the interop tests.
    Test,
}

pub fn setup(env: &Env, scope: Scope) -> Result<()> {
    if scope == Scope::Test {
        rust_component(env, "rustfmt", "fmt")?;
        rust_component(env, "clippy", "clippy")?;
    }
    wasm_target(env)?;
    trunk(env)?;
    wasm_bindgen_cli(env)?;
    wasm_opt(env)?;
    if scope == Scope::Test {
        browser(env)?;
        cluster_services(env)?;
        npm_packages(env, TEST_NPM_PACKAGES)?;
        for project in TEST_NPM_PROJECTS {
            npm_project(env, project)?;
        }
    }
    Ok(())
}

fn progress(tool: &str, state: &str) {
    eprintln!("xtask setup: {tool:<22} {state}");
}

/// `cargo <subcommand>` from a rustup component (`rustfmt` gives `cargo fmt`).
pub fn rust_component(env: &Env, component: &str, subcommand: &str) -> Result<()> {
    if let Some(version) = probe(env.cargo().args([subcommand, "--version"])) {
        progress(component, &format!("ok ({version})"));
        return Ok(());
    }
    progress(component, "missing, installing");
    exec::run(env.command("rustup").args(["component", "add", component]))
}

fn wasm_target(env: &Env) -> Result<()> {
    let installed = match probe(
        env.command("rustup")
            .args(["target", "list", "--installed"]),
    ) {
        Some(list) => list.lines().any(|line| line.trim() == WASM_TARGET),
        // No rustup (a distribution's Rust): look in the sysroot instead.
        None => probe(env.command("rustc").args(["--print", "sysroot"])).is_some_and(|sysroot| {
            Path::new(&sysroot)
                .join("lib/rustlib")
                .join(WASM_TARGET)
                .is_dir()
        }),
    };
    if installed {
        progress(WASM_TARGET, "ok");
        return Ok(());
    }
    progress(WASM_TARGET, "missing, installing");
    exec::run(env.command("rustup").args(["target", "add", WASM_TARGET]))
}

fn trunk(env: &Env) -> Result<()> {
    if let Some(version) = probe(env.command("trunk").arg("--version")) {
        progress("trunk", &format!("ok ({version})"));
        return Ok(());
    }
    // trunk 0.22 declares a newer rust-version than this toolchain but builds fine on it.
    progress("trunk", "missing, installing (about 10 min on 2 cores)");
    exec::run(
        env.cargo()
            .args(["install", "trunk", "--locked", "--ignore-rust-version"]),
    )
}

/// The wasm-bindgen CLI must be exactly the version the client links, or trunk tries to
/// download one (and there is no internet here).
fn wasm_bindgen_cli(env: &Env) -> Result<()> {
    let wanted = lockfile::locked_version(&env.root, "wasm-bindgen")?;
    let found = probe(env.command("wasm-bindgen").arg("--version"));
    if let Some(found) = &found
        && found.split_whitespace().any(|word| word == wanted)
    {
        progress("wasm-bindgen", &format!("ok ({found})"));
        return Ok(());
    }
    let state = match found {
        Some(other) => format!("is `{other}`, Cargo.lock wants {wanted}; installing"),
        None => format!("missing, installing {wanted} (about 3 min)"),
    };
    progress("wasm-bindgen", &state);
    // Not `--locked`: the CLI's lock file names a dependency version the registry lacks.
    exec::run(
        env.cargo()
            .args(["install", "wasm-bindgen-cli", "--version", wanted.as_str()]),
    )?;
    match probe(env.command("wasm-bindgen").arg("--version")) {
        Some(found) if found.split_whitespace().any(|word| word == wanted) => Ok(()),
        other => bail!(
            "installed wasm-bindgen-cli {wanted}, but `wasm-bindgen --version` now says {other:?}: \
             is another wasm-bindgen earlier on PATH?"
        ),
    }
}

fn wasm_opt(env: &Env) -> Result<()> {
    let wasm_opt = env.tools_bin().join("wasm-opt");
    let found = probe(env.command(&wasm_opt).arg("--version"));
    if let Some(found) = &found
        && wasm_opt_version(found).is_some_and(|v| v >= MIN_WASM_OPT)
    {
        progress("wasm-opt", &format!("ok ({found})"));
        return Ok(());
    }
    progress(
        "wasm-opt",
        &format!("missing, installing binaryen {BINARYEN_VERSION} from npm"),
    );
    npm_install(env, "binaryen", BINARYEN_VERSION)?;
    match probe(env.command(&wasm_opt).arg("--version")) {
        Some(found) if wasm_opt_version(&found).is_some_and(|v| v >= MIN_WASM_OPT) => Ok(()),
        other => bail!(
            "installed binaryen {BINARYEN_VERSION}, but `{} --version` says {other:?}",
            wasm_opt.display()
        ),
    }
}

/// The major version in `wasm-opt version 132 (version_132)`.
fn wasm_opt_version(output: &str) -> Option<u32> {
    let mut words = output.split_whitespace();
    words.find(|word| *word == "version")?;
    let number = words.next()?;
    let digits: String = number.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

fn browser(env: &Env) -> Result<()> {
    let chromium = Path::new(CHROMIUM);
    let chromedriver = Path::new(CHROMEDRIVER);
    if !(chromium.exists() && chromedriver.exists()) {
        progress(
            "chromium",
            "missing, installing chromium and chromium-driver",
        );
        apt_install(env, &["chromium", "chromium-driver"])?;
    }
    for path in [chromium, chromedriver] {
        let version = probe(env.command(path).arg("--version"))
            .with_context(|| format!("`{} --version` fails", path.display()))?;
        progress(
            path.file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default(),
            &format!("ok ({version})"),
        );
    }
    Ok(())
}

/// Redis and nginx, which the cluster and recipe tests start on loopback themselves, and
/// openssl, which makes the TLS recipe's certificate.
fn cluster_services(env: &Env) -> Result<()> {
    let server = Path::new(REDIS_SERVER);
    let nginx = Path::new(NGINX);
    if !server.exists() || !nginx.exists() || !Path::new(OPENSSL).exists() {
        progress(
            "redis-server",
            "missing redis-server, nginx or openssl, installing them",
        );
        apt_install(env, &["redis-server", "nginx", "openssl"])?;
    }
    let version = probe(env.command(server).arg("--version"))
        .with_context(|| format!("`{REDIS_SERVER} --version` fails"))?;
    progress("redis-server", &format!("ok ({version})"));
    // `nginx -v` prints its version on stderr: only its success is checked.
    probe(env.command(nginx).arg("-v")).with_context(|| format!("`{NGINX} -v` fails"))?;
    progress("nginx", "ok");
    Ok(())
}

/// Installs npm packages into `<root>/.tools` unless already there.
fn npm_packages(env: &Env, packages: &[(&str, &str)]) -> Result<()> {
    for &(name, version) in packages {
        let manifest = env
            .tools_dir()
            .join("node_modules")
            .join(name)
            .join("package.json");
        if manifest.exists() {
            progress(name, "ok");
            continue;
        }
        progress(name, &format!("missing, installing {version} from npm"));
        npm_install(env, name, version)?;
    }
    Ok(())
}

/// `npm ci` in `<root>/<project>` unless its `node_modules` is up to date: npm writes
/// `node_modules/.package-lock.json` at each install, so that file being newer than the
/// project's lock file means nothing changed since.
fn npm_project(env: &Env, project: &str) -> Result<()> {
    let dir = env.root.join(project);
    if !dir.join("package.json").is_file() {
        return Ok(());
    }
    let lock = dir.join("package-lock.json");
    let installed = dir.join("node_modules").join(".package-lock.json");
    let modified = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|meta| meta.modified())
            .ok()
    };
    let up_to_date = match (modified(&installed), modified(&lock)) {
        (Some(installed), Some(locked)) => installed >= locked,
        _ => false,
    };
    let label = format!("{project}/node_modules");
    if up_to_date {
        progress(&label, "ok");
        return Ok(());
    }
    ensure_npm(env)?;
    // `npm ci` installs exactly the lock file; without one, `npm install` writes it.
    let verb = if lock.is_file() { "ci" } else { "install" };
    progress(&label, &format!("missing or stale, running `npm {verb}`"));
    exec::run(
        env.command("npm")
            .arg(verb)
            .args(["--no-audit", "--no-fund"])
            .current_dir(&dir),
    )
}

fn ensure_npm(env: &Env) -> Result<()> {
    if probe(env.command("npm").arg("--version")).is_none() {
        progress("npm", "missing, installing");
        apt_install(env, &["npm"])?;
    }
    Ok(())
}

fn npm_install(env: &Env, name: &str, version: &str) -> Result<()> {
    ensure_npm(env)?;
    let prefix = env.tools_dir();
    std::fs::create_dir_all(&prefix)
        .with_context(|| format!("cannot create {}", prefix.display()))?;
    exec::run(
        env.command("npm")
            .arg("install")
            .arg("--prefix")
            .arg(&prefix)
            .args(["--no-audit", "--no-fund", "--save-exact"])
            .arg(format!("{name}@{version}")),
    )
}

/// `apt-get update` then `apt-get install -y`, through sudo when not root.
fn apt_install(env: &Env, packages: &[&str]) -> Result<()> {
    let root = probe(env.command("id").arg("-u")).is_some_and(|uid| uid == "0");
    let apt = |args: &[&str]| {
        let mut command = if root {
            env.command("apt-get")
        } else {
            let mut sudo = env.command("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    exec::run(&mut apt(&["update"]))?;
    let mut install = vec!["install", "-y"];
    install.extend_from_slice(packages);
    exec::run(&mut apt(&install))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wasm_opt_versions() {
        assert_eq!(
            wasm_opt_version("wasm-opt version 132 (version_132)"),
            Some(132)
        );
        assert_eq!(wasm_opt_version("wasm-opt version 108"), Some(108));
        assert_eq!(wasm_opt_version("wasm-opt version 116.0.0"), Some(116));
        assert_eq!(wasm_opt_version("wasm-opt"), None);
    }
}
