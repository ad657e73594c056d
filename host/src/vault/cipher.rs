//! The one place AES-256-GCM is called. Both data-key wrapping and record sealing go
//! through these two functions, so the known-answer tests below cover both.

use aes_gcm::aead::AeadInPlace;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::{Aes256Gcm, KeyInit};
use rand::RngCore;
use zeroize::Zeroizing;

use super::VaultError;

/// AES-256 key length.
pub(super) const KEY_LEN: usize = 32;
/// GCM nonce length (96 bits, the only length NIST recommends for random nonces).
pub(super) const NONCE_LEN: usize = 12;
/// GCM tag length.
pub(super) const TAG_LEN: usize = 16;

/// A fresh random nonce. Random 96-bit nonces are safe for well over the number of values
/// one data key seals between rotations.
pub(super) fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

/// A fresh random 256-bit key.
pub(super) fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::rng().fill_bytes(key.as_mut_slice());
    key
}

/// Encrypts `plaintext`, returning `ciphertext ‖ tag`.
pub(super) fn encrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let cipher = Aes256Gcm::new(GenericArray::from_slice(key));
    // Reserve room for the tag up front: a reallocation would leave a plaintext copy behind
    // in freed memory.
    let mut buffer = Vec::with_capacity(plaintext.len() + TAG_LEN);
    buffer.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(GenericArray::from_slice(nonce), aad, &mut buffer)
        .map_err(|_| {
            zeroize::Zeroize::zeroize(&mut buffer);
            VaultError::TooLarge
        })?;
    buffer.extend_from_slice(&tag);
    Ok(buffer)
}

/// Verifies and decrypts `ciphertext ‖ tag`. The plaintext only ever lives in zeroizing
/// memory; on failure nothing is decrypted.
pub(super) fn decrypt(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext_and_tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let split = ciphertext_and_tag
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(VaultError::Malformed("shorter than the authentication tag"))?;
    let (ciphertext, tag) = ciphertext_and_tag.split_at(split);
    let cipher = Aes256Gcm::new(GenericArray::from_slice(key));
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_in_place_detached(
            GenericArray::from_slice(nonce),
            aad,
            buffer.as_mut_slice(),
            GenericArray::from_slice(tag),
        )
        .map_err(|_| VaultError::Authentication)?;
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    // Known answers from "The Galois/Counter Mode of Operation (GCM)", McGrew & Viega,
    // Appendix B (the vectors NIST SP 800-38D refers to), test cases 13, 14 and 16: the
    // 256-bit-key cases with an empty message, one zero block, and a partial final block
    // with associated data.
    const TC16_KEY: &str = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
    const TC16_IV: &str = "cafebabefacedbaddecaf888";
    const TC16_P: &str = "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72\
                          1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39";
    const TC16_A: &str = "feedfacedeadbeeffeedfacedeadbeefabaddad2";
    const TC16_C: &str = "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa\
                          8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662";
    const TC16_T: &str = "76fc6ece0f4e1768cddf8853bb2d551b";

    fn key(hex_key: &str) -> [u8; KEY_LEN] {
        hex::decode(hex_key).unwrap().try_into().unwrap()
    }

    fn nonce(hex_nonce: &str) -> [u8; NONCE_LEN] {
        hex::decode(hex_nonce).unwrap().try_into().unwrap()
    }

    #[test]
    fn aes_256_gcm_matches_gcm_spec_test_case_13_empty_message() {
        let sealed = encrypt(&[0; KEY_LEN], &[0; NONCE_LEN], b"", b"").unwrap();
        assert_eq!(hex::encode(&sealed), "530f8afbc74536b9a963b4f1c4cb738b");
        assert!(
            decrypt(&[0; KEY_LEN], &[0; NONCE_LEN], b"", &sealed)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn aes_256_gcm_matches_gcm_spec_test_case_14_one_block() {
        let sealed = encrypt(&[0; KEY_LEN], &[0; NONCE_LEN], b"", &[0; 16]).unwrap();
        assert_eq!(
            hex::encode(&sealed),
            "cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"
        );
    }

    #[test]
    fn aes_256_gcm_matches_gcm_spec_test_case_16_with_associated_data() {
        let k = key(TC16_KEY);
        let iv = nonce(TC16_IV);
        let aad = hex::decode(TC16_A).unwrap();
        let plaintext = hex::decode(TC16_P).unwrap();
        let sealed = encrypt(&k, &iv, &aad, &plaintext).unwrap();
        assert_eq!(hex::encode(&sealed), format!("{TC16_C}{TC16_T}"));
        let opened = decrypt(&k, &iv, &aad, &sealed).unwrap();
        assert_eq!(opened.as_slice(), plaintext.as_slice());
    }

    #[test]
    fn gcm_spec_test_case_16_with_other_associated_data_is_rejected() {
        let sealed = hex::decode(format!("{TC16_C}{TC16_T}")).unwrap();
        let err = decrypt(&key(TC16_KEY), &nonce(TC16_IV), b"other", &sealed).unwrap_err();
        assert!(matches!(err, VaultError::Authentication));
    }

    #[test]
    fn random_nonces_and_keys_differ_between_calls() {
        assert_ne!(random_nonce(), random_nonce());
        assert_ne!(*random_key(), *random_key());
    }
}
