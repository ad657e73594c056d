//! [`Caller`]: the extractor that authenticates an API request. It reads the body (at most
//! [`MAX_BODY_BYTES`]), rebuilds the target URI from the configured public origin, verifies
//! the signature with the database key resolver and nonce store, records the key's use, and
//! hands the handler who signed plus the verified body.
//!
//! Must never: build the target URI from `Host` or `X-Forwarded-*` headers, hand a handler
//! a request whose signature did not verify, or log the signature headers.

use axum::body::{Body, Bytes};
use axum::extract::{FromRef, FromRequest, Request};
use axum::http::header;
use http_body_util::{BodyExt as _, LengthLimitError, Limited};
use tessera_proto::calls::{AGENT_HEADER, CALLER_HEADER, CONSTRAINTS_HEADER};
use tessera_proto::scopes::Scope;
use tessera_proto::signing::KeyKind;
use tessera_proto::whoami::Whoami;

use super::{ApiError, ApiState};
use crate::auth::{self, KeyPrincipal, SignedRequest};

/// The largest request body the API reads, in bytes (1 MiB); larger is `413 body_too_large`.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The scopes of a route any valid key may call.
pub const ANY_KEY: &[Scope] = &[];

/// A request whose signature verified: who signed it and the body it covered.
#[derive(Debug)]
pub struct Caller {
    /// The key, its app (and agent) and its **effective** Tessera scopes: the key's scopes,
    /// narrowed by the request's `tessera-constraints` header when it carries one.
    pub principal: KeyPrincipal,
    /// The request body, exactly the bytes the `Content-Digest` covered.
    pub body: Bytes,
    /// The caller name the SDK declared (`tessera-caller`), for attribution.
    pub caller: Option<String>,
    /// Whether an app key acts as one of its agents (`tessera-agent`): `principal.agent_id`
    /// is then that agent, and `principal.key_id` still the app key.
    pub impersonating: bool,
}

impl Caller {
    /// Refuses with `403 insufficient_scope` (naming what is missing) unless the key holds
    /// every scope in `needed`. The first line of every handler.
    pub fn require(&self, needed: &[Scope]) -> Result<(), ApiError> {
        let mut missing: Vec<Scope> = needed
            .iter()
            .copied()
            .filter(|s| !self.principal.scopes.contains(s))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        Err(ApiError::InsufficientScope { missing })
    }

    /// What `GET /v1/whoami` answers for this caller.
    pub fn whoami(&self) -> Whoami {
        let p = &self.principal;
        Whoami {
            app_id: p.app_id.to_string(),
            key_id: p.key_id.to_string(),
            kind: p.kind.as_str().to_owned(),
            agent_id: p.agent_id.map(|a| a.to_string()),
            scopes: p.scopes.clone(),
        }
    }
}

impl<S> FromRequest<S> for Caller
where
    ApiState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let api = ApiState::from_ref(state);
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(ApiError::BodyTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        let body = read_body(body, MAX_BODY_BYTES).await?;
        let target_uri = auth::target_uri(&api.public_origin, &parts.uri);
        let signed = SignedRequest::from_parts(&parts, &target_uri, &body);
        let verified = auth::verify(&signed, &api.keys, &api.nonces, auth::unix_now()).await?;
        // `last_used_at` is informational: failing to record it must not fail a request
        // that is already authenticated.
        if let Err(e) = api.apps.record_key_use(&verified.key_id).await {
            tracing::warn!(key_id = %verified.key_id, error = %e, "cannot record API key use");
        }
        let mut principal = verified.principal;
        if let Some(value) = header_text(&parts.headers, CONSTRAINTS_HEADER)? {
            let wanted = Scope::parse_list(&value).map_err(|e| {
                ApiError::InvalidRequest(format!(
                    "{CONSTRAINTS_HEADER} names an unknown scope {:?}",
                    e.name
                ))
            })?;
            // Intersection: a constraint can only take scopes away, never add one.
            principal.scopes.retain(|s| wanted.contains(s));
        }
        let caller = header_text(&parts.headers, CALLER_HEADER)?
            .map(|c| c.chars().take(MAX_CALLER_LEN).collect());
        let impersonating = match header_text(&parts.headers, AGENT_HEADER)? {
            Some(agent) => {
                principal.agent_id = Some(act_as(&api, &principal, &agent).await?);
                true
            }
            None => false,
        };
        Ok(Self {
            principal,
            body,
            caller,
            impersonating,
        })
    }
}

/// The agent an app key asks to act as (`tessera-agent`): an enabled agent of its own app.
async fn act_as(
    api: &ApiState,
    principal: &KeyPrincipal,
    agent: &str,
) -> Result<crate::store::AgentId, ApiError> {
    if principal.kind != KeyKind::App {
        return Err(ApiError::InvalidRequest(format!(
            "{AGENT_HEADER}: only an app key may act as one of its agents"
        )));
    }
    let not_found = || {
        ApiError::Agent(crate::agents::AgentError::NotFound {
            id: agent.to_owned(),
        })
    };
    let id = agent.parse().map_err(|_| not_found())?;
    let found = crate::store::agents::get(api.apps.store(), principal.app_id, id)
        .await
        .map_err(|e| ApiError::Agent(e.into()))?
        .ok_or_else(not_found)?;
    if found.disabled_at.is_some() {
        return Err(ApiError::InvalidRequest(format!(
            "{AGENT_HEADER}: agent {agent} is disabled"
        )));
    }
    Ok(found.id)
}

/// The longest caller name kept (longer ones are cut).
const MAX_CALLER_LEN: usize = 128;

/// A header's value as text, if present; refuses one that is not visible ASCII.
fn header_text(
    headers: &axum::http::HeaderMap,
    name: &'static str,
) -> Result<Option<String>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.trim().to_owned()))
            .map_err(|_| ApiError::InvalidRequest(format!("{name} is not visible ASCII"))),
    }
}

/// Reads `body`, refusing more than `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::BodyTooLarge { limit })
        }
        Err(_) => Err(ApiError::BodyUnreadable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_proto::signing::{KeyId, KeyKind};

    fn caller(scopes: Vec<Scope>) -> Caller {
        Caller {
            principal: KeyPrincipal {
                key_id: KeyId::parse("0123456789abcdef").unwrap(),
                app_id: crate::store::AppId::new(),
                kind: KeyKind::App,
                agent_id: None,
                scopes,
            },
            body: Bytes::new(),
            caller: None,
            impersonating: false,
        }
    }

    #[test]
    fn require_names_exactly_the_missing_scopes() {
        let c = caller(vec![Scope::ProxyExecute]);
        assert!(c.require(ANY_KEY).is_ok());
        assert!(c.require(&[Scope::ProxyExecute]).is_ok());
        match c.require(&[Scope::AuditRead, Scope::ProxyExecute, Scope::GrantsRead]) {
            Err(ApiError::InsufficientScope { missing }) => {
                assert_eq!(missing, vec![Scope::GrantsRead, Scope::AuditRead]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_body_too_large() {
        let ok = read_body(Body::from(vec![0u8; 16]), 16).await.unwrap();
        assert_eq!(ok.len(), 16);
        let err = read_body(Body::from(vec![0u8; 17]), 16).await.unwrap_err();
        assert_eq!(err.code(), "body_too_large");
        assert_eq!(err.status().as_u16(), 413);
    }
}
