//! Checks a user agent server makes on a request before acting on it
//! (RFC 3261 §8.2, and what RFC 4475 asks of an endpoint): each failure
//! names the response and a reason phrase that says what was wrong.

use super::scan::{name_is, Scanned, StartLine};
use super::via;

/// Why a request is refused before any processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid {
    pub code: u16,
    pub reason: &'static str,
}

const fn bad(reason: &'static str) -> Invalid {
    Invalid { code: 400, reason }
}

/// Headers that may appear once only (RFC 3261 §7.3.1, Table 2/3). The
/// checks below find their values by these positions.
const SINGLE: [(&str, &str); 7] = [
    ("Call-ID", "Duplicate Call-ID"),
    ("CSeq", "Duplicate CSeq"),
    ("From", "Duplicate From"),
    ("To", "Duplicate To"),
    ("Max-Forwards", "Duplicate Max-Forwards"),
    ("Content-Length", "Conflicting Content-Length"),
    ("Content-Type", "Duplicate Content-Type"),
];

/// Largest CSeq number a request may carry (RFC 3261 §8.1.1.5: below 2³¹).
const MAX_CSEQ: u64 = (1 << 31) - 1;

/// The checks every request passes, whatever its method.
pub fn request(msg: &Scanned<'_>) -> Result<(), Invalid> {
    let StartLine::Request { method, .. } = msg.start else {
        return Ok(());
    };
    // One pass over the headers (a pass per check was a third of this
    // function's cost in a capacity profile): each single-instance
    // header's count and first value, and the first Via.
    let mut count = [0usize; SINGLE.len()];
    let mut first: [Option<&str>; SINGLE.len()] = [None; SINGLE.len()];
    let mut top = None;
    for (name, value) in msg.headers() {
        if let Some(i) = SINGLE.iter().position(|(full, _)| name_is(name, full)) {
            count[i] += 1;
            first[i].get_or_insert(value);
        } else if top.is_none() && name_is(name, "Via") {
            top = Some(value);
        }
    }
    if let Some(i) = count.iter().position(|n| *n > 1) {
        return Err(bad(SINGLE[i].1));
    }
    let [_, cseq, from, to, max_forwards, _, _] = first;
    let cseq = cseq.ok_or(bad("Missing CSeq"))?;
    let mut parts = cseq.split_ascii_whitespace();
    let (Some(number), Some(cseq_method), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("Malformed CSeq"));
    };
    match number.parse::<u64>() {
        Ok(n) if n <= MAX_CSEQ => {}
        _ => return Err(bad("CSeq Out Of Range")),
    }
    if cseq_method != method {
        return Err(bad("CSeq Method Does Not Match The Request"));
    }
    if let Some(mf) = max_forwards {
        if mf.trim().parse::<u8>().is_err() {
            return Err(bad("Malformed Max-Forwards"));
        }
    }
    for (value, missing, malformed) in [
        (from, "Missing From", "Malformed From"),
        (to, "Missing To", "Malformed To"),
    ] {
        if !name_addr_is_balanced(value.ok_or(bad(missing))?) {
            return Err(bad(malformed));
        }
    }
    let top = top.ok_or(bad("Missing Via"))?;
    if via::top_via_of(top).is_none() || has_empty_params(top.split(',').next().unwrap_or(top)) {
        return Err(bad("Malformed Via"));
    }
    Ok(())
}

/// Quotes close (a backslash escapes the next character inside them), a
/// `<` is closed by a `>` outside quotes, and a display name that is not
/// quoted is made of tokens (RFC 3261 §25.1; RFC 4475 baddn).
fn name_addr_is_balanced(value: &str) -> bool {
    if let Some(open) = value.find('<') {
        let name = &value[..open];
        if !name.contains('"')
            && !name
                .bytes()
                .all(|b| super::scan::is_token_char(b) || b.is_ascii_whitespace())
        {
            return false;
        }
    }
    let (mut quoted, mut escaped, mut angle) = (false, false, 0i32);
    for c in value.chars() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => quoted = false,
            (true, false, _) => {}
            (false, _, '"') => quoted = true,
            (false, _, '<') => angle += 1,
            (false, _, '>') => angle -= 1,
            _ => {}
        }
        if !(0..=1).contains(&angle) {
            return false;
        }
    }
    !quoted && angle == 0
}

/// `;;` or a trailing `;`: a parameter with no name.
fn has_empty_params(via_element: &str) -> bool {
    via_element
        .split_once(';')
        .is_some_and(|(_, params)| params.split(';').any(|p| p.trim().is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::scan;

    fn req(extra: &str, cseq: &str) -> String {
        format!(
            "INVITE sip:+15550100@h SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n\
From: \"A \\\"B\\\"\" <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: c\r\nCSeq: {cseq}\r\n{extra}Content-Length: 0\r\n\r\n"
        )
    }

    fn check(text: &str) -> Result<(), Invalid> {
        request(&scan(text.as_bytes()).unwrap())
    }

    #[test]
    fn a_well_formed_request_passes() {
        assert_eq!(check(&req("", "1 INVITE")), Ok(()));
        assert_eq!(
            check(&req("Max-Forwards: 70\r\n", "2147483647 INVITE")),
            Ok(())
        );
    }

    #[test]
    fn each_check_names_what_is_wrong() {
        let cases = [
            (req("Call-ID: d\r\n", "1 INVITE"), "Duplicate Call-ID"),
            (req("i: d\r\n", "1 INVITE"), "Duplicate Call-ID"),
            (req("l: 0\r\n", "1 INVITE"), "Conflicting Content-Length"),
            (
                req("", "1 OPTIONS"),
                "CSeq Method Does Not Match The Request",
            ),
            (req("", "4294967301 INVITE"), "CSeq Out Of Range"),
            (req("", "1"), "Malformed CSeq"),
            (
                req("Max-Forwards: 300\r\n", "1 INVITE"),
                "Malformed Max-Forwards",
            ),
            (
                req("", "1 INVITE").replace("From: \"A \\\"B\\\"\"", "From: \"A"),
                "Malformed From",
            ),
            (
                req("", "1 INVITE").replace("To: <sip:b@h>", "To: <sip:b@h"),
                "Malformed To",
            ),
            (
                req("", "1 INVITE").replace("To: <sip:b@h>", "To: Watson, T <sip:b@h>"),
                "Malformed To",
            ),
            (
                req("", "1 INVITE").replace("branch=z9hG4bK1", "branch=z9hG4bK1;;"),
                "Malformed Via",
            ),
            (
                req("", "1 INVITE").replace("To: <sip:b@h>\r\n", ""),
                "Missing To",
            ),
            (
                req("", "1 INVITE").replace("Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n", ""),
                "Missing Via",
            ),
            // A second Via is allowed; only the first is checked.
            (
                req("Via: SIP/2.0/UDP h;;\r\nCSeq: 1 INVITE\r\n", "1 INVITE"),
                "Duplicate CSeq",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(check(&text), Err(bad(reason)), "{text}");
        }
    }
}
