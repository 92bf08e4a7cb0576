//! A new call: the INVITE's checks and its 100 (the record, the routing's
//! verdict and ringing follow in [`super::admit`]), the answer, and CANCEL.

use bulkhead_shared::time::now_rfc3339;
use tokio::time::Instant;

use super::admit::PendingInvite;
use super::dialog::{contact, Phase};
use super::{ids, uri_of_request, Incoming, Ua};
use crate::agent::CallSetup;
use crate::sip::auth::{self, Verdict};
use crate::sip::msg::{self, Reply, Scanned};
use crate::sip::session_timer::{SessionTimer, TooSmall};
use crate::sip::transport::Origin;
use crate::sip::{policy, sdp};
use crate::store::writer::Write;
use crate::store::{NewCall, Outcome};
use bulkhead_shared::backlog::Backlog;
use bulkhead_shared::trunk::TrunkAuth;
use bulkhead_voice::media::g711::Law;
use std::sync::Arc;
use std::time::Duration;

/// The user agent's events queued behind the one being handled, as new
/// calls find them. Half its queue is at most some 10 ms of work: a call
/// brings at least five events (its INVITE, ACK and BYE, and the store's
/// two answers) and takes the user agent about 100 µs (BENCHMARKS.md,
/// twelfth session). Above half at every new call for 50 ms, new calls
/// are refused 503 until one finds the queue shorter: the calls it has go
/// on. One tenant offered
/// 4,000 calls/s for 10 s completed 14,644 and 17,107 of 40,000 calls
/// without it, 39,744 and 39,727 with it, about as many as Kamailio + UAS
/// in the same runs (BENCHMARKS.md, eleventh session).
pub(super) fn events_backlog(capacity: usize) -> Backlog {
    Backlog::new(capacity / 2, usize::MAX, Duration::from_millis(50))
}

impl Ua {
    pub(super) async fn on_invite(
        &mut self,
        inc: Incoming,
        req: &Scanned<'_>,
        raw: &[u8],
        call_id: String,
        branch: String,
    ) {
        if req.header("To").and_then(Scanned::tag_of).is_some() {
            // In a dialog: ours (a re-INVITE), or one we do not have (481).
            return self.on_reinvite(inc, req, &call_id).await;
        }
        if self.is_call_invite(&call_id, &branch, &inc) {
            // The call's own INVITE again, which only reaches here when its
            // transaction was not kept (the table was full as it came): a
            // retransmission. A 100 stops the caller's resends; the call's
            // answer follows as it would (a 2xx is repeated until its ACK).
            if let Some(key) = &inc.key {
                self.servers.remove(key);
            }
            let stateless = Incoming { key: None, ..inc };
            let trying = Reply::to(req, 100, "Trying", None).finish();
            return self.respond(&stateless, 100, trying).await;
        }
        if self.calls.contains_key(&call_id) || self.pending.contains_key(&call_id) {
            // The same call by another path or a reused Call-ID: a merged
            // request (RFC 3261 §8.2.2.2), not a second call.
            return self.reply(&inc, req, 482, "Loop Detected").await;
        }
        let queued = self.events.max_capacity() - self.events.capacity();
        if !self.behind.admits(queued, Instant::now().into_std()) {
            // Behind on the calls it has: a new call would only wait behind
            // them, and their callers would resend (the router refuses the
            // same way for the backlog it can see, router/backlog.rs).
            let busy = Reply::to(req, 503, "Service Unavailable (busy)", Some(&ids::tag()))
                .header("Retry-After", "1")
                .finish();
            return self.respond(&inc, 503, busy).await;
        }
        // Through the router it holds a slot (taken in `on_message`); from
        // the trunk it may owe a digest answer.
        if !matches!(inc.origin, Origin::Router { .. }) {
            if let Some(auth) = self.trunk_auth() {
                if let Verdict::Challenge { stale } = self.nonces.verify(req, &auth) {
                    return self.challenge(&inc, req, &auth, stale).await;
                }
            }
        }
        if let Err(refused) = policy::check_invite(req) {
            return self.refuse(&inc, req, refused).await;
        }
        let timer = match SessionTimer::negotiate(req) {
            Ok(t) => t,
            Err(TooSmall) => return self.too_small(&inc, req).await,
        };
        let Some(number) = msg::dialed_number(uri_of_request(req)).filter(|n| self.owns(n)) else {
            return self.reply(&inc, req, 404, "Not Found").await;
        };
        let pt = if req.body.is_empty() {
            Some(0)
        } else {
            sdp::choose_codec(req.body)
        };
        // Durable before the caller hears anything but 100: a call that was
        // rung is on disk even if this worker dies a moment later. The
        // commit, and the media sockets after it, are awaited off this task
        // (admit.rs); the call goes on in `on_admitted`.
        let trying = Reply::to(req, 100, "Trying", None).finish();
        self.respond(&inc, 100, trying).await;
        let record_id = ids::record_id();
        let new_call = NewCall {
            id: record_id.clone(),
            call_id: call_id.clone(),
            from: msg::caller(req),
            to: number.to_string(),
            started_at: now_rfc3339(),
        };
        // The tenant's routing: its own concurrent-call limit (the calls up
        // and those still being set up), then its hours.
        let active = self.live_calls + self.pending.values().filter(|p| p.wants_media()).count();
        let pending = PendingInvite {
            inc,
            raw: raw.to_vec(),
            branch,
            record_id,
            to_tag: ids::tag(),
            pt,
            timer,
            route: self.cfg.agent.route(active),
            cancelled: false,
        };
        self.admit(call_id, new_call, pending).await;
    }

    /// Whether `branch` from `inc`'s source is the INVITE of a call being
    /// set up or in progress under `call_id`.
    fn is_call_invite(&self, call_id: &str, branch: &str, inc: &Incoming) -> bool {
        let source = inc.origin.peer().ip();
        if let Some(p) = self.pending.get(call_id) {
            return p.branch == branch && p.inc.origin.peer().ip() == source;
        }
        self.calls.get(call_id).is_some_and(|c| {
            !c.is_over() && c.invite_branch == branch && c.origin.peer().ip() == source
        })
    }

    /// The trunk's digest credentials, when the tenant set them.
    fn trunk_auth(&self) -> Option<TrunkAuth> {
        self.cfg
            .trunk
            .read()
            .expect("trunk policy lock")
            .auth
            .clone()
    }

    /// 401 with a fresh nonce under both algorithms (RFC 3261 §22.2).
    async fn challenge(
        &mut self,
        inc: &Incoming,
        req: &Scanned<'_>,
        auth: &TrunkAuth,
        stale: bool,
    ) {
        let nonce = self.nonces.issue();
        let mut r = Reply::to(req, 401, "Unauthorized", Some(&ids::tag()));
        for value in auth::challenges(auth, &nonce, stale) {
            r = r.header("WWW-Authenticate", &value);
        }
        self.respond(inc, 401, r.finish()).await;
    }

    pub(super) async fn answer(&mut self, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.phase != Phase::Ringing {
            return;
        }
        let invite = call.invite.clone();
        let Ok(req) = msg::scan(&invite) else { return };
        let mut ok = Reply::to(&req, 200, "OK", Some(&call.to_tag))
            .header(
                "Contact",
                &contact(&self.cfg, &call.origin, &call.dialog.local),
            )
            .header("Allow", msg::ALLOW)
            .header("Supported", policy::SUPPORTED);
        if let Some(t) = &call.timer {
            ok = ok
                .header("Session-Expires", &t.header_value())
                .header("Require", "timer");
        }
        let ok = ok
            .body(
                policy::SDP,
                call.session.describe(self.cfg.advertise).as_bytes(),
            )
            .finish();
        call.phase = Phase::Answered;
        call.answered_at = Some(Instant::now());
        let inc = Incoming {
            origin: call.origin.clone(),
            dest: call.dest,
            key: call.invite_key.clone(),
        };
        let (id, cseq) = (call.record_id.clone(), call.remote_cseq);
        self.await_ack(call_id, cseq, ok.clone());
        self.respond(&inc, 200, ok).await;
        let answered = Write::Answered {
            id,
            at: now_rfc3339(),
        };
        self.store.write(answered).await;
        self.arm_dialog_timer(call_id);
        self.start_agent(call_id);
    }

    /// Hands the answered call's audio, and its RTP sockets, to the voice agent.
    fn start_agent(&mut self, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        let Some(peer) = sdp::remote_media(msg::scan(&call.invite).map_or(&[][..], |r| r.body))
        else {
            tracing::info!(
                call_id,
                "no address to send audio to; the agent stays silent"
            );
            return;
        };
        let (Some(law), Some(lease)) = (Law::from_payload_type(call.session.pt), call.media.take())
        else {
            return;
        };
        let setup = CallSetup {
            peer,
            law,
            dtmf_pt: call.session.dtmf,
            opening: call.opening.take().unwrap_or_default(),
        };
        let started = self.cfg.agent.start_call(
            self.store.clone(),
            call.record_id.clone(),
            call_id.to_owned(),
            lease,
            setup,
            Arc::clone(&self.cfg.rtp),
            self.events.clone(),
        );
        match started {
            Ok(handle) => call.agent = Some(handle),
            Err(lease) => call.media = Some(lease),
        }
    }

    /// CANCEL of a ringing call's INVITE: 200 to the CANCEL, 487 to the INVITE.
    pub(super) async fn on_cancel(
        &mut self,
        inc: Incoming,
        req: &Scanned<'_>,
        call_id: &str,
        branch: &str,
    ) {
        if let Some(to_tag) = self.cancel_pending(call_id, branch, &inc) {
            let ok = Reply::to(req, 200, "OK", Some(&to_tag)).finish();
            return self.respond(&inc, 200, ok).await;
        }
        let Some(call) = self.calls.get(call_id).filter(|c| {
            c.invite_branch == branch && c.origin.peer().ip() == inc.origin.peer().ip()
        }) else {
            return self
                .reply(&inc, req, 481, "Call/Transaction Does Not Exist")
                .await;
        };
        let ok = Reply::to(req, 200, "OK", Some(&call.to_tag)).finish();
        let ringing = call.phase == Phase::Ringing;
        self.respond(&inc, 200, ok).await;
        if ringing {
            self.terminate_invite(call_id, Outcome::Abandoned).await;
        } // else too late: the INVITE already has its final response
    }
}
