//! The user agent: one task that owns every call's state and handles events
//! in arrival order, so a call's responses leave in the order they were
//! made (a 180 never overtakes its 200).
//!
//! Layers, each using only the ones before it: [`super::msg`] (messages) →
//! [`super::transport`] (flows) → [`super::txn`] (transactions: a
//! retransmitted request gets the stored response; our own requests are
//! retransmitted until answered) → dialogs and calls here ([`dialog`],
//! [`invite`]).

mod admit;
#[cfg(test)]
mod busy_tests;
mod dialog;
mod escalate;
#[cfg(test)]
mod escalate_tests;
mod grid;
pub(crate) mod ids;
mod invite;
mod linger;
mod refer;
#[cfg(test)]
mod refer_tests;
mod requests;
#[cfg(test)]
mod router_slot_tests;
#[cfg(test)]
mod tests;
mod transactions;

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bulkhead_shared::backlog::Backlog;
use bulkhead_shared::rate::Occurrences;
use bulkhead_shared::Number;
use tokio::sync::mpsc;

use super::auth::Nonces;
use super::msg::{self, validate, Reply, Scanned, StartLine};
use super::policy;
use super::rtp::RtpClient;
use super::transport::{Expected, Origin, Outbound, SharedTrunk};
use super::txn::{self, ClientKey, ServerKey, Timer};
use crate::agent::AgentRuntime;
use crate::store::writer::Store;
use bulkhead_voice::agent::escalation::TransferMethod;
use dialog::Call;
use transactions::{ClientEntry, Purpose, ServerEntry, ServerTxn};

/// How long a finished call's state is kept for late in-dialog requests.
pub const LINGER: Duration = txn::SIXTY_FOUR_T1;

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
    /// Resend an unacknowledged 2xx, or give up on its ACK (RFC 3261 §13.3.1.4).
    Retransmit2xx {
        call_id: String,
        cseq: u32,
        interval: Duration,
    },
    ServerTimer {
        key: ServerKey,
        timer: Timer,
    },
    ClientTimer {
        key: ClientKey,
        timer: Timer,
    },
    /// A call's session timer (RFC 4028 §10) or, without one, its dialog
    /// probe is due; stale generations are ignored.
    DialogTimer {
        call_id: String,
        generation: u64,
    },
    /// The oldest ended call's linger may be over: forget the calls due.
    Expire,
    /// The voice agent finished the call: hang up.
    AgentHangUp {
        call_id: String,
    },
    /// The voice agent asks for the caller to be put through to a person.
    Transfer(Transfer),
    /// A REFER's final NOTIFY is overdue.
    ReferTimeout {
        call_id: String,
    },
    /// A new call's record is on disk and its media sockets are open (or not).
    Admitted(admit::Admission),
    /// A call's end is on disk: the caller's BYE gets its 200.
    ByeRecorded(admit::ByeRecorded),
    /// A timer of the INVITE transaction to the human.
    LegTimer {
        leg: String,
        timer: Timer,
    },
    /// The human's phone rang too long.
    LegRingTimeout {
        leg: String,
    },
}

pub use escalate::Transfer;

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
    /// Who may call on the trunk port (the transport enforces the source
    /// list; the user agent the credentials).
    pub trunk: SharedTrunk,
    /// The voice agent each answered call gets.
    pub agent: Arc<AgentRuntime>,
    /// Sources outside the trunk allowlist admitted because we called
    /// them (escalation destinations while a transfer is up).
    pub expected: Expected,
}

/// Where a request came from, and its transaction (when it has one).
#[derive(Debug, Clone)]
struct Incoming {
    origin: Origin,
    dest: SocketAddr,
    key: Option<ServerKey>,
}

/// The user agent's state.
#[derive(Debug)]
pub struct Ua {
    cfg: UaConfig,
    store: Store,
    out: Outbound,
    events: mpsc::Sender<Event>,
    /// Its events queued, as new calls find them (invite.rs).
    behind: Backlog,
    calls: HashMap<String, Call>,
    /// How many of `calls` are not over: the tenant's concurrent calls,
    /// kept as a count because `calls` also holds the ended ones lingering.
    live_calls: usize,
    /// The ended calls in `calls`, oldest first.
    lingering: linger::Lingering,
    /// INVITEs whose record is being committed, by Call-ID.
    pending: HashMap<String, admit::PendingInvite>,
    /// Calls whose end is being committed before their BYE's 200.
    ending: HashSet<String>,
    /// Calls the router admitted under the tenant's concurrent-call limit
    /// and that have not been reported over yet (see [`Ua::settle`]).
    router_slots: HashSet<String>,
    /// Router slots that may have ended during the current event: each
    /// place a slot is taken or a call leaves `pending`, `ending` or
    /// `calls`, or ends, names its Call-ID here for [`Ua::settle`].
    slot_checks: Vec<String>,
    servers: HashMap<ServerKey, ServerEntry>,
    /// Most server transactions kept ([`transactions::MAX_SERVER_TRANSACTIONS`];
    /// tests lower it).
    max_servers: usize,
    /// Requests answered statelessly because `servers` was full.
    table_full: Occurrences,
    /// Ended calls forgotten early because `lingering` was full.
    lingering_full: Occurrences,
    clients: HashMap<ClientKey, ClientEntry>,
    /// Digest nonces issued on the trunk.
    nonces: Nonces,
    /// Calls to the tenant's human destination, by their Call-ID.
    legs: HashMap<String, escalate::Leg>,
    expected: Expected,
}

impl Ua {
    pub fn new(cfg: UaConfig, store: Store, out: Outbound, events: mpsc::Sender<Event>) -> Self {
        let cfg_expected = Arc::clone(&cfg.expected);
        let behind = invite::events_backlog(events.max_capacity());
        Self {
            cfg,
            store,
            out,
            events,
            behind,
            calls: HashMap::new(),
            live_calls: 0,
            lingering: linger::Lingering::new(linger::MAX_LINGERING),
            pending: HashMap::new(),
            ending: HashSet::new(),
            router_slots: HashSet::new(),
            slot_checks: Vec::new(),
            servers: HashMap::new(),
            max_servers: transactions::MAX_SERVER_TRANSACTIONS,
            table_full: Occurrences::new(transactions::TABLE_FULL_LOG_EVERY),
            lingering_full: Occurrences::new(transactions::TABLE_FULL_LOG_EVERY),
            clients: HashMap::new(),
            nonces: Nonces::default(),
            legs: HashMap::new(),
            expected: Arc::clone(&cfg_expected),
        }
    }

    /// Runs until every event sender is gone.
    pub async fn run(mut self, mut rx: mpsc::Receiver<Event>) {
        while let Some(ev) = rx.recv().await {
            self.handle(ev).await;
        }
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::Inbound { origin, data } => self.on_message(origin, &data).await,
            Event::Answer { call_id } => self.answer(&call_id).await,
            Event::Admitted(a) => self.on_admitted(a).await,
            Event::ByeRecorded(b) => self.on_bye_recorded(b).await,
            Event::Transfer(t) => match t.target.transfer {
                TransferMethod::Refer => self.start_refer(t).await,
                TransferMethod::Bridge => self.start_transfer(t).await,
            },
            Event::ReferTimeout { call_id } => self.refer_timeout(&call_id).await,
            Event::LegTimer { leg, timer } => self.on_leg_timer(&leg, timer).await,
            Event::LegRingTimeout { leg } => self.leg_ring_timeout(&leg).await,
            Event::AgentHangUp { call_id } => {
                self.hang_up(&call_id, crate::store::Outcome::Completed)
                    .await
            }
            Event::Retransmit2xx {
                call_id,
                cseq,
                interval,
            } => self.retransmit_2xx(&call_id, cseq, interval).await,
            Event::ServerTimer { key, timer } => {
                let outs = match self.servers.get_mut(&key).map(|e| &mut e.txn) {
                    Some(ServerTxn::Invite(t)) => t.on_timer(timer),
                    Some(ServerTxn::NonInvite(t)) => t.on_timer(timer),
                    None => return,
                };
                self.run_server(&key, outs).await;
            }
            Event::ClientTimer { key, timer } => {
                let Some(entry) = self.clients.get_mut(&key) else {
                    return;
                };
                let outs = entry.txn.on_timer(timer);
                if let Some((purpose, code)) = self.run_client(&key, outs, None).await {
                    self.request_answered(&purpose, code).await;
                }
            }
            Event::DialogTimer {
                call_id,
                generation,
            } => self.dialog_timer_due(&call_id, generation).await,
            Event::Expire => {
                let now = tokio::time::Instant::now();
                while let Some(call_id) = self.lingering.pop_expired(now) {
                    self.forget(call_id);
                }
                self.lingering.shrink_when_sparse();
                if let Some(at) = self.lingering.next_expiry() {
                    self.schedule_housekeeping(Event::Expire, at.saturating_duration_since(now));
                }
            }
        }
        self.settle().await;
    }

    /// Tells the router about every admitted call that is over, whichever
    /// way it ended (hung up, cancelled, refused, never acknowledged), so
    /// its slot under the concurrent-call limit is free again. Runs after
    /// every event and checks the slots [`Ua::slot_may_be_free`] named
    /// during it: checking every slot after every event cost a lookup per
    /// call in progress per event, a quarter of the user agent's time with
    /// 200 calls at once (BENCHMARKS.md). Debug builds (the tests) still
    /// check every slot, so an end path that names no slot fails them.
    async fn settle(&mut self) {
        let mut over = Vec::new();
        for id in std::mem::take(&mut self.slot_checks) {
            if !self.is_live(&id) && self.router_slots.remove(&id) {
                over.push(id);
            }
        }
        debug_assert!(
            self.router_slots.iter().all(|id| self.is_live(id)),
            "a call ended without naming its router slot (slot_may_be_free)"
        );
        debug_assert_eq!(
            self.live_calls,
            self.calls.values().filter(|c| !c.is_over()).count(),
            "the count of calls in progress drifted"
        );
        for call_id in over {
            self.out.call_ended(call_id).await;
        }
    }

    /// Whether `call_id` still holds its router slot: being admitted, in
    /// progress, or with its end being committed.
    fn is_live(&self, call_id: &str) -> bool {
        self.calls.get(call_id).is_some_and(|c| !c.is_over())
            || self.pending.contains_key(call_id)
            || self.ending.contains(call_id)
    }

    /// `call_id` took a router slot, or may have stopped needing one: the
    /// next [`Ua::settle`] checks it.
    fn slot_may_be_free(&mut self, call_id: String) {
        if self.router_slots.contains(&call_id) {
            self.slot_checks.push(call_id);
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
            return self.on_response(&req, data).await;
        };
        let via = msg::top_via(&req);
        let dest = msg::response_target(via.as_ref(), origin.peer());
        let stateless = Incoming {
            origin: origin.clone(),
            dest,
            key: None,
        };
        let Some(call_id) = req.call_id().map(str::to_owned) else {
            return self.reply(&stateless, &req, 400, "Missing Call-ID").await;
        };
        if method == "INVITE"
            && matches!(origin, Origin::Router { .. })
            && req.header("To").and_then(Scanned::tag_of).is_none()
        {
            // The router counted this INVITE under the tenant's
            // concurrent-call limit. The slot is ours to give back however
            // the INVITE is answered, a 400 or 420 below included; a
            // retransmission names the slot its call already holds.
            self.router_slots.insert(call_id.clone());
            self.slot_may_be_free(call_id.clone());
        }
        if req.cseq().is_none() || via.is_none() {
            let reason = "Missing or Malformed CSeq or Via";
            return self.reply(&stateless, &req, 400, reason).await;
        }
        let key = txn::server_key(&req, origin.peer().ip());
        if method == "ACK" {
            return self.on_ack_request(&req, key, &call_id).await;
        }
        let Some(key) = key else {
            return self.reply(&stateless, &req, 400, "Malformed Via").await;
        };
        if let Some(entry) = self.servers.get_mut(&key) {
            let outs = match &mut entry.txn {
                ServerTxn::Invite(t) => t.on_retransmission(),
                ServerTxn::NonInvite(t) => t.on_retransmission(),
            };
            return self.run_server(&key, outs).await;
        }
        let inc = self.open_server_transaction(origin, dest, key, method == "INVITE");
        if self.legs.contains_key(&call_id) {
            return self.on_leg_request(inc, &req, &call_id).await;
        }
        if version != "SIP/2.0" {
            return self.reply(&inc, &req, 505, "Version Not Supported").await;
        }
        if let Err(invalid) = validate::request(&req) {
            return self.reply(&inc, &req, invalid.code, invalid.reason).await;
        }
        if let Err(refused) = policy::check_require(&req) {
            return self.refuse(&inc, &req, refused).await;
        }
        let branch = via.and_then(|v| v.branch).unwrap_or("").to_owned();
        match method {
            "INVITE" => self.on_invite(inc, &req, data, call_id, branch).await,
            "BYE" => self.on_bye(inc, &req, &call_id).await,
            "CANCEL" => self.on_cancel(inc, &req, &call_id, &branch).await,
            "UPDATE" => self.on_update(inc, &req, &call_id).await,
            "NOTIFY" => self.on_notify(inc, &req, &call_id).await,
            "OPTIONS" => {
                let r = Reply::to(&req, 200, "OK", Some(&ids::tag()))
                    .header("Allow", msg::ALLOW)
                    .header("Accept", policy::SDP)
                    .header("Supported", policy::SUPPORTED)
                    .finish();
                self.respond(&inc, 200, r).await;
            }
            "REGISTER" => self.not_served(&inc, &req, 405, "Method Not Allowed").await,
            _ => self.not_served(&inc, &req, 501, "Not Implemented").await,
        }
    }

    /// An ACK: for a non-2xx it ends its INVITE transaction's wait; for a
    /// 2xx it confirms the dialog. Never answered.
    async fn on_ack_request(&mut self, req: &Scanned<'_>, key: Option<ServerKey>, call_id: &str) {
        if validate::request(req).is_err() {
            return;
        }
        if let Some(key) = key {
            if let Some(ServerTxn::Invite(t)) = self.servers.get_mut(&key).map(|e| &mut e.txn) {
                let outs = t.on_ack();
                self.run_server(&key, outs).await;
            }
        }
        self.on_ack(req, call_id);
    }

    /// A response: it belongs to one of our requests, or it is stray.
    async fn on_response(&mut self, resp: &Scanned<'_>, raw: &[u8]) {
        let StartLine::Response { code, .. } = resp.start else {
            return;
        };
        if self.on_leg_response(resp, raw).await {
            return;
        }
        let Some(key) = txn::client_key(resp) else {
            return;
        };
        let Some(entry) = self.clients.get_mut(&key) else {
            return; // stray
        };
        let outs = entry.txn.on_response(code);
        if let Some((purpose, code)) = self.run_client(&key, outs, Some(code)).await {
            self.request_answered(&purpose, code).await;
        }
    }

    async fn reply(&mut self, inc: &Incoming, req: &Scanned<'_>, code: u16, reason: &str) {
        let r = Reply::to(req, code, reason, Some(&ids::tag())).finish();
        self.respond(inc, code, r).await;
    }

    /// 405 or 501, with the methods we do serve.
    async fn not_served(&mut self, inc: &Incoming, req: &Scanned<'_>, code: u16, reason: &str) {
        let r = Reply::to(req, code, reason, Some(&ids::tag()))
            .header("Allow", msg::ALLOW)
            .finish();
        self.respond(inc, code, r).await;
    }

    /// Answers with a refusal and the header saying what we support.
    async fn refuse(&mut self, inc: &Incoming, req: &Scanned<'_>, refused: policy::Refusal) {
        let (name, value) = &refused.header;
        let r = Reply::to(req, refused.code, refused.reason, Some(&ids::tag()))
            .header(name, value)
            .finish();
        self.respond(inc, refused.code, r).await;
    }

    /// The final outcome of one of our requests (`None`: no answer at all).
    async fn request_answered(&mut self, purpose: &Purpose, code: Option<u16>) {
        match purpose {
            Purpose::Bye => tracing::debug!(?code, "our BYE was answered"),
            Purpose::Probe { call_id } => {
                if matches!(code, None | Some(408 | 481)) {
                    tracing::info!(?code, %call_id, "the caller's dialog is gone; ending the call");
                    self.hang_up(call_id, crate::store::Outcome::Failed).await;
                } else {
                    self.arm_dialog_timer(call_id); // any other answer: alive
                }
            }
            Purpose::Refer { call_id } => self.refer_answered(call_id, code).await,
            Purpose::Refresh { call_id } => {
                if code.is_some_and(|c| (200..300).contains(&c)) {
                    self.arm_dialog_timer(call_id);
                } else {
                    tracing::info!(?code, %call_id, "session refresh failed; ending the call");
                    self.hang_up(call_id, crate::store::Outcome::Failed).await;
                }
            }
        }
    }

    fn owns(&self, n: &Number) -> bool {
        self.cfg.numbers.read().expect("numbers lock").contains(n)
    }

    /// Sends `ev` to this user agent after `after`; the handle stops it.
    fn schedule(&self, ev: Event, after: Duration) -> tokio::task::AbortHandle {
        self.schedule_at(ev, tokio::time::Instant::now() + after)
    }

    fn schedule_at(&self, ev: Event, at: tokio::time::Instant) -> tokio::task::AbortHandle {
        let events = self.events.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let _ = events.send(ev).await;
        })
        .abort_handle()
    }

    /// Keeps an ended call for late requests, [`LINGER`] long (or less,
    /// once [`linger::MAX_LINGERING`] calls are kept).
    fn linger(&mut self, call_id: String) {
        let first = self.lingering.len() == 0;
        if let Some(oldest) = self.lingering.push(call_id, tokio::time::Instant::now()) {
            if let Some(calls) = self.lingering_full.count(std::time::Instant::now()) {
                tracing::warn!(
                    calls,
                    "{} ended calls kept for late requests; forgetting the oldest early",
                    linger::MAX_LINGERING
                );
            }
            self.forget(oldest);
        }
        if first {
            self.schedule_housekeeping(Event::Expire, LINGER);
        }
    }

    /// Drops an ended call's state.
    fn forget(&mut self, call_id: String) {
        if self.calls.get(&call_id).is_some_and(Call::is_over) {
            self.calls.remove(&call_id);
            bulkhead_shared::room::shrink_when_sparse(&mut self.calls, transactions::KEEP);
            self.slot_may_be_free(call_id);
        }
    }
}

/// The Request-URI of a request.
fn uri_of_request<'a>(req: &Scanned<'a>) -> &'a str {
    match req.start {
        StartLine::Request { uri, .. } => uri,
        StartLine::Response { .. } => "",
    }
}

/// Our address and port as seen on `origin`'s flow, and whether it is TCP.
fn local_address(cfg: &UaConfig, origin: &Origin) -> (String, u16, bool) {
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
    (host, port, tcp)
}
