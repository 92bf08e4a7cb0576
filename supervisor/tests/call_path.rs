//! The whole path of a call, with real processes: sipp → router → worker →
//! SQLCipher store → tenant API; and each tenant sees only its own calls.

mod common;

use common::*;

#[test]
fn two_tenants_each_see_exactly_their_own_calls_and_foreign_tokens_get_401() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    let insurance = sup.add_tenant("insurance", &["+1 (555) 020-0"]);
    assert_eq!(
        insurance["numbers"],
        serde_json::json!(["+15550200"]),
        "numbers are normalized"
    );

    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 3, "u1");
    assert!(ok, "sipp calls to clinic failed:\n{out}\n{}", sup.log());
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "15550200", 2, "u1");
    assert!(ok, "sipp calls to insurance failed:\n{out}\n{}", sup.log());

    let clinic_token = clinic["token"].as_str().unwrap();
    let insurance_token = insurance["token"].as_str().unwrap();
    let clinic_port = clinic["http_port"].as_u64().unwrap() as u16;
    let insurance_port = insurance["http_port"].as_u64().unwrap() as u16;

    let calls = settled_calls(clinic_port, clinic_token);
    assert_eq!(calls.len(), 3);
    assert!(
        calls
            .iter()
            .all(|c| c["to"] == "+15550100" && c["outcome"] == "completed"),
        "{calls:?}"
    );
    assert!(calls
        .iter()
        .all(|c| c["answered_at"].is_string() && c["ended_at"].is_string()));
    let calls = settled_calls(insurance_port, insurance_token);
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c["to"] == "+15550200"), "{calls:?}");

    // Filters and paging.
    let (status, page) = http_get(
        clinic_port,
        "/v1/calls?outcome=completed&number=%2B15550100&limit=2",
        Some(clinic_token),
    );
    assert_eq!(
        (status, page["calls"].as_array().unwrap().len()),
        (200, 2),
        "{page}"
    );
    let cursor = page["next_cursor"].as_str().expect("a third call remains");
    let (_, rest) = http_get(
        clinic_port,
        &format!("/v1/calls?limit=2&cursor={cursor}"),
        Some(clinic_token),
    );
    assert_eq!(
        (
            rest["calls"].as_array().unwrap().len(),
            rest["next_cursor"].clone()
        ),
        (1, serde_json::Value::Null)
    );
    let (_, none) = http_get(
        clinic_port,
        "/v1/calls?since=2999-01-01T00:00:00Z",
        Some(clinic_token),
    );
    assert_eq!(none["calls"], serde_json::json!([]));
    let (status, err) = http_get(clinic_port, "/v1/calls?limit=500", Some(clinic_token));
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("limit")),
        "{err}"
    );

    // One call by id, and the numbers endpoint.
    let id = calls[0]["id"].as_str().unwrap();
    let (status, one) = http_get(
        insurance_port,
        &format!("/v1/calls/{id}"),
        Some(insurance_token),
    );
    assert_eq!((status, one["id"].as_str()), (200, Some(id)));
    let (status, numbers) = http_get(insurance_port, "/v1/numbers", Some(insurance_token));
    assert_eq!(
        (status, numbers),
        (200, serde_json::json!({"numbers": ["+15550200"]}))
    );

    // A foreign token, a missing one and a made-up one: 401 and no data.
    for (port, token) in [
        (clinic_port, Some(insurance_token)),
        (insurance_port, Some(clinic_token)),
        (clinic_port, None),
        (clinic_port, Some("bh_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")),
    ] {
        let (status, body) = http_get(port, "/v1/calls", token);
        assert_eq!(status, 401, "{body}");
        assert!(
            body.get("calls").is_none() && body["error"]["code"] == "unauthorized",
            "{body}"
        );
    }
    let (status, _) = http_get(
        insurance_port,
        &format!("/v1/calls/{id}"),
        Some(clinic_token),
    );
    assert_eq!(status, 401);
    // Liveness needs no token and shows no tenant data.
    let (status, body) = http_get(clinic_port, "/healthz", None);
    assert_eq!((status, body), (200, serde_json::json!({"status": "ok"})));
}

#[test]
fn calls_over_tcp_and_on_the_tenant_trunk_port() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &["+15550100"]);
    sup.add_tenant("insurance", &["+15550200"]);
    let (ok, out) = sipp_uac(sup.dir.path(), sup.sip, "+15550100", 2, "t1");
    assert!(
        ok,
        "sipp over TCP through the router failed:\n{out}\n{}",
        sup.log()
    );

    // The tenant's own trunk port takes its own numbers...
    let trunk: std::net::SocketAddr = format!("127.0.0.1:{}", clinic["sip_port"]).parse().unwrap();
    let (ok, out) = sipp_uac(sup.dir.path(), trunk, "+15550100", 1, "u1");
    assert!(ok, "sipp to the trunk port failed:\n{out}");
    // ...and only those: another tenant's number is unknown there.
    let reply = udp_exchange(
        trunk,
        &invite("+15550200", "trunk-foreign"),
        std::time::Duration::from_secs(5),
    )
    .unwrap();
    assert!(reply.starts_with("SIP/2.0 404"), "{reply}");

    let token = clinic["token"].as_str().unwrap();
    let calls = settled_calls(clinic["http_port"].as_u64().unwrap() as u16, token);
    assert_eq!(
        calls.len(),
        3,
        "two via the router over TCP, one via the trunk: {calls:?}"
    );
}

#[test]
fn worker_runs_as_its_own_uid_without_new_privileges() {
    let sup = Supervisor::start();
    let a = sup.add_tenant("alpha", &["+15550300"]);
    let b = sup.add_tenant("beta", &["+15550400"]);
    let status = |t: &serde_json::Value| {
        std::fs::read_to_string(format!("/proc/{}/status", t["pid"])).unwrap()
    };
    for t in [&a, &b] {
        // Executed from the supervisor's own root-owned copy, not the build tree.
        use std::os::unix::fs::MetadataExt;
        let exe = std::fs::metadata(format!("/proc/{}/exe", t["pid"])).unwrap();
        let copy = std::fs::metadata(sup.state_dir().join("bin/bulkhead-worker")).unwrap();
        assert_eq!((exe.dev(), exe.ino()), (copy.dev(), copy.ino()));
        let s = status(t);
        assert!(
            s.lines()
                .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
            "{s}"
        );
        if nix::unistd::geteuid().is_root() {
            let uid = t["uid"].as_u64().unwrap();
            let line = s.lines().find(|l| l.starts_with("Uid:")).unwrap();
            assert!(
                line.split_whitespace()
                    .skip(1)
                    .all(|u| u == uid.to_string()),
                "{line}"
            );
            for set in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
                assert!(
                    s.lines().any(|l| l == format!("{set}:\t0000000000000000")),
                    "{set} not empty:\n{s}"
                );
            }
            let limits = std::fs::read_to_string(format!("/proc/{}/limits", t["pid"])).unwrap();
            let limit = |name: &str| {
                limits
                    .lines()
                    .find(|l| l.starts_with(name))
                    .unwrap()
                    .split_whitespace()
                    .rev()
                    .nth(1)
                    .unwrap()
                    .to_string()
            };
            assert_eq!(limit("Max core file size"), "0", "{limits}");
            assert_eq!(limit("Max open files"), "4096", "{limits}");
            let groups = s.lines().find(|l| l.starts_with("Groups:")).unwrap();
            assert_eq!(groups.trim(), "Groups:", "no supplementary groups");
            let dir = sup
                .state_dir()
                .join("tenants")
                .join(t["id"].as_str().unwrap());
            let meta = std::fs::metadata(&dir).unwrap();
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            assert_eq!(
                (meta.uid() as u64, meta.permissions().mode() & 0o777),
                (uid, 0o700)
            );
        }
    }
    assert_ne!(a["uid"], b["uid"]);
}
