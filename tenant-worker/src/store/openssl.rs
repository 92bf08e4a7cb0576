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
    use std::ffi::{c_char, c_void};

    use crate::store::test_util::{agent_version, put_agent};

    extern "C" {
        fn EVP_get_cipherbyname(name: *const c_char) -> *const c_void;
    }

    /// Whether OpenSSL's legacy cipher names were registered (the default
    /// start does it; the trimmed one does not, and asking cannot make it).
    #[allow(unsafe_code)] // one FFI call, justified below
    fn legacy_names_loaded() -> bool {
        // SAFETY: a NUL-terminated name; the result is only compared with
        // null, never dereferenced.
        !unsafe { EVP_get_cipherbyname(c"AES-256-CBC".as_ptr()) }.is_null()
    }

    const CHILD: &str = "BULKHEAD_OPENSSL_CHILD";
    const NAME: &str =
        "store::openssl::tests::a_store_opened_first_starts_openssl_trimmed_and_works";

    /// Runs this test again in a fresh process, as `mode`.
    fn child(mode: &str) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", NAME, "--test-threads=1"])
            .env(CHILD, mode)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "{mode}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// In a fresh process, as in a worker: the store's open is the first
    /// use of SQLite and OpenSSL, so the trimmed start is the one in
    /// effect, and a store is written, exported and read back under it.
    /// The same process with a plain SQLite connection opened first shows
    /// the check can tell the two starts apart.
    #[test]
    fn a_store_opened_first_starts_openssl_trimmed_and_works() {
        let mode = std::env::var(CHILD).unwrap_or_default();
        match mode.as_str() {
            "" => {
                child("trimmed");
                child("default");
                return;
            }
            "default" => drop(rusqlite::Connection::open_in_memory().unwrap()),
            _ => {}
        }
        let dir = tempfile::tempdir().unwrap();
        let key = [6u8; 32];
        let conn = crate::store::open(&dir.path().join("tenant.db"), &key).unwrap();
        assert_eq!(legacy_names_loaded(), mode == "default");
        put_agent(&conn, 2);
        crate::store::export(&conn, &dir.path().join("copy.db")).unwrap();
        let copy = crate::store::open(&dir.path().join("copy.db"), &key).unwrap();
        assert_eq!(agent_version(&copy), 2);
    }
}
