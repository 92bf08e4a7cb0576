//! The voice agent's place in the worker: the tenant's current agent
//! document (replaced by `PUT /v1/agent`, read by each new call, so a call
//! in progress keeps the document it started with), the embedded speech
//! providers (opened on the first call, not at start, so an idle worker
//! stays small), and each call's agent task, whose events become
//! transcript rows and SIP.

use std::sync::{Arc, RwLock};

use bulkhead_voice::agent::escalation::EscalationDoc;
use bulkhead_voice::agent::routing::{Opening, Route, RoutingDoc};
use bulkhead_voice::agent::{self, AgentDoc, AgentEvent, CallMedia};
use std::net::SocketAddr;

use bulkhead_voice::agent::MediaUpdate;
use bulkhead_voice::media::g711::Law;
use tokio::sync::{mpsc, oneshot, watch};

use crate::egress::EgressClient;
use crate::engines::{Engines, SpeechEngines};
use crate::providers::choose;
use crate::providers::http::ProviderHttp;
use crate::sip::rtp::{RtpClient, RtpLease};
use crate::sip::ua::{Event, Transfer};
use crate::store::writer::{Store, Write};
use crate::store::Turn;
use tokio::net::UdpSocket;

/// The documents' names in the store.
pub const DOCUMENT: &str = "agent";
pub const ESCALATION: &str = "escalation";
pub const ROUTING: &str = "routing";
#[derive(Debug)]
pub struct AgentRuntime {
    doc: RwLock<Arc<AgentDoc>>,
    escalation: RwLock<Arc<EscalationDoc>>,
    routing: RwLock<Arc<RoutingDoc>>,
    /// The embedded speech engines: opened by a call, released when quiet.
    engines: Arc<SpeechEngines>,
    /// How a network provider reaches its server.
    http: Arc<ProviderHttp>,
    /// Tests of the SIP layer run without agents.
    enabled: bool,
}

/// Stops the call's agent when dropped; tells it of a re-negotiated session.
#[derive(Debug)]
pub struct AgentHandle {
    _stop: oneshot::Sender<()>,
    updates: watch::Sender<MediaUpdate>,
}

impl AgentHandle {
    /// The caller re-negotiated the session (re-INVITE, UPDATE): a new
    /// address or codec when the offer names them, and whether we may send.
    pub fn renegotiated(&self, peer: Option<SocketAddr>, law: Option<Law>, sending: bool) {
        self.updates.send_if_modified(|m| {
            let before = *m;
            m.peer = peer.unwrap_or(m.peer);
            m.law = law.unwrap_or(m.law);
            m.sending = sending;
            *m != before
        });
    }
}

impl AgentRuntime {
    pub fn new(doc: AgentDoc, egress: Arc<EgressClient>) -> Self {
        Self {
            http: Arc::new(ProviderHttp::new(egress)),
            doc: RwLock::new(Arc::new(doc)),
            escalation: RwLock::new(Arc::new(EscalationDoc::default())),
            routing: RwLock::new(Arc::new(RoutingDoc::default())),
            engines: Arc::default(),
            enabled: true,
        }
    }

    /// A runtime that starts no agent (the user agent's own tests).
    #[cfg(test)]
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::new(AgentDoc::default(), Arc::new(EgressClient::direct()))
        }
    }

    pub fn current(&self) -> Arc<AgentDoc> {
        self.doc.read().expect("agent doc lock").clone()
    }

    /// The next call uses `doc`; calls in progress keep theirs.
    pub fn replace(&self, doc: AgentDoc) {
        *self.doc.write().expect("agent doc lock") = Arc::new(doc);
    }

    pub fn escalation(&self) -> Arc<EscalationDoc> {
        self.escalation.read().expect("escalation doc lock").clone()
    }

    /// The next transfer uses `doc`.
    pub fn replace_escalation(&self, doc: EscalationDoc) {
        *self.escalation.write().expect("escalation doc lock") = Arc::new(doc);
    }

    pub fn routing(&self) -> Arc<RoutingDoc> {
        self.routing.read().expect("routing doc lock").clone()
    }

    /// The next call is routed by `doc`.
    pub fn replace_routing(&self, doc: RoutingDoc) {
        *self.routing.write().expect("routing doc lock") = Arc::new(doc);
    }

    /// How a call arriving now starts, with `active` calls in progress.
    pub fn route(&self, active: usize) -> Route {
        self.routing().route(jiff::Timestamp::now(), active)
    }

    /// The speech engines, opened by the first call that needs them.
    async fn voices(&self) -> Engines {
        self.engines.get().await
    }

    /// The engines' cell, for the worker's quiet-time check.
    pub fn engines(&self) -> Arc<SpeechEngines> {
        Arc::clone(&self.engines)
    }

    /// Starts the agent on an answered call, handing it the call's RTP
    /// sockets: the agent task returns them to the supervisor only once it
    /// has closed them, so a port is never handed out while still bound.
    /// `record` is the call record's id, `call_id` the SIP Call-ID (for
    /// hanging up). A disabled runtime gives the sockets back.
    #[expect(clippy::too_many_arguments, reason = "one call's facts, passed once")]
    pub fn start_call(
        self: &Arc<Self>,
        store: Store,
        record: String,
        call_id: String,
        lease: RtpLease,
        call: CallSetup,
        rtp: Arc<RtpClient>,
        ua: mpsc::Sender<Event>,
    ) -> Result<AgentHandle, RtpLease> {
        if !self.enabled {
            return Err(lease);
        }
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (updates, updates_rx) = watch::channel(MediaUpdate {
            peer: call.peer,
            law: call.law,
            sending: true,
        });
        let runtime = Arc::clone(self);
        let running = self.engines.call_started();
        tokio::spawn(async move {
            // The call's agent runs until this task ends.
            let _running = running;
            let RtpLease {
                port,
                rtp: socket,
                rtcp,
            } = lease;
            let agent = async {
                let tokio_socket = |s: std::net::UdpSocket| {
                    s.set_nonblocking(true)
                        .and_then(|()| UdpSocket::from_std(s))
                };
                let (socket, rtcp) = match (tokio_socket(socket), tokio_socket(rtcp)) {
                    (Ok(rtp), Ok(rtcp)) => (rtp, rtcp),
                    (Err(e), _) | (_, Err(e)) => {
                        return tracing::warn!(error = %e, "cannot use the call's RTP sockets")
                    }
                };
                let media = CallMedia {
                    socket,
                    peer: call.peer,
                    law: call.law,
                    dtmf_pt: call.dtmf_pt,
                    updates: Some(updates_rx),
                    rtcp: Some(rtcp),
                };
                let doc = runtime.current();
                let escalation = runtime.escalation();
                let (tts, stt) = runtime.voices().await;
                let targets = escalation.targets.iter().map(|t| t.name.clone()).collect();
                let (voices, providers) = choose(&doc, &tts, &stt, targets, &runtime.http);
                store
                    .write(Write::Providers {
                        call: record.clone(),
                        json: providers.to_string(),
                    })
                    .await;
                let (events_tx, events_rx) = mpsc::channel(64);
                // The relay outlives the agent, so no turn is lost at hang-up.
                let facts = Relay {
                    store,
                    record,
                    call_id,
                    escalation,
                    ua,
                    providers,
                };
                tokio::spawn(relay(events_rx, facts));
                agent::run(doc, voices, media, call.opening, events_tx).await;
            };
            // The call ending drops the agent, and its sockets with it.
            tokio::select! {
                () = agent => {}
                _ = stop_rx => {}
            }
            rtp.close_port(port).await;
        });
        Ok(AgentHandle {
            _stop: stop_tx,
            updates,
        })
    }
}

/// What the agent needs to know about the call: its media, and how it opens.
#[derive(Debug, Clone)]
pub struct CallSetup {
    pub peer: std::net::SocketAddr,
    pub law: bulkhead_voice::media::g711::Law,
    pub dtmf_pt: Option<u8>,
    pub opening: Opening,
}

/// A transcript row for the call record `record`.
pub fn turn(
    record: &str,
    speaker: &str,
    text: String,
    at_ms: u64,
    latency_ms: Option<u64>,
) -> Write {
    Write::Turn {
        call: record.to_owned(),
        turn: Turn {
            speaker: speaker.to_owned(),
            text,
            at_ms: at_ms as i64,
            latency_ms: latency_ms.map(|l| l as i64),
        },
    }
}

/// One call's facts the relay needs.
struct Relay {
    store: Store,
    record: String,
    call_id: String,
    escalation: Arc<EscalationDoc>,
    ua: mpsc::Sender<Event>,
    /// The record's `providers`, amended when a layer falls back mid-call.
    providers: serde_json::Value,
}

/// Turns the agent's events into transcript rows and SIP actions.
async fn relay(mut events: mpsc::Receiver<AgentEvent>, mut call: Relay) {
    let (store, record) = (call.store.clone(), call.record.clone());
    while let Some(event) = events.recv().await {
        match event {
            AgentEvent::Turn {
                speaker,
                text,
                at_ms,
                latency_ms,
            } => {
                store
                    .write(turn(&record, speaker.as_str(), text, at_ms, latency_ms))
                    .await
            }
            AgentEvent::Escalate {
                reason,
                summary,
                target,
                at_ms,
                done,
            } => {
                // The model may name a target; an unknown name gets the default.
                let named = target
                    .as_deref()
                    .and_then(|n| call.escalation.targets.iter().find(|t| t.name == n));
                let Some(chosen) = named.or_else(|| call.escalation.target()).cloned() else {
                    let text = format!(
                        "transfer requested ({reason}); no escalation target is configured"
                    );
                    store
                        .write(turn(&record, "system", text, at_ms, None))
                        .await;
                    let _ = done.send(None);
                    continue;
                };
                let text = format!("transferring to {} ({reason})", chosen.name);
                store
                    .write(turn(&record, "system", text, at_ms, None))
                    .await;
                let transfer = Transfer {
                    call_id: call.call_id.clone(),
                    target: chosen,
                    reason,
                    summary,
                    reply: done,
                };
                let _ = call.ua.send(Event::Transfer(transfer)).await;
            }
            AgentEvent::Fallback { layer, reason } => {
                call.providers["fallback"][layer] = serde_json::json!(reason);
                store
                    .write(Write::Providers {
                        call: record.clone(),
                        json: call.providers.to_string(),
                    })
                    .await;
            }
            AgentEvent::Media(stats) => {
                let json = serde_json::to_string(&stats).expect("serializable");
                let call = record.clone();
                store.write(Write::Media { call, json }).await;
            }
            AgentEvent::HangUp => {
                let _ = call
                    .ua
                    .send(Event::AgentHangUp {
                        call_id: call.call_id.clone(),
                    })
                    .await;
            }
        }
    }
}
