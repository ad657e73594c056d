//! Delegation routes: `GET`/`POST /v1/delegations`, `GET`/`DELETE /v1/delegations/{id}`.
//! Thin: scope check, parse, one service call. An app key manages every delegation of its
//! app; an agent key sees and may end only its own, and creates none
//! (`403 app_key_required`).

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tessera_proto::delegations::{CreateDelegationRequest, Delegation, DelegationPage};
use tessera_proto::grants::RevokeRequest;
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;

use super::grants::{change_of, json_body, owner_of, request_id};
use super::openapi::{
    AuthUnavailable, BodyTooLarge, ScopeMissing, SignatureRejected, SignedHeaders,
};
use super::{ApiError, ApiState, Caller};

/// Query of `GET /v1/delegations`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only this agent's (id or name).
    agent: Option<String>,
    /// Only this grant's.
    grant_id: Option<String>,
    /// `true`: revoked and expired ones too (history). Default `false`.
    include_ended: Option<bool>,
}

/// `GET /v1/delegations`: the app's delegations, newest first (live ones unless
/// `include_ended=true`; at most 500), optionally of one agent or one grant. An agent key sees
/// only its own.
///
/// Scope: `agents:read`. Errors: `invalid_request` (a bad query), `agent_not_found`, the
/// signature codes.
#[utoipa::path(
    get,
    path = "/v1/delegations",
    tag = "agents",
    params(SignedHeaders, ListQuery),
    security(("tessera_signature" = ["agents:read"])),
    responses(
        (status = 200, description = "The delegations, newest first.", body = DelegationPage),
        (status = 400, description = "`invalid_request` (a bad query parameter, a malformed Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`agent_not_found`: the `agent` filter names no agent of the app.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: the delegations could not be read (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn list_delegations(
    State(api): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    caller: Caller,
) -> Result<Json<DelegationPage>, ApiError> {
    caller.require(&[Scope::AgentsRead])?;
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    Ok(Json(
        api.delegations
            .list(
                owner_of(&caller),
                q.agent.as_deref(),
                q.grant_id.as_deref(),
                q.include_ended.unwrap_or(false),
            )
            .await?,
    ))
}

/// `POST /v1/delegations`: lets an agent (by id or name) use an existing live grant of the
/// app, for `ttl_secs` or until revoked; `201` with the delegation. The grant is untouched;
/// revoking it ends the delegation.
///
/// Scope: `agents:write`, with an app key. Errors: `invalid_request` (malformed JSON, a TTL
/// of 0 or over a year, a grant the agent owns), `app_key_required`, `grant_not_found`,
/// `agent_not_found`, `delegation_conflict` (a live one exists), `audit_unavailable`.
#[utoipa::path(
    post,
    path = "/v1/delegations",
    tag = "agents",
    params(SignedHeaders),
    request_body(content = CreateDelegationRequest, content_type = "application/json"),
    security(("tessera_signature" = ["agents:write"])),
    responses(
        (status = 201, description = "The delegation was created.", body = Delegation),
        (status = 400, description = "`invalid_request` (malformed JSON, a TTL of 0 or over a year, a grant the agent already owns, a malformed Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`: an agent key cannot create delegations.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`grant_not_found` (no live grant of the app with this id) or `agent_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`delegation_conflict`: the agent already holds a live delegation of this grant.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: a store failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the audit row could not be written, so nothing was created).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn create_delegation(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<(StatusCode, Json<Delegation>), ApiError> {
    caller.require(&[Scope::AgentsWrite])?;
    let request: CreateDelegationRequest = json_body(&caller)?;
    let change = change_of(&caller, &request_id(), None);
    let delegation = api
        .delegations
        .create(
            owner_of(&caller),
            &change,
            &request.grant_id,
            &request.agent,
            request.ttl_secs,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(delegation)))
}

/// `GET /v1/delegations/{id}`: one delegation of the app; for an agent key, only its own.
///
/// Scope: `agents:read`. Errors: `delegation_not_found` (also for another app's, or another
/// agent's for an agent key), the signature codes.
#[utoipa::path(
    get,
    path = "/v1/delegations/{id}",
    tag = "agents",
    params(SignedHeaders, ("id" = String, Path, description = "The delegation id.")),
    security(("tessera_signature" = ["agents:read"])),
    responses(
        (status = 200, description = "The delegation.", body = Delegation),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`delegation_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn get_delegation(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Delegation>, ApiError> {
    caller.require(&[Scope::AgentsRead])?;
    Ok(Json(api.delegations.get(owner_of(&caller), &id).await?))
}

/// `DELETE /v1/delegations/{id}`: ends the delegation at once; the agent's next call with the
/// grant fails with `grant_not_found`, and the grant itself is untouched. An agent key may
/// end its own delegations (giving up access). Ending an ended one answers its state.
///
/// Scope: `agents:write`. Errors: `delegation_not_found`, `audit_unavailable` (nothing
/// changed), the signature codes.
#[utoipa::path(
    delete,
    path = "/v1/delegations/{id}",
    tag = "agents",
    params(SignedHeaders, ("id" = String, Path, description = "The delegation id.")),
    request_body(content = RevokeRequest, content_type = "application/json", description = "Optional: why, for the audit log. An empty body is allowed."),
    security(("tessera_signature" = ["agents:write"])),
    responses(
        (status = 200, description = "The delegation, now revoked (or ended before).", body = Delegation),
        (status = 400, description = "`invalid_request` (a malformed JSON body or Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`delegation_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: a store failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the audit row could not be written, so nothing changed).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn revoke_delegation(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Delegation>, ApiError> {
    caller.require(&[Scope::AgentsWrite])?;
    let body: RevokeRequest = if caller.body.is_empty() {
        RevokeRequest::default()
    } else {
        json_body(&caller)?
    };
    let change = change_of(&caller, &request_id(), body.reason);
    let ended = api
        .delegations
        .revoke(owner_of(&caller), &change, &id)
        .await?;
    Ok(Json(ended.delegation))
}
