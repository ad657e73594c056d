//! The HTTP server: binds, serves health and readiness (unauthenticated) and the signed SDK
//! API (`api`), answers unknown routes with a problem document, shuts down on Ctrl-C or
//! SIGTERM.
//!
//! Handlers are thin; this module holds no provider logic and never sees a secret.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::api::{self, ApiState};
use crate::apps::Apps;
use crate::audit::AuditLog;
use crate::calls::Calls;
use crate::config::Config;
use crate::egress::Egress;
use crate::grants::Grants;
use crate::metrics::{self, Metrics};
use crate::plugin::Registry;

/// The state every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Host configuration.
    pub config: Arc<Config>,
    /// The loaded providers.
    pub registry: Arc<Registry>,
    /// What the signed API needs (store, key resolver, nonce store, public origin).
    pub api: ApiState,
    /// Prometheus metrics.
    pub metrics: Metrics,
}

impl FromRef<AppState> for Metrics {
    fn from_ref(state: &AppState) -> Self {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for ApiState {
    fn from_ref(state: &AppState) -> Self {
        state.api.clone()
    }
}

/// The router with every route this host serves.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::serve_metrics))
        .merge(api::routes())
        // Counts and times every routed request (after routing, so the route template is
        // known: a concrete path never becomes a label).
        .route_layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .fallback(api::not_found)
        // After every route: it applies to the routes present when it is called.
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
}

/// Binds `config.listen`, prints the address, and serves until a shutdown signal. `apps` is
/// the opened data directory (see `setup::open`).
pub async fn serve(
    config: Arc<Config>,
    registry: Arc<Registry>,
    apps: Apps,
    metrics: Metrics,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let providers = registry.list().len();
    // Printed on stdout (not only logged) so scripts and people can find the address.
    println!("tessera listening on http://{addr} ({providers} providers loaded)");
    tracing::info!(%addr, providers, "listening");
    let origin = config.public_origin(addr);
    tracing::info!(%origin, "request signatures are checked against this origin");
    log_trusted_proxies(&config);
    let egress = Egress::new(&config.egress)?;
    let audit = AuditLog::start(apps.store().clone());
    metrics.watch_audit(audit.clone());
    let grants = Grants::new(
        apps.store().clone(),
        apps.keys().clone(),
        registry.clone(),
        egress,
        audit.clone(),
    );
    tokio::spawn(purge_nonces(apps.nonce_store()));
    let calls = Calls::new(grants, audit.clone())
        .with_refresh_skew(std::time::Duration::from_secs(config.refresh_skew_secs));
    tokio::spawn(expire_approvals(calls.clone()));
    let webhooks = crate::webhooks::Webhooks::new(
        apps.store().clone(),
        apps.keys().clone(),
        std::time::Duration::from_secs(config.webhook_retry_secs),
    );
    tokio::spawn(webhooks.clone().run());
    tokio::spawn(purge_wallet_sessions(apps.store().clone()));
    let keys = apps.keys().clone();
    let api = ApiState::new(apps, calls, &origin)
        .with_trusted_proxies(&config.trusted_proxies)
        .with_webhooks(webhooks);
    let wallet = crate::wallet::Wallet::new(
        wallet_settings(&config),
        &api.calls,
        api.connect.clone(),
        keys,
        &origin,
    );
    let api = api.with_wallet(wallet);
    let app = router(AppState {
        config,
        registry,
        api,
        metrics,
    });
    // Graceful: stop accepting, let in-flight requests finish (their audit rows included),
    // then flush whatever the audit writer still holds. The connection info carries each
    // request's peer address to `api::Caller` (the client address policy rules check).
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await;
    audit.shutdown().await;
    tracing::info!("audit log flushed; stopped");
    served?;
    Ok(())
}

/// Says whose `X-Forwarded-For` is believed, and warns when that is everyone: with a `/0`
/// range any client can choose the address IP rules see.
fn log_trusted_proxies(config: &Config) {
    let trusted = &config.trusted_proxies;
    if trusted.is_empty() {
        tracing::info!("no trusted proxies: X-Forwarded-For is ignored");
        return;
    }
    let list: Vec<String> = trusted.iter().map(ToString::to_string).collect();
    tracing::info!(trusted_proxies = %list.join(","), "X-Forwarded-For is believed from these peers");
    if trusted.iter().any(|net| net.prefix_len() == 0) {
        tracing::warn!(
            "trusted_proxies holds a /0 range: every peer may set the client address; list only your proxies"
        );
    }
}

/// How often expired nonces are deleted.
const NONCE_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_mins(1);

/// Deletes nonces whose signature window has closed, at start and then every minute, so
/// the table holds about five minutes of requests rather than every request ever made.
/// Every instance does it; a delete that finds nothing costs an index lookup.
async fn purge_nonces(nonces: crate::auth::DbNonceStore) {
    let mut every = tokio::time::interval(NONCE_PURGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match nonces.purge_expired(crate::auth::unix_now()).await {
            Ok(n) => tracing::debug!(purged = n, "expired nonces deleted"),
            Err(e) => tracing::warn!(error = %e, "cannot delete expired nonces"),
        }
    }
}

/// The wallet's settings, when the operator configured its identity provider.
fn wallet_settings(config: &Config) -> Option<crate::wallet::WalletSettings> {
    let w = &config.wallet;
    if let (Some(issuer), Some(client_id)) = (&w.issuer, &w.client_id) {
        tracing::info!(%issuer, "the wallet signs users in at this identity provider");
        Some(crate::wallet::WalletSettings {
            issuer: issuer.clone(),
            client_id: client_id.clone(),
            client_secret: w.client_secret.as_deref().cloned(),
            scopes: w.scopes.clone(),
            session_ttl: std::time::Duration::from_secs(w.session_ttl_secs),
            max_ttl: std::time::Duration::from_secs(w.max_ttl_secs),
        })
    } else {
        tracing::info!("the wallet is off: set wallet.issuer and wallet.client_id");
        None
    }
}

/// Deletes ended wallet sessions and abandoned sign-ins, every minute.
async fn purge_wallet_sessions(store: crate::store::Store) {
    let mut every = tokio::time::interval(NONCE_PURGE_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        if let Err(e) = crate::store::wallet::purge(&store, crate::store::Timestamp::now()).await {
            tracing::warn!(error = %e, "cannot delete ended wallet sessions");
        }
    }
}

/// How often approvals past their deadline are marked expired.
const APPROVAL_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Marks approvals nobody decided in time as expired (with their audit rows), every few
/// seconds; reading an approval past its deadline does the same for that one at once.
async fn expire_approvals(calls: Calls) {
    let mut every = tokio::time::interval(APPROVAL_SWEEP_INTERVAL);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        match calls.expire_overdue().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "approvals expired undecided"),
            Err(e) => tracing::warn!(error = %e, "cannot expire overdue approvals"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Liveness: the process is up. Needs no authentication.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "meta",
    responses(
        (status = 200, description = "The process is up.", body = Object, example = json!({ "status": "ok" })),
    ),
)]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: providers are loaded. Needs no authentication.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "meta",
    responses(
        (status = 200, description = "Ready: the ids of the loaded providers.", body = Object,
            example = json!({ "status": "ready", "providers": ["aws", "github", "google", "oauth2", "stripe"] })),
    ),
)]
async fn readyz(State(state): State<AppState>) -> Json<serde_json::Value> {
    let providers: Vec<String> = state
        .registry
        .list()
        .iter()
        .map(|p| p.info().id.clone())
        .collect();
    Json(json!({ "status": "ready", "providers": providers }))
}
