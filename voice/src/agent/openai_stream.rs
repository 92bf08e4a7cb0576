//! A streamed chat-completions answer (`"stream": true`): server-sent
//! events, each `data: {json}` carrying a delta of the message's text or of
//! a tool call's name and arguments, ending with `data: [DONE]`. The text
//! is handed on as it arrives, so the agent can speak a reply's first
//! sentence before the model has finished the rest.
//!
//! Everything is bounded: a line of at most 64 KiB, the text and the tool
//! call's arguments as the whole answer would be.

use serde::Deserialize;

use super::llm::{Decision, LlmError};
use super::openai::{bad, decision, MAX_SAY};

const MAX_LINE: usize = 64 << 10;
const MAX_ARGUMENTS: usize = 16 << 10;

#[derive(Debug, Default)]
pub struct StreamParser {
    line: Vec<u8>,
    text: String,
    tool_name: String,
    tool_arguments: String,
    /// Only the first tool call counts (as in a whole answer).
    tool_index: Option<u64>,
    done: bool,
}

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    choices: Vec<Choice>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    delta: Delta,
}

#[derive(Deserialize, Default)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolDelta>>,
}

#[derive(Deserialize)]
struct ToolDelta {
    #[serde(default)]
    index: u64,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

impl StreamParser {
    /// Takes the next bytes of the stream; returns the text they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<String, LlmError> {
        let mut text = String::new();
        for &b in bytes {
            if b != b'\n' {
                if self.line.len() >= MAX_LINE {
                    return Err(bad("an event line over 64 KiB"));
                }
                self.line.push(b);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let line = String::from_utf8_lossy(&line);
            text.push_str(&self.event(line.trim_end_matches('\r'))?);
        }
        Ok(text)
    }

    /// One line of the event stream.
    fn event(&mut self, line: &str) -> Result<String, LlmError> {
        let Some(data) = line.strip_prefix("data:").map(str::trim_start) else {
            return Ok(String::new()); // comments, `event:`, blank separators
        };
        if data == "[DONE]" {
            self.done = true;
            return Ok(String::new());
        }
        if let Some(message) = super::openai::error_message(data.as_bytes()) {
            return Err(LlmError(format!("the model's server reported: {message}")));
        }
        let event: Event = serde_json::from_str(data).map_err(bad)?;
        let Some(choice) = event.choices.into_iter().next() else {
            return Ok(String::new());
        };
        for call in choice.delta.tool_calls.unwrap_or_default() {
            if *self.tool_index.get_or_insert(call.index) != call.index {
                continue;
            }
            if let Some(f) = call.function {
                self.tool_name.push_str(&f.name.unwrap_or_default());
                self.tool_arguments
                    .push_str(&f.arguments.unwrap_or_default());
            }
            if self.tool_arguments.len() > MAX_ARGUMENTS || self.tool_name.len() > 64 {
                return Err(bad("tool call arguments over 16 KiB"));
            }
        }
        let mut piece = choice.delta.content.unwrap_or_default();
        let room = MAX_SAY.saturating_sub(self.text.len());
        if piece.len() > room {
            piece = super::openai::clip(piece, room);
        }
        self.text.push_str(&piece);
        Ok(piece)
    }

    /// The stream ended: the decision it carried.
    pub fn finish(self) -> Result<Decision, LlmError> {
        if !self.done {
            return Err(bad("the stream ended before [DONE]"));
        }
        let tool = (!self.tool_name.is_empty()).then_some((self.tool_name, self.tool_arguments));
        decision(Some(self.text), tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(events: &[&str]) -> String {
        events.iter().map(|e| format!("data: {e}\n\n")).collect()
    }

    #[test]
    fn text_arrives_in_pieces_however_the_bytes_are_cut() {
        let stream = sse(&[
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"We are open "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"content":"nine to five."}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            "[DONE]",
        ]);
        for cut in [1, 3, 17, 10_000] {
            let mut p = StreamParser::default();
            let mut text = String::new();
            for piece in stream.as_bytes().chunks(cut) {
                text.push_str(&p.push(piece).unwrap());
            }
            assert_eq!(text, "We are open nine to five.");
            assert_eq!(
                p.finish().unwrap(),
                Decision::Say("We are open nine to five.".into())
            );
        }
    }

    #[test]
    fn a_streamed_tool_call_is_assembled() {
        let stream = sse(&[
            r#"{"choices":[{"delta":{"content":"One moment."}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"transfer_to_human","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"summary\": \"Wants"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":" Friday.\", \"reason\": \"booking\"}"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":1,"function":{"name":"end_call","arguments":"{}"}}]}}]}"#,
            "[DONE]",
        ])
        .replace('\n', "\r\n");
        let mut p = StreamParser::default();
        assert_eq!(p.push(stream.as_bytes()).unwrap(), "One moment.");
        assert_eq!(
            p.finish().unwrap(),
            Decision::Transfer {
                reason: "booking".into(),
                summary: "Wants Friday.".into(),
                target: None,
                say: Some("One moment.".into())
            }
        );
    }

    #[test]
    fn broken_streams_are_errors() {
        let mut p = StreamParser::default();
        p.push(sse(&[r#"{"choices":[{"delta":{"content":"Hi"}}]}"#]).as_bytes())
            .unwrap();
        assert!(p.finish().unwrap_err().0.contains("[DONE]"), "cut off");
        let mut p = StreamParser::default();
        let e = p
            .push(sse(&[r#"{"error": {"message": "overloaded"}}"#]).as_bytes())
            .unwrap_err();
        assert!(e.0.contains("overloaded"));
        let mut p = StreamParser::default();
        assert!(p.push(&vec![b'a'; MAX_LINE + 1]).is_err());
        let mut p = StreamParser::default();
        assert!(p.push(b"data: {not json\n").is_err());
    }
}
