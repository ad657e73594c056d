//! Managed secrets, grants, retrieve and proxy, end to end: a real `tessera serve`, the Rust
//! SDK, and a stand-in for Stripe's API on 127.0.0.1 that checks what Stripe would (the
//! bearer key, the `Host` it was addressed to). The host reaches it through an egress
//! override, after its allow-list check for `api.stripe.com`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tessera_proto::grants::{GrantStatus, ManagedSecretRequest, Principal};
use tessera_proto::providers::ProviderConfigRequest;
use tessera_proto::scopes::Scope;
use tessera_sdk::{App, Error, Method};

use super::serve::{Host, start_with};
use super::*;

/// Canary secrets: they must never appear in the database, in any form.
pub(super) const KEY_1: &str = "sk_test_CanaryOneQ7x2LmP9vR4tY8wZ3";
pub(super) const KEY_2: &str = "sk_test_CanaryTwoK5n8JdS2fH6gB1cV0";
/// A canary OAuth client secret (configured for the generic `oauth2` provider).
const CLIENT_SECRET: &str = "cs_live_CanaryClientQ4w8Er2Ty6Ui0";

/// The stand-in's state: which keys Stripe currently accepts, the business name of the
/// account of a key (`Acme Inc` for a key not listed), and what it was sent.
#[derive(Clone, Default)]
pub(super) struct Stripe {
    pub(super) valid: Arc<Mutex<Vec<String>>>,
    pub(super) names: Arc<Mutex<BTreeMap<String, String>>>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    /// The bodies of the customers created (`POST /v1/customers`), in order.
    pub(super) created: Arc<Mutex<Vec<String>>>,
}

impl Stripe {
    /// A stand-in that accepts `keys`, each naming an account (`None`: `Acme Inc`).
    pub(super) fn accepting(keys: &[(&str, Option<&str>)]) -> Result<Self> {
        let stripe = Self::default();
        let lock = || anyhow::anyhow!("lock");
        let mut valid = stripe.valid.lock().map_err(|_| lock())?;
        let mut names = stripe.names.lock().map_err(|_| lock())?;
        for (key, name) in keys {
            valid.push((*key).to_owned());
            if let Some(name) = name {
                names.insert((*key).to_owned(), (*name).to_owned());
            }
        }
        drop((valid, names));
        Ok(stripe)
    }

    fn check(
        &self,
        headers: &HeaderMap,
        path: &str,
    ) -> Result<(), (StatusCode, Json<serde_json::Value>)> {
        let host = headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        self.seen
            .lock()
            .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({}))))?
            .push((host.to_owned(), path.to_owned()));
        let valid = self.valid.lock().map(|v| v.clone()).unwrap_or_default();
        let ok = host == "api.stripe.com"
            && auth
                .strip_prefix("Bearer ")
                .is_some_and(|k| valid.iter().any(|v| v == k));
        if ok {
            Ok(())
        } else {
            Err((
                StatusCode::UNAUTHORIZED,
                Json(
                    json!({"error": {"type": "invalid_request_error", "code": "api_key_invalid"}}),
                ),
            ))
        }
    }
}

type Reply = Result<Json<serde_json::Value>, (StatusCode, Json<serde_json::Value>)>;

async fn account(State(s): State<Stripe>, headers: HeaderMap) -> Reply {
    s.check(&headers, "/v1/account")?;
    let name = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|key| s.names.lock().ok()?.get(key).cloned())
        .unwrap_or_else(|| "Acme Inc".to_owned());
    Ok(Json(json!({
        "id": "acct_1Canary",
        "email": "billing@acme.example",
        "business_profile": {"name": name}
    })))
}

async fn customers(
    State(s): State<Stripe>,
    Query(q): Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> Reply {
    s.check(&headers, "/v1/customers")?;
    // Not Stripe's: lets a test keep a request in flight.
    if let Some(ms) = q.get("delay_ms").and_then(|v| v.parse().ok()) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    Ok(Json(json!({"object": "list", "data": [{"id": "cus_1"}]})))
}

async fn create_customer(State(s): State<Stripe>, headers: HeaderMap, body: String) -> Reply {
    s.check(&headers, "/v1/customers")?;
    if let Ok(mut created) = s.created.lock() {
        created.push(body.clone());
    }
    Ok(Json(json!({"id": "cus_new", "received": body})))
}

/// Starts the stand-in on a free port; returns its origin.
pub(super) async fn start_stripe(stripe: Stripe) -> Result<String> {
    let app = Router::new()
        .route("/v1/account", get(account))
        .route("/v1/customers", get(customers).post(create_customer))
        .with_state(stripe);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(format!("http://{addr}"))
}

pub(super) fn create_key(dir: &Path, env: &[(&str, &str)], app: &str) -> Result<String> {
    let all = Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let created = json_of(&tessera_env(
        dir,
        env,
        &["key", "create", "--app", app, "--scopes", &all, "--json"],
    )?)?;
    Ok(created["key"].as_str().context("key")?.to_owned())
}

/// One host with two apps (billing with key A, other with key B) and a Stripe stand-in.
struct Rig {
    host: Host,
    a: App,
    b: App,
    stripe: Stripe,
    stripe_origin: String,
}

fn rig(rt: &tokio::runtime::Runtime, dir: &Path, env: &[(&str, &str)]) -> Result<Rig> {
    init_with_app(dir, env)?;
    json_of(&tessera_env(
        dir,
        env,
        &["app", "create", "other", "--json"],
    )?)?;
    let key_a = create_key(dir, env, "billing")?;
    let key_b = create_key(dir, env, "other")?;
    let stripe = Stripe::default();
    stripe
        .valid
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .push(KEY_1.into());
    let stripe_origin = rt.block_on(start_stripe(stripe.clone()))?;
    let overrides = format!("api.stripe.com={stripe_origin}");
    let mut envs = env.to_vec();
    envs.push(("TESSERA_EGRESS_OVERRIDES", &overrides));
    let host = start_with(dir, None, &envs)?;
    let url = format!("http://{}", host.addr);
    Ok(Rig {
        a: App::new(&key_a, &url)?.caller("billing-worker"),
        b: App::new(&key_b, &url)?,
        host,
        stripe,
        stripe_origin,
    })
}

pub(super) fn stripe_secret(key: &str) -> ManagedSecretRequest {
    ManagedSecretRequest {
        provider: "stripe".into(),
        principal: None,
        fields: BTreeMap::from([("secret_key".to_owned(), key.to_owned())]),
        connection_params: BTreeMap::new(),
        grant_id: None,
    }
}

/// App billing's OAuth client for the generic `oauth2` provider.
fn oauth2_client(secret: Option<&str>) -> ProviderConfigRequest {
    ProviderConfigRequest {
        client_id: "billing-client".into(),
        client_secret: secret.map(str::to_owned),
        scopes: vec!["openid".into(), "email".into()],
        connection_params: BTreeMap::from([(
            "issuer".to_owned(),
            "https://idp.example.com".to_owned(),
        )]),
        ..ProviderConfigRequest::default()
    }
}

pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

/// One user story, start to end: each step depends on the state the previous one left.
#[test]
#[allow(clippy::too_many_lines)]
fn managed_secret_retrieve_proxy_revoke_and_audit() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        rt.block_on(async {
            // Store: validated by the provider against the stand-in, labelled from its answer.
            let stored = rig.a.set_managed_secret(&stripe_secret(KEY_1)).await?;
            let grant = stored.grant;
            ensure!(!stored.rotated);
            ensure!(grant.account_label == "Acme Inc", "{grant:?}");
            ensure!(grant.principal == Principal::System && grant.status == GrantStatus::Active);
            ensure!(grant.metadata.get("mode").map(String::as_str) == Some("test"), "{grant:?}");

            // An OAuth client for the generic provider: its secret is a canary too.
            let client = rig.a.configure_provider("oauth2", &oauth2_client(Some(CLIENT_SECRET))).await?;
            ensure!(client.client_secret_set && client.client_id == "billing-client", "{client:?}");
            ensure!(rig.a.provider_config("oauth2").await? == client);
            // The body may name the provider only as the path does.
            let mut elsewhere = oauth2_client(None);
            elsewhere.provider = "github".into();
            let r = rig.a.configure_provider("oauth2", &elsewhere).await;
            ensure!(matches!(&r, Err(Error::InvalidRequest { detail }) if detail.contains("github")), "{r:?}");
            let configured = rig.a.audit().action("provider.configure").list().await?;
            ensure!(configured.items.len() == 1 && configured.items[0].detail["confidential"] == true, "{configured:?}");
            ensure!(!serde_json::to_string(&configured)?.contains(CLIENT_SECRET), "the client secret leaked into the audit log");

            // A key Stripe rejects is refused, and nothing is stored.
            let bad = rig.a.set_managed_secret(&stripe_secret("sk_test_NotAcceptedByStripe1")).await;
            ensure!(matches!(bad, Err(Error::ProviderRejected { .. })), "{bad:?}");
            // An undeclared field is named in the error.
            let mut undeclared = stripe_secret(KEY_1);
            undeclared.fields.insert("password".into(), "x".into());
            match rig.a.set_managed_secret(&undeclared).await {
                Err(Error::InvalidRequest { detail, .. }) => {
                    ensure!(detail.contains("password") && detail.contains("secret_key"), "{detail}");
                }
                other => bail!("undeclared field: {other:?}"),
            }

            // Retrieve: the host returns the auth material; the app sends the request itself.
            let authorized = rig
                .a
                .request(Method::GET, "https://api.stripe.com/v1/customers")
                .grant_id(&grant.id)
                .reason("sync invoices")
                .context("ticket", "T-42")
                .authorize()
                .await?;
            ensure!(authorized.provider == "stripe");
            let auth = authorized
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone())
                .context("no authorization header")?;
            ensure!(auth == format!("Bearer {KEY_1}"));
            let direct = reqwest::Client::new()
                .get(format!("{}/v1/customers", rig.stripe_origin))
                .header("host", "api.stripe.com")
                .header("authorization", auth)
                .send()
                .await?;
            ensure!(direct.status() == 200);

            // Retrieve for a host outside the provider's list is refused.
            let outside = rig
                .a
                .request(Method::GET, "https://evil.example.com/v1/customers")
                .grant_id(&grant.id)
                .authorize()
                .await;
            ensure!(matches!(outside, Err(Error::HostNotAllowed { .. })), "{outside:?}");

            // Proxy: the host signs and sends; status and body come back with the marker.
            let proxied = rig
                .a
                .proxy_request(Method::POST, "https://api.stripe.com/v1/customers")
                .grant_id(&grant.id)
                .header("content-type", "application/x-www-form-urlencoded")
                .body("email=a%40b.example")
                .reason("create customer")
                .send()
                .await?;
            ensure!(proxied.status() == 200 && proxied.provider() == "stripe");
            let body: serde_json::Value = proxied.json().await?;
            ensure!(body["received"] == "email=a%40b.example", "{body}");

            // Rotation keeps the grant id; Stripe now accepts only the new key.
            rig.stripe.valid.lock().map_err(|_| anyhow::anyhow!("lock"))?.push(KEY_2.into());
            let mut rotate = stripe_secret(KEY_2);
            rotate.grant_id = Some(grant.id.clone());
            let rotated = rig.a.set_managed_secret(&rotate).await?;
            ensure!(rotated.rotated && rotated.grant.id == grant.id, "{rotated:?}");
            rig.stripe.valid.lock().map_err(|_| anyhow::anyhow!("lock"))?.retain(|k| k == KEY_2);
            let after = rig
                .a
                .proxy_request(Method::GET, "https://api.stripe.com/v1/customers")
                .grant_id(&grant.id)
                .send()
                .await?;
            ensure!(after.status() == 200);

            // Listing with filters.
            let page = rig.a.grants().provider("stripe").list().await?;
            ensure!(page.items.len() == 1 && page.items[0].id == grant.id, "{page:?}");
            let none = rig.a.grants().provider("github").list().await?;
            ensure!(none.items.is_empty());

            // Revoke: at once, and the next calls fail with grant_revoked.
            rig.a.revoke_grant(&grant.id, Some("customer left")).await?;
            let shown = rig.a.grant(&grant.id).await?;
            ensure!(shown.status == GrantStatus::Revoked && shown.revoked_at.is_some());
            let r = rig.a.request(Method::GET, "https://api.stripe.com/v1/customers").grant_id(&grant.id).authorize().await;
            ensure!(matches!(r, Err(Error::GrantRevoked { .. })), "{r:?}");
            let p = rig.a.proxy_request(Method::GET, "https://api.stripe.com/v1/customers").grant_id(&grant.id).send().await;
            ensure!(matches!(p, Err(Error::GrantRevoked { .. })), "{p:?}");

            // The audit log has every step, with reason and context, and no secret.
            let audit = rig.a.audit().grant_id(&grant.id).limit(100).list().await?;
            let actions: Vec<&str> = audit.items.iter().map(|e| e.action.as_str()).collect();
            for want in ["grant.create", "tokens.retrieve", "proxy.execute", "grant.rotate", "grant.revoke"] {
                ensure!(actions.contains(&want), "{want} missing from {actions:?}");
            }
            let retrieve = audit.items.iter().find(|e| e.action == "tokens.retrieve" && e.outcome == "ok").context("retrieve row")?;
            ensure!(retrieve.reason.as_deref() == Some("sync invoices"), "{retrieve:?}");
            ensure!(retrieve.context.get("ticket").map(String::as_str) == Some("T-42"));
            ensure!(retrieve.caller.as_deref() == Some("billing-worker"), "{retrieve:?}");
            let revoke = audit.items.iter().find(|e| e.action == "grant.revoke").context("revoke row")?;
            ensure!(revoke.reason.as_deref() == Some("customer left") && revoke.detail["via"] == "api", "{revoke:?}");
            let text = serde_json::to_string(&audit)?;
            ensure!(!text.contains(KEY_1) && !text.contains(KEY_2), "a key leaked into the audit log");

            // Prometheus metrics: requests by route template and code, component latencies.
            let metrics = reqwest::get(format!("http://{}/metrics", rig.host.addr)).await?.text().await?;
            for want in [
                r#"tessera_http_requests_total{route="/v1/proxy",method="POST",code="200"}"#,
                r#"tessera_http_requests_total{route="/v1/retrieve",method="POST",code="410"}"#,
                r#"tessera_plugin_call_duration_seconds_count{provider="stripe",function="sign",result="ok"}"#,
                "tessera_audit_queue_depth",
            ] {
                ensure!(metrics.contains(want), "{want} missing from /metrics:\n{metrics}");
            }
            // The audit writer's totals: at least the rows this test's calls wrote.
            let total = |name: &str| -> Option<f64> {
                metrics.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            };
            let (rows, batches) = (total("tessera_audit_rows_total"), total("tessera_audit_batches_total"));
            ensure!(
                matches!((rows, batches), (Some(r), Some(b)) if r >= 2.0 && b >= 1.0 && b <= r),
                "audit totals {rows:?} rows in {batches:?} batches:\n{metrics}"
            );
            ensure!(!metrics.contains(&grant.id), "a grant id became a metric label");
            Ok::<(), anyhow::Error>(())
        })?;
        drop(rig.host);
        let verify = tessera_env(dir, env, &["audit", "verify"])?;
        ensure!(
            verify.status.success(),
            "{}{}",
            stdout(&verify),
            stderr(&verify)
        );

        // Canaries: the two Stripe keys appear nowhere in the database, in no form.
        let bytes = match env.iter().find(|(k, _)| *k == "TESSERA_DATABASE_URL") {
            Some((_, url)) => super::apps_and_keys::postgres_dump(url)?,
            None => super::apps_and_keys::files_under(dir)?,
        };
        // The dump does hold the grant rows (their account label), so the scan looks at them.
        ensure!(
            super::apps_and_keys::hits(&bytes, b"Acme Inc") > 0,
            "the dump lacks the grants"
        );
        for key in [KEY_1, KEY_2, CLIENT_SECRET] {
            let tail = &key[8..];
            for needle in [key.as_bytes(), tail.as_bytes(), hex::encode(key).as_bytes()] {
                ensure!(
                    super::apps_and_keys::hits(&bytes, needle) == 0,
                    "canary found in the database"
                );
            }
        }
        Ok(())
    })
}

/// Every route, called with a key that lacks the route's scope (narrowed with
/// `with_constraints`, which also proves constraints can only narrow): `403
/// insufficient_scope` naming exactly that scope.
#[test]
#[allow(clippy::too_many_lines)] // one call per route
fn every_route_refuses_a_key_without_its_scope() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        rt.block_on(async {
            let grant = rig.a.set_managed_secret(&stripe_secret(KEY_1)).await?.grant;
            let without = |scope: Scope| {
                let rest: Vec<Scope> = Scope::ALL.into_iter().filter(|s| *s != scope).collect();
                rig.a.with_constraints(&rest)
            };
            let expect = |scope: Scope, r: Result<(), Error>| match r {
                Err(Error::InsufficientScope { missing, .. }) if missing == vec![scope] => Ok(()),
                other => Err(anyhow::anyhow!("{scope:?}: {other:?}")),
            };
            let url = "https://api.stripe.com/v1/customers";
            expect(
                Scope::GrantsWrite,
                without(Scope::GrantsWrite)
                    .set_managed_secret(&stripe_secret(KEY_1))
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::GrantsRead,
                without(Scope::GrantsRead).grants().list().await.map(|_| ()),
            )?;
            expect(
                Scope::GrantsRead,
                without(Scope::GrantsRead)
                    .grant(&grant.id)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::GrantsWrite,
                without(Scope::GrantsWrite)
                    .revoke_grant(&grant.id, None)
                    .await,
            )?;
            expect(
                Scope::TokensRetrieve,
                without(Scope::TokensRetrieve)
                    .request(Method::GET, url)
                    .grant_id(&grant.id)
                    .authorize()
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::ProxyExecute,
                without(Scope::ProxyExecute)
                    .proxy_request(Method::GET, url)
                    .grant_id(&grant.id)
                    .send()
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::AuditRead,
                without(Scope::AuditRead).audit().list().await.map(|_| ()),
            )?;
            rig.a
                .configure_provider("oauth2", &oauth2_client(None))
                .await?;
            expect(
                Scope::ProvidersWrite,
                without(Scope::ProvidersWrite)
                    .configure_provider("oauth2", &oauth2_client(None))
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::ProvidersWrite,
                without(Scope::ProvidersWrite)
                    .provider_config("oauth2")
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::ProvidersWrite,
                without(Scope::ProvidersWrite)
                    .unconfigure_provider("oauth2")
                    .await,
            )?;
            let agent = rig.a.create_agent("matrix-bot").await?;
            expect(
                Scope::AgentsRead,
                without(Scope::AgentsRead).agents().await.map(|_| ()),
            )?;
            expect(
                Scope::AgentsRead,
                without(Scope::AgentsRead)
                    .agent(&agent.id)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::AgentsWrite,
                without(Scope::AgentsWrite)
                    .create_agent("refused-bot")
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::AgentsWrite,
                without(Scope::AgentsWrite)
                    .disable_agent(&agent.id)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::AgentsWrite,
                without(Scope::AgentsWrite)
                    .enable_agent(&agent.id)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::GrantsWrite,
                without(Scope::GrantsWrite)
                    .set_grant_ttl(&grant.id, None)
                    .await
                    .map(|_| ()),
            )?;
            let idp = tessera_proto::identity::IdpConfigRequest {
                issuer: "https://idp.example.com".into(),
                jwks_url: None,
                audiences: vec!["billing".into()],
                groups_claim: None,
                algorithms: Vec::new(),
                leeway_secs: 60,
            };
            expect(
                Scope::ProvidersWrite,
                without(Scope::ProvidersWrite)
                    .configure_idp(&idp)
                    .await
                    .map(|_| ()),
            )?;
            rig.a.configure_idp(&idp).await?;
            expect(
                Scope::ProvidersWrite,
                without(Scope::ProvidersWrite).idp().await.map(|_| ()),
            )?;
            expect(
                Scope::ProvidersWrite,
                without(Scope::ProvidersWrite).remove_idp().await,
            )?;
            ensure!(
                rig.a.idp().await?.issuer == idp.issuer,
                "a refused removal took effect"
            );
            let delegation = rig.a.delegate(&grant.id, &agent.id, None).await?;
            expect(
                Scope::AgentsWrite,
                without(Scope::AgentsWrite)
                    .delegate(&grant.id, &agent.id, None)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::AgentsRead,
                without(Scope::AgentsRead)
                    .delegations(None, None, false)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::AgentsRead,
                without(Scope::AgentsRead)
                    .delegation(&delegation.id)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::AgentsWrite,
                without(Scope::AgentsWrite)
                    .revoke_delegation(&delegation.id, None)
                    .await
                    .map(|_| ()),
            )?;
            ensure!(
                rig.a.delegation(&delegation.id).await?.status == "active",
                "a refused revocation took effect"
            );
            let methods = |name: &str| tessera_proto::policy::RuleRequest {
                name: name.into(),
                applies_to: "app".into(),
                rule: tessera_proto::policy::RuleKind::Methods {
                    deny: vec!["TRACE".into()],
                },
            };
            rig.a.create_policy_rule(&methods("no-trace")).await?;
            expect(
                Scope::PoliciesWrite,
                without(Scope::PoliciesWrite)
                    .create_policy_rule(&methods("refused"))
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::PoliciesRead,
                without(Scope::PoliciesRead)
                    .policy_rules()
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::PoliciesRead,
                without(Scope::PoliciesRead)
                    .policy_rule("no-trace")
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::PoliciesWrite,
                without(Scope::PoliciesWrite)
                    .update_policy_rule("no-trace", &methods("no-trace"))
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::PoliciesWrite,
                without(Scope::PoliciesWrite)
                    .delete_policy_rule("no-trace")
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::PoliciesRead,
                without(Scope::PoliciesRead)
                    .policy_schema()
                    .await
                    .map(|_| ()),
            )?;
            ensure!(
                rig.a.policy_rules().await?.len() == 1,
                "a refused rule change took effect"
            );
            // The scope is checked before the approval is looked for.
            let approval = "01936b1e-0000-7000-8000-000000000000";
            expect(
                Scope::ApprovalsRead,
                without(Scope::ApprovalsRead)
                    .approvals(None)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::ApprovalsRead,
                without(Scope::ApprovalsRead)
                    .approval(approval)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::ApprovalsWrite,
                without(Scope::ApprovalsWrite)
                    .approve(approval, None, None)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::ApprovalsWrite,
                without(Scope::ApprovalsWrite)
                    .deny(approval, None)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::ProxyExecute,
                without(Scope::ProxyExecute)
                    .approval_outcome(approval, std::time::Duration::ZERO)
                    .await
                    .map(|_| ()),
            )?;
            let hook = tessera_proto::webhooks::WebhookRequest {
                url: "https://hooks.example.com/tessera".into(),
                events: Vec::new(),
                rotate_secret: false,
            };
            expect(
                Scope::WebhooksWrite,
                without(Scope::WebhooksWrite)
                    .configure_webhook(&hook)
                    .await
                    .map(|_| ()),
            )?;
            rig.a.configure_webhook(&hook).await?;
            expect(
                Scope::WebhooksWrite,
                without(Scope::WebhooksWrite).webhook().await.map(|_| ()),
            )?;
            expect(
                Scope::WebhooksWrite,
                without(Scope::WebhooksWrite)
                    .webhook_deliveries(None)
                    .await
                    .map(|_| ()),
            )?;
            expect(
                Scope::WebhooksWrite,
                without(Scope::WebhooksWrite).remove_webhook().await,
            )?;
            ensure!(
                rig.a.webhook().await?.url == hook.url,
                "a refused removal took effect"
            );
            // Refused means untouched.
            ensure!(rig.a.provider_config("oauth2").await?.client_id == "billing-client");
            let agents = rig.a.agents().await?.items;
            ensure!(
                agents.len() == 1 && agents[0] == agent,
                "a refused agent change took effect: {agents:?}"
            );
            // The full key still works: narrowing was per request.
            ensure!(rig.a.grant(&grant.id).await?.id == grant.id);
            Ok::<(), anyhow::Error>(())
        })
    })
}

/// A grant's TTL: set through the API or the CLI, the grant works until then and fails with
/// `grant_expired` after (in both modes) until it is extended; a revoked grant cannot be
/// given one; every change is audited.
#[test]
fn a_grant_ttl_ends_its_use_until_it_is_extended() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        let url = "https://api.stripe.com/v1/customers";
        let grant = rt.block_on(async {
            let grant = rig.a.set_managed_secret(&stripe_secret(KEY_1)).await?.grant;
            ensure!(grant.valid_until.is_none(), "{grant:?}");
            let refused = rig.a.set_grant_ttl(&grant.id, Some(Duration::ZERO)).await;
            ensure!(
                matches!(refused, Err(Error::InvalidRequest { .. })),
                "{refused:?}"
            );
            let timed = rig
                .a
                .set_grant_ttl(&grant.id, Some(Duration::from_secs(1)))
                .await?;
            ensure!(timed.valid_until.is_some(), "{timed:?}");
            rig.a
                .request(Method::GET, url)
                .grant_id(&grant.id)
                .authorize()
                .await?;
            tokio::time::sleep(Duration::from_millis(1500)).await;
            let r = rig
                .a
                .request(Method::GET, url)
                .grant_id(&grant.id)
                .authorize()
                .await;
            ensure!(matches!(r, Err(Error::GrantExpired { .. })), "{r:?}");
            let r = rig
                .a
                .proxy_request(Method::GET, url)
                .grant_id(&grant.id)
                .send()
                .await;
            ensure!(matches!(r, Err(Error::GrantExpired { .. })), "{r:?}");
            let rows = rig
                .a
                .audit()
                .grant_id(&grant.id)
                .action("grant.ttl")
                .list()
                .await?;
            ensure!(rows.items.len() == 1, "{:?}", rows.items);
            Ok(grant)
        })?;
        // The operator extends it from the command line.
        let cli = |args: &[&str]| tessera_env(dir, env, args);
        let out = json_of(&cli(&[
            "grant", "ttl", &grant.id, "--app", "billing", "--ttl", "1h", "--json",
        ])?)?;
        ensure!(out["valid_until"].is_string(), "{out}");
        let out = json_of(&cli(&[
            "grant", "ttl", &grant.id, "--app", "billing", "--none", "--json",
        ])?)?;
        ensure!(out.get("valid_until").is_none(), "{out}");
        let bad = cli(&["grant", "ttl", &grant.id, "--app", "billing", "--ttl", "0"])?;
        ensure!(
            !bad.status.success() && stderr(&bad).contains("TTL"),
            "{}",
            stderr(&bad)
        );
        rt.block_on(async {
            rig.a
                .request(Method::GET, url)
                .grant_id(&grant.id)
                .authorize()
                .await?;
            rig.a.revoke_grant(&grant.id, None).await?;
            let r = rig
                .a
                .set_grant_ttl(&grant.id, Some(Duration::from_mins(1)))
                .await;
            ensure!(matches!(r, Err(Error::GrantRevoked { .. })), "{r:?}");
            Ok(())
        })
    })
}

/// App isolation: app B's key, holding every scope, cannot read, use, revoke, rotate or
/// even detect app A's grant: each attempt is `404 grant_not_found`, exactly like a grant
/// that does not exist. Likewise A's OAuth client configuration: `404
/// provider_config_not_found`, as for a provider nobody configured.
#[test]
fn another_apps_key_cannot_read_use_revoke_or_detect_a_grant() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        rt.block_on(async {
            let grant = rig.a.set_managed_secret(&stripe_secret(KEY_1)).await?.grant;
            let missing = "0190aa00-0000-7000-8000-000000000000";
            let url = "https://api.stripe.com/v1/customers";
            for id in [grant.id.as_str(), missing] {
                let not_found = |what: &str, r: Result<(), Error>| match r {
                    Err(Error::GrantNotFound { .. }) => Ok(()),
                    other => Err(anyhow::anyhow!("{what} on {id}: {other:?}")),
                };
                not_found("read", rig.b.grant(id).await.map(|_| ()))?;
                not_found(
                    "retrieve",
                    rig.b
                        .request(Method::GET, url)
                        .grant_id(id)
                        .authorize()
                        .await
                        .map(|_| ()),
                )?;
                not_found(
                    "proxy",
                    rig.b
                        .proxy_request(Method::GET, url)
                        .grant_id(id)
                        .send()
                        .await
                        .map(|_| ()),
                )?;
                not_found("revoke", rig.b.revoke_grant(id, None).await)?;
                let mut rotate = stripe_secret(KEY_1);
                rotate.grant_id = Some(id.to_owned());
                not_found(
                    "rotate",
                    rig.b.set_managed_secret(&rotate).await.map(|_| ()),
                )?;
            }
            ensure!(rig.b.grants().list().await?.items.is_empty());

            // Provider configuration: B cannot read or remove A's OAuth client (404, like a
            // provider nobody configured), and configuring the same provider makes B's own.
            rig.a
                .configure_provider("oauth2", &oauth2_client(Some(CLIENT_SECRET)))
                .await?;
            for provider in ["oauth2", "github"] {
                let not_configured = |what: &str, r: Result<(), Error>| match r {
                    Err(e) if e.code() == Some("provider_config_not_found") => Ok(()),
                    other => Err(anyhow::anyhow!("{what} {provider} config: {other:?}")),
                };
                not_configured("read", rig.b.provider_config(provider).await.map(|_| ()))?;
                not_configured("remove", rig.b.unconfigure_provider(provider).await)?;
            }
            let mut b_client = oauth2_client(None);
            b_client.client_id = "other-client".into();
            let b_config = rig.b.configure_provider("oauth2", &b_client).await?;
            ensure!(
                !b_config.client_secret_set,
                "B sees A's client secret: {b_config:?}"
            );
            let a_config = rig.a.provider_config("oauth2").await?;
            ensure!(
                a_config.client_id == "billing-client" && a_config.client_secret_set,
                "{a_config:?}"
            );
            let a_app = rig.a.whoami().await?.app_id;
            let b_audit = rig.b.audit().limit(1000).list().await?;
            ensure!(
                b_audit
                    .items
                    .iter()
                    .all(|e| e.app_id.as_deref() != Some(a_app.as_str())),
                "app B sees app A's audit rows"
            );
            // A's grant is untouched.
            ensure!(rig.a.grant(&grant.id).await?.status == GrantStatus::Active);
            Ok::<(), anyhow::Error>(())
        })
    })
}

/// Fail closed: when the audit row cannot be written, the call is refused and no auth
/// material leaves the host.
#[test]
fn calls_are_refused_when_the_audit_log_cannot_be_written() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        rt.block_on(async {
            let grant = rig.a.set_managed_secret(&stripe_secret(KEY_1)).await?.grant;
            let store = open_store(dir, env).await?;
            tessera_host::audit::testing::break_audit_writes(&store).await?;
            let url = "https://api.stripe.com/v1/customers";
            let r = rig
                .a
                .request(Method::GET, url)
                .grant_id(&grant.id)
                .authorize()
                .await;
            ensure!(matches!(r, Err(Error::AuditUnavailable { .. })), "{r:?}");
            let p = rig
                .a
                .proxy_request(Method::GET, url)
                .grant_id(&grant.id)
                .send()
                .await;
            ensure!(matches!(p, Err(Error::AuditUnavailable { .. })), "{p:?}");
            tessera_host::audit::testing::repair_audit_writes(&store).await?;
            rig.a
                .request(Method::GET, url)
                .grant_id(&grant.id)
                .authorize()
                .await?;
            store.close().await;
            Ok::<(), anyhow::Error>(())
        })?;
        drop(rig.host);
        let verify = tessera_env(dir, env, &["audit", "verify"])?;
        ensure!(
            verify.status.success(),
            "{}{}",
            stdout(&verify),
            stderr(&verify)
        );
        Ok(())
    })
}

async fn open_store(dir: &Path, env: &[(&str, &str)]) -> Result<tessera_host::store::Store> {
    let url = env
        .iter()
        .find(|(k, _)| *k == "TESSERA_DATABASE_URL")
        .map(|(_, v)| *v);
    let config = DatabaseConfig::from_url_or_data_dir(url, dir)?;
    Ok(tessera_host::store::Store::open(&config).await?)
}

/// The CLI: `secret set` prints the grant id, reads a `-` value from stdin, rotates in
/// place; `grant list|show|revoke`.
#[test]
#[allow(clippy::too_many_lines)] // one CLI session, step by step
fn secret_set_and_grant_commands() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env)?;
        let overrides = format!("api.stripe.com={}", rig.stripe_origin);
        let mut envs = env.to_vec();
        envs.push(("TESSERA_EGRESS_OVERRIDES", &overrides));
        let mut cmd = std::process::Command::new(tessera_bin()?);
        cmd.arg("--data-dir")
            .arg(dir)
            .args([
                "secret",
                "set",
                "--app",
                "billing",
                "--provider",
                "stripe",
                "--field",
                "secret_key=-",
            ])
            .env_remove("TESSERA_DATABASE_URL")
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(format!("{KEY_1}\n").as_bytes())?;
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "{}", stderr(&out));
        let id = stdout(&out).trim().to_owned();
        ensure!(id.len() == 36, "not a grant id: {id:?}");
        ensure!(!stdout(&out).contains(KEY_1) && !stderr(&out).contains(KEY_1));

        let again = json_of(&tessera_env(
            dir,
            &envs,
            &[
                "secret",
                "set",
                "--app",
                "billing",
                "--provider",
                "stripe",
                "--field",
                &format!("secret_key={KEY_1}"),
                "--json",
            ],
        )?)?;
        ensure!(
            again["rotated"] == true && again["grant"]["id"] == id.as_str(),
            "{again}"
        );

        let unknown = tessera_env(
            dir,
            &envs,
            &[
                "secret",
                "set",
                "--app",
                "billing",
                "--provider",
                "nope",
                "--field",
                "a=b",
            ],
        )?;
        ensure!(
            !unknown.status.success() && stderr(&unknown).contains("nope"),
            "{}",
            stderr(&unknown)
        );

        let list = json_of(&tessera_env(
            dir,
            &envs,
            &["grant", "list", "--app", "billing", "--json"],
        )?)?;
        ensure!(
            list[0]["id"] == id.as_str() && list[0]["kind"] == "managed_secret",
            "{list}"
        );
        let other = json_of(&tessera_env(
            dir,
            &envs,
            &["grant", "list", "--app", "other", "--json"],
        )?)?;
        ensure!(other.as_array().is_some_and(Vec::is_empty), "{other}");
        let shown = json_of(&tessera_env(
            dir,
            &envs,
            &["grant", "show", "--app", "billing", &id, "--json"],
        )?)?;
        ensure!(shown["account_label"] == "Acme Inc", "{shown}");
        // A call before the revoke: the host now keeps this grant in memory (SQLite), and the
        // revoke below comes from another process.
        rt.block_on(async {
            rig.a
                .request(Method::GET, "https://api.stripe.com/v1/customers")
                .grant_id(&id)
                .authorize()
                .await
        })?;
        let revoked = json_of(&tessera_env(
            dir,
            &envs,
            &[
                "grant",
                "revoke",
                "--app",
                "billing",
                &id,
                "--reason",
                "offboarding",
                "--json",
            ],
        )?)?;
        ensure!(
            revoked["revoked_now"] == true && revoked["grant"]["status"] == "revoked",
            "{revoked}"
        );
        rt.block_on(async {
            let r = rig
                .a
                .request(Method::GET, "https://api.stripe.com/v1/customers")
                .grant_id(&id)
                .authorize()
                .await;
            ensure!(matches!(r, Err(Error::GrantRevoked { .. })), "{r:?}");
            let audit = rig
                .a
                .audit()
                .grant_id(&id)
                .action("grant.revoke")
                .list()
                .await?;
            let row = audit.items.first().context("revoke row")?;
            ensure!(
                row.detail["via"] == "cli"
                    && row.actor_kind == "operator"
                    && row.reason.as_deref() == Some("offboarding"),
                "{row:?}"
            );
            Ok::<(), anyhow::Error>(())
        })?;
        Ok(())
    })
}

/// Graceful shutdown: on SIGTERM the host stops accepting, lets an in-flight proxied call
/// finish (its caller gets the provider's answer) and flushes that call's audit row before
/// it exits.
#[test]
fn shutdown_drains_in_flight_calls_and_flushes_their_audit_rows() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let mut rig = rig(&rt, dir, env)?;
        let grant = rt
            .block_on(rig.a.set_managed_secret(&stripe_secret(KEY_1)))?
            .grant;
        let app = rig.a.clone();
        let id = grant.id.clone();
        let in_flight = rt.spawn(async move {
            app.proxy_request(
                Method::GET,
                "https://api.stripe.com/v1/customers?delay_ms=1500",
            )
            .grant_id(&id)
            .reason("in flight at shutdown")
            .send()
            .await
        });
        std::thread::sleep(Duration::from_millis(500));
        let pid = rig.host.child.id().to_string();
        let term = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()?;
        ensure!(term.success());
        let response = rt.block_on(in_flight)??;
        ensure!(response.status() == 200, "{}", response.status());
        let status = rig.host.child.wait()?;
        ensure!(status.success(), "the host exited with {status}");
        let export = tessera_env(dir, env, &["audit", "export", "--format", "jsonl"])?;
        ensure!(export.status.success(), "{}", stderr(&export));
        let text = stdout(&export);
        ensure!(
            text.contains("in flight at shutdown"),
            "the in-flight call's audit row is missing: {text}"
        );
        Ok(())
    })
}
