//! Frames to the supervisor, sent in batches.
//!
//! A call sends seven frames up the link (100, 180, 200, the BYE's 200,
//! the end of the call, and a pair of RTP sockets asked for and given
//! back). Each went out in a `sendmsg` of its own, awaited by the task
//! that made it, and each woke the router: the link's sends were 16% of the
//! user agent's thread in a call burst, most of it switching to the router
//! and back (BENCHMARKS.md, seventh session). Now a task queues its frame
//! and goes on; one task sends everything queued by the time it runs in one
//! `sendmmsg`. On the worker's one thread that is every frame the tasks
//! made since the last send: under load, the answers to a whole burst of
//! requests. Alone, a frame leaves as soon as its task yields.
//!
//! Frames leave in the order they were queued. The queue is bounded, so a
//! supervisor that stops reading still stalls the worker rather than its
//! memory growing. Frames still queued when the worker exits are dropped:
//! it exits only when the supervisor stops it (SIGTERM, after a drain
//! when asked for one) or closes the link, and nothing then waits for them.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bulkhead_shared::ipc::codec;
use bulkhead_shared::ipc::link::{Link, LinkError};
use bulkhead_shared::ipc::message::FromWorker;
use tokio::sync::mpsc;

/// Frames waiting for the sender task.
const QUEUE: usize = 1024;
/// Most frames in one system call.
const MAX_BATCH: usize = 64;

/// The worker's sending half of the supervisor link; clones share it.
#[derive(Debug, Clone)]
pub struct Uplink {
    tx: mpsc::Sender<Vec<u8>>,
    /// System calls made (read by the tests).
    #[cfg_attr(not(test), expect(dead_code, reason = "read by the tests"))]
    sends: Arc<AtomicU64>,
}

impl Uplink {
    /// Starts the sender task on `link` (inside the runtime). It ends, and
    /// every later send fails, when the link fails or every clone is gone.
    pub fn start(link: Arc<Link>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let sends = Arc::new(AtomicU64::new(0));
        tokio::spawn(send_queued(link, rx, Arc::clone(&sends)));
        Self { tx, sends }
    }

    /// Queues `msg` for the supervisor. Fails when it cannot be encoded or
    /// the link has failed.
    pub async fn send_to_supervisor(&self, msg: &FromWorker) -> Result<(), LinkError> {
        let mut frame = Vec::new();
        codec::encode_from_worker(msg, &mut frame)?;
        self.tx.send(frame).await.map_err(|_| {
            LinkError::Io(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the link to the supervisor has failed",
            ))
        })
    }

    #[cfg(test)]
    fn sends(&self) -> u64 {
        self.sends.load(Ordering::Relaxed)
    }
}

async fn send_queued(link: Arc<Link>, mut rx: mpsc::Receiver<Vec<u8>>, sends: Arc<AtomicU64>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        sends.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = link.send_packets(&batch).await {
            // The supervisor is gone or the socket broke: the worker's read
            // of the link ends it; senders from now on get an error.
            tracing::warn!(error = %e, "sending to the supervisor failed");
            return;
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_shared::ipc::codec::MAX_FRAME;
    use bulkhead_shared::ipc::message::FromWorker;

    /// A socketpair like the worker's link (SOCK_SEQPACKET).
    fn pair() -> (Arc<Link>, Link) {
        let (a, b) = Link::pair().unwrap();
        (Arc::new(a), b)
    }

    fn ended(n: usize) -> FromWorker {
        FromWorker::CallEnded {
            call_id: format!("call-{n}"),
        }
    }

    /// The next `n` frames; a frame that never comes fails the test
    /// rather than hanging it.
    async fn receive(supervisor: &Link, n: usize) -> Vec<FromWorker> {
        let mut buf = vec![0; MAX_FRAME];
        let mut got = Vec::new();
        for i in 0..n {
            let frame = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                supervisor.recv_from_worker(&mut buf),
            )
            .await
            .unwrap_or_else(|_| panic!("frame {i} of {n} never came"));
            got.push(frame.unwrap().unwrap());
        }
        got
    }

    #[tokio::test(flavor = "current_thread")]
    async fn frames_queued_in_one_turn_leave_together_and_in_order() {
        let (worker, supervisor) = pair();
        let uplink = Uplink::start(worker);
        // One task queueing 200 frames without yielding to the sender.
        for n in 0..200 {
            uplink.send_to_supervisor(&ended(n)).await.unwrap();
        }
        let got = receive(&supervisor, 200).await;
        assert_eq!(got, (0..200).map(ended).collect::<Vec<_>>());
        let sends = uplink.sends();
        assert!(
            (200_u64.div_ceil(MAX_BATCH as u64)..=8).contains(&sends),
            "200 frames in {sends} system calls"
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_frame_alone_leaves_once_its_task_yields() {
        let (worker, supervisor) = pair();
        let uplink = Uplink::start(worker);
        for n in 0..3 {
            uplink.send_to_supervisor(&ended(n)).await.unwrap();
            let got = receive(&supervisor, 1).await;
            assert_eq!(got, [ended(n)]);
        }
        assert_eq!(uplink.sends(), 3);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_full_socket_holds_frames_until_the_supervisor_reads() {
        let (worker, supervisor) = pair();
        let uplink = Uplink::start(worker);
        // More than the socket buffer holds: the sender waits for room.
        let big = FromWorker::CallEnded {
            call_id: "x".repeat(16 * 1024),
        };
        let count = 64;
        let sender = {
            let uplink = uplink.clone();
            let big = big.clone();
            tokio::spawn(async move {
                for _ in 0..count {
                    uplink.send_to_supervisor(&big).await.unwrap();
                }
            })
        };
        let got = receive(&supervisor, count).await;
        sender.await.unwrap();
        assert_eq!(got.len(), count);
        assert!(got.iter().all(|m| *m == big));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn sending_after_the_supervisor_closed_its_end_fails() {
        let (worker, supervisor) = pair();
        let uplink = Uplink::start(worker);
        drop(supervisor);
        let mut failed = false;
        for n in 0..10 {
            if uplink.send_to_supervisor(&ended(n)).await.is_err() {
                failed = true;
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(failed, "sends kept succeeding with nobody reading");
    }
}
