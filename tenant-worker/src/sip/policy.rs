//! What this user agent supports, and the answer to a new INVITE asking for
//! more (RFC 3261 §8.2.2): extensions it requires (420), a body type other
//! than SDP (415), or a caller that accepts no SDP back (406).

use super::msg::Scanned;

/// A refusal with the header that tells the caller what we do support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: u16,
    pub reason: &'static str,
    pub header: (&'static str, String),
}

/// The one body type this user agent understands.
pub const SDP: &str = "application/sdp";

/// The option tags this user agent supports, for `Supported`: session
/// timers (RFC 4028).
pub const SUPPORTED: &str = "timer";

/// Any request but ACK and CANCEL that requires an extension we lack gets
/// 420 listing the ones we lack (RFC 3261 §8.2.2.3).
pub fn check_require(req: &Scanned<'_>) -> Result<(), Refusal> {
    if matches!(req.method(), Some("ACK" | "CANCEL")) {
        return Ok(());
    }
    let required: Vec<&str> = req
        .headers()
        .filter(|(n, _)| bulkhead_shared::sip::scan::name_is(n, "Require"))
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty() && !SUPPORTED.split(", ").any(|s| s.eq_ignore_ascii_case(t)))
        .collect();
    if !required.is_empty() {
        return Err(Refusal {
            code: 420,
            reason: "Bad Extension",
            header: ("Unsupported", required.join(", ")),
        });
    }
    Ok(())
}

/// Checks a new INVITE against the media this user agent handles.
pub fn check_invite(req: &Scanned<'_>) -> Result<(), Refusal> {
    check_body(req)?;
    check_accept(req)
}

/// A body, if any, must be SDP (INVITE, re-INVITE, UPDATE).
pub fn check_body(req: &Scanned<'_>) -> Result<(), Refusal> {
    if !req.body.is_empty() {
        let media = req
            .header("Content-Type")
            .map(media_type)
            .unwrap_or_default();
        if !media.eq_ignore_ascii_case(SDP) {
            return Err(Refusal {
                code: 415,
                reason: "Unsupported Media Type",
                header: ("Accept", SDP.into()),
            });
        }
    }
    Ok(())
}

fn check_accept(req: &Scanned<'_>) -> Result<(), Refusal> {
    if let Some(accept) = req.header("Accept") {
        let takes_sdp = accept.split(',').map(media_type).any(|m| {
            m.eq_ignore_ascii_case(SDP) || m.eq_ignore_ascii_case("application/*") || m == "*/*"
        });
        if !takes_sdp && !accept.trim().is_empty() {
            return Err(Refusal {
                code: 406,
                reason: "Not Acceptable",
                header: ("Accept", SDP.into()),
            });
        }
    }
    Ok(())
}

/// `type/subtype` without parameters or surrounding space.
fn media_type(value: &str) -> &str {
    value.split(';').next().unwrap_or("").trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::scan;

    fn invite(extra: &str, body: &str) -> Vec<u8> {
        format!(
            "INVITE sip:+1@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    fn code(raw: &[u8]) -> Option<u16> {
        let req = scan(raw).unwrap();
        check_require(&req)
            .and_then(|()| check_invite(&req))
            .err()
            .map(|r| r.code)
    }

    #[test]
    fn refuses_what_it_does_not_support_and_says_what_it_does() {
        assert_eq!(code(&invite("", "")), None);
        assert_eq!(
            code(&invite("Content-Type: application/SDP; x=1\r\n", "v=0\r\n")),
            None
        );
        assert_eq!(
            code(&invite("Accept: application/sdp, text/html\r\n", "")),
            None
        );
        let r = check_require(
            &scan(&invite("Require: timer, 100rel\r\nRequire: foo\r\n", "")).unwrap(),
        )
        .unwrap_err();
        assert_eq!((r.code, r.header.1.as_str()), (420, "100rel, foo"));
        assert_eq!(
            code(&invite("Require: Timer\r\n", "")),
            None,
            "session timers are supported"
        );
        assert_eq!(
            code(&invite("Content-Type: application/unknownformat\r\n", "x")),
            Some(415)
        );
        assert_eq!(
            code(&invite("", "v=0\r\n")),
            Some(415),
            "a body without a type"
        );
        assert_eq!(
            code(&invite("Accept: text/nobodyKnowsThis\r\n", "")),
            Some(406)
        );
    }
}
