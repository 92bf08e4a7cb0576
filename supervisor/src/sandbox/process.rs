//! Process-level steps: descriptors, limits, parent-death signal, no_new_privs.

use std::io;
use std::os::fd::RawFd;

use crate::spawn::LINK_FD;

/// Files a worker may hold open (sockets for calls included).
pub const MAX_FILES: u64 = 4096;

/// Names the failed step on stderr (the supervisor's log), since only the
/// errno travels back to the parent; returns `err` unchanged.
pub(super) fn fail(what: &'static [u8], err: io::Error) -> io::Error {
    const PREFIX: &[u8] = b"bulkhead sandbox: ";
    // SAFETY: write(2) of static byte strings to stderr; async-signal-safe.
    unsafe {
        libc::write(2, PREFIX.as_ptr().cast(), PREFIX.len());
        libc::write(2, what.as_ptr().cast(), what.len());
    }
    err
}

pub(super) fn check(ret: libc::c_int) -> io::Result<()> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Marks every descriptor ≥ 4 close-on-exec. (CLOEXEC rather than close:
/// std's exec-error pipe is among them and must stay open until exec.)
pub fn sanitize_fds() -> io::Result<()> {
    // SAFETY: close_range only changes descriptor flags; no memory is touched.
    check(unsafe {
        libc::close_range(
            LINK_FD as u32 + 1,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    })
}

pub fn place_link(fd: RawFd) -> io::Result<()> {
    if fd == LINK_FD {
        // dup2 onto itself would keep CLOEXEC; clear it explicitly.
        // SAFETY: fcntl on a descriptor we own; no memory is touched.
        return check(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) });
    }
    // SAFETY: dup2 replaces LINK_FD with our socketpair end (clearing CLOEXEC
    // on the copy); the original stays CLOEXEC and closes at exec.
    check(unsafe { libc::dup2(fd, LINK_FD) })
}

/// The batch scheduling policy ([`run_as_batch`]), no core dumps (a core
/// file would hold the tenant's data key), bounded files, and at most
/// `tasks` threads and processes for the tenant's uid (the kernel ignores
/// this for root). Without own uids (`None`) the count would be shared with
/// the supervisor's uid, so it is left alone.
/// `data` bounds the process's private writable memory (RLIMIT_DATA counts
/// anonymous mappings too), a second bound beside the memory cgroup.
pub fn limit_resources(tasks: Option<u64>, data: Option<u64>) -> io::Result<()> {
    run_as_batch()?;
    set_limit(libc::RLIMIT_CORE, 0)?;
    set_limit(libc::RLIMIT_NOFILE, MAX_FILES)?;
    if let Some(d) = data {
        set_limit(libc::RLIMIT_DATA, d)?;
    }
    match tasks {
        Some(t) => set_limit(libc::RLIMIT_NPROC, t),
        None => Ok(()),
    }
}

/// Sets a running worker's RLIMIT_NPROC and RLIMIT_DATA (soft and hard),
/// so that `tenant limits` changes them live as it changes the cgroup's:
/// a memory limit raised only in the cgroup left the worker's allocations
/// refused at the old bound (BENCHMARKS.md, ninth session). Raising a hard
/// limit needs CAP_SYS_RESOURCE, which the supervisor has as root.
pub fn set_worker_limits(pid: u32, tasks: u64, data: u64) -> io::Result<()> {
    let pid =
        libc::pid_t::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    set_limit_of(pid, libc::RLIMIT_NPROC, tasks)?;
    set_limit_of(pid, libc::RLIMIT_DATA, data)
}

fn set_limit_of(
    pid: libc::pid_t,
    resource: libc::__rlimit_resource_t,
    value: u64,
) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: prlimit reads the struct we pass by reference; the old value
    // is not asked for (null).
    check(unsafe { libc::prlimit(pid, resource, &lim, std::ptr::null_mut()) })
}

/// `SCHED_BATCH` for the worker and every thread it starts: a worker woken
/// (a frame from the router, its writer's commit) never preempts the
/// running task, the router or another tenant's worker; it runs on an idle
/// core or when the running task's slice ends. Fair sharing of CPU time is
/// unchanged, and the worker's seccomp filter keeps it from changing its
/// policy back. Adopted when it made a burst of 2,000 calls 14% shorter
/// (seventh session); since then the speed difference has gone (bursts and
/// steady rates within noise either way, BENCHMARKS.md, thirteenth session),
/// and what keeps it is that a neighbour's wake-ups never preempt the router.
fn run_as_batch() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: sched_setscheduler reads the struct we pass by reference.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) })
}

fn set_limit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: value,
        rlim_max: value,
    };
    // SAFETY: setrlimit reads the struct we pass by reference.
    check(unsafe { libc::setrlimit(resource, &lim) })
}

/// Moves this (single-threaded) process into the cgroup whose `tasks` or
/// `cgroup.procs` file is `file` (writing `0` means "the writer").
pub fn join_cgroup(file: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: open reads a C string prepared before the fork.
    let fd = unsafe { libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    check(fd).map_err(|e| fail(b"opening a cgroup's tasks or cgroup.procs file failed\n", e))?;
    // SAFETY: writes one byte from a static buffer to the descriptor just opened.
    let written = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
    // SAFETY: closes the descriptor just opened.
    unsafe { libc::close(fd) };
    if written != 1 {
        return Err(fail(
            b"joining a cgroup failed\n",
            io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Dies with the parent, whose pidfd is `parent`, and makes sure it has not
/// died already: a parent gone between the fork and `prctl` sent no signal.
/// A pidfd, not `getppid()`: inside a pid namespace that is 0 whoever the
/// parent is, and outside it a subreaper would hide the orphaning.
pub fn die_with_parent(parent: RawFd) -> io::Result<()> {
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
    if exited(parent).map_err(|e| fail(b"the parent's pidfd is not open\n", e))? {
        return Err(fail(
            b"the parent exited during the spawn\n",
            io::Error::from_raw_os_error(libc::ESRCH),
        ));
    }
    Ok(())
}

/// A pidfd of the calling process (close-on-exec), for its child's
/// [`die_with_parent`].
pub fn own_pidfd() -> io::Result<RawFd> {
    pidfd_open(
        // SAFETY: getpid has no arguments and cannot fail.
        unsafe { libc::getpid() },
    )
}

/// `pidfd_open(2)`: a descriptor that becomes readable when `pid` exits.
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<RawFd> {
    // SAFETY: pidfd_open takes two integers and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd as RawFd)
}

/// Whether the process behind `pidfd` has exited (its pidfd is readable).
/// A descriptor that is not open is an error, not a living process: `poll`
/// ignores a negative one and flags a closed one `POLLNVAL`, and either
/// would otherwise read as "alive" and let a child outlive its parent.
pub fn exited(pidfd: RawFd) -> io::Result<bool> {
    let not_open = || io::Error::from_raw_os_error(libc::EBADF);
    if pidfd < 0 {
        return Err(not_open());
    }
    let mut p = libc::pollfd {
        fd: pidfd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd we own; timeout 0.
    let ready = unsafe { libc::poll(&mut p, 1, 0) };
    check(ready)?;
    if p.revents & libc::POLLNVAL != 0 {
        return Err(not_open());
    }
    Ok(ready == 1 && p.revents & libc::POLLIN != 0)
}

pub fn no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn a_running_process_gets_new_task_and_data_limits() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let limit = |name: &str| {
            let text = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap()
                .to_owned();
            line[name.len()..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_owned()
        };
        // Lowering needs no capability for a process of our own uid.
        set_worker_limits(child.id(), 1000, 512 << 20).unwrap();
        assert_eq!(limit("Max data size"), (512u64 << 20).to_string());
        assert_eq!(limit("Max processes"), "1000");
        // Raising a hard limit needs CAP_SYS_RESOURCE; where it is
        // withheld, the refusal is EPERM (what the supervisor reports).
        match set_worker_limits(child.id(), 1000, 768 << 20) {
            Ok(()) => assert_eq!(limit("Max data size"), (768u64 << 20).to_string()),
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}"),
        }
        child.kill().unwrap();
        child.wait().unwrap();
        let gone = set_worker_limits(child.id(), 1000, 512 << 20).unwrap_err();
        assert_eq!(gone.raw_os_error(), Some(libc::ESRCH));
    }

    /// Runs `die_with_parent(parent)` in a forked child (its parent-death
    /// signal must not touch the test process) and says whether it failed.
    fn die_with_parent_fails(parent: RawFd) -> bool {
        // SAFETY: the child makes only async-signal-safe calls (prctl, poll,
        // write, _exit) before it exits.
        match unsafe { libc::fork() } {
            0 => {
                let code = i32::from(die_with_parent(parent).is_err());
                // SAFETY: _exit ends the child without running the test
                // harness's handlers.
                unsafe { libc::_exit(code) }
            }
            -1 => panic!("fork: {}", io::Error::last_os_error()),
            child => {
                let mut status = 0;
                // SAFETY: waitpid writes one c_int we own.
                assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
                assert!(libc::WIFEXITED(status), "status {status}");
                libc::WEXITSTATUS(status) == 1
            }
        }
    }

    #[test]
    fn a_parent_that_exited_before_the_signal_was_set_is_caught() {
        let mut gone = Command::new("sleep").arg("30").spawn().unwrap();
        let fd = pidfd_open(gone.id() as libc::pid_t).unwrap();
        assert!(!exited(fd).unwrap(), "alive while it sleeps");
        gone.kill().unwrap();
        gone.wait().unwrap();
        assert!(exited(fd).unwrap());
        assert!(die_with_parent_fails(fd));
        // SAFETY: closes the pidfd opened above.
        unsafe { libc::close(fd) };
    }

    #[test]
    fn a_parent_descriptor_that_is_not_open_fails_closed() {
        // Above any descriptor this process can have open (RLIMIT_NOFILE),
        // so no other test's descriptor can take the number meanwhile.
        let never_open = i32::MAX;
        for fd in [-1, never_open] {
            let err = exited(fd).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EBADF), "fd {fd}");
            assert!(die_with_parent_fails(fd), "fd {fd}");
        }
    }

    #[test]
    fn a_living_parent_passes() {
        // The test process is the forked child's parent, and alive.
        let me = own_pidfd().unwrap();
        assert!(!die_with_parent_fails(me));
        // SAFETY: closes the pidfd opened above.
        unsafe { libc::close(me) };
    }
}
