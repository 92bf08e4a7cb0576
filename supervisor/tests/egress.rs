//! The egress broker: a sandboxed worker (which can open no socket itself)
//! reaches exactly the destinations on its tenant's allowlist, through a
//! socket the supervisor connects and hands over; never another tenant's
//! ports or the supervisor's own.

mod common;

use std::io::{BufRead, BufReader, Write};

use common::*;

/// A loopback TCP server standing in for an LLM provider: answers each line with "pong".
fn provider() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten().take(8) {
            let mut line = String::new();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            if reader.read_line(&mut line).is_ok() {
                let _ = (&conn).write_all(b"pong\n");
            }
        }
    });
    port
}

#[test]
fn a_worker_reaches_only_its_allowlist_through_the_broker() {
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    let insurance = sup.add_tenant("insurance", &["+15550200"]);
    let target = format!("127.0.0.1:{}", provider());

    let out = sup.cli(&["egress", "check", "clinic", &target]);
    assert_eq!(out.status.code(), Some(1), "not allowlisted yet");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("allowlist"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    sup.cli_json(&["egress", "add", "clinic", &target]);
    let list = sup.cli_json(&["egress", "list", "clinic"]);
    assert_eq!(list["egress"].as_array().unwrap().len(), 1, "{list}");
    let check = sup.cli_json(&["egress", "check", "clinic", &target]);
    assert_eq!(check["reached"], true, "{check}");
    assert!(
        check["detail"].as_str().unwrap().contains("pong"),
        "{check}"
    );

    // One tenant's allowlist is not another's.
    assert_eq!(
        sup.cli(&["egress", "check", "insurance", &target])
            .status
            .code(),
        Some(1)
    );

    // Never another tenant's ports, nor the supervisor's own.
    let metrics = sup.cli_json(&["status"])["metrics_listen"]
        .as_str()
        .unwrap()
        .to_owned();
    for forbidden in [
        metrics,
        format!("127.0.0.1:{}", insurance["http_port"]),
        format!("127.0.0.1:{}", insurance["sip_port"]),
        format!("127.0.0.1:{}", sup.sip.port()),
    ] {
        let out = sup.cli(&["egress", "add", "clinic", &forbidden]);
        assert_eq!(out.status.code(), Some(1), "{forbidden} was accepted");
        assert!(String::from_utf8_lossy(&out.stderr).contains("never connects there"));
    }

    sup.cli_json(&["egress", "remove", "clinic", &target]);
    assert_eq!(
        sup.cli(&["egress", "check", "clinic", &target])
            .status
            .code(),
        Some(1),
        "removed rules stop working"
    );
    assert_eq!(
        sup.cli(&["egress", "add", "clinic", "no-port"])
            .status
            .code(),
        Some(2),
        "bad usage"
    );
}
