//! Re-encrypting the store under a new key (`tenant rotate-key`) while the
//! worker keeps serving. SQLCipher's in-place `PRAGMA rekey` is not safe in
//! WAL mode (docs/key-rotation.md), so the store is copied instead:
//!
//! 1. `sqlcipher_export` writes the whole store, under the new key, to
//!    `tenant.db.rekey` (fsync). Writes wait in the writer's queue; reads
//!    go on.
//! 2. With reads paused too, the WAL is checkpointed empty and the copy is
//!    renamed over `tenant.db` (fsync of the directory): the one atomic step.
//! 3. The old connections close (they may delete `tenant.db-wal`/`-shm` by
//!    name, so this comes before anything opens the new file); connections
//!    under the new key take their place.
//!
//! A crash before step 2 leaves the old file and a stale copy (removed at the
//! next start); after it, the new file. Either way one of the two keys opens
//! `tenant.db`, and the worker's start reports which.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bulkhead_shared::ipc::message::{SecretKey, StoreKey};
use rusqlite::Connection;
use zeroize::Zeroizing;

use super::StoreError;

/// What the writer thread needs to swap the store under a new key.
pub struct Rekey {
    /// `tenant.db`.
    pub path: PathBuf,
    pub key: SecretKey,
    /// Test-only failpoint: abort after the named step.
    pub crash_at: Option<String>,
}

impl std::fmt::Debug for Rekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rekey")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// `tenant.db.rekey`: the copy under the new key, before the swap.
pub fn copy_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".rekey");
    path.with_file_name(name)
}

/// Removes a copy (and its rollback journal) that a crash left behind
/// before the swap: it is never the live store.
pub fn discard_stale(path: &Path) {
    let copy = copy_path(path);
    for stale in [
        copy.clone(),
        PathBuf::from(format!("{}-journal", copy.display())),
    ] {
        if std::fs::remove_file(&stale).is_ok() {
            tracing::warn!(file = %stale.display(), "removed a copy left by an interrupted key rotation");
        }
    }
}

/// Runs on the writer thread, between two batches: `writer` and `reader`
/// are the store's two connections, replaced by ones under the new key on
/// success. On an error before the swap nothing changed.
pub fn swap(
    writer: &mut Connection,
    reader: &Mutex<Connection>,
    job: &Rekey,
) -> Result<(), String> {
    let copy = copy_path(&job.path);
    discard_stale(&job.path);
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let _ = std::fs::remove_file(&copy);
        format!("{what}: {e}; the store is unchanged, under its current key")
    };
    export_under(writer, &copy, &job.key)
        .map_err(|e| fail("copying the store under the new key failed", &e))?;
    std::fs::File::open(&copy)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail("syncing the copy failed", &e))?;
    crash_point(job, "rekey-exported");

    let mut reader = reader.lock().unwrap_or_else(|p| p.into_inner());
    // An empty WAL: a crash right after the rename must not leave frames
    // of the old file beside the new one.
    let (busy, _, _): (i64, i64, i64) = writer
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .map_err(|e| fail("checkpointing the store failed", &e))?;
    if busy != 0 {
        return Err(fail("checkpointing the store failed", &"a reader held it"));
    }
    std::fs::rename(&copy, &job.path)
        .and_then(|()| super::sync_dir(&job.path))
        .map_err(|e| fail("swapping the copy in failed", &e))?;
    crash_point(job, "rekey-renamed");

    // From here the file on disk is under the new key: a failure to open it
    // cannot be undone here, and a restart resolves it (both keys come in
    // the bootstrap while the registry holds the rotation as pending).
    // Nor may it end in an error reply, which tells the supervisor the store
    // is unchanged: past the rename, failure aborts instead.
    let reopened = (|| {
        drop(std::mem::replace(
            &mut *reader,
            Connection::open_in_memory()?,
        ));
        drop(std::mem::replace(writer, Connection::open_in_memory()?));
        let w = super::open(&job.path, &job.key.0)?;
        Ok::<_, StoreError>((w, super::open(&job.path, &job.key.0)?))
    })();
    match reopened {
        Ok((w, r)) => {
            *writer = w;
            *reader = r;
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "the re-encrypted store does not open; restarting the worker");
            std::process::abort();
        }
    }
}

/// Opens the store's writer and reader connections at start-up with the
/// current key or, if a rotation was interrupted after its swap, with the
/// pending one; says which opened it. A stale copy is removed first.
pub fn open_with_either(
    path: &Path,
    current: &[u8; 32],
    pending: Option<&[u8; 32]>,
) -> Result<(Connection, Connection, StoreKey), StoreError> {
    discard_stale(path);
    let pair = |key| Ok::<_, StoreError>((super::open(path, key)?, super::open(path, key)?));
    match (pair(current), pending) {
        (Ok((w, r)), _) => Ok((w, r, StoreKey::Current)),
        (Err(StoreError::WrongKey { .. }), Some(pending)) => {
            let (w, r) = pair(pending)?;
            tracing::info!(
                "the store opened with the pending key: an interrupted rotation had swapped it in"
            );
            Ok((w, r, StoreKey::Pending))
        }
        (Err(e), _) => Err(e),
    }
}

/// `sqlcipher_export` into a new file keyed with `key` (raw, no KDF), in the
/// current format: a rotation is what rewrites a store of an older one.
fn export_under(conn: &Connection, copy: &Path, key: &SecretKey) -> rusqlite::Result<()> {
    let raw = Zeroizing::new(format!("x'{}'", hex(&key.0).as_str()));
    conn.execute(
        "ATTACH DATABASE ?1 AS rekeyed KEY ?2",
        rusqlite::params![copy.to_string_lossy(), raw.as_str()],
    )?;
    super::export_attached(conn, "rekeyed")
}

fn hex(bytes: &[u8]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(bytes.len() * 2));
    for b in bytes {
        out.push(char::from_digit(u32::from(b >> 4), 16).expect("nibble"));
        out.push(char::from_digit(u32::from(b & 0xf), 16).expect("nibble"));
    }
    out
}

fn crash_point(job: &Rekey, name: &str) {
    if job.crash_at.as_deref() == Some(name) {
        tracing::warn!("crashing at {name} (test failpoint)");
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::open;

    fn insert_doc(conn: &Connection, marker: &str) {
        conn.execute(
            "INSERT OR REPLACE INTO documents (name, json, version, updated_at) VALUES ('agent', ?1, 2, 't')",
            [format!("{{\"greeting\":\"{marker}\"}}")],
        )
        .unwrap();
    }

    #[test]
    fn swap_puts_the_store_under_the_new_key_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let mut writer = open(&path, &old).unwrap();
        let reader = Mutex::new(open(&path, &old).unwrap());
        insert_doc(&writer, "kept-across-rekey");
        let job = Rekey {
            path: path.clone(),
            key: SecretKey(new),
            crash_at: None,
        };
        swap(&mut writer, &reader, &job).unwrap();
        // Both live connections now read and write the new file.
        insert_doc(&writer, "written-after");
        let got: String = reader
            .lock()
            .unwrap()
            .query_row("SELECT json FROM documents WHERE name = 'agent'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(got.contains("written-after"), "{got}");
        drop((writer, reader));
        assert!(matches!(
            open(&path, &old),
            Err(StoreError::WrongKey { .. })
        ));
        let reopened = open(&path, &new).unwrap();
        let version: i64 = reopened
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version as usize, crate::store::migrations::LATEST);
        assert!(!copy_path(&path).exists());
    }

    #[test]
    fn a_rotation_rewrites_an_older_store_in_the_current_format() {
        use crate::store::test_util::{reads_in, store_in};
        use crate::store::Format;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let (old, new) = ([1u8; 32], [2u8; 32]);
        store_in(&path, &old, Format::HmacSha512);
        let mut writer = open(&path, &old).unwrap();
        let reader = Mutex::new(open(&path, &old).unwrap());
        insert_doc(&writer, "kept-across-formats");
        let job = Rekey {
            path: path.clone(),
            key: SecretKey(new),
            crash_at: None,
        };
        swap(&mut writer, &reader, &job).unwrap();
        drop((writer, reader));
        assert!(reads_in(&path, &new, Format::CURRENT));
        assert!(!reads_in(&path, &new, Format::HmacSha512));
        let got: String = open(&path, &new)
            .unwrap()
            .query_row("SELECT json FROM documents WHERE name = 'agent'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert!(got.contains("kept-across-formats"), "{got}");
    }

    #[test]
    fn a_failed_copy_leaves_the_store_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let old = [1u8; 32];
        let mut writer = open(&path, &old).unwrap();
        let reader = Mutex::new(open(&path, &old).unwrap());
        insert_doc(&writer, "before");
        // A directory where the copy goes: ATTACH cannot create it.
        std::fs::create_dir(copy_path(&path)).unwrap();
        std::fs::write(copy_path(&path).join("x"), b"x").unwrap();
        let job = Rekey {
            path: path.clone(),
            key: SecretKey([2; 32]),
            crash_at: None,
        };
        let err = swap(&mut writer, &reader, &job).unwrap_err();
        assert!(err.contains("unchanged"), "{err}");
        insert_doc(&writer, "after");
        drop((writer, reader));
        assert!(open(&path, &old).is_ok());
    }

    #[test]
    fn start_up_opens_with_whichever_key_the_file_is_under() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let (old, new) = ([1u8; 32], [2u8; 32]);
        drop(open(&path, &new).unwrap());
        let (.., which) = open_with_either(&path, &new, Some(&old)).unwrap();
        assert_eq!(which, StoreKey::Current);
        let (.., which) = open_with_either(&path, &old, Some(&new)).unwrap();
        assert_eq!(which, StoreKey::Pending);
        assert!(matches!(
            open_with_either(&path, &old, None),
            Err(StoreError::WrongKey { .. })
        ));
        assert!(matches!(
            open_with_either(&path, &old, Some(&[3; 32])),
            Err(StoreError::WrongKey { .. })
        ));
    }

    #[test]
    fn a_stale_copy_is_discarded_and_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        std::fs::write(copy_path(&path), b"half a copy").unwrap();
        discard_stale(&path);
        assert!(!copy_path(&path).exists());
    }

    /// The two ways to re-encrypt, on the same store in the same run
    /// (docs/key-rotation.md):
    ///   cargo test --release -p bulkhead-worker rekey_methods_bench -- --ignored --nocapture
    /// with BENCH_STORE_MB (default 512).
    #[test]
    #[ignore = "benchmark"]
    fn rekey_methods_bench() {
        let mb: usize = std::env::var("BENCH_STORE_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(512);
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let path = dir.path().join("tenant.db");
        let mut writer = open(&path, &[1; 32]).unwrap();
        {
            let tx = writer.transaction().unwrap();
            let text = "x".repeat(4000);
            for i in 0..mb * 1024 * 1024 / 4400 {
                tx.execute(
                    "INSERT INTO calls (id, call_id, from_user, to_number, started_at, ended_at, outcome)
                     VALUES (?1, ?1, '+15551234567', '+15550100', '2025-11-01T10:00:00Z', '2025-11-01T10:01:00Z', 'completed')",
                    [format!("c{i}")],
                )
                .unwrap();
                tx.execute(
                    "INSERT INTO turns (call, n, speaker, text, at_ms) VALUES (?1, 1, 'caller', ?2, 0)",
                    rusqlite::params![format!("c{i}"), text],
                )
                .unwrap();
            }
            tx.commit().unwrap();
        }
        let bytes = std::fs::metadata(&path).unwrap().len() as f64;
        let reader = Mutex::new(open(&path, &[1; 32]).unwrap());
        let t = std::time::Instant::now();
        let job = Rekey {
            path: path.clone(),
            key: SecretKey([2; 32]),
            crash_at: None,
        };
        swap(&mut writer, &reader, &job).unwrap();
        let copy = t.elapsed().as_secs_f64();
        let hex: String = [3u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        let t = std::time::Instant::now();
        writer
            .execute_batch(&format!(
                "PRAGMA rekey = \"x'{hex}'\"; PRAGMA wal_checkpoint(TRUNCATE);"
            ))
            .unwrap();
        let in_place = t.elapsed().as_secs_f64();
        println!("rekey methods: {:.0} MB store", bytes / 1e6);
        println!("| method | seconds | MB/s |");
        println!("|---|---|---|");
        println!(
            "| copy under the new key + rename (what rotate-key does) | {copy:.2} | {:.0} |",
            bytes / 1e6 / copy
        );
        println!(
            "| `PRAGMA rekey` in place, WAL checkpointed | {in_place:.2} | {:.0} |",
            bytes / 1e6 / in_place
        );
    }
}
