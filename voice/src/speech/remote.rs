//! Speech providers behind a network (`openai`): the turn loop sees a
//! transcriber and a synthesizer; the worker supplies the transport. When
//! one fails, the embedded provider of that layer serves the turn and the
//! call record says why.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::SpeechError;

pub type Transcribed = Pin<Box<dyn Future<Output = Result<String, SpeechError>> + Send>>;
/// Audio as it arrives, 8 kHz mono, ending when the channel closes; an
/// error ends it early.
pub type SpeechChunks = mpsc::Receiver<Result<Vec<i16>, SpeechError>>;

/// Speech to text. `audio` is 8 kHz mono; `hint` lists the phrases the
/// tenant's intents expect (a recognizer may use them as a prompt).
pub trait Transcriber: Send + Sync + Debug {
    fn name(&self) -> &'static str;
    fn transcribe(&self, audio: Arc<[i16]>, hint: String) -> Transcribed;
}

/// Text to speech, streamed: the first audio can play while the rest of
/// the sentence is still being made.
pub trait Synthesizer: Send + Sync + Debug {
    fn name(&self) -> &'static str;
    fn synthesize(&self, text: String) -> SpeechChunks;
}
