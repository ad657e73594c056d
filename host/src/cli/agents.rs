//! `tessera agent create|list|show|disable|enable|delegate|delegations|undelegate`: the
//! operator's side of agents and their delegations, through the same services the API uses
//! (same rules and audit rows, with `via: cli`). Agents are named on the command line; their
//! keys are `tessera key create --app APP --agent NAME`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use tessera_proto::agents::Agent;

use crate::apps::Apps;
use crate::delegations::Delegations;
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
    /// Let an agent use an existing grant of the app (a user's, a group's or the app's own)
    /// without changing the grant: a delegation, revocable on its own.
    Delegate {
        /// The agent's name.
        name: String,
        /// The app.
        #[arg(long)]
        app: String,
        /// The grant id (`tessera grant list --app APP`).
        #[arg(long)]
        grant: String,
        /// How long it lasts: seconds, or a number with s, m, h or d (`12h`, `7d`); at most a
        /// year. Without it, until revoked.
        #[arg(long)]
        ttl: Option<String>,
    },
    /// List an app's delegations, newest first (live ones; `--all` adds ended ones).
    Delegations {
        /// Only this agent's.
        name: Option<String>,
        /// The app.
        #[arg(long)]
        app: String,
        /// Revoked and expired ones too.
        #[arg(long)]
        all: bool,
    },
    /// End a delegation: the agent loses access to the grant at once; the grant stays.
    Undelegate {
        /// The delegation id.
        id: String,
        /// The app.
        #[arg(long)]
        app: String,
    },
}

/// Seconds from `3600`, `90s`, `30m`, `12h` or `7d`.
pub fn parse_ttl(text: &str) -> Result<u64> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| anyhow::anyhow!("TTL {text:?} is not a number of seconds or like 12h, 7d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("TTL {text:?}: the unit must be s, m, h or d"),
    };
    n.checked_mul(factor)
        .ok_or_else(|| anyhow::anyhow!("TTL {text:?} is too long"))
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
        cmd @ (AgentCommand::Delegate { .. }
        | AgentCommand::Delegations { .. }
        | AgentCommand::Undelegate { .. }) => delegation(&apps, cmd, json).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `tessera agent delegate|delegations|undelegate`.
async fn delegation(apps: &Apps, cmd: AgentCommand, json: bool) -> Result<()> {
    let agents = apps.agents();
    let delegations = Delegations::new(apps.store().clone());
    match cmd {
        AgentCommand::Delegate {
            name,
            app,
            grant,
            ttl,
        } => {
            let app = apps.app(&app).await?;
            let agent = agents.by_name(app.id, &app.name, &name).await?;
            let ttl = ttl.as_deref().map(parse_ttl).transpose()?;
            let d = delegations
                .create(Owner::app(app.id), &Change::cli(), &grant, &agent.id, ttl)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!(
                    "agent {:?} of app {:?} may now use grant {} (delegation {}{})",
                    agent.name,
                    app.name,
                    d.grant_id,
                    d.id,
                    d.expires_at
                        .as_ref()
                        .map(|e| format!(", until {e}"))
                        .unwrap_or_default()
                );
            }
        }
        AgentCommand::Delegations { name, app, all } => {
            let app = apps.app(&app).await?;
            let agent = match &name {
                Some(n) => Some(agents.by_name(app.id, &app.name, n).await?.id),
                None => None,
            };
            let page = delegations
                .list(Owner::app(app.id), agent.as_deref(), None, all)
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page.items)?);
            } else if page.items.is_empty() {
                println!("no delegations");
            } else {
                println!(
                    "{:<36}  {:<36}  {:<36}  {:<8}  {:<8}  EXPIRES",
                    "ID", "GRANT", "AGENT", "ORIGIN", "STATUS"
                );
                for d in &page.items {
                    println!(
                        "{:<36}  {:<36}  {:<36}  {:<8}  {:<8}  {}",
                        d.id,
                        d.grant_id,
                        d.agent_id,
                        d.origin,
                        d.status,
                        d.expires_at.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        AgentCommand::Undelegate { id, app } => {
            let app = apps.app(&app).await?;
            let ended = delegations
                .revoke(Owner::app(app.id), &Change::cli(), &id)
                .await?;
            if json {
                let mut out = serde_json::to_value(&ended.delegation)?;
                if let Some(obj) = out.as_object_mut() {
                    obj.insert("changed".into(), serde_json::json!(ended.now));
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if ended.now {
                println!(
                    "revoked delegation {id}: agent {} no longer reaches grant {}",
                    ended.delegation.agent_id, ended.delegation.grant_id
                );
            } else {
                println!(
                    "delegation {id} had already ended ({})",
                    ended.delegation.status
                );
            }
        }
        _ => {}
    }
    Ok(())
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
