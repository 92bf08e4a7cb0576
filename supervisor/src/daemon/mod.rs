//! `bulkhead serve`: the supervisor daemon. [`start`] owns start-up in order —
//! state dir, keystore, registry, worker binary, router, tenants, admin API —
//! and runs until told to stop ([`Shutdown`]), so `demo` drives it in-process.

mod actions;
mod admin;
mod apply;
pub mod audit;
pub mod egress;
mod install;
pub mod metrics;
mod replies;
mod restart;
mod rtp;
mod tenants;
mod worker;

use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::Config;
use crate::keystore::Keystore;
use crate::registry::{Registry, RegistryError};
use crate::router::Router;
pub use tenants::Tenants;

/// An admin operation's failure, classified for the HTTP status it maps to.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Failed(String),
}

impl AdminError {
    fn from_registry(e: RegistryError) -> Self {
        match e {
            RegistryError::NumberTaken { .. } | RegistryError::TenantExists(_) => {
                Self::Conflict(e.to_string())
            }
            other => Self::Failed(other.to_string()),
        }
    }
}

/// What the daemon is asked to do; `serve` maps signals onto it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Keep serving.
    Serve,
    /// Refuse new calls, let calls in progress finish (up to
    /// `drain_timeout`), then stop the workers and exit (SIGTERM).
    Drain,
    /// Stop the workers and exit now (SIGINT, or a second SIGTERM).
    Now,
}

/// What a running daemon exposes to an in-process caller (demo, tests).
#[derive(Debug, Clone)]
pub struct Running {
    pub router: Arc<Router>,
    pub tenants: Arc<Tenants>,
    pub admin_socket: PathBuf,
    /// Where `/metrics` is served.
    pub metrics: std::net::SocketAddr,
}

/// Starts the daemon and returns once the admin socket accepts connections;
/// the returned task runs it until `shutdown` leaves [`Shutdown::Serve`].
pub async fn start(
    cfg: Config,
    mut shutdown: watch::Receiver<Shutdown>,
) -> anyhow::Result<(Running, tokio::task::JoinHandle<()>)> {
    // Nothing the supervisor creates (registry, WAL files, keys) is readable
    // by other users unless a mode below says so explicitly.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let state = &cfg.state_dir;
    std::fs::create_dir_all(state)
        .with_context(|| format!("failed to create state dir {}", state.display()))?;
    // 0711: tenant uids may traverse to bin/ and their own tenants/<id>/, list nothing.
    std::fs::set_permissions(state, std::fs::Permissions::from_mode(0o711))?;
    std::fs::create_dir_all(&cfg.run_dir)
        .with_context(|| format!("failed to create run dir {}", cfg.run_dir.display()))?;
    if let Err(e) = crate::self_protect::protect_process() {
        tracing::warn!(error = %e, "could not make the supervisor undumpable");
    }
    match crate::self_protect::raise_open_files() {
        Ok(files) if files < 1000 * crate::self_protect::FILES_PER_TENANT => tracing::warn!(
            open_files = files,
            "the open-files limit leaves room for about {} running tenants; raise the hard limit \
             (systemd: LimitNOFILE=) for more",
            files / crate::self_protect::FILES_PER_TENANT
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open-files limit"),
    }
    let registry = Registry::open(&state.join("registry.db"))?;
    // Before the key is loaded: a rotation a crash interrupted decides
    // which file is the master key.
    if let crate::master_key::Source::File(path) = &cfg.master_key {
        if let Some(what) = tenants::rotation::recover(path, &registry)? {
            tracing::warn!("{what}");
        }
    }
    let keystore = Keystore::from_source(&cfg.master_key)?;
    let worker_bin = install::worker_binary(&cfg)?;
    let router = Router::start(cfg.sip_listen)
        .await
        .with_context(|| format!("failed to bind the SIP router on {}", cfg.sip_listen))?;
    let advertise = advertise_address(&cfg);
    tracing::info!(sip = %router.local, %advertise, "SIP router listening");
    let cgroups = if nix::unistd::geteuid().is_root() {
        let cg = crate::cgroup::detect(&crate::cgroup::instance_name(&cfg.state_dir))
            .context("failed to set up per-tenant cgroups (on a systemd host, run bulkhead with Delegate=yes)")?;
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let fast = crate::cgroup::fast_migrations(&mounts);
        tracing::info!(
            version = cg.version(),
            favordynmods = fast,
            "per-tenant cgroups"
        );
        // v1 workers join through `tasks`, which never waits (docs/sandbox.md).
        if !fast && cg.version() == "v2" {
            tracing::info!(
                "each worker start waits for an RCU grace period to join its cgroup \
                 (4.6-14 ms measured on v1's cgroup.procs); mounting cgroup2 with -o favordynmods \
                 removes the wait (docs/sandbox.md)"
            );
        }
        Some(cg)
    } else {
        None
    };
    warn_when_not_root();
    let tenants = Tenants::new(
        cfg.clone(),
        registry,
        keystore,
        router.clone(),
        worker_bin,
        advertise,
        cgroups,
    );
    let metrics_listener = metrics::bind(cfg.metrics_listen).await?;
    let metrics_addr = metrics_listener.local_addr()?;
    let _ = tenants.metrics_addr.set(metrics_addr);
    tracing::info!(metrics = %metrics_addr, "Prometheus metrics at /metrics");
    tokio::spawn(metrics::serve(
        metrics_listener,
        tenants.clone(),
        router.clone(),
    ));
    tenants.restore_all().await;
    let admin_socket = cfg.admin_socket();
    let listener = admin::bind(&admin_socket)?;
    let running = Running {
        router: router.clone(),
        tenants: tenants.clone(),
        admin_socket: admin_socket.clone(),
        metrics: metrics_addr,
    };
    let status_ctx = admin::Ctx {
        tenants: tenants.clone(),
        router,
        metrics: metrics_addr,
    };
    let handle = tokio::spawn(async move {
        // The admin API keeps answering during a drain (`status` shows it).
        let admin = tokio::spawn(admin::serve(listener, status_ctx));
        let asked = match shutdown.wait_for(|s| *s != Shutdown::Serve).await {
            Ok(s) => *s,
            Err(_) => Shutdown::Now, // every sender gone
        };
        if asked == Shutdown::Drain {
            tracing::info!(timeout = ?tenants.cfg.drain_timeout, "draining: new calls get 503, calls in progress may finish");
            let drained = tenants.drain_all(shutdown).await;
            tracing::info!(waited = ?drained.waited, cut = drained.cut, "drained");
        }
        tracing::info!("stopping workers");
        tenants.stop_all().await;
        admin.abort();
        let _ = std::fs::remove_file(&admin_socket);
    });
    tracing::info!(socket = %running.admin_socket.display(), "ready");
    notify_systemd_ready();
    Ok((running, handle))
}

/// Without root, says loudly which layers are missing.
fn warn_when_not_root() {
    if nix::unistd::geteuid().is_root() {
        return;
    }
    if crate::sandbox::namespaces::user_namespaces_available() {
        tracing::warn!(
            "NOT ROOT: development mode with user namespaces. NOT enforced between tenants: own uids \
             (credentials: every worker runs as this user) and cgroup limits. Enforced: namespaces and minimal \
             root, network namespace, Landlock, seccomp, per-tenant keys. `bulkhead audit` shows each layer"
        );
    } else {
        tracing::warn!(
            "NOT ROOT and no user namespaces: NOT enforced between tenants: own uids, namespaces, minimal root, \
             network namespace, cgroup limits. Enforced: Landlock, seccomp, per-tenant keys. \
             `bulkhead audit` shows each layer"
        );
    }
}

/// The address for SDP and Contact (INTERFACES.md `advertise`).
fn advertise_address(cfg: &Config) -> IpAddr {
    if let Some(a) = cfg.advertise {
        return a;
    }
    if !cfg.sip_listen.ip().is_unspecified() {
        return cfg.sip_listen.ip();
    }
    nix::ifaddrs::getifaddrs()
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.address
                .and_then(|a| a.as_sockaddr_in().map(|s| IpAddr::V4(s.ip())))
        })
        .find(|ip| !ip.is_loopback())
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// `READY=1` to `$NOTIFY_SOCKET` when systemd started us (Type=notify).
fn notify_systemd_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let _ = sock.send_to(b"READY=1", PathBuf::from(path));
}
