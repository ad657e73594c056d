//! The call routes: `POST /v1/retrieve` and `POST /v1/proxy`. Thin: scope check, parse,
//! one call into [`crate::calls`], and (proxy) relaying the provider's response.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use tessera_proto::calls::{
    ProxyRequest, REQUEST_ID_HEADER, RetrieveRequest, RetrieveResponse, UPSTREAM_HEADER,
};
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;

use super::grants::{json_body, owner_of, request_id};
use super::openapi::{BodyTooLarge, ScopeMissing, SignedHeaders};
use super::{ApiError, ApiState, Caller};
use crate::calls::CallContext;

fn context(caller: &Caller) -> CallContext {
    CallContext {
        owner: owner_of(caller),
        key_id: caller.principal.key_id.to_string(),
        caller: caller.caller.clone(),
        request_id: request_id(),
        impersonating: caller.impersonating,
        client_ip: caller.client_ip,
        grant_epoch: caller.grant_epoch,
    }
}

/// `POST /v1/retrieve`: the host signs the request the SDK describes (method, URL, headers,
/// body digest, and the body itself for providers whose signature covers it) and returns
/// the headers to set and the URL to use; the SDK then sends it. Audited before the answer.
///
/// The grant is the one named by `grant_id`, or found from the caller, the `user_token`,
/// the provider (named or inferred from the URL's host) and the `account`.
///
/// Scope: `tokens:retrieve`. Errors: `invalid_request`, `grant_not_found`, `ambiguous_grant`,
/// `user_token_invalid`, `user_token_expired`, `idp_not_configured`, `grant_revoked`, `grant_reauth_required`, `host_not_allowed`,
/// `provider_rejected`, `component_failed`, `audit_unavailable`, the signature codes.
#[utoipa::path(
    post,
    path = "/v1/retrieve",
    tag = "calls",
    params(SignedHeaders),
    request_body(content = RetrieveRequest, content_type = "application/json"),
    security(("tessera_signature" = ["tokens:retrieve"])),
    responses(
        (status = 200, description = "What to change on the described request before sending it.", body = RetrieveResponse),
        (status = 400, description = "`hitl_grant_requires_proxy` (a require-approval rule covers the grant: it is used only in proxy mode), `invalid_request` (a bad URL, method, header, base64 or digest, malformed JSON or Tessera header, no provider declares the URL's host and none is named, a `provider` that is not the grant's), `host_not_allowed` (the URL's host is not one of the provider's), `idp_not_configured` (a `user_token` but the app has no identity provider), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "The signature codes (see the security scheme), or `user_token_invalid` / `user_token_expired`: the call's `user_token` was refused.", body = Problem, content_type = "application/problem+json"),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`grant_not_found`: no grant with this id is visible to the caller (also another app's), or none fits a call that named none; `provider_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`grant_reauth_required` (the user must connect again), or `ambiguous_grant`: several grants fit a call that named none; `candidates` lists them with their account labels.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`grant_revoked`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`provider_rejected`: the provider's component refused the request.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`: a store or vault failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`component_failed`: the provider's component failed.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, `idp_unavailable` (the identity provider's keys could not be fetched), or `audit_unavailable` (the call was refused because its audit row could not be written).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn retrieve(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Json<RetrieveResponse>, ApiError> {
    caller.require(&[Scope::TokensRetrieve])?;
    let request: RetrieveRequest = json_body(&caller)?;
    Ok(Json(api.calls.retrieve(&context(&caller), request).await?))
}

/// `POST /v1/proxy`: the host signs the described request, sends it to the provider (only to
/// the provider's declared hosts, redirects never followed, time and size limits) and
/// answers with the provider's status, headers and body, streamed, plus
/// `tessera-upstream: <provider>`. An answer without that header is the host's own
/// problem document. Audited (redacted wire metadata) before the answer.
///
/// Scope: `proxy:execute`. Errors: as for retrieve, plus `provider_unreachable` and
/// `response_too_large`.
#[utoipa::path(
    post,
    path = "/v1/proxy",
    tag = "calls",
    params(SignedHeaders),
    request_body(content = ProxyRequest, content_type = "application/json"),
    security(("tessera_signature" = ["proxy:execute"])),
    responses(
        (status = 200, content_type = "*/*",
            description = "The provider's own response, relayed: its status (any status, not only 200), its headers and its body (any content type), streamed. It carries `tessera-upstream: <provider id>`; a response without that header is the host's own problem document (the statuses below).",
            headers(
                ("tessera-upstream" = String, description = "The provider id: set only on a response that came from the provider."),
                ("tessera-request-id" = String, description = "The host's id for this call, also in its audit row."),
            )),
        (status = "default", content_type = "*/*",
            description = "The provider's response with any other status, relayed the same way (with `tessera-upstream`).",
            headers(
                ("tessera-upstream" = String, description = "The provider id."),
                ("tessera-request-id" = String, description = "The host's id for this call."),
            )),
        (status = 202, description = "`approval_pending`: a require-approval policy rule (`rule`) holds the call for a person; the exact request is stored and `approval_id` names it. Collect the outcome from `GET /v1/approvals/{id}/outcome`.", body = Problem, content_type = "application/problem+json"),
        (status = 400, description = "`invalid_request` (a bad URL, method, header, base64 or digest, malformed JSON or Tessera header, no provider declares the URL's host and none is named, a `provider` that is not the grant's), `host_not_allowed` (the URL's host is not one of the provider's), `idp_not_configured` (a `user_token` but the app has no identity provider), `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "The signature codes (see the security scheme), or `user_token_invalid` / `user_token_expired`: the call's `user_token` was refused.", body = Problem, content_type = "application/problem+json"),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`grant_not_found`: no grant with this id is visible to the caller (also another app's), or none fits a call that named none; `provider_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`grant_reauth_required` (the user must connect again), or `ambiguous_grant`: several grants fit a call that named none; `candidates` lists them with their account labels.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`grant_revoked`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 422, description = "`provider_rejected`: the provider's component refused the request.", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "`internal_error`: a store or vault failure (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "`provider_unreachable` (connection, TLS, timeout), `response_too_large`, or `component_failed`.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`auth_unavailable`, `idp_unavailable` (the identity provider's keys could not be fetched), or `audit_unavailable` (the call was refused because its audit row could not be written).", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(super) async fn proxy(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<Response, ApiError> {
    caller.require(&[Scope::ProxyExecute])?;
    let request: ProxyRequest = json_body(&caller)?;
    let cx = context(&caller);
    let upstream = api.calls.proxy(&cx, request).await?;
    Ok(relay(upstream, &cx.request_id))
}

/// The provider's response as the host relays it: its status, headers and body (streamed),
/// plus `tessera-upstream` and `tessera-request-id`.
pub(super) fn relay(upstream: crate::calls::ProxyResponse, request_id: &str) -> Response {
    let mut response = Response::new(Body::from_stream(upstream.body));
    *response.status_mut() =
        StatusCode::from_u16(upstream.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let headers = response.headers_mut();
    for (name, value) in &upstream.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&upstream.provider) {
        headers.insert(UPSTREAM_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, v);
    }
    response
}
