//! Tenants over time: number ownership, removal, and a supervisor restart
//! that brings every tenant back with its data, ports and tokens.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn a_number_has_one_owner_and_removal_releases_it_and_stops_the_worker() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    // Claiming clinic's number for another tenant is refused, clearly, exit 1.
    let out = sup.cli(&["tenant", "add", "rival", "--number", "+15550100"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("+15550100") && err.contains("already belongs to tenant clinic"),
        "{err}"
    );
    assert!(
        !sup.cli(&["tenant", "show", "rival"]).status.success(),
        "the refused tenant was not left behind"
    );
    sup.add_tenant("rival", &["+15550900"]);
    let out = sup.cli(&["number", "add", "rival", "1-555-0100"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let pid = clinic["pid"].as_u64().unwrap();
    assert!(alive(pid));
    let data_dir = sup.state_dir().join("tenants/clinic");
    assert!(data_dir.join("tenant.db").exists());
    sup.cli_json(&["tenant", "remove", "clinic"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the worker was stopped");
    assert!(!data_dir.exists(), "the tenant's data was deleted");
    let reply = udp_exchange(
        sup.sip,
        &invite("+15550100", "after-remove"),
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(
        reply.starts_with("SIP/2.0 404"),
        "the number no longer routes: {reply}"
    );

    // The number is free again.
    sup.cli_json(&["number", "add", "rival", "+15550100"]);
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "{out}");
    let list = sup.cli_json(&["tenant", "list"]);
    assert_eq!(list["tenants"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["tenants"][0]["numbers"],
        serde_json::json!(["+15550100", "+15550900"])
    );
    // Released again, it 404s again.
    sup.cli_json(&["number", "remove", "+15550100"]);
    let reply = udp_exchange(
        sup.sip,
        &invite("+15550100", "after-release"),
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(reply.starts_with("SIP/2.0 404"), "{reply}");
}

#[test]
fn restarting_the_supervisor_brings_tenants_back_with_their_data() {
    let mut sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 2, "u1");
    assert!(ok, "{out}");
    let token = clinic["token"].as_str().unwrap();
    let port = clinic["http_port"].as_u64().unwrap() as u16;
    let before = settled_calls(port, token);
    assert_eq!(before.len(), 2);
    let old_pid = clinic["pid"].as_u64().unwrap();

    sup.stop();
    assert!(!alive(old_pid), "workers stop with their supervisor");
    sup.boot();
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["state"], "running", "{shown}");
    assert_eq!(
        (shown["http_port"].clone(), shown["sip_port"].clone()),
        (clinic["http_port"].clone(), clinic["sip_port"].clone())
    );
    assert_eq!(shown["uid"], clinic["uid"]);
    // Same token, same calls, read from the re-opened encrypted store.
    let after = settled_calls(port, token);
    assert_eq!(after, before);
    // And it takes new calls on its number.
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "{out}\n{}", sup.log());
    let calls = settled_calls(port, token);
    assert_eq!(calls.len(), 3, "{calls:?}\n{}\n{out}", sup.log());
}

#[test]
fn apply_is_idempotent_and_cli_errors_have_the_documented_exit_codes() {
    let sup = Supervisor::start();
    let file = sup.dir.path().join("tenants.toml");
    std::fs::write(&file, "[[tenant]]\nid = \"clinic\"\nnumbers = [\"+15550100\"]\n[tenant.agent]\ngreeting = \"Hi\"\n\n[[tenant]]\nid = \"insurance\"\nnumbers = [\"+15550200\"]\n").unwrap();
    let first = sup.cli_json(&["apply", file.to_str().unwrap()]);
    assert_eq!(first["created"].as_array().unwrap().len(), 2);
    assert!(first["created"][0]["token"]
        .as_str()
        .unwrap()
        .starts_with("bh_"));
    let second = sup.cli_json(&["apply", file.to_str().unwrap()]);
    assert_eq!(second["created"].as_array().unwrap().len(), 0);
    assert_eq!(
        second["unchanged"],
        serde_json::json!(["clinic", "insurance"])
    );
    // A limits table in the file is applied to an existing tenant, exactly.
    // So are trunk credentials, whose password the CLI reads from a file.
    let pass = sup.dir.path().join("clinic-trunk.pass");
    std::fs::write(&pass, "trunk-pass-1\n").unwrap();
    let text = format!(
        "[[tenant]]\nid = \"clinic\"\nnumbers = [\"+15550100\"]\ntrunk_allow = [\"127.0.0.9\"]\n\
[tenant.limits]\ncalls_per_second = 7\n[tenant.trunk_auth]\nusername = \"carrier\"\npassword_file = {:?}\n\n\
[[tenant]]\nid = \"insurance\"\nnumbers = [\"+15550200\"]\n",
        pass.to_str().unwrap()
    );
    std::fs::write(&file, &text).unwrap();
    let third = sup.cli_json(&["apply", file.to_str().unwrap()]);
    assert_eq!(third["updated"], serde_json::json!(["clinic"]), "{third}");
    let clinic = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(clinic["limits"]["calls_per_second"], 7, "{clinic}");
    assert_eq!(
        clinic["trunk_allow"],
        serde_json::json!(["127.0.0.9/32"]),
        "{clinic}"
    );
    assert_eq!(clinic["trunk_auth_username"], "carrier", "{clinic}");
    let again = sup.cli_json(&["apply", file.to_str().unwrap()]);
    assert_eq!(
        again["unchanged"],
        serde_json::json!(["clinic", "insurance"])
    );
    // A new password is a change; a missing password file changes nothing.
    std::fs::write(&pass, "trunk-pass-2\n").unwrap();
    let changed = sup.cli_json(&["apply", file.to_str().unwrap()]);
    assert_eq!(
        changed["updated"],
        serde_json::json!(["clinic"]),
        "{changed}"
    );
    std::fs::remove_file(&pass).unwrap();
    let missing = sup.cli(&["apply", file.to_str().unwrap()]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("trunk password file"));

    let token = sup.cli_json(&[
        "tenant",
        "token",
        "clinic",
        "--name",
        "ci",
        "--expires",
        "1h",
    ]);
    assert_eq!(token["name"], "ci");
    assert!(token["expires_at"].is_string() && token["token"].as_str().unwrap().starts_with("bh_"));
    let port = sup.cli_json(&["tenant", "show", "clinic"])["http_port"]
        .as_u64()
        .unwrap() as u16;
    assert_eq!(http_get(port, "/v1/calls", token["token"].as_str()).0, 200);

    assert_eq!(
        sup.cli(&["tenant", "add", "Bad_Id"]).status.code(),
        Some(2),
        "bad usage"
    );
    assert_eq!(
        sup.cli(&["tenant", "add", "x", "--number", "abc"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        sup.cli(&["tenant", "show", "nobody"]).status.code(),
        Some(1),
        "operation failed"
    );
    assert_eq!(
        sup.cli(&["tenant", "add", "clinic"]).status.code(),
        Some(1),
        "exists"
    );
    let out = std::process::Command::new(BULKHEAD)
        .args(["status"])
        .env("BULKHEAD_SOCKET", "/nonexistent/admin.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is `bulkhead serve` running?"));
}

#[test]
fn concurrent_adds_get_distinct_uids_and_ports() {
    let sup = Supervisor::start();
    let socket = sup.socket();
    let children: Vec<_> = (0..6)
        .map(|i| {
            std::process::Command::new(BULKHEAD)
                .args([
                    "tenant",
                    "add",
                    &format!("t{i}"),
                    "--number",
                    &format!("+1555060{i}"),
                    "--json",
                ])
                .env("BULKHEAD_SOCKET", &socket)
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let added: Vec<serde_json::Value> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "{}", sup.log());
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect();
    let distinct = |key: &str| {
        added
            .iter()
            .map(|t| t[key].to_string())
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    assert_eq!(
        (distinct("uid"), distinct("sip_port"), distinct("http_port")),
        (6, 6, 6)
    );
}

#[test]
fn workers_die_with_a_killed_supervisor() {
    let mut sup = Supervisor::start();
    let t = sup.add_tenant("clinic", &["+15550100"]);
    let pid = t["pid"].as_u64().unwrap();
    sup.kill_hard();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!alive(pid), "the worker outlived a SIGKILLed supervisor");
    // A new supervisor on the same state dir takes over its ports and data.
    sup.boot();
    assert_eq!(
        sup.cli_json(&["tenant", "show", "clinic"])["state"],
        "running"
    );
}

#[test]
fn stopping_the_supervisor_stops_every_worker_and_kills_one_that_will_not_stop() {
    let mut sup = Supervisor::start();
    let pids: Vec<u64> = [
        ("clinic", "+15550100"),
        ("agency", "+15550200"),
        ("firm", "+15550300"),
    ]
    .iter()
    .map(|(id, n)| sup.add_tenant(id, &[n])["pid"].as_u64().unwrap())
    .collect();
    // A worker that cannot act on SIGTERM (stopped) is killed after the
    // grace; the others exit on their own meanwhile.
    let stuck = nix::unistd::Pid::from_raw(pids[1] as i32);
    nix::sys::signal::kill(stuck, nix::sys::signal::Signal::SIGSTOP).unwrap();
    sup.signal(nix::sys::signal::Signal::SIGINT);
    let status = sup
        .wait_exit(Duration::from_secs(30))
        .expect("the supervisor exits on its own");
    assert!(status.success(), "{status:?}\n{}", sup.log());
    for pid in pids {
        assert!(!alive(pid), "worker {pid} outlived the supervisor's stop");
    }
    assert!(sup.log().contains("stopping workers"), "{}", sup.log());
}

#[test]
fn a_restarted_supervisor_kills_processes_left_in_a_tenants_cgroup() {
    let mut sup = Supervisor::start();
    let t = sup.add_tenant("clinic", &["+15550100"]);
    let procs = memory_cgroup_of(t["pid"].as_u64().unwrap()).join("cgroup.procs");
    sup.kill_hard();
    // A process that outlived its supervisor (as if the parent-death signal
    // had not fired), still in the tenant's group.
    let mut leftover = std::process::Command::new("sleep")
        .arg("600")
        .spawn()
        .unwrap();
    std::fs::write(&procs, leftover.id().to_string()).unwrap();
    sup.boot();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = leftover.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "the leftover survived a restart");
        std::thread::sleep(Duration::from_millis(20));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert!(sup.log().contains("left behind"), "{}", sup.log());
    assert_eq!(
        sup.cli_json(&["tenant", "show", "clinic"])["state"],
        "running"
    );
}

#[test]
fn a_tenant_whose_port_was_taken_while_down_is_listed_as_failed_with_the_reason() {
    let mut sup = Supervisor::start();
    let t = sup.add_tenant("clinic", &["+15550100"]);
    sup.stop();
    let port = t["sip_port"].as_u64().unwrap() as u16;
    let squatter = std::net::UdpSocket::bind(("127.0.0.1", port)).unwrap();
    sup.boot();
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["state"], "failed", "{shown}");
    let reason = shown["last_failure"].as_str().unwrap();
    assert!(
        reason.contains(&port.to_string()) && reason.contains("in use"),
        "{reason}"
    );
    let reply = udp_exchange(
        sup.sip,
        &invite("+15550100", "down-2"),
        Duration::from_secs(3),
    )
    .unwrap();
    assert!(
        reply.starts_with("SIP/2.0 503"),
        "its number answers 503, not 404: {reply}"
    );
    drop(squatter);
}

#[test]
fn a_taken_metrics_address_stops_start_up_with_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "state_dir = \"{d}/state\"\nrun_dir = \"{d}/run\"\nsip_listen = \"127.0.0.1:0\"\nmetrics_listen = \"{m}\"\n",
            d = dir.path().display(),
            m = taken.local_addr().unwrap()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BULKHEAD)
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("failed to bind metrics_listen"), "{err}");
}

/// `apply` starts new tenants several at once: twelve of them (more than
/// start together), one claiming a number another tenant holds. The failure
/// names exactly the tenants it created meanwhile, and no further tenant
/// starts; the corrected file creates the rest, each with its own uid and
/// ports.
#[test]
fn apply_starts_new_tenants_together_and_a_failure_names_those_it_created() {
    let sup = Supervisor::start();
    sup.add_tenant("existing", &["+15550999"]);
    let file = sup.dir.path().join("many.toml");
    let write = |taken: bool| {
        let text: String = (0..12)
            .map(|i| {
                let n = if i == 6 && taken {
                    "+15550999".to_string()
                } else {
                    format!("+1555077{i:04}")
                };
                format!("[[tenant]]\nid = \"t{i}\"\nnumbers = [\"{n}\"]\n\n")
            })
            .collect();
        std::fs::write(&file, text).unwrap();
    };
    write(true);
    let failed = sup.cli(&["apply", file.to_str().unwrap()]);
    assert!(!failed.status.success());
    let err = String::from_utf8_lossy(&failed.stderr).into_owned();
    assert!(err.contains("+15550999"), "{err}");
    let named: std::collections::BTreeSet<String> = err
        .split("created before it failed: ")
        .nth(1)
        .and_then(|rest| rest.split(" (").next())
        .map(|ids| ids.split(", ").map(str::to_owned).collect())
        .unwrap_or_default();
    let ids = |sup: &Supervisor| -> std::collections::BTreeSet<String> {
        sup.cli_json(&["tenant", "list"])["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .filter(|id| id.starts_with('t'))
            .collect()
    };
    assert_eq!(ids(&sup), named, "{err}");
    assert!(!named.contains("t6") && named.len() < 12, "{err}");

    write(false);
    let fixed = sup.cli_json(&["apply", file.to_str().unwrap()]);
    let created: Vec<&str> = fixed["created"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(created.len() + named.len(), 12, "{fixed}");
    let list = sup.cli_json(&["tenant", "list"]);
    let tenants = list["tenants"].as_array().unwrap();
    assert_eq!(tenants.len(), 13, "{list}");
    assert!(tenants.iter().all(|t| t["state"] == "running"), "{list}");
    let distinct = |key: &str| {
        let values: std::collections::BTreeSet<u64> =
            tenants.iter().map(|t| t[key].as_u64().unwrap()).collect();
        values.len()
    };
    assert_eq!(
        (distinct("uid"), distinct("sip_port"), distinct("http_port")),
        (13, 13, 13),
        "{list}"
    );
}
