//! The embedded providers end to end: espeak-ng speaks a caller's words,
//! the audio crosses a G.711 telephone line, PocketSphinx hears it with the
//! tenant's intent grammar and the rules engine names the intent. Needs
//! libespeak-ng1, libpocketsphinx3 and pocketsphinx-en-us (scripts/test
//! installs them); without them these tests fail, naming the package.

use bulkhead_voice::agent::rules::Rules;
use bulkhead_voice::agent::AgentDoc;
use bulkhead_voice::media::g711::Law;
use bulkhead_voice::speech::espeak::Espeak;
use bulkhead_voice::speech::sphinx::Sphinx;

fn clinic() -> AgentDoc {
    AgentDoc::from_json(
        br#"{"intents": [
          {"name": "human", "phrases": ["talk to a human", "speak to a person"], "action": "escalate"},
          {"name": "hours", "phrases": ["opening hours"], "action": "answer", "answer": "We are open nine to five."},
          {"name": "message", "phrases": ["leave a message"], "action": "take_message"},
          {"name": "bye", "phrases": ["goodbye"], "action": "end_call"}]}"#,
    )
    .unwrap()
}

/// Caller wordings and the intent each means; most are not configured phrases.
pub const WORDINGS: &[(&str, &str)] = &[
    ("talk to a human", "human"),
    ("speak to a person", "human"),
    ("can I speak with a real person", "human"),
    ("operator please", "human"),
    ("I need to talk to someone", "human"),
    ("put me through to a representative please", "human"),
    ("opening hours", "hours"),
    ("what are your opening hours", "hours"),
    ("opening hours please", "hours"),
    ("I would like to leave a message", "message"),
    ("can I leave a message", "message"),
    ("goodbye", "bye"),
    ("bye bye", "bye"),
];

async fn hear(
    espeak: &Espeak,
    sphinx: &Sphinx,
    rules: &Rules,
    text: &str,
) -> (String, Option<String>) {
    let pcm = espeak.synthesize("en-us", text).await.unwrap();
    // Over the telephone line: μ-law and back.
    let mut coded = Vec::new();
    Law::MuLaw.encode(&pcm, &mut coded);
    let mut line = vec![0i16; 1600]; // 200 ms of silence first, as the VAD's pre-roll gives
    Law::MuLaw.decode(&coded, &mut line);
    // ...and the 600 ms of quiet that ends the turn, as the VAD passes it on.
    line.resize(line.len() + 4800, 0);
    let heard = sphinx.transcribe(1, rules.phrases(), line).await.unwrap();
    let intent = rules.intent_of(&heard).map(|i| i.name.clone());
    (heard, intent)
}

#[tokio::test]
async fn configured_phrases_and_other_wordings_reach_their_intent() {
    let espeak = Espeak::shared().expect("espeak-ng");
    let sphinx = Sphinx::start(1).expect("pocketsphinx");
    let rules = Rules::new(&clinic());
    let mut right = 0;
    for (text, want) in WORDINGS {
        let (heard, intent) = hear(&espeak, &sphinx, &rules, text).await;
        eprintln!("{text:?} -> {heard:?} -> {intent:?}");
        if intent.as_deref() == Some(*want) {
            right += 1;
        }
    }
    // The configured phrases themselves must all be heard.
    for text in ["talk to a human", "opening hours", "goodbye"] {
        assert_eq!(
            hear(&espeak, &sphinx, &rules, text).await.1.as_deref(),
            WORDINGS.iter().find(|(t, _)| *t == text).map(|(_, i)| *i)
        );
    }
    assert!(
        right * 4 >= WORDINGS.len() * 3,
        "{right}/{} wordings understood",
        WORDINGS.len()
    );
}

#[tokio::test]
async fn words_outside_every_intent_match_none() {
    let espeak = Espeak::shared().expect("espeak-ng");
    let sphinx = Sphinx::start(1).expect("pocketsphinx");
    let rules = Rules::new(&clinic());
    let (heard, intent) = hear(
        &espeak,
        &sphinx,
        &rules,
        "the quick brown fox jumps over the lazy dog",
    )
    .await;
    assert_eq!(intent, None, "heard {heard:?}");
}

#[tokio::test]
async fn each_language_with_phrases_is_spoken_in_its_own_voice() {
    use bulkhead_voice::agent::phrases::{for_language, LANGUAGES};
    use bulkhead_voice::speech::espeak::voice_for;
    let espeak = Espeak::shared().unwrap();
    let mut lengths = Vec::new();
    for lang in LANGUAGES {
        let text = for_language(lang).goodbye;
        let pcm = espeak
            .synthesize(&voice_for(None, lang), text)
            .await
            .unwrap_or_else(|e| panic!("{lang}: {e}"));
        assert!(pcm.len() > 8000 / 2, "{lang}: {} samples", pcm.len());
        lengths.push(pcm.len());
    }
    // Four different sentences, not one English fallback four times.
    lengths.sort_unstable();
    lengths.dedup();
    assert_eq!(lengths.len(), LANGUAGES.len(), "{lengths:?}");
}
