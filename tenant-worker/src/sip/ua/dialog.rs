//! A call's dialog once the INVITE arrived: the ACK, BYE either way,
//! re-INVITE and UPDATE (hold, resume, session refresh), the 2xx
//! retransmission, the session timer, and the record of how the call ended.

use std::net::SocketAddr;
use std::time::Duration;

use bulkhead_shared::time::now_rfc3339;
use tokio::time::Instant;

use super::{requests, Event, Incoming, Purpose, Ua, UaConfig};
use crate::agent::AgentHandle;
use crate::sip::msg::{self, Reply, Scanned};
use crate::sip::policy;
use crate::sip::rtp::RtpLease;
use crate::sip::sdp;
use crate::sip::session_timer::{Refresher, SessionTimer, TooSmall, MIN_SE};
use crate::sip::transport::Origin;
use crate::sip::txn::{ServerKey, SIXTY_FOUR_T1, T1, T2};
use crate::store::writer::Write;
use crate::store::Outcome;
use bulkhead_voice::agent::routing::Opening;

/// How often an answered call without a session timer is probed.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Ringing,
    Answered,
    Ended,
}

/// What our own requests in the dialog need (RFC 3261 §12.1.1).
#[derive(Debug, Clone)]
pub(super) struct DialogIds {
    pub call_id: String,
    /// Our From: the INVITE's To with our tag.
    pub local: String,
    /// Our To: the INVITE's From.
    pub remote: String,
    /// The caller's Contact URI (else its From URI).
    pub remote_target: String,
    /// The INVITE's Record-Route values, in order.
    pub route_set: Vec<String>,
}

/// A 2xx to an INVITE, resent until its ACK comes.
#[derive(Debug)]
pub(super) struct Pending2xx {
    pub cseq: u32,
    pub response: Vec<u8>,
    pub since: Instant,
}

#[derive(Debug)]
pub(super) struct Call {
    pub record_id: String,
    pub origin: Origin,
    pub dest: SocketAddr,
    /// The initial INVITE, its transaction and branch (for CANCEL).
    pub invite: Vec<u8>,
    pub invite_key: Option<ServerKey>,
    pub invite_branch: String,
    pub to_tag: String,
    pub phase: Phase,
    pub dialog: DialogIds,
    /// The highest CSeq the caller used; lower ones are out of order.
    pub remote_cseq: u32,
    pub local_cseq: u32,
    pub session: sdp::Session,
    pub pending_2xx: Option<Pending2xx>,
    pub answered_at: Option<Instant>,
    pub timer: Option<SessionTimer>,
    /// Raised at each (re)arming; a due event of another generation is stale.
    pub timer_generation: u64,
    /// The armed session timer or probe: stopped when the call ends, so a
    /// call over holds no task until a deadline up to half an hour away.
    pub timer_task: Option<tokio::task::AbortHandle>,
    /// The call's RTP/RTCP sockets, held from the INVITE to the end.
    pub media: Option<RtpLease>,
    /// The voice agent on the call; dropping it stops the agent.
    pub agent: Option<AgentHandle>,
    /// The call to the human while a transfer is up (its Call-ID).
    pub leg: Option<String>,
    /// The escalation target that answered.
    pub escalated_to: Option<String>,
    /// How the agent opens the call (routing: hours, overflow); taken when it starts.
    pub opening: Option<Opening>,
    /// A blind transfer asked of the caller's side, until it settles.
    pub refer: Option<super::refer::PendingRefer>,
}

impl Call {
    pub fn is_over(&self) -> bool {
        self.phase == Phase::Ended
    }
}

impl Ua {
    /// An ACK for a 2xx: the dialog is confirmed, the 2xx stops (and an
    /// ACK carrying SDP answers the offer our 2xx made).
    pub(super) fn on_ack(&mut self, req: &Scanned<'_>, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let cseq = req.cseq().map_or(0, |(n, _)| n);
        if call.pending_2xx.as_ref().is_some_and(|p| p.cseq == cseq) {
            call.pending_2xx = None;
        }
    }

    /// The dialog an in-dialog request belongs to, checked: our To tag,
    /// and a CSeq not below the last one (RFC 3261 §12.2.2). On failure,
    /// the answer has been sent and `None` comes back.
    pub(super) async fn dialog_of(
        &mut self,
        inc: &Incoming,
        req: &Scanned<'_>,
        call_id: &str,
    ) -> Option<()> {
        let to_tag = req.header("To").and_then(Scanned::tag_of);
        let cseq = req.cseq().map_or(0, |(n, _)| n);
        let call = self
            .calls
            .get_mut(call_id)
            .filter(|c| to_tag == Some(c.to_tag.as_str()) && !c.is_over());
        let Some(call) = call else {
            self.reply(inc, req, 481, "Call/Transaction Does Not Exist")
                .await;
            return None;
        };
        if cseq < call.remote_cseq {
            self.reply(inc, req, 500, "CSeq Out Of Order").await;
            return None;
        }
        call.remote_cseq = cseq;
        Some(())
    }

    pub(super) async fn on_bye(&mut self, inc: Incoming, req: &Scanned<'_>, call_id: &str) {
        if self.dialog_of(&inc, req, call_id).await.is_none() {
            return;
        }
        let call = self.calls.get_mut(call_id).expect("checked above");
        let ok = Reply::to(req, 200, "OK", Some(&call.to_tag)).finish();
        if call.phase == Phase::Ringing {
            // The caller gave up on an early dialog: the INVITE ends 487.
            self.respond(&inc, 200, ok).await;
            return self.terminate_invite(call_id, Outcome::Abandoned).await;
        }
        // The caller's 200 means the record is final and on disk, and the
        // router's slot is free before the caller hears the end.
        self.bye_after_commit(inc, ok, call_id).await;
    }

    /// UPDATE (RFC 3311): a session refresh, or a new offer, in the dialog.
    pub(super) async fn on_update(&mut self, inc: Incoming, req: &Scanned<'_>, call_id: &str) {
        self.modify_session(inc, req, call_id, false).await;
    }

    /// A re-INVITE: hold, resume, a new codec, or a session refresh.
    pub(super) async fn on_reinvite(&mut self, inc: Incoming, req: &Scanned<'_>, call_id: &str) {
        self.modify_session(inc, req, call_id, true).await;
    }

    async fn modify_session(
        &mut self,
        inc: Incoming,
        req: &Scanned<'_>,
        call_id: &str,
        invite: bool,
    ) {
        if self.dialog_of(&inc, req, call_id).await.is_none() {
            return;
        }
        if let Err(refused) = policy::check_body(req) {
            return self.refuse(&inc, req, refused).await;
        }
        let timer = match SessionTimer::negotiate(req) {
            Ok(t) => t,
            Err(TooSmall) => return self.too_small(&inc, req).await,
        };
        let call = self.calls.get_mut(call_id).expect("checked by dialog_of");
        if call.phase != Phase::Answered {
            // No offer may cross the one our 2xx has not yet settled.
            let r = Reply::to(req, 491, "Request Pending", Some(&call.to_tag)).finish();
            return self.respond(&inc, 491, r).await;
        }
        let mut body = None;
        if !req.body.is_empty() {
            let Some(pt) = sdp::choose_codec(req.body) else {
                // The old session stays as it was (RFC 3261 §14.2).
                let r = Reply::to(req, 488, "Not Acceptable Here", Some(&call.to_tag)).finish();
                return self.respond(&inc, 488, r).await;
            };
            let direction = sdp::direction(req.body).answer();
            call.session = call.session.answering(pt, direction);
            if let Some(agent) = &call.agent {
                let sending = matches!(
                    direction,
                    sdp::Direction::SendRecv | sdp::Direction::SendOnly
                );
                let law = bulkhead_voice::media::g711::Law::from_payload_type(pt);
                agent.renegotiated(sdp::remote_media(req.body), law, sending);
            }
            tracing::info!(%call_id, ?direction, "session modified");
            body = Some(call.session.describe(self.cfg.advertise));
        } else if invite {
            // An offerless re-INVITE: our 2xx offers the current session.
            body = Some(call.session.describe(self.cfg.advertise));
        }
        call.timer = timer;
        let mut r = Reply::to(req, 200, "OK", Some(&call.to_tag))
            .header(
                "Contact",
                &contact(&self.cfg, &call.origin, &call.dialog.local),
            )
            .header("Supported", policy::SUPPORTED);
        if let Some(t) = &call.timer {
            r = r
                .header("Session-Expires", &t.header_value())
                .header("Require", "timer");
        }
        if let Some(sdp) = &body {
            r = r.body(policy::SDP, sdp.as_bytes());
        }
        let ok = r.finish();
        if invite {
            let cseq = req.cseq().map_or(0, |(n, _)| n);
            self.await_ack(call_id, cseq, ok.clone());
        }
        self.respond(&inc, 200, ok).await;
        self.arm_dialog_timer(call_id);
    }

    /// 422 with our minimum (RFC 4028 §8.1).
    pub(super) async fn too_small(&mut self, inc: &Incoming, req: &Scanned<'_>) {
        let r = Reply::to(
            req,
            422,
            "Session Interval Too Small",
            Some(&super::ids::tag()),
        )
        .header("Min-SE", &MIN_SE.to_string())
        .finish();
        self.respond(inc, 422, r).await;
    }

    /// Keeps a 2xx to resend until its ACK (RFC 3261 §13.3.1.4): every T1
    /// doubling to T2 over UDP; over TCP only the 64·T1 deadline.
    pub(super) fn await_ack(&mut self, call_id: &str, cseq: u32, response: Vec<u8>) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.pending_2xx = Some(Pending2xx {
            cseq,
            response,
            since: Instant::now(),
        });
        let interval = if call.origin.is_reliable() {
            SIXTY_FOUR_T1
        } else {
            T1
        };
        let ev = Event::Retransmit2xx {
            call_id: call_id.to_owned(),
            cseq,
            interval,
        };
        self.schedule(ev, interval);
    }

    pub(super) async fn retransmit_2xx(&mut self, call_id: &str, cseq: u32, interval: Duration) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(pending) = call.pending_2xx.as_ref().filter(|p| p.cseq == cseq) else {
            return; // acknowledged, or superseded
        };
        if pending.since.elapsed() >= SIXTY_FOUR_T1 {
            // The dialog is confirmed but the session is dead: end it
            // with a BYE (RFC 3261 §13.3.1.4).
            tracing::info!(%call_id, "no ACK for our 2xx in 64·T1; hanging up");
            return self.hang_up(call_id, Outcome::Failed).await;
        }
        let left = SIXTY_FOUR_T1.saturating_sub(pending.since.elapsed());
        let (origin, dest, again) = (call.origin.clone(), call.dest, pending.response.clone());
        if !origin.is_reliable() {
            self.out.send(&origin, dest, again).await;
        }
        // The last wait ends exactly at 64·T1.
        let next = (interval * 2).min(T2).min(left);
        let ev = Event::Retransmit2xx {
            call_id: call_id.to_owned(),
            cseq,
            interval: next,
        };
        self.schedule(ev, next);
    }

    /// (Re)starts a call's session timer after a 2xx or a refresh.
    /// Without a session timer, the dialog is probed instead: an in-dialog
    /// OPTIONS every [`PROBE_INTERVAL`] (RFC 5057 §5.1 reads only 481 and
    /// 408, or no answer at all, as the dialog being gone).
    pub(super) fn arm_dialog_timer(&mut self, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        call.timer_generation += 1;
        let after = call.timer.map_or(PROBE_INTERVAL, |t| t.deadline());
        let ev = Event::DialogTimer {
            call_id: call_id.to_owned(),
            generation: call.timer_generation,
        };
        let task = self.schedule(ev, after);
        let call = self.calls.get_mut(call_id).expect("checked above");
        if let Some(old) = call.timer_task.replace(task) {
            old.abort();
        }
    }

    pub(super) async fn dialog_timer_due(&mut self, call_id: &str, generation: u64) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.timer_generation != generation || call.phase != Phase::Answered {
            return; // refreshed since, or over
        }
        let Some(timer) = call.timer else {
            // A caller that vanished after its ACK would hold a slot for
            // ever: ask whether the dialog is still there.
            let built = requests::in_dialog(&self.cfg, call, "OPTIONS", "");
            let (origin, dest) = (call.origin.clone(), call.dest);
            let purpose = Purpose::Probe {
                call_id: call_id.to_owned(),
            };
            return self.start_request(origin, dest, built, purpose).await;
        };
        match timer.refresher {
            Refresher::Uac => {
                tracing::info!(%call_id, "session expired without a refresh; hanging up");
                self.hang_up(call_id, Outcome::Failed).await;
            }
            Refresher::Uas => {
                let extra = format!(
                    "Session-Expires: {}\r\nSupported: {}\r\n",
                    timer.header_value(),
                    policy::SUPPORTED
                );
                let built = requests::in_dialog(&self.cfg, call, "UPDATE", &extra);
                let (origin, dest) = (call.origin.clone(), call.dest);
                let purpose = Purpose::Refresh {
                    call_id: call_id.to_owned(),
                };
                self.start_request(origin, dest, built, purpose).await;
            }
        }
    }

    /// Ends an answered call from our side: the record, then a BYE.
    pub(super) async fn hang_up(&mut self, call_id: &str, outcome: Outcome) {
        if !self
            .calls
            .get(call_id)
            .is_some_and(|c| c.phase == Phase::Answered)
        {
            return;
        }
        self.end_call(call_id, outcome).await;
        let call = self.calls.get_mut(call_id).expect("checked above");
        let built = requests::in_dialog(&self.cfg, call, "BYE", "");
        let (origin, dest) = (call.origin.clone(), call.dest);
        self.start_request(origin, dest, built, Purpose::Bye).await;
    }

    /// Ends a ringing call: 487 to its INVITE (which then waits for the ACK).
    pub(super) async fn terminate_invite(&mut self, call_id: &str, outcome: Outcome) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        let invite = call.invite.clone();
        let Ok(inv) = msg::scan(&invite) else { return };
        let terminated = Reply::to(&inv, 487, "Request Terminated", Some(&call.to_tag)).finish();
        let inc = Incoming {
            origin: call.origin.clone(),
            dest: call.dest,
            key: call.invite_key.clone(),
        };
        self.end_call(call_id, outcome).await;
        self.settle().await;
        self.respond(&inc, 487, terminated).await;
    }

    /// The call is over: its record says how, its sockets go back, and its
    /// state lingers a while for late requests. Returns what resolves once
    /// the record is on disk, for a caller that must say so (the BYE's 200);
    /// others drop it. `None`: the call was already over.
    pub(super) async fn end_call(
        &mut self,
        call_id: &str,
        outcome: Outcome,
    ) -> Option<impl std::future::Future<Output = Result<(), String>> + Send + 'static> {
        let call = self.calls.get_mut(call_id)?;
        if call.phase == Phase::Ended {
            return None;
        }
        let outcome = match (outcome, &call.escalated_to) {
            (Outcome::Completed, Some(_)) => Outcome::Escalated,
            (o, _) => o,
        };
        let duration_ms = match (outcome, call.answered_at) {
            (Outcome::Completed | Outcome::Escalated, Some(t)) => t.elapsed().as_millis() as i64,
            _ => 0,
        };
        call.phase = Phase::Ended;
        self.live_calls -= 1;
        call.pending_2xx = None;
        call.agent = None;
        if let Some(task) = call.timer_task.take() {
            task.abort();
        }
        let ended = Write::Ended {
            id: call.record_id.clone(),
            at: now_rfc3339(),
            outcome,
            duration_ms,
        };
        self.slot_may_be_free(call_id.to_owned());
        let committed = self.store.write_committed(ended).await;
        if let Some(lease) = self.calls.get_mut(call_id).and_then(|c| c.media.take()) {
            self.cfg.rtp.close(lease).await;
        }
        if let Some(leg) = self.calls.get_mut(call_id).and_then(|c| c.leg.take()) {
            self.end_leg(&leg).await;
        }
        self.linger(call_id.to_owned());
        Some(committed)
    }
}

/// Our Contact: the dialed number at the address the caller reached us
/// on, so in-dialog requests route back to this tenant by number.
/// `local` is our From/To value, whose URI names the number.
pub(super) fn contact(cfg: &UaConfig, origin: &Origin, local: &str) -> String {
    let number = msg::dialed_number(msg::uri_of(local))
        .map(|n| n.to_string())
        .unwrap_or_default();
    let (host, port, tcp) = super::local_address(cfg, origin);
    let transport = if tcp { ";transport=tcp" } else { "" };
    format!("<sip:{number}@{host}:{port}{transport}>")
}

/// Reads the dialog identifiers from the INVITE (RFC 3261 §12.1.1).
pub(super) fn dialog_ids(req: &Scanned<'_>, call_id: &str, to_tag: &str) -> DialogIds {
    let to = req.header("To").unwrap_or("");
    let from = req.header("From").unwrap_or("");
    let remote_target = req
        .header("Contact")
        .map(|c| msg::uri_of(c.split(',').next().unwrap_or(c)))
        .unwrap_or_else(|| msg::uri_of(from))
        .to_owned();
    let route_set = req
        .headers()
        .filter(|(n, _)| msg::name_is(n, "Record-Route"))
        .flat_map(|(_, v)| v.split(','))
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty())
        .collect();
    DialogIds {
        call_id: call_id.to_owned(),
        local: format!("{to};tag={to_tag}"),
        remote: from.to_owned(),
        remote_target,
        route_set,
    }
}
