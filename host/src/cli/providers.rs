//! `tessera provider configure|config|unconfigure`: the operator's side of an app's OAuth
//! client configuration, through the same service the API uses (same validation, sealing
//! and audit rows, with `via: cli`).

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use tessera_proto::providers::{ProviderConfigRequest, ProviderConfigView};

use crate::apps::Apps;
use crate::audit::AuditLog;
use crate::grants::Change;
use crate::oauth::config::ProviderConfigs;
use crate::plugin::Registry;

/// `tessera provider configure`.
#[derive(Debug, Args)]
pub struct ConfigureArgs {
    /// The provider id (an OAuth provider; `tessera provider list`).
    pub provider: String,
    /// The app.
    #[arg(long)]
    pub app: String,
    /// The OAuth client id the provider issued to the app.
    #[arg(long)]
    pub client_id: String,
    /// `-`: read the client secret from standard input (one line). The secret itself is
    /// never accepted on the command line, where the process list and the shell history
    /// would show it. Without this flag the stored secret is kept.
    #[arg(long, value_name = "-", conflicts_with = "clear_client_secret")]
    pub client_secret: Option<String>,
    /// Delete the stored client secret (a public client).
    #[arg(long)]
    pub clear_client_secret: bool,
    /// Provider scopes to request, comma-separated (default: the provider's default scopes).
    #[arg(long, value_name = "SCOPE,…")]
    pub scopes: Option<String>,
    /// The redirect URI registered with the provider (default: the host's own
    /// `/connect/callback`).
    #[arg(long, value_name = "URI")]
    pub redirect_uri: Option<String>,
    /// A connection parameter the provider declares, for every connection of this app
    /// (`issuer=https://idp.example.com` for `oauth2`); repeat for each.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// An extra authorization-request parameter (`prompt=consent`); repeat for each.
    #[arg(long = "extra", value_name = "NAME=VALUE")]
    pub extras: Vec<String>,
}

/// `tessera provider config` and `tessera provider unconfigure`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The provider id.
    pub provider: String,
    /// The app.
    #[arg(long)]
    pub app: String,
}

/// Opens the service (with its own audit writer) and runs `f`; flushes the audit log.
async fn with_configs<F, Fut>(apps: Apps, registry: Registry, f: F) -> Result<ExitCode>
where
    F: FnOnce(ProviderConfigs) -> Fut,
    Fut: Future<Output = Result<ExitCode>>,
{
    let audit = AuditLog::start(apps.store().clone());
    let configs = ProviderConfigs::new(
        apps.store().clone(),
        apps.keys().clone(),
        Arc::new(registry),
        audit.clone(),
    );
    let result = f(configs).await;
    audit.shutdown().await;
    result
}

fn pairs(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((name, value)) = item.split_once('=') else {
            bail!("{what} {item:?} must be NAME=VALUE");
        };
        if out
            .insert(name.trim().to_owned(), value.to_owned())
            .is_some()
        {
            bail!("{what} {name:?} is given twice");
        }
    }
    Ok(out)
}

fn secret_from_stdin(flag: Option<&str>) -> Result<Option<String>> {
    match flag {
        None => Ok(None),
        Some("-") => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the client secret from standard input")?;
            Ok(Some(line.trim_end_matches(['\n', '\r']).to_owned()))
        }
        // The value is not repeated: it may be the secret.
        Some(_) => bail!(
            "--client-secret takes `-` and reads the secret from standard input; a secret on \
             the command line would be visible in the process list and the shell history"
        ),
    }
}

fn print_view(view: &ProviderConfigView, app: &str) {
    let list = |m: &BTreeMap<String, String>| {
        if m.is_empty() {
            "none".to_owned()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        }
    };
    println!("{} OAuth client of app {app}", view.provider);
    println!("  client id          {}", view.client_id);
    println!(
        "  client secret      {}",
        if view.client_secret_set {
            "set (sealed)"
        } else {
            "none (public client)"
        }
    );
    println!(
        "  scopes             {}",
        if view.scopes.is_empty() {
            "the provider's defaults".to_owned()
        } else {
            view.scopes.join(" ")
        }
    );
    println!(
        "  redirect uri       {}",
        view.redirect_uri
            .as_deref()
            .unwrap_or("the host's /connect/callback")
    );
    println!("  connection params  {}", list(&view.connection_params));
    println!("  extra params       {}", list(&view.extra_params));
    println!("  updated            {}", view.updated_at);
}

/// `tessera provider configure`.
pub async fn configure(
    apps: Apps,
    registry: Registry,
    args: ConfigureArgs,
    json: bool,
) -> Result<ExitCode> {
    let app = apps.app(&args.app).await?;
    let request = ProviderConfigRequest {
        provider: args.provider,
        client_id: args.client_id,
        client_secret: secret_from_stdin(args.client_secret.as_deref())?,
        clear_client_secret: args.clear_client_secret,
        scopes: args
            .scopes
            .as_deref()
            .unwrap_or_default()
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        redirect_uri: args.redirect_uri,
        extra_params: pairs(&args.extras, "--extra")?,
        connection_params: pairs(&args.params, "--param")?,
    };
    with_configs(apps, registry, |configs| async move {
        let view = configs.configure(app.id, &Change::cli(), request).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&view)?);
        } else {
            print_view(&view, &app.name);
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// `tessera provider config`.
pub async fn show(
    apps: Apps,
    registry: Registry,
    args: ConfigArgs,
    json: bool,
) -> Result<ExitCode> {
    let app = apps.app(&args.app).await?;
    with_configs(apps, registry, |configs| async move {
        let view = configs.get(app.id, &args.provider).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&view)?);
        } else {
            print_view(&view, &app.name);
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// `tessera provider unconfigure`.
pub async fn unconfigure(
    apps: Apps,
    registry: Registry,
    args: ConfigArgs,
    json: bool,
) -> Result<ExitCode> {
    let app = apps.app(&args.app).await?;
    with_configs(apps, registry, |configs| async move {
        configs
            .remove(app.id, &Change::cli(), &args.provider)
            .await?;
        if json {
            println!(
                "{}",
                serde_json::json!({ "provider": args.provider, "app": app.name, "removed": true })
            );
        } else {
            println!(
                "removed the {} OAuth client of app {} (its client secret is deleted)",
                args.provider, app.name
            );
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}
