//! The `connect_sessions` table: one end user's way through a provider's connect flow.
//!
//! The link the user opens and the OAuth `state` are random values this table holds only as
//! SHA-256 hashes, so a database dump cannot be used to finish someone's flow. The flow's
//! opaque component state is sealed by the caller (associated data: session id, app, kind
//! [`SEALED_KIND`]) and deleted when the session ends. Status changes are compare-and-swap
//! updates, so a `state` is accepted once even when two callbacks race.
//!
//! Must never: hold a plaintext state, link token or component state, or return a session
//! of another app from an app-scoped lookup.

use std::fmt;

use tessera_proto::connect::ConnectStatus;
use tessera_proto::grants::Principal;

use super::{AgentId, AppId, Db, SessionId, StoreError, Timestamp, on_conn};

/// The associated-data kind a session's flow state is sealed with.
pub const SEALED_KIND: &str = "connect-session";

const TABLE: &str = "connect_sessions";

const COLUMNS: &str = "id, app_id, provider, principal_kind, principal_value, scopes, \
                       connection_params, return_url, status, grant_id, error_code, \
                       error_message, sealed, key_version, created_at, expires_at, agent_id, \
                       delegation_ttl_secs, grant_ttl_secs";

/// One stored connect session.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Its id.
    pub id: SessionId,
    /// The app it connects for.
    pub app_id: AppId,
    /// The provider.
    pub provider: String,
    /// Whose grant it becomes.
    pub principal: Principal,
    /// The provider scopes it asks for.
    pub scopes: Vec<String>,
    /// Per-connection parameters the app gave (non-secret).
    pub connection_params: Vec<(String, String)>,
    /// Where the browser goes at the end.
    pub return_url: Option<String>,
    /// Where it is. `Expired` is never stored: it is `Pending`/`Authorizing` past
    /// `expires_at`.
    pub status: ConnectStatus,
    /// The grant, once completed.
    pub grant_id: Option<String>,
    /// Why it failed: a stable code.
    pub error_code: Option<String>,
    /// Why it failed: words.
    pub error_message: Option<String>,
    /// The sealed flow state while authorizing.
    pub sealed: Option<Vec<u8>>,
    /// The data key version that sealed it.
    pub key_version: Option<u32>,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it stops accepting the end user.
    pub expires_at: Timestamp,
    /// The agent the user's grant will be delegated to on consent, if the app named one.
    pub agent_id: Option<AgentId>,
    /// How long that delegation lasts, in seconds (`None`: until revoked).
    pub delegation_ttl_secs: Option<u64>,
    /// The TTL of the grant the session creates, in seconds (`None`: none).
    pub grant_ttl_secs: Option<u64>,
}

impl SessionRecord {
    /// The status a reader should see at `now`: an open session past its deadline is
    /// expired.
    pub fn status_at(&self, now: Timestamp) -> ConnectStatus {
        match self.status {
            ConnectStatus::Pending | ConnectStatus::Authorizing if now >= self.expires_at => {
                ConnectStatus::Expired
            }
            s => s,
        }
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field("provider", &self.provider)
            .field("principal", &self.principal)
            .field("status", &self.status)
            .field(
                "sealed",
                &format_args!(
                    "[{} sealed bytes]",
                    self.sealed.as_ref().map_or(0, Vec::len)
                ),
            )
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

type Row = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<Vec<u8>>,
    Option<i64>,
    i64,
    i64,
);

fn parse_status(s: &str) -> Option<ConnectStatus> {
    Some(match s {
        "pending" => ConnectStatus::Pending,
        "authorizing" => ConnectStatus::Authorizing,
        "exchanging" => ConnectStatus::Exchanging,
        "completed" => ConnectStatus::Completed,
        "failed" => ConnectStatus::Failed,
        _ => return None,
    })
}

/// Decodes a row of [`COLUMNS`]: the 16 of [`Row`], then the agent and the delegation TTL.
macro_rules! decode {
    ($row:expr) => {{
        use sqlx::Row as _;
        let row = $row;
        let base: Row = (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
            row.try_get(6)?,
            row.try_get(7)?,
            row.try_get(8)?,
            row.try_get(9)?,
            row.try_get(10)?,
            row.try_get(11)?,
            row.try_get(12)?,
            row.try_get(13)?,
            row.try_get(14)?,
            row.try_get(15)?,
        );
        let agent: Option<String> = row.try_get(16)?;
        let ttl: Option<i64> = row.try_get(17)?;
        let grant_ttl: Option<i64> = row.try_get(18)?;
        from_row(base, agent, ttl).map(|mut s| {
            s.grant_ttl_secs = grant_ttl.map(|t| u64::try_from(t).unwrap_or(0));
            s
        })
    }};
}

fn from_row(
    row: Row,
    agent: Option<String>,
    ttl: Option<i64>,
) -> Result<SessionRecord, StoreError> {
    let (
        id,
        app_id,
        provider,
        principal_kind,
        principal_value,
        scopes,
        params,
        return_url,
        status,
        grant_id,
        error_code,
        error_message,
        sealed,
        key_version,
        created,
        expires,
    ) = row;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: TABLE,
        detail,
    };
    let principal = Principal::from_parts(&principal_kind, &principal_value)
        .map_err(|_| corrupt(format!("session {id} has a malformed principal")))?;
    let scopes = serde_json::from_str(&scopes)
        .map_err(|_| corrupt(format!("session {id} has malformed scopes")))?;
    let connection_params = serde_json::from_str(&params)
        .map_err(|_| corrupt(format!("session {id} has malformed parameters")))?;
    let status = parse_status(&status)
        .ok_or_else(|| corrupt(format!("session {id} has status {status:?}")))?;
    let key_version = key_version
        .map(|v| u32::try_from(v).map_err(|_| corrupt(format!("session {id} has key version {v}"))))
        .transpose()?;
    Ok(SessionRecord {
        id: SessionId::from_column(TABLE, &id)?,
        app_id: AppId::from_column(TABLE, &app_id)?,
        provider,
        principal,
        scopes,
        connection_params,
        return_url,
        status,
        grant_id,
        error_code,
        error_message,
        sealed,
        key_version,
        created_at: Timestamp::from_unix_millis(created),
        expires_at: Timestamp::from_unix_millis(expires),
        agent_id: agent.map(|a| AgentId::from_column(TABLE, &a)).transpose()?,
        delegation_ttl_secs: ttl.map(|t| u64::try_from(t).unwrap_or(0)),
        grant_ttl_secs: None,
    })
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".to_owned())
}

/// Stores a new session (status `pending`) with the hash of its link token.
pub async fn insert(
    db: impl Into<Db<'_>>,
    s: &SessionRecord,
    link_hash: &[u8],
) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "INSERT INTO connect_sessions (id, app_id, provider, principal_kind, principal_value, \
             scopes, connection_params, return_url, link_hash, status, created_at, expires_at, \
             updated_at, agent_id, delegation_ttl_secs, grant_ttl_secs) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(s.id.to_string())
        .bind(s.app_id.to_string())
        .bind(&s.provider)
        .bind(s.principal.kind())
        .bind(s.principal.value())
        .bind(json(&s.scopes))
        .bind(json(&s.connection_params))
        .bind(s.return_url.as_deref())
        .bind(link_hash)
        .bind(s.status.as_str())
        .bind(s.created_at.unix_millis())
        .bind(s.expires_at.unix_millis())
        .bind(s.created_at.unix_millis())
        .bind(s.agent_id.map(|a| a.to_string()))
        .bind(
            s.delegation_ttl_secs
                .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
        )
        .bind(
            s.grant_ttl_secs
                .map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
        )
        .execute(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            format!("connect session {}", s.id)
        }))?;
        Ok(())
    })
}

/// Session `id` of app `app_id`, if it exists.
pub async fn get(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: SessionId,
) -> Result<Option<SessionRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM connect_sessions WHERE id = $1 AND app_id = $2"
        ))
        .bind(id.to_string())
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => Ok(Some(decode!(&row)?)),
            None => Ok(None),
        }
    })
}

/// The session whose link token hashes to `link_hash`.
pub async fn by_link(
    db: impl Into<Db<'_>>,
    link_hash: &[u8],
) -> Result<Option<SessionRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM connect_sessions WHERE link_hash = $1"
        ))
        .bind(link_hash)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => Ok(Some(decode!(&row)?)),
            None => Ok(None),
        }
    })
}

/// The session whose current OAuth `state` hashes to `state_hash`.
pub async fn by_state(
    db: impl Into<Db<'_>>,
    state_hash: &[u8],
) -> Result<Option<SessionRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM connect_sessions WHERE state_hash = $1"
        ))
        .bind(state_hash)
        .fetch_optional(&mut *conn)
        .await?;
        match row {
            Some(row) => Ok(Some(decode!(&row)?)),
            None => Ok(None),
        }
    })
}

/// Moves an open session to `authorizing` with a new `state` hash and sealed flow state
/// (replacing any earlier one: the user may have started over). False when the session is
/// no longer open or has expired.
pub async fn start_authorizing(
    db: impl Into<Db<'_>>,
    id: SessionId,
    state_hash: &[u8],
    sealed: &[u8],
    key_version: u32,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE connect_sessions SET status = 'authorizing', state_hash = $1, sealed = $2, \
             key_version = $3, updated_at = $4 \
             WHERE id = $5 AND status IN ('pending', 'authorizing') AND expires_at > $4",
        )
        .bind(state_hash)
        .bind(sealed)
        .bind(i64::from(key_version))
        .bind(now.unix_millis())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Claims the callback of an authorizing session: `authorizing` → `exchanging`, and the
/// state hash is cleared so the same `state` can never be accepted again. False when
/// another callback got there first or the session expired.
pub async fn claim_callback(
    db: impl Into<Db<'_>>,
    id: SessionId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE connect_sessions SET status = 'exchanging', state_hash = NULL, updated_at = $1 \
             WHERE id = $2 AND status = 'authorizing' AND expires_at > $1",
        )
        .bind(now.unix_millis())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// With this grant.
    Completed(String),
    /// With this error code and message.
    Failed(String, String),
}

/// Ends an open session and deletes its flow state. False when it had already ended.
pub async fn finish(
    db: impl Into<Db<'_>>,
    id: SessionId,
    ending: &Ending,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let (status, grant, code, message) = match ending {
        Ending::Completed(g) => ("completed", Some(g.as_str()), None, None),
        Ending::Failed(c, m) => ("failed", None, Some(c.as_str()), Some(m.as_str())),
    };
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "UPDATE connect_sessions SET status = $1, grant_id = $2, error_code = $3, \
             error_message = $4, sealed = NULL, key_version = NULL, state_hash = NULL, \
             updated_at = $5 \
             WHERE id = $6 AND status IN ('pending', 'authorizing', 'exchanging')",
        )
        .bind(status)
        .bind(grant)
        .bind(code)
        .bind(message)
        .bind(now.unix_millis())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;
    use crate::store::{apps, data_keys};

    crate::store::both_backends! {
        a_state_is_claimed_once => a_state_is_claimed_once;
        expired_sessions_refuse_to_start_or_claim => expired_sessions_refuse_to_start_or_claim;
        lookups_are_scoped_to_the_app => lookups_are_scoped_to_the_app;
    }

    fn session(app_id: AppId, now: Timestamp, ttl_ms: i64) -> SessionRecord {
        SessionRecord {
            id: SessionId::new(),
            app_id,
            provider: "oauth2".into(),
            principal: Principal::User {
                issuer: "https://idp.example.com".into(),
                subject: "ada".into(),
            },
            scopes: vec!["openid".into(), "email".into()],
            connection_params: vec![("tenant".into(), "acme".into())],
            return_url: Some("https://app.example.com/done".into()),
            status: ConnectStatus::Pending,
            grant_id: None,
            error_code: None,
            error_message: None,
            sealed: None,
            key_version: None,
            created_at: now,
            expires_at: Timestamp::from_unix_millis(now.unix_millis() + ttl_ms),
            agent_id: None,
            delegation_ttl_secs: Some(3600),
            grant_ttl_secs: Some(86_400),
        }
    }

    async fn setup(db: &TestDb, now: Timestamp) -> anyhow::Result<AppId> {
        let s = db.store();
        data_keys::insert(
            s,
            &data_keys::DataKeyRecord {
                version: 1,
                wrapped: vec![1; 60],
                wrapped_by: "fp".into(),
                created_at: now,
            },
        )
        .await?;
        Ok(apps::create(s, "a", now).await?.id)
    }

    /// Two callbacks with the same state: exactly one claims it, and the state is then
    /// unknown; a finished session cannot be finished again.
    async fn a_state_is_claimed_once(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let now = Timestamp::now();
        let app = setup(db, now).await?;
        let rec = session(app, now, 60_000);
        insert(s, &rec, b"link-hash").await?;
        let found = by_link(s, b"link-hash").await?.expect("by link");
        assert_eq!(found, rec);
        assert!(start_authorizing(s, rec.id, b"state-1", b"sealed", 1, now).await?);
        // Starting over replaces the state.
        assert!(start_authorizing(s, rec.id, b"state-2", b"sealed-2", 1, now).await?);
        assert!(by_state(s, b"state-1").await?.is_none());
        let authorizing = by_state(s, b"state-2").await?.expect("by state");
        assert_eq!(authorizing.status, ConnectStatus::Authorizing);
        assert_eq!(authorizing.sealed.as_deref(), Some(&b"sealed-2"[..]));

        let (first, second) = tokio::join!(
            claim_callback(s, rec.id, now),
            claim_callback(s, rec.id, now)
        );
        assert_eq!(
            [first?, second?].iter().filter(|won| **won).count(),
            1,
            "exactly one callback claims the state"
        );
        assert!(
            by_state(s, b"state-2").await?.is_none(),
            "a claimed state is gone"
        );
        assert!(!start_authorizing(s, rec.id, b"state-3", b"x", 1, now).await?);

        let grant = "0190aa00-0000-7000-8000-000000000000".to_owned();
        assert!(finish(s, rec.id, &Ending::Completed(grant.clone()), now).await?);
        assert!(
            !finish(s, rec.id, &Ending::Failed("x".into(), "y".into()), now).await?,
            "an ended session stays ended"
        );
        let done = get(s, app, rec.id).await?.expect("get");
        assert_eq!(done.status, ConnectStatus::Completed);
        assert_eq!(done.grant_id, Some(grant));
        assert_eq!(done.sealed, None, "the flow state is deleted at the end");
        assert_eq!(done.key_version, None);
        Ok(())
    }

    async fn expired_sessions_refuse_to_start_or_claim(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let now = Timestamp::now();
        let app = setup(db, now).await?;
        let rec = session(app, now, 1_000);
        insert(s, &rec, b"link").await?;
        let later = Timestamp::from_unix_millis(now.unix_millis() + 1_000);
        assert_eq!(
            get(s, app, rec.id).await?.expect("get").status_at(later),
            ConnectStatus::Expired
        );
        assert!(!start_authorizing(s, rec.id, b"st", b"x", 1, later).await?);
        assert!(start_authorizing(s, rec.id, b"st", b"x", 1, now).await?);
        assert!(!claim_callback(s, rec.id, later).await?);
        Ok(())
    }

    async fn lookups_are_scoped_to_the_app(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let now = Timestamp::now();
        let app = setup(db, now).await?;
        let other = apps::create(s, "b", now).await?.id;
        let rec = session(app, now, 60_000);
        insert(s, &rec, b"link").await?;
        assert!(get(s, other, rec.id).await?.is_none());
        assert!(get(s, app, rec.id).await?.is_some());
        // The link hash is unique: a second session cannot reuse it.
        let dup = session(app, now, 60_000);
        assert!(insert(s, &dup, b"link").await.is_err());
        Ok(())
    }
}
