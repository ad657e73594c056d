//! The app's webhook endpoint: `GET`/`PUT`/`DELETE /v1/webhook` and
//! `GET /v1/webhook/deliveries`. Thin: scope check, app key check, parse, one service call.
//! Administrative: scope `webhooks:write` (also to read), app keys only.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;
use tessera_proto::webhooks::{DeliveryPage, WebhookRequest, WebhookView};

use super::grants::{change_of, json_body, request_id};
use super::openapi::{AuthUnavailable, BodyTooLarge, SignatureRejected, SignedHeaders};
use super::{ApiError, ApiState, Caller};

/// Query of `GET /v1/webhook/deliveries`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct DeliveryQuery {
    /// Only this status: `pending`, `delivered` or `failed`.
    status: Option<String>,
}

/// `GET /v1/webhook`: where the app's events go (the secret is never shown again).
///
/// Scope: `webhooks:write`, with an app key. Errors: `webhook_not_configured`,
/// `app_key_required`, the signature codes.
#[utoipa::path(
    get,
    path = "/v1/webhook",
    tag = "webhooks",
    params(SignedHeaders),
    security(("tessera_signature" = ["webhooks:write"])),
    responses(
        (status = 200, description = "The endpoint.", body = WebhookView),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_configured`: the app has none.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn get_webhook(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<WebhookView>, ApiError> {
    caller.require(&[Scope::WebhooksWrite])?;
    let app = caller.require_app_key()?;
    Ok(Json(api.webhooks.get(app).await?))
}

/// `PUT /v1/webhook`: sets the app's endpoint (`https`, or `http` to a loopback address)
/// and the event types it gets (empty: all). The first configuration, or
/// `rotate_secret: true`, makes a signing secret, returned in this answer only. Events are
/// signed `tessera-signature: t=…,v1=…` (HMAC-SHA256 of `t.body`) and retried with backoff.
///
/// Scope: `webhooks:write`, with an app key. Errors: `invalid_request`, `app_key_required`,
/// `audit_unavailable`.
#[utoipa::path(
    put,
    path = "/v1/webhook",
    tag = "webhooks",
    params(SignedHeaders),
    request_body(content = WebhookRequest, content_type = "application/json"),
    security(("tessera_signature" = ["webhooks:write"])),
    responses(
        (status = 200, description = "The endpoint, with `secret` when one was made.", body = WebhookView),
        (status = 400, description = "`invalid_request` (a URL that is not https or loopback http, an unknown event type, malformed JSON), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (nothing changed).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn put_webhook(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<WebhookView>, ApiError> {
    caller.require(&[Scope::WebhooksWrite])?;
    let app = caller.require_app_key()?;
    let request: WebhookRequest = json_body(&caller)?;
    let change = change_of(&caller, &request_id(), None);
    Ok(Json(api.webhooks.configure(app, &request, &change).await?))
}

/// `DELETE /v1/webhook`: stops sending the app's events; undelivered ones are dropped.
///
/// Scope: `webhooks:write`, with an app key. Errors: `webhook_not_configured`,
/// `app_key_required`, `audit_unavailable`.
#[utoipa::path(
    delete,
    path = "/v1/webhook",
    tag = "webhooks",
    params(SignedHeaders),
    security(("tessera_signature" = ["webhooks:write"])),
    responses(
        (status = 204, description = "Removed."),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`webhook_not_configured`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (nothing changed).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn delete_webhook(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Scope::WebhooksWrite])?;
    let app = caller.require_app_key()?;
    let change = change_of(&caller, &request_id(), None);
    api.webhooks.remove(app, &change).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/webhook/deliveries`: the app's event deliveries, newest first (at most 500):
/// attempts, the endpoint's last answer, when the next retry is due.
///
/// Scope: `webhooks:write`, with an app key. Errors: `invalid_request`, `app_key_required`.
#[utoipa::path(
    get,
    path = "/v1/webhook/deliveries",
    tag = "webhooks",
    params(SignedHeaders, DeliveryQuery),
    security(("tessera_signature" = ["webhooks:write"])),
    responses(
        (status = 200, description = "The deliveries, newest first.", body = DeliveryPage),
        (status = 400, description = "`invalid_request` (a bad status), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, description = "`insufficient_scope` (see `missing_scopes`), or `app_key_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn list_deliveries(
    State(api): State<ApiState>,
    query: Result<Query<DeliveryQuery>, QueryRejection>,
    caller: Caller,
) -> Result<Json<DeliveryPage>, ApiError> {
    caller.require(&[Scope::WebhooksWrite])?;
    let app = caller.require_app_key()?;
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    Ok(Json(
        api.webhooks.deliveries(app, q.status.as_deref()).await?,
    ))
}
