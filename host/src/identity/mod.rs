//! Identity: verifying an end user's JWT (`user_token`) against the app's identity provider
//! so a call can be made on behalf of the user it names.
//!
//! Owns: the verification rules — an algorithm allow-list (asymmetric algorithms only, so a
//! token signed with HMAC under the identity provider's *public* key is refused before any key is used),
//! `iss`, `aud`, `exp`, `nbf` (with a small leeway), the key chosen by `kid` from the identity provider's
//! JWKS; the JWKS cache (fetched through [`Egress`], so `https` only and size-capped; from the
//! discovery document when no JWKS URL is configured; fetched again when a token names an
//! unknown `kid`, at most once per [`REFETCH_INTERVAL`] per identity provider, so a flood of forged `kid`s
//! cannot make the host hammer the identity provider).
//!
//! Must never: accept `alg: none` or an HMAC algorithm, use a key whose type or declared
//! algorithm does not match the token's, or log a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::Value;

pub mod config;

use crate::egress::{Egress, EgressError};
use crate::plugin::types::HttpRequest;

/// The shortest time between two JWKS fetches for one identity provider caused by unknown `kid`s.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// How long a fetched JWKS is used before it is fetched again anyway.
pub const JWKS_TTL: Duration = Duration::from_mins(10);

/// The algorithms accepted when the operator names none: every asymmetric one.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// How an app's identity provider is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpConfig {
    /// The exact `iss` its tokens carry (`https://idp.example.com/realms/acme`).
    pub issuer: String,
    /// Where its keys are; `None`: the `jwks_uri` of `{issuer}/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
    /// Accepted `aud` values (a token must name at least one).
    pub audiences: Vec<String>,
    /// The claim that lists the user's groups (`groups`), if the identity provider sends one.
    pub groups_claim: Option<String>,
    /// Accepted signature algorithms: a subset of [`DEFAULT_ALGORITHMS`] (empty: all of them).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

/// Who a verified token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserIdentity {
    /// The identity provider (`iss`).
    pub issuer: String,
    /// The user at that identity provider (`sub`).
    pub subject: String,
    /// The user's groups, from the configured claim.
    pub groups: Vec<String>,
    /// When the token expires (`exp`, seconds since the Unix epoch).
    pub expires_at: u64,
}

/// Why a token was refused. Never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not a JWS compact token, or its header or claims do not decode, or a required claim
    /// (`sub`, `exp`, `iss`, `aud`) is missing.
    #[error("the user token is malformed: {0}")]
    Malformed(String),
    /// The token's algorithm is not allowed (`none`, HMAC, or one the operator excluded).
    #[error("the user token's algorithm {0} is not accepted")]
    AlgorithmNotAllowed(String),
    /// No key of the identity provider has the token's `kid`, even after fetching the keys again.
    #[error("the user token names a key the identity provider does not publish")]
    UnknownKey,
    /// The key's type or declared algorithm does not fit the token's algorithm.
    #[error("the identity provider's key does not fit the token's algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("the user token's signature does not verify")]
    BadSignature,
    /// `iss` is not the configured issuer.
    #[error("the user token was issued by another issuer")]
    WrongIssuer,
    /// `aud` names none of the configured audiences.
    #[error("the user token is not meant for this app (audience)")]
    WrongAudience,
    /// `exp` has passed.
    #[error("the user token has expired")]
    Expired,
    /// `nbf` is still to come.
    #[error("the user token is not valid yet")]
    NotYetValid,
    /// The identity provider's keys could not be fetched or read.
    #[error("the identity provider's keys are unavailable: {0}")]
    KeysUnavailable(String),
}

impl IdentityError {
    /// The stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Expired => "user_token_expired",
            Self::KeysUnavailable(_) => "idp_unavailable",
            _ => "user_token_invalid",
        }
    }
}

#[derive(Debug)]
struct CachedKeys {
    keys: JwkSet,
    fetched: Instant,
}

/// Verifies user tokens, caching each identity provider's keys. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Verifier {
    egress: Egress,
    /// By JWKS URL.
    keys: Arc<Mutex<HashMap<String, Arc<CachedKeys>>>>,
    /// By issuer: the discovered JWKS URL.
    discovered: Arc<Mutex<HashMap<String, String>>>,
    /// Serialises fetches, so concurrent misses cost one fetch.
    fetching: Arc<tokio::sync::Mutex<()>>,
    /// The shortest time between fetches for unknown `kid`s.
    refetch_interval: Duration,
}

/// The claims Tessera reads; everything else is ignored.
#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    exp: u64,
    #[serde(flatten)]
    rest: HashMap<String, Value>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `host[:port]` of `url`, as an egress allow-list entry.
fn authority(url: &str) -> Result<String, IdentityError> {
    let parsed = url::Url::parse(url)
        .map_err(|_| IdentityError::KeysUnavailable(format!("{url} is not a URL")))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| IdentityError::KeysUnavailable(format!("{url} has no host")))?;
    Ok(match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_owned(),
    })
}

impl Verifier {
    /// A verifier fetching keys through `egress`.
    pub fn new(egress: Egress) -> Self {
        Self {
            egress,
            keys: Arc::default(),
            discovered: Arc::default(),
            fetching: Arc::default(),
            refetch_interval: REFETCH_INTERVAL,
        }
    }

    /// The same verifier with another shortest time between fetches for unknown `kid`s.
    #[must_use]
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        self.refetch_interval = interval;
        self
    }

    /// Verifies `token` for `idp` and says whom it names.
    pub async fn verify(
        &self,
        idp: &IdpConfig,
        token: &str,
    ) -> Result<UserIdentity, IdentityError> {
        let header = decode_header(token).map_err(|e| {
            // `alg: none` and unknown algorithms fail here: the header does not decode.
            if token.split('.').next().is_some_and(|h| {
                base64_json(h).is_some_and(|v| {
                    v["alg"]
                        .as_str()
                        .is_some_and(|a| a.eq_ignore_ascii_case("none"))
                })
            }) {
                IdentityError::AlgorithmNotAllowed("none".into())
            } else {
                IdentityError::Malformed(e.to_string())
            }
        })?;
        let allowed = if idp.algorithms.is_empty() {
            DEFAULT_ALGORITHMS
        } else {
            &idp.algorithms
        };
        if !allowed.contains(&header.alg) || !DEFAULT_ALGORITHMS.contains(&header.alg) {
            return Err(IdentityError::AlgorithmNotAllowed(format!(
                "{:?}",
                header.alg
            )));
        }
        let jwk = self.key_for(idp, header.kid.as_deref()).await?;
        if jwk
            .common
            .key_algorithm
            .is_some_and(|a| a.to_string() != format!("{:?}", header.alg))
        {
            return Err(IdentityError::KeyMismatch);
        }
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| IdentityError::KeyMismatch)?;
        let mut validation = Validation::new(header.alg);
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[idp.issuer.as_str()]);
        validation.set_audience(&idp.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = idp.leeway_secs;
        let data = decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::ExpiredSignature => IdentityError::Expired,
                K::ImmatureSignature => IdentityError::NotYetValid,
                K::InvalidIssuer => IdentityError::WrongIssuer,
                K::InvalidAudience => IdentityError::WrongAudience,
                K::InvalidSignature => IdentityError::BadSignature,
                K::InvalidAlgorithm => IdentityError::KeyMismatch,
                K::InvalidAlgorithmName | K::InvalidKeyFormat | K::InvalidRsaKey(_) => {
                    IdentityError::KeyMismatch
                }
                other => IdentityError::Malformed(format!("{other:?}")),
            }
        })?;
        let claims = data.claims;
        if claims.iss != idp.issuer {
            return Err(IdentityError::WrongIssuer);
        }
        let groups = idp
            .groups_claim
            .as_ref()
            .and_then(|name| claims.rest.get(name))
            .map(|v| match v {
                Value::Array(items) => items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_owned))
                    .collect(),
                Value::String(one) => vec![one.clone()],
                _ => Vec::new(),
            })
            .unwrap_or_default();
        Ok(UserIdentity {
            issuer: claims.iss,
            subject: claims.sub,
            groups,
            expires_at: claims.exp,
        })
    }

    /// The key `kid` of `idp` (or its only key, when the token names none), fetching the
    /// keys when they are not cached, are stale, or lack `kid` (at most once per
    /// [`REFETCH_INTERVAL`]).
    async fn key_for(&self, idp: &IdpConfig, kid: Option<&str>) -> Result<Jwk, IdentityError> {
        let url = self.jwks_url(idp).await?;
        let pick = |set: &JwkSet| -> Option<Jwk> {
            match kid {
                Some(kid) => set.find(kid).cloned(),
                None if set.keys.len() == 1 => set.keys.first().cloned(),
                None => None,
            }
        };
        let cached = lock(&self.keys).get(&url).cloned();
        if let Some(c) = &cached
            && c.fetched.elapsed() < JWKS_TTL
            && let Some(key) = pick(&c.keys)
        {
            return Ok(key);
        }
        let _one = self.fetching.lock().await;
        // Another caller may have fetched while this one waited.
        let cached = lock(&self.keys).get(&url).cloned();
        if let Some(c) = &cached {
            if let Some(key) = pick(&c.keys)
                && c.fetched.elapsed() < JWKS_TTL
            {
                return Ok(key);
            }
            if c.fetched.elapsed() < self.refetch_interval {
                return Err(IdentityError::UnknownKey);
            }
        }
        let body = self
            .fetch(&url, &[idp.issuer.as_str(), url.as_str()])
            .await?;
        let keys: JwkSet = serde_json::from_slice(&body).map_err(|_| {
            IdentityError::KeysUnavailable("the JWKS is not a JSON Web Key Set".into())
        })?;
        let found = pick(&keys);
        lock(&self.keys).insert(
            url,
            Arc::new(CachedKeys {
                keys,
                fetched: Instant::now(),
            }),
        );
        found.ok_or(IdentityError::UnknownKey)
    }

    async fn jwks_url(&self, idp: &IdpConfig) -> Result<String, IdentityError> {
        if let Some(url) = &idp.jwks_url {
            return Ok(url.clone());
        }
        if let Some(url) = lock(&self.discovered).get(&idp.issuer) {
            return Ok(url.clone());
        }
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            idp.issuer.trim_end_matches('/')
        );
        let body = self.fetch(&discovery, &[idp.issuer.as_str()]).await?;
        let doc: Value = serde_json::from_slice(&body).map_err(|_| {
            IdentityError::KeysUnavailable("the discovery document is not JSON".into())
        })?;
        if doc["issuer"].as_str() != Some(idp.issuer.as_str()) {
            return Err(IdentityError::KeysUnavailable(
                "the discovery document names another issuer".into(),
            ));
        }
        let url = doc["jwks_uri"]
            .as_str()
            .ok_or_else(|| {
                IdentityError::KeysUnavailable("the discovery document has no jwks_uri".into())
            })?
            .to_owned();
        lock(&self.discovered).insert(idp.issuer.clone(), url.clone());
        Ok(url)
    }

    async fn fetch(&self, url: &str, hosts_of: &[&str]) -> Result<Vec<u8>, IdentityError> {
        let allowed = hosts_of
            .iter()
            .map(|u| authority(u))
            .collect::<Result<Vec<_>, _>>()?;
        let request = HttpRequest {
            method: "GET".into(),
            url: url.to_owned(),
            headers: vec![("accept".into(), "application/json".into())],
            body: Vec::new(),
        };
        let response = self
            .egress
            .exchange(&request, &allowed, &[])
            .await
            .map_err(|e: EgressError| IdentityError::KeysUnavailable(e.to_string()))?;
        if !(200..300).contains(&response.status) {
            return Err(IdentityError::KeysUnavailable(format!(
                "{url} answered {}",
                response.status
            )));
        }
        Ok(response.body)
    }
}

/// The JSON object a base64url segment encodes, if it is one.
fn base64_json(segment: &str) -> Option<Value> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(segment.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests;
