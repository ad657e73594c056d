//! The vault's error type. Messages name the source of a problem (the variable, the file,
//! the key version) and how to fix it, and never include key bytes, plaintext or the value
//! of `TESSERA_MASTER_KEY`.

use std::path::PathBuf;

/// Why a vault operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The master key text is neither base64 nor hex.
    #[error(
        "{origin} is not a valid master key: expected 32 bytes encoded as base64 \
         or as 64 hex digits"
    )]
    MasterKeyEncoding {
        /// Where the text came from (`TESSERA_MASTER_KEY` or `master key file PATH`).
        origin: String,
    },

    /// The master key text decodes, but not to 32 bytes.
    #[error("{origin} decodes to {len} bytes; a master key is exactly 32 bytes")]
    MasterKeyLength {
        /// Where the text came from.
        origin: String,
        /// How many bytes it decoded to.
        len: usize,
    },

    /// The key file is accessible to the group or to others.
    #[error(
        "master key file {} is accessible by group or others (mode {mode:03o}); \
         restrict it with `chmod 600 {}`",
        path.display(),
        path.display()
    )]
    KeyFilePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// There is neither `TESSERA_MASTER_KEY` nor a key file.
    #[error(
        "no master key: set TESSERA_MASTER_KEY or run `tessera init` to create the key file {}",
        path.display()
    )]
    KeyFileMissing {
        /// The key file that was looked for.
        path: PathBuf,
    },

    /// Reading, creating or writing the key file failed.
    #[error("master key file {}: {source}", path.display())]
    KeyFileIo {
        /// The key file.
        path: PathBuf,
        /// The underlying error (it carries no file contents).
        #[source]
        source: std::io::Error,
    },

    /// A wrapped data key did not authenticate under the master key.
    #[error(
        "data key version {version} cannot be unwrapped: the master key is not the one it \
         was wrapped with, or the wrapped key is corrupted"
    )]
    UnwrapFailed {
        /// The data key version.
        version: u32,
    },

    /// A key ring was built from no data keys.
    #[error("the key ring holds no data keys; create one with `KeyRing::generate`")]
    NoDataKeys,

    /// Two different data keys claim the same version.
    #[error("two different data keys claim version {0}")]
    DuplicateKeyVersion(u32),

    /// The next data key version would not fit in a `u32`.
    #[error("no data key version is left after {0}")]
    KeyVersionExhausted(u32),

    /// A sealed value names a data key version the ring does not hold.
    #[error("sealed value names data key version {0}, which this key ring does not hold")]
    UnknownKeyVersion(u32),

    /// Sealed bytes do not have the `TV1` layout.
    #[error("sealed value is malformed: {0}")]
    Malformed(&'static str),

    /// A sealed value failed authentication.
    #[error(
        "sealed value failed authentication: it was altered, moved from another record, \
         or sealed under another key"
    )]
    Authentication,

    /// The plaintext exceeds what AES-GCM can encrypt under one nonce.
    #[error("value is too large to encrypt")]
    TooLarge,
}
