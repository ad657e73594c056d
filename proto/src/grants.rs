//! Grants and managed secrets on the wire: `POST /v1/managed-secrets`, `GET /v1/grants`,
//! `GET /v1/grants/{id}`, `DELETE /v1/grants/{id}`, and the principal notation they share.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Whom a grant belongs to, in its one textual form (`system`, `user:ISSUER:SUB`,
/// `group:NAME`, `agent:ID`).
///
/// A user is named by the issuer of their identity and their subject at it. The issuer may
/// contain `:` (it is usually a URL); the subject is everything after the **last** `:`, so a
/// subject that itself contains `:` is written with `%3A` (and `%` as `%25`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Principal {
    /// The app itself (a grant every key of the app may use).
    System,
    /// An end user of the app: issuer and subject of their identity.
    User {
        /// The identity issuer, e.g. `https://idp.example.com`.
        issuer: String,
        /// The subject at that issuer.
        subject: String,
    },
    /// A group of users, by the group name the app's identity provider asserts.
    Group(String),
    /// One of the app's agents, by agent id.
    Agent(String),
}

/// `Principal` is a string on the wire (its text form), so its schema is written by hand:
/// a derived one would describe the enum.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Principal {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "Whom a grant belongs to, in its one text form: `system` (the app itself), \
                 `user:ISSUER:SUBJECT` (an end user; the subject is everything after the last \
                 `:`, so a `:` in it is written `%3A` and a `%` as `%25`), `group:NAME` or \
                 `agent:ID`. Each part is 1 to 512 characters without control characters.",
            ))
            .pattern(Some("^(system|user:.+:[^:]+|group:.+|agent:.+)$"))
            .examples([
                "system",
                "user:https://idp.example.com:alice",
                "group:finance",
                "agent:0190aa00-0000-7000-8000-000000000000",
            ])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Principal {}

/// Why a principal string does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid principal {given:?}: expected system, user:ISSUER:SUBJECT, group:NAME or agent:ID"
)]
pub struct PrincipalError {
    /// What was given.
    pub given: String,
}

impl Principal {
    /// The principal kind as stored and filtered on: `system`, `user`, `group`, `agent`.
    pub fn kind(&self) -> &'static str {
        match self {
            Principal::System => "system",
            Principal::User { .. } => "user",
            Principal::Group(_) => "group",
            Principal::Agent(_) => "agent",
        }
    }

    /// The part after the kind (empty for `system`): what identifies the principal within its
    /// kind. For a user, `ISSUER:SUBJECT` with the subject escaped as in the text form.
    pub fn value(&self) -> String {
        match self {
            Principal::System => String::new(),
            Principal::User { issuer, subject } => format!("{issuer}:{}", escape(subject)),
            Principal::Group(name) | Principal::Agent(name) => name.clone(),
        }
    }

    /// Rebuilds a principal from its kind and [`Principal::value`].
    pub fn from_parts(kind: &str, value: &str) -> Result<Self, PrincipalError> {
        if kind == "system" && value.is_empty() {
            return Ok(Principal::System);
        }
        format!("{kind}:{value}").parse()
    }
}

fn escape(s: &str) -> String {
    s.replace('%', "%25").replace(':', "%3A")
}

fn unescape(s: &str) -> String {
    s.replace("%3A", ":")
        .replace("%3a", ":")
        .replace("%25", "%")
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::System => f.write_str("system"),
            other => write!(f, "{}:{}", other.kind(), other.value()),
        }
    }
}

impl FromStr for Principal {
    type Err = PrincipalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PrincipalError {
            given: s.to_owned(),
        };
        let clean = |v: &str| !v.is_empty() && v.len() <= 512 && !v.chars().any(char::is_control);
        if s == "system" {
            return Ok(Principal::System);
        }
        let (kind, rest) = s.split_once(':').ok_or_else(err)?;
        match kind {
            "user" => {
                let (issuer, subject) = rest.rsplit_once(':').ok_or_else(err)?;
                let subject = unescape(subject);
                if !clean(issuer) || !clean(&subject) {
                    return Err(err());
                }
                Ok(Principal::User {
                    issuer: issuer.to_owned(),
                    subject,
                })
            }
            "group" if clean(rest) => Ok(Principal::Group(rest.to_owned())),
            "agent" if clean(rest) => Ok(Principal::Agent(rest.to_owned())),
            _ => Err(err()),
        }
    }
}

impl Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a grant's credential came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantKind {
    /// Tokens from an OAuth flow.
    Oauth,
    /// A secret an operator or app stored (API key, access key pair, …).
    ManagedSecret,
}

impl GrantKind {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantKind::Oauth => "oauth",
            GrantKind::ManagedSecret => "managed_secret",
        }
    }
}

/// Where a grant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum GrantStatus {
    /// Usable.
    Active,
    /// The user must connect again (refresh token dead, secret rejected).
    ReauthRequired,
    /// Revoked: kept as history, its secret material deleted.
    Revoked,
}

impl GrantStatus {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantStatus::Active => "active",
            GrantStatus::ReauthRequired => "reauth_required",
            GrantStatus::Revoked => "revoked",
        }
    }
}

/// One grant as the API shows it. Never carries secret material.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grant {
    /// The grant id (stable across secret rotation).
    pub id: String,
    /// The provider id (`stripe`, `github`, …).
    pub provider: String,
    /// OAuth or managed secret.
    pub kind: GrantKind,
    /// Whom it belongs to.
    pub principal: Principal,
    /// Which upstream account it reaches (login, email, workspace, account id).
    pub account_label: String,
    /// Provider scopes held, if the provider has scopes.
    pub scopes: Vec<String>,
    /// Scope mismatch: scopes the app's OAuth configuration for this provider now asks for
    /// that this grant does not hold (the operator added them after the user connected).
    /// The grant still works for what it holds; the user connects again to grant the rest.
    /// Empty (and absent) when nothing is missing or the provider did not say what it
    /// granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_scopes: Vec<String>,
    /// Where it stands.
    pub status: GrantStatus,
    /// Non-secret facts about the credential (e.g. Stripe's `mode`, AWS's `region`).
    pub metadata: BTreeMap<String, String>,
    /// When the access token expires (RFC 3339), for credentials that expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: the last change (rotation, status).
    pub updated_at: String,
    /// RFC 3339, if it was ever used in a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// RFC 3339, if revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// When the grant itself stops working (its TTL, RFC 3339); absent: no TTL. After it,
    /// calls fail with `grant_expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
}

/// A page of grants (`GET /v1/grants`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GrantPage {
    /// The grants of this page, newest first.
    pub items: Vec<Grant>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// `POST /v1/managed-secrets`: store (or rotate) a secret for a provider.
///
/// With `grant_id`, rotates that grant's secret (the id stays). Without it, a live grant of
/// the same provider, principal and upstream account is rotated if one exists, else a new
/// grant is created. `Debug` and `Display` show field names, never values.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManagedSecretRequest {
    /// The provider id.
    pub provider: String,
    /// Whom the grant belongs to; `system` (the app) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    /// The provider's secret fields, by name (see `GET /v1/providers`).
    pub fields: BTreeMap<String, String>,
    /// The provider's connection parameters, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub connection_params: BTreeMap<String, String>,
    /// The grant to rotate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_id: Option<String>,
}

impl fmt::Debug for ManagedSecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted: BTreeMap<&str, &str> = self
            .fields
            .keys()
            .map(|k| (k.as_str(), "[redacted]"))
            .collect();
        f.debug_struct("ManagedSecretRequest")
            .field("provider", &self.provider)
            .field("principal", &self.principal)
            .field("fields", &redacted)
            .field("connection_params", &self.connection_params)
            .field("grant_id", &self.grant_id)
            .finish()
    }
}

impl fmt::Display for ManagedSecretRequest {
    /// Names the provider and fields, never their values.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.fields.keys().map(String::as_str).collect();
        write!(
            f,
            "managed secret for {} (fields {})",
            self.provider,
            names.join(", ")
        )
    }
}

/// The answer of `POST /v1/managed-secrets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ManagedSecretResponse {
    /// The grant as now stored.
    pub grant: Grant,
    /// `true` when an existing grant's secret was replaced, `false` for a new grant.
    pub rotated: bool,
}

/// `DELETE /v1/grants/{id}` body (optional): why it is revoked, for the audit log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeRequest {
    /// Free text kept in the audit row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// `PUT /v1/grants/{id}/ttl`: a grant's hard expiry from now on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct GrantTtlRequest {
    /// Seconds from now (1 to two years); absent or `null`: no expiry.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_round_trip_through_text() {
        for text in [
            "system",
            "user:https://idp.example.com:alice",
            "user:https://idp.example.com:8443/realms/x:auth0|42",
            "user:https://idp.example.com:a%3Ab%25c",
            "group:finance",
            "agent:0190aa00-0000-7000-8000-000000000000",
        ] {
            let p: Principal = text.parse().unwrap();
            assert_eq!(p.to_string(), text);
            assert_eq!(Principal::from_parts(p.kind(), &p.value()).unwrap(), p);
        }
        let p: Principal = "user:https://idp.example.com:a%3Ab".parse().unwrap();
        assert_eq!(
            p,
            Principal::User {
                issuer: "https://idp.example.com".into(),
                subject: "a:b".into()
            }
        );
    }

    #[test]
    fn a_managed_secret_request_never_shows_its_values() {
        let r = ManagedSecretRequest {
            provider: "stripe".into(),
            principal: None,
            fields: BTreeMap::from([("secret_key".to_owned(), "sk_test_CANARY".to_owned())]),
            connection_params: BTreeMap::new(),
            grant_id: None,
        };
        for text in [format!("{r:?}"), format!("{r:#?}"), r.to_string()] {
            assert!(
                !text.contains("CANARY") && text.contains("secret_key"),
                "{text}"
            );
        }
    }

    #[test]
    fn malformed_principals_are_refused() {
        for bad in [
            "",
            "user",
            "user:",
            "user:alice",
            "group:",
            "robot:x",
            "System",
        ] {
            assert!(bad.parse::<Principal>().is_err(), "{bad}");
        }
    }
}
