//! `bulkhead audit`: isolation evidence per tenant. For each tenant it reads
//! the live state of every layer of its running worker from `/proc`, then
//! runs the escape probes in probe workers started through the same spawn
//! path and sandbox: once with every layer on (the verdict), once with only
//! one layer on for each layer (which layers stop a probe on their own:
//! `stopped_by`), and once with every layer off (proof that each probe can
//! escape at all, so a `denied` means something).

use std::net::{TcpListener, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_shared::ipc::message::{Bootstrap, DATA_KEY_LEN};
use bulkhead_shared::ipc::probe::{ProbeOutcome, ProbeReport, ProbeSpec, ProbeTargets, LAYERS};
use bulkhead_shared::ipc::{FromWorker, Link, WorkerConfig, MAX_FRAME};
use bulkhead_shared::TenantId;
use serde::{Deserialize, Serialize};

use super::{AdminError, Tenants};
use crate::ports::TenantSockets;
use crate::sandbox::{rootfs, verify, Layers};
use crate::spawn::WorkerSpec;

/// How long one probe run may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// `audit --json` (INTERFACES.md), plus `without_layers` per probe.
#[derive(Debug, Serialize, Deserialize)]
pub struct AuditReport {
    pub tenants: Vec<TenantAudit>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TenantAudit {
    pub id: String,
    pub layers: Vec<LayerState>,
    pub probes: Vec<ProbeVerdict>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LayerState {
    pub name: String,
    pub active: bool,
    pub detail: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ProbeVerdict {
    pub name: String,
    pub target: String,
    /// `denied` or `escaped`, with every layer on.
    pub outcome: String,
    /// Every layer that denies the probe on its own (the only-one-layer-on runs).
    pub stopped_by: Vec<String>,
    /// The outcome with every layer off: `escaped` shows the probe is real.
    pub without_layers: String,
    pub detail: String,
}

/// Which layers a probe run has on.
#[derive(Debug, Clone, Copy)]
struct Variant {
    sandbox: Layers,
    landlock: bool,
    seccomp: bool,
    cgroups: bool,
}

impl Variant {
    const ALL: Self = Self {
        sandbox: Layers::ALL,
        landlock: true,
        seccomp: true,
        cgroups: true,
    };
    const NONE: Self = Self {
        sandbox: Layers::NONE,
        landlock: false,
        seccomp: false,
        cgroups: false,
    };

    fn only(layer: &str) -> Self {
        let mut v = Self::NONE;
        match layer {
            "credentials" => v.sandbox.credentials = true,
            "namespaces" => v.sandbox.namespaces = true,
            "network" => v.sandbox.network = true,
            "landlock" => v.landlock = true,
            "seccomp" => v.seccomp = true,
            "cgroups" => v.cgroups = true,
            _ => {}
        }
        v
    }
}

/// Audits `only` (one tenant) or every tenant.
pub async fn run(
    tenants: &Arc<Tenants>,
    only: Option<TenantId>,
) -> Result<AuditReport, AdminError> {
    let ids = match only {
        Some(id) => {
            if tenants.audit_facts(&id).is_none() {
                return Err(AdminError::NotFound(format!("no tenant {id}")));
            }
            vec![id]
        }
        None => tenants.ids(),
    };
    let mut report = AuditReport {
        tenants: Vec::new(),
    };
    for id in ids {
        report.tenants.push(audit_tenant(tenants, &id).await?);
    }
    Ok(report)
}

async fn audit_tenant(tenants: &Arc<Tenants>, id: &TenantId) -> Result<TenantAudit, AdminError> {
    let facts = tenants
        .audit_facts(id)
        .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
    let mut layers = live_layers(tenants.is_root, facts.uid, facts.worker.as_ref());
    layers.push(cgroup_layer(
        tenants,
        id,
        facts.worker.as_ref().map(|w| w.0),
    ));
    let other = tenants.other_target(id);
    let targets = ProbeTargets {
        state_dir: tenants.cfg.state_dir.clone(),
        other_data_dir: other.as_ref().map(|o| o.0.clone()),
        other_http_port: other.as_ref().map(|o| o.1),
        other_pid: other.as_ref().map(|o| o.2),
        router_port: tenants.router.local.port(),
        egress: Vec::new(),
        tasks_limit: Some(tenants.limits_of(id).pids),
        memory_limit: tenants.limits_of(id).cgroup().ok().map(|c| c.memory_bytes),
    };
    let run = |v: Variant| {
        probe_run(
            tenants,
            id,
            facts.uid,
            facts.data_dir.clone(),
            targets.clone(),
            v,
        )
    };
    let verdict = run(Variant::ALL).await?;
    let unprotected = run(Variant::NONE).await?;
    let mut only = Vec::new();
    for layer in LAYERS {
        only.push((*layer, run(Variant::only(layer)).await?));
    }
    let probes = verdict
        .outcomes
        .iter()
        .map(|o| {
            let bare = find(&unprotected, &o.name);
            // A probe that fails even with every layer off (say, a kernel
            // without module support) proves nothing about any layer.
            let real = bare.is_some_and(|b| b.escaped);
            let stopped_by = if real {
                only.iter()
                    .filter(|(_, r)| find(r, &o.name).is_some_and(|x| !x.escaped))
                    .map(|(l, _)| l.to_string())
                    .collect()
            } else {
                Vec::new()
            };
            let detail = match bare {
                Some(b) if !b.escaped => format!(
                    "{} (denied even with every layer off: {})",
                    o.detail, b.detail
                ),
                _ => o.detail.clone(),
            };
            ProbeVerdict {
                name: o.name.clone(),
                target: o.target.clone(),
                outcome: word(o.escaped).into(),
                stopped_by,
                without_layers: bare.map_or("not run", |x| word(x.escaped)).into(),
                detail,
            }
        })
        .collect();
    Ok(TenantAudit {
        id: id.to_string(),
        layers,
        probes,
    })
}

fn word(escaped: bool) -> &'static str {
    if escaped {
        "escaped"
    } else {
        "denied"
    }
}

fn find<'a>(r: &'a ProbeReport, name: &str) -> Option<&'a ProbeOutcome> {
    r.outcomes.iter().find(|o| o.name == name)
}

/// The live state of each layer of the running worker, read from outside.
fn live_layers(is_root: bool, uid: u32, worker: Option<&(u32, String)>) -> Vec<LayerState> {
    let state = |name: &str, active: bool, detail: String| LayerState {
        name: name.into(),
        active,
        detail,
    };
    let Some((pid, landlock)) = worker else {
        return LAYERS
            .iter()
            .filter(|l| **l != "cgroups")
            .map(|l| state(l, false, "the worker is not running".into()))
            .collect();
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim_start_matches(':').trim())
            .unwrap_or("")
            .to_string()
    };
    let creds_ok = is_root
        && verify::check_status(
            &status,
            verify::Expected {
                uid,
                gid: uid,
                isolated: true,
            },
        )
        .is_ok();
    let ns = |names: &[&str]| {
        names.iter().all(|n| {
            let mine = std::fs::read_link(format!("/proc/{pid}/ns/{n}")).ok();
            mine.is_some() && mine != std::fs::read_link(format!("/proc/self/ns/{n}")).ok()
        })
    };
    let process_ns = ns(&["mnt", "pid", "ipc", "uts"]);
    let net_ns = ns(&["net"]);
    vec![
        state(
            "credentials",
            creds_ok,
            format!(
                "uid {}; CapEff {}; CapBnd {}",
                field("Uid"),
                field("CapEff"),
                field("CapBnd")
            ),
        ),
        state(
            "namespaces",
            process_ns,
            format!("own mnt/pid/ipc/uts namespaces and minimal root: {process_ns}"),
        ),
        state(
            "network",
            net_ns,
            format!("own network namespace (loopback only): {net_ns}"),
        ),
        state(
            "landlock",
            landlock == "full" || landlock == "partial",
            format!("ruleset enforcement: {landlock}"),
        ),
        state(
            "seccomp",
            field("Seccomp") == "2",
            format!("Seccomp: {}", field("Seccomp")),
        ),
    ]
}

/// Whether the worker sits in its tenant's cgroup (limits: see the config).
fn cgroup_layer(tenants: &Tenants, id: &TenantId, pid: Option<u32>) -> LayerState {
    let (active, detail) = match (&tenants.cgroups, pid) {
        (None, _) => (false, "no cgroups (not root)".to_string()),
        (_, None) => (false, "the worker is not running".to_string()),
        (Some(cg), Some(pid)) => {
            let member = format!("/{}", cg.member_path(id.as_str()));
            let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let inside = text.lines().filter(|l| l.ends_with(&member)).count();
            (
                inside > 0,
                format!(
                    "cgroup {} {member}: {inside} hierarchies; limits {:?}",
                    cg.version(),
                    tenants.limits_of(id)
                ),
            )
        }
    };
    LayerState {
        name: "cgroups".into(),
        active,
        detail,
    }
}

/// `bulkhead egress check`: from inside the tenant's sandbox (every layer
/// on), ask the broker for `host:port` and exchange a line over it.
pub async fn egress_check(
    tenants: &Arc<Tenants>,
    id: &TenantId,
    host: String,
    port: u16,
) -> Result<ProbeOutcome, AdminError> {
    let facts = tenants
        .audit_facts(id)
        .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
    let targets = ProbeTargets {
        state_dir: tenants.cfg.state_dir.clone(),
        other_data_dir: None,
        other_http_port: None,
        other_pid: None,
        router_port: tenants.router.local.port(),
        egress: vec![(host, port)],
        tasks_limit: None,
        memory_limit: None,
    };
    let report = probe_run(
        tenants,
        id,
        facts.uid,
        facts.data_dir,
        targets,
        Variant::ALL,
    )
    .await?;
    report
        .outcomes
        .into_iter()
        .find(|o| o.name == "egress")
        .ok_or_else(|| AdminError::Failed("the probe worker reported no egress attempt".into()))
}

/// Starts one probe worker with `variant`'s layers and returns its report.
async fn probe_run(
    tenants: &Arc<Tenants>,
    id: &TenantId,
    uid: u32,
    data_dir: std::path::PathBuf,
    targets: ProbeTargets,
    variant: Variant,
) -> Result<ProbeReport, AdminError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| {
        AdminError::Failed(format!("audit of {id}: {what}: {e}"))
    };
    let root_mount = tenants
        .root_mount_of(id)
        .map_err(|e| failed("root mount point", &e))?;
    // Its own group with the tenant's limits, so a probe never competes
    // with the live worker for its pids or memory.
    let probe_group = format!("{id}.probe");
    let limits = tenants.limits_of(id);
    let cgroup_join = if variant.cgroups {
        tenants
            .cgroup_join(&probe_group, &limits)
            .map_err(|e| failed("cgroup", &e))?
    } else {
        Vec::new()
    };
    let spec = WorkerSpec {
        cgroup_join,
        tasks: u64::from(limits.pids),
        data_bytes: limits
            .cgroup()
            .map_err(|e| failed("limits", &e))?
            .memory_bytes,
        bin: tenants.worker_bin.clone(),
        uid,
        gid: uid,
        data_dir: data_dir.clone(),
        root_mount,
        isolation: tenants.layers(variant.sandbox),
    };
    let (ours, theirs) = crate::spawn::worker_socketpair().map_err(|e| failed("socketpair", &e))?;
    let spawned = tenants
        .spawner
        .spawn(spec, &id.to_string(), theirs)
        .await
        .map_err(|e| failed("spawn", &e))?;
    let mut child = spawned.child;
    let link = Link::new(ours).map_err(|e| failed("link", &e))?;
    // Sockets of its own, bound to loopback: a probe never sees real traffic.
    let sockets = dummy_sockets().map_err(|e| failed("sockets", &e))?;
    let in_root = tenants
        .layers(variant.sandbox)
        .is_some_and(|l| l.namespaces);
    let config = WorkerConfig {
        tenant_id: id.clone(),
        numbers: Vec::new(),
        advertise: std::net::Ipv4Addr::LOCALHOST.into(),
        router_port: targets.router_port,
        sip_port: 0,
        http_port: 0,
        data_dir: if in_root {
            rootfs::DATA.into()
        } else {
            data_dir
        },
        answer_delay_ms: 0,
        log_filter: "warn".into(),
        agent: serde_json::Value::Null,
        trunk: Default::default(),
        retention_days: 0,
        crash_at: None,
        probe: Some(ProbeSpec {
            landlock: variant.landlock,
            seccomp: variant.seccomp,
            targets,
        }),
    };
    // A probe never opens the store: it gets no key.
    let boot = Bootstrap {
        data_key: [0; DATA_KEY_LEN],
        pending_key: None,
        config,
    };
    let report = async {
        super::worker::send_bootstrap(&link, boot, &sockets)
            .await
            .map_err(|e| failed("bootstrap", &e))?;
        let mut buf = vec![0u8; MAX_FRAME];
        loop {
            match link.recv_from_worker(&mut buf).await {
                Ok(Some(FromWorker::Probe(r))) => return Ok(judge_listeners(r)),
                Ok(Some(FromWorker::RtpOpen { .. } | FromWorker::RtpClose { .. })) => {
                    return Err(failed("probe worker", &"asked for RTP sockets"))
                }
                Ok(Some(FromWorker::Connect { seq, host, port })) => {
                    let result = super::egress::connect(tenants, id, &host, port).await;
                    if let Some((frame, fds)) = super::egress::answer(seq, result) {
                        let fds: Vec<_> = fds.iter().map(AsFd::as_fd).collect();
                        let _ = link.send_packet(&frame, &fds).await;
                    }
                }
                Ok(Some(_)) => continue,
                Ok(None) => return Err(failed("probe worker", &"exited without a report")),
                Err(e) => return Err(failed("probe worker", &e)),
            }
        }
    };
    let result = match tokio::time::timeout(PROBE_TIMEOUT, report).await {
        Ok(r) => r,
        Err(_) => Err(failed("probe worker", &"no report in time")),
    };
    let _ = child.kill();
    let _ = tokio::task::spawn_blocking(move || child.wait()).await;
    // The worker (the reaper's child) dies with the reaper; give it a moment.
    if let Some(cg) = &tenants.cgroups {
        for _ in 0..50 {
            if cg.remove(&probe_group).is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    result
}

/// A listener counts as an escape only if the host can connect to it.
fn judge_listeners(mut r: ProbeReport) -> ProbeReport {
    for o in r.outcomes.iter_mut().filter(|o| o.escaped) {
        let Some(port) = o.port else { continue };
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err() {
            o.escaped = false;
            o.detail = format!("listening on port {port} only inside its own network namespace: unreachable from the host");
        }
    }
    r
}

fn dummy_sockets() -> std::io::Result<TenantSockets> {
    Ok(TenantSockets {
        sip_udp: UdpSocket::bind("127.0.0.1:0")?,
        sip_tcp: TcpListener::bind("127.0.0.1:0")?,
        http: TcpListener::bind("127.0.0.1:0")?,
    })
}
