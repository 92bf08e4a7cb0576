//! Supervision: a worker that dies comes back (its data intact, its
//! neighbours untouched); one that keeps dying is marked failed until an
//! admin resets it.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn kill9(pid: u64) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
}

#[test]
fn killed_workers_come_back_with_their_data_and_neighbours_never_notice() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 2, "u1");
    assert!(ok, "{out}");
    let token = clinic["token"].as_str().unwrap();
    let port = clinic["http_port"].as_u64().unwrap() as u16;
    let before = settled_calls(port, token);
    assert_eq!(before.len(), 2);

    std::thread::scope(|s| {
        // The neighbour under load the whole time.
        let load = s.spawn(|| sipp_uac(sup.dir.path(), sup.sip, "+15550200", 60, "u1"));
        let mut pid = clinic["pid"].as_u64().unwrap();
        for _ in 0..3 {
            kill9(pid);
            pid = back_up(&sup, "clinic", pid)["pid"].as_u64().unwrap();
        }
        let (ok, out) = load.join().unwrap();
        assert!(
            ok,
            "the neighbour failed calls while clinic crashed:\n{out}"
        );
    });

    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["restarts"], 3, "{shown}");
    assert!(
        shown["last_failure"]
            .as_str()
            .unwrap()
            .contains("signal: 9"),
        "{shown}"
    );
    // Same store, same token: the earlier records are all there, and it takes calls.
    let after = settled_calls(port, token);
    for call in &before {
        assert!(after.iter().any(|c| c["id"] == call["id"]), "lost {call}");
    }
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "{out}");
}

#[test]
fn a_worker_killed_mid_call_leaves_the_call_recorded_failed_not_missing() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let caller = Peer::new(sup.sip);
    caller.send(&invite("+15550100", "mid-call"));
    let ok = caller
        .expect("SIP/2.0 200", Duration::from_secs(5))
        .expect("answered");
    caller.send(&request("ACK", "+15550100", "mid-call", 1, &to_tag(&ok)));
    let pid = clinic["pid"].as_u64().unwrap();
    kill9(pid);
    back_up(&sup, "clinic", pid);
    let port = clinic["http_port"].as_u64().unwrap() as u16;
    let calls = settled_calls(port, clinic["token"].as_str().unwrap());
    let call = calls
        .iter()
        .find(|c| c["call_id"] == "mid-call")
        .unwrap_or_else(|| panic!("the call left no record: {calls:?}"));
    assert_eq!(call["outcome"], "failed", "{call}");
    assert!(call["ended_at"].is_string(), "{call}");
}

#[test]
fn a_crash_looping_worker_is_failed_until_reset() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let mut pid = clinic["pid"].as_u64().unwrap();
    // Five restarts are allowed within the window; the sixth death is final.
    for _ in 0..5 {
        kill9(pid);
        pid = back_up(&sup, "clinic", pid)["pid"].as_u64().unwrap();
    }
    kill9(pid);
    let deadline = Instant::now() + Duration::from_secs(10);
    let shown = loop {
        let shown = sup.cli_json(&["tenant", "show", "clinic"]);
        if shown["state"] == "failed" || Instant::now() > deadline {
            break shown;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(shown["state"], "failed", "{shown}");
    assert!(
        shown["last_failure"]
            .as_str()
            .unwrap()
            .contains("restarted more than 5 times"),
        "{shown}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        sup.cli_json(&["tenant", "show", "clinic"])["state"],
        "failed",
        "no restart after giving up"
    );
    let reply = udp_exchange(
        sup.sip,
        &invite("+15550100", "looping-1"),
        Duration::from_secs(3),
    )
    .unwrap();
    assert!(
        reply.starts_with("SIP/2.0 503") && reply.contains("Retry-After"),
        "{reply}"
    );

    let reset = sup.cli_json(&["tenant", "reset", "clinic"]);
    assert_eq!(reset["state"], "running", "{reset}");
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "{out}");
    // And an admin restart is a clean stop and start.
    let restarted = sup.cli_json(&["tenant", "restart", "clinic"]);
    assert_eq!(restarted["state"], "running");
    assert_ne!(restarted["pid"], reset["pid"]);
}

#[test]
fn a_hung_worker_behind_on_its_socket_misses_its_heartbeat_and_neighbours_never_notice() {
    // Limits high enough that the socket, not the router's limits, refuses.
    let sup = Supervisor::start_with(
        "[limits]\ncalls_per_second = 100000\nmax_concurrent_calls = 100000\n",
    );
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);
    let pid = clinic["pid"].as_u64().unwrap();
    // Alive but reading nothing: stopped.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGSTOP,
    )
    .unwrap();
    let shown = std::thread::scope(|s| {
        let calls = s.spawn(|| sipp_uac_at(sup.dir.path(), sup.sip, "+15550200", 40, 10, "u1"));
        // Fill the stopped worker's socket through the router: the router
        // must answer 503 for it, never wait on it (`(busy)` once the
        // worker is behind, plain once the socket is full). Paced, so that
        // the router's own UDP buffer does not drop most of them first.
        let caller = Peer::new(sup.sip);
        for i in 0..12000 {
            caller.send(&invite("+15550100", &format!("fill-{i}")));
            if i % 250 == 249 {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let mut refused = 0;
        while let Some(m) = caller.recv(Duration::from_millis(500)) {
            refused += usize::from(m.starts_with("SIP/2.0 503 Service Unavailable"));
        }
        assert!(
            refused > 0,
            "new calls to a worker behind are answered with 503"
        );
        let shown = back_up(&sup, "clinic", pid);
        let (ok, out) = calls.join().unwrap();
        assert!(ok, "the neighbour lost calls while clinic hung:\n{out}");
        shown
    });
    assert!(
        shown["last_failure"]
            .as_str()
            .unwrap()
            .contains("missed a heartbeat"),
        "{shown}"
    );
    assert!(!alive(pid), "the hung worker was killed");
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "{out}");
}
