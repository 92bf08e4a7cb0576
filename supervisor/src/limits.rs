//! Per-tenant limits: the configuration's `limits` are every tenant's
//! defaults; an admin overrides any key per tenant (`tenant add --limit`,
//! `tenant limits`, a tenant file's `limits` table). The router enforces
//! the call limits, cgroups and rlimits the rest.

use serde::{Deserialize, Serialize};

/// A tenant's limits: the configured defaults with its overrides applied.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_concurrent_calls: u32,
    pub calls_per_second: u32,
    pub memory: String,
    pub pids: u32,
    /// CPU cores' worth of time per period (cgroup quota); 1.0 = one core.
    pub cpu: f64,
    /// Call records and transcripts older than this many days are deleted
    /// by the worker; 0 keeps them forever.
    pub retention_days: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_concurrent_calls: 100,
            calls_per_second: 100,
            memory: "256M".into(),
            pids: 64,
            cpu: 1.0,
            retention_days: 0,
        }
    }
}

impl Limits {
    /// The router's form of the call limits, or a message naming the bad key.
    pub fn calls(&self) -> Result<crate::router::admission::CallLimits, String> {
        if self.max_concurrent_calls == 0 {
            return Err("limits.max_concurrent_calls must be at least 1".into());
        }
        if self.calls_per_second == 0 {
            return Err("limits.calls_per_second must be at least 1".into());
        }
        Ok(crate::router::admission::CallLimits {
            max_concurrent: self.max_concurrent_calls,
            per_second: self.calls_per_second,
        })
    }

    /// The cgroup form of these limits, or a message naming the bad key.
    pub fn cgroup(&self) -> Result<crate::cgroup::CgroupLimits, String> {
        let memory_bytes = crate::cgroup::parse_bytes(&self.memory)
            .ok_or_else(|| format!("limits.memory {:?} is not a size such as 256M", self.memory))?;
        if !(self.cpu > 0.0 && self.cpu <= 1024.0) {
            return Err(format!("limits.cpu {} must be above 0 (cores)", self.cpu));
        }
        if self.pids < 8 {
            return Err(format!(
                "limits.pids {} is too small for a worker (at least 8)",
                self.pids
            ));
        }
        let cpu_quota_us = (self.cpu * crate::cgroup::CPU_PERIOD_US as f64) as u64;
        Ok(crate::cgroup::CgroupLimits {
            memory_bytes,
            pids: u64::from(self.pids),
            cpu_quota_us,
        })
    }
}

/// The longest retention accepted (0, forever, is the default).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// The keys an admin set for one tenant; the rest follow the configuration.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_calls: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_second: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

impl LimitOverrides {
    /// Parses `KEY=VALUE` pairs (the CLI's `--limit` and `tenant limits`).
    pub fn from_pairs(pairs: &[String]) -> Result<Self, String> {
        let mut o = Self::default();
        for pair in pairs {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("limit {pair:?} is not KEY=VALUE"))?;
            let number = |what: &str| -> Result<u32, String> {
                value
                    .parse()
                    .map_err(|_| format!("limit {key}={value:?}: expected {what}"))
            };
            match key {
                "max_concurrent_calls" => o.max_concurrent_calls = Some(number("a whole number")?),
                "calls_per_second" => o.calls_per_second = Some(number("a whole number")?),
                "pids" => o.pids = Some(number("a whole number")?),
                "retention_days" => o.retention_days = Some(number("a whole number of days (0: keep forever)")?),
                "memory" => o.memory = Some(value.to_owned()),
                "cpu" => {
                    o.cpu = Some(value.parse().map_err(|_| {
                        format!("limit cpu={value:?}: expected cores, such as 0.5")
                    })?)
                }
                other => {
                    return Err(format!(
                        "unknown limit {other:?}: the keys are max_concurrent_calls, calls_per_second, memory, pids, cpu, retention_days"
                    ))
                }
            }
        }
        Ok(o)
    }

    /// `self` with every key `newer` sets replaced.
    pub fn merged(&self, newer: &Self) -> Self {
        Self {
            max_concurrent_calls: newer.max_concurrent_calls.or(self.max_concurrent_calls),
            calls_per_second: newer.calls_per_second.or(self.calls_per_second),
            memory: newer.memory.clone().or_else(|| self.memory.clone()),
            pids: newer.pids.or(self.pids),
            cpu: newer.cpu.or(self.cpu),
            retention_days: newer.retention_days.or(self.retention_days),
        }
    }

    /// The effective limits over `base`, validated (the message names the key).
    pub fn over(&self, base: &Limits) -> Result<Limits, String> {
        let limits = Limits {
            max_concurrent_calls: self
                .max_concurrent_calls
                .unwrap_or(base.max_concurrent_calls),
            calls_per_second: self.calls_per_second.unwrap_or(base.calls_per_second),
            memory: self.memory.clone().unwrap_or_else(|| base.memory.clone()),
            pids: self.pids.unwrap_or(base.pids),
            cpu: self.cpu.unwrap_or(base.cpu),
            retention_days: self.retention_days.unwrap_or(base.retention_days),
        };
        if limits.retention_days > MAX_RETENTION_DAYS {
            return Err(format!(
                "limits.retention_days {} is more than {MAX_RETENTION_DAYS} (100 years); 0 keeps records forever",
                limits.retention_days
            ));
        }
        limits.cgroup()?;
        limits.calls()?;
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_only_the_keys_they_set() {
        let base = Limits::default();
        let o = LimitOverrides::from_pairs(&["calls_per_second=5".into(), "memory=128M".into()])
            .unwrap();
        let l = o.over(&base).unwrap();
        assert_eq!((l.calls_per_second, l.memory.as_str()), (5, "128M"));
        assert_eq!(l.max_concurrent_calls, base.max_concurrent_calls);
        let later = o.merged(&LimitOverrides::from_pairs(&["calls_per_second=7".into()]).unwrap());
        assert_eq!(later.calls_per_second, Some(7));
        assert_eq!(later.memory.as_deref(), Some("128M"));
        assert_eq!(
            serde_json::to_string(&later).unwrap(),
            r#"{"calls_per_second":7,"memory":"128M"}"#
        );
    }

    #[test]
    fn bad_pairs_and_values_name_the_key() {
        for (pair, needle) in [
            ("calls_per_second", "KEY=VALUE"),
            ("pids=many", "pids"),
            ("cpu=fast", "cpu"),
            ("color=blue", "unknown limit \"color\""),
        ] {
            let err = LimitOverrides::from_pairs(&[pair.into()]).unwrap_err();
            assert!(err.contains(needle), "{pair}: {err}");
        }
        for (pair, needle) in [
            ("calls_per_second=0", "calls_per_second"),
            ("memory=lots", "limits.memory"),
            ("pids=2", "limits.pids"),
            ("retention_days=40000", "limits.retention_days"),
        ] {
            let o = LimitOverrides::from_pairs(&[pair.into()]).unwrap();
            let err = o.over(&Limits::default()).unwrap_err();
            assert!(err.contains(needle), "{pair}: {err}");
        }
    }
}
