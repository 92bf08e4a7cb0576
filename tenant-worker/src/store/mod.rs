//! The tenant's store: one SQLCipher file, `tenant.db`, keyed with the
//! tenant's raw 256-bit data key. This module tree is the only code in the
//! worker that touches rusqlite.
//!
//! Writes go through one writer thread ([`writer`]) so the async side never
//! blocks on fsync and a burst of call events shares one commit; reads use a
//! second connection (WAL lets it read while the writer writes).

#[cfg(test)]
mod aged_bench;
#[cfg(test)]
mod bench;
mod call_log;
mod calls;
mod create;
mod documents;
mod format;
mod gather;
pub(crate) mod migrations;
mod openssl;
pub mod rekey;
mod tokens;
mod transcripts;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use rusqlite::Connection;
use zeroize::Zeroizing;

pub use call_log::{CallFilter, CallPage, CallRecord};
pub use calls::{mark_interrupted, NewCall, Outcome};
pub use documents::Document;
pub use format::Format;
pub use tokens::{LiveToken, TokenInfo};
pub use transcripts::Turn;

/// Why the store could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("failed to open {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("failed to create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} cannot be read with this tenant's key (wrong key, or not a Bulkhead store)")]
    WrongKey { path: PathBuf },
    #[error("failed to migrate {path} to schema version {version}: {source}")]
    Migrate {
        path: PathBuf,
        version: usize,
        source: rusqlite::Error,
    },
    #[error("store query failed: {0}")]
    Query(#[from] rusqlite::Error),
}

/// Every connection's settings (the benchmark gives a plain SQLite file the same).
const SETTINGS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000; PRAGMA temp_store = MEMORY;";

/// Applies [`SETTINGS`] and the query planner stability guarantee (QPSG)
/// to `conn`. Without the QPSG, SQLite 3.54 marks a statement whose plan
/// read a bound value (a `LIMIT ?`, or the transcript insert's
/// `WHERE call = ?1` subquery) to be parsed and planned again at its next
/// run: the writer re-prepared the turn insert on every turn, 15% of its
/// CPU during a call burst (BENCHMARKS.md). Our statements are cached and
/// reused, so one plan per statement is what we want anyway.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SETTINGS)?;
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )?;
    Ok(())
}

/// Opens (creating when absent) the store at `path` with `key`, applies the
/// connection settings and brings the schema up to date.
pub fn open(path: &Path, key: &[u8; 32]) -> Result<Connection, StoreError> {
    keep_sqlcipher_active();
    if !path.exists() {
        create::create(path, key)?;
    }
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let Some((conn, format)) =
        format::open_keyed(path, |conn, format| apply_key(conn, key, format)).map_err(open_err)?
    else {
        return Err(StoreError::WrongKey {
            path: path.to_owned(),
        });
    };
    if format != Format::CURRENT {
        tracing::info!(
            ?format,
            "the store is in an older format (a SQLCipher 'hmac check failed' log line before this is the newer format's try); the next key rotation rewrites it"
        );
    }
    // WAL: readers never block the writer. synchronous=FULL: a commit is on
    // disk before it returns, so a call record survives power loss, not only
    // a crash of the worker (docs/architecture.md, "Durability").
    configure(&conn).map_err(open_err)?;
    migrations::apply(&conn).map_err(|(version, source)| StoreError::Migrate {
        path: path.to_owned(),
        version,
        source,
    })?;
    Ok(conn)
}

/// Reads `name` on a connection the caller holds: the worker's start reads
/// its stored documents on the reader before the runtime exists, where a
/// trip through [`writer::Store`]'s blocking pool per read cost ~0.1 ms.
pub fn document_now(conn: &Connection, name: &str) -> Result<Option<Document>, StoreError> {
    Ok(documents::get(conn, name)?)
}

/// The live API tokens, read like [`document_now`].
pub fn live_tokens_now(conn: &Connection) -> Result<Vec<LiveToken>, StoreError> {
    Ok(tokens::live(conn)?)
}

/// SQLCipher initializes its crypto provider when the first keyed
/// connection opens and tears it down when the last one closes; connections
/// opening and closing on several threads at once race in that teardown
/// (seen here as a segfault and as spurious `PRAGMA key` errors in parallel
/// tests). One keyed in-memory connection held for the process's lifetime
/// keeps the provider up, so the teardown never runs. OpenSSL starts
/// here too ([`openssl`]): the worker's first SQLite connection is this
/// one.
fn keep_sqlcipher_active() {
    static KEEPER: OnceLock<Mutex<Connection>> = OnceLock::new();
    KEEPER.get_or_init(|| {
        if !openssl::init_trimmed() {
            tracing::warn!("OpenSSL refused its trimmed initialization");
        }
        let conn = Connection::open_in_memory().expect("in-memory SQLite");
        conn.execute_batch("PRAGMA key = 'keep-active'; SELECT count(*) FROM sqlite_master;")
            .expect("SQLCipher keys an in-memory database");
        Mutex::new(conn)
    });
}

/// Exports the store into a new file at `path`, keyed like this one (an
/// ATTACH without KEY takes the main database's key).
pub(crate) fn export(conn: &Connection, path: &Path) -> rusqlite::Result<()> {
    conn.execute("ATTACH DATABASE ?1 AS backup", [path.to_string_lossy()])?;
    export_attached(conn, "backup")
}

/// Fills the new, empty database attached as `schema` with the store, in
/// the current format (an ATTACH never takes the main database's format),
/// schema version kept; then detaches it, whatever happened.
pub(crate) fn export_attached(conn: &Connection, schema: &str) -> rusqlite::Result<()> {
    let exported = conn
        .query_row("PRAGMA main.user_version", [], |r| r.get::<_, i64>(0))
        .and_then(|version| {
            conn.execute_batch(&Format::CURRENT.pragma(schema))?;
            conn.query_row(&format!("SELECT sqlcipher_export('{schema}')"), [], |_| {
                Ok(())
            })?;
            conn.execute_batch(&format!("PRAGMA {schema}.user_version = {version};"))
        });
    let detached = conn.execute_batch(&format!("DETACH DATABASE {schema}"));
    exported.and(detached)
}

/// Syncs the directory holding `path`, so a file created or renamed there
/// survives a power loss.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::File::open(dir)?.sync_all()
}

/// `PRAGMA key = "x'…'"`: a raw key, so no KDF runs (a passphrase would cost
/// ~250 ms of PBKDF2 per open), then the format. The hex copy is zeroized
/// on drop.
fn apply_key(conn: &Connection, key: &[u8; 32], format: Format) -> rusqlite::Result<()> {
    let mut pragma = Zeroizing::new(String::with_capacity(80));
    pragma.push_str("PRAGMA key = \"x'");
    for b in key {
        pragma.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
        pragma.push(char::from_digit(u32::from(b & 0xf), 16).expect("nibble"));
    }
    pragma.push_str("'\";");
    pragma.push_str(&format.pragma("main"));
    conn.execute_batch(&pragma)
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    pub fn temp_store() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("tenant.db"), &[7; 32]).unwrap();
        (dir, conn)
    }

    /// A plain SQLite file with the store's settings and schema: the
    /// benchmarks' reference beside SQLCipher.
    pub fn plain(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        configure(&conn).unwrap();
        migrations::apply(&conn).unwrap();
        conn
    }

    /// A store in `format` at `path` (which must not exist), schema
    /// current, as a build that wrote that format made it.
    pub fn store_in(path: &Path, key: &[u8; 32], format: Format) {
        let conn = Connection::open(path).unwrap();
        apply_key(&conn, key, format).unwrap();
        configure(&conn).unwrap();
        migrations::apply(&conn).unwrap();
    }

    /// Whether `path` reads with `key` in exactly `format`, opened by hand.
    pub fn reads_in(path: &Path, key: &[u8; 32], format: Format) -> bool {
        let conn = Connection::open(path).unwrap();
        apply_key(&conn, key, format).unwrap();
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .is_ok()
    }

    /// Stores the agent document at `version`.
    pub fn put_agent(conn: &Connection, version: i64) {
        conn.execute(
            "INSERT OR REPLACE INTO documents (name, json, version, updated_at) VALUES ('agent', '{}', ?1, 't')",
            [version],
        )
        .unwrap();
    }

    /// The stored agent document's version.
    pub fn agent_version(conn: &Connection) -> i64 {
        conn.query_row(
            "SELECT version FROM documents WHERE name = 'agent'",
            [],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// A benchmark knob from the environment, else `default`.
    pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_export_is_encrypted_under_the_same_key_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let key = [9u8; 32];
        let conn = open(&dir.path().join("tenant.db"), &key).unwrap();
        conn.execute(
            "INSERT INTO documents (name, json, version, updated_at) VALUES ('agent', '{\"greeting\":\"needle-4471\"}', 3, 't')",
            [],
        )
        .unwrap();
        let out = dir.path().join("copy.db");
        export(&conn, &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert!(
            !bytes.windows(11).any(|w| w == b"needle-4471"),
            "plaintext in the copy"
        );
        assert!(!bytes.starts_with(b"SQLite format 3"));
        assert_eq!(test_util::agent_version(&open(&out, &key).unwrap()), 3);
        assert!(matches!(
            open(&out, &[1u8; 32]),
            Err(StoreError::WrongKey { .. })
        ));
    }

    #[test]
    fn wrong_key_is_refused_and_file_is_not_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let conn = open(&path, &[1; 32]).unwrap();
        conn.execute("INSERT INTO tokens (id, name, sha256_hex, created_at) VALUES ('t', 'needle-plaintext', 'h', 'now')", [])
            .unwrap();
        drop(conn);
        assert!(matches!(
            open(&path, &[2; 32]),
            Err(StoreError::WrongKey { .. })
        ));
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(16).any(|w| w == b"needle-plaintext"));
            assert!(!bytes.starts_with(b"SQLite format 3"));
        }
        assert!(open(&path, &[1; 32]).is_ok(), "reopens with the right key");
    }
}
