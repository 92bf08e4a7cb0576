//! Our SIP message facade. The worker sees SIP only through this module, so
//! the parser underneath can change on measured evidence (docs/sip.md)
//! without touching the user agent.

pub use bulkhead_shared::sip::reply::Reply;
pub use bulkhead_shared::sip::scan::{name_is, scan, Scanned, StartLine};
pub use bulkhead_shared::sip::uri::{dialed_number, target, Target};
pub use bulkhead_shared::sip::validate;
pub use bulkhead_shared::sip::via::{response_target, top_via};

/// The URI inside a From/To/Contact value: between `<` `>`, or up to the
/// first `;` for the bare form.
pub fn uri_of(value: &str) -> &str {
    if let (Some(open), Some(close)) = (value.find('<'), value.rfind('>')) {
        if open < close {
            return &value[open + 1..close];
        }
    }
    value.split(';').next().unwrap_or(value).trim()
}

/// The caller as the call record shows it: the From URI's user part.
pub fn caller(msg: &Scanned<'_>) -> String {
    let from = msg.header("From").unwrap_or("");
    match target(uri_of(from)) {
        Target::User(user) => user.into_owned(),
        _ => uri_of(from).to_owned(),
    }
}

pub use bulkhead_shared::sip::ALLOW;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_is_the_from_user() {
        let raw = b"INVITE sip:+1@h SIP/2.0\r\nFrom: \"Zed Q\" <sip:first.last@example.com>;tag=9\r\n\r\n";
        assert_eq!(caller(&scan(raw).unwrap()), "first.last");
        assert_eq!(uri_of("sip:a@b;tag=1"), "sip:a@b");
    }
}
