//! RTP sockets per call. A worker cannot open sockets; for each call it asks
//! for an RTP/RTCP pair, which the supervisor binds from the `rtp_ports`
//! pool on the tenants' SIP address and passes over. A worker may hold at
//! most its concurrent-call limit of pairs; closing a call returns its pair,
//! and a worker that exits returns all of them.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::Mutex;

/// The machine-wide pool of RTP ports.
#[derive(Debug)]
pub struct RtpPool {
    ip: IpAddr,
    range: RangeInclusive<u16>,
    state: Mutex<PoolState>,
}

#[derive(Debug, Default)]
struct PoolState {
    used: HashSet<u16>,
    next: u16,
}

/// One call's sockets: RTP on an even port, RTCP on the next.
#[derive(Debug)]
pub struct RtpPair {
    pub port: u16,
    pub rtp: UdpSocket,
    pub rtcp: UdpSocket,
}

impl RtpPool {
    pub fn new(ip: IpAddr, range: RangeInclusive<u16>) -> Self {
        let start = *range.start();
        Self {
            ip,
            range,
            state: Mutex::new(PoolState {
                used: HashSet::new(),
                next: start,
            }),
        }
    }

    /// Binds the next free even/odd pair, skipping ports something else holds.
    pub fn open(&self) -> Result<RtpPair, String> {
        let mut st = self.state.lock().expect("rtp pool lock");
        let (lo, hi) = (*self.range.start(), *self.range.end());
        let first_even = lo + lo % 2;
        let slots = (hi.saturating_sub(first_even) / 2) as usize + 1;
        for _ in 0..slots {
            let mut port = st.next.max(first_even);
            port += port % 2;
            if port >= hi {
                port = first_even;
            }
            st.next = port + 2;
            if st.used.contains(&port) {
                continue;
            }
            let bind = |p: u16| UdpSocket::bind(SocketAddr::new(self.ip, p));
            if let (Ok(rtp), Ok(rtcp)) = (bind(port), bind(port + 1)) {
                st.used.insert(port);
                return Ok(RtpPair { port, rtp, rtcp });
            }
        }
        Err(format!("no free RTP port pair in {lo}-{hi}"))
    }

    /// Returns a pair to the pool.
    pub fn release(&self, port: u16) {
        self.state.lock().expect("rtp pool lock").used.remove(&port);
    }

    #[cfg(test)]
    pub fn in_use(&self) -> usize {
        self.state.lock().expect("rtp pool lock").used.len()
    }
}

/// One worker's pairs, bounded by its concurrent-call limit.
#[derive(Debug, Default)]
pub struct WorkerRtp {
    held: HashSet<u16>,
}

impl WorkerRtp {
    /// A pair for a new call, or why not. `limit` is the tenant's
    /// concurrent-call limit now (it may change while the worker runs).
    pub fn open(&mut self, pool: &RtpPool, limit: usize) -> Result<RtpPair, String> {
        if self.held.len() >= limit {
            return Err(format!(
                "the tenant's concurrent-call limit ({limit}) is reached"
            ));
        }
        let pair = pool.open()?;
        self.held.insert(pair.port);
        Ok(pair)
    }

    /// Returns `port` if this worker holds it (a worker cannot free another's).
    pub fn close(&mut self, pool: &RtpPool, port: u16) {
        if self.held.remove(&port) {
            pool.release(port);
        }
    }

    /// The worker is gone: everything it held goes back.
    pub fn release_all(&mut self, pool: &RtpPool) {
        for port in self.held.drain() {
            pool.release(port);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_bounded_per_worker_and_returned() {
        let pool = RtpPool::new("127.0.0.1".parse().unwrap(), 42000..=42019);
        let mut a = WorkerRtp::default();
        let mut b = WorkerRtp::default();
        let p1 = a.open(&pool, 2).unwrap();
        let p2 = a.open(&pool, 2).unwrap();
        assert!(p1.port.is_multiple_of(2) && p2.port.is_multiple_of(2) && p1.port != p2.port);
        assert_eq!(p1.rtcp.local_addr().unwrap().port(), p1.port + 1);
        assert!(a
            .open(&pool, 2)
            .unwrap_err()
            .contains("concurrent-call limit (2)"));
        // B cannot free A's port.
        b.close(&pool, p1.port);
        assert_eq!(pool.in_use(), 2);
        a.close(&pool, p1.port);
        drop(p1);
        assert_eq!(pool.in_use(), 1);
        a.open(&pool, 2).unwrap();
        a.release_all(&pool);
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn a_full_pool_says_so() {
        let pool = RtpPool::new("127.0.0.1".parse().unwrap(), 42100..=42103);
        let _x = pool.open().unwrap();
        let _y = pool.open().unwrap();
        assert!(pool.open().unwrap_err().contains("no free RTP port pair"));
    }
}
