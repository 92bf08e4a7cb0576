//! SIP at the level both processes need it, without a full parser.
//!
//! The router reads only what it routes on (the Request-URI user, Call-ID,
//! Via) with a zero-copy scan over the raw bytes; the worker's user agent
//! builds on the same scan. Keeping this our own code is deliberate:
//! rsip 0.4 loses the user part of `sip:first.last@example.com` and ignores
//! compact header forms (see docs/sip.md), and routing must not.
//!
//! - [`scan`]: start line, header lookup (compact forms, folding), body.
//! - [`uri`]: the user part of `sip:`/`sips:`/`tel:` URIs.
//! - [`validate`]: the checks a user agent server makes before acting on a request.
//! - [`via`]: the top Via, and where a response must go (RFC 3261 §18.2.2, RFC 3581).
//! - [`reply`]: building a response that mirrors a request's headers.
//! - [`route`]: the router's decision for one inbound message (a pure function).
//! - [`framing`]: finding message boundaries in a TCP byte stream.
//! - [`stream`]: reading whole messages from, and writing to, a TCP stream.

pub mod digest;
pub mod framing;
pub mod reply;
pub mod route;
pub mod scan;
pub mod stream;
pub mod uri;
pub mod validate;
pub mod via;

pub use scan::{scan, scan_head, ScanError, Scanned, StartLine};

/// The methods a Bulkhead tenant answers, for `Allow` (the router's 405
/// and the worker's answers say the same).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE, NOTIFY";
