//! Call-record insert throughput through the store's writer thread (group
//! commit), SQLCipher against plain SQLite with the same schema and
//! settings, in the same run (#9, BENCHMARKS.md). `K` calls at once each
//! insert their record and wait for its commit, as the user agent does
//! before it sends 180; with K = 1 every record is its own commit. Run by
//! `scripts/bench` as
//!   cargo test --release -p bulkhead-worker insert_throughput_bench -- --ignored --nocapture
//! with BENCH_INSERTS (2000 per run) and BENCH_ROUNDS (3).

use std::time::Instant;

use rusqlite::Connection;

use super::test_util::{env, plain};
use super::writer::{Store, Write};
use super::NewCall;

const KEY: [u8; 32] = [7; 32];

/// Records committed per second: `concurrent` callers on a current-thread
/// runtime (as in a worker), `total` records between them.
fn throughput(writer: Connection, reader: Connection, concurrent: usize, total: usize) -> f64 {
    let (store, handle) = Store::start(writer, reader);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let per = total / concurrent;
    let started = Instant::now();
    rt.block_on(async {
        let callers: Vec<_> = (0..concurrent)
            .map(|k| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..per {
                        let call = NewCall {
                            id: format!("call-{k}-{i}"),
                            call_id: format!("{k}-{i}@bench.invalid"),
                            from: "+15550001111".into(),
                            to: "+15552223333".into(),
                            started_at: "2026-11-29T03:00:00Z".into(),
                        };
                        store.write_durable(Write::InsertCall(call)).await.unwrap();
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.unwrap();
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    drop(store);
    drop(rt);
    handle.join().unwrap();
    (per * concurrent) as f64 / seconds
}

#[test]
#[ignore = "a benchmark: scripts/bench runs it in release mode"]
fn insert_throughput_bench() {
    let total = env("BENCH_INSERTS", 2000);
    let rounds = env("BENCH_ROUNDS", 3);
    let dir = tempfile::tempdir().unwrap();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| calls at once (K) | plain SQLite, records/s | SQLCipher, records/s | SQLCipher / plain |");
    println!("|---|---|---|---|");
    for concurrent in [1, 8, 64] {
        let (mut p, mut c, mut ratio) = (vec![], vec![], vec![]);
        for round in 0..rounds {
            let plain_path = dir.path().join(format!("plain-{concurrent}-{round}.db"));
            let cipher_path = dir.path().join(format!("cipher-{concurrent}-{round}.db"));
            let run_plain =
                || throughput(plain(&plain_path), plain(&plain_path), concurrent, total);
            let run_cipher = || {
                let w = super::open(&cipher_path, &KEY).unwrap();
                let r = super::open(&cipher_path, &KEY).unwrap();
                throughput(w, r, concurrent, total)
            };
            // Alternate which runs first, so drift on a shared machine
            // touches both alike.
            let (pr, cr) = if round % 2 == 0 {
                let pr = run_plain();
                (pr, run_cipher())
            } else {
                let cr = run_cipher();
                (run_plain(), cr)
            };
            p.push(pr);
            c.push(cr);
            ratio.push(cr / pr);
        }
        println!(
            "| {concurrent} | {:.0} | {:.0} | {:.2} |",
            median(p),
            median(c),
            median(ratio)
        );
    }
    println!("inserts: {total} per run, median of {rounds} rounds");
}
