//! Connect routes. Signed, for apps: `POST /v1/connect/sessions`,
//! `GET /v1/connect/sessions/{id}`. Unsigned, for end users' browsers: the consent page
//! `GET`/`POST /connect/{link}` and the providers' `GET /connect/callback`. Thin: scope
//! check or parse, one service call, a page or a problem document.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use tessera_proto::connect::{ConnectSession, ConnectSessionRequest};
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;

use super::grants::{json_body, owner_of};
use super::openapi::{
    AuthUnavailable, BodyTooLarge, ScopeMissing, SignatureRejected, SignedHeaders,
};
use super::{ApiError, ApiState, Caller};
use crate::oauth::connect::{Approved, FlowError};
use crate::oauth::pages;

/// `POST /v1/connect/sessions`: starts connecting an end user's account at an OAuth
/// provider. Answers the session with `connect_url`, the link to send the user to (shown
/// once: the host keeps only its hash). The link works for 30 minutes.
///
/// Scope: `connect:create`. Errors: `invalid_request` (a scope outside the configured set,
/// an unknown connection parameter, a bad `return_url`, a managed-secret provider),
/// `provider_not_found`, `provider_not_configured`, the signature codes.
#[utoipa::path(
    post,
    path = "/v1/connect/sessions",
    tag = "connect",
    params(SignedHeaders),
    request_body(content = ConnectSessionRequest, content_type = "application/json"),
    security(("tessera_signature" = ["connect:create"])),
    responses(
        (status = 201, description = "The session, with `connect_url`.", body = ConnectSession),
        (status = 400, description = "`invalid_request`, `body_unreadable`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`provider_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`provider_not_configured`: the app has no OAuth client for the provider.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn create_session(
    State(api): State<ApiState>,
    caller: Caller,
) -> Result<(StatusCode, Json<ConnectSession>), ApiError> {
    caller.require(&[Scope::ConnectCreate])?;
    let request: ConnectSessionRequest = json_body(&caller)?;
    let session = api.connect.create(owner_of(&caller), request).await?;
    Ok((StatusCode::CREATED, Json(session)))
}

/// `GET /v1/connect/sessions/{id}`: where a session is (`pending`, `authorizing`,
/// `exchanging`, `completed` with `grant_id`, `failed` with `error`, `expired`). Headless
/// clients poll it.
///
/// Scope: `connect:create`. Errors: `connect_session_not_found` (also for another app's
/// session), the signature codes.
#[utoipa::path(
    get,
    path = "/v1/connect/sessions/{id}",
    tag = "connect",
    params(SignedHeaders, ("id" = String, Path, description = "The session id.")),
    security(("tessera_signature" = ["connect:create"])),
    responses(
        (status = 200, description = "The session (without `connect_url`).", body = ConnectSession),
        (status = 400, description = "`body_unreadable`, or `invalid_request` (a malformed Tessera header).", body = Problem, content_type = "application/problem+json"),
        (status = 401, response = SignatureRejected),
        (status = 403, response = ScopeMissing),
        (status = 404, description = "`connect_session_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 413, response = BodyTooLarge),
        (status = 500, description = "`internal_error` (the cause is logged).", body = Problem, content_type = "application/problem+json"),
        (status = 503, response = AuthUnavailable),
    ),
)]
pub(super) async fn get_session(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    caller: Caller,
) -> Result<Json<ConnectSession>, ApiError> {
    caller.require(&[Scope::ConnectCreate])?;
    Ok(Json(api.connect.get(owner_of(&caller), &id).await?))
}

fn pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .into_owned()
            .collect()
    })
    .unwrap_or_default()
}

fn is_set(pairs: &[(String, String)], name: &str) -> bool {
    pairs
        .iter()
        .any(|(k, v)| k == name && (v == "1" || v == "true"))
}

/// A page for a failed flow operation: the user's words for what went wrong.
fn flow_page(e: &FlowError) -> Response {
    match e {
        FlowError::Gone(why) => pages::gone(why),
        FlowError::NotFound { .. } => pages::gone("This connect link is not valid."),
        FlowError::ProviderNotFound { .. } | FlowError::NotConfigured { .. } => {
            pages::gone(&format!("{e}. Ask the app's operator to set it up."))
        }
        FlowError::Invalid(m) => pages::gone(m),
        FlowError::Component { .. }
        | FlowError::Config(_)
        | FlowError::Vault(_)
        | FlowError::Store(_) => {
            tracing::error!(error = %e, code = e.code(), "connect page failed");
            pages::internal()
        }
    }
}

/// `GET /connect/{link}`: the consent page naming the app, the provider and the scopes in
/// words. `?popup=1` makes the end of the flow post its result to the window's opener.
#[utoipa::path(
    get,
    path = "/connect/{link}",
    tag = "connect",
    params(
        ("link" = String, Path, description = "The link token from `connect_url`."),
        ("popup" = Option<String>, Query, description = "`1`: the flow runs in a popup; its end posts `{type: \"tessera.connect\", session_id, status, error}` to the opener and closes the window."),
    ),
    responses(
        (status = 200, description = "The consent page.", content_type = "text/html"),
        (status = 400, description = "The link is unknown, used or expired (an HTML page saying so).", content_type = "text/html"),
    ),
)]
pub(super) async fn consent_page(
    State(api): State<ApiState>,
    Path(link): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let popup = is_set(&pairs(query.as_deref()), "popup");
    match api.connect.consent(&link).await {
        Ok(c) => pages::consent(&c, popup),
        Err(e) => flow_page(&e),
    }
}

/// `POST /connect/{link}`: the consent page's form. `decision=allow` sends the browser to the
/// provider's authorization page; `decision=deny` ends the session as `access_denied`.
#[utoipa::path(
    post,
    path = "/connect/{link}",
    tag = "connect",
    params(("link" = String, Path, description = "The link token from `connect_url`.")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`decision=allow|deny`, optional `popup=1`."),
    responses(
        (status = 303, description = "To the provider's authorization page, or to the app's `return_url` at the end."),
        (status = 200, description = "The end of the flow (no `return_url`, or a popup).", content_type = "text/html"),
        (status = 400, description = "The link is unknown, used or expired.", content_type = "text/html"),
    ),
)]
pub(super) async fn consent_submit(
    State(api): State<ApiState>,
    Path(link): Path<String>,
    body: Bytes,
) -> Response {
    let form = pairs(std::str::from_utf8(&body).ok());
    let popup = is_set(&form, "popup");
    let decision = form
        .iter()
        .find(|(k, _)| k == "decision")
        .map(|(_, v)| v.as_str());
    let result = match decision {
        Some("allow") => match api.connect.approve(&link, popup).await {
            Ok(Approved::Redirect(url)) => return Redirect::to(&url).into_response(),
            Ok(Approved::Finished(f)) => Ok(f),
            Err(e) => Err(e),
        },
        Some("deny") => api.connect.decline(&link, popup).await,
        _ => Err(FlowError::Invalid(
            "the form must say decision=allow or decision=deny".into(),
        )),
    };
    match result {
        Ok(f) => pages::finished(&f),
        Err(e) => flow_page(&e),
    }
}

/// `GET /connect/callback`: where providers send the end user back (the default redirect
/// URI). Checks and consumes the single-use `state`, finishes the flow (code exchange and
/// any lookups), stores the grant, then shows the result or redirects to `return_url`.
#[utoipa::path(
    get,
    path = "/connect/callback",
    tag = "connect",
    params(
        ("state" = String, Query, description = "The flow's single-use state."),
        ("code" = Option<String>, Query, description = "The authorization code."),
        ("iss" = Option<String>, Query, description = "The authorization server's issuer (RFC 9207), checked where sent."),
        ("error" = Option<String>, Query, description = "The provider's error (`access_denied`, …)."),
    ),
    responses(
        (status = 303, description = "To the app's `return_url` with `session_id`, `status` and `error`."),
        (status = 200, description = "The end of the flow (no `return_url`, or a popup).", content_type = "text/html"),
        (status = 400, description = "An unknown, used or expired `state`.", content_type = "text/html"),
    ),
)]
pub(super) async fn callback(State(api): State<ApiState>, RawQuery(query): RawQuery) -> Response {
    match api.connect.callback(pairs(query.as_deref())).await {
        Ok(f) => pages::finished(&f),
        Err(e) => flow_page(&e),
    }
}
