//! Building the wallet (`wallet-ui/`, a Leptos page) with Trunk into `target/wallet-ui`,
//! which the host embeds and serves at `/wallet/`, and the browser the wallet's tests drive.
//!
//! Offline by design: Trunk and wasm-bindgen-cli are pinned and installed with cargo when
//! missing (Trunk from its own lock file; wasm-bindgen-cli without one, as its lock names a
//! version the registry here does not serve), wasm-bindgen is found on `PATH` at exactly the
//! version `wallet-ui/Cargo.lock` resolves, wasm-opt is off, and `trunk build --offline` only
//! runs after `cargo fetch` has the crates.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};

use super::{cargo_bin, is_root, run, step};

/// The Trunk release the wallet is built with (0.22 needs a newer rustc).
const TRUNK_VERSION: &str = "0.21.14";
/// The wasm-bindgen CLI, equal to the `wasm-bindgen` crate version `wallet-ui/Cargo.lock`
/// resolves (Trunk.toml's `[tools] wasm_bindgen` says the same).
const WASM_BINDGEN_VERSION: &str = "0.2.130";
/// The wallet's target (installed with the providers', which is the same).
pub const TARGET: &str = "wasm32-unknown-unknown";
/// Where the browser tests find Chromium (Debian's package).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Where `cargo install` puts binaries.
fn cargo_bin_dir() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
        .join("bin")
}

/// Whether `bin --version` prints `version` as its second word.
fn has_version(bin: &Path, version: &str) -> bool {
    Command::new(bin).arg("--version").output().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .nth(1)
            .is_some_and(|v| v.trim_start_matches('v') == version)
    })
}

/// Installs `krate` at `version` unless `bin` already is that version; returns the binary.
fn ensure_tool(krate: &str, bin: &str, version: &str, locked: bool) -> Result<PathBuf> {
    let path = cargo_bin_dir().join(bin);
    if has_version(&path, version) {
        return Ok(path);
    }
    step(&format!(
        "installing {krate} {version} (cargo install; once)"
    ));
    let exact = format!("={version}");
    let mut cmd = Command::new(cargo_bin());
    cmd.args(["install", krate, "--version", &exact]);
    if locked {
        cmd.arg("--locked");
    }
    run(&mut cmd).with_context(|| format!("could not install {krate} {version}"))?;
    ensure!(
        has_version(&path, version),
        "{} is not {krate} {version} after installing it",
        path.display()
    );
    Ok(path)
}

/// The `wasm-bindgen` version `wallet-ui/Cargo.lock` resolves.
fn locked_wasm_bindgen(root: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("wallet-ui/Cargo.lock"))
        .context("reading wallet-ui/Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\"" {
            let version = lines.next().unwrap_or_default();
            return version
                .trim()
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .map(str::to_owned)
                .context("a malformed wasm-bindgen entry in wallet-ui/Cargo.lock");
        }
    }
    bail!("wallet-ui/Cargo.lock has no wasm-bindgen")
}

/// Builds the wallet into `target/wallet-ui` (for the host to embed).
pub fn build(root: &Path) -> Result<()> {
    let locked = locked_wasm_bindgen(root)?;
    ensure!(
        locked == WASM_BINDGEN_VERSION,
        "wallet-ui/Cargo.lock resolves wasm-bindgen {locked}, but the pinned CLI is {WASM_BINDGEN_VERSION}: change WASM_BINDGEN_VERSION in xtask/src/wallet.rs and [tools] in Trunk.toml together"
    );
    ensure_tool(
        "wasm-bindgen-cli",
        "wasm-bindgen",
        WASM_BINDGEN_VERSION,
        false,
    )?;
    let trunk = ensure_tool("trunk", "trunk", TRUNK_VERSION, true)?;
    step("fetching the wallet's crates");
    run(Command::new(cargo_bin()).current_dir(root).args([
        "fetch",
        "--locked",
        "--manifest-path",
        "wallet-ui/Cargo.toml",
    ]))?;
    step("building the wallet (trunk, release)");
    let path = std::env::join_paths(std::iter::once(cargo_bin_dir()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    run(Command::new(trunk)
        .current_dir(root)
        .args(["build", "--release", "--offline", "--locked"])
        .env("PATH", path)
        .env("NO_COLOR", "true"))?;
    ensure!(
        root.join("target/wallet-ui/index.html").is_file(),
        "trunk wrote no target/wallet-ui/index.html"
    );
    Ok(())
}

/// Installs Debian's chromium for the browser tests when it is missing (as root), or says
/// how to.
pub fn ensure_chromium() -> Result<()> {
    if Path::new(CHROMIUM).exists() {
        return Ok(());
    }
    if !is_root() {
        bail!("the wallet's browser tests need Chromium at {CHROMIUM}: apt-get install chromium");
    }
    step("installing Chromium for the browser tests (Debian package)");
    run(Command::new("apt-get").arg("update"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "chromium"])
        .env("DEBIAN_FRONTEND", "noninteractive"))?;
    ensure!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is still missing after installing chromium"
    );
    Ok(())
}
