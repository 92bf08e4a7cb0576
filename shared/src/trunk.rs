//! Who may call a tenant on its own trunk port (bring-your-own-carrier):
//! source addresses, digest credentials, or both. The supervisor stores it
//! and hands it to the worker, which enforces it.

use serde::{Deserialize, Serialize};

use crate::sip::digest::{ha1, Algorithm};
use crate::Cidr;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkPolicy {
    /// Sources allowed (empty: any); others are dropped unanswered.
    #[serde(default)]
    pub allow: Vec<Cidr>,
    /// When set, a new call must answer a digest challenge.
    #[serde(default)]
    pub auth: Option<TrunkAuth>,
}

/// Digest credentials as the server keeps them: HA1 per algorithm, never
/// the password. An HA1 opens this realm for anyone holding it, so it
/// lives only in the root-only registry and the tenant's own worker.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrunkAuth {
    pub realm: String,
    pub username: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
}

impl TrunkAuth {
    pub fn new(realm: &str, username: &str, password: &str) -> Self {
        Self {
            realm: realm.to_owned(),
            username: username.to_owned(),
            ha1_md5: ha1(Algorithm::Md5, username, realm, password),
            ha1_sha256: ha1(Algorithm::Sha256, username, realm, password),
        }
    }

    pub fn ha1(&self, alg: Algorithm) -> &str {
        match alg {
            Algorithm::Md5 => &self.ha1_md5,
            Algorithm::Sha256 => &self.ha1_sha256,
        }
    }
}

impl std::fmt::Debug for TrunkAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrunkAuth")
            .field("realm", &self.realm)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_hashes_and_never_prints_them() {
        let a = TrunkAuth::new("clinic", "carrier", "s3cret-pass");
        assert_eq!(a.ha1(Algorithm::Md5).len(), 32);
        assert_eq!(a.ha1(Algorithm::Sha256).len(), 64);
        let shown = format!("{a:?}");
        assert!(
            !shown.contains(&a.ha1_md5) && !shown.contains("s3cret"),
            "{shown}"
        );
        let json = serde_json::to_string(&a).unwrap();
        assert!(!json.contains("s3cret"));
    }
}
