//! Prometheus `/metrics` on `metrics_listen` (loopback by default): the
//! router's counters and dispatch latency, and per tenant its calls, worker
//! state, restarts and memory. Read-only; every other path is 404.

use std::convert::Infallible;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::Tenants;
use crate::api::TenantView;
use crate::router::Router;

/// The Prometheus text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("failed to bind metrics_listen {addr} (set metrics_listen to a free address)")
    })
}

pub async fn serve(listener: TcpListener, tenants: Arc<Tenants>, router: Arc<Router>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (tenants, router) = (tenants.clone(), router.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let body = (req.method() == Method::GET && req.uri().path() == "/metrics")
                    .then(|| render(&tenants, &router));
                async move { Ok::<_, Infallible>(respond(body)) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn respond(body: Option<String>) -> Response<Full<Bytes>> {
    let (status, body) = match body {
        Some(b) => (StatusCode::OK, b),
        None => (
            StatusCode::NOT_FOUND,
            "only GET /metrics is served here\n".into(),
        ),
    };
    Response::builder()
        .status(status)
        .header("content-type", CONTENT_TYPE)
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

/// The whole exposition, rendered on each scrape.
pub fn render(tenants: &Tenants, router: &Router) -> String {
    let mut out = String::with_capacity(4096);
    let c = &router.counters;
    for (name, help, value) in [
        ("received", "SIP messages the router received", &c.received),
        (
            "forwarded",
            "SIP messages relayed to a worker",
            &c.forwarded,
        ),
        (
            "rejected",
            "SIP requests the router answered itself (404, 503, ...)",
            &c.rejected,
        ),
        (
            "dropped",
            "SIP messages dropped (stray, unanswerable, or to a peer the tenant never heard from)",
            &c.dropped,
        ),
    ] {
        let metric = format!("bulkhead_router_{name}_total");
        let _ = writeln!(out, "# HELP {metric} {help}.\n# TYPE {metric} counter");
        let _ = writeln!(out, "{metric} {}", value.load(Ordering::Relaxed));
    }
    router.latency.render(
        "bulkhead_router_dispatch_seconds",
        "Time the router spent deciding and relaying one inbound message.",
        &mut out,
    );
    let views = tenants.views();
    type Field = fn(&TenantView) -> u64;
    let per_tenant: [(&str, &str, &str, Field); 5] = [
        (
            "calls_admitted_total",
            "counter",
            "New calls the router handed to the worker.",
            |v| v.calls_admitted,
        ),
        (
            "calls_refused_total",
            "counter",
            "New calls the router answered 503 (limits, drain, worker down).",
            |v| v.calls_refused,
        ),
        (
            "calls_active",
            "gauge",
            "Calls holding a slot under max_concurrent_calls.",
            |v| v.active_calls as u64,
        ),
        (
            "worker_up",
            "gauge",
            "1 while the tenant's worker serves (running or draining).",
            |v| u64::from(matches!(v.state.as_str(), "running" | "draining")),
        ),
        (
            "worker_restarts_total",
            "counter",
            "Times the worker was restarted after dying.",
            |v| u64::from(v.restarts),
        ),
    ];
    for (name, kind, help, field) in per_tenant {
        let metric = format!("bulkhead_tenant_{name}");
        let _ = writeln!(out, "# HELP {metric} {help}\n# TYPE {metric} {kind}");
        for v in &views {
            let _ = writeln!(out, "{metric}{{tenant=\"{}\"}} {}", label(&v.id), field(v));
        }
    }
    let metric = "bulkhead_tenant_memory_bytes";
    let _ = writeln!(
        out,
        "# HELP {metric} Memory the tenant's worker uses: its cgroup's usage as root, else the worker's RSS.\n# TYPE {metric} gauge"
    );
    for v in &views {
        if let Some(bytes) = memory_of(tenants, v) {
            let _ = writeln!(out, "{metric}{{tenant=\"{}\"}} {bytes}", label(&v.id));
        }
    }
    out
}

fn memory_of(tenants: &Tenants, v: &TenantView) -> Option<u64> {
    if let Some(cg) = &tenants.cgroups {
        return cg.memory_usage(&v.id);
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", v.pid?)).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// A label value escaped as the text format requires (tenant ids need none
/// today; this keeps the output valid if that ever changes).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("clinic"), "clinic");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
