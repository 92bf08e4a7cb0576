//! `bulkhead export kamailio`: the number → machine routing of this
//! supervisor as a Kamailio `htable` loaded from a `db_text` table, for a
//! Kamailio dispatcher in front of several machines (docs/scale-out.md).
//! Each machine exports its own rows; concatenated (one header), they are
//! the whole table, and `kamcmd htable.reload bulkhead` applies a new one
//! without a restart.

use std::fmt::Write as _;

use serde_json::Value;

/// db_text's column line for the htable module's default columns.
pub const HEADER: &str = "key_name(str) key_type(int) value_type(int) key_value(str)";

/// Why an export cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("--address {0:?} must be HOST:PORT (host: letters, digits, '.', '-', or an IPv6 address in brackets)")]
    BadAddress(String),
    #[error("the supervisor's answer lacks {0}")]
    Incomplete(&'static str),
}

/// Checks an address Kamailio will send to; only characters that need no
/// quoting in a SIP URI or a db_text field get through.
pub fn check_address(address: &str) -> Result<&str, ExportError> {
    let bad = || ExportError::BadAddress(address.to_owned());
    let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
    port.parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(bad)?;
    let plain = |h: &str| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    };
    let ipv6 = |h: &str| {
        h.strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .is_some_and(|h| h.parse::<std::net::Ipv6Addr>().is_ok())
    };
    if plain(host) || ipv6(host) {
        Ok(address)
    } else {
        Err(bad())
    }
}

/// Where calls for this machine's numbers go: the router's address, with
/// the advertised IP when the router listens on every interface.
pub fn router_address(status: &Value) -> Result<String, ExportError> {
    let listen: std::net::SocketAddr = status["sip_listen"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or(ExportError::Incomplete("sip_listen"))?;
    if !listen.ip().is_unspecified() {
        return Ok(listen.to_string());
    }
    let advertise: std::net::IpAddr = status["advertise"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or(ExportError::Incomplete("advertise"))?;
    Ok(std::net::SocketAddr::new(advertise, listen.port()).to_string())
}

/// The tenants' numbers from `GET /v1/tenants`, sorted.
pub fn numbers(tenants: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = tenants["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|t| {
            let id = t["id"].as_str().unwrap_or_default().to_owned();
            t["numbers"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str())
                .map(move |n| (n.to_owned(), id.clone()))
        })
        .collect();
    out.sort();
    out
}

/// The db_text rows: each number under its `+` form and its digits alone
/// (carriers send either as the Request-URI user), valued with the SIP URI
/// of this machine's router. `:` is escaped as db_text requires.
pub fn htable(address: &str, numbers: &[(String, String)], header: bool) -> String {
    let value = format!("sip:{address}").replace(':', "\\:");
    let mut out = String::new();
    if header {
        out.push_str(HEADER);
        out.push('\n');
    }
    for (number, _) in numbers {
        let digits = number.trim_start_matches('+');
        for key in [number.as_str(), digits] {
            let _ = writeln!(out, "{key}:0:0:{value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_name_each_number_twice_and_escape_the_uri() {
        let tenants = json!({"tenants": [
            {"id": "insurance", "numbers": ["+15550200"]},
            {"id": "clinic", "numbers": ["+15550101", "+15550100"]},
        ]});
        let table = htable("127.0.0.1:5060", &numbers(&tenants), true);
        assert_eq!(
            table,
            format!(
                "{HEADER}\n+15550100:0:0:sip\\:127.0.0.1\\:5060\n15550100:0:0:sip\\:127.0.0.1\\:5060\n\
                 +15550101:0:0:sip\\:127.0.0.1\\:5060\n15550101:0:0:sip\\:127.0.0.1\\:5060\n\
                 +15550200:0:0:sip\\:127.0.0.1\\:5060\n15550200:0:0:sip\\:127.0.0.1\\:5060\n"
            )
        );
        assert!(!htable("[::1]:5060", &numbers(&tenants), false).starts_with("key_name"));
        assert!(htable("[::1]:5060", &numbers(&tenants), false).contains("sip\\:[\\:\\:1]\\:5060"));
    }

    #[test]
    fn the_address_is_the_router_or_the_advertised_ip() {
        let status = json!({"sip_listen": "127.0.0.1:5070", "advertise": "192.0.2.1"});
        assert_eq!(router_address(&status).unwrap(), "127.0.0.1:5070");
        let status = json!({"sip_listen": "0.0.0.0:5060", "advertise": "192.0.2.1"});
        assert_eq!(router_address(&status).unwrap(), "192.0.2.1:5060");
        assert!(router_address(&json!({})).is_err());
    }

    #[test]
    fn only_plain_addresses_are_accepted() {
        for ok in [
            "sip1.example.com:5060",
            "10.0.0.7:5070",
            "[2001:db8::1]:5060",
        ] {
            assert!(check_address(ok).is_ok(), "{ok}");
        }
        for bad in [
            "host",
            "host:0",
            "host:99999",
            "a b:5060",
            "h;x=1:5060",
            "x\n:5060",
            ":5060",
            "[zz]:5060",
        ] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
    }
}
