//! `tenant rotate-key`: the store re-encrypted under a new data key while
//! calls run, no call lost; a crash of the supervisor or the worker at each
//! step leaves a tenant that opens and a registry that knows its key; older
//! backups still restore, unless the rotation forgot the old keys.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const NEEDLE: &str = "needle-rotation-8812";

/// Whether `key` opens the tenant's store file in either store format
/// (read as root, like an attacker holding an old key would).
fn key_opens_store(sup: &Supervisor, id: &str, key: &[u8]) -> bool {
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let path = sup.state_dir().join("tenants").join(id).join("tenant.db");
    ["HMAC_SHA256", "HMAC_SHA512"].iter().any(|hmac| {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA key = \"x'{hex}'\"; PRAGMA cipher_hmac_algorithm = {hmac};"
        ))
        .unwrap();
        conn.query_row("SELECT count(*) FROM calls", [], |r| r.get::<_, i64>(0))
            .is_ok()
    })
}

fn pending_rotations(sup: &Supervisor) -> i64 {
    let conn = rusqlite::Connection::open(sup.state_dir().join("registry.db")).unwrap();
    conn.query_row("SELECT count(*) FROM pending_keys", [], |r| r.get(0))
        .unwrap()
}

/// Tenant `clinic`, whose agent document holds [`NEEDLE`].
fn clinic_with_agent(sup: &Supervisor) -> Value {
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    let agent = json!({"greeting": format!("Welcome, {NEEDLE}.")}).to_string();
    assert_eq!(
        http_request(port, "PUT", "/v1/agent", Some(token), &[], &agent).0,
        200
    );
    clinic
}

#[test]
fn rotation_under_a_call_load_loses_no_call_and_only_the_new_key_opens_the_store() {
    let sup = Supervisor::start();
    let clinic = clinic_with_agent(&sup);
    let (port, token) = api_of(&clinic);
    // Some 12 MB, so the copy takes a while beside the calls.
    seed_calls(&sup, "clinic", 6000, 2000);
    let old_key = data_key_of(&sup, "clinic");
    let before = sup.dir.path().join("before.backup");
    sup.cli_json(&[
        "tenant",
        "backup",
        "clinic",
        "--out",
        before.to_str().unwrap(),
    ]);

    let dir = sup.dir.path().to_owned();
    let target = sup.sip;
    let load = std::thread::spawn(move || sipp_uac_at(&dir, target, "+15550100", 40, 20, "u1"));
    std::thread::sleep(Duration::from_millis(700));
    let rotated = sup.cli_json(&["tenant", "rotate-key", "clinic"]);
    eprintln!(
        "rotation: {rotated}; load still running: {}",
        !load.is_finished()
    );
    let (ok, out) = load.join().unwrap();
    assert!(ok, "a call failed during the rotation: {out}");

    assert_eq!(rotated["key_version"], 2, "{rotated}");
    assert_eq!(rotated["old_keys"], "retired", "{rotated}");
    assert!(
        rotated["store_bytes"].as_u64().unwrap() > 10_000_000,
        "{rotated}"
    );
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["key_version"], 2);
    assert_eq!(
        shown["pid"], clinic["pid"],
        "online: the same worker serves"
    );
    let new_key = data_key_of(&sup, "clinic");
    assert_ne!(new_key, old_key);
    assert!(key_opens_store(&sup, "clinic", &new_key));
    assert!(
        !key_opens_store(&sup, "clinic", &old_key),
        "the old key still opens the store"
    );
    assert_eq!(pending_rotations(&sup), 0);
    assert!(!sup
        .state_dir()
        .join("tenants/clinic/tenant.db.rekey")
        .exists());

    // Every record readable after: the 40 calls of the load and the seeded ones.
    let (status, page) = http_get(
        port,
        "/v1/calls?limit=200&number=%2B15551234567",
        Some(token),
    );
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["calls"].as_array().unwrap().len(), 200);
    let calls = settled_calls(port, token);
    let placed = calls
        .iter()
        .filter(|c| !c["id"].as_str().unwrap().starts_with("call_seed_"));
    assert_eq!(placed.count(), 40, "calls of the load");
    let (_, doc) = http_get(port, "/v1/agent", Some(token));
    assert!(doc.to_string().contains(NEEDLE));
    let (status, turns) = http_get(port, "/v1/calls/call_seed_5999/transcript", Some(token));
    assert_eq!(status, 200, "{turns}");

    // No key in the log, hex or otherwise, and none in the history.
    let hex: String = new_key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(!sup.log().contains(&hex));
    let history = sup.cli_json(&["history", "--verify"]);
    assert!(
        history.to_string().contains("tenant.rotate-key"),
        "{history}"
    );

    // A backup made before the rotation still restores (its key is
    // retired, kept wrapped); one made after names version 2.
    let after = sup.dir.path().join("after.backup");
    let done = sup.cli_json(&[
        "tenant",
        "backup",
        "clinic",
        "--out",
        after.to_str().unwrap(),
    ]);
    assert_eq!(done["key_version"], 2);
    sup.cli_json(&["tenant", "remove", "clinic"]);
    let restored = sup.cli_json(&[
        "tenant",
        "restore",
        "clinic",
        "--from",
        before.to_str().unwrap(),
    ]);
    assert_eq!(restored["tenant"]["key_version"], 1, "{restored}");
    let (_, doc) = http_get(port, "/v1/agent", Some(token));
    assert!(doc.to_string().contains(NEEDLE));
}

#[test]
fn forget_old_makes_every_earlier_backup_unrestorable() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    let first = sup.dir.path().join("v1.backup");
    sup.cli_json(&[
        "tenant",
        "backup",
        "clinic",
        "--out",
        first.to_str().unwrap(),
    ]);
    sup.cli_json(&["tenant", "rotate-key", "clinic"]);
    let second = sup.dir.path().join("v2.backup");
    sup.cli_json(&[
        "tenant",
        "backup",
        "clinic",
        "--out",
        second.to_str().unwrap(),
    ]);
    let rotated = sup.cli_json(&["tenant", "rotate-key", "clinic", "--forget-old"]);
    assert_eq!(
        (
            rotated["key_version"].as_u64(),
            rotated["old_keys"].as_str()
        ),
        (Some(3), Some("forgotten"))
    );
    assert_eq!(http_get(port, "/v1/numbers", Some(token)).0, 200);
    sup.cli_json(&["tenant", "remove", "clinic"]);
    for old in [&first, &second] {
        let out = sup.cli(&[
            "tenant",
            "restore",
            "clinic",
            "--from",
            old.to_str().unwrap(),
        ]);
        assert_eq!(out.status.code(), Some(1), "{}", old.display());
        assert!(String::from_utf8_lossy(&out.stderr).contains("never be read"));
    }
    // The registry keeps one key of clinic's: the removal's own, none older.
    let conn = rusqlite::Connection::open(sup.state_dir().join("registry.db")).unwrap();
    let retired: i64 = conn
        .query_row(
            "SELECT count(*) FROM retired_keys WHERE id = 'clinic'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(retired, 1, "only the key of the removal itself");
}

/// (step, which process crashes, whether the rotation took effect)
const STEPS: [(&str, bool, bool); 4] = [
    ("rotate-key-pending", true, false),
    ("rekey-exported", false, false),
    ("rekey-renamed", false, true),
    ("rotate-key-swapped", true, true),
];

#[test]
fn a_crash_at_each_step_leaves_a_tenant_that_opens_and_a_registry_that_knows_its_key() {
    let mut sup = Supervisor::start();
    let clinic = clinic_with_agent(&sup);
    let (port, token) = api_of(&clinic);
    seed_calls(&sup, "clinic", 300, 500);
    let mut version = 1;
    for (step, supervisor_crashes, takes_effect) in STEPS {
        let key_before = data_key_of(&sup, "clinic");
        let pid = sup.cli_json(&["tenant", "show", "clinic"])["pid"]
            .as_u64()
            .unwrap();
        sup.stop();
        sup.env = vec![("BULKHEAD_CRASH_AT".into(), step.into())];
        sup.boot();
        let pid = back_up(&sup, "clinic", pid)["pid"].as_u64().unwrap();
        let out = sup.cli(&["tenant", "rotate-key", "clinic"]);
        assert!(
            !out.status.success(),
            "{step}: the rotation should have crashed"
        );
        if supervisor_crashes {
            sup.stop();
            assert_eq!(pending_rotations(&sup), 1, "{step}");
            sup.env.clear();
            sup.boot();
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("interrupted"), "{step}: {err}");
        }
        // The worker's start settles the rotation by which key opens the store.
        let shown = back_up(&sup, "clinic", pid);
        if takes_effect {
            version += 1;
        }
        assert_eq!(shown["key_version"], version, "{step}: {shown}");
        assert_eq!(pending_rotations(&sup), 0, "{step}");
        let key = data_key_of(&sup, "clinic");
        assert_eq!(key != key_before, takes_effect, "{step}");
        assert!(key_opens_store(&sup, "clinic", &key), "{step}");
        assert!(
            !sup.state_dir()
                .join("tenants/clinic/tenant.db.rekey")
                .exists(),
            "{step}"
        );
        let (_, doc) = http_get(port, "/v1/agent", Some(token));
        assert!(doc.to_string().contains(NEEDLE), "{step}: {doc}");
        let (status, page): (u16, Value) = http_get(port, "/v1/calls?limit=200", Some(token));
        assert_eq!(
            (status, page["calls"].as_array().map(Vec::len)),
            (200, Some(200)),
            "{step}"
        );
        if !supervisor_crashes {
            sup.stop();
            sup.env.clear();
            sup.boot();
        }
    }
    // And a rotation with nothing in the way completes afterwards.
    let pid = back_up(&sup, "clinic", 0)["pid"].as_u64().unwrap();
    let rotated = sup.cli_json(&["tenant", "rotate-key", "clinic"]);
    assert_eq!(rotated["key_version"], version + 1);
    assert_eq!(sup.cli_json(&["tenant", "show", "clinic"])["pid"], pid);
}

/// Rotation, backup and restore of a large store through the CLI, each
/// beside a plain `cp` of the same file in the same run (this disk's own
/// speed). Run by `scripts/bench` as
///   cargo test --release -p bulkhead-supervisor --test key_rotation key_lifecycle_bench -- --ignored --nocapture
/// with BENCH_STORE_MB (default 1024) and BENCH_RUNS (default 3).
#[test]
#[ignore = "benchmark: run by scripts/bench in release"]
fn key_lifecycle_bench() {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (mb, runs) = (env("BENCH_STORE_MB", 1024), env("BENCH_RUNS", 3));
    let sup = Supervisor::start();
    sup.add_tenant("clinic", &["+15550100"]);
    // 4 KiB of transcript per call: about 4.3 KB of store each.
    let t0 = std::time::Instant::now();
    seed_calls(&sup, "clinic", mb * 1024 * 1024 / 4400, 4096);
    let store = sup.state_dir().join("tenants/clinic/tenant.db");
    let bytes = std::fs::metadata(&store).unwrap().len();
    let gb = bytes as f64 / 1e9;
    eprintln!("seeded {:.2} GB in {:.0} s", gb, t0.elapsed().as_secs_f64());
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let timed = |f: &mut dyn FnMut()| {
        let t = std::time::Instant::now();
        f();
        t.elapsed().as_secs_f64()
    };
    let (mut rotate, mut backup, mut restore, mut copy) = (vec![], vec![], vec![], vec![]);
    for run in 0..runs {
        let scratch = sup.dir.path().join("copy.db");
        copy.push(timed(&mut || {
            let mut from = std::fs::File::open(&store).unwrap();
            let mut to = std::fs::File::create(&scratch).unwrap();
            std::io::copy(&mut from, &mut to).unwrap();
            to.sync_all().unwrap();
        }));
        std::fs::remove_file(&scratch).unwrap();
        rotate.push(timed(&mut || {
            sup.cli_json(&["tenant", "rotate-key", "clinic", "--forget-old"]);
        }));
        let file = sup.dir.path().join(format!("bench-{run}.backup"));
        backup.push(timed(&mut || {
            sup.cli_json(&[
                "tenant",
                "backup",
                "clinic",
                "--out",
                file.to_str().unwrap(),
            ]);
        }));
        sup.cli_json(&["tenant", "remove", "clinic"]);
        restore.push(timed(&mut || {
            sup.cli_json(&[
                "tenant",
                "restore",
                "clinic",
                "--from",
                file.to_str().unwrap(),
            ]);
        }));
        std::fs::remove_file(&file).unwrap();
    }
    let shown = sup.cli_json(&["tenant", "show", "clinic"]);
    assert_eq!(shown["state"], "running");
    let (c, r, b, s) = (
        median(copy),
        median(rotate),
        median(backup),
        median(restore),
    );
    let mbs = |secs: f64| bytes as f64 / 1e6 / secs;
    println!("key lifecycle: {:.2} GB store, median of {runs} runs", gb);
    println!("| operation | seconds | MB/s | s per GB | ÷ plain copy time |");
    println!("|---|---|---|---|---|");
    for (name, secs) in [
        ("plain copy of the store file (read, write, fsync)", c),
        ("`tenant rotate-key`", r),
        ("`tenant backup`", b),
        ("`tenant restore` (returns once serving)", s),
    ] {
        println!(
            "| {name} | {secs:.2} | {:.0} | {:.1} | {:.2} |",
            mbs(secs),
            secs / gb,
            secs / c
        );
    }
}
