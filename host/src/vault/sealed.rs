//! The sealed-value format and the associated data that binds a value to its row.
//!
//! Bytes: `b"TV1" ‖ key version (u32 BE) ‖ nonce (12) ‖ ciphertext ‖ tag (16)`.
//! Associated data fed to AES-GCM (never stored; rebuilt from the row on open):
//! `b"TV1" ‖ key version (u32 BE) ‖ then kind, app id, record id, each as length (u64 BE) ‖
//! bytes`. Length prefixes make the encoding injective, so no two different
//! (record, app, kind) triples share associated data, and the format and key version are
//! authenticated along with them.

use std::fmt;

use super::VaultError;
use super::cipher::{NONCE_LEN, TAG_LEN};

/// The format tag at the start of every sealed value.
const MAGIC: &[u8; 3] = b"TV1";
const VERSION_LEN: usize = 4;
const HEADER_LEN: usize = MAGIC.len() + VERSION_LEN + NONCE_LEN;

/// What a sealed value belongs to. Opening needs exactly the triple it was sealed with, so
/// a ciphertext moved to another record, app or kind fails authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aad<'a> {
    /// The id of the row holding the value (credential id, app id, connect session id).
    pub record_id: &'a str,
    /// The app that owns the row.
    pub app_id: &'a str,
    /// What the value is, e.g. `"credential"`, `"client-secret"`, `"connect-state"`.
    pub kind: &'a str,
}

impl Aad<'_> {
    /// The unambiguous byte encoding authenticated by AES-GCM for `key_version`.
    pub(super) fn encode(&self, key_version: u32) -> Vec<u8> {
        let fields = [self.kind, self.app_id, self.record_id];
        let mut out = Vec::with_capacity(
            MAGIC.len() + VERSION_LEN + fields.iter().map(|f| 8 + f.len()).sum::<usize>(),
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&key_version.to_be_bytes());
        for field in fields {
            out.extend_from_slice(&(field.len() as u64).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

/// An encrypted value as stored in a BLOB column: which data key sealed it, the nonce, and
/// the ciphertext with its tag. Not secret; `Debug` shows only the version and length.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    pub(super) key_version: u32,
    pub(super) nonce: [u8; NONCE_LEN],
    pub(super) ciphertext: Vec<u8>,
}

impl Sealed {
    /// The data key version this value was sealed with.
    pub fn key_version(&self) -> u32 {
        self.key_version
    }

    /// The stored form: `b"TV1" ‖ key version (u32 BE) ‖ nonce ‖ ciphertext ‖ tag`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.ciphertext.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.key_version.to_be_bytes());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    /// Parses the stored form. Checks the layout only; authenticity is checked on open.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VaultError> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or(VaultError::Malformed("not a TV1 sealed value"))?;
        if rest.len() < VERSION_LEN + NONCE_LEN + TAG_LEN {
            return Err(VaultError::Malformed("truncated"));
        }
        let (version, rest) = rest.split_at(VERSION_LEN);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let mut version_bytes = [0u8; VERSION_LEN];
        version_bytes.copy_from_slice(version);
        let mut nonce_bytes = [0u8; NONCE_LEN];
        nonce_bytes.copy_from_slice(nonce);
        Ok(Self {
            key_version: u32::from_be_bytes(version_bytes),
            nonce: nonce_bytes,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("key_version", &self.key_version)
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn associated_data_differs_when_bytes_shift_between_fields() {
        let a = Aad {
            record_id: "ab",
            app_id: "c",
            kind: "credential",
        };
        let b = Aad {
            record_id: "a",
            app_id: "bc",
            kind: "credential",
        };
        assert_ne!(a.encode(1), b.encode(1));
        assert_ne!(a.encode(1), a.encode(2));
    }

    #[test]
    fn sealed_bytes_round_trip() {
        let sealed = Sealed {
            key_version: 0x0102_0304,
            nonce: [7; NONCE_LEN],
            ciphertext: vec![9; TAG_LEN + 5],
        };
        let bytes = sealed.to_bytes();
        assert_eq!(&bytes[..7], b"TV1\x01\x02\x03\x04");
        assert_eq!(bytes.len(), HEADER_LEN + TAG_LEN + 5);
        assert_eq!(Sealed::from_bytes(&bytes).unwrap(), sealed);
    }

    #[test]
    fn bytes_shorter_than_header_and_tag_are_malformed() {
        let bytes = Sealed {
            key_version: 1,
            nonce: [0; NONCE_LEN],
            ciphertext: vec![0; TAG_LEN],
        }
        .to_bytes();
        for len in 0..bytes.len() {
            assert!(matches!(
                Sealed::from_bytes(&bytes[..len]),
                Err(VaultError::Malformed(_))
            ));
        }
        assert!(Sealed::from_bytes(&bytes).is_ok());
    }
}
