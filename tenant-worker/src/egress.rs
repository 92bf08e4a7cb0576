//! Outbound TCP for the tenant's providers. The sandbox lets the worker open
//! no socket, so it asks the supervisor's egress broker for a connection to
//! `host:port`; the broker connects only to the tenant's allowlist and
//! passes the connected socket back. Answers arrive on the supervisor link
//! and are matched to the asker by sequence number.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::uplink::Uplink;
use bulkhead_shared::ipc::FromWorker;
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// The broker resolves and connects within 5 s; the rest is slack for a
/// loaded machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(8);

type Answer = Result<OwnedFd, String>;

#[derive(Debug)]
enum Route {
    Broker(Uplink),
    /// Unit tests outside a sandbox connect themselves.
    #[cfg(test)]
    Direct,
}

#[derive(Debug)]
pub struct EgressClient {
    route: Route,
    next_seq: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Answer>>>,
}

impl EgressClient {
    pub fn new(link: Uplink) -> Self {
        Self::with(Route::Broker(link))
    }

    #[cfg(test)]
    pub fn direct() -> Self {
        Self::with(Route::Direct)
    }

    fn with(route: Route) -> Self {
        Self {
            route,
            next_seq: AtomicU64::new(1),
            pending: Mutex::default(),
        }
    }

    /// A connection to `host:port`, or why there is none (not on the
    /// allowlist, unreachable, the broker did not answer in time).
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, String> {
        #[cfg_attr(
            not(test),
            expect(clippy::infallible_destructuring_match, reason = "tests add a variant")
        )]
        let link = match &self.route {
            Route::Broker(link) => link,
            #[cfg(test)]
            Route::Direct => {
                return TcpStream::connect((host, port))
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("egress lock").insert(seq, tx);
        let request = FromWorker::Connect {
            seq,
            host: host.into(),
            port,
        };
        let answer = match link.send_to_supervisor(&request).await {
            Err(e) => Err(e.to_string()),
            Ok(()) => match tokio::time::timeout(CONNECT_TIMEOUT, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err("the supervisor went away".into()),
                Err(_) => Err(format!(
                    "the egress broker did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )),
            },
        };
        self.pending.lock().expect("egress lock").remove(&seq);
        let socket = std::net::TcpStream::from(answer?);
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        TcpStream::from_std(socket).map_err(|e| e.to_string())
    }

    /// Hands a `Connected` answer (and its socket) to whoever asked.
    pub fn deliver(&self, seq: u64, error: Option<String>, fds: Vec<OwnedFd>) {
        let Some(tx) = self.pending.lock().expect("egress lock").remove(&seq) else {
            tracing::warn!(seq, "ignoring an egress answer nobody is waiting for");
            return;
        };
        let answer = match (error, fds.into_iter().next()) {
            (Some(e), _) => Err(e),
            (None, Some(fd)) => Ok(fd),
            (None, None) => Err("the broker's answer carried no socket".into()),
        };
        let _ = tx.send(answer);
    }
}
