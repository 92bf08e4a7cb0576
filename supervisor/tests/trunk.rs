//! A tenant's own SIP port (bring-your-own-carrier trunk) can be limited to
//! its carriers' addresses: anything else is dropped without an answer. The
//! list is set at `tenant add`, changed live with `tenant trunk`, and kept
//! across restarts. The shared router is not the trunk and is unaffected.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

const NUMBER: &str = "+15550100";

/// Whether an INVITE from `ip` gets any answer within a second.
fn answered(ip: &str, target: SocketAddr, call_id: &str) -> bool {
    let peer = Peer::from_ip(ip, target);
    peer.send(&invite(NUMBER, call_id));
    peer.recv(Duration::from_secs(1)).is_some()
}

#[test]
fn a_trunk_allowlist_admits_only_the_tenants_carriers_and_changes_live() {
    let mut sup = Supervisor::start();
    let t = sup.cli_json(&[
        "tenant",
        "add",
        "clinic",
        "--number",
        NUMBER,
        "--trunk-allow",
        "127.0.0.2",
    ]);
    assert_eq!(t["trunk_allow"], serde_json::json!(["127.0.0.2/32"]), "{t}");
    let trunk: SocketAddr = format!("127.0.0.1:{}", t["sip_port"]).parse().unwrap();
    assert!(
        answered("127.0.0.2", trunk, "carrier-1"),
        "the carrier is answered"
    );
    assert!(
        !answered("127.0.0.3", trunk, "stranger-1"),
        "anyone else hears nothing"
    );
    assert!(
        answered("127.0.0.3", sup.sip, "via-router-1"),
        "the router is not the trunk"
    );

    // Live: another carrier, without a restart.
    let changed = sup.cli_json(&["tenant", "trunk", "clinic", "127.0.0.3/32"]);
    assert_eq!(changed["pid"], t["pid"], "no restart");
    assert!(answered("127.0.0.3", trunk, "stranger-2"));
    assert!(!answered("127.0.0.2", trunk, "carrier-2"));

    // A bad block changes nothing.
    let bad = sup.cli(&["tenant", "trunk", "clinic", "carrier.example.com"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("address block"));

    sup.stop();
    sup.boot();
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(
        shown["trunk_allow"],
        serde_json::json!(["127.0.0.3/32"]),
        "{shown}"
    );
    assert!(
        !answered("127.0.0.2", trunk, "carrier-3"),
        "kept across a restart"
    );

    // No blocks: any source again.
    sup.cli_json(&["tenant", "trunk", "clinic"]);
    assert!(answered("127.0.0.2", trunk, "carrier-4"));
}
