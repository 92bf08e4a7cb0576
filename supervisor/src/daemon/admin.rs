//! The admin API: HTTP/JSON over a Unix socket (mode 0600). Only root or the
//! supervisor's own uid may connect, checked with `SO_PEERCRED` on accept.

use std::convert::Infallible;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::Context;
use bulkhead_shared::{Number, TenantId};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;

use super::tenants::LimitChange;
use super::{AdminError, Tenants};
use crate::api::{
    ApplyRequest, ErrorBody, ErrorDetail, NumberClaim, RouterCounters, Status, TenantList,
    TenantSpec, TokenRequest, TrunkAuthRequest, TrunkRequest,
};
use crate::limits::LimitOverrides;
use crate::router::Router;

/// Largest request body accepted (a tenant file of thousands of tenants fits).
const MAX_BODY: usize = 8 << 20;

#[derive(Debug, Clone)]
pub struct Ctx {
    pub tenants: Arc<Tenants>,
    pub router: Arc<Router>,
    /// Where `/metrics` is served (the bound address, for `metrics_listen` port 0).
    pub metrics: std::net::SocketAddr,
}

pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        // A stale socket from a killed supervisor; a live one would answer.
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another supervisor is serving {}", path.display());
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)
        .with_context(|| format!("failed to bind admin socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub async fn serve(listener: UnixListener, ctx: Ctx) {
    let me = nix::unistd::geteuid().as_raw();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let peer_uid = match stream.peer_cred() {
            Ok(c) if c.uid() == 0 || c.uid() == me => c.uid(),
            _ => continue, // dropped: not an admin
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, peer_uid, req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

type Resp = Response<Full<Bytes>>;

/// Serves one admin request and records it in the history when it is an
/// action (anything but a read), with its result.
async fn handle(ctx: &Ctx, peer_uid: u32, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let result = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => {
            let bytes = collected.to_bytes();
            let query = parts.uri.query().unwrap_or("");
            let action = super::actions::of(&parts.method, parts.uri.path(), query, &bytes);
            let result = route(ctx, &parts.method, parts.uri.path(), query, &bytes).await;
            if let Some((action, target)) = action {
                let outcome = match &result {
                    Ok(_) => "ok".to_string(),
                    Err(e) => format!("error: {e}"),
                };
                ctx.tenants.record(peer_uid, action, &target, &outcome);
            }
            result
        }
        Err(e) => Err(AdminError::BadRequest(format!(
            "failed to read the request body: {e}"
        ))),
    };
    match result {
        Ok((status, body)) => json(status, body),
        Err(e) => {
            let (status, code) = match &e {
                AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
                AdminError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
                AdminError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
                AdminError::Failed(_) => (StatusCode::INTERNAL_SERVER_ERROR, "failed"),
            };
            let body = ErrorBody {
                error: ErrorDetail {
                    code: code.into(),
                    message: e.to_string(),
                },
            };
            json(status, serde_json::to_value(body).expect("serializable"))
        }
    }
}

async fn route(
    ctx: &Ctx,
    method: &Method,
    path: &str,
    query: &str,
    req: &[u8],
) -> Result<(StatusCode, serde_json::Value), AdminError> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let t = &ctx.tenants;
    let ok = |v: serde_json::Value| Ok((StatusCode::OK, v));
    match (method, segs.as_slice()) {
        (&Method::GET, ["v1", "status"]) => ok(to_value(status(ctx))),
        (&Method::GET, ["v1", "history"]) => {
            let (events, head) = t.history()?;
            let verify = match query {
                "" => false,
                "verify=true" => true,
                other => {
                    return Err(AdminError::BadRequest(format!(
                        "unknown query {other:?}: history takes only verify=true"
                    )))
                }
            };
            let broken = verify
                .then(|| crate::history::verify(&events, head).err())
                .flatten()
                .map(|b| serde_json::json!({"seq": b.seq, "why": b.why}));
            ok(serde_json::json!({"events": events, "verified": verify, "broken": broken}))
        }
        (&Method::GET, ["v1", "audit"]) => {
            let only = query
                .split('&')
                .find_map(|p| p.strip_prefix("tenant="))
                .map(tenant_id)
                .transpose()?;
            ok(to_value(super::audit::run(t, only).await?))
        }
        (&Method::GET, ["v1", "tenants"]) => ok(to_value(TenantList { tenants: t.views() })),
        (&Method::POST, ["v1", "tenants"]) => {
            let spec: TenantSpec = body(req)?;
            Ok((StatusCode::CREATED, to_value(t.add(spec).await?)))
        }
        (&Method::GET, ["v1", "tenants", id]) => ok(to_value(t.view(&tenant_id(id)?)?)),
        (&Method::DELETE, ["v1", "tenants", id]) => {
            let shred = query.split('&').any(|p| p == "shred=true");
            t.remove(&tenant_id(id)?, shred).await?;
            ok(serde_json::json!({"removed": id, "shredded": shred}))
        }
        (&Method::POST, ["v1", "tenants", id, "restart"]) => {
            let id = tenant_id(id)?;
            match query {
                "" | "drain=false" => ok(to_value(t.restart(&id).await?)),
                "drain=true" => ok(to_value(t.restart_drained(&id).await?)),
                other => Err(AdminError::BadRequest(format!(
                    "unknown query {other:?}: restart takes only drain=true"
                ))),
            }
        }
        (&Method::POST, ["v1", "tenants", id, "limits"]) => {
            let id = tenant_id(id)?;
            let given: LimitOverrides = body(req)?;
            t.set_limits(&id, given, LimitChange::Merge).await?;
            ok(to_value(t.view(&id)?))
        }
        (&Method::POST, ["v1", "tenants", id, "trunk"]) => {
            let id = tenant_id(id)?;
            let r: TrunkRequest = body(req)?;
            t.set_trunk(&id, |trunk| trunk.allow = r.allow).await?;
            ok(to_value(t.view(&id)?))
        }
        (&Method::POST, ["v1", "tenants", id, "trunk_auth"]) => {
            let id = tenant_id(id)?;
            let r: TrunkAuthRequest = body(req)?;
            let auth = r
                .auth
                .map(|a| a.to_auth(&id))
                .transpose()
                .map_err(AdminError::BadRequest)?;
            t.set_trunk(&id, |trunk| trunk.auth = auth).await?;
            ok(to_value(t.view(&id)?))
        }
        (&Method::POST, ["v1", "tenants", id, "reset"]) => {
            ok(to_value(t.reset(&tenant_id(id)?).await?))
        }
        (&Method::POST, ["v1", "tenants", id, "tokens"]) => {
            let id = tenant_id(id)?;
            let r: TokenRequest = body(req)?;
            Ok((StatusCode::CREATED, to_value(t.issue_token(&id, r).await?)))
        }
        (&Method::POST, ["v1", "tenants", id, "backup"]) => {
            let id = tenant_id(id)?;
            let r: crate::api::BackupRequest = body(req)?;
            ok(to_value(t.backup(&id, &r.out).await?))
        }
        (&Method::POST, ["v1", "tenants", id, "rotate-key"]) => {
            let id = tenant_id(id)?;
            let r: crate::api::RotateKeyRequest = body(req)?;
            ok(to_value(t.rotate_key(&id, r.forget_old).await?))
        }
        (&Method::POST, ["v1", "tenants", id, "restore"]) => {
            let id = tenant_id(id)?;
            let r: crate::api::RestoreRequest = body(req)?;
            let (tenant, notes) = t.restore(&id, &r.from, r.accept_other_tenant).await?;
            Ok((
                StatusCode::CREATED,
                serde_json::json!({"tenant": tenant, "notes": notes}),
            ))
        }
        (&Method::POST, ["v1", "tenants", id, "tls"]) => {
            let id = tenant_id(id)?;
            let r: crate::api::TlsRequest = body(req)?;
            ok(to_value(t.set_tls(&id, r.tls).await?))
        }
        (&Method::GET, ["v1", "tenants", id, "tokens"]) => {
            ok(to_value(t.list_tokens(&tenant_id(id)?).await?))
        }
        (&Method::DELETE, ["v1", "tenants", id, "tokens", token]) => {
            let id = tenant_id(id)?;
            t.revoke_token(&id, token).await?;
            ok(serde_json::json!({"tenant": id, "revoked": token}))
        }
        (&Method::POST, ["v1", "numbers"]) => {
            let claim: NumberClaim = body(req)?;
            t.add_number(&claim.tenant, claim.number.clone()).await?;
            ok(serde_json::json!({"tenant": claim.tenant, "number": claim.number}))
        }
        (&Method::DELETE, ["v1", "numbers", n]) => {
            let number = Number::parse(n).map_err(|e| AdminError::BadRequest(e.to_string()))?;
            t.remove_number(&number).await?;
            ok(serde_json::json!({"released": number}))
        }
        (&Method::GET, ["v1", "egress"]) => {
            let only = query
                .split('&')
                .find_map(|p| p.strip_prefix("tenant="))
                .map(tenant_id)
                .transpose()?;
            let rules: Vec<serde_json::Value> = t
                .egress_list(only.as_ref())?
                .into_iter()
                .map(|(tenant, host, port)| serde_json::json!({"tenant": tenant, "host": host, "port": port}))
                .collect();
            ok(serde_json::json!({ "egress": rules }))
        }
        (&Method::POST, ["v1", "egress"])
        | (&Method::POST, ["v1", "egress", "remove"])
        | (&Method::POST, ["v1", "egress", "check"]) => {
            let rule: crate::api::EgressRule = body(req)?;
            let (host, port) = rule.host_port().map_err(AdminError::BadRequest)?;
            match segs.get(2) {
                None => {
                    t.egress_add(&rule.tenant, &host, port)?;
                    ok(serde_json::json!({"tenant": rule.tenant, "host": host, "port": port}))
                }
                Some(&"remove") => {
                    t.egress_remove(&rule.tenant, &host, port)?;
                    ok(
                        serde_json::json!({"tenant": rule.tenant, "removed": format!("{host}:{port}")}),
                    )
                }
                _ => {
                    let o = super::audit::egress_check(t, &rule.tenant, host, port).await?;
                    ok(
                        serde_json::json!({"tenant": rule.tenant, "target": o.target, "reached": o.escaped, "detail": o.detail}),
                    )
                }
            }
        }
        (&Method::POST, ["v1", "master-key", "rotate"]) => {
            ok(to_value(t.rotate_master_key().await?))
        }
        (&Method::POST, ["v1", "apply"]) => {
            let r: ApplyRequest = body(req)?;
            ok(to_value(super::apply::apply(t, r).await?))
        }
        _ => Err(AdminError::NotFound(format!(
            "no admin endpoint {method} {path}"
        ))),
    }
}

fn status(ctx: &Ctx) -> Status {
    let workers = ctx.tenants.views();
    let c = &ctx.router.counters;
    Status {
        sip_listen: ctx.router.local.to_string(),
        metrics_listen: ctx.metrics.to_string(),
        advertise: ctx.tenants.advertise.to_string(),
        tenants: workers.len(),
        running: workers.iter().filter(|w| w.state == "running").count(),
        router: RouterCounters {
            received: c.received.load(Ordering::Relaxed),
            forwarded: c.forwarded.load(Ordering::Relaxed),
            rejected: c.rejected.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        },
        workers,
    }
}

fn tenant_id(s: &str) -> Result<TenantId, AdminError> {
    TenantId::parse(s).map_err(|e| AdminError::BadRequest(e.to_string()))
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AdminError> {
    serde_json::from_slice(bytes)
        .map_err(|e| AdminError::BadRequest(format!("invalid request: {e}")))
}

fn to_value<T: serde::Serialize>(v: T) -> serde_json::Value {
    serde_json::to_value(v).expect("serializable")
}

fn json(status: StatusCode, v: serde_json::Value) -> Resp {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(
            serde_json::to_vec(&v).expect("serializable"),
        )))
        .expect("valid response")
}
