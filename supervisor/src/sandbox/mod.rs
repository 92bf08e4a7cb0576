//! How a worker process is made: a straight list of steps, each its own
//! function, run in the forked child before `exec` (single-threaded, outside
//! the tokio runtime's reach). docs/sandbox.md lists the same steps in the
//! same order.
//!
//! The foundation runs these steps:
//! 1. sanitize: every inherited descriptor ≥ 4 is marked close-on-exec
//!    (std also clears the environment for us: `env_clear`);
//! 2. place the socketpair on fd 3, the one descriptor the worker inherits;
//! 3. die with the supervisor (`PR_SET_PDEATHSIG`), so no worker outlives it;
//! 4. rlimits: no core dumps (a core file would hold the tenant's data key);
//! 5. `no_new_privs`;
//! 6. own uid and gid, no supplementary groups (done by std's `Command`
//!    right after our steps, so every step above still runs as root).
//!
//! The sandbox issue inserts namespaces, `pivot_root`, cgroups and
//! capability dropping between steps 3 and 6.

use std::io;
use std::os::fd::RawFd;

use crate::spawn::LINK_FD;

/// What one worker's sandbox needs to know.
#[derive(Debug, Clone, Copy)]
pub struct SandboxPlan {
    /// The child's end of the socketpair, as numbered before step 2.
    pub link_fd: RawFd,
}

impl SandboxPlan {
    /// Runs the steps. Called between `fork` and `exec`: it must only make
    /// async-signal-safe calls (raw syscalls, no allocation, no locks).
    pub fn run_in_child(&self) -> io::Result<()> {
        sanitize_fds()?;
        place_link(self.link_fd)?;
        die_with_parent()?;
        no_core_dumps()?;
        no_new_privs()?;
        Ok(())
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn sanitize_fds() -> io::Result<()> {
    // CLOEXEC rather than close: std's exec-error pipe is among these fds and
    // must stay open until exec.
    // SAFETY: close_range only changes descriptor flags; no memory is touched.
    check(unsafe {
        libc::close_range(
            LINK_FD as u32 + 1,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    })
}

fn place_link(fd: RawFd) -> io::Result<()> {
    if fd == LINK_FD {
        // dup2 onto itself would keep CLOEXEC; clear it explicitly.
        // SAFETY: fcntl on a descriptor we own; no memory is touched.
        return check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) });
    }
    // SAFETY: dup2 replaces LINK_FD with our socketpair end (clearing CLOEXEC
    // on the copy); the original stays CLOEXEC and closes at exec.
    check(unsafe { libc::dup2(fd, LINK_FD) })
}

fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    // The supervisor may have died between fork and prctl.
    // SAFETY: getppid has no arguments and cannot fail.
    if unsafe { libc::getppid() } == 1 {
        return Err(io::Error::other("supervisor exited during spawn"));
    }
    Ok(())
}

fn no_core_dumps() -> io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass by reference.
    check(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) })
}

fn no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
}
