//! `tessera policy rules create|list|get|update|delete` end to end: one rule of each kind
//! (a custom Cedar policy from a file and from standard input), listed, shown, replaced,
//! renamed and deleted, each change in the audit log; and every kind of bad input refused
//! with the reason on standard error, nothing stored.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;

/// A custom rule: no `PATCH` to the provider.
const NO_PATCH: &str =
    "forbid (principal, action, resource)\nwhen { context.method == \"PATCH\" };";

/// `tessera policy rules ARGS… --app billing`.
fn rules(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Result<Output> {
    let mut all = vec!["policy", "rules"];
    all.extend_from_slice(args);
    all.extend(["--app", "billing"]);
    tessera_env(dir, env, &all)
}

/// `tessera policy rules ARGS… --app billing --json`, which must succeed.
fn rules_json(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Result<Value> {
    let mut all = args.to_vec();
    all.push("--json");
    json_of(&rules(dir, env, &all)?)
}

/// [`rules`] with `input` on standard input (for `--cedar -`).
fn rules_with_stdin(
    dir: &Path,
    env: &[(&str, &str)],
    args: &[&str],
    input: &str,
) -> Result<Output> {
    let mut cmd = Command::new(tessera_bin()?);
    cmd.arg("--data-dir")
        .arg(dir)
        .args(["policy", "rules"])
        .args(args)
        .args(["--app", "billing"])
        .env_remove("TESSERA_MASTER_KEY")
        .env_remove("TESSERA_DATABASE_URL")
        .env_remove("TESSERA_CONFIG")
        .env_remove("TESSERA_PROVIDERS_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    Ok(child.wait_with_output()?)
}

/// Checks that `out` failed and that its standard error says every one of `needles`.
fn refused(out: &Output, needles: &[&str]) -> Result<()> {
    let err = stderr(out);
    ensure!(
        !out.status.success(),
        "expected a failure, got: {}",
        stdout(out)
    );
    for needle in needles {
        ensure!(err.contains(needle), "{needle:?} not in: {err}");
    }
    Ok(())
}

/// `(action, rule name)` of the `policy.rule.*` rows of app billing, oldest first; checks
/// that each is the operator's, through the CLI.
fn policy_audit(dir: &Path, env: &[(&str, &str)]) -> Result<Vec<(String, String)>> {
    let export = tessera_env(
        dir,
        env,
        &["audit", "export", "--format", "jsonl", "--app", "billing"],
    )?;
    ensure!(export.status.success(), "{}", stderr(&export));
    let mut out = Vec::new();
    for line in stdout(&export).lines() {
        let row: Value = serde_json::from_str(line)?;
        let action = row["action"].as_str().unwrap_or_default();
        if action.starts_with("policy.rule.") {
            ensure!(
                row["actor_kind"] == "operator" && row["detail"]["via"] == "cli",
                "{row}"
            );
            let name = row["detail"]["name"].as_str().unwrap_or_default();
            out.push((action.to_owned(), name.to_owned()));
        }
    }
    Ok(out)
}

/// Creates one rule of each kind; returns them by name.
fn create_one_of_each(
    dir: &Path,
    env: &[(&str, &str)],
    agent_id: &str,
) -> Result<Vec<(&'static str, Value)>> {
    let cedar_file = dir.join("no-patch.cedar");
    std::fs::write(&cedar_file, NO_PATCH)?;
    let agent = format!("agent:{agent_id}");
    let office_hours = rules_json(
        dir,
        env,
        &[
            "create",
            "office-hours",
            "--applies-to",
            "provider:github",
            "--time-window",
            "--days",
            "mon-fri,sat",
            "--hours",
            "09:00-18:00",
            "--tz",
            "Europe/Paris",
        ],
    )?;
    let office_ip = rules_json(
        dir,
        env,
        &[
            "create",
            "office-ip",
            "--ip-allow",
            "203.0.113.0/24,2001:db8::/32",
        ],
    )?;
    let staff = rules_json(
        dir,
        env,
        &[
            "create",
            "staff",
            "--applies-to",
            &agent,
            "--groups",
            "ops,finance",
        ],
    )?;
    let no_deletes = rules_json(
        dir,
        env,
        &["create", "no-deletes", "--deny-methods", "delete,put"],
    )?;
    let no_patch = rules_json(
        dir,
        env,
        &[
            "create",
            "no-patch",
            "--cedar",
            &cedar_file.to_string_lossy(),
        ],
    )?;
    let piped = rules_with_stdin(
        dir,
        env,
        &["create", "piped", "--cedar", "-", "--json"],
        NO_PATCH,
    )?;
    let piped = json_of(&piped)?;
    Ok(vec![
        ("office-hours", office_hours),
        ("office-ip", office_ip),
        ("staff", staff),
        ("no-deletes", no_deletes),
        ("no-patch", no_patch),
        ("piped", piped),
    ])
}

/// What each created rule says and compiles to.
fn check_created(created: &[(&str, Value)], agent_id: &str) -> Result<()> {
    let by = |name: &str| {
        created
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .with_context(|| format!("{name} was not created"))
    };
    for (name, rule) in created {
        ensure!(
            rule["name"] == *name
                && rule["id"].as_str().is_some_and(|id| id.len() == 36)
                && rule["cedar"].as_str().is_some_and(|c| c.contains("forbid")),
            "{rule}"
        );
    }
    let hours = by("office-hours")?;
    ensure!(
        hours["kind"] == "time_window"
            && hours["applies_to"] == "provider:github"
            && hours["days"] == serde_json::json!(["mon-fri", "sat"])
            && hours["start"] == "09:00"
            && hours["end"] == "18:00"
            && hours["time_zone"] == "Europe/Paris"
            && hours["cedar"]
                .as_str()
                .is_some_and(|c| c.contains("open_windows") && c.contains("Provider::\"github\"")),
        "{hours}"
    );
    let ip = by("office-ip")?;
    ensure!(
        ip["kind"] == "ip_allow"
            && ip["applies_to"] == "app"
            && ip["cedar"].as_str().is_some_and(|c| {
                c.contains("ip(\"203.0.113.0/24\")") && c.contains("ip(\"2001:db8::/32\")")
            }),
        "{ip}"
    );
    let staff = by("staff")?;
    ensure!(
        staff["kind"] == "groups"
            && staff["applies_to"] == format!("agent:{agent_id}")
            && staff["any_of"] == serde_json::json!(["ops", "finance"])
            && staff["cedar"]
                .as_str()
                .is_some_and(|c| c.contains(&format!("principal == Agent::\"{agent_id}\""))),
        "{staff}"
    );
    let methods = by("no-deletes")?;
    ensure!(
        methods["kind"] == "methods"
            && methods["cedar"]
                .as_str()
                .is_some_and(|c| c.contains("[\"DELETE\", \"PUT\"]")),
        "{methods}"
    );
    for name in ["no-patch", "piped"] {
        let custom = by(name)?;
        ensure!(
            custom["kind"] == "cedar"
                && custom["policy"] == NO_PATCH
                && custom["cedar"]
                    .as_str()
                    .is_some_and(|c| c.contains("context.method == \"PATCH\"")),
            "{custom}"
        );
    }
    Ok(())
}

/// The operator's session: one rule of each kind created, listed, shown by name and by id,
/// replaced and renamed, deleted; a duplicate name refused; every change audited.
#[test]
fn policy_rules_are_created_listed_shown_updated_and_deleted_with_audit() -> Result<()> {
    on_both_backends(|dir, env| {
        init_with_app(dir, env)?;
        let agent = json_of(&tessera_env(
            dir,
            env,
            &["agent", "create", "mail-bot", "--app", "billing", "--json"],
        )?)?;
        let agent_id = agent["id"].as_str().context("agent id")?;
        let created = create_one_of_each(dir, env, agent_id)?;
        check_created(&created, agent_id)?;
        refused(
            &rules(dir, env, &["create", "staff", "--groups", "x"])?,
            &["already has a policy rule named \"staff\""],
        )?;

        let list = rules_json(dir, env, &["list"])?;
        let names: Vec<&str> = list
            .as_array()
            .context("an array")?
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        let want = [
            "no-deletes",
            "no-patch",
            "office-hours",
            "office-ip",
            "piped",
            "staff",
        ];
        ensure!(names == want, "{names:?}");
        let human = rules(dir, env, &["list"])?;
        ensure!(
            human.status.success()
                && stdout(&human).contains("APPLIES TO")
                && stdout(&human).contains("provider:github"),
            "{}{}",
            stdout(&human),
            stderr(&human)
        );

        let (_, hours) = &created[0];
        let id = hours["id"].as_str().context("id")?;
        ensure!(&rules_json(dir, env, &["get", id])? == hours);
        let shown = rules(dir, env, &["get", "office-hours"])?;
        let text = stdout(&shown);
        ensure!(
            shown.status.success()
                && text.contains("office-hours")
                && text.contains(id)
                && text.contains("provider:github")
                && text.contains("time_window")
                && text.contains("context.open_windows.contains"),
            "{text}{}",
            stderr(&shown)
        );

        update_and_delete(dir, env, hours)?;
        let audit = policy_audit(dir, env)?;
        let audit: Vec<(&str, &str)> = audit
            .iter()
            .map(|(a, n)| (a.as_str(), n.as_str()))
            .collect();
        let mut want: Vec<(&str, &str)> = created
            .iter()
            .map(|(n, _)| ("policy.rule.create", *n))
            .collect();
        want.extend([
            ("policy.rule.update", "business-hours"),
            ("policy.rule.update", "no-deletes"),
            ("policy.rule.delete", "no-deletes"),
        ]);
        ensure!(audit == want, "{audit:?}");
        let verify = tessera_env(dir, env, &["audit", "verify"])?;
        ensure!(verify.status.success(), "{}", stdout(&verify));
        Ok(())
    })
}

/// Renames and replaces `office-hours`, replaces `no-deletes` by id, deletes it.
fn update_and_delete(dir: &Path, env: &[(&str, &str)], hours: &Value) -> Result<()> {
    let updated = rules_json(
        dir,
        env,
        &[
            "update",
            "office-hours",
            "--name",
            "business-hours",
            "--applies-to",
            "provider:github",
            "--time-window",
            "--days",
            "mon-fri",
            "--hours",
            "08:00-20:00",
            "--tz",
            "Europe/Paris",
        ],
    )?;
    ensure!(
        updated["id"] == hours["id"]
            && updated["name"] == "business-hours"
            && updated["days"] == serde_json::json!(["mon-fri"])
            && updated["start"] == "08:00"
            && updated["end"] == "20:00"
            && updated["created_at"] == hours["created_at"]
            && updated["updated_at"].as_str() >= hours["updated_at"].as_str(),
        "{updated}"
    );
    refused(
        &rules(dir, env, &["get", "office-hours"])?,
        &["no policy rule \"office-hours\""],
    )?;

    let no_deletes = rules_json(dir, env, &["get", "no-deletes"])?;
    let id = no_deletes["id"].as_str().context("id")?;
    let human = rules(dir, env, &["update", id, "--deny-methods", "DELETE"])?;
    ensure!(
        human.status.success()
            && stdout(&human).contains("updated policy rule \"no-deletes\"")
            && stdout(&human).contains("[\"DELETE\"].contains(context.method)"),
        "{}{}",
        stdout(&human),
        stderr(&human)
    );
    let deleted = rules(dir, env, &["delete", "no-deletes"])?;
    ensure!(
        deleted.status.success() && stdout(&deleted).contains("deleted policy rule \"no-deletes\""),
        "{}{}",
        stdout(&deleted),
        stderr(&deleted)
    );
    refused(&rules(dir, env, &["get", id])?, &["no policy rule"])?;
    let names: BTreeSet<String> = rules_json(dir, env, &["list"])?
        .as_array()
        .context("an array")?
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_owned))
        .collect();
    ensure!(
        names.len() == 5 && names.contains("business-hours") && !names.contains("no-deletes"),
        "{names:?}"
    );
    Ok(())
}

/// Bad input of every kind fails with a non-zero exit code and the service's reason on
/// standard error; nothing is stored or audited.
#[test]
fn invalid_policy_rules_are_refused_with_the_reason() -> Result<()> {
    let data = tempfile::tempdir()?;
    let (dir, env) = (data.path(), &[][..]);
    init_with_app(dir, env)?;
    let window = |days: &'static str, hours: &'static str, tz: &'static str| {
        vec![
            "create",
            "w",
            "--time-window",
            "--days",
            days,
            "--hours",
            hours,
            "--tz",
            tz,
        ]
    };
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["create", "ip", "--ip-allow", "10.0.0.0/8,10.1.0.0/33"],
            "\"10.1.0.0/33\" is not an IPv4 or IPv6 address or CIDR range",
        ),
        (
            window("mon-fry", "09:00-18:00", "UTC"),
            "day \"mon-fry\" is not one of mon tue",
        ),
        (
            window("mon", "09:00-18:00", "Mars/Olympus_Mons"),
            "time zone \"Mars/Olympus_Mons\" is not an IANA time zone",
        ),
        (window("mon", "9-18", "UTC"), "time \"9\" must be HH:MM"),
        (
            vec!["create", "m", "--deny-methods", "GET /"],
            "\"GET /\" is not an HTTP method",
        ),
        (
            vec!["create", "g", "--groups", "ops", "--applies-to", "team:ops"],
            "applies_to \"team:ops\" must be app, provider:ID, grant:ID or agent:ID",
        ),
        (
            vec!["create", "g", "--groups", "ops", "--applies-to", "grant:12"],
            "grant \"12\" is not an id",
        ),
        (
            vec!["create", "has space", "--groups", "ops"],
            "invalid policy rule name \"has space\"",
        ),
        (
            vec!["create", "c", "--cedar", "/nonexistent/rule.cedar"],
            "cannot read the Cedar policy file /nonexistent/rule.cedar",
        ),
        (vec!["get", "ghost"], "no policy rule \"ghost\""),
        (
            vec!["update", "ghost", "--groups", "ops"],
            "no policy rule \"ghost\"",
        ),
        (vec!["delete", "ghost"], "no policy rule \"ghost\""),
    ];
    for (args, needle) in &cases {
        refused(&rules(dir, env, args)?, &[needle]).with_context(|| format!("{args:?}"))?;
    }
    for (policy, needle) in [
        (
            "permit (principal, action, resource);",
            "a custom rule must be a forbid policy",
        ),
        (
            "forbid (principal, action, resource) when { context.weather == \"rain\" };",
            "does not fit the schema",
        ),
    ] {
        let out = rules_with_stdin(dir, env, &["create", "p", "--cedar", "-"], policy)?;
        refused(&out, &[needle])?;
    }
    refused(
        &tessera_env(dir, env, &["policy", "rules", "list", "--app", "ghost"])?,
        &["no app named \"ghost\""],
    )?;
    ensure!(rules_json(dir, env, &["list"])? == serde_json::json!([]));
    ensure!(policy_audit(dir, env)?.is_empty());
    Ok(())
}

/// Kind flags that are missing, doubled or mixed, and a malformed `--hours`, are usage
/// errors (exit code 2) naming the flags, before anything is opened.
#[test]
fn flags_that_do_not_go_together_are_usage_errors() -> Result<()> {
    let data = tempfile::tempdir()?;
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &[
                "create",
                "d",
                "--days",
                "mon",
                "--hours",
                "09:00-18:00",
                "--tz",
                "UTC",
            ],
            &["required", "--time-window"],
        ),
        (
            &[
                "create",
                "d",
                "--time-window",
                "--days",
                "mon",
                "--hours",
                "09:00-18:00",
            ],
            &["required", "--tz"],
        ),
        (
            &["create", "d", "--ip-allow", "10.0.0.0/8", "--days", "mon"],
            &["'--ip-allow <CIDR,…>' cannot be used with '--days <DAYS>'"],
        ),
        (
            &["create", "d", "--ip-allow", "10.0.0.0/8", "--groups", "ops"],
            &["cannot be used with"],
        ),
        (&["create", "d"], &["required", "--deny-methods"]),
        (
            &[
                "create",
                "d",
                "--time-window",
                "--days",
                "mon",
                "--hours",
                "0900",
                "--tz",
                "UTC",
            ],
            &["invalid value '0900' for '--hours", "like 09:00-18:00"],
        ),
    ];
    for (args, needles) in cases {
        let out = rules(data.path(), &[], args)?;
        refused(&out, needles).with_context(|| format!("{args:?}"))?;
        ensure!(out.status.code() == Some(2), "{args:?}: {:?}", out.status);
    }
    Ok(())
}

/// `--rate-limit N --per-secs S --per grant|agent`: stored with its settings, compiled to a
/// Cedar `forbid` on the host's over-limit set; its settings are checked.
#[test]
fn a_rate_limit_rule_is_made_from_the_command_line() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (dir, env) = (dir.path(), &[][..]);
    init_with_app(dir, env)?;
    let made = rules_json(
        dir,
        env,
        &[
            "create",
            "stripe-rate",
            "--applies-to",
            "provider:stripe",
            "--rate-limit",
            "100",
            "--per-secs",
            "60",
            "--per",
            "grant",
        ],
    )?;
    ensure!(
        made["kind"] == "rate_limit"
            && made["limit"] == 100
            && made["window_secs"] == 60
            && made["per"] == "grant"
            && made["cedar"]
                .as_str()
                .is_some_and(|c| c.contains("context.over_limit.contains")),
        "{made}"
    );
    let out = rules(
        dir,
        env,
        &[
            "create",
            "bad",
            "--rate-limit",
            "5",
            "--per-secs",
            "60",
            "--per",
            "app",
        ],
    )?;
    refused(&out, &["per \"grant\" or per \"agent\""])?;
    let out = rules(dir, env, &["create", "bad", "--rate-limit", "5"])?;
    ensure!(out.status.code() == Some(2), "{}", stderr(&out));
    Ok(())
}
