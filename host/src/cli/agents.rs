//! `tessera agent create|list|show|disable|enable`: the operator's side of agents, through
//! the same service the API uses (same name rules and audit rows, with `via: cli`). Agents
//! are named on the command line; their keys are `tessera key create --app APP --agent NAME`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use tessera_proto::agents::Agent;

use crate::apps::Apps;
use crate::grants::{Change, Owner};

/// `tessera agent …`
#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Create an agent of an app. Give it keys with `tessera key create --app APP --agent
    /// NAME --scopes …`.
    Create {
        /// Unique within the app: 1 to 64 characters of a-z A-Z 0-9 . _ -
        name: String,
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// List an app's agents, by name.
    List {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Show one agent.
    Show {
        /// The agent's name.
        name: String,
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Disable an agent: every key of it is refused (like a revoked key) from its next
    /// request on, on every host instance, until it is enabled again.
    Disable {
        /// The agent's name.
        name: String,
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Enable a disabled agent: its keys (those not revoked) work again.
    Enable {
        /// The agent's name.
        name: String,
        /// The app.
        #[arg(long)]
        app: String,
    },
}

fn status(agent: &Agent) -> &'static str {
    if agent.is_disabled() {
        "disabled"
    } else {
        "enabled"
    }
}

fn print_agent(agent: &Agent, app: &str) {
    println!("agent {} of app {app}", agent.name);
    println!("  id        {}", agent.id);
    println!("  status    {}", status(agent));
    println!("  created   {}", agent.created_at);
    if let Some(at) = &agent.disabled_at {
        println!("  disabled  {at}");
    }
}

/// Runs one `tessera agent` command.
pub(super) async fn run(apps: Apps, cmd: AgentCommand, json: bool) -> Result<ExitCode> {
    let agents = apps.agents();
    match cmd {
        AgentCommand::Create { name, app } => {
            let app = apps.app(&app).await?;
            let agent = agents
                .create(Owner::app(app.id), &Change::cli(), &name)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&agent)?);
            } else {
                println!(
                    "created agent {:?} of app {:?} (id {})",
                    agent.name, app.name, agent.id
                );
                println!(
                    "next: tessera key create --app {} --agent {} --scopes SCOPE,…",
                    app.name, agent.name
                );
            }
        }
        AgentCommand::List { app } => {
            let app = apps.app(&app).await?;
            let all = agents.all(app.id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                println!(
                    "app {:?} has no agents: tessera agent create NAME --app {}",
                    app.name, app.name
                );
            } else {
                println!(
                    "{:<24}  {:<36}  {:<8}  {:<24}  DISABLED",
                    "NAME", "ID", "STATUS", "CREATED"
                );
                for a in &all {
                    println!(
                        "{:<24}  {:<36}  {:<8}  {:<24}  {}",
                        a.name,
                        a.id,
                        status(a),
                        a.created_at,
                        a.disabled_at.as_deref().unwrap_or("-"),
                    );
                }
            }
        }
        AgentCommand::Show { name, app } => {
            let app = apps.app(&app).await?;
            let agent = agents.by_name(app.id, &app.name, &name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&agent)?);
            } else {
                print_agent(&agent, &app.name);
            }
        }
        AgentCommand::Disable { name, app } => toggle(&apps, &app, &name, true, json).await?,
        AgentCommand::Enable { name, app } => toggle(&apps, &app, &name, false, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tessera agent disable` (`disable`) or `enable`.
async fn toggle(apps: &Apps, app: &str, name: &str, disable: bool, json: bool) -> Result<()> {
    let app = apps.app(app).await?;
    let agents = apps.agents();
    let agent = agents.by_name(app.id, &app.name, name).await?;
    let toggled = agents
        .set_disabled(Owner::app(app.id), &Change::cli(), &agent.id, disable)
        .await?;
    let agent = toggled.agent;
    if json {
        let mut out = serde_json::to_value(&agent)?;
        if let Some(obj) = out.as_object_mut() {
            obj.insert("changed".into(), serde_json::json!(toggled.now));
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let state = if disable { "disabled" } else { "enabled" };
        if toggled.now {
            println!("{state} agent {:?} of app {:?}", agent.name, app.name);
            if disable {
                println!("its keys are refused from their next request on");
            }
        } else {
            println!(
                "agent {:?} of app {:?} was already {state}",
                agent.name, app.name
            );
        }
    }
    Ok(())
}
