//! Policy rules decided on real calls, end to end: a real `tessera serve`, the Rust SDK and
//! the Stripe stand-in of `calls`. The documented examples (docs/POLICY.md) — agents may not
//! DELETE, a provider only inside a time window, only from the office's addresses — each
//! refuse exactly the calls they should with `403 policy_denied` naming the rule, every
//! decision lands in the audit row, and forwarding headers count only from a trusted proxy.

use std::time::{SystemTime, UNIX_EPOCH};

use tessera_proto::grants::Principal;
use tessera_proto::policy::{RuleKind, RuleRequest};
use tessera_sdk::{App, Error, Method};

use super::calls::{KEY_1, Stripe, create_key, runtime, start_stripe, stripe_secret};
use super::delegations::agent_key;
use super::serve::{Host, start_with};
use super::*;

const STRIPE_URL: &str = "https://api.stripe.com/v1/customers";

struct Rig {
    _host: Host,
    _stripe: Stripe,
    a: App,
    bot: App,
    bot_id: String,
}

/// Billing with an app key and agent mail-bot, a Stripe grant of the app and one of the
/// agent, and a host started with `extra` environment.
fn rig(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    env: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Result<Rig> {
    init_with_app(dir, env)?;
    let agent = json_of(&tessera_env(
        dir,
        env,
        &["agent", "create", "mail-bot", "--app", "billing", "--json"],
    )?)?;
    let bot_id = agent["id"].as_str().context("agent id")?.to_owned();
    let key_a = create_key(dir, env, "billing")?;
    let key_bot = agent_key(dir, env, "billing", "mail-bot")?;
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
    envs.extend_from_slice(extra);
    let host = start_with(dir, None, &envs)?;
    let url = format!("http://{}", host.addr);
    let a = App::new(&key_a, &url)?;
    let bot = App::new(&key_bot, &url)?;
    rt.block_on(async {
        a.set_managed_secret(&stripe_secret(KEY_1)).await?;
        let mut own = stripe_secret(KEY_1);
        own.principal = Some(Principal::Agent(bot_id.clone()));
        a.set_managed_secret(&own).await?;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(Rig {
        _host: host,
        _stripe: stripe,
        a,
        bot,
        bot_id,
    })
}

/// A retrieve call of `method` without a grant id: `Ok(())`, or the rule that refused it.
async fn call(app: &App, method: Method) -> Result<Option<String>> {
    match app
        .request(method, STRIPE_URL)
        .reason("policy test")
        .authorize()
        .await
    {
        Ok(_) => Ok(None),
        Err(Error::PolicyDenied { rule, .. } | Error::RateLimited { rule, .. }) => Ok(Some(rule)),
        Err(e) => bail!("unexpected: {e}"),
    }
}

fn rule(name: &str, applies_to: &str, rule: RuleKind) -> RuleRequest {
    RuleRequest {
        name: name.into(),
        applies_to: applies_to.into(),
        rule,
    }
}

/// The hour of the day now, in UTC.
fn utc_hour() -> Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() % 86_400 / 3600)
}

/// Agents may not DELETE (a custom Cedar rule); Stripe only inside a time window (a window
/// around now lets calls through, one that is closed now refuses them, named); every
/// decision is in the audit row; deleting the rule lifts it; bad rules are refused; agent
/// keys cannot manage rules.
#[test]
#[allow(clippy::too_many_lines)] // one story
fn documented_rules_refuse_exactly_their_calls_and_are_audited() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env, &[])?;
        rt.block_on(async {
            ensure!(
                call(&rig.bot, Method::DELETE).await?.is_none(),
                "no rule yet"
            );
            let created = rig
                .a
                .create_policy_rule(&rule(
                    "agents-no-delete",
                    "app",
                    RuleKind::Cedar {
                        policy: "forbid (principal is Agent, action, resource)\n\
                                 when { context.method == \"DELETE\" };"
                            .into(),
                    },
                ))
                .await?;
            ensure!(created.cedar.contains("forbid"), "{created:?}");
            ensure!(
                call(&rig.bot, Method::DELETE).await?.as_deref() == Some("agents-no-delete"),
                "the agent's DELETE is refused"
            );
            ensure!(
                call(&rig.bot, Method::GET).await?.is_none(),
                "its GET is not"
            );
            ensure!(
                call(&rig.a, Method::DELETE).await?.is_none(),
                "the app's DELETE is not"
            );

            // The refusal and an allowed call, in the audit log.
            let rows = rig.a.audit().limit(500).list().await?.items;
            let denied = rows
                .iter()
                .rev()
                .find(|r| r.outcome == "denied" && r.action == "tokens.retrieve")
                .context("the denied call's row")?;
            ensure!(
                denied.detail["policy"]["decision"] == "deny"
                    && denied.detail["policy"]["rule"] == "agents-no-delete"
                    && denied.detail["error"] == "policy_denied"
                    && denied.actor_id == rig.bot_id,
                "{denied:?}"
            );
            let allowed = rows
                .iter()
                .rev()
                .find(|r| r.outcome == "ok" && r.action == "tokens.retrieve")
                .context("an allowed call's row")?;
            ensure!(
                allowed.detail["policy"]["decision"] == "allow"
                    && allowed.detail["policy"]["rules"] == 1,
                "{allowed:?}"
            );
            ensure!(
                rows.iter().any(|r| r.action == "policy.rule.create"),
                "the rule's creation is audited"
            );

            // A window open now lets calls through; one closed now refuses them.
            let h = utc_hour()?;
            let window = |from: u64, to: u64| RuleKind::TimeWindow {
                days: vec!["mon-sun".into()],
                start: format!("{:02}:00", from % 24),
                end: format!("{:02}:00", to % 24),
                time_zone: "UTC".into(),
            };
            rig.a
                .create_policy_rule(&rule(
                    "stripe-hours",
                    "provider:stripe",
                    window(h + 23, h + 1),
                ))
                .await?;
            ensure!(
                call(&rig.a, Method::GET).await?.is_none(),
                "inside the window"
            );
            rig.a
                .update_policy_rule(
                    "stripe-hours",
                    &rule("stripe-hours", "provider:stripe", window(h + 2, h + 3)),
                )
                .await?;
            ensure!(
                call(&rig.a, Method::GET).await?.as_deref() == Some("stripe-hours"),
                "outside the window"
            );
            let refused = rig.a.proxy_request(Method::GET, STRIPE_URL).send().await;
            ensure!(
                matches!(&refused, Err(Error::PolicyDenied { rule, .. }) if rule == "stripe-hours"),
                "proxy mode too: {refused:?}"
            );
            rig.a.delete_policy_rule("stripe-hours").await?;
            ensure!(call(&rig.a, Method::GET).await?.is_none(), "lifted");
            ensure!(rig.a.policy_rules().await?.len() == 1);
            ensure!(
                rig.a
                    .audit()
                    .action("policy.rule.delete")
                    .list()
                    .await?
                    .items
                    .len()
                    == 1,
                "the deletion is audited"
            );

            // Two calls a minute per grant: the third is refused with when to retry; another
            // grant (the agent's own) has its own count.
            rig.a
                .create_policy_rule(&rule(
                    "two-a-minute",
                    "provider:stripe",
                    RuleKind::RateLimit {
                        limit: 2,
                        window_secs: 60,
                        per: "grant".into(),
                    },
                ))
                .await?;
            ensure!(call(&rig.a, Method::GET).await?.is_none());
            ensure!(call(&rig.a, Method::GET).await?.is_none());
            match rig.a.request(Method::GET, STRIPE_URL).authorize().await {
                Err(Error::RateLimited {
                    rule,
                    retry_after_secs: Some(s),
                    ..
                }) if rule == "two-a-minute" && (1..=60).contains(&s) => {}
                other => bail!("the third call in a minute: {other:?}"),
            }
            ensure!(
                call(&rig.bot, Method::GET).await?.is_none(),
                "the agent's own grant"
            );
            rig.a.delete_policy_rule("two-a-minute").await?;

            // Bad rules are refused with what is wrong; agents cannot manage rules.
            for (bad, why) in [
                (
                    RuleKind::Cedar {
                        policy: "permit (principal, action, resource);".into(),
                    },
                    "forbid",
                ),
                (
                    RuleKind::IpAllow {
                        ranges: vec!["10.0.0.0/33".into()],
                    },
                    "10.0.0.0/33",
                ),
                (window(1, 1), "differ"),
            ] {
                let r = rig.a.create_policy_rule(&rule("bad", "app", bad)).await;
                ensure!(
                    matches!(&r, Err(Error::InvalidRequest { detail }) if detail.contains(why)),
                    "{why}: {r:?}"
                );
            }
            let r = rig.bot.policy_rules().await;
            ensure!(
                r.as_ref().err().and_then(Error::code) == Some("app_key_required"),
                "{r:?}"
            );
            let schema = rig.a.policy_schema().await?;
            ensure!(schema.contains("action retrieve, proxy"), "{schema}");
            Ok(())
        })
    })
}

/// Only from the office: an IP allow-list on the calling client's address. Without a trusted
/// proxy the client is the TCP peer (127.0.0.1, refused) whatever `X-Forwarded-For` says;
/// with 127.0.0.1 named as a trusted proxy, the forwarded address decides.
#[test]
fn ip_allow_lists_see_the_client_and_trust_forwarding_only_from_named_proxies() -> Result<()> {
    let office = || {
        rule(
            "office-only",
            "app",
            RuleKind::IpAllow {
                ranges: vec!["203.0.113.0/24".into()],
            },
        )
    };
    let forwarded_for = |key_app: &App, ip: &str| -> Result<App> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("x-forwarded-for", ip.parse()?);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(headers)
            .build()?;
        Ok(key_app.clone().with_host_client(client))
    };
    // No trusted proxy: the header is ignored.
    let dir = tempfile::tempdir()?;
    let rt = runtime()?;
    let rig1 = rig(&rt, dir.path(), &[], &[])?;
    rt.block_on(async {
        rig1.a.create_policy_rule(&office()).await?;
        ensure!(call(&rig1.a, Method::GET).await?.as_deref() == Some("office-only"));
        let spoofed = forwarded_for(&rig1.a, "203.0.113.9")?;
        ensure!(
            call(&spoofed, Method::GET).await?.as_deref() == Some("office-only"),
            "a forwarding header from an untrusted peer changes nothing"
        );
        Ok::<(), anyhow::Error>(())
    })?;
    // 127.0.0.1 is a trusted proxy: the forwarded address is the client.
    let dir = tempfile::tempdir()?;
    let rig2 = rig(
        &rt,
        dir.path(),
        &[],
        &[("TESSERA_TRUSTED_PROXIES", "127.0.0.1")],
    )?;
    rt.block_on(async {
        rig2.a.create_policy_rule(&office()).await?;
        let inside = forwarded_for(&rig2.a, "203.0.113.9")?;
        ensure!(
            call(&inside, Method::GET).await?.is_none(),
            "from the office"
        );
        let outside = forwarded_for(&rig2.a, "198.51.100.1")?;
        ensure!(call(&outside, Method::GET).await?.as_deref() == Some("office-only"));
        ensure!(call(&rig2.a, Method::GET).await?.as_deref() == Some("office-only"));
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}
