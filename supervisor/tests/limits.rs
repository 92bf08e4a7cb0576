//! Noisy neighbours: the router holds each tenant to its call-rate and
//! concurrent-call limits (503 + Retry-After past them), so one tenant
//! flooded far past its limits does not cost another tenant a call.

mod common;

use std::time::Duration;

use common::*;

fn worker_view(sup: &Supervisor, id: &str) -> serde_json::Value {
    let status = sup.cli_json(&["status"]);
    status["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id)
        .cloned()
        .unwrap_or_else(|| panic!("no {id} in {status}"))
}

#[test]
fn a_tenant_flooded_past_its_call_rate_gets_503s_and_its_neighbour_completes_every_call() {
    let sup = Supervisor::start_with("[limits]\ncalls_per_second = 10\n");
    sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);

    let started = std::time::Instant::now();
    let (flood, calm) = std::thread::scope(|s| {
        // Ten times the limit for three seconds...
        let flood = s.spawn(|| {
            let result = sipp_uac_at(sup.dir.path(), sup.sip, "+15550100", 300, 100, "u1");
            (result, started.elapsed())
        });
        // ...while the neighbour calls at half its limit.
        let calm = s.spawn(|| sipp_uac_at(sup.dir.path(), sup.sip, "+15550200", 15, 5, "u1"));
        (flood.join().unwrap(), calm.join().unwrap())
    });
    let (ok, report) = calm;
    assert!(ok, "the neighbour lost calls during the flood:\n{report}");
    assert_eq!(sipp_counts(&report), (15, 0), "{report}");

    let ((flood_ok, flooded), took) = flood;
    let (succeeded, failed) = sipp_counts(&flooded);
    assert!(
        !flood_ok,
        "300 calls at 100/s all passed a 10/s limit:\n{flooded}"
    );
    assert!(succeeded > 0 && failed > 0, "{flooded}");
    // The bucket admits one second's burst and then 10 a second, however
    // slowly sipp paced its offer (about 40 of 300 in 3 s).
    let bound = 10 + 10 * (took.as_secs() + 1) + 5;
    let clinic = worker_view(&sup, "clinic");
    let admitted = clinic["calls_admitted"].as_u64().unwrap();
    let refused = clinic["calls_refused"].as_u64().unwrap();
    eprintln!("flooded tenant: {succeeded} calls passed, {failed} refused, in {took:?}");
    assert!(
        admitted <= bound,
        "{admitted} admitted in {took:?}: {clinic}"
    );
    assert!(admitted >= succeeded && refused >= failed, "{clinic}");
    assert!(admitted + refused >= 300, "every INVITE counted: {clinic}");
    assert_eq!(worker_view(&sup, "insurance")["calls_refused"], 0);
    // Every slot comes back (an answered call sipp gave up on ends at 64·T1).
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while worker_view(&sup, "clinic")["active_calls"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "slots never came back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The same story in /metrics.
    let m = sup.scrape_metrics();
    let tenant_metric =
        |name: &str, t: &str| metric(&m, &format!("bulkhead_tenant_{name}{{tenant=\"{t}\"}}"));
    assert_eq!(
        tenant_metric("calls_refused_total", "clinic"),
        refused as f64
    );
    assert_eq!(
        tenant_metric("calls_admitted_total", "clinic"),
        admitted as f64
    );
    assert_eq!(tenant_metric("calls_admitted_total", "insurance"), 15.0);
    assert_eq!(tenant_metric("calls_refused_total", "insurance"), 0.0);
    assert_eq!(tenant_metric("calls_active", "clinic"), 0.0);
    assert_eq!(tenant_metric("worker_up", "clinic"), 1.0);
    assert_eq!(tenant_metric("worker_restarts_total", "clinic"), 0.0);
    assert!(tenant_metric("memory_bytes", "clinic") > 1e6, "{m}");
    let received = metric(&m, "bulkhead_router_received_total");
    assert!(received >= 315.0, "{m}");
    // Every routed message was timed (the scrape may race a late retransmission).
    assert!(
        metric(&m, "bulkhead_router_dispatch_seconds_count") >= received,
        "{m}"
    );
    assert!(metric(&m, "bulkhead_router_dispatch_seconds_bucket{le=\"+Inf\"}") >= received);
}

#[test]
fn the_rate_limit_answers_503_with_retry_after_from_the_router() {
    let sup = Supervisor::start_with("[limits]\ncalls_per_second = 1\n");
    sup.add_tenant("clinic", &["+15550100"]);
    // One call a second, one second's burst: five at once cannot all pass.
    let replies: Vec<String> = (0..5)
        .map(|i| {
            udp_exchange(
                sup.sip,
                &invite("+15550100", &format!("burst-{i}")),
                Duration::from_secs(5),
            )
            .expect("every INVITE is answered")
        })
        .collect();
    let refused: Vec<&String> = replies
        .iter()
        .filter(|r| r.starts_with("SIP/2.0 503"))
        .collect();
    assert!(!refused.is_empty(), "{replies:#?}");
    for r in refused {
        assert!(r.contains("call rate limit"), "{r}");
        assert!(r.contains("Retry-After: 1"), "{r}");
    }
}

#[test]
fn the_concurrent_call_limit_holds_a_slot_until_the_call_ends() {
    // Calls ring for a minute, so they stay in progress until cancelled.
    let sup =
        Supervisor::start_with("answer_delay_ms = 60000\n[limits]\nmax_concurrent_calls = 2\n");
    sup.add_tenant("clinic", &["+15550100"]);
    let callers: Vec<Peer> = (0..3).map(|_| Peer::new(sup.sip)).collect();
    for (i, c) in callers.iter().take(2).enumerate() {
        c.send(&invite("+15550100", &format!("slot-{i}")));
        assert!(
            c.expect("SIP/2.0 180", Duration::from_secs(5)).is_some(),
            "call {i} rings"
        );
    }
    callers[2].send(&invite("+15550100", "slot-2"));
    let busy = callers[2]
        .expect("SIP/2.0 503", Duration::from_secs(5))
        .expect("a third call is refused");
    assert!(
        busy.contains("too many calls") && busy.contains("Retry-After: 5"),
        "{busy}"
    );
    assert_eq!(worker_view(&sup, "clinic")["active_calls"], 2);

    // Cancelling one frees its slot (the worker reports the call over).
    callers[0].send(&request("CANCEL", "+15550100", "slot-0", 1, ""));
    assert!(callers[0]
        .expect("SIP/2.0 487", Duration::from_secs(5))
        .is_some());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while worker_view(&sup, "clinic")["active_calls"] != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the slot never came back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    callers[2].send(&invite("+15550100", "slot-3"));
    assert!(callers[2]
        .expect("SIP/2.0 180", Duration::from_secs(5))
        .is_some());
}

/// An INVITE the worker refuses outright (here a 420 for an extension it
/// lacks) was still counted by the router: the worker gives its slot back,
/// or a caller could fill the tenant's limit with bad INVITEs for hours.
#[test]
fn invites_the_worker_refuses_give_their_slots_back() {
    let sup = Supervisor::start_with("[limits]\nmax_concurrent_calls = 2\n");
    sup.add_tenant("clinic", &["+15550100"]);
    for i in 0..4 {
        let bad = String::from_utf8(invite("+15550100", &format!("bad-{i}")))
            .unwrap()
            .replacen("\r\nCSeq:", "\r\nRequire: x-unknown\r\nCSeq:", 1);
        let reply = udp_exchange(sup.sip, bad.as_bytes(), Duration::from_secs(5))
            .expect("the bad INVITE is answered");
        assert!(reply.starts_with("SIP/2.0 420"), "INVITE {i}: {reply}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while worker_view(&sup, "clinic")["active_calls"] != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "refused INVITEs kept their slots: {}",
            worker_view(&sup, "clinic")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let caller = Peer::new(sup.sip);
    caller.send(&invite("+15550100", "good-1"));
    assert!(
        caller
            .expect("SIP/2.0 200", Duration::from_secs(5))
            .is_some(),
        "a good call after them is answered"
    );
}

#[test]
fn per_tenant_limits_are_set_at_add_changed_live_and_kept_across_restarts() {
    // Calls ring for a minute, so each holds its slot.
    let mut sup = Supervisor::start_with("answer_delay_ms = 60000\n");
    let clinic = sup.cli_json(&[
        "tenant",
        "add",
        "clinic",
        "--number",
        "+15550100",
        "--limit",
        "max_concurrent_calls=1",
        "--limit",
        "memory=128M",
    ]);
    sup.add_tenant("insurance", &["+15550200"]);
    assert_eq!(clinic["limits"]["max_concurrent_calls"], 1, "{clinic}");
    assert_eq!(clinic["limits"]["memory"], "128M");
    let insurance = sup.cli_json(&["tenant", "show", "insurance"]);
    assert_eq!(
        insurance["limits"]["max_concurrent_calls"], 100,
        "the configured default"
    );
    let pid = clinic["pid"].as_u64().unwrap();
    let group = memory_cgroup_of(pid);
    assert_eq!(memory_limit_of(&group), 128 << 20);
    // With its own uid (root), the worker's rlimits are second bounds.
    let own_uid = nix::unistd::geteuid().is_root();
    if own_uid {
        assert_eq!(rlimit_of(pid, "Max data size"), (128u64 << 20).to_string());
        assert_eq!(rlimit_of(pid, "Max processes"), "64");
    }

    // The first answer past 100 Trying: 180 when admitted, 503 when not.
    let ring = |number: &str, call_id: &str| {
        let p = Peer::new(sup.sip);
        p.send(&invite(number, call_id));
        let mut answer = String::new();
        while let Some(m) = p.recv(Duration::from_secs(5)) {
            if !m.starts_with("SIP/2.0 100") {
                answer = m;
                break;
            }
        }
        (p, answer)
    };
    let _first = ring("+15550100", "pl-1");
    let (_p, second) = ring("+15550100", "pl-2");
    assert!(
        second.contains("too many calls"),
        "clinic's own limit: {second}"
    );
    let _a = ring("+15550200", "pl-3");
    let (_p, b) = ring("+15550200", "pl-4");
    assert!(
        b.starts_with("SIP/2.0 180"),
        "the neighbour keeps the default: {b}"
    );

    // Live: more calls and more memory, while the worker runs.
    let changed = sup.cli_json(&[
        "tenant",
        "limits",
        "clinic",
        "max_concurrent_calls=2",
        "memory=192M",
        "pids=48",
    ]);
    assert_eq!(changed["limits"]["max_concurrent_calls"], 2, "{changed}");
    assert_eq!(changed["pid"], clinic["pid"], "no restart");
    assert_eq!(memory_limit_of(&group), 192 << 20);
    if own_uid && has_cap_sys_resource() {
        // The worker's own bounds follow too: a memory limit raised in the
        // cgroup alone left its allocations refused at the old one.
        assert_eq!(rlimit_of(pid, "Max data size"), (192u64 << 20).to_string());
        assert_eq!(rlimit_of(pid, "Max processes"), "48");
    } else if own_uid {
        // No process may change another's rlimits here: they keep their
        // values until the worker restarts, and the log says how to apply them.
        assert_eq!(rlimit_of(pid, "Max data size"), (128u64 << 20).to_string());
        assert!(
            sup.log().contains("lacks CAP_SYS_RESOURCE"),
            "{}",
            sup.log()
        );
    }
    let (_p, now) = ring("+15550100", "pl-5");
    assert!(now.starts_with("SIP/2.0 180"), "{now}");

    // Bad input changes nothing and says why.
    let bad = sup.cli(&["tenant", "limits", "clinic", "colour=blue"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown limit"));
    let bad = sup.cli(&["tenant", "limits", "clinic", "pids=2"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("limits.pids"));
    let bad = sup.cli(&["tenant", "add", "lab", "--limit", "calls_per_second=0"]);
    assert_eq!(bad.status.code(), Some(1));
    assert_eq!(
        sup.cli(&["tenant", "show", "lab"]).status.code(),
        Some(1),
        "not created"
    );

    sup.stop();
    sup.boot();
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["limits"]["max_concurrent_calls"], 2, "{shown}");
    assert_eq!(shown["limits"]["memory"], "192M");
    let pid = shown["pid"].as_u64().unwrap();
    let group = memory_cgroup_of(pid);
    assert_eq!(memory_limit_of(&group), 192 << 20);
    if own_uid {
        assert_eq!(rlimit_of(pid, "Max data size"), (192u64 << 20).to_string());
        assert_eq!(rlimit_of(pid, "Max processes"), "48");
    }
}
