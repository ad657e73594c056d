//! Every difference between SQLite and PostgreSQL that the store has to know about, and
//! nothing else. Repository SQL elsewhere is written once, in the subset both accept.
//!
//! | concern | SQLite | PostgreSQL | where |
//! |---|---|---|---|
//! | placeholders | `$1` | `$1` | same text: sqlx's SQLite driver binds `$N` by number |
//! | bytes | `BLOB` | `BYTEA` | the two migration folders; both decode to `Vec<u8>` |
//! | integers, times | `INTEGER` (64-bit) | `BIGINT` | migrations; times are unix ms in `i64` |
//! | ids | `TEXT` | `TEXT` | UUID strings, so no `uuid` column type |
//! | upsert, `RETURNING` | `ON CONFLICT … DO …` | same | same text |
//! | write transaction | `BEGIN IMMEDIATE` | `BEGIN` | [`Dialect::begin`] |
//! | row lock | none (the write lock is the database) | `FOR UPDATE` | [`Dialect::for_update`] |
//! | audit appenders | none (`BEGIN IMMEDIATE` serialises writers) | advisory transaction lock | [`Dialect::audit_append_lock`] |
//! | request-path writes (nonces, audit) | one writer thread with its own connection | the pool | `store::writer` |
//! | test fault: refuse audit inserts | trigger with `RAISE(ABORT)` | plpgsql trigger function | [`Dialect::audit_fault_on`], [`Dialect::audit_fault_off`] |
//! | connection options | file, WAL, pragmas | URL | [`sqlite::connect`], [`postgres::connect`] |
//!
//! This module must never grow query logic: only the facts above.

use sqlx::migrate::Migrator;

/// The per-backend SQL fragments a repository body may splice into its text (through the
/// second form of `on_conn!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dialect {
    /// Statement that opens a write transaction.
    pub begin: &'static str,
    /// Suffix that makes a `SELECT` lock the rows it returns until commit.
    pub for_update: &'static str,
    /// Statement that, inside a write transaction, makes every other audit appender (of any
    /// host instance) wait until this transaction ends, so the hash chain stays linear.
    /// `None` where opening the write transaction already serialises writers.
    pub audit_append_lock: Option<&'static str>,
    /// Test fault injection only (`audit::testing`): statements after which every insert
    /// into `audit` fails, to show that callers fail closed.
    pub audit_fault_on: &'static [&'static str],
    /// Undoes [`Dialect::audit_fault_on`]; harmless when it was not applied.
    pub audit_fault_off: &'static [&'static str],
}

/// SQLite: the first write lock is taken at `BEGIN`, so there is nothing to lock per row.
pub const SQLITE: Dialect = Dialect {
    begin: sqlite::BEGIN,
    for_update: "",
    audit_append_lock: None,
    audit_fault_on: &[
        "CREATE TRIGGER IF NOT EXISTS tessera_test_audit_fault BEFORE INSERT ON audit \
         BEGIN SELECT RAISE(ABORT, 'audit writes disabled by a test'); END",
    ],
    audit_fault_off: &["DROP TRIGGER IF EXISTS tessera_test_audit_fault"],
};

/// PostgreSQL.
pub const POSTGRES: Dialect = Dialect {
    begin: postgres::BEGIN,
    for_update: " FOR UPDATE",
    audit_append_lock: Some(postgres::AUDIT_APPEND_LOCK),
    audit_fault_on: &[
        "CREATE OR REPLACE FUNCTION tessera_test_audit_fault() RETURNS trigger \
         LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit writes disabled by a test'; END $$",
        "DROP TRIGGER IF EXISTS tessera_test_audit_fault ON audit",
        "CREATE TRIGGER tessera_test_audit_fault BEFORE INSERT ON audit \
         FOR EACH ROW EXECUTE FUNCTION tessera_test_audit_fault()",
    ],
    audit_fault_off: &[
        "DROP TRIGGER IF EXISTS tessera_test_audit_fault ON audit",
        "DROP FUNCTION IF EXISTS tessera_test_audit_fault()",
    ],
};

/// The embedded SQLite backend.
pub mod sqlite {
    use std::path::Path;
    use std::time::Duration;

    use sqlx::SqlitePool;
    use sqlx::migrate::Migrator;
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };

    /// Migrations in `host/migrations/sqlite`.
    pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

    /// Takes the database write lock up front: a deferred transaction that reads and then
    /// writes can fail with `SQLITE_BUSY` at its first write without waiting.
    pub const BEGIN: &str = "BEGIN IMMEDIATE";

    /// How long a connection waits for another one's write lock before giving up.
    pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

    /// Readers run in parallel under WAL; writers queue on the lock anyway. Each connection
    /// is a thread with its own page cache, which every commit by another connection
    /// invalidates: a few warm connections beat many cold ones.
    const MAX_CONNECTIONS: u32 = 4;

    /// `mmap_size` of the pool's connections: reads map the database file instead of
    /// copying pages through `read`. (Not the request path's writer and readers:
    /// `store::writer`.)
    pub const MMAP_SIZE: i64 = 256 << 20;

    /// Opens (creating if missing) the database file: WAL journal so readers never block the
    /// writer, foreign keys enforced, `synchronous = NORMAL` (durable across process crashes,
    /// and the WAL's recommended setting), and a busy timeout.
    pub async fn connect(path: &Path) -> Result<SqlitePool, sqlx::Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("mmap_size", MMAP_SIZE.to_string());
        // No liveness ping before handing out a connection: a connection to a local file
        // does not go stale, and the ping is a round trip to the connection's worker thread
        // on every statement a request makes.
        SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .test_before_acquire(false)
            .connect_with(options)
            .await
    }
}

/// The PostgreSQL backend.
pub mod postgres {
    use std::str::FromStr;
    use std::time::Duration;

    use sqlx::PgPool;
    use sqlx::migrate::Migrator;
    use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

    /// Migrations in `host/migrations/postgres`.
    pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

    /// Default isolation (read committed); row locks do the rest.
    pub const BEGIN: &str = "BEGIN";

    /// Serialises audit appenders across host instances until the transaction ends. The
    /// key is the ASCII of `tsr-audt`, a constant no other lock of this database uses.
    pub const AUDIT_APPEND_LOCK: &str = "SELECT pg_advisory_xact_lock(8391176069955544180)";

    /// A host instance fails its readiness check rather than hang on a dead server.
    const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

    const MAX_CONNECTIONS: u32 = 16;

    /// Connects to the database named by `url`.
    pub async fn connect(url: &str) -> Result<PgPool, sqlx::Error> {
        let options = PgConnectOptions::from_str(url)?.application_name("tessera");
        PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
    }
}

/// The migrations of one backend.
pub fn migrator(backend: super::BackendKind) -> &'static Migrator {
    match backend {
        super::BackendKind::Sqlite => &sqlite::MIGRATOR,
        super::BackendKind::Postgres => &postgres::MIGRATOR,
    }
}
