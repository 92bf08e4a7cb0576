//! The escalation document: where a caller who asks for a person goes.
//! `{"targets": [{"name", "uri"}], "default_target"}` (docs/interfaces.md).
//!
//! A target's URI must name its host by IP address: the worker's sandbox
//! has no resolver, and a name looked up elsewhere would be a path out of
//! the tenant's control.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use super::doc::{fail, DocError};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EscalationDoc {
    #[schemars(length(max = 20))]
    pub targets: Vec<Target>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_target: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Unique among the targets; what the LLM's `transfer_to_human` names.
    #[schemars(length(min = 1, max = 64))]
    pub name: String,
    /// `sip:user@ip[:port]`, UDP (the worker sends the INVITE itself).
    #[schemars(regex(pattern = r"^sip:"))]
    pub uri: String,
    /// How the caller reaches the target: `bridge` (the worker calls the
    /// target and relays audio) or `refer` (the caller's carrier is asked to
    /// call it, RFC 3515).
    #[serde(default)]
    pub transfer: TransferMethod,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TransferMethod {
    #[default]
    Bridge,
    Refer,
}

const MAX_TARGETS: usize = 20;

impl EscalationDoc {
    pub fn from_json(body: &[u8]) -> Result<Self, DocError> {
        let doc: Self = super::doc::object_from_json(body)?;
        doc.validate()?;
        Ok(doc)
    }

    pub fn validate(&self) -> Result<(), DocError> {
        if self.targets.len() > MAX_TARGETS {
            return fail("targets", "at most 20 targets");
        }
        for (i, t) in self.targets.iter().enumerate() {
            if t.name.is_empty() || t.name.len() > 64 {
                return fail(format!("targets[{i}].name"), "1 to 64 characters");
            }
            if self.targets[..i].iter().any(|o| o.name == t.name) {
                return fail(format!("targets[{i}].name"), "names must be unique");
            }
            if destination(&t.uri).is_none() {
                return fail(
                    format!("targets[{i}].uri"),
                    "a sip: URI with an IP address host, e.g. sip:desk@192.0.2.10:5060",
                );
            }
        }
        if let Some(d) = &self.default_target {
            if !self.targets.iter().any(|t| &t.name == d) {
                return fail("default_target", "must name one of the targets");
            }
        }
        Ok(())
    }

    /// The target a transfer goes to: the default, else the first.
    pub fn target(&self) -> Option<&Target> {
        match &self.default_target {
            Some(d) => self.targets.iter().find(|t| &t.name == d),
            None => self.targets.first(),
        }
    }
}

/// Where to send an INVITE for `uri`: `sip:user@ip[:port]` (IPv6 in
/// brackets), UDP, port 5060 by default. Parameters other than
/// `transport=udp` are refused.
pub fn destination(uri: &str) -> Option<SocketAddr> {
    let rest = uri.strip_prefix("sip:")?;
    let (hostport, params) = rest.split_once(';').unwrap_or((rest, ""));
    if !params.is_empty() && !params.eq_ignore_ascii_case("transport=udp") {
        return None;
    }
    let hostport = hostport.rsplit_once('@').map_or(hostport, |(user, hp)| {
        if user.is_empty() || user.contains(|c: char| c.is_control() || c == ' ') {
            ""
        } else {
            hp
        }
    });
    if let Ok(addr) = hostport.parse::<SocketAddr>() {
        return (addr.port() != 0).then_some(addr);
    }
    let host = hostport.trim_start_matches('[').trim_end_matches(']');
    host.parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, 5060))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_need_an_ip_host() {
        assert_eq!(
            destination("sip:desk@127.0.0.1:5070"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        assert_eq!(
            destination("sip:desk@127.0.0.1"),
            Some("127.0.0.1:5060".parse().unwrap())
        );
        assert_eq!(
            destination("sip:desk@[::1]:5070"),
            Some("[::1]:5070".parse().unwrap())
        );
        assert_eq!(
            destination("sip:127.0.0.1:5070;transport=udp"),
            Some("127.0.0.1:5070".parse().unwrap())
        );
        for bad in [
            "sip:desk@example.com",
            "tel:+15550100",
            "sip:desk@127.0.0.1:0",
            "sip:desk@127.0.0.1;transport=tcp",
            "sip:@127.0.0.1",
            "",
        ] {
            assert_eq!(destination(bad), None, "{bad}");
        }
    }

    #[test]
    fn documents_are_checked_and_pick_their_target() {
        let doc = EscalationDoc::from_json(
            br#"{"targets": [{"name": "desk", "uri": "sip:desk@127.0.0.1:5070"}, {"name": "night", "uri": "sip:n@127.0.0.2"}], "default_target": "night"}"#,
        )
        .unwrap();
        assert_eq!(doc.target().unwrap().name, "night");
        let err = |b: &str| EscalationDoc::from_json(b.as_bytes()).unwrap_err().field;
        assert_eq!(
            err(r#"{"targets": [{"name": "d", "uri": "sip:d@host.example"}]}"#),
            "targets[0].uri"
        );
        assert_eq!(
            err(r#"{"targets": [], "default_target": "x"}"#),
            "default_target"
        );
        assert_eq!(err(r#"{"target": []}"#), "target");
        assert_eq!(EscalationDoc::default().target(), None);
    }
}
