//! Embeds into the `tessera` binary the built-in provider components
//! (`target/providers/*.wasm`, written by `cargo xtask components`) and the built wallet
//! (`target/wallet-ui`, written by Trunk through `cargo xtask build`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    // `sqlx::migrate!` embeds the SQL at compile time.
    println!("cargo:rerun-if-changed=migrations");

    let providers = source_dir(&manifest_dir, "TESSERA_BUILTIN_PROVIDERS_DIR", "providers");
    let components = files_in(&providers, |p| p.extension().is_some_and(|e| e == "wasm"));
    if components.is_empty() {
        println!(
            "cargo:warning=no built-in provider components in {}; run `cargo xtask build` to embed them",
            providers.display()
        );
    }
    embed(
        &out_dir.join("builtin_components.rs"),
        "/// Built-in provider components: (file stem, component bytes).",
        "BUILTIN_COMPONENTS",
        &components,
        Path::file_stem,
    );

    let wallet = source_dir(&manifest_dir, "TESSERA_WALLET_ASSETS_DIR", "wallet-ui");
    let mut assets = files_in(&wallet, Path::is_file);
    if !assets.iter().any(|f| f.ends_with("index.html")) {
        println!(
            "cargo:warning=no built wallet in {}; run `cargo xtask build` to embed it",
            wallet.display()
        );
        assets.clear();
    }
    embed(
        &out_dir.join("wallet_assets.rs"),
        "/// The wallet's built files: (file name, bytes).",
        "WALLET_ASSETS",
        &assets,
        Path::file_name,
    );
}

/// `target/<name>` beside the workspace, or the directory the environment variable `var`
/// names; watched for changes.
fn source_dir(manifest_dir: &Path, var: &str, name: &str) -> PathBuf {
    let dir = std::env::var_os(var)
        .map_or_else(|| manifest_dir.join("../target").join(name), PathBuf::from);
    println!("cargo:rerun-if-env-changed={var}");
    println!("cargo:rerun-if-changed={}", dir.display());
    dir
}

/// The files of `dir` that `keep` accepts, sorted (none when `dir` cannot be read).
fn files_in(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| keep(p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Writes `out`: a `static NAME: &[(&str, &[u8])]` of each file's `key` and bytes.
fn embed(
    out: &Path,
    doc: &str,
    name: &str,
    files: &[PathBuf],
    key: impl Fn(&Path) -> Option<&std::ffi::OsStr>,
) {
    let mut text = format!("{doc}\npub static {name}: &[(&str, &[u8])] = &[\n");
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
        let k = key(file).and_then(|s| s.to_str()).unwrap_or_default();
        let _ = writeln!(
            text,
            "    ({k:?}, include_bytes!({:?})),",
            file.display().to_string()
        );
    }
    text.push_str("];\n");
    if let Err(e) = std::fs::write(out, text) {
        println!("cargo:warning=cannot write {}: {e}", out.display());
        std::process::exit(1);
    }
}
