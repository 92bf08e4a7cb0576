//! RTP packets (RFC 3550 §5.1): read a header from the network with every
//! length checked, and write our own.

use thiserror::Error;

/// The fixed header's length.
pub const HEADER: usize = 12;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum RtpError {
    #[error("RTP packet of {0} bytes is shorter than its header")]
    Short(usize),
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("RTP header extension or padding runs past the packet")]
    Overrun,
}

/// A received packet; `payload` borrows the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        if buf.len() < HEADER {
            return Err(RtpError::Short(buf.len()));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtpError::Version(version));
        }
        let padded = buf[0] & 0x20 != 0;
        let extended = buf[0] & 0x10 != 0;
        let csrc_count = usize::from(buf[0] & 0x0F);
        let mut start = HEADER + 4 * csrc_count;
        if extended {
            let words = buf.get(start + 2..start + 4).ok_or(RtpError::Overrun)?;
            start += 4 + 4 * usize::from(u16::from_be_bytes([words[0], words[1]]));
        }
        let mut end = buf.len();
        if padded {
            let pad = usize::from(*buf.last().unwrap_or(&0));
            end = end.checked_sub(pad).ok_or(RtpError::Overrun)?;
        }
        if start > end || pad_is_zero(padded, buf) {
            return Err(RtpError::Overrun);
        }
        Ok(Self {
            marker: buf[1] & 0x80 != 0,
            payload_type: buf[1] & 0x7F,
            seq: u16::from_be_bytes([buf[2], buf[3]]),
            timestamp: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            ssrc: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
            payload: &buf[start..end],
        })
    }
}

/// RFC 3550: the padding count includes itself, so 0 is malformed.
fn pad_is_zero(padded: bool, buf: &[u8]) -> bool {
    padded && buf.last() == Some(&0)
}

/// Writes a header without CSRCs or extension, then the payload.
pub fn write(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    payload: &[u8],
) {
    write_header(out, marker, payload_type, seq, timestamp, ssrc);
    out.extend_from_slice(payload);
}

/// [`write`] without the payload, for a caller that encodes it in place.
pub fn write_header(
    out: &mut Vec<u8>,
    marker: bool,
    payload_type: u8,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
) {
    out.clear();
    out.push(0x80);
    out.push(if marker { 0x80 } else { 0 } | (payload_type & 0x7F));
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&timestamp.to_be_bytes());
    out.extend_from_slice(&ssrc.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_we_write_we_read() {
        let mut buf = Vec::new();
        write(&mut buf, true, 0, 65535, 0xDEAD_BEEF, 7, &[1, 2, 3]);
        let p = Packet::parse(&buf).unwrap();
        assert!(p.marker);
        assert_eq!(
            (p.payload_type, p.seq, p.timestamp, p.ssrc),
            (0, 65535, 0xDEAD_BEEF, 7)
        );
        assert_eq!(p.payload, &[1, 2, 3]);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut buf = vec![0x80 | 0x20 | 0x10 | 1, 8, 0, 1, 0, 0, 0, 160, 0, 0, 0, 9];
        buf.extend_from_slice(&[0xAA; 4]); // one CSRC
        buf.extend_from_slice(&[0xBE, 0xDE, 0, 1, 1, 2, 3, 4]); // one extension word
        buf.extend_from_slice(&[5, 6]); // payload
        buf.extend_from_slice(&[0, 0, 3]); // three bytes of padding
        let p = Packet::parse(&buf).unwrap();
        assert_eq!(p.payload, &[5, 6]);
        assert_eq!(p.payload_type, 8);
    }

    #[test]
    fn hostile_lengths_are_errors_not_panics() {
        assert_eq!(Packet::parse(&[0x80; 5]), Err(RtpError::Short(5)));
        assert_eq!(Packet::parse(&[0x40; 12]), Err(RtpError::Version(1)));
        // 15 CSRCs announced, none present.
        let mut buf = vec![0x8F, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(Packet::parse(&buf), Err(RtpError::Overrun));
        // Padding longer than the packet.
        buf[0] = 0xA0;
        buf.push(200);
        assert_eq!(Packet::parse(&buf), Err(RtpError::Overrun));
        // Padding count of zero.
        *buf.last_mut().unwrap() = 0;
        assert_eq!(Packet::parse(&buf), Err(RtpError::Overrun));
        // An extension header cut short.
        let ext = [0x90, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xBE];
        assert_eq!(Packet::parse(&ext), Err(RtpError::Overrun));
        // Every truncation of a valid packet parses or errs.
        let mut full = Vec::new();
        write(&mut full, false, 0, 1, 2, 3, &[0; 160]);
        for n in 0..full.len() {
            let _ = Packet::parse(&full[..n]);
        }
    }
}
