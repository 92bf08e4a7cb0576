//! The worker's sandbox seen from outside, through `/proc`: its own
//! namespaces, a root that shows nothing of other tenants or the
//! supervisor, a pid namespace with only itself, a network with only
//! loopback. Root only: without root there is no sandbox to test, and the
//! supervisor says so at start-up.

mod common;

use std::collections::BTreeSet;

use common::*;

fn root_required() -> bool {
    nix::unistd::geteuid().is_root()
}

fn names(dir: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn each_worker_has_its_own_namespaces() {
    assert!(
        root_required(),
        "the sandbox tests run as root (scripts/test in CI is root)"
    );
    let sup = Supervisor::start();
    let a = sup.add_tenant("alpha", &["+15550300"]);
    let b = sup.add_tenant("beta", &["+15550400"]);
    for ns in ["mnt", "pid", "net", "ipc", "uts"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        let wa = std::fs::read_link(format!("/proc/{}/ns/{ns}", a["pid"])).unwrap();
        let wb = std::fs::read_link(format!("/proc/{}/ns/{ns}", b["pid"])).unwrap();
        assert_ne!(wa, host, "{ns} namespace shared with the host");
        assert_ne!(wa, wb, "{ns} namespace shared between tenants");
    }
}

/// Field 41 of `/proc/PID/task/TID/stat`: the scheduling policy.
fn policies(pid: &serde_json::Value) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| {
            let stat = std::fs::read_to_string(t.unwrap().path().join("stat")).unwrap();
            // After the command name's closing parenthesis: field 3 onwards.
            let rest = &stat[stat.rfind(')').unwrap() + 2..];
            rest.split(' ').nth(41 - 3).unwrap().parse().unwrap()
        })
        .collect()
}

#[test]
fn workers_run_as_batch_and_never_preempt_the_router() {
    assert!(
        root_required(),
        "the sandbox tests run as root (scripts/test in CI is root)"
    );
    let sup = Supervisor::start();
    let a = sup.add_tenant("alpha", &["+15550300"]);
    let worker = policies(&a["pid"]);
    assert!(worker.len() > 1, "the worker's threads: {worker:?}");
    assert!(
        worker.iter().all(|p| *p == libc::SCHED_BATCH as u32),
        "worker threads' policies: {worker:?}"
    );
    let supervisor = policies(&serde_json::json!(sup.pid()));
    assert!(
        supervisor.iter().all(|p| *p == libc::SCHED_OTHER as u32),
        "supervisor threads' policies: {supervisor:?}"
    );
}

#[test]
fn a_worker_sees_only_its_own_minimal_root() {
    assert!(
        root_required(),
        "the sandbox tests run as root (scripts/test in CI is root)"
    );
    let sup = Supervisor::start();
    let a = sup.add_tenant("alpha", &["+15550300"]);
    sup.add_tenant("beta", &["+15550400"]);
    let root = format!("/proc/{}/root", a["pid"]);
    let top = names(&root);
    for absent in [
        "tenants", "state", "home", "root", "var", "run", "work", "tmp-bh",
    ] {
        assert!(
            !top.contains(absent),
            "{absent} visible in the worker's root: {top:?}"
        );
    }
    for present in ["data", "usr", "proc", "tmp", "dev", "bulkhead"] {
        assert!(top.contains(present), "{present} missing from {top:?}");
    }
    // Its own data, and nothing else of the state dir.
    assert!(names(&format!("{root}/data")).contains("tenant.db"));
    assert_eq!(
        names(&format!("{root}/bulkhead")),
        BTreeSet::from(["bulkhead-worker".to_string()])
    );
    assert_eq!(
        names(&format!("{root}/dev")),
        BTreeSet::from(["null", "urandom", "zero"].map(String::from))
    );
    // Of /etc, only the loader cache and Debian's alternatives symlinks
    // (the speech libraries resolve libblas through them): no passwd, no
    // shadow, no host configuration.
    let etc = names(&format!("{root}/etc"));
    assert!(
        etc.iter()
            .all(|e| e == "ld.so.cache" || e == "alternatives"),
        "{etc:?}"
    );
    assert!(std::fs::read_dir(format!("{root}/etc/alternatives"))
        .unwrap()
        .flatten()
        .all(|e| e.file_type().unwrap().is_symlink() || e.file_name() == "README"));
    // Its /proc shows its own pid namespace: itself, as pid 1, and nothing else.
    let pids: BTreeSet<String> = names(&format!("{root}/proc"))
        .into_iter()
        .filter(|n| n.parse::<u32>().is_ok())
        .collect();
    assert_eq!(pids, BTreeSet::from(["1".to_string()]));
    // The root itself is read-only; a write lands nowhere.
    let mounts = std::fs::read_to_string(format!("/proc/{}/mounts", a["pid"])).unwrap();
    let root_line = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/"))
        .unwrap();
    assert!(
        root_line
            .split_whitespace()
            .nth(3)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{root_line}"
    );
}

#[test]
fn a_worker_has_no_network_but_loopback_and_still_serves_calls() {
    assert!(
        root_required(),
        "the sandbox tests run as root (scripts/test in CI is root)"
    );
    let sup = Supervisor::start();
    let a = sup.add_tenant("alpha", &["+15550300"]);
    let ifaces = interfaces(&a["pid"].to_string());
    assert_eq!(ifaces, ["lo"], "the worker's namespace has only loopback");
    // Calls still flow: every socket it uses was bound outside and passed in.
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550300", 2, "u1");
    assert!(ok, "{out}\n{}", sup.log());
    let trunk: std::net::SocketAddr = format!("127.0.0.1:{}", a["sip_port"]).parse().unwrap();
    let (ok, out) = sipp_uac(sup.dir.path(), trunk, "+15550300", 1, "t1");
    assert!(ok, "trunk over TCP: {out}");
}

#[test]
fn each_worker_runs_in_its_own_cgroup_with_the_configured_limits() {
    assert!(
        root_required(),
        "the sandbox tests run as root (scripts/test in CI is root)"
    );
    let sup = Supervisor::start();
    let a = sup.add_tenant("alpha", &["+15550300"]);
    let b = sup.add_tenant("beta", &["+15550400"]);
    let groups = |t: &serde_json::Value| {
        std::fs::read_to_string(format!("/proc/{}/cgroup", t["pid"])).unwrap()
    };
    let (ga, gb) = (groups(&a), groups(&b));
    let v2 = std::fs::read_to_string("/proc/self/cgroup")
        .unwrap()
        .lines()
        .all(|l| l.starts_with("0::"));
    // (controller file root, line selector) for v2 or v1.
    let path_of = |text: &str, ctrl: &str| -> String {
        text.lines()
            .find_map(|l| {
                let mut p = l.splitn(3, ':');
                let (_, ctrls, path) = (p.next()?, p.next()?, p.next()?);
                let hit = if v2 {
                    ctrls.is_empty()
                } else {
                    ctrls.split(',').any(|c| c == ctrl)
                };
                hit.then(|| path.to_string())
            })
            .unwrap()
    };
    for ctrl in ["memory", "pids", "cpu"] {
        let (pa, pb) = (path_of(&ga, ctrl), path_of(&gb, ctrl));
        assert!(
            pa.ends_with("/alpha") && pb.ends_with("/beta"),
            "{ctrl}: {pa} / {pb}"
        );
        assert_ne!(pa, pb);
    }
    let file = |ctrl: &str, name: &str| {
        let base = if v2 {
            "/sys/fs/cgroup".to_string()
        } else {
            format!("/sys/fs/cgroup/{ctrl}")
        };
        std::fs::read_to_string(format!("{base}{}/{name}", path_of(&ga, ctrl)))
            .unwrap()
            .trim()
            .to_string()
    };
    if v2 {
        assert_eq!(file("pids", "pids.max"), "64");
        assert_eq!(file("memory", "memory.max"), (256u64 << 20).to_string());
        assert_eq!(file("cpu", "cpu.max"), "100000 100000");
    } else {
        assert_eq!(file("pids", "pids.max"), "64");
        assert_eq!(
            file("memory", "memory.limit_in_bytes"),
            (256u64 << 20).to_string()
        );
        assert_eq!(file("cpu", "cpu.cfs_quota_us"), "100000");
    }
    // Removing the tenant removes its groups.
    let pids_dir = if v2 {
        format!("/sys/fs/cgroup{}", path_of(&ga, "pids"))
    } else {
        format!("/sys/fs/cgroup/pids{}", path_of(&ga, "pids"))
    };
    assert!(std::path::Path::new(&pids_dir).exists());
    sup.cli_json(&["tenant", "remove", "alpha"]);
    assert!(
        !std::path::Path::new(&pids_dir).exists(),
        "{pids_dir} left behind"
    );
    // Stopping the supervisor removes the other tenants' groups and its
    // own directory of them: no empty tree per supervisor that ever ran.
    let beta_dir = std::path::PathBuf::from(if v2 {
        format!("/sys/fs/cgroup{}", path_of(&gb, "pids"))
    } else {
        format!("/sys/fs/cgroup/pids{}", path_of(&gb, "pids"))
    });
    let instance = beta_dir.parent().unwrap().to_owned();
    assert!(beta_dir.exists() && instance.exists());
    let mut sup = sup;
    sup.stop();
    assert!(!beta_dir.exists(), "{} left behind", beta_dir.display());
    assert!(!instance.exists(), "{} left behind", instance.display());
}

fn open_fds(pid: u32) -> BTreeSet<String> {
    names(&format!("/proc/{pid}/fd"))
}

/// `pid`'s descriptors of namespaces: fd number → `net:[…]` and the like.
fn namespace_fds(pid: u32) -> std::collections::BTreeMap<String, String> {
    open_fds(pid)
        .into_iter()
        .filter_map(|fd| {
            let link = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
            let link = link.to_string_lossy().into_owned();
            ["net:[", "uts:[", "ipc:["]
                .iter()
                .any(|k| link.starts_with(k))
                .then_some((fd, link))
        })
        .collect()
}

fn namespace_of(pid: u64, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn host_namespaces() -> BTreeSet<String> {
    ["net", "uts", "ipc"]
        .iter()
        .map(|k| namespace_of(u64::from(std::process::id()), k))
        .collect()
}

/// The namespaces the spawn server holds that are not its own: the set
/// it made for the next start. It makes that set after answering a start,
/// in its own thread for a moment, so this waits (a liveness bound, not a
/// speed check) until it holds one of each kind besides the host's.
fn made_ahead(server: u32) -> BTreeSet<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let own: BTreeSet<String> = ["net", "uts", "ipc"]
            .iter()
            .map(|k| namespace_of(u64::from(server), k))
            .collect();
        let held: BTreeSet<String> = namespace_fds(server)
            .into_values()
            .filter(|l| !own.contains(l))
            .collect();
        if held.len() == 3 && own == host_namespaces() {
            return held;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the spawn server holds no set made ahead: {held:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn a_start_enters_namespaces_made_for_it_alone() {
    assert!(
        root_required(),
        "the sandbox tests run as root (scripts/test in CI is root)"
    );
    let sup = Supervisor::start();
    let a = sup.add_tenant("alpha", &["+15550800"]);
    let server = spawn_server(&sup);
    let host = host_namespaces();
    let of = |w: &serde_json::Value| -> BTreeSet<String> {
        let pid = w["pid"].as_u64().unwrap();
        ["net", "uts", "ipc"]
            .iter()
            .map(|k| namespace_of(pid, k))
            .collect()
    };
    let held = made_ahead(server);
    assert_eq!(held.len(), 3, "one of each kind: {held:?}");
    assert!(held.is_disjoint(&host), "the host's: {held:?}");
    assert!(held.is_disjoint(&of(&a)), "alpha's: {held:?}");
    // The next start gets exactly that set, and a new one is made.
    let b = sup.add_tenant("beta", &["+15550900"]);
    assert_eq!(of(&b), held, "beta entered the namespaces made for it");
    let next = made_ahead(server);
    assert_eq!(next.len(), 3, "{next:?}");
    for used in [&held, &of(&a), &host] {
        assert!(next.is_disjoint(used), "{next:?} reuses {used:?}");
    }
    // Only loopback in a network namespace made ahead, as in one unshared.
    assert_eq!(interfaces(&b["pid"].to_string()), ["lo"]);
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550900", 1, "u1");
    assert!(ok, "{out}\n{}", sup.log());
}

#[test]
fn workers_come_from_a_spawn_server_that_holds_no_tenant_descriptors() {
    assert!(
        root_required(),
        "the sandbox tests run as root (scripts/test in CI is root)"
    );
    let sup = Supervisor::start();
    let a = sup.add_tenant("alpha", &["+15550500"]);
    let b = sup.add_tenant("beta", &["+15550600"]);
    let first = spawn_server(&sup);
    // Its standard streams, its socket to the supervisor, a pidfd of the
    // supervisor (for its children's parent-death check), and namespaces
    // (its own, to return to, and those made for the next start): nothing
    // of any tenant (the supervisor holds 5 descriptors per tenant).
    made_ahead(first);
    let namespaces: BTreeSet<String> = namespace_fds(first).into_keys().collect();
    assert_eq!(namespaces.len(), 6, "{namespaces:?}");
    let others: BTreeSet<String> = open_fds(first).difference(&namespaces).cloned().collect();
    assert_eq!(
        others,
        ["0", "1", "2", "3", "4"].map(String::from).into(),
        "the spawn server's descriptors"
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{first}/fd/4"))
            .unwrap()
            .to_string_lossy(),
        "anon_inode:[pidfd]"
    );
    let fdinfo = std::fs::read_to_string(format!("/proc/{first}/fdinfo/4")).unwrap();
    assert!(
        fdinfo
            .lines()
            .any(|l| l.split_whitespace().eq(["Pid:", &sup.pid().to_string()])),
        "{fdinfo}"
    );
    for worker in [&a, &b] {
        let worker = worker["pid"].as_u64().unwrap() as u32;
        let reaper: u32 = status_field(worker, "PPid:").parse().unwrap();
        assert_eq!(status_field(reaper, "Name:"), "bulkhead-reaper");
        assert_eq!(
            status_field(reaper, "PPid:"),
            sup.pid().to_string(),
            "cloned with CLONE_PARENT: the supervisor waits for the reaper"
        );
        assert!(open_fds(reaper).is_empty(), "the reaper holds nothing");
    }

    // A spawn server that dies is replaced at the next start, and the
    // workers it made are unaffected.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(100));
    let c = sup.add_tenant("gamma", &["+15550700"]);
    assert!(alive(c["pid"].as_u64().unwrap()));
    assert_ne!(spawn_server(&sup), first, "a new spawn server");
    for worker in [&a, &b] {
        assert!(alive(worker["pid"].as_u64().unwrap()), "{worker}");
    }
    let shown = sup.cli_json(&["tenant", "show", "alpha"]);
    assert_eq!(shown["pid"], a["pid"], "alpha's worker was not restarted");
}
