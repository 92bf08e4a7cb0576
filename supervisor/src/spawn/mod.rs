//! Starting one worker: make its socketpair ([`worker_socketpair`]), have
//! the spawn server ([`server`]) clone and exec the supervisor's own copy
//! of `bulkhead-worker` under the tenant's uid with the
//! [`SandboxPlan`](crate::sandbox::SandboxPlan) steps. The caller may send
//! the bootstrap frame before the spawn: it waits in the socketpair and the
//! worker reads it as it starts. The worker's stderr is a pipe of its own,
//! relayed into the supervisor's log by [`stderr`].
//!
//! The spawn server is started by the [`Spawner`] thread, which lives as
//! long as the supervisor: `PR_SET_PDEATHSIG` fires when the *thread* that
//! forked exits, and both the server and (through `CLONE_PARENT`) every
//! reaper count that thread as their parent. tokio's blocking-pool threads
//! would not do.

pub mod child;
mod fork;
mod fresh_ns;
pub mod server;
pub mod stderr;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc as std_mpsc;

use bulkhead_shared::ipc::fds::{recv_packet, send_packet};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

pub use child::Child;
use server::Reply;

use crate::sandbox::{Layers, StepError};

/// The descriptor the worker finds its socketpair on.
pub const LINK_FD: i32 = 3;

/// Room on the supervisor's side of a socketpair for a burst of new calls
/// while the worker is busy: the router never waits on a worker and answers
/// 503 when the socketpair is full. At the kernel's default (208 KiB) the
/// first of three bench rounds of 200 calls offered at once lost 167 of
/// 2,000 to those 503s. The memory is only used while a worker lags, and
/// only by its own queue.
const SEND_BUFFER: usize = 1 << 20;

/// A close-on-exec `SOCK_SEQPACKET` socketpair: one frame per packet, to
/// a worker or to the spawn server.
fn seqpacket_pair() -> nix::Result<(OwnedFd, OwnedFd)> {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
}

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
    #[error("failed to create the worker's stderr pipe: {0} (out of descriptors? see the open-files limit)")]
    StderrPipe(std::io::Error),
    #[error("the spawner thread is gone")]
    SpawnerGone,
    #[error("the spawn server failed: {0} (the next start runs a new one)")]
    Server(String),
}

/// Who the worker runs as, and where.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// The worker binary, in `state_dir/bin`.
    pub bin: PathBuf,
    pub uid: u32,
    pub gid: u32,
    pub data_dir: PathBuf,
    /// An empty directory to mount the worker's root on.
    pub root_mount: PathBuf,
    /// Files the worker writes `0` to, to join its cgroups, before it forks
    /// into its pid namespace ([`crate::cgroup::Cgroups::prepare`]).
    pub cgroup_join: Vec<PathBuf>,
    /// Threads and processes the tenant's uid may have (RLIMIT_NPROC).
    pub tasks: u64,
    /// Private writable memory the worker may map (RLIMIT_DATA).
    pub data_bytes: u64,
    /// The layers to apply; `None` when the supervisor itself is not root:
    /// workers then keep its uid and its namespaces.
    pub isolation: Option<Layers>,
}

/// A started worker: the supervisor's child (the reaper, when isolated)
/// and the worker's own pid as the host sees it.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub worker_pid: u32,
}

/// The worker's end of its socketpair, for [`Spawner::spawn`].
#[derive(Debug)]
pub struct WorkerEnd(OwnedFd);

/// A new worker's socketpair: the supervisor's end (with room for bursts,
/// see [`SEND_BUFFER`]) and the end the worker finds on [`LINK_FD`].
pub fn worker_socketpair() -> Result<(OwnedFd, WorkerEnd), SpawnError> {
    let (ours, theirs) = seqpacket_pair().map_err(SpawnError::Socketpair)?;
    widen_send_buffer(&ours);
    Ok((ours, WorkerEnd(theirs)))
}

/// A spec, the worker's end of its socketpair, the write end of its
/// stderr pipe, and where to answer.
type Request = (
    WorkerSpec,
    WorkerEnd,
    OwnedFd,
    oneshot::Sender<Result<Spawned, SpawnError>>,
);

/// The spawner thread, and through it the spawn server. A spawn blocks
/// the thread until the worker's `exec` (clone, joining the cgroups, the
/// sandbox steps); the server makes one worker at a time, so one thread
/// suffices.
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
                let mut server: Option<Server> = None;
                while let Ok((spec, link, stderr, reply)) = rx.recv() {
                    let _ = reply.send(spawn(&mut server, &spec, link, stderr));
                }
            })
            .expect("spawn the spawner thread");
        Self { tx }
    }

    /// Starts a worker for `tenant` on `link`, whose stderr (and its
    /// sandbox steps') is relayed into the log under that name from here
    /// on, whether or not the start succeeds.
    pub async fn spawn(
        &self,
        spec: WorkerSpec,
        tenant: &str,
        link: WorkerEnd,
    ) -> Result<Spawned, SpawnError> {
        let (read, write) = stderr::pipe().map_err(SpawnError::StderrPipe)?;
        tokio::spawn(stderr::relay(read, tenant.to_owned()));
        let (reply, wait) = oneshot::channel();
        self.tx
            .send((spec, link, write, reply))
            .map_err(|_| SpawnError::SpawnerGone)?;
        wait.await.map_err(|_| SpawnError::SpawnerGone)?
    }
}

/// One spawn through the server, starting a server first when there is
/// none (or the last one failed). A request the server never received is
/// sent once more to a new server; one it received is not, since the
/// worker may exist. `stderr` becomes the worker's fd 2.
fn spawn(
    server: &mut Option<Server>,
    spec: &WorkerSpec,
    WorkerEnd(theirs): WorkerEnd,
    stderr: OwnedFd,
) -> Result<Spawned, SpawnError> {
    let request = serde_json::to_vec(spec).map_err(|e| SpawnError::Server(e.to_string()))?;
    let mut attempts = 0;
    let reply = loop {
        attempts += 1;
        if server.is_none() {
            *server =
                Some(Server::start().map_err(|e| SpawnError::Server(format!("starting it: {e}")))?);
        }
        let s = server.as_ref().expect("just started");
        if let Err(e) = send_packet(s.sock.as_fd(), &request, &[theirs.as_fd(), stderr.as_fd()]) {
            *server = None;
            if attempts < 2 {
                continue;
            }
            return Err(SpawnError::Server(format!("sending a request: {e}")));
        }
        match receive_reply(s.sock.as_fd()) {
            Ok(reply) => break reply,
            Err(e) => {
                *server = None;
                return Err(SpawnError::Server(e));
            }
        }
    };
    drop((theirs, stderr));
    match reply {
        Reply::Started { pid } => started(spec, Child::adopt(pid)),
        Reply::Failed { pid, code, message } => {
            if let Some(pid) = pid {
                let mut child = Child::adopt(pid);
                let _ = child.kill();
                let _ = child.wait();
            }
            let source = match message {
                Some(m) => std::io::Error::other(m),
                None => std::io::Error::from_raw_os_error(code),
            };
            let steps = crate::sandbox::steps_for(spec.isolation, !spec.cgroup_join.is_empty());
            Err(match StepError::decode(&source, &steps) {
                Some(step) => SpawnError::Sandbox {
                    bin: spec.bin.clone(),
                    source: step,
                },
                None => SpawnError::Exec {
                    bin: spec.bin.clone(),
                    source,
                },
            })
        }
    }
}

/// The worker exec'd: find its pid (the reaper's one child when isolated).
fn started(spec: &WorkerSpec, mut child: Child) -> Result<Spawned, SpawnError> {
    let worker_pid = if spec.isolation.is_some() {
        reaped_child(child.id())
    } else {
        Some(child.id())
    };
    let Some(worker_pid) = worker_pid else {
        let _ = child.kill();
        let _ = child.wait();
        return Err(SpawnError::Exec {
            bin: spec.bin.clone(),
            source: std::io::Error::other("the worker did not start"),
        });
    };
    Ok(Spawned { child, worker_pid })
}

/// How long a start may take from request to exec. A start takes a few
/// milliseconds; a minute allows for a machine under heavy load.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The spawn server process and the supervisor's end of its socket.
#[derive(Debug)]
struct Server {
    sock: OwnedFd,
    process: std::process::Child,
}

impl Server {
    /// Execs this very binary (`/proc/self/exe`, even if the file was
    /// replaced since) as the spawn server, its socket on fd 3.
    fn start() -> std::io::Result<Self> {
        let (ours, theirs) = seqpacket_pair()?;
        let fd = theirs.as_raw_fd();
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0("bulkhead")
            .arg(server::ARG)
            .arg(std::process::id().to_string())
            .stdin(Stdio::null());
        // SAFETY: place_link makes one dup2 or fcntl on a descriptor
        // prepared before the fork; async-signal-safe, no allocation.
        unsafe {
            cmd.pre_exec(move || crate::sandbox::place_link(fd));
        }
        let process = cmd.spawn()?;
        drop(theirs);
        // A start stuck before its exec (a hung mount, say) must not hold
        // every later start: past this, the server is replaced.
        nix::sys::socket::setsockopt(
            &ours,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(REPLY_TIMEOUT.as_secs() as i64, 0),
        )?;
        Ok(Self {
            sock: ours,
            process,
        })
    }
}

/// One reply from the server on `sock` (which carries the receive timeout).
fn receive_reply(sock: std::os::fd::BorrowedFd<'_>) -> Result<Reply, String> {
    let mut buf = [0u8; 4096];
    match recv_packet(sock, &mut buf) {
        Ok(Some(r)) => {
            serde_json::from_slice(&buf[..r.len]).map_err(|e| format!("a malformed reply: {e}"))
        }
        Ok(None) => Err("it exited".into()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Err(format!(
            "no answer within {REPLY_TIMEOUT:?} (a start stuck before its exec?)"
        )),
        Err(e) => Err(format!("reading its reply: {e}")),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
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
    fn a_silent_spawn_server_is_a_timeout_not_a_hang() {
        let (ours, server) = seqpacket_pair().unwrap();
        nix::sys::socket::setsockopt(
            &ours,
            nix::sys::socket::sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(0, 100_000),
        )
        .unwrap();
        let err = receive_reply(ours.as_fd()).unwrap_err();
        assert!(err.contains("no answer within"), "{err}");
        drop(server);
        let err = receive_reply(ours.as_fd()).unwrap_err();
        assert_eq!(err, "it exited");
    }

    #[test]
    fn a_worker_socketpair_gets_the_wider_send_buffer() {
        let (ours, _theirs) = seqpacket_pair().unwrap();
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
