//! Starting one worker: make its socketpair, fork/exec the supervisor's own
//! copy of `bulkhead-worker` under the tenant's uid with the
//! [`SandboxPlan`](crate::sandbox::SandboxPlan) steps, and send it the
//! bootstrap frame with its sockets.
//!
//! Spawning happens on one dedicated thread ([`Spawner`]): `PR_SET_PDEATHSIG`
//! fires when the *thread* that forked exits, so the forking thread must live
//! as long as the supervisor; tokio's blocking-pool threads do not.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc as std_mpsc;

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use tokio::sync::oneshot;

use crate::sandbox::{Identity, SandboxPlan};

/// The descriptor the worker finds its socketpair on.
pub const LINK_FD: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("failed to create the socketpair: {0}")]
    Socketpair(nix::Error),
    #[error("failed to start worker {bin}: {source}")]
    Exec {
        bin: PathBuf,
        source: std::io::Error,
    },
    #[error("the spawner thread is gone")]
    SpawnerGone,
}

/// Who the worker runs as, and where.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub bin: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub data_dir: PathBuf,
    /// False when the supervisor itself is not root: workers then keep its uid.
    pub switch_user: bool,
}

/// A started worker: its process and the supervisor's end of the socketpair.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub link: OwnedFd,
}

type Request = (WorkerSpec, oneshot::Sender<Result<Spawned, SpawnError>>);

/// Handle to the spawner thread.
#[derive(Debug, Clone)]
pub struct Spawner {
    tx: std_mpsc::Sender<Request>,
}

impl Spawner {
    pub fn start() -> Self {
        let (tx, rx) = std_mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("spawner".into())
            .spawn(move || {
                for (spec, reply) in rx {
                    let _ = reply.send(spawn(&spec));
                }
            })
            .expect("spawn the spawner thread");
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
    let identity = spec.switch_user.then_some(Identity {
        uid: spec.uid,
        gid: spec.gid,
    });
    let plan = SandboxPlan::new(theirs.as_fd().as_raw_fd(), identity);
    let mut cmd = Command::new(&spec.bin);
    cmd.env_clear()
        .current_dir(Path::new("/"))
        .stdin(Stdio::null());
    // SAFETY: run_in_child makes only async-signal-safe syscalls and
    // allocates nothing (see sandbox/mod.rs).
    unsafe {
        cmd.pre_exec(move || plan.run_in_child());
    }
    let child = cmd.spawn().map_err(|source| SpawnError::Exec {
        bin: spec.bin.clone(),
        source,
    })?;
    drop(theirs);
    Ok(Spawned { child, link: ours })
}
