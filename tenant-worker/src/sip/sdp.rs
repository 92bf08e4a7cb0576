//! SDP offer/answer (RFC 3264), as far as answering calls needs: pick G.711
//! μ-law or A-law from the offer, and answer a hold or resume (RFC 3264
//! §8.4) with the matching direction.
//!
//! The port is the call's RTP socket, which the supervisor bound for it;
//! the voice agent reads and writes the audio.

use std::net::{IpAddr, SocketAddr};

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

/// Where the offer wants audio sent: its connection address (the audio
/// stream's, else the session's) and the audio port. `None` for a port of
/// 0, a hold address of 0.0.0.0, or an offer we cannot read.
pub fn remote_media(offer: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(offer).ok()?;
    let (mut session_ip, mut audio_ip, mut port, mut in_audio) = (None, None, None, false);
    for line in text.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
            if in_audio && port.is_none() {
                port = m.split_ascii_whitespace().nth(1)?.parse::<u16>().ok();
            }
        } else if let Some(c) = line.strip_prefix("c=IN ") {
            let ip = c
                .split_ascii_whitespace()
                .nth(1)?
                .split('/')
                .next()?
                .parse::<IpAddr>()
                .ok();
            if in_audio {
                audio_ip = ip;
            } else if port.is_none() {
                session_ip = ip;
            }
        }
    }
    let ip = audio_ip.or(session_ip).filter(|ip| !ip.is_unspecified())?;
    Some(SocketAddr::new(ip, port.filter(|p| *p != 0)?))
}

/// The payload type the offer uses for RFC 4733 telephone events, if any.
pub fn telephone_event(offer: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(offer).ok()?;
    text.lines().find_map(|l| {
        let (pt, codec) = l.trim_end().strip_prefix("a=rtpmap:")?.split_once(' ')?;
        codec
            .to_ascii_lowercase()
            .starts_with("telephone-event/8000")
            .then(|| pt.parse().ok())
            .flatten()
    })
}

/// Which way media flows, from the describing side's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction an answer takes to this offer: a caller putting us on
    /// hold (sendonly) hears nothing from us (recvonly), and so on.
    pub fn answer(self) -> Self {
        match self {
            Self::SendOnly => Self::RecvOnly,
            Self::RecvOnly => Self::SendOnly,
            same => same,
        }
    }

    fn attribute(self) -> &'static str {
        match self {
            Self::SendRecv => "sendrecv",
            Self::SendOnly => "sendonly",
            Self::RecvOnly => "recvonly",
            Self::Inactive => "inactive",
        }
    }
}

/// The offer's audio direction: the audio stream's attribute, else the
/// session's, else sendrecv. A connection address of 0.0.0.0 is RFC 2543's
/// hold, which RFC 3264 §8.4 reads as sendonly.
pub fn direction(offer: &[u8]) -> Direction {
    let Ok(text) = std::str::from_utf8(offer) else {
        return Direction::SendRecv;
    };
    let (mut session, mut audio, mut in_audio) = (None, None, false);
    let mut held = false;
    for line in text.lines().map(str::trim_end) {
        if let Some(m) = line.strip_prefix("m=") {
            in_audio = m.starts_with("audio ");
            continue;
        }
        if line.starts_with("c=") && line.ends_with(" 0.0.0.0") {
            held = true;
        }
        let found = match line {
            "a=sendrecv" => Direction::SendRecv,
            "a=sendonly" => Direction::SendOnly,
            "a=recvonly" => Direction::RecvOnly,
            "a=inactive" => Direction::Inactive,
            _ => continue,
        };
        if in_audio {
            audio = Some(found);
        } else if audio.is_none() {
            session = Some(found);
        }
    }
    match audio.or(session).unwrap_or(Direction::SendRecv) {
        Direction::SendRecv if held => Direction::SendOnly,
        d => d,
    }
}

/// One side of our media session, as our SDP describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub id: u64,
    /// The o= version, raised whenever the description changes (RFC 3264 §8).
    pub version: u64,
    pub port: u16,
    pub pt: u8,
    /// The telephone-event payload type, when the offer had one.
    pub dtmf: Option<u8>,
    pub direction: Direction,
}

impl Session {
    /// The session after answering `offer` with codec `pt`: the version
    /// rises only when something changed.
    pub fn answering(self, pt: u8, direction: Direction) -> Self {
        if (pt, direction) == (self.pt, self.direction) {
            return self;
        }
        Self {
            version: self.version + 1,
            pt,
            direction,
            ..self
        }
    }

    /// Our SDP (an answer, or an offer when the INVITE had none).
    pub fn describe(&self, advertise: IpAddr) -> String {
        let family = if advertise.is_ipv4() { "IP4" } else { "IP6" };
        let Self {
            id,
            version,
            port,
            pt,
            ..
        } = *self;
        let rtpmap = CODECS
            .iter()
            .find(|(c, _)| *c == pt)
            .map_or("PCMU/8000", |(_, n)| n);
        let dir = self.direction.attribute();
        let (dtmf_fmt, dtmf_attrs) = match self.dtmf {
            Some(d) => (
                format!(" {d}"),
                format!("a=rtpmap:{d} telephone-event/8000\r\na=fmtp:{d} 0-15\r\n"),
            ),
            None => (String::new(), String::new()),
        };
        format!(
            "v=0\r\no=bulkhead {id} {version} IN {family} {advertise}\r\ns=bulkhead\r\n\
c=IN {family} {advertise}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pt}{dtmf_fmt}\r\na=rtpmap:{pt} {rtpmap}\r\n{dtmf_attrs}a={dir}\r\n"
        )
    }
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

    fn session() -> Session {
        Session {
            id: 7,
            version: 7,
            port: 30000,
            pt: 0,
            dtmf: None,
            direction: Direction::SendRecv,
        }
    }

    #[test]
    fn reads_where_to_send_audio_and_the_dtmf_payload_type() {
        let offer = b"v=0\r\nc=IN IP4 127.0.0.2\r\nm=audio 4000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        assert_eq!(remote_media(offer), Some("127.0.0.2:4000".parse().unwrap()));
        assert_eq!(telephone_event(offer), Some(101));
        let media_level =
            b"v=0\r\nc=IN IP4 127.0.0.2\r\nm=audio 4002 RTP/AVP 0\r\nc=IN IP4 127.0.0.3\r\n";
        assert_eq!(
            remote_media(media_level),
            Some("127.0.0.3:4002".parse().unwrap())
        );
        assert_eq!(
            remote_media(b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n"),
            None
        );
        assert_eq!(
            remote_media(b"v=0\r\nc=IN IP4 127.0.0.1\r\nm=audio 0 RTP/AVP 0\r\n"),
            None
        );
        assert_eq!(remote_media(b"garbage"), None);
        assert_eq!(
            telephone_event(b"v=0\r\na=rtpmap:x telephone-event/8000\r\n"),
            None
        );
        let answer = Session {
            dtmf: Some(101),
            ..session()
        }
        .describe("127.0.0.1".parse().unwrap());
        assert!(
            answer.contains("m=audio 30000 RTP/AVP 0 101\r\n")
                && answer.contains("a=fmtp:101 0-15\r\n")
        );
    }

    #[test]
    fn describes_ipv4_and_ipv6() {
        let s = session().describe("127.0.0.1".parse().unwrap());
        assert!(s.contains("c=IN IP4 127.0.0.1\r\n") && s.contains("m=audio 30000 RTP/AVP 0\r\n"));
        assert!(s.contains("o=bulkhead 7 7 IN IP4") && s.ends_with("a=sendrecv\r\n"));
        let v6 = Session { pt: 8, ..session() }.describe("::1".parse().unwrap());
        assert!(v6.contains("c=IN IP6 ::1") && v6.contains("a=rtpmap:8 PCMA/8000"));
    }

    #[test]
    fn reads_hold_and_resume_and_answers_them() {
        let audio = "m=audio 4000 RTP/AVP 0\r\n";
        let offer = |session: &str, media: &str| {
            format!("v=0\r\nc=IN IP4 127.0.0.1\r\n{session}{audio}{media}").into_bytes()
        };
        assert_eq!(direction(&offer("", "")), Direction::SendRecv);
        assert_eq!(direction(&offer("", "a=sendonly\r\n")), Direction::SendOnly);
        assert_eq!(direction(&offer("a=inactive\r\n", "")), Direction::Inactive);
        assert_eq!(
            direction(&offer("a=sendonly\r\n", "a=sendrecv\r\n")),
            Direction::SendRecv,
            "the stream's attribute wins"
        );
        let rfc2543_hold = b"v=0\r\nc=IN IP4 0.0.0.0\r\nm=audio 4000 RTP/AVP 0\r\n";
        assert_eq!(direction(rfc2543_hold), Direction::SendOnly);
        assert_eq!(Direction::SendOnly.answer(), Direction::RecvOnly);
        assert_eq!(Direction::Inactive.answer(), Direction::Inactive);

        let held = session().answering(0, Direction::RecvOnly);
        assert_eq!(held.version, 8);
        assert!(held
            .describe("127.0.0.1".parse().unwrap())
            .ends_with("a=recvonly\r\n"));
        assert_eq!(
            held.answering(0, Direction::RecvOnly),
            held,
            "no change, same version"
        );
        assert_eq!(held.answering(0, Direction::SendRecv).version, 9);
    }
}
