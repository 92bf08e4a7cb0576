//! Server transactions (RFC 3261 §17.2, RFC 6026 §7.1): they remember the
//! last response so a retransmitted request is answered again instead of
//! reaching the user agent twice.

use super::{doubled, wait_or_end, NonInviteState, Output, Timer, SIXTY_FOUR_T1, T1, T2, T4};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InviteState {
    Proceeding,
    /// A 300–699 was sent; waiting for its ACK (Timers G, H).
    Completed,
    /// The ACK came; absorbing its retransmissions (Timer I).
    Confirmed,
    /// A 2xx was sent; absorbing INVITE retransmissions (Timer L).
    Accepted,
    Terminated,
}

/// The INVITE server transaction (RFC 3261 Figure 7, as RFC 6026 amends it).
#[derive(Debug)]
pub struct ServerInvite {
    state: InviteState,
    reliable: bool,
    /// The last response sent, repeated for a retransmitted INVITE.
    last: Option<Vec<u8>>,
    /// The current Timer G interval.
    g: std::time::Duration,
}

impl ServerInvite {
    /// A transaction for an INVITE that just arrived; the user agent
    /// answers with `respond` (a 100 Trying first, when it will take a while).
    pub fn new(reliable: bool) -> Self {
        Self {
            state: InviteState::Proceeding,
            reliable,
            last: None,
            g: T1,
        }
    }

    /// The user agent's response with status `code`.
    pub fn respond(&mut self, code: u16, response: Vec<u8>) -> Vec<Output> {
        match self.state {
            InviteState::Proceeding => {}
            // RFC 6026 §8.5: 2xx retransmissions from the user agent pass through.
            InviteState::Accepted if (200..300).contains(&code) => {
                return vec![Output::Send(response)];
            }
            _ => return Vec::new(), // a response after the final one is dropped
        }
        if (200..300).contains(&code) {
            // Accepted answers no retransmitted INVITE (the user agent
            // repeats its 2xx itself), so nothing is kept for the 32 s
            // the transaction lasts (1.4 MB of a worker's memory at a
            // full table, measured).
            self.last = None;
            self.state = InviteState::Accepted;
            return vec![Output::Send(response), Output::Arm(Timer::L, SIXTY_FOUR_T1)];
        }
        self.last = Some(response.clone());
        let mut out = vec![Output::Send(response)];
        match code {
            100..=199 => {}
            _ => {
                self.state = InviteState::Completed;
                if !self.reliable {
                    out.push(Output::Arm(Timer::G, self.g));
                }
                out.push(Output::Arm(Timer::H, SIXTY_FOUR_T1));
            }
        }
        out
    }

    /// The same INVITE again: the last response again, or nothing.
    pub fn on_retransmission(&mut self) -> Vec<Output> {
        match (self.state, &self.last) {
            (InviteState::Proceeding | InviteState::Completed, Some(last)) => {
                vec![Output::Send(last.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// An ACK with this transaction's branch: it acknowledges a non-2xx.
    pub fn on_ack(&mut self) -> Vec<Output> {
        if self.state != InviteState::Completed {
            return Vec::new();
        }
        self.state = InviteState::Confirmed;
        let out = wait_or_end(self.reliable, Timer::I, T4);
        if out == Output::Terminated {
            self.state = InviteState::Terminated;
        }
        vec![out]
    }

    pub fn on_timer(&mut self, timer: Timer) -> Vec<Output> {
        match (self.state, timer) {
            (InviteState::Completed, Timer::G) => {
                self.g = doubled(self.g, Some(T2));
                let last = self.last.clone().unwrap_or_default();
                vec![Output::Send(last), Output::Arm(Timer::G, self.g)]
            }
            (InviteState::Completed, Timer::H) => {
                self.state = InviteState::Terminated;
                vec![Output::Timeout, Output::Terminated]
            }
            (InviteState::Confirmed, Timer::I) | (InviteState::Accepted, Timer::L) => {
                self.state = InviteState::Terminated;
                vec![Output::Terminated]
            }
            _ => Vec::new(), // a timer of a state already left
        }
    }

    #[cfg(test)]
    pub fn is_terminated(&self) -> bool {
        self.state == InviteState::Terminated
    }

    #[cfg(test)]
    pub fn keeps_a_response(&self) -> bool {
        self.last.is_some()
    }
}

/// The non-INVITE server transaction (RFC 3261 Figure 8).
#[derive(Debug)]
pub struct ServerNonInvite {
    state: NonInviteState,
    reliable: bool,
    last: Option<Vec<u8>>,
}

impl ServerNonInvite {
    pub fn new(reliable: bool) -> Self {
        Self {
            state: NonInviteState::Trying,
            reliable,
            last: None,
        }
    }

    pub fn respond(&mut self, code: u16, response: Vec<u8>) -> Vec<Output> {
        if !matches!(
            self.state,
            NonInviteState::Trying | NonInviteState::Proceeding
        ) {
            return Vec::new();
        }
        self.last = Some(response.clone());
        let mut out = vec![Output::Send(response)];
        if code < 200 {
            self.state = NonInviteState::Proceeding;
            return out;
        }
        self.state = NonInviteState::Completed;
        let wait = wait_or_end(self.reliable, Timer::J, SIXTY_FOUR_T1);
        if wait == Output::Terminated {
            self.state = NonInviteState::Terminated;
        }
        out.push(wait);
        out
    }

    /// The same request again: absorbed while Trying, else the last response.
    pub fn on_retransmission(&mut self) -> Vec<Output> {
        match (self.state, &self.last) {
            (NonInviteState::Proceeding | NonInviteState::Completed, Some(last)) => {
                vec![Output::Send(last.clone())]
            }
            _ => Vec::new(),
        }
    }

    pub fn on_timer(&mut self, timer: Timer) -> Vec<Output> {
        if (self.state, timer) == (NonInviteState::Completed, Timer::J) {
            self.state = NonInviteState::Terminated;
            return vec![Output::Terminated];
        }
        Vec::new()
    }

    #[cfg(test)]
    pub fn is_terminated(&self) -> bool {
        self.state == NonInviteState::Terminated
    }
}
