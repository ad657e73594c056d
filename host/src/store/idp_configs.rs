//! The `idp_configs` table: how an app's end users are identified — the issuer of their
//! JWTs, where its keys are, the accepted audiences and algorithms, the groups claim and
//! the clock leeway. One row per app. Holds nothing secret.
//!
//! Must never: return another app's configuration (every lookup takes the app id).

use super::{AppId, Db, StoreError, Timestamp, on_conn};

const TABLE: &str = "idp_configs";

const COLUMNS: &str = "app_id, issuer, jwks_url, audiences, groups_claim, algorithms, \
                       leeway_secs, created_at, updated_at";

/// One app's identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpConfigRecord {
    /// The app.
    pub app_id: AppId,
    /// The exact `iss` of its users' tokens.
    pub issuer: String,
    /// Where its keys are; `None`: from its discovery document.
    pub jwks_url: Option<String>,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// The claim listing a user's groups.
    pub groups_claim: Option<String>,
    /// Accepted algorithm names (`RS256`, …); empty: every asymmetric one.
    pub algorithms: Vec<String>,
    /// Clock leeway on `exp`/`nbf`, in seconds.
    pub leeway_secs: u64,
    /// When it was first stored.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
}

type Row = (
    String,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    i64,
    i64,
    i64,
);

fn from_row(row: Row) -> Result<IdpConfigRecord, StoreError> {
    let (app_id, issuer, jwks_url, audiences, groups_claim, algorithms, leeway, created, updated) =
        row;
    let corrupt = |detail: String| StoreError::Corrupt {
        table: TABLE,
        detail,
    };
    Ok(IdpConfigRecord {
        app_id: AppId::from_column(TABLE, &app_id)?,
        issuer,
        jwks_url,
        audiences: serde_json::from_str(&audiences)
            .map_err(|_| corrupt(format!("app {app_id} has malformed audiences")))?,
        groups_claim,
        algorithms: serde_json::from_str(&algorithms)
            .map_err(|_| corrupt(format!("app {app_id} has malformed algorithms")))?,
        leeway_secs: u64::try_from(leeway)
            .map_err(|_| corrupt(format!("app {app_id} has leeway {leeway}")))?,
        created_at: Timestamp::from_unix_millis(created),
        updated_at: Timestamp::from_unix_millis(updated),
    })
}

fn json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".to_owned())
}

/// Stores app `c.app_id`'s configuration, replacing any earlier one (its `created_at` is
/// kept). Returns the row as stored.
pub async fn upsert(
    db: impl Into<Db<'_>>,
    c: &IdpConfigRecord,
) -> Result<IdpConfigRecord, StoreError> {
    on_conn!(db, |conn| {
        let row: Row = sqlx::query_as(&format!(
            "INSERT INTO idp_configs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (app_id) DO UPDATE SET issuer = excluded.issuer, \
             jwks_url = excluded.jwks_url, audiences = excluded.audiences, \
             groups_claim = excluded.groups_claim, algorithms = excluded.algorithms, \
             leeway_secs = excluded.leeway_secs, updated_at = excluded.updated_at \
             RETURNING {COLUMNS}"
        ))
        .bind(c.app_id.to_string())
        .bind(&c.issuer)
        .bind(c.jwks_url.as_deref())
        .bind(json(&c.audiences))
        .bind(c.groups_claim.as_deref())
        .bind(json(&c.algorithms))
        .bind(i64::try_from(c.leeway_secs).unwrap_or(i64::MAX))
        .bind(c.created_at.unix_millis())
        .bind(c.updated_at.unix_millis())
        .fetch_one(&mut *conn)
        .await?;
        from_row(row)
    })
}

/// App `app_id`'s configuration, if it has one.
pub async fn get(
    db: impl Into<Db<'_>>,
    app_id: AppId,
) -> Result<Option<IdpConfigRecord>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM idp_configs WHERE app_id = $1"
        ))
        .bind(app_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(from_row).transpose()
    })
}

/// Deletes app `app_id`'s configuration; whether there was one.
pub async fn delete(db: impl Into<Db<'_>>, app_id: AppId) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let done = sqlx::query("DELETE FROM idp_configs WHERE app_id = $1")
            .bind(app_id.to_string())
            .execute(&mut *conn)
            .await?;
        Ok(done.rows_affected() == 1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::apps;
    use crate::store::testing::TestDb;

    crate::store::both_backends! {
        a_configuration_round_trips_is_replaced_and_stays_in_its_app =>
            a_configuration_round_trips_is_replaced_and_stays_in_its_app;
    }

    async fn a_configuration_round_trips_is_replaced_and_stays_in_its_app(
        db: &TestDb,
    ) -> anyhow::Result<()> {
        let s = db.store();
        let now = Timestamp::from_unix_millis(1_700_000_000_000);
        let a = apps::create(s, "a", now).await?.id;
        let b = apps::create(s, "b", now).await?.id;
        let first = IdpConfigRecord {
            app_id: a,
            issuer: "https://idp.example.com".into(),
            jwks_url: None,
            audiences: vec!["tessera".into()],
            groups_claim: Some("groups".into()),
            algorithms: vec!["RS256".into()],
            leeway_secs: 60,
            created_at: now,
            updated_at: now,
        };
        assert_eq!(upsert(s, &first).await?, first);
        assert_eq!(get(s, a).await?, Some(first.clone()));
        assert_eq!(get(s, b).await?, None);
        let later = Timestamp::from_unix_millis(now.unix_millis() + 1_000);
        let second = IdpConfigRecord {
            jwks_url: Some("https://idp.example.com/keys".into()),
            audiences: vec!["tessera".into(), "tessera-2".into()],
            groups_claim: None,
            algorithms: Vec::new(),
            leeway_secs: 0,
            created_at: later,
            updated_at: later,
            ..first.clone()
        };
        let stored = upsert(s, &second).await?;
        assert_eq!(stored.created_at, now, "created_at is kept");
        assert_eq!(stored.updated_at, later);
        assert_eq!(stored.audiences, second.audiences);
        assert!(!delete(s, b).await?);
        assert!(delete(s, a).await?);
        assert_eq!(get(s, a).await?, None);
        Ok(())
    }
}
