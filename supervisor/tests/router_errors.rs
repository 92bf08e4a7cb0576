//! The router under bad input: unknown numbers, methods it does not serve,
//! malformed datagrams, too many TCP connections. It answers what it can,
//! drops what it cannot, never crashes, and keeps routing afterwards (the
//! RFC 4475 corpus is in conformance.rs).

mod common;

use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_millis(1500);

#[test]
fn unknown_numbers_register_and_bad_schemes_get_the_right_answers() {
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    let reply = udp_exchange(sup.sip, &invite("+15559999", "unknown-1"), WAIT).expect("a 404");
    assert!(reply.starts_with("SIP/2.0 404 "), "{reply}");
    assert!(
        reply.contains("Call-ID: unknown-1\r\n") && reply.contains(";tag="),
        "{reply}"
    );
    assert!(
        !reply.contains("SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKunknown-1;rport\r\nVia:"),
        "no Via added"
    );

    let register = String::from_utf8(invite("+15550100", "reg-1"))
        .unwrap()
        .replace("INVITE", "REGISTER");
    let reply = udp_exchange(sup.sip, register.as_bytes(), WAIT).expect("a 405");
    assert!(
        reply.starts_with("SIP/2.0 405 ") && reply.contains("Allow: "),
        "{reply}"
    );

    let http = String::from_utf8(invite("+15550100", "scheme-1"))
        .unwrap()
        .replace("INVITE sip:+15550100@127.0.0.1", "INVITE http://127.0.0.1/");
    let reply = udp_exchange(sup.sip, http.as_bytes(), WAIT).expect("a 416");
    assert!(reply.starts_with("SIP/2.0 416 "), "{reply}");

    // The user part of sip:first.last@host is read whole, and is no number.
    let named = String::from_utf8(invite("+15550100", "named-1"))
        .unwrap()
        .replace(
            "sip:+15550100@127.0.0.1 SIP",
            "sip:first.last@example.com SIP",
        );
    let reply = udp_exchange(sup.sip, named.as_bytes(), WAIT).expect("a 404");
    assert!(reply.starts_with("SIP/2.0 404 "), "{reply}");
}

#[test]
fn malformed_datagrams_get_400_or_nothing_and_routing_goes_on() {
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    let mut truncated = invite("+15550100", "trunc-1");
    let cut = String::from_utf8(truncated.clone())
        .unwrap()
        .replace("Content-Length: 0", "Content-Length: 500");
    truncated = cut.into_bytes();
    let reply = udp_exchange(sup.sip, &truncated, WAIT)
        .expect("a 400 for a body shorter than Content-Length");
    assert!(reply.starts_with("SIP/2.0 400 "), "{reply}");

    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut garbage = Vec::new();
    for len in [0usize, 1, 7, 100, 1400, 65_000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        garbage.push(bytes);
    }
    garbage.push(b"INVITE\r\n\r\n".to_vec());
    garbage.push(b"SIP/2.0 200 OK\r\nCall-ID: stray\r\n\r\n".to_vec());
    for g in &garbage {
        if let Some(reply) = udp_exchange(sup.sip, g, Duration::from_millis(200)) {
            assert!(reply.starts_with("SIP/2.0 400 "), "garbage got {reply}");
        }
    }
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "routing stopped after garbage:\n{out}\n{}", sup.log());
}

#[test]
fn one_address_cannot_hold_more_than_its_share_of_tcp_connections() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    let connect = || {
        let s = TcpStream::connect(sup.sip).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    };
    // A carrier needs a few connections; one address gets 64.
    let mut held: Vec<TcpStream> = (0..64).map(|_| connect()).collect();
    // Each is served: prove the last one works before going over.
    let options = |s: &mut TcpStream| {
        let msg = String::from_utf8(request("OPTIONS", "+15550100", "tcp-cap", 1, ""))
            .unwrap()
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP");
        s.write_all(msg.as_bytes()).unwrap();
        let mut buf = [0u8; 2048];
        let n = s
            .read(&mut buf)
            .expect("an answer on a connection within the limit");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let answer = options(held.last_mut().unwrap());
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    // The 65th is closed without being read.
    let mut extra = connect();
    let mut buf = [0u8; 16];
    match extra.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the 65th connection stayed open: {other:?}"),
    }
    // Closing one frees its place.
    held.pop();
    std::thread::sleep(Duration::from_millis(300));
    let answer = options(&mut connect());
    assert!(answer.starts_with("SIP/2.0 200"), "{answer}");
    let status = sup.cli_json(&["status"]);
    assert!(
        status["router"]["dropped"].as_u64().unwrap() >= 1,
        "{status}"
    );
}
