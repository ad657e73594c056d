//! Finds or starts the PostgreSQL server that `cargo xtask test` runs the store's second
//! backend on, so the suite never skips PostgreSQL.
//!
//! In order: the URL already in `TESSERA_TEST_POSTGRES_URL`; the project machines' server on
//! 127.0.0.1:5432 (trust authentication); a temporary cluster under `target/tmp-postgres`
//! made with Debian's PostgreSQL binaries (installed with apt-get when running as root and
//! missing). Anything else is an error saying what to do. It never stops or reconfigures a
//! server it did not start; the temporary cluster is left running for the next run and can
//! be stopped with `pg_ctl -D target/tmp-postgres/data stop`.

// Product names in prose, not code. Remove once clippy.toml's `doc-valid-idents` lists them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// Environment variable through which the tests receive the server URL.
pub const URL_VAR: &str = "TESSERA_TEST_POSTGRES_URL";

/// The project machines' server.
const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const DEFAULT_PORT: u16 = 5432;
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// Returns the URL of a PostgreSQL server on which the `postgres` role may create databases
/// (the caller exports it as [`URL_VAR`] to the test processes), starting a temporary one if
/// no server is running.
pub fn ensure_postgres() -> Result<String> {
    if let Ok(url) = std::env::var(URL_VAR)
        && !url.trim().is_empty()
    {
        println!("PostgreSQL for tests: {URL_VAR} is set, using it");
        return Ok(url);
    }
    if server_ready(DEFAULT_PORT, None) {
        println!("PostgreSQL for tests: the server on 127.0.0.1:{DEFAULT_PORT}");
        return Ok(DEFAULT_URL.to_owned());
    }
    let bin = if let Some(bin) = debian_bin_dir() {
        bin
    } else {
        install_postgres()?;
        // The package's own cluster may have started on the default port.
        if server_ready(DEFAULT_PORT, None) {
            return Ok(DEFAULT_URL.to_owned());
        }
        debian_bin_dir().with_context(|| {
            format!("apt-get installed postgresql, but {DEBIAN_PG_ROOT}/*/bin/initdb is missing")
        })?
    };
    let dir = target_dir()?.join("tmp-postgres");
    let url = temporary_cluster(&dir, &bin)?;
    println!(
        "PostgreSQL for tests: temporary cluster in {} ({url})",
        dir.display()
    );
    Ok(url)
}

/// Whether a PostgreSQL server accepts connections on 127.0.0.1:`port`: the port must
/// accept a TCP connection and, where `pg_isready` is installed, the server must say it is
/// ready (a server that is starting or shutting down is not).
fn server_ready(port: u16, bin: Option<&Path>) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        return false;
    }
    let pg_isready = bin
        .map(|b| b.join("pg_isready"))
        .filter(|p| p.is_file())
        .or_else(|| find_in_path("pg_isready"));
    let Some(pg_isready) = pg_isready else {
        return true;
    };
    let ready = Command::new(&pg_isready)
        .args(["-q", "-h", "127.0.0.1", "-t", "5", "-p", &port.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    if !ready {
        eprintln!("note: 127.0.0.1:{port} accepts connections but pg_isready says it is not ready");
    }
    ready
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `/usr/lib/postgresql/<highest version>/bin`, if it has `initdb` and `pg_ctl`.
fn debian_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(DEBIAN_PG_ROOT)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("pg_ctl").is_file()).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
}

fn install_postgres() -> Result<()> {
    const HELP: &str = "start PostgreSQL on 127.0.0.1:5432 with trust authentication for the \
                        postgres role, install the postgresql package, or set \
                        TESSERA_TEST_POSTGRES_URL to a server where a role may CREATE DATABASE";
    if !is_root() {
        bail!(
            "no PostgreSQL server on 127.0.0.1:5432 and no PostgreSQL binaries in {DEBIAN_PG_ROOT}, and not root to install them: {HELP}"
        );
    }
    println!("==> installing PostgreSQL (apt-get install postgresql)");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "--no-install-recommends", "postgresql"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let updated_and_installed = || {
        Command::new("apt-get")
            .arg("update")
            .status()
            .is_ok_and(|s| s.success())
            && install()
    };
    if install() || updated_and_installed() {
        Ok(())
    } else {
        bail!("apt-get install postgresql failed: {HELP}")
    }
}

fn target_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask
        .parent()
        .map(|root| root.join("target"))
        .context("xtask lives inside the workspace")
}

/// Reuses the cluster in `dir` if it is running, else creates (first time) and starts it on
/// a free port. Returns its URL.
fn temporary_cluster(dir: &Path, bin: &Path) -> Result<String> {
    let data = dir.join("data");
    let port_file = dir.join("port");
    if let Some(port) = std::fs::read_to_string(&port_file)
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        && data.join("postmaster.pid").is_file()
        && server_ready(port, Some(bin))
    {
        return Ok(url_for(port));
    }

    // PostgreSQL refuses to run as root: run it as the `postgres` user, which owns the dir.
    let as_postgres = is_root();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if as_postgres {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir))?;
        let writable = Command::new("runuser")
            .args(["-u", "postgres", "--", "test", "-w"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        if !writable {
            bail!(
                "the postgres user cannot write to {} (is a parent directory closed to it?)",
                dir.display()
            );
        }
    }

    if !data.join("PG_VERSION").is_file() {
        println!(
            "==> creating a temporary PostgreSQL cluster in {}",
            data.display()
        );
        let mut initdb = pg_command(&bin.join("initdb"), as_postgres);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .current_dir(dir)
            .stdout(Stdio::null());
        run(&mut initdb)?;
    }

    let port = free_port()?;
    let log = dir.join("postgres.log");
    // TCP on 127.0.0.1 only, no Unix socket (its directory may not exist or be writable),
    // and no fsync: this cluster holds throwaway test data.
    let options =
        format!("-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off");
    let mut start = pg_command(&bin.join("pg_ctl"), as_postgres);
    start
        .arg("-D")
        .arg(&data)
        .arg("-l")
        .arg(&log)
        .args(["-w", "-t", "60", "-o", &options, "start"])
        .current_dir(dir)
        .stdout(Stdio::null());
    run(&mut start).with_context(|| format!("see {}", log.display()))?;
    std::fs::write(&port_file, port.to_string())
        .with_context(|| format!("writing {}", port_file.display()))?;
    if !server_ready(port, Some(bin)) {
        bail!(
            "the temporary PostgreSQL cluster started but does not accept connections on \
             127.0.0.1:{port}; see {}",
            log.display()
        );
    }
    Ok(url_for(port))
}

fn url_for(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// `program`, run as the `postgres` user when `as_postgres`. Arguments added to the returned
/// command reach `program` unchanged: with `runuser` directly, with `su` (one shell string)
/// as the shell's positional parameters.
fn pg_command(program: &Path, as_postgres: bool) -> Command {
    if !as_postgres {
        return Command::new(program);
    }
    if find_in_path("runuser").is_some() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        // `--` before the user: su would otherwise take `-D`, `-w`… as its own options.
        let mut cmd = Command::new("su");
        cmd.args(["-s", "/bin/sh", "-c"])
            .arg(format!(
                "exec {} \"$@\"",
                shell_quote(&program.display().to_string())
            ))
            .args(["--", "postgres", "sh"]);
        cmd
    }
}

/// Quotes `word` for a POSIX shell.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

fn run(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_survives_single_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn url_names_the_postgres_role_on_localhost() {
        assert_eq!(url_for(5433), "postgres://postgres@127.0.0.1:5433/postgres");
        assert_eq!(url_for(DEFAULT_PORT), DEFAULT_URL);
    }
}
