//! The `tessera` binary: parses the command line, reads the configuration once, sets up
//! logging, and hands over to `tessera_host::cli`. It holds no logic of its own.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = tessera_host::cli::Args::parse();
    match tessera_host::cli::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
