//! The operator portal in a real browser: Debian's headless Chromium driven
//! by Playwright (`tests/portal/portal.mjs`) against a sandboxed worker. A
//! tenant signs in, finds a call, reads its transcript, switches the LLM
//! provider (which the next call uses, same worker process), edits
//! escalation targets and tokens. Screenshots land in
//! `target/portal-screenshots/`.

mod common;

use std::path::Path;
use std::process::Command;

use common::voice::{place_call, write_caller};
use common::*;
use serde_json::Value;

const CLINIC: &str = "+15550100";

#[test]
fn a_tenant_uses_the_portal_in_a_browser() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/portal");
    assert!(
        here.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "the portal test needs Chromium and playwright-core: run scripts/install-deps"
    );
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &[CLINIC]);
    let (port, token) = api_of(&clinic);
    let pid = clinic["pid"].as_u64().unwrap();
    let agent = r#"{"greeting": "Thank you for calling Maple Clinic.", "intents": [
        {"name": "hours", "phrases": ["opening hours"], "action": "answer", "answer": "We are open nine to five."},
        {"name": "bye", "phrases": ["goodbye"], "action": "end_call"}]}"#;
    assert_eq!(
        http_request(port, "PUT", "/v1/agent", Some(token), &[], agent).0,
        200
    );
    write_caller(
        &sup,
        &[("what are your opening hours", 3500), ("goodbye", 3000)],
    );
    place_call(&sup, "voice_caller.xml", CLINIC);
    let calls = settled_calls(port, token);
    let call_id = calls[0]["id"].as_str().unwrap();

    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/portal-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new("node")
        .current_dir(&here)
        .arg("portal.mjs")
        .arg(format!("http://127.0.0.1:{port}"))
        .args([token, call_id])
        .arg(&shots)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "portal.mjs failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();

    assert!(
        seen["badTokenNotice"]
            .as_str()
            .unwrap()
            .contains("sign in again"),
        "{seen}"
    );
    assert_eq!(seen["rows"], 1, "{seen}");
    assert_eq!(seen["rowsAfterFilter"], 0, "{seen}");
    assert_eq!(seen["numbers"], CLINIC);
    assert_eq!(seen["callTitle"], call_id);
    // The transcript the page shows is the one the API holds.
    let turns = common::voice::transcript(port, token, &calls[0]);
    let shown: Vec<&str> = seen["turns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(shown.len(), turns.len(), "{seen}");
    for (page, api) in shown.iter().zip(&turns) {
        assert!(
            page.contains(api["text"].as_str().unwrap()),
            "{page} vs {api}"
        );
    }
    assert!(
        seen["saveNotice"].as_str().unwrap().contains("Saved"),
        "{seen}"
    );
    assert_eq!(seen["llmAfterReload"], "openai");
    assert!(
        seen["routingError"].as_str().unwrap().contains("timezone"),
        "{seen}"
    );
    let names: Vec<&str> = seen["tokenNames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert!(names.contains(&"from the portal"), "{seen}");
    assert!(seen["tokenKept"].is_null(), "signing out forgets the token");
    // No script error, no CSP violation; the only failed requests are the
    // two the test provoked (a wrong token, an invalid document).
    assert_eq!(seen["consoleErrors"].as_array().unwrap().len(), 0, "{seen}");
    assert_eq!(
        seen["failedRequests"],
        serde_json::json!(["401 /v1/numbers", "422 /v1/routing"])
    );

    // What the browser saved is what the API now holds; the secret stays write-only.
    let (_, agent) = http_get(port, "/v1/agent", Some(token));
    assert_eq!(agent["llm"]["provider"], "openai", "{agent}");
    assert_eq!(agent["llm"]["model"], "portal-model");
    assert_eq!(agent["llm"]["api_key_set"], true);
    assert!(!agent.to_string().contains("sk-portal-test"));
    assert_eq!(agent["greeting"], "Hello from the portal.");
    let (_, escalation) = http_get(port, "/v1/escalation", Some(token));
    assert_eq!(escalation["default_target"], "front-desk", "{escalation}");
    let new_token = seen["newToken"].as_str().unwrap();
    assert_eq!(http_get(port, "/v1/numbers", Some(new_token)).0, 200);

    // The next call uses the new provider, in the same worker: the model's
    // address is not on the egress allowlist, so the record says why the
    // embedded rules answered instead.
    place_call(&sup, "voice_caller.xml", CLINIC);
    let calls = settled_calls(port, token);
    assert_eq!(calls.len(), 2);
    let fallback = calls[0]["providers"]["fallback"]["llm"]
        .as_str()
        .unwrap_or_default();
    assert!(fallback.contains("allowlist"), "{}", calls[0]);
    assert_eq!(
        sup.cli_json(&["tenant", "show", "clinic"])["pid"].as_u64(),
        Some(pid)
    );
    for shot in [
        "1-calls.png",
        "2-transcript.png",
        "3-agent.png",
        "4-escalation.png",
        "5-tokens.png",
    ] {
        assert!(shots.join(shot).metadata().unwrap().len() > 1000, "{shot}");
    }
}
