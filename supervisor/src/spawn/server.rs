//! The spawn server: a small process, the supervisor's own binary exec'd
//! with [`ARG`], that makes every worker process.
//!
//! Why not fork the supervisor itself: its fork copies the page tables of
//! a process holding every tenant's state and five descriptors per tenant,
//! and each reaper then kept a copy-on-write snapshot of the supervisor, so
//! the supervisor paid page copies on its own writes for as long as the
//! reapers lived. A profile of `apply` of 1,000 tenants put the forks at a
//! quarter of the CPU and those copies at another 6%. This process holds
//! nothing but its socket to the supervisor, so its forks are cheap and its
//! reapers share nothing worth copying.
//!
//! Protocol, over a `SOCK_SEQPACKET` socketpair on fd 3: the supervisor sends
//! a [`WorkerSpec`] as JSON with two descriptors attached, the worker's end
//! of its socketpair and the write end of its stderr pipe; the server
//! answers one [`Reply`]. One request at a time.
//!
//! The worker's first process is cloned with `CLONE_PARENT`, so it is the
//! supervisor's child (see [`super::child`]): its parent-death signal and
//! its exit status belong to the supervisor, not to this process.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use bulkhead_shared::ipc::fds::{recv_packet, send_packet};
use serde::{Deserialize, Serialize};

use super::fresh_ns::{FreshNamespaces, Pool};
use super::{WorkerSpec, LINK_FD};
use crate::sandbox::namespaces::UserMaps;
use crate::sandbox::{rootfs, Identity, Isolation, RootFs, SandboxPlan};

/// The first argument that turns `bulkhead` into the spawn server; the
/// second is the supervisor's pid.
pub const ARG: &str = "__bulkhead-spawn-server";

/// Where the server finds its socket: the worker's fd, placed the same way
/// ([`crate::sandbox::place_link`]).
pub const SERVER_FD: i32 = LINK_FD;

/// Largest request: a spec is a few hundred bytes of paths and numbers.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// The worker exec'd; `pid` is the supervisor's new child.
    Started { pid: u32 },
    /// `code`: the errno the child reported (a sandbox step's, encoded as
    /// `StepError` does, or exec's), or 0 with `message` when the server
    /// could not even try. `pid`: a child that exists and must be reaped.
    Failed {
        pid: Option<u32>,
        code: i32,
        message: Option<String>,
    },
}

/// The server's `main`: `args` are the process's arguments after [`ARG`].
pub fn main(args: &[OsString]) -> ExitCode {
    let supervisor: Option<i32> = args.first().and_then(|a| a.to_str()?.parse().ok());
    let Some(supervisor) = supervisor else {
        eprintln!("bulkhead: {ARG} is started by `bulkhead serve` only");
        return ExitCode::from(2);
    };
    if let Err(e) = die_with(supervisor) {
        eprintln!("bulkhead spawn server: {e}");
        return ExitCode::FAILURE;
    }
    // Nothing but stdio and the socket: whatever else the supervisor's own
    // parent left open without close-on-exec is none of ours to pass on.
    // SAFETY: close_range on descriptors this process does not use.
    unsafe { libc::close_range(SERVER_FD as u32 + 1, u32::MAX, 0) };
    // Every child's parent (CLONE_PARENT): each checks it is still alive
    // once its parent-death signal is set (sandbox step 7).
    let supervisor_fd = match crate::sandbox::pidfd_open(supervisor) {
        // SAFETY: pidfd_open just returned this descriptor; nothing else owns it.
        Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
        Err(e) => {
            eprintln!("bulkhead spawn server: pidfd_open of the supervisor: {e}");
            return ExitCode::FAILURE;
        }
    };
    // SAFETY: the supervisor placed our socket on SERVER_FD before exec, and
    // nothing else in this fresh process owns that descriptor.
    let sock = unsafe { OwnedFd::from_raw_fd(SERVER_FD) };
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut fresh = Pool::new();
    refill(&mut fresh);
    loop {
        let received = match recv_packet(sock.as_fd(), &mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => return ExitCode::SUCCESS, // the supervisor is done
            Err(e) => {
                eprintln!("bulkhead spawn server: reading a request: {e}");
                return ExitCode::FAILURE;
            }
        };
        let spec = serde_json::from_slice::<WorkerSpec>(&buf[..received.len]);
        let mut fds = received.fds.into_iter();
        let reply = match (spec, fds.next(), fds.next()) {
            (Ok(spec), Some(link), Some(stderr)) => start(
                &spec,
                link,
                &stderr,
                supervisor_fd.as_raw_fd(),
                fresh.take(),
            ),
            (spec, _, _) => Reply::Failed {
                pid: None,
                code: 0,
                message: Some(format!(
                    "malformed spawn request ({})",
                    spec.err()
                        .map_or("a socketpair and a pipe must be attached".into(), |e| e
                            .to_string())
                )),
            },
        };
        let frame = serde_json::to_vec(&reply).expect("a reply serializes");
        if let Err(e) = send_packet(sock.as_fd(), &frame, &[]) {
            eprintln!("bulkhead spawn server: answering: {e}");
            return ExitCode::FAILURE;
        }
        // While the worker boots, not on its start's path.
        refill(&mut fresh);
    }
}

/// Makes the next start's namespaces; a failure is said once, and every
/// later start unshares its own.
fn refill(pool: &mut Pool) {
    if let Err(e) = pool.refill() {
        eprintln!("bulkhead spawn server: namespaces made ahead are off: {e}");
    }
}

/// Dies with the supervisor (the thread that started us), and makes sure it
/// has not died already.
fn die_with(supervisor: i32) -> io::Result<()> {
    // Exec'd as /proc/self/exe, the kernel would call us "exe" in `ps`.
    // SAFETY: prctl with a static C string, then with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"bulkhead-spawn".as_ptr(), 0, 0, 0) };
    // SAFETY: prctl with integer arguments only.
    let set = unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if set == -1 {
        return Err(io::Error::last_os_error());
    }
    if nix::unistd::getppid().as_raw() != supervisor {
        return Err(io::Error::other(
            "the supervisor exited before the spawn server started",
        ));
    }
    Ok(())
}

/// Makes one worker: the plan for `spec`, then clone, sandbox and exec.
/// `link` (the worker's end of its socketpair) closes here afterwards, and
/// so does `stderr` (the worker's fd 2); `supervisor_fd` is a pidfd of
/// the supervisor, the child's parent. `fresh`: namespaces made for this
/// start, closed here once the child entered them (or failed).
fn start(
    spec: &WorkerSpec,
    link: OwnedFd,
    stderr: &OwnedFd,
    supervisor_fd: RawFd,
    fresh: Option<FreshNamespaces>,
) -> Reply {
    let (mut plan, program) = plan(spec, &link, supervisor_fd);
    plan.premade = fresh.as_ref().map(FreshNamespaces::raw);
    let program = match CString::new(program.as_os_str().as_bytes()) {
        Ok(p) => p,
        Err(_) => {
            return Reply::Failed {
                pid: None,
                code: 0,
                message: Some(format!("worker path {} holds a NUL", program.display())),
            }
        }
    };
    match super::fork::clone_and_exec(&plan, &program, stderr.as_raw_fd()) {
        Ok(pid) => Reply::Started { pid },
        Err(failure) => Reply::Failed {
            pid: failure.pid,
            code: failure.code,
            message: failure.message,
        },
    }
}

/// The sandbox plan for `spec` with the socketpair `link`, and the path to
/// exec (inside its own root the worker binary has another path).
fn plan(spec: &WorkerSpec, link: &OwnedFd, supervisor_fd: RawFd) -> (SandboxPlan, PathBuf) {
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
    let program = if spec.isolation.is_some_and(|l| l.namespaces) {
        PathBuf::from(rootfs::WORKER_BIN)
    } else {
        spec.bin.clone()
    };
    debug_assert_ne!(link.as_raw_fd(), LINK_FD, "fd 3 is the server's own socket");
    let plan = SandboxPlan::new(
        link.as_raw_fd(),
        isolation,
        &spec.cgroup_join,
        (spec.tasks, spec.data_bytes),
        supervisor_fd,
    );
    (plan, program)
}
