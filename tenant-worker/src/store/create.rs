//! A new tenant's store, built beside its final name and renamed into place.
//!
//! Created in place in WAL mode, a store cost 7 fsyncs before its worker
//! served (a rollback journal, its directory, its header and the file to
//! switch to WAL; then the WAL's header, its directory and the migrations'
//! commit). Built under a temporary name with syncing off, then synced once
//! and renamed, it costs 2 (the file, the directory), and a crash leaves
//! either no store, so the next start builds it again, or a complete one:
//! never a half-made file under the store's name. A new store holds no
//! tenant data yet, so nothing is at risk while syncing is off.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{apply_key, migrations, Format, StoreError};

/// Builds the store at `path` (which must not exist) under `key`.
pub(super) fn create(path: &Path, key: &[u8; 32]) -> Result<(), StoreError> {
    let tmp = temp_path(path);
    discard(&tmp);
    let io_err = |source| StoreError::Create {
        path: path.to_owned(),
        source,
    };
    let result = build(&tmp, path, key)
        .and_then(|()| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io_err)
        })
        .and_then(|()| std::fs::rename(&tmp, path).map_err(io_err))
        .and_then(|()| super::sync_dir(path).map_err(io_err));
    if result.is_err() {
        discard(&tmp);
    }
    result
}

/// The schema, then WAL mode, in `tmp`; no journal and no syncing while
/// building (the file is not the store until it is synced and renamed).
/// Errors name `path`, the store being made.
fn build(tmp: &Path, path: &Path, key: &[u8; 32]) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open(tmp).map_err(open_err)?;
    apply_key(&conn, key, Format::CURRENT).map_err(open_err)?;
    conn.execute_batch("PRAGMA synchronous = OFF; PRAGMA journal_mode = OFF;")
        .map_err(open_err)?;
    migrations::apply(&conn).map_err(|(version, source)| StoreError::Migrate {
        path: path.to_owned(),
        version,
        source,
    })?;
    conn.execute_batch("PRAGMA journal_mode = WAL;")
        .map_err(open_err)?;
    // Closing the only connection checkpoints and removes the WAL, so the
    // whole store is in the one file synced next.
    conn.close().map_err(|(_, e)| open_err(e))
}

/// `tenant.db.new`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    path.with_file_name(name)
}

/// Removes a temporary file (and any SQLite side files) a crash left.
fn discard(tmp: &Path) {
    for suffix in ["", "-journal", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", tmp.display()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_store_is_complete_in_one_file_in_wal_mode_under_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        create(&path, &[3; 32]).unwrap();
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["tenant.db".to_string()], "no side files left");
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.starts_with(b"SQLite format 3"), "encrypted");
        let conn = super::super::open(&path, &[3; 32]).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, migrations::latest());
        assert!(matches!(
            super::super::open(&path, &[4; 32]),
            Err(StoreError::WrongKey { .. })
        ));
    }

    #[test]
    fn a_half_built_store_left_by_a_crash_is_replaced_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let tmp = temp_path(&path);
        std::fs::write(&tmp, b"half a store").unwrap();
        std::fs::write(format!("{}-wal", tmp.display()), b"stale").unwrap();
        let conn = super::super::open(&path, &[5; 32]).unwrap();
        conn.execute(
            "INSERT INTO documents (name, json, version, updated_at) VALUES ('a', '{}', 1, 't')",
            [],
        )
        .unwrap();
        assert!(!tmp.exists());
        assert!(!Path::new(&format!("{}-wal", tmp.display())).exists());
    }

    #[test]
    fn a_store_that_cannot_be_built_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing-dir").join("tenant.db");
        let err = super::super::open(&path, &[6; 32]).unwrap_err();
        assert!(err.to_string().contains("tenant.db"), "{err}");
    }
}
