//! The store's error type. Messages never contain bound values (which may be sealed secret
//! bytes) or a database password.

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was violated: the thing already exists. An API maps this to 409.
    #[error("{what} already exists")]
    Conflict {
        /// What already exists, for the user (e.g. `app "billing"`).
        what: String,
    },
    /// `TESSERA_DATABASE_URL` names neither PostgreSQL nor an SQLite file.
    #[error(
        "unsupported database URL {url}: expected postgres://…, postgresql://… or sqlite://PATH"
    )]
    UnsupportedUrl {
        /// The URL, password redacted.
        url: String,
    },
    /// The data directory for the SQLite file cannot be created.
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The database cannot be opened or reached.
    #[error("cannot open the database ({target}): {source}")]
    Open {
        /// Which database, password redacted.
        target: String,
        /// The cause.
        source: sqlx::Error,
    },
    /// The embedded migrations failed (or the database was migrated by a newer Tessera).
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value does not have the shape this code wrote (e.g. an id that is not a UUID).
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong (never the value of a secret column).
        detail: String,
    },
    /// Any other database error.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A batched statement (see `crate::batch`) failed for every request in its batch.
    #[error("database error in a batch: {0}")]
    Batch(String),
    /// An error on the SQLite request-path writer (`store::writer`).
    #[error("database error: {0}")]
    Writer(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        StoreError::Writer(err.to_string())
    }
}

impl StoreError {
    /// A failure of the SQLite writer thread itself (`store::writer`).
    pub(crate) fn writer(reason: impl Into<String>) -> Self {
        StoreError::Writer(reason.into())
    }

    /// Maps a unique-constraint violation to [`StoreError::Conflict`] naming `what`; other
    /// errors convert as usual. Both drivers classify the violation, so no dialect is needed.
    pub(crate) fn conflict_on_unique(
        what: impl FnOnce() -> String,
    ) -> impl FnOnce(sqlx::Error) -> Self {
        move |err| match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict { what: what() }
            }
            _ => StoreError::Database(err),
        }
    }
}
