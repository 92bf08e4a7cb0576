//! The OpenAI-compatible chat-completions wire format: the request a
//! caller's turn becomes (the tenant's prompt, the conversation, and the two
//! tools the model acts through) and the decision read back from the answer.
//! Transport is the worker's (through its egress broker); this is only JSON,
//! so every server quirk is a unit test here.
//!
//! Everything read back is bounded: the model's words are clipped to what the
//! agent may say in one turn, the summary to what the human's INVITE carries.

use serde::Deserialize;
use serde_json::{json, Value};

use super::call::MAX_SUMMARY;
use super::doc::{Action, AgentDoc};
use super::llm::{Decision, LlmError, Message};

/// The longest reply spoken in one turn, and the longest reason kept.
pub const MAX_SAY: usize = 2000;
const MAX_REASON: usize = 200;
const MAX_TARGET: usize = 64;

/// The system message: the tenant's prompt, who the agent is, the answers
/// its intents configure, and when to use each tool.
pub fn system_prompt(doc: &AgentDoc) -> String {
    let mut out = String::new();
    if !doc.prompt.is_empty() {
        out.push_str(&doc.prompt);
        out.push_str("\n\n");
    }
    if !doc.persona.name.is_empty() {
        out.push_str(&format!("Your name is {}. ", doc.persona.name));
    }
    out.push_str(&format!(
        "You are answering a phone call. Speak in {}, in one or two short sentences: your words are read aloud. \
Call transfer_to_human when the caller wants a person or you cannot help them, with a summary for that person. \
Call end_call when the caller is done.",
        doc.language
    ));
    let facts: Vec<String> = doc
        .intents
        .iter()
        .filter(|i| i.action == Some(Action::Answer))
        .filter_map(|i| Some(format!("- {}: {}", i.name, i.answer.as_deref()?)))
        .collect();
    if !facts.is_empty() {
        out.push_str("\n\nFacts you may use:\n");
        out.push_str(&facts.join("\n"));
    }
    out
}

/// The chat-completions request body, asking for a streamed answer.
/// `targets` are the tenant's escalation target names, offered to the
/// model as the tool's choices.
pub fn chat_request(model: &str, conversation: &[Message], targets: &[String]) -> Value {
    let mut target =
        json!({"type": "string", "description": "which destination, if the caller named one"});
    if !targets.is_empty() {
        target["enum"] = json!(targets);
    }
    json!({
        "model": model,
        "stream": true,
        "messages": conversation,
        "tools": [
            {"type": "function", "function": {
                "name": "transfer_to_human",
                "description": "Transfer the caller to a person at the business.",
                "parameters": {"type": "object", "properties": {
                    "summary": {"type": "string", "description": "what the person taking the call needs to know"},
                    "reason": {"type": "string", "description": "why the caller needs a person, in a few words"},
                    "target": target},
                    "required": ["summary", "reason"]}}},
            {"type": "function", "function": {
                "name": "end_call",
                "description": "End the call after saying goodbye.",
                "parameters": {"type": "object", "properties": {
                    "reason": {"type": "string"}},
                    "required": ["reason"]}}}
        ]
    })
}

#[derive(Deserialize)]
struct ChatResponse {
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    message: AnswerMessage,
}

#[derive(Deserialize)]
struct AnswerMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Deserialize)]
struct ToolCall {
    function: FunctionCall,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    /// A JSON document in a string, as the API defines it.
    arguments: String,
}

#[derive(Deserialize)]
struct TransferArgs {
    summary: String,
    reason: String,
    #[serde(default)]
    target: Option<String>,
}

#[derive(Deserialize)]
struct EndArgs {
    #[serde(default)]
    reason: String,
}

pub(super) fn bad(what: impl std::fmt::Display) -> LlmError {
    LlmError(format!("the model's answer is unusable: {what}"))
}

/// The decision in a chat-completions answer: the first tool call if there
/// is one, else the message's text.
pub fn parse_chat_response(body: &[u8]) -> Result<Decision, LlmError> {
    let answer: ChatResponse = serde_json::from_slice(body).map_err(bad)?;
    let message = answer
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| bad("no choices"))?
        .message;
    let tool = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .next()
        .map(|c| (c.function.name, c.function.arguments));
    decision(message.content, tool)
}

/// The decision from a message's text and its first tool call (name,
/// arguments), however they arrived (whole or streamed).
pub(super) fn decision(
    content: Option<String>,
    tool: Option<(String, String)>,
) -> Result<Decision, LlmError> {
    let say = content
        .map(|c| clip(c.trim().to_owned(), MAX_SAY))
        .filter(|c| !c.is_empty());
    let Some((name, arguments)) = tool else {
        return say
            .map(Decision::Say)
            .ok_or_else(|| bad("no text and no tool call"));
    };
    match name.as_str() {
        "transfer_to_human" => {
            let args: TransferArgs = serde_json::from_str(&arguments)
                .map_err(|e| bad(format!("transfer_to_human arguments: {e}")))?;
            Ok(Decision::Transfer {
                reason: clip(args.reason, MAX_REASON),
                summary: clip(args.summary, MAX_SUMMARY),
                target: args.target.map(|t| clip(t, MAX_TARGET)),
                say,
            })
        }
        "end_call" => {
            let args: EndArgs = serde_json::from_str(&arguments)
                .map_err(|e| bad(format!("end_call arguments: {e}")))?;
            Ok(Decision::EndCall {
                reason: clip(args.reason, MAX_REASON),
                say,
            })
        }
        other => Err(bad(format!(
            "it called a tool that does not exist ({})",
            clip(other.to_owned(), MAX_TARGET)
        ))),
    }
}

/// The message of an error answer (`{"error": {"message": ...}}`), bounded.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let m = v["error"]["message"].as_str()?;
    Some(clip(m.to_owned(), MAX_REASON))
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn clip(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::llm::Role;

    fn tool(name: &str, args: &str) -> Vec<u8> {
        json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": "One moment.",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": name, "arguments": args}}]}}]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_request_carries_the_prompt_the_conversation_and_both_tools() {
        let doc = AgentDoc::from_json(br#"{"prompt": "You are the front desk of Maple Clinic.",
            "persona": {"name": "Maple"},
            "intents": [{"name": "hours", "phrases": ["hours"], "action": "answer", "answer": "Nine to five."}]}"#)
        .unwrap();
        let conversation = [
            Message::new(Role::System, system_prompt(&doc)),
            Message::new(Role::Assistant, "Hello."),
            Message::new(Role::User, "what are your opening hours"),
        ];
        let req = chat_request("gpt-x", &conversation, &["front-desk".into()]);
        assert_eq!(req["model"], "gpt-x");
        let system = req["messages"][0]["content"].as_str().unwrap();
        assert!(system.starts_with("You are the front desk of Maple Clinic."));
        assert!(system.contains("Maple") && system.contains("- hours: Nine to five."));
        assert_eq!(req["messages"][0]["role"], "system");
        assert_eq!(req["messages"][2]["role"], "user");
        let names: Vec<&str> = req["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["transfer_to_human", "end_call"]);
        assert_eq!(
            req["tools"][0]["function"]["parameters"]["properties"]["target"]["enum"][0],
            "front-desk"
        );
    }

    #[test]
    fn tool_calls_and_text_become_decisions() {
        let t = parse_chat_response(&tool(
            "transfer_to_human",
            r#"{"summary": "Wants Friday.", "reason": "reschedule"}"#,
        ))
        .unwrap();
        assert_eq!(
            t,
            Decision::Transfer {
                reason: "reschedule".into(),
                summary: "Wants Friday.".into(),
                target: None,
                say: Some("One moment.".into())
            }
        );
        let end = parse_chat_response(&tool("end_call", r#"{"reason": "done"}"#)).unwrap();
        assert!(matches!(end, Decision::EndCall { reason, .. } if reason == "done"));
        let text = br#"{"choices": [{"message": {"role": "assistant", "content": " We open at nine. ", "tool_calls": null}}]}"#;
        assert_eq!(
            parse_chat_response(text).unwrap(),
            Decision::Say("We open at nine.".into())
        );
    }

    #[test]
    fn unusable_answers_are_errors_and_everything_is_bounded() {
        for body in [
            &b"not json"[..],
            br#"{"choices": []}"#,
            br#"{"choices": [{"message": {"content": ""}}]}"#,
        ] {
            assert!(parse_chat_response(body).is_err());
        }
        assert!(parse_chat_response(&tool("rm_rf", "{}"))
            .unwrap_err()
            .0
            .contains("does not exist"));
        assert!(parse_chat_response(&tool("transfer_to_human", "{")).is_err());
        let long = "é".repeat(2000);
        let args = json!({"summary": long, "reason": long, "target": long}).to_string();
        let Decision::Transfer {
            summary,
            reason,
            target,
            ..
        } = parse_chat_response(&tool("transfer_to_human", &args)).unwrap()
        else {
            panic!("not a transfer")
        };
        assert!(summary.len() <= MAX_SUMMARY && reason.len() <= MAX_REASON);
        assert!(target.unwrap().len() <= MAX_TARGET);
        assert_eq!(
            error_message(br#"{"error": {"message": "Invalid API key"}}"#).as_deref(),
            Some("Invalid API key")
        );
    }
}
