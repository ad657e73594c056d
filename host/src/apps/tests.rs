//! The service on both backends, and the database-backed verifier end to end: keys minted
//! here sign requests with `tessera_proto::signing` and are verified by `auth::verify`
//! through `DbKeyResolver` and `DbNonceStore`.

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use tessera_proto::signing::{RequestToSign, sign_request};

use super::*;
use crate::auth::{AuthError, KeyPrincipal, SignedRequest, verify};
use crate::store::both_backends;
use crate::store::testing::TestDb;
use crate::vault::{KeyRing, MasterKey};

both_backends! {
    duplicate_and_invalid_app_names_are_refused => duplicate_and_invalid_app_names_are_refused;
    key_is_stored_only_as_sealed_signing_key_and_fingerprint =>
        key_is_stored_only_as_sealed_signing_key_and_fingerprint;
    unknown_app_and_empty_scopes_are_refused => unknown_app_and_empty_scopes_are_refused;
    agent_key_creates_its_agent_once => agent_key_creates_its_agent_once;
    signed_request_verifies_against_the_database => signed_request_verifies_against_the_database;
    revoked_key_is_refused_as_unknown => revoked_key_is_refused_as_unknown;
    disabled_agents_key_is_refused_on_every_instance_until_enabled =>
        disabled_agents_key_is_refused_on_every_instance_until_enabled;
    replayed_nonce_is_refused_across_instances => replayed_nonce_is_refused_across_instances;
    sealed_key_moved_to_another_row_does_not_open => sealed_key_moved_to_another_row_does_not_open;
    concurrent_requests_share_nonce_batches_and_one_replay_wins_once =>
        concurrent_requests_share_nonce_batches_and_one_replay_wins_once;
}

const URI: &str = "https://tessera.example.com/v1/grants?limit=20";
const BODY: &[u8] = b"{}";

fn service(db: &TestDb) -> anyhow::Result<Apps> {
    let master = Arc::new(MasterKey::generate());
    let (ring, _) = KeyRing::generate(&master)?;
    let keys = LiveRing::new(db.store().clone(), master, Arc::new(ring));
    Ok(Apps::new(db.store().clone(), keys))
}

fn signed(key: &ApiKey, created: i64, nonce: &str) -> anyhow::Result<HeaderMap> {
    let h = sign_request(
        &key.signing_key(),
        key.key_id(),
        &RequestToSign {
            method: "POST",
            target_uri: URI,
            body: BODY,
            created,
            nonce,
        },
    )?;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("content-digest", h.content_digest),
        ("signature-input", h.signature_input),
        ("signature", h.signature),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value)?,
        );
    }
    Ok(headers)
}

async fn check(
    apps: &Apps,
    headers: &HeaderMap,
    now: i64,
) -> Result<crate::auth::Verified<KeyPrincipal>, AuthError> {
    let request = SignedRequest {
        method: "POST",
        target_uri: URI,
        headers,
        body: BODY,
    };
    verify(&request, &apps.key_resolver(), &apps.nonce_store(), now).await
}

async fn duplicate_and_invalid_app_names_are_refused(db: &TestDb) -> anyhow::Result<()> {
    let apps = service(db)?;
    apps.create_app("billing").await?;
    let err = apps.create_app("billing").await.unwrap_err();
    assert!(matches!(err, AppsError::DuplicateApp { .. }), "{err:?}");
    assert_eq!(err.to_string(), "app \"billing\" already exists");
    for bad in ["", "has space", "ünï", &"x".repeat(MAX_NAME_LEN + 1)] {
        let err = apps.create_app(bad).await.unwrap_err();
        assert!(
            matches!(err, AppsError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
    }
    let names: Vec<_> = apps
        .list_apps()
        .await?
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["billing"]);
    Ok(())
}

async fn key_is_stored_only_as_sealed_signing_key_and_fingerprint(
    db: &TestDb,
) -> anyhow::Result<()> {
    let apps = service(db)?;
    apps.create_app("billing").await?;
    let created = apps
        .create_key(
            "billing",
            KeyOwner::App,
            &[
                Scope::ProxyExecute,
                Scope::TokensRetrieve,
                Scope::ProxyExecute,
            ],
        )
        .await?;
    let text = created.key.expose();
    let parsed = ApiKey::parse(&text)?;
    assert_eq!(parsed.kind(), KeyKind::App);
    assert!(text.starts_with("tsr_app_"));
    let record = &created.record;
    assert_eq!(record.scopes, [Scope::TokensRetrieve, Scope::ProxyExecute]);
    assert_eq!(record.fingerprint, created.key.fingerprint());
    // The stored bytes are neither the signing key nor the secret, and open to the signing key.
    let signing = created.key.signing_key();
    let sealed = &record.sealed_signing_key;
    assert!(!sealed.windows(32).any(|w| w == signing.as_bytes()));
    let opened = auth::open_signing_key(apps.keys.ring(), record)?;
    assert_eq!(opened.as_bytes(), signing.as_bytes());
    let listed = apps.list_keys("billing").await?;
    assert_eq!(listed, vec![record.clone()]);
    // Nothing printable about a record shows the key.
    assert!(!format!("{listed:?}").contains(text.as_str()));
    Ok(())
}

async fn unknown_app_and_empty_scopes_are_refused(db: &TestDb) -> anyhow::Result<()> {
    let apps = service(db)?;
    let err = apps
        .create_key("ghost", KeyOwner::App, &[Scope::AuditRead])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("\"ghost\""), "{err}");
    apps.create_app("real").await?;
    let err = apps
        .create_key("real", KeyOwner::App, &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("audit:read"), "{err}");
    let err = apps.list_keys("ghost").await.unwrap_err();
    assert!(matches!(err, AppsError::UnknownApp { .. }), "{err:?}");
    let err = apps.revoke_key("0123456789abcdef").await.unwrap_err();
    assert!(matches!(err, AppsError::UnknownKey { .. }), "{err:?}");
    let pasted = "tsr_app_0123456789abcdef_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8";
    let err = apps.revoke_key(pasted).await.unwrap_err();
    assert!(!err.to_string().contains("AAECAwQF"), "{err}");
    Ok(())
}

async fn agent_key_creates_its_agent_once(db: &TestDb) -> anyhow::Result<()> {
    let apps = service(db)?;
    apps.create_app("a").await?;
    let owner = KeyOwner::Agent("mailbot".into());
    let first = apps
        .create_key("a", owner.clone(), &[Scope::ProxyExecute])
        .await?;
    let second = apps.create_key("a", owner, &[Scope::ProxyExecute]).await?;
    assert!(first.key.expose().starts_with("tsr_agent_"));
    assert_eq!(first.record.kind, KeyKind::Agent);
    assert!(first.record.agent_id.is_some());
    assert_eq!(first.record.agent_id, second.record.agent_id);
    assert_eq!(first.agent.as_deref(), Some("mailbot"));
    Ok(())
}

async fn signed_request_verifies_against_the_database(db: &TestDb) -> anyhow::Result<()> {
    let apps = service(db)?;
    let app = apps.create_app("a").await?;
    let created = apps
        .create_key("a", KeyOwner::App, &[Scope::GrantsRead])
        .await?;
    let now = crate::auth::unix_now();
    let verified = check(&apps, &signed(&created.key, now, "nonce-0000000001")?, now).await?;
    assert_eq!(
        verified.principal,
        KeyPrincipal {
            key_id: created.key.key_id().clone(),
            app_id: app.id,
            kind: KeyKind::App,
            agent_id: None,
            scopes: vec![Scope::GrantsRead],
        }
    );
    // A key that was never stored is unknown, even with a valid-looking signature.
    let stranger = ApiKey::new(KeyKind::App, KeyId::parse("00000000000000aa")?, [9; 32]);
    let err = check(&apps, &signed(&stranger, now, "nonce-0000000002")?, now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "unknown_key");
    Ok(())
}

async fn revoked_key_is_refused_as_unknown(db: &TestDb) -> anyhow::Result<()> {
    let apps = service(db)?;
    apps.create_app("a").await?;
    let created = apps
        .create_key("a", KeyOwner::App, &[Scope::GrantsRead])
        .await?;
    // A second host instance, which has the key open in its cache before the revocation.
    let two = Apps::new(db.open_another().await?, apps.keys.clone());
    let now = crate::auth::unix_now();
    check(&apps, &signed(&created.key, now, "nonce-0000000001")?, now).await?;
    check(&two, &signed(&created.key, now, "nonce-0000000003")?, now).await?;
    assert_eq!(two.key_cache.len(), 1);
    let revoked = apps.revoke_key(created.key.key_id().as_str()).await?;
    assert!(revoked.now && revoked.record.is_revoked());
    assert!(!apps.revoke_key(created.key.key_id().as_str()).await?.now);
    for instance in [&apps, &two] {
        let err = check(
            instance,
            &signed(&created.key, now, "nonce-0000000002")?,
            now,
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), "unknown_key");
        assert!(instance.key_cache.is_empty(), "the revoked key is evicted");
    }
    Ok(())
}

async fn disabled_agents_key_is_refused_on_every_instance_until_enabled(
    db: &TestDb,
) -> anyhow::Result<()> {
    use crate::grants::{Change, Owner};

    let apps = service(db)?;
    let app = apps.create_app("a").await?;
    let created = apps
        .create_key("a", KeyOwner::Agent("bot".into()), &[Scope::GrantsRead])
        .await?;
    let sibling = apps
        .create_key("a", KeyOwner::Agent("other".into()), &[Scope::GrantsRead])
        .await?;
    let agent_id = created.record.agent_id.expect("an agent key").to_string();
    // A second host instance, which has the key open in its cache before the agent is
    // disabled.
    let two = Apps::new(db.open_another().await?, apps.keys.clone());
    let now = crate::auth::unix_now();
    let mut n = 0;
    let mut nonce = || {
        n += 1;
        format!("nonce-{n:010}")
    };
    for instance in [&apps, &two] {
        check(instance, &signed(&created.key, now, &nonce())?, now).await?;
    }
    assert_eq!(two.key_cache.len(), 1);
    let owner = Owner::app(app.id);
    let off = apps
        .agents()
        .set_disabled(owner, &Change::cli(), &agent_id, true)
        .await?;
    assert!(off.now && off.agent.is_disabled());
    for instance in [&apps, &two] {
        let err = check(instance, &signed(&created.key, now, &nonce())?, now)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "unknown_key");
        // Refused on a cache miss too, by the key resolver's own read.
        let err = check(instance, &signed(&created.key, now, &nonce())?, now)
            .await
            .unwrap_err();
        assert_eq!(err.code(), "unknown_key");
        // The other agent of the app is untouched.
        check(instance, &signed(&sibling.key, now, &nonce())?, now).await?;
    }
    // No new key for a disabled agent.
    let err = apps
        .create_key("a", KeyOwner::Agent("bot".into()), &[Scope::GrantsRead])
        .await
        .unwrap_err();
    assert!(matches!(err, AppsError::AgentDisabled { .. }), "{err:?}");
    apps.agents()
        .set_disabled(owner, &Change::cli(), &agent_id, false)
        .await?;
    for instance in [&apps, &two] {
        check(instance, &signed(&created.key, now, &nonce())?, now).await?;
    }
    // Implicit creation is audited once per agent, next to its first key.
    let rows = crate::audit::list(
        apps.store(),
        &crate::audit::AuditFilter {
            action: Some("agent.create".into()),
            ..crate::audit::AuditFilter::default()
        },
    )
    .await?;
    let names: Vec<_> = rows.iter().map(|r| r.detail["name"].clone()).collect();
    assert_eq!(names, ["bot", "other"]);
    Ok(())
}

async fn replayed_nonce_is_refused_across_instances(db: &TestDb) -> anyhow::Result<()> {
    let one = service(db)?;
    // A second host instance: its own connection pool on the same database, same keys.
    let two = Apps::new(db.open_another().await?, one.keys.clone());
    one.create_app("a").await?;
    let created = one
        .create_key("a", KeyOwner::App, &[Scope::ProxyExecute])
        .await?;
    let now = crate::auth::unix_now();
    let headers = signed(&created.key, now, "nonce-replayed-01")?;
    check(&one, &headers, now).await?;
    let err = check(&two, &headers, now + 1).await.unwrap_err();
    assert_eq!(err.code(), "nonce_replayed");
    let err = check(&one, &headers, now + 2).await.unwrap_err();
    assert_eq!(err.code(), "nonce_replayed");
    // Purging never forgets a nonce whose window is still open.
    assert_eq!(two.nonce_store().purge_expired(now + 300).await?, 0);
    let err = check(&two, &headers, now + 300).await.unwrap_err();
    assert_eq!(err.code(), "nonce_replayed");
    assert_eq!(two.nonce_store().purge_expired(now + 301).await?, 1);
    Ok(())
}

/// Many requests at once go through the nonce batcher together: distinct nonces all pass,
/// and of many copies of one signed request exactly one does, whichever batch each lands in.
async fn concurrent_requests_share_nonce_batches_and_one_replay_wins_once(
    db: &TestDb,
) -> anyhow::Result<()> {
    let apps = service(db)?;
    apps.create_app("a").await?;
    let created = apps
        .create_key("a", KeyOwner::App, &[Scope::GrantsRead])
        .await?;
    let now = crate::auth::unix_now();
    let replayed = signed(&created.key, now, "nonce-replayed-many")?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64 {
        let apps = apps.clone();
        let headers = if i % 2 == 0 {
            replayed.clone()
        } else {
            signed(&created.key, now, &format!("nonce-distinct-{i:04}"))?
        };
        tasks.spawn(async move { (i, check(&apps, &headers, now).await.map(|_| ())) });
    }
    let (mut replay_ok, mut replay_refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (i, result) = joined?;
        match (i % 2 == 0, result) {
            (true, Ok(())) => replay_ok += 1,
            (true, Err(e)) => {
                assert_eq!(e.code(), "nonce_replayed");
                replay_refused += 1;
            }
            (false, result) => result?,
        }
    }
    assert_eq!((replay_ok, replay_refused), (1, 31));
    Ok(())
}

async fn sealed_key_moved_to_another_row_does_not_open(db: &TestDb) -> anyhow::Result<()> {
    let apps = service(db)?;
    apps.create_app("a").await?;
    let victim = apps
        .create_key("a", KeyOwner::App, &[Scope::ProxyExecute])
        .await?;
    // An attacker with write access to the database copies the victim's sealed signing key
    // into a row for a key id of their own choosing: it must not open there.
    let mut forged = victim.record.clone();
    forged.key_id = KeyId::parse("00000000000000ff")?;
    api_keys::insert(apps.store(), &forged).await?;
    let forged_key = ApiKey::new(KeyKind::App, forged.key_id.clone(), [1; 32]);
    let now = crate::auth::unix_now();
    let err = check(&apps, &signed(&forged_key, now, "nonce-0000000001")?, now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "auth_unavailable");
    Ok(())
}
