//! Retention: call records and transcripts older than the tenant's
//! `retention_days` are deleted by the worker, at start, whenever the admin
//! changes the setting, and hourly. Deletion goes through the store's one
//! writer in batches, so calls being recorded never wait long behind it.
//! Calls still in progress are never deleted.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::store::writer::{Store, Write};

/// How often the worker looks for expired records.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Calls deleted per transaction.
const BATCH: usize = 500;

/// The tenant's retention, changed live by the supervisor.
#[derive(Debug, Default)]
pub struct Retention {
    days: AtomicU32,
    changed: Notify,
}

impl Retention {
    pub fn new(days: u32) -> Self {
        Self {
            days: AtomicU32::new(days),
            changed: Notify::new(),
        }
    }

    /// A new setting; the sweeper runs at once.
    pub fn set(&self, days: u32) {
        self.days.store(days, Ordering::Relaxed);
        self.changed.notify_one();
    }
}

/// Sweeps forever.
pub async fn run(store: Store, retention: Arc<Retention>) {
    loop {
        let days = retention.days.load(Ordering::Relaxed);
        if days > 0 {
            if let Err(e) = sweep(&store, days).await {
                tracing::error!(error = %e, "retention sweep failed; retrying at the next one");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_EVERY) => {}
            _ = retention.changed.notified() => {}
        }
    }
}

/// Deletes every call over `days` old; returns how many there were.
pub async fn sweep(store: &Store, days: u32) -> Result<usize, String> {
    let cutoff = SystemTime::now() - Duration::from_secs(u64::from(days) * 86_400);
    let before = bulkhead_shared::time::rfc3339(cutoff);
    let expired = store
        .expired_calls(before.clone())
        .await
        .map_err(|e| e.to_string())?;
    for _ in 0..expired.div_ceil(BATCH) {
        store
            .write_durable(Write::Purge {
                before: before.clone(),
                limit: BATCH,
            })
            .await?;
    }
    Ok(expired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallFilter, NewCall, Outcome, Turn};

    #[tokio::test]
    async fn deletes_old_finished_calls_with_their_transcripts_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let open = || crate::store::open(&path, &[4; 32]).unwrap();
        let (store, _writer) = Store::start(open(), open());
        let day = |d: u64| {
            bulkhead_shared::time::rfc3339(SystemTime::now() - Duration::from_secs(d * 86_400))
        };
        // 1,200 calls 40 days old (more than two batches), one recent, and
        // one old call still in progress.
        for i in 0..1202 {
            let (started, finished) = match i {
                1200 => (day(0), true),
                1201 => (day(40), false),
                _ => (day(40), true),
            };
            let id = format!("c{i}");
            store
                .write(Write::InsertCall(NewCall {
                    id: id.clone(),
                    call_id: format!("{i}@x"),
                    from: "+15551234567".into(),
                    to: "+15550100".into(),
                    started_at: started,
                }))
                .await;
            let turn = Turn {
                speaker: "caller".into(),
                text: "hello".into(),
                at_ms: 0,
                latency_ms: None,
            };
            store
                .write(Write::Turn {
                    call: id.clone(),
                    turn,
                })
                .await;
            if finished {
                store
                    .write(Write::Ended {
                        id,
                        at: day(0),
                        outcome: Outcome::Completed,
                        duration_ms: 1,
                    })
                    .await;
            }
        }
        // A durable write after the others: everything before it is committed.
        let last = Turn {
            speaker: "agent".into(),
            text: "goodbye".into(),
            at_ms: 1,
            latency_ms: None,
        };
        store
            .write_durable(Write::Turn {
                call: "c1200".into(),
                turn: last,
            })
            .await
            .unwrap();
        assert_eq!(sweep(&store, 30).await.unwrap(), 1200);
        let left = store
            .list_calls(CallFilter {
                limit: 10,
                ..CallFilter::default()
            })
            .await
            .unwrap();
        let ids: Vec<_> = left.calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["c1201", "c1200"]);
        assert!(store.transcript("c5".into()).await.unwrap().is_empty());
        assert_eq!(store.transcript("c1200".into()).await.unwrap().len(), 2);
        assert_eq!(
            sweep(&store, 30).await.unwrap(),
            0,
            "nothing left to delete"
        );
    }
}
