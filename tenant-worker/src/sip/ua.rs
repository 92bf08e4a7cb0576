//! The user agent server: one task that owns every call's state and handles
//! requests in arrival order, so a call's responses leave in the order they
//! were made (a 180 never overtakes its 200).
//!
//! Over UDP it keeps RFC 3261's server transaction promises: a retransmitted
//! request gets the last response again, and a 2xx to INVITE is retransmitted
//! (Timer G-style, T1 doubling to T2) until the ACK arrives or 64·T1 passes.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bulkhead_shared::time::now_rfc3339;
use bulkhead_shared::Number;
use tokio::sync::mpsc;

use super::msg::validate;
use super::msg::{self, Reply, Scanned, StartLine};
use super::policy;
use super::rtp::{RtpClient, RtpLease};
use super::sdp;
use super::transport::{Origin, Outbound};
use crate::store::writer::{Store, Write};
use crate::store::{NewCall, Outcome};

/// RFC 3261 timer T1: round-trip estimate.
pub const T1: Duration = Duration::from_millis(500);
/// RFC 3261 timer T2: longest retransmission interval for non-INVITE and 2xx.
pub const T2: Duration = Duration::from_secs(4);
/// How long a finished call's state is kept to absorb retransmissions (64·T1).
pub const LINGER: Duration = Duration::from_secs(32);

/// What the user agent task reacts to.
#[derive(Debug)]
pub enum Event {
    Inbound {
        origin: Origin,
        data: Vec<u8>,
    },
    /// The ring delay passed: answer this call if it still rings.
    Answer {
        call_id: String,
    },
    /// Time to retransmit the 200 OK if no ACK came.
    Retransmit {
        call_id: String,
        interval: Duration,
    },
    /// Forget a finished call.
    Expire {
        call_id: String,
    },
}

/// Fixed facts about this tenant the user agent needs.
#[derive(Debug, Clone)]
pub struct UaConfig {
    pub numbers: Arc<RwLock<Vec<Number>>>,
    pub advertise: IpAddr,
    pub router_port: u16,
    pub sip_port: u16,
    pub answer_delay: Duration,
    /// Where each call's RTP sockets come from.
    pub rtp: Arc<RtpClient>,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Ringing,
    Answered { acked: bool },
    Ended,
}

#[derive(Debug)]
struct Call {
    record_id: String,
    origin: Origin,
    dest: SocketAddr,
    invite: Vec<u8>,
    invite_branch: String,
    to_tag: String,
    phase: Phase,
    /// The last response to the INVITE, resent on retransmissions.
    last_response: Vec<u8>,
    /// Responses to in-dialog requests, by (CSeq number, method).
    answered_requests: HashMap<(u32, String), Vec<u8>>,
    sdp: String,
    answered_at: Option<Instant>,
    answered_since: Option<Instant>,
    /// The call's RTP/RTCP sockets, held from the INVITE to the end.
    media: Option<RtpLease>,
}

/// What [`Ua::reject_invite`] needs about the INVITE it rejects.
#[derive(Debug, Clone, Copy)]
struct RejectedInvite<'a> {
    record_id: &'a str,
    call_id: &'a str,
    raw: &'a [u8],
    branch: &'a str,
    to_tag: &'a str,
}

/// The user agent's state.
#[derive(Debug)]
pub struct Ua {
    cfg: UaConfig,
    store: Store,
    out: Outbound,
    events: mpsc::Sender<Event>,
    calls: HashMap<String, Call>,
    /// Calls the router admitted under the tenant's concurrent-call limit
    /// and that have not been reported over yet (see [`Ua::settle`]).
    router_slots: HashSet<String>,
}

impl Ua {
    pub fn new(cfg: UaConfig, store: Store, out: Outbound, events: mpsc::Sender<Event>) -> Self {
        Self {
            cfg,
            store,
            out,
            events,
            calls: HashMap::new(),
            router_slots: HashSet::new(),
        }
    }

    /// Runs until every event sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        while let Some(ev) = rx.recv().await {
            match ev {
                Event::Inbound { origin, data } => self.on_message(origin, &data).await,
                Event::Answer { call_id } => self.answer(&call_id).await,
                Event::Retransmit { call_id, interval } => {
                    self.retransmit(&call_id, interval).await
                }
                Event::Expire { call_id } => {
                    if self
                        .calls
                        .get(&call_id)
                        .is_some_and(|c| c.phase == Phase::Ended)
                    {
                        self.calls.remove(&call_id);
                    }
                }
            }
            self.settle().await;
        }
    }

    /// Tells the router about every admitted call that is over, whichever
    /// way it ended (hung up, cancelled, refused, never acknowledged), so
    /// its slot under the concurrent-call limit is free again. Checking
    /// after every event, rather than at each place a call can end, keeps
    /// a future end path from leaking a slot.
    async fn settle(&mut self) {
        if self.router_slots.is_empty() {
            return;
        }
        let calls = &self.calls;
        let mut over = Vec::new();
        self.router_slots.retain(|id| {
            let live = calls.get(id).is_some_and(|c| c.phase != Phase::Ended);
            if !live {
                over.push(id.clone());
            }
            live
        });
        for call_id in over {
            self.out.call_ended(call_id).await;
        }
    }

    async fn on_message(&mut self, origin: Origin, data: &[u8]) {
        let req = match msg::scan(data) {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(error = %e, "dropping unparseable SIP message");
                return;
            }
        };
        let StartLine::Request {
            method, version, ..
        } = req.start
        else {
            return; // We send no requests yet, so every response is stray.
        };
        let via = msg::top_via(&req);
        let dest = msg::response_target(via.as_ref(), origin.peer());
        let Some(call_id) = req.call_id().map(str::to_owned) else {
            return self
                .reply(&origin, dest, &req, 400, "Missing Call-ID")
                .await;
        };
        if req.cseq().is_none() || via.is_none() {
            return self
                .reply(&origin, dest, &req, 400, "Missing or Malformed CSeq or Via")
                .await;
        }
        if version != "SIP/2.0" {
            return self
                .reply(&origin, dest, &req, 505, "Version Not Supported")
                .await;
        }
        if let Err(invalid) = validate::request(&req) {
            if method == "ACK" {
                return; // never answered
            }
            return self
                .reply(&origin, dest, &req, invalid.code, invalid.reason)
                .await;
        }
        if let Err(refused) = policy::check_require(&req) {
            return self.refuse(&origin, dest, &req, refused).await;
        }
        let branch = via.and_then(|v| v.branch).unwrap_or("").to_owned();
        match method {
            "INVITE" => {
                self.on_invite(origin, dest, &req, data, call_id, branch)
                    .await
            }
            "ACK" => self.on_ack(&call_id),
            "BYE" => self.on_bye(origin, dest, &req, &call_id).await,
            "CANCEL" => self.on_cancel(origin, dest, &req, &call_id, &branch).await,
            "OPTIONS" => {
                let r = Reply::to(&req, 200, "OK", Some(&new_tag()))
                    .header("Allow", msg::ALLOW)
                    .header("Accept", "application/sdp")
                    .finish();
                self.out.send(&origin, dest, r).await;
            }
            "REGISTER" => {
                let r = Reply::to(&req, 405, "Method Not Allowed", Some(&new_tag()))
                    .header("Allow", msg::ALLOW)
                    .finish();
                self.out.send(&origin, dest, r).await;
            }
            _ => {
                let r = Reply::to(&req, 501, "Not Implemented", Some(&new_tag()))
                    .header("Allow", msg::ALLOW)
                    .finish();
                self.out.send(&origin, dest, r).await;
            }
        }
    }

    async fn reply(
        &self,
        origin: &Origin,
        dest: SocketAddr,
        req: &Scanned<'_>,
        code: u16,
        reason: &str,
    ) {
        let r = Reply::to(req, code, reason, Some(&new_tag())).finish();
        self.out.send(origin, dest, r).await;
    }

    /// Answers with a refusal and the header saying what we support.
    async fn refuse(
        &self,
        origin: &Origin,
        dest: SocketAddr,
        req: &Scanned<'_>,
        refused: policy::Refusal,
    ) {
        let (name, value) = &refused.header;
        let r = Reply::to(req, refused.code, refused.reason, Some(&new_tag()))
            .header(name, value)
            .finish();
        self.out.send(origin, dest, r).await;
    }

    async fn on_invite(
        &mut self,
        origin: Origin,
        dest: SocketAddr,
        req: &Scanned<'_>,
        raw: &[u8],
        call_id: String,
        branch: String,
    ) {
        if let Some(call) = self.calls.get(&call_id) {
            if call.invite_branch == branch {
                // A retransmission: the last response again.
                let again = call.last_response.clone();
                return self.out.send(&call.origin, call.dest, again).await;
            }
            // A re-INVITE in the dialog: keep the session as it is.
            let r = Reply::to(req, 200, "OK", Some(&call.to_tag))
                .header("Contact", &self.contact(&call.origin, &dialed(req)))
                .body("application/sdp", call.sdp.as_bytes())
                .finish();
            return self.out.send(&call.origin, call.dest, r).await;
        }
        if matches!(origin, Origin::Router { .. }) {
            self.router_slots.insert(call_id.clone());
        }
        if req.header("To").and_then(Scanned::tag_of).is_some() {
            // A re-INVITE for a dialog this worker does not have.
            return self
                .reply(&origin, dest, req, 481, "Call/Transaction Does Not Exist")
                .await;
        }
        if let Err(refused) = policy::check_invite(req) {
            return self.refuse(&origin, dest, req, refused).await;
        }
        let Some(number) = msg::dialed_number(uri_of_request(req)).filter(|n| self.owns(n)) else {
            return self.reply(&origin, dest, req, 404, "Not Found").await;
        };
        let pt = if req.body.is_empty() {
            Some(0)
        } else {
            sdp::choose_codec(req.body)
        };
        let record_id = new_record_id();
        // Durable before the caller hears anything but 100: a call that was
        // rung is on disk even if this worker dies a moment later.
        let trying = Reply::to(req, 100, "Trying", None).finish();
        self.out.send(&origin, dest, trying).await;
        let inserted = self
            .store
            .write_durable(Write::InsertCall(NewCall {
                id: record_id.clone(),
                call_id: call_id.clone(),
                from: msg::caller(req),
                to: number.to_string(),
                started_at: now_rfc3339(),
            }))
            .await;
        if let Err(e) = inserted {
            tracing::error!(error = %e, "failed to record a call; answering 500");
            return self
                .reply(&origin, dest, req, 500, "Server Internal Error")
                .await;
        }
        let to_tag = new_tag();
        let rejected = RejectedInvite {
            record_id: &record_id,
            call_id: &call_id,
            raw,
            branch: &branch,
            to_tag: &to_tag,
        };
        let Some(pt) = pt else {
            return self
                .reject_invite(origin, dest, req, rejected, 488, "Not Acceptable Here")
                .await;
        };
        // Media sockets, within the tenant's concurrent-call limit.
        let lease = match self.cfg.rtp.open().await {
            Ok(lease) => lease,
            Err(reason) => {
                tracing::info!(%reason, "refusing a call: no RTP sockets");
                return self
                    .reject_invite(origin, dest, req, rejected, 486, "Busy Here")
                    .await;
            }
        };
        let session = u64::from(getrandom_u32());
        let sdp = sdp::describe(self.cfg.advertise, lease.port, session, pt);
        let ringing = Reply::to(req, 180, "Ringing", Some(&to_tag))
            .header("Contact", &self.contact(&origin, number.as_str()))
            .finish();
        self.out.send(&origin, dest, ringing.clone()).await;
        let call = Call::new(
            record_id,
            origin,
            dest,
            raw,
            branch,
            to_tag,
            ringing,
            sdp,
            Phase::Ringing,
        );
        self.calls.insert(
            call_id.clone(),
            Call {
                media: Some(lease),
                ..call
            },
        );
        if self.cfg.answer_delay.is_zero() {
            self.answer(&call_id).await;
        } else {
            let (events, delay) = (self.events.clone(), self.cfg.answer_delay);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = events.send(Event::Answer { call_id }).await;
            });
        }
    }

    async fn answer(&mut self, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.phase != Phase::Ringing {
            return;
        }
        let invite = call.invite.clone();
        let Ok(req) = msg::scan(&invite) else { return };
        let number = dialed(&req);
        let contact = contact_uri(&self.cfg, &call.origin, &number);
        let ok = Reply::to(&req, 200, "OK", Some(&call.to_tag))
            .header("Contact", &contact)
            .header("Allow", msg::ALLOW)
            .body("application/sdp", call.sdp.as_bytes())
            .finish();
        call.phase = Phase::Answered { acked: false };
        call.last_response = ok.clone();
        call.answered_at = Some(Instant::now());
        call.answered_since = call.answered_at;
        let (origin, dest, id) = (call.origin.clone(), call.dest, call.record_id.clone());
        self.out.send(&origin, dest, ok).await;
        self.store
            .write(Write::Answered {
                id,
                at: now_rfc3339(),
            })
            .await;
        // RFC 3261 §13.3.1.4: retransmit the 2xx until ACK, even over TCP
        // the ACK is awaited, but only unreliable transports resend.
        if !origin.is_reliable() {
            self.schedule(
                Event::Retransmit {
                    call_id: call_id.to_owned(),
                    interval: T1,
                },
                T1,
            );
        }
    }

    async fn retransmit(&mut self, call_id: &str, interval: Duration) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if call.phase != (Phase::Answered { acked: false }) {
            return;
        }
        if call.answered_since.is_some_and(|t| t.elapsed() >= 64 * T1) {
            // No ACK ever came: the dialog is dead (RFC 3261 §13.3.1.4).
            call.phase = Phase::Ended;
            let ended = Write::Ended {
                id: call.record_id.clone(),
                at: now_rfc3339(),
                outcome: Outcome::Failed,
                duration_ms: 0,
            };
            self.store.write(ended).await;
            self.release_media(call_id).await;
            return self.expire_later(call_id.to_owned());
        }
        let (origin, dest, again) = (call.origin.clone(), call.dest, call.last_response.clone());
        self.out.send(&origin, dest, again).await;
        let next = (interval * 2).min(T2);
        self.schedule(
            Event::Retransmit {
                call_id: call_id.to_owned(),
                interval: next,
            },
            next,
        );
    }

    fn on_ack(&mut self, call_id: &str) {
        if let Some(call) = self.calls.get_mut(call_id) {
            if call.phase == (Phase::Answered { acked: false }) {
                call.phase = Phase::Answered { acked: true };
            }
        }
    }

    async fn on_bye(&mut self, origin: Origin, dest: SocketAddr, req: &Scanned<'_>, call_id: &str) {
        let Some(call) = self.calls.get_mut(call_id) else {
            return self
                .reply(&origin, dest, req, 481, "Call/Transaction Does Not Exist")
                .await;
        };
        let key = request_key(req);
        if let Some(again) = call.answered_requests.get(&key) {
            let again = again.clone();
            return self.out.send(&origin, dest, again).await;
        }
        let ok = Reply::to(req, 200, "OK", Some(&call.to_tag)).finish();
        call.answered_requests.insert(key, ok.clone());
        if matches!(call.phase, Phase::Answered { .. }) {
            call.phase = Phase::Ended;
            let duration_ms = call
                .answered_at
                .map_or(0, |t| t.elapsed().as_millis() as i64);
            let ended = Write::Ended {
                id: call.record_id.clone(),
                at: now_rfc3339(),
                outcome: Outcome::Completed,
                duration_ms,
            };
            // The caller's 200 means the record is final and on disk.
            if let Err(e) = self.store.write_durable(ended).await {
                tracing::error!(error = %e, "failed to record the end of a call");
            }
            // The slot is free before the caller hears the end (same link, in order).
            self.settle().await;
            self.out.send(&origin, dest, ok).await;
            self.release_media(call_id).await;
            self.expire_later(call_id.to_owned());
        } else {
            self.out.send(&origin, dest, ok).await;
        }
    }

    async fn on_cancel(
        &mut self,
        origin: Origin,
        dest: SocketAddr,
        req: &Scanned<'_>,
        call_id: &str,
        branch: &str,
    ) {
        let Some(call) = self
            .calls
            .get_mut(call_id)
            .filter(|c| c.invite_branch == branch)
        else {
            return self
                .reply(&origin, dest, req, 481, "Call/Transaction Does Not Exist")
                .await;
        };
        let ok = Reply::to(req, 200, "OK", Some(&call.to_tag)).finish();
        self.out.send(&origin, dest, ok).await;
        if call.phase != Phase::Ringing {
            return; // Too late: the INVITE already has its final response.
        }
        let invite = call.invite.clone();
        let Ok(inv) = msg::scan(&invite) else { return };
        let terminated = Reply::to(&inv, 487, "Request Terminated", Some(&call.to_tag)).finish();
        call.phase = Phase::Ended;
        call.last_response = terminated.clone();
        let (o, d) = (call.origin.clone(), call.dest);
        let ended = Write::Ended {
            id: call.record_id.clone(),
            at: now_rfc3339(),
            outcome: Outcome::Abandoned,
            duration_ms: 0,
        };
        self.settle().await;
        self.out.send(&o, d, terminated).await;
        self.store.write(ended).await;
        self.release_media(call_id).await;
        self.expire_later(call_id.to_owned());
    }

    /// Answers a new INVITE with a final error, records the call as
    /// rejected, and keeps its state a while so a retransmitted INVITE gets
    /// the same answer instead of becoming a second call.
    async fn reject_invite(
        &mut self,
        origin: Origin,
        dest: SocketAddr,
        req: &Scanned<'_>,
        call: RejectedInvite<'_>,
        code: u16,
        reason: &str,
    ) {
        let r = Reply::to(req, code, reason, Some(call.to_tag)).finish();
        self.settle().await;
        self.out.send(&origin, dest, r.clone()).await;
        let ended = Write::Ended {
            id: call.record_id.to_owned(),
            at: now_rfc3339(),
            outcome: Outcome::Rejected,
            duration_ms: 0,
        };
        if let Err(e) = self.store.write_durable(ended).await {
            tracing::error!(error = %e, "failed to record a rejected call");
        }
        let state = Call::new(
            call.record_id.to_owned(),
            origin,
            dest,
            call.raw,
            call.branch.to_owned(),
            call.to_tag.to_owned(),
            r,
            String::new(),
            Phase::Ended,
        );
        self.calls.insert(call.call_id.to_owned(), state);
        self.expire_later(call.call_id.to_owned());
    }

    /// Gives a finished call's RTP sockets back to the supervisor.
    async fn release_media(&mut self, call_id: &str) {
        if let Some(lease) = self.calls.get_mut(call_id).and_then(|c| c.media.take()) {
            self.cfg.rtp.close(lease).await;
        }
    }

    fn owns(&self, n: &Number) -> bool {
        self.cfg.numbers.read().expect("numbers lock").contains(n)
    }

    fn contact(&self, origin: &Origin, number: &str) -> String {
        contact_uri(&self.cfg, origin, number)
    }

    fn schedule(&self, ev: Event, after: Duration) {
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = events.send(ev).await;
        });
    }

    fn expire_later(&self, call_id: String) {
        self.schedule(Event::Expire { call_id }, LINGER);
    }
}

impl Call {
    #[allow(clippy::too_many_arguments)]
    fn new(
        record_id: String,
        origin: Origin,
        dest: SocketAddr,
        invite: &[u8],
        invite_branch: String,
        to_tag: String,
        last_response: Vec<u8>,
        sdp: String,
        phase: Phase,
    ) -> Self {
        Self {
            record_id,
            origin,
            dest,
            invite: invite.to_vec(),
            invite_branch,
            to_tag,
            phase,
            last_response,
            answered_requests: HashMap::new(),
            sdp,
            answered_at: None,
            answered_since: None,
            media: None,
        }
    }
}

/// Our Contact: the dialed number at the address the caller reached us on,
/// so in-dialog requests route back to this tenant by number.
fn contact_uri(cfg: &UaConfig, origin: &Origin, number: &str) -> String {
    let (port, tcp) = match origin {
        Origin::Router { transport, .. } => (
            cfg.router_port,
            *transport == bulkhead_shared::ipc::Transport::Tcp,
        ),
        Origin::TrunkUdp { .. } => (cfg.sip_port, false),
        Origin::TrunkTcp { .. } => (cfg.sip_port, true),
    };
    let host = match cfg.advertise {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let transport = if tcp { ";transport=tcp" } else { "" };
    format!("<sip:{number}@{host}:{port}{transport}>")
}

fn uri_of_request<'a>(req: &Scanned<'a>) -> &'a str {
    match req.start {
        StartLine::Request { uri, .. } => uri,
        StartLine::Response { .. } => "",
    }
}

fn dialed(req: &Scanned<'_>) -> String {
    msg::dialed_number(uri_of_request(req))
        .map(|n| n.to_string())
        .unwrap_or_default()
}

fn request_key(req: &Scanned<'_>) -> (u32, String) {
    req.cseq()
        .map(|(n, m)| (n, m.to_owned()))
        .unwrap_or_default()
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).expect("kernel randomness");
    b
}

fn getrandom_u32() -> u32 {
    u32::from_be_bytes(random_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn new_tag() -> String {
    hex(&random_bytes::<8>())
}

fn new_record_id() -> String {
    format!("call_{}", hex(&random_bytes::<10>()))
}
