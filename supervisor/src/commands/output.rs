//! Printing: one JSON document with `--json`, else `key: value` lines or an
//! aligned table.

use serde_json::Value;

pub fn record(v: &Value, as_json: bool) {
    if as_json {
        return println!("{v}");
    }
    let Some(obj) = v.as_object() else {
        return println!("{v}");
    };
    let width = obj.keys().map(String::len).max().unwrap_or(0);
    for (k, val) in obj {
        println!("{k:width$}  {}", plain(val));
    }
}

pub fn tenant_table(v: &Value, as_json: bool) {
    if as_json {
        return println!("{v}");
    }
    let rows = v["tenants"].as_array().cloned().unwrap_or_default();
    table(
        &rows,
        &[
            "id",
            "state",
            "pid",
            "uid",
            "sip_port",
            "http_port",
            "numbers",
            "restarts",
        ],
    );
}

pub fn status(v: &Value, as_json: bool) {
    if as_json {
        return println!("{v}");
    }
    for k in [
        "sip_listen",
        "metrics_listen",
        "advertise",
        "tenants",
        "running",
    ] {
        println!("{k:14}  {}", plain(&v[k]));
    }
    println!("router          {}", plain(&v["router"]));
    println!();
    table(
        v["workers"].as_array().map_or(&[][..], |a| a),
        &[
            "id",
            "state",
            "pid",
            "numbers",
            "active_calls",
            "calls_refused",
            "restarts",
            "last_failure",
        ],
    );
}

pub fn apply(v: &Value, as_json: bool) {
    if as_json {
        return println!("{v}");
    }
    for t in v["created"].as_array().into_iter().flatten() {
        println!(
            "created    {}  token {}",
            plain(&t["id"]),
            plain(&t["token"])
        );
    }
    for kind in ["updated", "unchanged"] {
        for id in v[kind].as_array().into_iter().flatten() {
            println!("{kind:10} {}", plain(id));
        }
    }
}

fn table(rows: &[Value], cols: &[&str]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| cols.iter().map(|c| plain(&r[*c])).collect())
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: Vec<String>| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(cols.iter().map(|c| c.to_uppercase()).collect());
    for r in cells {
        line(r);
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(plain).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

pub fn audit(v: &Value, as_json: bool) {
    if as_json {
        return println!("{v}");
    }
    for t in v["tenants"].as_array().into_iter().flatten() {
        println!("tenant {}", plain(&t["id"]));
        table(
            t["layers"].as_array().map_or(&[][..], |a| a),
            &["name", "active", "detail"],
        );
        println!();
        table(
            t["probes"].as_array().map_or(&[][..], |a| a),
            &["name", "outcome", "stopped_by", "without_layers", "target"],
        );
        println!();
    }
}

pub fn egress_table(v: &Value, as_json: bool) {
    if as_json {
        return println!("{v}");
    }
    table(
        v["egress"].as_array().map_or(&[][..], |a| a),
        &["tenant", "host", "port"],
    );
}

pub fn token_table(v: &Value, as_json: bool) {
    if as_json {
        return println!("{v}");
    }
    table(
        v["tokens"].as_array().map_or(&[][..], |a| a),
        &["id", "name", "created_at", "expires_at"],
    );
}

pub fn history(v: &Value, as_json: bool) {
    if as_json {
        return println!("{v}");
    }
    table(
        v["events"].as_array().map_or(&[][..], |a| a),
        &["seq", "at", "peer_uid", "action", "target", "result"],
    );
}
