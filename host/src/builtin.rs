//! The built-in provider components, embedded into the binary at build time by `build.rs`
//! from `target/providers/*.wasm` (written by `cargo xtask components`).

include!(concat!(env!("OUT_DIR"), "/builtin_components.rs"));

/// The embedded components as (file stem, bytes) pairs.
pub fn components() -> Vec<(String, &'static [u8])> {
    BUILTIN_COMPONENTS
        .iter()
        .map(|(name, bytes)| ((*name).to_string(), *bytes))
        .collect()
}
