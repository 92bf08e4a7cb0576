//! Address blocks (`198.51.100.0/24`, `2001:db8::/32`, or one address) for
//! a tenant's trunk allowlist: which carriers may reach its own SIP port.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IP network: an address and how many leading bits count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or address block such as 198.51.100.0/24")]
pub struct CidrError(String);

impl Cidr {
    /// Whether `ip` is inside this block (an IPv4-mapped IPv6 address
    /// counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask(u128::from(u32::from(net)), self.prefix, 32)
                    == mask(u128::from(u32::from(ip)), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask(u128::from(net), self.prefix, 128) == mask(u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

/// The top `prefix` bits of a `width`-bit address.
fn mask(addr: u128, prefix: u8, width: u32) -> u128 {
    if prefix == 0 {
        return 0;
    }
    addr >> (width - u32::from(prefix))
}

/// An empty list allows every source; otherwise `ip` must be in one block.
pub fn allows(list: &[Cidr], ip: IpAddr) -> bool {
    list.is_empty() || list.iter().any(|c| c.contains(ip))
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr.parse().map_err(|_| err())?;
        let width = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => width,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= width)
                .ok_or_else(err)?,
        };
        Ok(Self { net, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> Self {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_what_they_should() {
        let net: Cidr = "198.51.100.0/24".parse().unwrap();
        assert!(net.contains(ip("198.51.100.7")));
        assert!(!net.contains(ip("198.51.101.7")));
        assert!(net.contains(ip("::ffff:198.51.100.9")), "v4-mapped");
        let one: Cidr = "127.0.0.2".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.2/32");
        assert!(one.contains(ip("127.0.0.2")) && !one.contains(ip("127.0.0.3")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:1::5")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("198.51.100.7")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
    }

    #[test]
    fn an_empty_list_allows_everyone_and_bad_blocks_are_refused() {
        assert!(allows(&[], ip("203.0.113.9")));
        for bad in [
            "",
            "10.0.0.0/33",
            "host.example.com",
            "10.0.0.0/x",
            "::/129",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&vec!["10.0.0.0/8".parse::<Cidr>().unwrap()]).unwrap();
        assert_eq!(json, r#"["10.0.0.0/8"]"#);
        assert!(serde_json::from_str::<Vec<Cidr>>(r#"["nope"]"#).is_err());
    }
}
