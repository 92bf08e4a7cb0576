//! The API's one route table. Requests are dispatched by it and
//! `/openapi.json` is generated from it, with the schemas of the very types
//! the handlers read and write, so the document cannot drift from the code
//! and the attack suite (which reads the document) reaches every endpoint.

use hyper::Method;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::store::{CallPage, CallRecord, TokenInfo, Turn};
use bulkhead_voice::agent::escalation::EscalationDoc;
use bulkhead_voice::agent::routing::RoutingDoc;
use bulkhead_voice::agent::AgentDoc;

/// What a route does; `super::dispatch` runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Health,
    OpenApi,
    Portal(super::portal::Asset),
    ListCalls,
    GetCall,
    GetTranscript,
    ListNumbers,
    GetDocument(super::documents::Kind),
    PutDocument(super::documents::Kind),
    ListTokens,
    CreateToken,
    RevokeToken,
}

/// A body's JSON Schema, from its Rust type.
pub type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// One method on one path.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    /// OpenAPI path template: `{name}` matches one non-empty segment.
    pub path: &'static str,
    pub op: Op,
    pub operation_id: &'static str,
    pub summary: &'static str,
    /// Needs `Authorization: Bearer <token>`.
    pub auth: bool,
    pub query: &'static [QueryParam],
    pub request: Option<SchemaFn>,
    /// The success status and its body (None: no body or not JSON).
    pub status: u16,
    pub response: Option<SchemaFn>,
    /// Optimistic concurrency: `ETag` out, `If-Match` in.
    pub etag: bool,
}

/// A query parameter and its schema, as JSON.
#[derive(Debug)]
pub struct QueryParam {
    pub name: &'static str,
    pub schema: &'static str,
    pub description: &'static str,
}

fn schema<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// `GET /healthz`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    pub status: String,
}

/// `GET /v1/numbers`: the numbers the admin assigned to this tenant.
#[derive(Debug, Serialize, JsonSchema)]
pub struct NumberList {
    pub numbers: Vec<String>,
}

/// `GET /v1/calls/{id}/transcript`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Transcript {
    pub turns: Vec<Turn>,
}

/// `POST /v1/tokens`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// 1 to 64 printable characters, to tell tokens apart.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"\S"))]
    pub name: String,
    /// Seconds until the token stops working (a minute to ten years); none: never.
    #[serde(default, deserialize_with = "whole_seconds")]
    #[schemars(range(min = 60, max = 315_360_000))]
    pub expires_in_s: Option<u64>,
}

/// Seconds as JSON Schema counts integers: `600` or `600.0`, not `600.5`.
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<f64>::deserialize(d)? else {
        return Ok(None);
    };
    if n.fract() != 0.0 || !(0.0..=u64::MAX as f64).contains(&n) {
        return Err(serde::de::Error::custom(format!(
            "expires_in_s must be a whole number of seconds, not {n}"
        )));
    }
    Ok(Some(n as u64))
}

/// A new token: `token` is shown this once and never stored.
#[derive(Debug, Serialize, JsonSchema)]
pub struct IssuedToken {
    pub id: String,
    pub name: String,
    pub token: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// `GET /v1/tokens`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenList {
    pub tokens: Vec<TokenInfo>,
    pub next_cursor: Option<String>,
}

/// Every error: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ApiError {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// A stable snake_case code, e.g. `invalid_document`.
    pub code: String,
    /// One sentence a person can act on.
    pub message: String,
    /// The field or parameter at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

const CALL_QUERY: &[QueryParam] = &[
    QueryParam {
        name: "limit",
        schema: r#"{"type": "integer", "minimum": 1, "maximum": 200, "default": 50}"#,
        description: "calls per page",
    },
    QueryParam {
        name: "cursor",
        schema: r#"{"type": "string", "pattern": "^[0-9]{1,18}$"}"#,
        description: "the next_cursor of the previous page",
    },
    QueryParam {
        name: "since",
        schema: r#"{"type": "string", "format": "date-time", "pattern": "Z$"}"#,
        description: "started at or after (RFC 3339 UTC, Z)",
    },
    QueryParam {
        name: "until",
        schema: r#"{"type": "string", "format": "date-time", "pattern": "Z$"}"#,
        description: "started before (RFC 3339 UTC, Z)",
    },
    QueryParam {
        name: "number",
        schema: r#"{"type": "string"}"#,
        description: "calls to or from this number",
    },
    QueryParam {
        name: "outcome",
        schema: r#"{"type": "string", "enum": ["completed", "escalated", "abandoned", "rejected", "failed", "in_progress"]}"#,
        description: "only calls with this outcome",
    },
];

macro_rules! route {
    ($method:ident $path:literal $op:expr, $id:literal, $summary:literal,
     auth: $auth:expr, query: $query:expr, request: $req:expr, $status:literal => $resp:expr, etag: $etag:expr) => {
        Route {
            method: Method::$method,
            path: $path,
            op: $op,
            operation_id: $id,
            summary: $summary,
            auth: $auth,
            query: $query,
            request: $req,
            status: $status,
            response: $resp,
            etag: $etag,
        }
    };
}

/// Every route of the tenant API.
pub fn all() -> &'static [Route] {
    use super::documents::Kind::{Agent, Escalation, Routing};
    use super::portal::Asset;
    static ROUTES: std::sync::OnceLock<Vec<Route>> = std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        vec![
            route!(GET "/healthz" Op::Health, "health", "Liveness; no tenant data.",
                auth: false, query: &[], request: None, 200 => Some(schema::<Health>), etag: false),
            route!(GET "/openapi.json" Op::OpenApi, "openapi", "This document.",
                auth: false, query: &[], request: None, 200 => None, etag: false),
            route!(GET "/" Op::Portal(Asset::Index), "portal", "The operator portal (HTML; signs in with a token).",
                auth: false, query: &[], request: None, 200 => None, etag: false),
            route!(GET "/portal/app.js" Op::Portal(Asset::Script), "portalScript", "The portal's script.",
                auth: false, query: &[], request: None, 200 => None, etag: false),
            route!(GET "/portal/style.css" Op::Portal(Asset::Style), "portalStyle", "The portal's style sheet.",
                auth: false, query: &[], request: None, 200 => None, etag: false),
            route!(GET "/portal/icon.svg" Op::Portal(Asset::Icon), "portalIcon", "The portal's icon.",
                auth: false, query: &[], request: None, 200 => None, etag: false),
            route!(GET "/v1/calls" Op::ListCalls, "listCalls", "Call records, newest first, filtered and paged.",
                auth: true, query: CALL_QUERY, request: None, 200 => Some(schema::<CallPage>), etag: false),
            route!(GET "/v1/calls/{id}" Op::GetCall, "getCall", "One call record.",
                auth: true, query: &[], request: None, 200 => Some(schema::<CallRecord>), etag: false),
            route!(GET "/v1/calls/{id}/transcript" Op::GetTranscript, "getTranscript", "A call's transcript, turn by turn.",
                auth: true, query: &[], request: None, 200 => Some(schema::<Transcript>), etag: false),
            route!(GET "/v1/numbers" Op::ListNumbers, "listNumbers", "The tenant's numbers (admins assign them).",
                auth: true, query: &[], request: None, 200 => Some(schema::<NumberList>), etag: false),
            route!(GET "/v1/agent" Op::GetDocument(Agent), "getAgent", "The agent document.",
                auth: true, query: &[], request: None, 200 => Some(schema::<AgentDoc>), etag: true),
            route!(PUT "/v1/agent" Op::PutDocument(Agent), "putAgent", "Replaces the agent document; applies from the next call.",
                auth: true, query: &[], request: Some(schema::<AgentDoc>), 200 => Some(schema::<AgentDoc>), etag: true),
            route!(GET "/v1/routing" Op::GetDocument(Routing), "getRouting", "The routing document.",
                auth: true, query: &[], request: None, 200 => Some(schema::<RoutingDoc>), etag: true),
            route!(PUT "/v1/routing" Op::PutDocument(Routing), "putRouting", "Replaces the routing document; applies from the next call.",
                auth: true, query: &[], request: Some(schema::<RoutingDoc>), 200 => Some(schema::<RoutingDoc>), etag: true),
            route!(GET "/v1/escalation" Op::GetDocument(Escalation), "getEscalation", "The escalation document.",
                auth: true, query: &[], request: None, 200 => Some(schema::<EscalationDoc>), etag: true),
            route!(PUT "/v1/escalation" Op::PutDocument(Escalation), "putEscalation", "Replaces the escalation document; applies from the next call.",
                auth: true, query: &[], request: Some(schema::<EscalationDoc>), 200 => Some(schema::<EscalationDoc>), etag: true),
            route!(GET "/v1/tokens" Op::ListTokens, "listTokens", "The tenant's unrevoked tokens (never their values).",
                auth: true, query: &[], request: None, 200 => Some(schema::<TokenList>), etag: false),
            route!(POST "/v1/tokens" Op::CreateToken, "createToken", "Issues a token; its value is shown once.",
                auth: true, query: &[], request: Some(schema::<NewToken>), 201 => Some(schema::<IssuedToken>), etag: false),
            route!(DELETE "/v1/tokens/{id}" Op::RevokeToken, "revokeToken", "Revokes a token at once.",
                auth: true, query: &[], request: None, 204 => None, etag: false),
        ]
    })
}

/// Longest path parameter accepted; longer ones name nothing.
const MAX_PARAM: usize = 128;

/// What a request path matched.
#[derive(Debug)]
pub enum Matched<'a> {
    /// A route, and the values of its `{…}` segments in order.
    Route(&'static Route, Vec<&'a str>),
    /// The path exists, not with this method; the methods it has.
    WrongMethod(Vec<&'static str>),
    NotFound,
}

/// Finds the route for `method` and `path`.
pub fn find<'a>(method: &Method, path: &'a str) -> Matched<'a> {
    let mut allowed = Vec::new();
    for route in all() {
        if let Some(params) = match_path(route.path, path) {
            if route.method == *method {
                return Matched::Route(route, params);
            }
            allowed.push(route.method.as_str());
        }
    }
    if allowed.is_empty() {
        Matched::NotFound
    } else {
        Matched::WrongMethod(allowed)
    }
}

fn match_path<'a>(template: &str, path: &'a str) -> Option<Vec<&'a str>> {
    let mut params = Vec::new();
    let mut want = template.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() || g.len() > MAX_PARAM {
                    return None;
                }
                params.push(g);
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_whole_segments_only() {
        let m = |method: Method, p: &str| match find(&method, p) {
            Matched::Route(r, params) => format!("{} {:?}", r.operation_id, params),
            Matched::WrongMethod(a) => format!("405 {a:?}"),
            Matched::NotFound => "404".into(),
        };
        assert_eq!(m(Method::GET, "/v1/calls"), "listCalls []");
        assert_eq!(m(Method::GET, "/v1/calls/c1"), "getCall [\"c1\"]");
        assert_eq!(
            m(Method::GET, "/v1/calls/c1/transcript"),
            "getTranscript [\"c1\"]"
        );
        assert_eq!(m(Method::GET, "/v1/calls/"), "404");
        assert_eq!(m(Method::GET, "/v1/calls//transcript"), "404");
        assert_eq!(m(Method::GET, "/v1/calls/c1/transcript/x"), "404");
        assert_eq!(m(Method::GET, "//v1/calls"), "404");
        assert_eq!(
            m(Method::GET, &format!("/v1/calls/{}", "x".repeat(129))),
            "404"
        );
        assert_eq!(m(Method::DELETE, "/v1/calls"), "405 [\"GET\"]");
        assert_eq!(m(Method::POST, "/v1/agent"), "405 [\"GET\", \"PUT\"]");
        assert_eq!(
            m(Method::DELETE, "/v1/tokens/tok_1"),
            "revokeToken [\"tok_1\"]"
        );
        assert_eq!(m(Method::GET, "/"), "portal []");
    }

    #[test]
    fn operation_ids_are_unique() {
        let mut ids: Vec<_> = all().iter().map(|r| r.operation_id).collect();
        ids.sort_unstable();
        let n = ids.len();
        ids.dedup();
        assert_eq!(ids.len(), n);
    }
}
