//! The `apps` table: registered applications. Names are unique; a duplicate is a
//! [`StoreError::Conflict`], which the API reports as 409, never as an internal error.

use super::{AppId, Db, StoreError, Timestamp, on_conn};

/// A registered application.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    /// Its id.
    pub id: AppId,
    /// Its unique, operator-chosen name.
    pub name: String,
    /// When it was registered.
    pub created_at: Timestamp,
}

type AppRow = (String, String, i64);

impl App {
    fn from_row((id, name, created_at): AppRow) -> Result<Self, StoreError> {
        Ok(App {
            id: AppId::from_column("apps", &id)?,
            name,
            created_at: Timestamp::from_unix_millis(created_at),
        })
    }
}

/// Registers an app named `name`. Validating the name is the caller's job; uniqueness is
/// enforced here, atomically across host instances.
pub async fn create(db: impl Into<Db<'_>>, name: &str, now: Timestamp) -> Result<App, StoreError> {
    let app = App {
        id: AppId::new(),
        name: name.to_owned(),
        created_at: now,
    };
    on_conn!(db, |conn| {
        sqlx::query("INSERT INTO apps (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(app.id.to_string())
            .bind(&app.name)
            .bind(app.created_at.unix_millis())
            .execute(&mut *conn)
            .await
            .map_err(StoreError::conflict_on_unique(|| format!("app {name:?}")))?;
        Ok::<(), StoreError>(())
    })?;
    Ok(app)
}

/// The app with this id, if any.
pub async fn get(db: impl Into<Db<'_>>, id: AppId) -> Result<Option<App>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<AppRow> =
            sqlx::query_as("SELECT id, name, created_at FROM apps WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&mut *conn)
                .await?;
        row.map(App::from_row).transpose()
    })
}

/// The app named `name`, if any.
pub async fn get_by_name(db: impl Into<Db<'_>>, name: &str) -> Result<Option<App>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<AppRow> =
            sqlx::query_as("SELECT id, name, created_at FROM apps WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await?;
        row.map(App::from_row).transpose()
    })
}

/// Every app, by name.
pub async fn list(db: impl Into<Db<'_>>) -> Result<Vec<App>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<AppRow> =
            sqlx::query_as("SELECT id, name, created_at FROM apps ORDER BY name")
                .fetch_all(&mut *conn)
                .await?;
        rows.into_iter().map(App::from_row).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::both_backends;
    use crate::store::testing::TestDb;

    both_backends! {
        created_app_is_found_by_name_and_id => created_app_is_found_by_name_and_id;
        duplicate_app_name_is_a_conflict => duplicate_app_name_is_a_conflict;
        list_is_sorted_by_name => list_is_sorted_by_name;
        app_created_in_a_rolled_back_transaction_does_not_exist =>
            app_created_in_a_rolled_back_transaction_does_not_exist;
        app_created_in_a_committed_transaction_exists => app_created_in_a_committed_transaction_exists;
    }

    async fn created_app_is_found_by_name_and_id(db: &TestDb) -> anyhow::Result<()> {
        let now = Timestamp::from_unix_millis(1_700_000_000_123);
        let app = create(db.store(), "billing", now).await?;
        assert_eq!(app.name, "billing");
        assert_eq!(app.created_at, now);
        assert_eq!(get_by_name(db.store(), "billing").await?, Some(app.clone()));
        assert_eq!(get(db.store(), app.id).await?, Some(app));
        assert_eq!(get_by_name(db.store(), "Billing").await?, None);
        assert_eq!(get(db.store(), AppId::new()).await?, None);
        Ok(())
    }

    async fn duplicate_app_name_is_a_conflict(db: &TestDb) -> anyhow::Result<()> {
        let first = create(db.store(), "billing", Timestamp::now()).await?;
        let err = create(db.store(), "billing", Timestamp::now())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict { what } if what == "app \"billing\""),
            "{err:?}"
        );
        assert_eq!(err.to_string(), "app \"billing\" already exists");
        assert_eq!(list(db.store()).await?, vec![first]);
        Ok(())
    }

    async fn list_is_sorted_by_name(db: &TestDb) -> anyhow::Result<()> {
        for name in ["zeta", "alpha", "mid"] {
            create(db.store(), name, Timestamp::now()).await?;
        }
        let names: Vec<String> = list(db.store())
            .await?
            .into_iter()
            .map(|a| a.name)
            .collect();
        assert_eq!(names, ["alpha", "mid", "zeta"]);
        Ok(())
    }

    async fn app_created_in_a_rolled_back_transaction_does_not_exist(
        db: &TestDb,
    ) -> anyhow::Result<()> {
        let mut tx = db.store().begin().await?;
        create(&mut tx, "ghost", Timestamp::now()).await?;
        assert!(get_by_name(&mut tx, "ghost").await?.is_some());
        tx.rollback().await?;
        assert_eq!(get_by_name(db.store(), "ghost").await?, None);

        // Dropping without commit rolls back too.
        let mut tx = db.store().begin().await?;
        create(&mut tx, "ghost", Timestamp::now()).await?;
        drop(tx);
        assert_eq!(get_by_name(db.store(), "ghost").await?, None);
        Ok(())
    }

    async fn app_created_in_a_committed_transaction_exists(db: &TestDb) -> anyhow::Result<()> {
        let mut tx = db.store().begin().await?;
        let app = create(&mut tx, "real", Timestamp::now()).await?;
        tx.commit().await?;
        assert_eq!(get_by_name(db.store(), "real").await?, Some(app));
        Ok(())
    }
}
