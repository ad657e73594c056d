//! Approval routes: `GET /v1/approvals`, `GET /v1/approvals/{id}`,
//! `POST /v1/approvals/{id}/approve`, `POST /v1/approvals/{id}/deny` and
//! `GET /v1/approvals/{id}/outcome`. Thin: scope check, parse, one call into
//! [`crate::calls`]. Deciding takes an app key (an agent must not approve its own request);
//! an agent key sees and collects only its own approvals.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use tessera_proto::approvals::{Approval, ApprovalPage, ApprovalStatus, DecideRequest};
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;

use super::calls::relay;
use super::grants::{change_of, json_body, owner_of, request_id};
use super::openapi::{
    AuthUnavailable, BodyTooLarge, ScopeMissing, SignatureRejected, SignedHeaders,
};
use super::{ApiError, ApiState, Caller};
use crate::calls::{ApprovalFilter, MAX_WAIT};

/// Query of `GET /v1/approvals`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only this status: `pending`, `approved`, `executed`, `failed`, `denied`, `expired`.
    status: Option<String>,
    /// Only this grant's.
    grant_id: Option<String>,
    /// Only those of grants with this principal (`user:ISSUER:SUB`, `group:NAME`, …).
    principal: Option<String>,
    /// At most this many (1 to 500, default 500).
    limit: Option<u32>,
}

/// Query of `GET /v1/approvals/{id}/outcome`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct OutcomeQuery {
    /// How long to wait for a decision, in seconds (0 to 60, default 0: answer at once).
    wait: Option<u64>,
}

/// `GET /v1/approvals`: the app's approvals, newest first (an agent key: only those it asked
/// for). Lists leave the request itself out; `GET /v1/approvals/{id}` shows it.
///
/// Scope: `approvals:read`. Errors: `invalid_request`, the signature codes.
#[utoipa::path(
    get,
    path = "/v1/approvals",
    tag = "approvals",
    params(SignedHeaders, ListQuery),
    security(("tessera_signature" = ["approvals:read"])),
    responses(
        (status = 200, description = "The approvals, newest first.", body = ApprovalPage),
        (status = 400, description = "`invalid_request` (a bad query parameter, a malformed Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn list_approvals(
    State(api): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
    caller: Caller,
) -> Result<Json<ApprovalPage>, ApiError> {
    caller.require(&[Scope::ApprovalsRead])?;
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<ApprovalStatus>)
        .transpose()
        .map_err(ApiError::InvalidRequest)?;
    if q.limit.is_some_and(|l| !(1..=500).contains(&l)) {
        return Err(ApiError::InvalidRequest(
            "limit must be between 1 and 500".into(),
        ));
    }
    let filter = ApprovalFilter {
        status,
        grant_id: q.grant_id,
        principal: q.principal,
        limit: q.limit,
    };
    Ok(Json(api.calls.approvals(owner_of(&caller), &filter).await?))
}

/// `GET /v1/approvals/{id}`: one approval with the exact request it holds — method, URL,
/// headers (values that may be secret redacted), body (as text when UTF-8, and base64) and
/// the SHA-256 of the stored request, which a decision may quote.
///
/// Scope: `approvals:read`. Errors: `approval_not_found`, `approval_mismatch` (the stored
/// request was altered), the signature codes.
#[utoipa::path(
    get,
    path = "/v1/approvals/{id}",
    tag = "approvals",
    params(SignedHeaders, ("id" = String, Path, description = "The approval id.")),
    security(("tessera_signature" = ["approvals:read"])),
    responses(
        (status = 200, description = "The approval with its request.", body = Approval),
        (status = 400, description = "`invalid_request`, `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`approval_not_found`: no approval with this id is visible to the key.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`approval_mismatch`: the stored request no longer matches its hash.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn get_approval(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Approval>, ApiError> {
    caller.require(&[Scope::ApprovalsRead])?;
    Ok(Json(api.calls.approval(owner_of(&caller), &id).await?))
}

async fn decide(
    api: &ApiState,
    id: &str,
    approve: bool,
    caller: &Caller,
) -> Result<Json<Approval>, ApiError> {
    caller.require(&[Scope::ApprovalsWrite])?;
    let app = caller.require_app_key()?;
    let request: DecideRequest = if caller.body.is_empty() {
        DecideRequest::default()
    } else {
        json_body(caller)?
    };
    let change = change_of(caller, &request_id(), None);
    Ok(Json(
        api.calls
            .decide(app, id, approve, &request, &change)
            .await?,
    ))
}

/// `POST /v1/approvals/{id}/approve`: approves a pending approval and sends its stored
/// request at once, exactly as stored; answers with the approval as it ended (`executed`
/// with the provider's status, or `failed` with the call's error code). The app collects the
/// provider's response from `GET /v1/approvals/{id}/outcome`. Give `request_sha256` (from
/// `GET /v1/approvals/{id}`) to bind the decision to what was shown.
///
/// Scope: `approvals:write`, with an app key. Errors: `approval_not_found`,
/// `approval_decided` (decided already: a decision is final), `approval_expired`,
/// `approval_mismatch` (the hash shown is not the stored request's, or the stored request
/// was altered: nothing is sent), `app_key_required`, `audit_unavailable`.
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/approve",
    tag = "approvals",
    params(SignedHeaders, ("id" = String, Path, description = "The approval id.")),
    request_body(content = DecideRequest, content_type = "application/json", description = "Optional: an empty body is an approval without a hash check or note."),
    security(("tessera_signature" = ["approvals:write"])),
    responses(
        (status = 200, description = "The approval, `executed` or `failed`.", body = Approval),
        (status = 400, description = "`invalid_request` (malformed JSON, a note too long), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`: approvals are decided with an app key.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`approval_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`approval_decided` or `approval_mismatch`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`approval_expired`: nobody decided in time.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable`: the decision was not taken.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn approve(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Approval>, ApiError> {
    decide(&api, &id, true, &caller).await
}

/// `POST /v1/approvals/{id}/deny`: denies a pending approval (final; nothing is sent).
///
/// Scope: `approvals:write`, with an app key. Errors: as for approve, without
/// `approval_mismatch`.
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/deny",
    tag = "approvals",
    params(SignedHeaders, ("id" = String, Path, description = "The approval id.")),
    request_body(content = DecideRequest, content_type = "application/json", description = "Optional: a note."),
    security(("tessera_signature" = ["approvals:write"])),
    responses(
        (status = 200, description = "The approval, `denied`.", body = Approval),
        (status = 400, description = "`invalid_request`, `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`approval_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`approval_decided`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`approval_expired`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable` or `audit_unavailable`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn deny(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<Approval>, ApiError> {
    decide(&api, &id, false, &caller).await
}

/// `GET /v1/approvals/{id}/outcome`: what became of a held call, waiting up to `wait`
/// seconds for a decision. Once the approved request was sent: the provider's response,
/// relayed as `POST /v1/proxy` relays it (with `tessera-upstream`); it can be read again.
/// Undecided: `202 approval_pending` again.
///
/// Scope: `proxy:execute`. Errors: `approval_pending` (202), `approval_denied`,
/// `approval_expired`, `approval_failed` (the approved request could not be sent),
/// `approval_not_found`, the signature codes.
#[utoipa::path(
    get,
    path = "/v1/approvals/{id}/outcome",
    tag = "approvals",
    params(SignedHeaders, OutcomeQuery, ("id" = String, Path, description = "The approval id.")),
    security(("tessera_signature" = ["proxy:execute"])),
    responses(
        (status = 200, content_type = "*/*",
            description = "The provider's response to the approved request (any status), with `tessera-upstream`.",
            headers(("tessera-upstream" = String, description = "The provider id."))),
        (status = 202, description = "`approval_pending`: not decided yet; `approval_id` names it.", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "`invalid_request` (`wait` out of range), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope`, or `approval_denied` (final; the note says why when the decider gave one).", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`approval_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`approval_expired`: nobody decided in time.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`approval_failed`: approved, but the request could not be sent.", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn outcome(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<OutcomeQuery>, QueryRejection>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Scope::ProxyExecute])?;
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let wait = Duration::from_secs(q.wait.unwrap_or(0));
    if wait > MAX_WAIT {
        return Err(ApiError::InvalidRequest(format!(
            "wait may be at most {} seconds",
            MAX_WAIT.as_secs()
        )));
    }
    let upstream = api.calls.outcome(owner_of(&caller), &id, wait).await?;
    Ok(relay(upstream, &request_id()))
}
