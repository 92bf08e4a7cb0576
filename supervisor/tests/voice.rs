//! The voice agent through the whole platform: sipp calls through the
//! router and plays a caller synthesized with espeak-ng as G.711 RTP; the
//! worker's agent greets, hears the question with PocketSphinx, answers with
//! espeak-ng, hangs up on "goodbye", and writes the transcript. A `PUT
//! /v1/agent` changes the next call's answer without restarting the worker,
//! and the neighbouring tenant's configuration and calls stay untouched.

mod common;

use std::process::Command;

use common::voice::{assert_escalated_to, place_call, said, transcript, Human};
use common::*;

const CLINIC: &str = "+15550100";
const INSURANCE: &str = "+15550200";

fn agent(answer: &str) -> String {
    format!(
        r#"{{"greeting": "Thank you for calling Maple Clinic.",
  "intents": [
    {{"name": "hours", "phrases": ["opening hours"], "action": "answer", "answer": "{answer}"}},
    {{"name": "bye", "phrases": ["goodbye"], "action": "end_call"}}]}}"#
    )
}

/// The caller: quiet through the greeting, a question, then goodbye.
fn write_question_and_goodbye(sup: &Supervisor) {
    voice::write_caller(
        sup,
        &[("what are your opening hours", 3500), ("goodbye", 3000)],
    );
}

#[test]
fn the_agent_answers_a_spoken_question_and_hangs_up_on_goodbye() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &[CLINIC]);
    let insurance = sup.add_tenant("insurance", &[INSURANCE]);
    let (port, token) = api_of(&clinic);
    let (other_port, other_token) = api_of(&insurance);
    let (_, _, other_before) =
        http_request(other_port, "GET", "/v1/agent", Some(other_token), &[], "");
    let (status, _, stored) = http_request(
        port,
        "PUT",
        "/v1/agent",
        Some(token),
        &[],
        &agent("We are open nine to five."),
    );
    assert_eq!(status, 200, "{stored}");
    let pid = sup.cli_json(&["tenant", "show", "clinic"])["pid"].clone();

    write_question_and_goodbye(&sup);
    place_call(&sup, "voice_caller.xml", CLINIC);
    let calls = settled_calls(port, token);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["outcome"], "completed", "{calls:?}");
    assert_eq!(calls[0]["providers"]["stt"], "pocketsphinx", "{calls:?}");
    assert_eq!(calls[0]["providers"]["tts"], "espeak-ng", "{calls:?}");
    // Media quality both ways: sipp sends no RTCP, so only our side is known.
    let media = &calls[0]["media"];
    assert!(media["packets_received"].as_u64() > Some(100), "{media}");
    assert!(media["packets_sent"].as_u64() > Some(100), "{media}");
    assert_eq!(media["inbound_lost"], 0, "{media}");
    assert!(media["outbound_lost"].is_null(), "{media}");
    let turns = transcript(port, token, &calls[0]);
    let agent_said = said(&turns, "agent");
    let caller_said = said(&turns, "caller");
    assert_eq!(
        agent_said.first(),
        Some(&"Thank you for calling Maple Clinic."),
        "{turns:?}"
    );
    assert!(
        caller_said.iter().any(|t| t.contains("opening hours")),
        "{turns:?}"
    );
    assert!(
        agent_said.contains(&"We are open nine to five."),
        "{turns:?}"
    );
    assert!(
        caller_said.iter().any(|t| t.contains("goodbye")),
        "{turns:?}"
    );
    let answer = turns
        .iter()
        .find(|t| t["text"] == "We are open nine to five.")
        .unwrap();
    assert!(
        answer["latency_ms"].as_u64().is_some(),
        "a reply carries its latency: {answer}"
    );

    // A new document takes effect on the next call, in the same process.
    let (status, _, _) = http_request(
        port,
        "PUT",
        "/v1/agent",
        Some(token),
        &[],
        &agent("We are open eight to six."),
    );
    assert_eq!(status, 200);
    place_call(&sup, "voice_caller.xml", CLINIC);
    assert_eq!(
        sup.cli_json(&["tenant", "show", "clinic"])["pid"],
        pid,
        "no restart"
    );
    let calls = settled_calls(port, token);
    assert_eq!(calls.len(), 2);
    let turns = transcript(port, token, &calls[0]);
    assert!(
        said(&turns, "agent").contains(&"We are open eight to six."),
        "{turns:?}"
    );

    // The neighbour saw none of it.
    let (_, _, other_after) =
        http_request(other_port, "GET", "/v1/agent", Some(other_token), &[], "");
    assert_eq!(other_before, other_after);
    assert!(settled_calls(other_port, other_token).is_empty());
}

#[test]
fn agent_documents_are_validated_versioned_and_keep_secrets() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &[CLINIC]);
    let (port, token) = api_of(&clinic);
    let (status, head, doc) = http_request(port, "GET", "/v1/agent", Some(token), &[], "");
    assert_eq!(status, 200);
    assert!(head.to_ascii_lowercase().contains("etag: \"v0\""), "{head}");
    assert_eq!(doc["llm"]["provider"], "rules");

    let (status, _, err) = http_request(
        port,
        "PUT",
        "/v1/agent",
        Some(token),
        &[],
        r#"{"greting": "hi"}"#,
    );
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (422, Some("greting"))
    );
    let bad_provider = r#"{"stt": {"provider": "whisper"}}"#;
    let (status, _, err) = http_request(port, "PUT", "/v1/agent", Some(token), &[], bad_provider);
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (422, Some("stt.provider"))
    );

    let openai = r#"{"llm": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key": "sk-secret"}}"#;
    let (status, head, shown) = http_request(
        port,
        "PUT",
        "/v1/agent",
        Some(token),
        &[("If-Match", "\"v0\"")],
        openai,
    );
    assert_eq!(status, 200, "{shown}");
    assert!(head.to_ascii_lowercase().contains("etag: \"v1\""), "{head}");
    assert_eq!(shown["llm"]["api_key_set"], true);
    let (_, _, fetched) = http_request(port, "GET", "/v1/agent", Some(token), &[], "");
    assert!(!fetched.to_string().contains("sk-secret"), "{fetched}");
    // A stale If-Match loses.
    let (status, _, _) = http_request(
        port,
        "PUT",
        "/v1/agent",
        Some(token),
        &[("If-Match", "\"v0\"")],
        "{}",
    );
    assert_eq!(status, 412);
    // Bodies are bounded.
    let huge = format!(r#"{{"greeting": "{}"}}"#, "a".repeat(70_000));
    let (status, _, _) = http_request(port, "PUT", "/v1/agent", Some(token), &[], &huge);
    assert_eq!(status, 413);
    // No token, no document.
    let (status, _, body) = http_request(port, "GET", "/v1/agent", None, &[], "");
    assert_eq!((status, body.get("greeting")), (401, None));
}

const TRANSFER_AGENT: &str = r#"{"greeting": "Thank you for calling Maple Clinic.",
  "intents": [{"name": "human", "phrases": ["talk to a human"], "action": "escalate"}]}"#;

/// A tenant whose agent transfers to the human at `port`.
fn transfer_tenant(sup: &Supervisor, port: u16) -> (u16, String) {
    let t = sup.add_tenant("clinic", &[CLINIC]);
    let (http, token) = (
        t["http_port"].as_u64().unwrap() as u16,
        t["token"].as_str().unwrap().to_owned(),
    );
    let (status, _, body) =
        http_request(http, "PUT", "/v1/agent", Some(&token), &[], TRANSFER_AGENT);
    assert_eq!(status, 200, "{body}");
    let escalation =
        format!(r#"{{"targets": [{{"name": "front-desk", "uri": "sip:desk@127.0.0.1:{port}"}}]}}"#);
    let (status, _, body) = http_request(
        http,
        "PUT",
        "/v1/escalation",
        Some(&token),
        &[],
        &escalation,
    );
    assert_eq!(status, 200, "{body}");
    voice::write_caller(sup, &[("I need to talk to a human", 12000)]);
    (http, token)
}

/// One call from a caller who asks for a person, to a tenant whose human
/// destination is sipp running `human_scenario`; both sipp runs must pass.
/// Returns the tenant and what the human's scenario logged.
fn transfer_call(sup: &Supervisor, human_scenario: &str) -> (u16, String, String) {
    let desk = Human::start(human_scenario);
    let (http, token) = transfer_tenant(sup, desk.port);
    place_call(sup, "transfer_caller.xml", CLINIC);
    let logged = desk.finish(sup);
    (http, token, logged)
}

#[test]
fn a_caller_who_asks_for_a_person_reaches_the_human_with_context() {
    let sup = Supervisor::start();
    let (http, token, logged) = transfer_call(&sup, "human_uas.xml");
    let summary = Human::header(&logged, "X-Bulkhead-Summary").unwrap_or_default();
    let said_part = summary
        .strip_prefix("Caller asked for a person (human). Caller said: ")
        .unwrap_or_default();
    assert!(said_part.contains("human"), "{logged}");
    let calls = settled_calls(http, &token);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_escalated_to(&calls, "front-desk");
    let turns = transcript(http, &token, &calls[0]);
    assert!(
        said(&turns, "caller").iter().any(|t| t.contains("human")),
        "{turns:?}"
    );
    assert!(
        said(&turns, "agent").contains(&"Let me transfer you to a person."),
        "{turns:?}"
    );
    let system = said(&turns, "system");
    assert!(
        system
            .iter()
            .any(|t| t.starts_with("transferring to front-desk")),
        "{turns:?}"
    );
    assert!(
        system.contains(&"the caller is connected to a person"),
        "{turns:?}"
    );
}

#[test]
fn a_busy_human_sends_the_caller_back_to_the_agent_for_a_message() {
    let sup = Supervisor::start();
    let (http, token, _) = transfer_call(&sup, "human_busy.xml");
    let calls = settled_calls(http, &token);
    assert_eq!(calls[0]["outcome"], "completed", "{calls:?}");
    assert!(calls[0]["escalated_to"].is_null(), "{calls:?}");
    let turns = transcript(http, &token, &calls[0]);
    assert!(
        said(&turns, "agent")
            .iter()
            .any(|t| t.starts_with("Sorry, no one is available")),
        "{turns:?}"
    );
}

#[test]
fn a_memory_limit_too_small_for_the_recognizer_is_reported_not_crashed() {
    let sup = Supervisor::start();
    let t = sup.cli_json(&[
        "tenant",
        "add",
        "clinic",
        "--number",
        CLINIC,
        "--limit",
        "memory=64M",
    ]);
    let (http, token) = api_of(&t);
    let pid = sup.cli_json(&["tenant", "show", "clinic"])["pid"].clone();
    // sipp's built-in caller, staying on the line for two seconds.
    let mut cmd = Command::new("sipp");
    cmd.current_dir(sup.dir.path())
        .args([
            "-sn",
            "uac",
            "-s",
            CLINIC,
            &sup.sip.to_string(),
            "-m",
            "1",
            "-d",
            "2000",
        ])
        .args(["-i", "127.0.0.1", "-p", &free_udp_port().to_string()])
        .args(["-mi", "127.0.0.1", "-mp", &free_udp_port().to_string()])
        .args(["-nostdin", "-timeout", "30", "-timeout_error"]);
    let (ok, report) = run_sipp(&mut cmd);
    assert!(ok, "{report}\n{}", sup.log());
    let calls = settled_calls(http, token);
    let providers = &calls[0]["providers"];
    assert!(providers["stt"].is_null(), "{providers}");
    assert!(
        providers["fallback"]["stt"]
            .as_str()
            .is_some_and(|why| why.contains("memory limit")),
        "{providers}"
    );
    assert_eq!(providers["tts"], "espeak-ng", "{providers}");
    assert_eq!(
        sup.cli_json(&["tenant", "show", "clinic"])["pid"],
        pid,
        "no crash"
    );
}
