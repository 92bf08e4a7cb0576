//! OpenSSL's start-up, trimmed to what SQLCipher uses. Left to itself,
//! OpenSSL initializes on its first use with every default: it loads its
//! error strings, registers every cipher and digest under its legacy names
//! (which it then copies into the name map its algorithm fetches search),
//! and reads a configuration file. SQLCipher needs none of it: it takes its
//! cipher and digests as objects (`EVP_aes_256_cbc()`, `EVP_sha256()`) and
//! its HMAC by provider name. In a new worker that start-up was 0.8 of the
//! 2.0 ms SQLCipher took to come up (BENCHMARKS.md); every worker start
//! pays it.
//!
//! What is given up: OpenSSL errors in SQLCipher's log carry numeric codes
//! (`openssl errstr CODE` decodes one) instead of text; and no
//! `openssl.cnf` applies, which a sandboxed worker should not read anyway.

use std::ffi::{c_int, c_void};

// `openssl/crypto.h` (OpenSSL 3).
const NO_LOAD_CRYPTO_STRINGS: u64 = 0x01;
const NO_ADD_ALL_CIPHERS: u64 = 0x10;
const NO_ADD_ALL_DIGESTS: u64 = 0x20;
const NO_LOAD_CONFIG: u64 = 0x80;

extern "C" {
    // libcrypto, vendored and linked by libsqlite3-sys (openssl-sys does
    // not declare this one).
    fn OPENSSL_init_crypto(opts: u64, settings: *const c_void) -> c_int;
}

/// Initializes OpenSSL without the parts above. Only the first
/// initialization in a process counts, so this must run before anything
/// else uses OpenSSL, and that includes the process's first SQLite
/// connection, keyed or not (SQLite's initialization has SQLCipher draw
/// random bytes); after that it changes nothing. False: OpenSSL refused to
/// initialize, and SQLCipher will fail on its own when it tries.
#[allow(unsafe_code)] // one FFI call, justified below
pub(super) fn init_trimmed() -> bool {
    let opts = NO_LOAD_CRYPTO_STRINGS | NO_ADD_ALL_CIPHERS | NO_ADD_ALL_DIGESTS | NO_LOAD_CONFIG;
    // SAFETY: OPENSSL_init_crypto is thread-safe and may be called any
    // number of times; a null settings pointer means "no settings", and
    // the options are flags OpenSSL 3 defines. It reads no memory of ours.
    unsafe { OPENSSL_init_crypto(opts, std::ptr::null()) == 1 }
}

#[cfg(test)]
mod tests {
    #[test]
    fn openssl_accepts_the_trimmed_initialization_even_when_already_up() {
        assert!(super::init_trimmed());
        assert!(super::init_trimmed());
    }
}
