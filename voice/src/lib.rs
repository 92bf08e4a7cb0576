//! The voice agent a tenant's worker runs on each call, without SQL or SIP:
//!
//! - [`media`]: G.711 μ-law/A-law, RTP packets, RFC 4733 telephone events, a
//!   jitter buffer, resampling and voice activity detection;
//! - [`speech`]: the embedded providers, libespeak-ng (TTS) and
//!   libpocketsphinx (STT), opened at run time so the build needs neither;
//! - [`agent`]: the agent document, the `rules` intent engine and the turn
//!   loop that listens, decides and speaks.
//!
//! The worker wires these to its SIP user agent, its RTP sockets and its
//! encrypted store. Nothing here links SQLite, so these tests stay fast.

pub mod agent;
pub mod media;
pub mod speech;
