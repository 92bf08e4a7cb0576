//! The router under bad input: unknown numbers, methods it does not serve,
//! malformed datagrams and the RFC 4475 torture corpus. It answers what it
//! can, drops what it cannot, never crashes, and keeps routing afterwards.

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
