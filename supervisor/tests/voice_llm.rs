//! The `openai` language model through the whole platform. A local HTTP
//! server stands in for an OpenAI-compatible LLM (the one external boundary
//! mocked here); the tenant's worker reaches it only through the egress
//! broker. A `PUT /v1/agent` switches the tenant to it with no restart; the
//! next call sends the tenant's prompt and the caller's words, and the
//! model's `transfer_to_human` summary reaches the human destination. With
//! the destination off the allowlist the model is unreachable, rules answer,
//! and the call record says why. The speech layers switch the same way: the
//! server transcribes the caller's turns and speaks the agent's words.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::voice::{assert_escalated_to, place_call, said, transcript, write_caller, Human};
use common::*;
use serde_json::Value;

const CLINIC: &str = "+15550100";
const INSURANCE: &str = "+15550200";
const SUMMARY: &str = "Caller asked about opening hours and wants to book a visit on Friday.";
const SAY: &str = "One moment, I will put you through to our front desk.";

/// A request the model server received: its request line, headers and body.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    headers: Vec<String>,
    /// The body as JSON (null when it is not, e.g. a multipart upload).
    body: Value,
    raw: Vec<u8>,
}

/// The answer to a chat completion: a `transfer_to_human` tool call.
fn chat_answer() -> Vec<u8> {
    let arguments = serde_json::json!({"summary": SUMMARY, "reason": "booking"}).to_string();
    serde_json::json!({"id": "chatcmpl-1", "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": SAY,
            "tool_calls": [{"id": "call_1", "type": "function",
                "function": {"name": "transfer_to_human", "arguments": arguments}}]}}]})
    .to_string()
    .into_bytes()
}

/// The same answer streamed as server-sent events (the worker asks for
/// `"stream": true`): the words and the tool call's arguments cut mid-way.
fn chat_stream() -> Vec<u8> {
    let arguments = serde_json::json!({"summary": SUMMARY, "reason": "booking"}).to_string();
    let (say_a, say_b) = SAY.split_at(14);
    let (args_a, args_b) = arguments.split_at(arguments.len() / 2);
    let tool = |name: Option<&str>, args: &str| {
        serde_json::json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0,
            "function": {"name": name, "arguments": args}}]}}]})
    };
    let text = |t: &str| serde_json::json!({"choices": [{"index": 0, "delta": {"content": t}}]});
    let mut events = vec![text(say_a), text(say_b)];
    events.push(tool(Some("transfer_to_human"), ""));
    events.push(tool(None, args_a));
    events.push(tool(None, args_b));
    let mut out: String = events.iter().map(|e| format!("data: {e}\n\n")).collect();
    out.push_str("data: [DONE]\n\n");
    out.into_bytes()
}

/// What `/audio/speech` answers: a second of 440 Hz, 24 kHz 16-bit PCM.
fn tone_24khz() -> Vec<u8> {
    (0..24_000)
        .map(|i| (f64::from(i) * 440.0 * std::f64::consts::TAU / 24_000.0).sin() * 8000.0)
        .flat_map(|s| (s as i16).to_le_bytes())
        .collect()
}

/// An OpenAI-compatible server on loopback: chat completions answer with
/// a `transfer_to_human` tool call, transcriptions hear "goodbye", speech
/// is a tone.
fn model_server() -> (u16, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            let mut length = 0;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                let h = h.trim_end().to_owned();
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                headers.push(h);
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let streamed =
                serde_json::from_slice::<Value>(&body).is_ok_and(|b| b["stream"] == true);
            let answer = match line.split_whitespace().nth(1).unwrap_or_default() {
                "/v1/chat/completions" if streamed => chat_stream(),
                "/v1/chat/completions" => chat_answer(),
                "/v1/audio/transcriptions" => br#"{"text": "goodbye"}"#.to_vec(),
                "/v1/audio/speech" => tone_24khz(),
                _ => br#"{"error": {"message": "no such path"}}"#.to_vec(),
            };
            log.lock().unwrap().push(Seen {
                line: line.trim_end().to_owned(),
                headers,
                body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                raw: body,
            });
            let content_type = if streamed {
                "text/event-stream"
            } else {
                "application/json"
            };
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            );
            let _ = (&conn).write_all(head.as_bytes());
            let _ = (&conn).write_all(&answer);
        }
    });
    (port, seen)
}

fn agent_doc(model_port: u16) -> String {
    format!(
        r#"{{"greeting": "Thank you for calling Maple Clinic.",
  "prompt": "You are the front desk of Maple Clinic.",
  "llm": {{"provider": "openai", "base_url": "http://127.0.0.1:{model_port}/v1", "model": "clinic-model", "api_key": "sk-clinic"}},
  "intents": [{{"name": "hours", "phrases": ["opening hours"], "action": "answer", "answer": "We are open nine to five."}},
              {{"name": "bye", "phrases": ["goodbye"], "action": "end_call"}}]}}"#
    )
}

#[test]
fn a_tenant_switched_to_an_llm_transfers_with_the_models_summary() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &[CLINIC]);
    let insurance = sup.add_tenant("insurance", &[INSURANCE]);
    let (http, token) = api_of(&clinic);
    let (other_http, other_token) = api_of(&insurance);
    let (_, _, other_before) =
        http_request(other_http, "GET", "/v1/agent", Some(other_token), &[], "");
    let (model_port, seen) = model_server();
    let desk = Human::start("human_uas.xml");
    let escalation = format!(
        r#"{{"targets": [{{"name": "front-desk", "uri": "sip:desk@127.0.0.1:{}"}}]}}"#,
        desk.port
    );
    let (status, _, body) =
        http_request(http, "PUT", "/v1/escalation", Some(token), &[], &escalation);
    assert_eq!(status, 200, "{body}");
    sup.cli_json(&[
        "egress",
        "add",
        "clinic",
        &format!("127.0.0.1:{model_port}"),
    ]);
    let pid = sup.cli_json(&["tenant", "show", "clinic"])["pid"].clone();

    let (status, _, body) = http_request(
        http,
        "PUT",
        "/v1/agent",
        Some(token),
        &[],
        &agent_doc(model_port),
    );
    assert_eq!(status, 200, "{body}");
    write_caller(&sup, &[("what are your opening hours", 12000)]);
    place_call(&sup, "transfer_caller.xml", CLINIC);
    let logged = desk.finish(&sup);

    // The human got the model's summary and reason.
    assert_eq!(
        Human::header(&logged, "X-Bulkhead-Summary"),
        Some(SUMMARY),
        "{logged}"
    );
    assert_eq!(
        Human::header(&logged, "X-Bulkhead-Reason"),
        Some("booking"),
        "{logged}"
    );
    // The model was sent the tenant's prompt and the caller's words, with the key.
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let r = &requests[0];
    assert_eq!(r.line, "POST /v1/chat/completions HTTP/1.1");
    assert!(
        r.headers
            .iter()
            .any(|h| h == "authorization: Bearer sk-clinic"),
        "{r:?}"
    );
    assert_eq!(r.body["model"], "clinic-model");
    assert_eq!(
        r.body["stream"], true,
        "asked for a streamed answer (served as SSE)"
    );
    let messages = r.body["messages"].as_array().unwrap();
    assert!(messages[0]["content"]
        .as_str()
        .unwrap()
        .starts_with("You are the front desk of Maple Clinic."));
    assert!(
        messages.iter().any(
            |m| m["role"] == "user" && m["content"].as_str().unwrap().contains("opening hours")
        ),
        "{messages:?}"
    );
    // Same worker, and the record says which model decided and where the call went.
    assert_eq!(
        sup.cli_json(&["tenant", "show", "clinic"])["pid"],
        pid,
        "no restart"
    );
    let calls = settled_calls(http, token);
    assert_escalated_to(&calls, "front-desk");
    assert_eq!(calls[0]["providers"]["llm"], "openai", "{calls:?}");
    assert!(
        calls[0]["providers"]["fallback"].get("llm").is_none(),
        "{calls:?}"
    );
    let turns = transcript(http, token, &calls[0]);
    assert!(said(&turns, "agent").contains(&SAY), "{turns:?}");
    assert!(
        !said(&turns, "agent").contains(&"We are open nine to five."),
        "rules did not answer: {turns:?}"
    );
    assert!(
        said(&turns, "system").contains(&"transferring to front-desk (booking)"),
        "{turns:?}"
    );

    // Off the allowlist, the model is out of reach: rules answer, and the record says why.
    sup.cli_json(&[
        "egress",
        "remove",
        "clinic",
        &format!("127.0.0.1:{model_port}"),
    ]);
    write_caller(
        &sup,
        &[("what are your opening hours", 3500), ("goodbye", 3000)],
    );
    place_call(&sup, "voice_caller.xml", CLINIC);
    let calls = settled_calls(http, token);
    assert_eq!(calls.len(), 2);
    let fallback = calls[0]["providers"]["fallback"]["llm"]
        .as_str()
        .unwrap_or_default();
    assert!(
        fallback.contains("allowlist") && fallback.contains("rules"),
        "{calls:?}"
    );
    let turns = transcript(http, token, &calls[0]);
    assert!(
        said(&turns, "agent").contains(&"We are open nine to five."),
        "{turns:?}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the broker refused the second call's turns"
    );

    // The neighbour's configuration and calls are untouched.
    let (_, _, other_after) =
        http_request(other_http, "GET", "/v1/agent", Some(other_token), &[], "");
    assert_eq!(other_before, other_after);
    assert!(settled_calls(other_http, other_token).is_empty());
}

#[test]
fn speech_layers_switch_to_the_network_provider_with_no_restart() {
    let sup = Supervisor::start();
    let clinic = sup.add_tenant("clinic", &[CLINIC]);
    let (http, token) = api_of(&clinic);
    let (port, seen) = model_server();
    sup.cli_json(&["egress", "add", "clinic", &format!("127.0.0.1:{port}")]);
    let pid = sup.cli_json(&["tenant", "show", "clinic"])["pid"].clone();
    let layer = |model: &str| {
        format!(
            r#"{{"provider": "openai", "base_url": "http://127.0.0.1:{port}/v1", "model": "{model}", "api_key": "sk-voice"}}"#
        )
    };
    let doc = format!(
        r#"{{"greeting": "Thank you for calling Maple Clinic.", "persona": {{"voice": "nova"}},
  "stt": {}, "tts": {},
  "intents": [{{"name": "hours", "phrases": ["opening hours"], "action": "answer", "answer": "We are open nine to five."}},
              {{"name": "bye", "phrases": ["goodbye"], "action": "end_call"}}]}}"#,
        layer("whisper-1"),
        layer("tts-1")
    );
    let (status, _, body) = http_request(http, "PUT", "/v1/agent", Some(token), &[], &doc);
    assert_eq!(status, 200, "{body}");
    // The caller asks about hours; the network recognizer hears "goodbye",
    // so the agent (rules) says goodbye and hangs up: its words decided.
    write_caller(&sup, &[("what are your opening hours", 6000)]);
    place_call(&sup, "voice_caller.xml", CLINIC);

    assert_eq!(
        sup.cli_json(&["tenant", "show", "clinic"])["pid"],
        pid,
        "no restart"
    );
    let calls = settled_calls(http, token);
    let providers = &calls[0]["providers"];
    assert_eq!(
        (providers["stt"].as_str(), providers["tts"].as_str()),
        (Some("openai"), Some("openai")),
        "{calls:?}"
    );
    assert!(
        providers["fallback"].as_object().unwrap().is_empty(),
        "{calls:?}"
    );
    let turns = transcript(http, token, &calls[0]);
    assert_eq!(said(&turns, "caller"), ["goodbye"], "{turns:?}");
    assert_eq!(
        said(&turns, "agent").last(),
        Some(&"Thank you for calling. Goodbye."),
        "{turns:?}"
    );

    let requests = seen.lock().unwrap().clone();
    let speech: Vec<&Seen> = requests
        .iter()
        .filter(|r| r.line.starts_with("POST /v1/audio/speech "))
        .collect();
    assert_eq!(
        speech[0].body["input"], "Thank you for calling Maple Clinic.",
        "{requests:?}"
    );
    assert_eq!(
        (
            speech[0].body["model"].as_str(),
            speech[0].body["voice"].as_str()
        ),
        (Some("tts-1"), Some("nova"))
    );
    let upload = requests
        .iter()
        .find(|r| r.line.starts_with("POST /v1/audio/transcriptions "))
        .expect("the caller's turn was sent for transcription");
    let form = String::from_utf8_lossy(&upload.raw);
    assert!(
        form.contains("whisper-1") && form.contains("RIFF") && form.contains("opening hours"),
        "model, audio and the intents as prompt"
    );
    assert!(upload
        .headers
        .iter()
        .any(|h| h == "authorization: Bearer sk-voice"));
}
