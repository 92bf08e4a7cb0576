//! A worker is untrusted once it runs: everything it sends the supervisor
//! over its socketpair is bounded and validated, and one that misbehaves is
//! killed and restarted while other tenants' calls keep flowing.
//!
//! These tests take a real worker's own end of its socketpair (with
//! `pidfd_getfd`, as root) and speak through it as a compromised worker
//! would: no test-only code paths in the product.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::*;
use nix::sys::socket::{getsockopt, send, sockopt, MsgFlags, SockType};

/// A duplicate of the worker's end of its socketpair (the one SEQPACKET socket it holds).
fn steal_link(pid: u64) -> OwnedFd {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: pidfd_open just returned this descriptor; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    for target in 0..256 {
        // SAFETY: pidfd_getfd duplicates the target's descriptor into this
        // process and returns it, or -1; it touches no memory of ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
        if fd < 0 {
            continue;
        }
        // SAFETY: pidfd_getfd just returned this descriptor; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        if getsockopt(&fd, sockopt::SockType).ok() == Some(SockType::SeqPacket) {
            return fd;
        }
    }
    panic!("worker {pid} holds no SEQPACKET socket");
}

/// Runs `attack` against clinic's worker while the neighbour takes calls;
/// returns clinic's `tenant show` once a new worker serves it.
fn attack_during_neighbour_calls(attack: impl FnOnce(OwnedFd) + Send) -> serde_json::Value {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);
    let pid = clinic["pid"].as_u64().unwrap();
    let link = steal_link(pid);
    let shown = std::thread::scope(|s| {
        let calls = s.spawn(|| sipp_uac_at(sup.dir.path(), sup.sip, "+15550200", 40, 10, "u1"));
        std::thread::sleep(Duration::from_millis(500));
        attack(link);
        let shown = back_up(&sup, "clinic", pid);
        let (ok, out) = calls.join().unwrap();
        assert!(ok, "the neighbour lost calls during the attack:\n{out}");
        shown
    });
    assert!(!alive(pid), "the misbehaving worker was killed");
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "the replaced worker serves again:\n{out}");
    shown
}

#[test]
fn a_worker_that_sends_garbage_is_killed_and_restarted() {
    let shown = attack_during_neighbour_calls(|link| {
        for frame in [
            &b"\xff\x00garbage"[..],
            b"\x05{not json",
            b"\x01wrong direction",
        ] {
            // The first bad frame ends the worker; later sends may fail.
            let _ = send(link.as_raw_fd(), frame, MsgFlags::MSG_DONTWAIT);
        }
    });
    let why = shown["last_failure"].as_str().unwrap();
    assert!(why.contains("invalid frame"), "{shown}");
}

#[test]
fn a_worker_that_floods_the_supervisor_is_killed_and_restarted() {
    let shown = attack_during_neighbour_calls(|link| {
        // Well-formed frames (replies to nothing), as fast as the socket takes
        // them, until the supervisor hangs up on this worker.
        let frame = b"\x05{\"seq\":999999,\"error\":null}";
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut sent = 0u64;
        while Instant::now() < deadline {
            match send(link.as_raw_fd(), frame, MsgFlags::MSG_DONTWAIT) {
                Ok(_) => sent += 1,
                Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_micros(200)),
                Err(_) => break, // the supervisor's end is gone
            }
        }
        assert!(sent > 1000, "only {sent} frames sent");
    });
    let why = shown["last_failure"].as_str().unwrap();
    assert!(why.contains("flooding the supervisor"), "{shown}");
}

#[test]
fn a_raised_call_rate_raises_the_frame_budget_without_a_restart() {
    // 1 call/s gives a budget of 1020 frames/s (bursts of 2040).
    let sup = Supervisor::start_with("[limits]\ncalls_per_second = 1\n");
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let pid = clinic["pid"].as_u64().unwrap();
    sup.cli_json(&["tenant", "limits", "clinic", "calls_per_second=10000"]);
    std::thread::sleep(Duration::from_millis(1100)); // past the budget's re-read
    let link = steal_link(pid);
    // 5000 frames at once: past the old budget, well inside the new one.
    let frame = b"\x05{\"seq\":999999,\"error\":null}";
    let mut sent = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sent < 5000 && Instant::now() < deadline {
        match send(link.as_raw_fd(), frame, MsgFlags::MSG_DONTWAIT) {
            Ok(_) => sent += 1,
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_micros(100)),
            Err(e) => panic!("the supervisor hung up after {sent} frames: {e}"),
        }
    }
    assert_eq!(sent, 5000);
    std::thread::sleep(Duration::from_millis(300));
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["pid"].as_u64(), Some(pid), "killed: {shown}");
    assert_eq!(shown["restarts"], 0, "{shown}");
}
