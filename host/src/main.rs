//! The `tessera` binary: parses the command line, reads the configuration once, sets up
//! logging, and hands over to `tessera_host::cli`. It holds no logic of its own.

use std::process::ExitCode;

use clap::Parser as _;

/// mimalloc instead of the system allocator: a call allocates and frees a few hundred small
/// objects across threads, where glibc's malloc spent about a tenth of the host's CPU
/// (docs/ARCHITECTURE.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = tessera_host::cli::Args::parse();
    match tessera_host::cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the message already
/// contains (many errors print their source themselves).
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
