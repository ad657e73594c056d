//! The `delegations` table: one agent of an app may use one grant of the same app that it
//! does not own. Created by an end user's consent on a connect page that named the agent, or
//! by an operator mapping an existing grant to an agent. A delegation may expire; revoking it
//! removes the agent's access and leaves the grant alone; revoking the grant revokes all of
//! its delegations (in the grant's own transaction, [`revoke_for_grant`]).
//!
//! Every lookup takes the app id, so another app's delegation is never found. Revoked rows
//! stay as history; at most one live delegation exists per grant and agent (a partial unique
//! index), so a second one is a [`StoreError::Conflict`].

use std::fmt;

use super::{AgentId, AppId, Db, DelegationId, GrantId, StoreError, Timestamp, on_conn};

const TABLE: &str = "delegations";

const COLUMNS: &str =
    "id, app_id, grant_id, agent_id, origin, created_at, expires_at, revoked_at, revoked_by";

/// How a delegation came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelegationOrigin {
    /// The grant's user consented on a connect page that named the agent.
    Consent,
    /// An operator mapped the grant to the agent.
    Operator,
}

impl DelegationOrigin {
    /// Its text form, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Consent => "consent",
            Self::Operator => "operator",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "consent" => Ok(Self::Consent),
            "operator" => Ok(Self::Operator),
            other => Err(StoreError::Corrupt {
                table: TABLE,
                detail: format!("unknown delegation origin {other:?}"),
            }),
        }
    }
}

/// Who ended a delegation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokedBy {
    /// An operator (CLI or an app key).
    Operator,
    /// The agent itself.
    Agent,
    /// The grant's user (wallet).
    User,
    /// Nobody in particular: the grant was revoked, which ends all of its delegations.
    Grant,
    /// Nobody: it had expired, and was closed when a new delegation of the same grant to
    /// the same agent was made.
    Expired,
}

impl RevokedBy {
    /// Its text form, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Agent => "agent",
            Self::User => "user",
            Self::Grant => "grant",
            Self::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "operator" => Ok(Self::Operator),
            "agent" => Ok(Self::Agent),
            "user" => Ok(Self::User),
            "grant" => Ok(Self::Grant),
            "expired" => Ok(Self::Expired),
            other => Err(StoreError::Corrupt {
                table: TABLE,
                detail: format!("unknown delegation revoker {other:?}"),
            }),
        }
    }
}

impl fmt::Display for RevokedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One stored delegation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DelegationRecord {
    /// Its id.
    pub id: DelegationId,
    /// The app of both the grant and the agent.
    pub app_id: AppId,
    /// The grant the agent may use.
    pub grant_id: GrantId,
    /// The agent.
    pub agent_id: AgentId,
    /// Consent or operator mapping.
    pub origin: DelegationOrigin,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops working by itself, if ever.
    pub expires_at: Option<Timestamp>,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// Who revoked it.
    pub revoked_by: Option<RevokedBy>,
}

impl DelegationRecord {
    /// Whether it lets its agent use its grant at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

fn from_row(
    (id, app_id, grant_id, agent_id, origin, created_at, expires_at, revoked_at, revoked_by): Row,
) -> Result<DelegationRecord, StoreError> {
    Ok(DelegationRecord {
        id: DelegationId::from_column(TABLE, &id)?,
        app_id: AppId::from_column(TABLE, &app_id)?,
        grant_id: GrantId::from_column(TABLE, &grant_id)?,
        agent_id: AgentId::from_column(TABLE, &agent_id)?,
        origin: DelegationOrigin::parse(&origin)?,
        created_at: Timestamp::from_unix_millis(created_at),
        expires_at: expires_at.map(Timestamp::from_unix_millis),
        revoked_at: revoked_at.map(Timestamp::from_unix_millis),
        revoked_by: revoked_by.as_deref().map(RevokedBy::parse).transpose()?,
    })
}

/// Stores a new live delegation. Checking that the grant and the agent belong to the app is
/// also the database's job (composite foreign keys); a live duplicate is a conflict.
pub async fn insert(db: impl Into<Db<'_>>, d: &DelegationRecord) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "INSERT INTO delegations (id, app_id, grant_id, agent_id, origin, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(d.id.to_string())
        .bind(d.app_id.to_string())
        .bind(d.grant_id.to_string())
        .bind(d.agent_id.to_string())
        .bind(d.origin.as_str())
        .bind(d.created_at.unix_millis())
        .bind(d.expires_at.map(Timestamp::unix_millis))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            "a live delegation of this grant to this agent".to_owned()
        }))?;
        Ok(())
    })
}

/// Delegation `id` of app `app_id`, live or not.
pub async fn get(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: DelegationId,
) -> Result<Option<DelegationRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM delegations WHERE id = $1 AND app_id = $2"
        ))
        .bind(id.to_string())
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(from_row).transpose()
    })
}

/// The live, unexpired delegation of grant `grant_id` to agent `agent_id` at `now`, if any.
pub async fn live_for(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    grant_id: GrantId,
    agent_id: AgentId,
    now: Timestamp,
) -> Result<Option<DelegationRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM delegations WHERE app_id = $1 AND grant_id = $2 \
             AND agent_id = $3 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4)"
        ))
        .bind(app_id.to_string())
        .bind(grant_id.to_string())
        .bind(agent_id.to_string())
        .bind(now.unix_millis())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(from_row).transpose()
    })
}

/// What [`list`] returns: filters combine with AND.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this agent's.
    pub agent_id: Option<AgentId>,
    /// Only this grant's.
    pub grant_id: Option<GrantId>,
    /// Revoked and expired ones too (history).
    pub include_ended: bool,
}

/// Up to `limit` delegations of app `app_id`, newest first; without
/// [`Filter::include_ended`], only those live at `now`.
pub async fn list(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    filter: &Filter,
    now: Timestamp,
    limit: u32,
) -> Result<Vec<DelegationRecord>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM delegations WHERE app_id = $1 \
             AND ($2 IS NULL OR agent_id = $2) \
             AND ($3 IS NULL OR grant_id = $3) \
             AND ($4 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $5))) \
             ORDER BY id DESC LIMIT $6"
        ))
        .bind(app_id.to_string())
        .bind(filter.agent_id.map(|a| a.to_string()))
        .bind(filter.grant_id.map(|g| g.to_string()))
        .bind(filter.include_ended)
        .bind(now.unix_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(from_row).collect()
    })
}

/// The ids of the grants agent `agent_id` holds a live delegation of at `now`.
pub async fn delegated_grants(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    agent_id: AgentId,
    now: Timestamp,
) -> Result<Vec<GrantId>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT grant_id FROM delegations WHERE app_id = $1 AND agent_id = $2 \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $3)",
        )
        .bind(app_id.to_string())
        .bind(agent_id.to_string())
        .bind(now.unix_millis())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter()
            .map(|(g,)| GrantId::from_column(TABLE, &g))
            .collect()
    })
}

/// Revokes delegation `id` at `now`; returns whether this call revoked it (`false`: already
/// revoked, or not in this app).
pub async fn revoke(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: DelegationId,
    by: RevokedBy,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE delegations SET revoked_at = $1, revoked_by = $2 \
             WHERE id = $3 AND app_id = $4 AND revoked_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(by.as_str())
        .bind(id.to_string())
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Sets live delegation `id`'s expiry to `expires_at`; returns whether it was live at `now`
/// (a revoked or expired one is left alone).
pub async fn set_expiry(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: DelegationId,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE delegations SET expires_at = $1 WHERE id = $2 AND app_id = $3 \
             AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $4)",
        )
        .bind(expires_at.unix_millis())
        .bind(id.to_string())
        .bind(app_id.to_string())
        .bind(now.unix_millis())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Closes an expired but unrevoked delegation of grant `grant_id` to agent `agent_id` (as
/// `expired`, at its expiry), so that a new one of the same pair can be stored.
pub async fn close_expired(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    grant_id: GrantId,
    agent_id: AgentId,
    now: Timestamp,
) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "UPDATE delegations SET revoked_at = expires_at, revoked_by = 'expired' \
             WHERE app_id = $1 AND grant_id = $2 AND agent_id = $3 AND revoked_at IS NULL \
             AND expires_at IS NOT NULL AND expires_at <= $4",
        )
        .bind(app_id.to_string())
        .bind(grant_id.to_string())
        .bind(agent_id.to_string())
        .bind(now.unix_millis())
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

/// Revokes every live delegation of grant `grant_id` (the grant itself is being revoked);
/// returns how many.
pub async fn revoke_for_grant(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    grant_id: GrantId,
    now: Timestamp,
) -> Result<u64, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE delegations SET revoked_at = $1, revoked_by = 'grant' \
             WHERE grant_id = $2 AND app_id = $3 AND revoked_at IS NULL",
        )
        .bind(now.unix_millis())
        .bind(grant_id.to_string())
        .bind(app_id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected())
    })
}
