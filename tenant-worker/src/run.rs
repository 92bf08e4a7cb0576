//! The worker's start-up sequence, in order, and its life afterwards.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use bulkhead_shared::ipc::message::{Control, ControlOp, Ready};
use bulkhead_shared::ipc::{FromWorker, Link, ToWorker, MAX_FRAME};
use bulkhead_shared::time::now_rfc3339;
use tokio::sync::mpsc;

use crate::agent::{self, AgentRuntime};
use crate::bootstrap::{self, Start};
use crate::egress::EgressClient;
use crate::harden;
use crate::http::{self, ApiState};
use crate::sip::rtp::RtpClient;
use crate::sip::transport::{self, Outbound};
use crate::sip::ua::{Event, Ua, UaConfig};
use crate::store::{self, writer::Store};
use crate::uplink::Uplink;
use bulkhead_voice::agent::escalation::EscalationDoc;
use bulkhead_voice::agent::routing::RoutingDoc;

use bulkhead_shared::ipc::message::STORE_FILE;

pub fn main() -> anyhow::Result<()> {
    // Phases of the start, logged with "worker serving" (the supervisor
    // logs the whole start; these say where the worker's part went).
    let began = Instant::now();
    // 1. Inputs from the supervisor, before anything else runs.
    let start = bootstrap::receive()?;
    let cfg = start.boot.config.clone();
    init_logging(&cfg.log_filter);
    if let Some(spec) = &cfg.probe {
        return run_probes(start, spec);
    }
    tracing::info!(tenant = %cfg.tenant_id, "worker starting");

    // Files the worker creates (store, WAL) are its uid's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));

    // 2. The store, opened with the tenant's key; the key is zeroized when
    //    `start.boot` drops at the end of this block.
    //    A pending key means a rotation was under way: whichever key opens
    //    the store is reported in `Ready`, and the registry follows it.
    let path = cfg.data_dir.join(STORE_FILE);
    let (writer, reader, store_key) = store::rekey::open_with_either(
        &path,
        &start.boot.data_key,
        start.boot.pending_key.as_ref(),
    )?;
    let store_opened = began.elapsed();
    let interrupted = store::mark_interrupted(&writer, &now_rfc3339())?;
    if interrupted > 0 {
        tracing::warn!(
            calls = interrupted,
            "calls left in progress by a previous run marked failed"
        );
    }
    let Start {
        link,
        boot,
        sip_udp,
        sip_tcp,
        http: http_listener,
    } = start;
    drop(boot);

    // 3. Restrict ourselves: no thread exists yet, and nothing untrusted
    //    has been read (the store is open; the sockets are still silent).
    let hardened = harden::apply(&cfg.data_dir, harden::Layers::ALL)?;
    tracing::info!(landlock = ?hardened.landlock, "hardened");
    let hardened_at = began.elapsed();

    //    What the tenant stored, read now on the reader (after hardening:
    //    these are the tenant's bytes) rather than one trip through the
    //    store's blocking pool each. A document that does not read is
    //    logged and the worker serves without it (as for one that does not
    //    parse); tokens that do not read stop the start.
    let document = |name: &'static str| {
        store::document_now(&reader, name)
            .inspect_err(
                |e| tracing::error!(tenant = %cfg.tenant_id, document = name, error = %e, "cannot read a stored document; serving without it"),
            )
            .ok()
            .flatten()
    };
    let agent_doc = document(agent::DOCUMENT);
    let escalation_doc = document(agent::ESCALATION);
    let routing_doc = document(agent::ROUTING);
    let tls_doc = document(http::tls::DOCUMENT);
    let live_tokens =
        store::live_tokens_now(&reader).context("failed to read the tenant's API tokens")?;

    // 4. The runtime. One thread: a tenant's traffic is small, and a worker
    //    per tenant on a shared machine should stay light.
    let (store, store_writer) = Store::start(writer, reader);
    let rt = tokio::runtime::Builder::new_current_thread()
        // Store reads only; well under the sandbox's task limit (RLIMIT_NPROC).
        .max_blocking_threads(16)
        .enable_all()
        .build()
        .context("failed to build the runtime")?;
    let result = rt.block_on(async move {
        let link = Arc::new(Link::new(link)?);
        let uplink = Uplink::start(Arc::clone(&link));
        sip_udp.set_nonblocking(true)?;
        sip_tcp.set_nonblocking(true)?;
        http_listener.set_nonblocking(true)?;
        let udp = Arc::new(tokio::net::UdpSocket::from_std(sip_udp)?);
        let tcp = tokio::net::TcpListener::from_std(sip_tcp)?;
        let http_listener = tokio::net::TcpListener::from_std(http_listener)?;

        let store = store;
        let numbers = Arc::new(RwLock::new(cfg.numbers.clone()));
        let trunk: transport::SharedTrunk = Arc::new(RwLock::new(cfg.trunk.clone()));
        let (events_tx, events_rx) = mpsc::channel(1024);
        let expected: transport::Expected = Arc::default();
        let egress = Arc::new(EgressClient::new(uplink.clone()));
        let agent = Arc::new(AgentRuntime::new(
            initial_agent(agent_doc, &cfg.agent, &cfg.tenant_id.to_string()),
            egress.clone(),
        ));
        // Engines released and heap handed back once the tenant is quiet.
        tokio::spawn(agent.engines().release_when_quiet());
        if let Some(doc) = stored(escalation_doc, agent::ESCALATION, EscalationDoc::from_json) {
            agent.replace_escalation(doc);
        }
        if let Some(doc) = stored(routing_doc, agent::ROUTING, RoutingDoc::from_json) {
            agent.replace_routing(doc);
        }
        let out = Outbound::new(uplink.clone(), udp.clone());
        let rtp = Arc::new(RtpClient::new(uplink.clone()));
        let ua_cfg = UaConfig {
            rtp: rtp.clone(),
            numbers: numbers.clone(),
            advertise: cfg.advertise,
            router_port: cfg.router_port,
            sip_port: cfg.sip_port,
            answer_delay: Duration::from_millis(cfg.answer_delay_ms),
            trunk: trunk.clone(),
            agent: agent.clone(),
            expected: expected.clone(),
        };
        tokio::spawn(Ua::new(ua_cfg, store.clone(), out.clone(), events_tx.clone()).run(events_rx));
        tokio::spawn(transport::serve_trunk_udp(
            udp,
            trunk.clone(),
            expected.clone(),
            events_tx.clone(),
        ));
        tokio::spawn(transport::serve_trunk_tcp(
            tcp,
            trunk.clone(),
            expected.clone(),
            out,
            events_tx.clone(),
        ));
        let tokens = Arc::new(http::Tokens::from_live(store.clone(), live_tokens));
        let retention = Arc::new(crate::retention::Retention::new(cfg.retention_days));
        tokio::spawn(crate::retention::run(store.clone(), retention.clone()));
        let tls: http::tls::SharedTls = Arc::new(RwLock::new(http::tls::stored(tls_doc)));
        tokio::spawn(http::serve(
            http_listener,
            ApiState {
                store: store.clone(),
                numbers: numbers.clone(),
                agent: agent.clone(),
                tokens: tokens.clone(),
                documents: Arc::default(),
            },
            tls.clone(),
        ));

        uplink
            .send_to_supervisor(&FromWorker::Ready(Ready {
                pid: std::process::id(),
                landlock: hardened.landlock.as_str().into(),
                store_key,
            }))
            .await?;
        let ms = |d: Duration| d.as_micros() as f64 / 1e3;
        tracing::info!(
            tenant = %cfg.tenant_id,
            store_open_ms = ms(store_opened),
            hardened_ms = ms(hardened_at),
            ready_ms = ms(began.elapsed()),
            "worker serving"
        );
        let clients = Clients { rtp, egress };
        let shared = Shared {
            data_dir: &cfg.data_dir,
            crash_at: cfg.crash_at.as_deref(),
            retention: &retention,
            store: &store,
            tokens: &tokens,
            tls: &tls,
            numbers: &numbers,
            trunk: &trunk,
        };
        serve_link(&link, &uplink, &shared, events_tx, &clients).await
    });
    // Orderly exit: drop every task (and its Store clone), then let the
    // writer commit what is queued and close the store.
    drop(rt);
    let _ = store_writer.join();
    result
}

/// The agent document new calls start with: the tenant's own (`PUT
/// /v1/agent`, kept in the store) when there is one, else the admin's from
/// the tenant file, else the defaults. A stored document that no longer
/// parses is reported and skipped, never fatal.
fn initial_agent(
    stored: Option<store::Document>,
    admin: &serde_json::Value,
    tenant: &str,
) -> bulkhead_voice::agent::AgentDoc {
    use bulkhead_voice::agent::AgentDoc;
    if let Some(doc) = stored {
        match AgentDoc::from_json(doc.json.as_bytes()) {
            Ok(doc) => return doc,
            Err(e) => {
                tracing::error!(%tenant, error = %e, "the stored agent document is invalid; using the admin's")
            }
        }
    }
    if admin.is_null() {
        return AgentDoc::default();
    }
    let parsed = serde_json::to_vec(admin)
        .ok()
        .and_then(|b| AgentDoc::from_json(&b).map_err(|e| {
            tracing::error!(%tenant, error = %e, "the admin's agent document is invalid; using the defaults");
        }).ok());
    parsed.unwrap_or_default()
}

/// A probe worker (`bulkhead audit`): the same start, the requested layers,
/// then the probes instead of serving; the report goes back on the link.
fn run_probes(start: Start, spec: &bulkhead_shared::ipc::probe::ProbeSpec) -> anyhow::Result<()> {
    let Start { link, boot, .. } = start;
    let data_dir = boot.config.data_dir.clone();
    drop(boot);
    harden::apply(
        &data_dir,
        harden::Layers {
            landlock: spec.landlock,
            seccomp: spec.seccomp,
        },
    )?;
    let mut outcomes = crate::probe::run_all(&spec.targets);
    for (seq, (host, port)) in spec.targets.egress.iter().enumerate() {
        outcomes.push(crate::probe::egress(&link, seq as u64, host, *port));
    }
    let report = bulkhead_shared::ipc::probe::ProbeReport { outcomes };
    let mut frame = Vec::new();
    bulkhead_shared::ipc::codec::encode_from_worker(&FromWorker::Probe(report), &mut frame)?;
    bulkhead_shared::ipc::fds::send_packet(std::os::fd::AsFd::as_fd(&link), &frame, &[])?;
    // Stay alive (with any listener a probe opened) until the supervisor has
    // checked the report and closes the link.
    let mut buf = [0u8; 64];
    let _ = bulkhead_shared::ipc::fds::recv_packet(std::os::fd::AsFd::as_fd(&link), &mut buf);
    Ok(())
}

/// Logs go to stderr, a pipe the supervisor reads: it logs each line with
/// its own time stamp, under this tenant's name (a worker's word for who
/// it is would not count), with control characters escaped. So no time
/// and no colours here.
fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(false)
        .without_time()
        .init();
}

/// A configuration document the tenant stored, if any. One that no longer
/// validates (a time zone this machine's tzdata dropped) is logged and
/// ignored: the defaults serve rather than no calls at all.
fn stored<T>(
    doc: Option<store::Document>,
    name: &'static str,
    parse: fn(&[u8]) -> Result<T, bulkhead_voice::agent::DocError>,
) -> Option<T> {
    let doc = doc?;
    parse(doc.json.as_bytes())
        .inspect_err(|e| tracing::error!(document = name, error = %e, "the stored document is invalid; ignoring it"))
        .ok()
}

/// What the supervisor's control requests change.
struct Shared<'a> {
    data_dir: &'a std::path::Path,
    crash_at: Option<&'a str>,
    retention: &'a crate::retention::Retention,
    store: &'a Store,
    tokens: &'a http::Tokens,
    tls: &'a http::tls::SharedTls,
    numbers: &'a RwLock<Vec<bulkhead_shared::Number>>,
    trunk: &'a RwLock<bulkhead_shared::trunk::TrunkPolicy>,
}

/// The services whose answers come back on the supervisor link.
struct Clients {
    rtp: Arc<RtpClient>,
    egress: Arc<EgressClient>,
}

/// Reads the supervisor's frames until it closes the socketpair, then exits:
/// a worker never outlives its supervisor's link.
async fn serve_link(
    link: &Arc<Link>,
    uplink: &Uplink,
    shared: &Shared<'_>,
    events: mpsc::Sender<Event>,
    clients: &Clients,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; MAX_FRAME];
    // As pid 1 of its pid namespace the worker gets SIGTERM only if it
    // handles it: stopping then commits what is queued and closes the store.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let frame = tokio::select! {
            frame = link.recv_from_supervisor(&mut buf) => frame,
            _ = term.recv() => {
                tracing::info!("SIGTERM; exiting");
                return Ok(());
            }
        };
        let (frame, fds) = match frame {
            Ok(Some((msg, fds))) => (Ok(Some(msg)), fds),
            Ok(None) => (Ok(None), Vec::new()),
            Err(e) => (Err(e), Vec::new()),
        };
        match frame {
            Ok(None) => {
                tracing::info!("supervisor closed the link; exiting");
                return Ok(());
            }
            Ok(Some(ToWorker::Sip(pkt))) => {
                let origin = transport::Origin::Router {
                    transport: pkt.transport,
                    conn: pkt.conn,
                    peer: pkt.peer,
                };
                let _ = events
                    .send(Event::Inbound {
                        origin,
                        data: pkt.data,
                    })
                    .await;
            }
            Ok(Some(ToWorker::Control(Control { seq, op }))) => {
                let mut data = None;
                let error = match op {
                    ControlOp::AddToken {
                        id,
                        name,
                        sha256_hex,
                        expires_at,
                    } => shared
                        .tokens
                        .add(id, name, sha256_hex, expires_at)
                        .await
                        .err()
                        .map(|e| e.to_string()),
                    ControlOp::ListTokens => match shared.tokens.list().await {
                        Ok(list) => {
                            data = Some(serde_json::to_value(list).expect("serializable"));
                            None
                        }
                        Err(e) => Some(e.to_string()),
                    },
                    ControlOp::RevokeToken { id } => {
                        shared.tokens.revoke(&id).await.err().map(|e| e.to_string())
                    }
                    ControlOp::SetNumbers { numbers: new } => {
                        *shared.numbers.write().expect("numbers lock") = new;
                        None
                    }
                    ControlOp::SetTrunk { trunk: policy } => {
                        *shared.trunk.write().expect("trunk policy lock") = policy;
                        None
                    }
                    ControlOp::SetTls { tls } => {
                        match http::tls::set(shared.store, shared.tls, tls).await {
                            Ok(fingerprint) => {
                                data = Some(serde_json::json!({ "fingerprint": fingerprint }));
                                None
                            }
                            Err(e) => Some(e),
                        }
                    }
                    ControlOp::Backup => {
                        // Beside this loop: heartbeats go on while it copies.
                        let (link, store) = (uplink.clone(), shared.store.clone());
                        let data_dir = shared.data_dir.to_owned();
                        tokio::spawn(async move {
                            let (error, data) = match fds.into_iter().next() {
                                Some(fd) => {
                                    let file = std::fs::File::from(fd);
                                    match crate::backup::write_to(&store, &data_dir, file).await {
                                        Ok(bytes) => {
                                            (None, Some(serde_json::json!({ "bytes": bytes })))
                                        }
                                        Err(e) => (Some(e), None),
                                    }
                                }
                                None => {
                                    (Some("a backup request came without its file".into()), None)
                                }
                            };
                            let _ = link
                                .send_to_supervisor(&FromWorker::Reply { seq, error, data })
                                .await;
                        });
                        continue;
                    }
                    ControlOp::RekeyStore { key } => {
                        // The frame held the key in hex.
                        buf.fill(0);
                        // Beside this loop, like a backup: it copies the store.
                        let (link, store) = (uplink.clone(), shared.store.clone());
                        let job = store::rekey::Rekey {
                            path: shared.data_dir.join(STORE_FILE),
                            key,
                            crash_at: shared.crash_at.map(str::to_owned),
                        };
                        tokio::spawn(async move {
                            let error = store
                                .write_durable(store::writer::Write::Rekey(job))
                                .await
                                .err();
                            let _ = link
                                .send_to_supervisor(&FromWorker::Reply {
                                    seq,
                                    error,
                                    data: None,
                                })
                                .await;
                        });
                        continue;
                    }
                    ControlOp::SetRetention { days } => {
                        shared.retention.set(days);
                        None
                    }
                    ControlOp::Ping => None,
                };
                uplink
                    .send_to_supervisor(&FromWorker::Reply { seq, error, data })
                    .await?;
            }
            Ok(Some(ToWorker::Bootstrap(_))) => tracing::warn!("ignoring a second bootstrap frame"),
            Ok(Some(ToWorker::Connected { seq, error })) => clients.egress.deliver(seq, error, fds),
            Ok(Some(ToWorker::RtpOpened { seq, port, error })) => {
                clients.rtp.deliver(seq, port, error, fds)
            }
            Err(e) => tracing::warn!(error = %e, "ignoring an invalid frame from the supervisor"),
        }
    }
}
