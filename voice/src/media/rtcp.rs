//! RTCP (RFC 3550 §6): the agent's sender reports, with a reception report
//! on the caller's stream, and the reports the caller's side sends back.
//! Together they give a call's media quality both ways: packets lost and
//! interarrival jitter as each end saw them, and the round-trip time.
//!
//! Parsing is bounded like RTP's: every length is checked against the
//! datagram, and a malformed packet is an error, never a panic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::RATE;

const SR: u8 = 200;
const RR: u8 = 201;
const SDES: u8 = 202;
const BLOCK: usize = 24;

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    /// Fraction lost since the previous report, in 1/256.
    pub fraction_lost: u8,
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// The middle 32 bits of the NTP time of the last SR received, and the
    /// delay since, in 1/65536 s.
    pub last_sr: u32,
    pub delay_since_last_sr: u32,
}

/// Reception statistics for the caller's stream (RFC 3550 A.1, A.3, A.8).
#[derive(Debug, Default, Clone)]
pub struct Reception {
    ssrc: u32,
    started: bool,
    base_seq: u16,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Jitter, scaled by 16 as A.8 keeps it.
    jitter_q4: u32,
    last_transit: Option<i64>,
    /// The middle 32 bits of the last SR's NTP time, and when it came.
    last_sr: Option<(u32, std::time::Instant)>,
}

impl Reception {
    /// A packet from the caller: its SSRC, sequence number, RTP timestamp,
    /// and arrival time in RTP units (8 kHz ticks of any steady clock).
    pub fn packet(&mut self, ssrc: u32, seq: u16, timestamp: u32, arrival: u32) {
        if !self.started || ssrc != self.ssrc {
            *self = Self {
                ssrc,
                started: true,
                base_seq: seq,
                max_seq: seq,
                ..Self::default()
            };
        }
        self.received += 1;
        let delta = seq.wrapping_sub(self.max_seq);
        if delta != 0 && delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles += 1 << 16;
            }
            self.max_seq = seq;
        }
        let transit = i64::from(arrival) - i64::from(timestamp);
        if let Some(last) = self.last_transit {
            let d = (transit - last).unsigned_abs() as u32;
            // J += (|D| - J) / 16, kept scaled by 16.
            self.jitter_q4 = self
                .jitter_q4
                .wrapping_add(d)
                .wrapping_sub((self.jitter_q4 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    /// The caller's sender report arrived (for the round trip time).
    pub fn sender_report(&mut self, ntp_middle: u32) {
        self.last_sr = Some((ntp_middle, std::time::Instant::now()));
    }

    fn extended_max(&self) -> u32 {
        self.cycles + u32::from(self.max_seq)
    }

    /// Packets expected and lost so far.
    pub fn lost(&self) -> i64 {
        if !self.started {
            return 0;
        }
        let expected = i64::from(self.extended_max()) - i64::from(self.base_seq) + 1;
        expected - i64::from(self.received)
    }

    pub fn jitter_ms(&self) -> f64 {
        f64::from(self.jitter_q4 >> 4) * 1000.0 / f64::from(RATE)
    }

    /// This interval's report block, or none before any packet.
    fn block(&mut self) -> Option<ReportBlock> {
        if !self.started {
            return None;
        }
        let expected = self.extended_max() - u32::from(self.base_seq) + 1;
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        let (last_sr, delay_since_last_sr) = match self.last_sr {
            Some((ntp, at)) => (ntp, to_q16(at.elapsed())),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc: self.ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-0x80_0000, 0x7F_FFFF) as i32,
            highest_seq: self.extended_max(),
            jitter: self.jitter_q4 >> 4,
            last_sr,
            delay_since_last_sr,
        })
    }
}

fn to_q16(d: Duration) -> u32 {
    (d.as_secs_f64() * 65536.0) as u32
}

/// Now as NTP time (RFC 3550 §4): seconds since 1900 and a 32-bit fraction.
fn ntp_now() -> (u32, u32) {
    let since_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since_unix.as_secs() + 2_208_988_800;
    let frac = (u64::from(since_unix.subsec_nanos()) << 32) / 1_000_000_000;
    (secs as u32, frac as u32)
}

/// The middle 32 bits of an NTP time, as LSR carries it.
fn middle(ntp: (u32, u32)) -> u32 {
    (ntp.0 << 16) | (ntp.1 >> 16)
}

/// A compound RTCP packet: our sender report (with a block on the caller's
/// stream once it has sent anything) and an SDES with our CNAME.
pub fn sender_report(
    ssrc: u32,
    rtp_timestamp: u32,
    packets: u32,
    octets: u32,
    reception: &mut Reception,
    cname: &str,
) -> Vec<u8> {
    let block = reception.block();
    let count = u8::from(block.is_some());
    let mut out = Vec::with_capacity(28 + BLOCK + 8 + cname.len());
    let words = 6 + usize::from(count) * 6;
    out.extend_from_slice(&[0x80 | count, SR]);
    out.extend_from_slice(&(words as u16).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    let (secs, frac) = ntp_now();
    out.extend_from_slice(&secs.to_be_bytes());
    out.extend_from_slice(&frac.to_be_bytes());
    out.extend_from_slice(&rtp_timestamp.to_be_bytes());
    out.extend_from_slice(&packets.to_be_bytes());
    out.extend_from_slice(&octets.to_be_bytes());
    if let Some(b) = block {
        out.extend_from_slice(&b.ssrc.to_be_bytes());
        let cumulative = (b.cumulative_lost as u32) & 0x00FF_FFFF;
        out.extend_from_slice(&((u32::from(b.fraction_lost) << 24) | cumulative).to_be_bytes());
        for v in [b.highest_seq, b.jitter, b.last_sr, b.delay_since_last_sr] {
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    // SDES: one chunk, CNAME, END, padded to a 32-bit boundary.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let chunk = 4 + 2 + cname.len() + 1;
    let padded = chunk.div_ceil(4) * 4;
    out.extend_from_slice(&[0x81, SDES]);
    out.extend_from_slice(&((padded / 4) as u16).to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
    out.extend_from_slice(&[1, cname.len() as u8]);
    out.extend_from_slice(cname);
    out.resize(out.len() + padded - chunk + 1, 0);
    out
}

/// What a compound RTCP packet from the caller's side tells us.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Received {
    /// Its sender report's NTP time (middle 32 bits), if it sent one.
    pub sender_ntp: Option<u32>,
    /// Report blocks on our stream (`ssrc`).
    pub about_us: Vec<ReportBlock>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed RTCP: {0}")]
pub struct Malformed(&'static str);

/// Parses a compound packet, keeping what concerns `our_ssrc`.
pub fn parse(data: &[u8], our_ssrc: u32) -> Result<Received, Malformed> {
    let mut out = Received::default();
    let mut rest = data;
    if rest.is_empty() {
        return Err(Malformed("empty"));
    }
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(Malformed("a header shorter than 4 bytes"));
        }
        if rest[0] >> 6 != 2 {
            return Err(Malformed("not version 2"));
        }
        let count = usize::from(rest[0] & 0x1F);
        let kind = rest[1];
        let len = (usize::from(u16::from_be_bytes([rest[2], rest[3]])) + 1) * 4;
        if len > rest.len() {
            return Err(Malformed("a length past the datagram"));
        }
        let body = &rest[4..len];
        let blocks = match kind {
            SR if body.len() >= 24 => {
                out.sender_ntp = Some(middle((word(body, 4), word(body, 8))));
                &body[24..]
            }
            RR if body.len() >= 4 => &body[4..],
            SR | RR => return Err(Malformed("a report shorter than its header")),
            _ => {
                // SDES, BYE, APP: nothing we use.
                rest = &rest[len..];
                continue;
            }
        };
        if blocks.len() < count * BLOCK {
            return Err(Malformed("fewer report blocks than counted"));
        }
        for b in blocks.chunks_exact(BLOCK).take(count) {
            let lost = word(b, 4);
            // 24-bit two's complement.
            let cumulative = ((lost << 8) as i32) >> 8;
            let block = ReportBlock {
                ssrc: word(b, 0),
                fraction_lost: (lost >> 24) as u8,
                cumulative_lost: cumulative,
                highest_seq: word(b, 8),
                jitter: word(b, 12),
                last_sr: word(b, 16),
                delay_since_last_sr: word(b, 20),
            };
            if block.ssrc == our_ssrc {
                out.about_us.push(block);
            }
        }
        rest = &rest[len..];
    }
    Ok(out)
}

fn word(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The round-trip time a block implies (RFC 3550 §6.4.1), if it echoes an SR of ours.
pub fn round_trip(block: &ReportBlock) -> Option<Duration> {
    if block.last_sr == 0 {
        return None;
    }
    let now = middle(ntp_now());
    let rtt = now
        .wrapping_sub(block.last_sr)
        .wrapping_sub(block.delay_since_last_sr);
    (rtt < 0x8000_0000).then(|| Duration::from_secs_f64(f64::from(rtt) / 65536.0))
}

/// A call's media quality, as the call record shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MediaStats {
    pub packets_sent: u32,
    pub packets_received: u32,
    /// The caller's stream as we received it.
    pub inbound_lost: i64,
    pub inbound_jitter_ms: f64,
    /// Our stream as the caller's side reported it (none without RTCP from it).
    pub outbound_lost: Option<i32>,
    pub outbound_jitter_ms: Option<f64>,
    pub round_trip_ms: Option<f64>,
}

impl MediaStats {
    /// Folds in a report block on our stream.
    pub fn reported(&mut self, block: &ReportBlock) {
        self.outbound_lost = Some(block.cumulative_lost);
        self.outbound_jitter_ms = Some(f64::from(block.jitter) * 1000.0 / f64::from(RATE));
        if let Some(rtt) = round_trip(block) {
            self.round_trip_ms = Some(rtt.as_secs_f64() * 1000.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losses_reorders_and_wraps_are_counted_as_rfc_3550_says() {
        let mut r = Reception::default();
        // 0..10 with 3 and 7 missing, 9 before 8, across the 16-bit wrap.
        let seqs = [65530u16, 65531, 65532, 65534, 65535, 0, 2, 1];
        for (i, s) in seqs.into_iter().enumerate() {
            r.packet(7, s, i as u32 * 160, i as u32 * 160);
        }
        assert_eq!(r.extended_max(), (1 << 16) + 2);
        assert_eq!(r.lost(), 1, "65533 never came");
        let b = r.block().unwrap();
        assert_eq!((b.ssrc, b.cumulative_lost), (7, 1));
        assert_eq!(b.fraction_lost, (256 / 9) as u8);
        assert_eq!(r.block().unwrap().fraction_lost, 0, "nothing new since");
    }

    #[test]
    fn jitter_follows_the_arrival_spread() {
        let mut steady = Reception::default();
        let mut shaky = Reception::default();
        for i in 0..200u32 {
            steady.packet(1, i as u16, i * 160, i * 160 + 1000);
            let wobble = if i % 2 == 0 { 0 } else { 80 }; // ±5 ms
            shaky.packet(1, i as u16, i * 160, i * 160 + 1000 + wobble);
        }
        assert_eq!(steady.jitter_ms(), 0.0);
        assert!(
            (9.0..=10.5).contains(&shaky.jitter_ms()),
            "{}",
            shaky.jitter_ms()
        );
    }

    #[test]
    fn what_we_send_we_parse_and_hostile_packets_are_errors() {
        let mut r = Reception::default();
        r.packet(42, 10, 0, 0);
        r.packet(42, 12, 320, 320);
        let sr = sender_report(99, 1234, 50, 8000, &mut r, "agent@bulkhead");
        assert_eq!(sr.len() % 4, 0);
        // Seen from the caller's side (SSRC 42), our SR reports on its stream.
        let parsed = parse(&sr, 42).unwrap();
        assert!(parsed.sender_ntp.is_some());
        assert_eq!(parsed.about_us.len(), 1);
        assert_eq!(parsed.about_us[0].cumulative_lost, 1);
        assert!(parse(&sr, 7).unwrap().about_us.is_empty());
        for n in 0..sr.len() {
            let _ = parse(&sr[..n], 42); // never panics
        }
        assert!(parse(&sr[..3], 42).is_err());
        let mut bad = sr.clone();
        bad[2] = 0xFF; // a length past the datagram
        assert!(parse(&bad, 42).is_err());
        let mut lying = sr.clone();
        lying[0] = 0x9F; // 31 blocks counted
        assert!(parse(&lying, 42).is_err());
    }

    #[test]
    fn negative_cumulative_loss_survives_24_bits() {
        let block = ReportBlock {
            ssrc: 5,
            fraction_lost: 0,
            cumulative_lost: -3,
            highest_seq: 0,
            jitter: 0,
            last_sr: 0,
            delay_since_last_sr: 0,
        };
        let mut r = Reception::default();
        let _ = r.block();
        let mut packet = vec![0x81, RR, 0, 7];
        packet.extend_from_slice(&1u32.to_be_bytes());
        packet.extend_from_slice(&block.ssrc.to_be_bytes());
        packet.extend_from_slice(&(((block.cumulative_lost as u32) & 0xFF_FFFF).to_be_bytes()));
        packet.extend_from_slice(&[0; 16]);
        assert_eq!(parse(&packet, 5).unwrap().about_us[0].cumulative_lost, -3);
    }
}
