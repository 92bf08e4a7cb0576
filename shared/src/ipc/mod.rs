//! The protocol between the supervisor and one worker, over a
//! `SOCK_SEQPACKET` socketpair created per worker (no path on disk).
//!
//! - [`message`]: what is said, as typed messages with intent-named variants.
//! - [`codec`]: how a message becomes one packet, with a hard size bound.
//! - [`fds`]: packets with file descriptors attached (`SCM_RIGHTS`).
//! - [`link`]: the async end each process holds once its runtime runs.
//!
//! SEQPACKET keeps packet boundaries, so a frame is exactly one packet and no
//! length prefix is needed; a packet larger than [`codec::MAX_FRAME`] is an
//! error, never a partial read.

pub mod codec;
pub mod fds;
pub mod link;
pub mod message;
pub mod probe;

pub use codec::{CodecError, MAX_FRAME};
pub use link::Link;
pub use message::{Bootstrap, Control, FromWorker, SipPacket, ToWorker, Transport, WorkerConfig};
