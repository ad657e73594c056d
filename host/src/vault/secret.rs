//! Secret values in memory: zeroized on drop, `[redacted]` under `Debug`, no `Display`.

use std::fmt;

use zeroize::Zeroizing;

/// A secret string (token, client secret, password): [`secrecy::SecretString`], zeroized on
/// drop, read only through [`secrecy::ExposeSecret`]. Its `Debug` prints `[REDACTED]`.
pub use secrecy::SecretString;

/// Opened plaintext bytes, zeroized on drop. `Debug` prints `[redacted]`; there is no
/// `Display`, `Clone` or serialization, so the bytes leave only through [`Self::expose`].
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes that are secret from now on.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The plaintext. Keep the borrow short and never log or format it.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The length in bytes (not secret: ciphertexts reveal it too).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn secret_bytes_debug_is_redacted() {
        let secret = SecretBytes::new(b"hunter2-token".to_vec());
        let shown = format!("{secret:?} {secret:#?}");
        assert_eq!(shown, "[redacted] [redacted]");
        assert_eq!(secret.expose(), b"hunter2-token");
        assert_eq!(secret.len(), 13);
    }

    #[test]
    fn secret_string_debug_does_not_show_the_value() {
        let secret = SecretString::from("hunter2-token");
        assert!(!format!("{secret:?}").contains("hunter2"));
        assert_eq!(secret.expose_secret(), "hunter2-token");
    }
}
