//! Authentication of SDK → host requests: verifies the RFC 9421 request signature
//! described in `docs/SIGNING.md` (skew window, `Content-Digest`, key lookup,
//! constant-time HMAC comparison, nonce replay) and says who signed.
//!
//! Owns: the verification order and the `AuthError` codes, the `NonceStore` /
//! `KeyResolver` seams and their database implementations (`DbNonceStore`,
//! `DbKeyResolver`), and how an API key's signing key is sealed for storage (the vault's
//! associated data for it). The scheme
//! itself — key format, derivation, signature base — is `tessera_proto::signing`, shared
//! with the SDKs.
//!
//! Must never: log, return or put into an error message an API key, a signing key, a
//! signature or a signature base; compare secrets with `==`; accept a request before its
//! signature is verified; record a nonce for a request whose signature is not valid.

mod db;
mod error;
mod nonce;
mod verify;

pub use db::{
    DbKeyResolver, DbNonceStore, KeyCache, KeyPrincipal, NonceBatcher, SIGNING_KEY_AAD_KIND,
    nonce_batcher, open_signing_key, seal_signing_key,
};
pub use error::{AuthError, StoreError};
pub use nonce::{MemoryNonceStore, NonceOutcome, NonceStore};
pub use verify::{KeyResolver, ResolvedKey, SignedRequest, Verified, target_uri, unix_now, verify};
