//! The waits of a call's set-up and end, kept off the user agent's task.
//!
//! A new call's record must be on disk before it rings, and its end before
//! the BYE's 200; its media sockets come from the supervisor. Awaited on
//! the user agent's one task, each of these waits stopped every other call
//! of the tenant too, and the writer's group commit never grouped anything
//! (one durable write in flight at a time): one tenant topped out near 430
//! calls/s with both cores partly idle. Here each wait runs in a task of
//! its own and comes back as an event, so the user agent goes on with
//! other calls and concurrent commits share an fsync.
//!
//! While an INVITE waits it is a [`PendingInvite`]: it holds its router
//! slot, counts toward the routing limit, and a CANCEL marks it so the
//! INVITE ends 487 once its record is down.

use bulkhead_shared::time::now_rfc3339;

use super::dialog::{contact, dialog_ids, Call, Phase};
use super::{ids, Event, Incoming, Ua};
use crate::agent::turn;
use crate::sip::msg::{self, Reply, Scanned};
use crate::sip::rtp::RtpLease;
use crate::sip::sdp;
use crate::sip::session_timer::SessionTimer;
use crate::store::writer::Write;
use crate::store::{NewCall, Outcome};
use bulkhead_voice::agent::routing::{Opening, OverflowAction, Route};

/// An INVITE between its 100 and the commit of its record.
#[derive(Debug)]
pub(super) struct PendingInvite {
    pub inc: Incoming,
    pub raw: Vec<u8>,
    pub branch: String,
    pub record_id: String,
    pub to_tag: String,
    /// The payload type chosen from the offer (`None`: nothing we can do: 488).
    pub pt: Option<u8>,
    pub timer: Option<SessionTimer>,
    pub route: Route,
    /// A CANCEL came meanwhile.
    pub cancelled: bool,
}

impl PendingInvite {
    /// Whether the call will be answered (and so counts as active).
    pub fn wants_media(&self) -> bool {
        self.pt.is_some() && !is_busy(&self.route)
    }
}

fn is_busy(route: &Route) -> bool {
    matches!(
        route,
        Route::Overflow {
            action: OverflowAction::Busy,
            ..
        }
    )
}

/// What came back for a pending INVITE.
#[derive(Debug)]
pub struct Admission {
    call_id: String,
    recorded: Result<(), String>,
    /// Asked for only once the record is down and the call will be answered.
    media: Option<Result<RtpLease, String>>,
}

/// A call's end is on disk (or failed to be): the BYE that ended it gets its 200.
#[derive(Debug)]
pub struct ByeRecorded {
    call_id: String,
    inc: Incoming,
    ok: Vec<u8>,
    committed: Result<(), String>,
}

impl Ua {
    /// Records the new call and opens its media sockets in a task of their
    /// own; the answer comes back as [`Event::Admitted`].
    pub(super) async fn admit(&mut self, call_id: String, new_call: NewCall, p: PendingInvite) {
        let committed = self
            .store
            .write_committed(Write::InsertCall(new_call))
            .await;
        let wants_media = p.wants_media();
        let rtp = std::sync::Arc::clone(&self.cfg.rtp);
        let events = self.events.clone();
        self.pending.insert(call_id.clone(), p);
        tokio::spawn(async move {
            let recorded = committed.await;
            let media = match (&recorded, wants_media) {
                (Ok(()), true) => Some(rtp.open().await),
                _ => None,
            };
            let admission = Admission {
                call_id,
                recorded,
                media,
            };
            if let Err(lost) = events.send(Event::Admitted(admission)).await {
                // The user agent is gone (the worker is stopping): give the
                // sockets back rather than leak them.
                if let Event::Admitted(Admission {
                    media: Some(Ok(lease)),
                    ..
                }) = lost.0
                {
                    rtp.close(lease).await;
                }
            }
        });
    }

    /// The rest of an INVITE once its record is down: 487 if it was
    /// cancelled meanwhile, the routing's verdict, then ringing.
    pub(super) async fn on_admitted(&mut self, a: Admission) {
        let Some(p) = self.pending.remove(&a.call_id) else {
            return self.give_back(a.media).await;
        };
        self.slot_may_be_free(a.call_id.clone());
        let Ok(req) = msg::scan(&p.raw) else {
            // Scanned once already; cannot fail on the same bytes.
            return self.give_back(a.media).await;
        };
        if let Err(e) = a.recorded {
            tracing::error!(error = %e, "failed to record a call; answering 500");
            return self.reply(&p.inc, &req, 500, "Server Internal Error").await;
        }
        if p.cancelled {
            self.give_back(a.media).await;
            let r = Reply::to(&req, 487, "Request Terminated", Some(&p.to_tag)).finish();
            return self.end_unanswered(&p, 487, r, Outcome::Abandoned).await;
        }
        let Some(pt) = p.pt else {
            return self
                .reject_pending(&p, &req, 488, "Not Acceptable Here")
                .await;
        };
        let opening = Opening::for_route(&p.route, &self.cfg.agent.current().language);
        if is_busy(&p.route) {
            tracing::info!("refusing a call: the routing document's limit is reached");
            let note = opening.note.clone().unwrap_or_default();
            self.store
                .write(turn(&p.record_id, "system", note, 0, None))
                .await;
            return self.reject_pending(&p, &req, 486, "Busy Here").await;
        }
        let lease = match a.media {
            Some(Ok(lease)) => lease,
            Some(Err(reason)) => {
                tracing::info!(%reason, "refusing a call: no RTP sockets");
                return self.reject_pending(&p, &req, 486, "Busy Here").await;
            }
            None => {
                return self
                    .reject_pending(&p, &req, 500, "Server Internal Error")
                    .await
            }
        };
        let session_id = u64::from(ids::u32());
        let session = sdp::Session {
            id: session_id,
            version: session_id,
            port: lease.port,
            pt,
            dtmf: sdp::telephone_event(req.body),
            direction: sdp::direction(req.body).answer(),
        };
        let dialog = dialog_ids(&req, &a.call_id, &p.to_tag);
        let ringing = Reply::to(&req, 180, "Ringing", Some(&p.to_tag))
            .header("Contact", &contact(&self.cfg, &p.inc.origin, &dialog.local))
            .finish();
        self.respond(&p.inc, 180, ringing).await;
        let remote_cseq = req.cseq().map_or(0, |(n, _)| n);
        let call = Call {
            record_id: p.record_id,
            origin: p.inc.origin.clone(),
            dest: p.inc.dest,
            invite: p.raw,
            invite_key: p.inc.key.clone(),
            invite_branch: p.branch,
            to_tag: p.to_tag,
            phase: Phase::Ringing,
            dialog,
            remote_cseq,
            local_cseq: ids::u32() >> 16,
            session,
            pending_2xx: None,
            answered_at: None,
            timer: p.timer,
            timer_generation: 0,
            timer_task: None,
            media: Some(lease),
            agent: None,
            leg: None,
            escalated_to: None,
            opening: Some(opening),
            refer: None,
        };
        let call_id = a.call_id;
        let replaced = self.calls.insert(call_id.clone(), call);
        debug_assert!(replaced.is_none(), "a Call-ID admitted twice");
        self.live_calls += 1;
        if self.cfg.answer_delay.is_zero() {
            self.answer(&call_id).await;
        } else {
            let ev = Event::Answer { call_id };
            self.schedule(ev, self.cfg.answer_delay);
        }
    }

    /// CANCEL of an INVITE whose record is still being written: 200 now,
    /// the INVITE's 487 once the record is down. `None` if no such INVITE.
    pub(super) fn cancel_pending(
        &mut self,
        call_id: &str,
        branch: &str,
        from: &Incoming,
    ) -> Option<String> {
        let p = self.pending.get_mut(call_id).filter(|p| {
            p.branch == branch && p.inc.origin.peer().ip() == from.origin.peer().ip()
        })?;
        p.cancelled = true;
        Some(p.to_tag.clone())
    }

    /// A final error to a pending INVITE, the call recorded as rejected.
    async fn reject_pending(
        &mut self,
        p: &PendingInvite,
        req: &Scanned<'_>,
        code: u16,
        reason: &str,
    ) {
        let r = Reply::to(req, code, reason, Some(&p.to_tag)).finish();
        self.end_unanswered(p, code, r, Outcome::Rejected).await;
    }

    /// Sends an unanswered call's final response (its INVITE transaction
    /// repeats it and waits for the ACK) and records how it ended. The
    /// caller learns nothing from the record's commit, so nothing waits
    /// for it.
    async fn end_unanswered(&mut self, p: &PendingInvite, code: u16, r: Vec<u8>, outcome: Outcome) {
        self.settle().await;
        self.respond(&p.inc, code, r).await;
        let ended = Write::Ended {
            id: p.record_id.clone(),
            at: now_rfc3339(),
            outcome,
            duration_ms: 0,
        };
        self.store.write(ended).await;
    }

    async fn give_back(&mut self, media: Option<Result<RtpLease, String>>) {
        if let Some(Ok(lease)) = media {
            self.cfg.rtp.close(lease).await;
        }
    }

    /// Ends an answered call on the caller's BYE: the end is queued for the
    /// disk now, and [`Event::ByeRecorded`] sends the 200 once it is
    /// committed. Until then the call keeps its router slot, so a drain
    /// does not stop the worker between the two.
    pub(super) async fn bye_after_commit(&mut self, inc: Incoming, ok: Vec<u8>, call_id: &str) {
        let Some(committed) = self.end_call(call_id, Outcome::Completed).await else {
            return self.respond(&inc, 200, ok).await;
        };
        self.ending.insert(call_id.to_owned());
        let events = self.events.clone();
        let call_id = call_id.to_owned();
        tokio::spawn(async move {
            let committed = committed.await;
            let b = ByeRecorded {
                call_id,
                inc,
                ok,
                committed,
            };
            let _ = events.send(Event::ByeRecorded(b)).await;
        });
    }

    /// The router's slot is free before the caller hears the end (a caller
    /// who calls straight back is not refused by the concurrent-call limit).
    pub(super) async fn on_bye_recorded(&mut self, b: ByeRecorded) {
        if let Err(e) = b.committed {
            tracing::error!(error = %e, "failed to record the end of a call");
        }
        self.ending.remove(&b.call_id);
        self.slot_may_be_free(b.call_id.clone());
        self.settle().await;
        self.respond(&b.inc, 200, b.ok).await;
    }
}
