//! Agents and delegations end to end, against a real `tessera serve` and the Stripe stand-in
//! of `calls`: an isolation matrix (each agent reaches exactly the grants it owns or holds a
//! delegation of, in its own app), delegations made by the operator through the API and the
//! CLI, ended by the operator, by the agent itself, by their TTL and by revoking the grant —
//! each time the grant itself untouched unless it was the one revoked; and an app key acting
//! as one of its agents.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use tessera_proto::grants::Principal;
use tessera_proto::scopes::Scope;
use tessera_sdk::{App, Error, Method};

use super::calls::{KEY_1, Stripe, create_key, runtime, start_stripe, stripe_secret};
use super::serve::{Host, start_with};
use super::*;

const STRIPE_URL: &str = "https://api.stripe.com/v1/customers";

/// `tessera key create --app APP --agent AGENT --scopes (all) --json`: the key string.
pub(super) fn agent_key(
    dir: &Path,
    env: &[(&str, &str)],
    app: &str,
    agent: &str,
) -> Result<String> {
    let all = Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let created = json_of(&tessera_env(
        dir,
        env,
        &[
            "key", "create", "--app", app, "--agent", agent, "--scopes", &all, "--json",
        ],
    )?)?;
    Ok(created["key"].as_str().context("key")?.to_owned())
}

/// The agent id `tessera agent create NAME --app APP --json` answers.
fn create_agent(dir: &Path, env: &[(&str, &str)], app: &str, name: &str) -> Result<String> {
    let agent = json_of(&tessera_env(
        dir,
        env,
        &["agent", "create", name, "--app", app, "--json"],
    )?)?;
    Ok(agent["id"].as_str().context("agent id")?.to_owned())
}

/// The problem code of a failed SDK call.
fn code<T: std::fmt::Debug>(r: Result<T, Error>) -> Result<String> {
    match r {
        Err(e) => e.code().map(str::to_owned).context("no problem code"),
        Ok(v) => bail!("expected a refusal, got {v:?}"),
    }
}

fn user(subject: &str) -> Principal {
    Principal::User {
        issuer: "https://idp.example.com".into(),
        subject: subject.into(),
    }
}

/// Two apps on one host: billing (app key `a`; agents mail-bot `a1` and cal-bot `a2`) and
/// other (app key `b`; agent other-bot `b1`).
struct Rig {
    _host: Host,
    _stripe: Stripe,
    a: App,
    a1: App,
    a2: App,
    b: App,
    b1: App,
    a1_id: String,
    a2_id: String,
    b1_id: String,
}

fn rig(rt: &tokio::runtime::Runtime, dir: &Path, env: &[(&str, &str)]) -> Result<Rig> {
    init_with_app(dir, env)?;
    json_of(&tessera_env(
        dir,
        env,
        &["app", "create", "other", "--json"],
    )?)?;
    let a1_id = create_agent(dir, env, "billing", "mail-bot")?;
    let a2_id = create_agent(dir, env, "billing", "cal-bot")?;
    let b1_id = create_agent(dir, env, "other", "other-bot")?;
    let keys = [
        create_key(dir, env, "billing")?,
        agent_key(dir, env, "billing", "mail-bot")?,
        agent_key(dir, env, "billing", "cal-bot")?,
        create_key(dir, env, "other")?,
        agent_key(dir, env, "other", "other-bot")?,
    ];
    let stripe = Stripe::default();
    stripe
        .valid
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .push(KEY_1.into());
    let origin = rt.block_on(start_stripe(stripe.clone()))?;
    let overrides = format!("api.stripe.com={origin}");
    let mut envs = env.to_vec();
    envs.push(("TESSERA_EGRESS_OVERRIDES", &overrides));
    let host = start_with(dir, None, &envs)?;
    let url = format!("http://{}", host.addr);
    let app = |k: &str| App::new(k, &url);
    Ok(Rig {
        a: app(&keys[0])?,
        a1: app(&keys[1])?,
        a2: app(&keys[2])?,
        b: app(&keys[3])?,
        b1: app(&keys[4])?,
        _host: host,
        _stripe: stripe,
        a1_id,
        a2_id,
        b1_id,
    })
}

/// Stores a Stripe secret of `app` for `principal`; returns the grant id.
async fn grant(app: &App, principal: Principal) -> Result<String> {
    let mut request = stripe_secret(KEY_1);
    request.principal = Some(principal);
    Ok(app.set_managed_secret(&request).await?.grant.id)
}

/// Whether `app` may use grant `id` in a call: `Ok(true)` when retrieve works,
/// `Ok(false)` when it is refused as `grant_not_found`, an error for anything else.
async fn reaches(app: &App, id: &str) -> Result<bool> {
    match app
        .request(Method::GET, STRIPE_URL)
        .grant_id(id)
        .reason("matrix")
        .authorize()
        .await
    {
        Ok(_) => Ok(true),
        Err(Error::GrantNotFound { .. }) => Ok(false),
        Err(e) => bail!("grant {id}: {e}"),
    }
}

/// The ids of the grants `app` lists.
async fn listed(app: &App) -> Result<BTreeSet<String>> {
    let page = app.grants().limit(500).list().await?;
    Ok(page.items.into_iter().map(|g| g.id).collect())
}

/// Every agent reaches — by id in a call, in its grant listing and by `GET /v1/grants/{id}` —
/// exactly the grants it owns or holds a live delegation of: nothing of the other agent,
/// of users who did not delegate to it, of the app itself, or of the other app.
#[test]
#[allow(clippy::too_many_lines)] // one matrix
fn each_agent_reaches_exactly_its_own_and_delegated_grants() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        rt.block_on(async {
            let g_sys = grant(&rig.a, Principal::System).await?;
            let g_u1 = grant(&rig.a, user("u1")).await?;
            let g_u2 = grant(&rig.a, user("u2")).await?;
            let g_fin = grant(&rig.a, Principal::Group("finance".into())).await?;
            let own_a1 = grant(&rig.a, Principal::Agent(rig.a1_id.clone())).await?;
            let own_a2 = grant(&rig.a, Principal::Agent(rig.a2_id.clone())).await?;
            let h_sys = grant(&rig.b, Principal::System).await?;
            let h_b1 = grant(&rig.b, Principal::Agent(rig.b1_id.clone())).await?;

            // The operator maps grants to agents: by agent id, by name, with a TTL.
            let d_u1 = rig.a.delegate(&g_u1, &rig.a1_id, None).await?;
            ensure!(
                d_u1.origin == "operator" && d_u1.status == "active" && d_u1.expires_at.is_none(),
                "{d_u1:?}"
            );
            rig.a.delegate(&g_u2, "cal-bot", None).await?;
            let d_fin = rig
                .a
                .delegate(&g_fin, "mail-bot", Some(Duration::from_hours(1)))
                .await?;
            ensure!(d_fin.expires_at.is_some(), "{d_fin:?}");
            rig.b.delegate(&h_sys, &rig.b1_id, None).await?;

            let all = [
                &g_sys, &g_u1, &g_u2, &g_fin, &own_a1, &own_a2, &h_sys, &h_b1,
            ];
            let expect: [(&str, &App, Vec<&String>); 3] = [
                ("mail-bot", &rig.a1, vec![&g_u1, &g_fin, &own_a1]),
                ("cal-bot", &rig.a2, vec![&g_u2, &own_a2]),
                ("other-bot", &rig.b1, vec![&h_sys, &h_b1]),
            ];
            for (name, agent, mine) in &expect {
                for id in all {
                    let want = mine.contains(&id);
                    ensure!(
                        reaches(agent, id).await? == want,
                        "{name} and grant {id}: expected reach = {want}"
                    );
                    ensure!(
                        agent.grant(id).await.is_ok() == want,
                        "{name} reads grant {id}: expected {want}"
                    );
                }
                let want: BTreeSet<String> = mine.iter().map(|s| (*s).clone()).collect();
                ensure!(listed(agent).await? == want, "{name} lists its grants");
            }
            // The app keys still reach every grant of their own app, and nothing else.
            for id in [&g_sys, &g_u1, &g_u2, &g_fin, &own_a1, &own_a2] {
                ensure!(reaches(&rig.a, id).await? && !reaches(&rig.b, id).await?);
            }
            // The app key acting as mail-bot reaches exactly what mail-bot reaches, and the
            // call is audited as the agent's, naming the app key that acted.
            let acting = rig.a.as_agent(&rig.a1_id);
            for id in all {
                let want = [&g_u1, &g_fin, &own_a1].contains(&id);
                ensure!(
                    reaches(&acting, id).await? == want,
                    "acting as mail-bot: {id}"
                );
            }
            let whoami = rig.a.whoami().await?;
            let rows = rig
                .a
                .audit()
                .grant_id(&own_a1)
                .limit(500)
                .list()
                .await?
                .items;
            let row = rows
                .iter()
                .rev()
                .find(|r| r.action == "tokens.retrieve")
                .context("the impersonated call's row")?;
            ensure!(
                row.actor_kind == "agent"
                    && row.actor_id == rig.a1_id
                    && row.key_id.as_deref() == Some(whoami.key_id.as_str())
                    && row.detail["impersonated_by"] == whoami.key_id.as_str(),
                "{row:?}"
            );
            ensure!(
                code(rig.a1.as_agent(&rig.a2_id).whoami().await)? == "invalid_request",
                "an agent key cannot act as another agent"
            );
            ensure!(
                code(rig.a.as_agent(&rig.b1_id).whoami().await)? == "agent_not_found",
                "nor an app key as another app's agent"
            );
            // Without a grant id an agent gets its own grant first.
            let own = rig.a2.request(Method::GET, STRIPE_URL).authorize().await?;
            ensure!(own.grant_id == own_a2, "cal-bot's own grant: {own:?}");
            // An agent sees only its own delegations; another app's are not found.
            let seen = rig.a2.delegations(None, None, false).await?;
            ensure!(
                seen.len() == 1 && seen[0].agent_id == rig.a2_id,
                "cal-bot's delegations: {seen:?}"
            );
            ensure!(code(rig.a2.delegation(&d_u1.id).await)? == "delegation_not_found");
            ensure!(code(rig.b.delegation(&d_u1.id).await)? == "delegation_not_found");
            ensure!(
                rig.a
                    .delegations(Some("mail-bot"), None, false)
                    .await?
                    .len()
                    == 2
            );
            // A change made acting as the agent is the agent's, naming the app key.
            let ended = acting.revoke_delegation(&d_u1.id, None).await?;
            ensure!(ended.revoked_by.as_deref() == Some("agent"), "{ended:?}");
            let rows = rig
                .a
                .audit()
                .action("delegation.revoke")
                .list()
                .await?
                .items;
            ensure!(
                rows.len() == 1
                    && rows[0].actor_id == rig.a1_id
                    && rows[0].detail["impersonated_by"] == whoami.key_id.as_str(),
                "{rows:?}"
            );
            Ok(())
        })
    })
}

/// A delegation ends four ways, each leaving the grant alone unless the grant itself is
/// what was revoked: the agent gives it up, the operator revokes it, its TTL runs out, or
/// the grant is revoked (which ends every delegation of it). An agent cannot create one,
/// nor end another agent's; each change is audited.
#[test]
#[allow(clippy::too_many_lines)] // one story
fn delegations_end_without_touching_the_grant() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        rt.block_on(async {
            let g_u1 = grant(&rig.a, user("u1")).await?;
            let g_u2 = grant(&rig.a, user("u2")).await?;

            // An agent cannot give itself access; a grant it owns cannot be delegated to it;
            // bad TTLs and unknown agents or grants are refused.
            ensure!(code(rig.a1.delegate(&g_u1, &rig.a1_id, None).await)? == "app_key_required");
            let own_a1 = grant(&rig.a, Principal::Agent(rig.a1_id.clone())).await?;
            ensure!(code(rig.a.delegate(&own_a1, "mail-bot", None).await)? == "invalid_request");
            ensure!(
                code(
                    rig.a
                        .delegate(&g_u1, "mail-bot", Some(Duration::ZERO))
                        .await
                )? == "invalid_request"
            );
            ensure!(code(rig.a.delegate(&g_u1, "nobody", None).await)? == "agent_not_found");
            ensure!(code(rig.b.delegate(&g_u1, "other-bot", None).await)? == "grant_not_found");
            ensure!(
                code(rig.a.delegate(&g_u1, &rig.b1_id, None).await)? == "agent_not_found",
                "another app's agent"
            );

            // The agent gives up its own delegation; a second one for the same pair while
            // the first is live is a conflict.
            let d = rig.a.delegate(&g_u1, "mail-bot", None).await?;
            ensure!(code(rig.a.delegate(&g_u1, "mail-bot", None).await)? == "delegation_conflict");
            ensure!(reaches(&rig.a1, &g_u1).await?);
            ensure!(
                code(rig.a2.revoke_delegation(&d.id, None).await)? == "delegation_not_found",
                "cal-bot cannot end mail-bot's delegation"
            );
            let ended = rig.a1.revoke_delegation(&d.id, Some("done")).await?;
            ensure!(
                ended.status == "revoked" && ended.revoked_by.as_deref() == Some("agent"),
                "{ended:?}"
            );
            ensure!(!reaches(&rig.a1, &g_u1).await?, "access ends at once");
            ensure!(
                reaches(&rig.a, &g_u1).await?,
                "the grant itself still works"
            );
            ensure!(rig.a.grant(&g_u1).await?.revoked_at.is_none());

            // The operator revokes one; ending it again answers its state.
            let d = rig.a.delegate(&g_u1, "mail-bot", None).await?;
            ensure!(
                reaches(&rig.a1, &g_u1).await?,
                "a new delegation after the ended one"
            );
            let ended = rig.a.revoke_delegation(&d.id, None).await?;
            ensure!(ended.revoked_by.as_deref() == Some("operator"), "{ended:?}");
            ensure!(rig.a.revoke_delegation(&d.id, None).await?.status == "revoked");
            ensure!(!reaches(&rig.a1, &g_u1).await?);

            // A TTL runs out.
            let d = rig
                .a
                .delegate(&g_u2, "mail-bot", Some(Duration::from_secs(1)))
                .await?;
            ensure!(reaches(&rig.a1, &g_u2).await?);
            tokio::time::sleep(Duration::from_millis(1500)).await;
            ensure!(
                !reaches(&rig.a1, &g_u2).await?,
                "an expired delegation reaches nothing"
            );
            ensure!(rig.a.delegation(&d.id).await?.status == "expired");
            ensure!(
                rig.a
                    .delegations(None, Some(&g_u2), false)
                    .await?
                    .is_empty()
                    && rig.a.delegations(None, Some(&g_u2), true).await?.len() == 1,
                "ended delegations are history"
            );

            // Revoking the grant ends every delegation of it.
            let d1 = rig.a.delegate(&g_u2, "mail-bot", None).await?;
            let d2 = rig.a.delegate(&g_u2, "cal-bot", None).await?;
            rig.a.revoke_grant(&g_u2, Some("user left")).await?;
            for d in [&d1, &d2] {
                let now = rig.a.delegation(&d.id).await?;
                ensure!(
                    now.status == "revoked" && now.revoked_by.as_deref() == Some("grant"),
                    "{now:?}"
                );
            }
            ensure!(!reaches(&rig.a2, &g_u2).await?);

            // Every change is in the audit log.
            let rows = rig.a.audit().limit(500).list().await?.items;
            let count = |action: &str| rows.iter().filter(|r| r.action == action).count();
            ensure!(
                count("delegation.create") == 5,
                "{}",
                count("delegation.create")
            );
            ensure!(
                count("delegation.revoke") == 2,
                "{}",
                count("delegation.revoke")
            );
            let revoke = rows
                .iter()
                .find(|r| r.action == "grant.revoke")
                .context("grant.revoke row")?;
            ensure!(
                revoke.detail["delegations_revoked"] == 2,
                "{:?}",
                revoke.detail
            );
            Ok(())
        })
    })
}

/// `tessera agent delegate|delegations|undelegate`: the operator's CLI over the same
/// service, with clear errors for bad input.
#[test]
fn the_cli_delegates_lists_and_undelegates() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        let g = rt.block_on(grant(&rig.a, user("u1")))?;
        let cli = |args: &[&str]| tessera_env(dir, env, args);
        let made = json_of(&cli(&[
            "agent", "delegate", "mail-bot", "--app", "billing", "--grant", &g, "--ttl", "12h",
            "--json",
        ])?)?;
        let id = made["id"].as_str().context("delegation id")?.to_owned();
        ensure!(made["agent_id"] == rig.a1_id.as_str() && made["expires_at"].is_string());
        ensure!(rt.block_on(reaches(&rig.a1, &g))?);

        let listed: Value = json_of(&cli(&[
            "agent",
            "delegations",
            "mail-bot",
            "--app",
            "billing",
            "--json",
        ])?)?;
        ensure!(
            listed
                .as_array()
                .is_some_and(|l| l.len() == 1 && l[0]["id"] == id.as_str())
        );

        for (ttl, why) in [
            ("0", "at least one second"),
            ("2y", "unit"),
            ("x", "number"),
        ] {
            let out = cli(&[
                "agent", "delegate", "cal-bot", "--app", "billing", "--grant", &g, "--ttl", ttl,
            ])?;
            ensure!(
                !out.status.success() && stderr(&out).contains(why),
                "{ttl}: {}",
                stderr(&out)
            );
        }
        let out = cli(&[
            "agent", "delegate", "ghost", "--app", "billing", "--grant", &g,
        ])?;
        ensure!(
            !out.status.success() && stderr(&out).contains("ghost"),
            "{}",
            stderr(&out)
        );

        let ended = json_of(&cli(&[
            "agent",
            "undelegate",
            &id,
            "--app",
            "billing",
            "--json",
        ])?)?;
        ensure!(
            ended["status"] == "revoked" && ended["changed"] == true,
            "{ended}"
        );
        ensure!(!rt.block_on(reaches(&rig.a1, &g))?);
        let again = json_of(&cli(&[
            "agent",
            "undelegate",
            &id,
            "--app",
            "billing",
            "--json",
        ])?)?;
        ensure!(again["changed"] == false, "{again}");
        let none = stdout(&cli(&["agent", "delegations", "--app", "billing"])?);
        ensure!(none.contains("no delegations"), "{none}");
        Ok(())
    })
}
