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

use bulkhead_shared::ipc::codec::encode_from_worker;
use bulkhead_shared::ipc::FromWorker;
use common::*;
use nix::sys::signal::{kill, Signal};
use nix::sys::socket::{getsockopt, send, sockopt, MsgFlags, SockType};
use nix::unistd::Pid;

/// A duplicate of descriptor `target` of process `pid`, if it has one.
fn steal_fd(pid: u64, target: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    assert!(
        pidfd >= 0,
        "pidfd_open({pid}): {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: pidfd_open just returned this descriptor; nothing else owns it.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd as i32) };
    // SAFETY: pidfd_getfd duplicates the target's descriptor into this
    // process and returns it, or -1; it touches no memory of ours.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    // SAFETY: pidfd_getfd just returned this descriptor; nothing else owns it.
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// A duplicate of the worker's end of its socketpair (the one SEQPACKET socket it holds).
fn steal_link(pid: u64) -> OwnedFd {
    (0..256)
        .filter_map(|target| steal_fd(pid, target))
        .find(|fd| getsockopt(fd, sockopt::SockType).ok() == Some(SockType::SeqPacket))
        .unwrap_or_else(|| panic!("worker {pid} holds no SEQPACKET socket"))
}

/// Sends `frame(i)` for i in 0..n through a stolen link, waiting out a full
/// socket, for at most `within`; returns how many were sent. The supervisor
/// hanging up fails the test.
fn send_frames(link: &OwnedFd, n: u64, within: Duration, frame: impl Fn(u64) -> Vec<u8>) -> u64 {
    let deadline = Instant::now() + within;
    let mut sent = 0;
    while sent < n && Instant::now() < deadline {
        match send(link.as_raw_fd(), &frame(sent), MsgFlags::MSG_DONTWAIT) {
            Ok(_) => sent += 1,
            Err(nix::errno::Errno::EAGAIN) => std::thread::sleep(Duration::from_micros(100)),
            Err(e) => panic!("the supervisor hung up after {sent} frames: {e}"),
        }
    }
    sent
}

/// A reply to a request nobody made: well-formed, and harmless.
fn stray_reply(_: u64) -> Vec<u8> {
    b"\x05{\"seq\":999999,\"error\":null}".to_vec()
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
    let sent = send_frames(&link, 5000, Duration::from_secs(10), stray_reply);
    assert_eq!(sent, 5000);
    std::thread::sleep(Duration::from_millis(300));
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["pid"].as_u64(), Some(pid), "killed: {shown}");
    assert_eq!(shown["restarts"], 0, "{shown}");
}

#[test]
fn a_burst_right_after_a_raised_call_rate_is_within_the_new_budget() {
    // The budget is re-read once a second; a burst within that second of
    // `tenant limits` raising the rate used to be judged by the old one,
    // and the worker was killed as a flood (a capacity run's first burst
    // on a fresh tenant lost up to 12% of its calls that way).
    let sup = Supervisor::start_with("[limits]\ncalls_per_second = 1\n");
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let pid = clinic["pid"].as_u64().unwrap();
    let link = steal_link(pid);
    // One frame: the supervisor reads the (old) budget now.
    send(link.as_raw_fd(), &stray_reply(0), MsgFlags::empty()).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let raised = Instant::now();
    sup.cli_json(&["tenant", "limits", "clinic", "calls_per_second=10000"]);
    // 5000 frames at once: past the old budget (bursts of 2040), inside the new.
    let sent = send_frames(&link, 5000, Duration::from_secs(60), stray_reply);
    assert_eq!(sent, 5000);
    assert!(
        raised.elapsed() < Duration::from_millis(900),
        "the burst must land inside the budget's second to test this"
    );
    std::thread::sleep(Duration::from_millis(300));
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["pid"].as_u64(), Some(pid), "killed: {shown}");
    assert_eq!(shown["restarts"], 0, "{shown}");
}

#[test]
fn a_worker_that_stops_reading_its_answers_is_still_heard() {
    // The loop that reads a worker's frames once awaited room on the
    // worker's socket to answer `RtpOpen`: with that socket full it stopped
    // reading, and a worker that stopped reading was deaf to everything
    // but the heartbeat (BENCHMARKS.md, eleventh session). Here the worker
    // is stopped and its socket is filled by answers to its own requests;
    // a bad frame after them must still be read, and end the worker for
    // what it is, before the heartbeat (5 s) would.
    let sup = Supervisor::start_with("[limits]\ncalls_per_second = 1000\n");
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let pid = clinic["pid"].as_u64().unwrap();
    let link = steal_link(pid);
    kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).unwrap();
    // The answers (40 bytes and two descriptors, or an error) take some
    // 1 KiB each of the supervisor's 2 MiB send buffer: 6,000 overfill it.
    let rtp_open = |seq| {
        let mut frame = Vec::new();
        encode_from_worker(&FromWorker::RtpOpen { seq }, &mut frame).unwrap();
        frame
    };
    let sent = send_frames(&link, 6000, Duration::from_secs(3), rtp_open);
    assert_eq!(
        sent, 6000,
        "the supervisor stopped reading after {sent} requests"
    );
    // Sent once there is room: right after the flood the socket can still
    // be full, and a bad frame dropped on EAGAIN would leave the heartbeat
    // to end the worker (the likely cause of one failure in CI).
    let bad = send_frames(&link, 1, Duration::from_secs(3), |_| {
        b"\xff\x00garbage".to_vec()
    });
    assert_eq!(bad, 1, "no room for the bad frame within 3 s");
    // The answers still queued hold RTP sockets until the worker's end of
    // the socketpair closes, which this copy of it would put off.
    drop(link);
    let shown = back_up(&sup, "clinic", pid);
    let why = shown["last_failure"].as_str().unwrap();
    assert!(why.contains("invalid frame"), "{shown}");
    // Every RTP pair it held came back: the new worker takes a call.
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "the replaced worker serves again:\n{out}");
}

/// The supervisor's log without its own colours (SGR sequences), so that
/// any escape left is one a worker wrote.
fn plain(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    let mut rest = log;
    while let Some(at) = rest.find("\x1b[") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after.find(|c: char| !(c.is_ascii_digit() || c == ';'));
        match end {
            Some(e) if after[e..].starts_with('m') => rest = &after[e + 1..],
            _ => {
                out.push('\x1b');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn what_a_worker_writes_to_stderr_is_attributed_escaped_cut_and_rate_limited() {
    use std::io::Write;
    const FLOOD: usize = 20_000;
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);
    let pid = clinic["pid"].as_u64().unwrap();
    let mut stderr = std::fs::File::from(steal_fd(pid, 2).expect("the worker has a stderr"));
    let started = Instant::now();
    std::thread::scope(|s| {
        let calls = s.spawn(|| sipp_uac_at(sup.dir.path(), sup.sip, "+15550200", 40, 10, "u1"));
        // A line dressed as the supervisor's, about another tenant, with a
        // clear-screen sequence; a megabyte without a newline; a flood.
        let forged =
            "2026-11-29T00:00:00.000000Z  INFO worker serving tenant=insurance FORGED\x1b[2J\n";
        stderr.write_all(forged.as_bytes()).unwrap();
        let mut long = vec![b'L'; 1 << 20];
        long.push(b'\n');
        stderr.write_all(&long).unwrap();
        let flood: String = (0..FLOOD).map(|i| format!(" INFO FLOOD {i}\n")).collect();
        stderr.write_all(flood.as_bytes()).unwrap();
        let (ok, out) = calls.join().unwrap();
        assert!(ok, "the neighbour lost calls during the flood:\n{out}");
    });
    // Every flood line is logged or counted as dropped (a count comes at
    // most a second after the last drop).
    let tally = |log: &str| {
        let passed = log.lines().filter(|l| l.contains("FLOOD ")).count();
        let dropped: usize = log
            .lines()
            .filter_map(|l| l.split("dropped=").nth(1))
            .map(|n| {
                n.split_whitespace()
                    .next()
                    .unwrap()
                    .parse::<usize>()
                    .unwrap()
            })
            .sum();
        (passed, dropped)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = plain(&sup.log());
        let (passed, dropped) = tally(&log);
        if passed + dropped >= FLOOD || Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let elapsed = started.elapsed().as_secs_f64();
    let (passed, dropped) = tally(&log);
    assert!(
        passed + dropped >= FLOOD,
        "{passed} logged + {dropped} dropped"
    );
    // At most the burst (1,000) plus 100 a second since the flood began.
    let most = 1000 + (100.0 * (elapsed + 1.0)) as usize;
    assert!(
        passed > 0 && passed <= most,
        "{passed} flood lines logged in {elapsed:.1} s"
    );
    let from_clinic = |l: &&str| l.contains("worker{tenant=clinic}: ");
    for marker in ["FORGED", "FLOOD ", "LLLL", "dropped="] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(marker)).collect();
        assert!(!lines.is_empty(), "no {marker} line:\n{log}");
        assert!(
            lines.iter().all(from_clinic),
            "{marker} not under clinic: {lines:?}"
        );
    }
    // The forged line is plainly the clinic worker's, and its escape is text.
    let forged = log.lines().find(|l| l.contains("FORGED")).unwrap();
    assert!(forged.contains("\\u{1b}[2J"), "{forged}");
    assert!(!log.contains('\x1b'), "a worker's escape reached the log");
    let long = log.lines().find(|l| l.contains("LLLL")).unwrap();
    assert_eq!(long.matches('L').count(), 4096, "{}", &long[..200]);
    assert!(
        long.ends_with("[cut at 4096 bytes]"),
        "{}",
        &long[long.len() - 80..]
    );
    // The worker was never stalled by its own output.
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "clinic no longer answers:\n{out}");
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["pid"].as_u64(), Some(pid), "{shown}");
}
