//! The agent: its document, the `rules` engine, the language-model layer
//! (and the OpenAI-compatible wire format) and the turn loop.

pub mod call;
pub mod doc;
pub mod endpoint;
pub mod escalation;
pub mod events;
pub mod llm;
pub mod openai;
pub mod openai_stream;
pub mod phrases;
pub mod routing;
pub mod rules;
pub mod speaker;

pub use call::{run, AgentEvent, Bridge, CallMedia, MediaUpdate, Speaker, Voices, MAX_SUMMARY};
pub use doc::{object_from_json, Action, AgentDoc, DocError, Intent};
