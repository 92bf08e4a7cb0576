//! TCP ingress: messages framed by Content-Length, bounded in size; each
//! connection gets an id so replies find their way back to it. Connections
//! are bounded in number (in all and per source address) and closed when
//! idle, so holding sockets open costs an attacker more than it costs us.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulkhead_shared::ipc::Transport;
use bulkhead_shared::sip::stream::{spawn_writer, MessageReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::Router;

/// Largest message accepted over TCP.
const MAX_MESSAGE: usize = 65_535;
/// Most open connections in all; more are closed at once.
pub const MAX_CONNECTIONS: usize = 4096;
/// Most open connections from one source address (a carrier needs a few).
pub const MAX_CONNECTIONS_PER_IP: usize = 64;
/// A connection with no whole message or CRLF keep-alive for this long is
/// closed (RFC 5626 keep-alives come every 95–120 s).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Open connections by source address.
#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

impl Open {
    fn admit(&mut self, ip: IpAddr) -> bool {
        let mine = self.by_ip.entry(ip).or_default();
        if self.total >= MAX_CONNECTIONS || *mine >= MAX_CONNECTIONS_PER_IP {
            return false;
        }
        *mine += 1;
        self.total += 1;
        true
    }

    fn release(&mut self, ip: IpAddr) {
        self.total -= 1;
        if let Some(n) = self.by_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.by_ip.remove(&ip);
            }
        }
    }
}

pub async fn serve(router: Arc<Router>, listener: TcpListener) {
    let open = Arc::new(Mutex::new(Open::default()));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        if !open.lock().expect("open lock").admit(peer.ip()) {
            tracing::debug!(%peer, "refused a SIP TCP connection: too many open");
            router.counters.dropped.fetch_add(1, Ordering::Relaxed);
            continue; // closed on drop
        }
        let open = open.clone();
        let conn = router.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(256);
        router.tcp_conns.lock().expect("tcp lock").insert(conn, tx);
        let router = router.clone();
        tokio::spawn(async move {
            serve_conn(&router, stream, conn, peer, rx).await;
            router.tcp_conns.lock().expect("tcp lock").remove(&conn);
            router.forget_conn(conn);
            open.lock().expect("open lock").release(peer.ip());
        });
    }
}

async fn serve_conn(
    router: &Router,
    stream: TcpStream,
    conn: u64,
    peer: std::net::SocketAddr,
    out: mpsc::Receiver<Vec<u8>>,
) {
    let (rd, wr) = stream.into_split();
    let writer = spawn_writer(wr, out);
    let mut reader = MessageReader::new(rd, MAX_MESSAGE).with_idle_timeout(IDLE_TIMEOUT);
    loop {
        match reader.next_message().await {
            Ok(Some(msg)) => router.dispatch(Transport::Tcp, conn, peer, &msg),
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, %peer, "closing SIP TCP connection");
                break;
            }
        }
    }
    writer.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_bounded_per_address_and_released() {
        let mut open = Open::default();
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        for _ in 0..MAX_CONNECTIONS_PER_IP {
            assert!(open.admit(a));
        }
        assert!(!open.admit(a), "one address cannot take more");
        assert!(open.admit(b), "another address still can");
        open.release(a);
        assert!(open.admit(a), "a closed connection frees its place");
        assert_eq!(open.total, MAX_CONNECTIONS_PER_IP + 1);
    }
}
