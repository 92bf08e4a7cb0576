//! Escape probes (`bulkhead audit`): what the supervisor asks a probe worker
//! to try, and what the worker reports. A probe worker is started through the
//! same spawn path and sandbox as the tenant's real worker, with some layers
//! possibly switched off, runs the probes instead of serving, reports and exits.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The isolation layers a probe run can switch on and off, by name.
pub const LAYERS: &[&str] = &[
    "credentials",
    "namespaces",
    "network",
    "landlock",
    "seccomp",
    "cgroups",
];

/// What to probe, and with which of the worker-side layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeSpec {
    /// Layers applied by the worker itself (`landlock`, `seccomp`) that are on.
    pub landlock: bool,
    pub seccomp: bool,
    pub targets: ProbeTargets,
}

/// Host-side things another tenant or the supervisor owns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeTargets {
    pub state_dir: PathBuf,
    /// Another tenant's data directory, HTTP port and worker pid (host numbering).
    pub other_data_dir: Option<PathBuf>,
    pub other_http_port: Option<u16>,
    pub other_pid: Option<u32>,
    /// The supervisor's SIP router port on loopback.
    pub router_port: u16,
    /// `host:port` destinations to request from the egress broker
    /// (`bulkhead egress check`); empty for an audit.
    #[serde(default)]
    pub egress: Vec<(String, u16)>,
    /// The tenant's pids limit: holding more tasks than this at once is an escape.
    #[serde(default)]
    pub tasks_limit: Option<u32>,
    /// The tenant's memory limit in bytes: using more is an escape.
    #[serde(default)]
    pub memory_limit: Option<u64>,
}

/// One probe's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeOutcome {
    pub name: String,
    pub target: String,
    /// True when the probe reached its target.
    pub escaped: bool,
    /// The error that stopped it, or what it reached.
    pub detail: String,
    /// For a listener probe: the port it listens on, so the supervisor can
    /// check from the host whether anyone outside could reach it.
    #[serde(default)]
    pub port: Option<u16>,
}

/// A probe worker's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeReport {
    pub outcomes: Vec<ProbeOutcome>,
}
