//! Blind transfer by REFER through the whole platform: a tenant whose
//! escalation target says `"transfer": "refer"`; sipp as the caller's
//! carrier checks the REFER's `Refer-To` (the target and the context
//! headers), reports the new call's progress in NOTIFYs, and the worker
//! hangs up its side once the target answered.

mod common;

use common::voice::{assert_escalated_to, said, transcript, write_caller, Human};
use common::*;

const CLINIC: &str = "+15550100";

#[test]
fn a_refer_target_is_reached_by_the_callers_carrier_with_context() {
    let sup = Supervisor::start();
    let t = sup.add_tenant("clinic", &[CLINIC]);
    let (http, token) = api_of(&t);
    let agent = r#"{"greeting": "Thank you for calling Maple Clinic.",
  "intents": [{"name": "human", "phrases": ["talk to a human"], "action": "escalate"}]}"#;
    let (status, _, body) = http_request(http, "PUT", "/v1/agent", Some(token), &[], agent);
    assert_eq!(status, 200, "{body}");
    let escalation = format!(
        r#"{{"targets": [{{"name": "front-desk", "uri": "sip:desk@127.0.0.1:{}", "transfer": "refer"}}]}}"#,
        free_udp_port()
    );
    let (status, _, stored) =
        http_request(http, "PUT", "/v1/escalation", Some(token), &[], &escalation);
    assert_eq!(
        (status, stored["targets"][0]["transfer"].as_str()),
        (200, Some("refer")),
        "{stored}"
    );
    let (status, _, err) = http_request(
        http,
        "PUT",
        "/v1/escalation",
        Some(token),
        &[],
        r#"{"targets": [{"name": "d", "uri": "sip:d@127.0.0.1", "transfer": "teleport"}]}"#,
    );
    assert_eq!(status, 422, "{err}");

    write_caller(&sup, &[("I need to talk to a human", 12_000)]);
    let logs = tempfile::tempdir().unwrap();
    let media_port = free_udp_port().to_string();
    let (ok, report) = own_scenario(
        &sup,
        "refer_caller.xml",
        CLINIC,
        sup.sip,
        "u1",
        &[
            "-mi",
            "127.0.0.1",
            "-mp",
            &media_port,
            "-trace_logs",
            "-log_file",
            &logs.path().join("refer.log").to_string_lossy(),
        ],
    );
    assert!(ok, "the carrier: {report}\n{}", sup.log());
    let logged = std::fs::read_to_string(logs.path().join("refer.log")).unwrap_or_default();
    let refer_to = Human::header(&logged, "Refer-To").unwrap_or_default();
    assert!(
        refer_to.contains("X-Bulkhead-Reason=human") && refer_to.contains("Caller%20said"),
        "{logged}"
    );

    let calls = settled_calls(http, token);
    assert_escalated_to(&calls, "front-desk");
    let id = calls[0]["id"].as_str().unwrap();
    assert!(
        refer_to.ends_with(&format!("X-Bulkhead-Call-Id={id}>")),
        "{refer_to}"
    );
    let turns = transcript(http, token, &calls[0]);
    assert!(
        said(&turns, "system").contains(&"transferred by REFER to front-desk (200)"),
        "{turns:?}"
    );
}
