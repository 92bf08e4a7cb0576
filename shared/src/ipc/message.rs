//! The messages of the supervisor ↔ worker protocol, typed.
//!
//! Everything a worker needs to start (its tenant id, data key, configuration
//! and sockets) arrives in one [`Bootstrap`] frame, never through argv or the
//! environment, which other processes can read.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::{Number, TenantId};

/// The tenant's store inside its data directory: the worker opens it, the
/// supervisor only measures and backs it up.
pub const STORE_FILE: &str = "tenant.db";

/// Length of a tenant data key: 256 bits, used as a raw SQLCipher key.
pub const DATA_KEY_LEN: usize = 32;

/// The transport a SIP message arrived on, or must leave by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A raw SIP message relayed through the router, with where it came from (or,
/// from the worker, where it must go). `conn` names the router's TCP
/// connection; it is 0 for UDP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipPacket {
    pub transport: Transport,
    pub conn: u64,
    pub peer: SocketAddr,
    pub data: Vec<u8>,
}

/// What the supervisor tells a worker about itself, sent once at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerConfig {
    pub tenant_id: TenantId,
    pub numbers: Vec<Number>,
    /// Address written into Contact and SDP.
    pub advertise: IpAddr,
    /// The shared router's port, for the Contact of calls that came through it.
    pub router_port: u16,
    pub sip_port: u16,
    pub http_port: u16,
    /// The tenant's data directory; the worker's store lives here.
    pub data_dir: PathBuf,
    /// How long the agent lets a call ring before answering.
    pub answer_delay_ms: u64,
    /// The worker's log filter (`tracing` syntax): its environment is
    /// cleared, so the supervisor passes its own level along.
    pub log_filter: String,
    /// The tenant's agent document (INTERFACES.md), as given by the admin.
    pub agent: serde_json::Value,
    /// Who may call on the tenant's own trunk port.
    #[serde(default)]
    pub trunk: crate::trunk::TrunkPolicy,
    /// Days of call records and transcripts the worker keeps (0: forever).
    #[serde(default)]
    pub retention_days: u32,
    /// Set for a probe worker (`bulkhead audit`): run these probes, report
    /// and exit instead of serving.
    #[serde(default)]
    pub probe: Option<super::probe::ProbeSpec>,
    /// Test-only failpoint (the supervisor's `BULKHEAD_CRASH_AT`): the
    /// worker aborts at the named step of a store rekey.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crash_at: Option<String>,
}

/// The first frame a worker receives. Its sockets ride along as descriptors,
/// in this order: SIP UDP, SIP TCP listener, HTTP TCP listener.
#[derive(Debug)]
pub struct Bootstrap {
    pub data_key: [u8; DATA_KEY_LEN],
    /// The key of a rotation that had begun but was not settled: the store
    /// may be under either key, so the worker tries both and reports which
    /// one opened it ([`Ready::store_key`]).
    pub pending_key: Option<[u8; DATA_KEY_LEN]>,
    pub config: WorkerConfig,
}

impl Drop for Bootstrap {
    fn drop(&mut self) {
        self.data_key.zeroize();
        if let Some(k) = &mut self.pending_key {
            k.zeroize();
        }
    }
}

/// A data key inside a JSON control frame: hex on the wire, never printed,
/// zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(pub [u8; DATA_KEY_LEN]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl Drop for SecretKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Serialize for SecretKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut hex = zeroize::Zeroizing::new([0u8; 2 * DATA_KEY_LEN]);
        for (i, b) in self.0.iter().enumerate() {
            hex[2 * i] = HEX[usize::from(b >> 4)];
            hex[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        s.serialize_str(std::str::from_utf8(&hex[..]).expect("hex is ASCII"))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl<'de> Deserialize<'de> for SecretKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = SecretKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{} lowercase hex digits", 2 * DATA_KEY_LEN)
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretKey, E> {
                let digit = |c: u8| match c {
                    b'0'..=b'9' => Some(c - b'0'),
                    b'a'..=b'f' => Some(c - b'a' + 10),
                    _ => None,
                };
                if v.len() != 2 * DATA_KEY_LEN {
                    return Err(E::invalid_length(v.len(), &self));
                }
                let mut key = SecretKey([0; DATA_KEY_LEN]);
                for (i, pair) in v.as_bytes().chunks_exact(2).enumerate() {
                    let (Some(hi), Some(lo)) = (digit(pair[0]), digit(pair[1])) else {
                        return Err(E::custom("a key holds only lowercase hex digits"));
                    };
                    key.0[i] = hi << 4 | lo;
                }
                Ok(key)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// Number of descriptors that travel with [`Bootstrap`].
pub const BOOTSTRAP_FDS: usize = 3;

/// A request from the supervisor that the worker acknowledges with
/// [`FromWorker::Reply`] carrying the same `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Control {
    pub seq: u64,
    pub op: ControlOp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ControlOp {
    /// Store an API token's hash (never the token itself).
    AddToken {
        id: String,
        name: String,
        sha256_hex: String,
        expires_at: Option<String>,
    },
    /// The tenant's tokens, for `tenant tokens` (the reply's `data`).
    ListTokens,
    /// Revoke one token (admin `tenant revoke-token`).
    RevokeToken { id: String },
    /// The tenant's numbers changed (admin `number add/remove`).
    SetNumbers { numbers: Vec<Number> },
    /// The tenant's trunk policy changed (admin `tenant trunk`, `tenant trunk-auth`).
    SetTrunk { trunk: crate::trunk::TrunkPolicy },
    /// Serve the tenant's HTTP port over TLS with this certificate (None:
    /// plain HTTP again). The worker validates it, keeps it in its own
    /// encrypted store, and replies with the leaf's SHA-256 fingerprint.
    SetTls { tls: Option<crate::tls::TlsPem> },
    /// Write a consistent copy of the tenant's store (still encrypted under
    /// its key) to the file that travels with this frame, appending at its
    /// offset; the reply's data is `{"bytes"}`.
    Backup,
    /// The tenant's retention changed (admin `tenant limits retention_days=N`).
    SetRetention { days: u32 },
    /// Re-encrypt the store under `key` (admin `tenant rotate-key`): the
    /// worker exports a copy under the new key, swaps it in atomically and
    /// replies once it serves from it.
    RekeyStore { key: SecretKey },
    /// Liveness: a worker that does not answer in time is killed and restarted.
    Ping,
}

/// Supervisor → worker.
#[derive(Debug)]
pub enum ToWorker {
    Bootstrap(Box<Bootstrap>),
    Sip(SipPacket),
    Control(Control),
    /// The answer to [`FromWorker::Connect`]; on success the connected TCP
    /// socket travels with it as a descriptor.
    Connected {
        seq: u64,
        error: Option<String>,
    },
    /// The answer to [`FromWorker::RtpOpen`]; on success the RTP and RTCP
    /// sockets (ports `port` and `port + 1`) travel with it, in that order.
    RtpOpened {
        seq: u64,
        port: Option<u16>,
        error: Option<String>,
    },
}

/// The worker's start-up report: it serves SIP and HTTP from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    pub pid: u32,
    /// How much of the Landlock ruleset the kernel enforces: `full`,
    /// `partial` or `none` (reported before any untrusted input is read).
    #[serde(default)]
    pub landlock: String,
    /// Which key opened the store (only ever `pending` when the bootstrap
    /// carried a pending key).
    #[serde(default)]
    pub store_key: StoreKey,
}

/// Which of the bootstrap's keys opened the tenant's store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKey {
    #[default]
    Current,
    Pending,
}

/// Worker → supervisor. Everything here is untrusted input to the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromWorker {
    Ready(Ready),
    Sip(SipPacket),
    Reply {
        seq: u64,
        error: Option<String>,
        /// What the request asked for (e.g. the token list); untrusted, so
        /// the supervisor parses it into a bounded type before using it.
        data: Option<serde_json::Value>,
    },
    /// A probe worker's results.
    Probe(super::probe::ProbeReport),
    /// Ask the supervisor's egress broker for a TCP connection to
    /// `host:port`; allowed only to the tenant's egress allowlist.
    Connect {
        seq: u64,
        host: String,
        port: u16,
    },
    /// Ask for a pair of RTP/RTCP sockets for a call, within the tenant's
    /// concurrent-call limit.
    RtpOpen {
        seq: u64,
    },
    /// A call ended: its RTP port pair goes back to the pool.
    RtpClose {
        port: u16,
    },
    /// A call that came through the router is over (answered and hung up,
    /// cancelled, refused, or dead): its slot under the tenant's
    /// concurrent-call limit is free again. Only frees the sender's own slots.
    CallEnded {
        call_id: String,
    },
}
