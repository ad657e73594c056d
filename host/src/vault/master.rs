//! The master key: where it comes from (environment or key file), how the key file is
//! created, and its non-secret fingerprint. The master key only ever wraps data keys.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::VaultError;
use super::cipher::{self, KEY_LEN};

/// The environment variable that holds the master key (base64 or hex of 32 bytes).
pub const MASTER_KEY_ENV: &str = "TESSERA_MASTER_KEY";

/// The HMAC message whose tag is the master key's fingerprint.
const FINGERPRINT_LABEL: &[u8] = b"tessera master key fingerprint";
/// Hex digits in a fingerprint (64 bits: enough to tell keys apart, useless to an attacker).
const FINGERPRINT_HEX_LEN: usize = 16;
/// A key file is a line of base64; anything much longer is not a key file.
const MAX_KEY_FILE_LEN: u64 = 1024;

const BASE64_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The 256-bit key that wraps every data key. Zeroized on drop; `Debug` prints
/// `[redacted]`; there is no way to read its bytes outside the vault.
pub struct MasterKey {
    key: Zeroizing<[u8; KEY_LEN]>,
}

/// Whether [`MasterKey::load_or_create_file`] found a key file or created one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFileStatus {
    /// The key file existed and was read.
    Existing,
    /// The key file did not exist; a new random key was written to it.
    Created,
}

impl MasterKey {
    /// A new random master key.
    pub fn generate() -> Self {
        Self {
            key: cipher::random_key(),
        }
    }

    /// Parses the value of `TESSERA_MASTER_KEY`: 32 bytes as base64 (standard or URL-safe,
    /// padding optional) or as 64 hex digits, surrounding whitespace ignored. Errors say
    /// what is wrong without repeating the value.
    pub fn from_env_value(value: &str) -> Result<Self, VaultError> {
        Self::parse(value, MASTER_KEY_ENV)
    }

    /// Reads the master key: from `env` (the value of `TESSERA_MASTER_KEY`) when it is set
    /// and not blank, otherwise from the key file at `file`. Never creates the key file:
    /// a missing key is an error telling the operator to run `tessera init`, because a
    /// fresh key could not open anything already stored.
    pub fn load(env: Option<String>, file: &Path) -> Result<Self, VaultError> {
        let env = env.map(Zeroizing::new);
        if let Some(value) = env.as_deref().filter(|v| !v.trim().is_empty()) {
            return Self::from_env_value(value);
        }
        match Self::read_file(file) {
            Err(VaultError::KeyFileIo { source, .. }) if source.kind() == ErrorKind::NotFound => {
                Err(VaultError::KeyFileMissing {
                    path: file.to_path_buf(),
                })
            }
            other => other,
        }
    }

    /// Reads the key file at `path`, or creates it with a new random key when it does not
    /// exist (`tessera init`). The file is written with mode 0600 under a temporary name and
    /// then linked into place, so no reader ever sees a partial key file and a concurrent
    /// creator's key is never overwritten. The parent directory must exist.
    pub fn load_or_create_file(path: &Path) -> Result<(Self, KeyFileStatus), VaultError> {
        match Self::read_file(path) {
            Ok(key) => return Ok((key, KeyFileStatus::Existing)),
            Err(VaultError::KeyFileIo { source, .. }) if source.kind() == ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let key = Self::generate();
        let io_err = |source| VaultError::KeyFileIo {
            path: path.to_path_buf(),
            source,
        };
        match write_new_private_file(path, key.encode().as_bytes()) {
            Ok(()) => Ok((key, KeyFileStatus::Created)),
            // Another process created the file first: its key is the key.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                Ok((Self::read_file(path)?, KeyFileStatus::Existing))
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// A short, non-secret identifier of this key: the first 16 hex digits of
    /// HMAC-SHA256(key, "tessera master key fingerprint"). Stored next to the data, it lets
    /// the host refuse to start with the wrong master key instead of failing on every read.
    pub fn fingerprint(&self) -> String {
        // HMAC accepts keys of any length, so this cannot fail; the fallback keeps the
        // library free of panics all the same.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.key.as_slice()) else {
            return String::new();
        };
        mac.update(FINGERPRINT_LABEL);
        let mut fingerprint = hex::encode(mac.finalize().into_bytes());
        fingerprint.truncate(FINGERPRINT_HEX_LEN);
        fingerprint
    }

    /// The key bytes, for wrapping data keys.
    pub(super) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.key
    }

    /// The key-file form: base64 and a newline, zeroized on drop.
    fn encode(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(46));
        general_purpose::STANDARD.encode_string(self.key.as_slice(), &mut text);
        text.push('\n');
        text
    }

    fn parse(value: &str, origin: &str) -> Result<Self, VaultError> {
        let value = value.trim();
        let encoding_err = || VaultError::MasterKeyEncoding {
            origin: origin.to_owned(),
        };
        let looks_hex =
            value.len().is_multiple_of(2) && value.bytes().all(|b| b.is_ascii_hexdigit());
        let decoded = if looks_hex {
            hex::decode(value).map_err(|_| encoding_err())?
        } else {
            BASE64_STANDARD
                .decode(value)
                .or_else(|_| BASE64_URL_SAFE.decode(value))
                .map_err(|_| encoding_err())?
        };
        let decoded = Zeroizing::new(decoded);
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if decoded.len() != KEY_LEN {
            return Err(VaultError::MasterKeyLength {
                origin: origin.to_owned(),
                len: decoded.len(),
            });
        }
        key.copy_from_slice(&decoded);
        Ok(Self { key })
    }

    /// Reads and parses a key file, refusing one that group or others can access. The
    /// mode is checked on the opened file, so it is the same file that is read.
    fn read_file(path: &Path) -> Result<Self, VaultError> {
        let io_err = |source| VaultError::KeyFileIo {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io_err)?;
        let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(VaultError::KeyFilePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE_LEN)
            .read_to_string(&mut text)
            .map_err(io_err)?;
        Self::parse(&text, &format!("master key file {}", path.display()))
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Writes `contents` to a new file at `path` with mode 0600, failing with `AlreadyExists`
/// if `path` exists. The contents go to a temporary file first and are linked into place
/// whole.
fn write_new_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = temp_path(path);
    let result = write_temp_and_link(&tmp, path, contents);
    // The temporary name is only a second link to the same inode (or a partial write that
    // failed); drop it either way.
    let _ = fs::remove_file(&tmp);
    result?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the new directory entry durable; failure here does not undo the key file.
        let _ = File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn write_temp_and_link(tmp: &Path, path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    // `mode` is filtered by the umask, which can only remove bits; set it explicitly anyway
    // so the file is 0600 before a single key byte is written.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    // `hard_link` fails if `path` exists, where `rename` would replace it.
    fs::hard_link(tmp, path)
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map_or_else(|| "master.key".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn env_value_accepts_hex_and_base64_of_the_same_key() {
        let bytes = hex::decode(HEX_KEY).unwrap();
        let from_hex = MasterKey::from_env_value(HEX_KEY).unwrap();
        let b64 = general_purpose::STANDARD.encode(&bytes);
        let from_b64 = MasterKey::from_env_value(&format!("  {b64}\n")).unwrap();
        let from_b64_unpadded =
            MasterKey::from_env_value(&general_purpose::URL_SAFE_NO_PAD.encode(&bytes)).unwrap();
        assert_eq!(from_hex.bytes().as_slice(), bytes.as_slice());
        assert_eq!(from_b64.bytes(), from_hex.bytes());
        assert_eq!(from_b64_unpadded.bytes(), from_hex.bytes());
    }

    #[test]
    fn env_value_with_wrong_length_is_refused_without_echoing_it() {
        let short = &HEX_KEY[..62];
        let err = MasterKey::from_env_value(short).unwrap_err();
        assert!(matches!(err, VaultError::MasterKeyLength { len: 31, .. }));
        let message = err.to_string();
        assert!(message.contains(MASTER_KEY_ENV), "{message}");
        assert!(!message.contains(short), "{message}");

        let long_b64 = general_purpose::STANDARD.encode([7u8; 33]);
        let err = MasterKey::from_env_value(&long_b64).unwrap_err();
        assert!(matches!(err, VaultError::MasterKeyLength { len: 33, .. }));
        assert!(!format!("{err} {err:?}").contains(&long_b64));
    }

    #[test]
    fn env_value_that_is_not_base64_or_hex_is_refused_without_echoing_it() {
        let value = "not a key: s3cr3t!";
        let err = MasterKey::from_env_value(value).unwrap_err();
        assert!(matches!(err, VaultError::MasterKeyEncoding { .. }));
        assert!(!format!("{err} {err:?}").contains("s3cr3t"));
    }

    #[test]
    fn key_file_is_created_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (created, status) = MasterKey::load_or_create_file(&path).unwrap();
        assert_eq!(status, KeyFileStatus::Created);
        assert_eq!(mode(&path), 0o600);
        let (again, status) = MasterKey::load_or_create_file(&path).unwrap();
        assert_eq!(status, KeyFileStatus::Existing);
        assert_eq!(created.bytes(), again.bytes());
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn key_file_readable_by_group_or_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        MasterKey::load_or_create_file(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

        let err = MasterKey::load_or_create_file(&path).unwrap_err();
        assert!(matches!(
            err,
            VaultError::KeyFilePermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let err = MasterKey::load(None, &path).unwrap_err();
        assert!(matches!(err, VaultError::KeyFilePermissions { .. }));
    }

    #[test]
    fn key_file_with_wrong_length_is_refused_without_echoing_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let short = general_purpose::STANDARD.encode([9u8; 16]);
        write_new_private_file(&path, short.as_bytes()).unwrap();
        let err = MasterKey::load(None, &path).unwrap_err();
        assert!(matches!(err, VaultError::MasterKeyLength { len: 16, .. }));
        assert!(!err.to_string().contains(&short));
    }

    #[test]
    fn load_prefers_the_environment_over_the_key_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let (file_key, _) = MasterKey::load_or_create_file(&path).unwrap();

        let from_env = MasterKey::load(Some(HEX_KEY.to_owned()), &path).unwrap();
        assert_eq!(from_env.bytes().as_slice(), hex::decode(HEX_KEY).unwrap());
        let blank_env = MasterKey::load(Some("  ".to_owned()), &path).unwrap();
        assert_eq!(blank_env.bytes(), file_key.bytes());
        let no_env = MasterKey::load(None, &path).unwrap();
        assert_eq!(no_env.bytes(), file_key.bytes());
    }

    #[test]
    fn load_without_env_or_key_file_says_to_run_init_and_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let err = MasterKey::load(None, &path).unwrap_err();
        assert!(matches!(err, VaultError::KeyFileMissing { .. }));
        assert!(err.to_string().contains("tessera init"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn fingerprint_is_stable_per_key_and_differs_between_keys() {
        let key = MasterKey::from_env_value(HEX_KEY).unwrap();
        let fingerprint = key.fingerprint();
        assert_eq!(fingerprint.len(), FINGERPRINT_HEX_LEN);
        assert!(fingerprint.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(
            fingerprint,
            MasterKey::from_env_value(HEX_KEY).unwrap().fingerprint()
        );
        assert_ne!(fingerprint, MasterKey::generate().fingerprint());
        assert!(!HEX_KEY.contains(&fingerprint));
    }

    #[test]
    fn master_key_debug_is_redacted() {
        let key = MasterKey::from_env_value(HEX_KEY).unwrap();
        let shown = format!("{key:?} {key:#?}");
        assert_eq!(shown, "[redacted] [redacted]");
    }
}
