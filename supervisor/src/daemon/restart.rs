//! The restart policy, as in an OTP supervisor: a worker that exits on its
//! own comes back at once the first time (every moment without a worker is
//! callers getting 503), then after an exponential backoff, unless it has
//! restarted too often within a window, in which case its tenant is marked
//! failed (with the reason) until an admin resets it. Pure, so it is
//! unit-tested without processes.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Delay before the second restart within the window; each further one
/// doubles it. The first restart is immediate: a single death is not a
/// crash loop, and the loop is bounded by [`MAX_RESTARTS`] anyway.
pub const FIRST_DELAY: Duration = Duration::from_millis(100);
/// Longest delay between restarts.
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// More than this many restarts within [`WINDOW`] and the tenant is failed.
pub const MAX_RESTARTS: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);

/// What to do after an unexpected exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    RestartAfter(Duration),
    GiveUp,
}

/// Restart history of one tenant.
#[derive(Debug, Default)]
pub struct History {
    recent: VecDeque<Instant>,
}

impl History {
    /// Records an exit at `now` and decides.
    pub fn on_exit(&mut self, now: Instant) -> Decision {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= MAX_RESTARTS {
            return Decision::GiveUp;
        }
        let earlier = self.recent.len() as u32;
        self.recent.push_back(now);
        if earlier == 0 {
            return Decision::RestartAfter(Duration::ZERO);
        }
        let doublings = (earlier - 1).min(16);
        Decision::RestartAfter(FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY))
    }

    /// `tenant reset`: forget the history.
    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_at_once_then_backs_off_exponentially_then_gives_up() {
        let mut h = History::default();
        let t0 = Instant::now();
        let delays: Vec<Decision> = (0..6)
            .map(|i| h.on_exit(t0 + Duration::from_secs(i)))
            .collect();
        assert_eq!(
            delays,
            [
                Decision::RestartAfter(Duration::ZERO),
                Decision::RestartAfter(Duration::from_millis(100)),
                Decision::RestartAfter(Duration::from_millis(200)),
                Decision::RestartAfter(Duration::from_millis(400)),
                Decision::RestartAfter(Duration::from_millis(800)),
                Decision::GiveUp,
            ]
        );
        h.reset();
        assert_eq!(
            h.on_exit(t0 + Duration::from_secs(10)),
            Decision::RestartAfter(Duration::ZERO)
        );
    }

    #[test]
    fn old_restarts_leave_the_window() {
        let mut h = History::default();
        let t0 = Instant::now();
        for i in 0..5 {
            assert!(matches!(
                h.on_exit(t0 + Duration::from_secs(i)),
                Decision::RestartAfter(_)
            ));
        }
        // Two minutes later the window is empty again: at once, as a first death.
        assert_eq!(
            h.on_exit(t0 + Duration::from_secs(130)),
            Decision::RestartAfter(Duration::ZERO)
        );
    }
}
