//! The tenant API's own promises, through a real supervisor and sandboxed
//! worker: token self-service and the admin's token commands, the OpenAPI
//! document, and the limits on what a request may be (413, 431, 429, 405).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use serde_json::Value;

#[test]
fn tenants_manage_their_own_tokens_and_admins_see_and_revoke_them() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, first) = api_of(&clinic);

    // A tenant creates a named, expiring token; its value is shown once.
    let (status, _, made) = http_request(
        port,
        "POST",
        "/v1/tokens",
        Some(first),
        &[("Content-Type", "application/json")],
        r#"{"name": "ci pipeline", "expires_in_s": 86400}"#,
    );
    assert_eq!(status, 201, "{made}");
    let second = made["token"].as_str().unwrap().to_owned();
    let second_id = made["id"].as_str().unwrap().to_owned();
    assert!(second.starts_with("bh_") && made["expires_at"].is_string());
    assert_eq!(http_get(port, "/v1/numbers", Some(&second)).0, 200);

    // The list names both and shows no token value or hash.
    let (status, listed) = http_get(port, "/v1/tokens", Some(&second));
    assert_eq!(status, 200);
    let text = listed.to_string();
    assert!(!text.contains(&second) && !text.contains(first), "{text}");
    let names: Vec<&str> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"ci pipeline") && names.len() == 2,
        "{names:?}"
    );

    // Bad requests name the field and create nothing.
    for (body, field) in [
        (r#"{"name": ""}"#, "name"),
        (r#"{"name": "x", "expires_in_s": 5}"#, "expires_in_s"),
        (r#"{"name": "x", "admin": true}"#, "admin"),
    ] {
        let (status, _, err) = http_request(port, "POST", "/v1/tokens", Some(first), &[], body);
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }

    // The admin sees the same tokens (by id and name, never values)...
    let admin_view = sup.cli_json(&["tenant", "tokens", "clinic"]);
    let ids: Vec<&str> = admin_view["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&second_id.as_str()) && ids.len() == 2);
    let human = sup.cli(&["tenant", "tokens", "clinic"]);
    assert!(String::from_utf8_lossy(&human.stdout).contains("ci pipeline"));

    // ...and revokes one: it stops working at once.
    sup.cli_json(&["tenant", "revoke-token", "clinic", &second_id]);
    assert_eq!(http_get(port, "/v1/numbers", Some(&second)).0, 401);
    let again = sup.cli(&["tenant", "revoke-token", "clinic", &second_id]);
    assert_eq!(again.status.code(), Some(1), "revoked twice");
    assert!(String::from_utf8_lossy(&again.stderr).contains("has no token"));
    let bad = sup.cli(&["tenant", "revoke-token", "clinic", "../../etc"]);
    assert_eq!(bad.status.code(), Some(2));

    // A tenant revokes its own token the same way; unknown ids are 404.
    let (_, _, third) = http_request(
        port,
        "POST",
        "/v1/tokens",
        Some(first),
        &[],
        r#"{"name": "laptop"}"#,
    );
    let third_id = third["id"].as_str().unwrap();
    let path = format!("/v1/tokens/{third_id}");
    assert_eq!(
        http_request(port, "DELETE", &path, Some(first), &[], "").0,
        204
    );
    assert_eq!(
        http_request(port, "DELETE", &path, Some(first), &[], "").0,
        404
    );
    assert_eq!(
        http_get(port, "/v1/numbers", third["token"].as_str()).0,
        401
    );

    // Tokens survive a worker restart (they live in the tenant's store).
    let old = clinic["pid"].as_u64().unwrap();
    sup.cli_json(&["tenant", "restart", "clinic"]);
    back_up(&sup, "clinic", old);
    assert_eq!(http_get(port, "/v1/numbers", Some(first)).0, 200);
    assert_eq!(http_get(port, "/v1/numbers", Some(&second)).0, 401);
    // No token reached the logs.
    let log = sup.log();
    assert!(!log.contains(first) && !log.contains(&second));
}

#[test]
fn the_openapi_document_describes_what_the_worker_serves() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    let (status, doc) = http_get(port, "/openapi.json", None);
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/v1/calls",
        "/v1/calls/{id}/transcript",
        "/v1/agent",
        "/v1/tokens",
        "/v1/tokens/{id}",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
    // The documented success status is what the worker answers.
    for (path, item) in paths {
        let Some(get) = item.get("get") else { continue };
        if path.contains('{') {
            continue;
        }
        let want: u16 = get["responses"]
            .as_object()
            .unwrap()
            .keys()
            .find(|k| k.starts_with('2'))
            .unwrap()
            .parse()
            .unwrap();
        let auth = get.get("security").map(|_| token);
        let (status, _, _) = http_request(port, "GET", path, auth, &[], "");
        assert_eq!(status, want, "GET {path}");
    }
    // The portal is served with a policy that allows only its own files.
    let (status, head, _) = http_request(port, "GET", "/", None, &[], "");
    assert_eq!(status, 200);
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(head.contains("text/html"));
}

/// Raw bytes to the port; the status of the answer.
fn raw_status(port: u16, request: &[u8]) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(request);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn oversized_and_excessive_requests_get_their_own_statuses() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);

    // 413: a body past 64 KiB, before it is parsed.
    let big = format!(r#"{{"greeting": "{}"}}"#, "a".repeat(70 * 1024));
    let (status, _, err) = http_request(port, "PUT", "/v1/agent", Some(token), &[], &big);
    assert_eq!(status, 413, "{err}");

    // 431: a header section past 16 KiB, and too many header fields.
    let long = format!(
        "GET /v1/calls HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(20 * 1024)
    );
    assert_eq!(raw_status(port, long.as_bytes()), 431);
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    assert_eq!(raw_status(port, many.as_bytes()), 431);

    // 405 names the methods the path has.
    let (status, head, _) = http_request(port, "DELETE", "/v1/agent", Some(token), &[], "");
    assert_eq!(status, 405);
    assert!(
        head.to_ascii_lowercase().contains("allow: get, put"),
        "{head}"
    );

    // 429: one token's budget (200 at once, 100/s) runs out on a burst
    // sent over one connection; another token is not charged for it.
    let (_, _, other) = http_request(
        port,
        "POST",
        "/v1/tokens",
        Some(token),
        &[],
        r#"{"name": "other"}"#,
    );
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let one =
        format!("GET /v1/numbers HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n");
    let burst = one.repeat(1000) + "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    s.write_all(burst.as_bytes()).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let text = String::from_utf8_lossy(&resp);
    let limited = text.matches("HTTP/1.1 429").count();
    let served = text.matches("HTTP/1.1 200").count();
    assert!(limited > 0, "no 429 in {served} answers");
    assert!(text.to_ascii_lowercase().contains("retry-after:"));
    assert_eq!(limited + served, 1001, "every request answered");
    assert_eq!(
        http_get(port, "/v1/numbers", other["token"].as_str()).0,
        200,
        "a token's budget is its own"
    );
    let _: Value = http_get(port, "/healthz", None).1;
}

#[test]
fn the_tenant_port_serves_https_with_the_admins_certificate_live() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let (port, token) = api_of(&clinic);
    let dir = sup.dir.path();
    let cert = rcgen::generate_simple_self_signed(vec!["clinic.test".to_owned()]).unwrap();
    let (cert_file, key_file) = (dir.join("clinic.crt"), dir.join("clinic.key"));
    std::fs::write(&cert_file, cert.cert.pem()).unwrap();
    std::fs::write(&key_file, cert.key_pair.serialize_pem()).unwrap();

    // A key that does not fit the certificate is refused, naming why, and
    // the port keeps serving plain HTTP.
    let other = rcgen::generate_simple_self_signed(vec!["x.test".to_owned()]).unwrap();
    let wrong_key = dir.join("wrong.key");
    std::fs::write(&wrong_key, other.key_pair.serialize_pem()).unwrap();
    let c = cert_file.to_str().unwrap();
    let out = sup.cli(&[
        "tenant",
        "tls",
        "clinic",
        "--cert",
        c,
        "--key",
        wrong_key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not fit"),
        "{out:?}"
    );
    assert_eq!(http_get(port, "/healthz", None).0, 200);

    // Set live: the same worker now speaks TLS with that certificate.
    let pid = clinic["pid"].as_u64().unwrap();
    let shown = sup.cli_json(&[
        "tenant",
        "tls",
        "clinic",
        "--cert",
        c,
        "--key",
        key_file.to_str().unwrap(),
    ]);
    let fingerprint = shown["tls_fingerprint"].as_str().unwrap().to_owned();
    assert_eq!(fingerprint.len(), 64);
    assert_eq!(shown["pid"].as_u64(), Some(pid), "no restart");
    let (ok, body) = curl_https(port, &cert_file, "/v1/numbers", token);
    assert!(ok && body.contains("+15550100"), "{body}");
    // Plain HTTP on the port gets no API answer now.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    assert!(!String::from_utf8_lossy(&resp).contains("\"ok\""));
    // A client that does not trust the certificate is refused by curl.
    let (ok, _) = curl_https(port, &wrong_key, "/healthz", token);
    assert!(!ok);

    // It survives a restart (kept in the tenant's encrypted store), and
    // neither the registry nor the log holds the key.
    sup.cli_json(&["tenant", "restart", "clinic"]);
    let show = back_up(&sup, "clinic", pid);
    assert_eq!(show["tls_fingerprint"], fingerprint.as_str());
    let (ok, body) = curl_https(port, &cert_file, "/v1/numbers", token);
    assert!(ok, "{body}");
    let key_body: String = cert
        .key_pair
        .serialize_pem()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let registry = std::fs::read(sup.state_dir().join("registry.db")).unwrap_or_default();
    assert!(!String::from_utf8_lossy(&registry).contains(&key_body[..40]));
    assert!(!sup.log().contains(&key_body[..40]));

    // Off: plain HTTP again, live.
    let shown = sup.cli_json(&["tenant", "tls", "clinic", "--off"]);
    assert!(shown["tls_fingerprint"].is_null());
    assert_eq!(http_get(port, "/healthz", None).0, 200);
}
