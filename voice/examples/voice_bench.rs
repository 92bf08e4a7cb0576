//! The voice agent's numbers (scripts/bench runs this and quotes it):
//!
//! 1. intent accuracy: phrases synthesized by espeak-ng, carried as 8 kHz
//!    μ-law, recognized by PocketSphinx with the intent grammar, mapped by
//!    the rules engine; most are wordings the tenant never configured;
//! 2. turn latency: a caller on a loopback UDP socket speaks a question in
//!    real time (20 ms packets, then silence, as phones send) to the agent
//!    loop; latency is from the caller's last speech packet to the first
//!    packet of the agent's answer, median and p95, for 1..N calls at once;
//! 3. what the providers cost to open, in time and resident memory.
//!
//! Usage: voice_bench [max_concurrent_calls] [turns_per_call]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_voice::agent::routing::Opening;
use bulkhead_voice::agent::rules::Rules;
use bulkhead_voice::agent::{self, AgentDoc, AgentEvent, CallMedia, Voices};
use bulkhead_voice::media::g711::Law;
use bulkhead_voice::speech::espeak::Espeak;
use bulkhead_voice::speech::sphinx::Sphinx;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

const DOC: &str = r#"{"greeting": "Hello.", "intents": [
  {"name": "human", "phrases": ["talk to a human", "speak to a person"], "action": "escalate"},
  {"name": "hours", "phrases": ["opening hours"], "action": "answer", "answer": "We are open nine to five."},
  {"name": "message", "phrases": ["leave a message"], "action": "take_message"},
  {"name": "bye", "phrases": ["goodbye"], "action": "end_call"}]}"#;

/// Wordings and their intent; "none" means no intent should match.
const WORDINGS: &[(&str, &str)] = &[
    ("talk to a human", "human"),
    ("speak to a person", "human"),
    ("can I speak with a real person", "human"),
    ("operator please", "human"),
    ("I need to talk to someone", "human"),
    ("put me through to a representative please", "human"),
    ("I want to speak with somebody", "human"),
    ("get me a human", "human"),
    ("could I talk to an agent", "human"),
    ("representative", "human"),
    ("opening hours", "hours"),
    ("what are your opening hours", "hours"),
    ("opening hours please", "hours"),
    ("when are you open", "hours"),
    ("what time do you close", "hours"),
    ("tell me your hours", "hours"),
    ("I would like to leave a message", "message"),
    ("can I leave a message", "message"),
    ("take a message please", "message"),
    ("voicemail", "message"),
    ("goodbye", "bye"),
    ("bye bye", "bye"),
    ("that's all thank you", "bye"),
    ("the weather is nice today", "none"),
    ("my dog ate my homework", "none"),
];

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn accuracy(tts: &Espeak, stt: &Sphinx, rules: &Rules) {
    let (mut right, mut configured_right, mut configured) = (0, 0, 0);
    for (text, want) in WORDINGS {
        let pcm = tts.synthesize("en-us", text).await.expect("synthesis");
        let mut coded = Vec::new();
        Law::MuLaw.encode(&pcm, &mut coded);
        let mut line = vec![0i16; 1600];
        Law::MuLaw.decode(&coded, &mut line);
        // ...and the 600 ms of quiet that ends the turn, as the VAD passes it on.
        line.resize(line.len() + 4800, 0);
        let heard = stt
            .transcribe(1, rules.phrases(), line)
            .await
            .expect("recognition");
        let got = rules.intent_of(&heard).map_or("none", |i| i.name.as_str());
        let ok = got == *want;
        right += usize::from(ok);
        let is_configured = [
            "talk to a human",
            "speak to a person",
            "opening hours",
            "leave a message",
            "goodbye",
        ]
        .contains(text);
        if is_configured {
            configured += 1;
            configured_right += usize::from(ok);
        }
        println!(
            "  {:<45} heard {:<40} -> {got:<8} {}",
            format!("{text:?}"),
            format!("{heard:?}"),
            if ok { "ok" } else { "WRONG" }
        );
    }
    println!(
        "intent accuracy: {right}/{} overall ({:.0}%); configured phrases {configured_right}/{configured}; other wordings {}/{}",
        WORDINGS.len(),
        100.0 * right as f64 / WORDINGS.len() as f64,
        right - configured_right,
        WORDINGS.len() - configured
    );
}

/// One caller: waits out the greeting, then asks `turns` questions and
/// times each answer. Returns the latencies in ms.
async fn caller(
    voices: Voices,
    doc: Arc<AgentDoc>,
    question: Arc<Vec<u8>>,
    turns: usize,
) -> Vec<u64> {
    let agent_sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let phone = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let media = CallMedia {
        peer: phone.local_addr().unwrap(),
        socket: agent_sock,
        law: Law::MuLaw,
        dtmf_pt: None,
        updates: None,
        rtcp: None,
    };
    let agent_addr = media.socket.local_addr().unwrap();
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let agent = tokio::spawn(agent::run(
        doc,
        voices,
        media,
        Opening::default(),
        events_tx,
    ));
    tokio::spawn(async move {
        while let Some(AgentEvent::Turn { .. } | AgentEvent::HangUp | AgentEvent::Escalate { .. }) =
            events_rx.recv().await
        {}
    });

    let mut buf = [0u8; 2048];
    let (mut seq, mut ts) = (0u16, 0u32);
    let mut packet = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut send = |payload: &[u8], packet: &mut Vec<u8>| {
        bulkhead_voice::media::rtp::write(packet, false, 0, seq, ts, 42, payload);
        seq = seq.wrapping_add(1);
        ts = ts.wrapping_add(160);
    };
    let silence = [0xFFu8; 160];
    // Drain the greeting: until 400 ms pass without agent audio.
    let mut last_audio = Instant::now();
    while last_audio.elapsed() < Duration::from_millis(400) {
        tick.tick().await;
        send(&silence, &mut packet);
        phone.send_to(&packet, agent_addr).await.unwrap();
        while let Ok((_, _)) = phone.try_recv_from(&mut buf) {
            last_audio = Instant::now();
        }
    }
    let mut latencies = Vec::new();
    for _ in 0..turns {
        for frame in question.chunks(160) {
            tick.tick().await;
            let mut f = frame.to_vec();
            f.resize(160, 0xFF);
            send(&f, &mut packet);
            phone.send_to(&packet, agent_addr).await.unwrap();
            while phone.try_recv_from(&mut buf).is_ok() {}
        }
        let spoke = Instant::now();
        // Silence until the answer's first packet, then until it ends.
        let mut first = None;
        let mut last_audio = Instant::now();
        loop {
            tick.tick().await;
            send(&silence, &mut packet);
            phone.send_to(&packet, agent_addr).await.unwrap();
            while phone.try_recv_from(&mut buf).is_ok() {
                first.get_or_insert_with(|| spoke.elapsed());
                last_audio = Instant::now();
            }
            if first.is_some() && last_audio.elapsed() > Duration::from_millis(400) {
                break;
            }
            if first.is_none() && spoke.elapsed() > Duration::from_secs(10) {
                break; // not understood or lost: no sample
            }
        }
        if let Some(l) = first {
            latencies.push(l.as_millis() as u64);
        }
    }
    agent.abort();
    latencies
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let max_calls: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(8);
    let turns: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5);

    let base = rss_kib();
    let t = Instant::now();
    let tts = Espeak::shared().expect("espeak-ng (apt-get install libespeak-ng1)");
    let (tts_ms, tts_kib) = (t.elapsed().as_millis(), rss_kib() - base);
    let before = rss_kib();
    let t = Instant::now();
    let stt = Sphinx::start(1)
        .expect("pocketsphinx (apt-get install libpocketsphinx3 pocketsphinx-en-us)");
    println!(
        "providers: espeak-ng opens in {tts_ms} ms (+{} MiB RSS); a PocketSphinx decoder opens in {} ms (+{} MiB RSS)",
        tts_kib / 1024,
        t.elapsed().as_millis(),
        (rss_kib() - before) / 1024
    );
    let doc = Arc::new(AgentDoc::from_json(DOC.as_bytes()).unwrap());
    let rules = Rules::new(&doc);
    accuracy(&tts, &stt, &rules).await;

    let pcm = tts
        .synthesize("en-us", "what are your opening hours")
        .await
        .unwrap();
    let mut question = Vec::new();
    Law::MuLaw.encode(&pcm, &mut question);
    let question = Arc::new(question);
    let voices = Voices {
        tts: Some(tts),
        stt: Some(stt),
        ..Voices::default()
    };
    println!("turn latency, end of the caller's speech -> first answer packet (includes the 600 ms end-of-turn silence):");
    println!("| calls at once | turns | p50 ms | p95 ms | max ms |");
    println!("|---|---|---|---|---|");
    let mut n = 1;
    while n <= max_calls {
        let calls: Vec<_> = (0..n)
            .map(|_| tokio::spawn(caller(voices.clone(), doc.clone(), question.clone(), turns)))
            .collect();
        let mut all = Vec::new();
        for c in calls {
            all.extend(c.await.unwrap());
        }
        all.sort_unstable();
        println!(
            "| {n} | {}/{} | {} | {} | {} |",
            all.len(),
            n * turns,
            percentile(&all, 0.5),
            percentile(&all, 0.95),
            all.last().copied().unwrap_or(0)
        );
        n *= 2;
    }
}
