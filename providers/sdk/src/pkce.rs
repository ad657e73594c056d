//! PKCE with the S256 method (RFC 7636). The randomness comes from the host
//! (`Context::entropy`); this module only encodes and hashes it.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::ProviderError;

/// The `code_challenge_method` value this module produces.
pub const METHOD: &str = "S256";

/// A code verifier from host entropy: base64url without padding (RFC 7636 §4.1).
///
/// Needs 32 to 96 bytes, so the verifier has the 43 to 128 characters the RFC requires.
pub fn verifier(entropy: &[u8]) -> Result<String, ProviderError> {
    if !(32..=96).contains(&entropy.len()) {
        return Err(ProviderError::InvalidInput(
            "PKCE needs 32 to 96 bytes of entropy from the host".into(),
        ));
    }
    Ok(URL_SAFE_NO_PAD.encode(entropy))
}

/// The S256 code challenge of `verifier`: `BASE64URL(SHA256(ASCII(verifier)))`.
pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636, Appendix B.
    const OCTETS: [u8; 32] = [
        116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37,
        77, 105, 214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121,
    ];

    #[test]
    fn rfc7636_appendix_b_octets_give_the_verifier() {
        assert_eq!(
            verifier(&OCTETS).unwrap(),
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        );
    }

    #[test]
    fn rfc7636_appendix_b_verifier_gives_the_challenge() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn too_little_entropy_is_refused() {
        assert!(verifier(&[0; 31]).is_err());
        assert!(verifier(&[]).is_err());
        assert_eq!(verifier(&[0; 96]).unwrap().len(), 128);
    }
}
