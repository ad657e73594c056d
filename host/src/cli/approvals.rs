//! `tessera approval list|show|approve|deny`: the operator's side of human-in-the-loop
//! approvals, through the same service the API uses (same checks, same audit rows, with
//! `via: cli`). Approving sends the stored request from this process, exactly as stored.

use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use tessera_proto::approvals::{Approval, ApprovalStatus, DecideRequest};

use super::grants::with_grants;
use crate::apps::Apps;
use crate::calls::{ApprovalFilter, Calls};
use crate::config::Config;
use crate::grants::{Change, Owner};
use crate::plugin::Registry;

/// `tessera approval …`
#[derive(Debug, Subcommand)]
pub enum ApprovalCommand {
    /// List an app's approvals, newest first.
    List {
        /// The app.
        #[arg(long)]
        app: String,
        /// Only this status: pending, approved, executed, failed, denied, expired.
        #[arg(long)]
        status: Option<String>,
        /// Only this grant's.
        #[arg(long)]
        grant: Option<String>,
    },
    /// Show one approval with the exact request it holds (secret header and query values
    /// redacted) and the request's SHA-256.
    Show {
        /// The approval id.
        id: String,
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Approve: the stored request is sent at once, exactly as stored, and only once.
    Approve {
        /// The approval id.
        id: String,
        /// The app.
        #[arg(long)]
        app: String,
        /// The SHA-256 `show` printed: refuse if the stored request is not the one shown.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// A note for the audit log and the app.
        #[arg(long)]
        note: Option<String>,
    },
    /// Deny: final; nothing is sent.
    Deny {
        /// The approval id.
        id: String,
        /// The app.
        #[arg(long)]
        app: String,
        /// Why, for the audit log and the app.
        #[arg(long)]
        note: Option<String>,
    },
}

/// Runs `tessera approval …`.
pub async fn run(
    config: &Config,
    apps: Apps,
    registry: Registry,
    cmd: ApprovalCommand,
    json: bool,
) -> Result<ExitCode> {
    let app_name = match &cmd {
        ApprovalCommand::List { app, .. }
        | ApprovalCommand::Show { app, .. }
        | ApprovalCommand::Approve { app, .. }
        | ApprovalCommand::Deny { app, .. } => app.clone(),
    };
    let app = apps.app(&app_name).await?;
    with_grants(config, apps, registry, |grants| async move {
        let calls = Calls::new(grants.clone(), grants.audit().clone());
        match cmd {
            ApprovalCommand::List { status, grant, .. } => {
                let filter = ApprovalFilter {
                    status: status
                        .map(|s| s.parse::<ApprovalStatus>())
                        .transpose()
                        .map_err(anyhow::Error::msg)?,
                    grant_id: grant,
                    ..ApprovalFilter::default()
                };
                let page = calls.approvals(Owner::app(app.id), &filter).await?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&page)?);
                } else if page.items.is_empty() {
                    println!("app {app_name:?} has no approvals matching this");
                } else {
                    for a in &page.items {
                        println!(
                            "{}  {:<8} {:<7} {:<60} rule {:<16} expires {}",
                            a.id,
                            a.status.as_str(),
                            a.method,
                            a.url,
                            a.rule,
                            a.expires_at
                        );
                    }
                }
            }
            ApprovalCommand::Show { id, .. } => {
                let a = calls.approval(Owner::app(app.id), &id).await?;
                print_approval(&a, json)?;
            }
            ApprovalCommand::Approve {
                id, sha256, note, ..
            } => {
                let request = DecideRequest {
                    request_sha256: sha256,
                    note,
                };
                let a = calls
                    .decide(app.id, &id, true, &request, &Change::cli())
                    .await
                    .with_context(|| format!("approval {id} was not approved"))?;
                print_approval(&a, json)?;
                if a.status == ApprovalStatus::Failed {
                    return Ok(ExitCode::FAILURE);
                }
            }
            ApprovalCommand::Deny { id, note, .. } => {
                let request = DecideRequest {
                    request_sha256: None,
                    note,
                };
                let a = calls
                    .decide(app.id, &id, false, &request, &Change::cli())
                    .await
                    .with_context(|| format!("approval {id} was not denied"))?;
                print_approval(&a, json)?;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
    .await
}

fn print_approval(a: &Approval, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(a)?);
        return Ok(());
    }
    println!("approval {} ({})", a.id, a.status.as_str());
    println!(
        "  grant       {} ({}, {})",
        a.grant_id, a.provider, a.principal
    );
    if let Some(agent) = &a.agent_id {
        println!("  agent       {agent}");
    }
    println!(
        "  asked by    key {}{}",
        a.key_id,
        a.caller
            .as_ref()
            .map(|c| format!(", caller {c}"))
            .unwrap_or_default()
    );
    if let Some(reason) = &a.reason {
        println!("  reason      {reason}");
    }
    println!("  rule        {}", a.rule);
    println!("  asked at    {}", a.created_at);
    println!("  expires at  {}", a.expires_at);
    if let Some(by) = &a.decided_by {
        println!(
            "  decided     {} by {by} via {}",
            a.decided_at.as_deref().unwrap_or_default(),
            a.decided_via.as_deref().unwrap_or_default()
        );
    }
    if let Some(note) = &a.note {
        println!("  note        {note}");
    }
    if let Some(status) = a.response_status {
        println!(
            "  sent        {} → {status}",
            a.executed_at.as_deref().unwrap_or_default()
        );
    }
    if let Some(code) = &a.error_code {
        println!("  failed      {code}");
    }
    if let Some(r) = &a.request {
        println!("  request     {} {}", r.method, r.url);
        for (name, value) in &r.headers {
            println!("    {name}: {value}");
        }
        match (&r.body_text, r.body_bytes) {
            (_, 0) => println!("  body        (none)"),
            (Some(text), n) => println!("  body        ({n} bytes)\n{text}"),
            (None, n) => println!("  body        ({n} bytes, not text; base64 with --json)"),
        }
        println!("  sha256      {}", r.sha256);
    }
    Ok(())
}
