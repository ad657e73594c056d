//! The on-disk cache of precompiled components.
//!
//! Owns the cache directory, its 0600 HMAC key and the artifact files. Deserializing a
//! precompiled artifact runs whatever machine code it contains, so this module must never
//! deserialize bytes it did not write itself: every artifact carries an HMAC-SHA256 tag under
//! a random key only this host can read, and a missing, wrong or unreadable tag means the file
//! is deleted and the component recompiled. This is the only module allowed `unsafe`.

// The one exemption from the workspace's `unsafe_code = "deny"`: see `deserialize` below.
#![allow(unsafe_code)]

use std::fs::{self, DirBuilder, OpenOptions};
use std::hash::Hasher;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::PluginError;

type HmacSha256 = Hmac<Sha256>;

const KEY_FILE: &str = "artifact.key";
const TAG_LEN: usize = 32;

/// A cache directory bound to one engine configuration.
pub(crate) struct ArtifactCache {
    dir: PathBuf,
    key: [u8; 32],
    engine_hash: String,
}

/// What looking an artifact up found.
pub(crate) enum Lookup {
    /// An authenticated artifact, deserialized.
    Hit(Component),
    /// No artifact for this key.
    Miss,
    /// An artifact existed but failed authentication or deserialization; it was deleted.
    Rejected,
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache directory and its key.
    pub(crate) fn open(dir: &Path, engine: &Engine) -> Result<Self, PluginError> {
        let err = |detail: String| PluginError::Cache {
            path: dir.display().to_string(),
            detail,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| err(format!("cannot create directory: {e}")))?;
        let key = load_or_create_key(dir).map_err(err)?;
        Ok(Self {
            dir: dir.to_owned(),
            key,
            engine_hash: engine_hash(engine),
        })
    }

    fn artifact_path(&self, wasm_sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(format!(
            "{}-{}.cwasm",
            hex::encode(wasm_sha256),
            self.engine_hash
        ))
    }

    fn mac(&self, path: &Path) -> HmacSha256 {
        // The key length is fixed at 32 bytes, which HMAC always accepts.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        // Bind the tag to the file name, so an artifact cannot be moved to another key.
        let name = path
            .file_name()
            .map(std::ffi::OsStr::as_encoded_bytes)
            .unwrap_or_default();
        mac.update(name);
        mac.update(&[0]);
        mac
    }

    /// Looks up the artifact for `wasm_sha256`, authenticating it before deserializing.
    pub(crate) fn load(&self, engine: &Engine, wasm_sha256: &[u8; 32]) -> Lookup {
        let path = self.artifact_path(wasm_sha256);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Lookup::Miss,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable component artifact");
                return Self::reject(&path);
            }
        };
        let Some((tag, artifact)) = bytes.split_at_checked(TAG_LEN) else {
            tracing::warn!(path = %path.display(), "truncated component artifact; recompiling");
            return Self::reject(&path);
        };
        let mut mac = self.mac(&path);
        mac.update(artifact);
        if mac.verify_slice(tag).is_err() {
            tracing::warn!(path = %path.display(), "component artifact failed authentication; recompiling");
            return Self::reject(&path);
        }
        // SAFETY: `Component::deserialize` trusts its input to be an artifact produced by
        // `Component::serialize` of a compatible engine, because it maps and runs the machine
        // code inside. The HMAC tag verified just above can only have been produced with the
        // 0600 key that this host created in its own cache directory, over these exact bytes
        // and this file name, and `store` only tags what `Component::serialize` returned. The
        // file name embeds the engine's compatibility hash, and wasmtime re-checks it too.
        match unsafe { Component::deserialize(engine, artifact) } {
            Ok(component) => Lookup::Hit(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "component artifact did not deserialize; recompiling");
                Self::reject(&path)
            }
        }
    }

    fn reject(path: &Path) -> Lookup {
        if let Err(e) = fs::remove_file(path) {
            tracing::warn!(path = %path.display(), error = %e, "cannot delete rejected artifact");
        }
        Lookup::Rejected
    }

    /// Serializes, tags and atomically writes `component`. Failures are logged, not fatal:
    /// the component still works, it will just be compiled again next time.
    pub(crate) fn store(&self, wasm_sha256: &[u8; 32], component: &Component) {
        let path = self.artifact_path(wasm_sha256);
        let result = component
            .serialize()
            .map_err(|e| e.to_string())
            .and_then(|artifact| {
                let mut mac = self.mac(&path);
                mac.update(&artifact);
                let tag = mac.finalize().into_bytes();
                write_atomically(&path, &[tag.as_slice(), &artifact]).map_err(|e| e.to_string())
            });
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "cannot write component artifact");
        }
    }
}

/// Writes `parts` to a fresh 0600 temporary file beside `path`, then renames it into place,
/// so readers see either nothing or the whole file.
fn write_atomically(path: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!(
        "tmp.{}.{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        for part in parts {
            file.write_all(part)?;
        }
        file.sync_all()?;
        fs::rename(&tmp, path)
    };
    let result = write();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn load_or_create_key(dir: &Path) -> Result<[u8; 32], String> {
    let path = dir.join(KEY_FILE);
    for _ in 0..2 {
        match OpenOptions::new().read(true).open(&path) {
            Ok(mut file) => {
                let meta = file.metadata().map_err(|e| format!("{KEY_FILE}: {e}"))?;
                if meta.permissions().mode() & 0o077 != 0 {
                    return Err(format!(
                        "{KEY_FILE} is readable by other users (mode {:o}); refusing to trust \
                         artifacts signed with it — delete the cache directory",
                        meta.permissions().mode() & 0o777
                    ));
                }
                let mut key = [0u8; 32];
                let mut extra = [0u8; 1];
                file.read_exact(&mut key)
                    .map_err(|e| format!("{KEY_FILE}: {e}"))?;
                if file
                    .read(&mut extra)
                    .map_err(|e| format!("{KEY_FILE}: {e}"))?
                    != 0
                {
                    return Err(format!("{KEY_FILE} is longer than 32 bytes"));
                }
                return Ok(key);
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let key: [u8; 32] = rand::random();
                // Write beside, then hard-link into place: the link fails if another process
                // won the race, and then we read its key instead.
                let tmp = dir.join(format!(
                    "{KEY_FILE}.tmp.{}.{:016x}",
                    std::process::id(),
                    rand::random::<u64>()
                ));
                let created = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)
                    .and_then(|mut f| f.write_all(&key).and_then(|()| f.sync_all()))
                    .and_then(|()| fs::hard_link(&tmp, &path));
                let _ = fs::remove_file(&tmp);
                match created {
                    Ok(()) => return Ok(key),
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("cannot create {KEY_FILE}: {e}")),
                }
            }
            Err(e) => return Err(format!("{KEY_FILE}: {e}")),
        }
    }
    Err(format!("cannot create or read {KEY_FILE}"))
}

/// Hex SHA-256 of the engine's precompile compatibility hash (which is only `impl Hash`).
fn engine_hash(engine: &Engine) -> String {
    struct Sha256Hasher(Sha256);
    impl Hasher for Sha256Hasher {
        fn finish(&self) -> u64 {
            0
        }
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
    }
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex::encode(&hasher.0.finalize()[..16])
}
