//! A small SIP user agent client for `bulkhead demo` and tests: one call
//! over UDP (INVITE, wait for 200, ACK, optionally a caller's audio as
//! G.711 RTP, BYE, wait for 200). Not a general client — real interop
//! testing uses sipp.

use std::net::SocketAddr;
use std::time::Duration;

use bulkhead_shared::sip::{scan, StartLine};
use tokio::net::UdpSocket;

/// What happened to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// Status codes received for the INVITE, in order.
    pub invite_codes: Vec<u16>,
    /// Status of our BYE, when the call was answered and we hung up.
    pub bye_code: Option<u16>,
    /// The answering side hung up first (its BYE got our 200).
    pub hung_up_by_callee: bool,
}

impl CallResult {
    /// Answered, and ended cleanly by either side.
    pub fn completed(&self) -> bool {
        self.invite_codes.last() == Some(&200)
            && (self.bye_code == Some(200) || self.hung_up_by_callee)
    }
}

/// Places one call to `number` through `server`, identifying as `caller`.
pub async fn place_call(
    server: SocketAddr,
    number: &str,
    caller: &str,
    call_id: &str,
) -> std::io::Result<CallResult> {
    place_call_with_audio(server, number, caller, call_id, &[]).await
}

/// Places one call and, once answered, sends `audio` (8 kHz μ-law) to the
/// answer's RTP address in real time, one packet per 20 ms, then hangs up.
pub async fn place_call_with_audio(
    server: SocketAddr,
    number: &str,
    caller: &str,
    call_id: &str,
    audio: &[u8],
) -> std::io::Result<CallResult> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let media = UdpSocket::bind("127.0.0.1:0").await?;
    let local = sock.local_addr()?;
    let offer = Offer {
        media_port: media.local_addr()?.port(),
    };
    let invite = request(
        "INVITE",
        number,
        server,
        local,
        caller,
        call_id,
        1,
        "",
        Some(offer),
    );
    sock.send_to(invite.as_bytes(), server).await?;
    let mut result = CallResult {
        invite_codes: Vec::new(),
        bye_code: None,
        hung_up_by_callee: false,
    };
    let mut answer = None;
    while let Some(resp) = recv_response(&sock, "INVITE").await? {
        result.invite_codes.push(resp.code);
        if resp.code >= 200 {
            answer = Some(resp);
            break;
        }
    }
    let Some(answer) = answer.filter(|a| a.code == 200) else {
        return Ok(result);
    };
    let to = answer.to;
    let ack = request("ACK", number, server, local, caller, call_id, 1, &to, None);
    sock.send_to(ack.as_bytes(), server).await?;
    if let Some(peer) = answer.media.filter(|_| !audio.is_empty()) {
        if play(&sock, &media, peer, audio).await? {
            result.hung_up_by_callee = true;
            return Ok(result);
        }
    }
    let bye = request("BYE", number, server, local, caller, call_id, 2, &to, None);
    sock.send_to(bye.as_bytes(), server).await?;
    result.bye_code = recv_response(&sock, "BYE").await?.map(|r| r.code);
    Ok(result)
}

/// Our SDP offer: G.711 on this port.
#[derive(Debug, Clone, Copy)]
struct Offer {
    media_port: u16,
}

/// Sends `audio` as μ-law RTP to `peer`, paced in real time, until it ends
/// or the other side hangs up (true: its BYE was answered). The agent's
/// packets arrive on the media socket and are left unread.
async fn play(
    sip: &UdpSocket,
    media: &UdpSocket,
    peer: SocketAddr,
    audio: &[u8],
) -> std::io::Result<bool> {
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let ssrc = std::process::id();
    let mut buf = vec![0u8; 65_535];
    for (i, frame) in audio.chunks(160).enumerate() {
        loop {
            tokio::select! {
                _ = tick.tick() => break,
                got = sip.recv_from(&mut buf) => {
                    let (n, from) = got?;
                    if let Some(ok) = ok_to_bye(&buf[..n]) {
                        sip.send_to(ok.as_bytes(), from).await?;
                        return Ok(true);
                    }
                }
            }
        }
        let mut packet = Vec::with_capacity(12 + frame.len());
        packet.extend_from_slice(&[0x80, if i == 0 { 0x80 } else { 0 }]);
        packet.extend_from_slice(&(i as u16).to_be_bytes());
        packet.extend_from_slice(&((i * 160) as u32).to_be_bytes());
        packet.extend_from_slice(&ssrc.to_be_bytes());
        packet.extend_from_slice(frame);
        media.send_to(&packet, peer).await?;
    }
    Ok(false)
}

/// A 200 for `data` if it is a BYE.
fn ok_to_bye(data: &[u8]) -> Option<String> {
    let msg = scan(data).ok()?;
    if !matches!(msg.start, StartLine::Request { method: "BYE", .. }) {
        return None;
    }
    let mut ok = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for (n, v) in msg.headers().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
            ok.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    ok.push_str("Content-Length: 0\r\n\r\n");
    Some(ok)
}

/// The RTP address in an SDP body: `c=IN IP4 <addr>` and `m=audio <port>`.
fn sdp_media(body: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(body).ok()?;
    let ip = text
        .lines()
        .find_map(|l| l.strip_prefix("c=IN IP4 "))?
        .trim()
        .parse::<std::net::Ipv4Addr>()
        .ok()?;
    let port = text
        .lines()
        .find_map(|l| l.strip_prefix("m=audio "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(SocketAddr::from((ip, port)))
}

#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    number: &str,
    server: SocketAddr,
    local: SocketAddr,
    caller: &str,
    call_id: &str,
    cseq: u32,
    to: &str,
    offer: Option<Offer>,
) -> String {
    let branch = format!("z9hG4bK{call_id}{cseq}{method}");
    let to = if to.is_empty() {
        format!("<sip:{number}@{server}>")
    } else {
        to.to_owned()
    };
    let body = match offer {
        Some(o) => format!(
            "v=0\r\no=demo 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0 8\r\n",
            ip = local.ip(),
            port = o.media_port
        ),
        None => String::new(),
    };
    let ctype = if offer.is_some() {
        "Content-Type: application/sdp\r\n"
    } else {
        ""
    };
    format!(
        "{method} sip:{number}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch={branch};rport\r\nMax-Forwards: 70\r\n\
From: \"{caller}\" <sip:{caller_user}@{local}>;tag=demo1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:demo@{local}>\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
        body.len(),
        caller_user = caller.split_whitespace().next().unwrap_or("caller").to_lowercase(),
    )
}

/// A response we waited for.
struct Response {
    code: u16,
    to: String,
    /// The answer's RTP address, if it carries SDP.
    media: Option<SocketAddr>,
}

/// The next response to `method`, or `None` on timeout.
async fn recv_response(sock: &UdpSocket, method: &str) -> std::io::Result<Option<Response>> {
    let mut buf = vec![0u8; 65_535];
    loop {
        let n = match tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf)).await {
            Ok(r) => r?,
            Err(_) => return Ok(None),
        };
        let Ok(msg) = scan(&buf[..n]) else { continue };
        let StartLine::Response { code, .. } = msg.start else {
            continue;
        };
        if msg.cseq().map(|(_, m)| m) == Some(method) {
            return Ok(Some(Response {
                code,
                to: msg.header("To").unwrap_or("").to_owned(),
                media: sdp_media(msg.body),
            }));
        }
    }
}
