//! `bulkhead serve`: load the configuration, run the daemon until a signal.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::cli::ServeArgs;
use crate::config::{Config, Overrides};
use crate::daemon::{self, Shutdown};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let flags = Overrides {
        state_dir: args.state_dir,
        run_dir: args.run_dir,
        sip_listen: args.sip_listen,
    };
    let cfg = Config::load(args.config.as_deref(), &flags)?;
    let (tx, rx) = watch::channel(Shutdown::Serve);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (_running, handle) = daemon::start(cfg, rx).await?;
    tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                _ = term.recv() => match *tx.borrow() {
                    Shutdown::Serve => {
                        tracing::info!("SIGTERM: draining (SIGINT or a second SIGTERM stops now)");
                        Shutdown::Drain
                    }
                    _ => {
                        tracing::info!("SIGTERM again: stopping now");
                        Shutdown::Now
                    }
                },
                _ = int.recv() => {
                    tracing::info!("SIGINT: stopping now");
                    Shutdown::Now
                }
            };
            let _ = tx.send(next);
        }
    });
    handle.await?;
    Ok(())
}
