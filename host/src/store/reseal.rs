//! Re-encryption after a data-key rotation, on the database side: the list of columns that
//! hold sealed values ([`SEALED_COLUMNS`]), finding the values sealed with a data key older
//! than a given version, counting values per version, and swapping a re-sealed value in only
//! if the row has not changed since it was read.
//!
//! The SQL is generic over a [`SealedColumn`]; adding a sealed kind (connect state, OAuth
//! client secrets, …) is one entry in [`SEALED_COLUMNS`]. Identifiers spliced into the SQL
//! come only from that list, never from input.
//!
//! Must never: see a plaintext (it moves opaque sealed bytes; opening and sealing belong to
//! `crate::keys` through the vault), or overwrite a value another writer changed: every swap
//! compares and swaps, so a lost race leaves the row as its writer left it.

use std::collections::BTreeMap;
use std::fmt;

use super::{
    Db, StoreError, api_keys, approvals, credentials, on_conn, provider_configs, webhooks,
};

/// Where the data key version of a stored value can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionIn {
    /// An integer column that every writer keeps equal to the sealed value's version
    /// (indexed, so filtering on it is cheap). A swap sets it too.
    Column(&'static str),
    /// Only the sealed bytes themselves: the big-endian `u32` after the `TV1` tag (bytes 4 to
    /// 7, 1-based, as SQL's `substr` counts). Comparing those four bytes as a blob compares
    /// the versions, on SQLite (memcmp) and PostgreSQL (bytea order) alike.
    Header,
}

/// What a swap compares, so that it never overwrites a concurrent write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// An integer column every writer that changes the secret bumps. A re-seal leaves it
    /// alone: the secret did not change, so a writer that read the row before the re-seal
    /// still holds the current secret and its own compare-and-swap must keep succeeding
    /// (otherwise a refresh racing a rotation would lose a freshly rotated refresh token).
    Revision(&'static str),
    /// The sealed bytes as read (for tables without a revision column).
    OldValue,
}

/// A column of sealed values and how to re-seal it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedColumn {
    /// The table.
    pub table: &'static str,
    /// The column holding `TV1` sealed bytes. An empty value holds nothing (e.g. a wiped
    /// credential) and is never a candidate.
    pub column: &'static str,
    /// The primary key column: the associated data's record id.
    pub id_column: &'static str,
    /// The owning app's id column: the associated data's app id.
    pub app_column: &'static str,
    /// The associated data's kind.
    pub kind: &'static str,
    /// Where the data key version is.
    pub version: VersionIn,
    /// What a swap compares.
    pub guard: Guard,
}

impl SealedColumn {
    /// `table.column`, as reports name it.
    pub fn name(&self) -> String {
        format!("{}.{}", self.table, self.column)
    }

    /// SQL for the value's data key version, compared with a version bound by
    /// `bind_version!`.
    fn version_expr(&self) -> String {
        match self.version {
            VersionIn::Column(column) => column.to_owned(),
            VersionIn::Header => format!("substr({}, 4, 4)", self.column),
        }
    }
}

/// Every column that holds sealed values. A new sealed kind is one entry here (and, for a
/// table with neither a version nor a revision column, [`VersionIn::Header`] and
/// [`Guard::OldValue`] need nothing from its schema).
pub const SEALED_COLUMNS: &[SealedColumn] = &[
    SealedColumn {
        table: "api_keys",
        column: "verifier",
        id_column: "id",
        app_column: "app_id",
        kind: api_keys::SEALED_KIND,
        version: VersionIn::Header,
        guard: Guard::OldValue,
    },
    SealedColumn {
        table: "credentials",
        column: "sealed",
        id_column: "id",
        app_column: "app_id",
        kind: credentials::SEALED_KIND,
        version: VersionIn::Column("key_version"),
        guard: Guard::Revision("revision"),
    },
    // A NULL secret (a public client) is never a candidate: `length(NULL) > 0` is not true.
    SealedColumn {
        table: "provider_configs",
        column: "client_secret",
        id_column: "id",
        app_column: "app_id",
        kind: provider_configs::SEALED_KIND,
        version: VersionIn::Column("client_secret_version"),
        guard: Guard::OldValue,
    },
    SealedColumn {
        table: "approvals",
        column: "request",
        id_column: "id",
        app_column: "app_id",
        kind: approvals::REQUEST_KIND,
        version: VersionIn::Header,
        guard: Guard::OldValue,
    },
    // NULL until the approved request was sent: never a candidate before.
    SealedColumn {
        table: "approvals",
        column: "response",
        id_column: "id",
        app_column: "app_id",
        kind: approvals::RESPONSE_KIND,
        version: VersionIn::Header,
        guard: Guard::OldValue,
    },
    SealedColumn {
        table: "webhooks",
        column: "secret",
        id_column: "app_id",
        app_column: "app_id",
        kind: webhooks::SEALED_KIND,
        version: VersionIn::Header,
        guard: Guard::OldValue,
    },
];

/// A stored sealed value, as read for re-sealing. `Debug` shows the row, not the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedRow {
    /// The record id (associated data).
    pub id: String,
    /// The owning app's id (associated data).
    pub app_id: String,
    /// The sealed bytes.
    pub sealed: Vec<u8>,
    /// The revision read, for [`Guard::Revision`] columns (0 otherwise).
    pub revision: i64,
}

impl fmt::Debug for SealedRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedRow")
            .field("id", &self.id)
            .field("app_id", &self.app_id)
            .field(
                "sealed",
                &format_args!("[{} sealed bytes]", self.sealed.len()),
            )
            .field("revision", &self.revision)
            .finish()
    }
}

/// Binds a data key version the way [`SealedColumn::version_expr`] compares it.
macro_rules! bind_version {
    ($query:expr, $col:expr, $version:expr) => {
        match $col.version {
            VersionIn::Column(_) => $query.bind(i64::from($version)),
            VersionIn::Header => $query.bind($version.to_be_bytes().to_vec()),
        }
    };
}

/// Up to `limit` non-empty values of `col` sealed with a data key older than `below`, with
/// ids greater than `after` (pass `""` to start), in id order: one page of a keyset walk.
pub async fn candidates(
    db: impl Into<Db<'_>>,
    col: &SealedColumn,
    below: u32,
    after: &str,
    limit: u32,
) -> Result<Vec<SealedRow>, StoreError> {
    let revision = match col.guard {
        Guard::Revision(column) => column,
        Guard::OldValue => "CAST(0 AS BIGINT)",
    };
    let sql = format!(
        "SELECT {id}, {app}, {sealed}, {revision} FROM {table} \
         WHERE length({sealed}) > 0 AND {version} < $1 AND {id} > $2 \
         ORDER BY {id} LIMIT $3",
        id = col.id_column,
        app = col.app_column,
        sealed = col.column,
        table = col.table,
        version = col.version_expr(),
    );
    on_conn!(db, |conn| {
        let query = sqlx::query_as::<_, (String, String, Vec<u8>, i64)>(&sql);
        let rows = bind_version!(query, col, below)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&mut *conn)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(id, app_id, sealed, revision)| SealedRow {
                id,
                app_id,
                sealed,
                revision,
            })
            .collect())
    })
}

/// Replaces `row`'s value with `resealed` (sealed with data key `version`) if the row still
/// holds what was read: the same revision ([`Guard::Revision`]) or the same bytes
/// ([`Guard::OldValue`]). Returns whether it was replaced; `false` means another writer
/// changed (or deleted) the row meanwhile, and its value stands.
pub async fn swap(
    db: impl Into<Db<'_>>,
    col: &SealedColumn,
    row: &SealedRow,
    resealed: &[u8],
    version: u32,
) -> Result<bool, StoreError> {
    let set_version = match col.version {
        VersionIn::Column(column) => format!(", {column} = $4"),
        VersionIn::Header => String::new(),
    };
    let guard = match col.guard {
        Guard::Revision(column) => column,
        Guard::OldValue => col.column,
    };
    let sql = format!(
        "UPDATE {table} SET {sealed} = $1{set_version} WHERE {id} = $2 AND {guard} = $3",
        table = col.table,
        sealed = col.column,
        id = col.id_column,
    );
    on_conn!(db, |conn| {
        let query = sqlx::query(&sql).bind(resealed).bind(&row.id);
        let query = match col.guard {
            Guard::Revision(_) => query.bind(row.revision),
            Guard::OldValue => query.bind(&row.sealed),
        };
        let query = match col.version {
            VersionIn::Column(_) => query.bind(i64::from(version)),
            VersionIn::Header => query,
        };
        let done = query.execute(&mut *conn).await?;
        Ok(done.rows_affected() == 1)
    })
}

/// How many non-empty values of `col` are sealed with a data key older than `below`.
pub async fn count_below(
    db: impl Into<Db<'_>>,
    col: &SealedColumn,
    below: u32,
) -> Result<u64, StoreError> {
    let sql = format!(
        "SELECT COUNT(*) FROM {table} WHERE length({sealed}) > 0 AND {version} < $1",
        table = col.table,
        sealed = col.column,
        version = col.version_expr(),
    );
    on_conn!(db, |conn| {
        let query = sqlx::query_scalar::<_, i64>(&sql);
        let count = bind_version!(query, col, below)
            .fetch_one(&mut *conn)
            .await?;
        Ok(u64::try_from(count).unwrap_or(0))
    })
}

/// How many non-empty values of `col` each data key version sealed. A value whose header is
/// too short to name a version counts under version 0, which no data key has.
pub async fn count_by_version(
    db: impl Into<Db<'_>>,
    col: &SealedColumn,
) -> Result<BTreeMap<u32, u64>, StoreError> {
    let version = col.version_expr();
    let sql = format!(
        "SELECT {version}, COUNT(*) FROM {table} WHERE length({sealed}) > 0 GROUP BY {version}",
        table = col.table,
        sealed = col.column,
    );
    let corrupt = |detail: String| StoreError::Corrupt {
        table: col.table,
        detail,
    };
    on_conn!(db, |conn| {
        let mut out = BTreeMap::new();
        let counted: Vec<(u32, i64)> = match col.version {
            VersionIn::Column(_) => sqlx::query_as::<_, (i64, i64)>(&sql)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|(v, n)| {
                    u32::try_from(v)
                        .map(|v| (v, n))
                        .map_err(|_| corrupt(format!("{} names key version {v}", col.name())))
                })
                .collect::<Result<_, _>>()?,
            VersionIn::Header => sqlx::query_as::<_, (Vec<u8>, i64)>(&sql)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .map(|(bytes, n)| {
                    let version =
                        <[u8; 4]>::try_from(bytes.as_slice()).map_or(0, u32::from_be_bytes);
                    (version, n)
                })
                .collect(),
        };
        for (version, n) in counted {
            *out.entry(version).or_insert(0) += u64::try_from(n).unwrap_or(0);
        }
        Ok(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;
    use crate::store::{AppId, Timestamp, apps, both_backends, data_keys};

    both_backends! {
        candidates_are_old_non_empty_values_in_id_pages => candidates_are_old_non_empty_values_in_id_pages;
        swap_refuses_a_row_whose_revision_moved => swap_refuses_a_row_whose_revision_moved;
        swap_refuses_a_row_whose_bytes_changed => swap_refuses_a_row_whose_bytes_changed;
        versions_are_counted_from_the_column_and_from_the_header =>
            versions_are_counted_from_the_column_and_from_the_header;
        client_secrets_are_resealed_and_public_clients_skipped =>
            client_secrets_are_resealed_and_public_clients_skipped;
    }

    const T: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

    /// Looks a column up by table, so the tests follow [`SEALED_COLUMNS`].
    fn column(table: &str) -> &'static SealedColumn {
        SEALED_COLUMNS
            .iter()
            .find(|c| c.table == table)
            .unwrap_or_else(|| unreachable!("no sealed column in {table}"))
    }

    /// Bytes shaped like a `TV1` value of `version` (the store never opens them).
    fn tv1(version: u32, fill: u8) -> Vec<u8> {
        let mut out = b"TV1".to_vec();
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&[fill; 30]);
        out
    }

    async fn setup(db: &TestDb) -> anyhow::Result<AppId> {
        for version in 1..=3 {
            data_keys::insert(
                db.store(),
                &data_keys::DataKeyRecord {
                    version,
                    wrapped: vec![0; 60],
                    wrapped_by: "fp".into(),
                    created_at: T,
                },
            )
            .await?;
        }
        Ok(apps::create(db.store(), "billing", T).await?.id)
    }

    async fn credential(
        db: &TestDb,
        app: AppId,
        id: &str,
        sealed: &[u8],
        version: u32,
    ) -> anyhow::Result<()> {
        sqlx_exec(
            db,
            "INSERT INTO credentials (id, app_id, provider, sealed, key_version, revision, \
             created_at, updated_at) VALUES ($1, $2, 'github', $3, $4, 1, 0, 0)",
            (id, &app.to_string(), sealed, i64::from(version)),
        )
        .await
    }

    async fn api_key(db: &TestDb, app: AppId, id: &str, sealed: &[u8]) -> anyhow::Result<()> {
        sqlx_exec(
            db,
            "INSERT INTO api_keys (id, app_id, kind, scopes, verifier, created_at) \
             VALUES ($1, $2, 'app', 'audit:read', $3, $4)",
            (id, &app.to_string(), sealed, 0),
        )
        .await
    }

    async fn sqlx_exec(
        db: &TestDb,
        sql: &str,
        (a, b, c, d): (&str, &str, &[u8], i64),
    ) -> anyhow::Result<()> {
        let store = db.store();
        on_conn!(store, |conn| {
            sqlx::query(sql)
                .bind(a)
                .bind(b)
                .bind(c)
                .bind(d)
                .execute(&mut *conn)
                .await
                .map_err(StoreError::from)?;
            Ok::<_, anyhow::Error>(())
        })
    }

    async fn candidates_are_old_non_empty_values_in_id_pages(db: &TestDb) -> anyhow::Result<()> {
        let app = setup(db).await?;
        let creds = column("credentials");
        credential(db, app, "c1", &tv1(1, 1), 1).await?;
        credential(db, app, "c2", &tv1(2, 2), 2).await?;
        credential(db, app, "c3", &tv1(3, 3), 3).await?;
        credential(db, app, "c4", &[], 1).await?; // wiped: nothing to re-seal
        credential(db, app, "c5", &tv1(1, 5), 1).await?;

        let ids = |rows: &[SealedRow]| rows.iter().map(|r| r.id.clone()).collect::<Vec<_>>();
        let page = candidates(db.store(), creds, 3, "", 2).await?;
        assert_eq!(ids(&page), ["c1", "c2"]);
        assert_eq!(page[0].sealed, tv1(1, 1));
        assert_eq!(page[0].app_id, app.to_string());
        assert_eq!(page[0].revision, 1);
        let page = candidates(db.store(), creds, 3, "c2", 2).await?;
        assert_eq!(ids(&page), ["c5"]);
        assert_eq!(
            ids(&candidates(db.store(), creds, 2, "", 10).await?),
            ["c1", "c5"]
        );
        assert_eq!(count_below(db.store(), creds, 3).await?, 3);

        let keys = column("api_keys");
        api_key(db, app, "00000000000000a1", &tv1(1, 1)).await?;
        api_key(db, app, "00000000000000a2", &tv1(2, 2)).await?;
        api_key(db, app, "00000000000000a3", &tv1(0x0100, 3)).await?;
        let page = candidates(db.store(), keys, 2, "", 10).await?;
        assert_eq!(ids(&page), ["00000000000000a1"]);
        // 0x0100 > 3 although its last byte is smaller: the header compares as a number.
        assert_eq!(count_below(db.store(), keys, 3).await?, 2);
        assert_eq!(count_below(db.store(), keys, 0x0101).await?, 3);
        Ok(())
    }

    async fn swap_refuses_a_row_whose_revision_moved(db: &TestDb) -> anyhow::Result<()> {
        let app = setup(db).await?;
        let creds = column("credentials");
        credential(db, app, "c1", &tv1(1, 1), 1).await?;
        let read = candidates(db.store(), creds, 2, "", 10).await?.remove(0);

        // A refresh replaces the value (and bumps the revision) after the read.
        sqlx_exec(
            db,
            "UPDATE credentials SET sealed = $3, revision = revision + 1 \
             WHERE id = $1 AND app_id = $2 AND revision = $4",
            ("c1", &app.to_string(), &tv1(1, 9), 1),
        )
        .await?;
        assert!(!swap(db.store(), creds, &read, &tv1(2, 7), 2).await?);
        let now = candidates(db.store(), creds, 2, "", 10).await?.remove(0);
        assert_eq!(now.sealed, tv1(1, 9), "the refresh was overwritten");
        assert_eq!(now.revision, 2);

        // Re-read, the swap goes through, sets the version and leaves the revision alone.
        assert!(swap(db.store(), creds, &now, &tv1(2, 7), 2).await?);
        assert!(candidates(db.store(), creds, 2, "", 10).await?.is_empty());
        assert_eq!(
            count_by_version(db.store(), creds).await?,
            BTreeMap::from([(2, 1)])
        );
        let after = candidates(db.store(), creds, 3, "", 10).await?.remove(0);
        assert_eq!((after.sealed, after.revision), (tv1(2, 7), 2));
        Ok(())
    }

    async fn swap_refuses_a_row_whose_bytes_changed(db: &TestDb) -> anyhow::Result<()> {
        let app = setup(db).await?;
        let keys = column("api_keys");
        api_key(db, app, "00000000000000a1", &tv1(1, 1)).await?;
        let read = candidates(db.store(), keys, 2, "", 10).await?.remove(0);
        let stale = SealedRow {
            sealed: tv1(1, 2),
            ..read.clone()
        };
        assert!(!swap(db.store(), keys, &stale, &tv1(2, 7), 2).await?);
        assert!(swap(db.store(), keys, &read, &tv1(2, 7), 2).await?);
        // Swapping again from the same read finds the bytes changed.
        assert!(!swap(db.store(), keys, &read, &tv1(2, 8), 2).await?);
        let stored = candidates(db.store(), keys, 3, "", 10).await?.remove(0);
        assert_eq!(stored.sealed, tv1(2, 7));
        Ok(())
    }

    async fn client_secrets_are_resealed_and_public_clients_skipped(
        db: &TestDb,
    ) -> anyhow::Result<()> {
        use crate::store::provider_configs::{self, ProviderConfigRecord, SealedSecret};
        let app = setup(db).await?;
        let col = column("provider_configs");
        assert_eq!(col.kind, "oauth-client-secret");
        let config = |provider: &str, secret: Option<(Vec<u8>, u32)>| ProviderConfigRecord {
            id: uuid::Uuid::now_v7(),
            app_id: app,
            provider: provider.into(),
            client_id: "client".into(),
            client_secret: secret.map(|(bytes, key_version)| SealedSecret { bytes, key_version }),
            scopes: Vec::new(),
            redirect_uri: None,
            extra_params: Vec::new(),
            connection_params: Vec::new(),
            created_at: T,
            updated_at: T,
        };
        let old = config("github", Some((tv1(1, 1), 1)));
        let public = config("google", None);
        let current = config("oauth2", Some((tv1(2, 2), 2)));
        for c in [&old, &public, &current] {
            provider_configs::upsert(db.store(), c).await?;
        }
        // The public client (NULL secret) is neither a candidate nor counted.
        let read = candidates(db.store(), col, 3, "", 10).await?;
        let ids: Vec<&str> = read.iter().map(|r| r.id.as_str()).collect();
        let (old_id, current_id) = (old.id.to_string(), current.id.to_string());
        assert_eq!(ids.len(), 2, "{ids:?}");
        assert!(ids.contains(&old_id.as_str()) && ids.contains(&current_id.as_str()));
        assert_eq!(count_below(db.store(), col, 2).await?, 1);
        assert_eq!(
            count_by_version(db.store(), col).await?,
            BTreeMap::from([(1, 1), (2, 1)])
        );

        // Swapped on the old bytes, with the version column set alongside.
        let row = candidates(db.store(), col, 2, "", 10).await?.remove(0);
        assert_eq!(
            (row.id.as_str(), row.app_id.clone()),
            (old_id.as_str(), app.to_string())
        );
        let stale = SealedRow {
            sealed: tv1(1, 9),
            ..row.clone()
        };
        assert!(!swap(db.store(), col, &stale, &tv1(3, 7), 3).await?);
        assert!(swap(db.store(), col, &row, &tv1(3, 7), 3).await?);
        let stored = provider_configs::get(db.store(), app, "github", false)
            .await?
            .and_then(|c| c.client_secret);
        assert_eq!(
            stored,
            Some(SealedSecret {
                bytes: tv1(3, 7),
                key_version: 3
            })
        );
        let left: Vec<String> = candidates(db.store(), col, 3, "", 10)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, [current_id]);
        Ok(())
    }

    async fn versions_are_counted_from_the_column_and_from_the_header(
        db: &TestDb,
    ) -> anyhow::Result<()> {
        let app = setup(db).await?;
        credential(db, app, "c1", &tv1(1, 1), 1).await?;
        credential(db, app, "c2", &tv1(1, 2), 1).await?;
        credential(db, app, "c3", &tv1(3, 3), 3).await?;
        credential(db, app, "c4", &[], 2).await?;
        api_key(db, app, "00000000000000a1", &tv1(2, 1)).await?;
        api_key(db, app, "00000000000000a2", b"TV").await?;
        assert_eq!(
            count_by_version(db.store(), column("credentials")).await?,
            BTreeMap::from([(1, 2), (3, 1)])
        );
        assert_eq!(
            count_by_version(db.store(), column("api_keys")).await?,
            BTreeMap::from([(0, 1), (2, 1)])
        );
        Ok(())
    }
}
