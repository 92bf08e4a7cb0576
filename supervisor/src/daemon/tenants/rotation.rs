//! Master key rotation (`bulkhead master-key rotate`): every wrapped tenant
//! key, live and retired, is re-wrapped under a fresh master key; tenant
//! data is not touched. Crash-safe in three durable steps:
//!
//! 1. the new key is written to `master.key.next` (fsync);
//! 2. the registry's wrapped keys are replaced in one transaction;
//! 3. `master.key.next` is renamed over `master.key` (fsync of the dir).
//!
//! A crash leaves either no `.next` (nothing happened, or all did) or a
//! `.next` that [`recover`] resolves at the next start by asking which key
//! opens the registry's wrapped keys: the new one (step 2 committed: finish
//! step 3) or the old one (it did not: drop `.next`).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Tenants;
use crate::daemon::AdminError;
use crate::keystore::{sync_dir, Keystore};
use crate::master_key::Source;
use crate::registry::{Registry, WrappedKey};

/// `master-key rotate --json`.
#[derive(Debug, Serialize)]
pub struct Rotated {
    /// Wrapped keys re-wrapped (tenants and retired keys).
    pub rewrapped: usize,
    pub master_key: String,
}

fn next_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".next");
    path.with_file_name(name)
}

/// A test-only crash point: `BULKHEAD_CRASH_AT=<name>` aborts there.
fn crash_point(name: &str) {
    if std::env::var("BULKHEAD_CRASH_AT").is_ok_and(|at| at == name) {
        eprintln!("bulkhead: crashing at {name} (BULKHEAD_CRASH_AT)");
        std::process::abort();
    }
}

impl Tenants {
    pub async fn rotate_master_key(&self) -> Result<Rotated, AdminError> {
        let Source::File(path) = &self.cfg.master_key else {
            return Err(AdminError::BadRequest(format!(
                "the master key comes from {:?}: rotate it there (the registry keeps keys wrapped under it)",
                self.cfg.master_key
            )));
        };
        // No tenant is added (wrapping a key under the old master) meanwhile.
        let _no_adds = self.adding.lock().await;
        let next = next_path(path);
        let fresh = Keystore::fresh().map_err(|e| AdminError::Failed(e.to_string()))?;
        fresh.write_new(&next).map_err(|e| {
            AdminError::Failed(format!(
                "{e} (a rotation interrupted earlier? restart the supervisor)"
            ))
        })?;
        crash_point("master-rotate-written");
        let mut registry = self.registry.lock().expect("registry lock");
        // Held until the swap: no worker start unwraps in between.
        let mut keystore = self.keystore.write().expect("keystore lock");
        let rows = registry.wrapped_keys().map_err(AdminError::from_registry)?;
        let mut rewrapped = Vec::with_capacity(rows.len());
        for k in &rows {
            match keystore.rewrap(&k.tenant, &k.wrapped, &fresh) {
                Ok(wrapped) => rewrapped.push(WrappedKey {
                    wrapped,
                    ..k.clone()
                }),
                Err(e) => {
                    let _ = std::fs::remove_file(&next);
                    return Err(AdminError::Failed(format!(
                        "nothing changed: {e} (in {})",
                        k.table
                    )));
                }
            }
        }
        if let Err(e) = registry.replace_wrapped_keys(&rewrapped) {
            let _ = std::fs::remove_file(&next);
            return Err(AdminError::from_registry(e));
        }
        crash_point("master-rotate-rewrapped");
        std::fs::rename(&next, path)
            .and_then(|()| sync_dir(path))
            .map_err(|e| {
                AdminError::Failed(format!(
                    "the keys are re-wrapped but {} could not replace {}: {e}; restart the supervisor to finish",
                    next.display(),
                    path.display()
                ))
            })?;
        *keystore = fresh;
        // The live rows follow (a backup unwraps the key it names from them).
        let mut live = self.live.lock().expect("live lock");
        for k in rewrapped.iter().filter(|k| k.table == "tenants") {
            if let Some(l) = live.get_mut(&k.tenant) {
                l.row.wrapped_key = k.wrapped.clone();
            }
        }
        drop(live);
        tracing::info!(rewrapped = rows.len(), "master key rotated");
        Ok(Rotated {
            rewrapped: rows.len(),
            master_key: path.display().to_string(),
        })
    }
}

/// At start-up, before any tenant key is unwrapped: finishes or undoes a
/// rotation that a crash interrupted. Returns what it did, if anything.
pub fn recover(path: &Path, registry: &Registry) -> anyhow::Result<Option<&'static str>> {
    let next = next_path(path);
    if !next.exists() {
        return Ok(None);
    }
    let old = Keystore::open_or_create(path)?;
    let new = Keystore::open_or_create(&next)?;
    let rows = registry.wrapped_keys()?;
    let opens = |ks: &Keystore| {
        rows.iter()
            .all(|k| ks.unwrap(&k.tenant, &k.wrapped).is_ok())
    };
    if !rows.is_empty() && opens(&new) {
        std::fs::rename(&next, path)?;
        sync_dir(path)?;
        return Ok(Some("finished an interrupted master key rotation"));
    }
    if !rows.is_empty() && !opens(&old) {
        anyhow::bail!(
            "neither {} nor {} opens every wrapped key in the registry; restore the master key from a backup",
            path.display(),
            next.display()
        );
    }
    std::fs::remove_file(&next)?;
    Ok(Some("undid an interrupted master key rotation"))
}
