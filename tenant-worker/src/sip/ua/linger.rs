//! Ended calls, kept for [`LINGER`] (64·T1) after their end so that a late
//! request for one (an INVITE resent past its transaction, a CANCEL that
//! crossed the final response) is answered as that call's, not taken for
//! a new call.
//!
//! One queue in order of ending and one timer for its head, instead of a
//! timer task per call: under a steady load every ended call used to hold
//! a task for 32 s. And a bound: a tenant allowed 1,000 calls/s keeps
//! 32,000 ended calls, so past [`MAX_LINGERING`] the oldest is forgotten
//! early (BENCHMARKS.md, the ninth session).

use std::collections::VecDeque;

use tokio::time::Instant;

use super::LINGER;

/// Most ended calls kept at once.
pub(super) const MAX_LINGERING: usize = 10_000;

#[derive(Debug)]
pub(super) struct Lingering {
    /// Call-IDs in the order their calls ended, with when.
    ended: VecDeque<(Instant, String)>,
    max: usize,
}

impl Lingering {
    pub fn new(max: usize) -> Self {
        Self {
            ended: VecDeque::new(),
            max,
        }
    }

    /// Notes that `call_id` ended at `now`. Returns a call to forget at
    /// once when the queue is over its bound (the oldest).
    pub fn push(&mut self, call_id: String, now: Instant) -> Option<String> {
        self.ended.push_back((now, call_id));
        if self.ended.len() > self.max {
            return self.ended.pop_front().map(|(_, id)| id);
        }
        None
    }

    /// The oldest call whose linger is over at `now`, taken off the queue.
    pub fn pop_expired(&mut self, now: Instant) -> Option<String> {
        let (at, _) = self.ended.front()?;
        if now.duration_since(*at) < LINGER {
            return None;
        }
        self.ended.pop_front().map(|(_, id)| id)
    }

    /// When the oldest call's linger ends.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.ended.front().map(|(at, _)| *at + LINGER)
    }

    pub fn len(&self) -> usize {
        self.ended.len()
    }

    /// Gives back the queue's room once it has mostly emptied (as the
    /// transaction tables do).
    pub fn shrink_when_sparse(&mut self) {
        bulkhead_shared::room::shrink_when_sparse(&mut self.ended, super::transactions::KEEP);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn calls_expire_in_the_order_they_ended_once_their_linger_is_over() {
        let t0 = Instant::now();
        let mut q = Lingering::new(10);
        assert_eq!(q.push("a".into(), t0), None);
        assert_eq!(q.push("b".into(), t0 + Duration::from_secs(5)), None);
        assert_eq!(q.next_expiry(), Some(t0 + LINGER));
        assert_eq!(q.pop_expired(t0 + LINGER - Duration::from_millis(1)), None);
        assert_eq!(q.pop_expired(t0 + LINGER).as_deref(), Some("a"));
        assert_eq!(q.pop_expired(t0 + LINGER), None);
        assert_eq!(q.next_expiry(), Some(t0 + Duration::from_secs(5) + LINGER));
        let later = t0 + Duration::from_secs(100);
        assert_eq!(q.pop_expired(later).as_deref(), Some("b"));
        assert_eq!(
            (q.pop_expired(later), q.next_expiry(), q.len()),
            (None, None, 0)
        );
    }

    #[test]
    fn past_its_bound_the_oldest_call_is_forgotten_early() {
        let t0 = Instant::now();
        let mut q = Lingering::new(3);
        for id in ["a", "b", "c"] {
            assert_eq!(q.push(id.into(), t0), None);
        }
        assert_eq!(q.push("d".into(), t0).as_deref(), Some("a"));
        assert_eq!(q.push("e".into(), t0).as_deref(), Some("b"));
        assert_eq!(q.len(), 3);
        let order: Vec<_> = std::iter::from_fn(|| q.pop_expired(t0 + LINGER)).collect();
        assert_eq!(order, ["c", "d", "e"]);
    }
}
