//! What the recognizer listens for, built from the tenant's intents.
//!
//! PocketSphinx's free-form language model turns espeak-ng speech at 8 kHz
//! into noise ("talk to a human" came out as "are you"), and a free word
//! loop is no better. A grammar of whole phrases is recognized exactly, but
//! callers do not repeat the configured phrase. So each intent's phrases
//! are widened with the usual wordings of its action (an `escalate` intent
//! also hears "operator" and "speak with a real person"), and every phrase
//! may be framed by a polite opening ("can I", "I'd like to") and closing
//! ("please"). docs/voice.md has the measurements behind this choice.
//!
//! The same expansion drives the `rules` engine's matching, so whatever the
//! recognizer can return, the engine can map back to an intent.

use std::fmt::Write;

use crate::agent::{Action, Intent};

const OPENINGS: &[&str] = &[
    "can i",
    "could i",
    "may i",
    "i want to",
    "i need to",
    "i would like to",
    "i'd like to",
    "let me",
    "please",
    "can you",
    "could you",
    "what are your",
    "when are you",
    "what time do you",
    "tell me your",
    "hi",
    "hello",
    "yes",
    "yes please",
    "i want",
    "i need",
    "give me",
    "get me",
    "put me through to",
    "connect me to",
];
/// Words that carry no intent on their own.
const STOP_WORDS: &[&str] = &[
    "a", "an", "the", "to", "of", "me", "please", "now", "you", "it", "i",
];
const CLOSINGS: &[&str] = &["please", "now", "today", "right now", "thanks", "thank you"];

/// Wordings every intent with this action also answers to.
fn action_wordings(action: Option<Action>) -> &'static [&'static str] {
    match action {
        Some(Action::Escalate) => &[
            "talk to a human",
            "talk to a person",
            "talk to someone",
            "talk to somebody",
            "talk to a real person",
            "talk to an operator",
            "talk to a representative",
            "talk to an agent",
            "speak to a human",
            "speak to a person",
            "speak to someone",
            "speak with a human",
            "speak with a person",
            "speak with someone",
            "speak with somebody",
            "speak with a real person",
            "speak to a real person",
            "speak to an operator",
            "speak to a representative",
            "a human",
            "a person",
            "a real person",
            "an operator",
            "a representative",
            "human",
            "person",
            "operator",
            "representative",
            "someone",
            "agent",
        ],
        Some(Action::TakeMessage) => &[
            "leave a message",
            "take a message",
            "a message",
            "message",
            "voicemail",
        ],
        Some(Action::EndCall) => &[
            "goodbye",
            "bye",
            "bye bye",
            "that's all",
            "no thanks",
            "hang up",
        ],
        Some(Action::Answer) | None => &[],
    }
}

/// Lower-case words of letters and apostrophes.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// One intent's phrases, as word lists: the configured ones first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentPhrases {
    pub intent: String,
    pub phrases: Vec<Vec<String>>,
}

pub fn expand(intents: &[Intent]) -> Vec<IntentPhrases> {
    intents
        .iter()
        .map(|intent| {
            let mut phrases: Vec<Vec<String>> = Vec::new();
            let configured: Vec<Vec<String>> = intent.phrases.iter().map(|p| words(p)).collect();
            // A phrase's last word is usually its head noun ("opening
            // hours" → "hours"), which callers keep when they reword it.
            let heads = configured
                .iter()
                .filter(|p| p.len() > 1)
                .filter_map(|p| p.last())
                .filter(|w| !STOP_WORDS.contains(&w.as_str()))
                .map(|w| vec![w.clone()]);
            let usual = action_wordings(intent.action).iter().map(|p| words(p));
            for p in configured.clone().into_iter().chain(heads).chain(usual) {
                if !p.is_empty() && !phrases.contains(&p) {
                    phrases.push(p);
                }
            }
            IntentPhrases {
                intent: intent.name.clone(),
                phrases,
            }
        })
        .collect()
}

/// The JSGF grammar for these intents, keeping only phrases whose every word
/// the recognizer's dictionary knows. `None` when nothing is left.
pub fn jsgf(intents: &[IntentPhrases], known: impl Fn(&str) -> bool) -> Option<String> {
    let usable = |p: &[String]| p.iter().all(|w| known(w));
    let alternatives = |list: &mut dyn Iterator<Item = Vec<String>>| {
        list.filter(|p| usable(p))
            .map(|p| p.join(" "))
            .collect::<Vec<_>>()
    };
    let mut rules = Vec::new();
    for (i, intent) in intents.iter().enumerate() {
        let alts = alternatives(&mut intent.phrases.iter().cloned());
        if !alts.is_empty() {
            rules.push(format!("<i{i}> = {};", alts.join(" | ")));
        }
    }
    if rules.is_empty() {
        return None;
    }
    let openings = alternatives(&mut OPENINGS.iter().map(|p| words(p)));
    let closings = alternatives(&mut CLOSINGS.iter().map(|p| words(p)));
    let names: Vec<String> = rules
        .iter()
        .map(|r| {
            r.split_once(' ')
                .map_or(String::new(), |(n, _)| n.to_owned())
        })
        .collect();
    let mut g = String::from("#JSGF V1.0;\ngrammar bulkhead;\n");
    let _ = writeln!(g, "public <utterance> = [<opening>] <intent> [<closing>];");
    let _ = writeln!(g, "<intent> = {};", names.join(" | "));
    let _ = writeln!(g, "<opening> = {};", openings.join(" | "));
    let _ = writeln!(g, "<closing> = {};", closings.join(" | "));
    for r in rules {
        let _ = writeln!(g, "{r}");
    }
    Some(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(name: &str, phrases: &[&str], action: Option<Action>) -> Intent {
        Intent {
            name: name.into(),
            phrases: phrases.iter().map(|p| (*p).to_owned()).collect(),
            action,
            answer: None,
        }
    }

    #[test]
    fn escalation_intents_hear_the_usual_wordings() {
        let e = expand(&[intent(
            "human",
            &["Talk to a HUMAN!"],
            Some(Action::Escalate),
        )]);
        assert_eq!(e[0].phrases[0], vec!["talk", "to", "a", "human"]);
        assert!(e[0].phrases.contains(&words("speak with a real person")));
        assert_eq!(
            e[0].phrases
                .iter()
                .filter(|p| **p == words("talk to a human"))
                .count(),
            1,
            "no duplicates"
        );
    }

    #[test]
    fn the_grammar_drops_unknown_words_and_names_every_intent() {
        let intents = expand(&[
            intent(
                "hours",
                &["opening hours", "zorblax times"],
                Some(Action::Answer),
            ),
            intent("bye", &[], Some(Action::EndCall)),
        ]);
        let g = jsgf(&intents, |w| w != "zorblax").unwrap();
        assert!(g.contains("<i0> = opening hours | hours | times;"), "{g}");
        assert!(g.contains("<intent> = <i0> | <i1>;"), "{g}");
        assert!(!g.contains("zorblax"));
        assert!(jsgf(&intents, |_| false).is_none());
    }
}
