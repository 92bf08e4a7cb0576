//! Checking a worker from the outside before a single call is routed to it:
//! what `/proc/PID/status` and `/proc/PID/ns/*` say must match the plan. A
//! worker that fails is killed and its tenant marked failed with the reason.

use std::collections::HashMap;
use std::fs;
use std::path::PathBuf;

/// Namespaces every isolated worker must have to itself.
pub const NAMESPACES: &[&str] = &["mnt", "pid", "net", "ipc", "uts"];

/// What the plan promised about one worker.
#[derive(Debug, Clone, Copy)]
pub struct Expected {
    pub uid: u32,
    pub gid: u32,
    /// Root mode: own uid, empty capability sets, own namespaces.
    pub isolated: bool,
}

/// Why a worker failed verification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("cannot read /proc/{pid}/{what}: the worker is gone")]
    Gone { pid: u32, what: &'static str },
    #[error("{field} is {found:?}, expected {expected}")]
    Status {
        field: &'static str,
        found: String,
        expected: String,
    },
    #[error("its {0} namespace is the supervisor's own")]
    HostNamespace(&'static str),
    #[error("it is not in its tenant's cgroup {0}")]
    Cgroup(String),
    #[error("its {ns} namespace is shared with the worker of tenant {other}")]
    SharedNamespace { ns: &'static str, other: String },
}

/// Verifies worker `pid` against `expected` and returns its namespaces (the
/// text of each `/proc/PID/ns/NAME` link, which names the kind too).
///
/// `others` maps the namespaces of every other running worker, as returned
/// here when it was verified, to its tenant and pid: a lookup per namespace,
/// where reading every other worker's links from `/proc` cost each start 5
/// syscalls per running tenant. A match is read again from that pid before
/// it counts: a namespace's number is reused once the worker that held it
/// is gone, and its death may not have been noticed yet.
pub fn verify(
    pid: u32,
    expected: Expected,
    others: &HashMap<PathBuf, (String, u32)>,
) -> Result<Vec<PathBuf>, VerifyError> {
    let status =
        fs::read_to_string(format!("/proc/{pid}/status")).map_err(|_| VerifyError::Gone {
            pid,
            what: "status",
        })?;
    check_status(&status, expected)?;
    if !expected.isolated {
        return Ok(Vec::new());
    }
    check_namespaces(pid, others)
}

/// Each of `pid`'s [`NAMESPACES`] must be neither ours nor, read again, one
/// of `others`'; returns them.
fn check_namespaces(
    pid: u32,
    others: &HashMap<PathBuf, (String, u32)>,
) -> Result<Vec<PathBuf>, VerifyError> {
    let mut mine = Vec::with_capacity(NAMESPACES.len());
    for ns in NAMESPACES {
        let link = namespace(pid, ns).ok_or(VerifyError::Gone { pid, what: "ns" })?;
        if Some(&link) == namespace_of_self(ns).as_ref() {
            return Err(VerifyError::HostNamespace(ns));
        }
        if let Some((other, other_pid)) = others.get(&link) {
            if namespace(*other_pid, ns).as_ref() == Some(&link) {
                return Err(VerifyError::SharedNamespace {
                    ns,
                    other: other.clone(),
                });
            }
        }
        mine.push(link);
    }
    Ok(mine)
}

fn namespace(pid: u32, ns: &str) -> Option<std::path::PathBuf> {
    fs::read_link(format!("/proc/{pid}/ns/{ns}")).ok()
}

fn namespace_of_self(ns: &str) -> Option<std::path::PathBuf> {
    fs::read_link(format!("/proc/self/ns/{ns}")).ok()
}

/// Checks that `/proc/PID/cgroup` text puts the worker in `member` (the
/// tenant's group path suffix) in at least `hierarchies` hierarchies.
pub fn check_cgroup(text: &str, member: &str, hierarchies: usize) -> Result<(), VerifyError> {
    let suffix = format!("/{member}");
    let inside = text.lines().filter(|l| l.ends_with(&suffix)).count();
    if inside >= hierarchies {
        Ok(())
    } else {
        Err(VerifyError::Cgroup(member.to_owned()))
    }
}

/// The status checks, on the text of `/proc/PID/status`.
pub fn check_status(status: &str, expected: Expected) -> Result<(), VerifyError> {
    let field = |name: &'static str| -> Result<&str, VerifyError> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
            .ok_or(VerifyError::Status {
                field: name,
                found: "absent".into(),
                expected: "present".into(),
            })
    };
    let want =
        |name: &'static str, ok: bool, found: &str, expected: String| -> Result<(), VerifyError> {
            if ok {
                Ok(())
            } else {
                Err(VerifyError::Status {
                    field: name,
                    found: found.to_owned(),
                    expected,
                })
            }
        };
    let nnp = field("NoNewPrivs")?;
    want("NoNewPrivs", nnp == "1", nnp, "1".into())?;
    // 2 = filter mode: the worker installed its allowlist before reporting Ready.
    let seccomp = field("Seccomp")?;
    want("Seccomp", seccomp == "2", seccomp, "2 (filter)".into())?;
    if !expected.isolated {
        return Ok(());
    }
    for (name, id) in [("Uid", expected.uid), ("Gid", expected.gid)] {
        let v = field(name)?;
        let all =
            v.split_whitespace().count() == 4 && v.split_whitespace().all(|x| x == id.to_string());
        want(name, all, v, format!("{id} in all four fields"))?;
    }
    let groups = field("Groups")?;
    want("Groups", groups.is_empty(), groups, "none".into())?;
    for name in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        let v = field(name)?;
        want(name, v.chars().all(|c| c == '0'), v, "0".into())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Name:\tbulkhead-worker\nUid:\t200001\t200001\t200001\t200001\nGid:\t200001\t200001\t200001\t200001\n\
Groups:\t\nCapInh:\t0000000000000000\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapBnd:\t0000000000000000\n\
CapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n";

    fn expected() -> Expected {
        Expected {
            uid: 200001,
            gid: 200001,
            isolated: true,
        }
    }

    #[test]
    fn a_worker_as_planned_passes() {
        assert_eq!(check_status(GOOD, expected()), Ok(()));
    }

    #[test]
    fn each_deviation_is_named() {
        for (from, to, field) in [
            ("NoNewPrivs:\t1", "NoNewPrivs:\t0", "NoNewPrivs"),
            ("Seccomp:\t2", "Seccomp:\t0", "Seccomp"),
            (
                "Uid:\t200001\t200001\t200001\t200001",
                "Uid:\t200001\t0\t200001\t200001",
                "Uid",
            ),
            (
                "Gid:\t200001\t200001\t200001\t200001",
                "Gid:\t0\t0\t0\t0",
                "Gid",
            ),
            ("Groups:\t", "Groups:\t0", "Groups"),
            (
                "CapBnd:\t0000000000000000",
                "CapBnd:\t000001ffffffffff",
                "CapBnd",
            ),
            (
                "CapInh:\t0000000000000000",
                "CapInh:\t0000000000000400",
                "CapInh",
            ),
        ] {
            let bad = GOOD.replace(from, to);
            match check_status(&bad, expected()) {
                Err(VerifyError::Status { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
        let missing = GOOD.replace("CapAmb:\t0000000000000000\n", "");
        assert!(matches!(
            check_status(&missing, expected()),
            Err(VerifyError::Status {
                field: "CapAmb",
                ..
            })
        ));
    }

    #[test]
    fn without_isolation_only_no_new_privs_is_required() {
        let weak = GOOD.replace(
            "Uid:\t200001\t200001\t200001\t200001",
            "Uid:\t1000\t1000\t1000\t1000",
        );
        assert_eq!(
            check_status(
                &weak,
                Expected {
                    isolated: false,
                    ..expected()
                }
            ),
            Ok(())
        );
    }

    #[test]
    fn this_test_process_is_not_a_valid_worker() {
        // Our own process: not the expected uid, not no_new_privs, shares our namespaces.
        let me = std::process::id();
        assert!(verify(me, expected(), &HashMap::new()).is_err());
    }

    #[test]
    fn cgroup_membership_is_checked_per_hierarchy() {
        let v1 = "8:pids:/bulkhead-1/clinic\n4:memory:/x/bulkhead-1/clinic\n1:cpu,cpuacct:/bulkhead-1/clinic\n0::/\n";
        assert_eq!(check_cgroup(v1, "bulkhead-1/clinic", 3), Ok(()));
        assert!(check_cgroup(v1, "bulkhead-1/other", 1).is_err());
        let escaped = v1.replace("8:pids:/bulkhead-1/clinic", "8:pids:/");
        assert!(
            check_cgroup(&escaped, "bulkhead-1/clinic", 3).is_err(),
            "out of the pids hierarchy"
        );
        assert_eq!(
            check_cgroup("0::/svc/bulkhead-1/clinic\n", "bulkhead-1/clinic", 1),
            Ok(())
        );
    }

    /// A process in five namespaces of its own (`unshare`, as root): it
    /// passes alone; a registered worker holding one of them is caught; a
    /// stale registration (its pid gone, the number reused) is not.
    #[test]
    fn a_namespace_is_shared_only_if_its_holder_still_holds_it() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root (unshare), as scripts/test runs"
        );
        let mut holder = std::process::Command::new("unshare")
            .args([
                "--mount", "--uts", "--ipc", "--net", "--pid", "--fork", "sleep", "30",
            ])
            .spawn()
            .unwrap();
        let unshare = holder.id();
        let children = format!("/proc/{unshare}/task/{unshare}/children");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let pid: u32 = loop {
            let found = fs::read_to_string(&children).unwrap_or_default();
            if let Some(p) = found.split_whitespace().next() {
                // Past the fork, `sleep` may not have exec'd yet; its
                // namespaces are already its own.
                break p.parse().unwrap();
            }
            assert!(std::time::Instant::now() < deadline, "unshare never forked");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let alone = check_namespaces(pid, &HashMap::new());
        let mine = alone.expect("its own namespaces");
        assert_eq!(mine.len(), NAMESPACES.len());

        let mut others = HashMap::new();
        others.insert(mine[2].clone(), ("insurance".to_string(), pid));
        match check_namespaces(pid, &others) {
            Err(VerifyError::SharedNamespace { ns, other }) => {
                assert_eq!((ns, other.as_str()), ("net", "insurance"));
            }
            other => panic!("{other:?}"),
        }
        // The registered holder has exited: its entry is stale.
        let mut gone = std::process::Command::new("true").spawn().unwrap();
        let gone_pid = gone.id();
        gone.wait().unwrap();
        others.insert(mine[2].clone(), ("insurance".to_string(), gone_pid));
        assert_eq!(check_namespaces(pid, &others).ok(), Some(mine));
        let _ = holder.kill();
        let _ = holder.wait();
    }
}
