//! `tessera audit tail|export|verify`: reading and checking the audit log from the command
//! line, thin over [`crate::audit`]. Rows go to standard output (one JSON object per line
//! with `--json` and for `export`); summaries and progress go to standard error, so a
//! piped export is only rows.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, IsTerminal as _, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Subcommand, ValueEnum};
use serde_json::json;
use tessera_proto::audit::AuditEvent;

use crate::apps::{Apps, LOCAL_OPERATOR};
use crate::audit::{self, AuditFilter, MAX_LIMIT, Origin};
use crate::store::{AppId, Timestamp};

/// `tessera audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Show the latest audit rows, oldest first. With `--follow`, keep printing new rows as
    /// they are written until interrupted (Ctrl-C).
    Tail {
        /// Only rows of this app (name or id).
        #[arg(long)]
        app: Option<String>,
        /// How many of the latest rows to show first.
        #[arg(short = 'n', long = "lines", value_name = "N", default_value_t = 20,
              value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_LIMIT)))]
        lines: u32,
        /// Keep polling for new rows and print them until interrupted.
        #[arg(short, long)]
        follow: bool,
        /// How often `--follow` polls the database, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(10..))]
        interval_ms: u64,
    },
    /// Write audit rows, oldest first, one JSON object (`AuditEvent`) per line, to standard
    /// output or a file. The row count goes to standard error.
    Export {
        /// Output format.
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
        /// Only rows of this app (name or id).
        #[arg(long)]
        app: Option<String>,
        /// Only rows at or after this time (RFC 3339, e.g. 2026-01-31T12:00:00Z, or a date).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        since: Option<Timestamp>,
        /// Only rows strictly before this time (RFC 3339 or a date).
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        until: Option<Timestamp>,
        /// Write to this file (replaced) instead of standard output.
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check the hash chain: every row's hash, every link, no missing row, and the recorded
    /// head (a deleted tail). Prints the first bad `seq`; exits non-zero when the chain is
    /// broken.
    Verify,
}

/// `tessera audit export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

fn parse_time(text: &str) -> Result<Timestamp, String> {
    audit::parse_rfc3339(text).map_err(|e| e.to_string())
}

/// Who the command line records as acting: the operator's login name.
pub(super) fn operator_origin() -> Origin {
    let login = ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| LOCAL_OPERATOR.to_owned());
    Origin::cli_operator(login)
}

/// Runs one `tessera audit` command.
pub(super) async fn run(apps: Apps, cmd: AuditCommand, json: bool) -> Result<ExitCode> {
    match cmd {
        AuditCommand::Tail {
            app,
            lines,
            follow,
            interval_ms,
        } => {
            let app_id = app_filter(&apps, app.as_deref()).await?;
            tail(
                &apps,
                app_id,
                lines,
                follow.then(|| Duration::from_millis(interval_ms)),
                json,
            )
            .await
        }
        AuditCommand::Export {
            format: ExportFormat::Jsonl,
            app,
            since,
            until,
            output,
        } => {
            let filter = AuditFilter {
                app_id: app_filter(&apps, app.as_deref()).await?,
                since,
                until,
                limit: Some(MAX_LIMIT),
                ..AuditFilter::default()
            };
            export(&apps, filter, output, json).await
        }
        AuditCommand::Verify => verify(&apps, json).await,
    }
}

/// An app given by id or by name. Audit outlives apps, so an id need not exist any more.
async fn app_filter(apps: &Apps, app: Option<&str>) -> Result<Option<AppId>> {
    let Some(app) = app else { return Ok(None) };
    if let Ok(id) = app.parse::<AppId>() {
        return Ok(Some(id));
    }
    Ok(Some(apps.app(app).await?.id))
}

/// `Ok(false)` when standard output is closed (`… | head`): stop quietly.
fn emit(out: &mut impl Write, line: &str) -> Result<bool> {
    match writeln!(out, "{line}") {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}

fn flush(out: &mut impl Write) -> Result<bool> {
    match out.flush() {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("cannot write to standard output"),
    }
}

/// App names by id, for people.
struct AppNames {
    names: HashMap<String, String>,
}

impl AppNames {
    async fn load(apps: &Apps) -> Result<Self> {
        let names = apps
            .list_apps()
            .await?
            .into_iter()
            .map(|a| (a.id.to_string(), a.name))
            .collect();
        Ok(Self { names })
    }

    fn name<'a>(&'a self, id: &'a str) -> &'a str {
        self.names.get(id).map_or(id, String::as_str)
    }
}

/// One row for people: `SEQ  TIME  OUTCOME  ACTION  app=…  actor=…  …`.
fn human_line(e: &AuditEvent, names: &AppNames) -> String {
    let mut line = format!("{:>6}  {}  {:<7}  {:<16}", e.seq, e.at, e.outcome, e.action);
    if let Some(app) = &e.app_id {
        let _ = write!(line, "  app={}", names.name(app));
    }
    let _ = write!(line, "  actor={}:{}", e.actor_kind, e.actor_id);
    let optional = [
        ("key", &e.key_id),
        ("caller", &e.caller),
        ("provider", &e.provider),
        ("grant", &e.grant_id),
        ("principal", &e.principal),
        ("request", &e.request_id),
    ];
    for (name, value) in optional {
        if let Some(v) = value {
            let _ = write!(line, "  {name}={v}");
        }
    }
    if let Some(reason) = &e.reason {
        let _ = write!(line, "  reason={reason:?}");
    }
    if !e.context.is_empty() {
        let _ = write!(line, "  context={}", json!(e.context));
    }
    if !e.detail.is_null() {
        let _ = write!(line, "  {}", e.detail);
    }
    line
}

fn render(e: &AuditEvent, names: &AppNames, json: bool) -> Result<String> {
    Ok(if json {
        serde_json::to_string(e)?
    } else {
        human_line(e, names)
    })
}

/// `tessera audit tail`.
async fn tail(
    apps: &Apps,
    app_id: Option<AppId>,
    lines: u32,
    follow: Option<Duration>,
    json: bool,
) -> Result<ExitCode> {
    let store = apps.store();
    let mut names = AppNames::load(apps).await?;
    let latest = AuditFilter {
        app_id,
        newest_first: true,
        limit: Some(lines.max(1)),
        ..AuditFilter::default()
    };
    let mut events = audit::list(store, &latest).await?;
    // The cursor for `--follow` is the newest matching row, shown or not.
    let mut cursor = events.first().map_or(0, |e| e.seq);
    events.truncate(lines as usize);
    events.reverse();
    let mut out = std::io::stdout().lock();
    for e in &events {
        if !emit(&mut out, &render(e, &names, json)?)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
    if events.is_empty() && follow.is_none() && !json {
        eprintln!("no audit rows");
    }
    if !flush(&mut out)? {
        return Ok(ExitCode::SUCCESS);
    }
    drop(out);
    let Some(interval) = follow else {
        return Ok(ExitCode::SUCCESS);
    };
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        tokio::select! {
            _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
            () = tokio::time::sleep(interval) => {}
        }
        loop {
            let next = AuditFilter {
                app_id,
                after: Some(cursor),
                limit: Some(MAX_LIMIT),
                ..AuditFilter::default()
            };
            let batch = audit::list(store, &next).await?;
            if batch.is_empty() {
                break;
            }
            if batch.iter().any(|e| {
                e.app_id
                    .as_ref()
                    .is_some_and(|a| !names.names.contains_key(a))
            }) {
                names = AppNames::load(apps).await?;
            }
            let mut out = std::io::stdout().lock();
            for e in &batch {
                if !emit(&mut out, &render(e, &names, json)?)? {
                    return Ok(ExitCode::SUCCESS);
                }
                cursor = e.seq;
            }
            if !flush(&mut out)? {
                return Ok(ExitCode::SUCCESS);
            }
            if batch.len() < MAX_LIMIT as usize {
                break;
            }
        }
    }
}

/// `tessera audit export`.
async fn export(
    apps: &Apps,
    mut filter: AuditFilter,
    output: Option<PathBuf>,
    json: bool,
) -> Result<ExitCode> {
    let store = apps.store();
    let file = match &output {
        Some(path) => Some(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => None,
    };
    let sink: Box<dyn Write> = match &file {
        Some(f) => Box::new(f.try_clone()?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = std::io::BufWriter::new(sink);
    let progress = std::io::stderr().is_terminal();
    let mut rows: u64 = 0;
    loop {
        let batch = audit::list(store, &filter).await?;
        for e in &batch {
            let mut line = serde_json::to_vec(e)?;
            line.push(b'\n');
            if let Err(err) = sink.write_all(&line) {
                if output.is_none() && err.kind() == ErrorKind::BrokenPipe {
                    return Ok(ExitCode::SUCCESS);
                }
                return Err(err).context("cannot write the export");
            }
            rows += 1;
        }
        if progress && rows > 0 && !batch.is_empty() {
            eprint!("\rexported {rows} rows…");
        }
        match batch.last() {
            Some(last) if batch.len() >= MAX_LIMIT as usize => filter.after = Some(last.seq),
            _ => break,
        }
    }
    if progress && rows > 0 {
        eprint!("\r");
    }
    if let Err(err) = sink.flush() {
        if output.is_none() && err.kind() == ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(err).context("cannot write the export");
    }
    drop(sink);
    if let (Some(f), Some(path)) = (&file, &output) {
        f.sync_all()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let target = output
        .as_ref()
        .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
    let summary = if json {
        json!({ "rows": rows, "output": output }).to_string()
    } else {
        format!("exported {rows} audit rows to {target}")
    };
    // With a file, standard output is free for the summary; otherwise it holds the rows.
    if output.is_some() {
        println!("{summary}");
    } else {
        eprintln!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `tessera audit verify`.
async fn verify(apps: &Apps, json: bool) -> Result<ExitCode> {
    let report = audit::verify(apps.store()).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if let Some(p) = &report.problem {
        println!(
            "audit log BROKEN: first bad seq {} ({})",
            p.seq,
            p.kind.as_str()
        );
        println!("  {}", p.detail);
        println!("  {} rows before it verified", report.rows);
    } else if let Some(last) = &report.last {
        println!("audit log OK: {} rows, hash chain intact", report.rows);
        println!("  head  seq {}  hash {}", last.seq, last.hash);
    } else {
        println!("audit log OK: no rows yet");
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
