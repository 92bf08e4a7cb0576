//! Per-message cost of the router's decision (`sip::route::decide`: the
//! zero-copy scan, the routing fields and the lookups) over the RFC 4475
//! and carrier corpora and a sipp-style INVITE. Run in release:
//!
//!   cargo run --release -p bulkhead-shared --example route_cost
//!
//! Prints nanoseconds per message (median of 15 rounds) and messages per
//! second on one core. `scripts/bench` runs it and quotes it.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use bulkhead_shared::sip::route::decide;
use bulkhead_shared::{Number, TenantId};

fn corpus() -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../supervisor/tests/data/sip");
    let mut files: Vec<PathBuf> = Vec::new();
    for sub in ["rfc4475", "real", "real/other"] {
        for e in std::fs::read_dir(root.join(sub))
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "dat" || x == "sip") {
                files.push(p);
            }
        }
    }
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn sipp_invite() -> Vec<u8> {
    let body = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    format!(
        "INVITE sip:+15550100@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-1-1-0\r\n\
From: sipp <sip:sipp@127.0.0.1:5061>;tag=1SIPpTag001\r\nTo: +15550100 <sip:+15550100@127.0.0.1:5060>\r\n\
Call-ID: 1-4242@127.0.0.1\r\nCSeq: 1 INVITE\r\nContact: sip:sipp@127.0.0.1:5061\r\nMax-Forwards: 70\r\n\
Subject: Performance Test\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Median nanoseconds per message over `rounds` passes of `msgs`.
fn cost(msgs: &[Vec<u8>], rounds: usize) -> f64 {
    let tenant = TenantId::parse("clinic").unwrap();
    let number = Number::parse("+15550100").unwrap();
    let per_pass = (200_000 / msgs.len()).max(1);
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_pass {
                for m in msgs {
                    black_box(decide(
                        black_box(m),
                        |n| (*n == number).then(|| tenant.clone()),
                        |_| None,
                    ));
                }
            }
            start.elapsed().as_nanos() as f64 / (per_pass * msgs.len()) as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn main() {
    let corpus = corpus();
    let invite = vec![sipp_invite()];
    for (name, msgs) in [
        ("sipp INVITE", &invite),
        ("corpus (RFC 4475 + carriers)", &corpus),
    ] {
        let ns = cost(msgs, 15);
        println!(
            "{name}: {} messages, {ns:.0} ns/message, {:.2} M messages/s on one core",
            msgs.len(),
            1e3 / ns
        );
    }
}
