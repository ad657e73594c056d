//! A Tessera host set up as a user would (`tessera init`, `tessera app create`, `tessera key
//! create --json`, `tessera serve --listen 127.0.0.1:0`), its Stripe traffic sent to the
//! stand-in through `TESSERA_EGRESS_OVERRIDES`, and a managed Stripe secret stored through
//! the SDK.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result, bail, ensure};
use tessera_sdk::{App, ManagedSecretRequest, Scope};

use crate::servers::Server;

/// The app every benchmark call is made for.
const APP: &str = "bench";

/// A data directory set up with one app and one key holding every scope.
pub struct Prepared {
    pub api_key: String,
}

fn tessera(bin: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("--data-dir").arg(dir).args(args);
    for var in [
        "TESSERA_MASTER_KEY",
        "TESSERA_DATABASE_URL",
        "TESSERA_CONFIG",
        "TESSERA_PROVIDERS_DIR",
        "TESSERA_PUBLIC_URL",
        "TESSERA_LISTEN",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

fn json(bin: &Path, dir: &Path, args: &[&str]) -> Result<serde_json::Value> {
    let out = tessera(bin, dir, args).output()?;
    if !out.status.success() {
        bail!(
            "tessera {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).with_context(|| format!("tessera {}: not JSON", args[0]))
}

/// `tessera init` (SQLite in `dir`), an app, and a key with every scope.
pub fn prepare(bin: &Path, dir: &Path) -> Result<Prepared> {
    json(bin, dir, &["init", "--json"])?;
    json(bin, dir, &["app", "create", APP, "--json"])?;
    let scopes = Scope::ALL
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let key = json(
        bin,
        dir,
        &["key", "create", "--app", APP, "--scopes", &scopes, "--json"],
    )?;
    let api_key = key["key"]
        .as_str()
        .context("`key create --json` printed no key")?
        .to_owned();
    Ok(Prepared { api_key })
}

/// Starts `tessera serve` on `dir`, its `api.stripe.com` traffic sent to `upstream`
/// (`127.0.0.1:PORT`). Logs at `warn`, so a request log does not weigh on the figures.
pub fn start(bin: &Path, dir: &Path, upstream: &str) -> Result<Server> {
    let mut cmd = tessera(bin, dir, &["serve", "--listen", "127.0.0.1:0"]);
    let log = std::env::var("BENCH_TESSERA_LOG").unwrap_or_else(|_| "warn".to_owned());
    cmd.env("TESSERA_LOG", log).env(
        "TESSERA_EGRESS_OVERRIDES",
        format!("api.stripe.com=http://{upstream}"),
    );
    Server::spawn_printing_addr("tessera", cmd)
}

/// Stores `stripe_key` as a managed Stripe secret (the provider checks it against the
/// stand-in) and returns the grant id.
pub async fn store_secret(app: &App, stripe_key: &str) -> Result<String> {
    let stored = app
        .set_managed_secret(&ManagedSecretRequest {
            provider: "stripe".into(),
            principal: None,
            fields: BTreeMap::from([("secret_key".to_owned(), stripe_key.to_owned())]),
            connection_params: BTreeMap::new(),
            grant_id: None,
        })
        .await
        .context("storing the managed Stripe secret")?;
    ensure!(
        stored.grant.account_label == "Acme Inc",
        "unexpected grant {:?}",
        stored.grant
    );
    Ok(stored.grant.id)
}
