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
pub mod namespaces;
mod process;
pub mod rootfs;
pub mod verify;

use std::io;
use std::os::fd::RawFd;

pub use process::{pidfd_open, place_link, set_worker_limits};
pub use rootfs::RootFs;

/// Who the worker becomes.
#[derive(Debug, Clone, Copy)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
}

/// The supervisor-side layers, each switchable so that `bulkhead audit` can
/// prove which of them stops each escape on its own. Real workers get all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Layers {
    /// Own uid/gid, no groups, every capability set empty.
    pub credentials: bool,
    /// Own mount, pid, ipc and uts namespaces with the minimal root.
    pub namespaces: bool,
    /// Own network namespace (loopback only, down).
    pub network: bool,
    /// Without root: first enter a user namespace in which the supervisor's
    /// own uid is root, so the namespaces above can be made at all.
    pub user_ns: bool,
}

impl Layers {
    pub const ALL: Self = Self {
        credentials: true,
        namespaces: true,
        network: true,
        user_ns: false,
    };
    pub const NONE: Self = Self {
        credentials: false,
        namespaces: false,
        network: false,
        user_ns: false,
    };
}

/// What a root supervisor isolates a worker with.
#[derive(Debug)]
pub struct Isolation {
    pub identity: Identity,
    pub rootfs: RootFs,
    pub layers: Layers,
    /// `/proc/self/{uid,gid}_map` lines for the user namespace, prepared
    /// before the fork (`0 <supervisor uid> 1`).
    pub user_maps: namespaces::UserMaps,
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
    /// Files to write `0` to, to join the tenant's cgroups.
    pub cgroups: Vec<std::ffi::CString>,
    /// RLIMIT_NPROC for the tenant's uid: the pids limit, a second bound
    /// beside the cgroup's.
    pub tasks: Option<u64>,
    /// RLIMIT_DATA: the memory limit, a second bound beside the cgroup's.
    pub data: Option<u64>,
    /// A pidfd of the supervisor: the child's parent (through
    /// `CLONE_PARENT`), whose death before step 7 the child must notice.
    pub supervisor: RawFd,
    /// Namespaces made ahead for this start (root only, no user namespace);
    /// `None`: the child unshares all of its own.
    pub premade: Option<namespaces::Premade>,
    steps: Vec<Step>,
}

/// One step of the plan. The plan is this list, built before the fork and
/// executed in order in the child, so its order is unit-tested without root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    SanitizeFds,
    PlaceLink,
    LimitResources,
    JoinCgroups,
    EnterUserNs,
    EnterNamespaces,
    EnterRootFs,
    DropBoundingSet,
    BecomeTenant,
    ClearCapabilities,
    DieWithParent,
    NoNewPrivs,
}

impl SandboxPlan {
    /// Prepares a plan (reads what must be read before the fork).
    pub fn new(
        link_fd: RawFd,
        isolation: Option<Isolation>,
        cgroup_join: &[std::path::PathBuf],
        (tasks, data): (u64, u64),
        supervisor: RawFd,
    ) -> Self {
        // Both come with the credentials layer: without an own uid the task
        // count would be the supervisor's, and the audit switches them together.
        let own = isolation.as_ref().is_some_and(|i| i.layers.credentials);
        let (tasks, data) = (own.then_some(tasks), own.then_some(data));
        use std::os::unix::ffi::OsStrExt;
        let cgroups = cgroup_join
            .iter()
            .map(|p| std::ffi::CString::new(p.as_os_str().as_bytes()).expect("paths hold no NUL"))
            .collect();
        let cap_last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        let steps = steps(
            isolation.as_ref().map(|i| i.layers),
            !cgroup_join.is_empty(),
        );
        Self {
            link_fd,
            isolation,
            cap_last,
            cgroups,
            steps,
            tasks,
            data,
            supervisor,
            premade: None,
        }
    }

    /// The steps this plan runs, in order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Runs the steps, in order, in the forked child.
    /// A failure comes back to `spawn` as an errno only, so the failing step
    /// travels inside it: see [`StepError::encode`].
    pub fn run_in_child(&self) -> io::Result<()> {
        for (i, step) in self.steps.iter().enumerate() {
            self.run(*step).map_err(|e| StepError::encode(i, &e))?;
        }
        Ok(())
    }

    fn run(&self, step: Step) -> io::Result<()> {
        let iso = self.isolation.as_ref();
        match step {
            Step::SanitizeFds => process::sanitize_fds(),
            Step::PlaceLink => process::place_link(self.link_fd),
            Step::LimitResources => process::limit_resources(self.tasks, self.data),
            Step::JoinCgroups => self
                .cgroups
                .iter()
                .try_for_each(|p| process::join_cgroup(p)),
            Step::EnterUserNs => iso.map_or(Ok(()), |i| namespaces::enter_user(&i.user_maps)),
            Step::EnterNamespaces => {
                let layers = iso.map_or(Layers::NONE, |i| i.layers);
                let premade = self.premade.filter(|_| !layers.user_ns);
                namespaces::enter(layers.namespaces, layers.network, self.supervisor, premade)
            }
            Step::EnterRootFs => iso.map_or(Ok(()), |i| i.rootfs.enter()),
            Step::DropBoundingSet => creds::drop_bounding_set(self.cap_last),
            Step::BecomeTenant => iso.map_or(Ok(()), |i| creds::become_tenant(i.identity)),
            Step::ClearCapabilities => creds::clear_capabilities(),
            Step::DieWithParent => {
                process::die_with_parent(namespaces::reaper().unwrap_or(self.supervisor))
            }
            Step::NoNewPrivs => process::no_new_privs(),
        }
    }
}

/// A step that failed in the child, as the parent sees it.
#[derive(Debug, thiserror::Error)]
#[error("sandbox step {step:?} failed: {source}")]
pub struct StepError {
    pub step: Step,
    #[source]
    pub source: io::Error,
}

/// Step indexes ride in the thousands of the errno that std passes back
/// from `pre_exec` (real errnos stay below 1000).
const STEP_BASE: i32 = 1000;

impl StepError {
    fn encode(index: usize, e: &io::Error) -> io::Error {
        let errno = e.raw_os_error().filter(|n| *n < STEP_BASE).unwrap_or(0);
        io::Error::from_raw_os_error((index as i32 + 1) * STEP_BASE + errno)
    }

    /// Recovers the step from a `spawn` error, given the plan's steps.
    pub fn decode(e: &io::Error, steps: &[Step]) -> Option<Self> {
        let code = e.raw_os_error()?;
        let step = *steps.get(usize::try_from(code / STEP_BASE - 1).ok()?)?;
        Some(Self {
            step,
            source: io::Error::from_raw_os_error(code % STEP_BASE),
        })
    }
}

/// The steps a plan for `layers` runs (`cgroups`: whether it joins any),
/// to name a failed step from its errno outside the process that ran it.
pub fn steps_for(layers: Option<Layers>, cgroups: bool) -> Vec<Step> {
    steps(layers, cgroups)
}

/// The ordered steps for `layers` (`None`: no root, no isolation). Why each
/// sits where it does is in docs/sandbox.md.
fn steps(layers: Option<Layers>, cgroups: bool) -> Vec<Step> {
    // 1. Nothing inherited but what we pass on purpose; 2. the socketpair on
    // fd 3; 3. limits while still root (hard limits only go down).
    let mut s = vec![Step::SanitizeFds, Step::PlaceLink, Step::LimitResources];
    // 3'. cgroups before forking, so reaper and worker are limited at once.
    if cgroups {
        s.push(Step::JoinCgroups);
    }
    if let Some(l) = layers {
        // 3u. Without root: a user namespace first, for the capabilities the
        // next steps need (inside it only).
        if l.user_ns {
            s.push(Step::EnterUserNs);
        }
        // 3a. namespaces (and the fork into the pid namespace); 3b. the
        // minimal root, which needs the new mount namespace and root.
        s.push(Step::EnterNamespaces);
        if l.namespaces {
            s.push(Step::EnterRootFs);
        }
        // 4–6. The bounding set needs CAP_SETPCAP, so before the uid change;
        // the inheritable and ambient sets survive it, so after.
        if l.credentials {
            s.extend([
                Step::DropBoundingSet,
                Step::BecomeTenant,
                Step::ClearCapabilities,
            ]);
        } else if l.user_ns {
            // Root of its user namespace: shed every capability anyway.
            s.extend([Step::DropBoundingSet, Step::ClearCapabilities]);
        }
    }
    // 7. After 5: a credential change clears the parent-death signal.
    // 8. Last: nothing exec'd may gain privileges.
    s.extend([Step::DieWithParent, Step::NoNewPrivs]);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(s: &[Step], step: Step) -> usize {
        s.iter()
            .position(|x| *x == step)
            .unwrap_or_else(|| panic!("{step:?} missing from {s:?}"))
    }

    #[test]
    fn a_real_worker_runs_every_step_in_the_documented_order() {
        let s = steps(Some(Layers::ALL), true);
        assert_eq!(
            s,
            [
                Step::SanitizeFds,
                Step::PlaceLink,
                Step::LimitResources,
                Step::JoinCgroups,
                Step::EnterNamespaces,
                Step::EnterRootFs,
                Step::DropBoundingSet,
                Step::BecomeTenant,
                Step::ClearCapabilities,
                Step::DieWithParent,
                Step::NoNewPrivs,
            ]
        );
    }

    #[test]
    fn ordering_constraints_hold_for_every_layer_combination() {
        for bits in 0..16u8 {
            let layers = Layers {
                credentials: bits & 1 != 0,
                namespaces: bits & 2 != 0,
                network: bits & 4 != 0,
                user_ns: bits & 8 != 0,
            };
            let s = steps(Some(layers), true);
            assert!(
                pos(&s, Step::JoinCgroups) < pos(&s, Step::EnterNamespaces),
                "cgroups before the fork"
            );
            assert_eq!(s.contains(&Step::EnterRootFs), layers.namespaces);
            if layers.credentials {
                assert!(
                    pos(&s, Step::DropBoundingSet) < pos(&s, Step::BecomeTenant),
                    "CAP_SETPCAP is gone after the uid change"
                );
                assert!(
                    pos(&s, Step::BecomeTenant) < pos(&s, Step::DieWithParent),
                    "a uid change clears PDEATHSIG"
                );
            } else {
                assert!(!s.contains(&Step::BecomeTenant));
            }
            if layers.namespaces {
                assert!(pos(&s, Step::EnterRootFs) < pos(&s, Step::NoNewPrivs));
            }
            assert_eq!(s.last(), Some(&Step::NoNewPrivs));
            if layers.user_ns {
                assert!(
                    pos(&s, Step::EnterUserNs) < pos(&s, Step::EnterNamespaces),
                    "the user namespace first"
                );
                assert!(s.contains(&Step::ClearCapabilities));
            }
        }
    }

    #[test]
    fn a_failing_step_is_named_in_the_parent() {
        let steps = steps(Some(Layers::ALL), true);
        let pivot = steps.iter().position(|s| *s == Step::EnterRootFs).unwrap();
        let wire = StepError::encode(pivot, &io::Error::from_raw_os_error(libc::EPERM));
        let back = StepError::decode(&wire, &steps).unwrap();
        assert_eq!(back.step, Step::EnterRootFs);
        assert_eq!(back.source.raw_os_error(), Some(libc::EPERM));
        assert!(back.to_string().contains("EnterRootFs"), "{back}");
        assert!(
            StepError::decode(&io::Error::from_raw_os_error(libc::ENOENT), &steps).is_none(),
            "a plain exec error"
        );
    }

    #[test]
    fn without_root_there_is_no_isolation_step() {
        let s = steps(None, false);
        assert_eq!(
            s,
            [
                Step::SanitizeFds,
                Step::PlaceLink,
                Step::LimitResources,
                Step::DieWithParent,
                Step::NoNewPrivs
            ]
        );
    }
}
