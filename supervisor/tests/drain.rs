//! Graceful shutdown and drain: new calls get 503 while calls in progress
//! finish; SIGTERM drains then exits 0 with no worker left; SIGINT (or the
//! drain timeout) does not wait, and a call cut short is recorded as failed.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

const NUMBER: &str = "+15550100";

/// An answered, acknowledged call from a fresh peer; returns the peer and the 200.
fn answered_call(sup: &Supervisor, call_id: &str) -> (Peer, String) {
    let peer = Peer::new(sup.sip);
    peer.send(&invite(NUMBER, call_id));
    let ok = peer
        .expect("SIP/2.0 200", Duration::from_secs(10))
        .unwrap_or_else(|| panic!("{call_id} answered\n{}", sup.log()));
    peer.send(&request("ACK", NUMBER, call_id, 1, &to_tag(&ok)));
    (peer, ok)
}

fn hang_up(peer: &Peer, call_id: &str, ok: &str) {
    peer.send(&request("BYE", NUMBER, call_id, 2, &to_tag(ok)));
    peer.expect("SIP/2.0 200", Duration::from_secs(5))
        .expect("200 to BYE during the drain");
}

fn wait_for_state(sup: &Supervisor, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let shown = sup.cli_json(&["tenant", "show", "clinic"]);
        if shown["state"] == want {
            return shown;
        }
        assert!(Instant::now() < deadline, "never {want}: {shown}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_new_calls_refused_as_draining(sup: &Supervisor) {
    let reply = udp_exchange(
        sup.sip,
        &invite(NUMBER, "during-drain"),
        Duration::from_secs(5),
    )
    .expect("an answer during the drain");
    assert!(
        reply.starts_with("SIP/2.0 503")
            && reply.contains("draining")
            && reply.contains("Retry-After"),
        "{reply}"
    );
}

fn outcome_of(t: &serde_json::Value, call_id: &str) -> String {
    let port = t["http_port"].as_u64().unwrap() as u16;
    let calls = settled_calls(port, t["token"].as_str().unwrap());
    calls
        .iter()
        .find(|c| c["call_id"] == call_id)
        .unwrap_or_else(|| panic!("no record of {call_id}: {calls:?}"))["outcome"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn restart_with_drain_lets_calls_finish_and_refuses_new_ones_meanwhile() {
    let sup = Supervisor::start_with("drain_timeout_s = 120\n");
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let old_pid = t["pid"].as_u64().unwrap();
    let (caller, ok) = answered_call(&sup, "drain-1");
    std::thread::scope(|s| {
        let restart = s.spawn(|| sup.cli_json(&["tenant", "restart", "clinic", "--drain"]));
        wait_for_state(&sup, "draining");
        assert_new_calls_refused_as_draining(&sup);
        assert!(alive(old_pid), "the worker waits for its call");
        hang_up(&caller, "drain-1", &ok);
        let restarted = restart.join().unwrap();
        assert_eq!(restarted["state"], "running", "{restarted}");
        assert_ne!(restarted["pid"].as_u64(), Some(old_pid));
    });
    assert_eq!(outcome_of(&t, "drain-1"), "completed");
    // Taking calls again.
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, NUMBER, 1, "u1");
    assert!(ok, "{out}");
}

#[test]
fn sigterm_drains_then_exits_0_with_no_worker_left() {
    let mut sup = Supervisor::start_with("drain_timeout_s = 120\n");
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let pid = t["pid"].as_u64().unwrap();
    let (caller, ok) = answered_call(&sup, "term-1");
    sup.signal(Signal::SIGTERM);
    wait_for_state(&sup, "draining");
    assert_new_calls_refused_as_draining(&sup);
    assert!(
        sup.wait_exit(Duration::from_millis(300)).is_none(),
        "it waits for the call"
    );
    hang_up(&caller, "term-1", &ok);
    let status = sup
        .wait_exit(Duration::from_secs(30))
        .expect("exits once its calls ended");
    assert!(status.success(), "{status:?}\n{}", sup.log());
    assert!(!alive(pid), "no worker outlives a clean shutdown");
    sup.boot();
    wait_for_state(&sup, "running");
    assert_eq!(outcome_of(&t, "term-1"), "completed");
}

#[test]
fn a_drain_that_times_out_stops_anyway_and_the_cut_call_is_recorded_failed() {
    let mut sup = Supervisor::start_with("drain_timeout_s = 1\n");
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let pid = t["pid"].as_u64().unwrap();
    let _held = answered_call(&sup, "cut-1");
    sup.signal(Signal::SIGTERM);
    let status = sup
        .wait_exit(Duration::from_secs(30))
        .expect("exits after the drain timeout");
    assert!(status.success(), "{status:?}\n{}", sup.log());
    assert!(!alive(pid));
    sup.boot();
    wait_for_state(&sup, "running");
    // Not a gap and not "in progress" forever: the call is marked failed.
    assert_eq!(outcome_of(&t, "cut-1"), "failed");
}

#[test]
fn sigint_stops_at_once_even_with_calls_up() {
    // A drain would wait ten minutes for this call; SIGINT must not.
    let mut sup = Supervisor::start_with("drain_timeout_s = 600\n");
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let pid = t["pid"].as_u64().unwrap();
    let _held = answered_call(&sup, "int-1");
    sup.signal(Signal::SIGINT);
    let status = sup
        .wait_exit(Duration::from_secs(30))
        .expect("SIGINT does not drain");
    assert!(status.success(), "{status:?}");
    assert!(!alive(pid));
}

#[test]
fn a_second_sigterm_cuts_the_drain_short() {
    let mut sup = Supervisor::start_with("drain_timeout_s = 600\n");
    sup.add_tenant("clinic", &[NUMBER]);
    let _held = answered_call(&sup, "twice-1");
    sup.signal(Signal::SIGTERM);
    wait_for_state(&sup, "draining");
    sup.signal(Signal::SIGTERM);
    let status = sup
        .wait_exit(Duration::from_secs(30))
        .expect("a second SIGTERM stops now");
    assert!(status.success(), "{status:?}");
}
