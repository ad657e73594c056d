//! `tessera idp configure|show|remove`: an app's identity provider, the provider whose JWTs
//! (`user_token`) name the app's end users. Through the same service the admin API will use
//! (same checks, audit rows with `via: cli`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use crate::apps::Apps;
use crate::audit::AuditLog;
use crate::grants::Change;
use crate::identity::config::{IdpConfigs, IdpSettings};
use crate::store::idp_configs::IdpConfigRecord;

/// `tessera idp …`
#[derive(Debug, Subcommand)]
pub enum IdpCommand {
    /// Set the app's identity provider (replaces the previous one): the issuer of its users'
    /// JWTs, where its keys are, the audiences and algorithms accepted, the groups claim.
    Configure {
        /// The app.
        #[arg(long)]
        app: String,
        /// The exact `iss` of the users' tokens (https; http only on 127.0.0.1/localhost).
        #[arg(long)]
        issuer: String,
        /// The JWKS URL; without it, the `jwks_uri` of the issuer's discovery document.
        #[arg(long)]
        jwks_url: Option<String>,
        /// An accepted `aud` value (repeat for several; at least one).
        #[arg(long = "audience", value_name = "AUD", required = true)]
        audiences: Vec<String>,
        /// The claim listing a user's groups (e.g. `groups`).
        #[arg(long)]
        groups_claim: Option<String>,
        /// Accepted algorithms, comma-separated (default: every asymmetric one: RS256,
        /// RS384, RS512, PS256, PS384, PS512, ES256, ES384, `EdDSA`; HMAC and `none` never).
        #[arg(long, value_delimiter = ',')]
        algorithms: Vec<String>,
        /// Clock skew allowed on `exp`/`nbf`, in seconds (0–300).
        #[arg(long, default_value_t = 60)]
        leeway_secs: u64,
    },
    /// Show the app's identity provider.
    Show {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Remove the app's identity provider.
    Remove {
        /// The app.
        #[arg(long)]
        app: String,
    },
}

/// The JSON the API answers with (`GET /v1/idp`), so scripts read one shape.
fn view(r: &IdpConfigRecord) -> serde_json::Value {
    serde_json::to_value(crate::identity::config::to_wire(r)).unwrap_or_default()
}

fn print(r: &IdpConfigRecord, app: &str) {
    println!("identity provider of app {app}");
    println!("  issuer        {}", r.issuer);
    println!(
        "  keys          {}",
        r.jwks_url
            .as_deref()
            .unwrap_or("from the issuer's discovery document")
    );
    println!("  audiences     {}", r.audiences.join(" "));
    println!(
        "  groups claim  {}",
        r.groups_claim.as_deref().unwrap_or("none")
    );
    println!(
        "  algorithms    {}",
        if r.algorithms.is_empty() {
            "every asymmetric one".to_owned()
        } else {
            r.algorithms.join(" ")
        }
    );
    println!("  leeway        {} s", r.leeway_secs);
    println!("  updated       {}", r.updated_at.to_rfc3339());
}

/// Runs one `tessera idp` command.
pub(super) async fn run(apps: Apps, cmd: IdpCommand, json: bool) -> Result<ExitCode> {
    let audit = AuditLog::start(apps.store().clone());
    let idps = IdpConfigs::new(apps.store().clone(), audit.clone());
    let result = async {
        match cmd {
            IdpCommand::Configure {
                app,
                issuer,
                jwks_url,
                audiences,
                groups_claim,
                algorithms,
                leeway_secs,
            } => {
                let app = apps.app(&app).await?;
                let stored = idps
                    .configure(
                        app.id,
                        &Change::cli(),
                        IdpSettings {
                            issuer,
                            jwks_url,
                            audiences,
                            groups_claim,
                            algorithms: algorithms
                                .into_iter()
                                .map(|a| a.trim().to_owned())
                                .filter(|a| !a.is_empty())
                                .collect(),
                            leeway_secs,
                        },
                    )
                    .await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&view(&stored))?);
                } else {
                    print(&stored, &app.name);
                }
            }
            IdpCommand::Show { app } => {
                let app = apps.app(&app).await?;
                let stored = idps.get(app.id).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&view(&stored))?);
                } else {
                    print(&stored, &app.name);
                }
            }
            IdpCommand::Remove { app } => {
                let app = apps.app(&app).await?;
                idps.remove(app.id, &Change::cli()).await?;
                if json {
                    println!("{}", json!({ "removed": true }));
                } else {
                    println!("removed the identity provider of app {}", app.name);
                }
            }
        }
        Ok::<ExitCode, anyhow::Error>(ExitCode::SUCCESS)
    }
    .await;
    audit.shutdown().await;
    result
}
