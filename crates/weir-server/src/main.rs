//! The `weir` binary: parses the command line and runs it (see
//! `weir_server::cli`). Errors are printed to stderr with exit status 1.

use std::process::ExitCode;

use clap::Parser;
use weir_server::cli::{self, Cli};

/// jemalloc, configured in `.cargo/config.toml` to give freed memory back
/// to the system within seconds: glibc's malloc kept a finished room's
/// memory (docs/performance.md, "Memory").
#[cfg(not(feature = "dhat-heap"))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// `--features dhat-heap`: a heap profile of the whole run, written to
/// `dhat-heap.json` when the process exits (for memory investigations;
/// see docs/performance.md).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

fn main() -> ExitCode {
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
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
