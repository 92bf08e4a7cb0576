//! The tenant HTTP API on the tenant's own port. [`handle`] is the whole
//! service as a function of a request, so tests call it without a socket;
//! [`serve`] only accepts connections.
//!
//! Every `/v1` path needs `Authorization: Bearer <token>`; the token's SHA-256
//! must be a live token in *this tenant's* store, which is the only store this
//! process can open. A missing or foreign token gets 401 and no data.

mod documents;
mod query;

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bulkhead_shared::Number;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::agent::AgentRuntime;
use crate::store::writer::Store;

/// What handlers need.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Store,
    pub numbers: Arc<RwLock<Vec<Number>>>,
    pub agent: Arc<AgentRuntime>,
}

/// The largest request body taken (configuration documents are small).
const MAX_BODY: usize = 64 * 1024;

type Resp = Response<Full<Bytes>>;

/// Most connections served at once; further clients wait in the backlog.
const MAX_CONNECTIONS: usize = 256;
/// A client must send its request headers within this time (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections forever, at most [`MAX_CONNECTIONS`] at a time.
pub async fn serve(listener: TcpListener, state: ApiState) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let svc = service_fn(move |req: Request<Incoming>| {
                let state = state.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = match Limited::new(body, MAX_BODY).collect().await {
                        Ok(collected) => collected.to_bytes(),
                        Err(_) => {
                            return Ok::<_, Infallible>(error(
                                StatusCode::PAYLOAD_TOO_LARGE,
                                "body_too_large",
                                &format!("request bodies are limited to {MAX_BODY} bytes"),
                                None,
                            ))
                        }
                    };
                    Ok(handle(&state, Request::from_parts(parts, body)).await)
                }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

fn header(req: &Request<Bytes>, name: hyper::header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The API as a function: a request with its whole body in, a response out.
pub async fn handle(state: &ApiState, req: Request<Bytes>) -> Resp {
    let (method, uri) = (req.method(), req.uri());
    let path = uri.path();
    if path == "/healthz" {
        return if method == Method::GET {
            json_response(StatusCode::OK, &json!({"status": "ok"}))
        } else {
            not_allowed()
        };
    }
    if !path.starts_with("/v1/") {
        return error(StatusCode::NOT_FOUND, "not_found", "no such path", None);
    }
    match authorized(state, header(&req, AUTHORIZATION)).await {
        Ok(true) => {}
        Ok(false) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token for this tenant is required",
                None,
            )
        }
        Err(resp) => return resp,
    }
    let segments: Vec<&str> = path.trim_start_matches("/v1/").split('/').collect();
    match segments.as_slice() {
        ["agent"] => return documents::handle(state, documents::Kind::Agent, &req).await,
        ["escalation"] => return documents::handle(state, documents::Kind::Escalation, &req).await,
        ["routing"] => return documents::handle(state, documents::Kind::Routing, &req).await,
        _ => {}
    }
    if method != Method::GET {
        return not_allowed();
    }
    match segments.as_slice() {
        ["calls"] => list_calls(state, uri.query().unwrap_or("")).await,
        ["calls", id] if !id.is_empty() => match state.store.get_call((*id).to_owned()).await {
            Ok(Some(call)) => json_response(StatusCode::OK, &call),
            Ok(None) => error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no call with this id",
                None,
            ),
            Err(e) => internal(e),
        },
        ["calls", id, "transcript"] if !id.is_empty() => transcript(state, id).await,
        ["numbers"] => {
            let numbers = state.numbers.read().expect("numbers lock").clone();
            json_response(StatusCode::OK, &json!({ "numbers": numbers }))
        }
        _ => error(StatusCode::NOT_FOUND, "not_found", "no such path", None),
    }
}

async fn transcript(state: &ApiState, id: &str) -> Resp {
    match state.store.get_call(id.to_owned()).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no call with this id",
                None,
            )
        }
        Err(e) => return internal(e),
    }
    match state.store.transcript(id.to_owned()).await {
        Ok(turns) => json_response(StatusCode::OK, &json!({ "turns": turns })),
        Err(e) => internal(e),
    }
}

async fn list_calls(state: &ApiState, query: &str) -> Resp {
    let filter = match query::parse_calls(query) {
        Ok(f) => f,
        Err((field, message)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                &message,
                Some(field),
            )
        }
    };
    match state.store.list_calls(filter).await {
        Ok(page) => json_response(StatusCode::OK, &page),
        Err(e) => internal(e),
    }
}

async fn authorized(state: &ApiState, header: Option<&str>) -> Result<bool, Resp> {
    let Some(token) = header
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return Ok(false);
    };
    if !token.starts_with("bh_") || token.len() > 128 {
        return Ok(false);
    }
    let digest = Sha256::digest(token.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    state.store.token_is_valid(hex).await.map_err(internal)
}

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Resp {
    let bytes = serde_json::to_vec(body).expect("serializable");
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("valid response")
}

fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Resp {
    let mut err = json!({"code": code, "message": message});
    if let Some(f) = field {
        err["field"] = json!(f);
    }
    json_response(status, &json!({ "error": err }))
}

fn not_allowed() -> Resp {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this path",
        None,
    )
}

fn internal(e: impl std::fmt::Display) -> Resp {
    tracing::error!(error = %e, "API request failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the tenant store failed; see the supervisor log",
        None,
    )
}
