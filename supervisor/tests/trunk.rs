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

/// One sipp call of the digest scenario to the trunk with these credentials.
/// sipp takes a second 401 for a retransmission of the first and waits,
/// so a refused call ends at the (short) timeout.
fn digest_call(sup: &Supervisor, trunk: SocketAddr, password: &str) -> (bool, String) {
    let args = ["-au", "carrier", "-ap", password, "-timeout", "5"];
    own_scenario(sup, "uac_digest.xml", NUMBER, trunk, "u1", &args)
}

#[test]
fn digest_authentication_on_the_trunk_with_sipp_live_and_across_restarts() {
    let mut sup = Supervisor::start();
    let t = sup.add_tenant("clinic", &[NUMBER]);
    let trunk: SocketAddr = format!("127.0.0.1:{}", t["sip_port"]).parse().unwrap();
    let pass = sup.dir.path().join("trunk.pass");
    std::fs::write(&pass, "s3cret-Trunk-pass\n").unwrap();
    let set = sup.cli_json(&[
        "tenant",
        "trunk-auth",
        "clinic",
        "--username",
        "carrier",
        "--password-file",
        pass.to_str().unwrap(),
    ]);
    assert_eq!(set["trunk_auth_username"], "carrier", "{set}");
    assert_eq!(set["pid"], t["pid"], "set live, no restart");

    let (ok, out) = digest_call(&sup, trunk, "s3cret-Trunk-pass");
    assert!(ok, "{out}\n{}", sup.log());
    assert_eq!(sipp_counts(&out), (1, 0));
    let (ok, out) = digest_call(&sup, trunk, "wrong-pass");
    assert!(!ok, "a wrong password fails: {out}");
    let (ok, out) = sipp_uac_at(sup.dir.path(), trunk, NUMBER, 1, 1, "u1");
    assert!(!ok, "a call without credentials fails on the trunk: {out}");
    let (ok, out) = sipp_uac_at(sup.dir.path(), sup.sip, NUMBER, 1, 1, "u1");
    assert!(ok, "the router is not the trunk: {out}");

    // Only hashes are kept: the password is nowhere in the state directory
    // (registry included) or the log.
    for f in files_under(&sup.state_dir()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes.windows(17).any(|w| w == b"s3cret-Trunk-pass"),
            "the password is in {}",
            f.display()
        );
    }
    assert!(!sup.log().contains("s3cret-Trunk-pass"));

    sup.stop();
    sup.boot();
    let (ok, out) = digest_call(&sup, trunk, "s3cret-Trunk-pass");
    assert!(ok, "kept across a restart: {out}");

    let off = sup.cli_json(&["tenant", "trunk-auth", "clinic", "--off"]);
    assert!(off["trunk_auth_username"].is_null(), "{off}");
    let (ok, out) = sipp_uac_at(sup.dir.path(), trunk, NUMBER, 1, 1, "u1");
    assert!(ok, "no challenge once off: {out}");

    // Four calls went through (two with credentials, one through the
    // router, one after --off); the refused attempts left no record.
    let calls = settled_calls(
        t["http_port"].as_u64().unwrap() as u16,
        t["token"].as_str().unwrap(),
    );
    let completed = calls.iter().filter(|c| c["outcome"] == "completed").count();
    assert_eq!((calls.len(), completed), (4, 4), "{calls:?}");

    // The password comes from a file, never from the command line.
    let bad = sup.cli(&["tenant", "trunk-auth", "clinic", "--username", "carrier"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}
