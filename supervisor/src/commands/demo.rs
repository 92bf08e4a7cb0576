//! `bulkhead demo`: a supervisor in a temporary state directory on free
//! loopback ports, the two tenants of `examples/demo.toml`, one sample call
//! into each through the router, and each tenant's call log as its own API
//! returns it.

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
        let call = sipclient::place_call(router, number, "Demo Caller", &call_id).await?;
        if call.invite_codes.last() != Some(&200) || call.bye_code != Some(200) {
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
        println!("  curl -H 'Authorization: Bearer {}' {url}", t.token);
        println!(
            "  {}\n",
            serde_json::to_string_pretty(&calls)?.replace('\n', "\n  ")
        );
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
