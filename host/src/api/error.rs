//! [`ApiError`]: every way an API request can fail, rendered as one RFC 9457
//! `application/problem+json` document ([`tessera_proto::problem::Problem`]) with a stable
//! machine `code`.
//!
//! The `detail` a caller sees is the error's `Display`, which never holds key material,
//! signatures or tokens; causes that only the operator should see (a store failure's source)
//! go to the log, never into the body.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tessera_proto::problem::{self, Problem};
use tessera_proto::scopes::Scope;

use crate::auth::AuthError;

/// Why an API request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request signature did not verify, or the key or nonce store failed (the code and
    /// status are [`AuthError::code`] and [`AuthError::status`]).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The key is valid but lacks Tessera scopes this route needs.
    #[error("this API key lacks the scopes this request needs: {}", Scope::join(.missing))]
    InsufficientScope {
        /// The scopes the route needs that the key does not have, in catalog order.
        missing: Vec<Scope>,
    },
    /// The request body is larger than the host accepts.
    #[error("the request body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The request body could not be read (the connection failed mid-body).
    #[error("the request body could not be read")]
    BodyUnreadable,
    /// The request is malformed (a query parameter, header or JSON body).
    #[error("{0}")]
    InvalidRequest(String),
    /// A grant operation failed.
    #[error(transparent)]
    Grant(#[from] crate::grants::GrantError),
    /// A call (retrieve or proxy) failed.
    #[error(transparent)]
    Call(#[from] crate::calls::CallError),
    /// A connect session operation failed.
    #[error(transparent)]
    Connect(#[from] crate::oauth::connect::FlowError),
    /// A provider configuration operation failed.
    #[error(transparent)]
    ProviderConfig(#[from] crate::oauth::config::ConfigError),
    /// An agent operation failed.
    #[error(transparent)]
    Agent(#[from] crate::agents::AgentError),
    /// A delegation operation failed.
    #[error(transparent)]
    Delegation(#[from] crate::delegations::DelegationError),
    /// A policy rule operation failed.
    #[error(transparent)]
    Policy(#[from] crate::policy::PolicyError),
    /// An identity provider operation failed.
    #[error(transparent)]
    Idp(#[from] crate::identity::config::IdpConfigError),
    /// A webhook operation failed.
    #[error(transparent)]
    Webhook(#[from] crate::webhooks::WebhookError),
    /// A wallet request failed.
    #[error(transparent)]
    Wallet(#[from] crate::wallet::WalletError),
    /// A service the request needs failed (database, audit); the cause is logged.
    #[error("{0}")]
    Internal(String),
    /// No route has this path.
    #[error("no such endpoint")]
    NotFound,
    /// The path exists but not with this method.
    #[error("this endpoint does not accept this method")]
    MethodNotAllowed,
}

impl ApiError {
    /// The stable machine code of the problem document.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Auth(e) => e.code(),
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyUnreadable => "body_unreadable",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Grant(e) => crate::calls::CallError::grant_code(e),
            Self::Call(e) => e.code(),
            Self::Connect(e) => e.code(),
            Self::ProviderConfig(e) => e.code(),
            Self::Agent(e) => e.code(),
            Self::Delegation(e) => e.code(),
            Self::Policy(e) => e.code(),
            Self::Idp(e) => e.code(),
            Self::Webhook(e) => e.code(),
            Self::Wallet(e) => e.code(),
            Self::Internal(_) => "internal_error",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Auth(e) => e.status(),
            Self::InsufficientScope { .. } => StatusCode::FORBIDDEN,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyUnreadable | Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::Grant(e) => status_of(crate::calls::CallError::grant_code(e)),
            Self::Call(e) => status_of(e.code()),
            Self::Connect(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::ProviderConfig(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Agent(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Delegation(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Policy(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Idp(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Webhook(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Wallet(e) => {
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The problem document this error renders as.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        Problem {
            problem_type: problem::ABOUT_BLANK.to_owned(),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            code: self.code().to_owned(),
            missing_scopes: match self {
                Self::InsufficientScope { missing } => Some(missing.clone()),
                _ => None,
            },
            rule: match self {
                Self::Call(
                    crate::calls::CallError::PolicyDenied { rule, .. }
                    | crate::calls::CallError::RateLimited { rule, .. }
                    | crate::calls::CallError::HitlRequiresProxy { rule }
                    | crate::calls::CallError::ApprovalPending { rule, .. },
                ) => Some(rule.clone()),
                _ => None,
            },
            candidates: match self {
                Self::Call(crate::calls::CallError::AmbiguousGrant { candidates, .. }) => {
                    Some(candidates.clone())
                }
                _ => None,
            },
            approval_id: match self {
                Self::Call(
                    crate::calls::CallError::ApprovalPending {
                        approval_id: id, ..
                    }
                    | crate::calls::CallError::ApprovalNotFound { id }
                    | crate::calls::CallError::ApprovalDecided { id, .. }
                    | crate::calls::CallError::ApprovalDenied { id, .. }
                    | crate::calls::CallError::ApprovalExpired { id }
                    | crate::calls::CallError::ApprovalFailed { id, .. },
                ) => Some(id.clone()),
                _ => None,
            },
        }
    }
}

fn status_of(code: &str) -> StatusCode {
    StatusCode::from_u16(crate::calls::status_for_code(code))
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.code();
        if self.status().is_server_error() {
            // The cause (which store failed, and why) is for the operator only.
            let mut cause = String::new();
            let mut next = std::error::Error::source(&self);
            while let Some(e) = next {
                cause.push_str(": ");
                cause.push_str(&e.to_string());
                next = e.source();
            }
            tracing::error!(code, error = %self, cause, "request failed");
        } else {
            tracing::debug!(code, "request refused");
        }
        let mut response = (self.status(), Json(self.problem())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(problem::CONTENT_TYPE),
        );
        if let Self::Call(crate::calls::CallError::RateLimited { retry_after, .. }) = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::StoreError;

    #[test]
    fn every_auth_error_keeps_its_code_and_status() {
        let cases = [
            (
                ApiError::from(AuthError::SignatureMissing),
                401,
                "signature_missing",
            ),
            (
                AuthError::SignatureMalformed("x").into(),
                401,
                "signature_malformed",
            ),
            (
                AuthError::AlgorithmUnsupported.into(),
                401,
                "signature_algorithm_unsupported",
            ),
            (
                AuthError::ComponentsInvalid.into(),
                401,
                "signature_components_invalid",
            ),
            (
                AuthError::SignatureExpired { skew: 301 }.into(),
                401,
                "signature_expired",
            ),
            (AuthError::DigestMissing.into(), 401, "digest_missing"),
            (AuthError::DigestMismatch.into(), 401, "digest_mismatch"),
            (AuthError::UnknownKey.into(), 401, "unknown_key"),
            (AuthError::SignatureInvalid.into(), 401, "signature_invalid"),
            (AuthError::NonceReplayed.into(), 401, "nonce_replayed"),
            (
                AuthError::Unavailable(StoreError::new("db down", None)).into(),
                503,
                "auth_unavailable",
            ),
        ];
        for (error, status, code) in cases {
            let p = error.problem();
            assert_eq!((p.status, p.code.as_str()), (status, code));
            assert!(p.missing_scopes.is_none());
        }
    }

    #[test]
    fn store_failure_detail_does_not_leak_the_cause() {
        let e = ApiError::from(AuthError::Unavailable(StoreError::new(
            "cannot read the API key table at /secret/path",
            None,
        )));
        assert!(!e.problem().detail.contains("/secret/path"));
    }

    #[test]
    fn provider_config_errors_keep_their_codes_and_statuses() {
        use crate::oauth::config::ConfigError;
        let cases = [
            (
                ApiError::from(ConfigError::NotFound {
                    provider: "github".into(),
                }),
                404,
                "provider_config_not_found",
            ),
            (
                ConfigError::ProviderNotFound { id: "nope".into() }.into(),
                404,
                "provider_not_found",
            ),
            (
                ConfigError::Invalid("client_id is required".into()).into(),
                400,
                "invalid_request",
            ),
            (
                ConfigError::Store(crate::store::StoreError::Batch("/secret/path".into())).into(),
                500,
                "internal_error",
            ),
        ];
        for (error, status, code) in cases {
            let p = error.problem();
            assert_eq!((p.status, p.code.as_str()), (status, code));
            assert!(!p.detail.contains("/secret/path"), "{}", p.detail);
        }
    }

    #[test]
    fn agent_errors_keep_their_codes_and_statuses() {
        use crate::agents::AgentError;
        let cases = [
            (
                ApiError::from(AgentError::NotFound { id: "x".into() }),
                404,
                "agent_not_found",
            ),
            (
                AgentError::Duplicate { name: "bot".into() }.into(),
                409,
                "agent_conflict",
            ),
            (AgentError::AppKeyRequired.into(), 403, "app_key_required"),
            (
                AgentError::InvalidName("bad name".into()).into(),
                400,
                "invalid_request",
            ),
            (
                AgentError::Store(crate::store::StoreError::Batch("/secret/path".into())).into(),
                500,
                "internal_error",
            ),
        ];
        for (error, status, code) in cases {
            let p = error.problem();
            assert_eq!((p.status, p.code.as_str()), (status, code));
            assert!(!p.detail.contains("/secret/path"), "{}", p.detail);
        }
    }

    #[tokio::test]
    async fn insufficient_scope_is_a_403_problem_listing_the_missing_scopes() {
        let response = ApiError::InsufficientScope {
            missing: vec![Scope::GrantsRead, Scope::AuditRead],
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/problem+json"))
        );
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let p: Problem = serde_json::from_slice(&body).unwrap();
        assert_eq!(p.code, "insufficient_scope");
        assert_eq!(p.title, "Forbidden");
        assert_eq!(
            p.missing_scopes,
            Some(vec![Scope::GrantsRead, Scope::AuditRead])
        );
        assert!(p.detail.contains("grants:read audit:read"), "{}", p.detail);
    }
}
