//! The wallet's server side end to end: a real `tessera serve` with its wallet pointed at the
//! `oidc-provider` peer. A user signs in through the peer's own login and consent pages
//! (authorization code, PKCE); the session cookie is HttpOnly and SameSite=Lax; the wallet
//! API shows the user exactly their grants and delegations, refuses changes without the
//! CSRF token, and revokes a grant (the app's next call fails), a delegation (the grant
//! stays), extends a TTL, lists activity (JSON and CSV) and decides approvals; a used
//! `state` is refused; signing out ends the session.

use std::net::TcpListener;

use reqwest::header::{LOCATION, SET_COOKIE};
use reqwest::redirect::Policy;
use serde_json::json;
use tessera_proto::grants::Principal;
use tessera_proto::policy::{RuleKind, RuleRequest};
use tessera_sdk::{App, Error, Method};

use super::calls::{KEY_1, KEY_2, Stripe, create_key, runtime, start_stripe, stripe_secret};
use super::delegations::agent_key;
use super::oidc_peer::{OidcPeer, authorize};
use super::serve::start_listening;
use super::*;

const WALLET_CLIENT: &str = "tessera-wallet";

/// A free port on 127.0.0.1 (the peer must know the wallet's redirect URI before the host
/// starts).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A browser: cookies kept, redirects not followed.
fn browser() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()?)
}

/// Signs in as `login`; returns the callback URL used (to replay it) and the CSRF token.
async fn sign_in(b: &reqwest::Client, origin: &str, login: &str) -> Result<(String, String)> {
    let start = b
        .get(format!("{origin}/wallet/login?return_to=/wallet/grants"))
        .send()
        .await?;
    ensure!(start.status() == 303, "login: {}", start.status());
    let to_idp = start
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("login Location")?
        .to_owned();
    ensure!(
        to_idp.contains("code_challenge_method=S256") && to_idp.contains("nonce="),
        "{to_idp}"
    );
    let callback = authorize(&to_idp, login, &format!("{origin}/wallet/callback")).await?;
    let back = b.get(&callback).send().await?;
    ensure!(back.status() == 303, "callback: {}", back.status());
    ensure!(
        back.headers().get(LOCATION).and_then(|v| v.to_str().ok()) == Some("/wallet/grants"),
        "{:?}",
        back.headers()
    );
    let cookie = back
        .headers()
        .get(SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .context("Set-Cookie")?
        .to_owned();
    ensure!(
        cookie.starts_with("tessera_wallet=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Path=/wallet")
            && cookie.contains("Max-Age="),
        "{cookie}"
    );
    let session: serde_json::Value = b
        .get(format!("{origin}/wallet/api/session"))
        .send()
        .await?
        .json()
        .await?;
    ensure!(session["subject"] == login, "{session}");
    let csrf = session["csrf_token"].as_str().context("csrf")?.to_owned();
    Ok((callback, csrf))
}

#[test]
#[allow(clippy::too_many_lines)] // one story
fn a_user_signs_in_sees_only_their_grants_and_takes_them_back() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let port = free_port()?;
        let origin = format!("http://127.0.0.1:{port}");
        let peer = OidcPeer::start(&json!({
            "clients": [{
                "client_id": WALLET_CLIENT,
                "public": true,
                "redirect_uris": [format!("{origin}/wallet/callback")],
            }],
        }))?;
        let issuer = peer.issuer().to_owned();
        init_with_app(dir, env)?;
        let key = create_key(dir, env, "billing")?;
        json_of(&tessera_env(
            dir,
            env,
            &["agent", "create", "mail-bot", "--app", "billing", "--json"],
        )?)?;
        let bot_key = agent_key(dir, env, "billing", "mail-bot")?;
        // Another account, so ada's second grant is not a rotation of her first.
        let stripe = Stripe::accepting(&[(KEY_1, None), (KEY_2, Some("Globex"))])?;
        let stripe_origin = rt.block_on(start_stripe(stripe.clone()))?;
        let overrides = format!("api.stripe.com={stripe_origin}");
        let mut envs = env.to_vec();
        envs.extend([
            ("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK", "true"),
            ("TESSERA_EGRESS_OVERRIDES", overrides.as_str()),
            ("TESSERA_WALLET_ISSUER", issuer.as_str()),
            ("TESSERA_WALLET_CLIENT_ID", WALLET_CLIENT),
        ]);
        let _host = start_listening(dir, &envs, &format!("127.0.0.1:{port}"))?;
        let app = App::new(&key, &origin)?;
        let bot = App::new(&bot_key, &origin)?;
        rt.block_on(async {
            let user = |sub: &str| Principal::User {
                issuer: issuer.clone(),
                subject: sub.into(),
            };
            let grant_for = |p: Principal, key: &str| {
                let mut r = stripe_secret(key);
                r.principal = Some(p);
                r
            };
            let ada = app
                .set_managed_secret(&grant_for(user("ada"), KEY_1))
                .await?
                .grant;
            let ada2 = app
                .set_managed_secret(&grant_for(user("ada"), KEY_2))
                .await?
                .grant;
            let bob = app
                .set_managed_secret(&grant_for(user("bob"), KEY_1))
                .await?
                .grant;
            app.set_managed_secret(&stripe_secret(KEY_1)).await?;
            let bot_id = bot.whoami().await?.agent_id.context("agent id")?;
            let delegation = app.delegate(&ada2.id, &bot_id, None).await?;
            let customers = "https://api.stripe.com/v1/customers";
            app.proxy_request(Method::GET, customers)
                .grant_id(&ada.id)
                .reason("list customers for ada")
                .send()
                .await?;

            let b = browser()?;
            let unsigned = b.get(format!("{origin}/wallet/api/grants")).send().await?;
            ensure!(unsigned.status() == 401, "{}", unsigned.status());
            let (callback, csrf) = sign_in(&b, &origin, "ada").await?;
            // The same state twice: refused.
            let again = browser()?.get(&callback).send().await?;
            ensure!(
                again.headers().get(LOCATION).and_then(|v| v.to_str().ok())
                    == Some("/wallet/?login_error=invalid_state"),
                "{:?}",
                again.headers()
            );

            // Exactly ada's grants, with the delegation and the app named.
            let page: serde_json::Value = b
                .get(format!("{origin}/wallet/api/grants"))
                .send()
                .await?
                .json()
                .await?;
            let items = page["items"].as_array().context("items")?;
            let ids: Vec<&str> = items
                .iter()
                .filter_map(|i| i["grant"]["id"].as_str())
                .collect();
            ensure!(
                ids.len() == 2 && ids.contains(&ada.id.as_str()) && ids.contains(&ada2.id.as_str()),
                "{page}"
            );
            let delegated = items
                .iter()
                .find(|i| i["grant"]["id"] == ada2.id.as_str())
                .context("ada2")?;
            ensure!(
                delegated["app_name"] == "billing"
                    && delegated["provider_name"] == "Stripe"
                    && delegated["delegations"][0]["agent_name"] == "mail-bot",
                "{delegated}"
            );

            // Another user's grant is not found; no change without the CSRF token.
            let theirs = b
                .delete(format!("{origin}/wallet/api/grants/{}", bob.id))
                .header("x-csrf-token", &csrf)
                .send()
                .await?;
            ensure!(theirs.status() == 404, "{}", theirs.status());
            let forged = b
                .delete(format!("{origin}/wallet/api/grants/{}", ada.id))
                .send()
                .await?;
            let problem: serde_json::Value = forged.json().await?;
            ensure!(problem["code"] == "csrf_token_invalid", "{problem}");

            // Activity: the call, with the developer's reason; and as CSV.
            let activity: serde_json::Value = b
                .get(format!("{origin}/wallet/api/grants/{}/activity", ada.id))
                .send()
                .await?
                .json()
                .await?;
            ensure!(
                activity["items"]
                    .as_array()
                    .is_some_and(|rows| rows.iter().any(|r| r["action"] == "proxy.execute"
                        && r["reason"] == "list customers for ada")),
                "{activity}"
            );
            let csv = b
                .get(format!(
                    "{origin}/wallet/api/grants/{}/activity?format=csv",
                    ada.id
                ))
                .send()
                .await?
                .text()
                .await?;
            ensure!(
                csv.starts_with("time,action,outcome") && csv.contains("list customers for ada"),
                "{csv}"
            );

            // A TTL within the operator's maximum; beyond it, refused.
            let ttl = b
                .put(format!("{origin}/wallet/api/grants/{}/ttl", ada.id))
                .header("x-csrf-token", &csrf)
                .json(&json!({"ttl_secs": 3600}))
                .send()
                .await?;
            let extended: serde_json::Value = ttl.json().await?;
            ensure!(extended["valid_until"].is_string(), "{extended}");
            let too_long = b
                .put(format!("{origin}/wallet/api/grants/{}/ttl", ada.id))
                .header("x-csrf-token", &csrf)
                .json(&json!({"ttl_secs": 10_u64.pow(10)}))
                .send()
                .await?;
            ensure!(too_long.status() == 400, "{}", too_long.status());

            // A held call on ada's grant: ada sees it and approves it from the wallet.
            app.create_policy_rule(&RuleRequest {
                name: "writes".into(),
                applies_to: format!("grant:{}", ada.id),
                rule: RuleKind::RequireApproval {
                    methods: vec!["POST".into()],
                    paths: Vec::new(),
                    ttl_secs: None,
                },
            })
            .await?;
            let held = app
                .proxy_request(Method::POST, customers)
                .grant_id(&ada.id)
                .body("name=Ada")
                .send()
                .await;
            let Err(Error::ApprovalPending { approval_id, .. }) = held else {
                bail!("expected a held call: {held:?}");
            };
            let pending: serde_json::Value = b
                .get(format!("{origin}/wallet/api/approvals?status=pending"))
                .send()
                .await?
                .json()
                .await?;
            ensure!(
                pending["items"][0]["id"] == approval_id.as_str()
                    && pending["items"][0]["app_name"] == "billing",
                "{pending}"
            );
            let shown: serde_json::Value = b
                .get(format!("{origin}/wallet/api/approvals/{approval_id}"))
                .send()
                .await?
                .json()
                .await?;
            ensure!(shown["request"]["body_text"] == "name=Ada", "{shown}");
            let approved: serde_json::Value = b
                .post(format!(
                    "{origin}/wallet/api/approvals/{approval_id}/approve"
                ))
                .header("x-csrf-token", &csrf)
                .json(&json!({"request_sha256": shown["request_sha256"]}))
                .send()
                .await?
                .json()
                .await?;
            ensure!(
                approved["status"] == "executed" && approved["decided_via"] == "wallet",
                "{approved}"
            );

            // A delegation's TTL within the maximum; a managed secret is not reconnected.
            let ttl: serde_json::Value = b
                .put(format!(
                    "{origin}/wallet/api/delegations/{}/ttl",
                    delegation.id
                ))
                .header("x-csrf-token", &csrf)
                .json(&json!({"ttl_secs": 7200}))
                .send()
                .await?
                .json()
                .await?;
            ensure!(
                ttl["expires_at"].is_string() && ttl["status"] == "active",
                "{ttl}"
            );
            let not_oauth = b
                .post(format!("{origin}/wallet/api/grants/{}/reconnect", ada2.id))
                .header("x-csrf-token", &csrf)
                .send()
                .await?;
            ensure!(not_oauth.status() == 400, "{}", not_oauth.status());

            // Revoke a delegation: the agent loses the grant, the grant stays.
            let ended = b
                .delete(format!("{origin}/wallet/api/delegations/{}", delegation.id))
                .header("x-csrf-token", &csrf)
                .send()
                .await?;
            ensure!(ended.status() == 204, "{}", ended.status());
            let r = bot
                .proxy_request(Method::GET, customers)
                .grant_id(&ada2.id)
                .send()
                .await;
            ensure!(matches!(r, Err(Error::GrantNotFound { .. })), "{r:?}");
            ensure!(app.delegation(&delegation.id).await?.revoked_by.as_deref() == Some("user"));
            app.proxy_request(Method::GET, customers)
                .grant_id(&ada2.id)
                .send()
                .await?;

            // Revoke a grant: the app's next call fails; the revocation names the wallet.
            let revoked = b
                .delete(format!("{origin}/wallet/api/grants/{}", ada.id))
                .header("x-csrf-token", &csrf)
                .send()
                .await?;
            ensure!(revoked.status() == 200, "{}", revoked.status());
            let r = app
                .proxy_request(Method::GET, customers)
                .grant_id(&ada.id)
                .send()
                .await;
            ensure!(matches!(r, Err(Error::GrantRevoked { .. })), "{r:?}");
            let row = app
                .audit()
                .action("grant.revoke")
                .list()
                .await?
                .items
                .into_iter()
                .find(|r| r.grant_id.as_deref() == Some(ada.id.as_str()))
                .context("the revocation's row")?;
            ensure!(
                row.actor_kind == "user" && row.detail["via"] == "wallet",
                "{row:?}"
            );

            // Sign out: the session is over.
            let out = b
                .post(format!("{origin}/wallet/api/logout"))
                .header("x-csrf-token", &csrf)
                .send()
                .await?;
            ensure!(out.status() == 204, "{}", out.status());
            let after = b.get(format!("{origin}/wallet/api/session")).send().await?;
            ensure!(after.status() == 401, "{}", after.status());
            Ok(())
        })
    })
}

/// An OAuth grant is connected again from the wallet: the reconnect link is the app's own
/// connect flow, for the same provider and user, and finishing it updates the same grant.
#[test]
fn a_user_reconnects_an_oauth_grant_from_the_wallet() -> Result<()> {
    use super::oauth_connect::{CLIENT_ID, CLIENT_SECRET, configure, location, session_request};
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let port = free_port()?;
        let origin = format!("http://127.0.0.1:{port}");
        let connect_callback = format!("{origin}/connect/callback");
        let peer = OidcPeer::start(&json!({
            "clients": [
                {
                    "client_id": WALLET_CLIENT,
                    "public": true,
                    "redirect_uris": [format!("{origin}/wallet/callback")],
                },
                {
                    "client_id": CLIENT_ID,
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [connect_callback.clone()],
                },
            ],
            "access_token_ttl": 600,
        }))?;
        let issuer = peer.issuer().to_owned();
        init_with_app(dir, env)?;
        let key = create_key(dir, env, "billing")?;
        configure(dir, env, &issuer)?;
        let mut envs = env.to_vec();
        envs.extend([
            ("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK", "true"),
            ("TESSERA_WALLET_ISSUER", issuer.as_str()),
            ("TESSERA_WALLET_CLIENT_ID", WALLET_CLIENT),
        ]);
        let _host = start_listening(dir, &envs, &format!("127.0.0.1:{port}"))?;
        let app = App::new(&key, &origin)?;
        rt.block_on(async {
            let ada = Principal::User {
                issuer: issuer.clone(),
                subject: "ada".into(),
            };
            // ada connects her account through the app.
            let session = app
                .create_connect_session(&tessera_proto::connect::ConnectSessionRequest {
                    principal: ada.clone(),
                    ..session_request(None)
                })
                .await?;
            let link = session.connect_url.context("connect_url")?;
            let b = browser()?;
            let go = b.post(&link).form(&[("decision", "allow")]).send().await?;
            let callback = authorize(&location(&go)?, "ada", &connect_callback).await?;
            ensure!(b.get(&callback).send().await?.status() == 200);
            let grant_id = app
                .connect_session(&session.id)
                .await?
                .grant_id
                .context("grant")?;

            // In her wallet: the grant, and a reconnect link into the same flow.
            let (_, csrf) = sign_in(&b, &origin, "ada").await?;
            let page: serde_json::Value = b
                .get(format!("{origin}/wallet/api/grants"))
                .send()
                .await?
                .json()
                .await?;
            ensure!(
                page["items"][0]["grant"]["id"] == grant_id.as_str(),
                "{page}"
            );
            ensure!(page["items"][0]["grant"]["kind"] == "oauth", "{page}");
            let again: serde_json::Value = b
                .post(format!("{origin}/wallet/api/grants/{grant_id}/reconnect"))
                .header("x-csrf-token", &csrf)
                .send()
                .await?
                .json()
                .await?;
            let relink = again["connect_url"].as_str().context("connect_url")?;
            ensure!(relink.starts_with(&format!("{origin}/connect/")), "{again}");
            let go = b.post(relink).form(&[("decision", "allow")]).send().await?;
            let callback = authorize(&location(&go)?, "ada", &connect_callback).await?;
            let back = b.get(&callback).send().await?;
            ensure!(
                location(&back)?.starts_with(&format!("{origin}/wallet/")),
                "back to the wallet: {:?}",
                back.headers()
            );
            let session_id = again["session_id"].as_str().context("session_id")?;
            let done = app.connect_session(session_id).await?;
            ensure!(
                done.grant_id.as_deref() == Some(grant_id.as_str()),
                "the same grant, connected again: {done:?}"
            );
            Ok(())
        })
    })
}

/// The wallet in a real browser (Debian's chromium, driven by playwright-core through
/// `tests/peers/wallet-browser.mjs`): sign in at the identity provider's own pages, see the
/// grants by app, approve one held request and deny another, open activity, remove an
/// agent's access, revoke a grant, check 375 px, sign out. Then the effects, from the app's
/// side. Screenshots go to `target/wallet-screenshots`, or to `docs/img` with
/// `TESSERA_UPDATE_SCREENSHOTS=1`.
#[test]
#[allow(clippy::too_many_lines)] // one story
fn the_wallet_works_in_a_browser() -> Result<()> {
    let shots = if std::env::var("TESSERA_UPDATE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        root().join("docs/img")
    } else {
        root().join("target/wallet-screenshots")
    };
    let rt = runtime()?;
    // Another account, so ada's second grant is not a rotation of her first.
    let stripe = Stripe::accepting(&[(KEY_1, None), (KEY_2, Some("Globex"))])?;
    let rig = browser_rig(&rt, &stripe)?;
    let (issuer, origin) = (rig.issuer.clone(), rig.origin.clone());
    let app = rig.app.clone().caller("invoice-sync");
    let customers = "https://api.stripe.com/v1/customers";
    let (acme, globex, delegation) = rt.block_on(async {
        let ada = Principal::User {
            issuer: issuer.clone(),
            subject: "ada".into(),
        };
        let mut one = stripe_secret(KEY_1);
        one.principal = Some(ada.clone());
        let mut two = stripe_secret(KEY_2);
        two.principal = Some(ada);
        let acme = app.set_managed_secret(&one).await?.grant;
        let globex = app.set_managed_secret(&two).await?.grant;
        let bot = app.create_agent("mail-bot").await?;
        let delegation = app
            .delegate(
                &globex.id,
                &bot.id,
                Some(std::time::Duration::from_hours(24)),
            )
            .await?;
        app.proxy_request(Method::GET, customers)
            .grant_id(&acme.id)
            .reason("nightly sync")
            .send()
            .await?;
        app.create_policy_rule(&RuleRequest {
            name: "customer-writes".into(),
            applies_to: format!("grant:{}", acme.id),
            rule: RuleKind::RequireApproval {
                methods: vec!["POST".into()],
                paths: Vec::new(),
                ttl_secs: None,
            },
        })
        .await?;
        for body in ["name=Ada", "name=Mallory"] {
            let held = app
                .proxy_request(Method::POST, customers)
                .grant_id(&acme.id)
                .body(body)
                .send()
                .await;
            ensure!(
                matches!(held, Err(Error::ApprovalPending { .. })),
                "{held:?}"
            );
        }
        Ok::<_, anyhow::Error>((acme, globex, delegation))
    })?;
    let seen = run_browser(&json!({
        "origin": origin,
        "login": "ada",
        "screenshots": shots,
    }))?;
    println!("the browser saw: {seen}");
    ensure!(
        seen["grants"] == 2 && seen["pending"] == 2 && seen["history"] == 2,
        "{seen}"
    );
    ensure!(seen["apps"] == json!(["billing"]), "{seen}");
    rt.block_on(async {
        let created = stripe
            .created
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .clone();
        ensure!(
            created == ["name=Ada"],
            "only the approved request was sent: {created:?}"
        );
        let r = app
            .proxy_request(Method::GET, customers)
            .grant_id(&acme.id)
            .send()
            .await;
        ensure!(matches!(r, Err(Error::GrantRevoked { .. })), "{r:?}");
        app.proxy_request(Method::GET, customers)
            .grant_id(&globex.id)
            .send()
            .await?;
        ensure!(
            app.delegation(&delegation.id).await?.revoked_by.as_deref() == Some("user"),
            "the user removed the agent's access"
        );
        Ok(())
    })
}

/// A user with 500 grants: the wallet shows them 50 at a time and adds 50 more on request.
#[test]
fn a_long_list_of_grants_is_shown_a_page_at_a_time() -> Result<()> {
    const MANY: usize = 500;
    let rt = runtime()?;
    let keys: Vec<String> = (0..MANY).map(|n| format!("sk_test_Many{n:04}x")).collect();
    let names: Vec<String> = (0..MANY).map(|n| format!("Shop {n:04}")).collect();
    let accepted: Vec<(&str, Option<&str>)> = keys
        .iter()
        .zip(&names)
        .map(|(k, n)| (k.as_str(), Some(n.as_str())))
        .collect();
    let stripe = Stripe::accepting(&accepted)?;
    let rig = browser_rig(&rt, &stripe)?;
    let (issuer, app) = (rig.issuer.clone(), rig.app.clone());
    rt.block_on(async {
        let ada = Principal::User {
            issuer: issuer.clone(),
            subject: "ada".into(),
        };
        for chunk in keys.chunks(25) {
            let mut tasks = Vec::new();
            for k in chunk {
                let mut r = stripe_secret(k);
                r.principal = Some(ada.clone());
                let app = app.clone();
                tasks.push(tokio::spawn(
                    async move { app.set_managed_secret(&r).await },
                ));
            }
            for t in tasks {
                t.await??;
            }
        }
        Ok::<_, anyhow::Error>(())
    })?;
    let seen = run_browser(&json!({
        "origin": rig.origin,
        "login": "ada",
        "screenshots": root().join("target/wallet-screenshots/many"),
        "many": MANY,
    }))?;
    ensure!(seen["first"] == 50 && seen["second"] == 100, "{seen}");
    Ok(())
}

/// A host whose wallet signs users in at its own identity-provider peer, with app billing, an
/// app key for it, and `stripe` behind egress: where the browser tests start.
struct BrowserRig {
    _data: tempfile::TempDir,
    _peer: OidcPeer,
    _host: super::serve::Host,
    origin: String,
    issuer: String,
    app: App,
}

fn browser_rig(rt: &tokio::runtime::Runtime, stripe: &Stripe) -> Result<BrowserRig> {
    let data = tempfile::tempdir()?;
    let dir = data.path().join("data");
    let port = free_port()?;
    let origin = format!("http://127.0.0.1:{port}");
    let peer = OidcPeer::start(&json!({
        "clients": [{
            "client_id": WALLET_CLIENT,
            "public": true,
            "redirect_uris": [format!("{origin}/wallet/callback")],
        }],
    }))?;
    let issuer = peer.issuer().to_owned();
    init_with_app(&dir, &[])?;
    let key = create_key(&dir, &[], "billing")?;
    let stripe_origin = rt.block_on(start_stripe(stripe.clone()))?;
    let overrides = format!("api.stripe.com={stripe_origin}");
    let envs = [
        ("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK", "true"),
        ("TESSERA_EGRESS_OVERRIDES", overrides.as_str()),
        ("TESSERA_WALLET_ISSUER", issuer.as_str()),
        ("TESSERA_WALLET_CLIENT_ID", WALLET_CLIENT),
    ];
    let host = start_listening(&dir, &envs, &format!("127.0.0.1:{port}"))?;
    let app = App::new(&key, &origin)?;
    Ok(BrowserRig {
        _data: data,
        _peer: peer,
        _host: host,
        origin,
        issuer,
        app,
    })
}

/// Runs `tests/peers/wallet-browser.mjs` with `config`; returns what it saw.
fn run_browser(config: &serde_json::Value) -> Result<serde_json::Value> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        Path::new(&chromium).exists(),
        "{chromium} is missing: `cargo xtask test` installs Debian's chromium (as root), or set CHROMIUM"
    );
    let out = Command::new("node")
        .arg(root().join("tests/peers/wallet-browser.mjs"))
        .arg(config.to_string())
        .env("CHROMIUM", &chromium)
        .output()
        .context("cannot run node")?;
    let report = stdout(&out);
    ensure!(
        out.status.success(),
        "the browser run failed: {report}\n{}",
        stderr(&out)
    );
    Ok(serde_json::from_str(
        report.trim().lines().last().unwrap_or("{}"),
    )?)
}
