//! `tessera provider configure|config|unconfigure` end to end: the operator configures an
//! app's OAuth client for the generic `oauth2` provider (the client secret read from standard
//! input), shows it as JSON, and removes it; the secret shows up nowhere.

use super::*;

/// A canary client secret: never on the command line, in any output, the audit log or the
/// database.
const SECRET: &str = "cs_cli_CanarySecretH7j3Kp9Lq2Zx";

/// Runs `tessera ARGS…` with `input` on standard input.
fn tessera_stdin(dir: &Path, env: &[(&str, &str)], args: &[&str], input: &str) -> Result<Output> {
    let mut child = Command::new(tessera_bin()?)
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .env_remove("TESSERA_MASTER_KEY")
        .env_remove("TESSERA_DATABASE_URL")
        .env_remove("TESSERA_CONFIG")
        .env_remove("TESSERA_PROVIDERS_DIR")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    Ok(child.wait_with_output()?)
}

#[test]
#[allow(clippy::too_many_lines)] // one CLI session, step by step
fn configure_show_and_unconfigure_an_oauth_client() -> Result<()> {
    on_both_backends(|dir, env| {
        init_with_app(dir, env)?;
        let configure = [
            "provider",
            "configure",
            "oauth2",
            "--app",
            "billing",
            "--client-id",
            "billing-client",
            "--client-secret",
            "-",
            "--scopes",
            "openid,email",
            "--param",
            "issuer=https://idp.example.com",
            "--extra",
            "prompt=consent",
        ];
        let out = tessera_stdin(dir, env, &configure, &format!("{SECRET}\n"))?;
        ensure!(out.status.success(), "{}", stderr(&out));
        let human = stdout(&out);
        ensure!(
            human.contains("oauth2 OAuth client of app billing")
                && human.contains("billing-client")
                && human.contains("set (sealed)")
                && human.contains("issuer=https://idp.example.com"),
            "{human}"
        );

        let shown = json_of(&tessera_env(
            dir,
            env,
            &["provider", "config", "oauth2", "--app", "billing", "--json"],
        )?)?;
        ensure!(
            shown["provider"] == "oauth2"
                && shown["client_id"] == "billing-client"
                && shown["client_secret_set"] == true
                && shown["scopes"] == serde_json::json!(["openid", "email"])
                && shown["connection_params"]["issuer"] == "https://idp.example.com"
                && shown["extra_params"]["prompt"] == "consent"
                && shown["redirect_uri"].is_null(),
            "{shown}"
        );
        ensure!(
            shown["created_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z')),
            "{shown}"
        );

        // Again without a secret: everything is replaced but the stored secret is kept.
        let again = json_of(&tessera_env(
            dir,
            env,
            &[
                "provider",
                "configure",
                "oauth2",
                "--app",
                "billing",
                "--client-id",
                "billing-client-2",
                "--param",
                "issuer=https://idp.example.com",
                "--json",
            ],
        )?)?;
        ensure!(
            again["client_id"] == "billing-client-2"
                && again["client_secret_set"] == true
                && again["scopes"] == serde_json::json!([])
                && again["extra_params"] == serde_json::json!({}),
            "{again}"
        );

        // The secret is never taken from the command line (and the refusal does not echo it).
        let inline = tessera_env(
            dir,
            env,
            &[
                "provider",
                "configure",
                "oauth2",
                "--app",
                "billing",
                "--client-id",
                "x",
                "--client-secret",
                SECRET,
            ],
        )?;
        ensure!(!inline.status.success(), "a secret was taken from argv");
        ensure!(
            stderr(&inline).contains("standard input") && !stderr(&inline).contains(SECRET),
            "{}",
            stderr(&inline)
        );
        // Validation errors name the field; a managed-secret provider says what to use.
        let bad = tessera_env(
            dir,
            env,
            &[
                "provider",
                "configure",
                "oauth2",
                "--app",
                "billing",
                "--client-id",
                "x",
                "--param",
                "tenant=acme",
            ],
        )?;
        ensure!(
            !bad.status.success()
                && stderr(&bad).contains("\"tenant\"")
                && stderr(&bad).contains("issuer"),
            "{}",
            stderr(&bad)
        );
        let stripe = tessera_env(
            dir,
            env,
            &[
                "provider",
                "configure",
                "stripe",
                "--app",
                "billing",
                "--client-id",
                "x",
            ],
        )?;
        ensure!(
            stderr(&stripe).contains("tessera secret set"),
            "{}",
            stderr(&stripe)
        );

        let removed = json_of(&tessera_env(
            dir,
            env,
            &[
                "provider",
                "unconfigure",
                "oauth2",
                "--app",
                "billing",
                "--json",
            ],
        )?)?;
        ensure!(removed["removed"] == true, "{removed}");
        let gone = tessera_env(
            dir,
            env,
            &["provider", "config", "oauth2", "--app", "billing"],
        )?;
        ensure!(
            !gone.status.success() && stderr(&gone).contains("no OAuth client configured"),
            "{}",
            stderr(&gone)
        );

        // Audited with `via: cli`, by the operator, and without the secret.
        let export = tessera_env(dir, env, &["audit", "export", "--format", "jsonl"])?;
        ensure!(export.status.success(), "{}", stderr(&export));
        let log = stdout(&export);
        let actions: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|e| {
                e["action"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("provider."))
            })
            .collect();
        ensure!(
            actions.len() == 3
                && actions[0]["action"] == "provider.configure"
                && actions[0]["detail"]["via"] == "cli"
                && actions[0]["actor_kind"] == "operator"
                && actions[2]["action"] == "provider.unconfigure",
            "{actions:?}"
        );

        // Nowhere: not in any output, not in the database, in no form.
        for output in [&out, &inline, &bad, &export] {
            ensure!(
                !stdout(output).contains(SECRET) && !stderr(output).contains(SECRET),
                "the secret was printed"
            );
        }
        let bytes = match env.iter().find(|(k, _)| *k == "TESSERA_DATABASE_URL") {
            Some((_, url)) => postgres_rows(url)?,
            None => super::apps_and_keys::files_under(dir)?,
        };
        ensure!(
            super::apps_and_keys::hits(&bytes, b"provider.configure") > 0,
            "the scan does not see the audit rows"
        );
        for needle in [
            SECRET.as_bytes(),
            &SECRET.as_bytes()[8..],
            hex::encode(SECRET).as_bytes(),
        ] {
            ensure!(
                super::apps_and_keys::hits(&bytes, needle) == 0,
                "the client secret is in the database"
            );
        }
        Ok(())
    })
}

/// Every row of every table, as text (bytea as hex).
fn postgres_rows(url: &str) -> Result<Vec<u8>> {
    use sqlx::Connection as _;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables \
             WHERE table_schema = 'public' ORDER BY 1",
        )
        .fetch_all(&mut conn)
        .await?;
        let mut dump = Vec::new();
        for table in tables {
            let rows: Vec<String> =
                sqlx::query_scalar(&format!("SELECT t::text FROM \"{table}\" t"))
                    .fetch_all(&mut conn)
                    .await?;
            for row in rows {
                dump.extend_from_slice(row.as_bytes());
                dump.push(b'\n');
            }
        }
        conn.close().await?;
        Ok(dump)
    })
}
