//! The `openai` language model: any OpenAI-compatible chat-completions
//! server, reached through the egress broker. The wire format is
//! `bulkhead_voice::agent::openai`; this is the transport and the errors a
//! tenant can act on (allowlist, status, key).

use std::sync::Arc;

use bulkhead_voice::agent::llm::{Answering, Decision, Llm, LlmError, Message, Piece};
use bulkhead_voice::agent::openai::{chat_request, error_message, parse_chat_response};
use bulkhead_voice::agent::openai_stream::StreamParser;
use bulkhead_voice::agent::AgentDoc;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::http::{Endpoint, ProviderHttp};

pub struct OpenAiChat {
    inner: Arc<Inner>,
}

struct Inner {
    endpoint: Endpoint,
    model: String,
    api_key: Option<Zeroizing<String>>,
    /// The tenant's escalation target names, offered to the model.
    targets: Vec<String>,
    http: Arc<ProviderHttp>,
}

impl std::fmt::Debug for OpenAiChat {
    // The key stays out of logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiChat")
            .field("endpoint", &self.inner.endpoint)
            .field("model", &self.inner.model)
            .field("api_key_set", &self.inner.api_key.is_some())
            .finish()
    }
}

impl OpenAiChat {
    /// The document's `llm` layer as a model, or why it cannot be one.
    pub fn new(
        doc: &AgentDoc,
        targets: Vec<String>,
        http: Arc<ProviderHttp>,
    ) -> Result<Self, String> {
        let base_url = doc.llm.base_url.as_deref().unwrap_or_default();
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint: Endpoint::parse(base_url)?,
                model: doc.llm.model.clone().unwrap_or_default(),
                api_key: doc.llm.api_key.clone().map(Zeroizing::new),
                targets,
                http,
            }),
        })
    }
}

impl Llm for OpenAiChat {
    fn name(&self) -> &'static str {
        "openai"
    }

    /// Asks for a streamed answer and hands its text on as it arrives; a
    /// server that answers whole (`application/json`) works too.
    fn decide(&self, conversation: Arc<[Message]>) -> Answering {
        let inner = Arc::clone(&self.inner);
        let (tx, rx) = mpsc::channel(32);
        tokio::spawn(async move {
            let decision = inner.answer(&conversation, &tx).await;
            let _ = tx.send(Piece::Done(decision)).await;
        });
        rx
    }
}

impl Inner {
    async fn answer(
        &self,
        conversation: &[Message],
        text: &mpsc::Sender<Piece>,
    ) -> Result<Decision, LlmError> {
        let body = chat_request(&self.model, conversation, &self.targets).to_string();
        let e = &self.endpoint;
        let failed = |why: String| LlmError(format!("{}:{}: {why}", e.host, e.port));
        let key = self.api_key.as_deref().map(String::as_str);
        let mut answer = self
            .http
            .open(
                e,
                "/chat/completions",
                key,
                "application/json",
                body.into_bytes(),
            )
            .await
            .map_err(failed)?;
        if !(200..300).contains(&answer.status) {
            let status = answer.status;
            let body = answer.collect().await.map_err(failed)?;
            let detail = error_message(&body).unwrap_or_default();
            return Err(failed(format!("answered HTTP {status} {detail}")));
        }
        if !answer.content_type.starts_with("text/event-stream") {
            let body = answer.collect().await.map_err(failed)?;
            return parse_chat_response(&body);
        }
        let mut parser = StreamParser::default();
        while let Some(piece) = answer.next_piece().await {
            let words = parser.push(&piece.map_err(failed)?)?;
            if !words.is_empty() && text.send(Piece::Text(words)).await.is_err() {
                return Err(LlmError("the call ended".into()));
            }
        }
        parser.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressClient;
    use crate::providers::test_server::{server, typed_server};
    use bulkhead_voice::agent::llm::Role;

    /// The text pieces the model streamed, and its decision.
    async fn answer(model: OpenAiChat) -> (Vec<String>, Result<Decision, LlmError>) {
        let mut pieces = model.decide(turn());
        let mut texts = Vec::new();
        while let Some(piece) = pieces.recv().await {
            match piece {
                Piece::Text(t) => texts.push(t),
                Piece::Done(d) => return (texts, d),
            }
        }
        panic!("no decision")
    }

    fn model(port: u16) -> OpenAiChat {
        let doc = AgentDoc::from_json(
            format!(r#"{{"llm": {{"provider": "openai", "base_url": "http://127.0.0.1:{port}/v1", "model": "m1", "api_key": "sk-test"}}}}"#)
                .as_bytes(),
        )
        .unwrap();
        OpenAiChat::new(
            &doc,
            vec!["desk".into()],
            Arc::new(ProviderHttp::new(Arc::new(EgressClient::direct()))),
        )
        .unwrap()
    }

    fn turn() -> Arc<[Message]> {
        vec![
            Message::new(Role::System, "be brief"),
            Message::new(Role::User, "hello"),
        ]
        .into()
    }

    #[tokio::test]
    async fn a_turn_is_posted_with_the_key_and_the_answer_decides() {
        let (port, request) = server(
            200,
            br#"{"choices": [{"message": {"content": "Hi there."}}]}"#,
        )
        .await;
        let (texts, decision) = answer(model(port)).await;
        assert_eq!(decision.unwrap(), Decision::Say("Hi there.".into()));
        assert!(texts.is_empty(), "a whole answer has no pieces");
        let request = request.await.unwrap();
        assert!(
            request.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains("authorization: Bearer sk-test\r\n"),
            "{request}"
        );
        assert!(
            request.contains(&format!("host: 127.0.0.1:{port}\r\n")),
            "{request}"
        );
        assert!(request.contains(r#""model":"m1""#) && request.contains(r#""content":"hello""#));
        assert!(request.contains(r#""stream":true"#));
        assert!(!format!("{:?}", model(port)).contains("sk-test"));
    }

    #[tokio::test]
    async fn errors_name_the_server_and_its_reason() {
        let (port, _) = server(401, br#"{"error": {"message": "Invalid API key"}}"#).await;
        let e = answer(model(port)).await.1.unwrap_err().0;
        assert!(
            e.contains("HTTP 401") && e.contains("Invalid API key"),
            "{e}"
        );
        // Nobody listening.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = answer(model(port)).await.1.unwrap_err().0;
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }

    #[tokio::test]
    async fn a_streamed_answer_arrives_in_pieces() {
        let (port, _) = typed_server(
            200,
            "text/event-stream",
            b"data: {\"choices\":[{\"delta\":{\"content\":\"We are \"}}]}\n\n\
data: {\"choices\":[{\"delta\":{\"content\":\"open.\"}}]}\n\ndata: [DONE]\n\n",
        )
        .await;
        let (texts, decision) = answer(model(port)).await;
        // One write from the server: the text may come as one piece.
        assert_eq!(texts.concat(), "We are open.");
        assert_eq!(decision.unwrap(), Decision::Say("We are open.".into()));
    }
}
