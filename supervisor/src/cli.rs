//! The `bulkhead` command line (INTERFACES.md). Parsing only: building the
//! runtime objects happens in `commands`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "bulkhead",
    version,
    about = "Per-tenant process isolation for multi-tenant AI voice platforms"
)]
pub struct Cli {
    /// Admin socket of the supervisor.
    #[arg(
        long,
        global = true,
        env = "BULKHEAD_SOCKET",
        default_value = "/run/bulkhead/admin.sock"
    )]
    pub socket: PathBuf,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor in the foreground.
    Serve(ServeArgs),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Claim or release phone numbers.
    #[command(subcommand)]
    Number(NumberCmd),
    /// The outbound destinations the supervisor connects to for a tenant.
    #[command(subcommand)]
    Egress(EgressCmd),
    /// Make the tenants of a TOML file exist as described.
    Apply { file: PathBuf },
    /// Supervisor health, router counters, per-worker state.
    Status,
    /// The master key that wraps every tenant key.
    #[command(subcommand, name = "master-key")]
    MasterKey(MasterKeyCmd),
    /// Every admin action (peer uid, action, target, time, result), hash-chained.
    History {
        /// Recompute the chain; exit 1 naming the first entry that does not fit.
        #[arg(long)]
        verify: bool,
    },
    /// Isolation evidence: each layer's live state, and escape probes run
    /// under the tenant's sandbox with all layers, each layer alone, and none.
    Audit {
        /// One tenant; all when omitted.
        id: Option<String>,
    },
    /// The number → machine routing, for a SIP load balancer in front of
    /// several machines.
    #[command(subcommand)]
    Export(ExportCmd),
    /// Start a supervisor with two example tenants and call each.
    Demo {
        /// Exit after the sample calls.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ExportCmd {
    /// This machine's numbers as a Kamailio htable (db_text table file):
    /// each number → this supervisor's SIP router. Concatenate the exports of
    /// all machines (one header) into the table; docs/scale-out.md.
    Kamailio {
        /// Where Kamailio sends this machine's calls (HOST:PORT); default:
        /// the router's address (the advertised IP if it listens on all).
        #[arg(long)]
        address: Option<String>,
        /// Leave out the column line, to append to another machine's export.
        #[arg(long)]
        no_header: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    #[arg(long)]
    pub run_dir: Option<PathBuf>,
    #[arg(long)]
    pub sip_listen: Option<SocketAddr>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant and start its worker; prints a first API token.
    Add {
        id: String,
        #[arg(long = "number")]
        numbers: Vec<String>,
        #[arg(long)]
        sip_port: Option<u16>,
        #[arg(long)]
        http_port: Option<u16>,
        /// Override a configured limit for this tenant, e.g. `calls_per_second=20`
        /// (keys: max_concurrent_calls, calls_per_second, memory, pids, cpu).
        #[arg(long = "limit", value_name = "KEY=VALUE")]
        limits: Vec<String>,
        /// Accept calls on the tenant's own SIP port only from these
        /// addresses or blocks (repeatable; default: any source).
        #[arg(long = "trunk-allow", value_name = "CIDR")]
        trunk_allow: Vec<String>,
    },
    List,
    Show {
        id: String,
    },
    /// Stop the worker and delete the tenant's data and numbers.
    Remove {
        id: String,
        /// Destroy the key too: every copy of the data becomes unreadable.
        #[arg(long)]
        shred: bool,
    },
    /// Set the sources allowed on the tenant's own SIP port, live (no
    /// blocks: any source).
    Trunk {
        id: String,
        #[arg(value_name = "CIDR")]
        allow: Vec<String>,
    },
    /// Require digest authentication of new calls on the tenant's own SIP
    /// port, live; `--off` stops challenging. The password is read from a
    /// file (never from the command line) and only its hashes are kept.
    TrunkAuth {
        id: String,
        #[arg(long, required_unless_present = "off", requires = "password_file")]
        username: Option<String>,
        /// A file holding the password (one line).
        #[arg(long, value_name = "FILE", conflicts_with = "off")]
        password_file: Option<std::path::PathBuf>,
        #[arg(long, conflicts_with = "username")]
        off: bool,
    },
    /// Change a tenant's limits while it runs (keys as for `--limit`).
    Limits {
        id: String,
        #[arg(required = true, value_name = "KEY=VALUE")]
        limits: Vec<String>,
    },
    /// Stop the tenant's worker and start it again.
    Restart {
        id: String,
        /// First refuse new calls (503) and let calls in progress finish,
        /// up to `drain_timeout_s`.
        #[arg(long)]
        drain: bool,
    },
    /// Clear a `failed` state (too many restarts) and start the worker.
    Reset {
        id: String,
    },
    /// Issue an API token (shown once).
    Token {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// Lifetime such as 30d, 12h, 15m or 3600s.
        #[arg(long)]
        expires: Option<String>,
    },
    /// Serve the tenant's HTTP port over TLS with this certificate chain and
    /// key (PEM files, read by this command), live; `--off`: plain HTTP.
    Tls {
        id: String,
        #[arg(long, required_unless_present = "off", requires = "key")]
        cert: Option<PathBuf>,
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        #[arg(long, conflicts_with_all = ["cert", "key"])]
        off: bool,
    },
    /// Write a consistent, encrypted backup of the tenant's store (calls may
    /// go on meanwhile). FILE must not exist.
    Backup {
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Re-encrypt the tenant's store under a new data key while it serves
    /// (writes wait during the copy; calls go on). The old key is kept,
    /// wrapped, so older backups still restore, unless --forget-old.
    RotateKey {
        id: String,
        /// Delete every earlier key of the tenant: backups made before this
        /// rotation become unreadable for good.
        #[arg(long)]
        forget_old: bool,
    },
    /// Bring a removed tenant back from a backup, with its numbers and ports
    /// where they are free. Refused once the tenant's key was shredded.
    Restore {
        id: String,
        #[arg(long)]
        from: PathBuf,
        /// The backup is of another tenant id: restore it under ID anyway.
        #[arg(long)]
        accept_other_tenant: bool,
    },
    /// List the tenant's API tokens (names and ids, never values).
    Tokens {
        id: String,
    },
    /// Revoke one of the tenant's API tokens at once.
    RevokeToken {
        id: String,
        token_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum MasterKeyCmd {
    /// Re-wrap every tenant key under a fresh master key (file: sources);
    /// tenant data is not touched, and tenants keep serving.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum EgressCmd {
    /// Allow the tenant's worker to reach HOST:PORT through the broker.
    Add {
        id: String,
        target: String,
    },
    Remove {
        id: String,
        target: String,
    },
    List {
        id: Option<String>,
    },
    /// From inside the tenant's sandbox, connect to HOST:PORT through the
    /// broker and exchange a line; exit 1 if it cannot.
    Check {
        id: String,
        target: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NumberCmd {
    Add { id: String, number: String },
    Remove { number: String },
}
