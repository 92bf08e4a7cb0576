//! `bulkhead`: the supervisor daemon and its admin CLI.

use std::process::ExitCode;

use bulkhead_supervisor::cli::{Cli, Command};
use bulkhead_supervisor::commands;
use bulkhead_supervisor::spawn;
use clap::Parser;

fn main() -> ExitCode {
    // The spawn server is this binary too, started by `serve` (before clap,
    // and without a runtime: it stays one small single-threaded process).
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == spawn::server::ARG) {
        return spawn::server::main(&args[2..]);
    }
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
