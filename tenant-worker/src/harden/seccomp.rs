//! The worker's seccomp-bpf allowlist, kept as data: every syscall it may
//! make, with the code path that needs it. Anything else fails with `EPERM`
//! (a library's fallback then sees an ordinary error; an attacker gets
//! nothing). Notably absent: `socket` (no new network sockets at all),
//! `bind`, `listen`, `connect`, `execve`, `ptrace`, `mount`, `umount2`,
//! `unshare`, `setns`, `bpf`, `keyctl`, `process_vm_readv/writev`,
//! `init_module`, `kill`, and the `sched_set*` calls (the supervisor
//! starts a worker under `SCHED_BATCH`; it cannot take that back).
//!
//! Derived from `strace -f` of workers serving SIP over UDP and TCP, the
//! tenant API and admin control messages (docs/sandbox.md), plus the calls
//! the same libraries make on their error and growth paths.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Allowed with any arguments: (number, name, why).
pub const ALLOWED: &[(i64, &str, &str)] = &[
    (libc::SYS_read, "read", "sockets and the store"),
    (
        libc::SYS_write,
        "write",
        "sockets, the store, logs to stderr",
    ),
    (libc::SYS_readv, "readv", "socket reads"),
    (libc::SYS_writev, "writev", "HTTP responses"),
    (libc::SYS_pread64, "pread64", "SQLite page reads"),
    (libc::SYS_pwrite64, "pwrite64", "SQLite page writes"),
    (libc::SYS_lseek, "lseek", "SQLite"),
    (
        libc::SYS_fsync,
        "fsync",
        "durable commits (synchronous=FULL)",
    ),
    (libc::SYS_fdatasync, "fdatasync", "durable commits"),
    (
        libc::SYS_ftruncate,
        "ftruncate",
        "WAL reset after checkpoints",
    ),
    (
        libc::SYS_fcntl,
        "fcntl",
        "non-blocking flags, SQLite locks, dup",
    ),
    (libc::SYS_close, "close", "every descriptor"),
    (
        libc::SYS_openat,
        "openat",
        "SQLite re-opening its WAL and shm files (paths bounded by Landlock)",
    ),
    (
        libc::SYS_unlink,
        "unlink",
        "SQLite removing its own journal files (inside /data, by Landlock)",
    ),
    (libc::SYS_unlinkat, "unlinkat", "as unlink"),
    (
        libc::SYS_rename,
        "rename",
        "tenant rotate-key swaps the re-encrypted store in (inside /data, by Landlock)",
    ),
    (libc::SYS_renameat, "renameat", "as rename"),
    (libc::SYS_renameat2, "renameat2", "as rename"),
    (libc::SYS_newfstatat, "newfstatat", "SQLite file checks"),
    (libc::SYS_fstat, "fstat", "SQLite file checks"),
    (libc::SYS_statx, "statx", "std metadata"),
    (
        libc::SYS_getdents64,
        "getdents64",
        "espeak-ng lists its voices directory",
    ),
    (libc::SYS_mmap, "mmap", "allocator, SQLite shm"),
    (libc::SYS_munmap, "munmap", "allocator"),
    (libc::SYS_mremap, "mremap", "allocator"),
    (
        libc::SYS_mprotect,
        "mprotect",
        "thread stacks guard pages; loading the speech libraries",
    ),
    (libc::SYS_madvise, "madvise", "allocator"),
    (libc::SYS_brk, "brk", "allocator"),
    (
        libc::SYS_futex,
        "futex",
        "locks, condition variables, channels",
    ),
    (libc::SYS_set_robust_list, "set_robust_list", "new threads"),
    (libc::SYS_rseq, "rseq", "new threads (glibc)"),
    (
        libc::SYS_clone3,
        "clone3",
        "the store writer and blocking-pool threads",
    ),
    (libc::SYS_clone, "clone", "thread creation on older glibc"),
    (libc::SYS_sched_yield, "sched_yield", "spin loops in locks"),
    (
        libc::SYS_sched_getaffinity,
        "sched_getaffinity",
        "std's available_parallelism",
    ),
    (libc::SYS_exit, "exit", "thread exit"),
    (libc::SYS_exit_group, "exit_group", "process exit"),
    (libc::SYS_gettid, "gettid", "logging, locks"),
    (libc::SYS_getpid, "getpid", "SQLite, OpenSSL fork detection"),
    (
        libc::SYS_tgkill,
        "tgkill",
        "abort() on a panic raises SIGABRT on itself",
    ),
    (
        libc::SYS_rt_sigaction,
        "rt_sigaction",
        "the SIGTERM handler",
    ),
    (
        libc::SYS_rt_sigprocmask,
        "rt_sigprocmask",
        "thread creation",
    ),
    (
        libc::SYS_rt_sigreturn,
        "rt_sigreturn",
        "returning from a signal handler",
    ),
    (
        libc::SYS_sigaltstack,
        "sigaltstack",
        "std's stack-overflow handler per thread",
    ),
    (
        libc::SYS_restart_syscall,
        "restart_syscall",
        "syscalls interrupted by a signal",
    ),
    (
        libc::SYS_epoll_create1,
        "epoll_create1",
        "the tokio reactor",
    ),
    (libc::SYS_epoll_ctl, "epoll_ctl", "the tokio reactor"),
    (libc::SYS_epoll_wait, "epoll_wait", "the tokio reactor"),
    (libc::SYS_epoll_pwait, "epoll_pwait", "the tokio reactor"),
    (libc::SYS_eventfd2, "eventfd2", "the tokio reactor's waker"),
    (libc::SYS_poll, "poll", "blocking waits"),
    (libc::SYS_ppoll, "ppoll", "blocking waits"),
    (libc::SYS_getrandom, "getrandom", "tags, ids, OpenSSL"),
    (
        libc::SYS_clock_gettime,
        "clock_gettime",
        "timers (when the vDSO falls back)",
    ),
    (libc::SYS_clock_nanosleep, "clock_nanosleep", "sleeps"),
    (libc::SYS_nanosleep, "nanosleep", "sleeps"),
    (libc::SYS_recvfrom, "recvfrom", "SIP over UDP and TCP"),
    (libc::SYS_sendto, "sendto", "SIP over UDP and TCP"),
    (libc::SYS_recvmsg, "recvmsg", "the socketpair"),
    (libc::SYS_sendmsg, "sendmsg", "the socketpair"),
    (
        libc::SYS_sendmmsg,
        "sendmmsg",
        "the socketpair, frames in batches",
    ),
    (
        libc::SYS_accept4,
        "accept4",
        "TCP connections on the passed listeners",
    ),
    (libc::SYS_shutdown, "shutdown", "closing TCP connections"),
    (libc::SYS_getsockname, "getsockname", "socket addresses"),
    (libc::SYS_getpeername, "getpeername", "socket addresses"),
    (
        libc::SYS_setsockopt,
        "setsockopt",
        "TCP_NODELAY and buffer sizes",
    ),
    (
        libc::SYS_getsockopt,
        "getsockopt",
        "SO_ERROR after non-blocking I/O",
    ),
    (libc::SYS_getuid, "getuid", "libc"),
    (libc::SYS_geteuid, "geteuid", "libc"),
    (libc::SYS_getgid, "getgid", "libc"),
    (libc::SYS_getegid, "getegid", "libc"),
];

/// Allowed only with a given first (`arg 0`) or second (`arg 1`) argument:
/// (number, name, argument index, allowed values, why).
pub const NARROWED: &[(i64, &str, u8, &[u64], &str)] = &[
    (
        libc::SYS_socketpair,
        "socketpair",
        0,
        &[libc::AF_UNIX as u64],
        "the tokio signal driver's self-pipe; AF_UNIX only",
    ),
    (
        libc::SYS_ioctl,
        "ioctl",
        1,
        &[libc::FIONBIO, libc::FIOCLEX],
        "non-blocking and close-on-exec flags only",
    ),
    (
        libc::SYS_prctl,
        "prctl",
        0,
        &[libc::PR_SET_NAME as u64, libc::PR_GET_NAME as u64],
        "thread names only",
    ),
];

/// Compiles the allowlist for this machine's architecture.
pub fn compile() -> Result<BpfProgram, seccompiler::BackendError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        ALLOWED.iter().map(|(nr, _, _)| (*nr, Vec::new())).collect();
    for (nr, _, arg, values, _) in NARROWED {
        let alternatives = values
            .iter()
            .map(|v| {
                SeccompRule::new(vec![SeccompCondition::new(
                    *arg,
                    SeccompCmpArgLen::Qword,
                    SeccompCmpOp::Eq,
                    *v,
                )?])
            })
            .collect::<Result<Vec<_>, _>>()?;
        rules.insert(*nr, alternatives);
    }
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    SeccompFilter::new(
        rules,
        SeccompAction::Errno(libc::EPERM as u32),
        SeccompAction::Allow,
        arch,
    )?
    .try_into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_compiles_and_leaves_out_what_must_never_be_allowed() {
        assert!(!compile().unwrap().is_empty());
        let allowed: Vec<&str> = ALLOWED
            .iter()
            .map(|(_, n, _)| *n)
            .chain(NARROWED.iter().map(|(_, n, ..)| *n))
            .collect();
        for forbidden in [
            "socket",
            "bind",
            "listen",
            "connect",
            "execve",
            "execveat",
            "ptrace",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "keyctl",
            "process_vm_readv",
            "process_vm_writev",
            "init_module",
            "finit_module",
            "kill",
            "setuid",
            "pivot_root",
            "chroot",
            "perf_event_open",
            "sched_setscheduler",
            "sched_setattr",
            "sched_setparam",
        ] {
            assert!(
                !allowed.contains(&forbidden),
                "{forbidden} must not be allowed"
            );
        }
        let mut names = allowed.clone();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), allowed.len(), "each syscall listed once");
    }
}
