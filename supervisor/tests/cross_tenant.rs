//! The cross-tenant attack suite (OWASP API1, broken object level
//! authorization). Two tenants with calls, transcripts, configuration and
//! tokens; every endpoint the worker's own OpenAPI document lists (so a new
//! endpoint is attacked without editing this file) is tried on each tenant's
//! port with the other tenant's token and object ids, no token, malformed
//! tokens, oversized headers, hostile JSON bodies and path tricks. Every
//! answer must be a 4xx with none of the victim's data, never a 5xx, and
//! both tenants' data and configuration must be unchanged afterwards.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

/// A tenant as the attacker sees it: its port, token and what is its own.
struct Tenant {
    port: u16,
    token: String,
    call_ids: Vec<String>,
    token_ids: Vec<String>,
    /// Strings that only this tenant's data contains.
    secrets: Vec<String>,
}

/// One raw HTTP exchange; (status, whole response text).
fn exchange(port: u16, head: &str, body: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

fn send(port: u16, method: &str, path: &str, auth: Option<&str>, body: &[u8]) -> (u16, String) {
    let auth = auth
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    exchange(port, &head, body)
}

/// Everything a tenant can read about itself, to compare before and after.
fn snapshot(t: &Tenant) -> Value {
    let bearer = format!("Bearer {}", t.token);
    let get = |path: &str| -> Value {
        let (status, text) = send(t.port, "GET", path, Some(&bearer), b"");
        assert_eq!(status, 200, "GET {path}: {text}");
        let body = text.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap()
    };
    let mut snap = json!({
        "calls": get("/v1/calls?limit=200"),
        "numbers": get("/v1/numbers"),
        "agent": get("/v1/agent"),
        "routing": get("/v1/routing"),
        "escalation": get("/v1/escalation"),
        "tokens": get("/v1/tokens"),
    });
    for id in &t.call_ids {
        snap[format!("transcript {id}")] = get(&format!("/v1/calls/{id}/transcript"));
    }
    snap
}

/// Sets up a tenant with a call (and its transcript), a distinctive agent
/// document and escalation target, and a second token.
fn prepare(sup: &Supervisor, id: &str, number: &str) -> Tenant {
    let added = sup.add_tenant(id, &[number]);
    let (port, token) = api_of(&added);
    let token = token.to_owned();
    let greeting = format!("Welcome to the {id} line, secret-{id}-greeting.");
    let agent = json!({"greeting": greeting, "prompt": format!("secret-{id}-prompt")});
    let (status, _, body) = http_request(
        port,
        "PUT",
        "/v1/agent",
        Some(&token),
        &[],
        &agent.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let escalation = json!({"targets": [{"name": format!("{id}-desk"),
                                          "uri": format!("sip:secret-{id}-desk@127.0.0.1:9")}]});
    let (status, _, body) = http_request(
        port,
        "PUT",
        "/v1/escalation",
        Some(&token),
        &[],
        &escalation.to_string(),
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, made) = http_request(
        port,
        "POST",
        "/v1/tokens",
        Some(&token),
        &[],
        &json!({"name": format!("secret-{id}-token")}).to_string(),
    );
    assert_eq!(status, 201, "{made}");
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, number, 1, "u1");
    assert!(ok, "{out}");
    let calls = settled_calls(port, &token);
    assert_eq!(calls.len(), 1);
    let call_ids: Vec<String> = calls
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let (_, tokens) = http_get(port, "/v1/tokens", Some(&token));
    let token_ids: Vec<String> = tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    let mut secrets = vec![
        format!("secret-{id}-greeting"),
        format!("secret-{id}-prompt"),
        format!("secret-{id}-desk"),
        format!("secret-{id}-token"),
        number.to_owned(),
        token.clone(),
    ];
    secrets.extend(call_ids.iter().cloned());
    secrets.extend(token_ids.iter().cloned());
    secrets.extend(
        calls
            .iter()
            .map(|c| c["call_id"].as_str().unwrap().to_owned()),
    );
    Tenant {
        port,
        token,
        call_ids,
        token_ids,
        secrets,
    }
}

/// The endpoints, from the worker's own OpenAPI document.
fn endpoints(port: u16) -> Vec<(String, String, bool, bool)> {
    let (status, doc) = http_get(port, "/openapi.json", None);
    assert_eq!(status, 200);
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let auth = op.get("security").is_some();
            let has_body = op.get("requestBody").is_some();
            out.push((method.to_uppercase(), path.clone(), auth, has_body));
        }
    }
    assert!(
        out.len() >= 15,
        "the document lists {} operations",
        out.len()
    );
    out
}

/// Hostile bodies for endpoints that take JSON.
fn hostile_bodies() -> Vec<Vec<u8>> {
    let mut bodies: Vec<Vec<u8>> = [
        "",
        "null",
        "[]",
        "\"text\"",
        "{",
        "{\"greeting\": 1}",
        "{\"name\": null}",
        "{\"__proto__\": {\"admin\": true}}",
        "{\"tenant_id\": \"victim\", \"name\": \"x\"}",
        "{\"greeting\": \"a\", \"greeting\": \"b\"}",
        "{\"expires_in_s\": 1e400, \"name\": \"x\"}",
        "{\"expires_in_s\": -1, \"name\": \"x\"}",
        "{\"timezone\": \"../../../../etc/passwd\"}",
        "{\"targets\": [{\"name\": \"x\", \"uri\": \"file:///etc/shadow\"}]}",
        "{\"llm\": {\"provider\": \"openai\", \"base_url\": \"http://user:pw@127.0.0.1:1/\"}}",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    bodies.push(format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).into_bytes());
    bodies.push(format!("{{\"greeting\": \"{}\"}}", "é".repeat(30_000)).into_bytes());
    bodies.push(b"{\"greeting\": \"\xff\xfe\"}".to_vec());
    bodies.push(b"{\"name\": \"\\u0000\"}".to_vec());
    bodies
}

fn path_tricks(path: &str, victim_id: &str) -> Vec<String> {
    let filled = path.replace("{id}", victim_id);
    vec![
        format!("{filled}/"),
        format!("/{filled}"),
        filled.replacen("/v1/", "/V1/", 1),
        filled.replacen("/v1/", "/v1/./", 1),
        filled.replacen("/v1/", "/v2/../v1/", 1),
        format!("{filled}%00"),
        format!("{filled}/..%2f..%2f"),
        filled.replace(victim_id, &format!("..%2f{victim_id}")),
        format!("http://victim.example{filled}"),
        format!("{filled}?tenant=victim&limit=-1"),
        format!("{filled};tenant=victim"),
    ]
}

/// Asserts one answer to an attack: a 4xx, none of the victim's data.
fn refused(what: &str, (status, text): (u16, String), victim: &Tenant, allowed: &[u16]) {
    assert!(
        (400..500).contains(&status) && (allowed.is_empty() || allowed.contains(&status)),
        "{what}: status {status}, wanted 4xx {allowed:?}\n{text}"
    );
    for secret in &victim.secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what}: leaked {secret:?}\n{text}"
        );
    }
}

/// Every attack from `attacker`'s position on `victim`'s data.
fn attack(attacker: &Tenant, victim: &Tenant) -> usize {
    let mut tried = 0;
    let port = attacker.port;
    let foreign = format!("Bearer {}", victim.token);
    let malformed = [
        String::new(),
        "Bearer".into(),
        "Bearer ".into(),
        "Bearer bh_".into(),
        format!("Basic {}", victim.token),
        format!("Bearer {}x", victim.token),
        format!("Bearer {}", victim.token.to_uppercase()),
        format!("Bearer {}", &victim.token[..victim.token.len() - 1]),
        format!("Bearer {} {}", victim.token, attacker.token),
        format!("Bearer bh_{}", "a".repeat(8000)),
        "Bearer ../../tenants/victim/tenant.db".into(),
    ];
    for (method, path, auth, has_body) in endpoints(port) {
        let ids: Vec<&String> = if path.starts_with("/v1/calls/") {
            victim.call_ids.iter().collect()
        } else if path.starts_with("/v1/tokens/") {
            victim.token_ids.iter().collect()
        } else {
            vec![]
        };
        let concrete: Vec<String> = if path.contains("{id}") {
            ids.iter().map(|id| path.replace("{id}", id)).collect()
        } else {
            vec![path.clone()]
        };
        // A body every endpoint refuses (an unknown field), so an attack
        // that lands on one of the attacker's own routes changes nothing.
        let body: &[u8] = if has_body {
            br#"{"attack": true}"#
        } else {
            b""
        };
        // A fresh token of the attacker's own per endpoint: its request
        // budget never turns an answer into a 429.
        let (_, _, own) = http_request(
            port,
            "POST",
            "/v1/tokens",
            Some(&attacker.token),
            &[],
            r#"{"name": "attack"}"#,
        );
        let own_token = own["token"].as_str().unwrap().to_owned();
        let own = format!("Bearer {own_token}");
        for target in &concrete {
            let what = |how: &str| format!("{method} {target} with {how}");
            if auth {
                refused(
                    &what("the victim's token"),
                    send(port, &method, target, Some(&foreign), body),
                    victim,
                    &[401],
                );
                refused(
                    &what("no token"),
                    send(port, &method, target, None, body),
                    victim,
                    &[401],
                );
                for m in &malformed {
                    let r = send(port, &method, target, Some(m), body);
                    refused(
                        &what(&format!("token {:.20}…", m)),
                        r,
                        victim,
                        &[400, 401, 431],
                    );
                    tried += 1;
                }
                tried += 2;
            }
            if path.contains("{id}") {
                // The attacker's own valid token, the victim's object id.
                refused(
                    &what("the victim's object id"),
                    send(port, &method, target, Some(&own), body),
                    victim,
                    &[404],
                );
                tried += 1;
            }
            let victim_id = ids.first().map_or("x", |s| s.as_str());
            for trick in path_tricks(&path, victim_id) {
                let r = send(port, &method, &trick, Some(&own), body);
                // A trick may land on a real route of the attacker's own
                // (a 2xx with its own data); it must never reach the victim.
                if !(200..300).contains(&r.0) {
                    refused(&format!("{method} {trick}"), r, victim, &[]);
                } else {
                    for secret in &victim.secrets {
                        assert!(!r.1.contains(secret.as_str()), "{trick}: leaked {secret}");
                    }
                }
                tried += 1;
            }
            let huge = format!(
                "{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: {own}\r\nX-Pad: {}\r\n\r\n",
                "p".repeat(32 * 1024)
            );
            refused(
                &what("a 32 KiB header"),
                exchange(port, &huge, b""),
                victim,
                &[431],
            );
            tried += 1;
        }
        if has_body {
            for hostile in hostile_bodies() {
                let r = send(port, &method, &path, Some(&own), &hostile);
                let shown = String::from_utf8_lossy(&hostile[..hostile.len().min(40)]).into_owned();
                refused(
                    &format!("{method} {path} with body {shown}"),
                    r,
                    victim,
                    &[400, 404, 409, 413, 422],
                );
                tried += 1;
            }
        }
    }
    tried
}

#[test]
fn every_endpoint_refuses_every_cross_tenant_attack_and_changes_nothing() {
    let sup = Supervisor::start();
    let clinic = prepare(&sup, "clinic", "+15550100");
    let insurance = prepare(&sup, "insurance", "+15550200");
    let before = (snapshot(&clinic), snapshot(&insurance));

    let tried = attack(&clinic, &insurance) + attack(&insurance, &clinic);
    assert!(tried > 500, "only {tried} attacks");

    // Nothing changed on either side: no call, transcript, document or
    // token of the victim, and the attacker's hostile writes stored nothing.
    let strip_attack_tokens = |mut v: Value| {
        let tokens = v["tokens"]["tokens"].as_array_mut().unwrap();
        tokens.retain(|t| t["name"] != "attack");
        v
    };
    let after = (snapshot(&clinic), snapshot(&insurance));
    assert_eq!(strip_attack_tokens(before.0), strip_attack_tokens(after.0));
    assert_eq!(strip_attack_tokens(before.1), strip_attack_tokens(after.1));
    // Both workers are the same processes: no attack crashed one.
    let log = sup.log();
    assert!(!log.contains("panicked"), "{log}");
    for id in ["clinic", "insurance"] {
        let show = sup.cli_json(&["tenant", "show", id]);
        assert_eq!(show["restarts"], 0, "{show}");
    }
}

#[test]
fn concurrent_puts_with_one_etag_let_exactly_one_win() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    let (_, head, _) = http_request(port, "GET", "/v1/agent", Some(token), &[], "");
    let etag = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("etag: ")
                .map(str::to_owned)
        })
        .unwrap();
    let results: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let etag = etag.clone();
                s.spawn(move || {
                    let body = json!({"greeting": format!("writer {i}")}).to_string();
                    http_request(
                        port,
                        "PUT",
                        "/v1/agent",
                        Some(token),
                        &[("If-Match", &etag)],
                        &body,
                    )
                    .0
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|&&s| s == 200).count(),
        1,
        "{results:?}"
    );
    assert_eq!(
        results.iter().filter(|&&s| s == 412).count(),
        7,
        "{results:?}"
    );
}
