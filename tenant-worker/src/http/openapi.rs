//! `GET /openapi.json`: OpenAPI 3.1, built once from the route table and
//! the handlers' own types (JSON Schema 2020-12, which OpenAPI 3.1 uses).

use std::sync::OnceLock;

use schemars::generate::SchemaSettings;
use serde_json::{json, Map, Value};

use super::portal::Asset;
use super::routes::{self, ApiError, Route};

/// The document, serialized once.
pub fn document() -> &'static [u8] {
    static DOC: OnceLock<Vec<u8>> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_vec_pretty(&build()).expect("serializable"))
}

fn build() -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas/".into();
            s.meta_schema = None;
        })
        .into_generator();
    let error = generator.subschema_for::<ApiError>();
    let mut paths = Map::new();
    for route in routes::all() {
        let item = paths
            .entry(route.path)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("a path item is an object");
        item.insert(
            route.method.as_str().to_ascii_lowercase(),
            operation(route, &mut generator, &error),
        );
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Bulkhead tenant API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "One tenant's calls, transcripts and configuration, served by that tenant's own sandboxed worker. Every /v1 path needs `Authorization: Bearer <token>`.",
        },
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    })
}

fn operation(
    route: &Route,
    generator: &mut schemars::SchemaGenerator,
    error: &schemars::Schema,
) -> Value {
    let mut op = json!({
        "operationId": route.operation_id,
        "summary": route.summary,
    });
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            json!({"name": name, "in": "path", "required": true,
                   "schema": {"type": "string", "maxLength": 128}})
        })
        .collect();
    for q in route.query {
        let schema: Value = serde_json::from_str(q.schema).expect("a query schema is JSON");
        parameters.push(json!({"name": q.name, "in": "query", "required": false,
                               "description": q.description, "schema": schema}));
    }
    if route.etag && route.request.is_some() {
        parameters.push(
            json!({"name": "If-Match", "in": "header", "required": false,
            "description": "the ETag of the last GET; 412 when the document changed since",
            "schema": {"type": "string"}}),
        );
    }
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    if let Some(request) = route.request {
        op["requestBody"] = json!({"required": true,
            "content": {"application/json": {"schema": request(generator)}}});
    }
    let mut ok = json!({"description": "success"});
    match (route.response, route.op) {
        (Some(response), _) => {
            ok["content"] = json!({"application/json": {"schema": response(generator)}})
        }
        (None, routes::Op::Portal(asset)) => {
            let media = match asset {
                Asset::Index => "text/html",
                Asset::Script => "text/javascript",
                Asset::Style => "text/css",
                Asset::Icon => "image/svg+xml",
            };
            ok["content"] = json!({ media: {} });
        }
        (None, routes::Op::OpenApi) => ok["content"] = json!({"application/json": {}}),
        (None, _) => {}
    }
    if route.etag {
        ok["headers"] = json!({"ETag": {"schema": {"type": "string"}}});
    }
    let err = json!({"description": "error", "content": {"application/json": {"schema": error}}});
    let mut responses = Map::new();
    responses.insert(route.status.to_string(), ok);
    let mut codes = vec!["400", "413", "431", "429"];
    if route.auth {
        codes.extend(["401", "404"]);
        op["security"] = json!([{"bearer": []}]);
    }
    if route.request.is_some() {
        codes.push("422");
    }
    if route.etag && route.request.is_some() {
        codes.push("412");
    }
    for code in codes {
        responses.insert(code.into(), err.clone());
    }
    op["responses"] = Value::Object(responses);
    op
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_with_resolvable_schemas() {
        let doc: Value = serde_json::from_slice(document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for route in routes::all() {
            let op = &doc["paths"][route.path][route.method.as_str().to_ascii_lowercase()];
            assert_eq!(op["operationId"], route.operation_id, "{}", route.path);
        }
        // Every $ref points at a schema the document defines.
        let text = String::from_utf8(document().to_vec()).unwrap();
        for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(
                doc["components"]["schemas"][name].is_object(),
                "undefined schema {name}"
            );
        }
        // The documents refuse unknown fields in the schema too.
        let agent = &doc["components"]["schemas"]["AgentDoc"];
        assert_eq!(agent["additionalProperties"], false);
        let key = &doc["components"]["schemas"]["Provider"]["properties"]["api_key"];
        assert_eq!(key["writeOnly"], true);
    }
}
