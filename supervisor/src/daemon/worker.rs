//! One worker's life from the supervisor's side: bootstrap it, read its
//! frames (untrusted input, validated by the codec), relay its SIP, answer
//! control replies, and notice when it exits.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead_shared::ipc::codec::{encode_to_worker, MAX_FRAME};
use bulkhead_shared::ipc::message::{Control, ControlOp, StoreKey};
use bulkhead_shared::ipc::{Bootstrap, FromWorker, Link, ToWorker, WorkerConfig};
use bulkhead_shared::TenantId;
use tokio::sync::oneshot;
use zeroize::Zeroize;

use super::replies::{Replies, Sent};
use super::rtp::RtpPair;
use crate::keystore::DataKey;
use crate::ports::TenantSockets;
use bulkhead_shared::rate::{Occurrences, TokenBucket};

/// How long a worker may take from exec to `Ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a control request may take, sending included: a worker that
/// stops reading fills its socket buffer, and must not stall the caller.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the frame budget is recomputed from the tenant's limits.
const BUDGET_REREAD: Duration = Duration::from_secs(1);

/// Frames a second a worker may send: about eight per call at the tenant's
/// call rate, twenty for headroom, plus a floor; twice that may come at once.
/// A worker past it is flooding the supervisor and is stopped.
pub fn frame_budget(calls_per_second: u32) -> (f64, f64) {
    let rate = 1000.0 + 20.0 * f64::from(calls_per_second);
    (rate, 2.0 * rate)
}

/// A worker's answer to a control request: its data, or why it failed.
type Answer = Result<Option<serde_json::Value>, String>;
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>;

/// The supervisor's handle on a running worker's socketpair.
#[derive(Debug)]
pub struct WorkerLink {
    pub link: Arc<Link>,
    /// Landlock enforcement the worker reported when it became ready.
    pub landlock: String,
    /// Which key opened the store, as the worker reported at start.
    pub store_key: StoreKey,
    pending: Pending,
    next_seq: Mutex<u64>,
}

impl WorkerLink {
    /// Sends a control request and waits for the worker's reply.
    pub async fn control(&self, op: ControlOp) -> Result<(), String> {
        self.ask(op).await.map(|_| ())
    }

    /// Sends a control request and returns the data the worker replied
    /// with (untrusted: parse it into a bounded type).
    pub async fn ask(&self, op: ControlOp) -> Answer {
        self.ask_with(op, &[], CONTROL_TIMEOUT).await
    }

    /// [`Self::ask`] with descriptors passed along and a timeout of its own.
    pub async fn ask_with(
        &self,
        op: ControlOp,
        fds: &[std::os::fd::BorrowedFd<'_>],
        timeout: Duration,
    ) -> Answer {
        self.exchange(op, fds, timeout)
            .await
            .and_then(|answer| answer)
    }

    /// The request and its answer, keeping apart the two ways it can fail:
    /// the outer error means no answer came (the link broke, the worker
    /// exited, or the time ran out: the worker may still be working on it);
    /// the inner one is the worker's own refusal.
    pub async fn exchange(
        &self,
        op: ControlOp,
        fds: &[std::os::fd::BorrowedFd<'_>],
        timeout: Duration,
    ) -> Result<Answer, String> {
        let seq = {
            let mut next = self.next_seq.lock().expect("seq lock");
            *next += 1;
            *next
        };
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(seq, tx);
        let exchange = async {
            let mut frame = Vec::new();
            let encoded = bulkhead_shared::ipc::codec::encode_to_worker(
                &ToWorker::Control(Control { seq, op }),
                &mut frame,
            );
            let sent = match encoded {
                Ok(()) => self
                    .link
                    .send_packet(&frame, fds)
                    .await
                    .map_err(|e| format!("failed to reach the worker: {e}")),
                Err(e) => Err(format!("failed to encode the request: {e}")),
            };
            // A rekey request carries a key.
            frame.zeroize();
            sent?;
            rx.await
                .map_err(|_| "the worker exited before replying".to_string())
        };
        let result = tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or_else(|_| Err("the worker did not reply in time".into()));
        if result.is_err() {
            self.pending.lock().expect("pending lock").remove(&seq);
        }
        result
    }
}

/// Sends the bootstrap frame (keys, config, sockets). The frame buffer,
/// which holds the keys, is zeroized before returning.
pub async fn bootstrap(
    link: &Link,
    key: DataKey,
    pending_key: Option<DataKey>,
    config: WorkerConfig,
    sockets: &TenantSockets,
) -> std::io::Result<()> {
    let boot = Bootstrap {
        data_key: *key,
        pending_key: pending_key.as_deref().copied(),
        config,
    };
    drop((key, pending_key));
    send_bootstrap(link, boot, sockets).await
}

/// Sends a prepared bootstrap frame (see [`bootstrap`]); the frame buffer
/// is zeroized before returning.
pub async fn send_bootstrap(
    link: &Link,
    boot: Bootstrap,
    sockets: &TenantSockets,
) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(1024);
    encode_to_worker(&ToWorker::Bootstrap(Box::new(boot)), &mut frame)
        .map_err(std::io::Error::other)?;
    let fds = [
        sockets.sip_udp.as_fd(),
        sockets.sip_tcp.as_fd(),
        sockets.http.as_fd(),
    ];
    let result = link.send_packet(&frame, &fds).await;
    frame.zeroize();
    result
}

/// Starts the task that reads `link` until the worker exits. Returns the
/// worker's handle once it reported `Ready`, and a receiver that fires with
/// the reason when the link closes.
pub async fn attach(
    tenant: TenantId,
    link: Arc<Link>,
    tenants: Arc<super::Tenants>,
) -> Result<(Arc<WorkerLink>, oneshot::Receiver<String>), String> {
    let pending: Pending = Default::default();
    let (ready_tx, ready_rx) = oneshot::channel();
    let (closed_tx, closed_rx) = oneshot::channel();
    let reader = tokio::spawn(read_frames(
        tenant,
        link.clone(),
        tenants,
        pending.clone(),
        ready_tx,
        closed_tx,
    ));
    match tokio::time::timeout(READY_TIMEOUT, ready_rx).await {
        Ok(Ok(ready)) => Ok((
            Arc::new(WorkerLink {
                link,
                landlock: ready.landlock,
                store_key: ready.store_key,
                pending,
                next_seq: Mutex::new(0),
            }),
            closed_rx,
        )),
        Ok(Err(_)) => {
            let reason = closed_rx.await.unwrap_or_else(|_| "exited".into());
            Err(format!("worker exited before it was ready: {reason}"))
        }
        Err(_) => {
            reader.abort();
            Err(format!("worker was not ready within {READY_TIMEOUT:?}"))
        }
    }
}

async fn read_frames(
    tenant: TenantId,
    link: Arc<Link>,
    tenants: Arc<super::Tenants>,
    pending: Pending,
    ready: oneshot::Sender<bulkhead_shared::ipc::message::Ready>,
    closed: oneshot::Sender<String>,
) {
    let router = tenants.router.clone();
    // Never `.await` a send to the worker in this loop: see `replies`.
    let replies = Replies::new(link.clone());
    // Egress requests run beside this loop, a bounded number at a time.
    let in_flight = Arc::new(tokio::sync::Semaphore::new(super::egress::MAX_IN_FLIGHT));
    let mut rtp = super::rtp::WorkerRtp::default();
    let mut ready = Some(ready);
    let mut buf = vec![0u8; MAX_FRAME];
    let (mut rate, burst) = frame_budget(tenants.limits_of(&tenant).calls_per_second);
    let mut budget = TokenBucket::new(rate, burst, Instant::now());
    let mut budget_read = Instant::now();
    // Packets a compromised worker aims at strangers: within its frame
    // budget it could send thousands a second, so they are logged with a
    // count every ten seconds, not each.
    let mut strangers = Occurrences::new(Duration::from_secs(10));
    let reason = loop {
        let frame = link.recv_from_worker(&mut buf).await;
        let now = Instant::now();
        if now.duration_since(budget_read) >= BUDGET_REREAD {
            // `tenant limits` may have changed the call rate since.
            let burst;
            (rate, burst) = frame_budget(tenants.limits_of(&tenant).calls_per_second);
            budget.set(rate, burst);
            budget_read = now;
        }
        if !budget.take(now) {
            // Before calling this a flood: `tenant limits` may have raised
            // the call rate since the last read, and a burst at the new
            // rate must not get the worker killed. A raise starts a full
            // bucket at the new rate.
            let (fresh, burst) = frame_budget(tenants.limits_of(&tenant).calls_per_second);
            if fresh > rate {
                budget = TokenBucket::new(fresh, burst, now);
            } else {
                budget.set(fresh, burst);
            }
            (rate, budget_read) = (fresh, now);
            if !budget.take(now) {
                break format!(
                    "sent frames faster than {rate}/s (flooding the supervisor); stopped as misbehaving"
                );
            }
        }
        match frame {
            Ok(None) => break "closed its socketpair (exited)".to_string(),
            Ok(Some(FromWorker::Ready(report))) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(report);
                }
            }
            Ok(Some(FromWorker::Sip(pkt))) => {
                if !router.send_from_worker(&tenant, pkt) {
                    if let Some(packets) = strangers.count(now) {
                        tracing::warn!(%tenant, packets, "dropped SIP packets to peers this tenant never heard from");
                    }
                }
            }
            Ok(Some(FromWorker::Reply { seq, error, data })) => {
                if let Some(tx) = pending.lock().expect("pending lock").remove(&seq) {
                    let _ = tx.send(match error {
                        Some(e) => Err(e),
                        None => Ok(data),
                    });
                }
            }
            Ok(Some(FromWorker::Connect { seq, host, port })) => {
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    let busy = super::egress::EgressError::Connect {
                        host,
                        port,
                        reason: "too many connections in progress".into(),
                    };
                    if let Some((frame, fds)) = super::egress::answer(seq, Err(busy)) {
                        replies.send(frame, fds);
                    }
                    continue;
                };
                let (replies, tenants, tenant) = (replies.clone(), tenants.clone(), tenant.clone());
                tokio::spawn(async move {
                    let result = super::egress::connect(&tenants, &tenant, &host, port).await;
                    if let Some((frame, fds)) = super::egress::answer(seq, result) {
                        replies.send(frame, fds);
                    }
                    drop(permit);
                });
            }
            Ok(Some(FromWorker::RtpOpen { seq })) => {
                let limit = tenants.limits_of(&tenant).max_concurrent_calls as usize;
                let answer = rtp.open(&tenants.rtp, limit);
                if let Some(unsent) = answer_rtp(&replies, seq, answer) {
                    rtp.close(&tenants.rtp, unsent);
                }
            }
            Ok(Some(FromWorker::RtpClose { port })) => rtp.close(&tenants.rtp, port),
            Ok(Some(FromWorker::CallEnded { call_id })) => router.call_ended(&tenant, &call_id),
            // Only probe workers (`audit`) report probes, on their own link.
            Ok(Some(FromWorker::Probe(_))) => {
                break "sent a probe report while serving; stopped as misbehaving".to_string()
            }
            // A worker that breaks the protocol is treated as compromised.
            Err(e) => break format!("sent an invalid frame ({e}); stopped as misbehaving"),
        }
    };
    rtp.release_all(&tenants.rtp);
    pending.lock().expect("pending lock").clear();
    let _ = closed.send(reason);
}

/// Answers `RtpOpen` without waiting for the worker ([`Replies`]): the
/// RTP and RTCP sockets on success, the reason otherwise. Returns the port
/// of a pair whose answer was dropped, for the caller to take back.
fn answer_rtp(replies: &Replies, seq: u64, answer: Result<RtpPair, String>) -> Option<u16> {
    let (port, error, fds) = match answer {
        Ok(pair) => (
            Some(pair.port),
            None,
            vec![OwnedFd::from(pair.rtp), OwnedFd::from(pair.rtcp)],
        ),
        Err(e) => (None, Some(e), Vec::new()),
    };
    let mut frame = Vec::new();
    if encode_to_worker(&ToWorker::RtpOpened { seq, port, error }, &mut frame).is_err() {
        return port;
    }
    match replies.send(frame, fds) {
        Sent::Dropped => port,
        Sent::Now | Sent::Later => None,
    }
}
