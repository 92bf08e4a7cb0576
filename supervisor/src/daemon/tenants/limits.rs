//! `tenant limits`: an admin changes a tenant's limits while it runs. The
//! router's call limits, the cgroup's memory, CPU and task limits and the
//! worker's own rlimits (`RLIMIT_NPROC`, `RLIMIT_DATA`, through `prlimit`)
//! change at once, the frame budget within a second. A new retention
//! reaches the worker at once, which then deletes what is older.

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
            (l.row.limits.clone(), l.pid)
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
        if let Some(pid) = running {
            // Lowering memory below what the group uses now can fail: then
            // nothing changes and the admin hears why.
            self.cgroup_join(id.as_str(), &effective).map_err(|e| {
                AdminError::Failed(format!(
                    "tenant {id}: the new cgroup limits did not apply: {e}"
                ))
            })?;
            self.follow_rlimits(id, pid, &effective)?;
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

    /// The running worker's rlimits to `limits`, when it has its own uid
    /// (only then were they set at its start). A worker that has just
    /// exited is not an error: its next start takes the stored limits.
    /// Without CAP_SYS_RESOURCE (a container that withholds it from root)
    /// no process may change another's rlimits: then they follow at the
    /// worker's next start, and the log says so.
    fn follow_rlimits(
        &self,
        id: &TenantId,
        pid: u32,
        limits: &crate::limits::Limits,
    ) -> Result<(), AdminError> {
        if !self
            .layers(crate::sandbox::Layers::ALL)
            .is_some_and(|l| l.credentials)
        {
            return Ok(());
        }
        let memory = limits
            .cgroup()
            .map_err(|e| AdminError::BadRequest(format!("tenant {id}: {e}")))?
            .memory_bytes;
        match crate::sandbox::set_worker_limits(pid, u64::from(limits.pids), memory) {
            Ok(()) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                tracing::warn!(
                    tenant = %id,
                    "the worker's own memory and task bounds (RLIMIT_DATA, RLIMIT_NPROC) keep their old values until it restarts: this supervisor lacks CAP_SYS_RESOURCE; `bulkhead tenant restart {id} --drain` applies them"
                );
                Ok(())
            }
            Err(e) => Err(AdminError::Failed(format!(
                "tenant {id}: the worker's rlimits did not change (pid {pid}): {e}"
            ))),
        }
    }
}
