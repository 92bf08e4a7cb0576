//! `bulkhead audit`: every escape probe denied, each by at least two layers
//! on its own, each probe shown to escape with every layer off; and calls
//! keep flowing while the audit runs. Root only, like the sandbox itself.

mod common;

use common::*;

#[test]
fn every_probe_is_denied_by_at_least_two_independent_layers() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the audit tests run as root (scripts/test in CI is root)"
    );
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);
    let out = sup.cli(&["audit", "clinic", "--json"]);
    assert!(
        out.status.success(),
        "audit found an escape or failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tenant = &report["tenants"][0];
    assert_eq!(tenant["id"], "clinic");
    for layer in tenant["layers"].as_array().unwrap() {
        assert_eq!(layer["active"], true, "{layer}");
    }
    let probes = tenant["probes"].as_array().unwrap();
    let names: Vec<&str> = probes.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for expected in [
        "read_other_tenant_store",
        "list_other_tenant_dir",
        "read_master_key",
        "connect_other_tenant_http",
        "signal_other_worker",
        "ptrace_other_worker",
        "read_other_process_proc",
        "mount",
        "setuid_root",
        "raw_socket",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} not probed: {names:?}"
        );
    }
    let mut real = 0;
    for p in probes {
        assert_eq!(p["outcome"], "denied", "{p}");
        if p["without_layers"] == "escaped" {
            real += 1;
            let by = p["stopped_by"].as_array().unwrap();
            assert!(
                by.len() >= 2,
                "{} is stopped by fewer than two layers on their own: {p}",
                p["name"]
            );
        }
    }
    assert!(
        real >= 14,
        "only {real} probes could escape with every layer off; the rest prove nothing"
    );
}

#[test]
fn calls_keep_succeeding_while_the_audit_runs() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the audit tests run as root (scripts/test in CI is root)"
    );
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);
    std::thread::scope(|s| {
        let calls = s.spawn(|| sipp_uac(sup.dir.path(), sup.sip, "+15550100", 20, "u1"));
        let more = s.spawn(|| sipp_uac(sup.dir.path(), sup.sip, "+15550200", 20, "u1"));
        for _ in 0..3 {
            let out = sup.cli(&["audit", "--json"]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(report["tenants"].as_array().unwrap().len(), 2);
        }
        for h in [calls, more] {
            let (ok, out) = h.join().unwrap();
            assert!(ok, "calls failed during the audit:\n{out}\n{}", sup.log());
        }
    });
}
