//! The store's on-disk format: the SQLCipher settings a store is written
//! with. SQLCipher encrypts the file from its first byte and records none of
//! its settings, so whoever opens a store must name them; an opener here
//! tries each format, newest first, and the first that reads the first page
//! is the store's.
//!
//! The formats differ only in the HMAC that authenticates each page. Every
//! committed page is encrypted and MACed, and with HMAC-SHA512 (SQLCipher 4's
//! default) that MAC was 40% of a call-record insert's instructions on this
//! machine, and SHA-256 runs on the CPU's SHA extensions (BENCHMARKS.md).
//! Either way the MAC is keyed from the tenant's data key, so altering or
//! forging a page takes that key.

use std::path::Path;

use rusqlite::{Connection, ErrorCode};

/// The SQLCipher settings a store was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// SQLCipher 4's defaults with HMAC-SHA256 page MACs: every store
    /// built, exported or rekeyed since this format was added.
    HmacSha256,
    /// SQLCipher 4's defaults (HMAC-SHA512 page MACs): stores built before.
    /// They are read and written as they are; the next key rotation
    /// rewrites the store in the current format.
    HmacSha512,
}

impl Format {
    /// What new files are written in.
    pub const CURRENT: Format = Format::HmacSha256;
    const NEWEST_FIRST: [Format; 2] = [Format::HmacSha256, Format::HmacSha512];

    /// The statement that puts database `schema` in this format; it must
    /// run after the key and before the first read or write.
    pub fn pragma(self, schema: &str) -> String {
        let algorithm = match self {
            Format::HmacSha256 => "HMAC_SHA256",
            Format::HmacSha512 => "HMAC_SHA512",
        };
        format!("PRAGMA {schema}.cipher_hmac_algorithm = {algorithm};")
    }
}

/// Opens `path` with `key` in whichever format it was written. `Ok(None)`:
/// no format reads its first page, so the key is wrong or the file is not a
/// store. `keyed` gives a fresh connection its key and a format.
pub(super) fn open_keyed(
    path: &Path,
    keyed: impl Fn(&Connection, Format) -> rusqlite::Result<()>,
) -> rusqlite::Result<Option<(Connection, Format)>> {
    for format in Format::NEWEST_FIRST {
        let conn = Connection::open(path)?;
        keyed(&conn, format)?;
        // A wrong key or format only shows at the first read of the file.
        match conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())) {
            Ok(()) => return Ok(Some((conn, format))),
            Err(e) if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::Format;
    use crate::store::test_util::{agent_version, put_agent, reads_in, store_in};
    use crate::store::{export, open, StoreError};

    const KEY: [u8; 32] = [8; 32];

    #[test]
    fn a_new_store_is_written_in_the_current_format_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        drop(open(&path, &KEY).unwrap());
        assert!(reads_in(&path, &KEY, Format::CURRENT));
        assert!(!reads_in(&path, &KEY, Format::HmacSha512));
    }

    #[test]
    fn an_older_store_opens_keeps_its_data_and_its_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        store_in(&path, &KEY, Format::HmacSha512);
        put_agent(&open(&path, &KEY).unwrap(), 4);
        assert_eq!(agent_version(&open(&path, &KEY).unwrap()), 4);
        assert!(reads_in(&path, &KEY, Format::HmacSha512));
        assert!(matches!(
            open(&path, &[1; 32]),
            Err(StoreError::WrongKey { .. })
        ));
    }

    /// A crash leaves committed pages only in the WAL, page 1 among them:
    /// the try in the current format must fail as "not a database" there
    /// too, or an older store would not open after a crash.
    #[test]
    fn an_older_store_left_by_a_crash_opens_from_its_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        store_in(&path, &KEY, Format::HmacSha512);
        let conn = open(&path, &KEY).unwrap();
        // A schema change rewrites page 1 (a migration after an upgrade).
        conn.execute_batch("CREATE TABLE later (x);").unwrap();
        put_agent(&conn, 7);
        // The files as a crash leaves them: the WAL not checkpointed.
        let crashed = tempfile::tempdir().unwrap();
        for name in ["tenant.db", "tenant.db-wal"] {
            std::fs::copy(dir.path().join(name), crashed.path().join(name)).unwrap();
        }
        assert!(
            std::fs::metadata(crashed.path().join("tenant.db-wal"))
                .unwrap()
                .len()
                > 0
        );
        let reopened = open(&crashed.path().join("tenant.db"), &KEY).unwrap();
        assert_eq!(agent_version(&reopened), 7);
        let later: i64 = reopened
            .query_row("SELECT count(*) FROM later", [], |r| r.get(0))
            .unwrap();
        assert_eq!(later, 0);
    }

    #[test]
    fn an_export_of_an_older_store_is_in_the_current_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        store_in(&path, &KEY, Format::HmacSha512);
        let copy = dir.path().join("copy.db");
        export(&open(&path, &KEY).unwrap(), &copy).unwrap();
        assert!(reads_in(&copy, &KEY, Format::CURRENT));
        assert!(!reads_in(&copy, &KEY, Format::HmacSha512));
    }
}
