//! Refusing new calls to a worker that has fallen behind.
//!
//! A tenant's limits may admit more calls than its worker can serve (an
//! admin raising them past what the machine does, a machine busy with
//! other work). Its socket then fills with SIP it has not read: the calls
//! it has wait behind new ones, and so do the supervisor's control frames
//! (the heartbeat among them). One tenant offered 4,000 calls/s for 12 s
//! completed 26,708 of 48,000 calls (BENCHMARKS.md, eleventh session).
//!
//! So the router reads how much the worker has left unread on its socket
//! before each new call. A backlog that stands, above [`BEHIND`] at every
//! new call for [`STANDING`], refuses new calls with a 503 until a new call
//! finds the worker caught up: a refusal costs the router a few
//! microseconds and the worker nothing. A burst that the worker clears
//! within [`STANDING`] is never refused. Past [`FULL`] new calls are
//! refused at once, so the calls in progress (their ACKs and BYEs) and the
//! control frames keep the rest of the socket. This bounds only the queue
//! the router can see; the worker's own (its events, its commits) it
//! cannot.

use std::time::{Duration, Instant};

/// Unread bytes (as the kernel counts them: about 1.3 KB per SIP frame)
/// from which a worker is behind: some 50 frames, a few milliseconds' work.
pub const BEHIND: usize = 64 * 1024;
/// How long a worker may stay behind before new calls are refused.
pub const STANDING: Duration = Duration::from_millis(50);
/// Unread bytes past which new calls are refused at once: a quarter of the
/// socket's room as root (`SEND_BUFFER` in supervisor/src/spawn, 1 MiB,
/// which the kernel doubles for its bookkeeping). Without root the room is
/// `wmem_max` at most, and only the [`STANDING`] rule refuses.
pub const FULL: usize = 512 * 1024;

/// One worker's backlog, as the new calls to it found it.
#[derive(Debug, Default)]
pub struct Backlog {
    /// When a new call first found the worker behind, in this stretch.
    behind_since: Option<Instant>,
}

impl Backlog {
    /// Whether a new call may go to a worker that has `unread` bytes left
    /// on its socket now.
    pub fn admits(&mut self, unread: usize, now: Instant) -> bool {
        if unread <= BEHIND {
            self.behind_since = None;
            return true;
        }
        let since = *self.behind_since.get_or_insert(now);
        unread <= FULL && now.saturating_duration_since(since) < STANDING
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_burst_cleared_in_time_is_never_refused() {
        let (mut b, t) = (Backlog::default(), Instant::now());
        assert!(b.admits(0, t));
        for i in 0..49 {
            assert!(b.admits(FULL, t + i * MS), "refused at {i} ms");
        }
        // Caught up: the next stretch behind starts afresh.
        assert!(b.admits(BEHIND, t + 49 * MS));
        assert!(b.admits(FULL, t + 60 * MS));
        assert!(b.admits(BEHIND + 1, t + 109 * MS));
    }

    #[test]
    fn a_standing_backlog_refuses_until_the_worker_catches_up() {
        let (mut b, t) = (Backlog::default(), Instant::now());
        assert!(b.admits(BEHIND + 1, t));
        assert!(!b.admits(BEHIND + 1, t + STANDING));
        assert!(!b.admits(BEHIND + 1, t + 10 * STANDING));
        assert!(b.admits(100, t + 11 * STANDING));
        assert!(b.admits(BEHIND + 1, t + 11 * STANDING + MS));
    }

    #[test]
    fn a_full_socket_refuses_at_once() {
        let (mut b, t) = (Backlog::default(), Instant::now());
        assert!(!b.admits(FULL + 1, t));
        assert!(
            b.admits(FULL, t + MS),
            "the stretch began at the first call"
        );
        assert!(b.admits(0, t + 2 * MS));
    }
}
