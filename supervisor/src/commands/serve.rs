//! `bulkhead serve`: load the configuration, run the daemon until a signal.

use tokio::signal::unix::{signal, SignalKind};

use crate::cli::ServeArgs;
use crate::config::{Config, Overrides};
use crate::daemon;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let flags = Overrides {
        state_dir: args.state_dir,
        run_dir: args.run_dir,
        sip_listen: args.sip_listen,
    };
    let cfg = Config::load(args.config.as_deref(), &flags)?;
    let (_running, handle) = daemon::start(cfg, shutdown_signal()).await?;
    handle.await?;
    Ok(())
}

/// Resolves on SIGTERM or SIGINT, logging which. (Draining on SIGTERM comes
/// with the supervision issue; both stop workers now.)
pub async fn shutdown_signal() {
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}
