//! What a call's agent tells the worker, and what the worker gives it: its
//! media, the providers serving it, and the human's side of a transfer.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio::sync::{oneshot, watch};

use super::llm::Llm;
use crate::media::g711::Law;
use crate::media::rtcp::MediaStats;
use crate::speech::espeak::Espeak;
use crate::speech::remote::{Synthesizer, Transcriber};
use crate::speech::sphinx::Sphinx;

/// Who a transcript turn belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    Agent,
    Caller,
    Human,
    System,
}

impl Speaker {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Caller => "caller",
            Self::Human => "human",
            Self::System => "system",
        }
    }
}

#[derive(Debug)]
pub enum AgentEvent {
    Turn {
        speaker: Speaker,
        text: String,
        at_ms: u64,
        /// For agent replies: end of the caller's speech → first reply packet.
        latency_ms: Option<u64>,
    },
    /// The caller asked for a human. Answer with the human's media once
    /// they answer (the agent then relays audio between the two), or
    /// `None` when nobody answers (the agent offers to take a message).
    Escalate {
        reason: String,
        /// What the caller said, for the human (at most 1,024 bytes).
        summary: String,
        /// The escalation target the model chose, if any.
        target: Option<String>,
        at_ms: u64,
        done: oneshot::Sender<Option<Bridge>>,
    },
    /// A layer's provider failed and the embedded one served instead.
    Fallback { layer: &'static str, reason: String },
    /// The call's media quality so far (every 5 s, and at the agent's hang-up).
    Media(MediaStats),
    /// The agent is done: hang up.
    HangUp,
}

/// The call's media: the socket the supervisor bound and the caller's RTP address.
#[derive(Debug)]
pub struct CallMedia {
    pub socket: UdpSocket,
    pub peer: SocketAddr,
    pub law: Law,
    /// The telephone-event payload type the caller offered, if any.
    pub dtmf_pt: Option<u8>,
    /// The session as re-negotiated in the call (re-INVITE, UPDATE), if
    /// the user agent reports it.
    pub updates: Option<watch::Receiver<MediaUpdate>>,
    /// The RTCP socket (the RTP port + 1), for reports both ways.
    pub rtcp: Option<UdpSocket>,
}

/// The caller's media after a re-INVITE or UPDATE: where to send, in which
/// codec, and whether we may send at all (a caller holding the call with
/// `sendonly` or `inactive` hears nothing from us).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaUpdate {
    pub peer: SocketAddr,
    pub law: Law,
    pub sending: bool,
}

/// The human's side of an escalated call: a socket of our own facing them
/// and their RTP address. Both sides use the caller's codec (the offer to
/// the human carries only that one), so audio is relayed untouched.
#[derive(Debug)]
pub struct Bridge {
    pub socket: UdpSocket,
    pub peer: SocketAddr,
    /// Dropped after `socket` (field order): whoever lent the socket gets
    /// it back only once it is closed.
    pub release: Box<dyn std::fmt::Debug + Send>,
}

/// Longest summary handed to the human (INTERFACES.md).
pub const MAX_SUMMARY: usize = 1024;

/// The providers serving this call: the embedded speech providers this
/// worker could open, and a language model when the document names one
/// (without it, `rules` decides), and network speech providers.
///
/// A network provider (`remote_*`, `llm`) that fails once serves no more
/// of the call: the embedded provider of its layer takes over, so a dead
/// server costs the caller one time-out, not one per turn.
#[derive(Debug, Clone, Default)]
pub struct Voices {
    pub tts: Option<Espeak>,
    pub stt: Option<Sphinx>,
    pub llm: Option<Arc<dyn Llm>>,
    pub remote_stt: Option<Arc<dyn Transcriber>>,
    pub remote_tts: Option<Arc<dyn Synthesizer>>,
}
