//! Throwaway databases for tests, on either backend: a fresh SQLite file in its own temporary
//! directory, or a fresh PostgreSQL database `tessera_test_<uuid>` created on the server named
//! by `TESSERA_TEST_POSTGRES_URL` (default [`DEFAULT_POSTGRES_URL`]). Both are removed when
//! the [`TestDb`] is dropped (best effort).
//!
//! A PostgreSQL server that cannot be reached is an error naming the URL, never a skipped
//! test: `cargo xtask test` starts a server when none is running and exports its URL.
//! Test-only: nothing in the host calls this module.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use uuid::Uuid;

use super::{BackendKind, DatabaseConfig, Store, StoreError, redact_url};

/// Environment variable naming the PostgreSQL server (any database on it) tests create
/// their databases on. The role must be allowed to `CREATE DATABASE`.
pub const POSTGRES_URL_VAR: &str = "TESSERA_TEST_POSTGRES_URL";

/// Where tests look for PostgreSQL when [`POSTGRES_URL_VAR`] is unset: the project machines'
/// server (trust authentication on 127.0.0.1).
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a test database could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TestDbError {
    /// The PostgreSQL server is unreachable or refused us.
    #[error(
        "cannot reach the test PostgreSQL server at {url} ({reason}); run the tests with \
         `cargo xtask test`, which starts one if none is running, or set {POSTGRES_URL_VAR} \
         to a server where this role may CREATE DATABASE"
    )]
    PostgresUnreachable {
        /// The server URL, password redacted.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered but the database could not be created.
    #[error("cannot create a test database on {url}: {source}")]
    CreateDatabase {
        /// The server URL, password redacted.
        url: String,
        /// The cause.
        source: sqlx::Error,
    },
    /// The temporary directory for SQLite could not be created.
    #[error("cannot create a temporary directory {}: {source}", path.display())]
    TempDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Opening or migrating the fresh database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A fresh, migrated database that disappears when dropped.
pub struct TestDb {
    config: DatabaseConfig,
    // Fields drop in order: the store's connections go before the database does.
    store: Store,
    _cleanup: Cleanup,
}

enum Cleanup {
    Dir(PathBuf),
    Postgres { admin_url: String, name: String },
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl TestDb {
    /// Creates a fresh database on `backend` and opens a [`Store`] on it (which migrates it).
    pub async fn new(backend: BackendKind) -> Result<Self, TestDbError> {
        let (config, cleanup) = match backend {
            BackendKind::Sqlite => {
                let dir = std::env::temp_dir().join(format!("tessera-test-{}", Uuid::new_v4()));
                std::fs::create_dir_all(&dir).map_err(|source| TestDbError::TempDir {
                    path: dir.clone(),
                    source,
                })?;
                let config = DatabaseConfig::from_url_or_data_dir(None, &dir)?;
                (config, Cleanup::Dir(dir))
            }
            BackendKind::Postgres => {
                let admin_url = std::env::var(POSTGRES_URL_VAR)
                    .ok()
                    .filter(|u| !u.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned());
                let name = format!("tessera_test_{}", Uuid::new_v4().simple());
                let url = create_postgres_database(&admin_url, &name).await?;
                (
                    DatabaseConfig::Postgres { url },
                    Cleanup::Postgres { admin_url, name },
                )
            }
        };
        // On failure `cleanup` is dropped here, which removes the database.
        let store = Store::open(&config).await?;
        Ok(TestDb {
            config,
            store,
            _cleanup: cleanup,
        })
    }

    /// Where the database is (pass it to `Store::open` or to a host under test).
    pub fn config(&self) -> &DatabaseConfig {
        &self.config
    }

    /// The store opened on it.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A second, independent store on the same database, standing for another host
    /// instance.
    pub async fn open_another(&self) -> Result<Store, StoreError> {
        Store::open(&self.config).await
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        match self {
            Cleanup::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Cleanup::Postgres { admin_url, name } => {
                // Drop cannot await, and may run inside a runtime: use a thread of its own.
                let (admin_url, name) = (admin_url.clone(), name.clone());
                let _ =
                    std::thread::spawn(move || drop_postgres_database(&admin_url, &name)).join();
            }
        }
    }
}

async fn connect_admin(admin_url: &str) -> Result<PgConnection, TestDbError> {
    let unreachable = |reason: String| TestDbError::PostgresUnreachable {
        url: redact_url(admin_url),
        reason,
    };
    let options = PgConnectOptions::from_str(admin_url).map_err(|e| unreachable(e.to_string()))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, options.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(unreachable(e.to_string())),
        Err(_) => Err(unreachable(format!(
            "no answer within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Creates database `name` and returns the URL of it (`admin_url` with its path replaced).
async fn create_postgres_database(admin_url: &str, name: &str) -> Result<String, TestDbError> {
    let mut conn = connect_admin(admin_url).await?;
    // `name` is generated (`tessera_test_` + hex), so it is a safe bare identifier.
    sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .map_err(|source| TestDbError::CreateDatabase {
            url: redact_url(admin_url),
            source,
        })?;
    let _ = conn.close().await;
    let mut url = url::Url::parse(admin_url).map_err(|e| TestDbError::PostgresUnreachable {
        url: redact_url(admin_url),
        reason: e.to_string(),
    })?;
    url.set_path(&format!("/{name}"));
    Ok(url.into())
}

fn drop_postgres_database(admin_url: &str, name: &str) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        if let Ok(mut conn) = connect_admin(admin_url).await {
            // FORCE: connections of stores that are still open do not block the drop.
            let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut conn)
                .await;
            let _ = conn.close().await;
        }
    });
}
