//! Tenant ports: chosen from the configured pools, bound by the supervisor
//! (never by the worker) and kept bound across worker restarts, so a port
//! cannot be taken by anyone else while its tenant exists.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::ops::RangeInclusive;

use crate::config::TenantBind;

#[derive(Debug, thiserror::Error)]
pub enum PortError {
    #[error("failed to bind {what} port {addr}: {source} (choose another port, or free it)")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("no free {0} port left in the configured pool")]
    PoolExhausted(&'static str),
}

/// One tenant's bound sockets.
#[derive(Debug)]
pub struct TenantSockets {
    pub sip_udp: UdpSocket,
    pub sip_tcp: TcpListener,
    pub http: TcpListener,
}

impl TenantSockets {
    pub fn try_clone(&self) -> std::io::Result<Self> {
        Ok(Self {
            sip_udp: self.sip_udp.try_clone()?,
            sip_tcp: self.sip_tcp.try_clone()?,
            http: self.http.try_clone()?,
        })
    }
}

/// Binds SIP (UDP and TCP on one port) and HTTP. `None` picks from the pool,
/// skipping ports in `taken` and any that fail to bind.
pub fn bind_tenant(
    bind: &TenantBind,
    sip: Option<u16>,
    http: Option<u16>,
    sip_pool: &RangeInclusive<u16>,
    http_pool: &RangeInclusive<u16>,
    taken: &HashSet<u16>,
) -> Result<TenantSockets, PortError> {
    let (sip_udp, sip_tcp) = match sip {
        Some(p) => bind_sip(bind.sip, p)?,
        None => pick(sip_pool, taken, "SIP", |p| bind_sip(bind.sip, p))?,
    };
    let http = match http {
        Some(p) => bind_tcp(bind.http, p, "HTTP")?,
        None => pick(http_pool, taken, "HTTP", |p| bind_tcp(bind.http, p, "HTTP"))?,
    };
    Ok(TenantSockets {
        sip_udp,
        sip_tcp,
        http,
    })
}

fn pick<T>(
    pool: &RangeInclusive<u16>,
    taken: &HashSet<u16>,
    what: &'static str,
    bind: impl Fn(u16) -> Result<T, PortError>,
) -> Result<T, PortError> {
    pool.clone()
        .filter(|p| !taken.contains(p))
        .find_map(|p| bind(p).ok())
        .ok_or(PortError::PoolExhausted(what))
}

fn bind_sip(ip: IpAddr, port: u16) -> Result<(UdpSocket, TcpListener), PortError> {
    let addr = SocketAddr::new(ip, port);
    let udp = UdpSocket::bind(addr).map_err(|source| PortError::Bind {
        what: "SIP UDP",
        addr,
        source,
    })?;
    let tcp = bind_tcp(ip, port, "SIP TCP")?;
    Ok((udp, tcp))
}

fn bind_tcp(ip: IpAddr, port: u16, what: &'static str) -> Result<TcpListener, PortError> {
    let addr = SocketAddr::new(ip, port);
    TcpListener::bind(addr).map_err(|source| PortError::Bind { what, addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_free_ports_and_reports_busy_ones() {
        let bind = TenantBind {
            sip: "127.0.0.1".parse().unwrap(),
            http: "127.0.0.1".parse().unwrap(),
        };
        let a = bind_tenant(
            &bind,
            None,
            None,
            &(41000..=41010),
            &(41011..=41020),
            &HashSet::new(),
        )
        .unwrap();
        let sip = a.sip_udp.local_addr().unwrap().port();
        assert_eq!(a.sip_tcp.local_addr().unwrap().port(), sip);
        // The same explicit port again is busy: a clear error naming it.
        let err = bind_tenant(
            &bind,
            Some(sip),
            None,
            &(41000..=41010),
            &(41011..=41020),
            &HashSet::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(&sip.to_string()), "{err}");
        // The pool skips it.
        let b = bind_tenant(
            &bind,
            None,
            None,
            &(41000..=41010),
            &(41011..=41020),
            &HashSet::new(),
        )
        .unwrap();
        assert_ne!(b.sip_udp.local_addr().unwrap().port(), sip);
    }
}
