//! The vault: envelope encryption of every secret Tessera stores.
//!
//! Owns the master key (from `TESSERA_MASTER_KEY` or a 0600 key file that `tessera init`
//! creates), the versioned data keys it wraps, and sealing and opening of secret values with
//! AES-256-GCM. The associated data of every sealed value binds it to its record id, app and
//! kind, so a ciphertext copied into another row does not open.
//!
//! This module never logs, formats or returns plaintext or key bytes except through
//! [`SecretBytes::expose`]: every secret type prints `[redacted]` under `Debug`, and no
//! [`VaultError`] message contains key material, plaintext or the value of the environment
//! variable. It performs no database I/O: callers persist [`WrappedDataKey`]s and
//! [`Sealed`] bytes themselves.
//!
//! Layout:
//! - master key: [`MasterKey`], loaded by [`MasterKey::load`] or created by
//!   [`MasterKey::load_or_create_file`];
//! - data keys: [`DataKey`], stored only as [`WrappedDataKey`] (AES-256-GCM under the master
//!   key), held unwrapped in a [`KeyRing`] whose highest version seals new values;
//! - sealed values: [`Sealed`], whose byte form is
//!   `b"TV1" ‖ key version (u32 BE) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`.
//!
//! Rotation: [`KeyRing::wrap_next_version`] makes a data key for the caller to store, then
//! [`KeyRing::insert`] adds it to the shared ring (through `&self`, so running holders learn
//! it in place); [`KeyRing::needs_reseal`] and [`KeyRing::reseal`] move old values to it in
//! the background while every version still opens. [`rewrap_all`] re-wraps the data keys
//! under a new master key without touching a single sealed value. The database side
//! (storing keys, reloading them, the re-encryption job) is `crate::keys`.

mod cipher;
mod error;
mod keyring;
mod master;
mod sealed;
mod secret;

pub use error::VaultError;
pub use keyring::{DataKey, KeyRing, WrappedDataKey, rewrap_all};
pub use master::{KeyFileStatus, MASTER_KEY_ENV, MasterKey};
pub use sealed::{Aad, Sealed};
pub use secret::{SecretBytes, SecretString};
