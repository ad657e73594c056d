//! Agents as a service, for the API (`/v1/agents`) and the CLI (`tessera agent`): create,
//! list, show, disable and enable the operator-provisioned workload identities of an app.
//!
//! Owns: who may see and change which agent (an app key or the operator: every agent of the
//! app; an agent key: only itself, and it changes nothing), the agent-name rules (shared with
//! [`crate::apps`], which still creates an agent on first use by `tessera key create
//! --agent`), and the audit rows `agent.create`, `agent.disable` and `agent.enable`, written
//! in the same transaction as the change: if the row cannot be written, nothing changes.
//!
//! What disabling means is enforced elsewhere, by the one live-key condition
//! ([`crate::store::api_keys::LIVE_KEY`]) that the key resolver and every request's nonce
//! insert apply: a disabled agent's keys are refused like revoked keys, on every instance,
//! from the next request on; enabling it makes the same keys work again.
//!
//! Must never: find an agent without the caller's app id (another app's agent is *not
//! found*, never *forbidden*), or let an agent key change an agent.

use tessera_proto::agents::{Agent, AgentPage};

use crate::audit::{self, Action, AuditEntry, AuditError, Outcome};
use crate::grants::{Change, Owner};
use crate::store::agents::{self as repo, Agent as AgentRecord};
use crate::store::{AgentId, AppId, Store, StoreError, Timestamp};

/// Agents per page of a listing when none is asked for.
pub const DEFAULT_PAGE: u32 = 100;

/// The most agents one page holds.
pub const MAX_PAGE: u32 = 500;

/// Why an agent operation failed. Messages hold names and ids, nothing secret.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The name breaks the naming rules (the message says which).
    #[error("{0}")]
    InvalidName(String),
    /// A malformed request (a bad cursor).
    #[error("{0}")]
    Invalid(String),
    /// No agent with this id is visible to the caller.
    #[error("no agent {id} is visible to this key")]
    NotFound {
        /// The id asked for.
        id: String,
    },
    /// The app has no agent of this name.
    #[error("app {app:?} has no agent named {name:?} (see `tessera agent list --app {app}`)")]
    UnknownName {
        /// The app's name.
        app: String,
        /// The agent name asked for.
        name: String,
    },
    /// The app already has an agent of this name.
    #[error("this app already has an agent named {name:?}")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// An agent key asked to create, disable or enable an agent.
    #[error(
        "agents are managed with an app key (or `tessera agent` by the operator); an agent \
         key cannot create, disable or enable agents"
    )]
    AppKeyRequired,
    /// The change could not be audited, so it was not made.
    #[error("the change was not made: its audit row could not be written")]
    AuditUnavailable(#[source] AuditError),
    /// The database failed.
    #[error("the database failed")]
    Store(#[from] StoreError),
}

impl AgentError {
    /// The stable machine code of the API problem.
    pub fn code(&self) -> &'static str {
        match self {
            AgentError::InvalidName(_) | AgentError::Invalid(_) => "invalid_request",
            AgentError::NotFound { .. } | AgentError::UnknownName { .. } => "agent_not_found",
            AgentError::Duplicate { .. } => "agent_conflict",
            AgentError::AppKeyRequired => "app_key_required",
            AgentError::AuditUnavailable(_) => "audit_unavailable",
            AgentError::Store(_) => "internal_error",
        }
    }

    /// The HTTP status of the API problem.
    pub fn status(&self) -> u16 {
        match self {
            AgentError::InvalidName(_) | AgentError::Invalid(_) => 400,
            AgentError::AppKeyRequired => 403,
            AgentError::NotFound { .. } | AgentError::UnknownName { .. } => 404,
            AgentError::Duplicate { .. } => 409,
            AgentError::Store(_) => 500,
            AgentError::AuditUnavailable(_) => 503,
        }
    }
}

/// What [`Agents::set_disabled`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toggled {
    /// The agent as now stored.
    pub agent: Agent,
    /// Whether this call changed it (`false`: it already was in that state; nothing was
    /// written, not even an audit row).
    pub now: bool,
}

/// The agent service over one database.
#[derive(Debug, Clone)]
pub struct Agents {
    store: Store,
}

impl Agents {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Creates agent `name` in the owner's app, audited as `agent.create` by `change`.
    /// Only an app key (or the operator) may.
    pub async fn create(
        &self,
        owner: Owner,
        change: &Change,
        name: &str,
    ) -> Result<Agent, AgentError> {
        if owner.agent_id.is_some() {
            return Err(AgentError::AppKeyRequired);
        }
        crate::apps::check_name("agent", name)
            .map_err(|e| AgentError::InvalidName(e.to_string()))?;
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let agent = repo::create(&mut tx, owner.app_id, name, now)
            .await
            .map_err(|e| match e {
                StoreError::Conflict { .. } => AgentError::Duplicate {
                    name: name.to_owned(),
                },
                e => e.into(),
            })?;
        audit::append(&mut tx, &[entry(Action::AgentCreate, change, &agent, now)])
            .await
            .map_err(AgentError::AuditUnavailable)?;
        tx.commit().await?;
        Ok(to_wire(&agent))
    }

    /// A page of the owner's app's agents by name: `limit` (1–[`MAX_PAGE`], default
    /// [`DEFAULT_PAGE`]), after `cursor` (the previous page's `next_cursor`). An agent key
    /// sees only itself.
    pub async fn list(
        &self,
        owner: Owner,
        cursor: Option<&str>,
        limit: Option<u32>,
    ) -> Result<AgentPage, AgentError> {
        if let Some(c) = cursor {
            crate::apps::check_name("agent", c)
                .map_err(|_| AgentError::Invalid(format!("cursor {c:?} is not valid")))?;
        }
        if let Some(own) = owner.agent_id {
            let items = repo::get(&self.store, owner.app_id, own)
                .await?
                .filter(|a| cursor.is_none_or(|c| a.name.as_str() > c))
                .map(|a| to_wire(&a))
                .into_iter()
                .collect();
            return Ok(AgentPage {
                items,
                next_cursor: None,
            });
        }
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let mut rows = repo::list(&self.store, owner.app_id, cursor, i64::from(limit) + 1).await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|a| a.name.clone())
        } else {
            None
        };
        Ok(AgentPage {
            items: rows.iter().map(to_wire).collect(),
            next_cursor,
        })
    }

    /// Every agent of app `app_id`, by name (the CLI's listing).
    pub async fn all(&self, app_id: AppId) -> Result<Vec<Agent>, AgentError> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list(Owner::app(app_id), cursor.as_deref(), Some(MAX_PAGE))
                .await?;
            out.extend(page.items);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(out),
            }
        }
    }

    /// Agent `id` of the owner's app; for an agent key, only itself.
    pub async fn get(&self, owner: Owner, id: &str) -> Result<Agent, AgentError> {
        Ok(to_wire(&self.record(owner, id).await?))
    }

    /// The agent named `name` of app `app_id` (named `app_name`, for the error).
    pub async fn by_name(
        &self,
        app_id: AppId,
        app_name: &str,
        name: &str,
    ) -> Result<Agent, AgentError> {
        repo::get_by_name(&self.store, app_id, name)
            .await?
            .map(|a| to_wire(&a))
            .ok_or_else(|| AgentError::UnknownName {
                app: app_name.to_owned(),
                name: name.to_owned(),
            })
    }

    /// Disables (`disabled`) or enables agent `id` of the owner's app, audited as
    /// `agent.disable` / `agent.enable` by `change` when it changes anything. While an agent
    /// is disabled, every key of it is refused (`401 unknown_key`), on every host instance,
    /// from its next request on. Only an app key (or the operator) may.
    pub async fn set_disabled(
        &self,
        owner: Owner,
        change: &Change,
        id: &str,
        disabled: bool,
    ) -> Result<Toggled, AgentError> {
        if owner.agent_id.is_some() {
            return Err(AgentError::AppKeyRequired);
        }
        let agent_id = parse_id(id)?;
        let now = Timestamp::now();
        let mut tx = self.store.begin().await?;
        let changed = repo::set_disabled(&mut tx, owner.app_id, agent_id, disabled, now).await?;
        let agent = repo::get(&mut tx, owner.app_id, agent_id)
            .await?
            .ok_or_else(|| AgentError::NotFound { id: id.to_owned() })?;
        if changed {
            let action = if disabled {
                Action::AgentDisable
            } else {
                Action::AgentEnable
            };
            audit::append(&mut tx, &[entry(action, change, &agent, now)])
                .await
                .map_err(AgentError::AuditUnavailable)?;
        }
        tx.commit().await?;
        Ok(Toggled {
            agent: to_wire(&agent),
            now: changed,
        })
    }

    async fn record(&self, owner: Owner, id: &str) -> Result<AgentRecord, AgentError> {
        let not_found = || AgentError::NotFound { id: id.to_owned() };
        let agent_id = parse_id(id)?;
        if owner.agent_id.is_some_and(|own| own != agent_id) {
            return Err(not_found());
        }
        repo::get(&self.store, owner.app_id, agent_id)
            .await?
            .ok_or_else(not_found)
    }
}

/// The audit row of an agent change: the agent's id and name, and where the change came
/// from. `crate::apps` records an agent created on first use with it too.
pub(crate) fn entry(
    action: Action,
    change: &Change,
    agent: &AgentRecord,
    at: Timestamp,
) -> AuditEntry {
    AuditEntry {
        at,
        app_id: Some(agent.app_id),
        key_id: change.key_id.clone(),
        caller: change.caller.clone(),
        request_id: change.request_id.clone(),
        reason: change.reason.clone(),
        detail: change.annotate(serde_json::json!({
            "via": change.origin.via.as_str(),
            "agent_id": agent.id.to_string(),
            "name": agent.name,
        })),
        ..AuditEntry::new(action, change.origin.actor.clone(), Outcome::Ok)
    }
}

/// An id that is not a UUID names no agent: *not found*, like one of another app.
fn parse_id(id: &str) -> Result<AgentId, AgentError> {
    id.parse()
        .map_err(|_| AgentError::NotFound { id: id.to_owned() })
}

/// The wire form of a stored agent.
pub fn to_wire(agent: &AgentRecord) -> Agent {
    Agent {
        id: agent.id.to_string(),
        name: agent.name.clone(),
        created_at: agent.created_at.to_rfc3339(),
        disabled_at: agent.disabled_at.map(Timestamp::to_rfc3339),
    }
}

#[cfg(test)]
mod tests;
