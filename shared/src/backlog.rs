//! A standing backlog: whether a queue has stayed long for long enough
//! that new work should be refused rather than queued behind it.
//!
//! Used where a new call meets a queue of work for the calls already
//! there: the router before a worker's socket (supervisor/src/router/
//! backlog.rs) and a worker's user agent before its own events
//! (tenant-worker/src/sip/ua/invite.rs). A burst the consumer clears
//! within the standing time is never refused; a backlog that stands is,
//! until a new arrival finds it cleared. Past the hard bound new work is
//! refused at once.

use std::time::{Duration, Instant};

/// One queue's backlog, as the new arrivals found it.
#[derive(Debug)]
pub struct Backlog {
    behind: usize,
    full: usize,
    standing: Duration,
    /// When an arrival first found the queue behind, in this stretch.
    behind_since: Option<Instant>,
}

impl Backlog {
    /// Behind above `behind`; refused once behind at every arrival for
    /// `standing`, or at once above `full`.
    pub fn new(behind: usize, full: usize, standing: Duration) -> Self {
        Self {
            behind,
            full,
            standing,
            behind_since: None,
        }
    }

    /// Whether new work may join a queue that holds `queued` now.
    pub fn admits(&mut self, queued: usize, now: Instant) -> bool {
        if queued <= self.behind {
            self.behind_since = None;
            return true;
        }
        let since = *self.behind_since.get_or_insert(now);
        queued <= self.full && now.saturating_duration_since(since) < self.standing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const BEHIND: usize = 100;
    const FULL: usize = 1000;
    const STANDING: Duration = Duration::from_millis(50);

    fn backlog() -> Backlog {
        Backlog::new(BEHIND, FULL, STANDING)
    }

    #[test]
    fn a_burst_cleared_in_time_is_never_refused() {
        let (mut b, t) = (backlog(), Instant::now());
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
    fn a_standing_backlog_refuses_until_the_queue_clears() {
        let (mut b, t) = (backlog(), Instant::now());
        assert!(b.admits(BEHIND + 1, t));
        assert!(!b.admits(BEHIND + 1, t + STANDING));
        assert!(!b.admits(BEHIND + 1, t + 10 * STANDING));
        assert!(b.admits(BEHIND - 1, t + 11 * STANDING));
        assert!(b.admits(BEHIND + 1, t + 11 * STANDING + MS));
    }

    #[test]
    fn past_the_hard_bound_it_refuses_at_once() {
        let (mut b, t) = (backlog(), Instant::now());
        assert!(!b.admits(FULL + 1, t));
        assert!(
            b.admits(FULL, t + MS),
            "the stretch began at the first arrival"
        );
        assert!(b.admits(0, t + 2 * MS));
    }
}
