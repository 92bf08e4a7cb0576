//! Draining: new calls are refused (503 + Retry-After, by the router) while
//! calls in progress finish, up to `drain_timeout`. Used for one tenant by
//! `tenant restart --drain`, and for all of them on SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_shared::TenantId;
use tokio::sync::watch;

use super::{State, Tenants};
use crate::api::TenantView;
use crate::daemon::{AdminError, Shutdown};

/// How often a drain looks at the calls in progress.
const POLL: Duration = Duration::from_millis(20);

/// How a drain ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub waited: Duration,
    /// Calls still up when the drain stopped waiting (timeout or hurry).
    pub cut: usize,
}

impl Tenants {
    /// `tenant restart --drain`: drain, then stop the worker and start it.
    pub async fn restart_drained(
        self: &Arc<Self>,
        id: &TenantId,
    ) -> Result<TenantView, AdminError> {
        self.set_draining(id)?;
        let drained = self.wait_for_calls(Some(id), None).await;
        tracing::info!(tenant = %id, waited = ?drained.waited, cut = drained.cut, "drained; restarting");
        let restarted = self.restart(id).await;
        self.router.admission.set_draining(id, false);
        restarted
    }

    /// SIGTERM: refuse every new call, wait for calls in progress (until
    /// the timeout, or until `hurry` says [`Shutdown::Now`]).
    pub async fn drain_all(&self, hurry: watch::Receiver<Shutdown>) -> Drained {
        self.router.admission.drain_all();
        for l in self.live.lock().expect("live lock").values_mut() {
            if l.state == State::Running {
                l.state = State::Draining;
            }
        }
        self.wait_for_calls(None, Some(hurry)).await
    }

    fn set_draining(&self, id: &TenantId) -> Result<(), AdminError> {
        let mut live = self.live.lock().expect("live lock");
        let l = live
            .get_mut(id)
            .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
        if l.state == State::Running {
            l.state = State::Draining;
        }
        self.router.admission.set_draining(id, true);
        Ok(())
    }

    async fn wait_for_calls(
        &self,
        id: Option<&TenantId>,
        mut hurry: Option<watch::Receiver<Shutdown>>,
    ) -> Drained {
        let start = Instant::now();
        let deadline = start + self.cfg.drain_timeout;
        loop {
            let up = self.router.admission.active(id);
            let hurried = hurry.as_ref().is_some_and(|h| *h.borrow() == Shutdown::Now);
            if up == 0 || hurried || Instant::now() >= deadline {
                return Drained {
                    waited: start.elapsed(),
                    cut: up,
                };
            }
            match hurry.as_mut() {
                Some(h) => {
                    tokio::select! {
                        _ = tokio::time::sleep(POLL) => {}
                        _ = h.changed() => {}
                    }
                }
                None => tokio::time::sleep(POLL).await,
            }
        }
    }
}
