//! The Bulkhead supervisor as a library: the `bulkhead` binary is a thin
//! `main` over it, and integration tests and `demo` drive it in-process.

#![deny(unsafe_code)]

pub mod api;
pub mod cgroup;
pub mod cli;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod histogram;
pub mod history;
pub mod keystore;
pub mod limits;
pub mod master_key;
pub mod ports;
pub mod registry;
pub mod router;
#[allow(unsafe_code)] // pre-exec syscalls, each with a SAFETY comment
pub mod sandbox;
#[allow(unsafe_code)] // prctl, setrlimit and mlock, each with a SAFETY comment
pub mod self_protect;
pub mod sipclient;
#[allow(unsafe_code)] // pre_exec registration
pub mod spawn;
