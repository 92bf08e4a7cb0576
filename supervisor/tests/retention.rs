//! Retention (`limits.retention_days`): the worker deletes call records and
//! transcripts older than the tenant's setting as soon as the admin sets
//! it, keeps recent ones, and keeps doing so across a restart.

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::*;

#[test]
fn records_past_the_tenants_retention_are_deleted_live() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 1, "u1");
    assert!(ok, "{out}");
    assert_eq!(settled_calls(port, token).len(), 1);

    // Three finished calls from 40 days ago, with transcripts, written into
    // the tenant's encrypted store with its key.
    let old = bulkhead_shared::time::rfc3339(SystemTime::now() - Duration::from_secs(40 * 86_400));
    let conn = open_tenant_store(&sup, "clinic");
    for i in 0..3 {
        let id = format!("call_old_{i}");
        conn.execute(
            "INSERT INTO calls (id, call_id, from_user, to_number, started_at, ended_at, outcome)
             VALUES (?1, ?2, '+15551234567', '+15550100', ?3, ?3, 'completed')",
            rusqlite::params![id, format!("old-{i}@x"), old],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO turns (call, n, speaker, text, at_ms) VALUES (?1, 1, 'caller', 'last month', 0)",
            [&id],
        )
        .unwrap();
    }
    drop(conn);
    assert_eq!(settled_calls(port, token).len(), 4);
    assert_eq!(
        http_get(port, "/v1/calls/call_old_0/transcript", Some(token)).0,
        200
    );

    // 60 days keeps them; 30 days deletes them, at once, in the same worker.
    sup.cli_json(&["tenant", "limits", "clinic", "retention_days=60"]);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(settled_calls(port, token).len(), 4);
    let shown = sup.cli_json(&["tenant", "limits", "clinic", "retention_days=30"]);
    assert_eq!(shown["limits"]["retention_days"], 30, "{shown}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut calls = settled_calls(port, token);
    while calls.len() > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        calls = settled_calls(port, token);
    }
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(!calls[0]["id"].as_str().unwrap().starts_with("call_old"));
    assert_eq!(
        http_get(port, "/v1/calls/call_old_0/transcript", Some(token)).0,
        404
    );
    // The transcript rows went too, not only the calls.
    let conn = open_tenant_store(&sup, "clinic");
    let turns: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM turns WHERE call LIKE 'call_old_%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(turns, 0);
    assert_eq!(
        sup.cli_json(&["tenant", "show", "clinic"])["pid"].as_u64(),
        clinic["pid"].as_u64(),
        "no restart"
    );

    // A bad value changes nothing and names the key.
    let bad = sup.cli(&["tenant", "limits", "clinic", "retention_days=99999"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("retention_days"));
}
