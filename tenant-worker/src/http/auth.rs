//! Who may call the API: the tenant's live tokens, held in memory as
//! SHA-256 digests and compared in constant time, and each token's request
//! budget (429 past it).
//!
//! The store is the truth (hashes only, in the tenant's own database); this
//! set mirrors it. Every change goes through [`Tokens`], durable first, so
//! the two never disagree for longer than one write.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use bulkhead_shared::api_token;
use bulkhead_shared::rate::TokenBucket;
use sha2::{Digest, Sha256};

use crate::store::writer::{Store, Write};
use crate::store::{LiveToken, StoreError, TokenInfo};

/// Requests a second one token may make, and how many may come at once.
/// A client needing more uses several tokens.
pub const REQUESTS_PER_SECOND: f64 = 100.0;
pub const REQUEST_BURST: f64 = 200.0;
/// Most live tokens a tenant may hold (keeps the set and its scan small).
pub const MAX_TOKENS: usize = 100;

#[derive(Debug)]
struct Live {
    id: String,
    digest: [u8; 32],
    expires_at: Option<String>,
}

/// Why a token could not be added or revoked.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("this tenant already has {MAX_TOKENS} tokens; revoke one first")]
    TooMany,
    #[error("no token with this id")]
    NotFound,
    #[error("the tenant store failed: {0}")]
    Store(String),
}

/// The tenant's tokens and their request budgets.
#[derive(Debug)]
pub struct Tokens {
    store: Store,
    live: RwLock<Vec<Live>>,
    budgets: Mutex<HashMap<String, TokenBucket>>,
    rate: (f64, f64),
}

impl Tokens {
    /// A set of tokens already read (the worker's start reads them before
    /// its runtime exists).
    pub fn from_live(store: Store, live: Vec<LiveToken>) -> Self {
        Self::with_rate(store, live, (REQUESTS_PER_SECOND, REQUEST_BURST))
    }

    /// A set with its own request budget (benchmarks raise it).
    pub fn with_rate(store: Store, live: Vec<LiveToken>, rate: (f64, f64)) -> Self {
        let live = live.into_iter().filter_map(to_live).collect();
        Self {
            store,
            live: RwLock::new(live),
            budgets: Mutex::new(HashMap::new()),
            rate,
        }
    }

    /// The id of the live, unexpired token whose value is `presented`.
    /// Every stored digest is compared, each in constant time, so timing
    /// says nothing about which tokens exist.
    pub fn check(&self, presented: &str, now_rfc3339: &str) -> Option<String> {
        if !api_token::looks_like_token(presented) {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let live = self.live.read().expect("token set lock");
        let mut found = None;
        for t in live.iter() {
            if constant_time_eq(&t.digest, &digest) {
                found = Some(t);
            }
        }
        let t = found?;
        let expired = t.expires_at.as_deref().is_some_and(|at| at <= now_rfc3339);
        (!expired).then(|| t.id.clone())
    }

    /// Takes one request from the token's budget; on refusal, the seconds
    /// to wait.
    pub fn admit(&self, id: &str, now: Instant) -> Result<(), u64> {
        let mut budgets = self.budgets.lock().expect("budget lock");
        let (rate, burst) = self.rate;
        let bucket = budgets
            .entry(id.to_owned())
            .or_insert_with(|| TokenBucket::new(rate, burst, now));
        if bucket.take(now) {
            Ok(())
        } else {
            // The time one request's worth takes to refill, in whole seconds.
            Err((1.0 / rate).ceil().max(1.0) as u64)
        }
    }

    /// Stores a token's hash (durably) and starts accepting it.
    pub async fn add(
        &self,
        id: String,
        name: String,
        sha256_hex: String,
        expires_at: Option<String>,
    ) -> Result<(), TokenError> {
        if self.live.read().expect("token set lock").len() >= MAX_TOKENS {
            return Err(TokenError::TooMany);
        }
        let token = LiveToken {
            id: id.clone(),
            sha256_hex: sha256_hex.clone(),
            expires_at: expires_at.clone(),
        };
        self.store
            .write_durable(Write::AddToken {
                id,
                name,
                sha256_hex,
                expires_at,
            })
            .await
            .map_err(TokenError::Store)?;
        if let Some(t) = to_live(token) {
            self.live.write().expect("token set lock").push(t);
        }
        Ok(())
    }

    /// Stops accepting a token at once, then records the revocation.
    pub async fn revoke(&self, id: &str) -> Result<(), TokenError> {
        {
            let mut live = self.live.write().expect("token set lock");
            let before = live.len();
            live.retain(|t| t.id != id);
            if live.len() == before {
                return Err(TokenError::NotFound);
            }
        }
        self.budgets.lock().expect("budget lock").remove(id);
        self.store
            .write_durable(Write::RevokeToken { id: id.to_owned() })
            .await
            .map_err(TokenError::Store)
    }

    pub async fn list(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.store.list_tokens().await
    }
}

fn to_live(t: LiveToken) -> Option<Live> {
    let mut digest = [0u8; 32];
    if t.sha256_hex.len() != 64 {
        return None;
    }
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&t.sha256_hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(Live {
        id: t.id,
        digest,
        expires_at: t.expires_at,
    })
}

/// Equal or not, in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // black_box keeps the optimizer from turning the fold into an early exit.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn tokens() -> (tempfile::TempDir, Tokens) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let open = || crate::store::open(&path, &[5; 32]).unwrap();
        let (store, _writer) = Store::start(open(), open());
        (dir, Tokens::with_rate(store, Vec::new(), (2.0, 3.0)))
    }

    #[tokio::test]
    async fn a_token_works_until_revoked_or_expired() {
        let (dir, set) = tokens().await;
        let a = api_token::issue();
        let b = api_token::issue();
        set.add(a.id.clone(), "a".into(), a.sha256_hex.clone(), None)
            .await
            .unwrap();
        let past = Some("2026-01-01T00:00:00.000Z".to_string());
        set.add(b.id.clone(), "b".into(), b.sha256_hex.clone(), past)
            .await
            .unwrap();
        let now = "2026-11-28T00:00:00.000Z";
        assert_eq!(set.check(&a.token, now), Some(a.id.clone()));
        assert_eq!(set.check(&b.token, now), None, "expired");
        assert_eq!(set.check(&api_token::issue().token, now), None, "unknown");
        assert_eq!(set.check(&a.token[..20], now), None, "malformed");
        // The store agrees, and a reload sees the same set.
        assert_eq!(set.list().await.unwrap().len(), 2);
        set.revoke(&a.id).await.unwrap();
        assert_eq!(set.check(&a.token, now), None, "revoked");
        assert!(matches!(set.revoke(&a.id).await, Err(TokenError::NotFound)));
        // As the next start reads them: its own connection to the file.
        let conn = crate::store::open(&dir.path().join("tenant.db"), &[5; 32]).unwrap();
        let live = crate::store::live_tokens_now(&conn).unwrap();
        let reloaded = Tokens::from_live(set.store.clone(), live);
        assert_eq!(reloaded.check(&a.token, now), None);
        assert_eq!(reloaded.live.read().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn each_token_has_its_own_budget() {
        let (_d, set) = tokens().await;
        let now = Instant::now();
        assert_eq!((0..5).filter(|_| set.admit("x", now).is_ok()).count(), 3);
        assert!(set.admit("y", now).is_ok(), "another token is not charged");
        assert!(set.admit("x", now + Duration::from_millis(600)).is_ok());
    }

    #[tokio::test]
    async fn the_number_of_tokens_is_bounded() {
        let (_d, set) = tokens().await;
        for _ in 0..MAX_TOKENS {
            let t = api_token::issue();
            set.add(t.id, "n".into(), t.sha256_hex, None).await.unwrap();
        }
        let t = api_token::issue();
        let refused = set.add(t.id, "n".into(), t.sha256_hex, None).await;
        assert!(matches!(refused, Err(TokenError::TooMany)));
    }

    #[test]
    fn compares_whole_digests() {
        let a = [7u8; 32];
        let mut b = a;
        assert!(constant_time_eq(&a, &b));
        b[31] ^= 1;
        assert!(!constant_time_eq(&a, &b));
    }
}
