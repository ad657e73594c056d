//! The HTTP API for SDKs (`/v1/…`): routes, the thin handlers, request authentication
//! ([`Caller`]) and the one error type ([`ApiError`], RFC 9457 problem+json).
//!
//! Every handler follows the same shape: the [`Caller`] extractor authenticates, the first
//! line checks the route's Tessera scopes ([`Caller::require`]), then one service call and a
//! mapping of its result. Handlers hold no logic of their own.
//!
//! Must never: serve a `/v1` route without a verified signature, build the signed target URI
//! from request headers, or put a key, signature or token into a response or a log line.

mod agents;
mod approvals;
mod audit;
mod caller;
mod calls;
mod connect;
mod delegations;
mod error;
mod grants;
mod idp;
pub mod openapi;
mod policy;
mod provider_config;
mod webhooks;

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use tessera_proto::problem::Problem;
use tessera_proto::providers::ProviderSummary;
use tessera_proto::whoami::Whoami;

pub use caller::{ANY_KEY, Caller, MAX_BODY_BYTES, client_ip};
pub use error::ApiError;

use crate::agents::Agents;
use crate::apps::Apps;
use crate::audit::AuditLog;
use crate::auth::{DbKeyResolver, DbNonceStore};
use crate::calls::Calls;
use crate::grants::Grants;
use crate::oauth::config::ProviderConfigs;
use crate::oauth::connect::Connect;
use crate::plugin::Registry;
use crate::wallet::routes as wallet;

/// What the API handlers share: cheap to clone (one reference count), which matters because
/// every request clones it for each extractor that needs it.
#[derive(Clone)]
pub struct ApiState(Arc<ApiServices>);

impl std::ops::Deref for ApiState {
    type Target = ApiServices;

    fn deref(&self) -> &ApiServices {
        &self.0
    }
}

/// The services behind an [`ApiState`].
#[derive(Clone)]
pub struct ApiServices {
    /// The public origin signatures are checked against (`https://tessera.example.com`).
    pub public_origin: Arc<str>,
    /// Apps and keys.
    pub apps: Apps,
    /// The apps' agents.
    pub agents: Agents,
    /// Delegations of grants to agents.
    pub delegations: crate::delegations::Delegations,
    /// The apps' policy rules (the same service the calls decide with).
    pub policies: crate::policy::Policies,
    /// The apps' identity providers.
    pub idps: crate::identity::config::IdpConfigs,
    /// The apps' webhook endpoints.
    pub webhooks: crate::webhooks::Webhooks,
    /// The end users' wallet (not configured unless [`ApiState::with_wallet`] is called).
    pub wallet: crate::wallet::Wallet,
    /// Resolves key ids to signing keys (database + key ring).
    pub keys: DbKeyResolver,
    /// Single-use nonces (database).
    pub nonces: DbNonceStore,
    /// The loaded providers.
    pub registry: Arc<Registry>,
    /// Grants and managed secrets.
    pub grants: Grants,
    /// Retrieve and proxy.
    pub calls: Calls,
    /// The audit log.
    pub audit: AuditLog,
    /// Per-app OAuth client configuration.
    pub configs: ProviderConfigs,
    /// Connect sessions and the hosted connect pages.
    pub connect: Connect,
    /// The reverse proxies whose `X-Forwarded-For` is believed when [`Caller`] derives the
    /// client address (config `trusted_proxies`; empty unless
    /// [`ApiState::with_trusted_proxies`] is called).
    pub trusted_proxies: Arc<[ipnet::IpNet]>,
}

impl ApiState {
    /// The API state over the opened services and the public origin.
    pub fn new(apps: Apps, calls: Calls, public_origin: &str) -> Self {
        let grants = calls.grants().clone();
        let configs = grants.configs().clone();
        let connect = Connect::new(
            grants.clone(),
            configs.clone(),
            apps.keys().clone(),
            public_origin,
        );
        Self(Arc::new(ApiServices {
            configs,
            connect,
            public_origin: Arc::from(public_origin),
            keys: apps.key_resolver(),
            nonces: apps.nonce_store(),
            registry: grants.registry().clone(),
            audit: grants.audit().clone(),
            agents: apps.agents(),
            delegations: crate::delegations::Delegations::new(grants.store().clone()),
            policies: calls.policies().clone(),
            idps: crate::identity::config::IdpConfigs::new(
                grants.store().clone(),
                grants.audit().clone(),
            ),
            wallet: crate::wallet::Wallet::default(),
            webhooks: crate::webhooks::Webhooks::new(
                grants.store().clone(),
                grants.keys().clone(),
                std::time::Duration::from_secs(10),
            ),
            apps,
            grants,
            calls,
            trusted_proxies: Arc::from([]),
        }))
    }

    /// The same state, with the wallet.
    #[must_use]
    pub fn with_wallet(mut self, wallet: crate::wallet::Wallet) -> Self {
        Arc::make_mut(&mut self.0).wallet = wallet;
        self
    }

    /// The same state, with `webhooks` (its retry interval as configured).
    #[must_use]
    pub fn with_webhooks(mut self, webhooks: crate::webhooks::Webhooks) -> Self {
        Arc::make_mut(&mut self.0).webhooks = webhooks;
        self
    }

    /// The same state, believing `X-Forwarded-For` from peers in `trusted` (see
    /// [`client_ip`]).
    #[must_use]
    pub fn with_trusted_proxies(mut self, trusted: &[ipnet::IpNet]) -> Self {
        Arc::make_mut(&mut self.0).trusted_proxies = Arc::from(trusted);
        self
    }
}

/// Every route the host serves, as (method, path): the `/v1` routes and `GET /openapi.json`
/// of [`routes`], and the unauthenticated ones of `server::router`. A test in [`openapi`]
/// holds the `.route(…)` calls and the `OpenAPI` document to exactly this list, so a new route
/// goes here, gets a `#[utoipa::path]` and is listed in [`openapi::ApiDoc`].
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/whoami"),
    ("GET", "/v1/providers"),
    ("PUT", "/v1/providers/{id}/config"),
    ("GET", "/v1/providers/{id}/config"),
    ("DELETE", "/v1/providers/{id}/config"),
    ("GET", "/v1/idp"),
    ("PUT", "/v1/idp"),
    ("DELETE", "/v1/idp"),
    ("POST", "/v1/managed-secrets"),
    ("GET", "/v1/grants"),
    ("GET", "/v1/grants/{id}"),
    ("DELETE", "/v1/grants/{id}"),
    ("PUT", "/v1/grants/{id}/ttl"),
    ("POST", "/v1/retrieve"),
    ("POST", "/v1/proxy"),
    ("GET", "/v1/approvals"),
    ("GET", "/v1/approvals/{id}"),
    ("POST", "/v1/approvals/{id}/approve"),
    ("POST", "/v1/approvals/{id}/deny"),
    ("GET", "/v1/approvals/{id}/outcome"),
    ("GET", "/v1/audit"),
    ("GET", "/v1/webhook"),
    ("PUT", "/v1/webhook"),
    ("DELETE", "/v1/webhook"),
    ("GET", "/v1/webhook/deliveries"),
    ("GET", "/v1/agents"),
    ("POST", "/v1/agents"),
    ("GET", "/v1/agents/{id}"),
    ("POST", "/v1/agents/{id}/disable"),
    ("POST", "/v1/agents/{id}/enable"),
    ("GET", "/v1/delegations"),
    ("POST", "/v1/delegations"),
    ("GET", "/v1/delegations/{id}"),
    ("DELETE", "/v1/delegations/{id}"),
    ("GET", "/v1/policy/rules"),
    ("POST", "/v1/policy/rules"),
    ("GET", "/v1/policy/rules/{id}"),
    ("PUT", "/v1/policy/rules/{id}"),
    ("DELETE", "/v1/policy/rules/{id}"),
    ("GET", "/v1/policy/schema"),
    ("POST", "/v1/connect/sessions"),
    ("GET", "/v1/connect/sessions/{id}"),
    ("GET", "/wallet/"),
    ("GET", "/wallet/{*path}"),
    ("GET", "/wallet/login"),
    ("GET", "/wallet/callback"),
    ("GET", "/wallet/api/session"),
    ("POST", "/wallet/api/logout"),
    ("GET", "/wallet/api/grants"),
    ("DELETE", "/wallet/api/grants/{id}"),
    ("PUT", "/wallet/api/grants/{id}/ttl"),
    ("GET", "/wallet/api/grants/{id}/activity"),
    ("POST", "/wallet/api/grants/{id}/reconnect"),
    ("DELETE", "/wallet/api/delegations/{id}"),
    ("PUT", "/wallet/api/delegations/{id}/ttl"),
    ("GET", "/wallet/api/approvals"),
    ("GET", "/wallet/api/approvals/{id}"),
    ("POST", "/wallet/api/approvals/{id}/approve"),
    ("POST", "/wallet/api/approvals/{id}/deny"),
    ("GET", "/connect/callback"),
    ("GET", "/connect/{link}"),
    ("POST", "/connect/{link}"),
];

/// The `/v1` routes and the (unauthenticated) `OpenAPI` document, for a router whose state
/// provides an [`ApiState`].
pub fn routes<S>() -> Router<S>
where
    ApiState: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/v1/whoami", get(whoami))
        .route("/v1/providers", get(providers))
        .route(
            "/v1/providers/{id}/config",
            put(provider_config::put_config)
                .get(provider_config::get_config)
                .delete(provider_config::delete_config),
        )
        .route(
            "/v1/idp",
            get(idp::get_idp).put(idp::put_idp).delete(idp::delete_idp),
        )
        .route("/v1/managed-secrets", post(grants::set_managed_secret))
        .route("/v1/grants", get(grants::list_grants))
        .route(
            "/v1/grants/{id}",
            get(grants::get_grant).delete(grants::revoke_grant),
        )
        .route("/v1/grants/{id}/ttl", put(grants::set_grant_ttl))
        .route("/v1/retrieve", post(calls::retrieve))
        .route("/v1/proxy", post(calls::proxy))
        .route("/v1/approvals", get(approvals::list_approvals))
        .route("/v1/approvals/{id}", get(approvals::get_approval))
        .route("/v1/approvals/{id}/approve", post(approvals::approve))
        .route("/v1/approvals/{id}/deny", post(approvals::deny))
        .route("/v1/approvals/{id}/outcome", get(approvals::outcome))
        .route("/v1/audit", get(audit::list_audit))
        .route(
            "/v1/webhook",
            get(webhooks::get_webhook)
                .put(webhooks::put_webhook)
                .delete(webhooks::delete_webhook),
        )
        .route("/v1/webhook/deliveries", get(webhooks::list_deliveries))
        .route(
            "/v1/agents",
            get(agents::list_agents).post(agents::create_agent),
        )
        .route("/v1/agents/{id}", get(agents::get_agent))
        .route("/v1/agents/{id}/disable", post(agents::disable_agent))
        .route("/v1/agents/{id}/enable", post(agents::enable_agent))
        .route(
            "/v1/delegations",
            get(delegations::list_delegations).post(delegations::create_delegation),
        )
        .route(
            "/v1/delegations/{id}",
            get(delegations::get_delegation).delete(delegations::revoke_delegation),
        )
        .route(
            "/v1/policy/rules",
            get(policy::list_rules).post(policy::create_rule),
        )
        .route(
            "/v1/policy/rules/{id}",
            get(policy::get_rule)
                .put(policy::update_rule)
                .delete(policy::delete_rule),
        )
        .route("/v1/policy/schema", get(policy::schema))
        .route("/v1/connect/sessions", post(connect::create_session))
        .route("/v1/connect/sessions/{id}", get(connect::get_session))
        .route("/wallet/", get(crate::wallet::assets::index))
        .route("/wallet/{*path}", get(crate::wallet::assets::asset))
        .route("/wallet/login", get(wallet::login))
        .route("/wallet/callback", get(wallet::callback))
        .route("/wallet/api/session", get(wallet::session))
        .route("/wallet/api/logout", post(wallet::logout))
        .route("/wallet/api/grants", get(wallet::grants))
        .route("/wallet/api/grants/{id}", delete(wallet::revoke_grant))
        .route("/wallet/api/grants/{id}/ttl", put(wallet::set_ttl))
        .route("/wallet/api/grants/{id}/activity", get(wallet::activity))
        .route("/wallet/api/grants/{id}/reconnect", post(wallet::reconnect))
        .route(
            "/wallet/api/delegations/{id}/ttl",
            put(wallet::set_delegation_ttl),
        )
        .route(
            "/wallet/api/delegations/{id}",
            delete(wallet::revoke_delegation),
        )
        .route("/wallet/api/approvals", get(wallet::approvals))
        .route("/wallet/api/approvals/{id}", get(wallet::approval))
        .route("/wallet/api/approvals/{id}/approve", post(wallet::approve))
        .route("/wallet/api/approvals/{id}/deny", post(wallet::deny))
        .route("/connect/callback", get(connect::callback))
        .route(
            "/connect/{link}",
            get(connect::consent_page).post(connect::consent_submit),
        )
        .route("/openapi.json", get(openapi::openapi_json))
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
#[utoipa::path(
    get,
    path = "/v1/whoami",
    tag = "keys",
    params(openapi::SignedHeaders),
    security(("tessera_signature" = [])),
    responses(
        (status = 200, description = "Who signed the request, with the key's effective scopes.", body = Whoami),
        (status = 400, description = "`body_unreadable`, or `invalid_request`: a `tessera-constraints` header naming an unknown scope, or a Tessera header that is not visible ASCII.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = openapi::SignatureRejected),
        (status = 413, response = openapi::BodyTooLarge),
        (status = 503, response = openapi::AuthUnavailable),
    ),
)]
async fn whoami(caller: Caller) -> Result<Json<Whoami>, ApiError> {
    caller.require(ANY_KEY)?;
    Ok(Json(caller.whoami()))
}

/// `GET /v1/providers`: the provider catalogue, ordered by id.
///
/// Scope: none (any valid key). Errors: as for `GET /v1/whoami` (the signature codes,
/// `auth_unavailable`, `body_too_large`, `body_unreadable`).
#[utoipa::path(
    get,
    path = "/v1/providers",
    tag = "providers",
    params(openapi::SignedHeaders),
    security(("tessera_signature" = [])),
    responses(
        (status = 200, description = "The loaded providers, ordered by id.", body = Vec<ProviderSummary>),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = openapi::SignatureRejected),
        (status = 413, response = openapi::BodyTooLarge),
        (status = 503, response = openapi::AuthUnavailable),
    ),
)]
async fn providers(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<Vec<ProviderSummary>>, ApiError> {
    caller.require(ANY_KEY)?;
    Ok(Json(api.registry.catalogue()))
}
