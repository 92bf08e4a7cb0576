//! `GET` and `PUT /v1/agent`, `/v1/routing` and `/v1/escalation`: the tenant's
//! configuration documents, with an ETag for optimistic concurrency. A
//! `PUT` is on disk before it answers and takes effect on the next call,
//! with no restart; secrets are write-only.

use bytes::Bytes;
use hyper::header::{ETAG, IF_MATCH};
use hyper::{Method, Request, StatusCode};
use serde_json::{json, Value};

use super::{error, internal, json_response, not_allowed, ApiState, Resp};
use crate::agent::{DOCUMENT, ESCALATION, ROUTING};
use crate::store::writer::Write;
use bulkhead_voice::agent::escalation::EscalationDoc;
use bulkhead_voice::agent::routing::RoutingDoc;
use bulkhead_voice::agent::{AgentDoc, DocError};

/// Puts a parsed document in effect.
type Apply = Box<dyn FnOnce(&ApiState) + Send>;

/// Which document a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Agent,
    Escalation,
    Routing,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Agent => DOCUMENT,
            Self::Escalation => ESCALATION,
            Self::Routing => ROUTING,
        }
    }

    /// The document now in effect, as JSON.
    fn current(self, state: &ApiState) -> Value {
        match self {
            Self::Agent => serde_json::to_value(&*state.agent.current()),
            Self::Escalation => serde_json::to_value(&*state.agent.escalation()),
            Self::Routing => serde_json::to_value(&*state.agent.routing()),
        }
        .expect("serializable")
    }

    /// Parses and validates a body; on success returns its JSON and a
    /// function that puts it in effect.
    fn parse(self, body: &[u8]) -> Result<(Value, Apply), DocError> {
        match self {
            Self::Agent => {
                let doc = AgentDoc::from_json(body)?;
                let value = serde_json::to_value(&doc).expect("serializable");
                Ok((value, Box::new(move |s: &ApiState| s.agent.replace(doc))))
            }
            Self::Escalation => {
                let doc = EscalationDoc::from_json(body)?;
                let value = serde_json::to_value(&doc).expect("serializable");
                Ok((
                    value,
                    Box::new(move |s: &ApiState| s.agent.replace_escalation(doc)),
                ))
            }
            Self::Routing => {
                let doc = RoutingDoc::from_json(body)?;
                let value = serde_json::to_value(&doc).expect("serializable");
                Ok((
                    value,
                    Box::new(move |s: &ApiState| s.agent.replace_routing(doc)),
                ))
            }
        }
    }
}

pub async fn handle(state: &ApiState, kind: Kind, req: &Request<Bytes>) -> Resp {
    // One document request at a time: the version read, the write and the
    // swap in memory happen together, so two PUTs with the same If-Match
    // cannot both succeed, and the document in effect is the last stored.
    let _one_at_a_time = state.documents.lock().await;
    let version = match state.store.document(kind.name()).await {
        Ok(doc) => doc.map_or(0, |d| d.version),
        Err(e) => return internal(e),
    };
    let etag = format!("\"v{version}\"");
    match *req.method() {
        Method::GET => shown(kind.current(state), &etag),
        // The route table sends only GET and PUT here.
        Method::PUT => {
            // The body first: a bad document is a 422 whatever If-Match says.
            let (value, apply) = match kind.parse(req.body()) {
                Ok(parsed) => parsed,
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
            if let Some(header) = req.headers().get(IF_MATCH) {
                match if_match(header.to_str().unwrap_or(""), &etag) {
                    Some(true) => {}
                    Some(false) => {
                        return error(
                            StatusCode::PRECONDITION_FAILED,
                            "precondition_failed",
                            "the document changed since it was read; GET it again",
                            None,
                        )
                    }
                    None => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            "invalid_header",
                            "If-Match must be * or ETags as GET returns them, such as \"v3\"",
                            Some("If-Match"),
                        )
                    }
                }
            }
            let write = Write::PutDocument {
                name: kind.name(),
                json: value.to_string(),
            };
            if let Err(e) = state.store.write_durable(write).await {
                return internal(e);
            }
            apply(state);
            shown(value, &format!("\"v{}\"", version + 1))
        }
        _ => not_allowed(),
    }
}

/// Whether an `If-Match` value (`*` or a list of entity tags, RFC 9110
/// §13.1.1) matches `etag` (strong comparison: a weak tag never matches);
/// None when it is malformed.
pub fn if_match(value: &str, etag: &str) -> Option<bool> {
    let value = value.trim();
    if value == "*" {
        return Some(true);
    }
    let mut matched = false;
    for tag in value.split(',').map(str::trim) {
        let (weak, opaque) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        let inner = opaque.strip_prefix('"')?.strip_suffix('"')?;
        if inner.contains('"') {
            return None;
        }
        matched |= !weak && opaque == etag;
    }
    Some(matched)
}

/// The document as tenants see it: each `api_key` replaced by `api_key_set`.
fn shown(mut value: Value, etag: &str) -> Resp {
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

#[cfg(test)]
mod tests {
    use super::if_match;

    #[test]
    fn if_match_takes_star_lists_and_refuses_weak_or_malformed_tags() {
        let etag = "\"v3\"";
        assert_eq!(if_match("*", etag), Some(true));
        assert_eq!(if_match("\"v3\"", etag), Some(true));
        assert_eq!(if_match("\"v1\", \"v3\"", etag), Some(true));
        assert_eq!(if_match("\"v2\"", etag), Some(false));
        assert_eq!(
            if_match("W/\"v3\"", etag),
            Some(false),
            "weak never matches"
        );
        for bad in ["", "v3", "\"v3", "\"a\"b\"", "\"v3\",", "W/"] {
            assert_eq!(if_match(bad, etag), None, "{bad:?}");
        }
    }
}
