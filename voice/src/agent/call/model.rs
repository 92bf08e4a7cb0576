//! The language model's side of a turn. The caller's words go to the model
//! with the conversation so far; its text streams back and each finished
//! sentence is spoken at once, so the caller hears the first sentence while
//! the model is still writing the rest. Its decision (say, transfer, end the
//! call) settles the turn. A model that fails before saying anything hands
//! the turn to `rules`, and the rest of the call too.

use std::sync::Arc;

use super::{Call, Speaker, LLM_TIMEOUT, LLM_WINDOW};
use crate::agent::llm::{Decision, Llm, LlmError, Message, Piece, Role};

impl Call {
    /// Sends the conversation and the caller's `text` to the model; its
    /// answer comes back piece by piece on `self.answers`.
    pub(super) fn ask_model(&mut self, llm: Arc<dyn Llm>, text: String) {
        self.conversation
            .push(Message::new(Role::User, text.clone()));
        let skip = self.conversation.len().saturating_sub(LLM_WINDOW + 1);
        let conversation: Arc<[Message]> = self.conversation[..1]
            .iter()
            .chain(&self.conversation[1 + skip..])
            .cloned()
            .collect();
        let answers = self.answers.clone();
        self.tasks.spawn(async move {
            let mut pieces = llm.decide(conversation);
            loop {
                // The budget applies to the first piece and to each gap after.
                let next = tokio::time::timeout(LLM_TIMEOUT, pieces.recv()).await;
                let piece = match next {
                    Ok(Some(piece)) => piece,
                    Ok(None) => {
                        Piece::Done(Err(LlmError("the answer ended without a decision".into())))
                    }
                    Err(_) => Piece::Done(Err(LlmError(format!(
                        "nothing within {} s",
                        LLM_TIMEOUT.as_secs()
                    )))),
                };
                let last = matches!(piece, Piece::Done(_));
                if answers.send((text.clone(), piece)).await.is_err() || last {
                    return;
                }
            }
        });
    }

    /// A piece of the model's answer to the caller's `text`.
    pub(super) async fn on_model(&mut self, text: String, piece: Piece) {
        match piece {
            Piece::Text(words) => {
                self.model_text.push_str(&words);
                while let Some(end) = sentence_end(&self.model_text) {
                    let sentence: String = self.model_text.drain(..end).collect();
                    self.say_model(&sentence).await;
                }
            }
            Piece::Done(decision) => {
                let rest = std::mem::take(&mut self.model_text);
                self.say_model(&rest).await;
                let spoke = std::mem::take(&mut self.model_spoke);
                self.decided(text, decision, spoke).await;
            }
        }
    }

    async fn say_model(&mut self, words: &str) {
        let words = words.trim();
        if !words.is_empty() {
            self.model_spoke = true;
            self.say(words).await;
        }
    }

    /// The model's decision. Its words were spoken as they streamed
    /// (`spoke`); a model that gave none is spoken from the decision.
    async fn decided(&mut self, text: String, decision: Result<Decision, LlmError>, spoke: bool) {
        // Already said: an empty announcement or goodbye says nothing more.
        let said = |words: Option<String>| if spoke { Some(String::new()) } else { words };
        match decision {
            Ok(Decision::Say(words)) => {
                if !spoke {
                    self.say(&words).await;
                }
            }
            Ok(Decision::Transfer {
                reason,
                summary,
                target,
                say,
            }) => {
                self.escalate(reason, Some(summary), target, said(say))
                    .await
            }
            Ok(Decision::EndCall { reason, say }) => {
                self.note(
                    Speaker::System,
                    &format!("the model ended the call ({reason})"),
                )
                .await;
                self.end_call(said(say).as_deref()).await;
            }
            Err(e) => {
                let name = self.voices.llm.take().map_or("llm", |l| l.name());
                self.fallback("llm", format!("{name}: {e}")).await;
                if !spoke {
                    self.decide_by_rules(&text).await;
                }
            }
        }
    }
}

/// The byte index just past the first finished sentence: a `.`, `!` or `?`
/// followed by white space.
fn sentence_end(text: &str) -> Option<usize> {
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if matches!(c, '.' | '!' | '?') && chars.peek().is_some_and(|(_, n)| n.is_whitespace()) {
            return Some(i + c.len_utf8());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences_end_at_a_mark_before_a_space() {
        assert_eq!(sentence_end("We are open. Come"), Some(12));
        assert_eq!(
            sentence_end("Really?! Yes"),
            Some(8),
            "marks together end together"
        );
        assert_eq!(
            sentence_end("Open 9.30 to 5"),
            None,
            "a decimal point is not an end"
        );
        assert_eq!(sentence_end("Not yet."), None, "more may follow");
        assert_eq!(sentence_end("¿Sí? Bueno"), Some("¿Sí?".len()));
    }
}
