//! `ControlOp::Backup`: a consistent copy of the tenant's store, still
//! encrypted under its key, appended to the file the supervisor opened and
//! passed along. The copy is made in the tenant's own data directory (the
//! only place the sandbox lets the worker write), streamed into the file
//! with plain reads and writes, and deleted.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use crate::store::writer::Store;

/// Exports into `data_dir`, then appends the copy to `out`; returns bytes.
pub async fn write_to(store: &Store, data_dir: &Path, mut out: File) -> Result<u64, String> {
    let tmp = data_dir.join("backup.tmp");
    // A copy left by a crash mid-backup is stale.
    let _ = std::fs::remove_file(&tmp);
    store
        .export(tmp.clone())
        .await
        .map_err(|e| format!("export failed: {e}"))?;
    let copied = tokio::task::spawn_blocking(move || {
        let result = copy(&tmp, &mut out).and_then(|n| out.sync_all().map(|()| n));
        let _ = std::fs::remove_file(&tmp);
        result
    })
    .await
    .map_err(|e| format!("copy task failed: {e}"))?;
    copied.map_err(|e| format!("writing the backup failed: {e}"))
}

/// read/write in 64 KiB pieces: no copy_file_range or sendfile, which the
/// worker's seccomp filter does not allow.
fn copy(from: &Path, to: &mut File) -> std::io::Result<u64> {
    let mut src = File::open(from)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}
