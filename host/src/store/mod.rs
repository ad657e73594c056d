//! Persistence: the database connection, embedded migrations and the repository functions
//! (one submodule per table family, SQL next to the function that runs it).
//!
//! Two backends: **SQLite** embedded in the data directory (`tessera.db`, WAL) by default, and
//! **PostgreSQL** when `TESSERA_DATABASE_URL` names one, for several stateless host instances
//! sharing one database.
//!
//! # One code path for both backends
//!
//! [`Store`] holds an enum of the two native sqlx pools, and every repository function is
//! written once inside `on_conn!`, which compiles the same body twice: once against a
//! `SqliteConnection`, once against a `PgConnection`. The SQL text is shared because it is
//! written in the common subset: `$1`-style placeholders (sqlx's SQLite driver accepts them),
//! TEXT ids, 64-bit integer unix-millisecond times, `ON CONFLICT … DO NOTHING/UPDATE`,
//! `RETURNING`. What does differ (column types in the migrations, how a write transaction
//! begins, row locks) lives in [`dialect`] and nowhere else.
//!
//! Why not `sqlx::Any`: it routes every value through a lowest-common-denominator value type,
//! loses the drivers' own type checks and options (SQLite pragmas, Postgres `FOR UPDATE`
//! behaviour) and needs a runtime driver registry. The enum keeps both native drivers, and
//! because each body is type-checked against both, a bind that one backend cannot encode
//! fails the build rather than a production deployment.
//!
//! # What this module must never do
//!
//! It never sees a plaintext secret: credentials, key verifiers and data keys arrive already
//! sealed by the vault and are stored as opaque bytes. It makes no policy decision: uniqueness
//! and foreign keys are enforced, everything else is the caller's business.

// Product names in prose, not code. Remove once clippy.toml's `doc-valid-idents` lists them.

pub mod agents;
pub mod api_keys;
pub mod approvals;
pub mod apps;
pub mod audit;
pub mod connect_sessions;
pub mod credentials;
pub mod data_keys;
pub mod delegations;
pub mod dialect;
mod error;
pub mod grants;
pub mod idp_configs;
pub mod last_used;
pub mod meta;
pub mod nonces;
pub mod policy_rules;
pub mod provider_configs;
pub mod reseal;
#[doc(hidden)]
pub mod testing;
mod types;
pub mod wallet;
pub mod webhooks;
mod writer;

use std::fmt;
use std::path::{Path, PathBuf};

use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres, Sqlite, SqliteConnection, SqlitePool, Transaction};

pub use error::StoreError;
pub use types::{AgentId, AppId, CredentialId, DelegationId, GrantId, SessionId, Timestamp};
pub(crate) use writer::{Lane, Settled, SqliteReaders, SqliteWriter, TryGet};

/// Name of the SQLite database file inside the data directory.
pub const SQLITE_FILE_NAME: &str = "tessera.db";

/// Which database a [`Store`] talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BackendKind {
    /// Embedded SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

impl BackendKind {
    /// Both backends, in the order tests run them.
    pub const ALL: [BackendKind; 2] = [BackendKind::Sqlite, BackendKind::Postgres];
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Sqlite => "sqlite",
            BackendKind::Postgres => "postgres",
        })
    }
}

/// Where the database lives. `Debug` and `Display` hide a PostgreSQL password.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// An SQLite file, created (with its directory) if missing.
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
    /// A PostgreSQL database, by connection URL (`postgres://user@host:port/db`).
    Postgres {
        /// Connection URL; may contain a password, so never log it as is.
        url: String,
    },
}

impl DatabaseConfig {
    /// The configuration a host uses: PostgreSQL when `url` (from `TESSERA_DATABASE_URL` or
    /// the config file) is a `postgres://`/`postgresql://` URL, an explicit SQLite file for
    /// `sqlite://PATH`, else `tessera.db` in `data_dir`. An empty URL counts as none.
    pub fn from_url_or_data_dir(url: Option<&str>, data_dir: &Path) -> Result<Self, StoreError> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(DatabaseConfig::Sqlite {
                path: data_dir.join(SQLITE_FILE_NAME),
            });
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseConfig::Postgres {
                url: url.to_owned(),
            });
        }
        if let Some(path) = url.strip_prefix("sqlite://")
            && !path.is_empty()
        {
            return Ok(DatabaseConfig::Sqlite {
                path: PathBuf::from(path),
            });
        }
        Err(StoreError::UnsupportedUrl {
            url: redact_url(url),
        })
    }

    /// The backend this configuration selects.
    pub fn backend(&self) -> BackendKind {
        match self {
            DatabaseConfig::Sqlite { .. } => BackendKind::Sqlite,
            DatabaseConfig::Postgres { .. } => BackendKind::Postgres,
        }
    }
}

impl fmt::Display for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseConfig::Sqlite { path } => write!(f, "sqlite file {}", path.display()),
            DatabaseConfig::Postgres { url } => write!(f, "postgres {}", redact_url(url)),
        }
    }
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseConfig::Sqlite { path } => {
                f.debug_struct("Sqlite").field("path", path).finish()
            }
            DatabaseConfig::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &redact_url(url))
                .finish(),
        }
    }
}

/// `url` with any password replaced by `redacted`; unparsable URLs are hidden entirely.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                // Cannot fail: a URL with a password has a host.
                let _ = parsed.set_password(Some("redacted"));
            }
            parsed.to_string()
        }
        Err(_) => "[unparsable URL]".to_owned(),
    }
}

/// The database: a pool of connections to one backend, migrated to the latest schema.
/// Cloning is cheap (the pools are reference-counted) and clones share connections.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// SQLite only: the thread that runs the request path's writes ([`writer`]).
    writer: Option<std::sync::Arc<SqliteWriter>>,
    /// SQLite only: connections for the request path's reads on the caller's thread.
    readers: Option<std::sync::Arc<SqliteReaders>>,
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Connects (creating the SQLite file and its directory if missing) and runs the embedded
    /// migrations. Safe to call from several host instances at once: PostgreSQL migrations
    /// take an advisory lock.
    pub async fn open(config: &DatabaseConfig) -> Result<Self, StoreError> {
        let mut writer = None;
        let mut readers = None;
        let pool =
            match config {
                DatabaseConfig::Sqlite { path } => {
                    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                        tokio::fs::create_dir_all(dir).await.map_err(|source| {
                            StoreError::DataDir {
                                path: dir.to_path_buf(),
                                source,
                            }
                        })?;
                    }
                    let pool = dialect::sqlite::connect(path).await.map_err(|source| {
                        StoreError::Open {
                            target: config.to_string(),
                            source,
                        }
                    })?;
                    dialect::sqlite::MIGRATOR.run(&pool).await?;
                    writer = Some(std::sync::Arc::new(writer::SqliteWriter::open(path)?));
                    readers = Some(std::sync::Arc::new(SqliteReaders::new(path)));
                    Pool::Sqlite(pool)
                }
                DatabaseConfig::Postgres { url } => {
                    let pool = dialect::postgres::connect(url).await.map_err(|source| {
                        StoreError::Open {
                            target: config.to_string(),
                            source,
                        }
                    })?;
                    dialect::postgres::MIGRATOR.run(&pool).await?;
                    Pool::Postgres(pool)
                }
            };
        Ok(Store {
            pool,
            writer,
            readers,
        })
    }

    /// The SQLite request-path readers (`None` on PostgreSQL).
    pub(crate) fn sqlite_readers(&self) -> Option<&std::sync::Arc<SqliteReaders>> {
        self.readers.as_ref()
    }

    /// The SQLite request-path writer (`None` on PostgreSQL).
    pub(crate) fn sqlite_writer(&self) -> Option<&std::sync::Arc<SqliteWriter>> {
        self.writer.as_ref()
    }

    /// The backend behind this store.
    pub fn backend(&self) -> BackendKind {
        match self.pool {
            Pool::Sqlite(_) => BackendKind::Sqlite,
            Pool::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// Round-trips a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_conn!(self, |conn| {
            sqlx::query("SELECT 1").execute(&mut *conn).await?;
            Ok(())
        })
    }

    /// Starts a write transaction. It rolls back when dropped without [`Tx::commit`].
    /// On SQLite it takes the write lock at once (`BEGIN IMMEDIATE`), so two writers queue on
    /// the busy timeout instead of one failing half-way with `SQLITE_BUSY`.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        let inner = match &self.pool {
            Pool::Sqlite(pool) => TxInner::Sqlite(pool.begin_with(dialect::sqlite::BEGIN).await?),
            Pool::Postgres(pool) => {
                TxInner::Postgres(pool.begin_with(dialect::postgres::BEGIN).await?)
            }
        };
        Ok(Tx { inner })
    }

    /// Waits for every connection to be returned, then closes them.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

/// An open transaction on a [`Store`]. Pass `&mut tx` to repository functions; dropping it
/// without [`Tx::commit`] rolls back.
pub struct Tx {
    inner: TxInner,
}

enum TxInner {
    Sqlite(Transaction<'static, Sqlite>),
    Postgres(Transaction<'static, Postgres>),
}

impl fmt::Debug for Tx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Tx {
    /// Makes every write of the transaction durable and visible.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.inner {
            TxInner::Sqlite(tx) => tx.commit().await?,
            TxInner::Postgres(tx) => tx.commit().await?,
        }
        Ok(())
    }

    /// Discards every write of the transaction.
    pub async fn rollback(self) -> Result<(), StoreError> {
        match self.inner {
            TxInner::Sqlite(tx) => tx.rollback().await?,
            TxInner::Postgres(tx) => tx.rollback().await?,
        }
        Ok(())
    }
}

/// What a repository function runs on: the store itself (one pooled connection for the
/// call) or an open transaction. Built implicitly from `&Store` and `&mut Tx`.
#[derive(Debug)]
pub enum Db<'a> {
    /// Autocommit on a connection from the pool.
    Store(&'a Store),
    /// Inside a transaction.
    Tx(&'a mut Tx),
}

impl<'a> From<&'a Store> for Db<'a> {
    fn from(store: &'a Store) -> Self {
        Db::Store(store)
    }
}

impl<'a> From<&'a mut Tx> for Db<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        Db::Tx(tx)
    }
}

impl<'a> Db<'a> {
    /// Takes a connection out of the pool, or borrows the transaction's.
    #[doc(hidden)]
    pub async fn hold(self) -> Result<Held<'a>, StoreError> {
        Ok(match self {
            Db::Store(store) => match &store.pool {
                Pool::Sqlite(pool) => Held::SqlitePooled(pool.acquire().await?),
                Pool::Postgres(pool) => Held::PostgresPooled(pool.acquire().await?),
            },
            Db::Tx(tx) => match &mut tx.inner {
                TxInner::Sqlite(t) => Held::SqliteBorrowed(t),
                TxInner::Postgres(t) => Held::PostgresBorrowed(t),
            },
        })
    }
}

/// A connection held for the length of one repository call (see `on_conn!`).
#[doc(hidden)]
pub enum Held<'a> {
    SqlitePooled(PoolConnection<Sqlite>),
    PostgresPooled(PoolConnection<Postgres>),
    SqliteBorrowed(&'a mut SqliteConnection),
    PostgresBorrowed(&'a mut PgConnection),
}

/// A connection of either backend; the two arms `on_conn!` compiles its body for.
#[doc(hidden)]
pub enum Conn<'c> {
    Sqlite(&'c mut SqliteConnection),
    Postgres(&'c mut PgConnection),
}

impl Held<'_> {
    #[doc(hidden)]
    pub fn conn(&mut self) -> Conn<'_> {
        match self {
            Held::SqlitePooled(c) => Conn::Sqlite(c),
            Held::PostgresPooled(c) => Conn::Postgres(c),
            Held::SqliteBorrowed(c) => Conn::Sqlite(c),
            Held::PostgresBorrowed(c) => Conn::Postgres(c),
        }
    }
}

/// Runs `$body` with `$conn` bound to a `&mut SqliteConnection` or `&mut PgConnection`
/// (and, in the second form, `$dialect` to that backend's [`dialect::Dialect`]). The body is
/// written once and compiled for both backends; it must evaluate to a
/// `Result<_, StoreError>`. `$db` is anything that converts into a [`Db`]. Like any macro
/// body, a `?` inside it returns from the enclosing function.
macro_rules! on_conn {
    ($db:expr, |$conn:ident| $body:expr) => {
        $crate::store::on_conn!($db, |$conn, _dialect| $body)
    };
    ($db:expr, |$conn:ident, $dialect:ident| $body:expr) => {{
        let mut held = $crate::store::Db::hold(::core::convert::Into::into($db)).await?;
        match held.conn() {
            $crate::store::Conn::Sqlite($conn) => {
                let $dialect = &$crate::store::dialect::SQLITE;
                $body
            }
            $crate::store::Conn::Postgres($conn) => {
                let $dialect = &$crate::store::dialect::POSTGRES;
                $body
            }
        }
    }};
}
pub(crate) use on_conn;

/// Declares each named test case once per backend: `case => fn_name;` expands to module
/// `case` with tests `sqlite` and `postgres`, each calling `fn_name(&TestDb)` on a fresh
/// database of that backend. A PostgreSQL server that cannot be reached fails the test.
#[cfg(test)]
macro_rules! both_backends {
    ($($name:ident => $case:ident;)+) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                let db = $crate::store::testing::TestDb::new(
                    $crate::store::BackendKind::Sqlite,
                ).await?;
                super::$case(&db).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                let db = $crate::store::testing::TestDb::new(
                    $crate::store::BackendKind::Postgres,
                ).await?;
                super::$case(&db).await
            }
        }
    )+};
}
#[cfg(test)]
pub(crate) use both_backends;

#[cfg(test)]
mod tests;
