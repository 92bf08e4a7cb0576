//! The supervisor's configuration: INTERFACES.md's keys and defaults, read
//! from TOML, with command-line flags taking precedence.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why a configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("failed to read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid {key} {value:?}: expected LOW-HIGH with LOW <= HIGH")]
    Range { key: &'static str, value: String },
    #[error("invalid configuration: {0}")]
    Limits(String),
    #[error("invalid configuration: {0}")]
    MasterKey(#[from] crate::master_key::SourceError),
}

pub use crate::limits::Limits;

/// The file form: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    state_dir: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    sip_listen: Option<SocketAddr>,
    advertise: Option<IpAddr>,
    tenant_bind: Option<TenantBind>,
    tenant_sip_ports: Option<String>,
    tenant_http_ports: Option<String>,
    rtp_ports: Option<String>,
    uid_range: Option<String>,
    metrics_listen: Option<SocketAddr>,
    worker_bin: Option<PathBuf>,
    limits: Option<Limits>,
    answer_delay_ms: Option<u64>,
    drain_timeout_s: Option<u64>,
    master_key: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantBind {
    pub sip: IpAddr,
    pub http: IpAddr,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub sip_listen: SocketAddr,
    pub advertise: Option<IpAddr>,
    pub tenant_bind: TenantBind,
    pub tenant_sip_ports: RangeInclusive<u16>,
    pub tenant_http_ports: RangeInclusive<u16>,
    pub rtp_ports: RangeInclusive<u16>,
    pub uid_range: RangeInclusive<u32>,
    pub metrics_listen: SocketAddr,
    pub worker_bin: Option<PathBuf>,
    pub limits: Limits,
    /// How long workers let a call ring before answering (default 0).
    pub answer_delay_ms: u64,
    /// How long a drain (SIGTERM, `tenant restart --drain`) waits for calls
    /// in progress before stopping the worker anyway (default 30 s).
    pub drain_timeout: std::time::Duration,
    /// Log filter handed to workers: `RUST_LOG` of the supervisor, else `info`.
    pub worker_log_filter: String,
    /// Where the master key comes from (default `file:<state_dir>/master.key`).
    pub master_key: crate::master_key::Source,
}

/// Flags that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub state_dir: Option<PathBuf>,
    pub run_dir: Option<PathBuf>,
    pub sip_listen: Option<SocketAddr>,
}

impl Config {
    /// Reads `path` (when given), then applies `flags`.
    pub fn load(path: Option<&Path>, flags: &Overrides) -> Result<Self, ConfigError> {
        let file = match path {
            None => ConfigFile::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_owned(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: p.to_owned(),
                    source,
                })?
            }
        };
        Self::from_file(file, flags)
    }

    /// Parses TOML text (used by `demo` and tests).
    pub fn from_toml(text: &str, flags: &Overrides) -> Result<Self, ConfigError> {
        let file = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "<inline>".into(),
            source,
        })?;
        Self::from_file(file, flags)
    }

    fn from_file(f: ConfigFile, flags: &Overrides) -> Result<Self, ConfigError> {
        if let Some(l) = &f.limits {
            l.cgroup().map_err(ConfigError::Limits)?;
            l.calls().map_err(ConfigError::Limits)?;
        }
        let state_dir: PathBuf = flags
            .state_dir
            .clone()
            .or(f.state_dir)
            .unwrap_or_else(|| "/var/lib/bulkhead".into());
        let master_key = match &f.master_key {
            Some(s) => crate::master_key::Source::parse(s)?,
            None => crate::master_key::Source::File(state_dir.join("master.key")),
        };
        Ok(Self {
            master_key,
            state_dir,
            run_dir: flags
                .run_dir
                .clone()
                .or(f.run_dir)
                .unwrap_or_else(|| "/run/bulkhead".into()),
            sip_listen: flags
                .sip_listen
                .or(f.sip_listen)
                .unwrap_or_else(|| "0.0.0.0:5060".parse().expect("literal")),
            advertise: f.advertise,
            tenant_bind: f.tenant_bind.unwrap_or(TenantBind {
                sip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                http: IpAddr::V4(Ipv4Addr::LOCALHOST),
            }),
            tenant_sip_ports: range(
                "tenant_sip_ports",
                f.tenant_sip_ports.as_deref().unwrap_or("20000-24999"),
            )?,
            tenant_http_ports: range(
                "tenant_http_ports",
                f.tenant_http_ports.as_deref().unwrap_or("25000-29999"),
            )?,
            rtp_ports: range("rtp_ports", f.rtp_ports.as_deref().unwrap_or("30000-59999"))?,
            uid_range: range(
                "uid_range",
                f.uid_range.as_deref().unwrap_or("200000-299999"),
            )?,
            metrics_listen: f
                .metrics_listen
                .unwrap_or_else(|| "127.0.0.1:9464".parse().expect("literal")),
            worker_bin: f.worker_bin,
            limits: f.limits.unwrap_or_default(),
            answer_delay_ms: f.answer_delay_ms.unwrap_or(0),
            drain_timeout: std::time::Duration::from_secs(f.drain_timeout_s.unwrap_or(30)),
            worker_log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        })
    }

    pub fn admin_socket(&self) -> PathBuf {
        self.run_dir.join("admin.sock")
    }
}

fn range<T: std::str::FromStr + PartialOrd>(
    key: &'static str,
    value: &str,
) -> Result<RangeInclusive<T>, ConfigError> {
    let bad = || ConfigError::Range {
        key,
        value: value.to_owned(),
    };
    let (lo, hi) = value.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (T, T) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if lo > hi {
        return Err(bad());
    }
    Ok(lo..=hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_interfaces_md() {
        let c = Config::from_toml("", &Overrides::default()).unwrap();
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/bulkhead"));
        assert_eq!(c.admin_socket(), PathBuf::from("/run/bulkhead/admin.sock"));
        assert_eq!(c.sip_listen, "0.0.0.0:5060".parse().unwrap());
        assert_eq!(c.tenant_sip_ports, 20000..=24999);
        assert_eq!(c.tenant_http_ports, 25000..=29999);
        assert_eq!(c.uid_range, 200000..=299999);
        assert_eq!(c.tenant_bind.http, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn flags_override_file_and_bad_values_are_named() {
        let flags = Overrides {
            sip_listen: Some("127.0.0.1:5070".parse().unwrap()),
            ..Default::default()
        };
        let c =
            Config::from_toml("sip_listen = \"127.0.0.1:9\"\nuid_range = \"5-6\"", &flags).unwrap();
        assert_eq!(c.sip_listen.port(), 5070);
        assert_eq!(c.uid_range, 5..=6);
        let err = Config::from_toml("uid_range = \"9-1\"", &flags).unwrap_err();
        assert!(err.to_string().contains("uid_range"), "{err}");
        assert!(Config::from_toml("no_such_key = 1", &flags).is_err());
    }
}
