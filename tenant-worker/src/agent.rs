//! The voice agent's place in the worker: the tenant's current agent
//! document (replaced by `PUT /v1/agent`, read by each new call, so a call
//! in progress keeps the document it started with), the embedded speech
//! providers (opened on the first call, not at start, so an idle worker
//! stays small), and each call's agent task, whose events become
//! transcript rows and SIP.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bulkhead_voice::agent::escalation::EscalationDoc;
use bulkhead_voice::agent::routing::{Opening, Route, RoutingDoc};
use bulkhead_voice::agent::{self, AgentDoc, AgentEvent, CallMedia};
use bulkhead_voice::speech::espeak::Espeak;
use bulkhead_voice::speech::sphinx::Sphinx;
use std::net::SocketAddr;

use bulkhead_voice::agent::MediaUpdate;
use bulkhead_voice::media::g711::Law;
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::egress::EgressClient;
use crate::providers::http::ProviderHttp;
use crate::providers::{choose, Opened};
use crate::sip::rtp::{RtpClient, RtpLease};
use crate::sip::ua::{Event, Transfer};
use crate::store::writer::{Store, Write};
use crate::store::Turn;
use tokio::net::UdpSocket;

/// The documents' names in the store.
pub const DOCUMENT: &str = "agent";
pub const ESCALATION: &str = "escalation";
pub const ROUTING: &str = "routing";
/// Decoder threads: each holds 28 MiB of model, and one decodes an
/// utterance in ~0.1–0.2× real time (BENCHMARKS.md has the concurrency this
/// carries), so one per worker.
const DECODERS: usize = 1;

/// The memory limit (RLIMIT_DATA, set from `limits.memory`) below which a
/// provider is not opened. A worker with both open after 20 calls: 51 MB
/// of VmData, 50 MB resident (docs/voice.md).
const TTS_NEEDS: u64 = 32 << 20;
const STT_NEEDS: u64 = 80 << 20;

/// The worker's data limit in bytes (unlimited: `u64::MAX`), read from
/// `/proc/self/limits`: seccomp does not allow `prlimit64`, and a failed
/// call must not read as "unlimited".
fn data_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    parse_data_limit(&limits).unwrap_or(0)
}

/// The soft "Max data size" of a `/proc/PID/limits` text.
fn parse_data_limit(limits: &str) -> Option<u64> {
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max data size"))?
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// Opens the embedded speech engines. The C libraries do not survive a
/// failed allocation (a NULL dereference kills the worker), so they are
/// opened only when the tenant's memory limit leaves them room.
fn open_voices() -> (Opened<Espeak>, Opened<Sphinx>) {
    let room = data_limit();
    let tts = if room < TTS_NEEDS {
        Err(too_small("espeak-ng", room, TTS_NEEDS))
    } else {
        Espeak::shared().map_err(|e| e.to_string())
    };
    let stt = if room < STT_NEEDS {
        Err(too_small("PocketSphinx", room, STT_NEEDS))
    } else {
        Sphinx::start(DECODERS).map_err(|e| e.to_string())
    };
    for e in [tts.as_ref().err(), stt.as_ref().err()]
        .into_iter()
        .flatten()
    {
        tracing::warn!(error = %e, "an embedded speech provider is unavailable");
    }
    (tts, stt)
}

fn too_small(what: &str, room: u64, needs: u64) -> String {
    format!(
        "{what} needs a memory limit of at least {} MiB; this tenant's is {} MiB (raise limits.memory)",
        needs >> 20,
        room >> 20
    )
}

#[derive(Debug)]
pub struct AgentRuntime {
    doc: RwLock<Arc<AgentDoc>>,
    escalation: RwLock<Arc<EscalationDoc>>,
    routing: RwLock<Arc<RoutingDoc>>,
    /// Opened once, on one blocking thread that the first call starts and
    /// that outlives it; calls wait for it without a thread of their own.
    voices: Arc<OnceLock<(Opened<Espeak>, Opened<Sphinx>)>>,
    /// The load has started.
    voices_started: AtomicBool,
    /// Told once the load is over (`voices` is set).
    voices_opened: Arc<Notify>,
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
            voices: Arc::default(),
            voices_started: AtomicBool::new(false),
            voices_opened: Arc::default(),
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

    /// The speech engines, once opened: the first call starts the load,
    /// every call waits for it, and later calls only clone them. Waiting
    /// on a blocking thread each (a trip through the pool per call) grew
    /// the pool to its 16 threads in a 200-call burst on a fresh worker,
    /// and was 9% of the user agent's thread in a capacity profile.
    async fn voices(&self) -> (Opened<Espeak>, Opened<Sphinx>) {
        loop {
            // Registered before the check, so the load's end is not missed.
            let opened = self.voices_opened.notified();
            if let Some(voices) = self.voices.get() {
                return voices.clone();
            }
            if !self.voices_started.swap(true, Ordering::AcqRel) {
                self.start_opening_voices();
            }
            opened.await;
        }
    }

    /// One blocking thread opens the engines; a task waits for it, so the
    /// load ends (and is told) even if every call waiting for it has ended.
    fn start_opening_voices(&self) {
        let cell = Arc::clone(&self.voices);
        let opened = Arc::clone(&self.voices_opened);
        let load = tokio::task::spawn_blocking({
            let cell = Arc::clone(&cell);
            move || {
                cell.get_or_init(open_voices);
            }
        });
        tokio::spawn(async move {
            if let Err(e) = load.await {
                let _ = cell.set((Err(e.to_string()), Err(e.to_string())));
            }
            opened.notify_waiters();
        });
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
        tokio::spawn(async move {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
Max cpu time              unlimited            unlimited            seconds\n\
Max data size             67108864             67108864             bytes\n";
        assert_eq!(parse_data_limit(text), Some(64 << 20));
        let unlimited = text.replace(
            "67108864             67108864",
            "unlimited            unlimited",
        );
        assert_eq!(parse_data_limit(&unlimited), Some(u64::MAX));
        assert_eq!(parse_data_limit("garbage"), None);
        // This process can read its own.
        assert!(data_limit() > 0);
    }

    /// The first caller starts the load and may hang up before it ends
    /// (its call over); everyone else still gets the engines, from one load.
    #[test]
    fn callers_share_one_load_that_outlives_the_caller_that_started_it() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let runtime = Arc::new(AgentRuntime::new(
                AgentDoc::default(),
                Arc::new(EgressClient::direct()),
            ));
            let first = tokio::spawn({
                let r = Arc::clone(&runtime);
                async move { r.voices().await }
            });
            while !runtime.voices_started.load(Ordering::Acquire) {
                tokio::task::yield_now().await;
            }
            first.abort();
            let callers: Vec<_> = (0..200)
                .map(|i| {
                    let r = Arc::clone(&runtime);
                    tokio::spawn(async move {
                        let (tts, stt) = r.voices().await;
                        (i, tts.is_ok(), stt.is_ok())
                    })
                })
                .collect();
            // Half of them hang up while waiting.
            tokio::task::yield_now().await;
            for c in callers.iter().step_by(2) {
                c.abort();
            }
            let wait = async {
                let mut done = Vec::new();
                for c in callers {
                    if let Ok(got) = c.await {
                        done.push(got);
                    }
                }
                done
            };
            let done = tokio::time::timeout(std::time::Duration::from_secs(60), wait)
                .await
                .expect("callers still waiting for the engines");
            assert!(done.len() >= 100, "{} of 200 callers finished", done.len());
            let opened = runtime.voices.get().expect("the load set the cell");
            let want = (opened.0.is_ok(), opened.1.is_ok());
            assert!(done.iter().all(|(_, tts, stt)| (*tts, *stt) == want));
        });
    }
}
