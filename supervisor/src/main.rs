//! `bulkhead`: the supervisor daemon and its admin CLI.

use std::process::ExitCode;

use bulkhead_supervisor::cli::{Cli, Command};
use bulkhead_supervisor::commands;
use clap::Parser;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo's output is for people: only warnings unless RUST_LOG says more.
    let default_level = if matches!(cli.command, Command::Demo { .. }) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_target(false)
        .init();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bulkhead: failed to start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkhead: {e:#}");
            e.exit_code()
        }
    }
}
