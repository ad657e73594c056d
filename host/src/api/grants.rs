//! Grant and managed-secret routes: `POST /v1/managed-secrets`, `GET /v1/grants`,
//! `GET /v1/grants/{id}`, `DELETE /v1/grants/{id}`. Thin: scope check, parse, one service
//! call.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tessera_proto::grants::{
    Grant, GrantKind, GrantPage, GrantStatus, GrantTtlRequest, ManagedSecretRequest,
    ManagedSecretResponse, Principal, RevokeRequest,
};
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;

use super::openapi::{
    AuthUnavailable, BodyTooLarge, ScopeMissing, SignatureRejected, SignedHeaders,
};
use super::{ApiError, ApiState, Caller};
use crate::audit::{Actor, ActorKind, Origin, Via};
use crate::grants::{Change, Owner};
use crate::store::grants::{Filter, parse_kind, parse_status};

/// The owner and change origin of a signed request.
pub(super) fn owner_of(caller: &Caller) -> Owner {
    Owner {
        app_id: caller.principal.app_id,
        agent_id: caller.principal.agent_id,
    }
}

pub(super) fn change_of(caller: &Caller, request_id: &str, reason: Option<String>) -> Change {
    let actor = match caller.principal.agent_id {
        Some(agent) => Actor::new(ActorKind::Agent, agent.to_string()),
        None => Actor::new(ActorKind::AppKey, caller.principal.key_id.to_string()),
    };
    Change {
        origin: Origin {
            actor,
            via: Via::Api,
        },
        key_id: Some(caller.principal.key_id.to_string()),
        caller: caller.caller.clone(),
        request_id: Some(request_id.to_owned()),
        reason,
        impersonated_by: caller
            .impersonating
            .then(|| caller.principal.key_id.to_string()),
    }
}

/// A fresh request id (UUID v7).
pub(super) fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

pub(super) fn json_body<T: serde::de::DeserializeOwned>(caller: &Caller) -> Result<T, ApiError> {
    serde_json::from_slice(&caller.body)
        .map_err(|e| ApiError::InvalidRequest(format!("the JSON body is not valid: {e}")))
}

/// `POST /v1/managed-secrets`: stores a secret for a provider, or rotates the secret of an
/// existing grant (the grant id stays). `201` for a new grant, `200` for a rotation.
///
/// Scope: `grants:write`. Errors: `invalid_request` (unknown or missing field, OAuth
/// provider), `provider_not_found`, `provider_rejected` (the provider refused the secret),
/// `component_failed`, `provider_unreachable`, `host_not_allowed`, `grant_not_found`,
/// `grant_revoked`, `grant_conflict`, `audit_unavailable`, and the signature codes.
#[utoipa::path(
    post,
    path = "/v1/managed-secrets",
    tag = "grants",
    params(SignedHeaders),
    request_body(content = ManagedSecretRequest, content_type = "application/json"),
    security(("tessera_signature" = ["grants:write"])),
    responses(
        (status = 200, description = "An existing grant's secret was rotated (`rotated: true`).", body = ManagedSecretResponse),
        (status = 201, description = "A new grant was created (`rotated: false`).", body = ManagedSecretResponse),
        (status = 400, description = "`invalid_request` (malformed JSON, an unknown or missing field, an OAuth provider, a malformed Tessera header), `host_not_allowed`, `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`provider_not_found`, or `grant_not_found` (the `grant_id` to rotate).", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`grant_conflict`: a live grant for this provider, principal and account already exists.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`grant_revoked`: the grant to rotate is revoked.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`provider_rejected`: the provider refused the secret.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`: a store or vault failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`component_failed` or `provider_unreachable` while checking the secret.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the change was applied but its audit row could not be written).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn set_managed_secret(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<(StatusCode, Json<ManagedSecretResponse>), ApiError> {
    caller.require(&[Scope::GrantsWrite])?;
    let request: ManagedSecretRequest = json_body(&caller)?;
    let change = change_of(&caller, &request_id(), None);
    let stored = api
        .grants
        .set_managed_secret(owner_of(&caller), &change, request)
        .await?;
    let status = if stored.rotated {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(ManagedSecretResponse {
            grant: stored.grant,
            rotated: stored.rotated,
        }),
    ))
}

/// Query of `GET /v1/grants`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only grants of this provider id.
    provider: Option<String>,
    /// Only grants of this principal.
    #[param(value_type = Option<Principal>)]
    principal: Option<String>,
    /// Only grants in this status.
    #[param(value_type = Option<GrantStatus>)]
    status: Option<String>,
    /// Only grants of this kind.
    #[param(value_type = Option<GrantKind>)]
    kind: Option<String>,
    /// Page size: default 50, clamped to 1–500.
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// `GET /v1/grants`: the app's grants, newest first, filtered by `provider`, `principal`,
/// `status` (`active`, `reauth_required`, `revoked`) and `kind` (`oauth`,
/// `managed_secret`); `limit` (1–500, default 50) and `cursor` (the previous page's
/// `next_cursor`). An agent key sees only its own grants.
///
/// Scope: `grants:read`. Errors: `invalid_request` (bad filter), the signature codes.
#[utoipa::path(
    get,
    path = "/v1/grants",
    tag = "grants",
    params(SignedHeaders, ListQuery),
    security(("tessera_signature" = ["grants:read"])),
    responses(
        (status = 200, description = "A page of grants, newest first.", body = GrantPage),
        (status = 400, description = "`invalid_request` (a bad filter or cursor, a malformed Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: the grants could not be read (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn list_grants(
    State(api): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    caller: Caller,
) -> Result<Json<GrantPage>, ApiError> {
    caller.require(&[Scope::GrantsRead])?;
    // Checked after authentication, so an unsigned request learns nothing from its query.
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let bad = |what: &str, v: &str| ApiError::InvalidRequest(format!("{what} {v:?} is not valid"));
    let filter = Filter {
        provider: q.provider,
        principal: q
            .principal
            .map(|p| {
                p.parse::<Principal>()
                    .map_err(|e| ApiError::InvalidRequest(e.to_string()))
            })
            .transpose()?,
        status: q
            .status
            .map(|s| parse_status(&s).ok_or_else(|| bad("status", &s)))
            .transpose()?,
        kind: q
            .kind
            .map(|k| parse_kind(&k).ok_or_else(|| bad("kind", &k)))
            .transpose()?,
        before: q
            .cursor
            .map(|c| c.parse().map_err(|_| bad("cursor", &c)))
            .transpose()?,
        reachable_by: None,
    };
    Ok(Json(
        api.grants.list(owner_of(&caller), filter, q.limit).await?,
    ))
}

/// `GET /v1/grants/{id}`: one grant of the app.
///
/// Scope: `grants:read`. Errors: `grant_not_found` (also for another app's grant), the
/// signature codes.
#[utoipa::path(
    get,
    path = "/v1/grants/{id}",
    tag = "grants",
    params(SignedHeaders, ("id" = String, Path, description = "The grant id.")),
    security(("tessera_signature" = ["grants:read"])),
    responses(
        (status = 200, description = "The grant.", body = Grant),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`grant_not_found` (also for another app's grant).", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: the grant could not be read (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn get_grant(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Grant>, ApiError> {
    caller.require(&[Scope::GrantsRead])?;
    Ok(Json(api.grants.get(owner_of(&caller), &id).await?))
}

/// `DELETE /v1/grants/{id}`: revokes the grant at once and deletes its secret material;
/// revokes upstream where the provider supports it. The optional JSON body
/// (`{"reason": "…"}`) goes to the audit row. Revoking a revoked grant answers its current
/// state.
///
/// Scope: `grants:write`. Errors: `grant_not_found`, `audit_unavailable`, the signature
/// codes.
#[utoipa::path(
    delete,
    path = "/v1/grants/{id}",
    tag = "grants",
    params(SignedHeaders, ("id" = String, Path, description = "The grant id.")),
    request_body(content = RevokeRequest, content_type = "application/json", description = "Optional: why the grant is revoked, for the audit log. An empty body is allowed."),
    security(("tessera_signature" = ["grants:write"])),
    responses(
        (status = 200, description = "The grant, now revoked (or already revoked before).", body = Grant),
        (status = 400, description = "`invalid_request` (a malformed JSON body or Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`grant_not_found` (also for another app's grant).", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: a store failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the grant was revoked but its audit row could not be written).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn revoke_grant(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Grant>, ApiError> {
    caller.require(&[Scope::GrantsWrite])?;
    let body: RevokeRequest = if caller.body.is_empty() {
        RevokeRequest::default()
    } else {
        json_body(&caller)?
    };
    let change = change_of(&caller, &request_id(), body.reason);
    let outcome = api.grants.revoke(owner_of(&caller), &change, &id).await?;
    Ok(Json(outcome.grant))
}

/// `PUT /v1/grants/{id}/ttl`: gives the grant a hard expiry `ttl_secs` from now, or takes it
/// away (`null`). After it, calls with the grant fail with `410 grant_expired` until it is
/// extended again or the user connects again. An expired grant can be extended; a revoked
/// one cannot.
///
/// Scope: `grants:write`. Errors: `invalid_request` (a TTL of 0 or over two years),
/// `grant_not_found`, `grant_revoked`, `audit_unavailable`, the signature codes.
#[utoipa::path(
    put,
    path = "/v1/grants/{id}/ttl",
    tag = "grants",
    params(SignedHeaders, ("id" = String, Path, description = "The grant id.")),
    request_body(content = GrantTtlRequest, content_type = "application/json"),
    security(("tessera_signature" = ["grants:write"])),
    responses(
        (status = 200, description = "The grant, with its new `valid_until`.", body = Grant),
        (status = 400, description = "`invalid_request` (a TTL of 0 or over two years, malformed JSON or Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`grant_not_found` (also for another app's grant).", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`grant_revoked`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: a store failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the TTL was set but its audit row could not be written).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn set_grant_ttl(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Grant>, ApiError> {
    caller.require(&[Scope::GrantsWrite])?;
    let body: GrantTtlRequest = json_body(&caller)?;
    let change = change_of(&caller, &request_id(), None);
    let ttl = body.ttl_secs.map(std::time::Duration::from_secs);
    Ok(Json(
        api.grants
            .set_ttl(owner_of(&caller), &change, &id, ttl)
            .await?,
    ))
}
