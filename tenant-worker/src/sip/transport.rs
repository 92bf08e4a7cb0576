//! Where SIP bytes come from and where replies go: the router (over the
//! socketpair), the tenant's own trunk UDP socket, or a trunk TCP connection.
//! The user agent sees only [`Origin`] and [`Outbound`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::uplink::Uplink;
use bulkhead_shared::cidr;
use bulkhead_shared::ipc::{FromWorker, SipPacket, Transport};
use bulkhead_shared::sip::stream::{spawn_writer, MessageReader};
use bulkhead_shared::trunk::TrunkPolicy;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;

use super::ua::Event;

/// Largest SIP message accepted on a trunk TCP connection.
pub const MAX_TCP_MESSAGE: usize = 65_535;
/// A trunk connection without a whole message or keep-alive for this long
/// is closed (RFC 5626 keep-alives come every 95–120 s).
pub const TCP_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// Where a request came from; its responses go back the same way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Through the shared router; `conn` names the router's TCP connection.
    Router {
        transport: Transport,
        conn: u64,
        peer: SocketAddr,
    },
    TrunkUdp {
        peer: SocketAddr,
    },
    TrunkTcp {
        conn: u64,
        peer: SocketAddr,
    },
}

impl Origin {
    pub fn peer(&self) -> SocketAddr {
        match self {
            Self::Router { peer, .. } | Self::TrunkUdp { peer } | Self::TrunkTcp { peer, .. } => {
                *peer
            }
        }
    }

    /// Reliable transports need no retransmission of responses.
    pub fn is_reliable(&self) -> bool {
        matches!(
            self,
            Self::Router {
                transport: Transport::Tcp,
                ..
            } | Self::TrunkTcp { .. }
        )
    }
}

/// Sends messages back along the flow a call's requests came in on.
#[derive(Debug, Clone)]
pub struct Outbound {
    wire: Wire,
    tcp: Arc<Mutex<HashMap<u64, mpsc::Sender<Vec<u8>>>>>,
}

#[derive(Debug, Clone)]
enum Wire {
    Sockets {
        link: Uplink,
        udp: Arc<UdpSocket>,
    },
    /// The user agent's tests: every message lands in a channel.
    #[cfg(test)]
    Memory(mpsc::UnboundedSender<Sent>),
}

/// What an in-memory [`Outbound`] carried.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Sip { dest: SocketAddr, data: Vec<u8> },
    CallEnded(String),
}

impl Outbound {
    pub fn new(link: Uplink, udp: Arc<UdpSocket>) -> Self {
        Self {
            wire: Wire::Sockets { link, udp },
            tcp: Default::default(),
        }
    }

    /// An outbound that hands every message to `tx` (tests).
    #[cfg(test)]
    pub fn in_memory(tx: mpsc::UnboundedSender<Sent>) -> Self {
        Self {
            wire: Wire::Memory(tx),
            tcp: Default::default(),
        }
    }

    /// Sends `data` along `origin`'s flow; over UDP to `dest` (for a
    /// response, the RFC 3261 §18.2.2 target the caller computed).
    pub async fn send(&self, origin: &Origin, dest: SocketAddr, data: Vec<u8>) {
        let (link, udp) = match &self.wire {
            Wire::Sockets { link, udp } => (link, udp),
            #[cfg(test)]
            Wire::Memory(tx) => {
                let _ = tx.send(Sent::Sip { dest, data });
                return;
            }
        };
        let result = match origin {
            Origin::Router {
                transport, conn, ..
            } => {
                let pkt = SipPacket {
                    transport: *transport,
                    conn: *conn,
                    peer: dest,
                    data,
                };
                link.send_to_supervisor(&FromWorker::Sip(pkt))
                    .await
                    .map_err(|e| e.to_string())
            }
            Origin::TrunkUdp { .. } => udp
                .send_to(&data, dest)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Origin::TrunkTcp { conn, .. } => {
                let tx = self.tcp.lock().expect("tcp table").get(conn).cloned();
                match tx {
                    Some(tx) => tx.try_send(data).map_err(|e| e.to_string()),
                    None => Err("connection closed".into()),
                }
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "failed to send SIP response");
        }
    }

    /// Tells the router a call it admitted is over.
    pub async fn call_ended(&self, call_id: String) {
        let link = match &self.wire {
            Wire::Sockets { link, .. } => link,
            #[cfg(test)]
            Wire::Memory(tx) => {
                let _ = tx.send(Sent::CallEnded(call_id));
                return;
            }
        };
        let msg = FromWorker::CallEnded { call_id };
        if let Err(e) = link.send_to_supervisor(&msg).await {
            tracing::debug!(error = %e, "failed to report a call's end");
        }
    }
}

/// Who may call on the trunk port (sources, credentials), changed live by
/// the supervisor.
pub type SharedTrunk = Arc<std::sync::RwLock<TrunkPolicy>>;

/// Addresses we placed calls to (escalation), admitted on the trunk while
/// those calls are up even when the allowlist does not name them.
pub type Expected = Arc<std::sync::RwLock<std::collections::HashSet<std::net::IpAddr>>>;

fn trunk_admits(trunk: &SharedTrunk, expected: &Expected, peer: SocketAddr) -> bool {
    let admitted = cidr::allows(&trunk.read().expect("trunk policy lock").allow, peer.ip())
        || expected
            .read()
            .expect("expected peers lock")
            .contains(&peer.ip());
    if !admitted {
        // Silence, not 403: an answer would make the port a reflector for
        // spoofed sources and tell scanners it is there.
        tracing::debug!(%peer, "dropped SIP from a source outside the trunk allowlist");
    }
    admitted
}

/// Reads the trunk UDP socket into the user agent's event queue.
pub async fn serve_trunk_udp(
    udp: Arc<UdpSocket>,
    allow: SharedTrunk,
    expected: Expected,
    events: mpsc::Sender<Event>,
) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match udp.recv_from(&mut buf).await {
            Ok((_, peer)) if !trunk_admits(&allow, &expected, peer) => {}
            Ok((n, peer)) => {
                let ev = Event::Inbound {
                    origin: Origin::TrunkUdp { peer },
                    data: buf[..n].to_vec(),
                };
                if events.send(ev).await.is_err() {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "trunk UDP receive failed"),
        }
    }
}

/// Accepts trunk TCP connections; each gets a reader and a writer task.
pub async fn serve_trunk_tcp(
    listener: TcpListener,
    allow: SharedTrunk,
    expected: Expected,
    out: Outbound,
    events: mpsc::Sender<Event>,
) {
    static NEXT_CONN: AtomicU64 = AtomicU64::new(1);
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        if !trunk_admits(&allow, &expected, peer) {
            continue; // closed on drop
        }
        let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(64);
        out.tcp.lock().expect("tcp table").insert(conn, tx);
        let (out, events) = (out.clone(), events.clone());
        tokio::spawn(async move {
            serve_tcp_conn(stream, conn, peer, rx, events).await;
            out.tcp.lock().expect("tcp table").remove(&conn);
        });
    }
}

async fn serve_tcp_conn(
    stream: TcpStream,
    conn: u64,
    peer: SocketAddr,
    replies: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<Event>,
) {
    let (rd, wr) = stream.into_split();
    let writer = spawn_writer(wr, replies);
    let mut reader = MessageReader::new(rd, MAX_TCP_MESSAGE).with_idle_timeout(TCP_IDLE_TIMEOUT);
    loop {
        match reader.next_message().await {
            Ok(Some(data)) => {
                let origin = Origin::TrunkTcp { conn, peer };
                if events.send(Event::Inbound { origin, data }).await.is_err() {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "closing trunk TCP connection");
                break;
            }
        }
    }
    writer.abort();
}
