//! Policy routes: `GET`/`POST /v1/policy/rules`, `GET`/`PUT`/`DELETE /v1/policy/rules/{id}`
//! and `GET /v1/policy/schema`. Thin: scope check, app key check, parse, one service call.
//! Rules are managed with app keys only (`403 app_key_required` for an agent key).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use tessera_proto::policy::{PolicyRule, PolicyRulePage, RuleRequest};
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;

use super::grants::{change_of, json_body, request_id};
use super::openapi::{
    AuthUnavailable, BodyTooLarge, ScopeMissing, SignatureRejected, SignedHeaders,
};
use super::{ApiError, ApiState, Caller};

/// `GET /v1/policy/rules`: the app's policy rules, by name, each with the Cedar policy it
/// compiles to.
///
/// Scope: `policies:read`, with an app key. Errors: `app_key_required`, the signature codes.
#[utoipa::path(
    get,
    path = "/v1/policy/rules",
    tag = "policy",
    params(SignedHeaders),
    security(("tessera_signature" = ["policies:read"])),
    responses(
        (status = 200, description = "The app's rules, by name.", body = PolicyRulePage),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`: rules are managed with an app key.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn list_rules(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<PolicyRulePage>, ApiError> {
    caller.require(&[Scope::PoliciesRead])?;
    let app = caller.require_app_key()?;
    Ok(Json(PolicyRulePage {
        items: api.policies.list(app).await?,
    }))
}

/// `POST /v1/policy/rules`: adds a rule (`{"name", "applies_to", "kind", …}`); `201` with
/// the rule and its Cedar policy. It applies to calls from the next one on (on other host
/// instances within two seconds).
///
/// Scope: `policies:write`, with an app key. Errors: `invalid_request` (the message says
/// what is wrong: a bad range, day, time zone, layer, a custom policy that does not parse,
/// is not a `forbid` or does not fit the schema), `policy_rule_conflict` (the name is taken),
/// `app_key_required`, `audit_unavailable`.
#[utoipa::path(
    post,
    path = "/v1/policy/rules",
    tag = "policy",
    params(SignedHeaders),
    request_body(content = RuleRequest, content_type = "application/json"),
    security(("tessera_signature" = ["policies:write"])),
    responses(
        (status = 201, description = "The rule was created.", body = PolicyRule),
        (status = 400, description = "`invalid_request`: the rule is malformed (the detail says how), or a malformed JSON body or Tessera header; `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`policy_rule_conflict`: the app already has a rule of this name.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the audit row could not be written, so nothing was created).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn create_rule(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<(StatusCode, Json<PolicyRule>), ApiError> {
    caller.require(&[Scope::PoliciesWrite])?;
    let app = caller.require_app_key()?;
    let request: RuleRequest = json_body(&caller)?;
    let change = change_of(&caller, &request_id(), None);
    let rule = api.policies.create(app, &change, &request).await?;
    Ok((StatusCode::CREATED, Json(rule)))
}

/// `GET /v1/policy/rules/{id}`: one rule, by id or by name.
///
/// Scope: `policies:read`, with an app key. Errors: `policy_rule_not_found`,
/// `app_key_required`, the signature codes.
#[utoipa::path(
    get,
    path = "/v1/policy/rules/{id}",
    tag = "policy",
    params(SignedHeaders, ("id" = String, Path, description = "The rule's id or name.")),
    security(("tessera_signature" = ["policies:read"])),
    responses(
        (status = 200, description = "The rule.", body = PolicyRule),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`policy_rule_not_found` (also for another app's rule).", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn get_rule(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<PolicyRule>, ApiError> {
    caller.require(&[Scope::PoliciesRead])?;
    let app = caller.require_app_key()?;
    Ok(Json(api.policies.get(app, &id).await?))
}

/// `PUT /v1/policy/rules/{id}`: replaces a rule (by id or name) with the one in the body,
/// keeping its id.
///
/// Scope: `policies:write`, with an app key. Errors: as for `POST`, plus
/// `policy_rule_not_found`.
#[utoipa::path(
    put,
    path = "/v1/policy/rules/{id}",
    tag = "policy",
    params(SignedHeaders, ("id" = String, Path, description = "The rule's id or name.")),
    request_body(content = RuleRequest, content_type = "application/json"),
    security(("tessera_signature" = ["policies:write"])),
    responses(
        (status = 200, description = "The rule as now stored.", body = PolicyRule),
        (status = 400, description = "`invalid_request`: the rule is malformed (the detail says how), or a malformed JSON body or Tessera header; `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`policy_rule_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`policy_rule_conflict`: another rule has this name.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (nothing changed).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn update_rule(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<PolicyRule>, ApiError> {
    caller.require(&[Scope::PoliciesWrite])?;
    let app = caller.require_app_key()?;
    let request: RuleRequest = json_body(&caller)?;
    let change = change_of(&caller, &request_id(), None);
    Ok(Json(
        api.policies.update(app, &change, &id, &request).await?,
    ))
}

/// `DELETE /v1/policy/rules/{id}`: deletes a rule (by id or name); answers it as it was.
///
/// Scope: `policies:write`, with an app key. Errors: `policy_rule_not_found`,
/// `app_key_required`, `audit_unavailable`.
#[utoipa::path(
    delete,
    path = "/v1/policy/rules/{id}",
    tag = "policy",
    params(SignedHeaders, ("id" = String, Path, description = "The rule's id or name.")),
    security(("tessera_signature" = ["policies:write"])),
    responses(
        (status = 200, description = "The deleted rule.", body = PolicyRule),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`policy_rule_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (nothing changed).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn delete_rule(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<PolicyRule>, ApiError> {
    caller.require(&[Scope::PoliciesWrite])?;
    let app = caller.require_app_key()?;
    let change = change_of(&caller, &request_id(), None);
    Ok(Json(api.policies.delete(app, &change, &id).await?))
}

/// `GET /v1/policy/schema`: the Cedar schema (Cedar's schema syntax) calls are evaluated
/// against and custom rules are validated against: principals `User`, `Group`, `System`,
/// `Agent`; actions `retrieve` and `proxy`; resources `Grant` in `Provider`; the context.
///
/// Scope: `policies:read`. Errors: the signature codes.
#[utoipa::path(
    get,
    path = "/v1/policy/schema",
    tag = "policy",
    params(SignedHeaders),
    security(("tessera_signature" = ["policies:read"])),
    responses(
        (status = 200, description = "The schema, in Cedar's schema syntax.", body = String, content_type = "text/plain"),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 413, response = BodyTooLarge),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn schema(caller: Caller) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Scope::PoliciesRead])?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        crate::policy::SCHEMA,
    ))
}
