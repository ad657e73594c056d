//! The provider configuration service on both backends, with the real built-in `oauth2`,
//! `github` and `stripe` components: validation, the sealed client secret (round trip, kept,
//! cleared, bound to its row), app isolation and the audit rows.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use tessera_proto::providers::ProviderConfigRequest;

use super::*;
use crate::audit::{AuditFilter, testing as audit_testing};
use crate::plugin::{PoolingMode, Registry, RegistryConfig, Runtime, RuntimeConfig};
use crate::store::testing::TestDb;
use crate::store::{DatabaseConfig, apps, both_backends, on_conn};

both_backends! {
    configured_secret_is_sealed_at_rest_and_opened_for_the_connect_flow =>
        configured_secret_is_sealed_at_rest_and_opened_for_the_connect_flow;
    an_absent_secret_keeps_the_stored_one_and_clear_removes_it =>
        an_absent_secret_keeps_the_stored_one_and_clear_removes_it;
    invalid_configurations_are_refused_naming_the_field =>
        invalid_configurations_are_refused_naming_the_field;
    another_apps_configuration_is_not_found => another_apps_configuration_is_not_found;
    a_secret_copied_into_another_apps_row_does_not_open =>
        a_secret_copied_into_another_apps_row_does_not_open;
    unconfigure_deletes_the_configuration_and_is_audited =>
        unconfigure_deletes_the_configuration_and_is_audited;
    a_change_that_cannot_be_audited_says_it_was_applied =>
        a_change_that_cannot_be_audited_says_it_was_applied;
}

/// A canary client secret: it must never appear in the database, a view, an error or the
/// audit log.
const SECRET: &str = "cs_CanaryClientSecret_9fQ2xLw7Rk";
const SECRET_2: &str = "cs_SecondCanarySecret_Z3mP8vT1";
const ISSUER: &str = "https://idp.example.com";

/// One registry for every test: compiling components dominates, and it holds no state a
/// test could change.
fn registry() -> Arc<Registry> {
    static SHARED: OnceLock<Arc<Registry>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let builtins = crate::builtin::components()
                .into_iter()
                .filter(|(name, _)| ["oauth2", "github", "stripe"].contains(&name.as_str()))
                .map(|(name, bytes)| (name, bytes.to_vec()))
                .collect::<Vec<_>>();
            assert_eq!(
                builtins.len(),
                3,
                "build components first: cargo xtask components"
            );
            let runtime = Runtime::new(RuntimeConfig {
                pooling: PoolingMode::Off,
                ..RuntimeConfig::default()
            })
            .expect("runtime");
            let config = RegistryConfig {
                poll_interval: None,
                ..RegistryConfig::default()
            };
            Arc::new(Registry::new(runtime, builtins, config).expect("registry"))
        })
        .clone()
}

struct Fixture {
    configs: ProviderConfigs,
    store: Store,
    a: AppId,
    b: AppId,
}

async fn fixture(db: &TestDb) -> anyhow::Result<Fixture> {
    let store = db.store().clone();
    let keys = crate::keys::test_ring(&store).await?;
    let a = apps::create(&store, "billing", Timestamp::now()).await?.id;
    let b = apps::create(&store, "other", Timestamp::now()).await?.id;
    let configs = ProviderConfigs::new(
        store.clone(),
        keys,
        registry(),
        AuditLog::start(store.clone()),
    );
    Ok(Fixture {
        configs,
        store,
        a,
        b,
    })
}

fn oauth2(secret: Option<&str>) -> ProviderConfigRequest {
    ProviderConfigRequest {
        provider: "oauth2".into(),
        client_id: "tessera-billing".into(),
        client_secret: secret.map(str::to_owned),
        scopes: vec!["openid".into(), "email".into()],
        redirect_uri: Some("https://billing.example.com/oauth/callback".into()),
        extra_params: BTreeMap::from([("prompt".to_owned(), "consent".to_owned())]),
        connection_params: BTreeMap::from([("issuer".to_owned(), ISSUER.to_owned())]),
        ..ProviderConfigRequest::default()
    }
}

/// Every byte the database holds: the SQLite files, or every row of every PostgreSQL table
/// as text (bytea as hex).
async fn raw_database(db: &TestDb) -> anyhow::Result<Vec<u8>> {
    if let DatabaseConfig::Sqlite { path } = db.config() {
        let dir = path.parent().ok_or_else(|| anyhow::anyhow!("no parent"))?;
        let mut all = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            if path.is_file() {
                all.extend(std::fs::read(&path)?);
            }
        }
        return Ok(all);
    }
    let store = db.store();
    on_conn!(store, |conn| {
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::from)?;
        anyhow::ensure!(tables.iter().any(|t| t == "provider_configs"), "{tables:?}");
        let mut dump = Vec::new();
        for table in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(StoreError::from)?;
            for row in rows {
                dump.extend_from_slice(row.as_bytes());
            }
        }
        Ok::<_, anyhow::Error>(dump)
    })
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// The canary in every form a careless write could leave: as is, as hex, and its tail.
fn assert_no_canary(bytes: &[u8], canary: &str, what: &str) {
    for needle in [
        canary.to_owned(),
        hex::encode(canary),
        canary[8..].to_owned(),
    ] {
        assert!(!contains(bytes, &needle), "the client secret is in {what}");
    }
}

async fn audit_rows(
    f: &Fixture,
    app: AppId,
    action: &str,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let rows = crate::audit::list(
        &f.store,
        &AuditFilter {
            app_id: Some(app),
            action: Some(action.to_owned()),
            ..AuditFilter::default()
        },
    )
    .await?;
    Ok(rows
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<_, _>>()?)
}

async fn configured_secret_is_sealed_at_rest_and_opened_for_the_connect_flow(
    db: &TestDb,
) -> anyhow::Result<()> {
    let f = fixture(db).await?;
    let view = f
        .configs
        .configure(f.a, &Change::cli(), oauth2(Some(SECRET)))
        .await?;
    assert_eq!(view.provider, "oauth2");
    assert_eq!(view.client_id, "tessera-billing");
    assert!(view.client_secret_set);
    assert_eq!(view.scopes, ["openid", "email"]);
    assert_eq!(view.connection_params["issuer"], ISSUER);
    assert_eq!(view.extra_params["prompt"], "consent");
    assert_eq!(f.configs.get(f.a, "oauth2").await?, view);
    assert_eq!(f.configs.list(f.a).await?, vec![view.clone()]);
    assert!(!serde_json::to_string(&view)?.contains(SECRET));

    // The connect flow gets the secret back, and nothing prints it.
    let client = f
        .configs
        .client(f.a, "oauth2")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no client"))?;
    assert_eq!(
        client.client_secret.as_deref().map(String::as_str),
        Some(SECRET)
    );
    assert_eq!(client.client_id, "tessera-billing");
    assert_eq!(
        client.connection_params,
        [("issuer".to_owned(), ISSUER.to_owned())]
    );
    assert_eq!(
        client.redirect_uri.as_deref(),
        Some("https://billing.example.com/oauth/callback")
    );
    let shown = format!("{client:?}");
    assert!(
        !shown.contains(SECRET) && shown.contains("[redacted]"),
        "{shown}"
    );
    assert!(f.configs.client(f.a, "github").await?.is_none());

    // One audit row, with the facts and without the secret.
    let rows = audit_rows(&f, f.a, "provider.configure").await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["provider"], "oauth2");
    assert_eq!(row["actor_kind"], "operator");
    assert_eq!(row["detail"]["via"], "cli");
    assert_eq!(row["detail"]["client_id"], "tessera-billing");
    assert_eq!(row["detail"]["confidential"], true);
    assert_eq!(
        row["detail"]["scopes"],
        serde_json::json!(["openid", "email"])
    );
    assert_no_canary(row.to_string().as_bytes(), SECRET, "the audit row");

    // Nowhere in the database, in no form.
    let raw = raw_database(db).await?;
    assert!(
        contains(&raw, "tessera-billing"),
        "the scan does not see the row"
    );
    assert_no_canary(&raw, SECRET, "the database");
    Ok(())
}

async fn an_absent_secret_keeps_the_stored_one_and_clear_removes_it(
    db: &TestDb,
) -> anyhow::Result<()> {
    let f = fixture(db).await?;
    let first = f
        .configs
        .configure(f.a, &Change::cli(), oauth2(Some(SECRET)))
        .await?;
    let secret_of =
        |c: Option<ClientConfig>| c.and_then(|c| c.client_secret.map(|s| s.to_string()));

    // A change without a secret replaces everything else and keeps the secret.
    let change = ProviderConfigRequest {
        client_id: "tessera-billing-2".into(),
        scopes: Vec::new(),
        redirect_uri: None,
        extra_params: BTreeMap::new(),
        ..oauth2(None)
    };
    let second = f.configs.configure(f.a, &Change::cli(), change).await?;
    assert!(second.client_secret_set);
    assert_eq!(second.client_id, "tessera-billing-2");
    assert!(second.scopes.is_empty() && second.extra_params.is_empty());
    assert_eq!(second.redirect_uri, None);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(
        secret_of(f.configs.client(f.a, "oauth2").await?).as_deref(),
        Some(SECRET)
    );

    // A new secret replaces it (sealed for the same row, so it opens).
    f.configs
        .configure(f.a, &Change::cli(), oauth2(Some(SECRET_2)))
        .await?;
    assert_eq!(
        secret_of(f.configs.client(f.a, "oauth2").await?).as_deref(),
        Some(SECRET_2)
    );

    // Clearing makes a public client.
    let clear = ProviderConfigRequest {
        clear_client_secret: true,
        ..oauth2(None)
    };
    let cleared = f.configs.configure(f.a, &Change::cli(), clear).await?;
    assert!(!cleared.client_secret_set);
    assert_eq!(secret_of(f.configs.client(f.a, "oauth2").await?), None);
    let rows = audit_rows(&f, f.a, "provider.configure").await?;
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[3]["detail"]["confidential"], false);
    let raw = raw_database(db).await?;
    assert_no_canary(&raw, SECRET, "the database");
    assert_no_canary(&raw, SECRET_2, "the database");
    Ok(())
}

#[allow(clippy::too_many_lines)] // one table of cases
async fn invalid_configurations_are_refused_naming_the_field(db: &TestDb) -> anyhow::Result<()> {
    let f = fixture(db).await?;
    let with = |edit: &dyn Fn(&mut ProviderConfigRequest)| {
        let mut r = oauth2(Some(SECRET));
        edit(&mut r);
        r
    };
    let cases: Vec<(&str, ProviderConfigRequest, &[&str])> = vec![
        (
            "managed-secret provider",
            with(&|r| r.provider = "stripe".into()),
            &["stripe is configured with `tessera secret set`, not an OAuth client"],
        ),
        (
            "empty client id",
            with(&|r| r.client_id = " ".into()),
            &["client_id"],
        ),
        (
            "control character in the client id",
            with(&|r| r.client_id = "abc\ndef".into()),
            &["client_id", "control"],
        ),
        (
            "empty secret",
            with(&|r| r.client_secret = Some(String::new())),
            &["client_secret", "empty"],
        ),
        (
            "secret and clear",
            with(&|r| r.clear_client_secret = true),
            &["client_secret", "clear_client_secret"],
        ),
        (
            "scope with a space",
            with(&|r| r.scopes = vec!["openid email".into()]),
            &["\"openid email\"", "whitespace"],
        ),
        (
            "empty scope",
            with(&|r| r.scopes = vec![String::new()]),
            &["scope"],
        ),
        (
            "relative redirect URI",
            with(&|r| r.redirect_uri = Some("/callback".into())),
            &["redirect_uri", "absolute"],
        ),
        (
            "redirect URI with a fragment",
            with(&|r| r.redirect_uri = Some("https://app.example.com/cb#x".into())),
            &["redirect_uri", "fragment"],
        ),
        (
            "redirect URI of another scheme",
            with(&|r| r.redirect_uri = Some("javascript:alert(1)".into())),
            &["redirect_uri"],
        ),
        (
            "undeclared connection parameter",
            with(&|r| {
                r.connection_params.insert("tenant".into(), "acme".into());
            }),
            &["\"tenant\"", "issuer", "token_endpoint", "api_host"],
        ),
        (
            "connection parameter of a provider that takes none",
            with(&|r| {
                r.provider = "github".into();
            }),
            &["github takes no connection parameters", "\"issuer\""],
        ),
        (
            "reserved extra parameter",
            with(&|r| {
                r.extra_params.insert("state".into(), "fixed".into());
            }),
            &["\"state\"", "connect flow"],
        ),
        (
            "reserved extra parameter in another case",
            with(&|r| {
                r.extra_params.insert("Client_Secret".into(), "x".into());
            }),
            &["\"Client_Secret\""],
        ),
    ];
    for (what, request, needles) in cases {
        let err = f
            .configs
            .configure(f.a, &Change::cli(), request)
            .await
            .expect_err(what);
        assert!(matches!(err, ConfigError::Invalid(_)), "{what}: {err:?}");
        assert_eq!(
            (err.code(), err.status()),
            ("invalid_request", 400),
            "{what}"
        );
        let message = err.to_string();
        for needle in needles {
            assert!(
                message.contains(needle),
                "{what}: {message:?} lacks {needle:?}"
            );
        }
        assert!(
            !message.contains(SECRET),
            "{what}: the secret is in {message:?}"
        );
    }
    let unknown = f
        .configs
        .configure(
            f.a,
            &Change::cli(),
            ProviderConfigRequest {
                provider: "nope".into(),
                ..oauth2(None)
            },
        )
        .await
        .expect_err("unknown provider");
    assert!(
        matches!(unknown, ConfigError::ProviderNotFound { .. }),
        "{unknown:?}"
    );
    assert_eq!(unknown.code(), "provider_not_found");

    // Nothing was stored or audited.
    assert!(f.configs.list(f.a).await?.is_empty());
    assert!(audit_rows(&f, f.a, "provider.configure").await?.is_empty());

    // A public GitHub client without parameters is fine.
    let github = ProviderConfigRequest {
        provider: "github".into(),
        client_id: "Iv1.0123456789abcdef".into(),
        scopes: vec!["repo".into(), "read:user".into()],
        ..ProviderConfigRequest::default()
    };
    let view = f.configs.configure(f.a, &Change::cli(), github).await?;
    assert!(!view.client_secret_set);
    Ok(())
}

async fn another_apps_configuration_is_not_found(db: &TestDb) -> anyhow::Result<()> {
    let f = fixture(db).await?;
    f.configs
        .configure(f.a, &Change::cli(), oauth2(Some(SECRET)))
        .await?;
    let err = f
        .configs
        .get(f.b, "oauth2")
        .await
        .expect_err("b reads a's config");
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
    assert_eq!(
        (err.code(), err.status()),
        ("provider_config_not_found", 404)
    );
    assert!(f.configs.list(f.b).await?.is_empty());
    assert!(f.configs.client(f.b, "oauth2").await?.is_none());
    let err = f
        .configs
        .remove(f.b, &Change::cli(), "oauth2")
        .await
        .expect_err("b removes a's config");
    assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");

    // B configuring the same provider makes B's own configuration; A's is untouched.
    let b_view = f
        .configs
        .configure(
            f.b,
            &Change::cli(),
            ProviderConfigRequest {
                client_id: "other-client".into(),
                ..oauth2(None)
            },
        )
        .await?;
    assert!(!b_view.client_secret_set);
    let a_client = f
        .configs
        .client(f.a, "oauth2")
        .await?
        .ok_or_else(|| anyhow::anyhow!("a's config is gone"))?;
    assert_eq!(a_client.client_id, "tessera-billing");
    assert_eq!(
        a_client.client_secret.as_deref().map(String::as_str),
        Some(SECRET)
    );
    Ok(())
}

async fn a_secret_copied_into_another_apps_row_does_not_open(db: &TestDb) -> anyhow::Result<()> {
    let f = fixture(db).await?;
    f.configs
        .configure(f.a, &Change::cli(), oauth2(Some(SECRET)))
        .await?;
    f.configs
        .configure(f.b, &Change::cli(), oauth2(Some(SECRET_2)))
        .await?;
    // Someone with write access to the database copies A's sealed secret into B's row.
    let a = repo::get(&f.store, f.a, "oauth2", false)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    let mut b = repo::get(&f.store, f.b, "oauth2", false)
        .await?
        .ok_or_else(|| anyhow::anyhow!("no row"))?;
    b.client_secret = a.client_secret.clone();
    repo::upsert(&f.store, &b).await?;
    let err = f
        .configs
        .client(f.b, "oauth2")
        .await
        .expect_err("a moved secret opened");
    assert!(matches!(err, ConfigError::Vault(_)), "{err:?}");
    assert_eq!((err.code(), err.status()), ("internal_error", 500));
    // The view still works (it never opens the secret).
    assert!(f.configs.get(f.b, "oauth2").await?.client_secret_set);
    Ok(())
}

async fn unconfigure_deletes_the_configuration_and_is_audited(db: &TestDb) -> anyhow::Result<()> {
    let f = fixture(db).await?;
    f.configs
        .configure(f.a, &Change::cli(), oauth2(Some(SECRET)))
        .await?;
    f.configs.remove(f.a, &Change::cli(), "oauth2").await?;
    assert!(matches!(
        f.configs.get(f.a, "oauth2").await,
        Err(ConfigError::NotFound { .. })
    ));
    assert!(f.configs.client(f.a, "oauth2").await?.is_none());
    assert!(matches!(
        f.configs.remove(f.a, &Change::cli(), "oauth2").await,
        Err(ConfigError::NotFound { .. })
    ));
    let rows = audit_rows(&f, f.a, "provider.unconfigure").await?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["provider"], "oauth2");
    assert_eq!(rows[0]["detail"]["via"], "cli");
    Ok(())
}

async fn a_change_that_cannot_be_audited_says_it_was_applied(db: &TestDb) -> anyhow::Result<()> {
    let f = fixture(db).await?;
    audit_testing::break_audit_writes(&f.store).await?;
    let err = f
        .configs
        .configure(f.a, &Change::cli(), oauth2(Some(SECRET)))
        .await
        .expect_err("audited without an audit log");
    assert!(matches!(err, ConfigError::AuditUnavailable(_)), "{err:?}");
    assert_eq!((err.code(), err.status()), ("audit_unavailable", 503));
    assert!(err.to_string().contains("applied"), "{err}");
    // As for grants: the change holds, only its record is missing.
    assert!(f.configs.get(f.a, "oauth2").await?.client_secret_set);
    audit_testing::repair_audit_writes(&f.store).await?;
    Ok(())
}

#[test]
fn client_config_debug_redacts_the_secret() {
    let client = ClientConfig {
        id: "0190aa00-0000-7000-8000-000000000000".into(),
        app_id: AppId::new(),
        provider: "github".into(),
        client_id: "Iv1.abc".into(),
        client_secret: Some(Zeroizing::new(SECRET.to_owned())),
        scopes: Vec::new(),
        redirect_uri: None,
        extra_params: Vec::new(),
        connection_params: Vec::new(),
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    };
    let shown = format!("{client:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(
        shown.contains("[redacted]") && shown.contains("Iv1.abc"),
        "{shown}"
    );
}
