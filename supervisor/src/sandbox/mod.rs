//! How a worker process is made: a straight list of steps, each its own
//! function, run in the forked child before `exec` (single-threaded, outside
//! the tokio runtime's reach). docs/sandbox.md lists the same steps in the
//! same order, with the reason for each position.
//!
//! Every step runs between `fork` and `exec`, so each may only make
//! async-signal-safe calls: raw syscalls on values prepared before the fork,
//! no allocation, no locks. std's `Command::uid/gid` are not used: std
//! switches credentials *before* `pre_exec` closures run, and the steps below
//! need root until the very end.

mod creds;
mod namespaces;
mod process;
pub mod rootfs;
pub mod verify;

use std::io;
use std::os::fd::RawFd;

pub use rootfs::RootFs;

/// Who the worker becomes.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// The supervisor-side layers, each switchable so that `bulkhead audit` can
/// prove which of them stops each escape on its own. Real workers get all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layers {
    /// Own uid/gid, no groups, every capability set empty.
    pub credentials: bool,
    /// Own mount, pid, ipc and uts namespaces with the minimal root.
    pub namespaces: bool,
    /// Own network namespace (loopback only, down).
    pub network: bool,
}

impl Layers {
    pub const ALL: Self = Self {
        credentials: true,
        namespaces: true,
        network: true,
    };
}

/// What a root supervisor isolates a worker with.
#[derive(Debug)]
pub struct Isolation {
    pub identity: Identity,
    pub rootfs: RootFs,
    pub layers: Layers,
}

/// What one worker's sandbox needs to know, prepared before the fork.
#[derive(Debug)]
pub struct SandboxPlan {
    /// The child's end of the socketpair, as numbered before step 2.
    pub link_fd: RawFd,
    /// `None` when the supervisor is not root: the worker keeps its uid and
    /// shares the supervisor's namespaces (said loudly at start-up).
    pub isolation: Option<Isolation>,
    /// Highest capability number this kernel knows (`cap_last_cap`).
    pub cap_last: u32,
    /// `cgroup.procs` files to join.
    pub cgroups: Vec<std::ffi::CString>,
}

impl SandboxPlan {
    /// Prepares a plan (reads what must be read before the fork).
    pub fn new(
        link_fd: RawFd,
        isolation: Option<Isolation>,
        cgroup_procs: &[std::path::PathBuf],
    ) -> Self {
        use std::os::unix::ffi::OsStrExt;
        let cgroups = cgroup_procs
            .iter()
            .map(|p| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("paths hold no NUL"))
            .collect();
        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        Self {
            link_fd,
            isolation,
            cap_last,
            cgroups,
        }
    }

    /// Runs the steps, in order, in the forked child.
    pub fn run_in_child(&self) -> io::Result<()> {
        // 1. Nothing inherited but what we pass on purpose.
        process::sanitize_fds()?;
        // 2. The socketpair on fd 3, the one descriptor that survives exec.
        process::place_link(self.link_fd)?;
        // 3. Resource limits, while still root (hard limits can only be lowered).
        process::limit_resources()?;
        // 3'. Into the tenant's cgroups, before forking, so the reaper and
        //     the worker are both limited from their first instruction.
        for procs in &self.cgroups {
            process::join_cgroup(procs)?;
        }
        if let Some(iso) = &self.isolation {
            // 3a. Own mount, pid, ipc, uts and network namespaces; from here
            //     on we are the grandchild, pid 1 of the new pid namespace.
            namespaces::enter(iso.layers.namespaces, iso.layers.network)?;
            // 3b. The minimal root: needs root and the new mount namespace.
            if iso.layers.namespaces {
                iso.rootfs.enter()?;
            }
            if iso.layers.credentials {
                // 4. The capability bounding set, which needs CAP_SETPCAP: before 5.
                creds::drop_bounding_set(self.cap_last)?;
                // 5. Own uid and gid, no supplementary groups.
                creds::become_tenant(iso.identity)?;
                // 6. Inheritable and ambient capabilities (5 cleared the others).
                creds::clear_capabilities()?;
            }
        }
        // 7. Die with the supervisor. After 5: changing credentials clears it.
        process::die_with_parent()?;
        // 8. No privilege gain through exec, from here on.
        process::no_new_privs()?;
        Ok(())
    }
}
