//! `tessera policy rules create|list|get|update|delete`: the operator's side of an app's
//! policy rules, through the same service the API uses (same checks, same compiled Cedar,
//! audit rows `policy.rule.*` with `via: cli`). This module only turns flags into a
//! [`RuleRequest`] and rules into text; it never checks or compiles a rule itself, so the
//! command line cannot accept what the API refuses.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use tessera_proto::policy::{PolicyRule, RuleKind, RuleRequest};

use crate::apps::Apps;
use crate::grants::Change;
use crate::policy::Policies;

/// `tessera policy …`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// An app's policy rules: restrictions every retrieve and proxy call must also pass.
    #[command(subcommand)]
    Rules(RulesCommand),
}

/// `tessera policy rules …`
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Create a rule. Its kind is exactly one of `--time-window` (with `--days`, `--hours`,
    /// `--tz`), `--ip-allow`, `--groups`, `--deny-methods`, `--rate-limit` (with
    /// `--per-secs`, `--per`), `--require-approval` (optionally with `--methods`, `--paths`,
    /// `--decide-within`) or `--cedar`.
    Create {
        /// Unique within the app: 1 to 64 characters of a-z A-Z 0-9 . _ -
        name: String,
        /// The app.
        #[arg(long)]
        app: String,
        /// What the rule says.
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// List an app's rules, by name.
    List {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Show one rule and the Cedar policy it compiles to.
    Get {
        /// The rule's name or id.
        name: String,
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Replace a rule: the flags are those of `create` and say the whole new rule (what is
    /// not given takes its default, e.g. `--applies-to app`).
    Update {
        /// The rule's name or id.
        name: String,
        /// The app.
        #[arg(long)]
        app: String,
        /// Rename the rule.
        #[arg(long = "name", value_name = "NEW")]
        new_name: Option<String>,
        /// What the rule says from now on.
        #[command(flatten)]
        rule: RuleArgs,
    },
    /// Delete a rule: calls it refused are allowed again (unless another rule refuses them).
    Delete {
        /// The rule's name or id.
        name: String,
        /// The app.
        #[arg(long)]
        app: String,
    },
}

/// What a rule applies to and says: the flags `create` and `update` share.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// What the rule applies to: `app` (every call of the app), `provider:ID`, `grant:ID`
    /// or `agent:ID`.
    #[arg(long, value_name = "LAYER", default_value = "app")]
    applies_to: String,
    /// The rule's kind.
    #[command(flatten)]
    kind: KindArgs,
    /// The settings of `--time-window`.
    #[command(flatten)]
    window: WindowArgs,
    /// The settings of `--rate-limit`.
    #[command(flatten)]
    limit: LimitArgs,
    /// The settings of `--require-approval`.
    #[command(flatten)]
    approval: ApprovalArgs,
}

/// The settings of a require-approval rule: only with `--require-approval`.
#[derive(Debug, Args)]
struct ApprovalArgs {
    /// With `--require-approval`: only these methods wait for approval, comma-separated
    /// (default: every method).
    #[arg(long, value_name = "METHOD,…", value_delimiter = ',', requires = "require_approval",
          conflicts_with_all = ["time_window", "ip_allow", "groups", "deny_methods", "cedar", "rate_limit"])]
    methods: Option<Vec<String>>,
    /// With `--require-approval`: only URL paths matching these patterns wait for approval,
    /// comma-separated, `*` matching anything (`/gmail/v1/users/*/messages/send`; default:
    /// every path).
    #[arg(long, value_name = "PATTERN,…", value_delimiter = ',', requires = "require_approval",
          conflicts_with_all = ["time_window", "ip_allow", "groups", "deny_methods", "cedar", "rate_limit"])]
    paths: Option<Vec<String>>,
    /// With `--require-approval`: how long a person has to decide, in seconds (5 to
    /// 604800; default 3600).
    #[arg(long, value_name = "SECONDS", requires = "require_approval",
          conflicts_with_all = ["time_window", "ip_allow", "groups", "deny_methods", "cedar", "rate_limit"])]
    decide_within: Option<u32>,
}

/// The settings of a rate limit: only with `--rate-limit`.
#[derive(Debug, Args)]
struct LimitArgs {
    /// With `--rate-limit`: the window, in seconds (1 to 86400).
    #[arg(long, value_name = "SECONDS", requires = "rate_limit",
          conflicts_with_all = ["time_window", "ip_allow", "groups", "deny_methods", "cedar", "require_approval"])]
    per_secs: Option<u32>,
    /// With `--rate-limit`: what is counted, `grant` (each grant on its own) or `agent`
    /// (each agent's calls).
    #[arg(long, value_name = "grant|agent", requires = "rate_limit",
          conflicts_with_all = ["time_window", "ip_allow", "groups", "deny_methods", "cedar", "require_approval"])]
    per: Option<String>,
}

/// The kind of a rule: exactly one of these.
#[derive(Debug, Args)]
#[group(id = "kind", required = true, multiple = false)]
struct KindArgs {
    /// Calls only on `--days`, within `--hours`, in time zone `--tz`; refused outside.
    #[arg(long, requires = "days", requires = "hours", requires = "tz")]
    time_window: bool,
    /// Calls only from these client addresses: IPv4 or IPv6 addresses or CIDR ranges,
    /// comma-separated.
    #[arg(long, value_name = "CIDR,…", value_delimiter = ',')]
    ip_allow: Option<Vec<String>>,
    /// Calls only on behalf of an end user in one of these identity-provider groups,
    /// comma-separated (the call must carry a user token).
    #[arg(long, value_name = "GROUP,…", value_delimiter = ',')]
    groups: Option<Vec<String>>,
    /// Refuse provider requests with these HTTP methods, comma-separated.
    #[arg(long, value_name = "METHOD,…", value_delimiter = ',')]
    deny_methods: Option<Vec<String>>,
    /// A custom Cedar `forbid` policy, from this file (`-`: standard input), checked
    /// against the schema of `GET /v1/policy/schema`.
    #[arg(long, value_name = "FILE")]
    cedar: Option<PathBuf>,
    /// At most this many calls per `--per-secs` seconds, counted `--per` grant or agent;
    /// calls over it get `429 rate_limited` with `Retry-After`.
    #[arg(long, value_name = "CALLS", requires = "per_secs", requires = "per")]
    rate_limit: Option<u32>,
    /// Proxied calls (matching `--methods` and `--paths`, when given) wait for a person's
    /// approval; retrieve calls on the grants it covers are refused.
    #[arg(long)]
    require_approval: bool,
}

/// The settings of a time window: only with `--time-window` (clap waives a requirement
/// that conflicts with a given argument, so the other kinds are excluded explicitly).
#[derive(Debug, Args)]
struct WindowArgs {
    /// With `--time-window`: the days the window is open, comma-separated: `mon` … `sun` or
    /// ranges (`mon-fri,sat`).
    #[arg(long, value_name = "DAYS", value_delimiter = ',', requires = "time_window",
          conflicts_with_all = ["ip_allow", "groups", "deny_methods", "cedar", "rate_limit", "require_approval"])]
    days: Option<Vec<String>>,
    /// With `--time-window`: the opening and closing time, `HH:MM-HH:MM` (24-hour, closing
    /// time exclusive; a closing time before the opening time spans midnight).
    #[arg(long, value_name = "HH:MM-HH:MM", value_parser = parse_hours, requires = "time_window",
          conflicts_with_all = ["ip_allow", "groups", "deny_methods", "cedar", "rate_limit", "require_approval"])]
    hours: Option<Hours>,
    /// With `--time-window`: the IANA time zone the hours are in, e.g. `Europe/Paris`.
    #[arg(long, value_name = "ZONE", requires = "time_window",
          conflicts_with_all = ["ip_allow", "groups", "deny_methods", "cedar", "rate_limit", "require_approval"])]
    tz: Option<String>,
}

/// `--hours`, split (the service checks the times themselves).
#[derive(Debug, Clone)]
struct Hours {
    start: String,
    end: String,
}

fn parse_hours(text: &str) -> Result<Hours, String> {
    match text.split_once('-') {
        Some((start, end)) if !start.trim().is_empty() && !end.trim().is_empty() => Ok(Hours {
            start: start.trim().to_owned(),
            end: end.trim().to_owned(),
        }),
        _ => Err(format!(
            "{text:?} is not an opening and a closing time like 09:00-18:00"
        )),
    }
}

/// The items of a comma-separated list, trimmed, empty ones left out.
fn items(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The Cedar policy of `--cedar FILE` (`-`: standard input).
fn read_policy(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the Cedar policy from standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the Cedar policy file {}", path.display()))
    }
}

impl RuleArgs {
    /// The request for a rule named `name`.
    fn request(self, name: String) -> Result<RuleRequest> {
        let KindArgs {
            time_window,
            ip_allow,
            groups,
            deny_methods,
            cedar,
            rate_limit,
            require_approval,
        } = self.kind;
        let WindowArgs { days, hours, tz } = self.window;
        // clap has made sure exactly one kind is given, with the window's settings.
        let rule = if time_window {
            let hours = hours.context("--time-window needs --hours")?;
            RuleKind::TimeWindow {
                days: items(days.context("--time-window needs --days")?),
                start: hours.start,
                end: hours.end,
                time_zone: tz.context("--time-window needs --tz")?,
            }
        } else if let Some(ranges) = ip_allow {
            RuleKind::IpAllow {
                ranges: items(ranges),
            }
        } else if let Some(any_of) = groups {
            RuleKind::Groups {
                any_of: items(any_of),
            }
        } else if let Some(deny) = deny_methods {
            RuleKind::Methods { deny: items(deny) }
        } else if let Some(path) = cedar {
            RuleKind::Cedar {
                policy: read_policy(&path)?,
            }
        } else if require_approval {
            RuleKind::RequireApproval {
                methods: self.approval.methods.map(items).unwrap_or_default(),
                paths: self.approval.paths.map(items).unwrap_or_default(),
                ttl_secs: self.approval.decide_within,
            }
        } else if let Some(limit) = rate_limit {
            RuleKind::RateLimit {
                limit,
                window_secs: self
                    .limit
                    .per_secs
                    .context("--rate-limit needs --per-secs")?,
                per: self.limit.per.context("--rate-limit needs --per")?,
            }
        } else {
            anyhow::bail!(
                "say what the rule does: --time-window, --ip-allow, --groups, --deny-methods, --rate-limit, --require-approval or --cedar"
            )
        };
        Ok(RuleRequest {
            name,
            applies_to: self.applies_to,
            rule,
        })
    }
}

/// What a rule says, in a few words.
fn summary(rule: &RuleKind) -> String {
    match rule {
        RuleKind::TimeWindow {
            days,
            start,
            end,
            time_zone,
        } => format!("{} {start}-{end} {time_zone}", days.join(",")),
        RuleKind::IpAllow { ranges } => format!("from {}", ranges.join(", ")),
        RuleKind::Groups { any_of } => format!("groups {}", any_of.join(", ")),
        RuleKind::Methods { deny } => format!("not {}", deny.join(", ")),
        RuleKind::RateLimit {
            limit,
            window_secs,
            per,
        } => format!("{limit} calls per {window_secs} s per {per}"),
        RuleKind::RequireApproval {
            methods,
            paths,
            ttl_secs,
        } => format!(
            "approval for {} {} (decide within {} s)",
            if methods.is_empty() {
                "any method".to_owned()
            } else {
                methods.join(",")
            },
            if paths.is_empty() {
                "on any path".to_owned()
            } else {
                format!("on {}", paths.join(", "))
            },
            ttl_secs.unwrap_or(crate::policy::rules::DEFAULT_APPROVAL_TTL_SECS)
        ),
        RuleKind::Cedar { .. } => "custom Cedar policy".to_owned(),
    }
}

fn print_rule(rule: &PolicyRule, heading: &str) {
    println!("{heading}");
    println!("  id          {}", rule.id);
    println!("  applies to  {}", rule.applies_to);
    println!("  kind        {}", rule.rule.name());
    println!("  says        {}", summary(&rule.rule));
    println!("  created     {}", rule.created_at);
    println!("  updated     {}", rule.updated_at);
    println!("  cedar");
    for line in rule.cedar.lines() {
        println!("    {line}");
    }
}

fn print_list(rules: &[PolicyRule], app: &str) {
    if rules.is_empty() {
        println!("app {app:?} has no policy rules: tessera policy rules create NAME --app {app} …");
        return;
    }
    println!(
        "{:<24}  {:<12}  {:<48}  UPDATED",
        "NAME", "KIND", "APPLIES TO"
    );
    for r in rules {
        println!(
            "{:<24}  {:<12}  {:<48}  {}",
            r.name,
            r.rule.name(),
            r.applies_to,
            r.updated_at
        );
    }
}

/// Prints `rule` as JSON, or for people under its name and what just happened to it
/// (`created`, `updated`).
fn show(rule: &PolicyRule, app: &str, verb: Option<&str>, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rule)?);
    } else {
        let name = format!("policy rule {:?} of app {app:?}", rule.name);
        print_rule(
            rule,
            &verb.map_or_else(|| name.clone(), |v| format!("{v} {name}")),
        );
    }
    Ok(())
}

/// Runs one `tessera policy` command.
pub(super) async fn run(apps: Apps, cmd: PolicyCommand, json: bool) -> Result<ExitCode> {
    let PolicyCommand::Rules(cmd) = cmd;
    let policies = Policies::new(apps.store().clone());
    match cmd {
        RulesCommand::Create { name, app, rule } => {
            let app = apps.app(&app).await?;
            let request = rule.request(name)?;
            let created = policies.create(app.id, &Change::cli(), &request).await?;
            show(&created, &app.name, Some("created"), json)?;
        }
        RulesCommand::List { app } => {
            let app = apps.app(&app).await?;
            let rules = policies.list(app.id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rules)?);
            } else {
                print_list(&rules, &app.name);
            }
        }
        RulesCommand::Get { name, app } => {
            let app = apps.app(&app).await?;
            let rule = policies.get(app.id, &name).await?;
            show(&rule, &app.name, None, json)?;
        }
        RulesCommand::Update {
            name,
            app,
            new_name,
            rule,
        } => {
            let app = apps.app(&app).await?;
            // NAME may be an id: without `--name`, the rule keeps its stored name.
            let new_name = match new_name {
                Some(n) => n,
                None => policies.get(app.id, &name).await?.name,
            };
            let request = rule.request(new_name)?;
            let updated = policies
                .update(app.id, &Change::cli(), &name, &request)
                .await?;
            show(&updated, &app.name, Some("updated"), json)?;
        }
        RulesCommand::Delete { name, app } => {
            let app = apps.app(&app).await?;
            let deleted = policies.delete(app.id, &Change::cli(), &name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&deleted)?);
            } else {
                println!(
                    "deleted policy rule {:?} of app {:?} (id {})",
                    deleted.name, app.name, deleted.id
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
