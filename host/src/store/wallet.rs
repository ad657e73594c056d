//! The `wallet_logins` and `wallet_sessions` tables: sign-ins under way and signed-in
//! browsers. Both are keyed by the SHA-256 of a random value that only the browser holds
//! (the OAuth `state`, the session cookie), so a database dump cannot finish a sign-in or
//! ride a session. A login is claimed once (delete … returning), a session is ended by
//! deleting its row.

use super::{Db, StoreError, Timestamp, on_conn};

/// The associated-data kind a login's PKCE verifier is sealed with.
pub const SEALED_KIND: &str = "wallet-login";

/// One sign-in under way.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LoginRow {
    /// SHA-256 (hex) of the `state`.
    pub state_hash: String,
    /// The sealed PKCE verifier.
    pub verifier: Vec<u8>,
    /// The OpenID Connect `nonce` the ID token must carry.
    pub nonce: String,
    /// Where in the wallet the browser goes afterwards.
    pub return_to: String,
    /// When it started.
    pub created_at: i64,
    /// When it stops being accepted.
    pub expires_at: i64,
}

impl std::fmt::Debug for LoginRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRow")
            .field("return_to", &self.return_to)
            .finish_non_exhaustive()
    }
}

/// One signed-in browser.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    /// SHA-256 (hex) of the cookie's value.
    pub id_hash: String,
    /// The user's identity provider.
    pub issuer: String,
    /// The user at it.
    pub subject: String,
    /// The user's email, when the ID token had one.
    pub email: Option<String>,
    /// The user's name, when the ID token had one.
    pub name: Option<String>,
    /// When the user signed in.
    pub created_at: i64,
    /// When the session ends.
    pub expires_at: i64,
}

/// Stores a sign-in under way.
pub async fn insert_login(db: impl Into<Db<'_>>, l: &LoginRow) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "INSERT INTO wallet_logins (state_hash, verifier, nonce, return_to, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&l.state_hash)
        .bind(&l.verifier)
        .bind(&l.nonce)
        .bind(&l.return_to)
        .bind(l.created_at)
        .bind(l.expires_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

/// Takes the sign-in whose state hashes to `state_hash`, if it is still open at `now`: the
/// row is deleted, so a state is accepted once however many callbacks race.
pub async fn claim_login(
    db: impl Into<Db<'_>>,
    state_hash: &str,
    now: Timestamp,
) -> Result<Option<LoginRow>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<LoginRow> = sqlx::query_as(
            "DELETE FROM wallet_logins WHERE state_hash = $1 \
             RETURNING state_hash, verifier, nonce, return_to, created_at, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(&mut *conn)
        .await?;
        Ok(row.filter(|l| l.expires_at > now.unix_millis()))
    })
}

/// Stores a session.
pub async fn insert_session(db: impl Into<Db<'_>>, s: &SessionRow) -> Result<(), StoreError> {
    on_conn!(db, |conn| {
        sqlx::query(
            "INSERT INTO wallet_sessions (id_hash, issuer, subject, email, name, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.id_hash)
        .bind(&s.issuer)
        .bind(&s.subject)
        .bind(&s.email)
        .bind(&s.name)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&mut *conn)
        .await?;
        Ok(())
    })
}

/// The session whose cookie hashes to `id_hash`, if it has not ended at `now`.
pub async fn session(
    db: impl Into<Db<'_>>,
    id_hash: &str,
    now: Timestamp,
) -> Result<Option<SessionRow>, StoreError> {
    on_conn!(db, |conn| {
        Ok(sqlx::query_as::<_, SessionRow>(
            "SELECT id_hash, issuer, subject, email, name, created_at, expires_at \
             FROM wallet_sessions WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now.unix_millis())
        .fetch_optional(&mut *conn)
        .await?)
    })
}

/// Ends a session; returns whether it existed.
pub async fn end_session(db: impl Into<Db<'_>>, id_hash: &str) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query("DELETE FROM wallet_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

/// Deletes sessions and sign-ins that ended before `now`; returns how many.
pub async fn purge(db: impl Into<Db<'_>>, now: Timestamp) -> Result<u64, StoreError> {
    on_conn!(db, |conn| {
        let a = sqlx::query("DELETE FROM wallet_sessions WHERE expires_at <= $1")
            .bind(now.unix_millis())
            .execute(&mut *conn)
            .await?;
        let b = sqlx::query("DELETE FROM wallet_logins WHERE expires_at <= $1")
            .bind(now.unix_millis())
            .execute(&mut *conn)
            .await?;
        Ok(a.rows_affected() + b.rows_affected())
    })
}

/// A table whose rows the wallet finds by id alone (the user does not name the app).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `grants`.
    Grant,
    /// `delegations`.
    Delegation,
    /// `approvals`.
    Approval,
}

/// The app of row `id` in `kind`'s table, if there is such a row. The caller still checks
/// that the row is the user's.
pub async fn app_of(
    db: impl Into<Db<'_>>,
    kind: Kind,
    id: &str,
) -> Result<Option<super::AppId>, StoreError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    // Table names come from this fixed list, never from input.
    let table = match kind {
        Kind::Grant => "grants",
        Kind::Delegation => "delegations",
        Kind::Approval => "approvals",
    };
    on_conn!(db, |conn| {
        let app: Option<String> =
            sqlx::query_scalar(&format!("SELECT app_id FROM {table} WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *conn)
                .await?;
        app.map(|a| super::AppId::from_column(table, &a))
            .transpose()
    })
}
