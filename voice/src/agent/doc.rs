//! The agent document (docs/interfaces.md): what the agent says, hears and
//! does, and which provider serves each layer. Unknown fields are refused and
//! every error names its field, so a tenant's `PUT /v1/agent` gets a precise 422.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::endpoint::Endpoint;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AgentDoc {
    pub greeting: String,
    pub prompt: String,
    pub persona: Persona,
    pub language: String,
    pub stt: Provider,
    pub llm: Provider,
    pub tts: Provider,
    pub intents: Vec<Intent>,
}

impl Default for AgentDoc {
    fn default() -> Self {
        Self {
            greeting: "Hello, how can I help you?".into(),
            prompt: String::new(),
            persona: Persona::default(),
            language: "en-US".into(),
            stt: Provider::named("pocketsphinx"),
            llm: Provider::named("rules"),
            tts: Provider::named("espeak-ng"),
            intents: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Persona {
    pub name: String,
    /// An espeak-ng voice such as `en-us+f3`; the language's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Write-only: `GET` shows `api_key_set` instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("writeOnly" = true))]
    pub api_key: Option<String>,
    /// Read-only: whether `api_key` is set. `GET` shows it; a `PUT` may
    /// send it back (a document read, edited and written) and it is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    #[schemars(extend("readOnly" = true))]
    pub api_key_set: bool,
}

fn is_false(b: &bool) -> bool {
    !b
}

impl Provider {
    pub fn named(name: &str) -> Self {
        Self {
            provider: name.into(),
            base_url: None,
            model: None,
            api_key: None,
            api_key_set: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    pub name: String,
    #[serde(default)]
    pub phrases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Escalate,
    Answer,
    EndCall,
    TakeMessage,
}

/// A document that parses but cannot be used, naming the field.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{field}: {message}")]
pub struct DocError {
    pub field: String,
    pub message: String,
}

const STT: &[&str] = &["pocketsphinx", "openai"];
const LLM: &[&str] = &["rules", "openai"];
const TTS: &[&str] = &["espeak-ng", "openai"];
const MAX_TEXT: usize = 2000;
const MAX_INTENTS: usize = 100;
const MAX_PHRASES: usize = 50;

/// The error for `field`, as a `Result` to return or `?`.
pub(super) fn fail(field: impl Into<String>, message: impl Into<String>) -> Result<(), DocError> {
    Err(DocError {
        field: field.into(),
        message: message.into(),
    })
}

impl AgentDoc {
    /// Parses a document from JSON, refusing unknown fields (named).
    pub fn from_json(body: &[u8]) -> Result<Self, DocError> {
        let doc: Self = object_from_json(body)?;
        doc.validate()?;
        Ok(doc)
    }

    pub fn validate(&self) -> Result<(), DocError> {
        for (field, text) in [("greeting", &self.greeting), ("prompt", &self.prompt)] {
            if text.len() > MAX_TEXT {
                fail(field, format!("at most {MAX_TEXT} bytes"))?;
            }
        }
        if self.language.is_empty() || self.language.len() > 35 {
            fail("language", "a language tag such as en-US")?;
        }
        for (field, p, known) in [
            ("stt", &self.stt, STT),
            ("llm", &self.llm, LLM),
            ("tts", &self.tts, TTS),
        ] {
            if !known.contains(&p.provider.as_str()) {
                fail(
                    format!("{field}.provider"),
                    format!("one of {}", known.join(", ")),
                )?;
            }
            if p.provider == "openai" {
                match p.base_url.as_deref().map(Endpoint::parse) {
                    None => fail(
                        format!("{field}.base_url"),
                        "an http:// or https:// URL is required for openai",
                    )?,
                    Some(Err(e)) => fail(format!("{field}.base_url"), e)?,
                    Some(Ok(_)) => {}
                }
                if p.model.as_deref().is_none_or(str::is_empty) {
                    fail(format!("{field}.model"), "required for openai")?;
                }
            }
        }
        if self.intents.len() > MAX_INTENTS {
            fail("intents", format!("at most {MAX_INTENTS}"))?;
        }
        for (i, intent) in self.intents.iter().enumerate() {
            if intent.name.is_empty() {
                fail(format!("intents[{i}].name"), "required")?;
            }
            if intent.phrases.len() > MAX_PHRASES || intent.phrases.iter().any(|p| p.len() > 200) {
                fail(
                    format!("intents[{i}].phrases"),
                    format!("at most {MAX_PHRASES} phrases of 200 bytes"),
                )?;
            }
            let answer = intent.answer.as_deref().unwrap_or("");
            if intent.action == Some(Action::Answer) && answer.is_empty() {
                fail(
                    format!("intents[{i}].answer"),
                    "required when the action is answer",
                )?;
            }
            if answer.len() > MAX_TEXT {
                fail(
                    format!("intents[{i}].answer"),
                    format!("at most {MAX_TEXT} bytes"),
                )?;
            }
        }
        Ok(())
    }
}

/// Parses a JSON object into `T`. serde lets a struct come from an array
/// too (`[]` would be a document of defaults), so anything but an object
/// at the top is refused first.
pub fn object_from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DocError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(DocError {
            field: String::new(),
            message: "the body must be a JSON object".into(),
        });
    }
    serde_json::from_slice(body).map_err(DocError::from_json)
}

impl DocError {
    /// A JSON error, naming the field when serde refused an unknown one
    /// ("unknown field `x`, expected ...").
    pub fn from_json(e: serde_json::Error) -> Self {
        let message = e.to_string();
        let field = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split('`').next())
            .unwrap_or_default()
            .to_owned();
        Self { field, message }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interfaces_example_parses_and_omitted_fields_default() {
        let doc = AgentDoc::from_json(br#"{"greeting": "Thank you for calling Maple Clinic.", "prompt": "You are the front desk...",
 "persona": {"name": "Maple", "voice": "en-us+f3"}, "language": "en-US",
 "stt": {"provider": "pocketsphinx"}, "llm": {"provider": "rules"}, "tts": {"provider": "espeak-ng"},
 "intents": [{"name": "human", "phrases": ["talk to a human", "speak to a person"], "action": "escalate"},
             {"name": "hours", "phrases": ["opening hours"], "action": "answer", "answer": "We are open nine to five."}]}"#).unwrap();
        assert_eq!(doc.intents[1].action, Some(Action::Answer));
        for not_an_object in [&b"[]"[..], b"null", b"", b" [\"hi\"]", b"\"x\""] {
            assert!(AgentDoc::from_json(not_an_object).is_err());
        }
        let minimal = AgentDoc::from_json(b" {}").unwrap();
        assert_eq!(minimal, AgentDoc::default());
    }

    #[test]
    fn errors_name_the_field() {
        let err = |body: &str| AgentDoc::from_json(body.as_bytes()).unwrap_err().field;
        assert_eq!(err(r#"{"greting": "hi"}"#), "greting");
        assert_eq!(
            err(r#"{"stt": {"provider": "whisper-local"}}"#),
            "stt.provider"
        );
        assert_eq!(
            err(r#"{"llm": {"provider": "openai", "model": "m"}}"#),
            "llm.base_url"
        );
        assert_eq!(
            err(
                r#"{"llm": {"provider": "openai", "base_url": "https://k@api.example", "model": "m"}}"#
            ),
            "llm.base_url"
        );
        assert_eq!(
            err(r#"{"intents": [{"name": "h", "action": "answer"}]}"#),
            "intents[0].answer"
        );
        assert_eq!(
            err(r#"{"intents": [{"name": "h", "action": "dance"}]}"#),
            ""
        );
    }
}
