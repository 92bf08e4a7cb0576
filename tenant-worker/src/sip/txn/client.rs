//! The non-INVITE client transaction (RFC 3261 §17.1.2): it retransmits a
//! request over unreliable transports until a response comes, and tells
//! the user agent when none does.

use std::time::Duration;

use super::{doubled, wait_or_end, NonInviteState, Output, Timer, SIXTY_FOUR_T1, T1, T2, T4};

/// The non-INVITE client transaction (RFC 3261 Figure 6).
#[derive(Debug)]
pub struct ClientNonInvite {
    state: NonInviteState,
    reliable: bool,
    request: Vec<u8>,
    /// The current Timer E interval.
    e: Duration,
}

impl ClientNonInvite {
    pub fn start(request: Vec<u8>, reliable: bool) -> (Self, Vec<Output>) {
        let mut out = vec![Output::Send(request.clone())];
        if !reliable {
            out.push(Output::Arm(Timer::E, T1));
        }
        out.push(Output::Arm(Timer::F, SIXTY_FOUR_T1));
        let me = Self {
            state: NonInviteState::Trying,
            reliable,
            request,
            e: T1,
        };
        (me, out)
    }

    pub fn on_response(&mut self, code: u16) -> Vec<Output> {
        use NonInviteState::*;
        match (self.state, code) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                vec![Output::Deliver]
            }
            (Trying | Proceeding, 200..) => {
                self.state = Completed;
                let wait = wait_or_end(self.reliable, Timer::K, T4);
                if wait == Output::Terminated {
                    self.state = Terminated;
                }
                vec![Output::Deliver, wait]
            }
            _ => Vec::new(), // retransmitted responses are absorbed
        }
    }

    pub fn on_timer(&mut self, timer: Timer) -> Vec<Output> {
        use NonInviteState::*;
        match (self.state, timer) {
            (Trying | Proceeding, Timer::E) => {
                // Proceeding: a provisional came, so the request arrived;
                // resend at the slowest pace (RFC 3261 §17.1.2.2).
                self.e = if self.state == Proceeding {
                    T2
                } else {
                    doubled(self.e, Some(T2))
                };
                vec![
                    Output::Send(self.request.clone()),
                    Output::Arm(Timer::E, self.e),
                ]
            }
            (Trying | Proceeding, Timer::F) => {
                self.state = Terminated;
                vec![Output::Timeout, Output::Terminated]
            }
            (Completed, Timer::K) => {
                self.state = Terminated;
                vec![Output::Terminated]
            }
            _ => Vec::new(),
        }
    }
}
