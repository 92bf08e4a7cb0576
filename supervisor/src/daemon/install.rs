//! The supervisor executes workers from its own root-owned copy of the
//! worker binary in `state_dir/bin`, so tenant uids never need access to the
//! build tree (which may sit under a 0700 home).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use anyhow::Context;

use crate::config::Config;

/// Copies the worker binary into `state_dir/bin/` (atomically, 0755) and
/// returns the path to execute.
pub fn worker_binary(cfg: &Config) -> anyhow::Result<PathBuf> {
    let source = match &cfg.worker_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("failed to locate the bulkhead executable")?
            .with_file_name("bulkhead-worker"),
    };
    let bin_dir = cfg.state_dir.join("bin");
    std::fs::create_dir_all(&bin_dir)?;
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755))?;
    let target = bin_dir.join("bulkhead-worker");
    let tmp = bin_dir.join(".bulkhead-worker.tmp");
    std::fs::copy(&source, &tmp).with_context(|| {
        format!(
            "failed to copy the worker binary {} (build the workspace, or set worker_bin)",
            source.display()
        )
    })?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&tmp, &target)?;
    Ok(target)
}
