//! The `tessera` command line: argument parsing and the commands themselves, each a thin
//! layer over `plugin`, `conformance`, `setup`, `apps` and `server`. Output is for people by default and JSON
//! with `--json`; errors go to standard error and give a non-zero exit code.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use serde_json::json;

use tessera_proto::scopes::Scope;

use crate::apps::{Apps, KeyOwner, KeySummary};
use crate::config::{Config, LogFormat, Overrides};
use crate::metrics::Metrics;
use crate::plugin::types::{AuthKind, ProviderInfo};
use crate::plugin::{
    CallObserver, Plugin, PoolingMode, Registry, RegistryConfig, Runtime, RuntimeConfig,
};
use crate::store::DatabaseConfig;
use crate::store::apps::App;
use crate::{conformance, keys, scaffold, server, setup};

mod agents;
mod approvals;
mod audit;
mod grants;
mod idp;
mod policy;
mod providers;
mod webhooks;

pub use audit::{AuditCommand, ExportFormat};

/// Tessera: a self-hosted credential vault, authorization layer and audit pipeline for apps
/// and AI agents that call third-party APIs.
#[derive(Debug, Parser)]
#[command(name = "tessera", version, about)]
pub struct Args {
    /// Data directory (state, component cache).
    #[arg(long, global = true, env = "TESSERA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (default: tessera.toml in the data directory, when present).
    #[arg(long, global = true, env = "TESSERA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of operator-supplied provider components (`*.wasm`).
    #[arg(long, global = true)]
    pub providers_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up the data directory: master key (0600 key file unless `TESSERA_MASTER_KEY` is
    /// set), database and migrations, first data key. Safe to run again.
    Init,
    /// Run the host: load providers, watch the providers directory, serve HTTP.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free one).
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
    },
    /// Provider components: list, inspect, check, scaffold; an app's OAuth client for a
    /// provider: configure, config, unconfigure.
    #[command(subcommand)]
    Provider(ProviderCommand),
    /// Apps: register and list.
    #[command(subcommand)]
    App(AppCommand),
    /// API keys of an app: create (shown once), list, revoke.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Agents of an app: create, list, show, disable, enable; delegate grants to them.
    #[command(subcommand)]
    Agent(agents::AgentCommand),
    /// The identity provider of an app (whose JWTs name its end users): configure, show,
    /// remove.
    #[command(subcommand)]
    Idp(idp::IdpCommand),
    /// Policy rules of an app (time windows, IP allow-lists, groups, denied methods, custom
    /// Cedar `forbid` policies): create, list, get, update, delete.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Human-in-the-loop approvals of an app: list, show the exact request, approve (sends
    /// it once), deny.
    #[command(subcommand)]
    Approval(approvals::ApprovalCommand),
    /// The webhook endpoint of an app (signed events about approvals and grants): set,
    /// show, remove, deliveries.
    #[command(subcommand)]
    Webhook(webhooks::WebhookCommand),
    /// Managed secrets: store or rotate a provider secret for an app.
    #[command(subcommand)]
    Secret(grants::SecretCommand),
    /// Grants of an app: list, show, revoke.
    #[command(subcommand)]
    Grant(grants::GrantCommand),
    /// The audit log: tail (optionally follow), export as JSON lines, verify the hash chain.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Data keys (the encryption keys under the master key): rotate, status.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `tessera app …`
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Register an app.
    Create {
        /// Unique name: 1 to 64 characters of a-z A-Z 0-9 . _ -
        name: String,
    },
    /// List the apps.
    List,
}

/// `tessera key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key. The key is printed once and never stored: keep it now.
    Create {
        /// The app the key belongs to.
        #[arg(long)]
        app: String,
        /// Make an agent key (`tsr_agent_…`) for this agent of the app, created if new
        /// (`tessera agent create` makes one explicitly). A disabled agent gets no key.
        #[arg(long, value_name = "AGENT")]
        agent: Option<String>,
        /// Tessera scopes, comma-separated (e.g. `tokens:retrieve,proxy:execute`). There is
        /// no default. `providers:write` is administrative (it changes the app's OAuth
        /// clients): give it only to keys that configure providers.
        #[arg(long, required = true)]
        scopes: String,
    },
    /// List an app's keys (ids, scopes, fingerprints, status; never the keys).
    List {
        /// The app.
        #[arg(long)]
        app: String,
    },
    /// Revoke a key by its key id; requests signed with it are refused from now on.
    Revoke {
        /// The 16-character key id (`tessera key list` shows it).
        key_id: String,
    },
}

/// `tessera keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Rotate the data key: store a new data key version, then re-encrypt every sealed value
    /// (credentials, API keys' signing keys, OAuth client secrets) with it, in batches, while
    /// hosts keep serving.
    ///
    /// Running hosts need no restart: they learn the new version the first time they read a
    /// value sealed with it, and `tessera serve` re-encrypts stragglers in the background.
    /// Progress goes to standard error. Safe to interrupt and to run twice at once: run
    /// `tessera keys rotate --resume` to finish re-encrypting without adding another version
    /// (`tessera keys status` shows what is left). Exits non-zero when values are left with
    /// an older version.
    Rotate {
        /// Finish an interrupted rotation: re-encrypt the values still sealed with an older
        /// version, without adding a new one.
        #[arg(long)]
        resume: bool,
        /// Values re-encrypted per transaction.
        #[arg(long, value_name = "N", default_value_t = 500,
              value_parser = clap::value_parser!(u32).range(1..))]
        batch: u32,
    },
    /// Show the data key versions, the current one, and how many sealed values each one
    /// still protects, per table.
    Status,
}

/// `tessera provider …`
#[derive(Debug, Subcommand)]
pub enum ProviderCommand {
    /// List the providers this host serves.
    List,
    /// Configure an app's OAuth client for a provider: client id, client secret (read from
    /// standard input with `--client-secret -`, sealed at rest), scopes, redirect URI and
    /// parameters. Running it again replaces the configuration; the stored client secret is
    /// kept unless `--client-secret -` or `--clear-client-secret` is given.
    Configure(providers::ConfigureArgs),
    /// Show an app's OAuth client configuration for a provider (never the client secret).
    Config(providers::ConfigArgs),
    /// Remove an app's OAuth client configuration for a provider (and its client secret).
    Unconfigure(providers::ConfigArgs),
    /// Show one provider's manifest, contract version, imports and hash.
    Inspect {
        /// A provider id, or the path of a `.wasm` component.
        target: String,
    },
    /// Run the conformance suite against a component and print a pass/fail table.
    Check {
        /// Component files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Scaffold a new provider crate that builds and passes `check` unchanged.
    New {
        /// Provider id: lower-case letters, digits and dashes.
        name: String,
        /// Where to create the crate (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Kind of provider.
        #[arg(long, value_enum, default_value_t = scaffold::Kind::Oauth2)]
        kind: scaffold::Kind,
        /// Path of the provider SDK crate (default: the SDK of the source tree this binary
        /// was built from).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

/// Runs one command.
pub fn run(args: Args) -> Result<ExitCode> {
    let overrides = Overrides {
        data_dir: args.data_dir.clone(),
        providers_dir: args.providers_dir.clone(),
        listen: match &args.command {
            Command::Serve { listen } => *listen,
            Command::Init
            | Command::Provider(_)
            | Command::App(_)
            | Command::Key(_)
            | Command::Agent(_)
            | Command::Idp(_)
            | Command::Policy(_)
            | Command::Approval(_)
            | Command::Webhook(_)
            | Command::Keys(_)
            | Command::Secret(_)
            | Command::Grant(_)
            | Command::Audit(_) => None,
        },
        log_format: args.log_format,
    };
    let config = Arc::new(Config::load(args.config.as_deref(), &overrides)?);
    // A server logs its life at `info`; one-shot commands only say what went wrong.
    let default_level = if matches!(args.command, Command::Serve { .. }) {
        "info"
    } else {
        "warn"
    };
    init_logging(config.log_format, default_level);
    match args.command {
        Command::Init => init(&config, args.json),
        Command::Serve { .. } => serve(&config),
        Command::Provider(cmd) => provider(&config, cmd, args.json),
        Command::App(cmd) => with_apps(&config, |apps| app(apps, cmd, args.json)),
        Command::Key(cmd) => with_apps(&config, |apps| key(apps, cmd, args.json)),
        Command::Agent(cmd) => with_apps(&config, |apps| agents::run(apps, cmd, args.json)),
        Command::Idp(cmd) => with_apps(&config, |apps| idp::run(apps, cmd, args.json)),
        Command::Policy(cmd) => with_apps(&config, |apps| policy::run(apps, cmd, args.json)),
        Command::Webhook(cmd) => with_apps(&config, |apps| webhooks::run(apps, cmd, args.json)),
        Command::Approval(cmd) => {
            let registry = registry(&config, false)?;
            with_apps(&config, |apps| {
                approvals::run(&config, apps, registry, cmd, args.json)
            })
        }
        Command::Secret(cmd) => {
            let registry = registry(&config, false)?;
            with_apps(&config, |apps| {
                grants::secret(&config, apps, registry, cmd, args.json)
            })
        }
        Command::Grant(cmd) => {
            let registry = registry(&config, false)?;
            with_apps(&config, |apps| {
                grants::grant(&config, apps, registry, cmd, args.json)
            })
        }
        Command::Audit(cmd) => with_apps(&config, |apps| audit::run(apps, cmd, args.json)),
        Command::Keys(cmd) => with_apps(&config, |apps| data_keys(apps, cmd, args.json)),
    }
}

fn init_logging(format: LogFormat, default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests calling `run` twice) is harmless, so its error is ignored.
    let _ = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The plugin runtime as the configuration says.
fn runtime(config: &Config) -> Result<Runtime> {
    runtime_observed(config, None)
}

/// [`runtime`], telling `observer` about every asynchronous component call (metrics).
fn runtime_observed(config: &Config, observer: Option<CallObserver>) -> Result<Runtime> {
    let deadline = config.deadline();
    let runtime_config = RuntimeConfig {
        deadline,
        // The outer timeout only matters if epoch interruption failed to stop a guest.
        timeout: deadline + Duration::from_millis(250),
        memory_limit: usize::try_from(config.plugins.memory_mib << 20)?,
        cache_dir: Some(config.component_cache_dir()),
        pooling: if config.plugins.pooling {
            PoolingMode::Probe
        } else {
            PoolingMode::Off
        },
        observer,
        ..RuntimeConfig::default()
    };
    Ok(Runtime::new(runtime_config)?)
}

/// Every provider: the built-ins plus the operator's directory. `watch` keeps scanning the
/// directory for added or replaced components.
fn registry(config: &Config, watch: bool) -> Result<Registry> {
    registry_observed(config, watch, None)
}

/// [`registry`] over [`runtime_observed`].
fn registry_observed(
    config: &Config,
    watch: bool,
    observer: Option<CallObserver>,
) -> Result<Registry> {
    let builtins = crate::builtin::components()
        .into_iter()
        .map(|(name, bytes)| (name, bytes.to_vec()))
        .collect();
    let registry_config = RegistryConfig {
        dir: config.providers_dir.clone(),
        allow_override_builtins: config.allow_builtin_override,
        poll_interval: watch.then(|| Duration::from_millis(config.plugins.watch_interval_ms)),
    };
    if let Some(dir) = &config.providers_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the providers directory {}", dir.display()))?;
    }
    Ok(Registry::new(
        runtime_observed(config, observer)?,
        builtins,
        registry_config,
    )?)
}

fn serve(config: &Arc<Config>) -> Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The store first: a directory that is not set up fails fast with "run `tessera init`".
    let (database, key) = database_and_key(config)?;
    let apps = tokio.block_on(Apps::open(&database, key))?;
    let metrics = Metrics::new();
    let registry = Arc::new(registry_observed(
        config,
        true,
        Some(metrics.plugin_observer()),
    )?);
    // The watcher thread runs until this guard drops, after the server has stopped.
    let _watcher = registry.watch()?;
    // Finishes data-key rotations slowly while serving (and reloads the data keys, so this
    // host starts sealing with a version another instance added).
    let reseal = tokio.spawn(keys::reseal_in_background(
        apps.keys().clone(),
        keys::Background::default(),
    ));
    let result = tokio.block_on(server::serve(
        config.clone(),
        registry,
        apps.clone(),
        metrics,
    ));
    reseal.abort();
    tokio.block_on(apps.close());
    result?;
    Ok(ExitCode::SUCCESS)
}

fn provider(config: &Config, cmd: ProviderCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        ProviderCommand::List => {
            let registry = registry(config, false)?;
            let plugins = registry.list();
            if json {
                let items: Vec<_> = plugins.iter().map(|p| p.summary()).collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else if plugins.is_empty() {
                println!("no providers loaded (built-ins are embedded by `cargo xtask build`)");
            } else {
                println!(
                    "{:<16} {:<20} {:<15} {:<8} SOURCE",
                    "ID", "NAME", "AUTH", "VERSION"
                );
                for p in &plugins {
                    let i = p.info();
                    println!(
                        "{:<16} {:<20} {:<15} {:<8} {}",
                        i.id,
                        i.display_name,
                        auth_kind(i.auth_kind),
                        i.version,
                        p.source()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ProviderCommand::Inspect { target } => {
            let plugin = if Path::new(&target).is_file() {
                load_file(config, Path::new(&target))?
            } else {
                let registry = registry(config, false)?;
                registry.get(&target).with_context(|| {
                    let known: Vec<_> = registry
                        .list()
                        .iter()
                        .map(|p| p.info().id.clone())
                        .collect();
                    format!("no provider `{target}`; known: {}", known.join(", "))
                })?
            };
            print_inspect(&plugin, json)?;
            Ok(ExitCode::SUCCESS)
        }
        ProviderCommand::Check { files } => check(config, &files, json),
        ProviderCommand::Configure(args) => {
            let registry = registry(config, false)?;
            with_apps(config, |apps| {
                providers::configure(apps, registry, args, json)
            })
        }
        ProviderCommand::Config(args) => {
            let registry = registry(config, false)?;
            with_apps(config, |apps| providers::show(apps, registry, args, json))
        }
        ProviderCommand::Unconfigure(args) => {
            let registry = registry(config, false)?;
            with_apps(config, |apps| {
                providers::unconfigure(apps, registry, args, json)
            })
        }
        ProviderCommand::New {
            name,
            dir,
            kind,
            sdk_path,
        } => new_provider(&name, dir, kind, sdk_path, json),
    }
}

fn load_file(config: &Config, file: &Path) -> Result<Arc<Plugin>> {
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let plugin = runtime(config)?.load(&bytes, crate::plugin::Source::File(file.to_path_buf()))?;
    Ok(plugin)
}

fn auth_kind(kind: AuthKind) -> &'static str {
    tessera_proto::providers::AuthKind::from(kind).as_str()
}

fn info_json(i: &ProviderInfo) -> serde_json::Value {
    let fields = |fs: &[crate::plugin::types::Field]| {
        fs.iter()
            .map(|f| {
                json!({
                    "name": f.name, "label": f.label, "description": f.description,
                    "secret": f.secret, "optional": f.optional, "example": f.example,
                })
            })
            .collect::<Vec<_>>()
    };
    json!({
        "id": i.id,
        "display_name": i.display_name,
        "version": i.version,
        "categories": i.categories,
        "auth_kind": auth_kind(i.auth_kind),
        "default_scopes": i.default_scopes,
        "scope_separator": i.scope_separator,
        "scopes": i.scopes.iter().map(|s| json!({"name": s.name, "label": s.label})).collect::<Vec<_>>(),
        "allowed_hosts": i.allowed_hosts,
        "secret_fields": fields(&i.secret_fields),
        "connection_params": fields(&i.connection_params),
        "pkce": i.pkce,
        "supports_refresh": i.supports_refresh,
        "supports_revoke": i.supports_revoke,
        "logo_url": i.logo_url,
        "docs_url": i.docs_url,
    })
}

fn print_inspect(p: &Plugin, json: bool) -> Result<()> {
    let i = p.info();
    if json {
        let mut v = info_json(i);
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "contract_version".into(),
                json!(p.contract_version().to_string()),
            );
            obj.insert("imports".into(), json!(p.imports()));
            obj.insert("sha256".into(), json!(hex::encode(p.sha256())));
            obj.insert("source".into(), json!(p.source().to_string()));
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("{} ({})", i.display_name, i.id);
    println!("  version           {}", i.version);
    println!(
        "  contract          tessera:provider@{}",
        p.contract_version()
    );
    println!("  auth              {}", auth_kind(i.auth_kind));
    println!("  source            {}", p.source());
    println!("  sha256            {}", hex::encode(p.sha256()));
    let imports = p.imports();
    if imports.is_empty() {
        println!("  imports           none (no ambient authority to deny)");
    } else {
        println!(
            "  imports           {} (served by a deny-all context)",
            imports.len()
        );
        for imp in imports {
            println!("                    {imp}");
        }
    }
    println!("  allowed hosts     {}", i.allowed_hosts.join(", "));
    if !i.categories.is_empty() {
        println!("  categories        {}", i.categories.join(", "));
    }
    if i.auth_kind != AuthKind::ManagedSecret {
        println!(
            "  default scopes    {}",
            i.default_scopes.join(&i.scope_separator)
        );
        println!("  pkce              {}", if i.pkce { "S256" } else { "no" });
        println!(
            "  refresh           {}",
            if i.supports_refresh { "yes" } else { "no" }
        );
    }
    println!(
        "  upstream revoke   {}",
        if i.supports_revoke { "yes" } else { "no" }
    );
    for (title, fields) in [
        ("secret fields", &i.secret_fields),
        ("connection params", &i.connection_params),
    ] {
        if !fields.is_empty() {
            println!("  {title}");
            for f in fields {
                let mut flags = Vec::new();
                if f.secret {
                    flags.push("secret");
                }
                if f.optional {
                    flags.push("optional");
                }
                println!("    {:<20} {} [{}]", f.name, f.label, flags.join(", "));
            }
        }
    }
    if !i.scopes.is_empty() {
        println!("  scopes");
        for s in &i.scopes {
            println!("    {:<40} {}", s.name, s.label);
        }
    }
    if let Some(d) = &i.docs_url {
        println!("  docs              {d}");
    }
    Ok(())
}

fn report_json(file: &Path, report: &conformance::Report) -> serde_json::Value {
    json!({
        "file": file,
        "provider": report.provider,
        "passed": report.passes(),
        "failed": report.failures(),
        "cases": report.results.iter().map(|r| {
            let (outcome, detail) = match &r.outcome {
                conformance::Outcome::Pass => ("pass", None),
                conformance::Outcome::Fail(why) => ("fail", Some(why.clone())),
                conformance::Outcome::NotApplicable => ("n/a", None),
            };
            json!({ "name": r.name, "outcome": outcome, "detail": detail })
        }).collect::<Vec<_>>(),
    })
}

/// `tessera provider check`: every file is loaded and run through the suite; any load
/// failure or failed case makes the exit code non-zero.
fn check(config: &Config, files: &[PathBuf], json: bool) -> Result<ExitCode> {
    let mut failed = false;
    let mut reports = Vec::new();
    for file in files {
        let plugin = match load_file(config, file) {
            Ok(p) => p,
            Err(e) => {
                failed = true;
                eprintln!("{}: cannot load: {e:#}", file.display());
                reports.push(json!({ "file": file, "error": format!("{e:#}") }));
                continue;
            }
        };
        let report = conformance::run(&plugin)?;
        failed |= report.failures() > 0;
        if json {
            reports.push(report_json(file, &report));
        } else {
            print!("{}", report.table());
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `tessera provider new`.
fn new_provider(
    name: &str,
    dir: Option<PathBuf>,
    kind: scaffold::Kind,
    sdk_path: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode> {
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let sdk = match sdk_path {
        Some(p) => p,
        None => scaffold::default_sdk_path().context(
            "cannot find the provider SDK next to this build; pass --sdk-path PATH/TO/providers/sdk",
        )?,
    };
    scaffold::create(name, &dir, kind, &sdk)?;
    if json {
        println!("{}", json!({ "id": name, "dir": dir }));
    } else {
        println!("created provider crate `{name}` in {}", dir.display());
        println!(
            "build it:  cargo xtask component --manifest-path {}/Cargo.toml --out {name}.wasm",
            dir.display()
        );
        println!("check it:  tessera provider check {name}.wasm");
    }
    Ok(ExitCode::SUCCESS)
}

/// The database and master-key source the configuration names.
fn database_and_key(config: &Config) -> Result<(DatabaseConfig, setup::KeySource<'_>)> {
    use secrecy::ExposeSecret as _;
    let database =
        DatabaseConfig::from_url_or_data_dir(config.database_url.as_deref(), &config.data_dir)?;
    let key = match &config.master_key {
        Some(value) => setup::KeySource::Env(value.expose_secret()),
        None => setup::KeySource::File(setup::key_file(&config.data_dir)),
    };
    Ok((database, key))
}

/// Opens the set-up data directory and runs `command` on the app service.
fn with_apps<F>(config: &Config, command: impl FnOnce(Apps) -> F) -> Result<ExitCode>
where
    F: Future<Output = Result<ExitCode>>,
{
    let (database, key) = database_and_key(config)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio.block_on(async {
        let apps = Apps::open(&database, key).await?;
        let result = command(apps.clone()).await;
        apps.close().await;
        result
    })
}

/// `tessera app …`
async fn app(apps: Apps, cmd: AppCommand, json: bool) -> Result<ExitCode> {
    let app_json = |a: &App| json!({ "id": a.id.to_string(), "name": a.name, "created_at": a.created_at.to_rfc3339() });
    match cmd {
        AppCommand::Create { name } => {
            let created = apps.create_app(&name).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&app_json(&created))?);
            } else {
                println!("created app {:?} (id {})", created.name, created.id);
                println!(
                    "next: tessera key create --app {} --scopes SCOPE,…",
                    created.name
                );
            }
        }
        AppCommand::List => {
            let all = apps.list_apps().await?;
            if json {
                let items: Vec<_> = all.iter().map(app_json).collect();
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else if all.is_empty() {
                println!("no apps yet: tessera app create NAME");
            } else {
                println!("{:<24} {:<36} CREATED", "NAME", "ID");
                for a in &all {
                    println!("{:<24} {:<36} {}", a.name, a.id, a.created_at.to_rfc3339());
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tessera key …`
async fn key(apps: Apps, cmd: KeyCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        KeyCommand::Create { app, agent, scopes } => {
            let scopes = Scope::parse_list(&scopes)?;
            let owner = agent.map_or(KeyOwner::App, KeyOwner::Agent);
            let created = apps
                .create_key_as(&audit::operator_origin(), &app, owner, &scopes)
                .await?;
            let summary = KeySummary::of(&created.record, &created.app.name, created.agent);
            let key = created.key.expose();
            if json {
                let mut out = serde_json::to_value(&summary)?;
                if let Some(obj) = out.as_object_mut() {
                    obj.insert("key".into(), json!(key.as_str()));
                    obj.insert("app_id".into(), json!(created.app.id.to_string()));
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                let owner = match &summary.agent {
                    Some(agent) => format!("agent {agent:?} of app {:?}", summary.app),
                    None => format!("app {:?}", summary.app),
                };
                println!("created an {} key for {owner}", summary.kind);
                println!("  key id        {}", summary.key_id);
                println!("  scopes        {}", Scope::join(&summary.scopes));
                println!("  fingerprint   {}", summary.fingerprint);
                println!();
                println!("  {}", key.as_str());
                println!();
                println!(
                    "This key is shown ONCE and cannot be shown again: Tessera keeps only an \
                     encrypted derived form. Store it in your secret manager now."
                );
            }
        }
        KeyCommand::List { app } => {
            let keys = apps.key_summaries(&app).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
            } else if keys.is_empty() {
                println!("app {app:?} has no keys: tessera key create --app {app} --scopes …");
            } else {
                println!(
                    "{:<16}  {:<5}  {:<12}  {:<8}  {:<24}  {:<24}  SCOPES",
                    "KEY ID", "KIND", "AGENT", "STATUS", "CREATED", "LAST USED"
                );
                for k in &keys {
                    println!(
                        "{:<16}  {:<5}  {:<12}  {:<8}  {:<24}  {:<24}  {}",
                        k.key_id,
                        k.kind,
                        k.agent.as_deref().unwrap_or("-"),
                        if k.revoked_at.is_some() {
                            "revoked"
                        } else {
                            "active"
                        },
                        k.created_at,
                        k.last_used_at.as_deref().unwrap_or("never"),
                        Scope::join(&k.scopes),
                    );
                }
            }
        }
        KeyCommand::Revoke { key_id } => {
            let revoked = apps
                .revoke_key_as(&audit::operator_origin(), &key_id)
                .await?;
            let summary = apps.summary(&revoked.record).await?;
            if json {
                let mut out = serde_json::to_value(&summary)?;
                if let Some(obj) = out.as_object_mut() {
                    obj.insert("already_revoked".into(), json!(!revoked.now));
                }
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if revoked.now {
                println!("revoked key {} of app {:?}", summary.key_id, summary.app);
            } else {
                println!(
                    "key {} of app {:?} was already revoked (at {})",
                    summary.key_id,
                    summary.app,
                    summary.revoked_at.as_deref().unwrap_or("?")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tessera keys …`
async fn data_keys(apps: Apps, cmd: KeysCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Rotate { resume, batch } => {
            let options = keys::RotateOptions {
                new_version: !resume,
                batch,
                ..keys::RotateOptions::default()
            };
            let report = keys::rotate(apps.keys(), &options, |p| {
                eprintln!("resealed {}/{}", p.done, p.total);
            })
            .await?;
            // The rotation is done either way; a failed audit write is reported, not hidden.
            let audit = crate::audit::AuditLog::start(apps.store().clone());
            let recorded = audit
                .record(crate::audit::AuditEntry {
                    detail: json!({ "via": "cli", "report": serde_json::to_value(&report)? }),
                    ..crate::audit::AuditEntry::new(
                        crate::audit::Action::KeysRotate,
                        crate::audit::Actor::operator(crate::grants::operator_login()),
                        if report.complete() {
                            crate::audit::Outcome::Ok
                        } else {
                            crate::audit::Outcome::Error
                        },
                    )
                })
                .await;
            audit.shutdown().await;
            if let Err(e) = recorded {
                eprintln!("warning: the rotation could not be recorded in the audit log: {e}");
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_rotation(&report);
            }
            Ok(if report.complete() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        KeysCommand::Status => {
            let status = keys::status(apps.keys()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_keys_status(&status);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_rotation(report: &keys::RotateReport) {
    if report.new_version {
        println!(
            "added data key version {}; it is now current",
            report.version
        );
    } else {
        println!(
            "resuming with the current data key version {}",
            report.version
        );
    }
    let columns: Vec<String> = report
        .columns
        .iter()
        .map(|c| format!("{} {}", c.column, c.resealed))
        .collect();
    println!(
        "re-encrypted {} values ({})",
        report.resealed,
        columns.join(", ")
    );
    if report.complete() {
        println!(
            "every sealed value now uses data key version {}",
            report.version
        );
        return;
    }
    if report.remaining > 0 {
        println!(
            "{} values still use an older data key (a host that has not learnt version {} yet              may still be writing them): run `tessera keys rotate --resume` again later",
            report.remaining, report.version
        );
    }
    if !report.unreadable.is_empty() {
        println!(
            "{} values cannot be opened and keep their old data key:",
            report.unreadable.len()
        );
        for u in &report.unreadable {
            println!("  {} {}: {}", u.column, u.id, u.error);
        }
    }
}

fn print_keys_status(status: &keys::KeysStatus) {
    println!("current data key version: {}", status.current_version);
    let columns: Vec<&String> = status
        .versions
        .first()
        .map(|v| v.sealed.keys().collect())
        .unwrap_or_default();
    print!("{:<9} {:<26}", "VERSION", "CREATED");
    for c in &columns {
        print!(" {c:>20}");
    }
    println!();
    for v in &status.versions {
        let version = format!("{}{}", v.version, if v.current { " *" } else { "" });
        let created = v.created_at.as_deref().unwrap_or("(not stored)");
        print!("{version:<9} {created:<26}");
        for c in &columns {
            print!(" {:>20}", v.sealed.get(*c).copied().unwrap_or(0));
        }
        println!();
    }
    if status.pending == 0 {
        println!("every sealed value uses the current data key");
    } else {
        println!(
            "{} values still use an older data key: run `tessera keys rotate --resume`",
            status.pending
        );
    }
}

/// `tessera init`.
fn init(config: &Config, json: bool) -> Result<ExitCode> {
    let (database, key) = database_and_key(config)?;
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = tokio.block_on(setup::init(&config.data_dir, &database, key))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    if report.initialised_now {
        println!("initialised {}", report.data_dir.display());
    } else {
        println!(
            "{} is already set up; the master key matches",
            report.data_dir.display()
        );
    }
    println!("  database             {}", report.database);
    let created = if report.master_key_created {
        " (created, mode 0600: back it up)"
    } else {
        ""
    };
    println!("  master key           {}{created}", report.master_key);
    println!("  key fingerprint      {}", report.master_key_fingerprint);
    let versions: Vec<String> = report
        .data_key_versions
        .iter()
        .map(u32::to_string)
        .collect();
    println!("  data key versions    {}", versions.join(", "));
    Ok(ExitCode::SUCCESS)
}
