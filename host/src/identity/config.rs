//! Each app's identity provider as a service for the CLI and the admin API (`/v1/idp`): the
//! settings checked, stored (`store::idp_configs`), audited (`idp.configure`, `idp.remove`)
//! and turned into the [`IdpConfig`] the [`super::Verifier`] uses.

use jsonwebtoken::Algorithm;

use super::{DEFAULT_ALGORITHMS, IdpConfig};
use crate::audit::{Action, AuditEntry, AuditError, AuditLog, Outcome};
use crate::grants::Change;
use crate::store::idp_configs::{self, IdpConfigRecord};
use crate::store::{AppId, Store, StoreError, Timestamp};

/// The largest clock leeway accepted, in seconds.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// What an operator sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpSettings {
    /// The exact `iss` of the users' tokens.
    pub issuer: String,
    /// Where the keys are; `None`: from the discovery document.
    pub jwks_url: Option<String>,
    /// Accepted `aud` values (at least one).
    pub audiences: Vec<String>,
    /// The claim listing a user's groups.
    pub groups_claim: Option<String>,
    /// Accepted algorithm names; empty: every asymmetric one.
    pub algorithms: Vec<String>,
    /// Clock leeway on `exp`/`nbf`, in seconds (at most [`MAX_LEEWAY_SECS`]).
    pub leeway_secs: u64,
}

/// Why an identity provider operation failed.
#[derive(Debug, thiserror::Error)]
pub enum IdpConfigError {
    /// The settings are not acceptable.
    #[error("{0}")]
    Invalid(String),
    /// The app has no identity provider.
    #[error("this app has no identity provider configured")]
    NotFound,
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
    /// The change was made but its audit row could not be written.
    #[error("the change was applied but could not be recorded in the audit log")]
    AuditUnavailable(#[source] AuditError),
}

impl IdpConfigError {
    /// The stable machine code of the API problem.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::NotFound => "idp_not_configured",
            Self::Store(_) => "internal_error",
            Self::AuditUnavailable(_) => "audit_unavailable",
        }
    }

    /// The HTTP status of the API problem.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::NotFound => 404,
            Self::Store(_) => 500,
            Self::AuditUnavailable(_) => 503,
        }
    }
}

impl From<tessera_proto::identity::IdpConfigRequest> for IdpSettings {
    fn from(r: tessera_proto::identity::IdpConfigRequest) -> Self {
        Self {
            issuer: r.issuer,
            jwks_url: r.jwks_url,
            audiences: r.audiences,
            groups_claim: r.groups_claim,
            algorithms: r.algorithms,
            leeway_secs: r.leeway_secs,
        }
    }
}

/// The wire form of a stored identity provider.
pub fn to_wire(r: &IdpConfigRecord) -> tessera_proto::identity::IdpConfigView {
    tessera_proto::identity::IdpConfigView {
        issuer: r.issuer.clone(),
        jwks_url: r.jwks_url.clone(),
        audiences: r.audiences.clone(),
        groups_claim: r.groups_claim.clone(),
        algorithms: r.algorithms.clone(),
        leeway_secs: r.leeway_secs,
        created_at: r.created_at.to_rfc3339(),
        updated_at: r.updated_at.to_rfc3339(),
    }
}

/// The algorithm named `name`, if it is one [`super::Verifier`] accepts.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    DEFAULT_ALGORITHMS
        .iter()
        .copied()
        .find(|a| format!("{a:?}").eq_ignore_ascii_case(name))
}

/// Checks `url` is absolute `https` (or `http` on a loopback host, for test rigs), without
/// query, fragment or user info.
fn check_url(what: &str, url: &str) -> Result<(), IdpConfigError> {
    let bad = |why: &str| IdpConfigError::Invalid(format!("{what} {why}: {url:?}"));
    let parsed = url::Url::parse(url).map_err(|_| bad("is not an absolute URL"))?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err(bad("must be https (http only on 127.0.0.1 or localhost)"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("must not have a query or fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not carry user info"));
    }
    Ok(())
}

fn check(s: &IdpSettings) -> Result<(), IdpConfigError> {
    check_url("the issuer", &s.issuer)?;
    if let Some(url) = &s.jwks_url {
        check_url("the JWKS URL", url)?;
    }
    if s.audiences.is_empty() || s.audiences.iter().any(|a| a.trim().is_empty()) {
        return Err(IdpConfigError::Invalid(
            "name at least one audience (the aud your identity provider puts in this app's tokens)"
                .into(),
        ));
    }
    if let Some(claim) = &s.groups_claim
        && (claim.is_empty() || claim.chars().any(char::is_whitespace))
    {
        return Err(IdpConfigError::Invalid(format!(
            "the groups claim {claim:?} must be a claim name without spaces"
        )));
    }
    for name in &s.algorithms {
        if parse_algorithm(name).is_none() {
            let known: Vec<String> = DEFAULT_ALGORITHMS
                .iter()
                .map(|a| format!("{a:?}"))
                .collect();
            return Err(IdpConfigError::Invalid(format!(
                "algorithm {name:?} is not accepted (asymmetric only: {})",
                known.join(", ")
            )));
        }
    }
    if s.leeway_secs > MAX_LEEWAY_SECS {
        return Err(IdpConfigError::Invalid(format!(
            "the leeway may be at most {MAX_LEEWAY_SECS} seconds"
        )));
    }
    Ok(())
}

/// A stored identity provider as the verifier uses it.
pub fn verifier_config_of(r: IdpConfigRecord) -> IdpConfig {
    IdpConfig {
        issuer: r.issuer,
        jwks_url: r.jwks_url,
        audiences: r.audiences,
        groups_claim: r.groups_claim,
        algorithms: r
            .algorithms
            .iter()
            .filter_map(|n| parse_algorithm(n))
            .collect(),
        leeway_secs: r.leeway_secs,
    }
}

/// The service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct IdpConfigs {
    store: Store,
    audit: AuditLog,
}

impl IdpConfigs {
    /// The service over the database and audit log.
    pub fn new(store: Store, audit: AuditLog) -> Self {
        Self { store, audit }
    }

    /// Sets app `app_id`'s identity provider, replacing any earlier one.
    pub async fn configure(
        &self,
        app_id: AppId,
        change: &Change,
        settings: IdpSettings,
    ) -> Result<IdpConfigRecord, IdpConfigError> {
        check(&settings)?;
        let now = Timestamp::now();
        let algorithms: Vec<String> = settings
            .algorithms
            .iter()
            .filter_map(|n| parse_algorithm(n).map(|a| format!("{a:?}")))
            .collect();
        let stored = idp_configs::upsert(
            &self.store,
            &IdpConfigRecord {
                app_id,
                issuer: settings.issuer,
                jwks_url: settings.jwks_url,
                audiences: settings.audiences,
                groups_claim: settings.groups_claim,
                algorithms,
                leeway_secs: settings.leeway_secs,
                created_at: now,
                updated_at: now,
            },
        )
        .await?;
        let detail = serde_json::json!({
            "via": change.origin.via.as_str(),
            "issuer": stored.issuer,
            "jwks_url": stored.jwks_url,
            "audiences": stored.audiences,
            "groups_claim": stored.groups_claim,
            "algorithms": stored.algorithms,
        });
        self.record(change, app_id, Action::IdpConfigure, detail)
            .await?;
        Ok(stored)
    }

    /// App `app_id`'s identity provider as stored.
    pub async fn get(&self, app_id: AppId) -> Result<IdpConfigRecord, IdpConfigError> {
        idp_configs::get(&self.store, app_id)
            .await?
            .ok_or(IdpConfigError::NotFound)
    }

    /// App `app_id`'s identity provider as the verifier uses it, if it has one.
    pub async fn verifier_config(
        &self,
        app_id: AppId,
    ) -> Result<Option<IdpConfig>, IdpConfigError> {
        Ok(idp_configs::get(&self.store, app_id)
            .await?
            .map(verifier_config_of))
    }

    /// Removes app `app_id`'s identity provider.
    pub async fn remove(&self, app_id: AppId, change: &Change) -> Result<(), IdpConfigError> {
        if !idp_configs::delete(&self.store, app_id).await? {
            return Err(IdpConfigError::NotFound);
        }
        let detail = serde_json::json!({ "via": change.origin.via.as_str() });
        self.record(change, app_id, Action::IdpRemove, detail).await
    }

    async fn record(
        &self,
        change: &Change,
        app_id: AppId,
        action: Action,
        detail: serde_json::Value,
    ) -> Result<(), IdpConfigError> {
        self.audit
            .record(AuditEntry {
                app_id: Some(app_id),
                key_id: change.key_id.clone(),
                reason: change.reason.clone(),
                request_id: change.request_id.clone(),
                detail: change.annotate(detail),
                ..AuditEntry::new(action, change.origin.actor.clone(), Outcome::Ok)
            })
            .await
            .map(|_| ())
            .map_err(IdpConfigError::AuditUnavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> IdpSettings {
        IdpSettings {
            issuer: "https://idp.example.com/realms/acme".into(),
            jwks_url: None,
            audiences: vec!["tessera".into()],
            groups_claim: Some("groups".into()),
            algorithms: vec!["RS256".into(), "es256".into()],
            leeway_secs: 60,
        }
    }

    #[test]
    fn settings_are_checked_with_clear_errors() {
        assert!(check(&settings()).is_ok());
        let cases: Vec<(IdpSettings, &str)> = vec![
            (
                IdpSettings {
                    issuer: "http://idp.example.com".into(),
                    ..settings()
                },
                "https",
            ),
            (
                IdpSettings {
                    issuer: "idp.example.com".into(),
                    ..settings()
                },
                "absolute",
            ),
            (
                IdpSettings {
                    jwks_url: Some("https://idp.example.com/k?x=1".into()),
                    ..settings()
                },
                "query",
            ),
            (
                IdpSettings {
                    audiences: vec![],
                    ..settings()
                },
                "audience",
            ),
            (
                IdpSettings {
                    groups_claim: Some("my groups".into()),
                    ..settings()
                },
                "groups claim",
            ),
            (
                IdpSettings {
                    algorithms: vec!["HS256".into()],
                    ..settings()
                },
                "asymmetric",
            ),
            (
                IdpSettings {
                    algorithms: vec!["none".into()],
                    ..settings()
                },
                "asymmetric",
            ),
            (
                IdpSettings {
                    leeway_secs: 3_600,
                    ..settings()
                },
                "leeway",
            ),
        ];
        for (s, want) in cases {
            let e = check(&s).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        assert!(
            check(&IdpSettings {
                issuer: "http://127.0.0.1:4444".into(),
                ..settings()
            })
            .is_ok()
        );
        assert_eq!(parse_algorithm("es256"), Some(Algorithm::ES256));
    }
}
