//! Embeds the built-in provider components (`target/providers/*.wasm`, written by
//! `cargo xtask components`) into the `tessera` binary.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dir = std::env::var_os("TESSERA_BUILTIN_PROVIDERS_DIR")
        .map_or_else(|| manifest_dir.join("../target/providers"), PathBuf::from);
    println!("cargo:rerun-if-env-changed=TESSERA_BUILTIN_PROVIDERS_DIR");
    // `sqlx::migrate!` embeds the SQL at compile time.
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed={}", dir.display());

    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "wasm"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if files.is_empty() {
        println!(
            "cargo:warning=no built-in provider components in {}; run `cargo xtask build` to embed them",
            dir.display()
        );
    }

    let mut out = String::from("/// Built-in provider components: (file stem, component bytes).\n");
    out.push_str("pub static BUILTIN_COMPONENTS: &[(&str, &[u8])] = &[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let stem = file
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    ({stem:?}, include_bytes!({:?})),",
            file.display().to_string()
        );
    }
    out.push_str("];\n");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    if let Err(e) = std::fs::write(out_dir.join("builtin_components.rs"), out) {
        println!("cargo:warning=cannot write the built-in component list: {e}");
        std::process::exit(1);
    }
    wallet_assets(&manifest_dir, &out_dir);
}

/// Embeds the built wallet (`target/wallet-ui`, written by `cargo xtask wallet`): every file
/// of that directory, by name.
fn wallet_assets(manifest_dir: &std::path::Path, out_dir: &std::path::Path) {
    let dir = std::env::var_os("TESSERA_WALLET_ASSETS_DIR")
        .map_or_else(|| manifest_dir.join("../target/wallet-ui"), PathBuf::from);
    println!("cargo:rerun-if-env-changed=TESSERA_WALLET_ASSETS_DIR");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    if !files.iter().any(|f| f.ends_with("index.html")) {
        println!(
            "cargo:warning=no built wallet in {}; run `cargo xtask build` to embed it",
            dir.display()
        );
        files.clear();
    }
    let mut out = String::from("/// The wallet's built files: (file name, bytes).\n");
    out.push_str("pub static WALLET_ASSETS: &[(&str, &[u8])] = &[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file
            .file_name()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    ({name:?}, include_bytes!({:?})),",
            file.display().to_string()
        );
    }
    out.push_str("];\n");
    if let Err(e) = std::fs::write(out_dir.join("wallet_assets.rs"), out) {
        println!("cargo:warning=cannot write the wallet asset list: {e}");
        std::process::exit(1);
    }
}
