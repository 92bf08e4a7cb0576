//! `GET /v1/calls` under load with a large call log (BENCHMARKS.md), and
//! what SQLCipher costs against plain SQLite and a backup's export. The
//! real handler, store (SQLCipher, the worker's settings) and sockets, with
//! the server on its own single-threaded runtime as in a worker, and
//! keep-alive clients on loopback. Run by `scripts/bench` as
//!   cargo test --release -p bulkhead-worker calls_api_bench -- --ignored --nocapture
//! with BENCH_CALLS (100000), BENCH_SECONDS (3) and BENCH_CONNS (8).

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bulkhead_shared::api_token;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use rusqlite::{params, Connection};

use super::{ApiState, Tokens};
use crate::agent::AgentRuntime;
use crate::store::test_util::{env, plain};
use crate::store::writer::Store;
use crate::store::LiveToken;

const KEY: [u8; 32] = [9; 32];

/// `n` calls over the last 90 days: 1,000 callers, three dialed numbers,
/// outcomes 80% completed, 10% escalated, 5% abandoned, 4% rejected, 1% failed.
fn seed(conn: &Connection, n: u64) {
    let now = std::time::SystemTime::now();
    let span = Duration::from_secs(90 * 86_400);
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut insert = tx
            .prepare(
                "INSERT INTO calls (id, call_id, from_user, to_number, started_at, answered_at, ended_at,
                                    duration_ms, outcome, providers, media)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?5, 42000, ?6, ?7, ?8)",
            )
            .unwrap();
        for i in 0..n {
            let at = now - span + span.mul_f64(i as f64 / n as f64);
            let outcome = match i % 100 {
                0..=79 => "completed",
                80..=89 => "escalated",
                90..=94 => "abandoned",
                95..=98 => "rejected",
                _ => "failed",
            };
            insert
                .execute(params![
                    format!("call_{i:020x}"),
                    format!("{i}-bench@127.0.0.1"),
                    format!("+1555{:07}", i % 1000),
                    format!("+1555010{}", i % 3),
                    bulkhead_shared::time::rfc3339(at),
                    outcome,
                    r#"{"stt":"pocketsphinx","llm":"rules","tts":"espeak-ng","fallback":{}}"#,
                    r#"{"packets_sent":2100,"packets_received":2098,"inbound_lost":2,"inbound_jitter_ms":1.5}"#,
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// Serves the API on its own thread and single-threaded runtime; returns
/// its port and a token.
fn start_server(path: std::path::PathBuf) -> (u16, String) {
    let issued = api_token::issue();
    let token = issued.token.clone();
    let (port_tx, port_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let open = || crate::store::open(&path, &KEY).unwrap();
            let (store, _writer) = Store::start(open(), open());
            let live = vec![LiveToken {
                id: issued.id,
                sha256_hex: issued.sha256_hex,
                expires_at: None,
            }];
            // The benchmark measures the handler, not the request budget.
            let tokens = Tokens::with_rate(store.clone(), live, (1e9, 1e9));
            let (a, _b) = std::os::unix::net::UnixDatagram::pair().unwrap();
            let link = Arc::new(bulkhead_shared::ipc::link::Link::new(a.into()).unwrap());
            let egress = Arc::new(crate::egress::EgressClient::new(
                crate::uplink::Uplink::start(link),
            ));
            let state = ApiState {
                store,
                numbers: Arc::new(RwLock::new(Vec::new())),
                agent: Arc::new(AgentRuntime::new(Default::default(), egress)),
                tokens: Arc::new(tokens),
                documents: Arc::default(),
            };
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            port_tx.send(listener.local_addr().unwrap().port()).unwrap();
            super::serve(listener, state, Arc::new(RwLock::new(None))).await;
        });
    });
    (port_rx.recv().unwrap(), token)
}

/// `conns` keep-alive clients asking for `path` for `seconds`; (requests
/// a second, p50, p99 in ms, bytes in one answer).
fn load(port: u16, token: &str, path: &str, conns: u64, seconds: u64) -> (f64, f64, f64, usize) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut tasks = Vec::new();
        for _ in 0..conns {
            let (token, path) = (token.to_owned(), path.to_owned());
            tasks.push(tokio::spawn(async move {
                let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let io = hyper_util::rt::TokioIo::new(stream);
                let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
                tokio::spawn(conn);
                let mut latencies = Vec::new();
                let mut size = 0;
                while Instant::now() < deadline {
                    let req = Request::get(&path)
                        .header("host", "127.0.0.1")
                        .header("authorization", format!("Bearer {token}"))
                        .body(Empty::<Bytes>::new())
                        .unwrap();
                    let start = Instant::now();
                    let resp = send.send_request(req).await.unwrap();
                    assert_eq!(resp.status(), 200, "{path}");
                    size = resp.into_body().collect().await.unwrap().to_bytes().len();
                    latencies.push(start.elapsed());
                }
                (latencies, size)
            }));
        }
        let mut all = Vec::new();
        let mut size = 0;
        for t in tasks {
            let (l, s) = t.await.unwrap();
            all.extend(l);
            size = s;
        }
        all.sort();
        let ms = |q: f64| all[((all.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
        (all.len() as f64 / seconds as f64, ms(0.5), ms(0.99), size)
    })
}

/// Milliseconds `f` takes.
fn timed(f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_secs_f64() * 1e3
}

/// SQLCipher against plain SQLite, same schema and settings, same run:
/// one transaction of `n` rows, 300 one-row transactions (each a commit
/// with fsync), and a full read of the table, five times.
fn cipher_cost(dir: &std::path::Path, n: u64) {
    let plain_path = dir.join("plain.db");
    let plain = plain(&plain_path);
    let cipher = crate::store::open(&dir.join("cipher.db"), &KEY).unwrap();
    let one_row = |c: &Connection| {
        for i in 0..300 {
            c.execute(
                "INSERT INTO calls (id, call_id, from_user, to_number, started_at, outcome) VALUES (?1, 'x', '+1555', '+1555', 't', 'completed')",
                [format!("single_{i}")],
            )
            .unwrap();
        }
    };
    let read = |c: &Connection| {
        for _ in 0..5 {
            let _: (i64, i64) = c
                .query_row(
                    "SELECT count(*), sum(length(providers) + length(media)) FROM calls",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .unwrap();
        }
    };
    let rows = [
        (
            "one transaction of all rows",
            timed(|| seed(&plain, n)),
            timed(|| seed(&cipher, n)),
        ),
        (
            "300 one-row transactions",
            timed(|| one_row(&plain)),
            timed(|| one_row(&cipher)),
        ),
        (
            "full read x5 (2 MB cache)",
            timed(|| read(&plain)),
            timed(|| read(&cipher)),
        ),
    ];
    println!("| SQLCipher vs plain SQLite, {n} rows | plain ms | SQLCipher ms | plain/SQLCipher |");
    println!("|---|---|---|---|");
    for (what, p, c) in rows {
        println!("| {what} | {p:.0} | {c:.0} | {:.2} |", p / c);
    }
    let size = std::fs::metadata(dir.join("cipher.db")).unwrap().len();
    let out = dir.join("export.db");
    let ms = timed(|| crate::store::export(&cipher, &out).unwrap());
    let mb = size as f64 / 1e6;
    println!(
        "backup export (sqlcipher_export) of {mb:.1} MB: {ms:.0} ms, {:.0} MB/s",
        mb / (ms / 1e3)
    );
}

/// Which SQLCipher setting closes how much of the gap to plain SQLite (#9):
/// the same three operations as [`cipher_cost`] with the worker's settings
/// plus one change each, plain SQLite in the same run as the reference.
///   cargo test --release -p bulkhead-worker cipher_settings_bench -- --ignored --nocapture
#[test]
#[ignore = "a benchmark"]
fn cipher_settings_bench() {
    let n: u64 = env("BENCH_CALLS", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let variants: [(&str, &str); 5] = [
        (
            "SQLCipher 4 defaults (HMAC-SHA512: stores made before the current format)",
            "",
        ),
        (
            "cipher_memory_security = OFF (the default since 4.5)",
            "PRAGMA cipher_memory_security = OFF;",
        ),
        (
            "HMAC-SHA256 instead of SHA512 (the current store format)",
            "PRAGMA cipher_hmac_algorithm = HMAC_SHA256;",
        ),
        ("cache 8 MB", "PRAGMA cache_size = -8192;"),
        (
            "no HMAC (integrity lost: reference only)",
            "PRAGMA cipher_use_hmac = OFF;",
        ),
    ];
    let run = |path: &std::path::Path, keyed: Option<&str>| {
        let c = Connection::open(path).unwrap();
        if let Some(extra) = keyed {
            // Page-format settings go between the key and the first access.
            let hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
            c.execute_batch(&format!("PRAGMA key = \"x'{hex}'\"; {extra}"))
                .unwrap();
        }
        crate::store::configure(&c).unwrap();
        crate::store::migrations::apply(&c).unwrap();
        let batch = timed(|| seed(&c, n));
        let single = timed(|| {
            for i in 0..300 {
                c.execute(
                    "INSERT INTO calls (id, call_id, from_user, to_number, started_at, outcome) VALUES (?1, 'x', '+1555', '+1555', 't', 'completed')",
                    [format!("single_{i}")],
                )
                .unwrap();
            }
        });
        let read = timed(|| {
            for _ in 0..5 {
                let _: i64 = c
                    .query_row(
                        "SELECT sum(length(providers) + length(media)) FROM calls",
                        [],
                        |r| r.get(0),
                    )
                    .unwrap();
            }
        });
        (batch, single, read)
    };
    // Rounds interleave plain SQLite and every setting, so drift on this
    // shared machine touches all alike; each ratio is the median of its
    // rounds, each against the same round's plain run.
    let rounds: usize = env("BENCH_ROUNDS", 3);
    let mut ratios = vec![Vec::new(); variants.len()];
    for round in 0..rounds {
        let plain = run(&dir.path().join(format!("plain{round}.db")), None);
        for (i, (_, extra)) in variants.iter().enumerate() {
            let (b, s, r) = run(&dir.path().join(format!("v{i}-{round}.db")), Some(extra));
            ratios[i].push((plain.0 / b, plain.1 / s, plain.2 / r));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("| setting ({n} rows; median of {rounds} interleaved rounds) | batch: plain/this | one-row commits | full read x5 |");
    println!("|---|---|---|---|");
    for ((name, _), r) in variants.iter().zip(ratios) {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            median(r.iter().map(|x| x.0).collect()),
            median(r.iter().map(|x| x.1).collect()),
            median(r.iter().map(|x| x.2).collect())
        );
    }
}

#[test]
#[ignore = "a benchmark: scripts/bench runs it in release mode"]
fn calls_api_bench() {
    let n = env("BENCH_CALLS", 100_000);
    let seconds = env("BENCH_SECONDS", 3);
    let conns = env("BENCH_CONNS", 8);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenant.db");
    let conn = crate::store::open(&path, &KEY).unwrap();
    let t = Instant::now();
    seed(&conn, n);
    println!(
        "seeded {n} call records in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    cipher_cost(dir.path(), n);
    // A day 60 or 85 days back: about 1/90 of the log, far from the newest
    // page.
    let day = |d: u64| {
        bulkhead_shared::time::rfc3339(
            std::time::SystemTime::now() - Duration::from_secs(d * 86_400),
        )
    };
    let queries = [
        ("first page", "/v1/calls?limit=50".to_owned()),
        (
            "one caller",
            "/v1/calls?limit=50&number=%2B15550000042".to_owned(),
        ),
        (
            "outcome=failed",
            "/v1/calls?limit=50&outcome=failed".to_owned(),
        ),
        (
            "one day, 60 days back",
            format!("/v1/calls?limit=50&since={}&until={}", day(60), day(59)),
        ),
        (
            "one day, 85 days back",
            format!("/v1/calls?limit=50&since={}&until={}", day(85), day(84)),
        ),
        (
            "failed, in one day 60 days back",
            format!(
                "/v1/calls?limit=50&outcome=failed&since={}&until={}",
                day(60),
                day(59)
            ),
        ),
        (
            "last page (cursor)",
            "/v1/calls?limit=50&cursor=60".to_owned(),
        ),
    ];
    println!("| indexes | query | requests/s | p50 ms | p99 ms | bytes |");
    println!("|---|---|---|---|---|---|");
    for indexed in [false, true] {
        let sql = if indexed {
            "CREATE INDEX IF NOT EXISTS calls_by_to ON calls (to_number, seq);
             CREATE INDEX IF NOT EXISTS calls_by_from ON calls (from_user, seq);
             CREATE INDEX IF NOT EXISTS calls_by_outcome ON calls (outcome, seq);
             CREATE INDEX IF NOT EXISTS calls_by_start ON calls (started_at);"
        } else {
            "DROP INDEX calls_by_to; DROP INDEX calls_by_from;
             DROP INDEX calls_by_outcome; DROP INDEX calls_by_start;"
        };
        conn.execute_batch(sql).unwrap();
        let (port, token) = start_server(path.clone());
        for (name, q) in &queries {
            let (rps, p50, p99, size) = load(port, &token, q, conns, seconds);
            let label = if indexed { "yes" } else { "no" };
            println!("| {label} | {name} | {rps:.0} | {p50:.2} | {p99:.2} | {size} |");
        }
    }
}
