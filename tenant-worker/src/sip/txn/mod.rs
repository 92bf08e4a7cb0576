//! RFC 3261 §17 transactions, sans-IO: each state machine takes events
//! (a message arrived, the user agent responded, a timer fired) and returns
//! [`Output`]s for its owner to carry out. No machine touches a socket or a
//! clock, so every timer path is tested in virtual time
//! (`tests::VirtualClock`), and the user agent drives them with tokio timers.
//!
//! The INVITE machines follow RFC 6026's correction: a 2xx moves them to
//! `Accepted` (Timers L and M), where retransmitted INVITEs are absorbed
//! and retransmitted 2xx responses reach the user agent, which owns the 2xx
//! retransmission and the ACK (RFC 3261 §13.3.1.4, §13.2.2.4).

mod client;
mod client_invite;
mod key;
mod server;

pub use client::ClientNonInvite;
pub use client_invite::ClientInvite;
pub use key::{client_key, server_key, ClientKey, ServerKey};
pub use server::{ServerInvite, ServerNonInvite};

use std::time::Duration;

/// T1: the round-trip time estimate.
pub const T1: Duration = Duration::from_millis(500);
/// T2: the longest retransmission interval for non-INVITE requests and
/// INVITE responses.
pub const T2: Duration = Duration::from_secs(4);
/// T4: the longest a message stays in the network.
pub const T4: Duration = Duration::from_secs(5);
/// Timer B, F, H, J (unreliable), L and M: 64·T1.
pub const SIXTY_FOUR_T1: Duration = Duration::from_secs(32);

/// The timers of RFC 3261 §17 (A–K) and RFC 6026 (L, M).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// INVITE client: retransmit the INVITE (T1, doubling).
    A,
    /// INVITE client: give up waiting for any response (64·T1).
    B,
    /// INVITE client: absorb retransmitted non-2xx finals.
    D,
    /// Non-INVITE client: retransmit the request (T1 doubling to T2).
    E,
    /// Non-INVITE client: give up (64·T1).
    F,
    /// INVITE server: retransmit a non-2xx final (T1 doubling to T2).
    G,
    /// INVITE server: give up waiting for the ACK (64·T1).
    H,
    /// INVITE server: absorb retransmitted ACKs (T4).
    I,
    /// Non-INVITE server: absorb retransmitted requests (64·T1).
    J,
    /// Non-INVITE client: absorb retransmitted responses (T4).
    K,
    /// INVITE server (RFC 6026): absorb INVITEs after a 2xx (64·T1).
    L,
    /// INVITE client (RFC 6026): let retransmitted 2xx through (64·T1).
    M,
}

impl Timer {
    /// Whether the timer only ends a wait for stray retransmissions, after
    /// which the transaction forgets its state (so firing late is harmless).
    pub fn absorbs(self) -> bool {
        matches!(
            self,
            Timer::D | Timer::I | Timer::J | Timer::K | Timer::L | Timer::M
        )
    }
}

/// What a transaction asks its owner to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Put these bytes on the wire toward the transaction's peer.
    Send(Vec<u8>),
    /// Call `on_timer` with this timer after the duration.
    Arm(Timer, Duration),
    /// Pass the message just given to the transaction up to the user agent.
    Deliver,
    /// No final response (B, F) or no ACK (H) in time: tell the user agent.
    Timeout,
    /// The transaction is over; forget it.
    Terminated,
}

/// The states both non-INVITE machines share (RFC 3261 Figures 6 and 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// The next retransmission interval: doubled, and capped at `cap` when given.
fn doubled(interval: Duration, cap: Option<Duration>) -> Duration {
    let next = interval * 2;
    cap.map_or(next, |c| next.min(c))
}

/// A final-state wait that is zero on reliable transports ends at once.
fn wait_or_end(reliable: bool, timer: Timer, after: Duration) -> Output {
    if reliable {
        Output::Terminated
    } else {
        Output::Arm(timer, after)
    }
}

#[cfg(test)]
pub(crate) mod tests;
