//! Without root (development mode): `bulkhead serve` still runs, each
//! worker still gets its own namespaces and minimal root through a user
//! namespace, Landlock and seccomp; the audit shows credentials and cgroups
//! inactive, and every probe still denied by at least two layers.

mod common;

use common::*;

const NOBODY: u32 = 65534;

#[test]
fn without_root_workers_are_still_namespaced_and_the_audit_says_what_is_missing() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test starts a supervisor as another, unprivileged user"
    );
    let sup = Supervisor::start_as(NOBODY);
    assert!(
        sup.log().contains("NOT ROOT"),
        "the missing layers are said at start-up:\n{}",
        sup.log()
    );
    let a = sup.add_tenant("alpha", &["+15550300"]);
    sup.add_tenant("beta", &["+15550400"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", a["pid"])).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(uid_line.contains(&NOBODY.to_string()), "{uid_line}");
    for ns in ["mnt", "pid", "net"] {
        let host = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(
            std::fs::read_link(format!("/proc/{}/ns/{ns}", a["pid"])).unwrap(),
            host,
            "{ns}"
        );
    }
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550300", 2, "u1");
    assert!(ok, "{out}\n{}", sup.log());

    // Without root there are no task or memory limits (no cgroups, no own
    // uid for the rlimits): the audit must say so, as escapes, and exit 1.
    let out = sup.cli(&["audit", "alpha", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let t = &report["tenants"][0];
    let active = |name: &str| {
        t["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["name"] == name)
            .unwrap()["active"]
            .clone()
    };
    assert_eq!(active("credentials"), false);
    assert_eq!(active("cgroups"), false);
    for layer in ["namespaces", "network", "landlock", "seccomp"] {
        assert_eq!(active(layer), true, "{layer}");
    }
    for p in t["probes"].as_array().unwrap() {
        if p["name"] == "exhaust_tasks" || p["name"] == "exhaust_memory" {
            assert_eq!(p["outcome"], "escaped", "{p}");
            continue;
        }
        assert_eq!(p["outcome"], "denied", "{p}");
        if p["without_layers"] == "escaped" {
            assert!(p["stopped_by"].as_array().unwrap().len() >= 2, "{p}");
        }
    }
}
