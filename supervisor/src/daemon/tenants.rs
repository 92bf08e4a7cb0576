//! The tenants the supervisor runs: registry rows joined with live state
//! (sockets, worker process, link). Every admin operation lands here.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::os::unix::fs::{chown, PermissionsExt};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead_shared::ipc::message::ControlOp;
use bulkhead_shared::ipc::{Link, WorkerConfig};
use bulkhead_shared::trunk::TrunkPolicy;
use bulkhead_shared::{Number, TenantId};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::worker::{self, WorkerLink};
use super::AdminError;
use crate::api::{
    TenantAdded, TenantSpec, TenantView, TokenIssued, TokenList, TokenRequest, TokenView,
};
use crate::cgroup::Cgroups;
use crate::config::Config;
use crate::keystore::{DataKey, Keystore};
use crate::limits::Limits;
use crate::ports::{self, TenantSockets};
use crate::registry::{Registry, TenantRow};
use crate::router::admission::GateCounts;
use crate::router::Router;
use crate::sandbox::{rootfs, verify, Layers};
use crate::spawn::{self, Spawner, WorkerSpec};
use bulkhead_shared::api_token as tokens;

pub mod backup;
mod drain;
mod egress;
pub mod key_rotation;
mod limits;
pub mod rotation;
mod supervise;

pub use limits::Change as LimitChange;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Starting,
    Running,
    /// New calls refused while calls in progress finish.
    Draining,
    Restarting,
    Failed,
    Stopped,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Draining => "draining",
            Self::Restarting => "restarting",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }
}

/// How often a running worker is pinged.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// When each phase of a worker start ended, from the start: the
/// supervisor's preparation (data directory, keys, cgroup), fork, sandbox
/// and exec, then the worker's own start up to `Ready` (loading, store
/// open, hardening). Logged with "worker serving" so a slow start says
/// where its time went.
#[derive(Debug, Clone, Copy)]
struct StartPhases {
    prepared: Duration,
    execed: Duration,
    ready: Duration,
}

impl StartPhases {
    /// "worker serving", with the whole start (`total`, verification
    /// included) and each phase, in milliseconds.
    fn log(&self, id: &TenantId, pid: u32, total: Duration) {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        tracing::info!(
            tenant = %id,
            pid,
            spawn_to_serving_ms = ms(total),
            prepare_ms = ms(self.prepared),
            exec_ms = ms(self.execed - self.prepared),
            boot_ms = ms(self.ready - self.execed),
            verify_ms = ms(total - self.ready),
            "worker serving"
        );
    }
}

/// [`Tenants::prepare_start`]'s result.
struct PreparedStart {
    spec: WorkerSpec,
    key: DataKey,
    pending_key: Option<DataKey>,
    /// None without cgroups: nothing to set.
    cpu_quota_us: Option<u64>,
}

/// See [`Tenants::audit_facts`].
#[derive(Debug)]
pub(super) struct AuditFacts {
    pub uid: u32,
    pub data_dir: PathBuf,
    /// (pid, Landlock status) of the running worker.
    pub worker: Option<(u32, String)>,
}

#[derive(Debug)]
struct Live {
    row: TenantRow,
    /// `None` when the tenant's ports could not be bound at start-up.
    sockets: Option<TenantSockets>,
    state: State,
    pid: Option<u32>,
    worker: Option<Arc<WorkerLink>>,
    started: Option<Instant>,
    restarts: u32,
    history: super::restart::History,
    /// When the worker died, until its replacement serves (crash-to-serving).
    died_at: Option<Instant>,
    /// Why we killed the worker, if we did (a missed heartbeat).
    kill_reason: Option<String>,
    last_failure: Option<String>,
    /// The worker's namespaces as verified at its start (see
    /// [`verify::verify`]); meaningful while `pid` is set.
    namespaces: Vec<PathBuf>,
}

/// Everything tenant-related the daemon owns.
#[derive(Debug)]
pub struct Tenants {
    pub(super) cfg: Config,
    registry: Mutex<Registry>,
    keystore: std::sync::RwLock<Keystore>,
    pub(super) router: Arc<Router>,
    pub(super) spawner: Spawner,
    pub(super) worker_bin: PathBuf,
    pub advertise: IpAddr,
    pub(super) is_root: bool,
    /// RTP port pairs for calls, machine-wide.
    pub(super) rtp: super::rtp::RtpPool,
    /// Without root: whether unprivileged user namespaces work here.
    user_namespaces: bool,
    /// Per-tenant cgroups; `None` without root.
    pub(super) cgroups: Option<Box<dyn Cgroups>>,
    live: Mutex<HashMap<TenantId, Live>>,
    /// Where `/metrics` is bound (set once at start; with port 0 only the
    /// bound port is known), so egress can refuse it.
    pub(super) metrics_addr: std::sync::OnceLock<std::net::SocketAddr>,
    /// Serializes tenant creation: uid and port choice read the live set,
    /// and two concurrent adds must not both pick the same free uid.
    adding: tokio::sync::Mutex<()>,
    /// Serializes key rotations and backups: a backup names the key its
    /// copy is under, so the store must not change keys meanwhile.
    key_ops: tokio::sync::Mutex<()>,
}

impl Tenants {
    pub fn new(
        cfg: Config,
        registry: Registry,
        keystore: Keystore,
        router: Arc<Router>,
        worker_bin: PathBuf,
        advertise: IpAddr,
        cgroups: Option<Box<dyn Cgroups>>,
    ) -> Arc<Self> {
        let rtp = super::rtp::RtpPool::new(cfg.tenant_bind.sip, cfg.rtp_ports.clone());
        Arc::new(Self {
            cfg,
            registry: Mutex::new(registry),
            keystore: std::sync::RwLock::new(keystore),
            router,
            spawner: Spawner::start(),
            worker_bin,
            advertise,
            is_root: nix::unistd::geteuid().is_root(),
            rtp,
            user_namespaces: !nix::unistd::geteuid().is_root()
                && crate::sandbox::namespaces::user_namespaces_available(),
            cgroups,
            live: Mutex::new(HashMap::new()),
            metrics_addr: Default::default(),
            adding: tokio::sync::Mutex::new(()),
            key_ops: tokio::sync::Mutex::new(()),
        })
    }

    fn data_dir(&self, id: &TenantId) -> PathBuf {
        self.cfg.state_dir.join("tenants").join(id.as_str())
    }

    /// Brings back every registered tenant (at start-up).
    pub async fn restore_all(self: &Arc<Self>) {
        let rows = match self.registry.lock().expect("registry lock").all() {
            Ok(rows) => rows,
            Err(e) => {
                return tracing::error!(error = %e, "failed to read the registry; no tenants restored")
            }
        };
        for row in rows {
            let id = row.id.clone();
            self.kill_leftovers(&id).await;
            let bound = ports::bind_tenant(
                &self.cfg.tenant_bind,
                Some(row.sip_port),
                Some(row.http_port),
                &self.cfg.tenant_sip_ports,
                &self.cfg.tenant_http_ports,
                &HashSet::new(),
            );
            for n in &row.numbers {
                self.router.set_number(n.clone(), id.clone());
            }
            let sockets = match bound {
                Ok(s) => s,
                Err(e) => {
                    // Still listed, as failed with the reason: never silently gone.
                    tracing::error!(tenant = %id, error = %e, "cannot restore tenant");
                    self.insert_live(row, None);
                    self.mark_failed(
                        &id,
                        format!("its ports could not be bound at start-up: {e}"),
                    );
                    continue;
                }
            };
            self.insert_live(row, Some(sockets));
            if let Err(e) = self.start_worker(&id).await {
                tracing::error!(tenant = %id, error = %e, "tenant restored but its worker failed to start");
            }
        }
    }

    fn mark_failed(&self, id: &TenantId, reason: String) {
        if let Some(l) = self.live.lock().expect("live lock").get_mut(id) {
            l.state = State::Failed;
            l.last_failure = Some(reason);
        }
    }

    fn insert_live(&self, row: TenantRow, sockets: Option<TenantSockets>) {
        // Validated when the configuration was loaded and when the
        // overrides were set; a registry edited by hand falls back to the
        // configured limits.
        let limits = row.limits.over(&self.cfg.limits).unwrap_or_else(|e| {
            tracing::error!(tenant = %row.id, error = %e, "invalid stored limits; using the configured ones");
            self.cfg.limits.clone()
        });
        if let Ok(calls) = limits.calls() {
            self.router.admission.set_limits(&row.id, calls);
        }
        let live = Live {
            row,
            sockets,
            state: State::Starting,
            pid: None,
            worker: None,
            started: None,
            restarts: 0,
            history: Default::default(),
            died_at: None,
            kill_reason: None,
            namespaces: Vec::new(),
            last_failure: None,
        };
        self.live
            .lock()
            .expect("live lock")
            .insert(live.row.id.clone(), live);
    }

    /// `tenant add`: registers, starts, waits until serving, issues a token.
    pub async fn add(self: &Arc<Self>, spec: TenantSpec) -> Result<TenantAdded, AdminError> {
        let id = spec.id.clone();
        {
            let _one_at_a_time = self.adding.lock().await;
            self.register(spec, None)?;
        }
        // Outside `adding`: other tenants may be registered and start
        // meanwhile (`apply` starts several at once).
        self.start_registered(&id, true).await?;
        let issued = self
            .issue_token(
                &id,
                TokenRequest {
                    name: Some("initial".into()),
                    expires_in_s: None,
                },
            )
            .await?;
        Ok(TenantAdded {
            tenant: self.view(&id)?,
            token: issued.token,
        })
    }

    /// Registers, places the store (a restore's), and starts the worker,
    /// returning once it serves. The caller holds `adding`.
    async fn create(
        self: &Arc<Self>,
        spec: TenantSpec,
        restored: Option<backup::Restored>,
    ) -> Result<(), AdminError> {
        let id = spec.id.clone();
        let new_key = restored.is_none();
        self.register(spec, restored)?;
        self.start_registered(&id, new_key).await
    }

    /// Registers a new tenant, places its store (a restore's), binds its
    /// ports and routes its numbers; its worker is not started. The caller
    /// holds `adding`.
    fn register(
        self: &Arc<Self>,
        spec: TenantSpec,
        restored: Option<backup::Restored>,
    ) -> Result<(), AdminError> {
        let id = spec.id.clone();
        let limits = spec.limits.clone().unwrap_or_default();
        limits
            .over(&self.cfg.limits)
            .map_err(|e| AdminError::BadRequest(format!("tenant {id}: {e}")))?;
        let trunk = TrunkPolicy {
            allow: spec.trunk_allow.clone().unwrap_or_default(),
            auth: spec
                .trunk_auth
                .as_ref()
                .map(|a| a.to_auth(&id))
                .transpose()
                .map_err(|e| AdminError::BadRequest(format!("tenant {id}: {e}")))?,
        };
        let (uid, taken) = {
            let live = self.live.lock().expect("live lock");
            if live.contains_key(&id) {
                return Err(AdminError::Conflict(format!("tenant {id} already exists")));
            }
            let uids: HashSet<u32> = live.values().map(|l| l.row.uid).collect();
            let uid = self
                .cfg
                .uid_range
                .clone()
                .find(|u| !uids.contains(u))
                .ok_or_else(|| AdminError::Failed("the uid range is exhausted".into()))?;
            let taken = live
                .values()
                .flat_map(|l| [l.row.sip_port, l.row.http_port])
                .collect::<HashSet<_>>();
            (uid, taken)
        };
        let sockets = ports::bind_tenant(
            &self.cfg.tenant_bind,
            spec.sip_port,
            spec.http_port,
            &self.cfg.tenant_sip_ports,
            &self.cfg.tenant_http_ports,
            &taken,
        )
        .map_err(|e| AdminError::Conflict(e.to_string()))?;
        let (wrapped_key, key_version) = match &restored {
            Some(r) => (r.wrapped_key.clone(), r.key_version),
            None => {
                let (_key, wrapped) = self
                    .keystore
                    .read()
                    .expect("keystore lock")
                    .new_data_key(&id)
                    .map_err(|e| AdminError::Failed(e.to_string()))?;
                (wrapped, 1)
            }
        };
        let row = TenantRow {
            id: id.clone(),
            uid,
            sip_port: sockets.sip_udp.local_addr().map_err(io_err)?.port(),
            http_port: sockets.http.local_addr().map_err(io_err)?.port(),
            wrapped_key,
            key_version,
            agent: spec
                .agent
                .as_ref()
                .map_or_else(|| "{}".to_string(), |a| a.to_string()),
            numbers: dedup(spec.numbers),
            limits,
            trunk,
            tls_fingerprint: None,
        };
        self.registry
            .lock()
            .expect("registry lock")
            .insert(&row)
            .map_err(AdminError::from_registry)?;
        let placed = self.make_data_dir(&id, uid).and_then(|()| match &restored {
            Some(r) => r.place(&self.data_dir(&id), uid),
            None => Ok(()),
        });
        if let Err(e) = placed {
            // The registry row must not outlive a tenant that never started
            // (a restore's key is kept: the backup still needs it).
            let _ = self
                .registry
                .lock()
                .expect("registry lock")
                .remove(&id, restored.is_none());
            return Err(AdminError::Failed(format!(
                "failed to create the data directory of tenant {id}: {e}"
            )));
        }
        for n in &row.numbers {
            self.router.set_number(n.clone(), id.clone());
        }
        self.insert_live(row, Some(sockets));
        Ok(())
    }

    /// Starts a tenant [`register`](Self::register) made, returning once
    /// it serves. On failure nothing half-made is left behind: the tenant
    /// is removed, its key retired unless `new_key` is false (a restore's
    /// key goes back to the retired keys; the caller drops it only on
    /// success).
    async fn start_registered(
        self: &Arc<Self>,
        id: &TenantId,
        new_key: bool,
    ) -> Result<(), AdminError> {
        if let Err(e) = self.start_worker(id).await {
            let _ = self.remove(id, new_key).await;
            return Err(AdminError::Failed(format!(
                "tenant {id} could not start: {e}"
            )));
        }
        Ok(())
    }

    /// The empty directory a worker's root is mounted on (in the worker's
    /// own mount namespace; the host only ever sees it empty).
    fn root_mount(&self, id: &TenantId) -> std::io::Result<PathBuf> {
        let dir = self.cfg.state_dir.join("roots").join(id.as_str());
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// What the audit needs about one tenant: its uid, data directory, root
    /// mount point, and its live worker (pid, reported Landlock status).
    pub(super) fn audit_facts(&self, id: &TenantId) -> Option<AuditFacts> {
        let live = self.live.lock().expect("live lock");
        let l = live.get(id)?;
        Some(AuditFacts {
            uid: l.row.uid,
            data_dir: self.data_dir(id),
            worker: l.pid.zip(l.worker.as_ref().map(|w| w.landlock.clone())),
        })
    }

    /// Another running tenant's data directory, HTTP port and worker pid:
    /// the targets of the escape probes.
    pub(super) fn other_target(&self, id: &TenantId) -> Option<(PathBuf, u16, u32)> {
        let live = self.live.lock().expect("live lock");
        live.iter()
            .filter(|(other, _)| *other != id)
            .find_map(|(other, l)| Some((self.data_dir(other), l.row.http_port, l.pid?)))
    }

    /// The layers a worker actually gets for the wanted `base`: all of them
    /// as root; without root, no own uid, and the namespaces only through a
    /// user namespace where the kernel allows one; none otherwise.
    pub(super) fn layers(&self, base: Layers) -> Option<Layers> {
        if self.is_root {
            Some(base)
        } else if self.user_namespaces {
            Some(Layers {
                credentials: false,
                user_ns: base.namespaces || base.network,
                ..base
            })
        } else {
            None
        }
    }

    pub(super) fn ids(&self) -> Vec<TenantId> {
        let mut ids: Vec<TenantId> = self
            .live
            .lock()
            .expect("live lock")
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    pub(super) fn root_mount_of(&self, id: &TenantId) -> std::io::Result<PathBuf> {
        self.root_mount(id)
    }

    /// Creates (or updates) the cgroup `group` with the configured limits and
    /// returns the files a process writes to join it; empty without root.
    /// Creates or updates `group` with `limits`; returns what to write to join it.
    pub(super) fn cgroup_join(&self, group: &str, limits: &Limits) -> Result<Vec<PathBuf>, String> {
        let Some(cg) = &self.cgroups else {
            return Ok(Vec::new());
        };
        cg.prepare(group, limits.cgroup()?)
            .map_err(|e| e.to_string())
    }

    fn make_data_dir(&self, id: &TenantId, uid: u32) -> std::io::Result<()> {
        let tenants = self.cfg.state_dir.join("tenants");
        std::fs::create_dir_all(&tenants)?;
        std::fs::set_permissions(&tenants, std::fs::Permissions::from_mode(0o711))?;
        let dir = self.data_dir(id);
        std::fs::create_dir_all(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        if self.is_root {
            chown(&dir, Some(uid), Some(uid))?;
        }
        Ok(())
    }

    /// Spawns the tenant's worker and waits until it serves.
    async fn start_worker(self: &Arc<Self>, id: &TenantId) -> Result<(), String> {
        let (row, sockets) = {
            let live = self.live.lock().expect("live lock");
            let l = live.get(id).ok_or("tenant vanished")?;
            (
                l.row.clone(),
                l.sockets
                    .as_ref()
                    .ok_or("its ports are not bound")?
                    .try_clone()
                    .map_err(|e| e.to_string())?,
            )
        };
        let started = Instant::now();
        let result = self.spawn_and_attach(&row, &sockets, started).await;
        // Check it from outside before routing a single call to it.
        let result = match result {
            Ok((pid, handle, phases)) => match self.verify_worker(id, row.uid, pid) {
                Ok(namespaces) => {
                    phases.log(id, pid, started.elapsed());
                    Ok((pid, handle, namespaces))
                }
                Err(e) => {
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    Err(format!("worker failed verification and was killed: {e}"))
                }
            },
            Err(e) => Err(e),
        };
        let mut live = self.live.lock().expect("live lock");
        let Some(l) = live.get_mut(id) else {
            return Err("tenant removed during start".into());
        };
        match result {
            Ok((pid, handle, namespaces)) => {
                l.namespaces = namespaces;
                if let Some(died) = l.died_at.take() {
                    let ms = died.elapsed().as_secs_f64() * 1e3;
                    tracing::info!(tenant = %id, crash_to_serving_ms = ms, "worker restarted");
                }
                l.state = State::Running;
                l.pid = Some(pid);
                self.watch_liveness(id, pid, handle.clone());
                l.started = Some(Instant::now());
                self.router.set_worker(id, Some(handle.link.clone()));
                l.worker = Some(handle);
                Ok(())
            }
            Err(e) => {
                l.state = State::Failed;
                l.last_failure = Some(e.clone());
                Err(e)
            }
        }
    }

    fn verify_worker(
        &self,
        id: &TenantId,
        uid: u32,
        pid: u32,
    ) -> Result<Vec<PathBuf>, verify::VerifyError> {
        let others: HashMap<PathBuf, (String, u32)> = {
            let live = self.live.lock().expect("live lock");
            live.iter()
                .filter(|(other, _)| *other != id)
                .filter_map(|(other, l)| Some((other, l.pid?, &l.namespaces)))
                .flat_map(|(other, pid, namespaces)| {
                    namespaces
                        .iter()
                        .map(move |ns| (ns.clone(), (other.to_string(), pid)))
                })
                .collect()
        };
        let expected = verify::Expected {
            uid,
            gid: uid,
            isolated: self.is_root,
        };
        let namespaces = verify::verify(pid, expected, &others)?;
        if let Some(cg) = &self.cgroups {
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let hierarchies = if cg.version() == "v1" { 3 } else { 1 };
            verify::check_cgroup(&text, &cg.member_path(id.as_str()), hierarchies)?;
        }
        Ok(namespaces)
    }

    /// What a worker start needs before the fork: its data directory and
    /// root mount point, its keys (unwrapped), its cgroup with the limits
    /// but the CPU quota, which the start sets while the worker loads
    /// ([`Cgroups::prepare_groups`]) and which is returned with the rest.
    fn prepare_start(&self, row: &TenantRow) -> Result<PreparedStart, String> {
        self.make_data_dir(&row.id, row.uid)
            .map_err(|e| format!("data directory: {e}"))?;
        // The wrapped keys come from the registry and are unwrapped before
        // its lock is released: a master-key rotation (which holds it while
        // it swaps the master) cannot slip between the two. A rotation not
        // yet settled: the worker gets both keys.
        let (key, pending_key) = {
            let registry = self.registry.lock().expect("registry lock");
            let pending = registry
                .pending_key_of(&row.id)
                .map_err(|e| e.to_string())?;
            let (_, wrapped) = registry
                .key_of(&row.id)
                .map_err(|e| e.to_string())?
                .ok_or("its registry row is gone")?;
            let keystore = self.keystore.read().expect("keystore lock");
            let key = keystore
                .unwrap(&row.id, &wrapped)
                .map_err(|e| e.to_string())?;
            let pending_key = pending
                .map(|p| keystore.unwrap(&row.id, &p.wrapped))
                .transpose()
                .map_err(|e| format!("pending key: {e}"))?;
            (key, pending_key)
        };
        let root_mount = self
            .root_mount(&row.id)
            .map_err(|e| format!("root mount point: {e}"))?;
        let limits = self.limits_of(&row.id);
        let cgroup = limits.cgroup()?;
        let cgroup_join = match &self.cgroups {
            Some(cg) => cg
                .prepare_groups(row.id.as_str(), cgroup)
                .map_err(|e| format!("cgroup: {e}"))?,
            None => Vec::new(),
        };
        let spec = WorkerSpec {
            bin: self.worker_bin.clone(),
            uid: row.uid,
            gid: row.uid,
            data_dir: self.data_dir(&row.id),
            root_mount,
            cgroup_join,
            tasks: u64::from(limits.pids),
            data_bytes: cgroup.memory_bytes,
            isolation: self.layers(Layers::ALL),
        };
        Ok(PreparedStart {
            spec,
            key,
            pending_key,
            cpu_quota_us: self.cgroups.is_some().then_some(cgroup.cpu_quota_us),
        })
    }

    /// Sets `id`'s CPU quota (no cgroups: nothing to do).
    fn limit_cpu(&self, id: &TenantId, quota_us: u64) -> Result<(), String> {
        match &self.cgroups {
            Some(cg) => cg
                .limit_cpu(id.as_str(), quota_us)
                .map_err(|e| format!("cgroup: {e}")),
            None => Ok(()),
        }
    }

    async fn spawn_and_attach(
        self: &Arc<Self>,
        row: &TenantRow,
        sockets: &TenantSockets,
        started: Instant,
    ) -> Result<(u32, Arc<WorkerLink>, StartPhases), String> {
        // Files, the registry and cgroup writes: blocking work, off the
        // runtime's threads.
        let PreparedStart {
            spec,
            key,
            pending_key,
            cpu_quota_us,
        } = {
            let (me, row) = (self.clone(), row.clone());
            tokio::task::spawn_blocking(move || me.prepare_start(&row))
                .await
                .map_err(|e| format!("preparing the start: {e}"))??
        };
        let prepared = started.elapsed();
        // Joined below, before the worker counts as serving.
        let cpu_limited = cpu_quota_us.map(|quota| {
            let (me, id) = (self.clone(), row.id.clone());
            tokio::task::spawn_blocking(move || me.limit_cpu(&id, quota))
        });
        let (ours, theirs) = spawn::worker_socketpair().map_err(|e| e.to_string())?;
        let link = Arc::new(Link::new(ours).map_err(|e| e.to_string())?);
        let config = WorkerConfig {
            tenant_id: row.id.clone(),
            numbers: row.numbers.clone(),
            advertise: self.advertise,
            router_port: self.router.local.port(),
            sip_port: row.sip_port,
            http_port: row.http_port,
            // Inside its own root, the data directory is mounted at /data.
            data_dir: if self.layers(Layers::ALL).is_some_and(|l| l.namespaces) {
                rootfs::DATA.into()
            } else {
                self.data_dir(&row.id)
            },
            answer_delay_ms: self.cfg.answer_delay_ms,
            log_filter: self.cfg.worker_log_filter.clone(),
            probe: None,
            agent: serde_json::from_str(&row.agent).unwrap_or_default(),
            trunk: row.trunk.clone(),
            retention_days: row
                .limits
                .over(&self.cfg.limits)
                .map_or(0, |l| l.retention_days),
            crash_at: std::env::var("BULKHEAD_CRASH_AT").ok(),
        };
        let settle = pending_key.is_some();
        // Sent before the spawn: the frame waits in the empty socketpair
        // and the worker reads it the moment it starts, rather than after
        // the spawn's answer has come back here (0.1–0.45 ms of every
        // start spent waiting, BENCHMARKS.md).
        worker::bootstrap(&link, key, pending_key, config, sockets)
            .await
            .map_err(|e| format!("failed to send the bootstrap frame: {e}"))?;
        let spawned = self
            .spawner
            .spawn(spec, &row.id.to_string(), theirs)
            .await
            .map_err(|e| e.to_string())?;
        let execed = started.elapsed();
        let mut child = spawned.child;
        let pid = spawned.worker_pid;
        let attached = worker::attach(row.id.clone(), link, self.clone()).await;
        let ready = started.elapsed();
        let cpu_set = match cpu_limited {
            Some(task) => task
                .await
                .unwrap_or_else(|e| Err(format!("setting the CPU quota: {e}"))),
            None => Ok(()),
        };
        let attached = cpu_set.and(attached);
        let (handle, closed) = match attached {
            Ok(ok) => ok,
            Err(e) => {
                let _ = child.kill();
                let status = tokio::task::spawn_blocking(move || child.wait()).await;
                return Err(format!("{e} (exit: {status:?})"));
            }
        };
        if settle {
            // Left pending on an error; the next start settles it again.
            if let Err(e) = self.settle_rotation(&row.id, handle.store_key) {
                tracing::error!(tenant = %row.id, error = %e, "could not settle a key rotation");
            }
        }
        let me = self.clone();
        let id = row.id.clone();
        tokio::spawn(async move {
            let reason = closed.await.unwrap_or_else(|_| "link lost".into());
            // Kill first: a worker that sent garbage may still be running.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let status = tokio::task::spawn_blocking(move || child.wait()).await;
            me.on_exit(
                &id,
                pid,
                format!("worker {reason}; {}", describe_status(status)),
            );
        });
        let phases = StartPhases {
            prepared,
            execed,
            ready,
        };
        Ok((pid, handle, phases))
    }

    /// `tenant remove`: stops the worker, releases numbers and ports, deletes
    /// the data. Without `shred` the wrapped key is kept in the registry.
    pub async fn remove(&self, id: &TenantId, shred: bool) -> Result<(), AdminError> {
        if !self.live.lock().expect("live lock").contains_key(id) {
            return Err(AdminError::NotFound(format!("no tenant {id}")));
        }
        self.stop_worker(id).await;
        let l = self.live.lock().expect("live lock").remove(id);
        self.router.admission.remove(id);
        if let Some(l) = &l {
            for n in &l.row.numbers {
                self.router.remove_number(n);
            }
        }
        self.registry
            .lock()
            .expect("registry lock")
            .remove(id, shred)
            .map_err(AdminError::from_registry)?;
        let _ = std::fs::remove_dir(self.cfg.state_dir.join("roots").join(id.as_str()));
        self.remove_cgroups(id).await;
        let dir = self.data_dir(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| {
                AdminError::Failed(format!("failed to delete {}: {e}", dir.display()))
            })?;
        }
        Ok(())
    }

    pub async fn issue_token(
        &self,
        id: &TenantId,
        req: TokenRequest,
    ) -> Result<TokenIssued, AdminError> {
        let worker = self.running_worker(id)?;
        let issued = tokens::issue();
        let expires_at = req.expires_in_s.map(|s| {
            bulkhead_shared::time::rfc3339(std::time::SystemTime::now() + Duration::from_secs(s))
        });
        let name = req.name.unwrap_or_else(|| "token".into());
        worker
            .control(ControlOp::AddToken {
                id: issued.id.clone(),
                name: name.clone(),
                sha256_hex: issued.sha256_hex,
                expires_at: expires_at.clone(),
            })
            .await
            .map_err(|e| {
                AdminError::Failed(format!("tenant {id}: failed to store the token: {e}"))
            })?;
        Ok(TokenIssued {
            id: issued.id,
            name,
            token: issued.token,
            expires_at,
        })
    }

    /// `tenant tokens`: asks the worker, which alone can read the tenant's
    /// store. Its answer is untrusted: it must parse as a bounded list.
    pub async fn list_tokens(&self, id: &TenantId) -> Result<TokenList, AdminError> {
        const MOST: usize = 1000;
        let worker = self.running_worker(id)?;
        let data = worker
            .ask(ControlOp::ListTokens)
            .await
            .map_err(|e| AdminError::Failed(format!("tenant {id}: failed to list tokens: {e}")))?;
        let bad = |why: String| {
            tracing::warn!(tenant = %id, "the worker answered a token list with {why}");
            AdminError::Failed(format!(
                "tenant {id}: the worker's token list was malformed ({why})"
            ))
        };
        let tokens: Vec<TokenView> =
            serde_json::from_value(data.unwrap_or_default()).map_err(|e| bad(e.to_string()))?;
        if tokens.len() > MOST
            || tokens
                .iter()
                .any(|t| t.id.len() > 64 || t.name.chars().count() > 64)
        {
            return Err(bad("entries out of bounds".into()));
        }
        Ok(TokenList { tokens })
    }

    /// `tenant revoke-token`.
    pub async fn revoke_token(&self, id: &TenantId, token_id: &str) -> Result<(), AdminError> {
        if !tokens::is_token_id(token_id) {
            return Err(AdminError::BadRequest(format!(
                "{token_id:?} is not a token id (tok_ and 12 hex digits; see tenant tokens {id})"
            )));
        }
        let worker = self.running_worker(id)?;
        worker
            .control(ControlOp::RevokeToken {
                id: token_id.to_owned(),
            })
            .await
            .map_err(|e| {
                if e == "no token with this id" {
                    AdminError::NotFound(format!("tenant {id} has no token {token_id}"))
                } else {
                    AdminError::Failed(format!("tenant {id}: failed to revoke {token_id}: {e}"))
                }
            })
    }

    fn running_worker(&self, id: &TenantId) -> Result<Arc<WorkerLink>, AdminError> {
        let live = self.live.lock().expect("live lock");
        let l = live
            .get(id)
            .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
        l.worker.clone().ok_or_else(|| {
            AdminError::Failed(format!("tenant {id} is {}, not running", l.state.as_str()))
        })
    }

    pub async fn add_number(&self, id: &TenantId, number: Number) -> Result<(), AdminError> {
        if !self.live.lock().expect("live lock").contains_key(id) {
            return Err(AdminError::NotFound(format!("no tenant {id}")));
        }
        self.registry
            .lock()
            .expect("registry lock")
            .add_number(id, &number)
            .map_err(AdminError::from_registry)?;
        self.router.set_number(number.clone(), id.clone());
        self.update_numbers(id, |ns| {
            if !ns.contains(&number) {
                ns.push(number);
            }
        })
        .await
    }

    pub async fn remove_number(&self, number: &Number) -> Result<(), AdminError> {
        let owner = self
            .registry
            .lock()
            .expect("registry lock")
            .remove_number(number)
            .map_err(AdminError::from_registry)?;
        let owner = owner
            .ok_or_else(|| AdminError::NotFound(format!("number {number} is not assigned")))?;
        self.router.remove_number(number);
        self.update_numbers(&owner, |ns| ns.retain(|n| n != number))
            .await
    }

    async fn update_numbers(
        &self,
        id: &TenantId,
        change: impl FnOnce(&mut Vec<Number>),
    ) -> Result<(), AdminError> {
        let (numbers, worker) = {
            let mut live = self.live.lock().expect("live lock");
            let l = live
                .get_mut(id)
                .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
            change(&mut l.row.numbers);
            l.row.numbers.sort();
            (l.row.numbers.clone(), l.worker.clone())
        };
        if let Some(w) = worker {
            w.control(ControlOp::SetNumbers { numbers })
                .await
                .map_err(|e| AdminError::Failed(format!("tenant {id}: {e}")))?;
        }
        Ok(())
    }

    /// `tenant trunk` and `tenant trunk-auth`: changes who may call on the
    /// tenant's trunk port, stored and applied to the running worker at
    /// once. Returns whether it changed.
    pub async fn set_trunk(
        &self,
        id: &TenantId,
        change: impl FnOnce(&mut TrunkPolicy),
    ) -> Result<bool, AdminError> {
        let (worker, trunk) = {
            let live = self.live.lock().expect("live lock");
            let l = live
                .get(id)
                .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
            let mut trunk = l.row.trunk.clone();
            change(&mut trunk);
            if l.row.trunk == trunk {
                return Ok(false);
            }
            (l.worker.clone(), trunk)
        };
        self.registry
            .lock()
            .expect("registry lock")
            .set_trunk(id, &trunk)
            .map_err(AdminError::from_registry)?;
        if let Some(l) = self.live.lock().expect("live lock").get_mut(id) {
            l.row.trunk = trunk.clone();
        }
        if let Some(w) = worker {
            w.control(ControlOp::SetTrunk { trunk })
                .await
                .map_err(|e| AdminError::Failed(format!("tenant {id}: {e}")))?;
        }
        Ok(true)
    }

    /// `tenant tls`: the worker checks the certificate and key, keeps them
    /// in the tenant's encrypted store and serves HTTPS from its next
    /// connection; the registry keeps only the fingerprint it answers with.
    pub async fn set_tls(
        &self,
        id: &TenantId,
        pem: Option<bulkhead_shared::tls::TlsPem>,
    ) -> Result<TenantView, AdminError> {
        if let Some(p) = &pem {
            p.check()
                .map_err(|e| AdminError::BadRequest(format!("tenant {id}: {e}")))?;
        }
        let worker = self.running_worker(id)?;
        let data = worker
            .ask(ControlOp::SetTls { tls: pem })
            .await
            .map_err(|e| AdminError::BadRequest(format!("tenant {id}: {e}")))?;
        // Untrusted: a fingerprint is 64 hex digits or null.
        let fingerprint = match data.as_ref().map(|d| &d["fingerprint"]) {
            Some(serde_json::Value::String(f))
                if f.len() == 64 && f.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Some(f.clone())
            }
            Some(serde_json::Value::Null) => None,
            _ => {
                return Err(AdminError::Failed(format!(
                    "tenant {id}: the worker answered without a valid certificate fingerprint"
                )))
            }
        };
        self.registry
            .lock()
            .expect("registry lock")
            .set_tls(id, fingerprint.as_deref())
            .map_err(AdminError::from_registry)?;
        if let Some(l) = self.live.lock().expect("live lock").get_mut(id) {
            l.row.tls_fingerprint = fingerprint;
        }
        self.view(id)
    }

    pub fn view(&self, id: &TenantId) -> Result<TenantView, AdminError> {
        let live = self.live.lock().expect("live lock");
        let l = live
            .get(id)
            .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
        Ok(view_of(
            l,
            self.router.admission.counts(id),
            &self.cfg.limits,
        ))
    }

    /// Records an admin action in the history. A failure to record is
    /// logged, not fatal: the action itself has already happened.
    pub fn record(&self, peer_uid: u32, action: &str, target: &str, result: &str) {
        let recorded = self
            .registry
            .lock()
            .expect("registry lock")
            .record(peer_uid, action, target, result);
        if let Err(e) = recorded {
            tracing::error!(action, target, error = %e, "could not record an admin action in the history");
        }
    }

    /// The history and the head file's record of its last entry.
    #[allow(clippy::type_complexity)]
    pub fn history(
        &self,
    ) -> Result<(Vec<crate::history::Event>, Option<(i64, String)>), AdminError> {
        let registry = self.registry.lock().expect("registry lock");
        let events = registry.history().map_err(AdminError::from_registry)?;
        Ok((events, registry.history_head()))
    }

    pub fn views(&self) -> Vec<TenantView> {
        let live = self.live.lock().expect("live lock");
        let mut v: Vec<TenantView> = live
            .values()
            .map(|l| view_of(l, self.router.admission.counts(&l.row.id), &self.cfg.limits))
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// The tenant's effective limits (the configured ones for an unknown tenant).
    pub(super) fn limits_of(&self, id: &TenantId) -> Limits {
        self.live
            .lock()
            .expect("live lock")
            .get(id)
            .and_then(|l| l.row.limits.over(&self.cfg.limits).ok())
            .unwrap_or_else(|| self.cfg.limits.clone())
    }

    pub fn numbers_of(&self, id: &TenantId) -> Option<Vec<Number>> {
        self.live
            .lock()
            .expect("live lock")
            .get(id)
            .map(|l| l.row.numbers.clone())
    }

    /// Stops every worker (supervisor shutdown), then removes the tenants'
    /// cgroups and this supervisor's directory of them; a group something
    /// is still in stays, for the next start's `kill_leftovers`.
    pub async fn stop_all(&self) {
        let ids = self.ids();
        self.stop_workers(&ids).await;
        let Some(cg) = &self.cgroups else { return };
        for id in &ids {
            self.remove_cgroups(id).await;
        }
        if let Err(e) = cg.remove_instance() {
            tracing::warn!(error = %e, "could not remove this supervisor's cgroup directory");
        }
    }

    /// Removes `id`'s cgroups, once its processes are gone: the reaper
    /// leaves a moment after the worker, so this retries for half a second.
    async fn remove_cgroups(&self, id: &TenantId) {
        let Some(cg) = &self.cgroups else { return };
        let mut result = cg.remove(id.as_str());
        for _ in 0..50 {
            if result.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            result = cg.remove(id.as_str());
        }
        if let Err(e) = result {
            tracing::warn!(tenant = %id, error = %e, "could not remove the tenant's cgroup");
        }
    }
}

fn view_of(l: &Live, calls: GateCounts, base: &Limits) -> TenantView {
    TenantView {
        id: l.row.id.to_string(),
        state: l.state.as_str().into(),
        pid: l.pid,
        uid: l.row.uid,
        sip_port: l.row.sip_port,
        http_port: l.row.http_port,
        numbers: l.row.numbers.iter().map(|n| n.to_string()).collect(),
        restarts: l.restarts,
        uptime_s: l.started.map(|s| s.elapsed().as_secs()),
        key_version: l.row.key_version,
        last_failure: l.last_failure.clone(),
        active_calls: calls.active,
        calls_admitted: calls.admitted,
        calls_refused: calls.refused,
        limits: l.row.limits.over(base).ok(),
        trunk_allow: l.row.trunk.allow.iter().map(|c| c.to_string()).collect(),
        trunk_auth_username: l.row.trunk.auth.as_ref().map(|a| a.username.clone()),
        tls_fingerprint: l.row.tls_fingerprint.clone(),
    }
}

fn dedup(mut numbers: Vec<Number>) -> Vec<Number> {
    numbers.sort();
    numbers.dedup();
    numbers
}

fn io_err(e: std::io::Error) -> AdminError {
    AdminError::Failed(e.to_string())
}

fn describe_status(
    status: Result<std::io::Result<std::process::ExitStatus>, tokio::task::JoinError>,
) -> String {
    match status {
        Ok(Ok(s)) => format!("exit status {s}"),
        Ok(Err(e)) => format!("wait failed: {e}"),
        Err(e) => format!("wait task failed: {e}"),
    }
}
