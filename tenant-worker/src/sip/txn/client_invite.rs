//! The INVITE client transaction (RFC 3261 §17.1.1, as RFC 6026 §7.2
//! amends it): it retransmits the INVITE until a response comes, ACKs a
//! non-2xx final itself, and lets every 2xx through to the user agent,
//! which ACKs those.

use std::fmt::Write;
use std::time::Duration;

use super::{doubled, wait_or_end, Output, Timer, SIXTY_FOUR_T1, T1};
use crate::sip::msg::{self, name_is, StartLine};

/// Timer D over an unreliable transport ("at least 32 seconds").
pub const TIMER_D: Duration = Duration::from_secs(32);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Calling,
    Proceeding,
    /// A 300–699 came and was ACKed; absorbing its retransmissions (Timer D).
    Completed,
    /// A 2xx came; later 2xx (other forks, retransmissions) go up (Timer M).
    Accepted,
    Terminated,
}

/// The INVITE client transaction (RFC 3261 Figure 5, as RFC 6026 amends it).
#[derive(Debug)]
pub struct ClientInvite {
    state: InviteState,
    reliable: bool,
    invite: Vec<u8>,
    /// The ACK for a non-2xx final, resent when that final is retransmitted.
    ack: Option<Vec<u8>>,
    /// The current Timer A interval.
    a: Duration,
}

impl ClientInvite {
    /// Starts sending `invite`; carry out the returned outputs.
    pub fn start(invite: Vec<u8>, reliable: bool) -> (Self, Vec<Output>) {
        let mut out = vec![Output::Send(invite.clone())];
        if !reliable {
            out.push(Output::Arm(Timer::A, T1));
        }
        out.push(Output::Arm(Timer::B, SIXTY_FOUR_T1));
        let me = Self {
            state: InviteState::Calling,
            reliable,
            invite,
            ack: None,
            a: T1,
        };
        (me, out)
    }

    /// A response with this transaction's branch.
    pub fn on_response(&mut self, code: u16, response: &[u8]) -> Vec<Output> {
        use InviteState::*;
        match (self.state, code) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                vec![Output::Deliver]
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                vec![Output::Deliver, Output::Arm(Timer::M, SIXTY_FOUR_T1)]
            }
            (Accepted, 200..=299) => vec![Output::Deliver],
            (Calling | Proceeding, 300..) => {
                let Some(ack) = ack_for(&self.invite, response) else {
                    return Vec::new(); // unreadable: wait for a retransmission
                };
                self.ack = Some(ack.clone());
                self.state = Completed;
                let wait = wait_or_end(self.reliable, Timer::D, TIMER_D);
                if wait == Output::Terminated {
                    self.state = Terminated;
                }
                vec![Output::Send(ack), Output::Deliver, wait]
            }
            (Completed, 300..) => self.ack.clone().map(Output::Send).into_iter().collect(),
            _ => Vec::new(),
        }
    }

    pub fn on_timer(&mut self, timer: Timer) -> Vec<Output> {
        use InviteState::*;
        match (self.state, timer) {
            (Calling, Timer::A) => {
                self.a = doubled(self.a, None);
                vec![
                    Output::Send(self.invite.clone()),
                    Output::Arm(Timer::A, self.a),
                ]
            }
            (Calling, Timer::B) => {
                self.state = Terminated;
                vec![Output::Timeout, Output::Terminated]
            }
            (Completed, Timer::D) | (Accepted, Timer::M) => {
                self.state = Terminated;
                vec![Output::Terminated]
            }
            _ => Vec::new(),
        }
    }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): the
/// INVITE's Request-URI, top Via, From, Call-ID, CSeq number and Route
/// set, with the response's To (which carries the answerer's tag).
fn ack_for(invite: &[u8], response: &[u8]) -> Option<Vec<u8>> {
    let inv = msg::scan(invite).ok()?;
    let resp = msg::scan(response).ok()?;
    let StartLine::Request { uri, .. } = inv.start else {
        return None;
    };
    let (cseq, _) = inv.cseq()?;
    let mut ack = String::with_capacity(512);
    let _ = write!(ack, "ACK {uri} SIP/2.0\r\n");
    let via = inv.header("Via")?;
    let top = via.split(',').next().unwrap_or(via).trim();
    let _ = write!(ack, "Via: {top}\r\nMax-Forwards: 70\r\n");
    for (name, value) in inv.headers() {
        if name_is(name, "Route") {
            let _ = write!(ack, "Route: {value}\r\n");
        }
    }
    let _ = write!(
        ack,
        "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} ACK\r\nContent-Length: 0\r\n\r\n",
        inv.header("From")?,
        resp.header("To")?,
        inv.call_id()?,
    );
    Some(ack.into_bytes())
}
