//! The user part of a Request-URI: what the router routes on.

use std::borrow::Cow;

use crate::Number;

/// A Request-URI reduced to what routing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target<'a> {
    /// `sip:`/`sips:` with a user part (percent-decoded), or `tel:`.
    User(Cow<'a, str>),
    /// `sip:`/`sips:` without a user part (e.g. `sip:host`).
    NoUser,
    /// A scheme Bulkhead does not serve (answered with 416).
    UnsupportedScheme,
}

/// Reads the user part out of a Request-URI or a To/From URI.
pub fn target(uri: &str) -> Target<'_> {
    let uri = uri.trim();
    let uri = uri.strip_prefix('<').unwrap_or(uri);
    let (scheme, rest) = match uri.split_once(':') {
        Some(split) => split,
        None => return Target::UnsupportedScheme,
    };
    if scheme.eq_ignore_ascii_case("tel") {
        let number = rest.split([';', '>', '?']).next().unwrap_or("");
        return Target::User(percent_decode(number));
    }
    if !(scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips")) {
        return Target::UnsupportedScheme;
    }
    // userinfo ends at the first '@'. RFC 3261's grammar lets a user hold
    // '?' (user-unreserved) but no header value hold a raw '@', so the first
    // '@' is userinfo's end even after a '?' (RFC 4475 intmeth).
    let Some((userinfo, _host)) = rest.split_once('@') else {
        return Target::NoUser;
    };
    let user = userinfo.split(':').next().unwrap_or("");
    // telephone-subscriber parameters (`+1555;npdi`) are not part of the number.
    let user = user.split(';').next().unwrap_or("");
    if user.is_empty() {
        return Target::NoUser;
    }
    Target::User(percent_decode(user))
}

/// The dialed number of a Request-URI, if its user part is one.
pub fn dialed_number(uri: &str) -> Option<Number> {
    match target(uri) {
        Target::User(user) => Number::normalize(&user),
        _ => None,
    }
}

fn percent_decode(s: &str) -> Cow<'_, str> {
    if !s.contains('%') {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_parts_rsip_gets_wrong() {
        assert_eq!(
            target("sip:first.last@example.com"),
            Target::User("first.last".into())
        );
        assert_eq!(
            target("sip:+15550100@127.0.0.1:5060;transport=udp"),
            Target::User("+15550100".into())
        );
        assert_eq!(
            target("sips:alice:secret@[2001:db8::10]:5070"),
            Target::User("alice".into())
        );
        assert_eq!(
            target("<sip:%2B15550100@h>"),
            Target::User("+15550100".into())
        );
        assert_eq!(target("sip:example.com"), Target::NoUser);
        assert_eq!(target("sip:host?h=a%40b"), Target::NoUser);
        assert_eq!(target("sip:a?b@host"), Target::User("a?b".into()));
        assert_eq!(target("http://x"), Target::UnsupportedScheme);
        assert_eq!(target("nocolon"), Target::UnsupportedScheme);
    }

    #[test]
    fn dialed_numbers_from_sip_and_tel() {
        for uri in [
            "sip:+15550100@h",
            "sip:15550100@h",
            "SIP:+1-555-0100@h",
            "tel:+1-555-0100",
            "tel:+15550100;phone-context=x",
            "sip:+15550100;npdi@h;user=phone",
        ] {
            assert_eq!(dialed_number(uri).unwrap().as_str(), "+15550100", "{uri}");
        }
        assert_eq!(dialed_number("sip:first.last@example.com"), None);
        assert_eq!(dialed_number("sip:%@h"), None);
        assert_eq!(dialed_number("sip:%4@h"), None);
    }
}
