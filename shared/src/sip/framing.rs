//! Message boundaries in a SIP-over-TCP byte stream (RFC 3261 §18.3):
//! headers up to the empty line, then exactly Content-Length octets.

use super::scan::{find_head_end, split, ScanError, Scanned};

/// What the front of a stream buffer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Not enough bytes yet.
    Incomplete,
    /// `n` bytes of CRLF keep-alive (RFC 5626) to discard.
    KeepAlive(usize),
    /// A whole message of `n` bytes.
    Message(usize),
}

/// Why the stream cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("message exceeds {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Malformed(#[from] ScanError),
}

/// Finds the first frame in `buf`. Messages longer than `max` are an error:
/// a peer cannot make us buffer without bound.
pub fn next_frame(buf: &[u8], max: usize) -> Result<Frame, FrameError> {
    let crlf = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlf > 0 {
        return Ok(Frame::KeepAlive(crlf));
    }
    let Some((_, body_start)) = find_head_end(buf) else {
        if buf.len() > max {
            return Err(FrameError::TooLarge(max));
        }
        return Ok(Frame::Incomplete);
    };
    let (start, head, _) = split(buf)?;
    let declared = Scanned::from_parts(start, head)
        .content_length()?
        .unwrap_or(0);
    let total = body_start + declared;
    if total > max {
        return Err(FrameError::TooLarge(max));
    }
    Ok(if buf.len() >= total {
        Frame::Message(total)
    } else {
        Frame::Incomplete
    })
}

impl<'a> Scanned<'a> {
    pub(crate) fn from_parts(start: super::StartLine<'a>, head: &'a str) -> Self {
        Self::new_unchecked(start, head, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_a_stream_with_keepalives_and_pipelining() {
        let one = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 3\r\n\r\nabc";
        let mut stream = b"\r\n\r\n".to_vec();
        stream.extend_from_slice(one);
        stream.extend_from_slice(one);
        assert_eq!(next_frame(&stream, 1000), Ok(Frame::KeepAlive(4)));
        let rest = &stream[4..];
        assert_eq!(next_frame(rest, 1000), Ok(Frame::Message(one.len())));
        for n in 1..one.len() {
            assert_eq!(next_frame(&one[..n], 1000), Ok(Frame::Incomplete), "{n}");
        }
    }

    #[test]
    fn bounds_message_size() {
        assert_eq!(
            next_frame(&[b'A'; 200], 100),
            Err(FrameError::TooLarge(100))
        );
        let big = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 500\r\n\r\n";
        assert_eq!(next_frame(big, 100), Err(FrameError::TooLarge(100)));
        let bad = b"OPTIONS sip:a SIP/2.0\r\nContent-Length: x\r\n\r\n";
        assert!(matches!(
            next_frame(bad, 100),
            Err(FrameError::Malformed(_))
        ));
    }
}
