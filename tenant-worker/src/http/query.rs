//! Query parameters of `GET /v1/calls`, validated with the failing field named.

use bulkhead_shared::time::parse_rfc3339_utc;
use bulkhead_shared::Number;

use crate::store::CallFilter;

/// Default and largest page size (INTERFACES.md).
pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

/// Outcomes a call can have (INTERFACES.md).
const OUTCOMES: &[&str] = &[
    "completed",
    "escalated",
    "abandoned",
    "rejected",
    "failed",
    "in_progress",
];

/// A parameter that failed validation: (field, message).
pub type Invalid = (&'static str, String);

/// Parses `limit`, `cursor`, `since`, `until`, `number` and `outcome`.
/// Unknown parameters are refused, so a typo never silently widens a query.
pub fn parse_calls(query: &str) -> Result<CallFilter, Invalid> {
    let mut f = CallFilter {
        limit: DEFAULT_LIMIT,
        ..CallFilter::default()
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decode(raw)
            .ok_or_else(|| ("query", format!("{k} is not valid percent-encoded UTF-8")))?;
        match k {
            "limit" => {
                f.limit = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or(("limit", format!("limit must be 1 to {MAX_LIMIT}")))?;
            }
            "cursor" => {
                f.before_seq =
                    Some(v.parse().map_err(|_| {
                        ("cursor", "cursor is not one this API issued".to_string())
                    })?);
            }
            "since" => f.since = Some(time("since", &v)?),
            "until" => f.until = Some(time("until", &v)?),
            "number" => {
                f.number = Some(
                    Number::parse(&v)
                        .map_err(|e| ("number", e.to_string()))?
                        .to_string(),
                )
            }
            "outcome" => {
                if !OUTCOMES.contains(&v.as_str()) {
                    return Err((
                        "outcome",
                        format!("outcome must be one of {}", OUTCOMES.join(", ")),
                    ));
                }
                f.outcome = Some(v);
            }
            _ => return Err(("query", format!("unknown query parameter {k:?}"))),
        }
    }
    Ok(f)
}

fn time(field: &'static str, v: &str) -> Result<String, Invalid> {
    parse_rfc3339_utc(v).ok_or((
        field,
        format!("{field} must be an RFC 3339 UTC time such as 2026-11-28T09:00:00Z"),
    ))
}

/// Percent-decoding of a query value; `+` means space (HTML forms), which
/// [`Number::parse`] then trims, so `number=+1555…` works unescaped too.
fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_validates() {
        let f = parse_calls("").unwrap();
        assert_eq!((f.limit, f.before_seq), (50, None));
        let f = parse_calls(
            "limit=2&cursor=17&since=2026-11-28T00%3A00%3A00Z&number=%2B15550100&outcome=completed",
        )
        .unwrap();
        assert_eq!((f.limit, f.before_seq), (2, Some(17)));
        assert_eq!(f.since.as_deref(), Some("2026-11-28T00:00:00.000Z"));
        assert_eq!(f.number.as_deref(), Some("+15550100"));
        assert_eq!(
            parse_calls("number=+15550100").unwrap().number.as_deref(),
            Some("+15550100")
        );
        for (q, field) in [
            ("cursor=", "cursor"),
            ("until=", "until"),
            ("limit=0", "limit"),
            ("limit=201", "limit"),
            ("cursor=x", "cursor"),
            ("since=yesterday", "since"),
            ("until=2026-11-28T00:00:00+01:00", "until"),
            ("number=abc", "number"),
            ("outcome=great", "outcome"),
            ("tenant=other", "query"),
            ("limit=%zz", "query"),
        ] {
            assert_eq!(parse_calls(q).unwrap_err().0, field, "{q}");
        }
    }
}
