//! Delegations as a service, for the API (`/v1/delegations`), the CLI (`tessera delegation`)
//! and the connect flow: one agent may use one grant of its app that it does not own.
//!
//! Owns: who may create, see and end which delegation (the operator or an app key: any of the
//! app's; an agent key: sees and may end only its own, and creates none), the TTL bound
//! ([`MAX_TTL_SECS`]), and the audit rows `delegation.create` and `delegation.revoke`, written
//! in the same transaction as the change: if the row cannot be written, nothing changes.
//! A grant's revocation ends its delegations in the grant's own transaction
//! ([`crate::grants::Grants::revoke`]); what a live delegation lets an agent do is decided by
//! grant resolution ([`crate::calls`]) and [`crate::grants::Grants::resolve`].
//!
//! Must never: find a delegation, grant or agent without the caller's app id (another app's is
//! *not found*), or let an agent key create a delegation (an agent cannot give itself access).

use std::time::Duration;

use tessera_proto::delegations::{Delegation, DelegationPage};
use tessera_proto::grants::Principal;

use crate::audit::{self, Action, AuditEntry, AuditError, Outcome};
use crate::grants::{Change, Owner};
use crate::store::delegations::{
    self as repo, DelegationOrigin, DelegationRecord, Filter, RevokedBy,
};
use crate::store::grants as grant_repo;
use crate::store::{AgentId, AppId, DelegationId, GrantId, Store, StoreError, Timestamp, Tx};

/// The longest a delegation may last when it is given a TTL: one year.
pub const MAX_TTL_SECS: u64 = 366 * 24 * 3600;

/// The most delegations one listing returns.
pub const MAX_PAGE: u32 = 500;

/// Why a delegation operation failed. Messages hold ids and names, nothing secret.
#[derive(Debug, thiserror::Error)]
pub enum DelegationError {
    /// A malformed request (bad TTL, a grant the agent already owns).
    #[error("{0}")]
    Invalid(String),
    /// No delegation with this id is visible to the caller.
    #[error("no delegation {id} is visible to this key")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// No live grant with this id in the app.
    #[error("no live grant {id} in this app")]
    GrantNotFound {
        /// The id asked for.
        id: String,
    },
    /// No agent with this id or name in the app.
    #[error("this app has no agent {agent:?}")]
    AgentNotFound {
        /// The id or name asked for.
        agent: String,
    },
    /// The agent already holds a live delegation of this grant.
    #[error("agent {agent} already holds a live delegation of grant {grant}")]
    Duplicate {
        /// The grant.
        grant: String,
        /// The agent.
        agent: String,
    },
    /// An agent key asked to create a delegation.
    #[error(
        "delegations are created by the grant's user on a connect page or by an operator \
         with an app key; an agent key cannot create one"
    )]
    AppKeyRequired,
    /// The change could not be audited, so it was not made.
    #[error("the change was not made: its audit row could not be written")]
    AuditUnavailable(#[source] AuditError),
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
}

impl DelegationError {
    /// The stable machine code of the API problem.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid_request",
            Self::NotFound { .. } => "delegation_not_found",
            Self::GrantNotFound { .. } => "grant_not_found",
            Self::AgentNotFound { .. } => "agent_not_found",
            Self::Duplicate { .. } => "delegation_conflict",
            Self::AppKeyRequired => "app_key_required",
            Self::AuditUnavailable(_) => "audit_unavailable",
            Self::Store(_) => "internal_error",
        }
    }

    /// The HTTP status of the API problem.
    pub fn status(&self) -> u16 {
        match self {
            Self::Invalid(_) => 400,
            Self::AppKeyRequired => 403,
            Self::NotFound { .. } | Self::GrantNotFound { .. } | Self::AgentNotFound { .. } => 404,
            Self::Duplicate { .. } => 409,
            Self::Store(_) => 500,
            Self::AuditUnavailable(_) => 503,
        }
    }
}

/// What [`Delegations::revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ended {
    /// The delegation as now stored.
    pub delegation: Delegation,
    /// Whether this call revoked it (`false`: it already was; nothing was written).
    pub now: bool,
}

/// The delegation service over one database.
#[derive(Debug, Clone)]
pub struct Delegations {
    store: Store,
}

/// The TTL as a duration, checked against [`MAX_TTL_SECS`].
pub fn check_ttl(ttl_secs: Option<u64>) -> Result<Option<Duration>, DelegationError> {
    match ttl_secs {
        None => Ok(None),
        Some(0) => Err(DelegationError::Invalid(
            "a delegation's TTL must be at least one second".into(),
        )),
        Some(s) if s > MAX_TTL_SECS => Err(DelegationError::Invalid(format!(
            "a delegation's TTL may be at most {MAX_TTL_SECS} seconds (a year)"
        ))),
        Some(s) => Ok(Some(Duration::from_secs(s))),
    }
}

impl Delegations {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Lets `agent` (an id or a name) use grant `grant_id` of the owner's app, for `ttl_secs`
    /// or until revoked; audited as `delegation.create` by `change`. Only an app key (or the
    /// operator) may; the grant must be live and not already the agent's own.
    pub async fn create(
        &self,
        owner: Owner,
        change: &Change,
        grant_id: &str,
        agent: &str,
        ttl_secs: Option<u64>,
    ) -> Result<Delegation, DelegationError> {
        if owner.agent_id.is_some() {
            return Err(DelegationError::AppKeyRequired);
        }
        let ttl = check_ttl(ttl_secs)?;
        let agent_id = self.agent_id(owner.app_id, agent).await?;
        let grant = grant_id
            .parse::<GrantId>()
            .map_err(|_| DelegationError::GrantNotFound {
                id: grant_id.to_owned(),
            })?;
        let mut tx = self.store.begin().await?;
        let record = create_in(
            &mut tx,
            owner.app_id,
            grant,
            agent_id,
            DelegationOrigin::Operator,
            ttl,
            change,
        )
        .await?;
        tx.commit().await?;
        Ok(to_wire(&record, Timestamp::now()))
    }

    async fn agent_id(&self, app_id: AppId, agent: &str) -> Result<AgentId, DelegationError> {
        let not_found = || DelegationError::AgentNotFound {
            agent: agent.to_owned(),
        };
        let found = match agent.parse::<AgentId>() {
            Ok(id) => crate::store::agents::get(&self.store, app_id, id).await?,
            Err(_) => crate::store::agents::get_by_name(&self.store, app_id, agent).await?,
        };
        found.map(|a| a.id).ok_or_else(not_found)
    }

    /// The owner's app's delegations, newest first (live ones only unless `include_ended`),
    /// optionally of one agent (id or name) or one grant. An agent key sees only its own.
    pub async fn list(
        &self,
        owner: Owner,
        agent: Option<&str>,
        grant_id: Option<&str>,
        include_ended: bool,
    ) -> Result<DelegationPage, DelegationError> {
        let agent_id = match (owner.agent_id, agent) {
            (Some(own), None) => Some(own),
            (Some(own), Some(asked)) => {
                let asked = self.agent_id(owner.app_id, asked).await.ok();
                if asked != Some(own) {
                    return Ok(DelegationPage { items: Vec::new() });
                }
                Some(own)
            }
            (None, Some(asked)) => Some(self.agent_id(owner.app_id, asked).await?),
            (None, None) => None,
        };
        let grant_id = match grant_id {
            Some(g) => match g.parse::<GrantId>() {
                Ok(id) => Some(id),
                Err(_) => return Ok(DelegationPage { items: Vec::new() }),
            },
            None => None,
        };
        let now = Timestamp::now();
        let rows = repo::list(
            &self.store,
            owner.app_id,
            &Filter {
                agent_id,
                grant_id,
                include_ended,
            },
            now,
            MAX_PAGE,
        )
        .await?;
        Ok(DelegationPage {
            items: rows.iter().map(|d| to_wire(d, now)).collect(),
        })
    }

    /// Delegation `id` of the owner's app; for an agent key, only its own.
    pub async fn get(&self, owner: Owner, id: &str) -> Result<Delegation, DelegationError> {
        let record = self.record(owner, id).await?;
        Ok(to_wire(&record, Timestamp::now()))
    }

    async fn record(&self, owner: Owner, id: &str) -> Result<DelegationRecord, DelegationError> {
        let not_found = || DelegationError::NotFound { id: id.to_owned() };
        let did = id.parse::<DelegationId>().map_err(|_| not_found())?;
        repo::get(&self.store, owner.app_id, did)
            .await?
            .filter(|d| owner.agent_id.is_none_or(|own| own == d.agent_id))
            .ok_or_else(not_found)
    }

    /// Ends delegation `id` of the owner's app (an agent key: only its own), audited as
    /// `delegation.revoke` by `change` when it changes anything. The grant is untouched.
    pub async fn revoke(
        &self,
        owner: Owner,
        change: &Change,
        id: &str,
    ) -> Result<Ended, DelegationError> {
        let found = self.record(owner, id).await?;
        let by = if owner.agent_id.is_some() {
            RevokedBy::Agent
        } else if change.origin.actor.kind == crate::audit::ActorKind::User {
            RevokedBy::User
        } else {
            RevokedBy::Operator
        };
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let changed = repo::revoke(&mut tx, owner.app_id, found.id, by, now).await?;
        let record = repo::get(&mut tx, owner.app_id, found.id)
            .await?
            .ok_or_else(|| DelegationError::NotFound { id: id.to_owned() })?;
        if changed {
            audit::append(
                &mut tx,
                &[entry(Action::DelegationRevoke, change, &record, now)],
            )
            .await
            .map_err(DelegationError::AuditUnavailable)?;
        }
        tx.commit().await?;
        Ok(Ended {
            delegation: to_wire(&record, now),
            now: changed,
        })
    }
}

impl Delegations {
    /// Makes live delegation `id` end `ttl` from now (at most [`MAX_TTL_SECS`]), audited as
    /// `delegation.ttl`. A revoked or expired delegation is not revived: `invalid_request`.
    pub async fn set_ttl(
        &self,
        owner: Owner,
        change: &Change,
        id: &str,
        ttl: Duration,
    ) -> Result<Delegation, DelegationError> {
        let ttl = check_ttl(Some(ttl.as_secs()))?.unwrap_or(ttl);
        let found = self.record(owner, id).await?;
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        if !repo::set_expiry(&mut tx, owner.app_id, found.id, now.plus(ttl), now).await? {
            return Err(DelegationError::Invalid(format!(
                "delegation {id} has ended; a new one is needed"
            )));
        }
        let record = repo::get(&mut tx, owner.app_id, found.id)
            .await?
            .ok_or_else(|| DelegationError::NotFound { id: id.to_owned() })?;
        audit::append(
            &mut tx,
            &[entry(Action::DelegationTtl, change, &record, now)],
        )
        .await
        .map_err(DelegationError::AuditUnavailable)?;
        tx.commit().await?;
        Ok(to_wire(&record, now))
    }
}

/// Creates a delegation inside `tx` and its `delegation.create` audit row: the grant must be
/// a live grant of `app_id` not owned by the agent. The connect flow calls this in the
/// transaction that stores the user's grant, so consent and delegation land together.
pub async fn create_in(
    tx: &mut Tx,
    app_id: AppId,
    grant_id: GrantId,
    agent_id: AgentId,
    origin: DelegationOrigin,
    ttl: Option<Duration>,
    change: &Change,
) -> Result<DelegationRecord, DelegationError> {
    let grant = grant_repo::get(&mut *tx, app_id, grant_id, true)
        .await?
        .filter(|g| g.revoked_at.is_none())
        .ok_or_else(|| DelegationError::GrantNotFound {
            id: grant_id.to_string(),
        })?;
    if grant.principal == Principal::Agent(agent_id.to_string()) {
        return Err(DelegationError::Invalid(format!(
            "grant {grant_id} already belongs to agent {agent_id}"
        )));
    }
    let now = Timestamp::now();
    let record = DelegationRecord {
        id: DelegationId::new(),
        app_id,
        grant_id,
        agent_id,
        origin,
        created_at: now,
        expires_at: ttl.map(|t| now.plus(t)),
        revoked_at: None,
        revoked_by: None,
    };
    repo::close_expired(&mut *tx, app_id, grant_id, agent_id, now).await?;
    repo::insert(&mut *tx, &record).await.map_err(|e| match e {
        StoreError::Conflict { .. } => DelegationError::Duplicate {
            grant: grant_id.to_string(),
            agent: agent_id.to_string(),
        },
        e => e.into(),
    })?;
    let mut row = entry(Action::DelegationCreate, change, &record, now);
    row.provider = Some(grant.provider.clone());
    row.principal = Some(grant.principal.to_string());
    audit::append(tx, &[row])
        .await
        .map_err(DelegationError::AuditUnavailable)?;
    Ok(record)
}

/// The audit row of a delegation change.
fn entry(action: Action, change: &Change, d: &DelegationRecord, at: Timestamp) -> AuditEntry {
    AuditEntry {
        at,
        app_id: Some(d.app_id),
        key_id: change.key_id.clone(),
        caller: change.caller.clone(),
        request_id: change.request_id.clone(),
        reason: change.reason.clone(),
        grant_id: Some(d.grant_id.to_string()),
        detail: change.annotate(serde_json::json!({
            "via": change.origin.via.as_str(),
            "delegation_id": d.id.to_string(),
            "agent_id": d.agent_id.to_string(),
            "origin": d.origin.as_str(),
            "expires_at": d.expires_at.map(Timestamp::to_rfc3339),
            "revoked_by": d.revoked_by.map(RevokedBy::as_str),
        })),
        ..AuditEntry::new(action, change.origin.actor.clone(), Outcome::Ok)
    }
}

/// The wire form of a stored delegation, its status as of `now`.
pub fn to_wire(d: &DelegationRecord, now: Timestamp) -> Delegation {
    let status = if d.revoked_by == Some(RevokedBy::Expired) {
        "expired"
    } else if d.revoked_at.is_some() {
        "revoked"
    } else if d.is_live(now) {
        "active"
    } else {
        "expired"
    };
    Delegation {
        id: d.id.to_string(),
        grant_id: d.grant_id.to_string(),
        agent_id: d.agent_id.to_string(),
        origin: d.origin.as_str().to_owned(),
        status: status.to_owned(),
        created_at: d.created_at.to_rfc3339(),
        expires_at: d.expires_at.map(Timestamp::to_rfc3339),
        revoked_at: d
            .revoked_at
            .filter(|_| d.revoked_by != Some(RevokedBy::Expired))
            .map(Timestamp::to_rfc3339),
        revoked_by: d
            .revoked_by
            .filter(|b| *b != RevokedBy::Expired)
            .map(|b| b.as_str().to_owned()),
    }
}
