//! The Call-IDs of the calls the router handed to a tenant: a later request
//! or a response with one routes by it, and an INVITE resent for one is no
//! new call.
//!
//! An entry goes 64·T1 (32 s) after the tenant's worker reports its call
//! over: the worker's own requests of that call (a BYE when it hung up)
//! may be answered until then, and a response routes by Call-ID alone.
//! Before, entries stayed for hours and the map filled up under a steady
//! load (100,000 Call-IDs at 2,000 calls/s after 50 s), then pruned itself
//! under the router's lock, sorting the whole map. Ended calls now leave
//! in the order they ended, a few at a time; requests that still come for
//! a call after that carry the tenant's number in their Request-URI and
//! route by it. Calls never reported over (their worker died) are pruned
//! by age once the map is full.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bulkhead_shared::room::shrink_when_sparse;
use bulkhead_shared::TenantId;

/// Most calls whose Call-ID the router remembers; older entries are pruned.
const MAX_DIALOGS: usize = 100_000;
/// How long a Call-ID keeps routing to its tenant after the INVITE.
const DIALOG_TTL: Duration = Duration::from_secs(4 * 3600);
/// How long a Call-ID still routes once its call is over: 64·T1, the
/// longest a worker's request of the call waits for its answer.
const AFTER_END: Duration = Duration::from_secs(32);

#[derive(Debug, Default)]
pub(super) struct Dialogs {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Call-ID → the tenant, when the call was remembered, and whether it
    /// has been reported over (once is enough: a worker repeating itself
    /// grows nothing).
    map: HashMap<String, (TenantId, Instant, bool)>,
    /// Calls reported over, in that order: when, and the entry to remove.
    ended: VecDeque<(Instant, String, TenantId, Instant)>,
}

impl Dialogs {
    /// The tenant a call was handed to.
    pub fn tenant_of(&self, call_id: &str) -> Option<TenantId> {
        self.lock().map.get(call_id).map(|(t, _, _)| t.clone())
    }

    pub fn knows(&self, call_id: &str) -> bool {
        self.lock().map.contains_key(call_id)
    }

    /// Notes that `call_id` went to `tenant`.
    pub fn remember(&self, call_id: &str, tenant: TenantId) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now);
        let dialogs = &mut inner.map;
        if dialogs.len() >= MAX_DIALOGS {
            dialogs.retain(|_, (_, at, _)| now.duration_since(*at) < DIALOG_TTL);
            if dialogs.len() >= MAX_DIALOGS {
                // Still full of live calls: forget the oldest half; those
                // calls' in-dialog requests still route by Contact number.
                let mut ages: Vec<Instant> = dialogs.values().map(|(_, at, _)| *at).collect();
                ages.sort_unstable();
                let cutoff = ages[ages.len() / 2];
                dialogs.retain(|_, (_, at, _)| *at > cutoff);
            }
        }
        dialogs.insert(call_id.to_owned(), (tenant, now, false));
    }

    /// `tenant`'s worker reports `call_id` over: it is forgotten
    /// [`AFTER_END`] later. Only that tenant's own entry goes: a worker
    /// cannot make the router forget another tenant's call (Call-IDs are
    /// the callers' choice and may collide).
    pub fn ended(&self, tenant: &TenantId, call_id: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.expire(now);
        let Some((t, at, over)) = inner.map.get_mut(call_id) else {
            return;
        };
        if t == tenant && !*over {
            *over = true;
            let entry = (now, call_id.to_owned(), t.clone(), *at);
            inner.ended.push_back(entry);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("dialogs lock")
    }
}

impl Inner {
    /// Removes the calls over for [`AFTER_END`] by `now`, unless their
    /// Call-ID has been remembered again since.
    fn expire(&mut self, now: Instant) {
        while let Some((ended_at, _, _, _)) = self.ended.front() {
            if now.duration_since(*ended_at) < AFTER_END {
                break;
            }
            let (_, call_id, tenant, at) = self.ended.pop_front().expect("front exists");
            if self.map.get(&call_id) == Some(&(tenant, at, true)) {
                self.map.remove(&call_id);
            }
        }
        // Back to a few calls after a burst: give the room back.
        shrink_when_sparse(&mut self.map, 1024);
        shrink_when_sparse(&mut self.ended, 1024);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    #[test]
    fn a_call_reported_over_by_its_own_tenant_is_forgotten_64_t1_later_and_no_other() {
        let d = Dialogs::default();
        d.remember("a@x", tenant("clinic"));
        d.remember("b@x", tenant("insurance"));
        // Another tenant's worker naming clinic's call changes nothing.
        d.ended(&tenant("insurance"), "a@x");
        d.ended(&tenant("clinic"), "a@x");
        d.ended(&tenant("clinic"), "a@x"); // again: still one entry to expire
        d.ended(&tenant("clinic"), "never-seen");
        assert_eq!(d.lock().ended.len(), 1);
        // Still routed right after: the worker's BYE may be answered.
        assert_eq!(d.tenant_of("a@x"), Some(tenant("clinic")));
        let later = Instant::now() + AFTER_END;
        d.lock().expire(later);
        assert!(!d.knows("a@x"));
        assert_eq!(d.tenant_of("b@x"), Some(tenant("insurance")));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn a_call_id_remembered_again_after_its_end_is_kept() {
        let d = Dialogs::default();
        d.remember("a@x", tenant("clinic"));
        d.ended(&tenant("clinic"), "a@x");
        std::thread::sleep(Duration::from_millis(2));
        d.remember("a@x", tenant("clinic"));
        d.lock().expire(Instant::now() + AFTER_END);
        assert!(
            d.knows("a@x"),
            "the new call's entry is not the one that ended"
        );
    }

    #[test]
    fn a_full_map_of_live_calls_forgets_its_older_half() {
        let d = Dialogs::default();
        for n in 0..MAX_DIALOGS {
            d.remember(&format!("{n}@x"), tenant("clinic"));
        }
        d.remember("new@x", tenant("clinic"));
        assert!(d.knows("new@x"));
        assert!(d.len() <= MAX_DIALOGS / 2 + 1, "{}", d.len());
        assert!(!d.knows("0@x") && d.knows(&format!("{}@x", MAX_DIALOGS - 1)));
    }
}
