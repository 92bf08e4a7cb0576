//! The admin API's request and response bodies: what the CLI sends over the
//! admin socket and prints (INTERFACES.md, "JSON shapes").

use bulkhead_shared::{Number, TenantId};
use serde::{Deserialize, Serialize};

use crate::limits::{LimitOverrides, Limits};

/// A tenant as described by `tenant add` or a tenant file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSpec {
    pub id: TenantId,
    #[serde(default)]
    pub numbers: Vec<Number>,
    pub sip_port: Option<u16>,
    pub http_port: Option<u16>,
    /// Per-tenant overrides of the configured limits.
    #[serde(default)]
    pub limits: Option<LimitOverrides>,
    /// Sources allowed on the tenant's own trunk port; absent or empty: any.
    #[serde(default)]
    pub trunk_allow: Option<Vec<bulkhead_shared::Cidr>>,
    /// Digest credentials new calls on the trunk port must answer with.
    #[serde(default)]
    pub trunk_auth: Option<TrunkAuthSpec>,
    /// The agent document, stored and handed to the worker as given.
    #[serde(default)]
    pub agent: Option<serde_json::Value>,
}

/// `tenant show --json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantView {
    pub id: String,
    pub state: String,
    pub pid: Option<u32>,
    pub uid: u32,
    pub sip_port: u16,
    pub http_port: u16,
    pub numbers: Vec<String>,
    pub restarts: u32,
    pub uptime_s: Option<u64>,
    pub key_version: u32,
    pub last_failure: Option<String>,
    /// Calls holding a slot under `max_concurrent_calls` now.
    #[serde(default)]
    pub active_calls: usize,
    /// New calls the router handed to the worker since the supervisor started.
    #[serde(default)]
    pub calls_admitted: u64,
    /// New calls the router answered 503 (limits, drain, worker down).
    #[serde(default)]
    pub calls_refused: u64,
    /// The tenant's effective limits (configured defaults and its overrides).
    #[serde(default)]
    pub limits: Option<Limits>,
    /// Sources allowed on the trunk port (empty: any).
    #[serde(default)]
    pub trunk_allow: Vec<String>,
    /// The digest username calls on the trunk port must use (none: no
    /// challenge). The password is never shown.
    #[serde(default)]
    pub trunk_auth_username: Option<String>,
    /// SHA-256 of the tenant's HTTPS certificate; null: plain HTTP.
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
}

/// `tenant tls` request: the certificate and key (PEM), or null for plain HTTP.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsRequest {
    pub tls: Option<bulkhead_shared::tls::TlsPem>,
}

/// `tenant add --json`: the view plus the first token, shown once.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantAdded {
    #[serde(flatten)]
    pub tenant: TenantView,
    pub token: String,
}

/// `tenant list --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TenantList {
    pub tenants: Vec<TenantView>,
}

/// `tenant token` request.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub name: Option<String>,
    /// Lifetime in seconds; absent means no expiry.
    pub expires_in_s: Option<u64>,
}

/// `tenant token --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenIssued {
    pub id: String,
    pub name: String,
    pub token: String,
    pub expires_at: Option<String>,
}

/// One of a tenant's tokens, as `tenant tokens` shows it (never its value).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// `tenant tokens --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenList {
    pub tokens: Vec<TokenView>,
}

/// `number add` request. (`DELETE /v1/numbers/{digits}` takes the number
/// without its `+`, which would need escaping in a path.)
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberClaim {
    pub tenant: TenantId,
    pub number: Number,
}

/// `egress add/remove/check` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    pub tenant: TenantId,
    /// `host:port` (IPv6 in brackets).
    pub target: String,
}

impl EgressRule {
    /// Splits `target` into host and port, or says what is wrong.
    pub fn host_port(&self) -> Result<(String, u16), String> {
        let bad = || format!("{:?} is not HOST:PORT", self.target);
        let (host, port) = self.target.rsplit_once(':').ok_or_else(bad)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(bad)?;
        if host.is_empty() || host.contains(['/', ' ', '@']) {
            return Err(bad());
        }
        Ok((host.to_string(), port))
    }
}

/// `apply` request: the tenants of a tenant file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    #[serde(default, rename = "tenant")]
    pub tenants: Vec<TenantSpec>,
}

/// `apply --json`: what changed; tokens only for created tenants.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApplyResult {
    pub created: Vec<TenantAdded>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

/// `status --json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Status {
    pub sip_listen: String,
    #[serde(default)]
    pub metrics_listen: String,
    pub advertise: String,
    pub tenants: usize,
    pub running: usize,
    pub router: RouterCounters,
    pub workers: Vec<TenantView>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct RouterCounters {
    pub received: u64,
    pub forwarded: u64,
    pub rejected: u64,
    pub dropped: u64,
}

/// Every admin API error: `{"error": {"code", "message"}}`.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// `tenant trunk` request.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkRequest {
    /// Address blocks allowed on the trunk port; empty: any source.
    pub allow: Vec<bulkhead_shared::Cidr>,
}

/// Digest credentials for a tenant's trunk. In a tenant file the password
/// comes from `password_file`, which the CLI reads; over the admin socket
/// it travels as `password`. The supervisor keeps only hashes.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkAuthSpec {
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for TrunkAuthSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkAuthSpec")
            .field("username", &self.username)
            .field("password_file", &self.password_file)
            .finish_non_exhaustive()
    }
}

impl TrunkAuthSpec {
    /// Reads `password_file` into `password` (the CLI does this, so the
    /// daemon never opens paths a tenant file names).
    pub fn resolve_password_file(&mut self) -> Result<(), String> {
        if let Some(path) = self.password_file.take() {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                format!(
                    "cannot read the trunk password file {}: {e}",
                    path.display()
                )
            })?;
            self.password = Some(text.trim_end_matches(['\r', '\n']).to_owned());
        }
        Ok(())
    }

    /// The credentials as stored: HA1 hashes under realm `tenant`.
    pub fn to_auth(&self, tenant: &TenantId) -> Result<bulkhead_shared::trunk::TrunkAuth, String> {
        let user = &self.username;
        if user.is_empty()
            || user.len() > 64
            || !user
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        {
            return Err(format!(
                "trunk username {user:?}: use 1-64 printable characters without quotes or backslashes"
            ));
        }
        let password = self.password.as_deref().unwrap_or("");
        if password.is_empty() || password.len() > 256 || password.chars().any(char::is_control) {
            return Err("trunk password: use 1-256 characters without control characters (a tenant file names it with password_file)".into());
        }
        Ok(bulkhead_shared::trunk::TrunkAuth::new(
            tenant.as_str(),
            user,
            password,
        ))
    }
}

/// `tenant trunk-auth` request: credentials, or `null` to stop challenging.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrunkAuthRequest {
    pub auth: Option<TrunkAuthSpec>,
}

/// `tenant backup` request: where to write (an absolute path; never overwritten).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    pub out: std::path::PathBuf,
}

/// `tenant rotate-key` request.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateKeyRequest {
    /// Delete every earlier key of the tenant too: backups made before this
    /// rotation can never be restored.
    #[serde(default)]
    pub forget_old: bool,
}

/// `tenant restore` request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub from: std::path::PathBuf,
    /// Restore a backup of another tenant id under this one.
    #[serde(default)]
    pub accept_other_tenant: bool,
}
