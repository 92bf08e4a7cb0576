//! A token bucket: `rate` tokens a second, at most `burst` saved. Used for
//! tenants' call rates in the router, for frames from each worker and for
//! each API token's requests.

use std::time::Instant;

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn lowering_the_burst_caps_saved_tokens() {
        let now = Instant::now();
        let mut b = TokenBucket::new(10.0, 20.0, now);
        b.set(1.0, 2.0);
        assert_eq!((0..10).filter(|_| b.take(now)).count(), 2);
    }
}
