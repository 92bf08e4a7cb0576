//! Per-tenant cgroups: memory, CPU and pids limits for each worker.
//!
//! One [`Cgroups`] trait with two implementations, chosen from the file
//! system: v2 (unified, modern systemd hosts) and v1 (this machine, where
//! cgroup2 offers only `hugetlb` and memory, cpu and pids live in v1
//! hierarchies). Tenant groups are created under the supervisor's own cgroup
//! (`/proc/self/cgroup`), in a directory named for this supervisor's state
//! dir, so supervisors side by side never share a tenant's group. Both
//! implementations take their root as a parameter so the unit tests run
//! against temp-dir fixtures.
//!
//! A worker joins its groups itself, in the sandbox, before it forks into
//! its pid namespace (writing `0` to a group's `tasks` or `cgroup.procs`
//! moves the writer), so its memory and pids limits hold from its first
//! instruction; a start sets the CPU quota while the worker loads
//! ([`Cgroups::prepare_groups`]).

mod v1;
mod v2;

use std::path::{Path, PathBuf};

pub use v1::V1;
pub use v2::V2;

/// Limits for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupLimits {
    pub memory_bytes: u64,
    pub pids: u64,
    /// CPU time per 100 ms period, in microseconds (100 000 = one core).
    pub cpu_quota_us: u64,
}

/// CFS period the quota is measured against.
pub const CPU_PERIOD_US: u64 = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("failed to create cgroup {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to write {value:?} to {path}: {source}")]
    Write {
        path: PathBuf,
        value: String,
        source: std::io::Error,
    },
    #[error("failed to remove cgroup {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find this process's {0} cgroup in /proc/self/cgroup")]
    NoOwnGroup(String),
}

/// Creating, joining and removing tenant groups.
pub trait Cgroups: Send + Sync + std::fmt::Debug {
    /// Creates (or updates) `tenant`'s groups with `limits`; returns the
    /// files a single-threaded process writes `0` to in order to join them
    /// (`tasks` on v1, `cgroup.procs` on v2).
    fn prepare(&self, tenant: &str, limits: CgroupLimits) -> Result<Vec<PathBuf>, CgroupError> {
        let join = self.prepare_groups(tenant, limits)?;
        self.limit_cpu(tenant, limits.cpu_quota_us)?;
        Ok(join)
    }
    /// [`Cgroups::prepare`] but for the CPU quota: a worker start sets
    /// that with [`Cgroups::limit_cpu`] while the worker loads, because on
    /// v1 the write walks every task group on the machine (1.2 ms of a
    /// first start here, and it grows with the number of tenants). The
    /// memory and pids limits, which bound what a worker can take at
    /// once, are in force before it joins; the quota shares CPU over
    /// 100 ms periods, and the start waits for it before the worker
    /// counts as serving.
    fn prepare_groups(
        &self,
        tenant: &str,
        limits: CgroupLimits,
    ) -> Result<Vec<PathBuf>, CgroupError>;
    /// Sets `tenant`'s CPU quota (microseconds per [`CPU_PERIOD_US`]).
    fn limit_cpu(&self, tenant: &str, quota_us: u64) -> Result<(), CgroupError>;
    /// Removes `tenant`'s groups (they must be empty).
    fn remove(&self, tenant: &str) -> Result<(), CgroupError>;
    /// Removes this supervisor's own directory of tenant groups (it must
    /// hold none): at shutdown, so that a host does not collect one empty
    /// tree per supervisor that ever ran.
    fn remove_instance(&self) -> Result<(), CgroupError>;
    /// The path a member's `/proc/PID/cgroup` shows for this tenant.
    fn member_path(&self, tenant: &str) -> String;
    /// `v1` or `v2`.
    fn version(&self) -> &'static str;
    /// Bytes of memory the tenant's group uses now (page cache included,
    /// as the limit counts it), if it exists.
    fn memory_usage(&self, tenant: &str) -> Option<u64>;
    /// Processes in the tenant's group (empty if it does not exist).
    fn procs(&self, tenant: &str) -> Vec<u32>;
}

/// A single number from a cgroup file.
pub(crate) fn read_u64(path: PathBuf) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pids listed in a `cgroup.procs` file.
pub(crate) fn read_procs(path: PathBuf) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether a cgroup hierarchy in `mounts` (`/proc/mounts` text) is mounted
/// with `favordynmods`. Without it, every move of a process through
/// `cgroup.procs` (each worker start on v2) waits for an RCU grace period:
/// 4.6-14 ms measured on this project's machine, against 0.3 ms with it
/// (docs/sandbox.md; v1 workers join through `tasks`, which never waits).
/// The option is host-wide and, on Linux 6.18, cannot be turned off again
/// until reboot, so the supervisor only reports it; the admin decides.
pub fn fast_migrations(mounts: &str) -> bool {
    mounts.lines().any(|l| {
        let mut f = l.split_whitespace();
        let (_, _, fstype, options) = (f.next(), f.next(), f.next(), f.next());
        matches!(fstype, Some("cgroup" | "cgroup2"))
            && options.is_some_and(|o| o.split(',').any(|o| o == "favordynmods"))
    })
}

/// Detects the host's cgroup layout. `instance` names this supervisor's
/// directory (derived from its state dir).
pub fn detect(instance: &str) -> Result<Box<dyn Cgroups>, CgroupError> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let root = Path::new("/sys/fs/cgroup");
    let is_v2 = nix::sys::statfs::statfs(root)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC);
    if is_v2 {
        Ok(Box::new(V2::new(root, &own, instance)?))
    } else {
        Ok(Box::new(V1::new(root, &own, instance)?))
    }
}

/// The group path of `controller` in `/proc/self/cgroup` text (`""` for the
/// v2 line `0::/path`).
pub(crate) fn own_path(self_cgroup: &str, controller: &str) -> Option<String> {
    self_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let matches = if controller.is_empty() {
            ctrls.is_empty()
        } else {
            ctrls.split(',').any(|c| c == controller)
        };
        matches.then(|| path.trim_start_matches('/').to_string())
    })
}

/// Writes `value` unless the file already holds it. A restarted worker's
/// group usually has its limits already, and some writes are not cheap: on
/// v1 each CPU bandwidth write walks every task group on the machine
/// (`tg_set_bandwidth`, 4% of the CPU in a profile of `apply` of 1,000).
pub(crate) fn write(path: PathBuf, value: String) -> Result<(), CgroupError> {
    if std::fs::read_to_string(&path).is_ok_and(|now| now.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, &value).map_err(|source| CgroupError::Write {
        path,
        value,
        source,
    })
}

pub(crate) fn create(path: &Path) -> Result<(), CgroupError> {
    std::fs::create_dir_all(path).map_err(|source| CgroupError::Create {
        path: path.to_owned(),
        source,
    })
}

pub(crate) fn remove_dir(path: PathBuf) -> Result<(), CgroupError> {
    match std::fs::remove_dir(&path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(CgroupError::Remove { path, source: e })
        }
        _ => Ok(()),
    }
}

/// Parses `256M`, `1G`, `512K` or plain bytes.
pub fn parse_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'K' | 'k' => (&s[..s.len() - 1], 1u64 << 10),
        'M' | 'm' => (&s[..s.len() - 1], 1 << 20),
        'G' | 'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(mult)
        .filter(|v| *v > 0)
}

/// A short stable name for a supervisor instance (FNV-1a of its state dir).
pub fn instance_name(state_dir: &Path) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in state_dir.as_os_str().as_encoded_bytes() {
        h = (h ^ u32::from(*b)).wrapping_mul(0x0100_0193);
    }
    format!("bulkhead-{h:08x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_paths_for_v1_and_v2() {
        let text = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/7ef1\n1:cpu,cpuacct:/a\n0::/user.slice/x.scope\n";
        assert_eq!(
            own_path(text, "memory").as_deref(),
            Some("process_api/7ef1")
        );
        assert_eq!(own_path(text, "pids").as_deref(), Some(""));
        assert_eq!(own_path(text, "cpu").as_deref(), Some("a"));
        assert_eq!(own_path(text, "").as_deref(), Some("user.slice/x.scope"));
        assert_eq!(own_path(text, "hugetlb"), None);
    }

    #[test]
    fn favordynmods_is_found_on_any_cgroup_mount() {
        let plain = "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
                     cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert!(!fast_migrations(plain));
        let tuned = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,favordynmods 0 0\n";
        assert!(fast_migrations(tuned));
        let elsewhere = "tmpfs /favordynmods tmpfs rw,favordynmods 0 0\n";
        assert!(!fast_migrations(elsewhere), "only cgroup mounts count");
    }

    #[test]
    fn a_limit_already_in_place_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("cpu.cfs_quota_us");
        // The kernel shows values with a newline; a rewrite would drop it.
        std::fs::write(&file, "100000\n").unwrap();
        write(file.clone(), "100000".into()).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "100000\n");
        write(file.clone(), "50000".into()).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "50000");
    }

    #[test]
    fn sizes_and_instance_names() {
        assert_eq!(parse_bytes("256M"), Some(256 << 20));
        assert_eq!(parse_bytes("1G"), Some(1 << 30));
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("0"), None);
        assert_eq!(parse_bytes("lots"), None);
        assert_ne!(
            instance_name(Path::new("/a")),
            instance_name(Path::new("/b"))
        );
        assert_eq!(
            instance_name(Path::new("/a")),
            instance_name(Path::new("/a"))
        );
    }
}
