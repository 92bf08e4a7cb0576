//! Every transaction's timer paths in virtual time: a [`VirtualClock`]
//! carries out the machines' outputs, fires armed timers in order, and
//! records when each message went on the (in-memory) wire.

use std::time::Duration;

use super::*;

/// What the tests drive: any of the four machines.
pub(crate) trait Machine {
    fn fire(&mut self, timer: Timer) -> Vec<Output>;
}

impl Machine for ServerInvite {
    fn fire(&mut self, t: Timer) -> Vec<Output> {
        self.on_timer(t)
    }
}
impl Machine for ServerNonInvite {
    fn fire(&mut self, t: Timer) -> Vec<Output> {
        self.on_timer(t)
    }
}
impl Machine for ClientInvite {
    fn fire(&mut self, t: Timer) -> Vec<Output> {
        self.on_timer(t)
    }
}
impl Machine for ClientNonInvite {
    fn fire(&mut self, t: Timer) -> Vec<Output> {
        self.on_timer(t)
    }
}

#[derive(Debug, Default)]
pub(crate) struct VirtualClock {
    now: Duration,
    armed: Vec<(Duration, Timer)>,
    /// (when, bytes) for every Send.
    sent: Vec<(Duration, Vec<u8>)>,
    /// (when, output) for Deliver, Timeout and Terminated.
    told: Vec<(Duration, Output)>,
}

impl VirtualClock {
    fn apply(&mut self, outs: Vec<Output>) {
        for out in outs {
            match out {
                Output::Send(bytes) => self.sent.push((self.now, bytes)),
                Output::Arm(t, after) => self.armed.push((self.now + after, t)),
                other => self.told.push((self.now, other)),
            }
        }
    }

    /// Fires every timer due up to `until`, in time order.
    fn run_until(&mut self, m: &mut impl Machine, until: Duration) {
        loop {
            self.armed.sort_by_key(|(due, _)| *due);
            match self.armed.first() {
                Some(&(due, t)) if due <= until => {
                    self.armed.remove(0);
                    self.now = due;
                    let outs = m.fire(t);
                    self.apply(outs);
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn send_times(&self) -> Vec<f64> {
        self.sent.iter().map(|(t, _)| t.as_secs_f64()).collect()
    }

    fn told_at(&self, what: &Output) -> Vec<f64> {
        self.told
            .iter()
            .filter(|(_, o)| o == what)
            .map(|(t, _)| t.as_secs_f64())
            .collect()
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

#[test]
fn invite_server_resends_a_rejection_until_h_when_no_ack_comes() {
    let (mut clock, mut tx) = (VirtualClock::default(), ServerInvite::new(false));
    clock.apply(tx.respond(486, b"486".to_vec()));
    clock.run_until(&mut tx, secs(40.0));
    // G: T1 doubling to T2, from the first send; H at 64·T1.
    assert_eq!(
        clock.send_times(),
        [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(clock.told_at(&Output::Timeout), [32.0]);
    assert!(tx.is_terminated());
}

#[test]
fn invite_server_stops_resending_at_the_ack_and_absorbs_ack_copies_for_t4() {
    let (mut clock, mut tx) = (VirtualClock::default(), ServerInvite::new(false));
    clock.apply(tx.respond(100, b"100".to_vec()));
    clock.apply(tx.on_retransmission());
    clock.apply(tx.respond(404, b"404".to_vec()));
    clock.run_until(&mut tx, secs(1.0));
    clock.apply(tx.on_retransmission()); // the INVITE again: the 404 again
    clock.apply(tx.on_ack());
    assert!(tx.on_ack().is_empty(), "a second ACK is absorbed");
    assert!(
        tx.on_retransmission().is_empty(),
        "confirmed: nothing to resend"
    );
    clock.run_until(&mut tx, secs(40.0));
    let sent: Vec<_> = clock.sent.iter().map(|(_, b)| b.as_slice()).collect();
    assert_eq!(sent, [&b"100"[..], b"100", b"404", b"404", b"404"]);
    assert_eq!(clock.told_at(&Output::Terminated), [6.0], "Timer I = T4");
    assert!(clock.told_at(&Output::Timeout).is_empty());
}

#[test]
fn invite_server_over_tcp_never_resends_and_ends_at_the_ack() {
    let (mut clock, mut tx) = (VirtualClock::default(), ServerInvite::new(true));
    clock.apply(tx.respond(603, b"603".to_vec()));
    clock.run_until(&mut tx, secs(10.0));
    assert_eq!(clock.send_times(), [0.0]);
    clock.apply(tx.on_ack());
    assert!(tx.is_terminated());
}

#[test]
fn invite_server_absorbs_invites_after_a_2xx_until_l() {
    let (mut clock, mut tx) = (VirtualClock::default(), ServerInvite::new(false));
    clock.apply(tx.respond(180, b"180".to_vec()));
    clock.apply(tx.on_retransmission());
    assert!(tx.keeps_a_response());
    clock.apply(tx.respond(200, b"200".to_vec()));
    assert!(tx.on_retransmission().is_empty());
    assert!(
        !tx.keeps_a_response(),
        "Accepted holds no response for its 32 s"
    );
    // The user agent's own 2xx retransmission passes through.
    clock.apply(tx.respond(200, b"200 again".to_vec()));
    assert!(tx.respond(486, b"late".to_vec()).is_empty());
    clock.run_until(&mut tx, secs(40.0));
    assert_eq!(clock.sent.len(), 4);
    assert_eq!(clock.told_at(&Output::Terminated), [32.0]);
}

#[test]
fn non_invite_server_absorbs_while_trying_then_repeats_its_final_until_j() {
    let (mut clock, mut tx) = (VirtualClock::default(), ServerNonInvite::new(false));
    assert!(tx.on_retransmission().is_empty());
    clock.apply(tx.respond(200, b"200".to_vec()));
    clock.run_until(&mut tx, secs(10.0));
    clock.apply(tx.on_retransmission());
    clock.run_until(&mut tx, secs(40.0));
    assert_eq!(clock.send_times(), [0.0, 10.0]);
    assert_eq!(clock.told_at(&Output::Terminated), [32.0]);

    let mut tcp = ServerNonInvite::new(true);
    assert_eq!(
        tcp.respond(200, b"x".to_vec()).last(),
        Some(&Output::Terminated)
    );
    assert!(tcp.is_terminated());
}

const INVITE: &[u8] = b"INVITE sip:+15550100@127.0.0.1 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKc1, SIP/2.0/UDP 127.0.0.9\r\n\
Route: <sip:127.0.0.3;lr>\r\nMax-Forwards: 70\r\nFrom: <sip:w@127.0.0.1>;tag=ours\r\n\
To: <sip:+15550100@127.0.0.1>\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";

#[test]
fn invite_client_doubles_timer_a_without_cap_until_b() {
    let (mut tx, outs) = ClientInvite::start(INVITE.to_vec(), false);
    let mut clock = VirtualClock::default();
    clock.apply(outs);
    clock.run_until(&mut tx, secs(40.0));
    assert_eq!(clock.send_times(), [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]);
    assert_eq!(clock.told_at(&Output::Timeout), [32.0]);
}

#[test]
fn invite_client_acks_a_rejection_and_reacks_its_retransmissions_until_d() {
    let (mut tx, outs) = ClientInvite::start(INVITE.to_vec(), false);
    let mut clock = VirtualClock::default();
    clock.apply(outs);
    clock.run_until(&mut tx, secs(0.7));
    clock.apply(tx.on_response(180, b""));
    clock.run_until(&mut tx, secs(5.0)); // provisional: no more INVITEs
    let busy = b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKc1\r\n\
To: <sip:+15550100@127.0.0.1>;tag=theirs\r\nCall-ID: c1\r\nCSeq: 7 INVITE\r\n\r\n";
    clock.apply(tx.on_response(486, busy));
    clock.apply(tx.on_response(486, busy));
    clock.run_until(&mut tx, secs(60.0));
    assert_eq!(clock.send_times(), [0.0, 0.5, 5.0, 5.0]);
    let ack = String::from_utf8(clock.sent[2].1.clone()).unwrap();
    assert!(
        ack.starts_with("ACK sip:+15550100@127.0.0.1 SIP/2.0\r\n"),
        "{ack}"
    );
    assert!(
        ack.contains("Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKc1\r\nMax"),
        "{ack}"
    );
    assert!(ack.contains("Route: <sip:127.0.0.3;lr>\r\n"), "{ack}");
    assert!(
        ack.contains("To: <sip:+15550100@127.0.0.1>;tag=theirs\r\n"),
        "{ack}"
    );
    assert!(ack.contains("CSeq: 7 ACK\r\n"), "{ack}");
    assert_eq!(clock.told_at(&Output::Deliver), [0.7, 5.0]);
    assert_eq!(clock.told_at(&Output::Terminated), [37.0]);
}

#[test]
fn invite_client_passes_every_2xx_up_until_m() {
    let (mut tx, outs) = ClientInvite::start(INVITE.to_vec(), true);
    let mut clock = VirtualClock::default();
    clock.apply(outs);
    clock.apply(tx.on_response(200, b""));
    clock.apply(tx.on_response(200, b""));
    clock.run_until(&mut tx, secs(40.0));
    assert_eq!(clock.send_times(), [0.0], "reliable: no Timer A");
    assert_eq!(clock.told_at(&Output::Deliver), [0.0, 0.0]);
    assert_eq!(clock.told_at(&Output::Terminated), [32.0]);
    assert!(
        clock.told_at(&Output::Timeout).is_empty(),
        "Timer B is moot"
    );
}

#[test]
fn non_invite_client_caps_timer_e_at_t2_and_gives_up_at_f() {
    let (mut tx, outs) = ClientNonInvite::start(b"BYE".to_vec(), false);
    let mut clock = VirtualClock::default();
    clock.apply(outs);
    clock.run_until(&mut tx, secs(40.0));
    assert_eq!(
        clock.send_times(),
        [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    );
    assert_eq!(clock.told_at(&Output::Timeout), [32.0]);
}

#[test]
fn non_invite_client_slows_to_t2_after_a_provisional_and_ends_k_after_its_final() {
    let (mut tx, outs) = ClientNonInvite::start(b"BYE".to_vec(), false);
    let mut clock = VirtualClock::default();
    clock.apply(outs);
    clock.run_until(&mut tx, secs(1.0));
    clock.apply(tx.on_response(100));
    clock.run_until(&mut tx, secs(10.0));
    clock.apply(tx.on_response(200));
    assert!(
        tx.on_response(200).is_empty(),
        "a retransmitted final is absorbed"
    );
    clock.run_until(&mut tx, secs(40.0));
    assert_eq!(clock.send_times(), [0.0, 0.5, 1.5, 5.5, 9.5]);
    assert_eq!(clock.told_at(&Output::Deliver), [1.0, 10.0]);
    assert_eq!(clock.told_at(&Output::Terminated), [15.0], "Timer K = T4");

    let (mut tcp, _) = ClientNonInvite::start(b"BYE".to_vec(), true);
    assert_eq!(tcp.on_response(200).last(), Some(&Output::Terminated));
}
