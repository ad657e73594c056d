//! `cargo xtask bench`'s HTTP benchmarks: builds the release host and the load generator
//! (`src/bin/bench-http`, release too: a debug generator would be the bottleneck) and runs it.
//! Not part of `cargo xtask test`.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::{cargo, step, tempdir_in};

/// Builds what the HTTP benchmarks need and runs them; the Markdown report is printed and
/// written to `target/bench-http.md`.
pub fn run(root: &Path, http_calls: Option<u64>, quick: bool) -> Result<()> {
    step("HTTP benchmarks: building the host and the load generator (release)");
    cargo(
        root,
        ["build", "--release", "--locked", "-p", "tessera-host"],
    )?;
    cargo(
        root,
        [
            "build",
            "--release",
            "--locked",
            "-p",
            "xtask",
            "--bin",
            "bench-http",
        ],
    )?;
    let work_dir = tempdir_in(root, "bench-http")?;
    let mut cmd = Command::new(root.join("target/release/bench-http"));
    cmd.arg("run")
        .arg("--tessera")
        .arg(root.join("target/release/tessera"))
        .arg("--work-dir")
        .arg(&work_dir)
        .arg("--out")
        .arg(root.join("target/bench-http.md"));
    if quick {
        cmd.arg("--quick");
    }
    if let Some(n) = http_calls {
        cmd.arg("--calls").arg(n.to_string());
    }
    let result = crate::run(&mut cmd);
    std::fs::remove_dir_all(&work_dir).ok();
    result
}
