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
