//! Which transaction a message belongs to (RFC 3261 §17.1.3, §17.2.3).

use std::net::IpAddr;

use crate::sip::msg::{top_via, Scanned};

/// RFC 3261 branches start with this; older (RFC 2543) ones do not.
const MAGIC_COOKIE: &str = "z9hG4bK";

/// A server transaction's identity: the top Via's branch and sent-by, the
/// method (an ACK belongs to its INVITE), and the source address. The
/// source is our addition: a stranger reusing someone's branch gets a
/// transaction of its own, never a resend of their response.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServerKey {
    branch: String,
    sent_by: String,
    method: String,
    source: IpAddr,
}

/// The server transaction `req` (from `source`) belongs to; `None` when it
/// has no readable top Via or CSeq.
pub fn server_key(req: &Scanned<'_>, source: IpAddr) -> Option<ServerKey> {
    let via = top_via(req)?;
    let method = match req.method()? {
        "ACK" => "INVITE",
        m => m,
    };
    let sent_by = match via.port {
        Some(p) => format!("{}:{p}", via.host),
        None => via.host.to_owned(),
    };
    let branch = match via.branch {
        Some(b) if b.starts_with(MAGIC_COOKIE) => b.to_owned(),
        // RFC 2543 peers: Call-ID, CSeq number and From tag stand in for
        // the branch (their To tag differs between an INVITE and its ACK).
        _ => {
            let from_tag = req.header("From").and_then(Scanned::tag_of);
            format!(
                "2543:{}:{}:{}",
                req.call_id()?,
                req.cseq()?.0,
                from_tag.unwrap_or("")
            )
        }
    };
    Some(ServerKey {
        branch,
        sent_by,
        method: method.to_ascii_uppercase(),
        source,
    })
}

/// A client transaction's identity: our branch and the CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClientKey {
    pub branch: String,
    pub method: String,
}

/// The client transaction a response belongs to.
pub fn client_key(resp: &Scanned<'_>) -> Option<ClientKey> {
    Some(ClientKey {
        branch: top_via(resp)?.branch?.to_owned(),
        method: resp.cseq()?.1.to_ascii_uppercase(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::scan;

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn key(raw: &str) -> ServerKey {
        server_key(&scan(raw.as_bytes()).unwrap(), SRC).unwrap()
    }

    #[test]
    fn an_ack_matches_its_invite_and_a_cancel_does_not() {
        let via = "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n";
        let invite = key(&format!(
            "INVITE sip:a@b SIP/2.0\r\n{via}CSeq: 1 INVITE\r\n\r\n"
        ));
        let ack = key(&format!("ACK sip:a@b SIP/2.0\r\n{via}CSeq: 1 ACK\r\n\r\n"));
        let cancel = key(&format!(
            "CANCEL sip:a@b SIP/2.0\r\n{via}CSeq: 1 CANCEL\r\n\r\n"
        ));
        assert_eq!(invite, ack);
        assert_ne!(invite, cancel);
        let other_source = server_key(
            &scan(format!("INVITE sip:a@b SIP/2.0\r\n{via}CSeq: 1 INVITE\r\n\r\n").as_bytes())
                .unwrap(),
            "127.0.0.2".parse().unwrap(),
        );
        assert_ne!(Some(invite), other_source);
    }

    #[test]
    fn rfc2543_requests_are_keyed_by_call_id_cseq_and_from_tag() {
        let head = "Via: SIP/2.0/UDP 127.0.0.1\r\nCall-ID: c1\r\nFrom: <sip:x@y>;tag=f\r\n";
        let invite = key(&format!(
            "INVITE sip:a@b SIP/2.0\r\n{head}To: <sip:a@b>\r\nCSeq: 4 INVITE\r\n\r\n"
        ));
        let ack = key(&format!(
            "ACK sip:a@b SIP/2.0\r\n{head}To: <sip:a@b>;tag=ours\r\nCSeq: 4 ACK\r\n\r\n"
        ));
        let next = key(&format!(
            "INVITE sip:a@b SIP/2.0\r\n{head}To: <sip:a@b>\r\nCSeq: 5 INVITE\r\n\r\n"
        ));
        assert_eq!(invite, ack);
        assert_ne!(invite, next);
    }
}
