//! The SDK's one error type: the host's RFC 9457 problem documents mapped by their stable
//! `code` to typed variants, plus the failures that happen on this side (transport, key,
//! decoding, invalid input).
//!
//! Must never carry the API key, the signing key, a signature or auth material the host
//! returned: messages name what went wrong, never the secret value.

use reqwest::StatusCode;
use tessera_proto::calls::{GrantCandidate, codes};
use tessera_proto::problem::Problem;
use tessera_proto::scopes::Scope;
use tessera_proto::signing::SigningError;

/// Why an SDK call failed. Host errors keep the problem's `detail` (text for people);
/// branch on the variant (or [`Error::code`]), never on the text.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `grant_not_found`: no grant with this id is visible to this key.
    #[error("grant not found: {detail}")]
    GrantNotFound {
        /// The host's explanation.
        detail: String,
    },
    /// `grant_revoked`: the grant was revoked.
    #[error("grant revoked: {detail}")]
    GrantRevoked {
        /// The host's explanation.
        detail: String,
    },
    /// `grant_expired`: the grant's TTL ran out; extend it or have the user connect again.
    #[error("grant expired: {detail}")]
    GrantExpired {
        /// The host's explanation.
        detail: String,
    },
    /// `scope_reauth_required`: the provider refused the call for a scope the grant does
    /// not hold; the user must connect again to grant it (the detail names the scopes where
    /// the provider said).
    #[error("the grant lacks a scope the provider needs: {detail}")]
    ScopeReauthRequired {
        /// The host's explanation.
        detail: String,
    },
    /// `grant_reauth_required`: the user must connect the provider again.
    #[error("grant needs re-authorization: {detail}")]
    GrantReauthRequired {
        /// The host's explanation.
        detail: String,
    },
    /// `insufficient_scope`: the key (narrowed by any constraints) lacks Tessera scopes.
    #[error("insufficient scope (missing {}): {detail}", Scope::join(missing))]
    InsufficientScope {
        /// The scopes the call needed and the key lacks.
        missing: Vec<Scope>,
        /// The host's explanation.
        detail: String,
    },
    /// `ambiguous_grant`: several grants fit a call that named none; pick one by
    /// `grant_id` or `account` from `candidates`.
    #[error("several grants fit this call ({}): {detail}", candidates.len())]
    AmbiguousGrant {
        /// The grants the call could mean, with their account labels.
        candidates: Vec<GrantCandidate>,
        /// The host's explanation.
        detail: String,
    },
    /// `user_token_invalid` or `user_token_expired`: the call's user token was refused
    /// (`code` says which). An expired token needs a fresh one from the identity provider.
    #[error("user token refused ({code}): {detail}")]
    UserToken {
        /// The stable code.
        code: String,
        /// The host's explanation.
        detail: String,
    },
    /// `policy_denied`: one of the app's policy rules refused the call; `rule` names it.
    #[error("refused by policy rule {rule:?}: {detail}")]
    PolicyDenied {
        /// The rule's name.
        rule: String,
        /// The host's explanation.
        detail: String,
    },
    /// `rate_limited`: a rate-limit policy rule refused the call; retry after
    /// `retry_after_secs` (the `Retry-After` header), `rule` names the rule.
    #[error("rate limited by policy rule {rule:?}: {detail}")]
    RateLimited {
        /// The rule's name.
        rule: String,
        /// Seconds until its window ends, when the host said.
        retry_after_secs: Option<u64>,
        /// The host's explanation.
        detail: String,
    },
    /// `approval_pending`: a require-approval policy rule (`rule`) holds the proxied call
    /// for a person; the host stored the exact request as approval `approval_id`. Wait for
    /// it with [`crate::ProxyBuilder::wait_for_approval`] or
    /// [`crate::App::approval_outcome`].
    #[error("waiting for approval {approval_id} (rule {rule:?}): {detail}")]
    ApprovalPending {
        /// The approval.
        approval_id: String,
        /// The rule that asked for it.
        rule: String,
        /// The host's explanation.
        detail: String,
    },
    /// `approval_denied`: a person denied the held call (final; nothing was sent).
    #[error("approval {approval_id} denied: {detail}")]
    ApprovalDenied {
        /// The approval.
        approval_id: String,
        /// The host's explanation (with the decider's note, when given).
        detail: String,
    },
    /// `approval_expired`: nobody decided the held call in time (final; nothing was sent).
    #[error("approval {approval_id} expired: {detail}")]
    ApprovalExpired {
        /// The approval.
        approval_id: String,
        /// The host's explanation.
        detail: String,
    },
    /// `hitl_grant_requires_proxy`: a require-approval rule (`rule`) covers the grant, so
    /// it is used only in proxy mode ([`crate::App::proxy_request`]).
    #[error("this grant needs approval, so only proxy mode may use it (rule {rule:?}): {detail}")]
    HitlRequiresProxy {
        /// The rule.
        rule: String,
        /// The host's explanation.
        detail: String,
    },
    /// `host_not_allowed`: the URL's host is outside the provider's declared hosts.
    #[error("host not allowed: {detail}")]
    HostNotAllowed {
        /// The host's explanation.
        detail: String,
    },
    /// `provider_unreachable`: the host could not reach the provider.
    #[error("provider unreachable: {detail}")]
    ProviderUnreachable {
        /// The host's explanation.
        detail: String,
    },
    /// `component_failed`: the provider's component failed (trap, timeout, bad output).
    #[error("provider component failed: {detail}")]
    ComponentFailed {
        /// The host's explanation.
        detail: String,
    },
    /// `provider_rejected`: the provider's component refused the request.
    #[error("provider rejected the request: {detail}")]
    ProviderRejected {
        /// The host's explanation.
        detail: String,
    },
    /// `provider_not_found`: the provider is not loaded on this host.
    #[error("provider not found: {detail}")]
    ProviderNotFound {
        /// The host's explanation.
        detail: String,
    },
    /// `invalid_request`: the host found the request malformed.
    #[error("invalid request: {detail}")]
    InvalidRequest {
        /// The host's explanation.
        detail: String,
    },
    /// `audit_unavailable`: the audit row could not be written, so the call was refused.
    #[error("audit unavailable, call refused: {detail}")]
    AuditUnavailable {
        /// The host's explanation.
        detail: String,
    },
    /// The host refused the request signature (`signature_*`, `digest_missing`,
    /// `digest_mismatch`, `unknown_key`, `nonce_replayed`; see `docs/SIGNING.md` §4).
    #[error("request not authenticated ({code}): {detail}")]
    Unauthorized {
        /// The stable code.
        code: String,
        /// The host's explanation.
        detail: String,
    },
    /// Any other problem the host reported.
    #[error("host error {status} ({code}): {detail}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The stable code.
        code: String,
        /// The host's explanation.
        detail: String,
    },
    /// A connect flow ([`crate::App::connect`]) ended without a grant: `code` is the
    /// session's error code (`access_denied`, `provider_error`, `invalid_callback`,
    /// `expired`, …), or `timed_out` when the wait ran out first.
    #[error("connect session {session_id} ended without a grant ({code}): {detail}")]
    ConnectFailed {
        /// The connect session.
        session_id: String,
        /// Why.
        code: String,
        /// The host's explanation.
        detail: String,
    },
    /// The request could not be sent or its response not read.
    #[error("transport error: {0}")]
    Transport(#[source] reqwest::Error),
    /// The API key string is not a Tessera API key.
    #[error("invalid API key: {0}")]
    InvalidKey(#[source] SigningError),
    /// Something given to the SDK cannot be sent (URL, header, body).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// The host answered something the SDK cannot read.
    #[error("cannot read the host's answer: {detail}")]
    Decode {
        /// What was wrong with it.
        detail: String,
    },
}

/// The codes the host uses for a refused request signature (`docs/SIGNING.md` §4).
const UNAUTHORIZED_CODES: [&str; 4] = [
    "digest_missing",
    "digest_mismatch",
    "unknown_key",
    "nonce_replayed",
];

impl Error {
    /// The typed error for a problem document the host answered with `status`.
    pub fn from_problem(status: u16, problem: Problem) -> Self {
        let Problem {
            code,
            detail,
            missing_scopes,
            candidates,
            rule,
            approval_id,
            ..
        } = problem;
        match code.as_str() {
            codes::GRANT_NOT_FOUND => Self::GrantNotFound { detail },
            codes::GRANT_REVOKED => Self::GrantRevoked { detail },
            codes::GRANT_EXPIRED => Self::GrantExpired { detail },
            codes::GRANT_REAUTH_REQUIRED => Self::GrantReauthRequired { detail },
            codes::SCOPE_REAUTH_REQUIRED => Self::ScopeReauthRequired { detail },
            codes::INSUFFICIENT_SCOPE => Self::InsufficientScope {
                missing: missing_scopes.unwrap_or_default(),
                detail,
            },
            codes::HOST_NOT_ALLOWED => Self::HostNotAllowed { detail },
            codes::AMBIGUOUS_GRANT => Self::AmbiguousGrant {
                candidates: candidates.unwrap_or_default(),
                detail,
            },
            codes::RATE_LIMITED => Self::RateLimited {
                rule: rule.unwrap_or_default(),
                retry_after_secs: None,
                detail,
            },
            codes::POLICY_DENIED => Self::PolicyDenied {
                rule: rule.unwrap_or_default(),
                detail,
            },
            codes::USER_TOKEN_INVALID | codes::USER_TOKEN_EXPIRED => {
                Self::UserToken { code, detail }
            }
            codes::APPROVAL_PENDING => Self::ApprovalPending {
                approval_id: approval_id.unwrap_or_default(),
                rule: rule.unwrap_or_default(),
                detail,
            },
            codes::APPROVAL_DENIED => Self::ApprovalDenied {
                approval_id: approval_id.unwrap_or_default(),
                detail,
            },
            codes::APPROVAL_EXPIRED => Self::ApprovalExpired {
                approval_id: approval_id.unwrap_or_default(),
                detail,
            },
            codes::HITL_GRANT_REQUIRES_PROXY => Self::HitlRequiresProxy {
                rule: rule.unwrap_or_default(),
                detail,
            },
            codes::PROVIDER_UNREACHABLE => Self::ProviderUnreachable { detail },
            codes::COMPONENT_FAILED => Self::ComponentFailed { detail },
            codes::PROVIDER_REJECTED => Self::ProviderRejected { detail },
            codes::PROVIDER_NOT_FOUND => Self::ProviderNotFound { detail },
            codes::INVALID_REQUEST => Self::InvalidRequest { detail },
            codes::AUDIT_UNAVAILABLE => Self::AuditUnavailable { detail },
            c if c.starts_with("signature_") || UNAUTHORIZED_CODES.contains(&c) => {
                Self::Unauthorized { code, detail }
            }
            _ => Self::Api {
                status,
                code,
                detail,
            },
        }
    }

    /// The error for a non-success answer of the host: its problem document mapped to a
    /// variant, or [`Error::Decode`] when the body is not one.
    pub(crate) fn from_host_answer(status: StatusCode, body: &[u8]) -> Self {
        if let Ok(problem) = serde_json::from_slice::<Problem>(body) {
            return Self::from_problem(status.as_u16(), problem);
        }
        // A newer host may name a scope this SDK does not know, or leave a field out: keep
        // the code rather than lose the whole error.
        if let Ok(lenient) = serde_json::from_slice::<LenientProblem>(body) {
            let missing_scopes = lenient
                .missing_scopes
                .map(|names| names.iter().filter_map(|n| n.parse().ok()).collect());
            return Self::from_problem(
                status.as_u16(),
                Problem {
                    problem_type: String::new(),
                    title: String::new(),
                    status: status.as_u16(),
                    detail: lenient.detail,
                    code: lenient.code,
                    missing_scopes,
                    // Candidates this SDK can read; one it cannot is left out, not the error.
                    candidates: lenient.candidates.map(|list| {
                        list.into_iter()
                            .filter_map(|c| serde_json::from_value(c).ok())
                            .collect()
                    }),
                    rule: lenient.rule,
                    approval_id: lenient.approval_id,
                },
            );
        }
        Self::Decode {
            detail: format!("the host answered {status} without a problem document"),
        }
    }

    /// The host's stable problem `code`, for errors the host reported.
    pub fn code(&self) -> Option<&str> {
        Some(match self {
            Self::GrantNotFound { .. } => codes::GRANT_NOT_FOUND,
            Self::GrantRevoked { .. } => codes::GRANT_REVOKED,
            Self::GrantExpired { .. } => codes::GRANT_EXPIRED,
            Self::GrantReauthRequired { .. } => codes::GRANT_REAUTH_REQUIRED,
            Self::ScopeReauthRequired { .. } => codes::SCOPE_REAUTH_REQUIRED,
            Self::InsufficientScope { .. } => codes::INSUFFICIENT_SCOPE,
            Self::HostNotAllowed { .. } => codes::HOST_NOT_ALLOWED,
            Self::AmbiguousGrant { .. } => codes::AMBIGUOUS_GRANT,
            Self::PolicyDenied { .. } => codes::POLICY_DENIED,
            Self::RateLimited { .. } => codes::RATE_LIMITED,
            Self::ApprovalPending { .. } => codes::APPROVAL_PENDING,
            Self::ApprovalDenied { .. } => codes::APPROVAL_DENIED,
            Self::ApprovalExpired { .. } => codes::APPROVAL_EXPIRED,
            Self::HitlRequiresProxy { .. } => codes::HITL_GRANT_REQUIRES_PROXY,
            Self::ProviderUnreachable { .. } => codes::PROVIDER_UNREACHABLE,
            Self::ComponentFailed { .. } => codes::COMPONENT_FAILED,
            Self::ProviderRejected { .. } => codes::PROVIDER_REJECTED,
            Self::ProviderNotFound { .. } => codes::PROVIDER_NOT_FOUND,
            Self::InvalidRequest { .. } => codes::INVALID_REQUEST,
            Self::AuditUnavailable { .. } => codes::AUDIT_UNAVAILABLE,
            Self::Unauthorized { code, .. }
            | Self::UserToken { code, .. }
            | Self::Api { code, .. }
            | Self::ConnectFailed { code, .. } => code,
            Self::Transport(_)
            | Self::InvalidKey(_)
            | Self::InvalidInput(_)
            | Self::Decode { .. } => {
                return None;
            }
        })
    }

    /// The host's explanation, for errors the host reported.
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::GrantNotFound { detail }
            | Self::GrantRevoked { detail }
            | Self::GrantExpired { detail }
            | Self::GrantReauthRequired { detail }
            | Self::ScopeReauthRequired { detail }
            | Self::InsufficientScope { detail, .. }
            | Self::HostNotAllowed { detail }
            | Self::ProviderUnreachable { detail }
            | Self::ComponentFailed { detail }
            | Self::ProviderRejected { detail }
            | Self::ProviderNotFound { detail }
            | Self::InvalidRequest { detail }
            | Self::AuditUnavailable { detail }
            | Self::AmbiguousGrant { detail, .. }
            | Self::PolicyDenied { detail, .. }
            | Self::RateLimited { detail, .. }
            | Self::ApprovalPending { detail, .. }
            | Self::ApprovalDenied { detail, .. }
            | Self::ApprovalExpired { detail, .. }
            | Self::HitlRequiresProxy { detail, .. }
            | Self::UserToken { detail, .. }
            | Self::Unauthorized { detail, .. }
            | Self::Api { detail, .. }
            | Self::ConnectFailed { detail, .. } => Some(detail),
            Self::Transport(_)
            | Self::InvalidKey(_)
            | Self::InvalidInput(_)
            | Self::Decode { .. } => None,
        }
    }

    pub(crate) fn decode(what: &str, e: &serde_json::Error) -> Self {
        Self::Decode {
            detail: format!("{what}: {e}"),
        }
    }
}

/// The fields of a problem document the SDK needs, read without the catalog of scopes.
#[derive(serde::Deserialize)]
struct LenientProblem {
    code: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    missing_scopes: Option<Vec<String>>,
    #[serde(default)]
    candidates: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    approval_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(status: u16, code: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": "about:blank",
            "title": "x",
            "status": status,
            "detail": format!("detail of {code}"),
            "code": code,
        }))
        .unwrap()
    }

    fn mapped(status: u16, code: &str) -> Error {
        Error::from_host_answer(
            StatusCode::from_u16(status).unwrap(),
            &problem(status, code),
        )
    }

    #[test]
    fn call_codes_map_to_their_variants_and_keep_the_detail() {
        type IsVariant = fn(&Error) -> bool;
        let cases: [(&str, IsVariant); 15] = [
            ("grant_not_found", |e| {
                matches!(e, Error::GrantNotFound { .. })
            }),
            ("grant_revoked", |e| matches!(e, Error::GrantRevoked { .. })),
            ("scope_reauth_required", |e| {
                matches!(e, Error::ScopeReauthRequired { .. })
            }),
            ("grant_reauth_required", |e| {
                matches!(e, Error::GrantReauthRequired { .. })
            }),
            ("host_not_allowed", |e| {
                matches!(e, Error::HostNotAllowed { .. })
            }),
            ("provider_unreachable", |e| {
                matches!(e, Error::ProviderUnreachable { .. })
            }),
            ("component_failed", |e| {
                matches!(e, Error::ComponentFailed { .. })
            }),
            ("provider_rejected", |e| {
                matches!(e, Error::ProviderRejected { .. })
            }),
            ("provider_not_found", |e| {
                matches!(e, Error::ProviderNotFound { .. })
            }),
            ("invalid_request", |e| {
                matches!(e, Error::InvalidRequest { .. })
            }),
            ("audit_unavailable", |e| {
                matches!(e, Error::AuditUnavailable { .. })
            }),
            ("approval_pending", |e| {
                matches!(e, Error::ApprovalPending { .. })
            }),
            ("approval_denied", |e| {
                matches!(e, Error::ApprovalDenied { .. })
            }),
            ("approval_expired", |e| {
                matches!(e, Error::ApprovalExpired { .. })
            }),
            ("hitl_grant_requires_proxy", |e| {
                matches!(e, Error::HitlRequiresProxy { .. })
            }),
        ];
        for (code, is_variant) in cases {
            let err = mapped(400, code);
            assert!(is_variant(&err), "{code} -> {err:?}");
            assert_eq!(err.code(), Some(code));
            let detail = format!("detail of {code}");
            assert_eq!(err.detail(), Some(detail.as_str()));
            assert!(err.to_string().contains(&detail), "{err}");
        }
    }

    #[test]
    fn insufficient_scope_names_the_missing_scopes() {
        let body = serde_json::to_vec(&serde_json::json!({
            "type": "about:blank", "title": "Forbidden", "status": 403,
            "detail": "this key lacks scopes", "code": "insufficient_scope",
            "missing_scopes": ["audit:read", "grants:read"],
        }))
        .unwrap();
        let err = Error::from_host_answer(StatusCode::FORBIDDEN, &body);
        let Error::InsufficientScope { missing, detail } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(missing, &[Scope::AuditRead, Scope::GrantsRead]);
        assert_eq!(detail, "this key lacks scopes");
        assert!(err.to_string().contains("audit:read grants:read"), "{err}");
    }

    #[test]
    fn a_scope_this_sdk_does_not_know_does_not_lose_the_error() {
        let body = br#"{"code":"insufficient_scope","detail":"d","status":403,
                        "missing_scopes":["audit:read","teleport:execute"]}"#;
        let err = Error::from_host_answer(StatusCode::FORBIDDEN, body);
        let Error::InsufficientScope { missing, .. } = &err else {
            panic!("{err:?}");
        };
        assert_eq!(missing, &[Scope::AuditRead]);
    }

    #[test]
    fn signature_codes_are_unauthorized() {
        for code in [
            "signature_missing",
            "signature_malformed",
            "signature_algorithm_unsupported",
            "signature_components_invalid",
            "signature_expired",
            "signature_invalid",
            "digest_missing",
            "digest_mismatch",
            "unknown_key",
            "nonce_replayed",
        ] {
            let err = mapped(401, code);
            let Error::Unauthorized { code: got, detail } = &err else {
                panic!("{code} -> {err:?}");
            };
            assert_eq!(got, code);
            assert_eq!(detail, &format!("detail of {code}"));
        }
    }

    #[test]
    fn other_codes_are_generic_api_errors_with_their_status() {
        for (status, code) in [
            (503, "auth_unavailable"),
            (409, "approval_decided"),
            (404, "not_found"),
            (413, "body_too_large"),
        ] {
            let err = mapped(status, code);
            let Error::Api {
                status: s,
                code: c,
                detail,
            } = &err
            else {
                panic!("{code} -> {err:?}");
            };
            assert_eq!((*s, c.as_str()), (status, code));
            assert_eq!(detail, &format!("detail of {code}"));
        }
    }

    #[test]
    fn a_body_that_is_no_problem_document_is_a_decode_error() {
        let err = Error::from_host_answer(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>");
        assert!(matches!(err, Error::Decode { .. }), "{err:?}");
        assert!(err.to_string().contains("502"), "{err}");
        assert_eq!(err.code(), None);
    }
}
