//! SIP digest authentication (RFC 3261 §22.4, RFC 8760 for SHA-256), the
//! parts a server needs: HA1 from a password, the expected response, the
//! challenge header, and reading a client's `Authorization` header.

use std::fmt::Write;

use md5::Md5;
use sha2::{Digest, Sha256};

/// The hash a challenge names. We offer SHA-256 first (RFC 8760 §2.4:
/// in order of preference) and MD5, which most carriers still use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Sha256 => "SHA-256",
        }
    }

    /// `MD5` (also when absent: RFC 2617's default) or `SHA-256`.
    pub fn parse(name: Option<&str>) -> Option<Self> {
        match name {
            None => Some(Self::Md5),
            Some(n) if n.eq_ignore_ascii_case("MD5") => Some(Self::Md5),
            Some(n) if n.eq_ignore_ascii_case("SHA-256") => Some(Self::Sha256),
            Some(_) => None,
        }
    }

    /// Lower-case hex of the hash of `data`.
    pub fn hex(self, data: &str) -> String {
        match self {
            Self::Md5 => hex(&Md5::digest(data.as_bytes())),
            Self::Sha256 => hex(&Sha256::digest(data.as_bytes())),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// HA1 = H(username:realm:password): what a server stores instead of the password.
pub fn ha1(alg: Algorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hex(&format!("{username}:{realm}:{password}"))
}

/// The response a client who knows the password sends, with `qop=auth`.
pub fn expected_response(alg: Algorithm, ha1: &str, c: &Credentials<'_>, method: &str) -> String {
    let ha2 = alg.hex(&format!("{method}:{}", c.uri));
    alg.hex(&format!(
        "{ha1}:{}:{}:{}:{}:{ha2}",
        c.nonce, c.nc, c.cnonce, c.qop
    ))
}

/// A `WWW-Authenticate` value.
pub fn challenge(alg: Algorithm, realm: &str, nonce: &str, stale: bool) -> String {
    let stale = if stale { ", stale=true" } else { "" };
    format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{stale}",
        alg.name()
    )
}

/// Compares two hex strings in time independent of where they differ.
pub fn same_hex(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| {
            acc | (x.to_ascii_lowercase() ^ y.to_ascii_lowercase())
        }) == 0
}

/// What a client's `Authorization: Digest ...` header says. Every field
/// must be present: we offer only `qop="auth"`, which requires them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub response: &'a str,
    pub algorithm: Algorithm,
    pub cnonce: &'a str,
    pub qop: &'a str,
    pub nc: &'a str,
}

impl<'a> Credentials<'a> {
    /// Reads a header value; `None` for anything but complete digest
    /// credentials with `qop=auth`.
    pub fn parse(value: &'a str) -> Option<Self> {
        let (scheme, rest) = value.trim_start().split_once(char::is_whitespace)?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let mut f: [Option<&str>; 9] = [None; 9];
        const NAMES: [&str; 9] = [
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "cnonce",
            "qop",
            "nc",
        ];
        for (name, v) in Params(rest) {
            if let Some(i) = NAMES.iter().position(|n| n.eq_ignore_ascii_case(name)) {
                if f[i].replace(v).is_some() {
                    return None; // a parameter twice
                }
            }
        }
        let [username, realm, nonce, uri, response, algorithm, cnonce, qop, nc] = f;
        let qop = qop?;
        let nc = nc?;
        if !qop.eq_ignore_ascii_case("auth")
            || nc.len() != 8
            || !nc.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        Some(Self {
            username: username?,
            realm: realm?,
            nonce: nonce?,
            uri: uri?,
            response: response?,
            algorithm: Algorithm::parse(algorithm)?,
            cnonce: cnonce?,
            qop,
            nc,
        })
    }

    /// The nonce count as a number.
    pub fn nonce_count(&self) -> u32 {
        u32::from_str_radix(self.nc, 16).unwrap_or(0)
    }
}

/// `name=value` pairs separated by commas; values may be quoted (a
/// backslash escapes the next character, which we keep as written: none of
/// the fields we compare may contain quotes).
struct Params<'a>(&'a str);

impl<'a> Iterator for Params<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let s = self
            .0
            .trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let (name, rest) = s.split_once('=')?;
        let rest = rest.trim_start();
        let (value, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let mut escaped = false;
            let end = quoted.char_indices().find_map(|(i, c)| {
                let close = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                close.then_some(i)
            })?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (rest[..end].trim_end(), &rest[end..])
        };
        self.0 = after;
        Some((name.trim(), value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1's example, whose digest computation SIP shares
    /// (only the method and URI differ).
    fn rfc7616(alg: &str) -> String {
        format!(
            "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
algorithm={alg}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, response=\"x\", \
opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
        )
    }

    #[test]
    fn computes_the_rfc7616_example_responses() {
        for (alg, expected) in [
            (Algorithm::Md5, "8ca523f5e9506fed4657c9700eebdbec"),
            (
                Algorithm::Sha256,
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ] {
            let header = rfc7616(alg.name());
            let c = Credentials::parse(&header).unwrap();
            assert_eq!(c.algorithm, alg);
            let ha1 = ha1(alg, c.username, c.realm, "Circle of Life");
            assert_eq!(expected_response(alg, &ha1, &c, "GET"), expected);
        }
    }

    #[test]
    fn reads_only_complete_qop_auth_credentials() {
        let c = Credentials::parse(
            "digest  username=\"a\\\"b\",realm=r, nonce=\"n,1\" ,uri=\"sip:+1@h\", response=\"ab\", cnonce=c, qop=auth, nc=0000000a",
        )
        .unwrap();
        assert_eq!(
            (c.username, c.realm, c.nonce, c.uri, c.nonce_count()),
            ("a\\\"b", "r", "n,1", "sip:+1@h", 10)
        );
        assert_eq!(c.algorithm, Algorithm::Md5, "absent means MD5");
        let full = "Digest username=u, realm=r, nonce=n, uri=u, response=r, cnonce=c, qop=auth, nc=00000001";
        assert!(Credentials::parse(full).is_some());
        for broken in [
            full.replace("qop=auth", "qop=auth-int"),
            full.replace("nc=00000001", "nc=1"),
            full.replace(", cnonce=c", ""),
            full.replace("Digest", "Basic"),
            format!("{full}, nonce=again"),
            full.replace("uri=u", "uri=\"unterminated"),
            format!("{full}, algorithm=SHA-512"),
        ] {
            assert_eq!(Credentials::parse(&broken), None, "{broken}");
        }
    }

    #[test]
    fn challenges_and_compares() {
        assert_eq!(
            challenge(Algorithm::Sha256, "clinic", "abc", true),
            "Digest realm=\"clinic\", nonce=\"abc\", algorithm=SHA-256, qop=\"auth\", stale=true"
        );
        assert!(same_hex("0aF", "0af"));
        assert!(!same_hex("0af", "0ae") && !same_hex("0af", "0af0"));
    }
}
