//! The `weir` binary: parses the command line and runs it (see
//! `weir_server::cli`). Errors are printed to stderr with exit status 1.

use std::process::ExitCode;

use clap::Parser;
use weir_server::cli::{self, Cli};

fn main() -> ExitCode {
    let parsed = Cli::parse();
    let env = cli::process_env();
    match cli::run(parsed, &env) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
