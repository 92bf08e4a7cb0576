//! One call's turn loop: greet, listen, decide, speak, until the caller or
//! the agent hangs up. It owns the call's RTP socket; everything it learns
//! goes out as [`AgentEvent`]s, which the worker writes to the tenant's
//! store and turns into SIP (BYE, escalation).
//!
//! Turn-taking: the caller's audio passes the jitter buffer and the voice
//! activity detector; the end of speech sends the utterance to the
//! recognizer; the reply is synthesized and paced out at one packet per
//! 20 ms. The caller speaking over the agent stops the agent (barge-in).
//! Each reply's latency (end of speech → first reply packet) is reported.

use std::collections::hash_map::DefaultHasher;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::{interval, Instant, MissedTickBehavior};

use super::doc::AgentDoc;
use super::llm::{Decision, Llm, LlmError, Message, Role};
use super::openai::{clip, system_prompt};
use super::phrases::{self, Phrases};
use super::routing::{Opening, Then};
use super::rules::{Reply, Rules};
use super::speaker::{Spoken, VoiceTask};
use crate::media::dtmf::DtmfReader;
use crate::media::g711::Law;
use crate::media::jitter::{JitterBuffer, Playout};
use crate::media::vad::{Vad, VadEvent, PRE_ROLL};
use crate::media::{rtp, FRAME};
use crate::speech::espeak::{voice_for, Espeak};
use crate::speech::remote::{Synthesizer, Transcriber};
use crate::speech::sphinx::Sphinx;

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Agent,
    Caller,
    Human,
    System,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Caller => "caller",
            Self::Human => "human",
            Self::System => "system",
        }
    }
}

#[derive(Debug)]
pub enum AgentEvent {
    Turn {
        speaker: Speaker,
        text: String,
        at_ms: u64,
        /// For agent replies: end of the caller's speech → first reply packet.
        latency_ms: Option<u64>,
    },
    /// The caller asked for a human. Answer with the human's media once
    /// they answer (the agent then relays audio between the two), or
    /// `None` when nobody answers (the agent offers to take a message).
    Escalate {
        reason: String,
        /// What the caller said, for the human (at most 1,024 bytes).
        summary: String,
        /// The escalation target the model chose, if any.
        target: Option<String>,
        at_ms: u64,
        done: oneshot::Sender<Option<Bridge>>,
    },
    /// A layer's provider failed and the embedded one served instead.
    Fallback { layer: &'static str, reason: String },
    /// The agent is done: hang up.
    HangUp,
}

/// The call's media: the socket the supervisor bound and the caller's RTP address.
#[derive(Debug)]
pub struct CallMedia {
    pub socket: UdpSocket,
    pub peer: SocketAddr,
    pub law: Law,
    /// The telephone-event payload type the caller offered, if any.
    pub dtmf_pt: Option<u8>,
    /// The session as re-negotiated in the call (re-INVITE, UPDATE), if
    /// the user agent reports it.
    pub updates: Option<watch::Receiver<MediaUpdate>>,
}

/// The caller's media after a re-INVITE or UPDATE: where to send, in which
/// codec, and whether we may send at all (a caller holding the call with
/// `sendonly` or `inactive` hears nothing from us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaUpdate {
    pub peer: SocketAddr,
    pub law: Law,
    pub sending: bool,
}

/// The human's side of an escalated call: a socket of our own facing them
/// and their RTP address. Both sides use the caller's codec (the offer to
/// the human carries only that one), so audio is relayed untouched.
#[derive(Debug)]
pub struct Bridge {
    pub socket: UdpSocket,
    pub peer: SocketAddr,
    /// Dropped after `socket` (field order): whoever lent the socket gets
    /// it back only once it is closed.
    pub release: Box<dyn std::fmt::Debug + Send>,
}

/// Longest summary handed to the human (INTERFACES.md).
pub const MAX_SUMMARY: usize = 1024;

/// The providers serving this call: the embedded speech providers this
/// worker could open, and a language model when the document names one
/// (without it, `rules` decides), and network speech providers.
///
/// A network provider (`remote_*`, `llm`) that fails once serves no more
/// of the call: the embedded provider of its layer takes over, so a dead
/// server costs the caller one time-out, not one per turn.
#[derive(Debug, Clone, Default)]
pub struct Voices {
    pub tts: Option<Espeak>,
    pub stt: Option<Sphinx>,
    pub llm: Option<Arc<dyn Llm>>,
    pub remote_stt: Option<Arc<dyn Transcriber>>,
    pub remote_tts: Option<Arc<dyn Synthesizer>>,
}

/// A recognized utterance, and why the network recognizer did not serve it.
struct Heard {
    text: String,
    remote_failed: Option<String>,
}

/// A caller's words and what the model made of them.
type Decided = (String, Result<Decision, LlmError>);

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
    queue: VecDeque<Vec<u8>>,
    /// The agent's voice (synthesis off the media loop).
    voice: VoiceTask,
    /// Audio short of a whole frame, waiting for the rest of its stream.
    carry: Vec<i16>,
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
    decided: mpsc::Sender<Decided>,
    /// Recognition and model requests in flight, aborted with the call.
    tasks: JoinSet<()>,
    /// The caller holds the call: the agent neither speaks nor listens,
    /// and no silence prompt runs.
    on_hold: bool,
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
    let (decided, mut decided_rx) = mpsc::channel::<Decided>(4);
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
        decided,
        tasks,
        voice,
        carry: Vec::new(),
        on_hold: false,
        grammar_key: h.finish(),
        rules,
        doc,
        voices,
        media,
        events,
        started: Instant::now(),
        queue: VecDeque::new(),
        seq: random as u16,
        timestamp: (random >> 16) as u32,
        ssrc: (random >> 32) as u32,
        awaiting_reply: None,
        pending_reply: None,
        talk_spurt_start: true,
        mode: Mode::Conversation,
        caller_said: Vec::new(),
        transfer: None,
    };
    if call.voices.tts.is_none() {
        call.note(
            Speaker::System,
            "no text-to-speech: the agent cannot speak (install libespeak-ng1)",
        )
        .await;
    }
    if call.voices.stt.is_none() && call.voices.remote_stt.is_none() {
        call.note(Speaker::System, "no speech recognition: the agent hears only DTMF (install libpocketsphinx3 and pocketsphinx-en-us)").await;
    }
    if let Some(note) = &opening.note {
        call.note(Speaker::System, note).await;
    }
    let greeting = opening
        .greeting
        .unwrap_or_else(|| call.doc.greeting.clone());
    call.say(&greeting).await;
    match opening.then {
        Then::Converse => {}
        Then::TakeMessage => call.mode = Mode::Message,
        Then::Transfer { reason } => call.escalate(reason, None, None, None).await,
    }

    let mut jitter = JitterBuffer::new(3);
    let mut vad = Vad::new(END_OF_TURN);
    let mut dtmf = DtmfReader::default();
    let mut pre_roll: VecDeque<Vec<i16>> = VecDeque::new();
    let mut utterance: Option<Vec<i16>> = None;
    let (heard_tx, mut heard_rx) = mpsc::channel::<Heard>(4);
    let mut tick = interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut quiet_since = Instant::now();
    let mut prompts = 0;
    let mut buf = vec![0u8; 2048];
    let mut pcm = Vec::with_capacity(FRAME);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                while call.tasks.try_join_next().is_some() {}
                if call.send_next().await.is_err() {
                    return;
                }
                let idle = call.queue.is_empty() && !call.voice.busy() && utterance.is_none() && call.awaiting_reply.is_none() && call.pending_reply.is_none();
                if !idle || call.on_hold || matches!(call.mode, Mode::Transferring) {
                    quiet_since = Instant::now();
                } else if matches!(call.mode, Mode::Ending) {
                    let _ = call.events.send(AgentEvent::HangUp).await;
                    return;
                } else if quiet_since.elapsed() >= SILENCE_PROMPT {
                    prompts += 1;
                    if prompts > SILENCE_PROMPTS {
                        call.say(call.phrases.silent_goodbye).await;
                        call.mode = Mode::Ending;
                    } else {
                        call.say(call.phrases.still_there).await;
                    }
                    quiet_since = Instant::now();
                }
            }
            received = call.media.socket.recv_from(&mut buf) => {
                let Ok((n, from)) = received else { return };
                if from.ip() != call.media.peer.ip() || call.on_hold {
                    continue; // not the caller's media, or music on hold
                }
                let Ok(packet) = rtp::Packet::parse(&buf[..n]) else { continue };
                if Some(packet.payload_type) == call.media.dtmf_pt {
                    if let Some(digit) = dtmf.push(packet.timestamp, packet.payload) {
                        call.note(Speaker::Caller, &format!("[DTMF {digit}]")).await;
                        prompts = 0;
                        if digit == '0' {
                            call.escalate("caller pressed 0".into(), None, None, None).await;
                        }
                    }
                    continue;
                }
                if packet.payload_type != call.media.law.payload_type() {
                    continue;
                }
                for out in jitter.push(packet.seq, packet.payload) {
                    pcm.clear();
                    match out {
                        Playout::Frame(f) => call.media.law.decode(&f, &mut pcm),
                        Playout::Lost => pcm.resize(FRAME, 0),
                    }
                    match vad.push(&pcm) {
                        VadEvent::SpeechStart => {
                            // Barge-in: the caller talking over the agent stops it.
                            call.interrupt().await;
                            prompts = 0;
                            let mut u: Vec<i16> = pre_roll.drain(..).flatten().collect();
                            u.extend_from_slice(&pcm);
                            utterance = Some(u);
                        }
                        VadEvent::Speech => {
                            if let Some(u) = utterance.as_mut().filter(|u| u.len() < MAX_UTTERANCE) {
                                u.extend_from_slice(&pcm);
                            }
                        }
                        VadEvent::SpeechEnd => {
                            if let Some(u) = utterance.take() {
                                let can_hear = call.voices.stt.is_some() || call.voices.remote_stt.is_some();
                                if can_hear && !matches!(call.mode, Mode::Transferring) {
                                    call.awaiting_reply = Some(Instant::now());
                                    call.recognize(u, &heard_tx);
                                }
                            }
                        }
                        VadEvent::Silence => {
                            pre_roll.push_back(pcm.clone());
                            if pre_roll.len() > PRE_ROLL {
                                pre_roll.pop_front();
                            }
                        }
                    }
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
            Some((text, decision)) = decided_rx.recv() => call.decided(text, decision).await,
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
                        return bridge(call.media, human).await;
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

    /// Sends the utterance to the recognizer; the words come back on `heard`.
    /// The network recognizer goes first when there is one; the embedded
    /// one hears the utterance when it fails.
    fn recognize(&mut self, audio: Vec<i16>, heard: &mpsc::Sender<Heard>) {
        let (remote, stt) = (self.voices.remote_stt.clone(), self.voices.stt.clone());
        let (key, phrases, heard) = (self.grammar_key, self.rules.phrases(), heard.clone());
        let hint = self
            .doc
            .intents
            .iter()
            .flat_map(|i| &i.phrases)
            .take(50)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ");
        self.tasks.spawn(async move {
            let mut remote_failed = None;
            if let Some(remote) = remote {
                let audio: Arc<[i16]> = audio.as_slice().into();
                let attempt = tokio::time::timeout(SPEECH_TIMEOUT, remote.transcribe(audio, hint));
                match attempt.await {
                    Ok(Ok(text)) => {
                        let _ = heard
                            .send(Heard {
                                text,
                                remote_failed,
                            })
                            .await;
                        return;
                    }
                    Ok(Err(e)) => remote_failed = Some(format!("{}: {e}", remote.name())),
                    Err(_) => {
                        remote_failed = Some(format!(
                            "{}: no answer within {} s",
                            remote.name(),
                            SPEECH_TIMEOUT.as_secs()
                        ))
                    }
                }
            }
            let text = match stt {
                Some(stt) => stt
                    .transcribe(key, phrases, audio)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!(error = %e, "speech recognition failed");
                        String::new()
                    }),
                None => String::new(),
            };
            let _ = heard
                .send(Heard {
                    text,
                    remote_failed,
                })
                .await;
        });
    }

    /// A layer's network provider failed: the record says so, the
    /// transcript too, and the embedded provider serves the rest of the call.
    async fn fallback(&mut self, layer: &'static str, reason: String) {
        let embedded = match layer {
            "stt" => "pocketsphinx",
            "tts" => "espeak-ng",
            _ => "rules",
        };
        self.note(
            Speaker::System,
            &format!("{layer} fallback: {reason}; {embedded} serves the rest of the call"),
        )
        .await;
        let _ = self
            .events
            .send(AgentEvent::Fallback {
                layer,
                reason: format!("{reason}; used {embedded}"),
            })
            .await;
    }

    async fn heard(&mut self, text: String) {
        if matches!(self.mode, Mode::Message) {
            let message = if text.is_empty() {
                "[message not understood]".to_owned()
            } else {
                text
            };
            self.note(Speaker::Caller, &message).await;
            self.note(Speaker::System, "message taken").await;
            self.say(self.phrases.message_recorded).await;
            self.mode = Mode::Ending;
            return;
        }
        if text.is_empty() {
            self.note(Speaker::Caller, "[not understood]").await;
            self.say(self.phrases.not_caught).await;
            return;
        }
        self.note(Speaker::Caller, &text).await;
        self.caller_said.push(text.clone());
        if let Some(llm) = self.voices.llm.clone() {
            self.conversation
                .push(Message::new(Role::User, text.clone()));
            let skip = self.conversation.len().saturating_sub(LLM_WINDOW + 1);
            let conversation: Arc<[Message]> = self.conversation[..1]
                .iter()
                .chain(&self.conversation[1 + skip..])
                .cloned()
                .collect();
            let decided = self.decided.clone();
            self.tasks.spawn(async move {
                let decision = tokio::time::timeout(LLM_TIMEOUT, llm.decide(conversation))
                    .await
                    .unwrap_or_else(|_| {
                        Err(LlmError(format!(
                            "no answer within {} s",
                            LLM_TIMEOUT.as_secs()
                        )))
                    });
                let _ = decided.send((text, decision)).await;
            });
            return;
        }
        self.decide_by_rules(&text).await;
    }

    /// The model's decision on the caller's `text`; when it has none,
    /// `rules` decides this turn and the call record says why.
    async fn decided(&mut self, text: String, decision: Result<Decision, LlmError>) {
        match decision {
            Ok(Decision::Say(words)) => self.say(&words).await,
            Ok(Decision::Transfer {
                reason,
                summary,
                target,
                say,
            }) => self.escalate(reason, Some(summary), target, say).await,
            Ok(Decision::EndCall { reason, say }) => {
                self.note(
                    Speaker::System,
                    &format!("the model ended the call ({reason})"),
                )
                .await;
                self.end_call(say.as_deref()).await;
            }
            Err(e) => {
                let name = self.voices.llm.take().map_or("llm", |l| l.name());
                self.fallback("llm", format!("{name}: {e}")).await;
                self.decide_by_rules(&text).await;
            }
        }
    }

    async fn decide_by_rules(&mut self, text: &str) {
        let (intent, reply) = self.rules.decide(text);
        if let Some(intent) = intent {
            self.note(Speaker::System, &format!("intent: {intent}"))
                .await;
        }
        self.act(reply).await;
    }

    async fn act(&mut self, reply: Reply) {
        match reply {
            Reply::Say(text) => self.say(&text).await,
            Reply::Noted => self.say(self.phrases.noted).await,
            Reply::NotUnderstood => self.say(self.phrases.cannot_help).await,
            Reply::EndCall => self.end_call(None).await,
            Reply::TakeMessage => {
                self.say(self.phrases.leave_message).await;
                self.mode = Mode::Message;
            }
            Reply::Escalate { reason } => self.escalate(reason, None, None, None).await,
        }
    }

    async fn end_call(&mut self, goodbye: Option<&str>) {
        self.say(goodbye.unwrap_or(self.phrases.goodbye)).await;
        self.mode = Mode::Ending;
    }

    /// Announces the transfer and asks the worker to reach a person. The
    /// summary is the model's, or else the caller's own words.
    async fn escalate(
        &mut self,
        reason: String,
        summary: Option<String>,
        target: Option<String>,
        announce: Option<String>,
    ) {
        if self.transfer.is_some() {
            return;
        }
        self.say(announce.as_deref().unwrap_or(self.phrases.transferring))
            .await;
        let (done, answer) = oneshot::channel();
        let at_ms = self.at_ms();
        let summary = summary.unwrap_or_else(|| caller_summary(&reason, &self.caller_said));
        let _ = self
            .events
            .send(AgentEvent::Escalate {
                reason,
                summary,
                target,
                at_ms,
                done,
            })
            .await;
        self.transfer = Some(answer);
        self.mode = Mode::Transferring;
    }

    /// Asks the voice task for `text`. The turn is reported now, or, for a
    /// reply to the caller that is the next thing heard, with its latency
    /// when its first packet leaves.
    async fn say(&mut self, text: &str) {
        if self.voices.llm.is_some() {
            self.conversation
                .push(Message::new(Role::Assistant, text.to_owned()));
        }
        let silent = self.queue.is_empty() && !self.voice.busy();
        self.voice.say(text);
        match self.awaiting_reply.take() {
            Some(ended) if silent => {
                self.flush_pending().await;
                self.pending_reply = Some((text.to_owned(), ended));
            }
            _ => self.note(Speaker::Agent, text).await,
        }
    }

    /// What the voice task made: audio to queue in 20 ms frames, a sentence
    /// finished, or the network synthesizer given up for the call.
    async fn on_spoken(&mut self, spoken: Spoken) {
        match spoken {
            Spoken::Audio { generation, pcm } => {
                if self.voice.current(generation) {
                    self.carry.extend_from_slice(&pcm);
                    let whole = self.carry.len() / FRAME * FRAME;
                    let frames: Vec<i16> = self.carry.drain(..whole).collect();
                    self.enqueue(&frames);
                }
            }
            Spoken::Done { generation, audio } => {
                self.voice.finished();
                if self.voice.current(generation) {
                    let rest = std::mem::take(&mut self.carry);
                    self.enqueue(&rest);
                }
                if !audio && self.queue.is_empty() {
                    // Nothing to time the reply by.
                    self.flush_pending().await;
                }
            }
            Spoken::Fallback { reason } => {
                self.voices.remote_tts = None;
                self.fallback("tts", reason).await;
            }
        }
    }

    /// Encodes `pcm` into frames, the last padded with silence.
    fn enqueue(&mut self, pcm: &[i16]) {
        for chunk in pcm.chunks(FRAME) {
            let mut frame = Vec::with_capacity(FRAME);
            self.media.law.encode(chunk, &mut frame);
            frame.resize(FRAME, self.media.law.silence());
            self.queue.push_back(frame);
        }
    }

    /// Stops the agent mid-sentence: queued audio and sentences still to
    /// come are dropped.
    async fn interrupt(&mut self) {
        self.queue.clear();
        self.carry.clear();
        self.voice.interrupt();
        self.talk_spurt_start = true;
        self.flush_pending().await;
    }

    /// Reports a reply that will not be timed (barge-in cleared it).
    async fn flush_pending(&mut self) {
        if let Some((text, _)) = self.pending_reply.take() {
            self.note(Speaker::Agent, &text).await;
        }
    }

    /// A re-negotiated session: a new address or codec, hold or resume.
    async fn apply(&mut self, update: MediaUpdate) {
        if update.law != self.media.law {
            // Queued audio is encoded in the old codec.
            self.queue.clear();
            self.carry.clear();
            self.media.law = update.law;
        }
        self.media.peer = update.peer;
        let hold = !update.sending;
        if hold != self.on_hold {
            self.on_hold = hold;
            self.talk_spurt_start = true;
            let note = if hold {
                "the caller put the call on hold"
            } else {
                "the caller resumed the call"
            };
            self.note(Speaker::System, note).await;
        }
    }

    /// Sends the next queued packet, if any (none while on hold: the queue waits).
    async fn send_next(&mut self) -> std::io::Result<()> {
        if self.on_hold {
            return Ok(());
        }
        let Some(frame) = self.queue.pop_front() else {
            return Ok(());
        };
        // The first packet of a talk spurt carries the marker bit.
        let marker = self.talk_spurt_start;
        self.talk_spurt_start = self.queue.is_empty();
        let mut packet = Vec::with_capacity(rtp::HEADER + frame.len());
        rtp::write(
            &mut packet,
            marker,
            self.media.law.payload_type(),
            self.seq,
            self.timestamp,
            self.ssrc,
            &frame,
        );
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        self.media.socket.send_to(&packet, self.media.peer).await?;
        if let Some((text, ended)) = self.pending_reply.take() {
            let _ = self
                .events
                .send(AgentEvent::Turn {
                    speaker: Speaker::Agent,
                    text,
                    at_ms: self.at_ms(),
                    latency_ms: Some(ended.elapsed().as_millis() as u64),
                })
                .await;
        }
        Ok(())
    }
}

/// The hand-off summary: why, and the caller's words, within [`MAX_SUMMARY`] bytes.
fn caller_summary(reason: &str, caller_said: &[String]) -> String {
    let mut out = format!("Caller asked for a person ({reason}).");
    if !caller_said.is_empty() {
        out.push_str(" Caller said: ");
        out.push_str(&caller_said.join(" / "));
    }
    clip(out, MAX_SUMMARY)
}

/// Relays audio between the caller and the human until the call ends
/// (the future is dropped) or a socket fails.
async fn bridge(caller: CallMedia, human: Bridge) {
    let (mut from_caller, mut from_human) = (vec![0u8; 2048], vec![0u8; 2048]);
    loop {
        tokio::select! {
            r = caller.socket.recv_from(&mut from_caller) => {
                let Ok((n, from)) = r else { return };
                if from.ip() == caller.peer.ip() {
                    let _ = human.socket.send_to(&from_caller[..n], human.peer).await;
                }
            }
            r = human.socket.recv_from(&mut from_human) => {
                let Ok((n, from)) = r else { return };
                if from.ip() == human.peer.ip() {
                    let _ = caller.socket.send_to(&from_human[..n], caller.peer).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_bounded_on_a_character_boundary() {
        let said = vec!["é".repeat(1000)];
        let s = caller_summary("human", &said);
        assert!(s.len() <= MAX_SUMMARY && s.starts_with("Caller asked for a person (human)."));
        assert_eq!(
            caller_summary("caller pressed 0", &[]),
            "Caller asked for a person (caller pressed 0)."
        );
    }
}
