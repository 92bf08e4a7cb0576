//! One call's turn loop: greet, listen, decide, speak, until the caller or
//! the agent hangs up. It owns the call's RTP socket; everything it learns
//! goes out as [`AgentEvent`]s, which the worker writes to the tenant's
//! store and turns into SIP (BYE, escalation).
//!
//! Turn-taking: the caller's audio passes the jitter buffer and the voice
//! activity detector; the end of speech sends the utterance to the
//! recognizer ([`turns`]); the reply is synthesized by the voice task and
//! paced out at one packet per 20 ms ([`output`]). The caller speaking
//! over the agent stops the agent (barge-in). Each reply's latency (end of
//! speech → first reply packet) is reported.

mod bridge;
mod model;
mod outbox;
mod output;
mod quality;
mod turns;

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{interval, Instant, MissedTickBehavior};

use super::doc::AgentDoc;
pub use super::events::{AgentEvent, Bridge, CallMedia, MediaUpdate, Speaker, Voices, MAX_SUMMARY};
use super::llm::{Message, Piece, Role};
use super::openai::system_prompt;
use super::phrases::{self, Phrases};
use super::routing::{Opening, Then};
use super::rules::Rules;
use super::speaker::VoiceTask;
use crate::media::dtmf::DtmfReader;
use crate::media::jitter::{JitterBuffer, Playout};
use crate::media::vad::{Vad, VadEvent, PRE_ROLL};
use crate::media::{rtp, FRAME};
use crate::speech::espeak::voice_for;

/// Quiet after the caller's last word that ends their turn.
const END_OF_TURN: usize = 30; // frames: 600 ms
/// Silence after the agent finishes before it asks again, and how often.
const SILENCE_PROMPT: Duration = Duration::from_secs(8);
const SILENCE_PROMPTS: u32 = 2;
/// The longest utterance kept for recognition (15 s).
const MAX_UTTERANCE: usize = 15 * 8000;
/// How long a turn waits for the language model before `rules` answers it.
const LLM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a network recognizer may take for one utterance.
const SPEECH_TIMEOUT: Duration = super::speaker::SPEECH_TIMEOUT;
/// Conversation turns sent to the model besides the system message.
const LLM_WINDOW: usize = 40;

/// A recognized utterance, and why the network recognizer did not serve it.
struct Heard {
    text: String,
    remote_failed: Option<String>,
}

/// A caller's words and a piece of the model's answer to them.
type Answer = (String, Piece);

enum Mode {
    Conversation,
    /// The next utterance is the caller's message.
    Message,
    /// Hang up once the queued audio has been sent.
    Ending,
    /// Waiting for the human to answer; the caller hears the announcement.
    Transferring,
}

struct Call {
    doc: Arc<AgentDoc>,
    /// What the agent says on its own, in the document's language.
    phrases: &'static Phrases,
    rules: Rules,
    grammar_key: u64,
    voices: Voices,
    media: CallMedia,
    events: mpsc::Sender<AgentEvent>,
    started: Instant,
    /// The agent's audio, sent one frame per tick.
    outbox: outbox::Outbox,
    /// The agent's voice (synthesis off the media loop).
    voice: VoiceTask,
    seq: u16,
    timestamp: u32,
    ssrc: u32,
    /// When the caller last stopped speaking, until the reply's first packet.
    awaiting_reply: Option<Instant>,
    /// A reply queued but not yet sent, with the end of speech it answers.
    pending_reply: Option<(String, Instant)>,
    talk_spurt_start: bool,
    mode: Mode,
    /// What the caller said, in order (the hand-off summary).
    caller_said: Vec<String>,
    /// The escalation's answer, while one is pending.
    transfer: Option<oneshot::Receiver<Option<Bridge>>>,
    /// What the model has been told, when a model decides.
    conversation: Vec<Message>,
    answers: mpsc::Sender<Answer>,
    /// The model's text not yet spoken (short of a sentence's end), and
    /// whether any of this turn's answer was spoken.
    model_text: String,
    model_spoke: bool,
    /// Recognition, model requests and the voice task, aborted with the call.
    tasks: JoinSet<()>,
    /// The caller holds the call: the agent neither speaks nor listens,
    /// and no silence prompt runs.
    on_hold: bool,
    /// Since when nothing has been said either way, and how many times the
    /// agent asked whether the caller is still there.
    quiet_since: Instant,
    prompts: u32,
    quality: quality::Quality,
}

/// The caller's audio on its way to an utterance.
struct Ear {
    jitter: JitterBuffer,
    vad: Vad,
    dtmf: DtmfReader,
    pre_roll: VecDeque<Vec<i16>>,
    utterance: Option<Vec<i16>>,
    heard: mpsc::Sender<Heard>,
}

/// Runs the call until the agent hangs up or the socket fails. To stop it
/// (the call ended), drop the future: its sockets close with it, so the
/// port is free again before the supervisor hands it out anew.
pub async fn run(
    doc: Arc<AgentDoc>,
    voices: Voices,
    media: CallMedia,
    opening: Opening,
    events: mpsc::Sender<AgentEvent>,
) {
    let rules = Rules::new(&doc);
    let mut h = DefaultHasher::new();
    format!("{:?}", rules.phrases()).hash(&mut h);
    let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
    let (answers, mut answers_rx) = mpsc::channel::<Answer>(16);
    let mut tasks = JoinSet::new();
    // persona.voice names a voice of the document's TTS provider; espeak-ng
    // standing in for another provider speaks the language's default.
    let persona = Some(&doc.persona.voice)
        .filter(|_| doc.tts.provider == "espeak-ng")
        .and_then(Option::as_deref);
    let espeak_voice = voice_for(persona, &doc.language);
    let (voice, mut spoken_rx) = VoiceTask::start(
        &mut tasks,
        voices.tts.clone(),
        voices.remote_tts.clone(),
        espeak_voice,
    );
    let mut call = Call {
        conversation: vec![Message::new(Role::System, system_prompt(&doc))],
        phrases: phrases::for_language(&doc.language),
        answers,
        model_text: String::new(),
        model_spoke: false,
        tasks,
        voice,
        on_hold: false,
        grammar_key: h.finish(),
        rules,
        doc,
        voices,
        media,
        events,
        started: Instant::now(),
        outbox: outbox::Outbox::default(),
        seq: random as u16,
        timestamp: (random >> 16) as u32,
        ssrc: (random >> 32) as u32,
        awaiting_reply: None,
        pending_reply: None,
        talk_spurt_start: true,
        mode: Mode::Conversation,
        caller_said: Vec::new(),
        transfer: None,
        quiet_since: Instant::now(),
        prompts: 0,
        quality: quality::Quality::new(),
    };
    call.open(opening).await;

    let (heard, mut heard_rx) = mpsc::channel::<Heard>(4);
    let mut ear = Ear {
        jitter: JitterBuffer::new(3),
        vad: Vad::new(END_OF_TURN),
        dtmf: DtmfReader::default(),
        pre_roll: VecDeque::new(),
        utterance: None,
        heard,
    };
    let mut tick = interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut buf = vec![0u8; 2048];
    let mut rtcp_buf = vec![0u8; 1500];
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if !call.on_tick(&ear).await {
                    return;
                }
            }
            received = call.media.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = received else { return };
                if from.ip() == call.media.peer.ip() && !call.on_hold {
                    call.on_packet(&mut ear, &buf[..n]).await;
                } // else: not the caller's media, or music on hold
            }
            received = async { call.media.rtcp.as_ref().expect("guarded").recv_from(&mut rtcp_buf).await }, if call.media.rtcp.is_some() => {
                match received {
                    Ok((n, from)) if from.ip() == call.media.peer.ip() => call.on_rtcp(&rtcp_buf[..n]),
                    Ok(_) => {}
                    Err(_) => call.media.rtcp = None,
                }
            }
            Some(spoken) = spoken_rx.recv() => call.on_spoken(spoken).await,
            Some(heard) = heard_rx.recv() => {
                if let Some(reason) = heard.remote_failed {
                    call.voices.remote_stt = None;
                    call.fallback("stt", reason).await;
                }
                call.heard(heard.text).await
            }
            Some((text, piece)) = answers_rx.recv() => call.on_model(text, piece).await,
            changed = async { call.media.updates.as_mut().expect("guarded").changed().await }, if call.media.updates.is_some() => {
                match changed {
                    Ok(()) => {
                        let update = *call.media.updates.as_mut().expect("guarded").borrow_and_update();
                        call.apply(update).await;
                    }
                    // The user agent is gone; the call ends with it.
                    Err(_) => call.media.updates = None,
                }
            }
            answer = async { call.transfer.as_mut().expect("guarded").await }, if call.transfer.is_some() => {
                call.transfer = None;
                match answer {
                    Ok(Some(human)) => {
                        // The announcement may not have played yet: its turn is kept untimed.
                        call.flush_pending().await;
                        call.note(Speaker::System, "the caller is connected to a person").await;
                        return bridge::bridge(call.media, human).await;
                    }
                    _ => {
                        call.mode = Mode::Message;
                        call.say(call.phrases.nobody_available).await;
                    }
                }
            }
        }
    }
}

impl Call {
    fn at_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    async fn note(&self, speaker: Speaker, text: &str) {
        let _ = self
            .events
            .send(AgentEvent::Turn {
                speaker,
                text: text.to_owned(),
                at_ms: self.at_ms(),
                latency_ms: None,
            })
            .await;
    }

    /// The call's first words, as routing decided: missing providers are
    /// noted, the greeting said, then conversation, a message or a transfer.
    async fn open(&mut self, opening: Opening) {
        if self.voices.tts.is_none() {
            self.note(
                Speaker::System,
                "no text-to-speech: the agent cannot speak (install libespeak-ng1)",
            )
            .await;
        }
        if self.voices.stt.is_none() && self.voices.remote_stt.is_none() {
            self.note(Speaker::System, "no speech recognition: the agent hears only DTMF (install libpocketsphinx3 and pocketsphinx-en-us)").await;
        }
        if let Some(note) = &opening.note {
            self.note(Speaker::System, note).await;
        }
        let greeting = opening
            .greeting
            .unwrap_or_else(|| self.doc.greeting.clone());
        self.say(&greeting).await;
        match opening.then {
            Then::Converse => {}
            Then::TakeMessage => self.mode = Mode::Message,
            Then::Transfer { reason } => self.escalate(reason, None, None, None).await,
        }
    }

    /// Every 20 ms: the next packet out, and the silence rules. False when
    /// the call is over.
    async fn on_tick(&mut self, ear: &Ear) -> bool {
        while self.tasks.try_join_next().is_some() {}
        if self.send_next().await.is_err() {
            return false;
        }
        self.report_if_due().await;
        let idle = self.outbox.is_empty()
            && !self.voice.busy()
            && ear.utterance.is_none()
            && self.awaiting_reply.is_none()
            && self.pending_reply.is_none();
        if !idle || self.on_hold || matches!(self.mode, Mode::Transferring) {
            self.quiet_since = Instant::now();
        } else if matches!(self.mode, Mode::Ending) {
            self.publish_quality().await;
            let _ = self.events.send(AgentEvent::HangUp).await;
            return false;
        } else if self.quiet_since.elapsed() >= SILENCE_PROMPT {
            self.prompts += 1;
            if self.prompts > SILENCE_PROMPTS {
                self.say(self.phrases.silent_goodbye).await;
                self.mode = Mode::Ending;
            } else {
                self.say(self.phrases.still_there).await;
            }
            self.quiet_since = Instant::now();
        }
        true
    }

    /// A packet from the caller: a DTMF digit, or audio for the jitter
    /// buffer and the voice activity detector.
    async fn on_packet(&mut self, ear: &mut Ear, data: &[u8]) {
        let Ok(packet) = rtp::Packet::parse(data) else {
            return;
        };
        if Some(packet.payload_type) == self.media.dtmf_pt {
            if let Some(digit) = ear.dtmf.push(packet.timestamp, packet.payload) {
                self.note(Speaker::Caller, &format!("[DTMF {digit}]")).await;
                self.prompts = 0;
                if digit == '0' {
                    self.escalate("caller pressed 0".into(), None, None, None)
                        .await;
                }
            }
            return;
        }
        if packet.payload_type != self.media.law.payload_type() {
            return;
        }
        self.received(&packet);
        let mut pcm = Vec::with_capacity(FRAME);
        for out in ear.jitter.push(packet.seq, packet.payload) {
            pcm.clear();
            match out {
                Playout::Frame(f) => self.media.law.decode(&f, &mut pcm),
                Playout::Lost => pcm.resize(FRAME, 0),
            }
            match ear.vad.push(&pcm) {
                VadEvent::SpeechStart => {
                    // Barge-in: the caller talking over the agent stops it.
                    self.interrupt().await;
                    self.prompts = 0;
                    let mut u: Vec<i16> = ear.pre_roll.drain(..).flatten().collect();
                    u.extend_from_slice(&pcm);
                    ear.utterance = Some(u);
                }
                VadEvent::Speech => {
                    if let Some(u) = ear.utterance.as_mut().filter(|u| u.len() < MAX_UTTERANCE) {
                        u.extend_from_slice(&pcm);
                    }
                }
                VadEvent::SpeechEnd => {
                    let Some(u) = ear.utterance.take() else {
                        continue;
                    };
                    let can_hear = self.voices.stt.is_some() || self.voices.remote_stt.is_some();
                    if can_hear && !matches!(self.mode, Mode::Transferring) {
                        self.awaiting_reply = Some(Instant::now());
                        self.recognize(u, &ear.heard);
                    }
                }
                VadEvent::Silence => {
                    ear.pre_roll.push_back(pcm.clone());
                    if ear.pre_roll.len() > PRE_ROLL {
                        ear.pre_roll.pop_front();
                    }
                }
            }
        }
    }
}
