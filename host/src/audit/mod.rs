//! The audit log: who used what, when, why, and what came of it — one hash-chained row per
//! retrieve, proxied call, grant change and key change, written **before** the response is
//! sent. A call whose row cannot be committed is refused (fail closed): [`AuditLog::record`]
//! and [`append`] return an error unless the row is durably committed.
//!
//! Owns: the entry type ([`AuditEntry`]), the group-commit writer ([`AuditLog`]), the chain
//! hash and its canonical encoding (below), [`verify`], the listing behind `GET /v1/audit`
//! and the CLI ([`list`]), and the redaction helpers ([`redact_headers`], [`redact_url`]).
//!
//! Must never: store a secret (token, key, cookie, signature, client secret) in a row;
//! update or delete a row; or report an event as recorded before its transaction committed.
//!
//! # Keeping secrets out
//!
//! A row holds identifiers, names and outcomes, never credential material. `detail` is a
//! JSON value the caller builds from the facts of the action; before it is stored, every
//! object member whose name looks secret (`authorization`, `cookie`, anything containing
//! `token`, `secret`, `password`, `signature`, `credential`, or ending in `key`) has its
//! value replaced by `"[redacted]"`, so has the value of every `[name, value]` pair with
//! such a name (a serialised header list), and string members named like a URL (`url`, `uri`,
//! `path`, `target`, `location`, `redirect_uri`) go through [`redact_url`]. Wire metadata is
//! redacted by the caller with [`redact_headers`] and [`redact_url`]. `reason` and
//! `context` are the developer's own words and are stored as given.
//!
//! # The chain
//!
//! Rows are numbered `seq = 1, 2, …` without gaps, in commit order. Each row stores
//! `prev_hash` (the previous row's `hash`; 32 zero bytes for row 1) and
//! `hash = SHA-256(encoding)`, where `encoding` is, byte for byte:
//!
//! ```text
//! "tessera.audit.v1\n"                      17 ASCII bytes, a domain separator
//! field(seq) field(id) field(at) field(app_id) field(actor_kind) field(actor_id)
//! field(key_id) field(caller) field(action) field(provider) field(grant_id)
//! field(principal_kind) field(principal_value) field(outcome) field(reason)
//! field(context) field(request_id) field(detail)
//! prev_hash                                 exactly 32 bytes
//!
//! field(NULL)      = 0x00
//! field(text t)    = 0x01 ‖ u64 big-endian byte length of t ‖ UTF-8 bytes of t
//! field(integer n) = 0x02 ‖ n as i64 big-endian (two's complement)
//! ```
//!
//! The fields are the stored column values in the order above (`seq` and `at` integers,
//! `at` in unix milliseconds; `context` and `detail` the stored JSON text, not a re-encoding
//! of it). Every field is tagged and length-prefixed, so no two different rows share an
//! encoding. A writer serialises `context` with sorted keys and `detail` with `serde_json`;
//! verification never re-serialises, it hashes the stored text.
//!
//! Appending takes a lock that serialises appenders across host instances (SQLite: the
//! write transaction; PostgreSQL: an advisory transaction lock, see
//! [`crate::store::dialect::Dialect::audit_append_lock`]), reads the last `(seq, hash)`, and
//! inserts the new rows in the same transaction; the table's unique `prev_hash` makes a fork
//! impossible even without the lock.
//!
//! ## What verification can and cannot see
//!
//! [`verify`] recomputes every hash and checks every link and every `seq`: an edited row,
//! a deleted row, and rows swapped or renumbered are all detected, and the first bad `seq`
//! is reported. A chain alone cannot notice that its **tail** was cut off (the remaining
//! rows are a valid, shorter chain), so every append also stores the head `(seq, hash)` in
//! the `meta` table under [`HEAD_META_KEY`], in the same transaction; verification compares
//! it with the last row. Someone with write access to the database who deletes the tail
//! *and* rewrites the head, or rewrites a row and re-hashes every row after it, is not
//! detectable from inside the database: for that, keep the head printed by
//! `tessera audit verify --json` somewhere the database's writers cannot reach.

mod chain;
mod query;
mod redact;
#[doc(hidden)]
pub mod testing;
mod verify;
mod writer;

use std::collections::BTreeMap;
use std::fmt;

pub use chain::{GENESIS_HASH, HASH_LEN, HEAD_META_KEY, append, row_hash};
pub use query::{AuditFilter, DEFAULT_LIMIT, MAX_LIMIT, event_of, list, page, parse_rfc3339};
pub use redact::{REDACTED, redact_detail, redact_headers, redact_url};
pub use verify::{ChainProblem, Head, ProblemKind, VerifyReport, verify};
pub use writer::{AuditLog, AuditOptions, AuditStats};

use crate::store::{AppId, StoreError, Timestamp};

/// Why an audit operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The event was **not** recorded (the batch's transaction failed, or the log is shut
    /// down). Whoever asked must refuse the call it was about.
    #[error("the audit log could not record the event: {reason}")]
    Unavailable {
        /// What went wrong (never a secret: store errors carry no bound values).
        reason: String,
    },
    /// Reading the log failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored row does not have the shape this code writes.
    #[error("corrupt audit row {seq}: {detail}")]
    Corrupt {
        /// The row.
        seq: i64,
        /// What is wrong with it.
        detail: String,
    },
    /// A filter value is malformed (e.g. a time that is not RFC 3339).
    #[error("invalid audit filter: {0}")]
    InvalidFilter(String),
}

/// Who acted, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActorKind {
    /// An app's API key.
    AppKey,
    /// An agent (by its agent key).
    Agent,
    /// An end user (in the wallet).
    User,
    /// The operator, on the command line.
    Operator,
    /// The host itself (background refresh, expiry, …).
    Host,
}

impl ActorKind {
    /// The stored name: `app_key`, `agent`, `user`, `operator`, `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::AppKey => "app_key",
            ActorKind::Agent => "agent",
            ActorKind::User => "user",
            ActorKind::Operator => "operator",
            ActorKind::Host => "host",
        }
    }
}

/// Who acted: a kind and an identifier within it (key id, agent id, `ISSUER:SUB`, operator
/// login, host instance).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Actor {
    /// The kind.
    pub kind: ActorKind,
    /// Who within the kind.
    pub id: String,
}

impl Actor {
    /// An actor of `kind` named `id`.
    pub fn new(kind: ActorKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }

    /// The operator `login` on the command line.
    pub fn operator(login: impl Into<String>) -> Self {
        Self::new(ActorKind::Operator, login)
    }

    /// An app's API key, by key id.
    pub fn app_key(key_id: impl Into<String>) -> Self {
        Self::new(ActorKind::AppKey, key_id)
    }

    /// An agent, by agent id.
    pub fn agent(agent_id: impl Into<String>) -> Self {
        Self::new(ActorKind::Agent, agent_id)
    }

    /// An end user, by `ISSUER:SUB`.
    pub fn user(id: impl Into<String>) -> Self {
        Self::new(ActorKind::User, id)
    }

    /// The host itself (background work), by instance name.
    pub fn host(instance: impl Into<String>) -> Self {
        Self::new(ActorKind::Host, instance)
    }
}

/// What happened. The stored names are stable; add variants, never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Retrieve mode: auth material issued to the SDK.
    TokensRetrieve,
    /// Proxy mode: the host sent the request.
    ProxyExecute,
    /// A grant was created (connect flow finished, managed secret stored).
    GrantCreate,
    /// A grant's secret was replaced or its token refreshed.
    GrantRotate,
    /// A grant was revoked.
    GrantRevoke,
    /// A grant needs the user to authorize again.
    GrantReauthRequired,
    /// A grant's TTL (hard expiry) was set, changed or removed.
    GrantTtl,
    /// An agent was allowed to use a user's grant.
    DelegationCreate,
    /// A delegation was withdrawn.
    DelegationRevoke,
    /// A delegation's expiry was changed.
    DelegationTtl,
    /// A human-in-the-loop approval was requested.
    ApprovalRequest,
    /// An approval was decided.
    ApprovalDecide,
    /// An app was registered.
    AppCreate,
    /// An agent was created.
    AgentCreate,
    /// An agent was disabled: its keys are refused until it is enabled.
    AgentDisable,
    /// A disabled agent was enabled again.
    AgentEnable,
    /// An API key was created.
    KeyCreate,
    /// An API key was revoked.
    KeyRevoke,
    /// The data keys or the master key were rotated.
    KeysRotate,
    /// An app's OAuth client for a provider was configured or changed.
    ProviderConfigure,
    /// An app's OAuth client for a provider was removed.
    ProviderUnconfigure,
    /// An app's identity provider was configured or changed.
    IdpConfigure,
    /// An app's identity provider was removed.
    IdpRemove,
    /// A policy rule was created.
    PolicyRuleCreate,
    /// A policy rule was changed.
    PolicyRuleUpdate,
    /// A policy rule was deleted.
    PolicyRuleDelete,
    /// An app's webhook endpoint was configured or changed.
    WebhookConfigure,
    /// An app's webhook endpoint was removed.
    WebhookRemove,
}

impl Action {
    /// Every action, for documentation and filters.
    pub const ALL: [Action; 28] = [
        Action::TokensRetrieve,
        Action::ProxyExecute,
        Action::GrantCreate,
        Action::GrantRotate,
        Action::GrantRevoke,
        Action::GrantReauthRequired,
        Action::GrantTtl,
        Action::DelegationCreate,
        Action::DelegationRevoke,
        Action::DelegationTtl,
        Action::ApprovalRequest,
        Action::ApprovalDecide,
        Action::AppCreate,
        Action::AgentCreate,
        Action::AgentDisable,
        Action::AgentEnable,
        Action::KeyCreate,
        Action::KeyRevoke,
        Action::KeysRotate,
        Action::ProviderConfigure,
        Action::ProviderUnconfigure,
        Action::IdpConfigure,
        Action::IdpRemove,
        Action::PolicyRuleCreate,
        Action::PolicyRuleUpdate,
        Action::PolicyRuleDelete,
        Action::WebhookConfigure,
        Action::WebhookRemove,
    ];

    /// The stored name (`tokens.retrieve`, `proxy.execute`, `grant.revoke`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Action::TokensRetrieve => "tokens.retrieve",
            Action::ProxyExecute => "proxy.execute",
            Action::GrantCreate => "grant.create",
            Action::GrantRotate => "grant.rotate",
            Action::GrantRevoke => "grant.revoke",
            Action::GrantReauthRequired => "grant.reauth_required",
            Action::GrantTtl => "grant.ttl",
            Action::DelegationCreate => "delegation.create",
            Action::DelegationRevoke => "delegation.revoke",
            Action::DelegationTtl => "delegation.ttl",
            Action::ApprovalRequest => "approval.request",
            Action::ApprovalDecide => "approval.decide",
            Action::AppCreate => "app.create",
            Action::AgentCreate => "agent.create",
            Action::AgentDisable => "agent.disable",
            Action::AgentEnable => "agent.enable",
            Action::KeyCreate => "key.create",
            Action::KeyRevoke => "key.revoke",
            Action::KeysRotate => "keys.rotate",
            Action::ProviderConfigure => "provider.configure",
            Action::ProviderUnconfigure => "provider.unconfigure",
            Action::IdpConfigure => "idp.configure",
            Action::IdpRemove => "idp.remove",
            Action::PolicyRuleCreate => "policy.rule.create",
            Action::PolicyRuleUpdate => "policy.rule.update",
            Action::PolicyRuleDelete => "policy.rule.delete",
            Action::WebhookConfigure => "webhook.configure",
            Action::WebhookRemove => "webhook.remove",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Done.
    Ok,
    /// Refused (scope, policy, isolation, approval denied).
    Denied,
    /// Failed (upstream error, component trap, timeout).
    Error,
    /// Waiting for a human approval.
    Pending,
}

impl Outcome {
    /// The stored name: `ok`, `denied`, `error`, `pending`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
            Outcome::Pending => "pending",
        }
    }
}

/// Where a change was asked for: recorded as `detail.via` for grant and key changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// The `tessera` command line.
    Cli,
    /// The signed SDK API.
    Api,
    /// The end user's wallet.
    Wallet,
    /// The hosted connect page (an end user finished a connect flow).
    Connect,
}

impl Via {
    /// `cli`, `api`, `wallet` or `connect`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Api => "api",
            Via::Wallet => "wallet",
            Via::Connect => "connect",
        }
    }
}

/// Who asked for a change, and from where: what a service that audits its changes needs
/// from its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Who.
    pub actor: Actor,
    /// From where.
    pub via: Via,
}

impl Origin {
    /// The operator `login` on the command line.
    pub fn cli_operator(login: impl Into<String>) -> Self {
        Self {
            actor: Actor::operator(login),
            via: Via::Cli,
        }
    }
}

/// One event to record. Build it with [`AuditEntry::new`] and struct-update syntax:
///
/// ```
/// # use tessera_host::audit::{Action, Actor, ActorKind, AuditEntry, Outcome};
/// let entry = AuditEntry {
///     provider: Some("github".into()),
///     reason: Some("sync repos".into()),
///     ..AuditEntry::new(Action::ProxyExecute, Actor::new(ActorKind::AppKey, "0123456789abcdef"), Outcome::Ok)
/// };
/// # let _ = entry;
/// ```
///
/// Nothing here may be secret. `detail` is redacted by name before it is stored (see the
/// module documentation), but callers build it from facts, not from secret-bearing values.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// When it happened.
    pub at: Timestamp,
    /// The app concerned.
    pub app_id: Option<AppId>,
    /// Who acted.
    pub actor: Actor,
    /// The API key that signed the request.
    pub key_id: Option<String>,
    /// The caller name the SDK declared.
    pub caller: Option<String>,
    /// What happened.
    pub action: Action,
    /// The provider concerned.
    pub provider: Option<String>,
    /// The grant concerned.
    pub grant_id: Option<String>,
    /// The grant's principal in its text form (`system`, `user:ISSUER:SUB`, `group:NAME`,
    /// `agent:ID`); stored split at the first `:` into kind and value.
    pub principal: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The developer's stated reason for the call.
    pub reason: Option<String>,
    /// The developer's free-form context (tool name, run id, …).
    pub context: BTreeMap<String, String>,
    /// The host's request id.
    pub request_id: Option<String>,
    /// Action-specific facts: mode, method, host, path, status, latency, error code,
    /// `via` for changes, redacted wire metadata for proxied calls. `Null` for none.
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// An entry for `action` by `actor` ending in `outcome`, happening now, with every
    /// optional field empty.
    pub fn new(action: Action, actor: Actor, outcome: Outcome) -> Self {
        Self {
            at: Timestamp::now(),
            app_id: None,
            actor,
            key_id: None,
            caller: None,
            action,
            provider: None,
            grant_id: None,
            principal: None,
            outcome,
            reason: None,
            context: BTreeMap::new(),
            request_id: None,
            detail: serde_json::Value::Null,
        }
    }
}

/// A committed event: where it sits in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Its position in the chain.
    pub seq: i64,
    /// Its row id.
    pub id: String,
    /// Its chain hash.
    pub hash: [u8; HASH_LEN],
}

#[cfg(test)]
mod tests;
