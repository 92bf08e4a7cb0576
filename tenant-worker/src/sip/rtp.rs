//! RTP sockets for calls. The worker can open no socket; for each call it
//! asks the supervisor for an RTP/RTCP pair over the socketpair and returns
//! it when the call ends. The supervisor enforces the tenant's
//! concurrent-call limit, so a refusal here means "busy".

use std::collections::HashMap;
use std::net::UdpSocket;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::uplink::Uplink;
use bulkhead_shared::ipc::FromWorker;
use tokio::sync::oneshot;

/// How long the supervisor may take to answer. Generous: on a loaded
/// 2-core machine (an audit forking probe workers while workers open their
/// speech models) answers were seen to take long enough for 2 s to refuse
/// calls that would have been served; the caller has its 100 Trying.
const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// A call's media sockets; give them back with [`RtpClient::close`].
#[derive(Debug)]
pub struct RtpLease {
    pub port: u16,
    /// The voice agent reads and writes it.
    pub rtp: UdpSocket,
    /// Held open for the call; RTCP reports are not read yet.
    pub rtcp: UdpSocket,
}

/// A lent RTP socket's way home: dropped after the socket (it is the later
/// field), it closes the RTCP socket and returns the pair.
#[derive(Debug)]
pub struct ReturnOnDrop {
    pub port: u16,
    pub rtcp: Option<UdpSocket>,
    pub client: Arc<RtpClient>,
}

impl Drop for ReturnOnDrop {
    fn drop(&mut self) {
        drop(self.rtcp.take());
        let (client, port) = (Arc::clone(&self.client), self.port);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { client.close_port(port).await });
        }
    }
}

type Answer = Result<RtpLease, String>;

#[derive(Debug)]
enum Supplier {
    Supervisor(Uplink),
    /// The user agent's tests: loopback sockets bound here.
    #[cfg(test)]
    Loopback,
}

/// Asks for and returns RTP pairs; answers arrive through [`RtpClient::deliver`].
#[derive(Debug)]
pub struct RtpClient {
    supplier: Supplier,
    next_seq: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

impl RtpClient {
    pub fn new(link: Uplink) -> Self {
        Self::with(Supplier::Supervisor(link))
    }

    /// A client that binds loopback sockets itself (tests).
    #[cfg(test)]
    pub fn loopback() -> Self {
        Self::with(Supplier::Loopback)
    }

    fn with(supplier: Supplier) -> Self {
        Self {
            supplier,
            next_seq: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// A pair for a new call, or why not (the concurrent-call limit, a full pool).
    pub async fn open(&self) -> Answer {
        #[cfg_attr(
            not(test),
            expect(clippy::infallible_destructuring_match, reason = "tests add a variant")
        )]
        let link = match &self.supplier {
            Supplier::Supervisor(link) => link,
            #[cfg(test)]
            Supplier::Loopback => {
                let bind = || UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string());
                let rtp = bind()?;
                let port = rtp.local_addr().map_err(|e| e.to_string())?.port();
                return Ok(RtpLease {
                    port,
                    rtp,
                    rtcp: bind()?,
                });
            }
        };
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("rtp pending lock")
            .insert(seq, tx);
        if let Err(e) = link.send_to_supervisor(&FromWorker::RtpOpen { seq }).await {
            self.pending.lock().expect("rtp pending lock").remove(&seq);
            return Err(e.to_string());
        }
        match tokio::time::timeout(OPEN_TIMEOUT, rx).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err("the supervisor went away".into()),
            Err(_) => {
                self.pending.lock().expect("rtp pending lock").remove(&seq);
                Err("no RTP sockets in time".into())
            }
        }
    }

    /// Hands an `RtpOpened` answer (and its descriptors) to whoever asked.
    /// A pair nobody waits for any more (its answer came after
    /// [`OPEN_TIMEOUT`]) goes straight back: the supervisor counts it
    /// against the tenant's concurrent calls until it is returned.
    pub fn deliver(
        self: &Arc<Self>,
        seq: u64,
        port: Option<u16>,
        error: Option<String>,
        fds: Vec<OwnedFd>,
    ) {
        let Some(tx) = self.pending.lock().expect("rtp pending lock").remove(&seq) else {
            if let (Some(port), None) = (port, error) {
                drop(fds);
                let client = Arc::clone(self);
                tokio::spawn(async move { client.close_port(port).await });
            }
            return;
        };
        let answer = match (port, error) {
            (_, Some(e)) => Err(e),
            (Some(port), None) => {
                let mut fds = fds.into_iter();
                match (fds.next(), fds.next()) {
                    (Some(rtp), Some(rtcp)) => Ok(RtpLease {
                        port,
                        rtp: UdpSocket::from(rtp),
                        rtcp: UdpSocket::from(rtcp),
                    }),
                    _ => Err("the RTP answer carried no sockets".into()),
                }
            }
            (None, None) => Err("the RTP answer carried no port".into()),
        };
        let _ = tx.send(answer);
    }

    /// The call ended: close the sockets and return the pair.
    pub async fn close(&self, lease: RtpLease) {
        let port = lease.port;
        drop(lease);
        self.close_port(port).await;
    }

    /// Returns the pair at `port`, whose sockets the caller has closed.
    pub async fn close_port(&self, port: u16) {
        #[cfg_attr(
            not(test),
            expect(clippy::infallible_destructuring_match, reason = "tests add a variant")
        )]
        let link = match &self.supplier {
            Supplier::Supervisor(link) => link,
            #[cfg(test)]
            Supplier::Loopback => return,
        };
        let _ = link
            .send_to_supervisor(&FromWorker::RtpClose { port })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulkhead_shared::ipc::codec::MAX_FRAME;
    use bulkhead_shared::ipc::Link;

    #[tokio::test(flavor = "current_thread")]
    async fn a_pair_answered_after_its_caller_gave_up_goes_back() {
        let (worker, supervisor) = Link::pair().unwrap();
        let client = Arc::new(RtpClient::new(Uplink::start(Arc::new(worker))));
        let socket = || OwnedFd::from(UdpSocket::bind("127.0.0.1:0").unwrap());
        // Seq 7 was never asked for, or its caller timed out.
        client.deliver(7, Some(40_000), None, vec![socket(), socket()]);
        let mut buf = vec![0; MAX_FRAME];
        let frame = tokio::time::timeout(
            Duration::from_secs(10),
            supervisor.recv_from_worker(&mut buf),
        )
        .await
        .expect("the pair was never returned")
        .unwrap();
        assert_eq!(frame, Some(FromWorker::RtpClose { port: 40_000 }));
        // A refusal holds nothing, so nothing goes back.
        client.deliver(8, None, Some("busy".into()), vec![]);
        let nothing = tokio::time::timeout(
            Duration::from_millis(200),
            supervisor.recv_from_worker(&mut buf),
        )
        .await;
        assert!(nothing.is_err(), "a refusal was answered with {nothing:?}");
    }
}
