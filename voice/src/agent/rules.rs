//! The `rules` provider: the embedded intent engine. A caller's words match
//! an intent when one of its phrases (configured, or a usual wording of its
//! action) appears in them as consecutive words; the longest match wins.

use std::sync::Arc;

use super::doc::{Action, AgentDoc, Intent};
use crate::speech::grammar::{expand, words, IntentPhrases};

/// What the agent does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Say(String),
    Escalate {
        reason: String,
    },
    EndCall,
    TakeMessage,
    /// An intent without an action: recognized and logged only.
    Noted,
    NotUnderstood,
}

#[derive(Debug, Clone)]
pub struct Rules {
    intents: Vec<Intent>,
    phrases: Arc<Vec<IntentPhrases>>,
}

impl Rules {
    pub fn new(doc: &AgentDoc) -> Self {
        Self {
            intents: doc.intents.clone(),
            phrases: Arc::new(expand(&doc.intents)),
        }
    }

    /// The expanded phrases, which also tune the recognizer.
    pub fn phrases(&self) -> Arc<Vec<IntentPhrases>> {
        Arc::clone(&self.phrases)
    }

    /// The intent these words express, if any.
    pub fn intent_of(&self, text: &str) -> Option<&Intent> {
        let heard = words(text);
        let mut best: Option<(usize, usize)> = None;
        for (i, ip) in self.phrases.iter().enumerate() {
            for p in &ip.phrases {
                let found = heard.windows(p.len()).any(|w| w == p.as_slice());
                if found && best.is_none_or(|(_, len)| p.len() > len) {
                    best = Some((i, p.len()));
                }
            }
        }
        best.map(|(i, _)| &self.intents[i])
    }

    pub fn decide(&self, text: &str) -> (Option<String>, Reply) {
        let Some(intent) = self.intent_of(text) else {
            return (None, Reply::NotUnderstood);
        };
        let reply = match intent.action {
            Some(Action::Answer) => Reply::Say(intent.answer.clone().unwrap_or_default()),
            Some(Action::Escalate) => Reply::Escalate {
                reason: intent.name.clone(),
            },
            Some(Action::EndCall) => Reply::EndCall,
            Some(Action::TakeMessage) => Reply::TakeMessage,
            None => Reply::Noted,
        };
        (Some(intent.name.clone()), reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        let doc = AgentDoc::from_json(
            br#"{"intents": [
              {"name": "human", "phrases": ["talk to a human"], "action": "escalate"},
              {"name": "hours", "phrases": ["opening hours"], "action": "answer", "answer": "Nine to five."},
              {"name": "bye", "phrases": ["goodbye"], "action": "end_call"},
              {"name": "complaint", "phrases": ["complaint"]}]}"#,
        )
        .unwrap();
        Rules::new(&doc)
    }

    #[test]
    fn configured_and_usual_wordings_match() {
        let r = rules();
        let name = |t: &str| r.intent_of(t).map(|i| i.name.clone());
        assert_eq!(name("talk to a human"), Some("human".into()));
        assert_eq!(
            name("can I speak with a real person please"),
            Some("human".into())
        );
        assert_eq!(name("operator"), Some("human".into()));
        assert_eq!(name("what are your opening hours"), Some("hours".into()));
        assert_eq!(name("ok bye bye"), Some("bye".into()));
        assert_eq!(name("the weather is nice"), None);
        // "human" inside another word does not count.
        assert_eq!(name("humane society"), None);
    }

    #[test]
    fn actions_become_replies() {
        let r = rules();
        assert_eq!(
            r.decide("opening hours").1,
            Reply::Say("Nine to five.".into())
        );
        assert_eq!(r.decide("goodbye").1, Reply::EndCall);
        assert_eq!(
            r.decide("I have a complaint"),
            (Some("complaint".into()), Reply::Noted)
        );
        assert_eq!(r.decide("mumble").1, Reply::NotUnderstood);
        assert!(matches!(r.decide("operator").1, Reply::Escalate { .. }));
    }
}
