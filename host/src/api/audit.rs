//! `GET /v1/audit`: the caller's app's audit rows, oldest first, filtered and paged; for an
//! agent key, only the rows where that agent acted.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use serde::Deserialize;
use tessera_proto::audit::AuditPage;
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;

use super::openapi::{
    AuthUnavailable, BodyTooLarge, ScopeMissing, SignatureRejected, SignedHeaders,
};
use super::{ApiError, ApiState, Caller};
use crate::audit::{Actor, AuditFilter, page, parse_rfc3339};

/// Query of `GET /v1/audit`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Only rows about this grant.
    grant_id: Option<String>,
    /// Only rows about this provider id.
    provider: Option<String>,
    /// Only rows of this action (`tokens.retrieve`, `proxy.execute`, `grant.revoke`, …).
    action: Option<String>,
    /// Only rows with this outcome (`ok`, `denied`, `error`, `pending`).
    outcome: Option<String>,
    /// Only rows at or after this time (RFC 3339).
    #[param(format = DateTime)]
    since: Option<String>,
    /// Only rows before this time (RFC 3339).
    #[param(format = DateTime)]
    until: Option<String>,
    /// The previous page's `next_after`: rows after this sequence number.
    after: Option<i64>,
    /// Page size: default 100, clamped to 1–1000.
    limit: Option<u32>,
}

/// `GET /v1/audit`: rows of the caller's app only, oldest first, filtered by `grant_id`,
/// `provider`, `action`, `outcome`, `since`/`until` (RFC 3339); paged with `after` (the
/// previous page's `next_after`) and `limit` (1–1000, default 100). An agent key sees only
/// its own trail: the rows where that agent acted (`actor_kind` `agent`, `actor_id` its id).
///
/// Scope: `audit:read`. Errors: `invalid_request` (bad time or parameter), the signature
/// codes.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(SignedHeaders, AuditQuery),
    security(("tessera_signature" = ["audit:read"])),
    responses(
        (status = 200, description = "A page of the app's audit rows, oldest first (for an agent key: only the rows where that agent acted).", body = AuditPage),
        (status = 400, description = "`invalid_request` (a time that is not RFC 3339, a malformed Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: the audit log could not be read (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn list_audit(
    State(api): State<ApiState>,
    query: Result<Query<AuditQuery>, QueryRejection>,
    caller: Caller,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require(&[Scope::AuditRead])?;
    // Checked after authentication, so an unsigned request learns nothing from its query.
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let time = |t: Option<String>| {
        t.map(|t| {
            parse_rfc3339(&t)
                .map_err(|_| ApiError::InvalidRequest(format!("{t:?} is not an RFC 3339 time")))
        })
        .transpose()
    };
    let filter = AuditFilter {
        app_id: Some(caller.principal.app_id),
        // An agent's trail is what it did itself, not the rest of its app's log.
        actor: caller
            .principal
            .agent_id
            .map(|a| Actor::agent(a.to_string())),
        grant_id: q.grant_id,
        provider: q.provider,
        action: q.action,
        outcome: q.outcome,
        since: time(q.since)?,
        until: time(q.until)?,
        after: q.after,
        limit: q.limit,
        ..AuditFilter::default()
    };
    let found = page(api.apps.store(), &filter).await.map_err(|e| {
        tracing::error!(error = %e, "cannot read the audit log");
        ApiError::Internal("the audit log could not be read".into())
    })?;
    Ok(Json(found))
}
