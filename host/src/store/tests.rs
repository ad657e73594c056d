//! Tests of the store as a whole: configuration, connection settings, and that both
//! migration folders build the same schema.

use std::collections::BTreeMap;
use std::path::Path;

use super::testing::TestDb;
use super::*;

#[test]
fn no_url_means_sqlite_in_the_data_dir() -> anyhow::Result<()> {
    for url in [None, Some(""), Some("  ")] {
        let config = DatabaseConfig::from_url_or_data_dir(url, Path::new("/var/lib/tessera"))?;
        assert_eq!(
            config,
            DatabaseConfig::Sqlite {
                path: PathBuf::from("/var/lib/tessera/tessera.db")
            }
        );
    }
    Ok(())
}

#[test]
fn postgres_and_sqlite_urls_select_their_backend() -> anyhow::Result<()> {
    let dir = Path::new("/data");
    for url in [
        "postgres://u@db/tessera",
        "postgresql://u:pw@db:5433/t?sslmode=require",
    ] {
        let config = DatabaseConfig::from_url_or_data_dir(Some(url), dir)?;
        assert_eq!(config, DatabaseConfig::Postgres { url: url.into() });
        assert_eq!(config.backend(), BackendKind::Postgres);
    }
    let config = DatabaseConfig::from_url_or_data_dir(Some("sqlite:///srv/t.db"), dir)?;
    assert_eq!(
        config,
        DatabaseConfig::Sqlite {
            path: "/srv/t.db".into()
        }
    );
    Ok(())
}

#[test]
fn unsupported_url_is_rejected_without_its_password() {
    let err = DatabaseConfig::from_url_or_data_dir(Some("mysql://u:hunter2@db/t"), Path::new("/d"))
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn database_config_never_prints_the_password() {
    let config = DatabaseConfig::Postgres {
        url: "postgres://tessera:hunter2@db:5432/tessera".into(),
    };
    for shown in [format!("{config}"), format!("{config:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("db:5432"), "{shown}");
    }
}

#[tokio::test]
async fn sqlite_database_is_created_with_wal_foreign_keys_and_normal_sync() -> anyhow::Result<()> {
    let db = TestDb::new(BackendKind::Sqlite).await?;
    let DatabaseConfig::Sqlite { path } = db.config() else {
        anyhow::bail!("not sqlite");
    };
    assert!(path.is_file());
    let Pool::Sqlite(pool) = &db.store().pool else {
        anyhow::bail!("not sqlite");
    };
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await?;
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(pool)
        .await?;
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await?;
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await?;
    assert_eq!(journal, "wal");
    assert_eq!(foreign_keys, 1);
    assert_eq!(synchronous, 1, "NORMAL");
    assert_eq!(busy, 5000);
    Ok(())
}

#[tokio::test]
async fn sqlite_store_creates_a_missing_data_directory() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("tessera-test-{}", uuid::Uuid::new_v4()));
    let config = DatabaseConfig::from_url_or_data_dir(None, &dir.join("nested/data"))?;
    let store = Store::open(&config).await?;
    store.ping().await?;
    store.close().await;
    let created = dir.join("nested/data/tessera.db").is_file();
    std::fs::remove_dir_all(&dir)?;
    assert!(created);
    Ok(())
}

#[tokio::test]
async fn unreachable_postgres_is_an_error_naming_the_server() {
    // Port 1 on localhost: nothing listens there.
    let config = DatabaseConfig::Postgres {
        url: "postgres://tessera:hunter2@127.0.0.1:1/tessera".into(),
    };
    let err = Store::open(&config).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("127.0.0.1:1") && !msg.contains("hunter2"),
        "{msg}"
    );
}

both_backends! {
    reopening_a_migrated_database_keeps_its_data => reopening_a_migrated_database_keeps_its_data;
    foreign_keys_are_enforced => foreign_keys_are_enforced;
    grant_cannot_use_another_apps_credential => grant_cannot_use_another_apps_credential;
    grant_and_credential_read_together_match_separate_reads =>
        grant_and_credential_read_together_match_separate_reads;
    delegations_stay_within_their_app_and_one_is_live_per_pair =>
        delegations_stay_within_their_app_and_one_is_live_per_pair;
}

/// Apps `a` and `b`, a data key, and a system Stripe grant of `a` with its credential.
async fn two_apps_and_a_grant(
    s: &Store,
    now: Timestamp,
) -> anyhow::Result<(apps::App, apps::App, super::grants::GrantRecord)> {
    use tessera_proto::grants::{GrantKind, GrantStatus, Principal};

    use super::credentials::CredentialRecord;
    use super::grants::GrantRecord;
    use super::{CredentialId, GrantId, credentials, grants};

    let a = apps::create(s, "a", now).await?;
    let b = apps::create(s, "b", now).await?;
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
    let credential = CredentialRecord {
        id: CredentialId::new(),
        app_id: a.id,
        provider: "stripe".into(),
        sealed: vec![1],
        key_version: 1,
        metadata: BTreeMap::new(),
        expires_at: None,
        revision: 1,
        created_at: now,
        updated_at: now,
    };
    credentials::insert(s, &credential).await?;
    let grant = GrantRecord {
        id: GrantId::new(),
        app_id: a.id,
        provider: "stripe".into(),
        principal: Principal::System,
        credential_id: credential.id,
        kind: GrantKind::ManagedSecret,
        account_label: String::new(),
        scopes: Vec::new(),
        status: GrantStatus::Active,
        created_at: now,
        updated_at: now,
        last_used_at: None,
        revoked_at: None,
        valid_until: None,
    };
    grants::insert(s, &grant).await?;
    Ok((a, b, grant))
}

/// SQLite's grant epoch (migration 0014) goes up with every change to a grant or a
/// credential that a call reads, in the change's own transaction, whichever connection makes
/// it; a grant's `last_used_at` (which calls themselves write) leaves it alone.
#[tokio::test]
async fn grants_epoch_counts_every_change_a_call_reads() -> anyhow::Result<()> {
    use super::{credentials, grants};

    let db = TestDb::new(BackendKind::Sqlite).await?;
    let s = db.store();
    let readers = s.sqlite_readers().expect("SQLite has readers");
    let epoch = || readers.read(grants::epoch_on_sqlite);
    let now = Timestamp::now();
    let start = epoch()?;
    let (a, _, grant) = two_apps_and_a_grant(s, now).await?;
    // The credential's insert and the grant's.
    assert_eq!(epoch()?, start + 2);
    grants::touch_last_used(s, grant.id, now).await?;
    assert_eq!(epoch()?, start + 2, "last_used_at is not read by calls");
    let credential = credentials::get(s, a.id, grant.credential_id, false)
        .await?
        .expect("stored");
    let resealed = credentials::CredentialRecord {
        sealed: vec![2],
        ..credential.clone()
    };
    assert!(credentials::replace(s, &resealed, credential.revision, now).await?);
    assert_eq!(epoch()?, start + 3);
    // A rolled-back change leaves it where it was.
    let mut tx = s.begin().await?;
    assert!(grants::revoke(&mut tx, a.id, grant.id, now).await?);
    drop(tx);
    assert_eq!(epoch()?, start + 3);
    assert!(grants::revoke(s, a.id, grant.id, now).await?);
    let after_revoke = epoch()?;
    assert_eq!(after_revoke, start + 4);
    assert_eq!(epoch()?, after_revoke);
    Ok(())
}

/// The database holds delegations to their app: a delegation naming another app's grant or
/// agent is refused by the composite foreign keys, whatever the service checks. One live
/// delegation per grant and agent; an expired one is closed to make room; revoking for the
/// grant ends the live ones only.
async fn delegations_stay_within_their_app_and_one_is_live_per_pair(
    db: &TestDb,
) -> anyhow::Result<()> {
    use super::delegations::{self, DelegationOrigin, DelegationRecord, RevokedBy};
    use super::{DelegationId, agents};

    let s = db.store();
    let now = Timestamp::from_unix_millis(1_700_000_000_000);
    let (a, b, grant) = two_apps_and_a_grant(s, now).await?;
    let bot_a = agents::create(s, a.id, "bot", now).await?;
    let bot_b = agents::create(s, b.id, "bot", now).await?;
    let delegation = |app, agent, expires_at| DelegationRecord {
        id: DelegationId::new(),
        app_id: app,
        grant_id: grant.id,
        agent_id: agent,
        origin: DelegationOrigin::Operator,
        created_at: now,
        expires_at,
        revoked_at: None,
        revoked_by: None,
    };
    // Another app's agent, or the grant under another app: refused by the database.
    assert!(
        delegations::insert(s, &delegation(a.id, bot_b.id, None))
            .await
            .is_err()
    );
    assert!(
        delegations::insert(s, &delegation(b.id, bot_b.id, None))
            .await
            .is_err()
    );

    // One live delegation per pair; an expired one is closed to make room for a new one.
    let hour = std::time::Duration::from_hours(1);
    let first = delegation(a.id, bot_a.id, Some(now.plus(hour)));
    delegations::insert(s, &first).await?;
    assert!(matches!(
        delegations::insert(s, &delegation(a.id, bot_a.id, None)).await,
        Err(StoreError::Conflict { .. })
    ));
    let later = now.plus(hour * 2);
    assert!(
        delegations::live_for(s, a.id, grant.id, bot_a.id, later)
            .await?
            .is_none()
    );
    delegations::close_expired(s, a.id, grant.id, bot_a.id, later).await?;
    let closed = delegations::get(s, a.id, first.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("kept as history"))?;
    assert_eq!(closed.revoked_by, Some(RevokedBy::Expired));
    assert_eq!(closed.revoked_at, first.expires_at);
    let second = delegation(a.id, bot_a.id, None);
    delegations::insert(s, &second).await?;
    assert_eq!(
        delegations::live_for(s, a.id, grant.id, bot_a.id, later)
            .await?
            .map(|d| d.id),
        Some(second.id)
    );
    // Another app sees none of it; revoking for the grant ends the live one only.
    assert!(delegations::get(s, b.id, second.id).await?.is_none());
    assert_eq!(
        delegations::revoke_for_grant(s, a.id, grant.id, later).await?,
        1
    );
    let ended = delegations::get(s, a.id, second.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("kept as history"))?;
    assert_eq!(ended.revoked_by, Some(RevokedBy::Grant));
    assert_eq!(
        delegations::get(s, a.id, first.id)
            .await?
            .and_then(|d| d.revoked_by),
        Some(RevokedBy::Expired)
    );
    Ok(())
}

/// The joined read of the call path returns exactly what the two separate reads return,
/// only within the grant's own app.
async fn grant_and_credential_read_together_match_separate_reads(
    db: &TestDb,
) -> anyhow::Result<()> {
    use super::{GrantId, credentials, grants};

    let s = db.store();
    let now = Timestamp::from_unix_millis(1_700_000_000_000);
    let (a, b, grant) = two_apps_and_a_grant(s, now).await?;
    let joined = grants::get_with_credential(s, a.id, grant.id).await?;
    let separate = (
        grants::get(s, a.id, grant.id, false).await?,
        credentials::get(s, a.id, grant.credential_id, false).await?,
    );
    assert!(separate.1.is_some(), "the grant's credential is stored");
    assert_eq!(joined, Some((grant.clone(), separate.1.clone())));
    assert_eq!(separate.0, Some(grant.clone()));
    assert_eq!(grants::get_with_credential(s, b.id, grant.id).await?, None);
    // The batch read finds it among ids that match nothing, and only once.
    let many =
        grants::get_many_with_credential(s, &[GrantId::new(), grant.id, grant.id, GrantId::new()])
            .await?;
    assert_eq!(many, vec![joined.clone().unwrap()]);
    assert!(grants::get_many_with_credential(s, &[]).await?.is_empty());
    // On SQLite the call path reads on the caller's thread through rusqlite: same rows.
    // With the grant epoch of the same snapshot; none when nothing was found.
    if let Some(readers) = s.sqlite_readers() {
        let (inline, epoch) = readers.read(|conn| {
            grants::get_many_with_credential_on_sqlite(conn, &[GrantId::new(), grant.id])
        })?;
        assert_eq!(inline, many);
        let now_epoch = readers.read(grants::epoch_on_sqlite)?;
        assert_eq!(epoch, Some(now_epoch));
        let (none, epoch) = readers
            .read(|conn| grants::get_many_with_credential_on_sqlite(conn, &[GrantId::new()]))?;
        assert!(none.is_empty() && epoch.is_none());
    }
    assert_eq!(
        grants::get_with_credential(s, a.id, GrantId::new()).await?,
        None
    );
    Ok(())
}

async fn reopening_a_migrated_database_keeps_its_data(db: &TestDb) -> anyhow::Result<()> {
    let app = apps::create(db.store(), "kept", Timestamp::now()).await?;
    // A second open runs the migrator again: nothing to apply, nothing lost.
    let again = db.open_another().await?;
    assert_eq!(again.backend(), db.config().backend());
    assert_eq!(apps::get_by_name(&again, "kept").await?, Some(app));
    let applied: i64 = on_conn!(&again, |conn| {
        Ok::<i64, StoreError>(
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(&mut *conn)
                .await?,
        )
    })?;
    let expected = dialect::migrator(again.backend()).iter().count();
    assert_eq!(usize::try_from(applied)?, expected);
    Ok(())
}

async fn foreign_keys_are_enforced(db: &TestDb) -> anyhow::Result<()> {
    // The body's `?` returns from the enclosing function: give it one.
    let result: Result<(), StoreError> = async {
        on_conn!(db.store(), |conn| {
            sqlx::query(
                "INSERT INTO agents (id, app_id, name, created_at) VALUES ($1, $2, 'a', 0)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(AppId::new().to_string())
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
    }
    .await;
    let err = result.unwrap_err();
    assert!(
        matches!(&err, StoreError::Database(sqlx::Error::Database(e)) if e.is_foreign_key_violation()),
        "{err:?}"
    );
    Ok(())
}

/// Schema-level app isolation: the composite foreign key refuses a grant of app B that
/// points at app A's credential.
async fn grant_cannot_use_another_apps_credential(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let now = Timestamp::now();
    let a = apps::create(s, "a", now).await?;
    let b = apps::create(s, "b", now).await?;
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
    let credential = uuid::Uuid::new_v4().to_string();
    let insert_grant = async |app: AppId| -> Result<(), StoreError> {
        on_conn!(s, |conn| {
            sqlx::query(
                "INSERT INTO grants (id, app_id, provider, principal_kind, principal_value, \
                 credential_id, kind, status, created_at, updated_at) \
                 VALUES ($1, $2, 'github', 'user', 'iss sub', $3, 'oauth', 'active', $4, $4)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(app.to_string())
            .bind(&credential)
            .bind(now.unix_millis())
            .execute(&mut *conn)
            .await?;
            Ok(())
        })
    };
    on_conn!(s, |conn| {
        sqlx::query(
            "INSERT INTO credentials (id, app_id, provider, sealed, key_version, created_at, \
             updated_at) VALUES ($1, $2, 'github', $3, 1, $4, $4)",
        )
        .bind(&credential)
        .bind(a.id.to_string())
        .bind(vec![7_u8; 40])
        .bind(now.unix_millis())
        .execute(&mut *conn)
        .await?;
        Ok::<(), StoreError>(())
    })?;
    insert_grant(a.id).await?;
    let err = insert_grant(b.id).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Database(sqlx::Error::Database(e)) if e.is_foreign_key_violation()),
        "{err:?}"
    );
    Ok(())
}

/// Table → columns as (name, type, nullable), with SQLite's types spelled the PostgreSQL way.
type Shape = BTreeMap<String, Vec<(String, String, bool)>>;
/// One column as read from a catalog: (table, column, type, nullable).
type CatalogColumn = (String, String, String, bool);

/// Tables only the SQLite schema has, on purpose: `grant_epoch` (migration 0014) serves the
/// grants a SQLite host keeps in memory (see `grants_epoch_counts_every_change_a_call_reads`).
const SQLITE_ONLY_TABLES: &[&str] = &["grant_epoch"];

async fn schema_shape(store: &Store) -> anyhow::Result<(Shape, Vec<String>)> {
    let (columns, mut indexes): (Vec<CatalogColumn>, Vec<String>) = match &store.pool {
        Pool::Sqlite(pool) => {
            let cols: Vec<(String, String, String, i64)> = sqlx::query_as(
                "SELECT m.name, p.name, p.type, p.\"notnull\" \
                     FROM sqlite_master m JOIN pragma_table_info(m.name) p \
                     WHERE m.type = 'table' AND m.name NOT IN ('_sqlx_migrations') \
                       AND m.name NOT LIKE 'sqlite%' ORDER BY m.name, p.cid",
            )
            .fetch_all(pool)
            .await?;
            let idx = sqlx::query_scalar(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL",
            )
            .fetch_all(pool)
            .await?;
            let cols = cols
                .into_iter()
                .map(|(t, c, ty, notnull)| {
                    let ty = match ty.as_str() {
                        "INTEGER" => "bigint",
                        "BLOB" => "bytea",
                        "TEXT" => "text",
                        other => other,
                    };
                    (t, c, ty.to_owned(), notnull == 0)
                })
                .collect();
            (cols, idx)
        }
        Pool::Postgres(pool) => {
            let cols: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT table_name::text, column_name::text, data_type::text, \
                     is_nullable::text FROM information_schema.columns \
                     WHERE table_schema = 'public' AND table_name NOT IN ('_sqlx_migrations') \
                     ORDER BY table_name, ordinal_position",
            )
            .fetch_all(pool)
            .await?;
            let idx = sqlx::query_scalar(
                "SELECT indexname::text FROM pg_indexes i WHERE schemaname = 'public' \
                     AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            )
            .fetch_all(pool)
            .await?;
            let cols = cols
                .into_iter()
                .map(|(t, c, ty, nullable)| (t, c, ty, nullable == "YES"))
                .collect();
            (cols, idx)
        }
    };
    let mut shape = Shape::new();
    for (table, column, ty, nullable) in columns {
        if SQLITE_ONLY_TABLES.contains(&table.as_str()) {
            continue;
        }
        shape.entry(table).or_default().push((column, ty, nullable));
    }
    indexes.sort();
    Ok((shape, indexes))
}

#[tokio::test]
async fn schemas_match_across_backends() -> anyhow::Result<()> {
    let sqlite = TestDb::new(BackendKind::Sqlite).await?;
    let postgres = TestDb::new(BackendKind::Postgres).await?;
    let (sqlite_shape, sqlite_indexes) = schema_shape(sqlite.store()).await?;
    let (postgres_shape, postgres_indexes) = schema_shape(postgres.store()).await?;
    assert!(
        sqlite_shape.contains_key("audit") && sqlite_shape.len() == 21,
        "{sqlite_shape:#?}"
    );
    assert_eq!(sqlite_shape, postgres_shape);
    assert_eq!(sqlite_indexes, postgres_indexes);
    Ok(())
}
