//! The shared SIP router on `sip_listen` (UDP and TCP). It reads only what it
//! routes on ([`route`]), relays the raw message and its source to the owning
//! tenant's worker over that worker's socketpair, and sends the worker's
//! replies out of its own sockets. It is one user agent server together with
//! the workers, not a proxy: it adds no Via and leaves Max-Forwards alone.
//!
//! A slow or dead worker never stalls it: relaying uses a non-blocking send,
//! and a full socketpair is answered with 503 like a worker that is down.
//! New calls pass each tenant's limits first ([`admission`]).

pub mod admission;
mod backlog;
mod dialogs;
mod peers;
mod tcp;
mod udp;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bulkhead_shared::ipc::codec::encode_sip_frame;
use bulkhead_shared::ipc::{Link, SipPacket, Transport};
use bulkhead_shared::sip::reply::Reply;
use bulkhead_shared::sip::via;
use bulkhead_shared::{Number, TenantId};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use bulkhead_shared::sip::route::{self, Decision};

/// What 503 tells a client to wait, in seconds, when the tenant is down.
const RETRY_AFTER: &str = "5";

/// Counters shown by `bulkhead status`.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub forwarded: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
}

/// The router's shared state.
#[derive(Debug)]
pub struct Router {
    numbers: RwLock<HashMap<Number, TenantId>>,
    workers: RwLock<HashMap<TenantId, Arc<Link>>>,
    dialogs: dialogs::Dialogs,
    peers: peers::Peers,
    udp: Arc<UdpSocket>,
    tcp_conns: Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>,
    next_conn: AtomicU64,
    pub counters: Counters,
    /// Time spent deciding and relaying each inbound message.
    pub latency: crate::histogram::Histogram,
    pub admission: admission::Admission,
    pub local: SocketAddr,
}

/// Where an inbound message came from: enough to answer it.
#[derive(Debug, Clone, Copy)]
struct Source {
    transport: Transport,
    conn: u64,
    peer: SocketAddr,
}

/// UDP and TCP on one port. With port 0 the kernel picks the UDP port, and
/// that port may already be taken for TCP by something else: pick again.
async fn bind_pair(listen: SocketAddr) -> std::io::Result<(UdpSocket, tokio::net::TcpListener)> {
    let attempts = if listen.port() == 0 { 20 } else { 1 };
    let mut last = None;
    for _ in 0..attempts {
        let udp = UdpSocket::bind(listen).await?;
        match tokio::net::TcpListener::bind(udp.local_addr()?).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

impl Router {
    /// Binds `listen` (UDP and TCP) and starts serving.
    pub async fn start(listen: SocketAddr) -> std::io::Result<Arc<Self>> {
        let (udp, tcp) = bind_pair(listen).await?;
        let local = udp.local_addr()?;
        let router = Arc::new(Self {
            numbers: Default::default(),
            workers: Default::default(),
            dialogs: Default::default(),
            peers: Default::default(),
            udp: Arc::new(udp),
            tcp_conns: Default::default(),
            next_conn: AtomicU64::new(1),
            counters: Counters::default(),
            latency: Default::default(),
            admission: Default::default(),
            local,
        });
        tokio::spawn(udp::serve(router.clone()));
        tokio::spawn(tcp::serve(router.clone(), tcp));
        Ok(router)
    }

    pub fn set_number(&self, number: Number, tenant: TenantId) {
        self.numbers
            .write()
            .expect("numbers lock")
            .insert(number, tenant);
    }

    pub fn remove_number(&self, number: &Number) {
        self.numbers.write().expect("numbers lock").remove(number);
    }

    /// The worker for `tenant` is serving on `link` (or, with `None`, is
    /// not, and none of its calls survive).
    pub fn set_worker(&self, tenant: &TenantId, link: Option<Arc<Link>>) {
        let mut workers = self.workers.write().expect("workers lock");
        match link {
            Some(l) => workers.insert(tenant.clone(), l),
            None => {
                self.admission.release_all(tenant);
                workers.remove(tenant)
            }
        };
    }

    /// Handles one inbound message from `peer`, timed for `/metrics`.
    fn dispatch(&self, transport: Transport, conn: u64, peer: SocketAddr, data: &[u8]) {
        let start = Instant::now();
        self.route_message(transport, conn, peer, data);
        self.latency.record(start.elapsed());
    }

    fn route_message(&self, transport: Transport, conn: u64, peer: SocketAddr, data: &[u8]) {
        let source = Source {
            transport,
            conn,
            peer,
        };
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let decision = route::decide(
            data,
            |n| self.numbers.read().expect("numbers lock").get(n).cloned(),
            |c| self.dialogs.tenant_of(c),
        );
        match decision {
            Decision::Forward { tenant, new_dialog } => {
                let link = self
                    .workers
                    .read()
                    .expect("workers lock")
                    .get(&tenant)
                    .cloned();
                // A retransmitted INVITE is not a new call.
                let new_call = new_dialog.filter(|c| !self.dialogs.knows(c));
                let Some(link) = link else {
                    if new_call.is_some() {
                        self.admission.note_refused(&tenant);
                    }
                    return self.reject(source, data, 503, "Service Unavailable", RETRY_AFTER);
                };
                if let Some(call_id) = new_call {
                    let unread = link.unread_bytes().unwrap_or(0);
                    let now = Instant::now();
                    if let Err(refusal) = self.admission.admit(&tenant, call_id, unread, now) {
                        return self.refuse(source, data, refusal);
                    }
                }
                // Allowed before the send: the worker may answer before this
                // thread runs again, and its answer must not find the peer
                // unknown (a lost response over TCP is never retransmitted).
                self.peers.allow(&tenant, transport, conn, peer.ip());
                let mut frame = Vec::with_capacity(data.len() + 32);
                if encode_sip_frame(transport, conn, peer, data, &mut frame).is_err()
                    || link.try_send_packet(&frame, &[]).is_err()
                {
                    if let Some(call_id) = new_call {
                        self.admission.unadmit(&tenant, call_id);
                    }
                    return self.reject(source, data, 503, "Service Unavailable", RETRY_AFTER);
                }
                if let Some(call_id) = new_dialog {
                    self.dialogs.remember(call_id, tenant);
                }
                self.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            Decision::Reply { code, reason } => {
                self.reject(source, data, code, reason, RETRY_AFTER)
            }
            Decision::Drop => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// `tenant`'s worker reports `call_id` over: its slot under the
    /// tenant's limits frees, and its Call-ID stops routing 64·T1 later.
    pub fn call_ended(&self, tenant: &TenantId, call_id: &str) {
        self.admission.release(tenant, call_id);
        self.dialogs.ended(tenant, call_id);
    }

    /// Answers a new call a tenant's limits (or a drain) refused.
    fn refuse(&self, source: Source, data: &[u8], refusal: admission::Refusal) {
        self.reject(source, data, 503, refusal.reason(), refusal.retry_after());
    }

    /// Answers a request from the router itself; a 503 says when to retry.
    fn reject(&self, source: Source, data: &[u8], code: u16, reason: &str, retry_after: &str) {
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        let Ok(req) = bulkhead_shared::sip::scan::scan_head_for_reply(data) else {
            return;
        };
        if req.method().is_none_or(|m| m == "ACK") {
            return; // responses and ACKs are never answered
        }
        let top = via::top_via(&req);
        let dest = via::response_target(top.as_ref(), source.peer);
        let mut reply = Reply::to(&req, code, reason, Some("bhr"));
        if code == 503 {
            reply = reply.header("Retry-After", retry_after);
        }
        if code == 405 {
            reply = reply.header("Allow", bulkhead_shared::sip::ALLOW);
        }
        self.send(source.transport, source.conn, dest, reply.finish());
    }

    /// Sends a message out of the router's sockets (a worker's reply, or our own).
    pub fn send(&self, transport: Transport, conn: u64, dest: SocketAddr, data: Vec<u8>) {
        match transport {
            Transport::Udp => {
                if let Err(e) = self.udp.try_send_to(&data, dest) {
                    tracing::debug!(error = %e, %dest, "router UDP send failed");
                }
            }
            Transport::Tcp => {
                let tx = self.tcp_conns.lock().expect("tcp lock").get(&conn).cloned();
                if let Some(tx) = tx {
                    let _ = tx.try_send(data);
                }
            }
        }
    }

    /// Relays a worker's outbound SIP packet, but only back to where that
    /// tenant's own traffic came from: the source IP of a message routed to
    /// it (UDP), or a TCP connection that carried one. A compromised worker
    /// can thus neither use the shared address as a reflector nor write into
    /// another tenant's caller's connection.
    pub fn send_from_worker(&self, tenant: &TenantId, pkt: SipPacket) -> bool {
        if !self
            .peers
            .allowed(tenant, pkt.transport, pkt.conn, pkt.peer.ip())
        {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.send(pkt.transport, pkt.conn, pkt.peer, pkt.data);
        true
    }

    /// A TCP connection closed: no tenant may write to its id any more.
    fn forget_conn(&self, conn: u64) {
        self.peers.forget_conn(conn);
    }
}
