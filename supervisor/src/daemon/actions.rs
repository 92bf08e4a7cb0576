//! Which admin requests are actions for the history, and their names and
//! targets. Reads (`GET`) are not actions. Only identifiers are taken from a
//! body (tenant ids, numbers, egress targets): never a key, a password or a
//! certificate.

use hyper::Method;
use serde_json::Value;

/// `(action, target)` for a request that changes something, else None.
pub fn of(method: &Method, path: &str, query: &str, body: &[u8]) -> Option<(&'static str, String)> {
    if *method == Method::GET {
        return None;
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let field = |name: &str| json[name].as_str().unwrap_or("?").to_owned();
    let flag = |name: &str| query.split('&').any(|p| p == format!("{name}=true"));
    let named = match (method, segs.as_slice()) {
        (&Method::POST, ["v1", "tenants"]) => ("tenant.add", field("id")),
        (&Method::DELETE, ["v1", "tenants", id]) if flag("shred") => {
            ("tenant.shred", id.to_string())
        }
        (&Method::DELETE, ["v1", "tenants", id]) => ("tenant.remove", id.to_string()),
        (&Method::POST, ["v1", "tenants", id, op]) => {
            let action = match *op {
                "restart" if flag("drain") => "tenant.restart-drain",
                "restart" => "tenant.restart",
                "reset" => "tenant.reset",
                "limits" => "tenant.limits",
                "trunk" => "tenant.trunk",
                "trunk_auth" => "tenant.trunk-auth",
                "tokens" => "tenant.token",
                "tls" => "tenant.tls",
                "backup" => "tenant.backup",
                "restore" => "tenant.restore",
                "rotate-key" => "tenant.rotate-key",
                _ => "unknown",
            };
            (action, id.to_string())
        }
        (&Method::DELETE, ["v1", "tenants", id, "tokens", token]) => {
            ("tenant.revoke-token", format!("{id} {token}"))
        }
        (&Method::POST, ["v1", "numbers"]) => (
            "number.add",
            format!("{} {}", field("tenant"), field("number")),
        ),
        (&Method::DELETE, ["v1", "numbers", n]) => {
            ("number.remove", format!("+{}", n.trim_start_matches('+')))
        }
        (&Method::POST, ["v1", "egress", rest @ ..]) => {
            let action = match rest {
                [] => "egress.add",
                ["remove"] => "egress.remove",
                ["check"] => "egress.check",
                _ => "unknown",
            };
            (action, format!("{} {}", field("tenant"), field("target")))
        }
        (&Method::POST, ["v1", "master-key", "rotate"]) => ("master-key.rotate", String::new()),
        (&Method::POST, ["v1", "apply"]) => {
            let ids: Vec<&str> = json["tenant"]
                .as_array()
                .map(|ts| ts.iter().filter_map(|t| t["id"].as_str()).collect())
                .unwrap_or_default();
            ("apply", ids.join(","))
        }
        _ => ("unknown", String::new()),
    };
    let (action, target) = named;
    // An unknown endpoint is still an attempt worth keeping, by its path.
    let target = if action == "unknown" {
        format!("{method} {}", truncate(path, 200))
    } else {
        truncate(&target, 200).to_owned()
    };
    Some((action, target))
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_actions_and_never_records_secrets() {
        let a = |m: Method, p: &str, q: &str, b: &str| of(&m, p, q, b.as_bytes());
        assert_eq!(a(Method::GET, "/v1/tenants", "", ""), None);
        assert_eq!(
            a(Method::POST, "/v1/tenants", "", r#"{"id":"clinic"}"#),
            Some(("tenant.add", "clinic".into()))
        );
        assert_eq!(
            a(Method::DELETE, "/v1/tenants/clinic", "shred=true", ""),
            Some(("tenant.shred", "clinic".into()))
        );
        assert_eq!(
            a(Method::DELETE, "/v1/tenants/clinic", "shred=false", ""),
            Some(("tenant.remove", "clinic".into()))
        );
        assert_eq!(
            a(
                Method::POST,
                "/v1/numbers",
                "",
                r#"{"tenant":"clinic","number":"+15550100"}"#
            ),
            Some(("number.add", "clinic +15550100".into()))
        );
        let tls = a(
            Method::POST,
            "/v1/tenants/clinic/tls",
            "",
            r#"{"tls":{"cert_pem":"C","key_pem":"SECRET"}}"#,
        )
        .unwrap();
        assert_eq!(tls, ("tenant.tls", "clinic".into()));
        let auth = a(
            Method::POST,
            "/v1/tenants/clinic/trunk_auth",
            "",
            r#"{"auth":{"username":"u","password":"SECRET"}}"#,
        )
        .unwrap();
        assert!(!auth.1.contains("SECRET"));
        assert_eq!(
            a(
                Method::POST,
                "/v1/apply",
                "",
                r#"{"tenant":[{"id":"a"},{"id":"b"}]}"#
            ),
            Some(("apply", "a,b".into()))
        );
        assert_eq!(
            a(Method::PUT, "/v1/whatever", "", ""),
            Some(("unknown", "PUT /v1/whatever".into()))
        );
    }
}
