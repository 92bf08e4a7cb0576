//! The top Via header, and where a response goes.

use std::net::SocketAddr;

use super::scan::Scanned;

/// The parts of the top Via a user agent server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopVia<'a> {
    /// `UDP`, `TCP`, ... as written.
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub branch: Option<&'a str>,
    /// RFC 3581: the client asked for responses to its source port.
    pub rport: bool,
}

/// Parses the first Via value of `msg`.
pub fn top_via<'a>(msg: &Scanned<'a>) -> Option<TopVia<'a>> {
    top_via_of(msg.header("Via")?)
}

/// Parses the first element of a Via header value.
pub fn top_via_of(value: &str) -> Option<TopVia<'_>> {
    parse(first_element(value))
}

/// The first comma-separated element of a Via header value.
fn first_element(value: &str) -> &str {
    // Via values hold no quoted strings in practice; IPv6 brackets hold no commas.
    value.split(',').next().unwrap_or(value).trim()
}

fn parse(value: &str) -> Option<TopVia<'_>> {
    // "SIP / 2.0 / UDP host:port;params" — LWS is allowed around the slashes.
    let (proto, rest) = split_protocol(value)?;
    let rest = rest.trim_start();
    let (sent_by, params) = match rest.find(';') {
        Some(i) => (rest[..i].trim(), &rest[i + 1..]),
        None => (rest.trim(), ""),
    };
    let (host, port) = split_host_port(sent_by)?;
    let mut branch = None;
    let mut rport = false;
    for p in params.split(';') {
        let (k, v) = p
            .split_once('=')
            .map_or((p.trim(), None), |(k, v)| (k.trim(), Some(v.trim())));
        if k.eq_ignore_ascii_case("branch") {
            branch = v;
        } else if k.eq_ignore_ascii_case("rport") {
            rport = true;
        }
    }
    Some(TopVia {
        transport: proto,
        host,
        port,
        branch,
        rport,
    })
}

fn split_protocol(value: &str) -> Option<(&str, &str)> {
    let mut rest = value;
    let mut transport = "";
    for i in 0..3 {
        rest = rest.trim_start();
        let end = rest
            .find(|c: char| c == '/' || c.is_whitespace())
            .unwrap_or(rest.len());
        let token = &rest[..end];
        if token.is_empty() {
            return None;
        }
        rest = rest[end..].trim_start();
        if i < 2 {
            rest = rest.strip_prefix('/')?;
        } else {
            transport = token;
        }
    }
    Some((transport, rest))
}

fn split_host_port(sent_by: &str) -> Option<(&str, Option<u16>)> {
    if let Some(v6) = sent_by.strip_prefix('[') {
        let close = v6.find(']')?;
        let host = &sent_by[..close + 2];
        let port = match &v6[close + 1..] {
            "" => None,
            p => Some(p.strip_prefix(':')?.trim().parse().ok()?),
        };
        return Some((host, port));
    }
    match sent_by.split_once(':') {
        Some((h, p)) => Some((h.trim(), Some(p.trim().parse().ok()?))),
        None if !sent_by.is_empty() => Some((sent_by, None)),
        None => None,
    }
}

/// Where a response to a request from `source` goes: always the source IP
/// (never a host named in Via); the source port with `rport` (RFC 3581),
/// else the Via port, else 5060 (RFC 3261 §18.2.2).
pub fn response_target(via: Option<&TopVia<'_>>, source: SocketAddr) -> SocketAddr {
    let port = match via {
        Some(v) if v.rport => source.port(),
        Some(v) => v.port.unwrap_or(5060),
        None => source.port(),
    };
    SocketAddr::new(source.ip(), port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::scan;

    fn via(value: &str) -> Option<TopVia<'_>> {
        parse(first_element(value))
    }

    #[test]
    fn parses_common_and_awkward_vias() {
        let v = via("SIP/2.0/UDP 192.0.2.1:5070;branch=z9hG4bK77;rport, SIP/2.0/TCP x").unwrap();
        assert_eq!(
            (v.transport, v.host, v.port, v.branch, v.rport),
            ("UDP", "192.0.2.1", Some(5070), Some("z9hG4bK77"), true)
        );
        let v = via("SIP / 2.0 / TCP [2001:db8::10]:5070 ; branch = z9hG4bKx").unwrap();
        assert_eq!(
            (v.transport, v.host, v.port, v.branch),
            ("TCP", "[2001:db8::10]", Some(5070), Some("z9hG4bKx"))
        );
        let v = via("SIP/2.0/UDP host.example").unwrap();
        assert_eq!((v.port, v.branch, v.rport), (None, None, false));
        assert!(via("garbage").is_none());
        assert!(via("SIP/2.0/UDP h:notaport").is_none());
    }

    #[test]
    fn responses_go_to_the_source_ip_never_the_via_host() {
        let src: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let raw =
            b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK1\r\n\r\n";
        let msg = scan(raw).unwrap();
        let v = top_via(&msg).unwrap();
        assert_eq!(
            response_target(Some(&v), src),
            "127.0.0.1:5070".parse().unwrap()
        );
        let with_rport = TopVia { rport: true, ..v };
        assert_eq!(response_target(Some(&with_rport), src), src);
        let no_port = TopVia { port: None, ..v };
        assert_eq!(
            response_target(Some(&no_port), src),
            "127.0.0.1:5060".parse().unwrap()
        );
    }
}
