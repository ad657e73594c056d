//! Why a request failed authentication. Messages are for the caller and the log alike, so
//! they never contain key material, signatures or the signature base.

use axum::http::StatusCode;

/// A key or nonce store could not answer. Authentication then fails closed.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct StoreError {
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StoreError {
    /// A store error with a message for the log (no secrets) and an optional cause.
    pub fn new(
        message: impl Into<String>,
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            message: message.into(),
            source,
        }
    }
}

/// A request that failed signature verification, with a stable machine code
/// (`AuthError::code`) for the RFC 9457 problem document.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// `Signature-Input` or `Signature` is absent or has no `tsr` member.
    #[error("the request is not signed: Signature-Input and Signature with label tsr are required")]
    SignatureMissing,
    /// A signature field or its parameters are not well-formed.
    #[error("malformed request signature: {0}")]
    SignatureMalformed(&'static str),
    /// `alg` is not `hmac-sha256`.
    #[error("unsupported signature algorithm: only hmac-sha256 is accepted")]
    AlgorithmUnsupported,
    /// The covered components are not exactly `@method`, `@target-uri`, `content-digest`.
    #[error("the signature must cover exactly \"@method\", \"@target-uri\" and \"content-digest\"")]
    ComponentsInvalid,
    /// `created` is more than 300 s from the host's clock, in either direction.
    #[error("the signature was created {skew} s from the host's clock; at most 300 s is accepted")]
    SignatureExpired {
        /// `now - created`, in seconds (negative: created in the future).
        skew: i64,
    },
    /// No `Content-Digest` with a `sha-256` byte-sequence member.
    #[error("Content-Digest with a sha-256 member is required")]
    DigestMissing,
    /// The body does not hash to the `Content-Digest` sent.
    #[error("the body does not match Content-Digest")]
    DigestMismatch,
    /// No active key has this key id.
    #[error("unknown or inactive API key")]
    UnknownKey,
    /// The signature does not verify (wrong key, tampered request, wrong length).
    #[error("the request signature is invalid")]
    SignatureInvalid,
    /// This nonce was already used with this key inside the window.
    #[error(
        "the nonce was already used: sign every request, including retries, with a fresh nonce"
    )]
    NonceReplayed,
    /// A key or nonce store failed; the request is refused.
    #[error("authentication is temporarily unavailable")]
    Unavailable(#[source] StoreError),
}

impl AuthError {
    /// The stable machine code (`docs/SIGNING.md` §4).
    pub fn code(&self) -> &'static str {
        match self {
            Self::SignatureMissing => "signature_missing",
            Self::SignatureMalformed(_) => "signature_malformed",
            Self::AlgorithmUnsupported => "signature_algorithm_unsupported",
            Self::ComponentsInvalid => "signature_components_invalid",
            Self::SignatureExpired { .. } => "signature_expired",
            Self::DigestMissing => "digest_missing",
            Self::DigestMismatch => "digest_mismatch",
            Self::UnknownKey => "unknown_key",
            Self::SignatureInvalid => "signature_invalid",
            Self::NonceReplayed => "nonce_replayed",
            Self::Unavailable(_) => "auth_unavailable",
        }
    }

    /// The HTTP status: `503` when a store failed, `401` otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(e: StoreError) -> Self {
        Self::Unavailable(e)
    }
}
