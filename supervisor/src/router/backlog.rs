//! Refusing new calls to a worker that has fallen behind.
//!
//! A tenant's limits may admit more calls than its worker can serve (an
//! admin raising them past what the machine does, a machine busy with
//! other work). Its socket then fills with SIP it has not read: the calls
//! it has wait behind new ones, and so do the supervisor's control frames
//! (the heartbeat among them). One tenant offered 4,000 calls/s for 12 s
//! completed 26,708 of 48,000 calls (BENCHMARKS.md, eleventh session).
//!
//! So the router reads how much the worker has left unread on its socket
//! before each new call. A backlog that stands, above [`BEHIND`] at every
//! new call for [`STANDING`], refuses new calls with a 503 until a new call
//! finds the worker caught up ([`Backlog`]): a refusal costs the router a
//! few microseconds and the worker nothing. A burst that the worker clears
//! within [`STANDING`] is never refused. Past [`FULL`] new calls are
//! refused at once, so the calls in progress (their ACKs and BYEs) and the
//! control frames keep the rest of the socket. This bounds only the queue
//! the router can see; the worker watches its own events the same way
//! (tenant-worker/src/sip/ua/invite.rs).

use std::time::Duration;

pub use bulkhead_shared::backlog::Backlog;

/// Unread bytes (as the kernel counts them: about 1.3 KB per SIP frame)
/// from which a worker is behind: some 50 frames, a few milliseconds' work.
pub const BEHIND: usize = 64 * 1024;
/// How long a worker may stay behind before new calls are refused.
pub const STANDING: Duration = Duration::from_millis(50);
/// Unread bytes past which new calls are refused at once: a quarter of the
/// socket's room as root (`SEND_BUFFER` in supervisor/src/spawn, 1 MiB,
/// which the kernel doubles for its bookkeeping). Without root the room is
/// `wmem_max` at most, and only the [`STANDING`] rule refuses.
pub const FULL: usize = 512 * 1024;

/// A new worker's socket, as its new calls will find it.
pub fn for_worker_socket() -> Backlog {
    Backlog::new(BEHIND, FULL, STANDING)
}
