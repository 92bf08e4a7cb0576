//! The tenant id: the one name a tenant has everywhere (registry rows, data
//! directory, cgroup, logs). Validated once, at the edge, so that every path
//! built from it is safe.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest tenant id accepted (INTERFACES.md: `[a-z0-9-]{1,32}`).
pub const MAX_LEN: usize = 32;

/// A validated tenant id: 1–32 characters of `a-z`, `0-9` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantIdError {
    #[error("tenant id is empty")]
    Empty,
    #[error("tenant id {0:?} is longer than {MAX_LEN} characters")]
    TooLong(String),
    #[error("tenant id {0:?} may only contain a-z, 0-9 and '-'")]
    BadChar(String),
}

impl TenantId {
    /// Validates `s` as a tenant id.
    pub fn parse(s: &str) -> Result<Self, TenantIdError> {
        if s.is_empty() {
            return Err(TenantIdError::Empty);
        }
        if s.len() > MAX_LEN {
            return Err(TenantIdError::TooLong(s.to_owned()));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(TenantIdError::BadChar(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = TenantIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TenantId {
    type Err = TenantIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in ["clinic", "a", "insurance-2", &"x".repeat(32)] {
            assert_eq!(TenantId::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_ids_that_could_escape_a_path_or_collide() {
        assert_eq!(TenantId::parse(""), Err(TenantIdError::Empty));
        assert!(matches!(
            TenantId::parse(&"x".repeat(33)),
            Err(TenantIdError::TooLong(_))
        ));
        for bad in ["../etc", "Clinic", "a/b", "a b", "a.b", "tenant_1", "é"] {
            assert!(
                matches!(TenantId::parse(bad), Err(TenantIdError::BadChar(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<TenantId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<TenantId>("\"../x\"").is_err());
    }
}
