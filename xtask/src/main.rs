//! Build, run, test and bench orchestration for Tessera (`cargo xtask …`).
//!
//! Every command installs what it needs and is missing (rustup targets, npm packages for test
//! peers) and fails with a clear message where it cannot. Nothing is downloaded from outside
//! the package registries.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench_http;
mod postgres;
mod wallet;

/// Guest target of built-in providers: its modules import nothing, so components made from
/// them import nothing either.
const PROVIDER_TARGET: &str = "wasm32-unknown-unknown";
/// Target of the hostile test components, which import WASI like a third-party component.
const TEST_COMPONENT_TARGET: &str = "wasm32-wasip2";
/// The guest workspace's authoring crate, the one member that is not a provider.
const SDK_CRATE: &str = "tessera-provider-sdk";

#[derive(Parser)]
#[command(about = "Tessera build, run, test and bench tasks")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

/// A benchmark that runs on its own.
#[derive(Clone, Copy, clap::ValueEnum)]
enum BenchKind {
    /// The OAuth refresh storm.
    RefreshStorm,
}

#[derive(Subcommand)]
enum Task {
    /// Build the provider components (target/providers/<id>.wasm) and the test components.
    Components,
    /// Build one provider crate outside the guest workspace into a component.
    Component {
        /// The crate's Cargo.toml.
        #[arg(long)]
        manifest_path: PathBuf,
        /// Where to write the component.
        #[arg(long)]
        out: PathBuf,
    },
    /// Build everything: components, then the host (target/release/tessera).
    Build,
    /// Build everything, then run the host on the default data directory.
    Serve {
        /// Extra arguments for `tessera serve`.
        #[arg(trailing_var_arg = true)]
        args: Vec<String>,
    },
    /// Install what is missing, build, and run every test and lint.
    Test,
    /// Run the benchmarks and print their figures: plugin-call micro-benchmarks, host start,
    /// and HTTP benchmarks of the retrieve and proxy call modes against a hyper "hello"
    /// server, nginx and a direct call (see BENCHMARKS.md).
    Bench {
        /// Run only this benchmark: `refresh-storm` (100 callers on one host instance, then
        /// on three sharing PostgreSQL, every call due for an OAuth refresh, against
        /// `oidc-provider` with refresh-token rotation; ends with the three-instance
        /// `refresh-storm …` line).
        which: Option<BenchKind>,
        /// Rotations of the refresh storm (default 1,000).
        #[arg(long, value_name = "N")]
        rotations: Option<u64>,
        /// Calls of the HTTP memory run (the host's RSS after 10,000 and after this many
        /// calls). Default 1,000,000, or 20,000 with `--quick`.
        #[arg(long, value_name = "N")]
        http_calls: Option<u64>,
        /// Short HTTP runs (about a minute and a half): a smoke test of the benchmarks, not
        /// figures to publish.
        #[arg(long)]
        quick: bool,
        /// Only the HTTP benchmarks (skip the plugin-call micro-benchmarks and host start).
        #[arg(long)]
        http_only: bool,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let root = workspace_root()?;
    match cli.command {
        Task::Components => components(&root),
        Task::Component { manifest_path, out } => {
            ensure_rust_targets()?;
            build_external_component(&root, &manifest_path, &out)
        }
        Task::Build => {
            ensure_rust_targets()?;
            components(&root)?;
            wallet::build(&root)?;
            step("building the host (release)");
            cargo(
                &root,
                ["build", "--release", "--locked", "-p", "tessera-host"],
            )
        }
        Task::Serve { args } => {
            ensure_rust_targets()?;
            components(&root)?;
            wallet::build(&root)?;
            step("building the host (release)");
            cargo(
                &root,
                ["build", "--release", "--locked", "-p", "tessera-host"],
            )?;
            let data_dir = root.join(".tessera");
            step("setting up the data directory (master key, SQLite database)");
            run(Command::new(root.join("target/release/tessera"))
                .arg("--data-dir")
                .arg(&data_dir)
                .arg("init"))?;
            let mut cmd = Command::new(root.join("target/release/tessera"));
            cmd.arg("--data-dir").arg(&data_dir).arg("serve").args(args);
            step(&format!(
                "starting tessera (data directory {})",
                data_dir.display()
            ));
            run(&mut cmd)
        }
        Task::Test => test(&root),
        Task::Bench {
            which: Some(BenchKind::RefreshStorm),
            rotations,
            ..
        } => refresh_storm(&root, rotations.unwrap_or(1_000)),
        Task::Bench {
            which: None,
            http_calls,
            quick,
            http_only,
            ..
        } => bench(&root, http_calls, quick, http_only),
    }
}

fn test(root: &Path) -> Result<()> {
    let started = Instant::now();
    ensure_rust_targets()?;
    ensure_npm_peers(root)?;
    wallet::ensure_chromium()?;
    components(root)?;
    wallet::build(root)?;
    step("formatting check");
    cargo(root, ["fmt", "--all", "--check"])?;
    cargo_in(&root.join("providers"), ["fmt", "--all", "--check"])?;
    cargo_in(&root.join("wallet-ui"), ["fmt", "--check"])?;
    step("wallet: clippy (WebAssembly)");
    cargo_in(
        &root.join("wallet-ui"),
        [
            "clippy",
            "--locked",
            "--target",
            wallet::TARGET,
            "--",
            "-D",
            "warnings",
            "-W",
            "clippy::pedantic",
        ],
    )?;
    step("provider crates: native unit tests");
    let providers_dir = root.join("providers");
    let (providers, _) = guest_crates(&providers_dir)?;
    let mut args = vec!["test", "--locked", "-p", SDK_CRATE];
    for p in &providers {
        args.extend(["-p", p.as_str()]);
    }
    let mut totals = cargo_test(&providers_dir, &args, None)?;
    step("provider crates: clippy (native and guest target)");
    args[0] = "clippy";
    let mut native = args.clone();
    native.extend(["--all-targets", "--", "-D", "warnings"]);
    cargo_in(&providers_dir, &native)?;
    args.extend(["--target", PROVIDER_TARGET, "--", "-D", "warnings"]);
    cargo_in(&providers_dir, &args)?;
    step("PostgreSQL for the storage tests");
    let pg_url = postgres::ensure_postgres()?;
    step("host workspace: build and tests");
    cargo(root, ["build", "--locked", "--workspace"])?;
    let host = cargo_test(
        root,
        &["test", "--locked", "--workspace", "--no-fail-fast"],
        Some(&pg_url),
    )?;
    totals.0 += host.0;
    totals.1 += host.1;
    step("host workspace: clippy");
    cargo(
        root,
        [
            "clippy",
            "--locked",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    step(&format!("all tests passed in {:.0?}", started.elapsed()));
    println!("{} passed, {} failed", totals.0, totals.1);
    Ok(())
}

fn bench(root: &Path, http_calls: Option<u64>, quick: bool, http_only: bool) -> Result<()> {
    ensure_rust_targets()?;
    components(root)?;
    if !http_only {
        micro_benches(root)?;
    }
    bench_http::run(root, http_calls, quick)
}

/// The refresh storm: the end-to-end tests `refresh_storm_on_one_instance` (SQLite and
/// PostgreSQL) and `refresh_storm_on_three_instances` (real hosts, `oidc-provider`) with
/// `rotations` rotations each, in the test profile the other end-to-end tests use, one after
/// the other; prints their one-line reports, the three-instance one last.
fn refresh_storm(root: &Path, rotations: u64) -> Result<()> {
    ensure_rust_targets()?;
    ensure_npm_peers(root)?;
    components(root)?;
    let pg_url = postgres::ensure_postgres()?;
    step(&format!(
        "refresh storm: 100 callers, {rotations} rotations, on one instance, then on three"
    ));
    let out = Command::new(cargo_bin())
        .current_dir(root)
        .args([
            "test",
            "--locked",
            "-p",
            "tessera-tests",
            "--test",
            "cli",
            "oauth_refresh::refresh_storm_on_",
            "--",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(postgres::URL_VAR, &pg_url)
        .env("TESSERA_STORM_ROTATIONS", rotations.to_string())
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("could not start cargo test")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest may print `test NAME ... ` on the same line before the report.
    let lines: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.find("refresh-storm ").map(|at| &l[at..]))
        .collect();
    if !out.status.success() {
        bail!("the refresh storm failed:\n{stdout}");
    }
    // One instance (SQLite, then PostgreSQL) first; the three-instance line last.
    let (three, one): (Vec<&str>, Vec<&str>) =
        lines.iter().partition(|l| l.contains("instances=3 "));
    let last = three
        .first()
        .context("the three-instance refresh storm printed no report line")?;
    for line in one {
        println!("{line}");
    }
    println!("{last}");
    Ok(())
}

fn micro_benches(root: &Path) -> Result<()> {
    step("criterion: one plugin call versus native Bearer injection");
    cargo(
        root,
        [
            "bench",
            "--locked",
            "-p",
            "tessera-host",
            "--bench",
            "plugin_call",
        ],
    )?;
    step("host start: first start (compiles every component) and a warm start (cache)");
    cargo(
        root,
        ["build", "--release", "--locked", "-p", "tessera-host"],
    )?;
    let data_dir = tempdir_in(root, "bench-start")?;
    for label in ["cold start (empty cache)", "warm start (cache filled)"] {
        let t = Instant::now();
        let mut cmd = Command::new(root.join("target/release/tessera"));
        cmd.arg("--data-dir")
            .arg(&data_dir)
            .args(["provider", "list"]);
        cmd.stdout(std::process::Stdio::null());
        run(&mut cmd)?;
        println!("{label}: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    }
    std::fs::remove_dir_all(&data_dir).ok();
    Ok(())
}

/// Builds every provider crate to `target/providers/<id>.wasm` and every crate under
/// `providers/testing/` to `target/test-components/<name>.wasm`.
fn components(root: &Path) -> Result<()> {
    ensure_rust_targets()?;
    let providers_dir = root.join("providers");
    let (providers, testing) = guest_crates(&providers_dir)?;

    step(&format!("building {} provider components", providers.len()));
    let mut args = vec![
        "build",
        "--release",
        "--locked",
        "--target",
        PROVIDER_TARGET,
    ];
    for p in &providers {
        args.extend(["-p", p.as_str()]);
    }
    cargo_in(&providers_dir, args)?;
    let out_dir = root.join("target/providers");
    std::fs::create_dir_all(&out_dir)?;
    for p in &providers {
        let module = providers_dir
            .join("target")
            .join(PROVIDER_TARGET)
            .join("release")
            .join(format!("{}.wasm", p.replace('-', "_")));
        let id = p.strip_prefix("tessera-provider-").unwrap_or(p);
        componentize(&module, &out_dir.join(format!("{id}.wasm")))?;
    }

    if !testing.is_empty() {
        step(&format!("building {} test components", testing.len()));
        let mut args = vec![
            "build",
            "--release",
            "--locked",
            "--target",
            TEST_COMPONENT_TARGET,
        ];
        for t in &testing {
            args.extend(["-p", t.as_str()]);
        }
        cargo_in(&providers_dir, args)?;
        let out_dir = root.join("target/test-components");
        std::fs::create_dir_all(&out_dir)?;
        for t in &testing {
            let file = format!("{}.wasm", t.replace('-', "_"));
            let built = providers_dir
                .join("target")
                .join(TEST_COMPONENT_TARGET)
                .join("release")
                .join(&file);
            copy_if_changed(&built, &out_dir.join(format!("{t}.wasm")))?;
        }
    }
    Ok(())
}

/// Builds a provider crate that lives outside the guest workspace (for example one made by
/// `tessera provider new`) and turns it into a component.
fn build_external_component(root: &Path, manifest: &Path, out: &Path) -> Result<()> {
    let manifest = manifest
        .canonicalize()
        .with_context(|| format!("no such manifest: {}", manifest.display()))?;
    let dir = manifest
        .parent()
        .context("manifest has no parent directory")?;
    let name = package_name(&manifest)?;
    // Share the guest workspace's target directory so dependencies are built once.
    let target_dir = root.join("providers/target");
    let mut cmd = Command::new(cargo_bin());
    cmd.current_dir(dir)
        .args([
            "build",
            "--release",
            "--target",
            PROVIDER_TARGET,
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target_dir);
    run(&mut cmd)?;
    let module = target_dir
        .join(PROVIDER_TARGET)
        .join("release")
        .join(format!("{}.wasm", name.replace('-', "_")));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    componentize(&module, out)
}

/// Turns a core module carrying wit-bindgen's component-type section into a component, and
/// checks that it imports nothing.
fn componentize(module: &Path, out: &Path) -> Result<()> {
    let bytes = std::fs::read(module)
        .with_context(|| format!("reading built module {}", module.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .module(&bytes)
        .with_context(|| format!("{} is not a provider module", module.display()))?
        .validate(true)
        .encode()
        .with_context(|| format!("making a component of {}", module.display()))?;
    let imports = component_imports(&component)?;
    if !imports.is_empty() {
        bail!(
            "{} imports {} — built-in providers must import nothing",
            module.display(),
            imports.join(", ")
        );
    }
    write_if_changed(out, &component)?;
    println!("  {} ({} KiB)", out.display(), component.len() / 1024);
    Ok(())
}

/// Names of a component's top-level imports.
fn component_imports(component: &[u8]) -> Result<Vec<String>> {
    let mut names = Vec::new();
    let mut depth = 0usize;
    for payload in wasmparser::Parser::new(0).parse_all(component) {
        match payload.context("parsing the component")? {
            wasmparser::Payload::ModuleSection { .. }
            | wasmparser::Payload::ComponentSection { .. } => {
                depth += 1;
            }
            wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
            wasmparser::Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    names.push(import?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(names)
}

fn guest_crates(providers_dir: &Path) -> Result<(Vec<String>, Vec<String>)> {
    let mut providers = Vec::new();
    let mut testing = Vec::new();
    for (dir, list) in [
        (providers_dir.to_path_buf(), &mut providers),
        (providers_dir.join("testing"), &mut testing),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            let manifest = path.join("Cargo.toml");
            if !manifest.is_file() {
                continue;
            }
            let name = package_name(&manifest)?;
            if name != SDK_CRATE {
                list.push(name);
            }
        }
    }
    providers.sort();
    testing.sort();
    Ok((providers, testing))
}

fn package_name(manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest)?;
    let mut in_package = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]";
        } else if in_package && let Some(rest) = line.strip_prefix("name") {
            let value = rest
                .trim_start()
                .trim_start_matches('=')
                .trim()
                .trim_matches('"');
            return Ok(value.to_string());
        }
    }
    bail!("{} has no [package] name", manifest.display())
}

fn ensure_rust_targets() -> Result<()> {
    let out = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to install the WebAssembly targets; install it from your distribution or rustup's installer")?;
    let installed = String::from_utf8_lossy(&out.stdout);
    for target in [PROVIDER_TARGET, TEST_COMPONENT_TARGET] {
        if !installed.lines().any(|l| l.trim() == target) {
            step(&format!("installing the Rust target {target}"));
            run(Command::new("rustup").args(["target", "add", target]))
                .with_context(|| format!("could not install the Rust target {target}"))?;
        }
    }
    Ok(())
}

/// Installs the npm packages the tests use (published test vectors, real peers) from the
/// lock file, unless the installed set already matches it.
fn ensure_npm_peers(root: &Path) -> Result<()> {
    let dir = root.join("tests/peers");
    if Command::new("npm").arg("--version").output().is_err() {
        if is_root() {
            step("installing Node.js and npm (Debian packages)");
            run(Command::new("apt-get").arg("update"))?;
            run(Command::new("apt-get").args(["install", "-y", "nodejs", "npm"]))?;
        } else {
            bail!(
                "npm is needed for the test peers: install Node.js 20 or newer (Debian: apt-get install nodejs npm)"
            );
        }
    }
    let lock = dir.join("package-lock.json");
    let stamp = dir.join("node_modules/.package-lock.json");
    let fresh = match (std::fs::metadata(&lock), std::fs::metadata(&stamp)) {
        (Ok(l), Ok(s)) => s.modified()? >= l.modified()?,
        _ => false,
    };
    if !fresh {
        step("installing npm packages for the test peers");
        run(Command::new("npm").current_dir(&dir).args([
            "ci",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ]))?;
    }
    Ok(())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn workspace_root() -> Result<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .map(Path::to_path_buf)
        .context("xtask lives inside the workspace")
}

fn cargo_bin() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn cargo<I, S>(root: &Path, args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    cargo_in(root, args)
}

fn cargo_in<I, S>(dir: &Path, args: I) -> Result<()>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new(cargo_bin());
    cmd.current_dir(dir).args(args);
    run(&mut cmd)
}

/// Runs `cargo test …`, echoing its output, and returns the (passed, failed) totals of every
/// test binary. Fails when cargo fails or when no test ran at all.
fn cargo_test(dir: &Path, args: &[&str], pg_url: Option<&str>) -> Result<(u64, u64)> {
    use std::io::BufRead as _;
    let mut child = Command::new(cargo_bin())
        .current_dir(dir)
        .args(args)
        .envs(pg_url.map(|u| (postgres::URL_VAR, u)))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("could not start cargo test")?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(out) = child.stdout.take() {
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                for part in rest.split(['.', ';']) {
                    let mut words = part.split_whitespace();
                    match (words.next().map(str::parse::<u64>), words.next()) {
                        (Some(Ok(n)), Some("passed")) => passed += n,
                        (Some(Ok(n)), Some("failed")) => failed += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "cargo {} failed ({status}): {passed} passed, {failed} failed",
            args.join(" ")
        );
    }
    if passed == 0 {
        bail!("cargo {} ran no test", args.join(" "));
    }
    Ok((passed, failed))
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {}", cmd.get_program().display()))?;
    if !status.success() {
        bail!("{} failed ({status})", display_command(cmd));
    }
    Ok(())
}

fn display_command(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn step(message: &str) {
    println!("==> {message}");
}

fn copy_if_changed(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
    write_if_changed(to, &bytes)
}

/// Writes only when the content differs, so unchanged components keep their modification
/// time and the host is not rebuilt for nothing.
fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    let tmp = path.with_extension("wasm.tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn tempdir_in(root: &Path, name: &str) -> Result<PathBuf> {
    let dir = root
        .join("target")
        .join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
