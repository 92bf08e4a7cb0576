//! How the writer gathers one transaction's writes.
//!
//! Every write queued when the writer comes round goes into the batch. A
//! batch that somebody waits for (a call's insert before its 180, its end
//! before the BYE's 200) commits at once. A batch nobody waits for (that a
//! call was answered, which providers serve it, a transcript turn, its RTCP
//! figures) waits up to [`LINGER`] for more writes, and commits as soon as
//! a write somebody waits for joins it. A call's writes between its insert
//! and its end then share one commit, most often its end's: at 50 calls/s
//! per tenant a call took 3.1 commits (fsyncs) and now takes 2
//! (BENCHMARKS.md, tenth session). What it costs: a crash loses up to
//! `LINGER` more of writes that were never waited for, and the tenant API
//! shows them up to `LINGER` later.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::writer::{Queued, Write, MAX_BATCH};

/// The longest a write nobody waits for stays uncommitted for company.
pub(super) const LINGER: Duration = Duration::from_millis(50);

/// Adds to `batch` (which holds its first write) what joins it, per the
/// module's rules. Returns a rekey that arrived meanwhile: it runs alone,
/// after this batch commits.
pub(super) fn gather(
    rx: &mut mpsc::Receiver<Queued>,
    batch: &mut Vec<Queued>,
    linger: Duration,
) -> Option<Queued> {
    let deadline = Instant::now() + linger;
    let mut waited_for = batch.iter().any(|(_, done)| done.is_some());
    loop {
        while batch.len() < MAX_BATCH {
            let Ok(w) = rx.try_recv() else { break };
            if matches!(w.0, Write::Rekey(_)) {
                return Some(w);
            }
            waited_for |= w.1.is_some();
            batch.push(w);
        }
        if waited_for || batch.len() >= MAX_BATCH {
            return None;
        }
        match recv_until(rx, deadline) {
            Next::Write(w) if matches!(w.0, Write::Rekey(_)) => return Some(w),
            Next::Write(w) => {
                waited_for |= w.1.is_some();
                batch.push(w);
            }
            Next::TimedOut | Next::Closed => return None,
        }
    }
}

enum Next {
    Write(Queued),
    TimedOut,
    Closed,
}

/// Wakes the writer thread when a write is queued.
struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The next write, waiting no later than `deadline`. The writer is a plain
/// thread, not a runtime's, so it parks itself and the channel's waker
/// unparks it.
fn recv_until(rx: &mut mpsc::Receiver<Queued>, deadline: Instant) -> Next {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match rx.poll_recv(&mut cx) {
            Poll::Ready(Some(w)) => return Next::Write(w),
            Poll::Ready(None) => return Next::Closed,
            Poll::Pending => {}
        }
        let now = Instant::now();
        if now >= deadline {
            return Next::TimedOut;
        }
        // A wake-up before the deadline (a write, or a spurious one) polls again.
        thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn token(id: &str) -> Write {
        Write::RevokeToken { id: id.into() }
    }

    #[test]
    fn a_batch_nobody_waits_for_takes_writes_until_one_is_waited_for() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut batch = vec![(token("a"), None)];
        let sender = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            tx.blocking_send((token("b"), None)).unwrap();
            thread::sleep(Duration::from_millis(20));
            let (done, _wait) = oneshot::channel();
            tx.blocking_send((token("c"), Some(done))).unwrap();
            // After the waited-for write: the next batch's.
            thread::sleep(Duration::from_millis(20));
            tx.blocking_send((token("d"), None)).unwrap();
            tx
        });
        let started = Instant::now();
        assert!(gather(&mut rx, &mut batch, Duration::from_secs(30)).is_none());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "it did not wait the linger out"
        );
        let ids: Vec<_> = batch
            .iter()
            .map(|(w, _)| match w {
                Write::RevokeToken { id } => id.as_str(),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let _tx = sender.join().unwrap();
        assert!(matches!(rx.blocking_recv(), Some((Write::RevokeToken { id }, None)) if id == "d"));
    }

    #[test]
    fn a_batch_nobody_waits_for_commits_after_the_linger_or_when_the_queue_closes() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut batch = vec![(token("a"), None)];
        let started = Instant::now();
        assert!(gather(&mut rx, &mut batch, Duration::from_millis(30)).is_none());
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(batch.len(), 1);

        drop(tx);
        let started = Instant::now();
        assert!(gather(&mut rx, &mut batch, Duration::from_secs(30)).is_none());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "a closed queue ends the wait"
        );
    }

    #[test]
    fn a_waited_for_batch_takes_only_what_is_queued() {
        let (tx, mut rx) = mpsc::channel(16);
        let (done, _wait) = oneshot::channel();
        let mut batch = vec![(token("a"), Some(done))];
        tx.try_send((token("b"), None)).unwrap();
        assert!(gather(&mut rx, &mut batch, Duration::from_secs(30)).is_none());
        assert_eq!(batch.len(), 2);
    }
}
