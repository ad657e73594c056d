//! Provider configuration routes: `PUT`, `GET` and `DELETE /v1/providers/{id}/config`, the
//! caller's app's OAuth client for one provider. Thin: scope check, parse, one service call.
//! Every route needs `providers:write`, reads included: the configuration is the app's
//! administration, not something a key that only makes calls needs to see.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tessera_proto::problem::Problem;
use tessera_proto::providers::{ProviderConfigRequest, ProviderConfigView};
use tessera_proto::scopes::Scope;

use super::grants::{change_of, json_body, request_id};
use super::openapi::{BodyTooLarge, ScopeMissing, SignatureRejected, SignedHeaders};
use super::{ApiError, ApiState, Caller};

/// `PUT /v1/providers/{id}/config`: configures the app's OAuth client for provider `id`
/// (client id, client secret, scopes, redirect URI, extra and connection parameters),
/// replacing any previous configuration whole — except the client secret, which an absent
/// `client_secret` keeps unless `clear_client_secret` is `true`. The body's `provider` may
/// be left out or empty; when given it must be `id`. The answer never holds the secret.
///
/// Scope: `providers:write`. Errors: `invalid_request` (the field is named: an empty client
/// id, a scope with whitespace, a redirect URI that is not an absolute http(s) URL or has a
/// fragment, an undeclared connection parameter, an extra parameter the connect flow sets
/// itself, a managed-secret provider, a `provider` that is not `id`), `provider_not_found`,
/// `audit_unavailable`, and the signature codes.
#[utoipa::path(
    put,
    path = "/v1/providers/{id}/config",
    tag = "providers",
    params(SignedHeaders, ("id" = String, Path, description = "The provider id.")),
    request_body(content = ProviderConfigRequest, content_type = "application/json"),
    security(("tessera_signature" = ["providers:write"])),
    responses(
        (status = 200, description = "The configuration as now stored (the secret only as `client_secret_set`).", body = ProviderConfigView),
        (status = 400, description = "`invalid_request` (malformed JSON, an invalid field — the message names it —, a managed-secret provider, a `provider` other than the path's, a malformed Tessera header), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`provider_not_found`: no provider with this id is loaded.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: a store or vault failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the configuration was stored but its audit row could not be written).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn put_config(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<ProviderConfigView>, ApiError> {
    caller.require(&[Scope::ProvidersWrite])?;
    let mut request: ProviderConfigRequest = json_body(&caller)?;
    if request.provider.is_empty() {
        request.provider.clone_from(&id);
    } else if request.provider != id {
        return Err(ApiError::InvalidRequest(format!(
            "the body names provider {:?} but the path names {id:?}",
            request.provider
        )));
    }
    let change = change_of(&caller, &request_id(), None);
    Ok(Json(
        api.configs
            .configure(caller.principal.app_id, &change, request)
            .await?,
    ))
}

/// `GET /v1/providers/{id}/config`: the app's OAuth client for provider `id`, without the
/// client secret (`client_secret_set` says whether one is stored).
///
/// Scope: `providers:write`. Errors: `provider_config_not_found` (also for another app's
/// configuration), the signature codes.
#[utoipa::path(
    get,
    path = "/v1/providers/{id}/config",
    tag = "providers",
    params(SignedHeaders, ("id" = String, Path, description = "The provider id.")),
    security(("tessera_signature" = ["providers:write"])),
    responses(
        (status = 200, description = "The configuration (the secret only as `client_secret_set`).", body = ProviderConfigView),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`provider_config_not_found`: this app has not configured the provider.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: the configuration could not be read (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`: the key or nonce store could not be read.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn get_config(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<ProviderConfigView>, ApiError> {
    caller.require(&[Scope::ProvidersWrite])?;
    Ok(Json(api.configs.get(caller.principal.app_id, &id).await?))
}

/// `DELETE /v1/providers/{id}/config`: removes the app's OAuth client for provider `id`,
/// its sealed client secret with it. Grants already connected are not touched; new connect
/// flows for the provider fail until it is configured again. `204` on success.
///
/// Scope: `providers:write`. Errors: `provider_config_not_found` (also for another app's
/// configuration), `audit_unavailable`, the signature codes.
#[utoipa::path(
    delete,
    path = "/v1/providers/{id}/config",
    tag = "providers",
    params(SignedHeaders, ("id" = String, Path, description = "The provider id.")),
    security(("tessera_signature" = ["providers:write"])),
    responses(
        (status = 204, description = "The configuration was removed."),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`provider_config_not_found`: this app has not configured the provider.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error`: a store failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, or `audit_unavailable` (the configuration was removed but its audit row could not be written).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn delete_config(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Scope::ProvidersWrite])?;
    let change = change_of(&caller, &request_id(), None);
    api.configs
        .remove(caller.principal.app_id, &change, &id)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
