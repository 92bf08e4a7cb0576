//! The tenant HTTP API on the tenant's own port. [`handle`] is the whole
//! service as a function of a request, so tests call it without a socket;
//! [`serve`] only accepts connections.
//!
//! Every `/v1` path needs `Authorization: Bearer <token>`; the token's SHA-256
//! must be a live token in *this tenant's* store, which is the only store this
//! process can open. A missing or foreign token gets 401 and no data. Routes
//! come from one table ([`routes`]), which `/openapi.json` is built from.

mod auth;
#[cfg(test)]
mod bench;
mod documents;
mod openapi;
mod portal;
mod query;
pub mod routes;
pub mod tls;
mod tokens;

pub use auth::Tokens;

use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bulkhead_shared::Number;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::json;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::agent::AgentRuntime;
use crate::store::writer::Store;
use routes::{Matched, Op};

/// What handlers need.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub store: Store,
    pub numbers: Arc<RwLock<Vec<Number>>>,
    pub agent: Arc<AgentRuntime>,
    pub tokens: Arc<Tokens>,
    /// Held across a configuration document's read-check-write-apply.
    pub documents: Arc<tokio::sync::Mutex<()>>,
}

/// The largest request body taken (configuration documents are small).
pub const MAX_BODY: usize = 64 * 1024;
/// The largest request head (request line and headers): past it, `431`.
/// hyper's smallest read buffer is 8 KiB; a head must fit in it.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in one request: past it, `431`.
pub const MAX_HEADERS: usize = 64;

type Resp = Response<Full<Bytes>>;

/// Most connections served at once; further clients wait in the backlog.
const MAX_CONNECTIONS: usize = 256;
/// A client must send its request headers within this time (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts connections forever, at most [`MAX_CONNECTIONS`] at a time;
/// while `tls` holds a certificate, each speaks TLS first.
pub async fn serve(listener: TcpListener, state: ApiState, tls: tls::SharedTls) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        let tls = tls.read().expect("tls lock").clone();
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                None => serve_connection(stream, state).await,
                Some(acceptor) => {
                    // The handshake counts against the header timeout too.
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, state).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

async fn serve_connection<S>(stream: S, state: ApiState)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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
    // hyper answers 431 itself when the head outgrows the buffer or has
    // too many fields.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

fn header(req: &Request<Bytes>, name: hyper::header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The API as a function: a request with its whole body in, a response out.
pub async fn handle(state: &ApiState, req: Request<Bytes>) -> Resp {
    let (route, params) = match routes::find(req.method(), req.uri().path()) {
        Matched::Route(route, params) => (route, params),
        Matched::WrongMethod(allowed) => {
            let mut resp = not_allowed();
            let allow = allowed.join(", ");
            resp.headers_mut()
                .insert(ALLOW, allow.parse().expect("method names are valid"));
            return resp;
        }
        Matched::NotFound => {
            return error(StatusCode::NOT_FOUND, "not_found", "no such path", None)
        }
    };
    if route.auth {
        let presented = header(&req, AUTHORIZATION)
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .unwrap_or("");
        let now = bulkhead_shared::time::now_rfc3339();
        let Some(id) = state.tokens.check(presented, &now) else {
            return error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token for this tenant is required",
                None,
            );
        };
        if let Err(wait) = state.tokens.admit(&id, Instant::now()) {
            let mut resp = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                &format!(
                    "this token may make {} requests a second; slow down or use another token",
                    auth::REQUESTS_PER_SECOND
                ),
                None,
            );
            resp.headers_mut()
                .insert(RETRY_AFTER, wait.to_string().parse().expect("digits"));
            return resp;
        }
    }
    if route.query.is_empty() && req.uri().query().is_some_and(|q| !q.is_empty()) {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            "this path takes no query parameters",
            Some("query"),
        );
    }
    dispatch(state, route.op, &params, &req).await
}

async fn dispatch(state: &ApiState, op: Op, params: &[&str], req: &Request<Bytes>) -> Resp {
    let id = params.first().copied().unwrap_or("");
    match op {
        Op::Health => json_response(StatusCode::OK, &json!({"status": "ok"})),
        Op::OpenApi => bytes_response("application/json", Bytes::from_static(openapi::document())),
        Op::Portal(asset) => portal::serve(asset),
        Op::ListCalls => list_calls(state, req.uri().query().unwrap_or("")).await,
        Op::GetCall => match state.store.get_call(id.to_owned()).await {
            Ok(Some(call)) => json_response(StatusCode::OK, &call),
            Ok(None) => no_call(),
            Err(e) => internal(e),
        },
        Op::GetTranscript => transcript(state, id).await,
        Op::ListNumbers => {
            let numbers = state.numbers.read().expect("numbers lock").clone();
            json_response(StatusCode::OK, &json!({ "numbers": numbers }))
        }
        Op::GetDocument(kind) | Op::PutDocument(kind) => documents::handle(state, kind, req).await,
        Op::ListTokens => tokens::list(state).await,
        Op::CreateToken => tokens::create(state, req.body()).await,
        Op::RevokeToken => tokens::revoke(state, id).await,
    }
}

fn no_call() -> Resp {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no call with this id",
        None,
    )
}

async fn transcript(state: &ApiState, id: &str) -> Resp {
    match state.store.get_call(id.to_owned()).await {
        Ok(Some(_)) => {}
        Ok(None) => return no_call(),
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

fn json_response<T: serde::Serialize>(status: StatusCode, body: &T) -> Resp {
    let bytes = serde_json::to_vec(body).expect("serializable");
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(bytes)))
        .expect("valid response")
}

fn bytes_response(content_type: &'static str, body: Bytes) -> Resp {
    Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(body))
        .expect("valid response")
}

fn error(status: StatusCode, code: &str, message: &str, field: Option<&str>) -> Resp {
    let body = routes::ApiError {
        error: routes::ErrorBody {
            code: code.into(),
            message: message.into(),
            field: field.map(Into::into),
        },
    };
    json_response(status, &body)
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
