//! The worker's SIP side, layered so each part depends only downward:
//! [`msg`] (message facade) → [`transport`] (where bytes come from and go) →
//! [`ua`] (transactions, dialogs, the call's life and its record).

pub mod auth;
pub mod msg;
pub mod policy;
pub mod rtp;
pub mod sdp;
pub mod session_timer;
pub mod transport;
pub mod txn;
pub mod ua;
