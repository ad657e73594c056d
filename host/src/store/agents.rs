//! The `agents` table: operator-provisioned workload identities, each belonging to exactly
//! one app. Names are unique within an app; a duplicate is a [`StoreError::Conflict`].
//! Holds no secret: an agent's API keys live in `api_keys`.

use super::{AgentId, AppId, Db, StoreError, Timestamp, on_conn};

/// An agent of an app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Agent {
    /// Its id.
    pub id: AgentId,
    /// The app it belongs to.
    pub app_id: AppId,
    /// Its name, unique within the app.
    pub name: String,
    /// When it was created.
    pub created_at: Timestamp,
    /// When it was disabled, if it was.
    pub disabled_at: Option<Timestamp>,
}

type AgentRow = (String, String, String, i64, Option<i64>);

const COLUMNS: &str = "id, app_id, name, created_at, disabled_at";

impl Agent {
    fn from_row((id, app_id, name, created_at, disabled_at): AgentRow) -> Result<Self, StoreError> {
        Ok(Agent {
            id: AgentId::from_column("agents", &id)?,
            app_id: AppId::from_column("agents", &app_id)?,
            name,
            created_at: Timestamp::from_unix_millis(created_at),
            disabled_at: disabled_at.map(Timestamp::from_unix_millis),
        })
    }
}

/// Creates agent `name` in app `app_id`. Validating the name is the caller's job.
pub async fn create(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    name: &str,
    now: Timestamp,
) -> Result<Agent, StoreError> {
    let agent = Agent {
        id: AgentId::new(),
        app_id,
        name: name.to_owned(),
        created_at: now,
        disabled_at: None,
    };
    on_conn!(db, |conn| {
        sqlx::query("INSERT INTO agents (id, app_id, name, created_at) VALUES ($1, $2, $3, $4)")
            .bind(agent.id.to_string())
            .bind(agent.app_id.to_string())
            .bind(&agent.name)
            .bind(agent.created_at.unix_millis())
            .execute(&mut *conn)
            .await
            .map_err(StoreError::conflict_on_unique(|| format!("agent {name:?}")))?;
        Ok::<(), StoreError>(())
    })?;
    Ok(agent)
}

/// The agent named `name` in app `app_id`, if any. Another app's agent of the same name is
/// never returned.
pub async fn get_by_name(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    name: &str,
) -> Result<Option<Agent>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<AgentRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM agents WHERE app_id = $1 AND name = $2"
        ))
        .bind(app_id.to_string())
        .bind(name)
        .fetch_optional(&mut *conn)
        .await?;
        row.map(Agent::from_row).transpose()
    })
}

/// The agent with this id in app `app_id`, if any.
pub async fn get(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: AgentId,
) -> Result<Option<Agent>, StoreError> {
    on_conn!(db, |conn| {
        let row: Option<AgentRow> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM agents WHERE app_id = $1 AND id = $2"
        ))
        .bind(app_id.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
        row.map(Agent::from_row).transpose()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::apps;
    use crate::store::both_backends;
    use crate::store::testing::TestDb;

    both_backends! {
        agent_names_are_unique_per_app_only => agent_names_are_unique_per_app_only;
    }

    async fn agent_names_are_unique_per_app_only(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let a = apps::create(s, "a", Timestamp::now()).await?;
        let b = apps::create(s, "b", Timestamp::now()).await?;
        let bot = create(s, a.id, "bot", Timestamp::now()).await?;
        let err = create(s, a.id, "bot", Timestamp::now()).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
        let other = create(s, b.id, "bot", Timestamp::now()).await?;
        assert_eq!(get_by_name(s, a.id, "bot").await?, Some(bot.clone()));
        assert_eq!(get_by_name(s, b.id, "bot").await?, Some(other));
        assert_eq!(get(s, a.id, bot.id).await?, Some(bot.clone()));
        // App B cannot see app A's agent by id.
        assert_eq!(get(s, b.id, bot.id).await?, None);
        Ok(())
    }
}
