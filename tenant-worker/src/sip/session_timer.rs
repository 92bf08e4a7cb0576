//! Session timers (RFC 4028): a caller that asks for them refreshes the
//! call every interval, so a call whose far end vanished without a BYE
//! ends instead of holding a concurrent-call slot forever.
//!
//! This user agent takes part when the caller supports the extension. The
//! caller refreshes (`refresher=uac`) unless it asks us to, which we do
//! with UPDATE when its `Allow` lists it; otherwise, rather than refresh
//! with re-INVITEs, we leave timers off (a UAS without the extension would
//! do the same, and the caller then runs none).

use std::time::Duration;

use super::msg::{name_is, Scanned};

/// The smallest interval we accept (RFC 4028's default Min-SE).
pub const MIN_SE: u32 = 90;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    Uac,
    Uas,
}

/// The timer a call runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimer {
    /// Seconds.
    pub interval: u32,
    pub refresher: Refresher,
}

/// The request asked for less than [`MIN_SE`]: answer 422 with `Min-SE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooSmall;

impl SessionTimer {
    /// The timer for a call from an INVITE or a refresh in its dialog.
    pub fn negotiate(req: &Scanned<'_>) -> Result<Option<Self>, TooSmall> {
        let Some(value) = req.header("Session-Expires") else {
            return Ok(None);
        };
        let mut parts = value.split(';');
        let Some(interval) = parts.next().and_then(|s| s.trim().parse::<u32>().ok()) else {
            return Ok(None); // unreadable: as if absent (validation is not ours here)
        };
        if interval < MIN_SE {
            return Err(TooSmall);
        }
        if !lists(req, "Supported", "timer") {
            return Ok(None); // a proxy asked, but the caller cannot refresh
        }
        let asked_uas = parts.any(|p| {
            p.split_once('=').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("refresher") && v.trim().eq_ignore_ascii_case("uas")
            })
        });
        let refresher = match asked_uas {
            false => Refresher::Uac,
            true if lists(req, "Allow", "UPDATE") => Refresher::Uas,
            true => return Ok(None),
        };
        Ok(Some(Self {
            interval,
            refresher,
        }))
    }

    /// The `Session-Expires` value of our 2xx.
    pub fn header_value(&self) -> String {
        let who = match self.refresher {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        };
        format!("{};refresher={who}", self.interval)
    }

    /// When we act: as refresher, at half the interval (RFC 4028 §10);
    /// otherwise, with no refresh seen, we end the call at the interval
    /// minus the lesser of 32 s and a third of it.
    pub fn deadline(&self) -> Duration {
        let interval = u64::from(self.interval);
        Duration::from_secs(match self.refresher {
            Refresher::Uas => interval / 2,
            Refresher::Uac => interval - (interval / 3).min(32),
        })
    }
}

/// Does any `name` header list `tag` (case-insensitive)?
fn lists(req: &Scanned<'_>, name: &str, tag: &str) -> bool {
    req.headers()
        .filter(|(n, _)| name_is(n, name))
        .flat_map(|(_, v)| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::msg::scan;

    fn negotiate(headers: &str) -> Result<Option<SessionTimer>, TooSmall> {
        let raw = format!("INVITE sip:+1@h SIP/2.0\r\n{headers}Content-Length: 0\r\n\r\n");
        SessionTimer::negotiate(&scan(raw.as_bytes()).unwrap())
    }

    #[test]
    fn the_caller_refreshes_unless_it_asks_us_and_allows_update() {
        let uac = negotiate("Supported: 100rel, timer\r\nSession-Expires: 1800\r\n").unwrap();
        assert_eq!(
            uac,
            Some(SessionTimer {
                interval: 1800,
                refresher: Refresher::Uac
            })
        );
        assert_eq!(uac.unwrap().header_value(), "1800;refresher=uac");
        let uas = negotiate("k: timer\r\nx: 120;refresher=uas\r\nAllow: INVITE, UPDATE\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(uas.refresher, Refresher::Uas);
        assert_eq!(
            negotiate("k: timer\r\nx: 120;refresher=uas\r\nAllow: INVITE, BYE\r\n"),
            Ok(None)
        );
        assert_eq!(
            negotiate("Session-Expires: 1800\r\n"),
            Ok(None),
            "no Supported: timer"
        );
        assert_eq!(negotiate("Supported: timer\r\n"), Ok(None));
        assert_eq!(
            negotiate("Supported: timer\r\nSession-Expires: 89\r\n"),
            Err(TooSmall)
        );
        assert_eq!(negotiate("Session-Expires: 30\r\n"), Err(TooSmall));
    }

    #[test]
    fn deadlines_follow_rfc4028_section_10() {
        let t = |interval, refresher| SessionTimer {
            interval,
            refresher,
        };
        assert_eq!(
            t(1800, Refresher::Uac).deadline(),
            Duration::from_secs(1768)
        );
        assert_eq!(t(90, Refresher::Uac).deadline(), Duration::from_secs(60));
        assert_eq!(t(90, Refresher::Uas).deadline(), Duration::from_secs(45));
    }
}
