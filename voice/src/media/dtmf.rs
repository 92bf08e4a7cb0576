//! RFC 4733 telephone events (DTMF digits sent as RTP payload).
//!
//! A digit arrives as several packets with the same RTP timestamp, the last
//! ones (usually three) with the End bit. [`DtmfReader`] reports each digit
//! once, when its first End packet arrives.

/// One event payload: event code, End bit, volume, duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub code: u8,
    pub end: bool,
    pub duration: u16,
}

impl Event {
    pub fn parse(payload: &[u8]) -> Option<Self> {
        let b: &[u8; 4] = payload.get(..4)?.try_into().ok()?;
        Some(Self {
            code: b[0],
            end: b[1] & 0x80 != 0,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }

    /// The digit an event code stands for: 0–9, `*`, `#`, A–D.
    pub fn digit(self) -> Option<char> {
        Some(match self.code {
            c @ 0..=9 => char::from(b'0' + c),
            10 => '*',
            11 => '#',
            c @ 12..=15 => char::from(b'A' + c - 12),
            _ => return None,
        })
    }
}

/// Turns the packet stream into digits, each once.
#[derive(Debug, Default)]
pub struct DtmfReader {
    last_reported: Option<u32>,
}

impl DtmfReader {
    /// Feeds one telephone-event packet; returns a digit when one ends.
    pub fn push(&mut self, timestamp: u32, payload: &[u8]) -> Option<char> {
        let event = Event::parse(payload)?;
        if !event.end || self.last_reported == Some(timestamp) {
            return None;
        }
        self.last_reported = Some(timestamp);
        event.digit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digit_is_reported_once_at_its_end() {
        let mut r = DtmfReader::default();
        let start = [5, 10, 0, 160];
        let end = [5, 0x80 | 10, 3, 0x20];
        assert_eq!(r.push(1000, &start), None);
        assert_eq!(r.push(1000, &start), None);
        assert_eq!(r.push(1000, &end), Some('5'));
        // The End packet's two retransmissions.
        assert_eq!(r.push(1000, &end), None);
        assert_eq!(r.push(1000, &end), None);
        // The next press has a new timestamp.
        assert_eq!(r.push(2600, &[11, 0x80, 3, 0x20]), Some('#'));
        assert_eq!(r.push(4000, &[14, 0x80, 3, 0x20]), Some('C'));
    }

    #[test]
    fn short_or_unknown_events_are_ignored() {
        let mut r = DtmfReader::default();
        assert_eq!(r.push(1, &[5, 0x80]), None);
        assert_eq!(r.push(2, &[200, 0x80, 0, 1]), None);
    }
}
