//! `cargo run --release -- DIR...`: for every message file under the given
//! directories, what each parser makes of it: accepted or not, the Call-ID
//! and the Request-URI user it reads. Output is a Markdown table, then the
//! time each parser takes to read the messages all three accept (the same
//! Call-ID and user reading), in the same run.

use std::path::{Path, PathBuf};

use bulkhead_shared::sip::uri::{target, Target};
use bulkhead_shared::sip::{scan, StartLine};

/// What one parser read from one message.
#[derive(Debug, PartialEq)]
struct Reading {
    call_id: Option<String>,
    user: Option<String>,
}

type Verdict = Result<Reading, String>;

fn ours(raw: &[u8]) -> Verdict {
    let m = scan(raw).map_err(|e| e.to_string())?;
    let user = match m.start {
        StartLine::Request { uri, .. } => match target(uri) {
            Target::User(u) => Some(u.into_owned()),
            _ => None,
        },
        StartLine::Response { .. } => None,
    };
    Ok(Reading {
        call_id: m.call_id().map(str::to_owned),
        user,
    })
}

fn rsip_reads(raw: &[u8]) -> Verdict {
    use rsip::prelude::*;
    let msg = rsip::SipMessage::try_from(raw).map_err(|e| e.to_string())?;
    let call_id = msg.call_id_header().ok().map(|h| h.value().to_string());
    let user = match &msg {
        rsip::SipMessage::Request(r) => r.uri.user().map(str::to_owned),
        rsip::SipMessage::Response(_) => None,
    };
    Ok(Reading { call_id, user })
}

fn sipx_reads(raw: &[u8]) -> Verdict {
    let msg = sipx_sip::parse_datagram(
        bytes::Bytes::copy_from_slice(raw),
        &sipx_sip::Limits::default(),
    )
    .map_err(|e| e.to_string())?;
    let (headers, user) = match &msg {
        sipx_sip::Message::Request(r) => (
            &r.headers,
            r.uri
                .user()
                .map(|u| String::from_utf8_lossy(u).into_owned()),
        ),
        sipx_sip::Message::Response(r) => (&r.headers, None),
    };
    let call_id = headers
        .value(&sipx_sip::HeaderName::CallId)
        .map(|v| String::from_utf8_lossy(&v).trim().to_owned());
    Ok(Reading { call_id, user })
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else if p.extension().is_some_and(|x| x == "dat" || x == "sip") {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn main() {
    println!("| message | ours | rsip 0.4.0 | sipx-sip 1.0.1 |\n|---|---|---|---|");
    let (mut ok_ours, mut ok_rsip, mut ok_sipx, mut n) = (0, 0, 0, 0);
    let mut all = Vec::new();
    for dir in std::env::args().skip(1) {
        for f in files(Path::new(&dir)) {
            let raw = std::fs::read(&f).unwrap();
            all.push(raw.clone());
            let (a, b, c) = (ours(&raw), rsip_reads(&raw), sipx_reads(&raw));
            n += 1;
            ok_ours += usize::from(a.is_ok());
            ok_rsip += usize::from(b.is_ok());
            ok_sipx += usize::from(c.is_ok());
            let show = |v: &Verdict| match v {
                Err(e) => format!(
                    "rejected: {}",
                    e.chars().take(48).collect::<String>().replace('|', "/")
                ),
                Ok(r) => format!("call-id {}, user {}", short(&r.call_id), short(&r.user)),
            };
            println!(
                "| {} | {} | {} | {} |",
                f.file_name().unwrap().to_string_lossy(),
                show(&a),
                if b.as_ref().ok() == a.as_ref().ok() && b.is_ok() {
                    "same".into()
                } else {
                    show(&b)
                },
                if c.as_ref().ok() == a.as_ref().ok() && c.is_ok() {
                    "same".into()
                } else {
                    show(&c)
                },
            );
        }
    }
    println!("\naccepted: ours {ok_ours}/{n}, rsip {ok_rsip}/{n}, sipx-sip {ok_sipx}/{n}");
    timings(&all);
}

/// Mean time per message each parser takes over `msgs` (those all three
/// accept), best of 5 rounds of 2,000 passes, in the same run.
fn timings(msgs: &[Vec<u8>]) {
    let common: Vec<&Vec<u8>> = msgs
        .iter()
        .filter(|m| ours(m).is_ok() && rsip_reads(m).is_ok() && sipx_reads(m).is_ok())
        .collect();
    let time = |read: &dyn Fn(&[u8]) -> Verdict| {
        (0..5)
            .map(|_| {
                let start = std::time::Instant::now();
                for _ in 0..2_000 {
                    for m in &common {
                        std::hint::black_box(read(std::hint::black_box(m)).is_ok());
                    }
                }
                start.elapsed().as_nanos() as f64 / (2_000 * common.len()) as f64
            })
            .fold(f64::MAX, f64::min)
    };
    let (a, b, c) = (time(&ours), time(&rsip_reads), time(&sipx_reads));
    println!(
        "\nread time per message, mean over the {} messages all three accept:",
        common.len()
    );
    println!("| ours | rsip 0.4.0 | sipx-sip 1.0.1 |\n|---|---|---|");
    println!(
        "| {a:.0} ns | {b:.0} ns ({:.1}×) | {c:.0} ns ({:.1}×) |",
        b / a,
        c / a
    );
}

fn short(v: &Option<String>) -> String {
    match v {
        None => "-".into(),
        Some(s) => format!(
            "`{}`",
            s.chars().take(24).collect::<String>().replace('|', "/")
        ),
    }
}
