//! The language-model layer as the turn loop sees it: a conversation goes
//! in, one decision comes out (say something, transfer to a person, or end
//! the call). The `rules` engine needs none of this; a provider that talks
//! to a server (`openai`) implements [`Llm`], and the worker supplies the
//! transport (its egress broker), so this crate opens no sockets of its own.

use std::fmt::Debug;
use std::sync::Arc;

use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

impl Message {
    pub fn new(role: Role, content: impl Into<String>) -> Self {
        Self {
            role,
            content: content.into(),
        }
    }
}

/// What the model decided to do with the caller's turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Say(String),
    /// The `transfer_to_human` tool: `say` is what the model wrote alongside it.
    Transfer {
        reason: String,
        summary: String,
        target: Option<String>,
        say: Option<String>,
    },
    /// The `end_call` tool.
    EndCall {
        reason: String,
        say: Option<String>,
    },
}

/// Why the model gave no usable decision; the turn falls back to `rules`
/// and the call record names this.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct LlmError(pub String);

/// What a model sends as it answers: its words as they come (so the agent
/// can speak a first sentence early), then its decision.
#[derive(Debug)]
pub enum Piece {
    Text(String),
    Done(Result<Decision, LlmError>),
}

/// The answer as it streams; closing without `Done` is a failure.
pub type Answering = mpsc::Receiver<Piece>;

/// A language model. `decide` owns what it needs: the call may end (and drop
/// the receiver) at any point.
pub trait Llm: Send + Sync + Debug {
    /// The provider's name for the call record (`openai`).
    fn name(&self) -> &'static str;
    fn decide(&self, conversation: Arc<[Message]>) -> Answering;
}
