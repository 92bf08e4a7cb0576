//! The egress broker: the only way a worker reaches the network beyond its
//! passed sockets. A worker asks for `host:port`; the supervisor connects
//! only if that exact pair is on the tenant's allowlist, never to this
//! machine's own service ports (the router, every tenant's SIP and HTTP
//! ports, metrics), and hands the connected socket over by `SCM_RIGHTS`.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bulkhead_shared::TenantId;

use super::Tenants;

/// How long resolving and connecting may take together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Connection requests one worker may have in flight.
pub const MAX_IN_FLIGHT: usize = 8;

/// Why the broker refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("{host}:{port} is not on tenant {tenant}'s egress allowlist (bulkhead egress add)")]
    NotAllowed {
        tenant: TenantId,
        host: String,
        port: u16,
    },
    #[error("{addr} is one of this machine's own service ports (router, a tenant's SIP or HTTP port, metrics); the broker never connects there")]
    Forbidden { addr: SocketAddr },
    #[error("cannot resolve {host}: {reason}")]
    Resolve { host: String, reason: String },
    #[error("connecting to {host}:{port} failed: {reason}")]
    Connect {
        host: String,
        port: u16,
        reason: String,
    },
}

/// Whether `addr` is one of this machine's service ports.
pub fn is_forbidden(addr: SocketAddr, local: &HashSet<IpAddr>, ports: &HashSet<u16>) -> bool {
    let ip = addr.ip();
    let here = ip.is_loopback() || ip.is_unspecified() || local.contains(&ip);
    here && ports.contains(&addr.port())
}

/// Connects on `tenant`'s behalf, or says why not.
pub async fn connect(
    tenants: &Tenants,
    tenant: &TenantId,
    host: &str,
    port: u16,
) -> Result<std::net::TcpStream, EgressError> {
    if !tenants.egress_allowed(tenant, host, port) {
        return Err(EgressError::NotAllowed {
            tenant: tenant.clone(),
            host: host.into(),
            port,
        });
    }
    let (local, ports) = tenants.service_addresses();
    let attempt = async {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| EgressError::Resolve {
                host: host.into(),
                reason: e.to_string(),
            })?
            .collect();
        // Every resolved address is checked, so DNS cannot smuggle in a local port.
        if let Some(bad) = addrs.iter().find(|a| is_forbidden(**a, &local, &ports)) {
            return Err(EgressError::Forbidden { addr: *bad });
        }
        let mut last = String::from("no address");
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    let s = s.into_std().map_err(|e| EgressError::Connect {
                        host: host.into(),
                        port,
                        reason: e.to_string(),
                    })?;
                    // The worker decides its own blocking mode.
                    let _ = s.set_nonblocking(false);
                    return Ok(s);
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(EgressError::Connect {
            host: host.into(),
            port,
            reason: last,
        })
    };
    tokio::time::timeout(CONNECT_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| {
            Err(EgressError::Connect {
                host: host.into(),
                port,
                reason: "timed out".into(),
            })
        })
}

/// The answer to a worker's `Connect`: the frame, and the socket on
/// success (the reason is in the frame otherwise).
pub fn answer(
    seq: u64,
    result: Result<std::net::TcpStream, EgressError>,
) -> Option<(Vec<u8>, Vec<std::os::fd::OwnedFd>)> {
    use bulkhead_shared::ipc::codec::encode_to_worker;
    use bulkhead_shared::ipc::ToWorker;
    let (error, fds) = match result {
        Ok(stream) => (None, vec![stream.into()]),
        Err(e) => (Some(e.to_string()), Vec::new()),
    };
    let mut frame = Vec::new();
    encode_to_worker(&ToWorker::Connected { seq, error }, &mut frame).ok()?;
    Some((frame, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machines_service_ports_are_forbidden() {
        let local: HashSet<IpAddr> = ["192.0.2.10".parse().unwrap()].into();
        let ports: HashSet<u16> = [5060, 25000].into();
        assert!(is_forbidden(
            "127.0.0.1:25000".parse().unwrap(),
            &local,
            &ports
        ));
        assert!(is_forbidden("[::1]:5060".parse().unwrap(), &local, &ports));
        assert!(is_forbidden(
            "192.0.2.10:5060".parse().unwrap(),
            &local,
            &ports
        ));
        assert!(is_forbidden(
            "0.0.0.0:25000".parse().unwrap(),
            &local,
            &ports
        ));
        assert!(
            !is_forbidden("127.0.0.1:8080".parse().unwrap(), &local, &ports),
            "another local port is the admin's call"
        );
        assert!(
            !is_forbidden("198.51.100.7:5060".parse().unwrap(), &local, &ports),
            "a remote SIP server"
        );
    }
}
