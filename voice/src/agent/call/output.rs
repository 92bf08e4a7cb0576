//! The agent's audio out: sentences go to the voice task, its audio is
//! framed and queued, and one packet leaves per 20 ms tick. A reply's turn
//! is reported with its latency when its first packet leaves.

use super::{AgentEvent, Call, MediaUpdate, Speaker, FRAME};
use crate::agent::llm::{Message, Role};
use crate::agent::speaker::Spoken;
use crate::media::rtp;

impl Call {
    /// Asks the voice task for `text`. The turn is reported now, or, for a
    /// reply to the caller that is the next thing heard, with its latency
    /// when its first packet leaves.
    pub(super) async fn say(&mut self, text: &str) {
        if self.voices.llm.is_some() {
            self.conversation
                .push(Message::new(Role::Assistant, text.to_owned()));
        }
        let silent = self.outbox.is_empty() && !self.voice.busy();
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
    pub(super) async fn on_spoken(&mut self, spoken: Spoken) {
        match spoken {
            Spoken::Audio { generation, pcm } => {
                if self.voice.current(generation) {
                    self.outbox.push(&pcm);
                }
            }
            Spoken::Done { generation, audio } => {
                self.voice.finished();
                if self.voice.current(generation) {
                    self.outbox.end_sentence();
                }
                if !audio && self.outbox.is_empty() {
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

    /// Stops the agent mid-sentence: queued audio and sentences still to
    /// come are dropped.
    pub(super) async fn interrupt(&mut self) {
        self.outbox.clear();
        self.voice.interrupt();
        self.talk_spurt_start = true;
        self.flush_pending().await;
    }

    /// Reports a reply that will not be timed (barge-in cleared it).
    pub(super) async fn flush_pending(&mut self) {
        if let Some((text, _)) = self.pending_reply.take() {
            self.note(Speaker::Agent, &text).await;
        }
    }

    /// A re-negotiated session: a new address or codec, hold or resume.
    pub(super) async fn apply(&mut self, update: MediaUpdate) {
        if update.law != self.media.law {
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
    pub(super) async fn send_next(&mut self) -> std::io::Result<()> {
        if self.on_hold {
            return Ok(());
        }
        if self.outbox.is_empty() {
            return Ok(());
        }
        // The first packet of a talk spurt carries the marker bit.
        let marker = self.talk_spurt_start;
        let mut packet = Vec::with_capacity(rtp::HEADER + FRAME);
        rtp::write_header(
            &mut packet,
            marker,
            self.media.law.payload_type(),
            self.seq,
            self.timestamp,
            self.ssrc,
        );
        self.outbox.encode_next(self.media.law, &mut packet);
        self.talk_spurt_start = self.outbox.is_empty();
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME as u32);
        self.media.socket.send_to(&packet, self.media.peer).await?;
        self.sent(FRAME);
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
