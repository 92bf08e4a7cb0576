//! SDP offer/answer (RFC 3264), as far as the foundation needs: pick G.711
//! μ-law or A-law from the offer and answer with it.
//!
//! The port is the call's RTP socket, which the supervisor bound for it;
//! nothing reads the audio yet (the voice-agent issue).

use std::net::IpAddr;

/// Static payload types we can take: PCMU (0) and PCMA (8).
const CODECS: &[(u8, &str)] = &[(0, "PCMU/8000"), (8, "PCMA/8000")];

/// The payload type to answer with: the first of the offer's audio formats
/// that we support. `None` when the offer has no audio we can take.
pub fn choose_codec(offer: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(offer).ok()?;
    let m = text.lines().find(|l| l.starts_with("m=audio "))?;
    // m=audio <port> <proto> <fmt> ...
    m.split_ascii_whitespace()
        .skip(3)
        .filter_map(|f| f.parse::<u8>().ok())
        .find(|pt| CODECS.iter().any(|(c, _)| c == pt))
}

/// Our SDP for one codec on RTP port `port` (answer, or offer when the
/// INVITE had none).
pub fn describe(advertise: IpAddr, port: u16, session: u64, pt: u8) -> String {
    let family = if advertise.is_ipv4() { "IP4" } else { "IP6" };
    let rtpmap = CODECS
        .iter()
        .find(|(c, _)| *c == pt)
        .map_or("PCMU/8000", |(_, n)| n);
    format!(
        "v=0\r\no=bulkhead {session} {session} IN {family} {advertise}\r\ns=bulkhead\r\n\
c=IN {family} {advertise}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pt}\r\na=rtpmap:{pt} {rtpmap}\r\na=sendrecv\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_first_supported_codec_in_offer_order() {
        assert_eq!(
            choose_codec(b"v=0\r\nm=audio 4000 RTP/AVP 18 8 0 101\r\n"),
            Some(8)
        );
        assert_eq!(choose_codec(b"v=0\r\nm=audio 4000 RTP/AVP 0\r\n"), Some(0));
        assert_eq!(choose_codec(b"v=0\r\nm=audio 4000 RTP/AVP 9 18\r\n"), None);
        assert_eq!(choose_codec(b"v=0\r\nm=video 4000 RTP/AVP 0\r\n"), None);
    }

    #[test]
    fn describes_ipv4_and_ipv6() {
        let s = describe("127.0.0.1".parse().unwrap(), 30000, 7, 0);
        assert!(s.contains("c=IN IP4 127.0.0.1\r\n") && s.contains("m=audio 30000 RTP/AVP 0\r\n"));
        assert!(describe("::1".parse().unwrap(), 30002, 7, 8).contains("c=IN IP6 ::1"));
    }
}
