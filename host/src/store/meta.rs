//! The `meta` table: small key/value facts about the database itself (schema facts, the
//! fingerprint of the master key that wrapped the data keys). Values are public facts, never
//! key material.

use super::{Db, StoreError, Timestamp, on_conn};

/// Key under which `tessera init` records the master key fingerprint.
pub const MASTER_KEY_FINGERPRINT: &str = "master_key_fingerprint";

const GET: &str = "SELECT value FROM meta WHERE key = $1";

const SET: &str = "INSERT INTO meta (key, value, updated_at) VALUES ($1, $2, $3) \
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";

/// The value stored under `key`, if any.
pub async fn get(db: impl Into<Db<'_>>, key: &str) -> Result<Option<String>, StoreError> {
    on_conn!(db, |conn| {
        let value: Option<(String,)> = sqlx::query_as(GET)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(value.map(|(v,)| v))
    })
}

/// Stores `value` under `key`, replacing any previous value.
pub async fn set(
    db: impl Into<Db<'_>>,
    key: &str,
    value: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(SET)
            .bind(key)
            .bind(value)
            .bind(now.unix_millis())
            .execute(&mut *conn)
            .await?;
        Ok(())
    })
}

/// [`get`] on the SQLite request-path writer's connection.
pub fn get_on_sqlite(conn: &rusqlite::Connection, key: &str) -> Result<Option<String>, StoreError> {
    use rusqlite::OptionalExtension as _;
    Ok(conn
        .prepare_cached(GET)?
        .query_row([key], |row| row.get(0))
        .optional()?)
}

/// [`set`] on the SQLite request-path writer's connection.
pub fn set_on_sqlite(
    conn: &rusqlite::Connection,
    key: &str,
    value: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    conn.prepare_cached(SET)?
        .execute(rusqlite::params![key, value, now.unix_millis()])?;
    Ok(())
}

/// Stores `value` under `key` only if the key is absent; returns whether it was stored.
/// Atomic across host instances: of several racing first starts, exactly one wins, and the
/// others read the winner's value.
pub async fn insert_if_absent(
    db: impl Into<Db<'_>>,
    key: &str,
    value: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "INSERT INTO meta (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .bind(now.unix_millis())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::both_backends;
    use crate::store::testing::TestDb;

    both_backends! {
        missing_key_reads_as_none => missing_key_reads_as_none;
        set_replaces_the_previous_value => set_replaces_the_previous_value;
        insert_if_absent_keeps_the_first_value => insert_if_absent_keeps_the_first_value;
    }

    async fn missing_key_reads_as_none(db: &TestDb) -> anyhow::Result<()> {
        assert_eq!(get(db.store(), "nope").await?, None);
        Ok(())
    }

    async fn set_replaces_the_previous_value(db: &TestDb) -> anyhow::Result<()> {
        let store = db.store();
        set(store, MASTER_KEY_FINGERPRINT, "aa", Timestamp::now()).await?;
        assert_eq!(
            get(store, MASTER_KEY_FINGERPRINT).await?.as_deref(),
            Some("aa")
        );
        set(store, MASTER_KEY_FINGERPRINT, "bb", Timestamp::now()).await?;
        assert_eq!(
            get(store, MASTER_KEY_FINGERPRINT).await?.as_deref(),
            Some("bb")
        );
        Ok(())
    }

    async fn insert_if_absent_keeps_the_first_value(db: &TestDb) -> anyhow::Result<()> {
        let store = db.store();
        assert!(insert_if_absent(store, "k", "first", Timestamp::now()).await?);
        assert!(!insert_if_absent(store, "k", "second", Timestamp::now()).await?);
        assert_eq!(get(store, "k").await?.as_deref(), Some("first"));
        Ok(())
    }
}
