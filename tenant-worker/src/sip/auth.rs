//! Digest authentication of new calls on the tenant's own trunk port, when
//! the tenant set credentials (`tenant trunk-auth`). A call through the
//! shared router is not challenged (the router's port is the platform's own
//! number routing; the trunk port is what a tenant's carrier dials).
//!
//! Nonces are ours alone: random, remembered (at most [`MAX_NONCES`], the
//! oldest forgotten first) with the highest nonce count used, so a captured
//! `Authorization` cannot be replayed; each lives [`NONCE_LIFETIME`].

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bulkhead_shared::sip::digest::{self, Algorithm, Credentials};
use bulkhead_shared::trunk::TrunkAuth;
use tokio::time::Instant;

use super::msg::{name_is, Scanned};

/// How long a nonce may be answered.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);
/// Most nonces remembered; a flood of unauthenticated INVITEs evicts the
/// oldest, and their owners are challenged again (`stale=true`).
const MAX_NONCES: usize = 4096;

#[derive(Debug, Default)]
pub struct Nonces {
    /// nonce → (issued, highest nonce count answered).
    issued: HashMap<String, (Instant, u32)>,
    order: VecDeque<String>,
}

/// What to do with a new call on the trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Answer 401 with fresh challenges; `stale`: the credentials were
    /// right but the nonce had expired or was forgotten.
    Challenge {
        stale: bool,
    },
}

impl Nonces {
    pub fn issue(&mut self) -> String {
        let mut bytes = [0u8; 16];
        getrandom::getrandom(&mut bytes).expect("kernel randomness");
        let nonce: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        if self.order.len() >= MAX_NONCES {
            if let Some(old) = self.order.pop_front() {
                self.issued.remove(&old);
            }
        }
        self.issued.insert(nonce.clone(), (Instant::now(), 0));
        self.order.push_back(nonce.clone());
        nonce
    }

    /// Checks a request's credentials against `auth`.
    pub fn verify(&mut self, req: &Scanned<'_>, auth: &TrunkAuth) -> Verdict {
        let method = req.method().unwrap_or("");
        let ours = req
            .headers()
            .filter(|(n, _)| name_is(n, "Authorization"))
            .filter_map(|(_, v)| Credentials::parse(v))
            .find(|c| c.realm == auth.realm);
        let Some(c) = ours else {
            return Verdict::Challenge { stale: false };
        };
        let expected = digest::expected_response(c.algorithm, auth.ha1(c.algorithm), &c, method);
        // The digest `uri` is not compared with the Request-URI: sipp, for
        // one, sends `sip:host:port`. The response binds whatever it names,
        // and the nonce count stops a captured answer being used again.
        if c.username != auth.username || !digest::same_hex(c.response, &expected) {
            tracing::info!(
                username = c.username,
                "trunk call failed digest authentication"
            );
            return Verdict::Challenge { stale: false };
        }
        let count = c.nonce_count();
        match self.issued.get_mut(c.nonce) {
            Some((at, _)) if at.elapsed() > NONCE_LIFETIME => Verdict::Challenge { stale: true },
            Some((_, last)) if count > *last => {
                *last = count;
                Verdict::Pass
            }
            Some(_) => {
                tracing::info!("a replayed trunk Authorization (nonce count reused)");
                Verdict::Challenge { stale: false }
            }
            None => Verdict::Challenge { stale: true },
        }
    }
}

/// The `WWW-Authenticate` values of a 401: MD5 first, then SHA-256.
///
/// RFC 8760 §2.4 would put the preferred SHA-256 first, but clients that
/// read only the first challenge then fail outright: Debian's sipp 3.6.1
/// ("authentication must use MD5 or AKAv1-MD5") and Asterisk's chan_sip
/// before its RFC 8760 fix did. A carrier trunk that cannot answer is a
/// tenant with no calls, so MD5 leads and SHA-256 is there for clients
/// that choose it (docs/sip.md).
pub fn challenges(auth: &TrunkAuth, nonce: &str, stale: bool) -> [String; 2] {
    [Algorithm::Md5, Algorithm::Sha256].map(|alg| digest::challenge(alg, &auth.realm, nonce, stale))
}
