//! `bulkhead demo`: a supervisor in a temporary state directory on free
//! loopback ports, the two tenants of `examples/demo.toml`, one sample call
//! into each through the router — a caller (espeak-ng) asking the tenant's
//! agent a question — and each tenant's call log and transcript as its own
//! API returns them.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Method;
use hyper_util::rt::TokioIo;

use crate::api::ApplyResult;
use crate::config::{Config, Overrides};
use crate::{daemon, sipclient};

const DEMO_TOML: &str = include_str!("../../../examples/demo.toml");

pub async fn run(once: bool) -> anyhow::Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("bulkhead-demo-")
        .tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))?;
    let mut cfg = Config::from_toml(
        "sip_listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nadvertise = \"127.0.0.1\"\n[tenant_bind]\nsip = \"127.0.0.1\"\nhttp = \"127.0.0.1\"\n",
        &Overrides { state_dir: Some(dir.path().join("state")), run_dir: Some(dir.path().join("run")), sip_listen: None },
    )?;
    if std::env::var_os("RUST_LOG").is_none() {
        cfg.worker_log_filter = "warn".into();
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(daemon::Shutdown::Serve);
    let (running, handle) = daemon::start(cfg, stop_rx).await?;
    let router = running.router.local;

    let apply: serde_json::Value =
        serde_json::to_value(toml::from_str::<crate::api::ApplyRequest>(DEMO_TOML)?)?;
    let result = super::call(
        &running.admin_socket,
        Method::POST,
        "/v1/apply",
        Some(apply),
    )
    .await?;
    let created: ApplyResult = serde_json::from_value(result)?;

    println!(
        "Bulkhead demo: SIP router on udp/tcp {router}, metrics at http://{}/metrics, state in {}\n",
        running.metrics,
        dir.path().display()
    );
    for t in &created.created {
        let number = t
            .tenant
            .numbers
            .first()
            .context("demo tenant without a number")?;
        let call_id = format!("demo-{}-{}", t.tenant.id, std::process::id());
        let question = question_for(&t.tenant.id);
        let audio = caller_audio(question).await;
        let call =
            sipclient::place_call_with_audio(router, number, "Demo Caller", &call_id, &audio)
                .await?;
        if !call.completed() {
            bail!(
                "the sample call to {} ({number}) failed: {call:?}",
                t.tenant.id
            );
        }
        let url = format!("http://127.0.0.1:{}/v1/calls", t.tenant.http_port);
        let calls = settled_calls(t.tenant.http_port, &t.token).await?;
        println!(
            "tenant {}  number {}  API {url}",
            t.tenant.id,
            t.tenant.numbers.join(", ")
        );
        println!("  token  {}", t.token);
        println!(
            "  portal http://127.0.0.1:{}/ (sign in with the token)",
            t.tenant.http_port
        );
        println!("  curl -H 'Authorization: Bearer {}' {url}", t.token);
        println!(
            "  {}",
            serde_json::to_string_pretty(&calls)?.replace('\n', "\n  ")
        );
        if let Some(id) = calls["calls"][0]["id"].as_str() {
            let turns = get_json(
                t.tenant.http_port,
                &format!("/v1/calls/{id}/transcript"),
                &t.token,
            )
            .await?;
            println!("  transcript (GET /v1/calls/{id}/transcript):");
            for turn in turns["turns"].as_array().into_iter().flatten() {
                let latency = turn["latency_ms"]
                    .as_u64()
                    .map(|ms| format!("   ({ms} ms after the end of the turn)"))
                    .unwrap_or_default();
                println!(
                    "    {:<7} {}{latency}",
                    turn["speaker"].as_str().unwrap_or("?"),
                    turn["text"].as_str().unwrap_or("")
                );
            }
        }
        println!();
    }
    if once {
        let _ = stop_tx.send(daemon::Shutdown::Now);
        handle.await?;
        return Ok(());
    }
    println!("Serving until Ctrl-C. Try: sipp -sn uac -s +15550100 {router} -m 1");
    tokio::signal::ctrl_c().await?;
    let _ = stop_tx.send(daemon::Shutdown::Now);
    handle.await?;
    Ok(())
}

/// What the demo caller asks each demo tenant's agent.
fn question_for(tenant: &str) -> &'static str {
    match tenant {
        "clinic" => "what are your opening hours",
        "insurance" => "can I file a claim",
        _ => "goodbye",
    }
}

/// The caller's side of the call as 8 kHz μ-law: quiet through the
/// greeting, the question, then quiet for the answer. Silence alone when
/// espeak-ng is not installed (the agent still answers and greets).
async fn caller_audio(question: &str) -> Vec<u8> {
    use bulkhead_voice::media::g711::Law;
    use bulkhead_voice::speech::espeak::Espeak;
    const QUIET: u8 = 0xFF; // μ-law silence
    let mut audio = vec![QUIET; 3500 * 8];
    let speech = match Espeak::shared() {
        Ok(espeak) => espeak.synthesize("en-us", question).await,
        Err(e) => Err(e),
    };
    match speech {
        Ok(pcm) => Law::MuLaw.encode(&pcm, &mut audio),
        Err(e) => eprintln!("the demo caller stays silent: {e}"),
    }
    audio.extend(std::iter::repeat_n(QUIET, 4000 * 8));
    audio
}

/// The tenant's call log once no call is `in_progress` any more (the
/// worker commits the BYE's update just after answering it), or after 2 s.
async fn settled_calls(port: u16, token: &str) -> anyhow::Result<serde_json::Value> {
    let mut calls = get_json(port, "/v1/calls", token).await?;
    for _ in 0..40 {
        let busy = calls["calls"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["outcome"] == "in_progress");
        if !busy {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        calls = get_json(port, "/v1/calls", token).await?;
    }
    Ok(calls)
}

/// GET `path` on a tenant's HTTP port with a bearer token.
pub async fn get_json(port: u16, path: &str, token: &str) -> anyhow::Result<serde_json::Value> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = hyper::Request::get(path)
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())?;
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req)).await??;
    let status = resp.status();
    let body = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        bail!(
            "GET {path} on port {port}: HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(serde_json::from_slice(&body)?)
}
