//! The HTTP API for SDKs (`/v1/…`): routes, the thin handlers, request authentication
//! ([`Caller`]) and the one error type ([`ApiError`], RFC 9457 problem+json).
//!
//! Every handler follows the same shape: the [`Caller`] extractor authenticates, the first
//! line checks the route's Tessera scopes ([`Caller::require`]), then one service call and a
//! mapping of its result. Handlers hold no logic of their own.
//!
//! Must never: serve a `/v1` route without a verified signature, build the signed target URI
//! from request headers, or put a key, signature or token into a response or a log line.

mod caller;
mod error;

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use tessera_proto::providers::ProviderSummary;
use tessera_proto::whoami::Whoami;

pub use caller::{ANY_KEY, Caller, MAX_BODY_BYTES};
pub use error::ApiError;

use crate::apps::Apps;
use crate::auth::{DbKeyResolver, DbNonceStore};
use crate::plugin::Registry;

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The public origin signatures are checked against (`https://tessera.example.com`).
    pub public_origin: Arc<str>,
    /// Apps and keys.
    pub apps: Apps,
    /// Resolves key ids to signing keys (database + key ring).
    pub keys: DbKeyResolver,
    /// Single-use nonces (database).
    pub nonces: DbNonceStore,
    /// The loaded providers.
    pub registry: Arc<Registry>,
}

impl ApiState {
    /// The API state over an opened app service, the provider registry and the public origin.
    pub fn new(apps: Apps, registry: Arc<Registry>, public_origin: &str) -> Self {
        Self {
            public_origin: Arc::from(public_origin),
            keys: apps.key_resolver(),
            nonces: apps.nonce_store(),
            apps,
            registry,
        }
    }
}

/// The `/v1` routes, for a router whose state provides an [`ApiState`].
pub fn routes<S>() -> Router<S>
where
    ApiState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/providers", get(providers))
}

/// Any path no route serves: `404 not_found` as a problem document.
pub async fn not_found() -> ApiError {
    ApiError::NotFound
}

/// A known path with a method it does not accept: `405 method_not_allowed`.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// `GET /v1/whoami`: the verified signer — app id, key id, kind (`app`/`agent`), agent id
/// and Tessera scopes.
///
/// Scope: none (any valid key). Errors: the signature codes of `docs/SIGNING.md` §4 (`401`:
/// `signature_missing`, `signature_malformed`, `signature_algorithm_unsupported`,
/// `signature_components_invalid`, `signature_expired`, `digest_missing`, `digest_mismatch`,
/// `unknown_key`, `signature_invalid`, `nonce_replayed`), `503 auth_unavailable`,
/// `413 body_too_large`, `400 body_unreadable`.
async fn whoami(caller: Caller) -> Result<Json<Whoami>, ApiError> {
    caller.require(ANY_KEY)?;
    Ok(Json(caller.whoami()))
}

/// `GET /v1/providers`: the provider catalogue, ordered by id.
///
/// Scope: none (any valid key). Errors: as for `GET /v1/whoami` (the signature codes,
/// `auth_unavailable`, `body_too_large`, `body_unreadable`).
async fn providers(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<ProviderSummary>>, ApiError> {
    caller.require(ANY_KEY)?;
    Ok(Json(api.registry.catalogue()))
}
