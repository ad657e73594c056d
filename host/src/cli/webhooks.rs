//! `tessera webhook set|show|remove|deliveries`: the operator's side of an app's webhook
//! endpoint, through the same service the API uses (same checks, audit rows with
//! `via: cli`).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use tessera_proto::webhooks::WebhookRequest;

use crate::apps::Apps;
use crate::grants::Change;
use crate::webhooks::Webhooks;

/// `tessera webhook …`
#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Set where an app's events go. The first time (or with `--rotate-secret`) a signing
    /// secret is printed, once.
    Set {
        /// The app.
        #[arg(long)]
        app: String,
        /// The endpoint: https, or http to a loopback address.
        #[arg(long)]
        url: String,
        /// Only these event types, comma-separated (default: all).
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Make a new signing secret.
        #[arg(long)]
        rotate_secret: bool,
    },
    /// Show an app's endpoint (never its secret).
    Show {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Stop sending an app's events; undelivered ones are dropped.
    Remove {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// List an app's deliveries, newest first.
    Deliveries {
        /// The app.
        #[arg(long)]
        app: String,
        /// Only this status: pending, delivered, failed.
        #[arg(long)]
        status: Option<String>,
    },
}

/// Runs `tessera webhook …`.
pub async fn run(apps: Apps, cmd: WebhookCommand, json: bool) -> Result<ExitCode> {
    let webhooks = Webhooks::new(
        apps.store().clone(),
        apps.keys().clone(),
        std::time::Duration::from_secs(10),
    );
    match cmd {
        WebhookCommand::Set {
            app,
            url,
            events,
            rotate_secret,
        } => {
            let id = apps.app(&app).await?.id;
            let request = WebhookRequest {
                url,
                events,
                rotate_secret,
            };
            let view = webhooks.configure(id, &request, &Change::cli()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                println!("webhook of app {app:?}: {}", view.url);
                if let Some(secret) = &view.secret {
                    println!("signing secret (shown once, keep it now): {secret}");
                }
            }
        }
        WebhookCommand::Show { app } => {
            let view = webhooks.get(apps.app(&app).await?.id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                let events = if view.events.is_empty() {
                    "all".to_owned()
                } else {
                    view.events.join(", ")
                };
                println!("webhook of app {app:?}: {}\n  events  {events}", view.url);
            }
        }
        WebhookCommand::Remove { app } => {
            webhooks
                .remove(apps.app(&app).await?.id, &Change::cli())
                .await?;
            if json {
                println!("{}", serde_json::json!({ "removed": true }));
            } else {
                println!("webhook of app {app:?} removed");
            }
        }
        WebhookCommand::Deliveries { app, status } => {
            let page = webhooks
                .deliveries(apps.app(&app).await?.id, status.as_deref())
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
            } else {
                for d in &page.items {
                    println!(
                        "{}  {:<22} {:<9} attempts {} {}",
                        d.event_id,
                        d.event_type,
                        d.status,
                        d.attempts,
                        d.last_error.as_deref().unwrap_or_default()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
