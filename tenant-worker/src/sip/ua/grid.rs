//! Housekeeping timers on a grid. A transaction's wait for late
//! retransmissions before it forgets its state (Timers D, I, J, K, L, M)
//! and an ended call's 32 s linger may fire a little late and harm
//! nothing. At a low call rate each was a wake-up of the worker of its
//! own (three per call); on a 250 ms grid those of every call that ended
//! within the same 250 ms fire in one. Retransmissions and the timers
//! that give up on a peer stay exact.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::time::Instant;

use super::{Event, Ua};
use crate::sip::txn::Timer;

/// The grid's step: the most a timer on it fires late.
const STEP: Duration = Duration::from_millis(250);

/// When a housekeeping timer armed at `now` for `after` fires: at the
/// first grid point at or after `now + after`.
fn deadline(now: Instant, after: Duration) -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    on_grid(*ORIGIN.get_or_init(|| now), now, after)
}

fn on_grid(origin: Instant, now: Instant, after: Duration) -> Instant {
    let exact = now + after;
    if exact < origin {
        return exact;
    }
    let step = STEP.as_nanos();
    let since = (exact - origin).as_nanos().div_ceil(step) * step;
    origin + Duration::from_nanos(u64::try_from(since).unwrap_or(u64::MAX))
}

impl Ua {
    /// A housekeeping timer: it may fire up to a step late, with the others
    /// due about then.
    pub(super) fn schedule_housekeeping(&self, ev: Event, after: Duration) {
        self.schedule_at(ev, deadline(Instant::now(), after));
    }

    /// Arms a transaction's `timer`: on the grid when it only absorbs
    /// retransmissions, on time otherwise.
    pub(super) fn arm(&self, ev: Event, timer: Timer, after: Duration) {
        if timer.absorbs() {
            self.schedule_housekeeping(ev, after);
        } else {
            self.schedule(ev, after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_on_the_grid_never_early_and_less_than_a_step_late() {
        let origin = Instant::now();
        let ms = Duration::from_millis;
        for armed in [0, 1, 249, 250, 251, 7_777] {
            let now = origin + ms(armed);
            for after in [ms(0), ms(1), ms(5000), ms(32_000), ms(32_001)] {
                let at = on_grid(origin, now, after);
                assert!(at >= now + after, "never early");
                assert!(at - (now + after) < STEP, "less than a step late");
                assert_eq!((at - origin).as_nanos() % STEP.as_nanos(), 0, "on the grid");
            }
        }
        // Timers armed within one step of each other fire together.
        assert_eq!(
            on_grid(origin, origin + ms(10), ms(32_000)),
            on_grid(origin, origin + ms(240), ms(32_000))
        );
        // Before the grid's origin (another runtime's clock in tests): exact.
        let early = origin - ms(5000);
        assert_eq!(on_grid(origin, early, ms(2000)), early + ms(2000));
    }
}
