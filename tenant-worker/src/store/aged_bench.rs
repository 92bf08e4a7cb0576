//! A call's writes against a store that already holds months of calls
//! (#9, BENCHMARKS.md). The insert benchmark (bench.rs) starts from an
//! empty store, where every page is in the writer's cache; an aged store's
//! indexes are far larger than that cache, so where a new call's keys land
//! decides how many pages each commit must read (and, under SQLCipher,
//! decrypt and check) before it writes. It fills four stores, plain SQLite
//! and SQLCipher, each with random record ids (as made before) and with the
//! time-first ids the user agent makes now, with BENCH_AGED_CALLS calls
//! (50,000) of 6 turns each. Each run opens a fresh copy of one and times
//! BENCH_AGED_NEW calls (1,000), K = BENCH_K (4) at once, each writing as
//! the user agent does: its record (durable), 6 turns, its end (durable).
//! `scripts/bench` runs it with 100,000 calls as
//!   cargo test --release -p bulkhead-worker aged_store_bench -- --ignored --nocapture

use std::path::Path;
use std::time::Instant;

use rusqlite::{params, Connection};

use super::bench::calls_per_second;
use super::test_util::{env, plain, store_in};
use super::writer::Write;
use super::{Format, NewCall, Outcome, Turn};

const KEY: [u8; 32] = [9; 32];

/// How a run names its calls.
#[derive(Clone, Copy, Debug)]
enum Ids {
    /// 80 random bits, as record ids were made before time-first ids.
    Random,
    /// The user agent's ids: the start time first, then random bits.
    TimeFirst,
}

impl Ids {
    /// The id of a call that started at `at_ms`.
    fn id(self, at_ms: u64) -> String {
        match self {
            Ids::Random => {
                let mut b = [0u8; 10];
                getrandom::getrandom(&mut b).unwrap();
                format!(
                    "call_{}",
                    b.iter().map(|b| format!("{b:02x}")).collect::<String>()
                )
            }
            Ids::TimeFirst => crate::sip::ua::ids::record_id_at(at_ms),
        }
    }
}

const T0_MS: u64 = 1_780_000_000_000;

fn fill(conn: &Connection, ids: Ids, calls: u64) {
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut call = tx
            .prepare("INSERT INTO calls (id, call_id, from_user, to_number, started_at, outcome, ended_at, duration_ms) VALUES (?1, ?2, ?3, '+15552223333', '2026-01-01T00:00:00Z', 'completed', '2026-01-01T00:01:00Z', 60000)")
            .unwrap();
        let mut turn = tx
            .prepare(
                "INSERT INTO turns (call, n, speaker, text, at_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .unwrap();
        for n in 0..calls {
            // Calls a minute apart on average, as a busy tenant's are.
            let id = ids.id(T0_MS + n * 60_000);
            call.execute(params![
                id,
                format!("{n}@aged.invalid"),
                format!("+1555{:07}", n % 9973)
            ])
            .unwrap();
            for t in 1..=6 {
                let speaker = if t % 2 == 1 { "agent" } else { "caller" };
                turn.execute(params![id, t, speaker, TEXT, t * 4000])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

const TEXT: &str = "Thanks for calling, I can help you book, move or cancel an appointment today.";

/// Calls written per second, `concurrent` at a time, the first starting at
/// `first_ms`.
fn run(
    writer: Connection,
    reader: Connection,
    ids: Ids,
    concurrent: usize,
    total: usize,
    first_ms: u64,
) -> f64 {
    calls_per_second(
        writer,
        reader,
        concurrent,
        total,
        move |store, n| async move {
            let n = 1_000_000 + n as u64;
            let id = ids.id(first_ms + n);
            let call = NewCall {
                id: id.clone(),
                call_id: format!("{n}@new.invalid"),
                from: format!("+1555{:07}", n % 9973),
                to: "+15552223333".into(),
                started_at: "2026-11-29T03:00:00Z".into(),
            };
            store.write_durable(Write::InsertCall(call)).await.unwrap();
            for t in 1..=6 {
                let turn = Turn {
                    speaker: "agent".into(),
                    text: TEXT.into(),
                    at_ms: t * 4000,
                    latency_ms: None,
                };
                let call = id.clone();
                store.write(Write::Turn { call, turn }).await;
            }
            let end = Write::Ended {
                id,
                at: "2026-11-29T03:01:00Z".into(),
                outcome: Outcome::Completed,
                duration_ms: 60_000,
            };
            store.write_durable(end).await.unwrap();
        },
    )
}

#[test]
#[ignore = "a benchmark: scripts/bench runs it in release mode"]
fn aged_store_bench() {
    let aged = env("BENCH_AGED_CALLS", 50_000u64);
    let new = env("BENCH_AGED_NEW", 1000usize);
    let k = env("BENCH_K", 4usize);
    let rounds = env("BENCH_ROUNDS", 3usize);
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let filled = |p: &Path, cipher: bool, ids: Ids| {
        if cipher {
            store_in(p, &KEY, Format::CURRENT);
            fill(&super::open(p, &KEY).unwrap(), ids, aged);
        } else {
            fill(&plain(p), ids, aged);
        }
    };
    let kinds = [
        (false, Ids::Random),
        (true, Ids::Random),
        (false, Ids::TimeFirst),
        (true, Ids::TimeFirst),
    ];
    let t = Instant::now();
    for (cipher, ids) in kinds {
        filled(&path(&format!("{cipher}-{ids:?}.db")), cipher, ids);
    }
    let mib = |cipher: bool, ids: Ids| {
        let p = path(&format!("{cipher}-{ids:?}.db"));
        std::fs::metadata(p).unwrap().len() as f64 / (1 << 20) as f64
    };
    println!(
        "filled 4 stores of {aged} calls in {:.1} s; SQLCipher files: random ids {:.1} MiB, time first {:.1} MiB",
        t.elapsed().as_secs_f64(),
        mib(true, Ids::Random),
        mib(true, Ids::TimeFirst)
    );
    let mut rates = vec![vec![]; kinds.len()];
    for round in 0..rounds {
        for i in 0..kinds.len() {
            let which = (round + i) % kinds.len();
            let (cipher, ids) = kinds[which];
            let src = path(&format!("{cipher}-{ids:?}.db"));
            let p = path(&format!("run-{round}-{which}.db"));
            // A fresh copy for each run, opened as a restarted worker opens
            // its store: SQLite's page cache empty, the kernel's warm.
            std::fs::copy(&src, &p).unwrap();
            let (w, r) = if cipher {
                (
                    super::open(&p, &KEY).unwrap(),
                    super::open(&p, &KEY).unwrap(),
                )
            } else {
                (plain(&p), plain(&p))
            };
            // The new calls start after the last aged one.
            rates[which].push(run(w, r, ids, k, new, T0_MS + aged * 60_000));
            std::fs::remove_file(&p).unwrap();
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| ids | plain SQLite, calls/s | SQLCipher, calls/s | SQLCipher / plain |");
    println!("|---|---|---|---|");
    for (row, name) in [(0, "random"), (2, "time first")] {
        let (p, c) = (
            median(&mut rates[row].clone()),
            median(&mut rates[row + 1].clone()),
        );
        println!("| {name} | {p:.0} | {c:.0} | {:.2} |", c / p);
    }
    println!("aged store: {aged} calls of 6 turns each, then {new} new calls, {k} at once, median of {rounds} rounds");
    println!("runs (calls/s; plain random, SQLCipher random, plain time first, SQLCipher time first): {rates:.0?}");
}
