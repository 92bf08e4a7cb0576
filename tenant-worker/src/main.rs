//! `bulkhead-worker`: one tenant's worker, started only by the supervisor.
//!
//! bootstrap (fd 3) → store (SQLCipher, this tenant's key) → runtime
//! (SIP user agent on the router link and the trunk port, tenant HTTP API).
//! The sandbox issue adds a hardening step (Landlock, seccomp) between store
//! and runtime, before any thread starts and before untrusted input is read.

#![deny(unsafe_code)]

mod agent;
mod backup;
mod bootstrap;
mod egress;
mod engines;
mod harden;
mod http;
mod probe;
mod providers;
mod retention;
mod run;
mod sip;
mod store;
mod uplink;

use std::process::ExitCode;

fn main() -> ExitCode {
    match run::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulkhead-worker: {e:#}");
            ExitCode::FAILURE
        }
    }
}
