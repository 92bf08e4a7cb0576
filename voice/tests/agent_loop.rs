//! The turn loop over real loopback UDP with the real embedded providers:
//! the agent's RTP is well formed and paced, DTMF is heard once per press,
//! the caller talking over the agent stops it (barge-in), and "goodbye"
//! ends the call.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead_voice::agent::llm::{Answering, Decision, Llm, LlmError, Message, Piece, Role};
use bulkhead_voice::agent::routing::Opening;
use bulkhead_voice::agent::{
    self, AgentDoc, AgentEvent, Bridge, CallMedia, MediaUpdate, Speaker, Voices,
};
use bulkhead_voice::media::g711::Law;
use bulkhead_voice::media::rtcp;
use bulkhead_voice::media::rtp::{self, Packet};
use bulkhead_voice::speech::espeak::Espeak;
use bulkhead_voice::speech::remote::{SpeechChunks, Synthesizer, Transcribed, Transcriber};
use bulkhead_voice::speech::sphinx::Sphinx;
use bulkhead_voice::speech::SpeechError;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};

const DOC: &str = r#"{"greeting": "Thank you for calling Maple Clinic. All of our lines are open today, and we are happy to help you with appointments, prescriptions and billing.",
  "intents": [{"name": "bye", "phrases": ["goodbye"], "action": "end_call"},
              {"name": "human", "phrases": ["talk to a human"], "action": "escalate"}]}"#;

struct Phone {
    socket: UdpSocket,
    agent: SocketAddr,
    events: mpsc::Receiver<AgentEvent>,
    agent_task: tokio::task::JoinHandle<()>,
    seq: u16,
    /// What the user agent would report after a re-INVITE.
    updates: watch::Sender<MediaUpdate>,
    /// The phone's RTCP socket (its RTP port + 1) and the agent's.
    rtcp: UdpSocket,
    agent_rtcp: SocketAddr,
}

/// Two loopback sockets on consecutive ports (RTP, RTCP).
async fn pair() -> (UdpSocket, UdpSocket) {
    loop {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = rtp.local_addr().unwrap().port();
        if let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", port.wrapping_add(1))).await {
            return (rtp, rtcp);
        }
    }
}

impl Drop for Phone {
    fn drop(&mut self) {
        self.agent_task.abort();
    }
}

async fn call(voices: Voices) -> Phone {
    let (agent_socket, agent_rtcp_socket) = pair().await;
    let (socket, rtcp) = pair().await;
    let agent = agent_socket.local_addr().unwrap();
    let agent_rtcp = agent_rtcp_socket.local_addr().unwrap();
    let peer = socket.local_addr().unwrap();
    let (updates, updates_rx) = watch::channel(MediaUpdate {
        peer,
        law: Law::MuLaw,
        sending: true,
    });
    let media = CallMedia {
        socket: agent_socket,
        peer,
        law: Law::MuLaw,
        dtmf_pt: Some(101),
        updates: Some(updates_rx),
        rtcp: Some(agent_rtcp_socket),
    };
    let (tx, events) = mpsc::channel(64);
    let doc = Arc::new(AgentDoc::from_json(DOC.as_bytes()).unwrap());
    Phone {
        socket,
        agent,
        events,
        agent_task: tokio::spawn(agent::run(doc, voices, media, Opening::default(), tx)),
        seq: 0,
        updates,
        rtcp,
        agent_rtcp,
    }
}

fn voices() -> Voices {
    Voices {
        tts: Some(Espeak::shared().expect("espeak-ng")),
        stt: Some(Sphinx::start(1).expect("pocketsphinx")),
        ..Voices::default()
    }
}

/// A language model that answers every turn with `answer` and keeps each
/// conversation it was sent.
#[derive(Debug)]
struct ScriptedModel {
    answer: Result<Decision, LlmError>,
    heard: Mutex<Vec<Arc<[Message]>>>,
}

impl Llm for ScriptedModel {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn decide(&self, conversation: Arc<[Message]>) -> Answering {
        self.heard.lock().unwrap().push(conversation);
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Piece::Done(self.answer.clone()));
        rx
    }
}

/// A network recognizer that hears `text` in anything.
#[derive(Debug)]
struct FixedEars(&'static str);

impl Transcriber for FixedEars {
    fn name(&self) -> &'static str {
        "fixed"
    }
    fn transcribe(&self, audio: Arc<[i16]>, _hint: String) -> Transcribed {
        assert!(!audio.is_empty());
        let text = self.0.to_owned();
        Box::pin(async move { Ok(text) })
    }
}

/// A network synthesizer whose server is down.
#[derive(Debug)]
struct DeadVoice;

impl Synthesizer for DeadVoice {
    fn name(&self) -> &'static str {
        "dead"
    }
    fn synthesize(&self, _text: String) -> SpeechChunks {
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Err(SpeechError::Failed("connection refused".into())));
        rx
    }
}

/// A network synthesizer that streams 200 ms of tone, stalls for two
/// seconds, then sends 200 ms more.
#[derive(Debug)]
struct SlowVoice;

impl Synthesizer for SlowVoice {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn synthesize(&self, _text: String) -> SpeechChunks {
        let (tx, rx) = mpsc::channel(4);
        let tone = |n: usize| {
            (0..n)
                .map(|i| ((i as f64 * 0.3).sin() * 8000.0) as i16)
                .collect::<Vec<_>>()
        };
        tokio::spawn(async move {
            let _ = tx.send(Ok(tone(1600))).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = tx.send(Ok(tone(1600))).await;
        });
        rx
    }
}

/// A model that streams its first sentence, thinks for two seconds, then
/// finishes.
#[derive(Debug)]
struct SlowModel;

impl Llm for SlowModel {
    fn name(&self) -> &'static str {
        "slow"
    }
    fn decide(&self, _conversation: Arc<[Message]>) -> Answering {
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let _ = tx.send(Piece::Text("We are open ".into())).await;
            let _ = tx.send(Piece::Text("nine to five. Is there".into())).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = tx.send(Piece::Text(" anything else?".into())).await;
            let full = "We are open nine to five. Is there anything else?".to_owned();
            let _ = tx.send(Piece::Done(Ok(Decision::Say(full)))).await;
        });
        rx
    }
}

fn with_model(answer: Result<Decision, LlmError>) -> (Voices, Arc<ScriptedModel>) {
    let model = Arc::new(ScriptedModel {
        answer,
        heard: Mutex::default(),
    });
    let voices = Voices {
        llm: Some(model.clone() as Arc<dyn Llm>),
        ..voices()
    };
    (voices, model)
}

impl Phone {
    async fn send(&mut self, pt: u8, timestamp: u32, payload: &[u8]) {
        let mut p = Vec::new();
        rtp::write(&mut p, false, pt, self.seq, timestamp, 7, payload);
        self.seq = self.seq.wrapping_add(1);
        self.socket.send_to(&p, self.agent).await.unwrap();
    }

    /// Speaks `text` as the caller, in real time: at most `frames` 20 ms
    /// packets of it, then `quiet_ms` of silence (phones keep sending).
    async fn speak(&mut self, text: &str, frames: usize, quiet_ms: usize) {
        let speech = Espeak::shared()
            .unwrap()
            .synthesize("en-us", text)
            .await
            .unwrap();
        let mut audio = Vec::new();
        Law::MuLaw.encode(&speech, &mut audio);
        audio.truncate(frames.saturating_mul(160));
        audio.extend(std::iter::repeat_n(0xFF, quiet_ms * 8));
        let mut ts = 0u32;
        for frame in audio.chunks(160) {
            self.send(0, ts, frame).await;
            ts += 160;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Agent packets that arrive within `wait`.
    async fn drain(&self, wait: Duration) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        let deadline = Instant::now() + wait;
        while let Ok(Ok(n)) =
            tokio::time::timeout_at(deadline.into(), self.socket.recv(&mut buf)).await
        {
            got.push(buf[..n].to_vec());
        }
        got
    }

    /// The next caller/agent/system turn with this speaker.
    async fn turn(&mut self, speaker: Speaker, wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline.into(), self.events.recv()).await {
                Ok(Some(AgentEvent::Turn {
                    speaker: s, text, ..
                })) if s == speaker => return Some(text),
                Ok(Some(AgentEvent::Escalate { done, .. })) => {
                    let _ = done.send(None);
                }
                Ok(Some(_)) => {}
                _ => return None,
            }
        }
    }
}

#[tokio::test]
async fn the_greeting_is_paced_well_formed_rtp() {
    let phone = call(voices()).await;
    let start = Instant::now();
    let packets = phone.drain(Duration::from_millis(1000)).await;
    let elapsed = start.elapsed();
    assert!(!packets.is_empty());
    let parsed: Vec<Packet> = packets.iter().map(|p| Packet::parse(p).unwrap()).collect();
    assert!(parsed[0].marker, "a talk spurt starts with the marker bit");
    for pair in parsed.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq.wrapping_add(1));
        assert_eq!(pair[1].timestamp, pair[0].timestamp.wrapping_add(160));
        assert_eq!(pair[1].ssrc, pair[0].ssrc);
    }
    assert!(parsed
        .iter()
        .all(|p| p.payload_type == 0 && p.payload.len() == 160));
    // Paced at one packet per 20 ms, not sent in a burst.
    let expected = elapsed.as_millis() as usize / 20;
    assert!(
        packets.len() <= expected + 3,
        "{} packets in {elapsed:?}",
        packets.len()
    );
}

#[tokio::test]
async fn dtmf_digits_are_heard_once_and_zero_asks_for_a_person() {
    let mut phone = call(voices()).await;
    for (ts, digit) in [(1000u32, 5u8), (3000, 0)] {
        for end in [false, false, true, true, true] {
            let flags = if end { 0x80 } else { 0 };
            phone.send(101, ts, &[digit, flags, 0x03, 0x20]).await;
        }
    }
    assert_eq!(
        phone
            .turn(Speaker::Caller, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("[DTMF 5]")
    );
    assert_eq!(
        phone
            .turn(Speaker::Caller, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("[DTMF 0]")
    );
    // 0 escalates; nobody is reachable here, so the agent offers to take a message.
    let mut said = Vec::new();
    while let Some(t) = phone.turn(Speaker::Agent, Duration::from_secs(3)).await {
        said.push(t);
    }
    assert!(said.iter().any(|t| t.contains("transfer you")), "{said:?}");
    assert!(
        said.iter().any(|t| t.contains("leave a message")),
        "{said:?}"
    );
}

#[tokio::test]
async fn the_caller_talking_over_the_greeting_stops_it() {
    let mut phone = call(voices()).await;
    // The greeting is about eight seconds long; once it plays, listen to
    // half a second of it.
    let mut buf = [0u8; 2048];
    tokio::time::timeout(Duration::from_secs(10), phone.socket.recv(&mut buf))
        .await
        .expect("the greeting starts")
        .unwrap();
    assert!(phone.drain(Duration::from_millis(500)).await.len() > 10);
    phone.speak("hello hello hello", 25, 0).await;
    // Half a second of speech later the agent has fallen silent.
    while !phone.drain(Duration::from_millis(10)).await.is_empty() {}
    let after = phone.drain(Duration::from_millis(600)).await;
    assert!(
        after.is_empty(),
        "{} agent packets after barge-in",
        after.len()
    );
}

#[tokio::test]
async fn on_hold_the_agent_neither_speaks_nor_prompts_and_resumes_after() {
    let mut phone = call(voices()).await;
    let mut buf = [0u8; 2048];
    tokio::time::timeout(Duration::from_secs(10), phone.socket.recv(&mut buf))
        .await
        .expect("the greeting starts")
        .unwrap();
    // The caller holds the call (re-INVITE with sendonly: we answer recvonly).
    phone.updates.send_modify(|m| m.sending = false);
    assert_eq!(
        phone
            .turn(Speaker::System, Duration::from_secs(2))
            .await
            .as_deref(),
        Some("the caller put the call on hold")
    );
    while !phone.drain(Duration::from_millis(30)).await.is_empty() {}
    // Longer than the 8 s silence prompt: no audio, no "Are you still there?".
    let held = phone.drain(Duration::from_secs(9)).await;
    assert!(held.is_empty(), "{} packets on hold", held.len());
    while let Ok(event) = phone.events.try_recv() {
        assert!(
            !matches!(
                &event,
                AgentEvent::Turn {
                    speaker: Speaker::Agent,
                    ..
                } | AgentEvent::HangUp
            ),
            "{event:?}"
        );
    }
    // Resumed: the rest of the greeting plays.
    phone.updates.send_modify(|m| m.sending = true);
    let resumed = phone.drain(Duration::from_millis(500)).await;
    assert!(
        resumed.len() > 10,
        "{} packets after resuming",
        resumed.len()
    );
    assert!(
        Packet::parse(&resumed[0]).unwrap().marker,
        "a new talk spurt"
    );
}

#[tokio::test]
async fn rtcp_reports_go_both_ways_and_reach_the_record() {
    let mut phone = call(voices()).await;
    phone.speak("hello", 10, 0).await; // some audio of ours for it to count
    let mut buf = [0u8; 1500];
    let (n, from) = tokio::time::timeout(Duration::from_secs(8), phone.rtcp.recv_from(&mut buf))
        .await
        .expect("a sender report within 5 s")
        .unwrap();
    assert_eq!(from, phone.agent_rtcp);
    assert_eq!(buf[1], 200, "an SR first");
    let agent_ssrc = u32::from_be_bytes(buf[4..8].try_into().unwrap());
    // The SR reports on our stream: 10 packets, none lost.
    let report = rtcp::parse(&buf[..n], 7).unwrap();
    assert_eq!(report.about_us[0].cumulative_lost, 0);
    // Our receiver report on the agent's stream: 3 packets lost, 10 ms jitter.
    let mut rr = vec![0x81, 201, 0, 7];
    rr.extend_from_slice(&7u32.to_be_bytes());
    rr.extend_from_slice(&agent_ssrc.to_be_bytes());
    rr.extend_from_slice(&3u32.to_be_bytes());
    rr.extend_from_slice(&[0; 4]);
    rr.extend_from_slice(&80u32.to_be_bytes());
    rr.extend_from_slice(&[0; 8]);
    phone.rtcp.send_to(&rr, phone.agent_rtcp).await.unwrap();
    phone
        .rtcp
        .send_to(b"\x80garbage", phone.agent_rtcp)
        .await
        .unwrap();
    phone.speak("goodbye", usize::MAX, 1000).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = None;
    loop {
        match tokio::time::timeout_at(deadline.into(), phone.events.recv()).await {
            Ok(Some(AgentEvent::Media(stats))) => last = Some(stats),
            Ok(Some(AgentEvent::HangUp)) => break,
            Ok(Some(_)) => continue,
            other => panic!("no hang-up: {other:?}"),
        }
    }
    let stats = last.expect("the totals come before the hang-up");
    assert_eq!(stats.outbound_lost, Some(3));
    assert_eq!(stats.outbound_jitter_ms, Some(10.0));
    assert!(
        stats.packets_received > 10 && stats.packets_sent > 10,
        "{stats:?}"
    );
    assert_eq!(stats.inbound_lost, 0);
}

#[tokio::test]
async fn goodbye_ends_the_call() {
    let mut phone = call(voices()).await;
    phone.speak("goodbye", usize::MAX, 1000).await;
    assert_eq!(
        phone
            .turn(Speaker::Caller, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("goodbye")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline.into(), phone.events.recv()).await {
            Ok(Some(AgentEvent::HangUp)) => break,
            Ok(Some(_)) => continue,
            other => panic!("no hang-up: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_model_decides_the_turn_and_its_summary_goes_to_the_human() {
    let (voices, model) = with_model(Ok(Decision::Transfer {
        reason: "leaving".into(),
        summary: "Caller is saying goodbye but wants a person.".into(),
        target: Some("billing".into()),
        say: Some("One moment please.".into()),
    }));
    let mut phone = call(voices).await;
    // "goodbye" would end the call under rules; the model transfers instead.
    phone.speak("goodbye", usize::MAX, 1000).await;
    let (summary, target, said) = loop {
        match tokio::time::timeout(Duration::from_secs(10), phone.events.recv()).await {
            Ok(Some(AgentEvent::Escalate {
                summary, target, ..
            })) => break (summary, target, model.heard.lock().unwrap().clone()),
            Ok(Some(AgentEvent::HangUp)) => panic!("rules decided, not the model"),
            Ok(Some(_)) => continue,
            other => panic!("no escalation: {other:?}"),
        }
    };
    assert_eq!(summary, "Caller is saying goodbye but wants a person.");
    assert_eq!(target.as_deref(), Some("billing"));
    let conversation = &said[0];
    assert_eq!(conversation[0].role, Role::System);
    assert_eq!(conversation[1].role, Role::Assistant, "the greeting");
    assert_eq!(
        conversation.last().unwrap(),
        &Message::new(Role::User, "goodbye")
    );
}

#[tokio::test]
async fn a_streaming_model_is_heard_sentence_by_sentence() {
    let voices = Voices {
        llm: Some(Arc::new(SlowModel)),
        ..voices()
    };
    let mut phone = call(voices).await;
    phone.speak("goodbye", usize::MAX, 1000).await;
    let mut heard = None;
    let mut agent = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(12);
    while agent.len() < 3 {
        match tokio::time::timeout_at(deadline.into(), phone.events.recv()).await {
            Ok(Some(AgentEvent::Turn {
                speaker: Speaker::Caller,
                ..
            })) => heard = Some(Instant::now()),
            Ok(Some(AgentEvent::Turn {
                speaker: Speaker::Agent,
                text,
                ..
            })) => agent.push((text, Instant::now())),
            Ok(Some(_)) => continue,
            other => panic!("{other:?} after {agent:?}"),
        }
    }
    // The greeting, then the model's two sentences, each as it was finished.
    let heard = heard.expect("the caller's turn");
    assert_eq!(agent[1].0, "We are open nine to five.");
    assert_eq!(agent[2].0, "Is there anything else?");
    assert!(
        agent[1].1 - heard < Duration::from_millis(1000),
        "the first sentence did not wait for the rest"
    );
    assert!(
        agent[2].1 - heard >= Duration::from_millis(1500),
        "the second came when the model finished it"
    );
}

#[tokio::test]
async fn a_failing_model_falls_back_to_rules_and_says_so() {
    let (voices, _) = with_model(Err(LlmError("HTTP 500".into())));
    let mut phone = call(voices).await;
    phone.speak("goodbye", usize::MAX, 1000).await;
    let (mut fallback, deadline) = (None, Instant::now() + Duration::from_secs(10));
    loop {
        match tokio::time::timeout_at(deadline.into(), phone.events.recv()).await {
            Ok(Some(AgentEvent::Fallback { layer, reason })) => fallback = Some((layer, reason)),
            Ok(Some(AgentEvent::HangUp)) => break,
            Ok(Some(_)) => continue,
            other => panic!("rules did not end the call: {other:?}"),
        }
    }
    let (layer, reason) = fallback.expect("the fallback is reported");
    assert_eq!(layer, "llm");
    assert!(
        reason.contains("HTTP 500") && reason.contains("rules"),
        "{reason}"
    );
}

#[tokio::test]
async fn a_network_recognizer_hears_the_turn_and_a_dead_synthesizer_falls_back() {
    let voices = Voices {
        remote_stt: Some(Arc::new(FixedEars("I want to talk to a human"))),
        remote_tts: Some(Arc::new(DeadVoice)),
        ..voices()
    };
    let mut phone = call(voices).await;
    // The greeting still plays, from espeak-ng.
    let mut buf = [0u8; 2048];
    tokio::time::timeout(Duration::from_secs(10), phone.socket.recv(&mut buf))
        .await
        .expect("the greeting plays")
        .unwrap();
    phone.speak("goodbye", usize::MAX, 1000).await;
    let (mut fallbacks, deadline) = (Vec::new(), Instant::now() + Duration::from_secs(10));
    let caller = loop {
        match tokio::time::timeout_at(deadline.into(), phone.events.recv()).await {
            Ok(Some(AgentEvent::Fallback { layer, reason })) => fallbacks.push((layer, reason)),
            Ok(Some(AgentEvent::Turn {
                speaker: Speaker::Caller,
                text,
                ..
            })) => break text,
            Ok(Some(_)) => continue,
            other => panic!("no caller turn: {other:?}"),
        }
    };
    // "goodbye" was spoken; the network recognizer's words are what counted.
    assert_eq!(caller, "I want to talk to a human");
    assert_eq!(
        fallbacks.len(),
        1,
        "one failure, then espeak-ng only: {fallbacks:?}"
    );
    assert_eq!(fallbacks[0].0, "tts");
    assert!(
        fallbacks[0].1.contains("connection refused") && fallbacks[0].1.ends_with("used espeak-ng")
    );
}

#[tokio::test]
async fn a_streaming_synthesizer_is_heard_before_it_finishes() {
    let voices = Voices {
        remote_tts: Some(Arc::new(SlowVoice)),
        ..voices()
    };
    let phone = call(voices).await;
    let start = Instant::now();
    let first = phone.drain(Duration::from_millis(1500)).await;
    // The first 200 ms played while the stream stalled.
    assert_eq!(
        first.len(),
        10,
        "{} packets in the first 1.5 s",
        first.len()
    );
    assert!(Packet::parse(&first[0]).unwrap().marker);
    let rest = phone.drain(Duration::from_millis(2000)).await;
    assert_eq!(rest.len(), 10, "{} packets after the stall", rest.len());
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[tokio::test]
async fn once_the_human_answers_audio_is_relayed_both_ways() {
    let mut phone = call(voices()).await;
    // Press 0 for a person.
    for end in [false, true, true, true] {
        phone
            .send(101, 500, &[0, if end { 0x80 } else { 0 }, 0x03, 0x20])
            .await;
    }
    let (summary, done) = loop {
        match tokio::time::timeout(Duration::from_secs(10), phone.events.recv()).await {
            Ok(Some(AgentEvent::Escalate { summary, done, .. })) => break (summary, done),
            Ok(Some(_)) => continue,
            other => panic!("no escalation: {other:?}"),
        }
    };
    assert!(summary.contains("caller pressed 0"), "{summary}");
    // The human's phone, and our socket facing it.
    let desk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let toward_desk = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let toward_desk_addr = toward_desk.local_addr().unwrap();
    done.send(Some(Bridge {
        socket: toward_desk,
        peer: desk.local_addr().unwrap(),
        release: Box::new(()),
    }))
    .unwrap();
    assert_eq!(
        phone
            .turn(Speaker::System, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("the caller is connected to a person")
    );
    while !phone.drain(Duration::from_millis(50)).await.is_empty() {}
    // Caller → human, untouched.
    phone.send(0, 160, &[0x55; 160]).await;
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_secs(2), desk.recv_from(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(from, toward_desk_addr);
    assert_eq!(Packet::parse(&buf[..n]).unwrap().payload, &[0x55; 160]);
    // Human → caller.
    let mut p = Vec::new();
    rtp::write(&mut p, false, 0, 9, 9, 99, &[0x66; 160]);
    desk.send_to(&p, toward_desk_addr).await.unwrap();
    let got = phone.drain(Duration::from_millis(500)).await;
    assert!(
        got.iter().any(|g| Packet::parse(g).unwrap().ssrc == 99),
        "{} packets",
        got.len()
    );
}
