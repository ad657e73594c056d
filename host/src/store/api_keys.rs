//! The `api_keys` table: one row per API key, found by its public key id.
//!
//! A row holds the key id, the owning app (and agent, for agent keys), the Tessera scopes,
//! the key's **signing key sealed by the vault** (column `verifier`), the key's one-way
//! fingerprint, and its created / last-used / revoked times. It never holds the API key
//! string or its secret, and this module never sees an unsealed signing key: sealing and
//! opening belong to the caller, through the vault.

use std::fmt;

use tessera_proto::scopes::Scope;
use tessera_proto::signing::{KeyId, KeyKind};

use super::{AgentId, AppId, Db, StoreError, Timestamp, on_conn};

/// One stored API key.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// The public key id (what request signatures name).
    pub key_id: KeyId,
    /// The app that owns the key.
    pub app_id: AppId,
    /// App key or agent key.
    pub kind: KeyKind,
    /// The agent an agent key belongs to (`Some` exactly for [`KeyKind::Agent`]).
    pub agent_id: Option<AgentId>,
    /// The Tessera scopes the key carries, in catalog order.
    pub scopes: Vec<Scope>,
    /// The derived signing key, sealed by the vault (opaque bytes here).
    pub sealed_signing_key: Vec<u8>,
    /// `hex(SHA-256(full API key string))`.
    pub fingerprint: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When a request signed with it last verified, if ever.
    pub last_used_at: Option<Timestamp>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Timestamp>,
}

impl ApiKeyRecord {
    /// Whether the key is revoked.
    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

impl fmt::Debug for ApiKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyRecord")
            .field("key_id", &self.key_id)
            .field("app_id", &self.app_id)
            .field("kind", &self.kind)
            .field("agent_id", &self.agent_id)
            .field("scopes", &self.scopes)
            .field(
                "sealed_signing_key",
                &format_args!("[{} sealed bytes]", self.sealed_signing_key.len()),
            )
            .field("fingerprint", &self.fingerprint)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .field("revoked_at", &self.revoked_at)
            .finish()
    }
}

/// The associated-data kind of a stored signing key (`verifier`), with record id = key id
/// and app = app id. Defined here, next to the column, so that sealing (`auth`) and
/// re-encryption after a rotation (`store::reseal`) cannot disagree.
pub const SEALED_KIND: &str = "api-key-signing";

const TABLE: &str = "api_keys";

const COLUMNS: &str = "id, app_id, kind, agent_id, scopes, verifier, fingerprint, created_at, \
                       last_used_at, revoked_at";

type ApiKeyRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    Vec<u8>,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

impl ApiKeyRecord {
    fn from_row(row: ApiKeyRow) -> Result<Self, StoreError> {
        let (id, app_id, kind, agent_id, scopes, sealed, fingerprint, created, used, revoked) = row;
        let corrupt = |detail: String| StoreError::Corrupt {
            table: TABLE,
            detail,
        };
        let key_id =
            KeyId::parse(&id).map_err(|_| corrupt(format!("key id {id:?} is not 16 hex")))?;
        let kind = match kind.as_str() {
            "app" => KeyKind::App,
            "agent" => KeyKind::Agent,
            other => return Err(corrupt(format!("key {key_id} has kind {other:?}"))),
        };
        let scopes = Scope::parse_list(&scopes)
            .map_err(|e| corrupt(format!("key {key_id} has scope {:?}", e.name)))?;
        Ok(ApiKeyRecord {
            app_id: AppId::from_column(TABLE, &app_id)?,
            agent_id: agent_id
                .map(|a| AgentId::from_column(TABLE, &a))
                .transpose()?,
            key_id,
            kind,
            scopes,
            sealed_signing_key: sealed,
            fingerprint,
            created_at: Timestamp::from_unix_millis(created),
            last_used_at: used.map(Timestamp::from_unix_millis),
            revoked_at: revoked.map(Timestamp::from_unix_millis),
        })
    }
}

/// Stores a new key. A key id that already exists is a [`StoreError::Conflict`] (the
/// caller draws a new one); an app or agent that does not exist, or an agent of another app,
/// is refused by the foreign keys.
pub async fn insert(db: impl Into<Db<'_>>, key: &ApiKeyRecord) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(&format!(
            "INSERT INTO api_keys ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(key.key_id.as_str())
        .bind(key.app_id.to_string())
        .bind(key.kind.as_str())
        .bind(key.agent_id.map(|a| a.to_string()))
        .bind(Scope::join(&key.scopes))
        .bind(&key.sealed_signing_key)
        .bind(&key.fingerprint)
        .bind(key.created_at.unix_millis())
        .bind(key.last_used_at.map(Timestamp::unix_millis))
        .bind(key.revoked_at.map(Timestamp::unix_millis))
        .execute(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            format!("API key {}", key.key_id)
        }))?;
        Ok(())
    })
}

/// The key with this key id, revoked or not.
pub async fn get_by_key_id(
    db: impl Into<Db<'_>>,
    key_id: &KeyId,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<ApiKeyRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"))
                .bind(key_id.as_str())
                .fetch_optional(&mut *conn)
                .await?;
        row.map(ApiKeyRecord::from_row).transpose()
    })
}

/// The SQL condition, on an `api_keys` row named `k`, that its key may still sign: not
/// revoked and, for an agent key, its agent not disabled. Every "is this key live?" check
/// (the key resolver's read, the nonce insert of every request) uses this one text, so
/// revoking a key and disabling its agent cannot drift apart.
pub const LIVE_KEY: &str = "k.revoked_at IS NULL AND NOT EXISTS \
     (SELECT 1 FROM agents a WHERE a.id = k.agent_id AND a.disabled_at IS NOT NULL)";

/// The key with this key id if it is live (see [`LIVE_KEY`]): `None` for an unknown or
/// revoked key, or the key of a disabled agent.
pub async fn get_live(
    db: impl Into<Db<'_>>,
    key_id: &KeyId,
) -> Result<Option<ApiKeyRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<ApiKeyRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_keys k WHERE k.id = $1 AND {LIVE_KEY}"
        ))
        .bind(key_id.as_str())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(ApiKeyRecord::from_row).transpose()
    })
}

/// Every key of app `app_id` (revoked ones included), oldest first.
pub async fn list_for_app(
    db: impl Into<Db<'_>>,
    app_id: AppId,
) -> Result<Vec<ApiKeyRecord>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE app_id = $1 ORDER BY created_at, id"
        ))
        .bind(app_id.to_string())
        .fetch_all(&mut *conn)
        .await?;
        rows.into_iter().map(ApiKeyRecord::from_row).collect()
    })
}

/// Revokes the key at `now`. Returns `false` when no such key exists or it was already
/// revoked (the first revocation time is kept).
pub async fn revoke(
    db: impl Into<Db<'_>>,
    key_id: &KeyId,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(key_id.as_str())
                .bind(now.unix_millis())
                .execute(&mut *conn)
                .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Records that a request signed with the key verified at `now`. Never moves the time
/// backwards (two instances may report out of order); a missing key is not an error.
pub async fn touch_last_used(
    db: impl Into<Db<'_>>,
    key_id: &KeyId,
    now: Timestamp,
) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 \
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(key_id.as_str())
        .bind(now.unix_millis())
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;
    use crate::store::{agents, apps, both_backends};

    both_backends! {
        key_round_trips_byte_exact_and_is_listed_per_app =>
            key_round_trips_byte_exact_and_is_listed_per_app;
        duplicate_key_id_is_a_conflict => duplicate_key_id_is_a_conflict;
        revoke_is_once_and_keeps_the_first_time => revoke_is_once_and_keeps_the_first_time;
        last_used_only_moves_forward => last_used_only_moves_forward;
        agent_key_must_name_an_agent_of_its_own_app =>
            agent_key_must_name_an_agent_of_its_own_app;
    }

    const T: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

    fn key_id(n: u8) -> KeyId {
        KeyId::parse(&format!("{n:016x}")).unwrap()
    }

    fn record(app_id: AppId, id: u8) -> ApiKeyRecord {
        ApiKeyRecord {
            key_id: key_id(id),
            app_id,
            kind: KeyKind::App,
            agent_id: None,
            scopes: vec![Scope::TokensRetrieve, Scope::AuditRead],
            // Not UTF-8, with NULs: stored as bytes.
            sealed_signing_key: vec![0, 0xff, id, 0, 0x80],
            fingerprint: format!("{id:064x}"),
            created_at: T.plus(std::time::Duration::from_millis(u64::from(id))),
            last_used_at: None,
            revoked_at: None,
        }
    }

    async fn key_round_trips_byte_exact_and_is_listed_per_app(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let a = apps::create(s, "a", T).await?;
        let b = apps::create(s, "b", T).await?;
        let (k2, k1, kb) = (record(a.id, 2), record(a.id, 1), record(b.id, 3));
        for k in [&k2, &k1, &kb] {
            insert(s, k).await?;
        }
        assert_eq!(get_by_key_id(s, &k1.key_id).await?, Some(k1.clone()));
        assert_eq!(get_by_key_id(s, &key_id(9)).await?, None);
        assert_eq!(list_for_app(s, a.id).await?, vec![k1, k2]);
        assert_eq!(list_for_app(s, b.id).await?, vec![kb]);
        Ok(())
    }

    async fn duplicate_key_id_is_a_conflict(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let a = apps::create(s, "a", T).await?;
        insert(s, &record(a.id, 1)).await?;
        let err = insert(s, &record(a.id, 1)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
        Ok(())
    }

    async fn revoke_is_once_and_keeps_the_first_time(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let a = apps::create(s, "a", T).await?;
        let k = record(a.id, 1);
        insert(s, &k).await?;
        let later = T.plus(std::time::Duration::from_mins(1));
        assert!(revoke(s, &k.key_id, T).await?);
        assert!(!revoke(s, &k.key_id, later).await?);
        assert!(!revoke(s, &key_id(7), T).await?);
        let stored = get_by_key_id(s, &k.key_id).await?.unwrap();
        assert!(stored.is_revoked());
        assert_eq!(stored.revoked_at, Some(T));
        Ok(())
    }

    async fn last_used_only_moves_forward(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let a = apps::create(s, "a", T).await?;
        let k = record(a.id, 1);
        insert(s, &k).await?;
        let later = T.plus(std::time::Duration::from_mins(1));
        touch_last_used(s, &k.key_id, later).await?;
        touch_last_used(s, &k.key_id, T).await?;
        touch_last_used(s, &key_id(7), T).await?;
        let stored = get_by_key_id(s, &k.key_id).await?.unwrap();
        assert_eq!(stored.last_used_at, Some(later));
        Ok(())
    }

    async fn agent_key_must_name_an_agent_of_its_own_app(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let a = apps::create(s, "a", T).await?;
        let b = apps::create(s, "b", T).await?;
        let bot_of_b = agents::create(s, b.id, "bot", T).await?;
        let mut k = record(a.id, 1);
        k.kind = KeyKind::Agent;
        k.agent_id = Some(bot_of_b.id);
        assert!(insert(s, &k).await.is_err(), "cross-app agent key stored");
        // An agent key without an agent is refused by the CHECK constraint.
        k.agent_id = None;
        assert!(
            insert(s, &k).await.is_err(),
            "agent key without agent stored"
        );
        let bot_of_a = agents::create(s, a.id, "bot", T).await?;
        k.agent_id = Some(bot_of_a.id);
        insert(s, &k).await?;
        assert_eq!(get_by_key_id(s, &k.key_id).await?, Some(k));
        Ok(())
    }
}
