//! The agent's voice: a task per call that turns sentences into 8 kHz
//! audio, one sentence after another, off the media loop. A network
//! synthesizer streams its audio, so the first packet can leave while the
//! rest of the sentence is still arriving; espeak-ng answers whole (it is
//! local and cached). The caller talking over the agent interrupts it: the
//! sentences asked for before are dropped, and audio still arriving for
//! them is discarded.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::speech::espeak::Espeak;
use crate::speech::remote::Synthesizer;

/// How long a network synthesizer may take for its first audio, and
/// between two chunks of a stream.
pub const SPEECH_TIMEOUT: Duration = Duration::from_secs(8);

/// What the speaker task reports to the turn loop.
#[derive(Debug)]
pub enum Spoken {
    /// Audio for the sentence asked for in `generation`.
    Audio { generation: u64, pcm: Arc<[i16]> },
    /// A sentence is finished (`audio`: whether any audio came).
    Done { generation: u64, audio: bool },
    /// The network synthesizer failed; espeak-ng speaks from now on.
    Fallback { reason: String },
}

struct Sentence {
    generation: u64,
    text: String,
}

/// The turn loop's handle on its speaker task.
#[derive(Debug)]
pub struct VoiceTask {
    sentences: mpsc::UnboundedSender<Sentence>,
    generation: Arc<AtomicU64>,
    /// Sentences asked for and not yet done.
    pending: usize,
}

impl VoiceTask {
    /// Starts the task (on the caller's `JoinSet`, so it ends with the call);
    /// its reports come on the returned receiver.
    pub fn start(
        tasks: &mut tokio::task::JoinSet<()>,
        tts: Option<Espeak>,
        remote: Option<Arc<dyn Synthesizer>>,
        voice: String,
    ) -> (Self, mpsc::Receiver<Spoken>) {
        let (sentences, requests) = mpsc::unbounded_channel();
        let (out, spoken) = mpsc::channel(64);
        let generation = Arc::new(AtomicU64::new(0));
        let worker = VoiceWorker {
            tts,
            remote,
            voice,
            generation: Arc::clone(&generation),
        };
        tasks.spawn(worker.run(requests, out));
        let task = Self {
            sentences,
            generation,
            pending: 0,
        };
        (task, spoken)
    }

    pub fn say(&mut self, text: &str) {
        let generation = self.generation.load(Ordering::Relaxed);
        if self
            .sentences
            .send(Sentence {
                generation,
                text: text.to_owned(),
            })
            .is_ok()
        {
            self.pending += 1;
        }
    }

    /// Drops every sentence asked for so far, spoken or not.
    pub fn interrupt(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether audio from `generation` is still wanted.
    pub fn current(&self, generation: u64) -> bool {
        generation == self.generation.load(Ordering::Relaxed)
    }

    /// A sentence is done.
    pub fn finished(&mut self) {
        self.pending = self.pending.saturating_sub(1);
    }

    /// Sentences still being synthesized.
    pub fn busy(&self) -> bool {
        self.pending > 0
    }
}

/// The task's side.
struct VoiceWorker {
    tts: Option<Espeak>,
    remote: Option<Arc<dyn Synthesizer>>,
    voice: String,
    generation: Arc<AtomicU64>,
}

impl VoiceWorker {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Sentence>,
        out: mpsc::Sender<Spoken>,
    ) {
        while let Some(sentence) = requests.recv().await {
            let generation = sentence.generation;
            let audio = if self.stale(generation) {
                false
            } else {
                self.speak(&sentence, &out).await
            };
            if out.send(Spoken::Done { generation, audio }).await.is_err() {
                return;
            }
        }
    }

    fn stale(&self, generation: u64) -> bool {
        generation != self.generation.load(Ordering::Relaxed)
    }

    /// Sends the sentence's audio; false when there was none.
    async fn speak(&mut self, sentence: &Sentence, out: &mpsc::Sender<Spoken>) -> bool {
        let generation = sentence.generation;
        if let Some(remote) = self.remote.clone() {
            match self.stream(&remote, sentence, out).await {
                Ok(audio) => return audio,
                Err(why) => {
                    // No audio came: espeak-ng says this sentence and the rest.
                    self.remote = None;
                    let reason = format!("{}: {why}", remote.name());
                    let _ = out.send(Spoken::Fallback { reason }).await;
                }
            }
        }
        let Some(tts) = &self.tts else {
            return false;
        };
        match tts.synthesize(&self.voice, &sentence.text).await {
            Ok(pcm) => out.send(Spoken::Audio { generation, pcm }).await.is_ok(),
            Err(e) => {
                tracing::warn!(error = %e, "speech synthesis failed");
                false
            }
        }
    }

    /// Streams the network synthesizer's audio. An error before the first
    /// chunk is returned (the caller falls back); one after it ends the
    /// sentence early, since repeating it from the start would be worse.
    async fn stream(
        &self,
        remote: &Arc<dyn Synthesizer>,
        sentence: &Sentence,
        out: &mpsc::Sender<Spoken>,
    ) -> Result<bool, String> {
        let generation = sentence.generation;
        let mut chunks = remote.synthesize(sentence.text.clone());
        let mut audio = false;
        loop {
            let next = tokio::time::timeout(SPEECH_TIMEOUT, chunks.recv()).await;
            let why = match next {
                Ok(Some(Ok(pcm))) => {
                    if self.stale(generation) {
                        return Ok(audio); // interrupted: stop reading
                    }
                    audio = true;
                    if out
                        .send(Spoken::Audio {
                            generation,
                            pcm: pcm.into(),
                        })
                        .await
                        .is_err()
                    {
                        return Ok(audio);
                    }
                    continue;
                }
                Ok(None) if audio => return Ok(true),
                Ok(None) => "the server sent no audio".to_owned(),
                Ok(Some(Err(e))) => e.to_string(),
                Err(_) => format!("no audio within {} s", SPEECH_TIMEOUT.as_secs()),
            };
            if audio {
                tracing::warn!(reason = %why, "the speech stream broke off");
                return Ok(true);
            }
            return Err(why);
        }
    }
}
