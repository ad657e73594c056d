//! The agent service on both backends: who may see and change which agent, and the audit
//! rows of each change.

use super::*;
use crate::audit::{AuditFilter, list as audit_list};
use crate::store::testing::TestDb;
use crate::store::{apps, both_backends};

both_backends! {
    app_keys_create_list_and_toggle_agents_with_audit_rows =>
        app_keys_create_list_and_toggle_agents_with_audit_rows;
    agent_keys_see_only_themselves_and_change_nothing =>
        agent_keys_see_only_themselves_and_change_nothing;
    another_apps_agent_is_not_found => another_apps_agent_is_not_found;
    listing_pages_by_name => listing_pages_by_name;
}

async fn actions(store: &Store, app_id: AppId) -> anyhow::Result<Vec<String>> {
    let filter = AuditFilter {
        app_id: Some(app_id),
        ..AuditFilter::default()
    };
    Ok(audit_list(store, &filter)
        .await?
        .into_iter()
        .map(|e| e.action)
        .collect())
}

async fn app_keys_create_list_and_toggle_agents_with_audit_rows(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let agents = Agents::new(s.clone());
    let app = apps::create(s, "billing", Timestamp::now()).await?;
    let owner = Owner::app(app.id);
    let bot = agents.create(owner, &Change::cli(), "mail-bot").await?;
    assert_eq!(bot.name, "mail-bot");
    assert!(!bot.is_disabled());
    let err = agents
        .create(owner, &Change::cli(), "mail-bot")
        .await
        .unwrap_err();
    assert_eq!((err.code(), err.status()), ("agent_conflict", 409));
    for bad in ["", "has space", "ünï", &"x".repeat(65)] {
        let err = agents.create(owner, &Change::cli(), bad).await.unwrap_err();
        assert_eq!(
            (err.code(), err.status()),
            ("invalid_request", 400),
            "{bad:?}"
        );
    }
    assert_eq!(agents.get(owner, &bot.id).await?, bot);
    assert_eq!(agents.by_name(app.id, "billing", "mail-bot").await?, bot);
    let err = agents
        .by_name(app.id, "billing", "nobody")
        .await
        .unwrap_err();
    assert_eq!(err.code(), "agent_not_found");

    let off = agents
        .set_disabled(owner, &Change::cli(), &bot.id, true)
        .await?;
    assert!(off.now && off.agent.is_disabled());
    // Again: nothing changes, nothing is recorded, the first time stays.
    let again = agents
        .set_disabled(owner, &Change::cli(), &bot.id, true)
        .await?;
    assert!(!again.now);
    assert_eq!(again.agent, off.agent);
    let on = agents
        .set_disabled(owner, &Change::cli(), &bot.id, false)
        .await?;
    assert!(on.now && !on.agent.is_disabled());
    assert!(
        !agents
            .set_disabled(owner, &Change::cli(), &bot.id, false)
            .await?
            .now
    );
    assert_eq!(agents.list(owner, None, None).await?.items, vec![on.agent]);
    assert_eq!(
        actions(s, app.id).await?,
        ["agent.create", "agent.disable", "agent.enable"]
    );
    let rows = audit_list(
        s,
        &AuditFilter {
            app_id: Some(app.id),
            action: Some("agent.disable".into()),
            ..AuditFilter::default()
        },
    )
    .await?;
    let row = rows.first().expect("a disable row");
    assert_eq!(row.actor_kind, "operator");
    assert_eq!(row.detail["via"], "cli");
    assert_eq!(row.detail["agent_id"], bot.id.as_str());
    assert_eq!(row.detail["name"], "mail-bot");
    Ok(())
}

async fn agent_keys_see_only_themselves_and_change_nothing(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let agents = Agents::new(s.clone());
    let app = apps::create(s, "billing", Timestamp::now()).await?;
    let admin = Owner::app(app.id);
    let one = agents.create(admin, &Change::cli(), "one").await?;
    let two = agents.create(admin, &Change::cli(), "two").await?;
    let as_one = Owner {
        app_id: app.id,
        agent_id: Some(one.id.parse()?),
    };
    assert_eq!(
        agents.list(as_one, None, None).await?.items,
        vec![one.clone()]
    );
    assert!(
        agents
            .list(as_one, Some("one"), None)
            .await?
            .items
            .is_empty()
    );
    assert_eq!(agents.get(as_one, &one.id).await?, one);
    let err = agents.get(as_one, &two.id).await.unwrap_err();
    assert_eq!((err.code(), err.status()), ("agent_not_found", 404));
    for r in [
        agents
            .create(as_one, &Change::cli(), "three")
            .await
            .map(|_| ()),
        agents
            .set_disabled(as_one, &Change::cli(), &two.id, true)
            .await
            .map(|_| ()),
        agents
            .set_disabled(as_one, &Change::cli(), &one.id, true)
            .await
            .map(|_| ()),
    ] {
        let err = r.unwrap_err();
        assert_eq!((err.code(), err.status()), ("app_key_required", 403));
    }
    assert_eq!(agents.list(admin, None, None).await?.items, vec![one, two]);
    Ok(())
}

async fn another_apps_agent_is_not_found(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let agents = Agents::new(s.clone());
    let a = apps::create(s, "a", Timestamp::now()).await?;
    let b = apps::create(s, "b", Timestamp::now()).await?;
    let bot = agents
        .create(Owner::app(a.id), &Change::cli(), "bot")
        .await?;
    let as_b = Owner::app(b.id);
    for id in [
        bot.id.as_str(),
        "0190aa00-0000-7000-8000-000000000000",
        "not-a-uuid",
    ] {
        let err = agents.get(as_b, id).await.unwrap_err();
        assert_eq!(err.code(), "agent_not_found", "{id}");
        for disabled in [true, false] {
            let err = agents
                .set_disabled(as_b, &Change::cli(), id, disabled)
                .await
                .unwrap_err();
            assert_eq!(err.code(), "agent_not_found", "{id}");
        }
    }
    assert!(agents.list(as_b, None, None).await?.items.is_empty());
    assert!(!agents.get(Owner::app(a.id), &bot.id).await?.is_disabled());
    // B's refused attempts left no row in either app.
    assert!(actions(s, b.id).await?.is_empty());
    assert_eq!(actions(s, a.id).await?, ["agent.create"]);
    Ok(())
}

async fn listing_pages_by_name(db: &TestDb) -> anyhow::Result<()> {
    let s = db.store();
    let agents = Agents::new(s.clone());
    let app = apps::create(s, "a", Timestamp::now()).await?;
    let owner = Owner::app(app.id);
    for name in ["e", "d", "c", "b", "a"] {
        agents.create(owner, &Change::cli(), name).await?;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = agents.list(owner, cursor.as_deref(), Some(2)).await?;
        seen.push(
            page.items
                .iter()
                .map(|a| a.name.clone())
                .collect::<Vec<_>>(),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, [vec!["a", "b"], vec!["c", "d"], vec!["e"]]);
    assert_eq!(agents.all(app.id).await?.len(), 5);
    let err = agents
        .list(owner, Some("bad cursor"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_request");
    Ok(())
}
