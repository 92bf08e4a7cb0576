//! The turn's decisions: the caller's words go to the recognizer, then to
//! the language model or the `rules` engine, and become an action (say,
//! take a message, transfer, end the call). A network provider that fails
//! hands its layer to the embedded one for the rest of the call.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{AgentEvent, Call, Heard, Mode, Speaker, MAX_SUMMARY, SPEECH_TIMEOUT};
use crate::agent::openai::clip;
use crate::agent::rules::Reply;

impl Call {
    /// Sends the utterance to the recognizer; the words come back on `heard`.
    /// The network recognizer goes first when there is one; the embedded
    /// one hears the utterance when it fails.
    pub(super) fn recognize(&mut self, audio: Vec<i16>, heard: &mpsc::Sender<Heard>) {
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
    pub(super) async fn fallback(&mut self, layer: &'static str, reason: String) {
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

    pub(super) async fn heard(&mut self, text: String) {
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
            return self.ask_model(llm, text);
        }
        self.decide_by_rules(&text).await;
    }

    pub(super) async fn decide_by_rules(&mut self, text: &str) {
        let (intent, reply) = self.rules.decide(text);
        if let Some(intent) = intent {
            self.note(Speaker::System, &format!("intent: {intent}"))
                .await;
        }
        self.act(reply).await;
    }

    pub(super) async fn act(&mut self, reply: Reply) {
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

    /// Says goodbye (`Some("")`: it was said already) and hangs up after.
    pub(super) async fn end_call(&mut self, goodbye: Option<&str>) {
        let words = goodbye.unwrap_or(self.phrases.goodbye);
        if !words.is_empty() {
            self.say(words).await;
        }
        self.mode = Mode::Ending;
    }

    /// Announces the transfer (`Some("")`: it was announced already) and
    /// asks the worker to reach a person. The summary is the model's, or
    /// else the caller's own words.
    pub(super) async fn escalate(
        &mut self,
        reason: String,
        summary: Option<String>,
        target: Option<String>,
        announce: Option<String>,
    ) {
        if self.transfer.is_some() {
            return;
        }
        let words = announce.unwrap_or_else(|| self.phrases.transferring.to_owned());
        if !words.is_empty() {
            self.say(&words).await;
        }
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
