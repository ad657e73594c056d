//! The wallet's HTTP routes: `GET /wallet/login`, `GET /wallet/callback`, and the JSON API
//! under `/wallet/api/`. Authenticated by the session cookie ([`SESSION_COOKIE`]: HttpOnly,
//! SameSite=Lax, `Secure` when the host is served over https, path `/wallet`); every method
//! but `GET` also needs the session's CSRF token in [`CSRF_HEADER`]. Thin: one service call
//! each.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRef, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use tessera_proto::approvals::{Approval, ApprovalPage, ApprovalStatus, DecideRequest};
use tessera_proto::audit::AuditPage;
use tessera_proto::delegations::Delegation;
use tessera_proto::grants::Grant;
use tessera_proto::problem::Problem;
use tessera_proto::wallet::{
    CSRF_HEADER, SESSION_COOKIE, WalletGrantPage, WalletReconnect, WalletSession, WalletTtlRequest,
};

use super::{WalletError, WalletUser, csrf_token};
use crate::api::{ApiError, ApiState};
use crate::audit::{Actor, AuditFilter, parse_rfc3339};
use crate::store::Timestamp;

/// The value of cookie `name` in `headers`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_owned())
}

/// A JSON request body.
fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::InvalidRequest(format!("the JSON body is not valid: {e}")))
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A request from a signed-in browser (CSRF checked for every method but `GET`).
pub struct Session {
    /// The user.
    pub user: WalletUser,
    /// The cookie's value.
    cookie: String,
}

impl<S> FromRequestParts<S> for Session
where
    ApiState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let api = ApiState::from_ref(state);
        let cookie = cookie(&parts.headers, SESSION_COOKIE).ok_or(WalletError::SessionRequired);
        let cookie = match cookie {
            Ok(c) => c,
            Err(e) => {
                // Not configured says so before "sign in".
                api.wallet.user("").await.map(|_| ())?;
                return Err(e.into());
            }
        };
        let user = api.wallet.user(&cookie).await?;
        if parts.method != Method::GET && parts.method != Method::HEAD {
            let given = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !same(given, &csrf_token(&cookie)) {
                return Err(WalletError::CsrfInvalid.into());
            }
        }
        Ok(Self { user, cookie })
    }
}

fn set_cookie(value: &str, max_age: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={value}; Path=/wallet; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .ok()
}

fn see_other(location: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// Query of `GET /wallet/login`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct LoginQuery {
    /// Where in the wallet to land afterwards (a path under `/wallet/`).
    return_to: Option<String>,
}

/// `GET /wallet/login`: starts signing in with the operator's identity provider
/// (authorization code, PKCE S256, `state`, `nonce`): `303` to its authorization page.
///
/// No authentication. Errors: `wallet_not_configured`, `idp_unavailable`.
#[utoipa::path(
    get,
    path = "/wallet/login",
    tag = "wallet",
    params(LoginQuery),
    responses(
        (status = 303, description = "To the identity provider's authorization page."),
        (status = 502, description = "`idp_unavailable`: its discovery document could not be read.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`wallet_not_configured`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn login(
    State(api): State<ApiState>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, ApiError> {
    let url = api.wallet.begin_login(q.return_to.as_deref()).await?;
    Ok(see_other(&url))
}

/// `GET /wallet/callback`: where the identity provider sends the browser back. Claims the
/// sign-in once, exchanges the code, verifies the ID token (signature, issuer, audience,
/// expiry, nonce), sets the session cookie and sends the browser on (`303`). A failed
/// sign-in goes to `/wallet/?login_error=CODE` (`access_denied`, `invalid_state`,
/// `invalid_callback`, `invalid_id_token`, `idp_error`, `idp_unavailable`).
///
/// No authentication.
#[utoipa::path(
    get,
    path = "/wallet/callback",
    tag = "wallet",
    responses(
        (status = 303, description = "Into the wallet, signed in (with `Set-Cookie`), or to `/wallet/?login_error=CODE`."),
        (status = 503, description = "`wallet_not_configured`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn callback(
    State(api): State<ApiState>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    match api.wallet.finish_login(&q).await {
        Ok((value, return_to)) => {
            let mut r = see_other(&return_to);
            if let Some(c) = set_cookie(
                &value,
                api.wallet.session_ttl().as_secs(),
                api.wallet.secure_cookie(),
            ) {
                r.headers_mut().insert(header::SET_COOKIE, c);
            }
            Ok(r)
        }
        Err(WalletError::SignIn { code, why }) => {
            tracing::info!(code, why, "a wallet sign-in failed");
            Ok(see_other(&format!("/wallet/?login_error={code}")))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /wallet/api/session`: who is signed in, the CSRF token to send with changes, and
/// the longest TTL the user may set.
///
/// Session cookie. Errors: `wallet_session_required`, `wallet_not_configured`.
#[utoipa::path(
    get,
    path = "/wallet/api/session",
    tag = "wallet",
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "The session.", body = WalletSession),
        (status = 401, description = "`wallet_session_required`: not signed in, or the session ended.", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "`wallet_not_configured`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn session(State(api): State<ApiState>, s: Session) -> Json<WalletSession> {
    let row = &s.user.session;
    Json(WalletSession {
        issuer: row.issuer.clone(),
        subject: row.subject.clone(),
        email: row.email.clone(),
        name: row.name.clone(),
        csrf_token: csrf_token(&s.cookie),
        expires_at: Timestamp::from_unix_millis(row.expires_at).to_rfc3339(),
        max_ttl_secs: api.wallet.max_ttl_secs(),
    })
}

/// `POST /wallet/api/logout`: ends the session and clears the cookie.
///
/// Session cookie and CSRF token. Errors: `wallet_session_required`, `csrf_token_invalid`.
#[utoipa::path(
    post,
    path = "/wallet/api/logout",
    tag = "wallet",
    security(("wallet_session" = [])),
    responses(
        (status = 204, description = "Signed out."),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_token_invalid`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn logout(State(api): State<ApiState>, s: Session) -> Result<Response, ApiError> {
    api.wallet.sign_out(&s.cookie).await?;
    let mut r = StatusCode::NO_CONTENT.into_response();
    if let Some(c) = set_cookie("", 0, api.wallet.secure_cookie()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(r)
}

/// `GET /wallet/api/grants`: the user's live grants in every app (by app name), each with
/// the agents it is delegated to.
///
/// Session cookie. Errors: `wallet_session_required`.
#[utoipa::path(
    get,
    path = "/wallet/api/grants",
    tag = "wallet",
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "The grants.", body = WalletGrantPage),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn grants(
    State(api): State<ApiState>,
    s: Session,
) -> Result<Json<WalletGrantPage>, ApiError> {
    Ok(Json(api.wallet.grants(&s.user).await?))
}

/// `DELETE /wallet/api/grants/{id}`: revokes one of the user's grants at once (and at the
/// provider, where it supports that); the app's next call with it fails with
/// `grant_revoked`. Audited with the user as actor, `via: wallet`.
///
/// Session cookie and CSRF token. Errors: `grant_not_found` (not the user's), the session
/// codes.
#[utoipa::path(
    delete,
    path = "/wallet/api/grants/{id}",
    tag = "wallet",
    params(("id" = String, Path, description = "The grant id.")),
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "The grant, revoked.", body = Grant),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_token_invalid`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`grant_not_found`: no grant with this id is yours.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn revoke_grant(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    s: Session,
) -> Result<Json<Grant>, ApiError> {
    Ok(Json(api.wallet.revoke_grant(&s.user, &id).await?))
}

/// `PUT /wallet/api/grants/{id}/ttl`: the grant expires `ttl_secs` from now (at most the
/// session's `max_ttl_secs`).
///
/// Session cookie and CSRF token. Errors: `invalid_request`, `grant_not_found`, the session
/// codes.
#[utoipa::path(
    put,
    path = "/wallet/api/grants/{id}/ttl",
    tag = "wallet",
    params(("id" = String, Path, description = "The grant id.")),
    request_body(content = WalletTtlRequest, content_type = "application/json"),
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "The grant with its new `valid_until`.", body = Grant),
        (status = 400, description = "`invalid_request`: a TTL out of range, malformed JSON.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_token_invalid`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`grant_not_found`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn set_ttl(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    s: Session,
    body: axum::body::Bytes,
) -> Result<Json<Grant>, ApiError> {
    let request: WalletTtlRequest = json(&body)?;
    Ok(Json(
        api.wallet
            .set_grant_ttl(&s.user, &id, request.ttl_secs)
            .await?,
    ))
}

/// `POST /wallet/api/grants/{id}/reconnect`: a connect session to connect one of the user's
/// OAuth grants again (after it needs re-authorization, or to grant missing scopes); the
/// browser goes to `connect_url` and comes back to the wallet.
///
/// Session cookie and CSRF token. Errors: `grant_not_found`, `invalid_request` (not an
/// OAuth grant, or the app's OAuth client is not configured), the session codes.
#[utoipa::path(
    post,
    path = "/wallet/api/grants/{id}/reconnect",
    tag = "wallet",
    params(("id" = String, Path, description = "The grant id.")),
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "Where to send the browser.", body = WalletReconnect),
        (status = 400, description = "`invalid_request`: a managed secret, or the app cannot connect this provider now.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_token_invalid`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`grant_not_found`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn reconnect(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    s: Session,
) -> Result<Json<WalletReconnect>, ApiError> {
    Ok(Json(api.wallet.reconnect(&s.user, &id).await?))
}

/// `PUT /wallet/api/delegations/{id}/ttl`: a delegation of one of the user's grants ends
/// `ttl_secs` from now (at most the session's `max_ttl_secs`).
///
/// Session cookie and CSRF token. Errors: `invalid_request` (out of range, or the
/// delegation has ended), `delegation_not_found`, the session codes.
#[utoipa::path(
    put,
    path = "/wallet/api/delegations/{id}/ttl",
    tag = "wallet",
    params(("id" = String, Path, description = "The delegation id.")),
    request_body(content = WalletTtlRequest, content_type = "application/json"),
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "The delegation with its new `expires_at`.", body = Delegation),
        (status = 400, description = "`invalid_request`.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_token_invalid`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`delegation_not_found`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn set_delegation_ttl(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    s: Session,
    body: axum::body::Bytes,
) -> Result<Json<Delegation>, ApiError> {
    let request: WalletTtlRequest = json(&body)?;
    Ok(Json(
        api.wallet
            .set_delegation_ttl(&s.user, &id, request.ttl_secs)
            .await?,
    ))
}

/// Query of `GET /wallet/api/grants/{id}/activity`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ActivityQuery {
    /// Only calls by this agent (id).
    agent: Option<String>,
    /// Only rows at or after this time (RFC 3339).
    since: Option<String>,
    /// Only rows before this time (RFC 3339).
    until: Option<String>,
    /// The page after this cursor (`next_after` of the previous page).
    before: Option<i64>,
    /// Rows per page (1 to 1000, default 100).
    limit: Option<u32>,
    /// `csv` for a CSV file instead of JSON.
    format: Option<String>,
}

/// `GET /wallet/api/grants/{id}/activity`: what was done with one of the user's grants,
/// newest first, from the audit log — time, app, caller, agent, method, URL, the
/// developer's reason, outcome; filtered by agent and dates, paged (`next_after` is the
/// `before` of the next page), or as CSV (`format=csv`).
///
/// Session cookie. Errors: `grant_not_found`, `invalid_request`, the session codes.
#[utoipa::path(
    get,
    path = "/wallet/api/grants/{id}/activity",
    tag = "wallet",
    params(("id" = String, Path, description = "The grant id."), ActivityQuery),
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "A page of rows, newest first (or `text/csv`).", body = AuditPage),
        (status = 400, description = "`invalid_request`: a bad date or parameter.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`grant_not_found`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn activity(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    query: Result<Query<ActivityQuery>, QueryRejection>,
    s: Session,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let time = |t: &Option<String>| {
        t.as_deref()
            .map(parse_rfc3339)
            .transpose()
            .map_err(|e| ApiError::InvalidRequest(e.to_string()))
    };
    let filter = AuditFilter {
        actor: q.agent.map(Actor::agent),
        since: time(&q.since)?,
        until: time(&q.until)?,
        before: q.before,
        limit: Some(q.limit.unwrap_or(100).clamp(1, 1000)),
        ..AuditFilter::default()
    };
    let page = api.wallet.activity(&s.user, &id, filter).await?;
    if q.format.as_deref() == Some("csv") {
        let mut r = csv(&page).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/csv; charset=utf-8"),
        );
        r.headers_mut().insert(
            header::CONTENT_DISPOSITION,
            HeaderValue::from_static("attachment; filename=\"activity.csv\""),
        );
        return Ok(r);
    }
    Ok(Json(page).into_response())
}

/// One CSV field, quoted when it must be (RFC 4180), with a leading formula character
/// neutralised so a spreadsheet does not run it.
fn field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

fn csv(page: &AuditPage) -> String {
    let mut out =
        String::from("time,action,outcome,app_id,caller,agent,method,host,path,reason,error\n");
    for e in &page.items {
        let d = &e.detail;
        let text = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
        let agent = d["agent_id"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        let cols = [
            e.at.clone(),
            e.action.clone(),
            e.outcome.clone(),
            e.app_id.clone().unwrap_or_default(),
            e.caller.clone().unwrap_or_default(),
            agent,
            text("method"),
            text("host"),
            text("path"),
            e.reason.clone().unwrap_or_default(),
            text("error"),
        ];
        let line: Vec<String> = cols.iter().map(|c| field(c)).collect();
        let _ = writeln!(out, "{}", line.join(","));
    }
    out
}

/// `DELETE /wallet/api/delegations/{id}`: ends one delegation of one of the user's grants;
/// the grant stays and the agent loses access at once.
///
/// Session cookie and CSRF token. Errors: `delegation_not_found`, the session codes.
#[utoipa::path(
    delete,
    path = "/wallet/api/delegations/{id}",
    tag = "wallet",
    params(("id" = String, Path, description = "The delegation id.")),
    security(("wallet_session" = [])),
    responses(
        (status = 204, description = "Ended."),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_token_invalid`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`delegation_not_found`: none with this id is of your grants.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn revoke_delegation(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    s: Session,
) -> Result<StatusCode, ApiError> {
    api.wallet.revoke_delegation(&s.user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Query of `GET /wallet/api/approvals`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ApprovalsQuery {
    /// Only this status (`pending`, …).
    status: Option<String>,
}

/// `GET /wallet/api/approvals`: approvals of calls made with the user's grants, newest
/// first.
///
/// Session cookie. Errors: `invalid_request`, the session codes.
#[utoipa::path(
    get,
    path = "/wallet/api/approvals",
    tag = "wallet",
    params(ApprovalsQuery),
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "The approvals.", body = ApprovalPage),
        (status = 400, description = "`invalid_request`: an unknown status.", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn approvals(
    State(api): State<ApiState>,
    query: Result<Query<ApprovalsQuery>, QueryRejection>,
    s: Session,
) -> Result<Json<ApprovalPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::InvalidRequest(e.body_text()))?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<ApprovalStatus>)
        .transpose()
        .map_err(ApiError::InvalidRequest)?;
    Ok(Json(api.wallet.approvals(&s.user, status).await?))
}

/// `GET /wallet/api/approvals/{id}`: one approval with the exact request it holds.
///
/// Session cookie. Errors: `approval_not_found`, the session codes.
#[utoipa::path(
    get,
    path = "/wallet/api/approvals/{id}",
    tag = "wallet",
    params(("id" = String, Path, description = "The approval id.")),
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "The approval.", body = Approval),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`approval_not_found`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn approval(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    s: Session,
) -> Result<Json<Approval>, ApiError> {
    Ok(Json(api.wallet.approval(&s.user, &id).await?))
}

async fn decide(
    api: &ApiState,
    id: &str,
    approve: bool,
    s: &Session,
    body: &[u8],
) -> Result<Json<Approval>, ApiError> {
    let request: DecideRequest = if body.is_empty() {
        DecideRequest::default()
    } else {
        json(body)?
    };
    Ok(Json(
        api.wallet.decide(&s.user, id, approve, &request).await?,
    ))
}

/// `POST /wallet/api/approvals/{id}/approve`: approves; the stored request is sent once.
///
/// Session cookie and CSRF token. Errors: as for `POST /v1/approvals/{id}/approve`, and the
/// session codes.
#[utoipa::path(
    post,
    path = "/wallet/api/approvals/{id}/approve",
    tag = "wallet",
    params(("id" = String, Path, description = "The approval id.")),
    request_body(content = DecideRequest, content_type = "application/json", description = "Optional: the request hash shown, a note."),
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "The approval, `executed` or `failed`.", body = Approval),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_token_invalid`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`approval_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`approval_decided` or `approval_mismatch`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`approval_expired`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn approve(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    s: Session,
    body: axum::body::Bytes,
) -> Result<Json<Approval>, ApiError> {
    decide(&api, &id, true, &s, &body).await
}

/// `POST /wallet/api/approvals/{id}/deny`: denies (final; nothing is sent).
///
/// Session cookie and CSRF token. Errors: `approval_not_found`, `approval_decided`,
/// `approval_expired`, the session codes.
#[utoipa::path(
    post,
    path = "/wallet/api/approvals/{id}/deny",
    tag = "wallet",
    params(("id" = String, Path, description = "The approval id.")),
    request_body(content = DecideRequest, content_type = "application/json", description = "Optional: a note."),
    security(("wallet_session" = [])),
    responses(
        (status = 200, description = "The approval, `denied`.", body = Approval),
        (status = 401, description = "`wallet_session_required`.", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`csrf_token_invalid`.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`approval_not_found`.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`approval_decided`.", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`approval_expired`.", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub(crate) async fn deny(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    s: Session,
    body: axum::body::Bytes,
) -> Result<Json<Approval>, ApiError> {
    decide(&api, &id, false, &s, &body).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name_and_csv_fields_are_safe() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; tessera_wallet=abc; b=2"),
        );
        assert_eq!(cookie(&h, "tessera_wallet").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "tessera"), None);
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }

    #[test]
    fn the_session_cookie_is_http_only_lax_and_secure_under_https() {
        let plain = set_cookie("v", 60, false).unwrap();
        let plain = plain.to_str().unwrap();
        assert_eq!(
            plain,
            "tessera_wallet=v; Path=/wallet; HttpOnly; SameSite=Lax; Max-Age=60"
        );
        let secure = set_cookie("v", 60, true).unwrap();
        assert!(secure.to_str().unwrap().ends_with("; Secure"));
    }
}
