//! RFC 3339 UTC timestamps (`2026-11-28T00:03:18.123Z`), the only time format
//! Bulkhead's APIs use. Hand-written to avoid a date-time dependency for one
//! conversion.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Formats `t` as RFC 3339 UTC with millisecond precision.
pub fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

/// The current time, formatted.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// Parses an RFC 3339 UTC time (`2026-11-28T00:03:18Z`, optionally with a
/// fraction of a second) into the canonical form [`rfc3339`] produces, so
/// stored times compare correctly as strings. Offsets other than `Z` are
/// refused: Bulkhead's APIs speak UTC.
pub fn parse_rfc3339_utc(s: &str) -> Option<String> {
    let b = s.as_bytes();
    if b.len() < 20 || !(b[b.len() - 1] == b'Z' || b[b.len() - 1] == b'z') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if !seps.iter().all(|(i, c)| b[*i] == *c) || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let frac = &s[19..s.len() - 1];
    let millis = match frac.strip_prefix('.') {
        None if frac.is_empty() => 0,
        Some(digits) if !digits.is_empty() && digits.bytes().all(|c| c.is_ascii_digit()) => {
            format!("{digits:0<3}")[..3].parse().ok()?
        }
        _ => return None,
    };
    Some(format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{millis:03}Z"
    ))
}

/// Howard Hinnant's days-from-civil inverse: days since 1970-01-01 → (y, m, d).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_795_824_198_123);
        assert_eq!(rfc3339(t), "2026-11-28T00:03:18.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn parses_utc_into_the_canonical_form() {
        assert_eq!(
            parse_rfc3339_utc("2026-11-28T00:03:18Z").unwrap(),
            "2026-11-28T00:03:18.000Z"
        );
        assert_eq!(
            parse_rfc3339_utc("2026-11-28T00:03:18.5Z").unwrap(),
            "2026-11-28T00:03:18.500Z"
        );
        assert_eq!(
            parse_rfc3339_utc("2026-11-28T00:03:18.123456Z").unwrap(),
            "2026-11-28T00:03:18.123Z"
        );
        for bad in [
            "2026-11-28",
            "2026-11-28T00:03:18+01:00",
            "2026-13-28T00:03:18Z",
            "2026-11-28T00:03:18.Z",
            "2026-11-28 00:03:18Z",
            "２０２６-11-28T00:03:18Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }
}
