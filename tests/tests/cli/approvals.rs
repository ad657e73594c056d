//! Human-in-the-loop approvals end to end: a real `tessera serve`, the Rust SDK, the CLI and
//! the Stripe stand-in of `calls` (whose `POST /v1/customers` echoes the body it received).
//! A require-approval rule holds proxied writes (`202 approval_pending`) and refuses retrieve
//! mode on the grant; the approver sees the exact request and its hash; an approval sends the
//! stored bytes once; racing decisions have one winner; a reused, altered or expired approval
//! sends nothing; the SDK's `wait_for_approval` returns the provider's answer.

use std::time::Duration;

use tessera_proto::approvals::ApprovalStatus;
use tessera_proto::policy::{RuleKind, RuleRequest};
use tessera_sdk::{App, Error, Method};

use super::calls::{KEY_1, Stripe, create_key, runtime, start_stripe, stripe_secret};
use super::delegations::agent_key;
use super::serve::{Host, start_with};
use super::*;

const CUSTOMERS: &str = "https://api.stripe.com/v1/customers";

struct Rig {
    _host: Host,
    stripe: Stripe,
    a: App,
    /// An agent key of the same app, with every scope.
    bot: App,
    /// `TESSERA_EGRESS_OVERRIDES` of the host: a CLI approval sends from its own process.
    egress: String,
}

impl Rig {
    /// The bodies Stripe received for created customers.
    fn created(&self) -> Result<Vec<String>> {
        Ok(self
            .stripe
            .created
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .clone())
    }

    /// A held `POST /v1/customers` with `body`: its approval id.
    async fn hold(&self, body: &str) -> Result<String> {
        match self
            .a
            .proxy_request(Method::POST, CUSTOMERS)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .reason("create a customer")
            .send()
            .await
        {
            Err(Error::ApprovalPending {
                approval_id, rule, ..
            }) if rule == "customer-writes" => Ok(approval_id),
            other => bail!("expected approval_pending: {other:?}"),
        }
    }
}

fn rig(rt: &tokio::runtime::Runtime, dir: &Path, env: &[(&str, &str)]) -> Result<Rig> {
    init_with_app(dir, env)?;
    let key = create_key(dir, env, "billing")?;
    json_of(&tessera_env(
        dir,
        env,
        &["agent", "create", "mail-bot", "--app", "billing", "--json"],
    )?)?;
    let bot_key = agent_key(dir, env, "billing", "mail-bot")?;
    let stripe = Stripe::accepting(&[(KEY_1, None)])?;
    let origin = rt.block_on(start_stripe(stripe.clone()))?;
    let overrides = format!("api.stripe.com={origin}");
    let mut envs = env.to_vec();
    envs.push(("TESSERA_EGRESS_OVERRIDES", &overrides));
    let host = start_with(dir, None, &envs)?;
    let a = App::new(&key, &format!("http://{}", host.addr))?.caller("billing-bot");
    let bot = App::new(&bot_key, &format!("http://{}", host.addr))?;
    rt.block_on(async {
        a.set_managed_secret(&stripe_secret(KEY_1)).await?;
        a.create_policy_rule(&RuleRequest {
            name: "customer-writes".into(),
            applies_to: "provider:stripe".into(),
            rule: RuleKind::RequireApproval {
                methods: vec!["POST".into()],
                paths: vec!["/v1/customers".into()],
                ttl_secs: None,
            },
        })
        .await?;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(Rig {
        _host: host,
        stripe,
        a,
        bot,
        egress: overrides,
    })
}

/// Runs one SQL statement on the scenario's database, as someone tampering with it.
async fn tamper(dir: &Path, env: &[(&str, &str)], statement: &str) -> Result<u64> {
    use sqlx::{ConnectOptions as _, Connection as _};
    if let Some((_, url)) = env.iter().find(|(k, _)| *k == "TESSERA_DATABASE_URL") {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let n = sqlx::query(statement)
            .execute(&mut conn)
            .await?
            .rows_affected();
        conn.close().await?;
        return Ok(n);
    }
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("tessera.db"))
        .connect()
        .await?;
    let n = sqlx::query(statement)
        .execute(&mut conn)
        .await?
        .rows_affected();
    conn.close().await?;
    Ok(n)
}

/// Held, shown exactly, approved once: the provider receives the stored bytes one time, the
/// app collects the answer (again if it asks again), retrieve mode is refused, a wrong hash
/// and a second decision change nothing, and every step is audited.
#[test]
#[allow(clippy::too_many_lines)] // one story
fn a_held_call_is_shown_exactly_and_sent_once_when_approved() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        rt.block_on(async {
            // Retrieve mode on the grant is refused whatever it asks for; reads still go.
            let r = rig.a.request(Method::GET, CUSTOMERS).authorize().await;
            ensure!(
                matches!(&r, Err(Error::HitlRequiresProxy { rule, .. }) if rule == "customer-writes"),
                "{r:?}"
            );
            let read = rig.a.proxy_request(Method::GET, CUSTOMERS).send().await?;
            ensure!(read.status() == 200, "an unmatched call is not held");

            let id = rig.hold("name=Ada&email=ada%40example.com").await?;
            ensure!(rig.created()?.is_empty(), "nothing is sent before approval");
            let shown = rig.a.approval(&id).await?;
            let request = shown.request.clone().context("the request is shown")?;
            ensure!(
                shown.status == ApprovalStatus::Pending
                    && request.method == "POST"
                    && request.url == CUSTOMERS
                    && request.body_text.as_deref() == Some("name=Ada&email=ada%40example.com")
                    && request
                        .headers
                        .iter()
                        .any(|(n, v)| n == "content-type" && v == "application/x-www-form-urlencoded")
                    && request.sha256 == shown.request_sha256
                    && shown.caller.as_deref() == Some("billing-bot")
                    && shown.reason.as_deref() == Some("create a customer"),
                "{shown:?}"
            );
            let listed = rig.a.approvals(Some(ApprovalStatus::Pending)).await?;
            ensure!(listed.len() == 1 && listed[0].id == id && listed[0].request.is_none());

            // An agent never decides (it must not approve its own request), nor sees another's.
            let r = rig.bot.approve(&id, None, None).await;
            ensure!(
                r.as_ref().err().and_then(Error::code) == Some("app_key_required"),
                "{r:?}"
            );
            let r = rig.bot.approval(&id).await;
            ensure!(
                r.as_ref().err().and_then(Error::code) == Some("approval_not_found"),
                "{r:?}"
            );
            ensure!(rig.bot.approvals(None).await?.is_empty());

            // A decision quoting another hash changes nothing.
            let wrong = rig.a.approve(&id, Some(&"ab".repeat(32)), None).await;
            ensure!(
                wrong.as_ref().err().and_then(Error::code) == Some("approval_mismatch"),
                "{wrong:?}"
            );
            let pending = rig.a.approval_outcome(&id, Duration::ZERO).await;
            ensure!(matches!(pending, Err(Error::ApprovalPending { .. })), "{pending:?}");

            let done = rig
                .a
                .approve(&id, Some(&request.sha256), Some("looks right"))
                .await?;
            ensure!(
                done.status == ApprovalStatus::Executed
                    && done.response_status == Some(200)
                    && done.decided_by.as_deref().is_some_and(|b| b.starts_with("app_key:"))
                    && done.decided_via.as_deref() == Some("api"),
                "{done:?}"
            );
            ensure!(
                rig.created()? == ["name=Ada&email=ada%40example.com"],
                "the stored bytes, once: {:?}",
                rig.created()?
            );
            for _ in 0..2 {
                let answer = rig.a.approval_outcome(&id, Duration::ZERO).await?;
                ensure!(answer.status() == 200 && answer.provider() == "stripe");
                let body: serde_json::Value = answer.json().await?;
                ensure!(body["received"] == "name=Ada&email=ada%40example.com", "{body}");
            }

            // No reuse: a second approval or a denial is refused and sends nothing.
            let again = rig.a.approve(&id, None, None).await;
            ensure!(
                again.as_ref().err().and_then(Error::code) == Some("approval_decided"),
                "{again:?}"
            );
            let deny = rig.a.deny(&id, None).await;
            ensure!(
                deny.as_ref().err().and_then(Error::code) == Some("approval_decided"),
                "{deny:?}"
            );
            ensure!(rig.created()?.len() == 1);

            // Denied: final, nothing sent, the app is told with the note.
            let denied_id = rig.hold("name=Mallory").await?;
            let denied = rig.a.deny(&denied_id, Some("not a customer")).await?;
            ensure!(denied.status == ApprovalStatus::Denied, "{denied:?}");
            let outcome = rig.a.approval_outcome(&denied_id, Duration::ZERO).await;
            ensure!(
                matches!(&outcome, Err(Error::ApprovalDenied { approval_id, detail })
                    if *approval_id == denied_id && detail.contains("not a customer")),
                "{outcome:?}"
            );
            ensure!(rig.approve_refused(&denied_id).await?, "a denial is final");
            ensure!(rig.created()?.len() == 1);

            // Every step is in the audit log.
            let rows = rig.a.audit().limit(500).list().await?.items;
            let asked = rows
                .iter()
                .filter(|r| r.action == "approval.request" && r.outcome == "pending")
                .count();
            let decided: Vec<&str> = rows
                .iter()
                .filter(|r| r.action == "approval.decide")
                .filter_map(|r| r.detail["decision"].as_str())
                .collect();
            let sent = rows
                .iter()
                .filter(|r| r.action == "proxy.execute" && r.detail["approval_id"] == id.as_str())
                .count();
            ensure!(asked == 2, "{asked} approval.request rows");
            ensure!(decided == ["approved", "denied"] || decided == ["denied", "approved"], "{decided:?}");
            ensure!(sent == 1, "the approved request's own proxy.execute row");
            let retrieve = rows
                .iter()
                .find(|r| r.action == "tokens.retrieve")
                .context("the refused retrieve")?;
            ensure!(
                retrieve.outcome == "denied"
                    && retrieve.detail["error"] == "hitl_grant_requires_proxy"
                    && retrieve.detail["policy"]["decision"] == "hold",
                "{retrieve:?}"
            );
            Ok(())
        })
    })
}

impl Rig {
    /// Whether approving `id` is refused (as decided or expired).
    async fn approve_refused(&self, id: &str) -> Result<bool> {
        let r = self.a.approve(id, None, None).await;
        Ok(matches!(
            r.as_ref().err().and_then(Error::code),
            Some("approval_decided" | "approval_expired")
        ))
    }
}

/// Racing approve and deny resolve to exactly one outcome; the SDK's `wait_for_approval`
/// returns the provider's answer once an operator approves on the command line; bytes
/// altered in the database are never sent; an approval nobody decided in time cannot be
/// approved.
#[test]
#[allow(clippy::too_many_lines)] // one story
fn races_waits_tampering_and_expiry() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        rt.block_on(async {
            // Concurrent approve and deny: one wins, the other is told it was decided.
            for round in 0..3 {
                let id = rig.hold(&format!("name=Race{round}")).await?;
                let (approve, deny) = tokio::join!(
                    rig.a.approve(&id, None, None),
                    rig.a.deny(&id, None)
                );
                let outcomes = [approve.is_ok(), deny.is_ok()];
                ensure!(
                    outcomes.iter().filter(|ok| **ok).count() == 1,
                    "round {round}: {approve:?} / {deny:?}"
                );
                let loser = if approve.is_ok() { deny.err() } else { approve.err() };
                ensure!(
                    loser.as_ref().and_then(Error::code) == Some("approval_decided"),
                    "{loser:?}"
                );
                let sent = rig
                    .created()?
                    .iter()
                    .filter(|b| **b == format!("name=Race{round}"))
                    .count();
                ensure!(sent == usize::from(outcomes[0]), "round {round}: sent {sent} times");
            }

            // The SDK waits; an operator approves on the command line.
            let waiting = {
                let a = rig.a.clone();
                tokio::spawn(async move {
                    a.proxy_request(Method::POST, CUSTOMERS)
                        .body("name=Grace")
                        .wait_for_approval(Duration::from_mins(1))
                        .send()
                        .await
                })
            };
            let id = loop {
                let pending = rig.a.approvals(Some(ApprovalStatus::Pending)).await?;
                if let Some(a) = pending.first() {
                    break a.id.clone();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let shown = json_of(&tessera_env(
                dir,
                env,
                &["approval", "show", &id, "--app", "billing", "--json"],
            )?)?;
            ensure!(shown["request"]["body_text"] == "name=Grace", "{shown}");
            let sha = shown["request_sha256"].as_str().context("sha")?.to_owned();
            let mut cli_env = env.to_vec();
            cli_env.push(("TESSERA_EGRESS_OVERRIDES", &rig.egress));
            let approved = json_of(&tessera_env(
                dir,
                &cli_env,
                &["approval", "approve", &id, "--app", "billing", "--sha256", &sha, "--json"],
            )?)?;
            ensure!(
                approved["status"] == "executed" && approved["decided_via"] == "cli",
                "{approved}"
            );
            let answer = waiting.await??;
            ensure!(answer.status() == 200);
            let body: serde_json::Value = answer.json().await?;
            ensure!(body["received"] == "name=Grace", "{body}");

            // Bytes altered at rest: a sealed request moved from another approval fails its
            // associated data, a changed hash fails the check; neither is sent.
            let before = rig.created()?.len();
            let moved = rig.hold("name=Eve").await?;
            tamper(
                dir,
                env,
                &format!(
                    "UPDATE approvals SET request = (SELECT request FROM approvals WHERE id = '{id}') WHERE id = '{moved}'"
                ),
            )
            .await?;
            let r = rig.a.approve(&moved, None, None).await;
            ensure!(
                r.as_ref().err().and_then(Error::code) == Some("approval_mismatch"),
                "{r:?}"
            );
            let rehashed = rig.hold("name=Eve2").await?;
            tamper(
                dir,
                env,
                &format!("UPDATE approvals SET request_sha256 = '{}' WHERE id = '{rehashed}'", "0".repeat(64)),
            )
            .await?;
            let r = rig.a.approve(&rehashed, None, None).await;
            ensure!(
                r.as_ref().err().and_then(Error::code) == Some("approval_mismatch"),
                "{r:?}"
            );
            ensure!(rig.created()?.len() == before, "altered requests are never sent");
            let failed = rig.a.approval(&moved).await;
            ensure!(
                failed.as_ref().err().and_then(Error::code) == Some("approval_mismatch"),
                "{failed:?}"
            );
            let listed = rig.a.approvals(Some(ApprovalStatus::Failed)).await?;
            ensure!(
                listed.iter().any(|a| a.id == moved
                    && a.error_code.as_deref() == Some("approval_mismatch")),
                "{listed:?}"
            );

            // Expiry: a five-second deadline passes; approving then fails and sends nothing.
            rig.a
                .update_policy_rule(
                    "customer-writes",
                    &RuleRequest {
                        name: "customer-writes".into(),
                        applies_to: "provider:stripe".into(),
                        rule: RuleKind::RequireApproval {
                            methods: vec!["POST".into()],
                            paths: vec!["/v1/*".into()],
                            ttl_secs: Some(5),
                        },
                    },
                )
                .await?;
            // The host reads rules again within two seconds.
            tokio::time::sleep(Duration::from_millis(2100)).await;
            let late = rig.hold("name=Late").await?;
            let held = rig.a.approval(&late).await?;
            ensure!(held.status == ApprovalStatus::Pending, "{held:?}");
            tokio::time::sleep(Duration::from_secs(6)).await;
            let r = rig.a.approve(&late, None, None).await;
            ensure!(
                r.as_ref().err().and_then(Error::code) == Some("approval_expired"),
                "{r:?}"
            );
            let outcome = rig.a.approval_outcome(&late, Duration::from_secs(1)).await;
            ensure!(matches!(outcome, Err(Error::ApprovalExpired { .. })), "{outcome:?}");
            ensure!(!rig.created()?.contains(&"name=Late".to_owned()));
            let expired = rig
                .a
                .audit()
                .action("approval.decide")
                .list()
                .await?
                .items
                .into_iter()
                .any(|r| r.detail["decision"] == "expired" && r.detail["approval_id"] == late.as_str());
            ensure!(expired, "the expiry is audited");
            Ok(())
        })
    })
}
