//! `GET` and `PUT /v1/agent`: the agent document, with an ETag for
//! optimistic concurrency. A `PUT` is on disk before it answers and takes
//! effect on the next call, with no restart; secrets are write-only.

use bytes::Bytes;
use hyper::header::{ETAG, IF_MATCH};
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::{error, internal, json_response, not_allowed, ApiState, Resp};
use crate::agent::DOCUMENT;
use crate::store::writer::Write;
use bulkhead_voice::agent::AgentDoc;

pub async fn handle(state: &ApiState, req: &Request<Bytes>) -> Resp {
    let version = match state.store.document(DOCUMENT).await {
        Ok(doc) => doc.map_or(0, |d| d.version),
        Err(e) => return internal(e),
    };
    let etag = format!("\"v{version}\"");
    match *req.method() {
        Method::GET => shown(&state.agent.current(), &etag),
        Method::PUT => {
            let if_match = req.headers().get(IF_MATCH).and_then(|v| v.to_str().ok());
            if if_match.is_some_and(|m| m.trim() != "*" && m.trim() != etag) {
                return error(
                    StatusCode::PRECONDITION_FAILED,
                    "precondition_failed",
                    "the agent document changed since it was read; GET it again",
                    None,
                );
            }
            let doc = match AgentDoc::from_json(req.body()) {
                Ok(doc) => doc,
                Err(e) => {
                    let field = (!e.field.is_empty()).then_some(e.field.as_str());
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_document",
                        &e.message,
                        field,
                    );
                }
            };
            let json = serde_json::to_string(&doc).expect("serializable");
            if let Err(e) = state
                .store
                .write_durable(Write::PutDocument {
                    name: DOCUMENT,
                    json,
                })
                .await
            {
                return internal(e);
            }
            state.agent.replace(doc.clone());
            shown(&doc, &format!("\"v{}\"", version + 1))
        }
        _ => not_allowed(),
    }
}

/// The document as tenants see it: each `api_key` replaced by `api_key_set`.
fn shown(doc: &AgentDoc, etag: &str) -> Resp {
    let mut value = serde_json::to_value(doc).expect("serializable");
    for layer in ["stt", "llm", "tts"] {
        if let Some(p) = value.get_mut(layer).and_then(|v| v.as_object_mut()) {
            let set = p.remove("api_key").is_some();
            p.insert("api_key_set".into(), json!(set));
        }
    }
    let mut resp = json_response(StatusCode::OK, &value);
    resp.headers_mut()
        .insert(ETAG, etag.parse().expect("an ETag is a valid header value"));
    resp
}
