//! Escalation: the worker calls the tenant's human destination from its own
//! trunk socket (the INVITE carries `X-Bulkhead-Reason`, `-Summary` and
//! `-Call-Id`), and when someone answers, the caller's agent relays audio
//! between the two. The human leg has its own RTP socket from the
//! supervisor, so it counts against the tenant's concurrent-call limit.
//!
//! Busy, no answer within [`RING_TIMEOUT`] (we CANCEL), an error or no
//! response at all: the agent is told `None` and offers to take a message.
//! Either side hanging up ends both: the caller's BYE ends the leg (BYE, or
//! CANCEL while it rings) and the human's BYE ends the caller's call.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use bulkhead_voice::agent::escalation::{destination, Target};
use bulkhead_voice::agent::Bridge;
use tokio::sync::oneshot;

use super::transactions::Purpose;
use super::{ids, local_address, requests, Event, Ua};
use crate::sip::msg::{self, Reply, Scanned, StartLine};
use crate::sip::rtp::{ReturnOnDrop, RtpLease};
use crate::sip::sdp;
use crate::sip::transport::Origin;
use crate::sip::txn::{ClientInvite, ClientKey, Output, Timer};
use crate::store::writer::Write;
use std::sync::Arc;

/// How long the human's phone may ring before the caller is told.
pub const RING_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a cancelled leg waits for its INVITE to settle (64·T1).
const CANCELLED_LINGER: Duration = Duration::from_secs(32);

/// What a transfer asks of the user agent.
#[derive(Debug)]
pub struct Transfer {
    /// The caller's SIP Call-ID.
    pub call_id: String,
    pub target: Target,
    pub reason: String,
    pub summary: String,
    pub reply: oneshot::Sender<Option<Bridge>>,
}

/// The call to the human.
#[derive(Debug)]
pub(super) struct Leg {
    /// The caller's Call-ID, which this leg serves.
    caller: String,
    target: String,
    origin: Origin,
    dest: SocketAddr,
    /// The leg's Call-ID and the INVITE's Request-URI (CANCEL repeats it).
    call_id: String,
    uri: String,
    key: ClientKey,
    txn: ClientInvite,
    /// Our From (with our tag), their To (with their tag, once answered).
    local: String,
    remote: String,
    remote_target: String,
    cseq: u32,
    lease: Option<RtpLease>,
    reply: Option<oneshot::Sender<Option<Bridge>>>,
    answered: bool,
    /// We sent CANCEL; the leg stays until its INVITE settles, so a 2xx
    /// that crossed the CANCEL still gets its ACK and a BYE (RFC 3261 §9.1).
    cancelled: bool,
}

/// Header values from tenant and caller text: one line, bounded.
fn header_value(text: &str, max: usize) -> String {
    let mut v: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if v.len() > max {
        let mut end = max;
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        v.truncate(end);
    }
    v
}

impl Ua {
    pub(super) async fn start_transfer(&mut self, t: Transfer) {
        if self.calls.get(&t.call_id).is_none_or(|c| c.is_over()) {
            return;
        }
        let Some(dest) = destination(&t.target.uri) else {
            let _ = t.reply.send(None);
            return;
        };
        let lease = match self.cfg.rtp.open().await {
            Ok(lease) => lease,
            Err(reason) => {
                tracing::info!(%reason, "no RTP sockets for the human leg");
                let _ = t.reply.send(None);
                return;
            }
        };
        let Some(call) = self.calls.get(&t.call_id) else {
            self.cfg.rtp.close(lease).await;
            return;
        };
        let origin = Origin::TrunkUdp { peer: dest };
        let (host, port, _) = local_address(&self.cfg, &origin);
        let caller = msg::dialed_number(msg::uri_of(&call.dialog.remote))
            .map(|n| n.to_string())
            .unwrap_or_else(|| "anonymous".into());
        let number = msg::dialed_number(msg::uri_of(&call.dialog.local))
            .map(|n| n.to_string())
            .unwrap_or_default();
        let offer = sdp::Session {
            id: u64::from(ids::u32()),
            version: 1,
            port: lease.port,
            pt: call.session.pt,
            dtmf: None,
            direction: sdp::Direction::SendRecv,
        }
        .describe(self.cfg.advertise);
        let leg_id = format!("{}@bulkhead", ids::tag());
        let (branch, tag) = (ids::branch(), ids::tag());
        let local = format!("<sip:{caller}@{host}>;tag={tag}");
        let remote = format!("<{}>", t.target.uri);
        let mut r = String::with_capacity(1024);
        let _ = write!(
            r,
            "INVITE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n\
Max-Forwards: 70\r\nFrom: {local}\r\nTo: {remote}\r\nCall-ID: {leg_id}\r\nCSeq: 1 INVITE\r\n\
Contact: <sip:{number}@{host}:{port}>\r\nAllow: {allow}\r\n\
X-Bulkhead-Reason: {reason}\r\nX-Bulkhead-Summary: {summary}\r\nX-Bulkhead-Call-Id: {record}\r\n\
Content-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{offer}",
            uri = t.target.uri,
            allow = msg::ALLOW,
            reason = header_value(&t.reason, 256),
            summary = header_value(&t.summary, bulkhead_voice::agent::MAX_SUMMARY),
            record = call.record_id,
            len = offer.len(),
        );
        let (txn, outs) = ClientInvite::start(r.into_bytes(), false);
        self.expected
            .write()
            .expect("expected peers lock")
            .insert(dest.ip());
        tracing::info!(target = %t.target.name, %dest, "escalating a call to the tenant's human destination");
        self.legs.insert(
            leg_id.clone(),
            Leg {
                caller: t.call_id.clone(),
                target: t.target.name.clone(),
                origin,
                dest,
                call_id: leg_id.clone(),
                uri: t.target.uri.clone(),
                key: ClientKey {
                    branch,
                    method: "INVITE".into(),
                },
                txn,
                local,
                remote,
                remote_target: t.target.uri.clone(),
                cseq: 1,
                lease: Some(lease),
                reply: Some(t.reply),
                answered: false,
                cancelled: false,
            },
        );
        if let Some(call) = self.calls.get_mut(&t.call_id) {
            call.leg = Some(leg_id.clone());
        }
        self.schedule(
            Event::LegRingTimeout {
                leg: leg_id.clone(),
            },
            RING_TIMEOUT,
        );
        self.run_leg(&leg_id, outs, None).await;
    }

    /// A response to our INVITE to the human.
    pub(super) async fn on_leg_response(&mut self, resp: &Scanned<'_>, raw: &[u8]) -> bool {
        let (Some(call_id), Some(key)) = (resp.call_id(), crate::sip::txn::client_key(resp)) else {
            return false;
        };
        let Some(leg) = self.legs.get_mut(call_id).filter(|l| l.key == key) else {
            return false;
        };
        let StartLine::Response { code, .. } = resp.start else {
            return false;
        };
        let outs = leg.txn.on_response(code, raw);
        let leg_id = call_id.to_owned();
        self.run_leg(&leg_id, outs, Some(resp)).await;
        true
    }

    pub(super) async fn on_leg_timer(&mut self, leg_id: &str, timer: Timer) {
        let Some(leg) = self.legs.get_mut(leg_id) else {
            return;
        };
        let outs = leg.txn.on_timer(timer);
        self.run_leg(leg_id, outs, None).await;
    }

    /// Carries out the INVITE transaction's outputs; `resp` is the response
    /// just given to it.
    async fn run_leg(&mut self, leg_id: &str, outs: Vec<Output>, resp: Option<&Scanned<'_>>) {
        for out in outs {
            let Some(leg) = self.legs.get(leg_id) else {
                return;
            };
            let (origin, dest) = (leg.origin.clone(), leg.dest);
            match out {
                Output::Send(bytes) => self.out.send(&origin, dest, bytes).await,
                Output::Arm(timer, after) => {
                    let leg = leg_id.to_owned();
                    self.schedule(Event::LegTimer { leg, timer }, after);
                }
                Output::Deliver => {
                    if let Some(resp) = resp {
                        self.leg_answered(leg_id, resp).await;
                    }
                }
                Output::Timeout => {
                    tracing::info!(leg = leg_id, "the human destination never answered");
                    self.leg_failed(leg_id).await;
                }
                Output::Terminated => {}
            }
        }
    }

    async fn leg_answered(&mut self, leg_id: &str, resp: &Scanned<'_>) {
        let StartLine::Response { code, .. } = resp.start else {
            return;
        };
        if (100..200).contains(&code) {
            return;
        }
        if code >= 300 {
            tracing::info!(code, "the human destination declined");
            return self.leg_failed(leg_id).await;
        }
        let Some(leg) = self.legs.get_mut(leg_id) else {
            return;
        };
        if !leg.answered {
            leg.answered = true;
            leg.remote = resp.header("To").unwrap_or(&leg.remote).to_owned();
            if let Some(contact) = resp.header("Contact") {
                leg.remote_target = msg::uri_of(contact).to_owned();
            }
        }
        // Every 2xx (retransmissions too) gets an ACK (RFC 3261 §13.2.2.4).
        let ack = leg_request(&self.cfg, leg, "ACK", Some(1), None);
        let (origin, dest) = (leg.origin.clone(), leg.dest);
        self.out.send(&origin, dest, ack.bytes).await;
        if leg.cancelled {
            // Answered after our CANCEL: the caller no longer waits.
            tracing::info!(
                leg = leg_id,
                "the human answered after we cancelled; hanging up"
            );
            return self.end_leg(leg_id).await;
        }
        let Some(reply) = leg.reply.take() else {
            return; // a retransmitted 2xx
        };
        let peer = sdp::remote_media(resp.body);
        let (caller, target) = (leg.caller.clone(), leg.target.clone());
        let lent = match (leg.lease.take(), peer) {
            (Some(lease), Some(peer)) => {
                let RtpLease { port, rtp, rtcp } = lease;
                let release = ReturnOnDrop {
                    port,
                    rtcp: Some(rtcp),
                    client: Arc::clone(&self.cfg.rtp),
                };
                rtp.set_nonblocking(true)
                    .and_then(|()| tokio::net::UdpSocket::from_std(rtp))
                    .map(|socket| Bridge {
                        socket,
                        peer,
                        release: Box::new(release),
                    })
                    .ok()
            }
            (lease, _) => {
                leg.lease = lease;
                None
            }
        };
        match lent {
            Some(bridge) => {
                // Refused when the agent is gone: the bridge, dropped, returns the port.
                let _ = reply.send(Some(bridge));
                if let Some(call) = self.calls.get_mut(&caller) {
                    call.escalated_to = Some(target.clone());
                    let id = call.record_id.clone();
                    self.store.write(Write::EscalatedTo { id, target }).await;
                }
            }
            None => {
                tracing::warn!("the human answered without usable media; hanging up on them");
                let _ = reply.send(None);
                self.end_leg(leg_id).await;
            }
        }
    }

    /// The human did not take the call: tell the agent, free the sockets.
    async fn leg_failed(&mut self, leg_id: &str) {
        if let Some(mut leg) = self.legs.remove(leg_id) {
            if let Some(reply) = leg.reply.take() {
                let _ = reply.send(None);
            }
            self.forget_leg(leg).await;
        }
    }

    async fn forget_leg(&mut self, mut leg: Leg) {
        self.expected
            .write()
            .expect("expected peers lock")
            .remove(&leg.dest.ip());
        self.detach_leg(&mut leg).await;
    }

    /// The caller and the leg part: the caller may start another transfer,
    /// and the leg's sockets go back.
    async fn detach_leg(&mut self, leg: &mut Leg) {
        if let Some(call) = self.calls.get_mut(&leg.caller) {
            if call.leg.as_deref() == Some(leg.call_id.as_str()) {
                call.leg = None;
            }
        }
        if let Some(lease) = leg.lease.take() {
            self.cfg.rtp.close(lease).await;
        }
    }

    /// Ends the human leg from our side: BYE once answered, else CANCEL
    /// (the leg then waits for its INVITE to settle).
    pub(super) async fn end_leg(&mut self, leg_id: &str) {
        let Some(mut leg) = self.legs.remove(leg_id) else {
            return;
        };
        if let Some(reply) = leg.reply.take() {
            let _ = reply.send(None);
        }
        let (origin, dest) = (leg.origin.clone(), leg.dest);
        if leg.answered || leg.cancelled {
            leg.cseq += 1;
            let bye = leg_request(&self.cfg, &leg, "BYE", None, None);
            self.start_request(origin, dest, bye, Purpose::Bye).await;
            return self.forget_leg(leg).await;
        }
        // CANCEL repeats the INVITE's branch, Request-URI and CSeq number
        // (RFC 3261 §9.1).
        let branch = leg.key.branch.clone();
        let cancel = leg_request(&self.cfg, &leg, "CANCEL", Some(1), Some(&branch));
        self.start_request(origin, dest, cancel, Purpose::Bye).await;
        leg.cancelled = true;
        self.detach_leg(&mut leg).await;
        self.legs.insert(leg_id.to_owned(), leg);
        // Its 487 (or a crossing 2xx) normally settles it; this forgets it regardless.
        let leg = leg_id.to_owned();
        self.schedule(Event::LegRingTimeout { leg }, CANCELLED_LINGER);
    }

    pub(super) async fn leg_ring_timeout(&mut self, leg_id: &str) {
        match self.legs.get(leg_id) {
            Some(l) if l.cancelled => {
                if let Some(leg) = self.legs.remove(leg_id) {
                    self.forget_leg(leg).await;
                }
            }
            Some(l) if !l.answered => {
                tracing::info!(leg = leg_id, "nobody answered the transfer in time");
                self.end_leg(leg_id).await;
            }
            _ => {}
        }
    }

    /// A request from the human inside the leg's dialog: a BYE ends the
    /// caller's call too; anything else is not served.
    pub(super) async fn on_leg_request(
        &mut self,
        inc: super::Incoming,
        req: &Scanned<'_>,
        leg_id: &str,
    ) {
        let method = match req.start {
            StartLine::Request { method, .. } => method,
            StartLine::Response { .. } => return,
        };
        if method != "BYE" {
            let r = Reply::to(req, 501, "Not Implemented", None).finish();
            return self.respond(&inc, 501, r).await;
        }
        let r = Reply::to(req, 200, "OK", None).finish();
        self.respond(&inc, 200, r).await;
        let Some(leg) = self.legs.remove(leg_id) else {
            return;
        };
        let caller = leg.caller.clone();
        self.forget_leg(leg).await;
        self.hang_up(&caller, crate::store::Outcome::Escalated)
            .await;
    }
}

/// A request in the leg's dialog. `cseq` overrides the leg's CSeq number
/// (ACK and CANCEL use the INVITE's); `branch` reuses a branch (CANCEL).
fn leg_request(
    cfg: &super::UaConfig,
    leg: &Leg,
    method: &str,
    cseq: Option<u32>,
    branch: Option<&str>,
) -> requests::Built {
    let (host, port, _) = local_address(cfg, &leg.origin);
    let branch = branch.map_or_else(ids::branch, str::to_owned);
    let uri = if method == "CANCEL" {
        &leg.uri
    } else {
        &leg.remote_target
    };
    let mut r = String::with_capacity(512);
    let _ = write!(
        r,
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\nMax-Forwards: 70\r\n\
From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} {method}\r\nContent-Length: 0\r\n\r\n",
        leg.local,
        leg.remote,
        leg.call_id,
        cseq.unwrap_or(leg.cseq),
    );
    requests::Built {
        bytes: r.into_bytes(),
        key: ClientKey {
            branch,
            method: method.to_owned(),
        },
    }
}
