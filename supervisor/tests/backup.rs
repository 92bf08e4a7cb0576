//! `tenant backup` and `tenant restore`: a consistent, encrypted copy of a
//! tenant's store, made while calls go on; remove and restore give the
//! same records, tokens and configuration back; a shredded tenant's
//! backups can never be restored; damaged or foreign backups are refused.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const NEEDLE: &str = "needle-backup-5521";

/// Everything the tenant's API shows about itself.
fn snapshot(port: u16, token: &str) -> Value {
    let get = |path: &str| {
        let (status, body) = http_get(port, path, Some(token));
        assert_eq!(status, 200, "{path}: {body}");
        body
    };
    let calls = get("/v1/calls?limit=200");
    let transcripts: Vec<Value> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            get(&format!(
                "/v1/calls/{}/transcript",
                c["id"].as_str().unwrap()
            ))
        })
        .collect();
    json!({"calls": calls, "transcripts": transcripts, "agent": get("/v1/agent"),
           "tokens": get("/v1/tokens"), "numbers": get("/v1/numbers")})
}

#[test]
fn backup_remove_restore_round_trips_and_a_shred_makes_every_backup_unreadable() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100", "+15550101"]);
    let (port, token) = api_of(&clinic);
    let agent = json!({"greeting": format!("Welcome, {NEEDLE}.")}).to_string();
    assert_eq!(
        http_request(port, "PUT", "/v1/agent", Some(token), &[], &agent).0,
        200
    );
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 3, "u1");
    assert!(ok, "{out}");
    settled_calls(port, token);
    let before = snapshot(port, token);
    // The admin's settings that live in the registry come back too.
    sup.cli_json(&[
        "tenant",
        "limits",
        "clinic",
        "calls_per_second=7",
        "retention_days=400",
    ]);
    sup.cli_json(&["tenant", "trunk", "clinic", "198.51.100.0/24"]);
    sup.cli_json(&["egress", "add", "clinic", "api.example.com:443"]);

    let file = sup.dir.path().join("clinic.backup");
    let done = sup.cli_json(&[
        "tenant",
        "backup",
        "clinic",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(done["tenant"], "clinic");
    let bytes = std::fs::read(&file).unwrap();
    let header: Value = serde_json::from_slice(bytes[..4096].trim_ascii_end()).unwrap();
    assert_eq!(
        (header["tenant"].as_str(), header["key_version"].as_u64()),
        (Some("clinic"), Some(1))
    );
    assert!(
        !bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE.as_bytes()),
        "plaintext in the backup"
    );
    let again = sup.cli(&[
        "tenant",
        "backup",
        "clinic",
        "--out",
        file.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(1), "a backup never overwrites");

    // A restore over a tenant that exists is refused.
    let busy = sup.cli(&[
        "tenant",
        "restore",
        "clinic",
        "--from",
        file.to_str().unwrap(),
    ]);
    assert_eq!(busy.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&busy.stderr).contains("exists"));

    // Remove (keeping the key), restore: the same records, tokens,
    // configuration, numbers and ports.
    sup.cli_json(&["tenant", "remove", "clinic"]);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "removed"
    );
    let restored = sup.cli_json(&[
        "tenant",
        "restore",
        "clinic",
        "--from",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        restored["tenant"]["http_port"].as_u64(),
        Some(u64::from(port)),
        "{restored}"
    );
    assert_eq!(restored["tenant"]["state"], "running");
    assert_eq!(snapshot(port, token), before, "the restored tenant differs");
    let shown = &restored["tenant"];
    assert_eq!(shown["limits"]["calls_per_second"], 7, "{shown}");
    assert_eq!(shown["limits"]["retention_days"], 400, "{shown}");
    assert_eq!(shown["trunk_allow"], json!(["198.51.100.0/24"]), "{shown}");
    let egress = sup.cli_json(&["egress", "list", "clinic"]);
    assert_eq!(egress["egress"][0]["host"], "api.example.com", "{egress}");
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550101", 1, "u1");
    assert!(ok, "the restored tenant takes calls on its numbers: {out}");

    // A backup of another tenant id needs saying so; then it is a copy.
    let refused = sup.cli(&[
        "tenant",
        "restore",
        "copy",
        "--from",
        file.to_str().unwrap(),
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--accept-other-tenant"));

    // A damaged backup is refused before anything is made.
    let damaged = sup.dir.path().join("damaged.backup");
    let mut bad = bytes.clone();
    let last = bad.len() - 100;
    bad[last] ^= 0x40;
    std::fs::write(&damaged, bad).unwrap();
    sup.cli_json(&["tenant", "remove", "clinic"]);
    let out = sup.cli(&[
        "tenant",
        "restore",
        "clinic",
        "--from",
        damaged.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("damaged"));

    // Shredded: no key opens the backup any more, and the restore says why.
    sup.cli_json(&[
        "tenant",
        "restore",
        "clinic",
        "--from",
        file.to_str().unwrap(),
    ]);
    sup.cli_json(&["tenant", "remove", "clinic", "--shred"]);
    let out = sup.cli(&[
        "tenant",
        "restore",
        "clinic",
        "--from",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--shred") && err.contains("never be read"),
        "{err}"
    );
    assert!(
        sup.cli(&["tenant", "show", "clinic"]).status.code() == Some(1),
        "nothing was made"
    );
    let history = sup.cli_json(&["history"]).to_string();
    assert!(history.contains("tenant.backup") && history.contains("tenant.restore"));
}

#[test]
fn a_backup_taken_while_calls_run_is_consistent_and_costs_no_call() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    let dir = sup.dir.path().to_owned();
    let target = sup.sip;
    let load = std::thread::spawn(move || sipp_uac_at(&dir, target, "+15550100", 40, 20, "u1"));
    std::thread::sleep(Duration::from_millis(700));
    let file = sup.dir.path().join("live.backup");
    sup.cli_json(&[
        "tenant",
        "backup",
        "clinic",
        "--out",
        file.to_str().unwrap(),
    ]);
    let (ok, out) = load.join().unwrap();
    assert!(ok, "a call failed during the backup: {out}");
    let after = settled_calls(port, token).len();
    assert_eq!(after, 40);
    // Restored as a copy beside the original: a snapshot from mid-load, so
    // some of the calls, each whole (calls cut by the snapshot are failed).
    let copy = sup.cli_json(&[
        "tenant",
        "restore",
        "copy",
        "--from",
        file.to_str().unwrap(),
        "--accept-other-tenant",
    ]);
    assert!(copy["notes"].to_string().contains("+15550100"), "{copy}");
    let copy_port = copy["tenant"]["http_port"].as_u64().unwrap() as u16;
    let calls = settled_calls(copy_port, token);
    assert!(!calls.is_empty() && calls.len() <= 40, "{}", calls.len());
    for c in &calls {
        assert!(
            ["completed", "failed"].contains(&c["outcome"].as_str().unwrap()),
            "{c}"
        );
    }
}

#[test]
fn a_restored_tenant_serves_https_with_its_certificate_and_says_so() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    let dir = sup.dir.path();
    let cert = rcgen::generate_simple_self_signed(vec!["clinic.test".to_owned()]).unwrap();
    let (crt, key) = (dir.join("c.crt"), dir.join("c.key"));
    std::fs::write(&crt, cert.cert.pem()).unwrap();
    std::fs::write(&key, cert.key_pair.serialize_pem()).unwrap();
    let set = sup.cli_json(&[
        "tenant",
        "tls",
        "clinic",
        "--cert",
        crt.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
    ]);
    let file = dir.join("tls.backup");
    sup.cli_json(&[
        "tenant",
        "backup",
        "clinic",
        "--out",
        file.to_str().unwrap(),
    ]);
    sup.cli_json(&["tenant", "remove", "clinic"]);
    let restored = sup.cli_json(&[
        "tenant",
        "restore",
        "clinic",
        "--from",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        restored["tenant"]["tls_fingerprint"], set["tls_fingerprint"],
        "{restored}"
    );
    let (ok, body) = curl_https(port, &crt, "/v1/numbers", token);
    assert!(ok && body.contains("+15550100"), "{body}");
}
