//! `tessera secret set` and `tessera grant list|show|revoke`: the operator's side of grants,
//! through the same grant service the API uses (so the same validation, sealing and audit
//! rows, with `via: cli`).

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use tessera_proto::grants::{Grant, ManagedSecretRequest, Principal};

use crate::apps::Apps;
use crate::audit::AuditLog;
use crate::config::Config;
use crate::egress::Egress;
use crate::grants::{Change, Grants, Owner};
use crate::plugin::Registry;
use crate::store::grants::{Filter, parse_kind, parse_status};

/// `tessera secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a provider secret for an app (validated by the provider, sealed at rest) and
    /// print the grant id. Setting it again for the same principal and account, or with
    /// `--grant`, rotates the secret and keeps the grant id.
    ///
    /// A field value of `-` is read from standard input (one line per such field, in order),
    /// so the secret stays out of the shell history and the process list.
    Set {
        /// The app.
        #[arg(long)]
        app: String,
        /// The provider id (`tessera provider list`).
        #[arg(long)]
        provider: String,
        /// A secret field, `NAME=VALUE` (repeat for each field the provider declares).
        #[arg(long = "field", value_name = "NAME=VALUE", required = true)]
        fields: Vec<String>,
        /// A connection parameter, `NAME=VALUE`.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Whom the grant belongs to: `system` (the app, default), `user:ISSUER:SUB` or
        /// `group:NAME`.
        #[arg(long, default_value = "system")]
        principal: String,
        /// Rotate this grant's secret.
        #[arg(long, value_name = "GRANT_ID")]
        grant: Option<String>,
    },
}

/// `tessera grant …`
#[derive(Debug, Subcommand)]
pub enum GrantCommand {
    /// List an app's grants, newest first.
    List {
        /// The app.
        #[arg(long)]
        app: String,
        /// Only this provider.
        #[arg(long)]
        provider: Option<String>,
        /// Only this principal (`system`, `user:ISSUER:SUB`, `group:NAME`).
        #[arg(long)]
        principal: Option<String>,
        /// Only this status: `active`, `reauth_required`, `revoked`.
        #[arg(long)]
        status: Option<String>,
        /// Only this kind: `oauth`, `managed_secret`.
        #[arg(long)]
        kind: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show one grant.
    Show {
        /// The app.
        #[arg(long)]
        app: String,
        /// The grant id.
        grant_id: String,
    },
    /// Revoke a grant: calls with it fail with `grant_revoked` from now on and its secret
    /// material is deleted.
    Revoke {
        /// The app.
        #[arg(long)]
        app: String,
        /// The grant id.
        grant_id: String,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give a grant a hard expiry (a TTL from now), or take it away: after it, calls with
    /// the grant fail with `grant_expired` until it is extended or the user connects again.
    Ttl {
        /// The app.
        #[arg(long)]
        app: String,
        /// The grant id.
        grant_id: String,
        /// How long from now: seconds, or a number with s, m, h or d (`12h`, `30d`); at
        /// most two years.
        #[arg(long, conflicts_with = "none", required_unless_present = "none")]
        ttl: Option<String>,
        /// No expiry.
        #[arg(long)]
        none: bool,
    },
}

/// Opens the grant service (with its own audit writer) and runs `f`; flushes the audit log.
pub(super) async fn with_grants<F, Fut>(
    config: &Config,
    apps: Apps,
    registry: Registry,
    f: F,
) -> Result<ExitCode>
where
    F: FnOnce(Grants) -> Fut,
    Fut: Future<Output = Result<ExitCode>>,
{
    let audit = AuditLog::start(apps.store().clone());
    let grants = Grants::new(
        apps.store().clone(),
        apps.keys().clone(),
        Arc::new(registry),
        Egress::new(&config.egress)?,
        audit.clone(),
    );
    let result = f(grants).await;
    audit.shutdown().await;
    result
}

fn pairs(items: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let mut stdin = std::io::stdin().lock();
    for item in items {
        let Some((name, value)) = item.split_once('=') else {
            bail!("{what} {item:?} must be NAME=VALUE");
        };
        let value = if value == "-" {
            let mut line = String::new();
            stdin
                .read_line(&mut line)
                .with_context(|| format!("cannot read {name} from standard input"))?;
            line.trim_end_matches(['\n', '\r']).to_owned()
        } else {
            value.to_owned()
        };
        if out.insert(name.trim().to_owned(), value).is_some() {
            bail!("{what} {name:?} is given twice");
        }
    }
    Ok(out)
}

fn grant_line(g: &Grant) -> String {
    format!(
        "{}  {:<10} {:<16} {:<15} {:<24} {}",
        g.id,
        g.provider,
        g.kind.as_str(),
        g.status.as_str(),
        g.principal.to_string(),
        g.account_label
    )
}

/// `tessera secret …`
pub async fn secret(
    config: &Config,
    apps: Apps,
    registry: Registry,
    cmd: SecretCommand,
    json: bool,
) -> Result<ExitCode> {
    let SecretCommand::Set {
        app,
        provider,
        fields,
        params,
        principal,
        grant,
    } = cmd;
    let app = apps.app(&app).await?;
    let principal: Principal = principal.parse()?;
    if matches!(principal, Principal::Agent(_)) {
        bail!(
            "agent principals are not supported by `secret set` yet; use system, user:ISSUER:SUB or group:NAME"
        );
    }
    let request = ManagedSecretRequest {
        provider,
        principal: Some(principal),
        fields: pairs(&fields, "--field")?,
        connection_params: pairs(&params, "--param")?,
        grant_id: grant,
    };
    with_grants(config, apps, registry, |grants| async move {
        let stored = grants
            .set_managed_secret(Owner::app(app.id), &Change::cli(), request)
            .await?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "grant": stored.grant,
                    "rotated": stored.rotated,
                }))?
            );
        } else {
            println!("{}", stored.grant.id);
            eprintln!(
                "{} {} grant for {} ({})",
                if stored.rotated {
                    "rotated the secret of the"
                } else {
                    "created a"
                },
                stored.grant.provider,
                stored.grant.principal,
                if stored.grant.account_label.is_empty() {
                    "no account label"
                } else {
                    &stored.grant.account_label
                },
            );
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// `tessera grant …`
pub async fn grant(
    config: &Config,
    apps: Apps,
    registry: Registry,
    cmd: GrantCommand,
    json: bool,
) -> Result<ExitCode> {
    match cmd {
        GrantCommand::List {
            app,
            provider,
            principal,
            status,
            kind,
            limit,
        } => {
            let app = apps.app(&app).await?;
            let filter = Filter {
                provider,
                principal: principal.map(|p| p.parse()).transpose()?,
                status: status
                    .map(|s| {
                        parse_status(&s).with_context(|| {
                            format!("unknown status {s:?}: use active, reauth_required or revoked")
                        })
                    })
                    .transpose()?,
                kind: kind
                    .map(|k| {
                        parse_kind(&k).with_context(|| {
                            format!("unknown kind {k:?}: use oauth or managed_secret")
                        })
                    })
                    .transpose()?,
                before: None,
                reachable_by: None,
            };
            with_grants(config, apps, registry, |grants| async move {
                let page = grants.list(Owner::app(app.id), filter, Some(limit)).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&page.items)?);
                } else if page.items.is_empty() {
                    eprintln!("no grants");
                } else {
                    for g in &page.items {
                        println!("{}", grant_line(g));
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
            .await
        }
        GrantCommand::Show { app, grant_id } => {
            let app = apps.app(&app).await?;
            with_grants(config, apps, registry, |grants| async move {
                let g = grants.get(Owner::app(app.id), &grant_id).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&g)?);
                } else {
                    println!("{}", grant_line(&g));
                    for (k, v) in &g.metadata {
                        println!("  {k}: {v}");
                    }
                }
                Ok(ExitCode::SUCCESS)
            })
            .await
        }
        GrantCommand::Revoke {
            app,
            grant_id,
            reason,
        } => revoke(config, apps, registry, (&app, grant_id, reason), json).await,
        GrantCommand::Ttl {
            app, grant_id, ttl, ..
        } => {
            set_ttl(
                config,
                apps,
                registry,
                (&app, &grant_id, ttl.as_deref()),
                json,
            )
            .await
        }
    }
}

/// `tessera grant ttl`: `(app, grant id, TTL text)`; no TTL text takes the expiry away.
async fn set_ttl(
    config: &Config,
    apps: Apps,
    registry: Registry,
    (app, grant_id, ttl): (&str, &str, Option<&str>),
    json: bool,
) -> Result<ExitCode> {
    let app = apps.app(app).await?;
    let ttl = ttl
        .map(super::agents::parse_ttl)
        .transpose()?
        .map(std::time::Duration::from_secs);
    let grant_id = grant_id.to_owned();
    with_grants(config, apps, registry, |grants| async move {
        let grant = grants
            .set_ttl(Owner::app(app.id), &Change::cli(), &grant_id, ttl)
            .await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&grant)?);
        } else {
            match &grant.valid_until {
                Some(until) => println!("grant {grant_id} works until {until}"),
                None => println!("grant {grant_id} has no expiry"),
            }
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

/// `tessera grant revoke`: `(app, grant id, reason)`.
async fn revoke(
    config: &Config,
    apps: Apps,
    registry: Registry,
    (app, grant_id, reason): (&str, String, Option<String>),
    json: bool,
) -> Result<ExitCode> {
    let app = apps.app(app).await?;
    with_grants(config, apps, registry, |grants| async move {
        let change = Change {
            reason,
            ..Change::cli()
        };
        let outcome = grants
            .revoke(Owner::app(app.id), &change, &grant_id)
            .await?;
        if json {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "grant": outcome.grant,
                    "revoked_now": outcome.now,
                    "upstream_revoked": outcome.upstream,
                }))?
            );
        } else if outcome.now {
            println!("revoked grant {grant_id}");
        } else {
            println!("grant {grant_id} was already revoked");
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}
