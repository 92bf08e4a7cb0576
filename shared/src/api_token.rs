//! API tokens: `bh_` + 32 base32 characters (160 random bits). Whoever
//! issues one (the supervisor for an admin, the worker for its tenant) shows
//! it once; only its SHA-256 is stored, in the tenant's own database.

use sha2::{Digest, Sha256};

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A freshly issued token.
#[derive(Debug)]
pub struct Issued {
    pub id: String,
    pub token: String,
    pub sha256_hex: String,
}

pub fn issue() -> Issued {
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).expect("kernel randomness");
    // 32 bytes, 5 bits each: 160 bits of entropy.
    let body: String = raw
        .iter()
        .map(|b| ALPHABET[(b & 31) as usize] as char)
        .collect();
    let token = format!("bh_{body}");
    let mut id_raw = [0u8; 6];
    getrandom::getrandom(&mut id_raw).expect("kernel randomness");
    let id = format!(
        "tok_{}",
        id_raw
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    Issued {
        id,
        sha256_hex: sha256_hex(&token),
        token,
    }
}

pub fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// True when `s` has the shape of a token (cheap check before hashing).
pub fn looks_like_token(s: &str) -> bool {
    s.len() >= 35
        && s.len() <= 128
        && s.starts_with("bh_")
        && s[3..].bytes().all(|c| ALPHABET.contains(&c))
}

/// Token ids are `tok_` and 12 lowercase hex digits.
pub fn is_token_id(s: &str) -> bool {
    s.len() == 16
        && s.starts_with("tok_")
        && s[4..]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_promised_shape_and_differ() {
        let a = issue();
        let b = issue();
        assert!(a.token.starts_with("bh_") && a.token.len() == 35);
        assert!(a.token[3..].bytes().all(|c| ALPHABET.contains(&c)));
        assert_ne!(a.token, b.token);
        assert_eq!(a.sha256_hex, sha256_hex(&a.token));
        assert_eq!(a.sha256_hex.len(), 64);
        assert!(looks_like_token(&a.token) && is_token_id(&a.id));
        assert!(!looks_like_token("bh_short") && !looks_like_token(&a.token.to_uppercase()));
        assert!(!is_token_id("tok_../../etc") && !is_token_id("tok_ABCDEF012345"));
    }
}
