//! The `agents` table: operator-provisioned workload identities, each belonging to exactly
//! one app. Names are unique within an app; a duplicate is a [`StoreError::Conflict`].
//! Holds no secret: an agent's API keys live in `api_keys`.
//!
//! A disabled agent (`disabled_at` set) keeps its row and keys; the live-key condition of
//! [`super::api_keys::LIVE_KEY`] refuses its keys while it stays disabled. Every lookup
//! takes the app id, so another app's agent is never found.

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

/// App `app_id`'s agents ordered by name, at most `limit` of them, only those whose name
/// sorts after `after` when given (the paging cursor).
pub async fn list(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<Agent>, StoreError> {
    on_conn!(db, |conn| {
        let rows: Vec<AgentRow> = match after {
            Some(after) => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM agents WHERE app_id = $1 AND name > $2 \
                     ORDER BY name LIMIT $3"
                ))
                .bind(app_id.to_string())
                .bind(after)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT {COLUMNS} FROM agents WHERE app_id = $1 ORDER BY name LIMIT $2"
                ))
                .bind(app_id.to_string())
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
            }
        };
        rows.into_iter().map(Agent::from_row).collect()
    })
}

/// Disables (`disabled`, at `now`) or enables agent `id` of app `app_id`. Returns `true`
/// when this call changed it, `false` when it already was in that state or does not exist
/// in that app. Disabling a disabled agent keeps the first time.
pub async fn set_disabled(
    db: impl Into<Db<'_>>,
    app_id: AppId,
    id: AgentId,
    disabled: bool,
    now: Timestamp,
) -> Result<bool, StoreError> {
    on_conn!(db, |conn| {
        let query = if disabled {
            sqlx::query(
                "UPDATE agents SET disabled_at = $3 \
                 WHERE app_id = $1 AND id = $2 AND disabled_at IS NULL",
            )
            .bind(app_id.to_string())
            .bind(id.to_string())
            .bind(now.unix_millis())
        } else {
            sqlx::query(
                "UPDATE agents SET disabled_at = NULL \
                 WHERE app_id = $1 AND id = $2 AND disabled_at IS NOT NULL",
            )
            .bind(app_id.to_string())
            .bind(id.to_string())
        };
        let done = query.execute(&mut *conn).await?;
        Ok(done.rows_affected() == 1)
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
        listing_is_by_name_per_app_and_pages_after_a_name =>
            listing_is_by_name_per_app_and_pages_after_a_name;
        disabling_is_once_per_state_and_scoped_to_the_app =>
            disabling_is_once_per_state_and_scoped_to_the_app;
        a_disabled_agents_keys_are_not_live => a_disabled_agents_keys_are_not_live;
    }

    const T: Timestamp = Timestamp::from_unix_millis(1_700_000_000_000);

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

    async fn listing_is_by_name_per_app_and_pages_after_a_name(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let a = apps::create(s, "a", T).await?;
        let b = apps::create(s, "b", T).await?;
        for name in ["carol", "alice", "bob"] {
            create(s, a.id, name, T).await?;
        }
        create(s, b.id, "aaron", T).await?;
        let names = |agents: Vec<Agent>| agents.into_iter().map(|a| a.name).collect::<Vec<_>>();
        assert_eq!(
            names(list(s, a.id, None, 10).await?),
            ["alice", "bob", "carol"]
        );
        assert_eq!(names(list(s, a.id, None, 2).await?), ["alice", "bob"]);
        assert_eq!(names(list(s, a.id, Some("bob"), 2).await?), ["carol"]);
        assert!(list(s, a.id, Some("carol"), 2).await?.is_empty());
        // App B sees only its own.
        assert_eq!(names(list(s, b.id, None, 10).await?), ["aaron"]);
        Ok(())
    }

    async fn disabling_is_once_per_state_and_scoped_to_the_app(db: &TestDb) -> anyhow::Result<()> {
        let s = db.store();
        let a = apps::create(s, "a", T).await?;
        let b = apps::create(s, "b", T).await?;
        let bot = create(s, a.id, "bot", T).await?;
        let later = T.plus(std::time::Duration::from_mins(1));
        // Another app cannot disable it.
        assert!(!set_disabled(s, b.id, bot.id, true, T).await?);
        assert_eq!(
            get(s, a.id, bot.id).await?.and_then(|a| a.disabled_at),
            None
        );
        assert!(set_disabled(s, a.id, bot.id, true, T).await?);
        // Disabling again changes nothing and keeps the first time.
        assert!(!set_disabled(s, a.id, bot.id, true, later).await?);
        assert_eq!(
            get(s, a.id, bot.id).await?.and_then(|a| a.disabled_at),
            Some(T)
        );
        assert!(!set_disabled(s, b.id, bot.id, false, later).await?);
        assert!(set_disabled(s, a.id, bot.id, false, later).await?);
        assert!(!set_disabled(s, a.id, bot.id, false, later).await?);
        assert_eq!(get(s, a.id, bot.id).await?, Some(bot));
        // An unknown agent is not an error.
        assert!(!set_disabled(s, a.id, AgentId::new(), true, T).await?);
        Ok(())
    }

    async fn a_disabled_agents_keys_are_not_live(db: &TestDb) -> anyhow::Result<()> {
        use crate::store::{api_keys, nonces};
        use tessera_proto::scopes::Scope;
        use tessera_proto::signing::{KeyId, KeyKind};

        let s = db.store();
        let app = apps::create(s, "a", T).await?;
        let bot = create(s, app.id, "bot", T).await?;
        let other = create(s, app.id, "other", T).await?;
        let mut ids = Vec::new();
        for (n, agent) in [(1_u8, Some(bot.id)), (2, Some(other.id)), (3, None)] {
            let key_id = KeyId::parse(&format!("{n:016x}"))?;
            api_keys::insert(
                s,
                &api_keys::ApiKeyRecord {
                    key_id: key_id.clone(),
                    app_id: app.id,
                    kind: if agent.is_some() {
                        KeyKind::Agent
                    } else {
                        KeyKind::App
                    },
                    agent_id: agent,
                    scopes: vec![Scope::AgentsRead],
                    sealed_signing_key: vec![n],
                    fingerprint: format!("{n:064x}"),
                    created_at: T,
                    last_used_at: None,
                    revoked_at: None,
                },
            )
            .await?;
            ids.push(key_id);
        }
        let live = |k: &KeyId| {
            let k = k.clone();
            async move { Ok::<_, StoreError>(api_keys::get_live(s, &k).await?.is_some()) }
        };
        assert!(live(&ids[0]).await? && live(&ids[1]).await? && live(&ids[2]).await?);
        assert!(set_disabled(s, app.id, bot.id, true, T).await?);
        // Only the disabled agent's key stops being live: not its sibling, not the app key.
        assert!(!live(&ids[0]).await?);
        assert!(live(&ids[1]).await? && live(&ids[2]).await?);
        let n = |key: &KeyId, nonce: &str| nonces::NonceUse {
            key_id: key.as_str().to_owned(),
            nonce: nonce.to_owned(),
            expires_at: T,
        };
        assert_eq!(
            nonces::remember_for_active_key(s, ids[0].as_str(), "n1", T).await?,
            nonces::Remembered::KeyInactive
        );
        assert_eq!(
            nonces::remember_many(s, &[n(&ids[0], "n2"), n(&ids[1], "n2"), n(&ids[2], "n2")])
                .await?,
            [
                nonces::Remembered::KeyInactive,
                nonces::Remembered::Fresh,
                nonces::Remembered::Fresh,
            ]
        );
        // A replay of a nonce seen before the agent was disabled reads as inactive too.
        assert_eq!(
            nonces::remember_many(s, &[n(&ids[1], "n2")]).await?,
            [nonces::Remembered::Replayed]
        );
        assert!(set_disabled(s, app.id, other.id, true, T).await?);
        assert_eq!(
            nonces::remember_many(s, &[n(&ids[1], "n2")]).await?,
            [nonces::Remembered::KeyInactive]
        );
        // Enabled again: live again.
        assert!(set_disabled(s, app.id, bot.id, false, T).await?);
        assert!(live(&ids[0]).await?);
        assert_eq!(
            nonces::remember_for_active_key(s, ids[0].as_str(), "n3", T).await?,
            nonces::Remembered::Fresh
        );
        Ok(())
    }
}
