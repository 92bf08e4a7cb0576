//! A zero-copy scan of one SIP message: start line, headers, body.
//!
//! Nothing is allocated: header lookups walk the header block each time,
//! which for the handful of lookups a router makes is cheaper than building a
//! map. Folded header lines (a line starting with space or tab continues the
//! previous one) are part of the value returned; [`unfold`] cleans one up.

use std::borrow::Cow;

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    Request {
        method: &'a str,
        uri: &'a str,
        version: &'a str,
    },
    Response {
        code: u16,
        reason: &'a str,
    },
}

/// A scanned message borrowing the bytes it came from.
#[derive(Debug, Clone, Copy)]
pub struct Scanned<'a> {
    pub start: StartLine<'a>,
    head: &'a str,
    pub body: &'a [u8],
}

/// Why bytes are not a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error("message headers are not UTF-8")]
    NotUtf8,
    #[error("message has no start line")]
    Empty,
    #[error("malformed start line")]
    BadStartLine,
    #[error("headers do not end with an empty line")]
    NoHeaderEnd,
    #[error("malformed header line")]
    BadHeader,
    #[error("malformed Content-Length")]
    BadContentLength,
    #[error("Content-Length {declared} exceeds the {have} body bytes present")]
    BodyTruncated { declared: usize, have: usize },
}

/// Compact forms (RFC 3261 §7.3.3 and extensions) → full names.
const COMPACT: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("f", "From"),
    ("t", "To"),
    ("v", "Via"),
    ("m", "Contact"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("e", "Content-Encoding"),
    ("k", "Supported"),
    ("s", "Subject"),
    ("o", "Event"),
    ("r", "Refer-To"),
    ("x", "Session-Expires"),
];

/// True when header `name` (as written in a message) means `full`.
pub fn name_is(name: &str, full: &str) -> bool {
    if name.eq_ignore_ascii_case(full) {
        return true;
    }
    name.len() == 1
        && COMPACT
            .iter()
            .any(|(c, f)| c.eq_ignore_ascii_case(name) && f.eq_ignore_ascii_case(full))
}

/// Scans a whole message as received in one UDP datagram: the body is
/// `Content-Length` octets (extra octets are ignored, RFC 3261 §18.3), or the
/// rest of the datagram when the header is absent.
pub fn scan(bytes: &[u8]) -> Result<Scanned<'_>, ScanError> {
    let (start, head, body) = split(bytes)?;
    let mut msg = Scanned::new_unchecked(start, head, body);
    if let Some(declared) = msg.content_length()? {
        if declared > body.len() {
            return Err(ScanError::BodyTruncated {
                declared,
                have: body.len(),
            });
        }
        msg.body = &body[..declared];
    }
    Ok(msg)
}

/// Scans only the start line and headers, whatever the body: enough to
/// answer a message whose body is malformed with a 400.
pub fn scan_head(bytes: &[u8]) -> Result<Scanned<'_>, ScanError> {
    let (start, head, body) = split(bytes)?;
    Ok(Scanned { start, head, body })
}

/// Like [`scan_head`], but a request line that does not parse (extra
/// spaces, a missing version) still yields the headers, with the line's
/// first word as the method, so the request can be answered 400. A line
/// that looks like a response is never guessed at.
pub fn scan_head_for_reply(bytes: &[u8]) -> Result<Scanned<'_>, ScanError> {
    if let Ok(msg) = scan_head(bytes) {
        return Ok(msg);
    }
    let (first, rest, _) = lines(bytes)?;
    let method = first.split_ascii_whitespace().next().unwrap_or("");
    if first.starts_with("SIP/") || method.is_empty() || !method.bytes().all(is_token_char) {
        return Err(ScanError::BadStartLine);
    }
    let start = StartLine::Request {
        method,
        uri: "",
        version: "",
    };
    Ok(Scanned::new_unchecked(start, rest, &[]))
}

/// Splits start line, header block and the bytes after the empty line.
pub(crate) fn split(bytes: &[u8]) -> Result<(StartLine<'_>, &str, &[u8]), ScanError> {
    let (first, rest, body) = lines(bytes)?;
    Ok((parse_start(first)?, rest, body))
}

/// The start line (without its line end), the header block after it, and
/// the bytes after the empty line.
fn lines(bytes: &[u8]) -> Result<(&str, &str, &[u8]), ScanError> {
    // RFC 3261 §7.5: ignore CRLFs before the start line.
    let skip = bytes
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    let bytes = &bytes[skip..];
    // Without an empty line, a datagram's end ends its headers when its last
    // line is complete (RFC 4475 baddn). A stream is framed before it gets
    // here, so this leniency only ever applies to datagrams.
    let head_end = match find_head_end(bytes) {
        Some(end) => end,
        None if bytes.ends_with(b"\n") && bytes.contains(&b':') => (bytes.len(), bytes.len()),
        None => return Err(ScanError::NoHeaderEnd),
    };
    let head = std::str::from_utf8(&bytes[..head_end.0]).map_err(|_| ScanError::NotUtf8)?;
    let body = &bytes[head_end.1..];
    let (first, rest) = head.split_once('\n').unwrap_or((head, ""));
    Ok((first.trim_end_matches('\r'), rest, body))
}

/// Returns (end of headers, start of body): the first empty line, written
/// as CRLF CRLF or, leniently, LF LF.
pub(crate) fn find_head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(off) = bytes[i..].iter().position(|b| *b == b'\n') {
        let nl = i + off;
        let next = nl + 1;
        if bytes[next..].starts_with(b"\r\n") {
            return Some((nl + 1, next + 2));
        }
        if bytes[next..].starts_with(b"\n") {
            return Some((nl + 1, next + 1));
        }
        i = next;
    }
    None
}

fn parse_start(line: &str) -> Result<StartLine<'_>, ScanError> {
    if line.is_empty() {
        return Err(ScanError::Empty);
    }
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code.parse().map_err(|_| ScanError::BadStartLine)?;
        if !(100..=699).contains(&code) || code_has_wrong_width(rest) {
            return Err(ScanError::BadStartLine);
        }
        return Ok(StartLine::Response { code, reason });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ScanError::BadStartLine);
    };
    if method.is_empty() || !method.bytes().all(is_token_char) || uri.is_empty() {
        return Err(ScanError::BadStartLine);
    }
    if !version.starts_with("SIP/") {
        return Err(ScanError::BadStartLine);
    }
    Ok(StartLine::Request {
        method,
        uri,
        version,
    })
}

fn code_has_wrong_width(rest: &str) -> bool {
    rest.split(' ').next().map(str::len) != Some(3)
}

/// A CSeq value as (number, method).
pub fn parse_cseq(v: &str) -> Option<(u32, &str)> {
    let mut it = v.split_ascii_whitespace();
    let (Some(n), Some(m), None) = (it.next(), it.next(), it.next()) else {
        return None;
    };
    Some((n.parse().ok()?, m))
}

/// RFC 3261 `token` characters.
pub fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

impl<'a> Scanned<'a> {
    pub(crate) fn new_unchecked(start: StartLine<'a>, head: &'a str, body: &'a [u8]) -> Self {
        Self { start, head, body }
    }

    /// Every header as (name, value), values trimmed, folded lines included.
    pub fn headers(&self) -> Headers<'a> {
        Headers { rest: self.head }
    }

    /// The first header named `full` (or its compact form). A line whose
    /// first letter is neither `full`'s nor its compact form's is passed
    /// over unsplit: the user agent looks up a dozen headers per message,
    /// and splitting and trimming every line for each lookup was 6% of its
    /// thread in a call burst (BENCHMARKS.md, seventh session).
    pub fn header(&self, full: &str) -> Option<&'a str> {
        let Some(first) = full.as_bytes().first().map(u8::to_ascii_lowercase) else {
            return self.headers().find(|(n, _)| n.is_empty()).map(|(_, v)| v);
        };
        let compact = COMPACT
            .iter()
            .find(|(_, f)| f.eq_ignore_ascii_case(full))
            .map(|(c, _)| c.as_bytes()[0]);
        let mut lines = self.headers();
        while let Some(line) = lines.next_line() {
            let Some(b) = line.as_bytes().first().map(u8::to_ascii_lowercase) else {
                continue;
            };
            if b != first && Some(b) != compact {
                continue;
            }
            match Headers::split_line(line) {
                Some((name, value)) if name_is(name, full) => return Some(value),
                _ => {}
            }
        }
        None
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<&'a str> {
        match self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    pub fn call_id(&self) -> Option<&'a str> {
        self.header("Call-ID").filter(|v| !v.is_empty())
    }

    /// CSeq as (number, method).
    pub fn cseq(&self) -> Option<(u32, &'a str)> {
        parse_cseq(self.header("CSeq")?)
    }

    /// The declared Content-Length, if present.
    pub fn content_length(&self) -> Result<Option<usize>, ScanError> {
        match self.header("Content-Length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| ScanError::BadContentLength),
        }
    }

    /// The tag parameter of a From or To value.
    pub fn tag_of(value: &str) -> Option<&str> {
        // Parameters follow the URI: after a closing '>' when there is one.
        let params = match value.rfind('>') {
            Some(i) => &value[i + 1..],
            None => value,
        };
        params.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("tag").then(|| v.trim())
        })
    }
}

/// Iterator over header lines; see [`Scanned::headers`].
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    rest: &'a str,
}

impl<'a> Headers<'a> {
    /// The next header line as written, folded lines included: up to a
    /// newline not followed by SP/HT.
    fn next_line(&mut self) -> Option<&'a str> {
        if self.rest.is_empty() {
            return None;
        }
        let bytes = self.rest.as_bytes();
        let mut end = self.rest.len();
        let mut next = self.rest.len();
        let mut i = 0;
        while let Some(off) = self.rest[i..].find('\n') {
            let nl = i + off;
            if matches!(bytes.get(nl + 1), Some(b' ') | Some(b'\t')) {
                i = nl + 1;
                continue;
            }
            end = nl;
            next = nl + 1;
            break;
        }
        let line = &self.rest[..end];
        self.rest = &self.rest[next..];
        Some(line)
    }

    /// A line's (name, value), trimmed; `None` for a blank line, and for a
    /// line without a colon: malformed, skipped rather than ending the
    /// headers, so one bad extension header does not hide Call-ID.
    fn split_line(line: &'a str) -> Option<(&'a str, &'a str)> {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            return None;
        }
        let (name, value) = line.split_once(':')?;
        Some((name.trim_end(), value.trim()))
    }
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(header) = Self::split_line(self.next_line()?) {
                return Some(header);
            }
        }
    }
}

/// A header value with folded lines joined by single spaces.
pub fn unfold(value: &str) -> Cow<'_, str> {
    if !value.contains('\n') {
        return Cow::Borrowed(value);
    }
    let joined: Vec<&str> = value
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    Cow::Owned(joined.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"\r\nINVITE sip:+15550100@127.0.0.1 SIP/2.0\r\n\
v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1\r\n\
Subject: I know you're there,\r\n  pick up the phone\r\n\
i: abc@host\r\n\
CSeq: 1 INVITE\r\n\
l: 4\r\n\r\nbodyEXTRA";

    #[test]
    fn scans_start_line_compact_headers_and_body() {
        let m = scan(INVITE).unwrap();
        assert_eq!(
            m.start,
            StartLine::Request {
                method: "INVITE",
                uri: "sip:+15550100@127.0.0.1",
                version: "SIP/2.0"
            }
        );
        assert_eq!(m.call_id(), Some("abc@host"));
        assert_eq!(
            m.header("Via"),
            Some("SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1")
        );
        assert_eq!(m.cseq(), Some((1, "INVITE")));
        assert_eq!(m.body, b"body", "octets past Content-Length are ignored");
        assert_eq!(
            unfold(m.header("Subject").unwrap()),
            "I know you're there, pick up the phone"
        );
    }

    #[test]
    fn responses_and_tags() {
        let m = scan(b"SIP/2.0 180 Ringing\r\nTo: <sip:a@b>;tag=xyz\r\n\r\n").unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 180,
                reason: "Ringing"
            }
        );
        assert_eq!(Scanned::tag_of(m.header("To").unwrap()), Some("xyz"));
        assert_eq!(Scanned::tag_of("\"a;tag=no\" <sip:a@b>"), None);
    }

    #[test]
    fn malformed_messages_are_errors() {
        assert_eq!(scan(b"").unwrap_err(), ScanError::NoHeaderEnd);
        assert_eq!(
            scan(b"INVITE sip:x SIP/2.0\r\nVia: x").unwrap_err(),
            ScanError::NoHeaderEnd,
            "a cut-off last line"
        );
        // A datagram whose last header line is whole but has no empty line after it.
        let m = scan(b"OPTIONS sip:x SIP/2.0\r\nVia: x\r\nl: 0\r\n").unwrap();
        assert_eq!((m.header("Via"), m.body.len()), (Some("x"), 0));
        assert_eq!(
            scan(b"INVITE  sip:x SIP/2.0\r\n\r\n").unwrap_err(),
            ScanError::BadStartLine
        );
        assert_eq!(
            scan(b"SIP/2.0 20 OK\r\n\r\n").unwrap_err(),
            ScanError::BadStartLine
        );
        assert_eq!(scan(b"\xff\xfe\r\n\r\n").unwrap_err(), ScanError::NotUtf8);
        assert_eq!(
            scan(b"INVITE sip:x SIP/2.0\r\nContent-Length: 9\r\n\r\nab").unwrap_err(),
            ScanError::BodyTruncated {
                declared: 9,
                have: 2
            }
        );
        assert_eq!(
            scan(b"INVITE sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n").unwrap_err(),
            ScanError::BadContentLength
        );
    }

    /// Every message of the SIP corpus (RFC 4475, carriers' INVITEs, sipp's
    /// scenarios), every header it has and some it lacks, in both forms:
    /// the lookup finds what the first match of a full walk finds.
    #[test]
    fn a_lookup_finds_what_a_walk_over_every_header_finds() {
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../supervisor/tests/data/sip");
        let mut messages = vec![INVITE.to_vec()];
        for dir in ["rfc4475", "real"] {
            for entry in std::fs::read_dir(corpus.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "dat" || e == "sip") {
                    messages.push(std::fs::read(path).unwrap());
                }
            }
        }
        assert!(messages.len() > 40, "the corpus is there");
        let mut lookups = 0;
        for bytes in &messages {
            let Ok(m) = scan_head(bytes) else { continue };
            let mut names: Vec<String> = m.headers().map(|(n, _)| n.to_owned()).collect();
            names.extend(
                COMPACT
                    .iter()
                    .flat_map(|(c, f)| [c.to_string(), f.to_string()]),
            );
            names.extend(["", " ", "X-None", "CSEQ", "call-id", "Via ", ":"].map(String::from));
            for name in &names {
                let walk = m.headers().find(|(n, _)| name_is(n, name)).map(|(_, v)| v);
                assert_eq!(
                    m.header(name),
                    walk,
                    "{name:?} in {:?}",
                    String::from_utf8_lossy(bytes)
                );
                lookups += 1;
            }
        }
        assert!(lookups > 1000, "{lookups} lookups");
    }

    #[test]
    fn never_panics_on_any_prefix_or_byte_flip() {
        for n in 0..INVITE.len() {
            let _ = scan(&INVITE[..n]);
            let mut flipped = INVITE.to_vec();
            flipped[n] ^= 0xa5;
            if let Ok(m) = scan(&flipped) {
                let _ = (m.call_id(), m.cseq(), m.headers().count());
            }
        }
    }
}
