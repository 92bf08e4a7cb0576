//! What the Bulkhead supervisor and its tenant workers both need, and nothing
//! that only one of them needs: the IPC protocol spoken over each worker's
//! `SOCK_SEQPACKET` socketpair, validated identifiers (tenant ids, phone
//! numbers), and the zero-copy SIP scanning that the router routes with and the
//! worker builds its user agent on.
//!
//! This crate links no SQLite and no HTTP stack, so its tests and fuzz builds
//! stay fast.

pub mod api_token;
pub mod backlog;
pub mod cidr;
pub mod ipc;
pub mod number;
pub mod rate;
pub mod room;
pub mod sip;
pub mod tenant_id;
pub mod time;
pub mod tls;
pub mod trunk;

pub use cidr::Cidr;
pub use number::Number;
pub use tenant_id::TenantId;
