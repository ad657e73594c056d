//! The `data_keys` table: the versioned data keys of the envelope scheme, each stored only
//! wrapped (sealed) by the master key. This module never sees an unwrapped key; wrapping and
//! unwrapping belong to the vault.

use super::{Db, StoreError, Timestamp, on_conn};

/// One stored data key.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKeyRecord {
    /// Version, starting at 1; sealed records name it in `key_version`.
    pub version: i64,
    /// The key, sealed by the master key.
    pub wrapped: Vec<u8>,
    /// Fingerprint of the master key that wrapped it.
    pub wrapped_by: String,
    /// When it was created.
    pub created_at: Timestamp,
}

impl std::fmt::Debug for DataKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKeyRecord")
            .field("version", &self.version)
            .field(
                "wrapped",
                &format_args!("[{} sealed bytes]", self.wrapped.len()),
            )
            .field("wrapped_by", &self.wrapped_by)
            .field("created_at", &self.created_at)
            .finish()
    }
}

/// Stores a new data key. An existing version is a [`StoreError::Conflict`] (two instances
/// rotating at once: one wins, the other reloads).
pub async fn insert(db: impl Into<Db<'_>>, key: &DataKeyRecord) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "INSERT INTO data_keys (version, wrapped, wrapped_by, created_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(key.version)
        .bind(&key.wrapped)
        .bind(&key.wrapped_by)
        .bind(key.created_at.unix_millis())
        .execute(&mut *conn)
        .await
        .map_err(StoreError::conflict_on_unique(|| {
            format!("data key version {}", key.version)
        }))?;
        Ok(())
    })
}

/// Every data key, oldest version first.
pub async fn list(db: impl Into<Db<'_>>) -> Result<Vec<DataKeyRecord>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<(i64, Vec<u8>, String, i64)> = sqlx::query_as(
            "SELECT version, wrapped, wrapped_by, created_at FROM data_keys ORDER BY version",
        )
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(version, wrapped, wrapped_by, created_at)| DataKeyRecord {
                version,
                wrapped,
                wrapped_by,
                created_at: Timestamp::from_unix_millis(created_at),
            })
            .collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::both_backends;
    use crate::store::testing::TestDb;

    both_backends! {
        keys_round_trip_byte_exact_in_version_order => keys_round_trip_byte_exact_in_version_order;
        duplicate_version_is_a_conflict => duplicate_version_is_a_conflict;
    }

    fn key(version: i64, wrapped: &[u8]) -> DataKeyRecord {
        DataKeyRecord {
            version,
            wrapped: wrapped.to_vec(),
            wrapped_by: "fp-1".into(),
            created_at: Timestamp::from_unix_millis(1_700_000_000_000 + version),
        }
    }

    async fn keys_round_trip_byte_exact_in_version_order(db: &TestDb) -> anyhow::Result<()> {
        // Bytes that are not UTF-8 and contain NULs: stored as bytes, not text.
        let k2 = key(2, &[0, 0xff, 0xfe, 0, 1, 2]);
        let k1 = key(1, &[0x80; 48]);
        insert(db.store(), &k2).await?;
        insert(db.store(), &k1).await?;
        assert_eq!(list(db.store()).await?, vec![k1, k2]);
        Ok(())
    }

    async fn duplicate_version_is_a_conflict(db: &TestDb) -> anyhow::Result<()> {
        insert(db.store(), &key(1, b"a")).await?;
        let err = insert(db.store(), &key(1, b"b")).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { what } if what == "data key version 1"),
            "{err:?}"
        );
        assert_eq!(list(db.store()).await?[0].wrapped, b"a");
        Ok(())
    }
}
