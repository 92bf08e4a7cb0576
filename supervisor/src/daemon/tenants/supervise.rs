//! Keeping workers alive: restart with backoff after a death, heartbeats
//! that catch a hung worker, admin restarts, stopping, and clearing up
//! processes a dead supervisor left behind.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_shared::ipc::message::ControlOp;
use bulkhead_shared::TenantId;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{State, Tenants, HEARTBEAT_EVERY};
use crate::api::TenantView;
use crate::daemon::worker::WorkerLink;
use crate::daemon::AdminError;

impl Tenants {
    /// A worker exited. Expected (stopped by us): done. Unexpected: restart
    /// it after the policy's backoff, or mark the tenant failed when it
    /// restarts too often (`tenant reset` clears that).
    pub(super) fn on_exit(self: &Arc<Self>, id: &TenantId, pid: u32, reason: String) {
        let delay = {
            let mut live = self.live.lock().expect("live lock");
            let Some(l) = live.get_mut(id) else { return };
            if l.pid != Some(pid) {
                return;
            }
            self.router.set_worker(id, None);
            l.worker = None;
            l.pid = None;
            l.started = None;
            if l.state != State::Running {
                l.state = State::Stopped;
                return;
            }
            let reason = match l.kill_reason.take() {
                Some(why) => format!("{why}; {reason}"),
                None => reason,
            };
            l.last_failure = Some(reason.clone());
            l.died_at = Some(Instant::now());
            match l.history.on_exit(Instant::now()) {
                crate::daemon::restart::Decision::RestartAfter(delay) => {
                    tracing::warn!(tenant = %id, %reason, ?delay, "worker exited; restarting (calls get 503 meanwhile)");
                    l.state = State::Restarting;
                    l.restarts += 1;
                    delay
                }
                crate::daemon::restart::Decision::GiveUp => {
                    let why = format!(
                        "restarted more than {} times in {:?}; last exit: {reason} (bulkhead tenant reset {id})",
                        crate::daemon::restart::MAX_RESTARTS,
                        crate::daemon::restart::WINDOW
                    );
                    tracing::error!(tenant = %id, %why, "giving up on the worker");
                    l.state = State::Failed;
                    l.last_failure = Some(why);
                    return;
                }
            }
        };
        let (me, id) = (self.clone(), id.clone());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let still_wanted = me
                .live
                .lock()
                .expect("live lock")
                .get(&id)
                .is_some_and(|l| l.state == State::Restarting);
            if still_wanted {
                if let Err(e) = me.start_worker(&id).await {
                    tracing::error!(tenant = %id, error = %e, "restart failed");
                }
            }
        });
    }

    /// Pings the worker every [`HEARTBEAT_EVERY`]; one that does not answer
    /// within the control timeout (5 s, generous on a loaded machine) is hung: it is killed, and the exit path
    /// restarts it like any other death.
    pub(super) fn watch_liveness(
        self: &Arc<Self>,
        id: &TenantId,
        pid: u32,
        worker: Arc<WorkerLink>,
    ) {
        let (me, id) = (self.clone(), id.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                let current = me
                    .live
                    .lock()
                    .expect("live lock")
                    .get(&id)
                    .and_then(|l| l.pid);
                if current != Some(pid) {
                    return; // replaced, stopped or removed
                }
                // `control` gives up after CONTROL_TIMEOUT without an answer.
                if worker.control(ControlOp::Ping).await.is_ok() {
                    continue;
                }
                let still = {
                    let mut live = me.live.lock().expect("live lock");
                    match live.get_mut(&id) {
                        Some(l) if l.pid == Some(pid) => {
                            let waited = crate::daemon::worker::CONTROL_TIMEOUT;
                            l.kill_reason = Some(format!(
                                "missed a heartbeat ({waited:?} without an answer); killed as hung"
                            ));
                            true
                        }
                        _ => false,
                    }
                };
                if still {
                    tracing::warn!(tenant = %id, pid, "worker missed a heartbeat; killing it");
                    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                }
                return;
            }
        });
    }

    /// `tenant restart`: stop the worker and start it again.
    pub async fn restart(self: &Arc<Self>, id: &TenantId) -> Result<TenantView, AdminError> {
        if !self.live.lock().expect("live lock").contains_key(id) {
            return Err(AdminError::NotFound(format!("no tenant {id}")));
        }
        self.stop_worker(id).await;
        self.start_worker(id)
            .await
            .map_err(|e| AdminError::Failed(format!("tenant {id} did not restart: {e}")))?;
        self.view(id)
    }

    /// `tenant reset`: forget the restart history of a failed tenant and start it.
    pub async fn reset(self: &Arc<Self>, id: &TenantId) -> Result<TenantView, AdminError> {
        {
            let mut live = self.live.lock().expect("live lock");
            let l = live
                .get_mut(id)
                .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
            if matches!(
                l.state,
                State::Running | State::Starting | State::Restarting | State::Draining
            ) {
                return Err(AdminError::Conflict(format!(
                    "tenant {id} is {}, not failed",
                    l.state.as_str()
                )));
            }
            l.history.reset();
            l.last_failure = None;
        }
        self.start_worker(id)
            .await
            .map_err(|e| AdminError::Failed(format!("tenant {id} did not start: {e}")))?;
        self.view(id)
    }

    /// Stops the worker (SIGTERM, then SIGKILL) and waits for it to exit.
    pub(super) async fn stop_worker(&self, id: &TenantId) {
        self.stop_workers(std::slice::from_ref(id)).await;
    }

    /// Stops the workers of `ids` at once: every one is sent SIGTERM first,
    /// then each is waited for against one shared deadline and killed past
    /// it. One at a time, each stop took at least one 20 ms poll: 1.1 s
    /// for 50 idle tenants, so about 22 s for 1,000.
    pub(super) async fn stop_workers(&self, ids: &[TenantId]) {
        let signalled: Vec<(&TenantId, Pid)> = ids
            .iter()
            .filter_map(|id| Some((id, self.signal_stop(id)?)))
            .collect();
        let deadline = Instant::now() + STOP_GRACE;
        for (id, pid) in signalled {
            if !self.exited_by(id, pid, deadline).await {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    /// Marks `id` stopped, takes it off the router and sends its worker
    /// SIGTERM; `None` when it has no worker.
    fn signal_stop(&self, id: &TenantId) -> Option<Pid> {
        let pid = {
            let mut live = self.live.lock().expect("live lock");
            let l = live.get_mut(id)?;
            l.state = State::Stopped;
            self.router.set_worker(id, None);
            l.pid?
        };
        let pid = Pid::from_raw(pid as i32);
        let _ = kill(pid, Signal::SIGTERM);
        Some(pid)
    }

    /// Whether `id`'s worker `pid` is gone (or its exit was handled) by
    /// `deadline`.
    async fn exited_by(&self, id: &TenantId, pid: Pid, deadline: Instant) -> bool {
        loop {
            let handled = || {
                self.live
                    .lock()
                    .expect("live lock")
                    .get(id)
                    .is_none_or(|l| l.pid.is_none())
            };
            if kill(pid, None).is_err() || handled() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(STOP_POLL).await;
        }
    }

    /// Kills processes a previous supervisor left in the tenant's cgroup
    /// (it died before they did): they would hold the tenant's ports and
    /// store. Workers normally die with the supervisor (parent-death
    /// signal); this is the check at start-up for when they did not.
    pub(super) async fn kill_leftovers(&self, id: &TenantId) {
        let Some(cg) = &self.cgroups else { return };
        let left = cg.procs(id.as_str());
        if left.is_empty() {
            return;
        }
        tracing::warn!(tenant = %id, pids = ?left, "killing processes a previous supervisor left behind");
        for pid in &left {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        for _ in 0..200 {
            if cg.procs(id.as_str()).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tracing::error!(tenant = %id, "leftover processes survived SIGKILL for 2 s");
    }
}

/// How long a worker has to exit after SIGTERM (its store's last commit and
/// close) before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// How often a stopping worker is looked for.
const STOP_POLL: Duration = Duration::from_millis(5);
