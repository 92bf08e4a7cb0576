//! cgroup v2: one unified hierarchy; controllers are enabled for children
//! through `cgroup.subtree_control`.

use std::path::{Path, PathBuf};

use super::{
    create, own_path, read_procs, read_u64, remove_dir, write, CgroupError, CgroupLimits, Cgroups,
    CPU_PERIOD_US,
};

/// v2 groups: `<root>/<own path>/<instance>/<tenant>`.
#[derive(Debug)]
pub struct V2 {
    /// The supervisor's own group.
    parent: PathBuf,
    instance: String,
}

impl V2 {
    pub fn new(root: &Path, self_cgroup: &str, instance: &str) -> Result<Self, CgroupError> {
        let own = own_path(self_cgroup, "")
            .ok_or_else(|| CgroupError::NoOwnGroup("unified (0::)".into()))?;
        Ok(Self {
            parent: root.join(own),
            instance: instance.into(),
        })
    }

    fn base(&self) -> PathBuf {
        self.parent.join(&self.instance)
    }
}

impl Cgroups for V2 {
    fn prepare_groups(&self, tenant: &str, l: CgroupLimits) -> Result<Vec<PathBuf>, CgroupError> {
        // Controllers must be enabled on every level above the tenant's
        // group. On a systemd host, run the supervisor with Delegate=yes so
        // its own group may do this (v2 refuses controllers on a group that
        // holds processes, except the root).
        let base = self.base();
        create(&base)?;
        write(
            self.parent.join("cgroup.subtree_control"),
            "+memory +cpu +pids".into(),
        )?;
        write(
            base.join("cgroup.subtree_control"),
            "+memory +cpu +pids".into(),
        )?;
        let group = base.join(tenant);
        create(&group)?;
        write(group.join("memory.max"), l.memory_bytes.to_string())?;
        write(group.join("memory.swap.max"), "0".into()).ok();
        write(group.join("pids.max"), l.pids.to_string())?;
        Ok(vec![group.join("cgroup.procs")])
    }

    fn limit_cpu(&self, tenant: &str, quota_us: u64) -> Result<(), CgroupError> {
        write(
            self.base().join(tenant).join("cpu.max"),
            format!("{quota_us} {CPU_PERIOD_US}"),
        )
    }

    fn remove(&self, tenant: &str) -> Result<(), CgroupError> {
        remove_dir(self.base().join(tenant))
    }

    fn remove_instance(&self) -> Result<(), CgroupError> {
        remove_dir(self.base())
    }

    fn member_path(&self, tenant: &str) -> String {
        format!("{}/{tenant}", self.instance)
    }

    fn version(&self) -> &'static str {
        "v2"
    }

    fn memory_usage(&self, tenant: &str) -> Option<u64> {
        read_u64(self.base().join(tenant).join("memory.current"))
    }

    fn procs(&self, tenant: &str) -> Vec<u32> {
        read_procs(self.base().join(tenant).join("cgroup.procs"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enables_controllers_and_writes_limits() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("system.slice/bh.service")).unwrap();
        let v2 = V2::new(root.path(), "0::/system.slice/bh.service\n", "bulkhead-2").unwrap();
        let join = v2
            .prepare(
                "clinic",
                CgroupLimits {
                    memory_bytes: 1 << 28,
                    pids: 64,
                    cpu_quota_us: 100_000,
                },
            )
            .unwrap();
        let read = |p: &str| {
            std::fs::read_to_string(root.path().join("system.slice/bh.service").join(p)).unwrap()
        };
        assert_eq!(read("cgroup.subtree_control"), "+memory +cpu +pids");
        assert_eq!(
            read("bulkhead-2/cgroup.subtree_control"),
            "+memory +cpu +pids"
        );
        assert_eq!(
            read("bulkhead-2/clinic/memory.max"),
            (1u64 << 28).to_string()
        );
        assert_eq!(read("bulkhead-2/clinic/cpu.max"), "100000 100000");
        assert_eq!(read("bulkhead-2/clinic/pids.max"), "64");
        assert_eq!(
            join,
            vec![root
                .path()
                .join("system.slice/bh.service/bulkhead-2/clinic/cgroup.procs")]
        );
        let group = root
            .path()
            .join("system.slice/bh.service/bulkhead-2/clinic");
        std::fs::write(group.join("memory.current"), "2097152\n").unwrap();
        std::fs::write(group.join("cgroup.procs"), "7\n").unwrap();
        assert_eq!(v2.memory_usage("clinic"), Some(2 << 20));
        assert_eq!(v2.procs("clinic"), vec![7]);
    }
}
