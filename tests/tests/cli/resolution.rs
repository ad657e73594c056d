//! Grant resolution end to end: calls that name no grant, against a real `tessera serve` and
//! the Stripe stand-in of `calls`. With a `user_token` (ID tokens minted by the
//! `oidc-provider` peer, verified by the host against its published keys) the host takes the
//! user's own grant, else their groups' (the `groups` claim), never the app's; without one,
//! only the app's own (`system`) grant. The provider comes from the URL's host unless named,
//! the account label narrows; and the refusals: `ambiguous_grant` with its candidates,
//! `grant_not_found`, `user_token_invalid`, `user_token_expired`, `idp_not_configured`,
//! `invalid_request`, `provider_not_found`.

use std::collections::BTreeSet;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use tessera_proto::grants::{Grant, Principal};
use tessera_sdk::{App, AuditEvent, Error, Method};

use super::agents::code;
use super::calls::{Stripe, create_key, runtime, start_stripe, stripe_secret};
use super::oidc_peer::{CLIENT, OidcPeer, REDIRECT_URI, connect_as};
use super::serve::{Host, start_with};
use super::*;

const STRIPE_URL: &str = "https://api.stripe.com/v1/customers";

/// One Stripe key per grant, so the auth material a call gets shows whose credential it is.
const ADA_KEY: &str = "sk_test_AdaOwnR3k8Lm2Qp7Vx5";
/// Ada's second Stripe account: the stand-in names it `Acme Labs`.
const ADA_LABS_KEY: &str = "sk_test_AdaLabsT6n1Jw4Zc9Hs";
const BOB_KEY: &str = "sk_test_BobOwnY2f5Gk8Nd3Pu7";
const DAVE_KEY: &str = "sk_test_DaveOwnE7q4Bv1Xm6Rt";
const FINANCE_KEY: &str = "sk_test_FinanceW9h3Ca6Ls2Ko";
const SYSTEM_KEY: &str = "sk_test_SystemU4j8Fy1Ne5Gi0";

/// The account label the stand-in gives every key but [`ADA_LABS_KEY`].
const ACME_INC: &str = "Acme Inc";
const ACME_LABS: &str = "Acme Labs";

/// The peer's users: ada and bob have no groups, carol and dave are in `finance`, erin in none.
fn start_peer(id_token_ttl: u64) -> Result<OidcPeer> {
    OidcPeer::start(&json!({
        "clients": [{
            "client_id": CLIENT.0,
            "client_secret": CLIENT.1,
            "redirect_uris": [REDIRECT_URI],
        }],
        "groups": {"carol": ["finance"], "dave": ["finance"]},
        "id_token_ttl": id_token_ttl,
    }))
}

/// An ID token for `login` at `peer`, with its `groups` claim (`profile` scope).
async fn id_token(peer: &OidcPeer, login: &str) -> Result<String> {
    let http = reqwest::Client::new();
    let (_, tokens) = connect_as(peer, &http, login, "openid email profile").await?;
    Ok(tokens["id_token"].as_str().context("id_token")?.to_owned())
}

/// ID tokens for `logins` at `peer`, in order.
fn id_tokens(peer: &OidcPeer, logins: &[&str]) -> Result<Vec<String>> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut tokens = Vec::new();
        for login in logins {
            tokens.push(id_token(peer, login).await?);
        }
        Ok(tokens)
    })
}

fn user(issuer: &str, subject: &str) -> Principal {
    Principal::User {
        issuer: issuer.into(),
        subject: subject.into(),
    }
}

/// Two apps on one host: billing (app key `a`), whose identity provider is the peer when the
/// rig is given an issuer, and other (app key `b`), which has none.
struct Rig {
    _host: Host,
    stripe: Stripe,
    a: App,
    b: App,
}

/// Sets up the apps, starts the Stripe stand-in (accepting every key above) and the host (which
/// may fetch the peer's keys over http on 127.0.0.1), and configures billing's identity
/// provider: `issuer`, audience the peer's client, groups in `groups`, no clock leeway.
fn rig(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    env: &[(&str, &str)],
    issuer: Option<&str>,
) -> Result<Rig> {
    init_with_app(dir, env)?;
    json_of(&tessera_env(
        dir,
        env,
        &["app", "create", "other", "--json"],
    )?)?;
    let key_a = create_key(dir, env, "billing")?;
    let key_b = create_key(dir, env, "other")?;
    if let Some(issuer) = issuer {
        json_of(&tessera_env(
            dir,
            env,
            &[
                "idp",
                "configure",
                "--app",
                "billing",
                "--issuer",
                issuer,
                "--audience",
                CLIENT.0,
                "--groups-claim",
                "groups",
                "--leeway-secs",
                "0",
                "--json",
            ],
        )?)?;
    }
    let stripe = Stripe::default();
    stripe
        .valid
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .extend(
            [
                ADA_KEY,
                ADA_LABS_KEY,
                BOB_KEY,
                DAVE_KEY,
                FINANCE_KEY,
                SYSTEM_KEY,
            ]
            .map(String::from),
        );
    stripe
        .names
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .insert(ADA_LABS_KEY.into(), ACME_LABS.into());
    let origin = rt.block_on(start_stripe(stripe.clone()))?;
    let overrides = format!("api.stripe.com={origin}");
    let mut envs = env.to_vec();
    envs.push(("TESSERA_EGRESS_OVERRIDES", &overrides));
    envs.push(("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK", "true"));
    let host = start_with(dir, None, &envs)?;
    let url = format!("http://{}", host.addr);
    Ok(Rig {
        a: App::new(&key_a, &url)?,
        b: App::new(&key_b, &url)?,
        _host: host,
        stripe,
    })
}

/// Stores Stripe key `key` in `app` for `principal`; returns the grant.
async fn store(app: &App, key: &str, principal: Principal) -> Result<Grant> {
    let mut request = stripe_secret(key);
    request.principal = Some(principal);
    Ok(app.set_managed_secret(&request).await?.grant)
}

/// The bearer key among `headers`.
fn bearer(headers: &[(String, String)]) -> Option<&str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.strip_prefix("Bearer "))
}

/// The audit row `action` of the call the host answered with `request_id`.
async fn audit_row(app: &App, action: &str, request_id: &str) -> Result<AuditEvent> {
    let page = app.audit().action(action).limit(1000).list().await?;
    page.items
        .into_iter()
        .find(|e| e.request_id.as_deref() == Some(request_id))
        .with_context(|| format!("no {action} row for request {request_id}"))
}

/// A call without a grant id, in retrieve mode: the grant the host picked, after checking the
/// auth material is `key`'s and the call's audit row names the grant, `principal` and `user`.
async fn retrieve_picks(
    app: &App,
    token: Option<&str>,
    key: &str,
    principal: &str,
    user: Option<&str>,
) -> Result<String> {
    let mut call = app
        .request(Method::GET, STRIPE_URL)
        .reason("resolution test");
    if let Some(token) = token {
        call = call.user_token(token);
    }
    let authorized = call.authorize().await?;
    ensure!(authorized.provider == "stripe", "{authorized:?}");
    ensure!(
        bearer(&authorized.headers) == Some(key),
        "signed with another credential than {key}'s"
    );
    let row = audit_row(app, "tokens.retrieve", &authorized.request_id).await?;
    ensure!(
        row.outcome == "ok"
            && row.grant_id.as_deref() == Some(authorized.grant_id.as_str())
            && row.principal.as_deref() == Some(principal)
            && row.provider.as_deref() == Some("stripe")
            && row.detail["user"].as_str() == user,
        "{row:?}"
    );
    Ok(authorized.grant_id)
}

/// The same in proxy mode: the host's call reaches Stripe, and its audit row names the grant
/// (returned), `principal` and `user`.
async fn proxy_picks(
    app: &App,
    token: Option<&str>,
    principal: &str,
    user: Option<&str>,
) -> Result<String> {
    let mut call = app
        .proxy_request(Method::GET, STRIPE_URL)
        .reason("resolution test");
    if let Some(token) = token {
        call = call.user_token(token);
    }
    let proxied = call.send().await?;
    ensure!(
        proxied.status() == 200 && proxied.provider() == "stripe",
        "{}",
        proxied.status()
    );
    let request_id = proxied.request_id().context("no request id")?.to_owned();
    let body: Value = proxied.json().await?;
    ensure!(body["object"] == "list", "{body}");
    let row = audit_row(app, "proxy.execute", &request_id).await?;
    ensure!(
        row.outcome == "ok"
            && row.principal.as_deref() == Some(principal)
            && row.detail["user"].as_str() == user,
        "{row:?}"
    );
    row.grant_id.context("the proxy row names no grant")
}

/// The problem codes of the same call without a grant id in both modes: `(retrieve, proxy)`.
async fn refusals(
    app: &App,
    url: &str,
    token: Option<&str>,
    provider: Option<&str>,
    account: Option<&str>,
) -> Result<(String, String)> {
    let mut retrieve = app.request(Method::GET, url);
    let mut proxy = app.proxy_request(Method::GET, url);
    if let Some(token) = token {
        retrieve = retrieve.user_token(token);
        proxy = proxy.user_token(token);
    }
    if let Some(provider) = provider {
        retrieve = retrieve.provider(provider);
        proxy = proxy.provider(provider);
    }
    if let Some(account) = account {
        retrieve = retrieve.account(account);
        proxy = proxy.account(account);
    }
    Ok((code(retrieve.authorize().await)?, code(proxy.send().await)?))
}

/// Asserts both modes of a call are refused with `expected`.
async fn refused(
    app: &App,
    token: Option<&str>,
    account: Option<&str>,
    expected: &str,
) -> Result<()> {
    let codes = refusals(app, STRIPE_URL, token, None, account).await?;
    ensure!(
        codes == (expected.to_owned(), expected.to_owned()),
        "expected {expected}, got {codes:?}"
    );
    Ok(())
}

/// With a user token and no grant id, the provider is inferred from the URL's host and the
/// user's own grant is used in both modes; a user without one gets their group's grant; a
/// user with both gets their own; a user with neither gets `grant_not_found` although the app
/// has a grant of its own. Each call's audit row names the grant, its principal and the user.
#[test]
fn a_user_token_picks_the_users_own_grant_then_their_groups_never_the_apps() -> Result<()> {
    let peer = start_peer(3600)?;
    let tokens = id_tokens(&peer, &["ada", "carol", "dave", "erin"])?;
    let [ada, carol, dave, erin] = tokens.as_slice() else {
        bail!("four tokens expected")
    };
    let iss = peer.issuer();
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env, Some(iss))?;
        rt.block_on(async {
            let ada_own = store(&rig.a, ADA_KEY, user(iss, "ada")).await?;
            let finance = store(&rig.a, FINANCE_KEY, Principal::Group("finance".into())).await?;
            let dave_own = store(&rig.a, DAVE_KEY, user(iss, "dave")).await?;
            store(&rig.a, SYSTEM_KEY, Principal::System).await?;

            for (token, sub, grant, key, principal) in [
                (ada, "ada", &ada_own, ADA_KEY, format!("user:{iss}:ada")),
                (
                    carol,
                    "carol",
                    &finance,
                    FINANCE_KEY,
                    "group:finance".to_owned(),
                ),
                (
                    dave,
                    "dave",
                    &dave_own,
                    DAVE_KEY,
                    format!("user:{iss}:dave"),
                ),
            ] {
                let who = format!("{iss}:{sub}");
                let picked =
                    retrieve_picks(&rig.a, Some(token), key, &principal, Some(&who)).await?;
                ensure!(
                    picked == grant.id,
                    "{sub}: retrieve used {picked}, not {}",
                    grant.id
                );
                let picked = proxy_picks(&rig.a, Some(token), &principal, Some(&who)).await?;
                ensure!(
                    picked == grant.id,
                    "{sub}: proxy used {picked}, not {}",
                    grant.id
                );
            }

            refused(&rig.a, Some(erin), None, "grant_not_found").await?;
            // Naming the provider changes nothing.
            let codes = refusals(&rig.a, STRIPE_URL, Some(erin), Some("stripe"), None).await?;
            ensure!(
                codes.0 == "grant_not_found" && codes.1 == "grant_not_found",
                "{codes:?}"
            );
            Ok::<(), anyhow::Error>(())
        })
    })
}

/// Two grants of one user for Stripe (two accounts): a call naming no account is
/// `ambiguous_grant` listing exactly those two with their ids and account labels (not another
/// user's grant, not the app's); the account label, in any case, picks one; an account the
/// user has no grant for is `grant_not_found`.
#[test]
#[allow(clippy::too_many_lines)] // one user's story, step by step
fn two_accounts_of_one_user_are_ambiguous_until_the_call_names_one() -> Result<()> {
    let peer = start_peer(3600)?;
    let tokens = id_tokens(&peer, &["ada", "bob"])?;
    let [ada, bob] = tokens.as_slice() else {
        bail!("two tokens expected")
    };
    let iss = peer.issuer();
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env, Some(iss))?;
        rt.block_on(async {
            let inc = store(&rig.a, ADA_KEY, user(iss, "ada")).await?;
            let labs = store(&rig.a, ADA_LABS_KEY, user(iss, "ada")).await?;
            ensure!(
                inc.id != labs.id,
                "the second account rotated the first grant"
            );
            ensure!(
                inc.account_label == ACME_INC && labs.account_label == ACME_LABS,
                "{inc:?} {labs:?}"
            );
            let bobs = store(&rig.a, BOB_KEY, user(iss, "bob")).await?;
            store(&rig.a, SYSTEM_KEY, Principal::System).await?;

            let expected: BTreeSet<(String, String)> = [
                (inc.id.clone(), ACME_INC.to_owned()),
                (labs.id.clone(), ACME_LABS.to_owned()),
            ]
            .into();
            let ada_principal = format!("user:{iss}:ada");
            let retrieve = rig
                .a
                .request(Method::GET, STRIPE_URL)
                .user_token(ada)
                .authorize()
                .await;
            let proxy = rig
                .a
                .proxy_request(Method::GET, STRIPE_URL)
                .user_token(ada)
                .send()
                .await
                .map(|_| ());
            for r in [retrieve.map(|_| ()), proxy] {
                let Err(Error::AmbiguousGrant { candidates, detail }) = r else {
                    bail!("expected ambiguous_grant, got {r:?}");
                };
                let listed: BTreeSet<(String, String)> = candidates
                    .iter()
                    .map(|c| (c.grant_id.clone(), c.account.clone()))
                    .collect();
                ensure!(
                    candidates.len() == 2 && listed == expected,
                    "{candidates:?} ({detail})"
                );
                ensure!(
                    candidates
                        .iter()
                        .all(|c| c.provider == "stripe" && c.principal == ada_principal),
                    "{candidates:?}"
                );
            }
            let denied = rig
                .a
                .audit()
                .action("tokens.retrieve")
                .outcome("denied")
                .list()
                .await?;
            ensure!(
                denied
                    .items
                    .iter()
                    .any(|e| e.detail["error"] == "ambiguous_grant" && e.grant_id.is_none()),
                "{denied:?}"
            );

            // The account label picks one, case-insensitively, in both modes.
            let who = format!("{iss}:ada");
            for (account, grant, key) in [
                ("acme labs", &labs, ADA_LABS_KEY),
                ("ACME INC", &inc, ADA_KEY),
            ] {
                let authorized = rig
                    .a
                    .request(Method::GET, STRIPE_URL)
                    .user_token(ada)
                    .account(account)
                    .authorize()
                    .await?;
                ensure!(
                    authorized.grant_id == grant.id && bearer(&authorized.headers) == Some(key),
                    "{account}: {authorized:?}"
                );
                let proxied = rig
                    .a
                    .proxy_request(Method::GET, STRIPE_URL)
                    .user_token(ada)
                    .provider("stripe")
                    .account(account)
                    .send()
                    .await?;
                ensure!(proxied.status() == 200, "{account}: {}", proxied.status());
                let id = proxied.request_id().context("request id")?.to_owned();
                let row = audit_row(&rig.a, "proxy.execute", &id).await?;
                ensure!(
                    row.grant_id.as_deref() == Some(grant.id.as_str())
                        && row.principal.as_deref() == Some(ada_principal.as_str())
                        && row.detail["user"] == who.as_str(),
                    "{account}: {row:?}"
                );
            }

            // An account ada has no grant for; bob's grant is an `Acme Inc` one, not hers.
            refused(&rig.a, Some(ada), Some("Globex"), "grant_not_found").await?;
            // Bob has one grant: no ambiguity for him, whatever ada holds.
            let picked = retrieve_picks(
                &rig.a,
                Some(bob),
                BOB_KEY,
                &format!("user:{iss}:bob"),
                Some(&format!("{iss}:bob")),
            )
            .await?;
            ensure!(picked == bobs.id, "bob's call used {picked}");
            refused(&rig.a, Some(bob), Some(ACME_LABS), "grant_not_found").await?;
            Ok::<(), anyhow::Error>(())
        })
    })
}

/// An app key without a user token reaches only the app's own (`system`) grant: with only
/// user and group grants stored the call is `grant_not_found`; once the app has its own
/// grant, that one is used in both modes. Another app's key finds nothing.
#[test]
fn without_a_user_token_an_app_key_uses_only_the_apps_system_grant() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env, None)?;
        rt.block_on(async {
            let issuer = "https://idp.example.com";
            store(&rig.a, ADA_KEY, user(issuer, "ada")).await?;
            store(&rig.a, FINANCE_KEY, Principal::Group("finance".into())).await?;
            refused(&rig.a, None, None, "grant_not_found").await?;
            refused(&rig.a, None, Some(ACME_INC), "grant_not_found").await?;

            let system = store(&rig.a, SYSTEM_KEY, Principal::System).await?;
            let picked = retrieve_picks(&rig.a, None, SYSTEM_KEY, "system", None).await?;
            ensure!(picked == system.id, "retrieve used {picked}");
            let picked = proxy_picks(&rig.a, None, "system", None).await?;
            ensure!(picked == system.id, "proxy used {picked}");

            // The other app has no grant; billing's are not its to find.
            refused(&rig.b, None, None, "grant_not_found").await?;
            Ok::<(), anyhow::Error>(())
        })
    })
}

/// More fitting grants than an `ambiguous_grant` problem lists: `account` still finds any of
/// them (it narrows the query itself, not the listed few), and the problem says that more fit
/// than it lists.
#[test]
fn an_account_finds_its_grant_among_more_than_the_listed_candidates() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env, None)?;
        rt.block_on(async {
            let mut last = String::new();
            for i in 0..21 {
                let key = format!("sk_test_ManyAccounts{i:02}Q8w3Ze5R");
                let lock = || anyhow::anyhow!("lock");
                rig.stripe
                    .valid
                    .lock()
                    .map_err(|_| lock())?
                    .push(key.clone());
                rig.stripe
                    .names
                    .lock()
                    .map_err(|_| lock())?
                    .insert(key.clone(), format!("Account {i}"));
                last = store(&rig.a, &key, Principal::System).await?.id;
            }
            let picked = rig
                .a
                .request(Method::GET, STRIPE_URL)
                .account("account 20")
                .authorize()
                .await?;
            ensure!(picked.grant_id == last, "{picked:?}");
            match rig.a.request(Method::GET, STRIPE_URL).authorize().await {
                Err(Error::AmbiguousGrant { candidates, detail })
                    if candidates.len() == 20 && detail.contains("more than 20") => {}
                other => bail!("expected ambiguous_grant listing 20 of more: {other:?}"),
            }
            Ok::<(), anyhow::Error>(())
        })
    })
}

/// A call whose provider cannot be told: a host no provider declares, with no provider named,
/// is `invalid_request`; an unknown provider named is `provider_not_found`; a provider named
/// that is not the named grant's is `invalid_request`; a named provider whose hosts do not
/// hold the URL's is `host_not_allowed`.
#[test]
fn calls_whose_provider_cannot_be_told_are_refused() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env, None)?;
        rt.block_on(async {
            let system = store(&rig.a, SYSTEM_KEY, Principal::System).await?;
            let nowhere = "https://api.unknown-provider.example/v1/things";
            let codes = refusals(&rig.a, nowhere, None, None, None).await?;
            ensure!(codes.0 == "invalid_request" && codes.1 == "invalid_request", "{codes:?}");
            let r = rig.a.request(Method::GET, nowhere).authorize().await;
            ensure!(
                matches!(&r, Err(Error::InvalidRequest { detail }) if detail.contains("api.unknown-provider.example")),
                "{r:?}"
            );

            let codes = refusals(&rig.a, STRIPE_URL, None, Some("nope"), None).await?;
            ensure!(
                codes.0 == "provider_not_found" && codes.1 == "provider_not_found",
                "{codes:?}"
            );

            let r = rig
                .a
                .request(Method::GET, STRIPE_URL)
                .grant_id(&system.id)
                .provider("github")
                .authorize()
                .await;
            ensure!(matches!(&r, Err(Error::InvalidRequest { .. })), "{r:?}");
            let p = rig
                .a
                .proxy_request(Method::GET, STRIPE_URL)
                .grant_id(&system.id)
                .provider("github")
                .send()
                .await;
            ensure!(code(p)? == "invalid_request");

            let codes = refusals(&rig.a, nowhere, None, Some("stripe"), None).await?;
            ensure!(
                codes.0 == "host_not_allowed" && codes.1 == "host_not_allowed",
                "{codes:?}"
            );
            // The same calls with the provider and grant right still work.
            let picked = retrieve_picks(&rig.a, None, SYSTEM_KEY, "system", None).await?;
            ensure!(picked == system.id);
            Ok::<(), anyhow::Error>(())
        })
    })
}

/// `token` with its claims changed (`sub` set to `subject`) and its signature kept.
fn with_subject(token: &str, subject: &str) -> Result<String> {
    let parts: Vec<&str> = token.split('.').collect();
    ensure!(parts.len() == 3, "not a JWS: {token}");
    let mut claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1])?)?;
    claims["sub"] = json!(subject);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims)?);
    Ok(format!("{}.{payload}.{}", parts[0], parts[2]))
}

/// User tokens that do not verify are refused before any grant is looked at: a tampered one,
/// garbage, one from another identity provider (`user_token_invalid`), and any token for an
/// app without an identity provider (`idp_not_configured`, 400). A verified user naming
/// another user's grant by id gets `grant_not_found`. No token ends up in the audit log.
#[test]
#[allow(clippy::too_many_lines)] // one list of refusals
fn user_tokens_that_do_not_verify_or_name_anothers_grant_are_refused() -> Result<()> {
    let peer = start_peer(3600)?;
    let stranger = start_peer(3600)?;
    let tokens = id_tokens(&peer, &["ada", "bob"])?;
    let [ada, bob] = tokens.as_slice() else {
        bail!("two tokens expected")
    };
    let foreign = id_tokens(&stranger, &["ada"])?.remove(0);
    let iss = peer.issuer();
    on_both_backends(|dir, env| {
        let rt = runtime()?;
        let rig = rig(&rt, dir, env, Some(iss))?;
        rt.block_on(async {
            let adas = store(&rig.a, ADA_KEY, user(iss, "ada")).await?;
            let bobs = store(&rig.a, BOB_KEY, user(iss, "bob")).await?;
            // The controls: each token works for its own user.
            let who = format!("{iss}:ada");
            let principal = format!("user:{iss}:ada");
            ensure!(
                retrieve_picks(&rig.a, Some(ada), ADA_KEY, &principal, Some(&who)).await?
                    == adas.id
            );

            let tampered = with_subject(ada, "bob")?;
            for (what, token) in [
                ("tampered", tampered.as_str()),
                ("garbage", "not-a-jwt"),
                ("three garbage parts", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
                ("another issuer's", foreign.as_str()),
            ] {
                let codes = refusals(&rig.a, STRIPE_URL, Some(token), None, None).await?;
                ensure!(
                    codes.0 == "user_token_invalid" && codes.1 == "user_token_invalid",
                    "{what} token: {codes:?}"
                );
                // Also when the call names a grant: the token is checked first.
                let r = rig
                    .a
                    .request(Method::GET, STRIPE_URL)
                    .user_token(token)
                    .grant_id(&bobs.id)
                    .authorize()
                    .await;
                ensure!(
                    matches!(&r, Err(Error::UserToken { code, .. }) if code == "user_token_invalid"),
                    "{what} token with a grant id: {r:?}"
                );
            }

            // App other has no identity provider.
            for r in [
                rig.b
                    .request(Method::GET, STRIPE_URL)
                    .user_token(ada)
                    .authorize()
                    .await
                    .map(|_| ()),
                rig.b
                    .proxy_request(Method::GET, STRIPE_URL)
                    .user_token(ada)
                    .send()
                    .await
                    .map(|_| ()),
            ] {
                ensure!(
                    matches!(&r, Err(e @ Error::Api { status: 400, .. }) if e.code() == Some("idp_not_configured")),
                    "{r:?}"
                );
            }

            // Bob's grant by id with ada's token: not hers, so not found (like a missing one).
            let r = rig
                .a
                .request(Method::GET, STRIPE_URL)
                .user_token(ada)
                .grant_id(&bobs.id)
                .authorize()
                .await;
            ensure!(matches!(&r, Err(Error::GrantNotFound { .. })), "{r:?}");
            let p = rig
                .a
                .proxy_request(Method::GET, STRIPE_URL)
                .user_token(ada)
                .grant_id(&bobs.id)
                .send()
                .await;
            ensure!(code(p)? == "grant_not_found");
            // Her own by id, and bob's with bob's token, work.
            let own = rig
                .a
                .request(Method::GET, STRIPE_URL)
                .user_token(ada)
                .grant_id(&adas.id)
                .authorize()
                .await?;
            ensure!(bearer(&own.headers) == Some(ADA_KEY));
            let his = rig
                .a
                .request(Method::GET, STRIPE_URL)
                .user_token(bob)
                .grant_id(&bobs.id)
                .authorize()
                .await?;
            ensure!(bearer(&his.headers) == Some(BOB_KEY));

            // No token, or any part of one, is in the audit log.
            let audit = serde_json::to_string(&rig.a.audit().limit(1000).list().await?)?;
            for token in [ada.as_str(), bob.as_str(), tampered.as_str(), foreign.as_str()] {
                for part in token.split('.').skip(1) {
                    ensure!(!audit.contains(part), "a user token is in the audit log");
                }
            }
            Ok::<(), anyhow::Error>(())
        })
    })
}

/// An ID token that worked is refused as `user_token_expired` once it has expired (the peer
/// issues them for three seconds; the app allows no clock leeway). On SQLite only: the wait
/// is the slow part, and the other tests run resolution on both backends.
#[test]
fn an_expired_user_token_is_refused_as_expired() -> Result<()> {
    let peer = start_peer(3)?;
    let iss = peer.issuer();
    let data = tempfile::tempdir()?;
    let dir = data.path().join("data");
    let rt = runtime()?;
    let rig = rig(&rt, &dir, &[], Some(iss))?;
    rt.block_on(async {
        let adas = store(&rig.a, ADA_KEY, user(iss, "ada")).await?;
        let token = id_token(&peer, "ada").await?;
        let minted = Instant::now();
        let who = format!("{iss}:ada");
        let picked = retrieve_picks(
            &rig.a,
            Some(&token),
            ADA_KEY,
            &format!("user:{iss}:ada"),
            Some(&who),
        )
        .await?;
        ensure!(picked == adas.id);
        tokio::time::sleep(Duration::from_secs(4).saturating_sub(minted.elapsed())).await;
        let r = rig
            .a
            .request(Method::GET, STRIPE_URL)
            .user_token(&token)
            .authorize()
            .await;
        ensure!(
            matches!(&r, Err(Error::UserToken { code, .. }) if code == "user_token_expired"),
            "{r:?}"
        );
        let p = rig
            .a
            .proxy_request(Method::GET, STRIPE_URL)
            .user_token(&token)
            .send()
            .await;
        ensure!(code(p)? == "user_token_expired");
        Ok(())
    })
}
