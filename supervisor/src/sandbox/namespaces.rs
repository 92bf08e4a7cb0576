//! New mount, pid, ipc, uts and network namespaces for the worker.
//!
//! `unshare(CLONE_NEWPID)` moves only the caller's *children* into the new
//! pid namespace, so the forked child forks once more: the grandchild is pid 1
//! of the new namespace and becomes the worker; the child stays outside as a
//! minimal reaper that holds no descriptors, waits for the worker and exits
//! with its status. Killing either ends both (parent-death signals).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use std::ffi::CString;

use super::process::{check, die_with_parent, fail, own_pidfd};

/// In the worker after [`enter`]: a pidfd of its reaper, its parent, for
/// step 7's check. Set between fork and exec, in a single-threaded child.
static REAPER: AtomicI32 = AtomicI32::new(-1);

/// The worker's parent when [`enter`] forked one in between: its reaper.
pub fn reaper() -> Option<RawFd> {
    let fd = REAPER.load(Ordering::Relaxed);
    (fd >= 0).then_some(fd)
}

const PROCESS: libc::c_int =
    libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;

/// Fresh network, uts and ipc namespaces the spawn server made ahead of
/// this start ([`crate::spawn::fresh_ns`]): entered instead of unshared.
#[derive(Debug, Clone, Copy)]
pub struct Premade {
    pub net: RawFd,
    pub uts: RawFd,
    pub ipc: RawFd,
}

/// Enters new namespaces and forks; returns only in the grandchild (the
/// future worker, pid 1 of its pid namespace). The reaper never returns.
/// `process`: mount, pid, ipc and uts; `network`: net (the audit switches
/// them off separately; a real worker always has both). `supervisor`: a
/// pidfd of the supervisor, the reaper's parent. `premade`: those of the
/// namespaces wanted that are entered rather than unshared.
pub fn enter(
    process: bool,
    network: bool,
    supervisor: RawFd,
    premade: Option<Premade>,
) -> io::Result<()> {
    let mut flags =
        if process { PROCESS } else { 0 } | if network { libc::CLONE_NEWNET } else { 0 };
    // The reaper dies with the supervisor; the worker (step 7) with the reaper.
    die_with_parent(supervisor)?;
    if let Some(p) = premade {
        for (fd, kind) in [
            (p.net, libc::CLONE_NEWNET),
            (p.uts, libc::CLONE_NEWUTS),
            (p.ipc, libc::CLONE_NEWIPC),
        ] {
            if flags & kind != 0 {
                // SAFETY: setns on a namespace descriptor the plan keeps
                // open until exec; no memory is touched.
                check(unsafe { libc::setns(fd, kind) })
                    .map_err(|e| fail(b"setns into a namespace made ahead failed\n", e))?;
                flags &= !kind;
            }
        }
    }
    // SAFETY: unshare with flags only.
    check(unsafe { libc::unshare(flags) })
        .map_err(|e| fail(b"unshare of namespaces failed\n", e))?;
    let reaper = own_pidfd().map_err(|e| fail(b"pidfd_open of the reaper failed\n", e))?;
    // SAFETY: fork in a single-threaded child (we are between fork and exec
    // already); both sides only make async-signal-safe calls afterwards.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(fail(
            b"fork into the pid namespace failed\n",
            io::Error::last_os_error(),
        )),
        0 => {
            REAPER.store(reaper, Ordering::Relaxed);
            Ok(())
        }
        worker => reap(worker),
    }
}

/// The reaper: close everything (std's exec-error pipe included, so the
/// supervisor's `spawn` returns once the worker execs), wait, mirror the exit.
fn reap(worker: libc::pid_t) -> ! {
    // SAFETY: prctl with a static C string (the name `ps` shows), then
    // closing every descriptor of this process; nothing here uses them.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"bulkhead-reaper".as_ptr(), 0, 0, 0);
        libc::close_range(0, u32::MAX, 0);
    }
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

/// The uid and gid maps of a worker's user namespace (non-root mode).
#[derive(Debug, Clone)]
pub struct UserMaps {
    uid_map: CString,
    gid_map: CString,
}

impl UserMaps {
    /// Root inside maps to `uid`/`gid` outside, and nothing else is mapped.
    pub fn root_as(uid: u32, gid: u32) -> Self {
        Self {
            uid_map: CString::new(format!("0 {uid} 1")).expect("no NUL"),
            gid_map: CString::new(format!("0 {gid} 1")).expect("no NUL"),
        }
    }
}

/// Enters a new user namespace and maps its root to our own ids. A process
/// may write its own maps only after denying setgroups.
pub fn enter_user(maps: &UserMaps) -> io::Result<()> {
    // The supervisor is not dumpable (it holds the master key), and a
    // non-dumpable process's /proc/self files belong to root: it could not
    // open its own maps. This child is about to exec the worker (which
    // resets the attribute anyway) and runs as the supervisor's own uid.
    // SAFETY: PR_SET_DUMPABLE takes plain integers and touches no memory.
    check(unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 1, 0, 0, 0) }).map_err(|e| {
        fail(
            b"prctl(PR_SET_DUMPABLE) failed
",
            e,
        )
    })?;
    // SAFETY: unshare with flags only.
    check(unsafe { libc::unshare(libc::CLONE_NEWUSER) })
        .map_err(|e| fail(b"unshare of the user namespace failed\n", e))?;
    write_file(c"/proc/self/setgroups", b"deny")?;
    write_file(c"/proc/self/uid_map", maps.uid_map.as_bytes())?;
    write_file(c"/proc/self/gid_map", maps.gid_map.as_bytes())
}

fn write_file(path: &std::ffi::CStr, data: &[u8]) -> io::Result<()> {
    // SAFETY: open reads a static C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    check(fd).map_err(|e| fail(b"opening a user namespace map failed\n", e))?;
    // SAFETY: writes `data`, which outlives the call, to the descriptor just opened.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    // SAFETY: closes the descriptor just opened.
    unsafe { libc::close(fd) };
    if n != data.len() as isize {
        return Err(fail(
            b"writing a user namespace map failed\n",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Whether this process may create a user namespace (probed once, in a
/// throwaway child, since a multi-threaded process never can itself).
pub fn user_namespaces_available() -> bool {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new("/bin/true");
    // SAFETY: unshare is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| check(libc::unshare(libc::CLONE_NEWUSER)));
    }
    cmd.status().is_ok_and(|s| s.success())
}
