//! Starting one worker: make its socketpair, fork/exec the supervisor's own
//! copy of `bulkhead-worker` under the tenant's uid with the
//! [`SandboxPlan`](crate::sandbox::SandboxPlan) steps, and send it the
//! bootstrap frame with its sockets.
//!
//! Spawning happens on dedicated threads ([`Spawner`]): `PR_SET_PDEATHSIG`
//! fires when the *thread* that forked exits, so a forking thread must live
//! as long as the supervisor; tokio's blocking-pool threads do not.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use tokio::sync::oneshot;

use crate::sandbox::namespaces::UserMaps;
use crate::sandbox::{rootfs, Identity, Isolation, Layers, RootFs, SandboxPlan, StepError};

/// The descriptor the worker finds its socketpair on.
pub const LINK_FD: i32 = 3;

/// Room on the supervisor's side of a socketpair for a burst of new calls
/// while the worker is busy: the router never waits on a worker and answers
/// 503 when the socketpair is full. At the kernel's default (208 KiB) the
/// first of three bench rounds of 200 calls offered at once lost 167 of
/// 2,000 to those 503s. The memory is only used while a worker lags, and
/// only by its own queue.
const SEND_BUFFER: usize = 1 << 20;

/// Sets [`SEND_BUFFER`]: forced past `wmem_max` as root, else as far as
/// `wmem_max` allows; the default buffer still works, so failure is logged.
fn widen_send_buffer(fd: &OwnedFd) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(fd, sockopt::SndBufForce, &SEND_BUFFER).is_err() {
        if let Err(e) = setsockopt(fd, sockopt::SndBuf, &SEND_BUFFER) {
            tracing::debug!(error = %e, "could not widen a worker socketpair's send buffer");
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("failed to create the socketpair: {0}")]
    Socketpair(nix::Error),
    #[error("failed to start worker {bin}: {source}")]
    Exec {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to start worker {bin}: {source}")]
    Sandbox {
        bin: PathBuf,
        #[source]
        source: crate::sandbox::StepError,
    },
    #[error("the spawner thread is gone")]
    SpawnerGone,
}

/// Who the worker runs as, and where.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    /// The worker binary, in `state_dir/bin`.
    pub bin: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub data_dir: PathBuf,
    /// An empty directory to mount the worker's root on.
    pub root_mount: PathBuf,
    /// `cgroup.procs` files the worker joins (writes `0` to) before it forks
    /// into its pid namespace.
    pub cgroup_procs: Vec<PathBuf>,
    /// Threads and processes the tenant's uid may have (RLIMIT_NPROC).
    pub tasks: u64,
    /// Private writable memory the worker may map (RLIMIT_DATA).
    pub data_bytes: u64,
    /// The layers to apply; `None` when the supervisor itself is not root:
    /// workers then keep its uid and its namespaces.
    pub isolation: Option<Layers>,
}

/// A started worker: the process the supervisor forked (the reaper, when
/// isolated), the worker's own pid as the host sees it, and the supervisor's
/// end of the socketpair.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub worker_pid: u32,
    pub link: OwnedFd,
}

type Request = (WorkerSpec, oneshot::Sender<Result<Spawned, SpawnError>>);

/// Spawner threads. A spawn blocks its thread until the worker's `exec`
/// (fork, joining the cgroups, the sandbox steps: about 20 ms here, 12 of
/// them the first `cgroup.procs` write of a cgroup v1 migration). Several
/// threads let several tenants start at once (`apply`).
const SPAWNER_THREADS: usize = 4;

/// Handle to the spawner threads.
#[derive(Debug, Clone)]
pub struct Spawner {
    tx: std_mpsc::Sender<Request>,
}

impl Spawner {
    pub fn start() -> Self {
        let (tx, rx) = std_mpsc::channel::<Request>();
        let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
        for i in 0..SPAWNER_THREADS {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("spawner-{i}"))
                .spawn(move || loop {
                    // The lock is held only while waiting for the next request.
                    let next = rx.lock().expect("spawner queue lock").recv();
                    let Ok((spec, reply)) = next else { return };
                    let _ = reply.send(spawn(&spec));
                })
                .expect("spawn a spawner thread");
        }
        Self { tx }
    }

    pub async fn spawn(&self, spec: WorkerSpec) -> Result<Spawned, SpawnError> {
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((spec, reply))
            .map_err(|_| SpawnError::SpawnerGone)?;
        wait.await.map_err(|_| SpawnError::SpawnerGone)?
    }
}

fn spawn(spec: &WorkerSpec) -> Result<Spawned, SpawnError> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(SpawnError::Socketpair)?;
    widen_send_buffer(&ours);
    let me = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    let isolation = spec.isolation.map(|layers| Isolation {
        user_maps: UserMaps::root_as(me.0, me.1),
        identity: Identity {
            uid: spec.uid,
            gid: spec.gid,
        },
        rootfs: RootFs::plan(
            &spec.root_mount,
            &spec.data_dir,
            spec.bin.parent().unwrap_or(Path::new("/")),
        ),
        layers,
    });
    // Inside its own root the worker binary has another path.
    let program = if spec.isolation.is_some_and(|l| l.namespaces) {
        PathBuf::from(rootfs::WORKER_BIN)
    } else {
        spec.bin.clone()
    };
    let plan = SandboxPlan::new(
        theirs.as_fd().as_raw_fd(),
        isolation,
        &spec.cgroup_procs,
        (spec.tasks, spec.data_bytes),
    );
    let mut cmd = Command::new(&program);
    cmd.env_clear()
        .current_dir(Path::new("/"))
        .stdin(Stdio::null());
    let steps = plan.steps().to_vec();
    // SAFETY: run_in_child makes only async-signal-safe syscalls and
    // allocates nothing (see sandbox/mod.rs).
    unsafe {
        cmd.pre_exec(move || plan.run_in_child());
    }
    let child = cmd
        .spawn()
        .map_err(|source| match StepError::decode(&source, &steps) {
            Some(step) => SpawnError::Sandbox {
                bin: spec.bin.clone(),
                source: step,
            },
            None => SpawnError::Exec {
                bin: spec.bin.clone(),
                source,
            },
        })?;
    drop(theirs);
    let worker_pid = if spec.isolation.is_some() {
        reaped_child(child.id())
    } else {
        Some(child.id())
    };
    let Some(worker_pid) = worker_pid else {
        let mut child = child;
        let _ = child.kill();
        let _ = child.wait();
        return Err(SpawnError::Exec {
            bin: spec.bin.clone(),
            source: std::io::Error::other("the worker did not start"),
        });
    };
    Ok(Spawned {
        child,
        worker_pid,
        link: ours,
    })
}

/// The one child of the reaper `pid`: the worker, as the host numbers it.
fn reaped_child(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{getsockopt, sockopt};

    #[test]
    fn a_worker_socketpair_gets_the_wider_send_buffer() {
        let (ours, _theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let before = getsockopt(&ours, sockopt::SndBuf).unwrap();
        widen_send_buffer(&ours);
        let after = getsockopt(&ours, sockopt::SndBuf).unwrap();
        // The kernel reports twice what was set (its bookkeeping share);
        // without root it is capped at wmem_max.
        let cap = std::fs::read_to_string("/proc/sys/net/core/wmem_max").map_or(usize::MAX, |s| {
            s.trim().parse::<usize>().unwrap_or(usize::MAX)
        });
        let want = if nix::unistd::geteuid().is_root() {
            SEND_BUFFER
        } else {
            SEND_BUFFER.min(cap)
        };
        assert!(after >= want && after > before, "{before} -> {after}");
    }
}
