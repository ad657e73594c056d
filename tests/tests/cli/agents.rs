//! Agents end to end: `tessera agent create|list|show|disable|enable` and the agents API
//! through the Rust SDK against a real `tessera serve`; what an agent key may see and do;
//! app isolation; a disabled agent's key refused at once although the host has it cached;
//! and an agent's own audit trail.

use serde_json::Value;
use tessera_sdk::{App, Error, Method};

use super::serve::{Host, start_with};
use super::*;

/// Every Tessera scope, comma-separated.
fn all_scopes() -> String {
    tessera_proto::scopes::Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// `tessera key create --app APP [--agent AGENT] --scopes SCOPES --json`: the key string.
fn key(
    dir: &Path,
    env: &[(&str, &str)],
    app: &str,
    agent: Option<&str>,
    scopes: &str,
) -> Result<String> {
    let mut args = vec!["key", "create", "--app", app, "--scopes", scopes, "--json"];
    if let Some(agent) = agent {
        args.extend(["--agent", agent]);
    }
    let created = json_of(&tessera_env(dir, env, &args)?)?;
    Ok(created["key"].as_str().context("key")?.to_owned())
}

/// `tessera agent ARGS… --json` for app billing.
fn agent_cli(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Result<Value> {
    let mut all = vec!["agent"];
    all.extend_from_slice(args);
    all.extend(["--app", "billing", "--json"]);
    json_of(&tessera_env(dir, env, &all)?)
}

/// The problem code of a failed SDK call.
pub(super) fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> Result<String> {
    match r {
        Err(e) => e.code().map(str::to_owned).context("no problem code"),
        Ok(v) => bail!("expected a refusal, got {v:?}"),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// Billing (app key `a`, agent `mail-bot` with key `bot`, all scopes) and app `other`
/// (app key `b`), and a host serving them.
struct Rig {
    host: Host,
    a: App,
    bot: App,
    b: App,
    bot_id: String,
}

fn rig(dir: &Path, env: &[(&str, &str)]) -> Result<Rig> {
    init_with_app(dir, env)?;
    json_of(&tessera_env(
        dir,
        env,
        &["app", "create", "other", "--json"],
    )?)?;
    let bot = agent_cli(dir, env, &["create", "mail-bot"])?;
    let bot_id = bot["id"].as_str().context("agent id")?.to_owned();
    let scopes = all_scopes();
    let key_a = key(dir, env, "billing", None, &scopes)?;
    let key_bot = key(dir, env, "billing", Some("mail-bot"), &scopes)?;
    let key_b = key(dir, env, "other", None, &scopes)?;
    let host = start_with(dir, None, env)?;
    let url = format!("http://{}", host.addr);
    Ok(Rig {
        a: App::new(&key_a, &url)?,
        bot: App::new(&key_bot, &url)?.caller("mail-bot-worker"),
        b: App::new(&key_b, &url)?,
        bot_id,
        host,
    })
}

/// The operator's CLI session: create, list, show, disable, enable; names checked; an
/// agent made implicitly by `key create --agent` listed like the others; no key for a
/// disabled agent; every change in the audit log.
#[test]
#[allow(clippy::too_many_lines)] // one CLI session, step by step
fn agent_commands_create_list_show_disable_and_enable() -> Result<()> {
    on_both_backends(|dir, env| {
        init_with_app(dir, env)?;
        let created = agent_cli(dir, env, &["create", "mail-bot"])?;
        ensure!(
            created["name"] == "mail-bot"
                && created["id"].as_str().is_some_and(|id| id.len() == 36)
                && created["created_at"].is_string()
                && created.get("disabled_at").is_none(),
            "{created}"
        );
        let human = tessera_env(dir, env, &["agent", "create", "sync", "--app", "billing"])?;
        ensure!(
            human.status.success() && stdout(&human).contains("created agent \"sync\""),
            "{}{}",
            stdout(&human),
            stderr(&human)
        );
        let duplicate = tessera_env(
            dir,
            env,
            &["agent", "create", "mail-bot", "--app", "billing"],
        )?;
        ensure!(
            !duplicate.status.success() && stderr(&duplicate).contains("already has an agent"),
            "{}",
            stderr(&duplicate)
        );
        let bad = tessera_env(
            dir,
            env,
            &["agent", "create", "has space", "--app", "billing"],
        )?;
        ensure!(
            !bad.status.success() && stderr(&bad).contains("invalid agent name"),
            "{}",
            stderr(&bad)
        );
        let nowhere = tessera_env(dir, env, &["agent", "list", "--app", "ghost"])?;
        ensure!(
            !nowhere.status.success() && stderr(&nowhere).contains("ghost"),
            "{}",
            stderr(&nowhere)
        );
        // `key create --agent` still makes an agent on first use.
        key(dir, env, "billing", Some("implicit"), "grants:read")?;
        let list = agent_cli(dir, env, &["list"])?;
        let names: Vec<&str> = list
            .as_array()
            .context("an array")?
            .iter()
            .filter_map(|a| a["name"].as_str())
            .collect();
        ensure!(names == ["implicit", "mail-bot", "sync"], "{list}");
        let shown = agent_cli(dir, env, &["show", "mail-bot"])?;
        ensure!(shown == created, "{shown} vs {created}");
        let missing = tessera_env(dir, env, &["agent", "show", "nobody", "--app", "billing"])?;
        ensure!(
            !missing.status.success() && stderr(&missing).contains("no agent named \"nobody\""),
            "{}",
            stderr(&missing)
        );

        let off = agent_cli(dir, env, &["disable", "mail-bot"])?;
        ensure!(
            off["changed"] == true && off["disabled_at"].is_string(),
            "{off}"
        );
        let again = agent_cli(dir, env, &["disable", "mail-bot"])?;
        ensure!(
            again["changed"] == false && again["disabled_at"] == off["disabled_at"],
            "{again}"
        );
        let table = tessera_env(dir, env, &["agent", "list", "--app", "billing"])?;
        ensure!(
            stdout(&table)
                .lines()
                .any(|l| l.starts_with("mail-bot") && l.contains("disabled")),
            "{}",
            stdout(&table)
        );
        // No new key for a disabled agent.
        let refused = tessera_env(
            dir,
            env,
            &[
                "key",
                "create",
                "--app",
                "billing",
                "--agent",
                "mail-bot",
                "--scopes",
                "grants:read",
            ],
        )?;
        ensure!(
            !refused.status.success() && stderr(&refused).contains("disabled"),
            "{}",
            stderr(&refused)
        );
        let on = agent_cli(dir, env, &["enable", "mail-bot"])?;
        ensure!(
            on["changed"] == true && on.get("disabled_at").is_none(),
            "{on}"
        );
        key(dir, env, "billing", Some("mail-bot"), "grants:read")?;

        let export = tessera_env(dir, env, &["audit", "export", "--format", "jsonl"])?;
        ensure!(export.status.success(), "{}", stderr(&export));
        let rows: Vec<Value> = stdout(&export)
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let agent_rows: Vec<(String, String)> = rows
            .iter()
            .filter(|r| {
                r["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("agent."))
            })
            .map(|r| {
                (
                    r["action"].as_str().unwrap_or_default().to_owned(),
                    r["detail"]["name"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let want = [
            ("agent.create", "mail-bot"),
            ("agent.create", "sync"),
            ("agent.create", "implicit"),
            ("agent.disable", "mail-bot"),
            ("agent.enable", "mail-bot"),
        ];
        ensure!(
            agent_rows
                .iter()
                .map(|(a, n)| (a.as_str(), n.as_str()))
                .eq(want),
            "{agent_rows:?}"
        );
        ensure!(
            rows.iter()
                .filter(|r| r["action"] == "agent.disable")
                .all(|r| r["actor_kind"] == "operator" && r["detail"]["via"] == "cli"),
            "{rows:?}"
        );
        let verify = tessera_env(dir, env, &["audit", "verify"])?;
        ensure!(verify.status.success(), "{}", stdout(&verify));
        Ok(())
    })
}

/// The API through the SDK: an app key creates, lists, shows, disables and enables its
/// agents; an agent key sees only itself and changes nothing; another app finds nothing.
#[test]
#[allow(clippy::too_many_lines)] // one user story, step by step
fn the_agents_api_for_app_keys_agent_keys_and_other_apps() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(dir, env)?;
        rt.block_on(async {
            let api_bot = rig.a.create_agent("api-bot").await?;
            ensure!(
                api_bot.name == "api-bot" && !api_bot.is_disabled(),
                "{api_bot:?}"
            );
            ensure!(code(rig.a.create_agent("api-bot").await)? == "agent_conflict");
            ensure!(code(rig.a.create_agent("no/slash").await)? == "invalid_request");
            let page = rig.a.agents().await?;
            let names: Vec<&str> = page.items.iter().map(|a| a.name.as_str()).collect();
            ensure!(
                names == ["api-bot", "mail-bot"] && page.next_cursor.is_none(),
                "{page:?}"
            );
            // Paging by name.
            let first = rig.a.agents_page(None, Some(1)).await?;
            ensure!(
                first.items.len() == 1 && first.items[0].name == "api-bot",
                "{first:?}"
            );
            let cursor = first.next_cursor.context("a cursor")?;
            let second = rig.a.agents_page(Some(&cursor), Some(1)).await?;
            ensure!(
                second.items.len() == 1
                    && second.items[0].name == "mail-bot"
                    && second.next_cursor.is_none(),
                "{second:?}"
            );
            ensure!(rig.a.agent(&api_bot.id).await? == api_bot);
            let off = rig.a.disable_agent(&api_bot.id).await?;
            ensure!(off.is_disabled() && rig.a.agent(&api_bot.id).await? == off);
            ensure!(
                rig.a.disable_agent(&api_bot.id).await? == off,
                "disabling twice keeps the first time"
            );
            let on = rig.a.enable_agent(&api_bot.id).await?;
            ensure!(!on.is_disabled(), "{on:?}");
            let missing = "0190aa00-0000-7000-8000-000000000000";
            ensure!(code(rig.a.agent(missing).await)? == "agent_not_found");
            ensure!(code(rig.a.agent("not-a-uuid").await)? == "agent_not_found");
            ensure!(code(rig.a.disable_agent(missing).await)? == "agent_not_found");

            // An agent key, holding every scope: itself only, and no changes.
            let me = rig.bot.agents().await?;
            ensure!(
                me.items.len() == 1 && me.items[0].id == rig.bot_id,
                "{me:?}"
            );
            ensure!(rig.bot.agent(&rig.bot_id).await?.name == "mail-bot");
            ensure!(code(rig.bot.agent(&api_bot.id).await)? == "agent_not_found");
            for r in [
                rig.bot.create_agent("sneaky").await,
                rig.bot.disable_agent(&api_bot.id).await,
                rig.bot.disable_agent(&rig.bot_id).await,
                rig.bot.enable_agent(&rig.bot_id).await,
            ] {
                match r {
                    Err(Error::Api {
                        status: 403,
                        code,
                        detail,
                    }) if code == "app_key_required" => {
                        ensure!(detail.contains("app key"), "{detail}");
                    }
                    other => bail!("an agent key changed agents: {other:?}"),
                }
            }
            ensure!(
                rig.a.agents().await?.items.len() == 2,
                "nothing was created"
            );
            ensure!(!rig.a.agent(&api_bot.id).await?.is_disabled());

            // Another app: A's agents do not exist for it.
            for id in [api_bot.id.as_str(), rig.bot_id.as_str()] {
                ensure!(code(rig.b.agent(id).await)? == "agent_not_found");
                ensure!(code(rig.b.disable_agent(id).await)? == "agent_not_found");
                ensure!(code(rig.b.enable_agent(id).await)? == "agent_not_found");
            }
            ensure!(rig.b.agents().await?.items.is_empty());
            // The same name in another app is another agent.
            let theirs = rig.b.create_agent("api-bot").await?;
            ensure!(theirs.id != api_bot.id);
            ensure!(rig.bot.whoami().await?.agent_id.as_deref() == Some(rig.bot_id.as_str()));

            // A key without the agents scopes (not merely narrowed): 403 naming the scope.
            Ok::<(), anyhow::Error>(())
        })?;
        let narrow = key(dir, env, "billing", None, "grants:read")?;
        let narrow = App::new(&narrow, &format!("http://{}", rig.host.addr))?;
        rt.block_on(async {
            for (r, scope) in [
                (narrow.agents().await.map(|_| ()), "agents:read"),
                (narrow.agent(&rig.bot_id).await.map(|_| ()), "agents:read"),
                (narrow.create_agent("x").await.map(|_| ()), "agents:write"),
                (
                    narrow.disable_agent(&rig.bot_id).await.map(|_| ()),
                    "agents:write",
                ),
                (
                    narrow.enable_agent(&rig.bot_id).await.map(|_| ()),
                    "agents:write",
                ),
            ] {
                match r {
                    Err(Error::InsufficientScope { missing, .. })
                        if missing.len() == 1 && missing[0].as_str() == scope => {}
                    other => bail!("{scope}: {other:?}"),
                }
            }
            ensure!(!rig.a.agent(&rig.bot_id).await?.is_disabled());
            let rows = rig.a.audit().limit(1000).list().await?;
            let api_rows: Vec<&str> = rows
                .items
                .iter()
                .filter(|e| e.detail["via"] == "api" && e.action.starts_with("agent."))
                .map(|e| e.action.as_str())
                .collect();
            ensure!(
                api_rows == ["agent.create", "agent.disable", "agent.enable"],
                "{api_rows:?}"
            );
            let create = rows
                .items
                .iter()
                .find(|e| e.action == "agent.create" && e.detail["via"] == "api")
                .context("the API's agent.create row")?;
            ensure!(
                create.actor_kind == "app_key"
                    && create.actor_id == rig.a.key_id()
                    && create.key_id.as_deref() == Some(rig.a.key_id()),
                "{create:?}"
            );
            Ok::<(), anyhow::Error>(())
        })?;
        drop(rig.host);
        Ok(())
    })
}

/// A disabled agent's key is refused like a revoked one (`401 unknown_key`), on the very
/// next request, although the running host has it cached; enabling the agent makes the
/// same key work again. Disabled once through the CLI while the host runs, once through
/// the API.
#[test]
fn a_disabled_agents_key_is_refused_at_once_and_works_again_when_enabled() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(dir, env)?;
        let refused = |app: &App| {
            rt.block_on(async {
                match app.whoami().await {
                    Err(Error::Unauthorized { code, .. }) if code == "unknown_key" => Ok(()),
                    other => bail!("expected unknown_key, got {other:?}"),
                }
            })
        };
        // The key works, and is now in the host's cache.
        rt.block_on(rig.bot.whoami())?;
        rt.block_on(rig.bot.agents())?;
        let off = agent_cli(dir, env, &["disable", "mail-bot"])?;
        ensure!(off["changed"] == true, "{off}");
        refused(&rig.bot)?;
        // Every route, not only whoami; and the refusal holds (the cache miss reads it too).
        let grants = rt.block_on(rig.bot.grants().list());
        ensure!(
            matches!(&grants, Err(Error::Unauthorized { code, .. }) if code == "unknown_key"),
            "{grants:?}"
        );
        refused(&rig.bot)?;
        // The app's own key is untouched, and sees the agent disabled.
        ensure!(rt.block_on(rig.a.agent(&rig.bot_id))?.is_disabled());
        let on = agent_cli(dir, env, &["enable", "mail-bot"])?;
        ensure!(on["changed"] == true, "{on}");
        rt.block_on(rig.bot.whoami())?;

        // The same through the API.
        rt.block_on(rig.a.disable_agent(&rig.bot_id))?;
        refused(&rig.bot)?;
        rt.block_on(rig.a.enable_agent(&rig.bot_id))?;
        let me = rt.block_on(rig.bot.whoami())?;
        ensure!(
            me.agent_id.as_deref() == Some(rig.bot_id.as_str()),
            "{me:?}"
        );
        drop(rig.host);
        Ok(())
    })
}

/// `GET /v1/audit` with an agent key returns only the rows where that agent acted: not the
/// app key's calls, not another agent's, not the operator's changes to the agent itself.
#[test]
fn an_agent_key_reads_only_its_own_audit_trail() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(dir, env)?;
        let key_other = key(dir, env, "billing", Some("other-bot"), &all_scopes())?;
        let other = App::new(&key_other, &format!("http://{}", rig.host.addr))?;
        let other_id = rt
            .block_on(other.whoami())?
            .agent_id
            .context("an agent key")?;
        rt.block_on(async {
            // Each makes a call that is refused (no such grant): audited as denied, by its
            // own actor.
            let url = "https://api.stripe.com/v1/customers";
            let missing = "0190aa00-0000-7000-8000-000000000000";
            for (app, reason) in [
                (&rig.a, "app key call"),
                (&rig.bot, "mail-bot call"),
                (&other, "other-bot call"),
                (&rig.bot, "mail-bot again"),
            ] {
                let r = app
                    .request(Method::GET, url)
                    .grant_id(missing)
                    .reason(reason)
                    .authorize()
                    .await;
                ensure!(matches!(r, Err(Error::GrantNotFound { .. })), "{r:?}");
            }
            let everything = rig.a.audit().limit(1000).list().await?;
            let reasons = |page: &tessera_sdk::AuditPage| {
                page.items
                    .iter()
                    .filter_map(|e| e.reason.clone())
                    .collect::<Vec<_>>()
            };
            ensure!(
                reasons(&everything)
                    == [
                        "app key call",
                        "mail-bot call",
                        "other-bot call",
                        "mail-bot again"
                    ],
                "{:?}",
                reasons(&everything)
            );
            ensure!(
                everything.items.iter().any(|e| e.action == "agent.create"),
                "the app sees the operator's rows"
            );

            let mine = rig.bot.audit().limit(1000).list().await?;
            ensure!(
                reasons(&mine) == ["mail-bot call", "mail-bot again"],
                "{mine:?}"
            );
            ensure!(
                mine.items.iter().all(|e| e.actor_kind == "agent"
                    && e.actor_id == rig.bot_id
                    && e.caller.as_deref() == Some("mail-bot-worker")),
                "{mine:?}"
            );
            // Its filters still apply within its own rows, and paging stays inside them.
            let one = rig.bot.audit().limit(1).list().await?;
            let after = one.next_after.context("a next page")?;
            let rest = rig.bot.audit().after(after).list().await?;
            ensure!(reasons(&rest) == ["mail-bot again"], "{rest:?}");
            ensure!(
                rig.bot
                    .audit()
                    .action("agent.create")
                    .list()
                    .await?
                    .items
                    .is_empty(),
                "the operator's agent.create is not the agent's own row"
            );
            let theirs = other.audit().limit(1000).list().await?;
            ensure!(
                reasons(&theirs) == ["other-bot call"]
                    && theirs.items.iter().all(|e| e.actor_id == other_id),
                "{theirs:?}"
            );
            Ok::<(), anyhow::Error>(())
        })?;
        drop(rig.host);
        Ok(())
    })
}
