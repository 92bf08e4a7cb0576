//! Network, UTS and IPC namespaces made ahead of the next worker start.
//!
//! A worker gets five namespaces of its own. Made by the child's one
//! `unshare` they cost 0.64 ms of its start on this machine, most of it the
//! network namespace (its loopback device and sysctl tables); entering three
//! made earlier and unsharing only the mount and pid namespaces costs
//! 0.12 ms (BENCHMARKS.md). The spawn server makes the next set right after
//! it answered a start, while the worker boots, so a start finds one ready.
//!
//! Each set is made fresh, held only by the spawn server (a root process
//! holding nothing else of any tenant), and handed to exactly one start: a
//! set taken is never put back, used or not. The supervisor's verification
//! still checks every worker's namespaces against the host's and every
//! other worker's, so a set handed out twice would fail that worker.
//! Mount and pid namespaces are not made ahead: a mount namespace is the
//! copy of its maker's mounts the child then reshapes, and a pid
//! namespace's first process must be the child's own fork.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sched::{setns, unshare, CloneFlags};

/// The kinds made ahead, in the order entered.
const KINDS: [(&str, CloneFlags); 3] = [
    ("net", CloneFlags::CLONE_NEWNET),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("ipc", CloneFlags::CLONE_NEWIPC),
];

/// One set of fresh namespaces, for one start.
#[derive(Debug)]
pub struct FreshNamespaces {
    net: OwnedFd,
    uts: OwnedFd,
    ipc: OwnedFd,
}

impl FreshNamespaces {
    /// The descriptors, for the child's `setns` (it must not outlive `self`).
    pub fn raw(&self) -> crate::sandbox::namespaces::Premade {
        crate::sandbox::namespaces::Premade {
            net: self.net.as_raw_fd(),
            uts: self.uts.as_raw_fd(),
            ipc: self.ipc.as_raw_fd(),
        }
    }
}

/// The spawn server's next set, and its own namespaces to return to after
/// making one. Disabled (every start unshares all five itself) when the
/// server cannot make namespaces: without root, or on a failure.
#[derive(Debug)]
pub struct Pool {
    home: Option<[OwnedFd; 3]>,
    next: Option<FreshNamespaces>,
}

impl Pool {
    /// A pool for this process; empty until [`Pool::refill`].
    pub fn new() -> Self {
        let home = KINDS.map(|(kind, _)| own(kind));
        let home = match home {
            [Ok(net), Ok(uts), Ok(ipc)] => Some([net, uts, ipc]),
            _ => None,
        };
        Self {
            home: home.filter(|_| nix::unistd::geteuid().is_root()),
            next: None,
        }
    }

    /// The set made for this start, if there is one.
    pub fn take(&mut self) -> Option<FreshNamespaces> {
        self.next.take()
    }

    /// Makes the next set when there is none. A failure disables the pool
    /// for good and is returned once, for the log.
    pub fn refill(&mut self) -> io::Result<()> {
        let Some(home) = &self.home else {
            return Ok(());
        };
        if self.next.is_some() {
            return Ok(());
        }
        match make(home) {
            Ok(set) => {
                self.next = Some(set);
                Ok(())
            }
            Err(e) => {
                self.home = None;
                Err(e)
            }
        }
    }
}

/// Unshares the three kinds, keeps a descriptor of each new namespace, and
/// returns this thread to `home`.
fn make(home: &[OwnedFd; 3]) -> io::Result<FreshNamespaces> {
    let all = KINDS
        .iter()
        .fold(CloneFlags::empty(), |all, (_, flag)| all | *flag);
    unshare(all)?;
    let fresh = KINDS.map(|(kind, _)| own(kind));
    for ((_, flag), fd) in KINDS.iter().zip(home) {
        setns(fd, *flag).map_err(|e| {
            io::Error::other(format!(
                "could not return to the spawn server's own namespaces: {e}"
            ))
        })?;
    }
    let [net, uts, ipc] = fresh;
    Ok(FreshNamespaces {
        net: net?,
        uts: uts?,
        ipc: ipc?,
    })
}

/// A descriptor of this thread's `kind` namespace.
fn own(kind: &str) -> io::Result<OwnedFd> {
    File::open(format!("/proc/thread-self/ns/{kind}")).map(OwnedFd::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::RawFd;

    /// The namespace `fd` refers to, as `/proc/*/ns/*` links name it.
    fn identity(fd: RawFd) -> std::path::PathBuf {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap()
    }

    fn current(kind: &str) -> std::path::PathBuf {
        std::fs::read_link(format!("/proc/thread-self/ns/{kind}")).unwrap()
    }

    #[test]
    fn each_set_is_new_distinct_and_leaves_the_maker_where_it_was() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "making namespaces needs root (scripts/test runs as root)"
        );
        let before = KINDS.map(|(kind, _)| current(kind));
        let mut pool = Pool::new();
        let mut seen = std::collections::HashSet::new();
        // All kept open: a freed namespace's number is reused.
        let mut sets = Vec::new();
        for _ in 0..4 {
            pool.refill().unwrap();
            let set = pool.take().expect("a set after refill");
            assert!(pool.take().is_none(), "a set is handed out once");
            let raw = set.raw();
            for ((kind, _), fd) in KINDS.iter().zip([raw.net, raw.uts, raw.ipc]) {
                let id = identity(fd);
                assert!(id.to_string_lossy().starts_with(kind), "{id:?}");
                assert!(!before.contains(&id), "{kind}: the maker's own");
                assert!(seen.insert(id), "{kind}: a namespace made twice");
            }
            assert_eq!(KINDS.map(|(kind, _)| current(kind)), before);
            sets.push(set);
        }
    }

    #[test]
    fn a_full_pool_makes_nothing_more() {
        assert!(nix::unistd::geteuid().is_root(), "needs root");
        let mut pool = Pool::new();
        pool.refill().unwrap();
        let first = identity(pool.next.as_ref().unwrap().net.as_raw_fd());
        pool.refill().unwrap();
        let set = pool.take().unwrap();
        assert_eq!(identity(set.raw().net), first);
    }
}
