//! Data keys, their wrapping under the master key, and the key ring that seals and opens
//! values. The ring holds every data key version unwrapped in zeroizing memory; the
//! highest version seals, every version opens.
//!
//! The ring is shared (`Arc<KeyRing>`) by every part of a running host and learns new
//! versions in place ([`KeyRing::insert`] takes `&self`): when `tessera keys rotate` adds a
//! version, a running host inserts it and from then on opens values sealed with it and seals
//! new values with it, without a restart.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::cipher::{self, KEY_LEN, NONCE_LEN};
use super::{Aad, MasterKey, Sealed, SecretBytes, VaultError};

/// The first data key version [`KeyRing::generate`] creates.
const FIRST_VERSION: u32 = 1;

/// One version of the data-encryption key. Zeroized on drop; `Debug` shows the version and
/// `[redacted]`.
pub struct DataKey {
    version: u32,
    key: Zeroizing<[u8; KEY_LEN]>,
}

impl DataKey {
    /// A new random data key with this version.
    pub fn generate(version: u32) -> Self {
        Self {
            version,
            key: cipher::random_key(),
        }
    }

    /// The version, which sealed values name to select this key.
    pub fn version(&self) -> u32 {
        self.version
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("version", &self.version)
            .field("key", &format_args!("[redacted]"))
            .finish()
    }
}

/// A data key encrypted under the master key, as persisted: `wrapped` is
/// `nonce (12) ‖ ciphertext (32) ‖ tag (16)`, with associated data
/// `"tessera:data-key:v{version}"`, so a wrapped key cannot be relabelled as another version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrappedDataKey {
    /// The data key version.
    pub version: u32,
    /// The wrapped key bytes.
    pub wrapped: Vec<u8>,
}

fn wrap_aad(version: u32) -> Vec<u8> {
    format!("tessera:data-key:v{version}").into_bytes()
}

impl MasterKey {
    /// Wraps a data key for storage.
    pub fn wrap(&self, data_key: &DataKey) -> Result<WrappedDataKey, VaultError> {
        let nonce = cipher::random_nonce();
        let ciphertext = cipher::encrypt(
            self.bytes(),
            &nonce,
            &wrap_aad(data_key.version),
            data_key.key.as_slice(),
        )?;
        let mut wrapped = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&ciphertext);
        Ok(WrappedDataKey {
            version: data_key.version,
            wrapped,
        })
    }

    /// Unwraps a stored data key. Fails if this is not the master key it was wrapped with,
    /// or if the bytes or the version were altered.
    pub fn unwrap(&self, wrapped: &WrappedDataKey) -> Result<DataKey, VaultError> {
        let failed = || VaultError::UnwrapFailed {
            version: wrapped.version,
        };
        let (nonce, ciphertext) = wrapped
            .wrapped
            .split_first_chunk::<NONCE_LEN>()
            .ok_or_else(failed)?;
        let plaintext =
            cipher::decrypt(self.bytes(), nonce, &wrap_aad(wrapped.version), ciphertext)
                .map_err(|_| failed())?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if plaintext.len() != KEY_LEN {
            return Err(failed());
        }
        key.copy_from_slice(&plaintext);
        Ok(DataKey {
            version: wrapped.version,
            key,
        })
    }
}

/// Re-wraps every data key from `old` to `new` (master key rotation). Sealed values are
/// untouched: they depend on the data keys, which do not change. Fails without producing
/// anything if any key does not unwrap under `old`.
pub fn rewrap_all(
    old: &MasterKey,
    new: &MasterKey,
    wrapped: &[WrappedDataKey],
) -> Result<Vec<WrappedDataKey>, VaultError> {
    wrapped.iter().map(|w| new.wrap(&old.unwrap(w)?)).collect()
}

/// The unwrapped data keys, by version. The highest version seals; every version opens.
/// `Debug` lists the versions only.
///
/// Versions can be added through a shared reference ([`Self::insert`]); none is ever
/// removed. The lock is held only for a map lookup and one AES-GCM operation, never across
/// an `await`.
pub struct KeyRing {
    keys: RwLock<BTreeMap<u32, DataKey>>,
}

impl KeyRing {
    /// The map, for reading. A panic while the write lock was held cannot leave the map
    /// half-updated (an insert is one `BTreeMap::insert`), so a poisoned lock is still used.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<u32, DataKey>> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Unwraps the stored data keys. Fails if there are none, if any does not unwrap under
    /// `master`, or if two different keys claim one version.
    pub fn new(master: &MasterKey, wrapped_keys: &[WrappedDataKey]) -> Result<Self, VaultError> {
        if wrapped_keys.is_empty() {
            return Err(VaultError::NoDataKeys);
        }
        let ring = Self {
            keys: RwLock::new(BTreeMap::new()),
        };
        for wrapped in wrapped_keys {
            ring.insert(master, wrapped)?;
        }
        Ok(ring)
    }

    /// A ring with one fresh data key (version 1), for a new installation. The caller
    /// persists the returned wrapped key.
    pub fn generate(master: &MasterKey) -> Result<(Self, WrappedDataKey), VaultError> {
        let key = DataKey::generate(FIRST_VERSION);
        let wrapped = master.wrap(&key)?;
        let keys = RwLock::new(BTreeMap::from([(FIRST_VERSION, key)]));
        Ok((Self { keys }, wrapped))
    }

    /// The version new values are sealed with: the highest one held.
    pub fn current_version(&self) -> u32 {
        self.read()
            .keys()
            .next_back()
            .copied()
            .unwrap_or(FIRST_VERSION)
    }

    /// All versions held, ascending (a snapshot: versions inserted later are not in it).
    pub fn versions(&self) -> impl Iterator<Item = u32> + use<> {
        self.read().keys().copied().collect::<Vec<_>>().into_iter()
    }

    /// Whether this ring holds data key `version`.
    pub fn holds(&self, version: u32) -> bool {
        self.read().contains_key(&version)
    }

    /// Creates and wraps the next data key version without adding it. Persist the result,
    /// then [`Self::insert`] it: a key used for sealing before it is stored would make those
    /// values unreadable after a crash.
    pub fn wrap_next_version(&self, master: &MasterKey) -> Result<WrappedDataKey, VaultError> {
        let current = self.current_version();
        let next = current
            .checked_add(1)
            .ok_or(VaultError::KeyVersionExhausted(current))?;
        master.wrap(&DataKey::generate(next))
    }

    /// Adds a stored data key, e.g. one another host instance or `tessera keys rotate`
    /// created; a version higher than every held one becomes current at once, for every
    /// holder of the shared ring. Inserting a version that is already held with the same key
    /// is a no-op; with a different key, an error.
    pub fn insert(&self, master: &MasterKey, wrapped: &WrappedDataKey) -> Result<(), VaultError> {
        // Unwrapped before locking: readers are never held up by the AES work.
        let key = master.unwrap(wrapped)?;
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = keys.get(&key.version) {
            return if bool::from(held.key.ct_eq(&*key.key)) {
                Ok(())
            } else {
                Err(VaultError::DuplicateKeyVersion(key.version))
            };
        }
        keys.insert(key.version, key);
        Ok(())
    }

    /// Adds a new random data key (version = current + 1) and makes it current; returns it
    /// wrapped for the caller to persist. Prefer [`Self::wrap_next_version`] and
    /// [`Self::insert`] when the ring is shared, so nothing is sealed with a key that is not
    /// stored yet.
    pub fn add_version(&self, master: &MasterKey) -> Result<WrappedDataKey, VaultError> {
        let wrapped = self.wrap_next_version(master)?;
        self.insert(master, &wrapped)?;
        Ok(wrapped)
    }

    /// Encrypts `plaintext` under the current data key, bound to `aad`.
    pub fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Result<Sealed, VaultError> {
        let keys = self.read();
        let (&key_version, key) = keys.last_key_value().ok_or(VaultError::NoDataKeys)?;
        let nonce = cipher::random_nonce();
        let ciphertext = cipher::encrypt(&key.key, &nonce, &aad.encode(key_version), plaintext)?;
        Ok(Sealed {
            key_version,
            nonce,
            ciphertext,
        })
    }

    /// Decrypts a value sealed with any version this ring holds. Fails if the version is
    /// unknown, or if the value was altered or sealed for another `aad`.
    pub fn open(&self, aad: &Aad<'_>, sealed: &Sealed) -> Result<SecretBytes, VaultError> {
        let keys = self.read();
        let key = keys
            .get(&sealed.key_version)
            .ok_or(VaultError::UnknownKeyVersion(sealed.key_version))?;
        let plaintext = cipher::decrypt(
            &key.key,
            &sealed.nonce,
            &aad.encode(sealed.key_version),
            &sealed.ciphertext,
        )?;
        Ok(SecretBytes::from(plaintext))
    }

    /// Whether `sealed` uses an older data key than the current one (the background
    /// re-encryption job's filter).
    pub fn needs_reseal(&self, sealed: &Sealed) -> bool {
        sealed.key_version < self.current_version()
    }

    /// Opens `sealed` and seals the plaintext again under the current data key, with a new
    /// nonce. The plaintext never leaves zeroizing memory.
    pub fn reseal(&self, aad: &Aad<'_>, sealed: &Sealed) -> Result<Sealed, VaultError> {
        let plaintext = self.open(aad, sealed)?;
        self.seal(aad, plaintext.expose())
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One snapshot: taking the read lock twice in one expression could deadlock behind
        // a waiting writer.
        let versions: Vec<u32> = self.versions().collect();
        f.debug_struct("KeyRing")
            .field("versions", &versions)
            .field(
                "current",
                &versions.last().copied().unwrap_or(FIRST_VERSION),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const PLAINTEXT: &[u8] = b"{\"access_token\":\"gho_very_secret\"}";

    fn aad<'a>(record_id: &'a str, app_id: &'a str, kind: &'a str) -> Aad<'a> {
        Aad {
            record_id,
            app_id,
            kind,
        }
    }

    const CREDENTIAL: Aad<'static> = Aad {
        record_id: "0196f1c2-7a1b-7c3d-9e8f-0123456789ab",
        app_id: "app-a",
        kind: "credential",
    };

    fn ring() -> (MasterKey, KeyRing) {
        let master = MasterKey::generate();
        let (ring, _) = KeyRing::generate(&master).unwrap();
        (master, ring)
    }

    fn sealed_bytes(ring: &KeyRing, aad: &Aad<'_>) -> Vec<u8> {
        ring.seal(aad, PLAINTEXT).unwrap().to_bytes()
    }

    /// Parses and opens stored bytes, as the store would.
    fn open_bytes(ring: &KeyRing, aad: &Aad<'_>, bytes: &[u8]) -> Result<SecretBytes, VaultError> {
        ring.open(aad, &Sealed::from_bytes(bytes)?)
    }

    #[test]
    fn sealed_value_round_trips_through_its_bytes() {
        let (_, ring) = ring();
        let bytes = sealed_bytes(&ring, &CREDENTIAL);
        assert!(!bytes.windows(PLAINTEXT.len()).any(|w| w == PLAINTEXT));
        let opened = open_bytes(&ring, &CREDENTIAL, &bytes).unwrap();
        assert_eq!(opened.expose(), PLAINTEXT);
    }

    #[test]
    fn sealing_twice_gives_different_ciphertexts() {
        let (_, ring) = ring();
        assert_ne!(
            sealed_bytes(&ring, &CREDENTIAL),
            sealed_bytes(&ring, &CREDENTIAL)
        );
    }

    #[test]
    fn flipping_any_single_byte_is_rejected() {
        let (_, ring) = ring();
        let bytes = sealed_bytes(&ring, &CREDENTIAL);
        for position in 0..bytes.len() {
            for bit in [0x01, 0x80] {
                let mut tampered = bytes.clone();
                tampered[position] ^= bit;
                assert!(
                    open_bytes(&ring, &CREDENTIAL, &tampered).is_err(),
                    "flipping bit {bit:#x} of byte {position} was accepted"
                );
            }
        }
    }

    #[test]
    fn truncating_at_every_length_is_rejected() {
        let (_, ring) = ring();
        let bytes = sealed_bytes(&ring, &CREDENTIAL);
        for len in 0..bytes.len() {
            assert!(
                open_bytes(&ring, &CREDENTIAL, &bytes[..len]).is_err(),
                "truncation to {len} bytes was accepted"
            );
        }
    }

    #[test]
    fn appending_bytes_is_rejected() {
        let (_, ring) = ring();
        let mut bytes = sealed_bytes(&ring, &CREDENTIAL);
        bytes.push(0);
        assert!(open_bytes(&ring, &CREDENTIAL, &bytes).is_err());
    }

    /// Seals one value for each of two rows, swaps the stored ciphertexts, and expects
    /// both opens to fail authentication.
    fn assert_swap_rejected(a: &Aad<'_>, b: &Aad<'_>) {
        let (_, ring) = ring();
        let for_a = ring.seal(a, b"secret of a").unwrap().to_bytes();
        let for_b = ring.seal(b, b"secret of b").unwrap().to_bytes();
        assert!(matches!(
            open_bytes(&ring, a, &for_b),
            Err(VaultError::Authentication)
        ));
        assert!(matches!(
            open_bytes(&ring, b, &for_a),
            Err(VaultError::Authentication)
        ));
        assert_eq!(
            open_bytes(&ring, a, &for_a).unwrap().expose(),
            b"secret of a"
        );
    }

    #[test]
    fn swapping_ciphertexts_between_records_is_rejected() {
        assert_swap_rejected(
            &aad("record-1", "app-a", "credential"),
            &aad("record-2", "app-a", "credential"),
        );
    }

    #[test]
    fn swapping_ciphertexts_between_apps_is_rejected() {
        assert_swap_rejected(
            &aad("record-1", "app-a", "credential"),
            &aad("record-1", "app-b", "credential"),
        );
    }

    #[test]
    fn swapping_ciphertexts_between_kinds_is_rejected() {
        assert_swap_rejected(
            &aad("record-1", "app-a", "credential"),
            &aad("record-1", "app-a", "client-secret"),
        );
    }

    #[test]
    fn moving_bytes_between_aad_fields_is_rejected() {
        assert_swap_rejected(&aad("ab", "c", "credential"), &aad("a", "bc", "credential"));
    }

    #[test]
    fn naming_another_held_key_version_is_rejected() {
        let (master, ring) = ring();
        ring.add_version(&master).unwrap();
        assert_eq!(ring.current_version(), 2);
        let mut bytes = sealed_bytes(&ring, &CREDENTIAL);
        bytes[3..7].copy_from_slice(&1u32.to_be_bytes());
        assert!(matches!(
            open_bytes(&ring, &CREDENTIAL, &bytes),
            Err(VaultError::Authentication)
        ));
    }

    #[test]
    fn naming_an_unknown_key_version_is_rejected() {
        let (_, ring) = ring();
        let mut bytes = sealed_bytes(&ring, &CREDENTIAL);
        bytes[3..7].copy_from_slice(&99u32.to_be_bytes());
        let err = open_bytes(&ring, &CREDENTIAL, &bytes).unwrap_err();
        assert!(matches!(err, VaultError::UnknownKeyVersion(99)));
    }

    #[test]
    fn value_sealed_by_another_ring_is_rejected() {
        let (_, ring_a) = ring();
        let (_, ring_b) = ring();
        let bytes = sealed_bytes(&ring_a, &CREDENTIAL);
        assert!(matches!(
            open_bytes(&ring_b, &CREDENTIAL, &bytes),
            Err(VaultError::Authentication)
        ));
    }

    #[test]
    fn ring_rebuilt_from_wrapped_keys_opens_old_values() {
        let master = MasterKey::generate();
        let (ring, v1) = KeyRing::generate(&master).unwrap();
        let old = ring.seal(&CREDENTIAL, PLAINTEXT).unwrap();
        let v2 = ring.add_version(&master).unwrap();
        let new = ring.seal(&CREDENTIAL, PLAINTEXT).unwrap();

        let rebuilt = KeyRing::new(&master, &[v2, v1]).unwrap();
        assert_eq!(rebuilt.current_version(), 2);
        assert_eq!(rebuilt.versions().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(rebuilt.open(&CREDENTIAL, &old).unwrap().expose(), PLAINTEXT);
        assert_eq!(rebuilt.open(&CREDENTIAL, &new).unwrap().expose(), PLAINTEXT);
    }

    #[test]
    fn wrong_master_key_fails_to_unwrap() {
        let master = MasterKey::generate();
        let (_, wrapped) = KeyRing::generate(&master).unwrap();
        let other = MasterKey::generate();
        assert!(matches!(
            other.unwrap(&wrapped),
            Err(VaultError::UnwrapFailed { version: 1 })
        ));
        assert!(matches!(
            KeyRing::new(&other, &[wrapped]),
            Err(VaultError::UnwrapFailed { version: 1 })
        ));
    }

    #[test]
    fn relabelled_or_altered_wrapped_key_fails_to_unwrap() {
        let master = MasterKey::generate();
        let wrapped = master.wrap(&DataKey::generate(3)).unwrap();
        let relabelled = WrappedDataKey {
            version: 4,
            ..wrapped.clone()
        };
        assert!(master.unwrap(&relabelled).is_err());
        for position in 0..wrapped.wrapped.len() {
            let mut altered = wrapped.clone();
            altered.wrapped[position] ^= 1;
            assert!(master.unwrap(&altered).is_err(), "byte {position}");
        }
        for len in 0..wrapped.wrapped.len() {
            let mut truncated = wrapped.clone();
            truncated.wrapped.truncate(len);
            assert!(master.unwrap(&truncated).is_err(), "length {len}");
        }
        assert_eq!(master.unwrap(&wrapped).unwrap().version(), 3);
    }

    #[test]
    fn empty_or_conflicting_wrapped_keys_are_refused() {
        let master = MasterKey::generate();
        assert!(matches!(
            KeyRing::new(&master, &[]),
            Err(VaultError::NoDataKeys)
        ));
        let a = master.wrap(&DataKey::generate(1)).unwrap();
        let b = master.wrap(&DataKey::generate(1)).unwrap();
        assert!(matches!(
            KeyRing::new(&master, &[a.clone(), b]),
            Err(VaultError::DuplicateKeyVersion(1))
        ));
        // The same key stored twice is harmless.
        assert!(KeyRing::new(&master, &[a.clone(), a]).is_ok());
    }

    #[test]
    fn reseal_moves_a_value_to_the_current_version() {
        let (master, ring) = ring();
        let old = ring.seal(&CREDENTIAL, PLAINTEXT).unwrap();
        assert!(!ring.needs_reseal(&old));

        ring.add_version(&master).unwrap();
        assert!(ring.needs_reseal(&old));
        let resealed = ring.reseal(&CREDENTIAL, &old).unwrap();
        assert_eq!(resealed.key_version(), 2);
        assert!(!ring.needs_reseal(&resealed));
        assert_eq!(
            ring.open(&CREDENTIAL, &resealed).unwrap().expose(),
            PLAINTEXT
        );
        // Values not yet resealed keep opening while the background job runs.
        assert_eq!(ring.open(&CREDENTIAL, &old).unwrap().expose(), PLAINTEXT);
    }

    #[test]
    fn reseal_refuses_a_value_from_another_row() {
        let (master, ring) = ring();
        let old = ring.seal(&CREDENTIAL, PLAINTEXT).unwrap();
        ring.add_version(&master).unwrap();
        let other = aad("record-2", "app-a", "credential");
        assert!(matches!(
            ring.reseal(&other, &old),
            Err(VaultError::Authentication)
        ));
    }

    #[test]
    fn next_version_is_not_used_until_inserted() {
        let (master, ring) = ring();
        let next = ring.wrap_next_version(&master).unwrap();
        assert_eq!(next.version, 2);
        assert_eq!(ring.seal(&CREDENTIAL, PLAINTEXT).unwrap().key_version(), 1);
        ring.insert(&master, &next).unwrap();
        assert_eq!(ring.seal(&CREDENTIAL, PLAINTEXT).unwrap().key_version(), 2);
        // Another instance inserting the same stored key is idempotent.
        ring.insert(&master, &next).unwrap();
        assert_eq!(ring.current_version(), 2);
    }

    #[test]
    fn version_inserted_through_a_shared_ring_is_seen_by_every_holder() {
        let (master, ring) = ring();
        let ring = std::sync::Arc::new(ring);
        let server = std::sync::Arc::clone(&ring);
        let old = server.seal(&CREDENTIAL, PLAINTEXT).unwrap();
        assert!(!server.holds(2));

        let next = ring.wrap_next_version(&master).unwrap();
        std::thread::spawn(move || ring.insert(&master, &next).unwrap())
            .join()
            .unwrap();

        assert!(server.holds(2));
        assert_eq!(server.current_version(), 2);
        let new = server.seal(&CREDENTIAL, PLAINTEXT).unwrap();
        assert_eq!(new.key_version(), 2);
        assert_eq!(server.open(&CREDENTIAL, &old).unwrap().expose(), PLAINTEXT);
        assert_eq!(server.open(&CREDENTIAL, &new).unwrap().expose(), PLAINTEXT);
    }

    #[test]
    fn rewrap_all_moves_data_keys_to_a_new_master_key() {
        let old_master = MasterKey::generate();
        let (ring, v1) = KeyRing::generate(&old_master).unwrap();
        let v2 = ring.add_version(&old_master).unwrap();
        let sealed = ring.seal(&CREDENTIAL, PLAINTEXT).unwrap();

        let new_master = MasterKey::generate();
        let rewrapped = rewrap_all(&old_master, &new_master, &[v1, v2]).unwrap();
        assert_eq!(
            rewrapped.iter().map(|w| w.version).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(KeyRing::new(&old_master, &rewrapped).is_err());
        let ring = KeyRing::new(&new_master, &rewrapped).unwrap();
        assert_eq!(ring.open(&CREDENTIAL, &sealed).unwrap().expose(), PLAINTEXT);

        // Rewrapping with the wrong old key produces nothing.
        assert!(rewrap_all(&MasterKey::generate(), &new_master, &rewrapped).is_err());
    }

    #[test]
    fn data_key_and_ring_debug_are_redacted() {
        let master = MasterKey::generate();
        let key = DataKey::generate(7);
        let wrapped = master.wrap(&key).unwrap();
        let unwrapped = master.unwrap(&wrapped).unwrap();
        let key_hex = hex::encode(unwrapped.key.as_slice());
        let shown = format!("{unwrapped:?} {unwrapped:#?}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(shown.contains("version: 7"), "{shown}");
        assert!(!shown.contains(&key_hex));
        assert!(!shown.contains(&format!("{:?}", unwrapped.key[0..4].to_vec())));

        let ring = KeyRing::new(&master, &[wrapped]).unwrap();
        assert_eq!(format!("{ring:?}"), "KeyRing { versions: [7], current: 7 }");
    }
}
