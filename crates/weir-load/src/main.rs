//! `weir-load`: see the crate docs and `weir-load --help`.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use weir_load::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    // Quiet by default: the progress bar is the display. RUST_LOG=debug
    // shows the clients' logs.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            report = weir_load::run(&args) => report,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        }
    });
    // Clients still open (after an interrupt) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match outcome {
        Ok(report) => {
            print!("{}", report.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", weir_load::runner::describe(&e));
            ExitCode::FAILURE
        }
    }
}
