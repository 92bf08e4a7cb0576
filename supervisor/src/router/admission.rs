//! Per-tenant admission of new calls: a call-rate limit (token bucket) and a
//! concurrent-call limit, checked in the router before a new INVITE reaches
//! the worker, so a tenant flooded past its limits costs the router a 503
//! and its neighbours nothing. Draining (a tenant, or every tenant on
//! SIGTERM) refuses new calls the same way while calls in progress finish.
//!
//! A call holds its slot from the admitted INVITE until the worker reports
//! it over (`CallEnded`) or the worker goes away. A worker can free only its
//! own tenant's slots, so lying about its calls harms no one else.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bulkhead_shared::TenantId;

use bulkhead_shared::rate::TokenBucket;

use super::backlog::{self, Backlog};

/// A slot nobody reported over for this long is taken back (a safety net
/// for a worker that loses track of a call; real calls end far sooner).
const SLOT_MAX_AGE: Duration = Duration::from_secs(4 * 3600);

/// A tenant's call limits as the router enforces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    pub max_concurrent: u32,
    pub per_second: u32,
}

/// Why a new call was refused; each is a 503 with its own Retry-After.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Draining,
    TooManyCalls,
    TooFast,
    /// The worker has fallen behind on the calls it has ([`super::backlog`]).
    Behind,
}

impl Refusal {
    /// Seconds for the 503's Retry-After.
    pub fn retry_after(self) -> &'static str {
        match self {
            Self::TooFast | Self::Behind => "1",
            Self::TooManyCalls | Self::Draining => "5",
        }
    }

    /// The 503's reason phrase, saying which limit refused the call.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Draining => "Service Unavailable (draining)",
            Self::TooManyCalls => "Service Unavailable (too many calls)",
            Self::TooFast => "Service Unavailable (call rate limit)",
            Self::Behind => "Service Unavailable (busy)",
        }
    }
}

/// Per-tenant counters for `/metrics` and `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GateCounts {
    /// New calls forwarded to the worker.
    pub admitted: u64,
    /// New calls refused: by a limit, a drain, or the worker being down.
    pub refused: u64,
    /// Calls holding a slot now.
    pub active: usize,
}

#[derive(Debug)]
struct Gate {
    limits: CallLimits,
    /// One second's worth of calls may come at once.
    bucket: TokenBucket,
    active: HashMap<String, Instant>,
    backlog: Backlog,
    draining: bool,
    admitted: u64,
    refused: u64,
}

impl Gate {
    fn new(limits: CallLimits, now: Instant) -> Self {
        Self {
            limits,
            bucket: TokenBucket::new(
                f64::from(limits.per_second),
                f64::from(limits.per_second),
                now,
            ),
            active: HashMap::new(),
            backlog: backlog::for_worker_socket(),
            draining: false,
            admitted: 0,
            refused: 0,
        }
    }

    fn check(&mut self, draining_all: bool, unread: usize, now: Instant) -> Result<(), Refusal> {
        if self.draining || draining_all {
            return Err(Refusal::Draining);
        }
        if self.active.len() >= self.limits.max_concurrent as usize {
            self.active
                .retain(|_, at| now.saturating_duration_since(*at) < SLOT_MAX_AGE);
            if self.active.len() >= self.limits.max_concurrent as usize {
                return Err(Refusal::TooManyCalls);
            }
        }
        if !self.backlog.admits(unread, now) {
            return Err(Refusal::Behind);
        }
        if !self.bucket.take(now) {
            return Err(Refusal::TooFast);
        }
        Ok(())
    }
}

/// Every tenant's gate.
#[derive(Debug, Default)]
pub struct Admission {
    gates: Mutex<HashMap<TenantId, Gate>>,
    draining_all: AtomicBool,
}

impl Admission {
    /// Sets (or changes, live) a tenant's limits; its calls in progress keep their slots.
    pub fn set_limits(&self, tenant: &TenantId, limits: CallLimits) {
        let now = Instant::now();
        let mut gates = self.gates.lock().expect("gates lock");
        gates
            .entry(tenant.clone())
            .and_modify(|g| {
                g.limits = limits;
                let rate = f64::from(limits.per_second);
                g.bucket.set(rate, rate);
            })
            .or_insert_with(|| Gate::new(limits, now));
    }

    /// Forgets a removed tenant.
    pub fn remove(&self, tenant: &TenantId) {
        self.gates.lock().expect("gates lock").remove(tenant);
    }

    /// Admits a new call or says why not; `unread` is what the tenant's
    /// worker has left unread on its socket. A tenant without limits set is
    /// admitted (its worker's own limit still applies).
    pub fn admit(
        &self,
        tenant: &TenantId,
        call_id: &str,
        unread: usize,
        now: Instant,
    ) -> Result<(), Refusal> {
        let draining_all = self.draining_all.load(Ordering::Relaxed);
        let mut gates = self.gates.lock().expect("gates lock");
        let Some(gate) = gates.get_mut(tenant) else {
            return if draining_all {
                Err(Refusal::Draining)
            } else {
                Ok(())
            };
        };
        match gate.check(draining_all, unread, now) {
            Ok(()) => {
                gate.admitted += 1;
                gate.active.insert(call_id.to_owned(), now);
                Ok(())
            }
            Err(refusal) => {
                gate.refused += 1;
                Err(refusal)
            }
        }
    }

    /// A call is over (reported by its tenant's worker), or was admitted but
    /// never reached the worker.
    pub fn release(&self, tenant: &TenantId, call_id: &str) {
        if let Some(gate) = self.gates.lock().expect("gates lock").get_mut(tenant) {
            gate.active.remove(call_id);
        }
    }

    /// An admitted call could not be handed to the worker after all: it
    /// counts as refused and holds no slot.
    pub fn unadmit(&self, tenant: &TenantId, call_id: &str) {
        if let Some(gate) = self.gates.lock().expect("gates lock").get_mut(tenant) {
            if gate.active.remove(call_id).is_some() {
                gate.admitted -= 1;
            }
            gate.refused += 1;
        }
    }

    /// A new call found the tenant's worker down.
    pub fn note_refused(&self, tenant: &TenantId) {
        if let Some(gate) = self.gates.lock().expect("gates lock").get_mut(tenant) {
            gate.refused += 1;
        }
    }

    /// The tenant's worker is gone: none of its calls survive.
    pub fn release_all(&self, tenant: &TenantId) {
        if let Some(gate) = self.gates.lock().expect("gates lock").get_mut(tenant) {
            gate.active.clear();
        }
    }

    /// Refuses (or, with `false`, admits again) the tenant's new calls.
    pub fn set_draining(&self, tenant: &TenantId, draining: bool) {
        if let Some(gate) = self.gates.lock().expect("gates lock").get_mut(tenant) {
            gate.draining = draining;
        }
    }

    /// Refuses every tenant's new calls from now on (supervisor shutdown).
    pub fn drain_all(&self) {
        self.draining_all.store(true, Ordering::Relaxed);
    }

    /// Calls holding a slot for `tenant`, or for every tenant with `None`.
    pub fn active(&self, tenant: Option<&TenantId>) -> usize {
        let gates = self.gates.lock().expect("gates lock");
        match tenant {
            Some(t) => gates.get(t).map_or(0, |g| g.active.len()),
            None => gates.values().map(|g| g.active.len()).sum(),
        }
    }

    pub fn counts(&self, tenant: &TenantId) -> GateCounts {
        let gates = self.gates.lock().expect("gates lock");
        gates
            .get(tenant)
            .map_or_else(GateCounts::default, |g| GateCounts {
                admitted: g.admitted,
                refused: g.refused,
                active: g.active.len(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    fn gated(max_concurrent: u32, per_second: u32) -> (Admission, TenantId) {
        let a = Admission::default();
        let t = tenant("clinic");
        a.set_limits(
            &t,
            CallLimits {
                max_concurrent,
                per_second,
            },
        );
        (a, t)
    }

    #[test]
    fn a_worker_left_behind_gets_no_new_calls_and_spends_no_rate() {
        use super::super::backlog::{BEHIND, STANDING};
        let (a, t) = gated(1000, 2);
        let now = Instant::now();
        assert_eq!(a.admit(&t, "c1", BEHIND + 1, now), Ok(()));
        let later = now + STANDING;
        assert_eq!(a.admit(&t, "c2", BEHIND + 1, later), Err(Refusal::Behind));
        assert_eq!(Refusal::Behind.reason(), "Service Unavailable (busy)");
        assert_eq!(a.counts(&t).refused, 1);
        // Caught up: the refused call took no token, so one is left.
        assert_eq!(a.admit(&t, "c2", 0, later), Ok(()));
        assert_eq!(a.admit(&t, "c3", 0, later), Err(Refusal::TooFast));
    }

    #[test]
    fn the_rate_limit_allows_a_burst_of_one_second_then_refills() {
        let (a, t) = gated(1000, 10);
        let now = Instant::now();
        for i in 0..10 {
            assert_eq!(a.admit(&t, &format!("c{i}"), 0, now), Ok(()));
        }
        assert_eq!(a.admit(&t, "over", 0, now), Err(Refusal::TooFast));
        // A tenth of a second later, one more token.
        let later = now + Duration::from_millis(100);
        assert_eq!(a.admit(&t, "c10", 0, later), Ok(()));
        assert_eq!(a.admit(&t, "c11", 0, later), Err(Refusal::TooFast));
        // Idle for a minute saves only one second's worth.
        let idle = later + Duration::from_secs(60);
        let admitted = (0..30)
            .filter(|i| a.admit(&t, &format!("d{i}"), 0, idle).is_ok())
            .count();
        assert_eq!(admitted, 10);
        assert_eq!(a.counts(&t).refused, 2 + 20);
    }

    #[test]
    fn the_concurrent_limit_counts_calls_until_they_end() {
        let (a, t) = gated(2, 1000);
        let now = Instant::now();
        assert_eq!(a.admit(&t, "c1", 0, now), Ok(()));
        assert_eq!(a.admit(&t, "c2", 0, now), Ok(()));
        assert_eq!(a.admit(&t, "c3", 0, now), Err(Refusal::TooManyCalls));
        a.release(&t, "c1");
        assert_eq!(a.admit(&t, "c3", 0, now), Ok(()));
        assert_eq!(a.active(Some(&t)), 2);
        a.release_all(&t);
        assert_eq!(a.active(None), 0);
        // A slot never reported over is taken back after SLOT_MAX_AGE.
        a.admit(&t, "x1", 0, now).unwrap();
        a.admit(&t, "x2", 0, now).unwrap();
        assert_eq!(a.admit(&t, "x3", 0, now + SLOT_MAX_AGE), Ok(()));
    }

    #[test]
    fn one_tenant_releasing_cannot_free_another_tenants_slots() {
        let (a, t) = gated(1, 1000);
        let other = tenant("insurance");
        a.set_limits(
            &other,
            CallLimits {
                max_concurrent: 1,
                per_second: 1000,
            },
        );
        let now = Instant::now();
        a.admit(&t, "same-call-id", 0, now).unwrap();
        a.release(&other, "same-call-id");
        assert_eq!(a.admit(&t, "c2", 0, now), Err(Refusal::TooManyCalls));
        assert_eq!(a.admit(&other, "c3", 0, now), Ok(()));
    }

    #[test]
    fn draining_refuses_new_calls_but_keeps_calls_in_progress() {
        let (a, t) = gated(10, 10);
        let now = Instant::now();
        a.admit(&t, "c1", 0, now).unwrap();
        a.set_draining(&t, true);
        assert_eq!(a.admit(&t, "c2", 0, now), Err(Refusal::Draining));
        assert_eq!(a.active(Some(&t)), 1);
        a.set_draining(&t, false);
        assert_eq!(a.admit(&t, "c2", 0, now), Ok(()));
        a.drain_all();
        assert_eq!(a.admit(&t, "c3", 0, now), Err(Refusal::Draining));
        assert_eq!(
            a.admit(&tenant("unknown"), "c4", 0, now),
            Err(Refusal::Draining)
        );
    }

    #[test]
    fn changing_limits_live_keeps_slots() {
        let (a, t) = gated(2, 100);
        let now = Instant::now();
        a.admit(&t, "c1", 0, now).unwrap();
        a.set_limits(
            &t,
            CallLimits {
                max_concurrent: 1,
                per_second: 100,
            },
        );
        assert_eq!(a.active(Some(&t)), 1);
        assert_eq!(a.admit(&t, "c2", 0, now), Err(Refusal::TooManyCalls));
    }
}
