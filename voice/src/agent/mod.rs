//! The agent: its document, the `rules` engine and the turn loop.

pub mod call;
pub mod doc;
pub mod rules;

pub use call::{run, AgentEvent, CallMedia, Speaker, Voices};
pub use doc::{Action, AgentDoc, DocError, Intent};
