//! The routing decision, as a pure function of a message and two lookups, so
//! it is tested without sockets. The router reads only what it routes on:
//! the start line, Call-ID, CSeq, Via, To's tag and the Request-URI user.

use super::scan::{name_is, parse_cseq, scan_head_for_reply};
use super::uri::{target, Target};
use super::{scan, Scanned, StartLine};
use crate::{Number, TenantId};

/// What to do with one inbound message.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// Relay to this tenant's worker. `new_dialog` holds the Call-ID of an
    /// initial INVITE, which the router remembers for in-dialog requests.
    Forward {
        tenant: TenantId,
        new_dialog: Option<&'a str>,
    },
    /// Answer from the router itself.
    Reply { code: u16, reason: &'static str },
    /// Say nothing (stray responses, ACKs without a home, unanswerable garbage).
    Drop,
}

/// Decides where `data` goes. `by_number` maps a dialed number to its owner;
/// `by_call_id` finds the tenant of an established call.
pub fn decide<'a>(
    data: &'a [u8],
    by_number: impl Fn(&Number) -> Option<TenantId>,
    by_call_id: impl Fn(&str) -> Option<TenantId>,
) -> Decision<'a> {
    let msg = match scan(data) {
        Ok(m) => m,
        Err(_) => {
            // Answer 400 only when a response can find its way back (a Via).
            return match scan_head_for_reply(data) {
                Ok(m) if is_request(&m) && has_via(&m) && m.method() != Some("ACK") => {
                    Decision::Reply {
                        code: 400,
                        reason: "Bad Request",
                    }
                }
                _ => Decision::Drop,
            };
        }
    };
    let StartLine::Request { method, uri, .. } = msg.start else {
        // A response answers a request a worker sent in one of its calls
        // (a BYE when the caller vanished): it goes to that call's tenant.
        return match msg.call_id().and_then(by_call_id) {
            Some(tenant) => Decision::Forward {
                tenant,
                new_dialog: None,
            },
            None => Decision::Drop,
        };
    };
    let is_ack = method == "ACK";
    let fields = Fields::of(&msg);
    if !fields.answerable() {
        // RFC 4475 §3.3.10: missing Call-ID, From or To must not break us;
        // ideally the answer is 400, which the Via alone lets us send.
        return if is_ack || fields.top_via.is_none() {
            Decision::Drop
        } else {
            Decision::Reply {
                code: 400,
                reason: "Bad Request",
            }
        };
    }
    if uri.starts_with('<') || uri.contains(char::is_whitespace) {
        // RFC 4475 §3.1.2.7: a bracketed Request-URI is reasonably refused.
        return if is_ack {
            Decision::Drop
        } else {
            Decision::Reply {
                code: 400,
                reason: "Bad Request",
            }
        };
    }
    if method == "REGISTER" {
        return Decision::Reply {
            code: 405,
            reason: "Method Not Allowed",
        };
    }
    let call_id = fields.call_id.unwrap_or("");
    let in_dialog = method != "INVITE" || fields.to.and_then(Scanned::tag_of).is_some();
    if in_dialog {
        if let Some(tenant) = by_call_id(call_id) {
            return Decision::Forward {
                tenant,
                new_dialog: None,
            };
        }
    }
    let number = match target(uri) {
        Target::UnsupportedScheme if !is_ack => {
            return Decision::Reply {
                code: 416,
                reason: "Unsupported URI Scheme",
            }
        }
        Target::User(user) => Number::normalize(&user),
        _ => None,
    };
    match number.and_then(|n| by_number(&n)) {
        Some(tenant) => Decision::Forward {
            tenant,
            new_dialog: (method == "INVITE" && !in_dialog).then_some(call_id),
        },
        None if is_ack => Decision::Drop,
        None => Decision::Reply {
            code: 404,
            reason: "Not Found",
        },
    }
}

fn is_request(m: &Scanned<'_>) -> bool {
    matches!(m.start, StartLine::Request { .. })
}

/// The routing fields, read in one pass over the headers (the first of
/// each, as a single lookup would find).
#[derive(Debug, Default)]
struct Fields<'a> {
    call_id: Option<&'a str>,
    cseq: Option<&'a str>,
    top_via: Option<super::via::TopVia<'a>>,
    from: bool,
    to: Option<&'a str>,
}

impl<'a> Fields<'a> {
    fn of(m: &Scanned<'a>) -> Self {
        let mut f = Self::default();
        let mut via_seen = false;
        for (name, value) in m.headers() {
            if name_is(name, "Call-ID") {
                f.call_id = f.call_id.or(Some(value));
            } else if name_is(name, "CSeq") {
                f.cseq = f.cseq.or(Some(value));
            } else if name_is(name, "Via") {
                if !via_seen {
                    f.top_via = super::via::top_via_of(value);
                    via_seen = true;
                }
            } else if name_is(name, "From") {
                f.from = true;
            } else if name_is(name, "To") {
                f.to = f.to.or(Some(value));
            }
        }
        f
    }

    /// The headers without which no transaction can be matched or answered.
    fn answerable(&self) -> bool {
        self.call_id.is_some_and(|c| !c.is_empty())
            && self.cseq.and_then(parse_cseq).is_some()
            && self.top_via.is_some()
            && self.from
            && self.to.is_some()
    }
}

fn has_via(m: &Scanned<'_>) -> bool {
    super::via::top_via(m).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, uri: &str, to_tag: bool) -> Vec<u8> {
        let tag = if to_tag { ";tag=t1" } else { "" };
        format!(
            "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=f\r\n\
To: <{uri}>{tag}\r\nCall-ID: c1\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        )
        .into_bytes()
    }

    fn clinic() -> TenantId {
        TenantId::parse("clinic").unwrap()
    }

    fn numbers(n: &Number) -> Option<TenantId> {
        (n.as_str() == "+15550100").then(clinic)
    }

    fn decide_simple(data: &[u8]) -> Decision<'_> {
        decide(data, numbers, |_| None)
    }

    #[test]
    fn routes_initial_invites_by_dialed_number() {
        let fwd = Decision::Forward {
            tenant: clinic(),
            new_dialog: Some("c1"),
        };
        assert_eq!(
            decide_simple(&req("INVITE", "sip:+15550100@127.0.0.1", false)),
            fwd
        );
        assert_eq!(
            decide_simple(&req("INVITE", "sip:1-555-0100@h", false)),
            fwd
        );
        assert_eq!(decide_simple(&req("INVITE", "tel:+15550100", false)), fwd);
        let not_found = Decision::Reply {
            code: 404,
            reason: "Not Found",
        };
        assert_eq!(
            decide_simple(&req("INVITE", "sip:+15550199@h", false)),
            not_found
        );
        assert_eq!(
            decide_simple(&req("INVITE", "sip:first.last@example.com", false)),
            not_found
        );
    }

    #[test]
    fn in_dialog_requests_follow_the_call_id() {
        let by_call = |c: &str| (c == "c1").then(clinic);
        let bye = req("BYE", "sip:anything@h", true);
        assert_eq!(
            decide(&bye, |_| None, by_call),
            Decision::Forward {
                tenant: clinic(),
                new_dialog: None
            }
        );
        // Without a known Call-ID the Request-URI number still routes (our Contact).
        assert_eq!(
            decide_simple(&req("BYE", "sip:+15550100@h", true)),
            Decision::Forward {
                tenant: clinic(),
                new_dialog: None
            }
        );
        assert_eq!(
            decide_simple(&req("ACK", "sip:nobody@h", true)),
            Decision::Drop
        );
        // Responses to a worker's own requests follow the Call-ID too;
        // any other response is stray.
        let ok =
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1\r\nCall-ID: c1\r\nCSeq: 2 BYE\r\n\r\n";
        assert_eq!(
            decide(ok, |_| None, by_call),
            Decision::Forward {
                tenant: clinic(),
                new_dialog: None
            }
        );
        assert_eq!(decide_simple(ok), Decision::Drop);
    }

    #[test]
    fn answers_what_it_does_not_serve() {
        assert_eq!(
            decide_simple(&req("REGISTER", "sip:h", false)),
            Decision::Reply {
                code: 405,
                reason: "Method Not Allowed"
            }
        );
        assert_eq!(
            decide_simple(&req("INVITE", "http://h", false)),
            Decision::Reply {
                code: 416,
                reason: "Unsupported URI Scheme"
            }
        );
        assert_eq!(
            decide_simple(b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\n"),
            Decision::Drop
        );
    }

    #[test]
    fn malformed_input_gets_400_or_nothing() {
        let mut bad_len = req("INVITE", "sip:+15550100@h", false);
        let text = String::from_utf8(bad_len.clone())
            .unwrap()
            .replace("Content-Length: 0", "Content-Length: 99");
        bad_len = text.into_bytes();
        assert_eq!(
            decide_simple(&bad_len),
            Decision::Reply {
                code: 400,
                reason: "Bad Request"
            }
        );
        let no_cseq = String::from_utf8(req("INVITE", "sip:+15550100@h", false))
            .unwrap()
            .replace("CSeq: 1 INVITE\r\n", "");
        assert_eq!(
            decide_simple(no_cseq.as_bytes()),
            Decision::Reply {
                code: 400,
                reason: "Bad Request"
            }
        );
        for garbage in [
            &b""[..],
            b"\x00\x01\x02",
            b"hello world\r\n\r\n",
            &[0xff; 300],
        ] {
            assert_eq!(decide_simple(garbage), Decision::Drop);
        }
    }
}
