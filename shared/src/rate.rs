//! A token bucket: `rate` tokens a second, at most `burst` saved. Used for
//! tenants' call rates in the router, for frames from each worker and for
//! each API token's requests. And [`Occurrences`], for a log line that
//! someone else can trigger as often as they send a packet.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            refilled: now,
        }
    }

    /// Changes the rate and burst, keeping the tokens saved so far (capped).
    pub fn set(&mut self, rate: f64, burst: f64) {
        self.rate = rate;
        self.burst = burst;
        self.tokens = self.tokens.min(burst);
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Counts an event that a peer (a caller, a worker) can cause once per
/// packet, so that it is logged at most once per period with its count
/// instead of once per packet: a flood must not become a log flood.
#[derive(Debug, Clone)]
pub struct Occurrences {
    period: Duration,
    said: Option<Instant>,
    unsaid: u64,
}

impl Occurrences {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            said: None,
            unsaid: 0,
        }
    }

    /// Counts one. Returns how many to log (this one and those not yet
    /// logged) when the last log is at least a period old, else `None`.
    pub fn count(&mut self, now: Instant) -> Option<u64> {
        self.unsaid += 1;
        if self
            .said
            .is_some_and(|t| now.saturating_duration_since(t) < self.period)
        {
            return None;
        }
        self.said = Some(now);
        Some(std::mem::take(&mut self.unsaid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spends_the_burst_then_refills_at_the_rate() {
        let now = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0, now);
        assert_eq!((0..25).filter(|_| b.take(now)).count(), 20);
        let later = now + Duration::from_millis(500);
        assert_eq!((0..25).filter(|_| b.take(later)).count(), 5);
        // Idle time saves no more than the burst.
        let idle = later + Duration::from_secs(100);
        assert_eq!((0..50).filter(|_| b.take(idle)).count(), 20);
    }

    #[test]
    fn occurrences_are_said_once_a_period_with_their_count() {
        let start = Instant::now();
        let mut o = Occurrences::new(Duration::from_secs(10));
        assert_eq!(o.count(start), Some(1), "the first is said at once");
        let quiet: Vec<_> = (1..=500)
            .map(|ms| o.count(start + Duration::from_millis(ms)))
            .collect();
        assert!(quiet.iter().all(Option::is_none));
        assert_eq!(o.count(start + Duration::from_secs(10)), Some(501));
        assert_eq!(o.count(start + Duration::from_secs(11)), None);
        assert_eq!(o.count(start + Duration::from_secs(60)), Some(2));
    }

    #[test]
    fn lowering_the_burst_caps_saved_tokens() {
        let now = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0, now);
        b.set(1.0, 2.0);
        assert_eq!((0..10).filter(|_| b.take(now)).count(), 2);
    }
}
