//! New mount, pid, ipc, uts and network namespaces for the worker.
//!
//! `unshare(CLONE_NEWPID)` moves only the caller's *children* into the new
//! pid namespace, so the forked child forks once more: the grandchild is pid 1
//! of the new namespace and becomes the worker; the child stays outside as a
//! minimal reaper that holds no descriptors, waits for the worker and exits
//! with its status. Killing either ends both (parent-death signals).

use std::io;

use super::process::{check, die_with_parent, fail};

const PROCESS: libc::c_int =
    libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;

/// Unshares the namespaces and forks; returns only in the grandchild (the
/// future worker, pid 1 of its pid namespace). The reaper never returns.
/// `process`: mount, pid, ipc and uts; `network`: net (the audit switches
/// them off separately; a real worker always has both).
pub fn enter(process: bool, network: bool) -> io::Result<()> {
    let flags = if process { PROCESS } else { 0 } | if network { libc::CLONE_NEWNET } else { 0 };
    // The reaper dies with the supervisor; the worker (step 7) with the reaper.
    die_with_parent()?;
    // SAFETY: unshare with flags only.
    check(unsafe { libc::unshare(flags) })
        .map_err(|e| fail(b"unshare of namespaces failed\n", e))?;
    // SAFETY: fork in a single-threaded child (we are between fork and exec
    // already); both sides only make async-signal-safe calls afterwards.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(fail(
            b"fork into the pid namespace failed\n",
            io::Error::last_os_error(),
        )),
        0 => Ok(()),
        worker => reap(worker),
    }
}

/// The reaper: close everything (std's exec-error pipe included, so the
/// supervisor's `spawn` returns once the worker execs), wait, mirror the exit.
fn reap(worker: libc::pid_t) -> ! {
    // SAFETY: closing every descriptor of this process; nothing here uses them.
    unsafe { libc::close_range(0, u32::MAX, 0) };
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: waitpid writes one c_int we own.
        let r = unsafe { libc::waitpid(worker, &mut status, 0) };
        if r == worker {
            break;
        }
        if r == -1 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: _exit ends the process without running atexit handlers.
            unsafe { libc::_exit(127) };
        }
    }
    if libc::WIFSIGNALED(status) {
        // Die the same way, so the supervisor sees the worker's signal.
        let sig = libc::WTERMSIG(status);
        // SAFETY: resetting a disposition and signalling ourselves.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    // SAFETY: _exit ends the process without running atexit handlers.
    unsafe { libc::_exit(code) }
}
