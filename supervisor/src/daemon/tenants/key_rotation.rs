//! `tenant rotate-key`: the tenant's store re-encrypted under a fresh data
//! key while the tenant serves. Crash-safe in three durable steps:
//!
//! 1. the new key, wrapped, is recorded as pending in the registry;
//! 2. the worker copies its store under the new key and swaps the copy in
//!    atomically (`tenant-worker/src/store/rekey.rs`);
//! 3. the registry makes the pending key the tenant's (`key_version` + 1).
//!
//! A crash of either process between 1 and 3 leaves the pending row. The
//! next worker start gets both keys, opens the store with whichever works
//! and says which; [`Tenants::settle_rotation`] then finishes step 3 or drops
//! the pending key. So the store is always under a key the registry holds,
//! and the registry knows which one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_shared::ipc::message::{ControlOp, SecretKey, StoreKey};
use bulkhead_shared::TenantId;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use super::Tenants;
use crate::daemon::AdminError;

/// How long a worker may take to copy its store under the new key: about
/// 15 s per GB measured here (BENCHMARKS.md), so some 100 GB, with room
/// for slower disks.
const REKEY_TIMEOUT: Duration = Duration::from_secs(1800);

/// `tenant rotate-key --json`.
#[derive(Debug, Serialize)]
pub struct KeyRotated {
    pub tenant: TenantId,
    pub key_version: u32,
    /// Size of the store that was re-encrypted.
    pub store_bytes: u64,
    pub seconds: f64,
    /// `retired` (kept wrapped: older backups still restore) or `forgotten`.
    pub old_keys: &'static str,
}

/// A test-only crash point: `BULKHEAD_CRASH_AT=<name>` aborts there.
fn crash_point(name: &str) {
    if std::env::var("BULKHEAD_CRASH_AT").is_ok_and(|at| at == name) {
        eprintln!("bulkhead: crashing at {name} (BULKHEAD_CRASH_AT)");
        std::process::abort();
    }
}

impl Tenants {
    pub async fn rotate_key(
        self: &Arc<Self>,
        id: &TenantId,
        forget_old: bool,
    ) -> Result<KeyRotated, AdminError> {
        // One key operation at a time: a backup must name the key its
        // copy is under.
        let _key_ops = self.key_ops.lock().await;
        let worker = self.running_worker(id)?;
        let key = {
            // Registry, then keystore: the order master key rotation takes
            // them in, so the new key is never wrapped under a master key
            // that is being replaced.
            let mut registry = self.registry.lock().expect("registry lock");
            if registry
                .pending_key_of(id)
                .map_err(AdminError::from_registry)?
                .is_some()
            {
                return Err(AdminError::Conflict(format!(
                    "a key rotation of tenant {id} is not settled yet; restart the tenant to settle it"
                )));
            }
            let keystore = self.keystore.read().expect("keystore lock");
            let (key, wrapped) = keystore
                .new_data_key(id)
                .map_err(|e| AdminError::Failed(e.to_string()))?;
            registry
                .begin_rotation(id, &wrapped, forget_old)
                .map_err(AdminError::from_registry)?;
            key
        };
        crash_point("rotate-key-pending");
        let started = Instant::now();
        let op = ControlOp::RekeyStore {
            key: SecretKey(*key),
        };
        drop(key);
        match worker.exchange(op, &[], REKEY_TIMEOUT).await {
            Ok(Ok(_)) => {}
            Ok(Err(refused)) => {
                // The worker answered before its swap: the store is unchanged.
                self.settle_rotation(id, StoreKey::Current)?;
                return Err(AdminError::Failed(format!(
                    "tenant {id}: key rotation failed, nothing changed: {refused}"
                )));
            }
            Err(lost) => {
                // No answer: the worker may be anywhere in its copy. It is
                // restarted, and its start settles the rotation by which key
                // opens the store.
                self.kill_for_settling(id, &worker);
                return Err(AdminError::Failed(format!(
                    "tenant {id}: key rotation interrupted ({lost}); the worker restarts and the registry follows whichever key opens its store: see key_version in tenant show"
                )));
            }
        }
        crash_point("rotate-key-swapped");
        let key_version = self.settle_rotation(id, StoreKey::Pending)?;
        let seconds = started.elapsed().as_secs_f64();
        let store_bytes = std::fs::metadata(
            self.data_dir(id)
                .join(bulkhead_shared::ipc::message::STORE_FILE),
        )
        .map_or(0, |m| m.len());
        tracing::info!(tenant = %id, key_version, store_bytes, seconds, "tenant data key rotated");
        Ok(KeyRotated {
            tenant: id.clone(),
            key_version,
            store_bytes,
            seconds,
            old_keys: if forget_old { "forgotten" } else { "retired" },
        })
    }

    /// Ends a rotation by which key opens the store: the pending one
    /// becomes the tenant's key, or is dropped. Returns the key version now.
    /// Idempotent: a rotation already settled is left as it is.
    pub(super) fn settle_rotation(
        &self,
        id: &TenantId,
        opened_with: StoreKey,
    ) -> Result<u32, AdminError> {
        let mut registry = self.registry.lock().expect("registry lock");
        match opened_with {
            StoreKey::Pending => {
                if registry
                    .finish_rotation(id)
                    .map_err(AdminError::from_registry)?
                    .is_some()
                {
                    tracing::info!(tenant = %id, "the store is under the new key; the registry now holds it");
                }
            }
            StoreKey::Current => {
                if registry
                    .abandon_rotation(id)
                    .map_err(AdminError::from_registry)?
                {
                    tracing::warn!(tenant = %id, "a key rotation did not reach the store; its key was dropped");
                }
            }
        }
        let (version, wrapped) = registry
            .key_of(id)
            .map_err(AdminError::from_registry)?
            .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
        drop(registry);
        if let Some(l) = self.live.lock().expect("live lock").get_mut(id) {
            l.row.key_version = version;
            l.row.wrapped_key = wrapped;
        }
        Ok(version)
    }

    /// Kills the worker that was asked to rekey, if it still runs, so that
    /// its restart settles the rotation.
    fn kill_for_settling(&self, id: &TenantId, worker: &Arc<crate::daemon::worker::WorkerLink>) {
        let mut live = self.live.lock().expect("live lock");
        let Some(l) = live.get_mut(id) else { return };
        let same = l.worker.as_ref().is_some_and(|w| Arc::ptr_eq(w, worker));
        if let (true, Some(pid)) = (same, l.pid) {
            l.kill_reason =
                Some("did not finish a key rotation in time; restarted to settle it".into());
            tracing::warn!(tenant = %id, pid, "killing the worker to settle an unanswered key rotation");
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}
