//! OAuth connect end to end against a strict authorization server: a real `tessera serve`,
//! the Rust SDK, and `oidc-provider` (tests/peers/oidc-server.mjs) as the provider, with its
//! own login and consent pages driven over HTTP. The generic `oauth2` provider is pointed at
//! the peer's issuer; the grant that comes out is then used in both call modes against the
//! peer's userinfo endpoint, which checks the access token as a real API would.

use std::collections::BTreeMap;

use reqwest::redirect::Policy;
use serde_json::json;
use tessera_proto::connect::{ConnectSessionRequest, ConnectStatus};
use tessera_proto::grants::{GrantKind, GrantStatus, Principal};
use tessera_proto::scopes::Scope;
use tessera_sdk::{App, Method};

use super::oidc_peer::{OidcPeer, authorize};
use super::serve::start_with;
use super::*;

pub(super) const CLIENT_ID: &str = "tessera-connect-e2e";
/// A canary: the client secret must never appear in the database.
pub(super) const CLIENT_SECRET: &str = "cs_test_CanaryConnectZ8q3Wm5Xv1Rb7";

pub(super) fn all_scopes_key(dir: &Path, env: &[(&str, &str)], app: &str) -> Result<String> {
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

/// `tessera provider configure oauth2` for the peer, the client secret on stdin.
pub(super) fn configure(dir: &Path, env: &[(&str, &str)], issuer: &str) -> Result<()> {
    let api_host = issuer.trim_start_matches("http://");
    configure_with(dir, env, issuer, api_host, "openid,offline_access,email")
}

/// [`configure`] with the API host and scopes given.
pub(super) fn configure_with(
    dir: &Path,
    env: &[(&str, &str)],
    issuer: &str,
    api_host: &str,
    scopes: &str,
) -> Result<()> {
    let mut cmd = Command::new(tessera_bin()?);
    cmd.arg("--data-dir").arg(dir).args([
        "provider",
        "configure",
        "oauth2",
        "--app",
        "billing",
        "--client-id",
        CLIENT_ID,
        "--client-secret",
        "-",
        "--scopes",
        scopes,
        "--param",
        &format!("issuer={issuer}"),
        "--param",
        &format!("api_host={api_host}"),
        "--json",
    ]);
    cmd.env_remove("TESSERA_MASTER_KEY")
        .env_remove("TESSERA_DATABASE_URL")
        .env_remove("TESSERA_CONFIG")
        .env_remove("TESSERA_PROVIDERS_DIR")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(format!("{CLIENT_SECRET}\n").as_bytes())?;
    let out = child.wait_with_output()?;
    ensure!(out.status.success(), "configure: {}", stderr(&out));
    let shown = json_of(&out)?;
    ensure!(shown["client_secret_set"] == true, "{shown}");
    ensure!(
        !stdout(&out).contains(CLIENT_SECRET),
        "configure printed the secret"
    );
    Ok(())
}

pub(super) fn browser() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()?)
}

pub(super) fn location(response: &reqwest::Response) -> Result<String> {
    Ok(response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("no Location")?
        .to_owned())
}

pub(super) fn session_request(return_url: Option<String>) -> ConnectSessionRequest {
    ConnectSessionRequest {
        provider: "oauth2".into(),
        principal: Principal::User {
            issuer: "https://idp.example.com".into(),
            subject: "ada".into(),
        },
        allowed_scopes: None,
        return_url,
        connection_params: BTreeMap::new(),
        agent: None,
        delegation_ttl_secs: None,
        grant_ttl_secs: None,
    }
}

/// One user story: an app asks for a connect link, the end user agrees on Tessera's consent
/// page, signs in and consents at the authorization server, comes back, and the app finds a
/// grant that works in both call modes. Then the failure paths: a replayed callback, a used
/// link, a declined consent (with and without `return_url`).
#[test]
#[allow(clippy::too_many_lines)]
fn an_end_user_connects_through_the_consent_page_and_the_grant_works_in_both_modes() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        init_with_app(dir, env).context("init")?;
        let key = all_scopes_key(dir, env, "billing").context("key create")?;
        json_of(&tessera_env(
            dir,
            env,
            &["app", "create", "other", "--json"],
        )?)?;
        let other_key = all_scopes_key(dir, env, "other").context("key create")?;
        let mut envs = env.to_vec();
        envs.push(("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK", "true"));
        let host = start_with(dir, None, &envs)?;
        let origin = format!("http://{}", host.addr);
        let redirect_uri = format!("{origin}/connect/callback");
        let peer = OidcPeer::start(&json!({
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [redirect_uri],
            }],
            "access_token_ttl": 600,
        }))?;
        configure(dir, env, peer.issuer()).context("provider configure")?;
        let app = App::new(&key, &origin)?;
        let other = App::new(&other_key, &origin)?;

        let access_token = rt
            .block_on(async {
                // Not configured for this provider: a clear, typed refusal.
                let mut github = session_request(None);
                github.provider = "github".into();
                let refused = app.create_connect_session(&github).await;
                ensure!(
                    format!("{refused:?}").contains("provider_not_configured"),
                    "{refused:?}"
                );
                // An agent principal must be one of the app's agents.
                let mut stranger = session_request(None);
                stranger.principal =
                    Principal::Agent("0190aa00-0000-7000-8000-00000000dead".into());
                let refused = app.create_connect_session(&stranger).await;
                ensure!(
                    matches!(&refused, Err(tessera_sdk::Error::InvalidRequest { detail }) if detail.contains("no agent")),
                    "{refused:?}"
                );
                // Narrowing to a scope that was never configured is refused.
                let mut wider = session_request(None);
                wider.allowed_scopes = Some(vec!["openid".into(), "admin".into()]);
                let refused = app.create_connect_session(&wider).await;
                ensure!(format!("{refused:?}").contains("admin"), "{refused:?}");

                let session = app.create_connect_session(&session_request(None)).await?;
                ensure!(session.status == ConnectStatus::Pending, "{session:?}");
                ensure!(
                    session.scopes == ["openid", "offline_access", "email"],
                    "{session:?}"
                );
                let link = session.connect_url.clone().context("connect_url")?;
                ensure!(link.starts_with(&format!("{origin}/connect/")), "{link}");

                // The consent page names the app, the provider and the scopes.
                let browser = browser()?;
                let page = browser.get(&link).send().await?;
                ensure!(page.status() == 200, "consent page: {}", page.status());
                let csp = page
                    .headers()
                    .get("content-security-policy")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                ensure!(csp.contains("frame-ancestors 'none'"), "{csp}");
                let html = page.text().await?;
                for want in ["billing", "offline_access", "email", "Continue to"] {
                    ensure!(html.contains(want), "consent page lacks {want:?}:\n{html}");
                }

                // Continue: to the authorization server, with PKCE and our exact redirect URI.
                let go = browser
                    .post(&link)
                    .form(&[("decision", "allow")])
                    .send()
                    .await?;
                ensure!(go.status() == 303, "continue: {}", go.status());
                let authorization = reqwest::Url::parse(&location(&go)?)?;
                ensure!(
                    authorization.as_str().starts_with(peer.issuer()),
                    "{authorization}"
                );
                let query: BTreeMap<String, String> =
                    authorization.query_pairs().into_owned().collect();
                ensure!(query.get("code_challenge_method").map(String::as_str) == Some("S256"));
                ensure!(
                    query.get("redirect_uri") == Some(&redirect_uri),
                    "{query:?}"
                );
                ensure!(query.get("client_id").map(String::as_str) == Some(CLIENT_ID));

                // The person signs in and consents at the server's own pages.
                let callback = authorize(authorization.as_str(), "ada", &redirect_uri).await?;
                let back = browser.get(&callback).send().await?;
                ensure!(back.status() == 200, "callback: {}", back.status());
                let done = back.text().await?;
                ensure!(done.contains("Connected"), "{done}");

                // The same answer again: the state was single-use.
                let replay = browser.get(&callback).send().await?;
                ensure!(
                    replay.status() == 400,
                    "replayed callback: {}",
                    replay.status()
                );
                // And the link is spent.
                let spent = browser.get(&link).send().await?;
                ensure!(spent.status() == 400, "used link: {}", spent.status());

                let polled = app.connect_session(&session.id).await?;
                ensure!(polled.status == ConnectStatus::Completed, "{polled:?}");
                // Another app cannot see the session, nor the grant.
                let hidden = other.connect_session(&session.id).await;
                ensure!(
                    format!("{hidden:?}").contains("connect_session_not_found"),
                    "{hidden:?}"
                );
                ensure!(polled.connect_url.is_none(), "{polled:?}");
                let grant_id = polled.grant_id.context("grant_id")?;
                let grant = app.grant(&grant_id).await?;
                ensure!(grant.kind == GrantKind::Oauth, "{grant:?}");
                ensure!(grant.status == GrantStatus::Active, "{grant:?}");
                ensure!(grant.account_label == "ada@example.test", "{grant:?}");
                ensure!(grant.principal == session.principal, "{grant:?}");
                ensure!(
                    other.grant(&grant_id).await.is_err(),
                    "another app sees the grant"
                );

                // Proxy mode: the host signs and calls the server's userinfo endpoint.
                let me = format!("{}/me", peer.issuer());
                let proxied = app
                    .proxy_request(Method::GET, &me)
                    .grant_id(&grant_id)
                    .reason("who is this")
                    .send()
                    .await?;
                ensure!(proxied.status() == 200, "proxy: {}", proxied.status());
                let claims: serde_json::Value = proxied.json().await?;
                ensure!(claims["sub"] == "ada", "{claims}");

                // Retrieve mode: the app gets the header and calls the server itself.
                let authorized = app
                    .request(Method::GET, &me)
                    .grant_id(&grant_id)
                    .reason("who is this")
                    .authorize()
                    .await?;
                let bearer = authorized
                    .headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
                    .map(|(_, v)| v.clone())
                    .context("no Authorization header")?;
                let access_token = bearer
                    .strip_prefix("Bearer ")
                    .context("not a Bearer header")?
                    .to_owned();
                let direct = authorized.send_with(&reqwest::Client::new()).await?;
                ensure!(direct.status() == 200, "retrieve: {}", direct.status());

                let counts = peer.stats().await?;
                ensure!(
                    counts["token_requests"]["authorization_code"] == 1,
                    "one code exchange: {counts}"
                );

                // Revoking the grant revokes it at the server too (RFC 7009, the client
                // authenticated): the access token the app was handed stops working there.
                app.revoke_grant(&grant_id, Some("user left")).await?;
                let counts = peer.stats().await?;
                ensure!(counts["revocation_requests"] == 1, "{counts}");
                let direct = reqwest::Client::new()
                    .get(&me)
                    .bearer_auth(&access_token)
                    .send()
                    .await?;
                ensure!(
                    direct.status() == 401,
                    "revoked upstream: {}",
                    direct.status()
                );
                let gone = app
                    .proxy_request(Method::GET, &me)
                    .grant_id(&grant_id)
                    .send()
                    .await;
                ensure!(
                    matches!(gone, Err(tessera_sdk::Error::GrantRevoked { .. })),
                    "{gone:?}"
                );
                let revoked = app
                    .audit()
                    .grant_id(&grant_id)
                    .action("grant.revoke")
                    .list()
                    .await?;
                ensure!(
                    revoked.items.len() == 1 && revoked.items[0].detail["upstream_revoked"] == true,
                    "{:?}",
                    revoked.items
                );

                // Declined on the consent page, no return_url: the host's own page, and the
                // session says why.
                let declined = app.create_connect_session(&session_request(None)).await?;
                let link = declined.connect_url.clone().context("connect_url")?;
                let no = browser
                    .post(&link)
                    .form(&[("decision", "deny")])
                    .send()
                    .await?;
                ensure!(no.status() == 200, "deny: {}", no.status());
                let polled = app.connect_session(&declined.id).await?;
                ensure!(polled.status == ConnectStatus::Failed, "{polled:?}");
                ensure!(
                    polled.error.as_ref().map(|e| e.code.as_str()) == Some("access_denied"),
                    "{polled:?}"
                );

                // The provider answers with an error (the user refused there), or with an
                // issuer that is not the configured one (RFC 9207 mix-up defence): each ends the
                // session with a typed result, and nothing is exchanged.
                for (answer, code) in [
                    (
                        format!(
                            "error=access_denied&error_description=The+user+refused&iss={}",
                            reqwest::Url::parse_with_params("x:", [("iss", peer.issuer())])?
                                .query()
                                .unwrap_or_default()
                                .trim_start_matches("iss=")
                                .to_owned()
                        ),
                        "access_denied",
                    ),
                    (
                        "code=stolen-code&iss=http%3A%2F%2F127.0.0.1%3A9".to_owned(),
                        "invalid_callback",
                    ),
                ] {
                    let s = app.create_connect_session(&session_request(None)).await?;
                    let link = s.connect_url.clone().context("connect_url")?;
                    let go = browser
                        .post(&link)
                        .form(&[("decision", "allow")])
                        .send()
                        .await?;
                    let authorization = reqwest::Url::parse(&location(&go)?)?;
                    let state = authorization
                        .query_pairs()
                        .find(|(k, _)| k == "state")
                        .map(|(_, v)| v.into_owned())
                        .context("no state in the authorization request")?;
                    let back = browser
                        .get(format!("{redirect_uri}?{answer}&state={state}"))
                        .send()
                        .await?;
                    ensure!(back.status() == 200, "{code}: {}", back.status());
                    let text = back.text().await?;
                    ensure!(
                        text.contains("Not connected") && text.contains(code),
                        "{text}"
                    );
                    let polled = app.connect_session(&s.id).await?;
                    ensure!(
                        polled.status == ConnectStatus::Failed
                            && polled.error.as_ref().map(|e| e.code.as_str()) == Some(code),
                        "{polled:?}"
                    );
                }
                let counts = peer.stats().await?;
                ensure!(
                    counts["token_requests"]["authorization_code"] == 1,
                    "no code was exchanged for a refused answer: {counts}"
                );

                // Declined with a return_url: the browser goes back to the app with the result.
                let back_to = "http://127.0.0.1:9/connected?x=1";
                let declined = app
                    .create_connect_session(&session_request(Some(back_to.into())))
                    .await?;
                let link = declined.connect_url.clone().context("connect_url")?;
                let no = browser
                    .post(&link)
                    .form(&[("decision", "deny")])
                    .send()
                    .await?;
                ensure!(no.status() == 303, "deny with return_url: {}", no.status());
                let to = reqwest::Url::parse(&location(&no)?)?;
                let q: BTreeMap<String, String> = to.query_pairs().into_owned().collect();
                ensure!(
                    to.as_str().starts_with("http://127.0.0.1:9/connected?"),
                    "{to}"
                );
                ensure!(
                    q.get("session_id") == Some(&declined.id)
                        && q.get("status").map(String::as_str) == Some("failed")
                        && q.get("error").map(String::as_str) == Some("access_denied")
                        && q.get("x").map(String::as_str) == Some("1"),
                    "{to}"
                );
                Ok::<String, anyhow::Error>(access_token)
            })
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        drop(host);

        // Neither the client secret nor the access token is in the database, in any form.
        let bytes = match env.iter().find(|(k, _)| *k == "TESSERA_DATABASE_URL") {
            Some((_, url)) => super::apps_and_keys::postgres_dump(url)?,
            None => super::apps_and_keys::files_under(dir)?,
        };
        ensure!(
            super::apps_and_keys::hits(&bytes, b"ada@example.test") > 0,
            "the dump lacks the grant"
        );
        for secret in [CLIENT_SECRET, access_token.as_str()] {
            for needle in [secret.as_bytes(), hex::encode(secret).as_bytes()] {
                ensure!(
                    super::apps_and_keys::hits(&bytes, needle) == 0,
                    "a secret was found in the database"
                );
            }
        }
        Ok(())
    })
}

/// A connect session that names an agent: the consent page says which agent will be able to
/// use the connection and for how long, the user's consent creates the delegation (audited as
/// the user's doing), and the agent can then use the user's grant — named, or found among its
/// delegations without a grant id. Misuse of the fields is refused up front.
#[test]
#[allow(clippy::too_many_lines)] // one story
fn a_session_naming_an_agent_delegates_the_grant_on_consent() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        init_with_app(dir, env).context("init")?;
        let key = all_scopes_key(dir, env, "billing")?;
        let agent = json_of(&tessera_env(
            dir,
            env,
            &["agent", "create", "mail-bot", "--app", "billing", "--json"],
        )?)?;
        let agent_id = agent["id"].as_str().context("agent id")?.to_owned();
        let bot_key = super::delegations::agent_key(dir, env, "billing", "mail-bot")?;
        let mut envs = env.to_vec();
        envs.push(("TESSERA_EGRESS_ALLOW_HTTP_LOOPBACK", "true"));
        let host = start_with(dir, None, &envs)?;
        let origin = format!("http://{}", host.addr);
        let redirect_uri = format!("{origin}/connect/callback");
        let peer = OidcPeer::start(&json!({
            "clients": [{
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [redirect_uri],
            }],
            "access_token_ttl": 600,
        }))?;
        configure(dir, env, peer.issuer())?;
        let app = App::new(&key, &origin)?;
        let bot = App::new(&bot_key, &origin)?;
        rt.block_on(async {
            for (change, why) in [
                (
                    ConnectSessionRequest {
                        agent: Some("mail-bot".into()),
                        principal: Principal::System,
                        ..session_request(None)
                    },
                    "user",
                ),
                (
                    ConnectSessionRequest {
                        agent: Some("ghost".into()),
                        ..session_request(None)
                    },
                    "no agent",
                ),
                (
                    ConnectSessionRequest {
                        delegation_ttl_secs: Some(60),
                        ..session_request(None)
                    },
                    "needs an agent",
                ),
                (
                    ConnectSessionRequest {
                        agent: Some("mail-bot".into()),
                        delegation_ttl_secs: Some(0),
                        ..session_request(None)
                    },
                    "at least one second",
                ),
            ] {
                let refused = app.create_connect_session(&change).await;
                ensure!(
                    matches!(&refused, Err(tessera_sdk::Error::InvalidRequest { detail }) if detail.contains(why)),
                    "{why}: {refused:?}"
                );
            }

            let session = app
                .create_connect_session(&ConnectSessionRequest {
                    agent: Some("mail-bot".into()),
                    delegation_ttl_secs: Some(7 * 86_400),
                    grant_ttl_secs: Some(30 * 86_400),
                    ..session_request(None)
                })
                .await?;
            ensure!(session.agent_id.as_deref() == Some(agent_id.as_str()), "{session:?}");
            let link = session.connect_url.clone().context("connect_url")?;
            let browser = browser()?;
            let html = browser.get(&link).send().await?.text().await?;
            ensure!(
                html.contains("The agent <strong>mail-bot</strong>") && html.contains("for 7 days"),
                "the consent page names the agent:\n{html}"
            );
            let go = browser
                .post(&link)
                .form(&[("decision", "allow")])
                .send()
                .await?;
            let callback = authorize(&location(&go)?, "ada", &redirect_uri).await?;
            ensure!(browser.get(&callback).send().await?.status() == 200);
            let polled = app.connect_session(&session.id).await?;
            ensure!(polled.status == ConnectStatus::Completed, "{polled:?}");
            let grant_id = polled.grant_id.context("grant_id")?;

            ensure!(
                app.grant(&grant_id).await?.valid_until.is_some(),
                "the session's grant TTL is on the grant"
            );
            let delegations = app.delegations(None, Some(&grant_id), false).await?;
            ensure!(
                delegations.len() == 1
                    && delegations[0].origin == "consent"
                    && delegations[0].agent_id == agent_id
                    && delegations[0].expires_at.is_some(),
                "{delegations:?}"
            );
            let rows = app
                .audit()
                .grant_id(&grant_id)
                .action("delegation.create")
                .list()
                .await?
                .items;
            ensure!(
                rows.len() == 1 && rows[0].actor_kind == "user",
                "the user's consent is audited as theirs: {rows:?}"
            );

            // The agent uses the user's grant: by id, and found among its delegations.
            let me = format!("{}/me", peer.issuer());
            let by_id = bot.proxy_request(Method::GET, &me).grant_id(&grant_id).send().await?;
            ensure!(by_id.status() == 200, "agent by id: {}", by_id.status());
            let found = bot
                .request(Method::GET, &me)
                .provider("oauth2")
                .authorize()
                .await?;
            ensure!(found.grant_id == grant_id, "{found:?}");

            // Ending the delegation leaves the user's grant working for the app.
            bot.revoke_delegation(&delegations[0].id, Some("done")).await?;
            let gone = bot.proxy_request(Method::GET, &me).grant_id(&grant_id).send().await;
            ensure!(
                matches!(gone, Err(tessera_sdk::Error::GrantNotFound { .. })),
                "{gone:?}"
            );
            let still = app.proxy_request(Method::GET, &me).grant_id(&grant_id).send().await?;
            ensure!(still.status() == 200, "the grant still works: {}", still.status());
            Ok(())
        })
    })
}
