//! The `nonces` table: replay protection for signed requests, shared by every host instance.
//! Holds only public key ids and the nonces requests carried, never key material.

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use rusqlite::OptionalExtension as _;

use super::api_keys::LIVE_KEY;
use super::{Db, Store, StoreError, Timestamp, on_conn};

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
             ON CONFLICT DO NOTHING",
        )
        .bind(key_id)
        .bind(nonce)
        .bind(expires_at.unix_millis())
        .execute(&mut *conn)
        .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// What [`remember_for_active_key`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Remembered {
    /// The nonce was new and is now recorded.
    Fresh,
    /// The nonce was recorded before: a replay.
    Replayed,
    /// No live key has this id (revoked or deleted, or its agent disabled): nothing was
    /// recorded.
    KeyInactive,
}

/// [`remember`], in the same statement checking that `key_id` names a live key in
/// `api_keys` (not revoked, its agent not disabled: [`LIVE_KEY`]). A verifier that keeps
/// opened signing keys in memory relies on it: revoking a key or disabling its agent takes
/// effect on its next request, on every host instance, without a separate read of the key
/// per request.
pub async fn remember_for_active_key(
    db: impl Into<Db<'_>>,
    key_id: &str,
    nonce: &str,
    expires_at: Timestamp,
) -> Result<Remembered, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query(&format!(
            "INSERT INTO nonces (key_id, nonce, expires_at) \
             SELECT $1, $2, $3 WHERE EXISTS \
             (SELECT 1 FROM api_keys k WHERE k.id = $1 AND {LIVE_KEY}) \
             ON CONFLICT DO NOTHING"
        ))
        .bind(key_id)
        .bind(nonce)
        .bind(expires_at.unix_millis())
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() == 1 {
            return Ok(Remembered::Fresh);
        }
        // Rare: tell a replay from a key revoked meanwhile.
        let active: Option<String> = sqlx::query_scalar(&live_key_id())
            .bind(key_id)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(if active.is_some() {
            Remembered::Replayed
        } else {
            Remembered::KeyInactive
        })
    })
}

/// One nonce of a [`remember_many`] batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceUse {
    /// The key id the request named.
    pub key_id: String,
    /// Its nonce.
    pub nonce: String,
    /// Until when it must be remembered.
    pub expires_at: Timestamp,
}

/// [`remember_for_active_key`] for many nonces in one statement (one write transaction):
/// what the host's nonce batcher sends when concurrent requests arrive together. Answers
/// in the order given; of two equal (key id, nonce) pairs in one batch only the first can be
/// fresh.
pub async fn remember_many(
    db: impl Into<Db<'_>>,
    uses: &[NonceUse],
) -> Result<Vec<Remembered>, StoreError> {
    if uses.is_empty() {
        return Ok(Vec::new());
    }
    let plan = Plan::new(uses);
    on_conn!(db, |conn| {
        let mut query = sqlx::query_as::<_, (String, String)>(&plan.sql);
        for u in &plan.distinct {
            query = query
                .bind(u.key_id.as_str())
                .bind(u.nonce.as_str())
                .bind(u.expires_at.unix_millis());
        }
        let inserted: HashSet<(String, String)> =
            query.fetch_all(&mut *conn).await?.into_iter().collect();
        let live = live_key_id();
        let mut active = HashSet::new();
        for key_id in plan.unsure(&inserted) {
            let found: Option<String> = sqlx::query_scalar(&live)
                .bind(key_id)
                .fetch_optional(&mut *conn)
                .await?;
            active.extend(found);
        }
        Ok(plan.answer(&inserted, &active))
    })
}

/// [`remember_many`] on the SQLite request-path writer's connection (autocommit: one
/// statement is one transaction).
pub(crate) fn remember_on_sqlite(
    conn: &rusqlite::Connection,
    uses: &[NonceUse],
) -> Result<Vec<Remembered>, StoreError> {
    if uses.is_empty() {
        return Ok(Vec::new());
    }
    let plan = Plan::new(uses);
    let inserted: HashSet<(String, String)> = {
        let mut statement = conn.prepare_cached(&plan.sql)?;
        let values = plan.distinct.iter().flat_map(|u| {
            [
                rusqlite::types::Value::Text(u.key_id.clone()),
                rusqlite::types::Value::Text(u.nonce.clone()),
                rusqlite::types::Value::Integer(u.expires_at.unix_millis()),
            ]
        });
        statement
            .query_map(rusqlite::params_from_iter(values), |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .collect::<Result<_, _>>()?
    };
    let mut active = HashSet::new();
    let mut live = conn.prepare_cached(&live_key_id())?;
    for key_id in plan.unsure(&inserted) {
        let found: Option<String> = live.query_row([key_id], |row| row.get(0)).optional()?;
        active.extend(found);
    }
    Ok(plan.answer(&inserted, &active))
}

/// A batch of nonce uses reduced to its distinct pairs, the statement that inserts them, and
/// how to turn what the statement returned into an answer per use.
struct Plan<'a> {
    uses: &'a [NonceUse],
    /// The first occurrence of each pair, in order: what the statement inserts.
    distinct: Vec<&'a NonceUse>,
    /// Per pair: its place in `distinct` and the index in `uses` of its first occurrence.
    first: HashMap<(&'a str, &'a str), (usize, usize)>,
    sql: String,
}

impl<'a> Plan<'a> {
    fn new(uses: &'a [NonceUse]) -> Self {
        // The first occurrence of each pair goes into the statement; later ones are replays
        // of it (or refused with it, when its key is inactive).
        let mut first = HashMap::new();
        let mut distinct: Vec<&NonceUse> = Vec::new();
        for (i, u) in uses.iter().enumerate() {
            first
                .entry((u.key_id.as_str(), u.nonce.as_str()))
                .or_insert_with(|| {
                    distinct.push(u);
                    (distinct.len() - 1, i)
                });
        }
        let mut sql = String::from(
            "INSERT INTO nonces (key_id, nonce, expires_at) \
             SELECT v.column1, v.column2, v.column3 FROM (VALUES ",
        );
        for i in 0..distinct.len() {
            if i > 0 {
                sql.push_str(", ");
            }
            let n = 3 * i;
            let _ = write!(sql, "(${}, ${}, ${})", n + 1, n + 2, n + 3);
        }
        sql.push_str(
            ") AS v WHERE EXISTS \
             (SELECT 1 FROM api_keys k WHERE k.id = v.column1 AND ",
        );
        sql.push_str(LIVE_KEY);
        sql.push_str(") ON CONFLICT DO NOTHING RETURNING key_id, nonce");
        Self {
            uses,
            distinct,
            first,
            sql,
        }
    }

    /// The key ids of pairs the statement did not insert: each is a replay if its key is
    /// live, else refused with its key (rare, so looked up one by one).
    fn unsure(&self, inserted: &HashSet<(String, String)>) -> Vec<&'a str> {
        self.distinct
            .iter()
            .filter(|u| !inserted.contains(&(u.key_id.clone(), u.nonce.clone())))
            .map(|u| u.key_id.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect()
    }

    /// One answer per use, given the pairs inserted and the live keys among [`Plan::unsure`].
    fn answer(
        &self,
        inserted: &HashSet<(String, String)>,
        active: &HashSet<String>,
    ) -> Vec<Remembered> {
        let outcome: Vec<Remembered> = self
            .distinct
            .iter()
            .map(|u| {
                if inserted.contains(&(u.key_id.clone(), u.nonce.clone())) {
                    Remembered::Fresh
                } else if active.contains(&u.key_id) {
                    Remembered::Replayed
                } else {
                    Remembered::KeyInactive
                }
            })
            .collect();
        self.uses
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let (at, first_use) = self.first[&(u.key_id.as_str(), u.nonce.as_str())];
                match outcome[at] {
                    // Only the first occurrence was inserted.
                    Remembered::Fresh if i != first_use => Remembered::Replayed,
                    o => o,
                }
            })
            .collect()
    }
}

/// `SELECT` of the key id `$1` when that key is live.
fn live_key_id() -> String {
    format!("SELECT k.id FROM api_keys k WHERE k.id = $1 AND {LIVE_KEY}")
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

/// Rows one step of [`purge`] deletes on SQLite: small enough that the request path's
/// writes queued behind it wait a few milliseconds at most.
const PURGE_STEP: usize = 2000;

/// [`purge_expired`] on `store`: on SQLite in steps on the request-path writer thread
/// ([`super::writer`]), so a minute's worth of expired nonces does not hold the write lock
/// in one go; on PostgreSQL one statement on the pool.
pub async fn purge(store: &Store, now: Timestamp) -> Result<u64, StoreError> {
    let Some(writer) = store.sqlite_writer() else {
        return purge_expired(store, now).await;
    };
    let mut total = 0;
    loop {
        let deleted = writer
            .run(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM nonces WHERE (expires_at, key_id, nonce) IN \
                     (SELECT expires_at, key_id, nonce FROM nonces \
                      WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2)",
                )?
                .execute(rusqlite::params![now.unix_millis(), PURGE_STEP])
            })
            .await??;
        total += deleted as u64;
        if deleted < PURGE_STEP {
            return Ok(total);
        }
    }
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
        nonces_of_inactive_keys_are_refused => nonces_of_inactive_keys_are_refused;
        a_batch_answers_each_nonce_like_single_inserts =>
            a_batch_answers_each_nonce_like_single_inserts;
    }

    /// [`remember_many`] as the host runs it: on SQLite [`remember_on_sqlite`] on the
    /// writer's connection (the nonce batcher's lane runs it there inside a group commit),
    /// on PostgreSQL on the pool.
    async fn remember_batch(
        store: &Store,
        uses: Vec<NonceUse>,
    ) -> Result<Vec<Remembered>, StoreError> {
        let Some(writer) = store.sqlite_writer() else {
            return remember_many(store, &uses).await;
        };
        writer
            .run(move |conn| remember_on_sqlite(conn, &uses))
            .await?
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
        // The host's purge (in steps on the SQLite writer) removes more than one step's worth.
        let many = PURGE_STEP + 5;
        for i in 0..many {
            remember(s, "k", &format!("step-{i}"), T).await?;
        }
        assert_eq!(purge(s, T).await?, u64::try_from(many)?);
        assert_eq!(purge(s, T).await?, 0);
        // The expired one is forgotten, the live one still counts as seen.
        assert!(remember(s, "k", "old", later).await?);
        assert!(!remember(s, "k", "new", later).await?);
        Ok(())
    }

    async fn nonces_of_inactive_keys_are_refused(db: &TestDb) -> anyhow::Result<()> {
        use crate::store::{api_keys, apps};
        use tessera_proto::scopes::Scope;
        use tessera_proto::signing::{KeyId, KeyKind};

        let s = db.store();
        let app = apps::create(s, "nonce-app", T).await?;
        let key_id = KeyId::parse("0123456789abcdef")?;
        let record = api_keys::ApiKeyRecord {
            key_id: key_id.clone(),
            app_id: app.id,
            kind: KeyKind::App,
            agent_id: None,
            scopes: vec![Scope::TokensRetrieve],
            sealed_signing_key: vec![1, 2, 3],
            fingerprint: "0".repeat(64),
            created_at: T,
            last_used_at: None,
            revoked_at: None,
        };
        api_keys::insert(s, &record).await?;
        let id = key_id.as_str();
        assert_eq!(
            remember_for_active_key(s, id, "n1", T).await?,
            Remembered::Fresh
        );
        assert_eq!(
            remember_for_active_key(s, id, "n1", T).await?,
            Remembered::Replayed
        );
        // An unknown key records nothing.
        assert_eq!(
            remember_for_active_key(s, "fedcba9876543210", "n2", T).await?,
            Remembered::KeyInactive
        );
        assert!(
            remember(s, "fedcba9876543210", "n2", T).await?,
            "n2 was not recorded"
        );
        // A revoked key: refused from the next request on, replays included.
        assert!(api_keys::revoke(s, &key_id, T).await?);
        assert_eq!(
            remember_for_active_key(s, id, "n3", T).await?,
            Remembered::KeyInactive
        );
        assert_eq!(
            remember_for_active_key(s, id, "n1", T).await?,
            Remembered::KeyInactive
        );
        Ok(())
    }

    async fn a_batch_answers_each_nonce_like_single_inserts(db: &TestDb) -> anyhow::Result<()> {
        use crate::store::{api_keys, apps};
        use tessera_proto::scopes::Scope;
        use tessera_proto::signing::{KeyId, KeyKind};

        let s = db.store();
        let app = apps::create(s, "batch-app", T).await?;
        let mut ids = Vec::new();
        for n in 1..=2_u8 {
            let key_id = KeyId::parse(&format!("{n:016x}"))?;
            api_keys::insert(
                s,
                &api_keys::ApiKeyRecord {
                    key_id: key_id.clone(),
                    app_id: app.id,
                    kind: KeyKind::App,
                    agent_id: None,
                    scopes: vec![Scope::TokensRetrieve],
                    sealed_signing_key: vec![n],
                    fingerprint: format!("{n:064x}"),
                    created_at: T,
                    last_used_at: None,
                    revoked_at: None,
                },
            )
            .await?;
            ids.push(key_id);
        }
        let (live, revoked) = (ids[0].as_str(), ids[1].as_str());
        assert!(api_keys::revoke(s, &ids[1], T).await?);
        assert!(remember(s, live, "seen-before", T).await?);
        let u = |key: &str, nonce: &str| NonceUse {
            key_id: key.to_owned(),
            nonce: nonce.to_owned(),
            expires_at: T,
        };
        let batch = [
            u(live, "a"),
            u(live, "seen-before"),
            u(live, "a"),
            u(revoked, "b"),
            u("00000000000000ff", "c"),
            u(live, "d"),
        ];
        let expected = [
            Remembered::Fresh,
            Remembered::Replayed,
            Remembered::Replayed,
            Remembered::KeyInactive,
            Remembered::KeyInactive,
            Remembered::Fresh,
        ];
        assert_eq!(remember_many(s, &batch).await?, expected);
        // What the batch inserted counts as seen afterwards; what it refused does not.
        assert!(!remember(s, live, "a", T).await?);
        assert!(!remember(s, live, "d", T).await?);
        assert!(remember(s, revoked, "b", T).await?);
        assert!(remember_many(s, &[]).await?.is_empty());
        // The host's path (the SQLite writer thread, or the pool on PostgreSQL) answers the
        // same for the same batch under another signature window.
        let later = T.plus(std::time::Duration::from_secs(1));
        assert!(remember(s, live, "seen-before", later).await?);
        let batch: Vec<NonceUse> = batch
            .into_iter()
            .map(|u| NonceUse {
                expires_at: later,
                ..u
            })
            .collect();
        assert_eq!(remember_batch(s, batch).await?, expected);
        assert!(!remember(s, live, "d", later).await?);
        assert!(remember_batch(s, Vec::new()).await?.is_empty());
        Ok(())
    }
}
