//! The tenant side of egress: which destinations the broker may connect
//! to for a tenant (kept in the registry), and this machine's own service
//! addresses, which are never allowed.

use std::collections::HashSet;
use std::net::IpAddr;

use bulkhead_shared::TenantId;

use super::Tenants;
use crate::daemon::AdminError;

impl Tenants {
    pub(in crate::daemon) fn egress_allowed(&self, id: &TenantId, host: &str, port: u16) -> bool {
        self.registry
            .lock()
            .expect("registry lock")
            .egress_allowed(id, host, port)
            .unwrap_or(false)
    }

    /// This machine's addresses and service ports, which the egress broker
    /// never connects to: the router, every tenant's SIP and HTTP ports,
    /// and metrics.
    pub(in crate::daemon) fn service_addresses(&self) -> (HashSet<IpAddr>, HashSet<u16>) {
        let mut ips: HashSet<IpAddr> = [
            self.advertise,
            self.cfg.tenant_bind.sip,
            self.cfg.tenant_bind.http,
            self.router.local.ip(),
        ]
        .into();
        ips.extend(
            nix::ifaddrs::getifaddrs()
                .into_iter()
                .flatten()
                .filter_map(|i| {
                    let a = i.address?;
                    a.as_sockaddr_in()
                        .map(|s| IpAddr::V4(s.ip()))
                        .or_else(|| a.as_sockaddr_in6().map(|s| IpAddr::V6(s.ip())))
                }),
        );
        let metrics = self
            .metrics_addr
            .get()
            .map_or(self.cfg.metrics_listen.port(), |a| a.port());
        let mut ports: HashSet<u16> = [self.router.local.port(), metrics].into();
        for l in self.live.lock().expect("live lock").values() {
            ports.extend([l.row.sip_port, l.row.http_port]);
        }
        (ips, ports)
    }

    /// `egress add`: refused for this machine's own service ports.
    pub fn egress_add(&self, id: &TenantId, host: &str, port: u16) -> Result<(), AdminError> {
        if !self.live.lock().expect("live lock").contains_key(id) {
            return Err(AdminError::NotFound(format!("no tenant {id}")));
        }
        if host.is_empty() || host.len() > bulkhead_shared::ipc::codec::MAX_HOST {
            return Err(AdminError::BadRequest(format!("invalid host {host:?}")));
        }
        let (ips, ports) = self.service_addresses();
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() {
            let addr = std::net::SocketAddr::new(ip, port);
            if crate::daemon::egress::is_forbidden(addr, &ips, &ports) {
                return Err(AdminError::Conflict(
                    crate::daemon::egress::EgressError::Forbidden { addr }.to_string(),
                ));
            }
        }
        self.registry
            .lock()
            .expect("registry lock")
            .egress_add(id, host, port)
            .map_err(AdminError::from_registry)?;
        Ok(())
    }

    pub fn egress_remove(&self, id: &TenantId, host: &str, port: u16) -> Result<(), AdminError> {
        let removed = self
            .registry
            .lock()
            .expect("registry lock")
            .egress_remove(id, host, port)
            .map_err(AdminError::from_registry)?;
        if removed {
            Ok(())
        } else {
            Err(AdminError::NotFound(format!(
                "{host}:{port} is not on tenant {id}'s egress allowlist"
            )))
        }
    }

    pub fn egress_list(
        &self,
        id: Option<&TenantId>,
    ) -> Result<Vec<(String, String, u16)>, AdminError> {
        self.registry
            .lock()
            .expect("registry lock")
            .egress_list(id)
            .map_err(AdminError::from_registry)
    }
}
