//! The worker's user agent seen from the network, through the router, one
//! message at a time: CANCEL, 2xx retransmission until ACK, absorbed request
//! retransmissions, OPTIONS, unknown dialogs, RTP sockets per call.

mod common;

use std::time::Duration;

use common::*;

const NUMBER: &str = "+15550100";

#[test]
fn cancel_before_the_answer_gets_487_and_an_abandoned_record() {
    let sup = Supervisor::start_with("answer_delay_ms = 5000");
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let peer = Peer::new(sup.sip);
    peer.send(&invite(NUMBER, "cancel-1"));
    let ringing = peer
        .expect("SIP/2.0 180", Duration::from_secs(3))
        .expect("180 Ringing");
    peer.send(&request("CANCEL", NUMBER, "cancel-1", 1, ""));
    let mut got = Vec::new();
    while let Some(m) = peer.recv(Duration::from_millis(1500)) {
        got.push(m);
    }
    let cancel_ok = got
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200") && m.contains("CSeq: 1 CANCEL"));
    let terminated = got
        .iter()
        .find(|m| m.starts_with("SIP/2.0 487") && m.contains("CSeq: 1 INVITE"));
    assert!(cancel_ok.is_some() && terminated.is_some(), "{got:?}");
    assert_eq!(
        to_tag(terminated.unwrap()),
        to_tag(&ringing),
        "one dialog, one tag"
    );
    assert!(
        !got.iter()
            .any(|m| m.starts_with("SIP/2.0 200") && m.contains("CSeq: 1 INVITE")),
        "never answered"
    );
    peer.send(&request("ACK", NUMBER, "cancel-1", 1, &to_tag(&ringing)));

    let calls = settled_calls(
        t["http_port"].as_u64().unwrap() as u16,
        t["token"].as_str().unwrap(),
    );
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (
            calls[0]["outcome"].as_str(),
            calls[0]["answered_at"].is_null()
        ),
        (Some("abandoned"), true)
    );
}

#[test]
fn an_unacknowledged_200_is_retransmitted_and_a_retransmitted_invite_is_absorbed() {
    let sup = Supervisor::start();
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let peer = Peer::new(sup.sip);
    let inv = invite(NUMBER, "retx-1");
    peer.send(&inv);
    let ok = peer
        .expect("SIP/2.0 200", Duration::from_secs(3))
        .expect("200 OK");
    assert!(
        ok.contains("Content-Type: application/sdp") && ok.contains("m=audio "),
        "{ok}"
    );
    assert!(
        ok.contains(&format!(
            "Contact: <sip:{NUMBER}@127.0.0.1:{}>",
            sup.sip.port()
        )),
        "{ok}"
    );
    // The same INVITE again (a retransmission): absorbed by its transaction
    // (RFC 6026 §7.1), no new call; the 200 keeps coming on its schedule.
    peer.send(&inv);
    let again = peer
        .expect("SIP/2.0 200", Duration::from_millis(1500))
        .expect("the 200 again");
    assert_eq!(to_tag(&again), to_tag(&ok));
    // No ACK: the 200 keeps coming (T1 = 500 ms, doubling).
    assert!(
        peer.expect("SIP/2.0 200", Duration::from_secs(2)).is_some(),
        "200 retransmitted without ACK"
    );
    peer.send(&request("ACK", NUMBER, "retx-1", 1, &to_tag(&ok)));
    while peer.recv(Duration::from_millis(100)).is_some() {} // drain anything already in flight
    assert!(
        peer.expect("SIP/2.0 200", Duration::from_millis(2500))
            .is_none(),
        "retransmission stops at ACK"
    );
    peer.send(&request("BYE", NUMBER, "retx-1", 2, &to_tag(&ok)));
    let bye_ok = peer
        .expect("SIP/2.0 200", Duration::from_secs(3))
        .expect("200 to BYE");
    assert!(bye_ok.contains("CSeq: 2 BYE"), "{bye_ok}");

    let calls = settled_calls(
        t["http_port"].as_u64().unwrap() as u16,
        t["token"].as_str().unwrap(),
    );
    assert_eq!(
        calls.len(),
        1,
        "a retransmitted INVITE is not a second call: {calls:?}"
    );
    assert_eq!(calls[0]["outcome"], "completed");
}

#[test]
fn options_are_answered_and_unknown_dialogs_get_481() {
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &[NUMBER]);
    let peer = Peer::new(sup.sip);
    peer.send(&request("OPTIONS", NUMBER, "opt-1", 1, ""));
    let ok = peer
        .expect("SIP/2.0 ", Duration::from_secs(3))
        .expect("a reply to OPTIONS");
    assert!(
        ok.starts_with("SIP/2.0 200") && ok.contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS"),
        "{ok}"
    );
    peer.send(&request("BYE", NUMBER, "no-such-call", 2, "x"));
    let reply = peer
        .expect("SIP/2.0 ", Duration::from_secs(3))
        .expect("a reply to BYE");
    assert!(reply.starts_with("SIP/2.0 481"), "{reply}");
    peer.send(&request("SUBSCRIBE", NUMBER, "sub-1", 1, ""));
    let reply = peer
        .expect("SIP/2.0 ", Duration::from_secs(3))
        .expect("a reply to SUBSCRIBE");
    assert!(reply.starts_with("SIP/2.0 501"), "{reply}");
}

/// The RTP port of a response's SDP answer.
fn sdp_port(msg: &str) -> u16 {
    let m = msg
        .lines()
        .find(|l| l.starts_with("m=audio "))
        .unwrap_or_else(|| panic!("no m=audio in {msg}"));
    m.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn port_in_use(port: u16) -> bool {
    std::net::UdpSocket::bind(("127.0.0.1", port)).is_err()
}

#[test]
fn each_call_gets_real_rtp_sockets_which_return_when_it_ends() {
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &[NUMBER]);
    let peer = Peer::new(sup.sip);
    peer.send(&invite(NUMBER, "rtp-1"));
    let ok = peer
        .expect("SIP/2.0 200", Duration::from_secs(3))
        .expect("200 OK");
    let port = sdp_port(&ok);
    assert_eq!(port % 2, 0, "RTP on an even port");
    assert!(
        port_in_use(port) && port_in_use(port + 1),
        "RTP and RTCP bound for the call"
    );
    peer.send(&request("ACK", NUMBER, "rtp-1", 1, &to_tag(&ok)));
    peer.send(&request("BYE", NUMBER, "rtp-1", 2, &to_tag(&ok)));
    peer.expect("SIP/2.0 200", Duration::from_secs(3))
        .expect("200 to BYE");
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while port_in_use(port) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        !port_in_use(port),
        "the port pair went back when the call ended"
    );
}

#[test]
fn calls_past_the_concurrent_call_limit_are_refused_by_the_router_and_busy_on_the_trunk() {
    let sup = Supervisor::start_with("[limits]\nmax_concurrent_calls = 1");
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let first = Peer::new(sup.sip);
    first.send(&invite(NUMBER, "limit-1"));
    let ok = first
        .expect("SIP/2.0 200", Duration::from_secs(3))
        .expect("the first call is answered");
    first.send(&request("ACK", NUMBER, "limit-1", 1, &to_tag(&ok)));
    // Through the router: refused there, before the worker sees it.
    let second = Peer::new(sup.sip);
    second.send(&invite(NUMBER, "limit-2"));
    let refused = second
        .expect("SIP/2.0 5", Duration::from_secs(3))
        .expect("a final answer");
    assert!(refused.starts_with("SIP/2.0 503"), "{refused}");
    // On the tenant's own trunk port the worker's limit answers 486.
    let trunk: std::net::SocketAddr = format!("127.0.0.1:{}", t["sip_port"].as_u64().unwrap())
        .parse()
        .unwrap();
    let direct = Peer::new(trunk);
    direct.send(&invite(NUMBER, "limit-trunk"));
    let busy = direct
        .expect("SIP/2.0 4", Duration::from_secs(3))
        .expect("a final answer");
    assert!(busy.starts_with("SIP/2.0 486"), "{busy}");
    first.send(&request("BYE", NUMBER, "limit-1", 2, &to_tag(&ok)));
    first
        .expect("SIP/2.0 200", Duration::from_secs(3))
        .expect("200 to BYE");
    let third = Peer::new(sup.sip);
    third.send(&invite(NUMBER, "limit-3"));
    third
        .expect("SIP/2.0 200", Duration::from_secs(3))
        .expect("room again after the first call ended");
    let calls = settled_calls(
        t["http_port"].as_u64().unwrap() as u16,
        t["token"].as_str().unwrap(),
    );
    let rejected: Vec<_> = calls
        .iter()
        .filter(|c| c["outcome"] == "rejected")
        .collect();
    assert_eq!(
        rejected.len(),
        1,
        "only the trunk call reached the worker: {calls:?}"
    );
}

#[test]
fn a_caller_that_never_acks_gets_a_bye_through_the_router_and_its_answer_gets_back() {
    let sup = Supervisor::start();
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let peer = Peer::new(sup.sip);
    peer.send(&invite(NUMBER, "no-ack-1"));
    let ok = peer
        .expect("SIP/2.0 200", Duration::from_secs(3))
        .expect("200 OK");
    // No ACK ever: 64·T1 (32 s) of 200s, then the worker hangs up (RFC 3261
    // §13.3.1.4), from the router's shared port, to the caller's flow.
    let bye = peer
        .expect("BYE ", Duration::from_secs(40))
        .expect("a BYE after 64·T1 without an ACK");
    assert!(
        bye.starts_with("BYE sip:tester@127.0.0.1 SIP/2.0\r\n"),
        "{bye}"
    );
    assert!(
        bye.contains("To: <sip:tester@127.0.0.1>;tag=t1\r\n"),
        "{bye}"
    );
    assert!(bye.contains(&format!(";tag={}", to_tag(&ok))), "{bye}");
    let via = bye.lines().find(|l| l.starts_with("Via:")).unwrap();
    assert!(
        via.contains(&format!("127.0.0.1:{}", sup.sip.port())),
        "{via}"
    );
    // Our 200 goes to the router, which hands it to the tenant by Call-ID:
    // the BYE's client transaction stops resending.
    let answer: Vec<&str> = bye
        .lines()
        .filter(|l| {
            ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
                .iter()
                .any(|h| l.starts_with(h))
        })
        .collect();
    let answer = format!(
        "SIP/2.0 200 OK\r\n{}\r\nContent-Length: 0\r\n\r\n",
        answer.join("\r\n")
    );
    peer.send(answer.as_bytes());
    while peer.recv(Duration::from_millis(100)).is_some() {} // what was in flight
    assert!(
        peer.expect("BYE ", Duration::from_secs(3)).is_none(),
        "the BYE is resent although its 200 came"
    );
    let calls = settled_calls(
        t["http_port"].as_u64().unwrap() as u16,
        t["token"].as_str().unwrap(),
    );
    assert_eq!(calls[0]["outcome"], "failed", "{calls:?}");
    let status = sup.cli_json(&["status"]);
    let clinic = &status["workers"][0];
    assert_eq!(
        clinic["active_calls"], 0,
        "the router's slot is free: {status}"
    );
}

#[test]
fn hold_resume_and_session_refresh_with_sipp_through_the_router_and_on_the_trunk_over_tcp() {
    let sup = Supervisor::start();
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let trunk: std::net::SocketAddr = format!("127.0.0.1:{}", t["sip_port"]).parse().unwrap();
    for (target, transport) in [(sup.sip, "u1"), (trunk, "t1")] {
        let (ok, out) = own_scenario(
            &sup,
            "hold_resume_refresh.xml",
            NUMBER,
            target,
            transport,
            &[],
        );
        assert!(ok, "{transport}: {out}\n{}", sup.log());
        assert_eq!(sipp_counts(&out), (1, 0), "{out}");
    }
    let calls = settled_calls(
        t["http_port"].as_u64().unwrap() as u16,
        t["token"].as_str().unwrap(),
    );
    let outcomes: Vec<_> = calls.iter().map(|c| c["outcome"].as_str()).collect();
    assert_eq!(
        outcomes,
        [Some("completed"), Some("completed")],
        "{calls:?}"
    );
}
