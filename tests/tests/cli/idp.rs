//! An app's identity provider: `tessera idp configure|show|remove` end to end, and the
//! host's user-token verifier against ID tokens minted by `oidc-provider` (its real keys,
//! found through its discovery document).

use serde_json::json;
use tessera_host::config::EgressConfig;
use tessera_host::egress::Egress;
use tessera_host::identity::{IdentityError, IdpConfig, Verifier};

use super::oidc_peer::{CLIENT, OidcPeer, REDIRECT_URI, connect};
use super::*;

#[test]
fn idp_configure_show_remove_with_clear_errors_and_audit() -> Result<()> {
    on_both_backends(|dir, env| {
        init_with_app(dir, env)?;
        let bad = tessera_env(
            dir,
            env,
            &[
                "idp",
                "configure",
                "--app",
                "billing",
                "--issuer",
                "http://idp.example.com",
                "--audience",
                "tessera",
            ],
        )?;
        ensure!(
            !bad.status.success() && stderr(&bad).contains("https"),
            "{}",
            stderr(&bad)
        );
        let bad = tessera_env(
            dir,
            env,
            &[
                "idp",
                "configure",
                "--app",
                "billing",
                "--issuer",
                "https://idp.example.com",
                "--audience",
                "tessera",
                "--algorithms",
                "HS256",
            ],
        )?;
        ensure!(
            !bad.status.success() && stderr(&bad).contains("asymmetric"),
            "{}",
            stderr(&bad)
        );

        let set = json_of(&tessera_env(
            dir,
            env,
            &[
                "idp",
                "configure",
                "--app",
                "billing",
                "--issuer",
                "https://idp.example.com/realms/acme",
                "--audience",
                "tessera",
                "--audience",
                "tessera-staging",
                "--groups-claim",
                "groups",
                "--algorithms",
                "RS256,es256",
                "--json",
            ],
        )?)?;
        ensure!(
            set["audiences"] == json!(["tessera", "tessera-staging"])
                && set["algorithms"] == json!(["RS256", "ES256"])
                && set["jwks_url"].is_null()
                && set["leeway_secs"] == 60,
            "{set}"
        );
        let shown = json_of(&tessera_env(
            dir,
            env,
            &["idp", "show", "--app", "billing", "--json"],
        )?)?;
        ensure!(
            shown["issuer"] == "https://idp.example.com/realms/acme",
            "{shown}"
        );
        let exported = tessera_env(dir, env, &["audit", "export", "--format", "jsonl"])?;
        ensure!(
            stdout(&exported).contains("idp.configure"),
            "{}",
            stdout(&exported)
        );

        ensure!(
            tessera_env(dir, env, &["idp", "remove", "--app", "billing"])?
                .status
                .success()
        );
        let gone = tessera_env(dir, env, &["idp", "show", "--app", "billing"])?;
        ensure!(
            !gone.status.success() && stderr(&gone).contains("no identity provider"),
            "{}",
            stderr(&gone)
        );
        Ok(())
    })
}

fn idp(issuer: &str) -> IdpConfig {
    IdpConfig {
        issuer: issuer.to_owned(),
        jwks_url: None,
        audiences: vec![CLIENT.0.to_owned()],
        groups_claim: None,
        algorithms: Vec::new(),
        leeway_secs: 0,
    }
}

/// ID tokens minted by `oidc-provider` (RS256 with a `kid`) verify against its published
/// keys; the wrong audience, another issuer's keys and expiry are refused.
#[test]
fn the_verifier_accepts_the_servers_id_tokens_and_refuses_the_rest() -> Result<()> {
    let peer = OidcPeer::start(&json!({
        "clients": [{
            "client_id": CLIENT.0,
            "client_secret": CLIENT.1,
            "redirect_uris": [REDIRECT_URI],
        }],
        "id_token_ttl": 2,
    }))?;
    let other = OidcPeer::start(&json!({}))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let (_, tokens) = connect(&peer, &http).await?;
        let id_token = tokens["id_token"].as_str().context("id_token")?.to_owned();
        let verifier = Verifier::new(Egress::new(&EgressConfig {
            allow_http_loopback: true,
            ..EgressConfig::default()
        })?);

        let who = verifier.verify(&idp(peer.issuer()), &id_token).await?;
        ensure!(
            who.subject == "ada" && who.issuer == peer.issuer(),
            "{who:?}"
        );

        let mut wrong_audience = idp(peer.issuer());
        wrong_audience.audiences = vec!["another-app".into()];
        ensure!(
            verifier.verify(&wrong_audience, &id_token).await == Err(IdentityError::WrongAudience)
        );
        // Trusting another issuer: its keys do not have this token's kid, and the issuer
        // differs anyway.
        let refused = verifier.verify(&idp(other.issuer()), &id_token).await;
        ensure!(
            matches!(
                refused,
                Err(IdentityError::UnknownKey | IdentityError::WrongIssuer)
            ),
            "{refused:?}"
        );
        // The ID token lives two seconds.
        tokio::time::sleep(Duration::from_secs(3)).await;
        ensure!(
            verifier.verify(&idp(peer.issuer()), &id_token).await == Err(IdentityError::Expired)
        );
        Ok(())
    })
}

/// `GET`/`PUT`/`DELETE /v1/idp` through the SDK: the same checks and audit rows as the CLI,
/// app keys only, and another app sees nothing of it.
#[test]
fn the_idp_admin_api_configures_shows_and_removes() -> Result<()> {
    on_both_backends(|dir, env| {
        let rt = super::calls::runtime()?;
        init_with_app(dir, env)?;
        json_of(&tessera_env(
            dir,
            env,
            &["app", "create", "other", "--json"],
        )?)?;
        json_of(&tessera_env(
            dir,
            env,
            &["agent", "create", "bot", "--app", "billing", "--json"],
        )?)?;
        let key = super::calls::create_key(dir, env, "billing")?;
        let other_key = super::calls::create_key(dir, env, "other")?;
        let bot_key = super::delegations::agent_key(dir, env, "billing", "bot")?;
        let host = super::serve::start_with(dir, None, env)?;
        let url = format!("http://{}", host.addr);
        let (app, other, bot) = (
            tessera_sdk::App::new(&key, &url)?,
            tessera_sdk::App::new(&other_key, &url)?,
            tessera_sdk::App::new(&bot_key, &url)?,
        );
        rt.block_on(async {
            let code = |e: tessera_sdk::Error| e.code().unwrap_or_default().to_owned();
            ensure!(code(app.idp().await.err().context("none yet")?) == "idp_not_configured");
            let mut request = tessera_proto::identity::IdpConfigRequest {
                issuer: "http://idp.example.com".into(),
                jwks_url: None,
                audiences: vec!["billing-web".into()],
                groups_claim: Some("groups".into()),
                algorithms: vec!["RS256".into()],
                leeway_secs: 30,
            };
            let refused = app
                .configure_idp(&request)
                .await
                .err()
                .context("http issuer")?;
            ensure!(
                code(refused) == "invalid_request",
                "a non-https issuer is refused"
            );
            request.issuer = "https://idp.example.com".into();
            request.algorithms = vec!["HS256".into()];
            let refused = app.configure_idp(&request).await.err().context("HS256")?;
            ensure!(code(refused) == "invalid_request", "HMAC is refused");
            request.algorithms = vec!["RS256".into()];
            let stored = app.configure_idp(&request).await?;
            ensure!(
                stored.issuer == request.issuer
                    && stored.audiences == request.audiences
                    && stored.leeway_secs == 30,
                "{stored:?}"
            );
            ensure!(app.idp().await? == stored);
            ensure!(code(other.idp().await.err().context("other app")?) == "idp_not_configured");
            ensure!(code(bot.idp().await.err().context("agent key")?) == "app_key_required");
            app.remove_idp().await?;
            ensure!(code(app.idp().await.err().context("removed")?) == "idp_not_configured");
            let rows = app.audit().list().await?.items;
            let actions: Vec<&str> = rows
                .iter()
                .filter(|r| r.action.starts_with("idp."))
                .map(|r| r.action.as_str())
                .collect();
            ensure!(actions == ["idp.configure", "idp.remove"], "{actions:?}");
            Ok(())
        })
    })
}
