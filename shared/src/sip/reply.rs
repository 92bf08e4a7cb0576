//! Building a response to a request, as a user agent server does (RFC 3261
//! §8.2.6): Via, From, Call-ID and CSeq copied as received, To copied with
//! our tag added.

use std::fmt::Write;

use super::scan::{name_is, Scanned};

/// Headers a response mirrors from its request, in the order they appear.
const MIRRORED: &[&str] = &["Via", "From", "To", "Call-ID", "CSeq"];

/// A response under construction.
#[derive(Debug)]
pub struct Reply {
    head: String,
    body: Vec<u8>,
}

impl Reply {
    /// Starts a `code reason` response to `req`. `to_tag` is added to To when
    /// the request's To has no tag (a 100 Trying never gets one).
    pub fn to(req: &Scanned<'_>, code: u16, reason: &str, to_tag: Option<&str>) -> Self {
        let mut head = String::with_capacity(512);
        let _ = write!(head, "SIP/2.0 {code} {reason}\r\n");
        for (name, value) in req.headers() {
            let Some(full) = MIRRORED.iter().find(|full| name_is(name, full)) else {
                continue;
            };
            let _ = write!(head, "{full}: {value}");
            if *full == "To" && code > 100 && Scanned::tag_of(value).is_none() {
                if let Some(tag) = to_tag {
                    let _ = write!(head, ";tag={tag}");
                }
            }
            head.push_str("\r\n");
        }
        Self {
            head,
            body: Vec::new(),
        }
    }

    /// Adds a header line. `value` must not contain CR or LF.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        debug_assert!(!value.contains(['\r', '\n']));
        let _ = write!(self.head, "{name}: {value}\r\n");
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(self, content_type: &str, body: &[u8]) -> Self {
        let mut me = self.header("Content-Type", content_type);
        me.body = body.to_vec();
        me
    }

    /// The finished message, with Content-Length.
    pub fn finish(self) -> Vec<u8> {
        let mut out = self.head.into_bytes();
        let _ = write!(
            Wrapper(&mut out),
            "Content-Length: {}\r\n\r\n",
            self.body.len()
        );
        out.extend_from_slice(&self.body);
        out
    }
}

struct Wrapper<'a>(&'a mut Vec<u8>);

impl Write for Wrapper<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::scan;

    const REQ: &[u8] = b"INVITE sip:+1555@h SIP/2.0\r\n\
Via: SIP/2.0/UDP a:1;branch=z9hG4bK1\r\nv: SIP/2.0/UDP b:2;branch=z9hG4bK2\r\n\
f: <sip:c@d>;tag=1\r\nt: <sip:+1555@h>\r\ni: cid\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\r\n";

    #[test]
    fn mirrors_headers_in_order_and_tags_to() {
        let req = scan(REQ).unwrap();
        let out = Reply::to(&req, 404, "Not Found", Some("bh1")).finish();
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            "SIP/2.0 404 Not Found\r\nVia: SIP/2.0/UDP a:1;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b:2;branch=z9hG4bK2\r\n\
From: <sip:c@d>;tag=1\r\nTo: <sip:+1555@h>;tag=bh1\r\nCall-ID: cid\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        );
        let parsed = scan(&out).unwrap();
        assert_eq!(parsed.call_id(), Some("cid"));
    }

    #[test]
    fn trying_gets_no_tag_and_bodies_get_length() {
        let req = scan(REQ).unwrap();
        let text = String::from_utf8(Reply::to(&req, 100, "Trying", Some("x")).finish()).unwrap();
        assert!(text.contains("To: <sip:+1555@h>\r\n"));
        let out = Reply::to(&req, 200, "OK", Some("x"))
            .body("application/sdp", b"v=0\r\n")
            .finish();
        let parsed = scan(&out).unwrap();
        assert_eq!(parsed.body, b"v=0\r\n");
        assert_eq!(parsed.header("Content-Type"), Some("application/sdp"));
    }
}
