//! A small SIP user agent client for `bulkhead demo` and tests: one call
//! over UDP (INVITE, wait for 200, ACK, BYE, wait for 200). Not a general
//! client — real interop testing uses sipp.

use std::net::SocketAddr;
use std::time::Duration;

use bulkhead_shared::sip::{scan, StartLine};
use tokio::net::UdpSocket;

/// What happened to a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResult {
    /// Status codes received for the INVITE, in order.
    pub invite_codes: Vec<u16>,
    /// Status of the BYE, when the call was answered.
    pub bye_code: Option<u16>,
}

/// Places one call to `number` through `server`, identifying as `caller`.
pub async fn place_call(
    server: SocketAddr,
    number: &str,
    caller: &str,
    call_id: &str,
) -> std::io::Result<CallResult> {
    let sock = UdpSocket::bind("127.0.0.1:0").await?;
    let local = sock.local_addr()?;
    let invite = request(
        "INVITE", number, server, local, caller, call_id, 1, "", true,
    );
    sock.send_to(invite.as_bytes(), server).await?;
    let mut result = CallResult {
        invite_codes: Vec::new(),
        bye_code: None,
    };
    let mut to_header = None;
    while let Some((code, to)) = recv_response(&sock, "INVITE").await? {
        result.invite_codes.push(code);
        if code >= 200 {
            to_header = Some(to);
            break;
        }
    }
    let Some(to) = to_header else {
        return Ok(result);
    };
    if result.invite_codes.last() != Some(&200) {
        return Ok(result);
    }
    let ack = request("ACK", number, server, local, caller, call_id, 1, &to, false);
    sock.send_to(ack.as_bytes(), server).await?;
    let bye = request("BYE", number, server, local, caller, call_id, 2, &to, false);
    sock.send_to(bye.as_bytes(), server).await?;
    result.bye_code = recv_response(&sock, "BYE").await?.map(|(c, _)| c);
    Ok(result)
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
    sdp: bool,
) -> String {
    let branch = format!("z9hG4bK{call_id}{cseq}{method}");
    let to = if to.is_empty() {
        format!("<sip:{number}@{server}>")
    } else {
        to.to_owned()
    };
    let body = if sdp {
        format!("v=0\r\no=demo 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\n", ip = local.ip())
    } else {
        String::new()
    };
    let ctype = if sdp {
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

/// The next response to `method` (code and To header), or `None` on timeout.
async fn recv_response(sock: &UdpSocket, method: &str) -> std::io::Result<Option<(u16, String)>> {
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
            return Ok(Some((code, msg.header("To").unwrap_or("").to_owned())));
        }
    }
}
