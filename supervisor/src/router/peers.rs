//! Where each tenant's worker may send through the router: only back to the
//! peers whose messages were routed to that tenant.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bulkhead_shared::ipc::Transport;
use bulkhead_shared::TenantId;

/// How long a source IP stays a valid destination after its last message
/// (long calls send in-dialog requests, which refresh it).
const PEER_TTL: Duration = Duration::from_secs(4 * 3600);
/// Most source IPs remembered per tenant before pruning.
const MAX_PEERS: usize = 10_000;

#[derive(Debug, Default)]
struct TenantPeers {
    ips: HashMap<IpAddr, Instant>,
    conns: HashSet<u64>,
}

/// Per-tenant allowed destinations.
#[derive(Debug, Default)]
pub struct Peers {
    by_tenant: Mutex<HashMap<TenantId, TenantPeers>>,
}

impl Peers {
    /// A message from `ip` (on TCP connection `conn`) was routed to `tenant`.
    pub fn allow(&self, tenant: &TenantId, transport: Transport, conn: u64, ip: IpAddr) {
        let mut all = self.by_tenant.lock().expect("peers lock");
        let p = all.entry(tenant.clone()).or_default();
        let now = Instant::now();
        if p.ips.len() >= MAX_PEERS && !p.ips.contains_key(&ip) {
            p.ips.retain(|_, at| now.duration_since(*at) < PEER_TTL);
            if p.ips.len() >= MAX_PEERS {
                // Still full: drop the oldest entry.
                if let Some(oldest) = p.ips.iter().min_by_key(|(_, at)| **at).map(|(ip, _)| *ip) {
                    p.ips.remove(&oldest);
                }
            }
        }
        p.ips.insert(ip, now);
        if transport == Transport::Tcp {
            p.conns.insert(conn);
        }
    }

    /// May `tenant`'s worker send to `ip` (UDP) or on `conn` (TCP)?
    pub fn allowed(&self, tenant: &TenantId, transport: Transport, conn: u64, ip: IpAddr) -> bool {
        let all = self.by_tenant.lock().expect("peers lock");
        let Some(p) = all.get(tenant) else {
            return false;
        };
        match transport {
            Transport::Tcp => p.conns.contains(&conn),
            Transport::Udp => p.ips.get(&ip).is_some_and(|at| at.elapsed() < PEER_TTL),
        }
    }

    pub fn forget_conn(&self, conn: u64) {
        for p in self.by_tenant.lock().expect("peers lock").values_mut() {
            p.conns.remove(&conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_may_answer_only_its_own_peers() {
        let peers = Peers::default();
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let caller: IpAddr = "127.0.0.5".parse().unwrap();
        peers.allow(&a, Transport::Udp, 0, caller);
        peers.allow(&b, Transport::Tcp, 7, "127.0.0.6".parse().unwrap());
        assert!(peers.allowed(&a, Transport::Udp, 0, caller));
        assert!(
            !peers.allowed(&b, Transport::Udp, 0, caller),
            "b never heard from a's caller"
        );
        assert!(
            !peers.allowed(&a, Transport::Udp, 0, "192.0.2.1".parse().unwrap()),
            "no reflection"
        );
        assert!(peers.allowed(&b, Transport::Tcp, 7, caller));
        assert!(
            !peers.allowed(&a, Transport::Tcp, 7, caller),
            "a cannot write into b's connection"
        );
        peers.forget_conn(7);
        assert!(!peers.allowed(&b, Transport::Tcp, 7, caller));
        let unknown = TenantId::parse("c").unwrap();
        assert!(!peers.allowed(&unknown, Transport::Udp, 0, caller));
    }
}
