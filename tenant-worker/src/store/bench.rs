//! Call-record insert throughput through the store's writer thread (group
//! commit), SQLCipher against plain SQLite with the same schema and
//! settings, in the same run (#9, BENCHMARKS.md): a store in the current
//! format and one in the older, HMAC-SHA512 one. `K` calls at once each
//! insert their record and wait for its commit, as the user agent does
//! before it sends 180; with K = 1 every record is its own commit. Run by
//! `scripts/bench` as
//!   cargo test --release -p bulkhead-worker insert_throughput_bench -- --ignored --nocapture
//! with BENCH_INSERTS (2000 per run), BENCH_ROUNDS (3) and BENCH_K (the
//! K values, comma-separated; 1,8,64).

use std::time::Instant;

use rusqlite::Connection;

use super::test_util::{env, plain, store_in};
use super::writer::{Store, Write};
use super::{Format, NewCall};

const KEY: [u8; 32] = [7; 32];

/// Calls per second through the store's writer: `concurrent` tasks on a
/// current-thread runtime (as in a worker) make `total` calls between
/// them, call `n` (0..total) being `one_call(store, n)`.
pub(super) fn calls_per_second<F, Fut>(
    writer: Connection,
    reader: Connection,
    concurrent: usize,
    total: usize,
    one_call: F,
) -> f64
where
    F: Fn(Store, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let (store, handle) = Store::start(writer, reader);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let per = total / concurrent;
    let started = Instant::now();
    rt.block_on(async {
        let tasks: Vec<_> = (0..concurrent)
            .map(|k| {
                let (store, one_call) = (store.clone(), one_call.clone());
                tokio::spawn(async move {
                    for i in 0..per {
                        one_call(store.clone(), k * per + i).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
    });
    let seconds = started.elapsed().as_secs_f64();
    drop(store);
    drop(rt);
    handle.join().unwrap();
    (per * concurrent) as f64 / seconds
}

/// Records committed per second, each awaited until committed.
fn throughput(writer: Connection, reader: Connection, concurrent: usize, total: usize) -> f64 {
    calls_per_second(writer, reader, concurrent, total, |store, n| async move {
        let call = NewCall {
            id: format!("call-{n}"),
            call_id: format!("{n}@bench.invalid"),
            from: "+15550001111".into(),
            to: "+15552223333".into(),
            started_at: "2026-11-29T03:00:00Z".into(),
        };
        store.write_durable(Write::InsertCall(call)).await.unwrap();
    })
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
    println!("| calls at once (K) | plain SQLite, records/s | SQLCipher, records/s | SQLCipher / plain | older format (HMAC-SHA512) / plain |");
    println!("|---|---|---|---|---|");
    let ks: Vec<usize> = std::env::var("BENCH_K")
        .ok()
        .map(|v| v.split(',').filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 8, 64]);
    for concurrent in ks {
        let (mut p, mut c, mut ratio, mut older) = (vec![], vec![], vec![], vec![]);
        for round in 0..rounds {
            let path = |kind: &str| dir.path().join(format!("{kind}-{concurrent}-{round}.db"));
            let run_plain = || {
                let path = path("plain");
                throughput(plain(&path), plain(&path), concurrent, total)
            };
            let run_cipher = |format: Format| {
                let path = path(&format!("{format:?}"));
                store_in(&path, &KEY, format);
                let w = super::open(&path, &KEY).unwrap();
                let r = super::open(&path, &KEY).unwrap();
                throughput(w, r, concurrent, total)
            };
            // Rotate which runs first, so drift on a shared machine
            // touches all alike.
            let mut rates = [0.0; 3];
            for i in 0..3 {
                let which = (round + i) % 3;
                rates[which] = match which {
                    0 => run_plain(),
                    1 => run_cipher(Format::CURRENT),
                    _ => run_cipher(Format::HmacSha512),
                };
            }
            p.push(rates[0]);
            c.push(rates[1]);
            ratio.push(rates[1] / rates[0]);
            older.push(rates[2] / rates[0]);
        }
        println!(
            "| {concurrent} | {:.0} | {:.0} | {:.2} | {:.2} |",
            median(p),
            median(c),
            median(ratio),
            median(older)
        );
    }
    println!("inserts: {total} per run, median of {rounds} rounds");
}
