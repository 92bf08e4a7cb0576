//! `tenant limits`: an admin changes a tenant's limits while it runs. The
//! router's call limits and the cgroup's memory, CPU and task limits change
//! at once, the frame budget within a second; the worker's rlimits
//! (`RLIMIT_NPROC`, `RLIMIT_DATA`), fixed when a process starts, follow at
//! its next start. A new retention reaches the worker at once, which then
//! deletes what is older.

use bulkhead_shared::ipc::message::ControlOp;
use bulkhead_shared::TenantId;

use super::Tenants;
use crate::daemon::AdminError;
use crate::limits::LimitOverrides;

/// How new overrides combine with the stored ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Keys given replace those stored; others stay (`tenant limits`).
    Merge,
    /// The given overrides are all there is (`apply` of a tenant file).
    Replace,
}

impl Tenants {
    /// Sets `id`'s limit overrides and applies them live; returns whether
    /// anything changed. Nothing is stored unless every limit applied.
    pub async fn set_limits(
        &self,
        id: &TenantId,
        given: LimitOverrides,
        how: Change,
    ) -> Result<bool, AdminError> {
        let (stored, running) = {
            let live = self.live.lock().expect("live lock");
            let l = live
                .get(id)
                .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
            (l.row.limits.clone(), l.pid.is_some())
        };
        let wanted = match how {
            Change::Merge => stored.merged(&given),
            Change::Replace => given,
        };
        if wanted == stored {
            return Ok(false);
        }
        let effective = wanted
            .over(&self.cfg.limits)
            .map_err(|e| AdminError::BadRequest(format!("tenant {id}: {e}")))?;
        let calls = effective
            .calls()
            .map_err(|e| AdminError::BadRequest(format!("tenant {id}: {e}")))?;
        if running {
            // Lowering memory below what the group uses now can fail: then
            // nothing changes and the admin hears why.
            self.cgroup_join(id.as_str(), &effective).map_err(|e| {
                AdminError::Failed(format!(
                    "tenant {id}: the new cgroup limits did not apply: {e}"
                ))
            })?;
        }
        self.registry
            .lock()
            .expect("registry lock")
            .set_limits(id, &wanted)
            .map_err(AdminError::from_registry)?;
        if let Some(l) = self.live.lock().expect("live lock").get_mut(id) {
            l.row.limits = wanted;
        }
        self.router.admission.set_limits(id, calls);
        tracing::info!(tenant = %id, limits = ?effective, "limits changed");
        let worker = self
            .live
            .lock()
            .expect("live lock")
            .get(id)
            .and_then(|l| l.worker.clone());
        if let Some(w) = worker {
            // Stored already: a worker that misses this gets it at its next start.
            w.control(ControlOp::SetRetention {
                days: effective.retention_days,
            })
            .await
            .map_err(|e| {
                AdminError::Failed(format!(
                    "tenant {id}: the worker did not take the new retention: {e}"
                ))
            })?;
        }
        Ok(true)
    }
}
