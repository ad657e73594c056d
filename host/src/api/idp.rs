//! The app's identity provider: `GET`/`PUT`/`DELETE /v1/idp`. Thin: scope check, app key
//! check, parse, one service call. Administrative, like the OAuth client configuration:
//! scope `providers:write` (also to read), app keys only.

use axum::Json;
use axum::extract::State;
use tessera_proto::identity::{IdpConfigRequest, IdpConfigView};
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;

use super::grants::{change_of, json_body, request_id};
use super::openapi::{AuthUnavailable, BodyTooLarge, SignatureRejected, SignedHeaders};
use super::{ApiError, ApiState, Caller};
use crate::identity::config::to_wire;

/// `GET /v1/idp`: the identity provider the app's end users' tokens are verified against.
///
/// Scope: `providers:write`, with an app key. Errors: `idp_not_configured`,
/// `app_key_required`, the signature codes.
#[utoipa::path(
    get,
    path = "/v1/idp",
    tag = "providers",
    params(SignedHeaders),
    security(("tessera_signature" = ["providers:write"])),
    responses(
        (status = 200, description = "The app's identity provider.", body = IdpConfigView),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`idp_not_configured`: the app has none.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn get_idp(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<IdpConfigView>, ApiError> {
    caller.require(&[Scope::ProvidersWrite])?;
    let app = caller.require_app_key()?;
    Ok(Json(to_wire(&api.idps.get(app).await?)))
}

/// `PUT /v1/idp`: trusts an identity provider for the app's end users (issuer, JWKS URL or
/// discovery, audiences, groups claim, algorithms, leeway), replacing any earlier one.
///
/// Scope: `providers:write`, with an app key. Errors: `invalid_request` (the detail says
/// what: a non-https issuer or JWKS URL, no audience, an HMAC or unknown algorithm, a
/// leeway over 300 s), `app_key_required`, `audit_unavailable`.
#[utoipa::path(
    put,
    path = "/v1/idp",
    tag = "providers",
    params(SignedHeaders),
    request_body(content = IdpConfigRequest, content_type = "application/json"),
    security(("tessera_signature" = ["providers:write"])),
    responses(
        (status = 200, description = "The identity provider as now stored.", body = IdpConfigView),
        (status = 400, description = "`invalid_request`: the settings are not acceptable (the detail says why), or malformed JSON or Tessera header; `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (stored, but not recorded in the audit log).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn put_idp(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<IdpConfigView>, ApiError> {
    caller.require(&[Scope::ProvidersWrite])?;
    let app = caller.require_app_key()?;
    let request: IdpConfigRequest = json_body(&caller)?;
    let change = change_of(&caller, &request_id(), None);
    let stored = api.idps.configure(app, &change, request.into()).await?;
    Ok(Json(to_wire(&stored)))
}

/// `DELETE /v1/idp`: stops trusting the app's identity provider; calls with a
/// `user_token` then fail with `idp_not_configured`.
///
/// Scope: `providers:write`, with an app key. Errors: `idp_not_configured`,
/// `app_key_required`, `audit_unavailable`.
#[utoipa::path(
    delete,
    path = "/v1/idp",
    tag = "providers",
    params(SignedHeaders),
    security(("tessera_signature" = ["providers:write"])),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`idp_not_configured`: the app has none.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (removed, but not recorded in the audit log).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn delete_idp(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<axum::http::StatusCode, ApiError> {
    caller.require(&[Scope::ProvidersWrite])?;
    let app = caller.require_app_key()?;
    let change = change_of(&caller, &request_id(), None);
    api.idps.remove(app, &change).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}
