//! Answers to a worker's own requests (an RTP pair, a refused egress
//! connection), sent without the loop that reads its frames ever waiting
//! for the worker.
//!
//! That loop once awaited room on the worker's socket for each answer. A
//! worker behind on its calls lets the router fill that socket (1 MiB of
//! SIP); the loop then stopped reading the worker's frames; the worker,
//! whose own frames to us no longer drained, stopped reading its socket;
//! neither side moved again until the heartbeat killed the worker as hung
//! with every call it held (BENCHMARKS.md, eleventh session: one tenant
//! offered 4,000 calls/s).
//!
//! Now an answer goes out at once when the socket has room, the usual
//! case. Otherwise a task waits for room, at most [`MAX_WAITING`] per
//! worker. A worker with that many answers unread is not reading its link
//! at all; past that an answer is dropped (its sockets closed, and the
//! caller returns what it held), and the heartbeat deals with the worker.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use bulkhead_shared::ipc::Link;
use tokio::sync::Semaphore;

/// Answers one worker may have waiting for room on its socket.
pub const MAX_WAITING: usize = 256;

/// What became of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sent {
    /// In the worker's socket now.
    Now,
    /// A task sends it once the worker has read enough.
    Later,
    /// Not sent: too many answers are waiting already, or the link failed.
    Dropped,
}

/// One worker's answer path; clones share its bound.
#[derive(Debug, Clone)]
pub struct Replies {
    link: Arc<Link>,
    waiting: Arc<Semaphore>,
}

impl Replies {
    pub fn new(link: Arc<Link>) -> Self {
        Self {
            link,
            waiting: Arc::new(Semaphore::new(MAX_WAITING)),
        }
    }

    /// Sends `frame` with `fds` attached, never waiting: see the module
    /// comment. Must be called inside the runtime (it may spawn).
    pub fn send(&self, frame: Vec<u8>, fds: Vec<OwnedFd>) -> Sent {
        match self.link.try_send_packet(&frame, &borrow(&fds)) {
            Ok(()) => return Sent::Now,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                tracing::debug!(error = %e, "could not answer a worker's request");
                return Sent::Dropped;
            }
        }
        let Ok(permit) = self.waiting.clone().try_acquire_owned() else {
            return Sent::Dropped;
        };
        let link = self.link.clone();
        tokio::spawn(async move {
            if let Err(e) = link.send_packet(&frame, &borrow(&fds)).await {
                tracing::debug!(error = %e, "could not answer a worker's request");
            }
            drop(permit);
        });
        Sent::Later
    }
}

fn borrow(fds: &[OwnedFd]) -> Vec<BorrowedFd<'_>> {
    fds.iter().map(|f| f.as_fd()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_shared::ipc::codec::MAX_FRAME;
    use std::time::Duration;

    fn pair() -> (Arc<Link>, Link) {
        let (a, b) = Link::pair().unwrap();
        (Arc::new(a), b)
    }

    /// Fills `link`'s socket until a send would block; returns the count.
    fn fill(link: &Link) -> usize {
        let junk = vec![0u8; 4096];
        let mut n = 0;
        while link.try_send_packet(&junk, &[]).is_ok() {
            n += 1;
        }
        n
    }

    fn a_socket() -> OwnedFd {
        OwnedFd::from(std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_to_a_full_socket_never_waits_and_arrives_once_read() {
        let (sup, worker) = pair();
        let replies = Replies::new(sup.clone());
        assert_eq!(replies.send(b"first".to_vec(), vec![a_socket()]), Sent::Now);
        let filler = fill(&sup);
        assert!(filler > 0);
        // The old loop awaited here until the worker read; this returns.
        assert_eq!(
            replies.send(b"answer".to_vec(), vec![a_socket(), a_socket()]),
            Sent::Later
        );
        let mut buf = vec![0u8; MAX_FRAME];
        let mut got = Vec::new();
        while got.len() < filler + 2 {
            let r = tokio::time::timeout(Duration::from_secs(10), worker.recv_packet(&mut buf))
                .await
                .expect("the waiting answer never came")
                .unwrap()
                .unwrap();
            got.push((buf[..r.len].to_vec(), r.fds.len()));
        }
        assert_eq!(got[0], (b"first".to_vec(), 1));
        assert_eq!(got.last().unwrap(), &(b"answer".to_vec(), 2));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn answers_to_a_worker_that_never_reads_are_bounded() {
        let (sup, _worker) = pair();
        let replies = Replies::new(sup.clone());
        fill(&sup);
        let outcomes: Vec<Sent> = (0..MAX_WAITING + 10)
            .map(|_| replies.send(b"answer".to_vec(), vec![a_socket()]))
            .collect();
        assert!(outcomes[..MAX_WAITING].iter().all(|s| *s == Sent::Later));
        assert!(outcomes[MAX_WAITING..].iter().all(|s| *s == Sent::Dropped));
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_answer_to_a_worker_gone_is_dropped() {
        let (sup, worker) = pair();
        drop(worker);
        let replies = Replies::new(sup);
        assert_eq!(replies.send(b"answer".to_vec(), vec![]), Sent::Dropped);
    }
}
