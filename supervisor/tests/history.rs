//! `bulkhead history`: every admin action with its peer uid and result,
//! hash-chained in the registry; `--verify` finds an edited or deleted
//! entry and names it. No secret given to an action reaches the history.

mod common;

use common::*;
use serde_json::Value;

fn actions(history: &Value) -> Vec<(String, String, String)> {
    history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
                e["result"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn tamper(sup: &Supervisor, sql: &str) {
    let conn = rusqlite::Connection::open(sup.state_dir().join("registry.db")).unwrap();
    assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql}");
}

#[test]
fn admin_actions_are_recorded_chained_and_tampering_is_named() {
    let mut sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    sup.cli_json(&["number", "add", "clinic", "+15550101"]);
    let secret = "trunk-password-7f3a";
    let file = sup.dir.path().join("trunk.pw");
    std::fs::write(&file, secret).unwrap();
    sup.cli_json(&[
        "tenant",
        "trunk-auth",
        "clinic",
        "--username",
        "carrier",
        "--password-file",
        file.to_str().unwrap(),
    ]);
    // A refused action is recorded with the error the admin saw.
    assert_eq!(
        sup.cli(&["tenant", "remove", "nobody"]).status.code(),
        Some(1)
    );
    sup.add_tenant("insurance", &["+15550200"]);
    sup.cli_json(&["tenant", "remove", "insurance", "--shred"]);
    // Reads are not actions.
    sup.cli_json(&["tenant", "list"]);

    let history = sup.cli_json(&["history"]);
    let got = actions(&history);
    let want = [
        ("tenant.add", "clinic"),
        ("number.add", "clinic +15550101"),
        ("tenant.trunk-auth", "clinic"),
        ("tenant.remove", "nobody"),
        ("tenant.add", "insurance"),
        ("tenant.shred", "insurance"),
    ];
    assert_eq!(got.len(), want.len(), "{got:?}");
    for ((action, target, result), (wa, wt)) in got.iter().zip(want) {
        assert_eq!((action.as_str(), target.as_str()), (wa, wt), "{got:?}");
        if *target == "nobody" {
            assert!(
                result.starts_with("error: ") && result.contains("nobody"),
                "{result}"
            );
        } else {
            assert_eq!(result, "ok");
        }
    }
    for e in history["events"].as_array().unwrap() {
        assert_eq!(e["peer_uid"], 0, "the tests run as root: {e}");
        assert_eq!(e["hash"].as_str().unwrap().len(), 64);
    }
    assert!(!history.to_string().contains(secret));
    let verified = sup.cli(&["history", "--verify"]);
    assert!(verified.status.success());
    assert!(String::from_utf8_lossy(&verified.stdout).contains("6 entries, chain intact"));

    // Edit one entry while the supervisor is down: --verify names it.
    sup.stop();
    tamper(
        &sup,
        "UPDATE history SET target = 'insurance' WHERE seq = 2",
    );
    sup.boot();
    let out = sup.cli(&["history", "--verify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("entry 2") && err.contains("edited"), "{err}");
    let json = sup.cli(&["history", "--verify", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["broken"]["seq"], 2);

    // Put it back, then cut the last entry: history.head still names it.
    sup.stop();
    tamper(
        &sup,
        "UPDATE history SET target = 'clinic +15550101' WHERE seq = 2",
    );
    tamper(&sup, "DELETE FROM history WHERE seq = 6");
    sup.boot();
    let out = sup.cli(&["history", "--verify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("entry 6") && err.contains("deleted"), "{err}");

    // Delete one from the middle: the entry after the gap is named.
    sup.stop();
    tamper(&sup, "DELETE FROM history WHERE seq = 4");
    sup.boot();
    let out = sup.cli(&["history", "--verify"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("entry 5") && err.contains("deleted"), "{err}");
}
