//! The `nonces` table: replay protection for signed requests, shared by every host instance.
//! Holds only public key ids and the nonces requests carried, never key material.

use super::{Db, StoreError, Timestamp, on_conn};

/// Records that `nonce` was used with key `key_id`; returns `true` if it is fresh, `false`
/// if it was seen before (a replay). Atomic across connections and host instances: the
/// primary key decides, so of two racing requests with the same nonce exactly one is fresh.
/// A nonce stays "seen" until [`purge_expired`] removes it, which must not happen before
/// the signature window it belongs to has closed (`expires_at`).
pub async fn remember(
    db: impl Into<Db<'_>>,
    key_id: &str,
    nonce: &str,
    expires_at: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(
            "INSERT INTO nonces (key_id, nonce, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key_id, nonce) DO NOTHING",
        )
        .bind(key_id)
        .bind(nonce)
        .bind(expires_at.unix_millis())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Deletes the nonces that expired at or before `now`; returns how many.
pub async fn purge_expired(db: impl Into<Db<'_>>, now: Timestamp) -> Result<u64, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query("DELETE FROM nonces WHERE expires_at <= $1")
            .bind(now.unix_millis())
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::both_backends;
    use crate::store::testing::TestDb;

    both_backends! {
        replayed_nonce_is_not_fresh => replayed_nonce_is_not_fresh;
        racing_instances_see_a_nonce_fresh_exactly_once =>
            racing_instances_see_a_nonce_fresh_exactly_once;
        purge_removes_only_expired_nonces => purge_removes_only_expired_nonces;
    }

    const T: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

    async fn replayed_nonce_is_not_fresh(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        assert!(remember(s, "key-a", "n1", T).await?);
        assert!(!remember(s, "key-a", "n1", T).await?);
        // The same nonce under another key, or another nonce, is unrelated.
        assert!(remember(s, "key-b", "n1", T).await?);
        assert!(remember(s, "key-a", "n2", T).await?);
        Ok(())
    }

    async fn racing_instances_see_a_nonce_fresh_exactly_once(db: &TestDb) -> anyhow::Result<()> {
        // Two stores on one database stand for two host instances behind a load balancer.
        let stores = [db.store().clone(), db.open_another().await?];
        for round in 0..10 {
            let nonce = format!("n{round}");
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..8 {
                let store = stores[i % 2].clone();
                let nonce = nonce.clone();
                tasks.spawn(async move { remember(&store, "key-a", &nonce, T).await });
            }
            let mut fresh = 0;
            while let Some(result) = tasks.join_next().await {
                fresh += usize::from(result??);
            }
            assert_eq!(fresh, 1, "round {round}");
        }
        Ok(())
    }

    async fn purge_removes_only_expired_nonces(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let later = T.plus(std::time::Duration::from_mins(5));
        remember(s, "k", "old", T).await?;
        remember(s, "k", "new", later).await?;
        assert_eq!(purge_expired(s, T).await?, 1);
        assert_eq!(purge_expired(s, T).await?, 0);
        // The expired one is forgotten, the live one still counts as seen.
        assert!(remember(s, "k", "old", later).await?);
        assert!(!remember(s, "k", "new", later).await?);
        Ok(())
    }
}
