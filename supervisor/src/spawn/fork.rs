//! Clone, sandbox, exec: what `std::process::Command` did for the
//! supervisor, done by hand because the child must be cloned with
//! `CLONE_PARENT` (std offers no clone flags).
//!
//! Runs in the spawn server, a single-threaded process, so the child may
//! run the sandbox steps (async-signal-safe, no allocation) and exec. A
//! close-on-exec pipe tells the server whether the exec happened: it reads
//! end-of-file when the worker exec'd (the reaper closes its copy first),
//! or the errno of the step or exec that failed.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use crate::sandbox::SandboxPlan;

/// A start that did not reach the worker's exec.
#[derive(Debug)]
pub struct Failure {
    /// The cloned child, when there is one (the supervisor's to reap).
    pub pid: Option<u32>,
    /// The errno the child reported; 0 when `message` says what failed.
    pub code: i32,
    pub message: Option<String>,
}

impl Failure {
    fn before_clone(what: &str, e: io::Error) -> Self {
        Self {
            pid: None,
            code: 0,
            message: Some(format!("{what}: {e}")),
        }
    }
}

/// Starts `program` in a child of this process's parent, after the steps
/// of `plan`, with `stderr` as its fd 2. Returns the child's pid once the
/// worker exec'd.
pub fn clone_and_exec(
    plan: &SandboxPlan,
    program: &CStr,
    stderr: libc::c_int,
) -> Result<u32, Failure> {
    let (report_r, report_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Failure::before_clone("pipe", e.into()))?;
    let devnull =
        std::fs::File::open("/dev/null").map_err(|e| Failure::before_clone("/dev/null", e))?;
    // Everything the child touches is ready before the clone.
    let argv: [*const libc::c_char; 2] = [program.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    let pid = clone_parent().map_err(|e| Failure::before_clone("clone", e))?;
    if pid == 0 {
        let code = run_child(plan, &argv, &envp, (devnull.as_raw_fd(), stderr));
        report_and_exit(report_w.as_raw_fd(), code);
    }
    drop(report_w);
    let pid = pid as u32;
    match read_report(report_r) {
        Ok(None) => Ok(pid),
        Ok(Some(code)) => Err(Failure {
            pid: Some(pid),
            code,
            message: None,
        }),
        Err(e) => Err(Failure {
            pid: Some(pid),
            code: 0,
            message: Some(format!("reading the child's report: {e}")),
        }),
    }
}

/// `clone(CLONE_PARENT | SIGCHLD)` without a new stack: fork semantics, but
/// the child's parent is ours. Returns 0 in the child.
fn clone_parent() -> io::Result<libc::pid_t> {
    let flags = (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: a fork-like clone (no CLONE_VM, no stack): the child gets a
    // copy of this single-threaded process and only runs `run_child`, which
    // makes async-signal-safe calls, then exec or _exit.
    let pid = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    if pid == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(pid as libc::pid_t)
}

/// In the child: a clean signal state, stdin from /dev/null, stderr to
/// the worker's own pipe (before any step, so a failing step's message
/// reaches it too), `/` as the working directory, the plan's steps, exec.
/// Returns only the errno of what failed.
fn run_child(
    plan: &SandboxPlan,
    argv: &[*const libc::c_char; 2],
    envp: &[*const libc::c_char; 1],
    (devnull, stderr): (libc::c_int, libc::c_int),
) -> i32 {
    // SAFETY: signal mask and disposition calls with values on our stack;
    // dup2 and chdir on descriptors and a static path. All are
    // async-signal-safe. Rust ignores SIGPIPE; the worker starts as exec'd
    // programs expect (std's Command resets the same two).
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        if libc::dup2(devnull, 0) == -1
            || libc::dup2(stderr, 2) == -1
            || libc::chdir(c"/".as_ptr()) == -1
        {
            return errno();
        }
    }
    if let Err(e) = plan.run_in_child() {
        return e.raw_os_error().unwrap_or(0);
    }
    // SAFETY: argv and envp are NULL-terminated arrays of C strings built
    // before the clone; execve only returns on failure.
    unsafe { libc::execve(argv[0], argv.as_ptr(), envp.as_ptr()) };
    errno()
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn report_and_exit(fd: libc::c_int, code: i32) -> ! {
    let bytes = code.to_ne_bytes();
    // SAFETY: write of 4 bytes from our stack, then _exit (no atexit
    // handlers, no destructors of the parent's copied state).
    unsafe {
        libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

/// `None` on end-of-file (the exec happened), else the reported errno.
fn read_report(fd: OwnedFd) -> io::Result<Option<i32>> {
    use std::io::Read;
    let mut pipe = std::fs::File::from(fd);
    let mut bytes = [0u8; 4];
    let mut got = 0;
    while got < bytes.len() {
        match pipe.read(&mut bytes[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    match got {
        0 => Ok(None),
        4 => Ok(Some(i32::from_ne_bytes(bytes))),
        n => Err(io::Error::other(format!("a report of {n} bytes"))),
    }
}
