//! API tokens: `bh_` + 32 base32 characters (160 random bits). The
//! supervisor shows a token once and hands the worker only its SHA-256.

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
    }
}
