//! The `openai` language model: any OpenAI-compatible chat-completions
//! server, reached through the egress broker. The wire format is
//! `bulkhead_voice::agent::openai`; this is the transport and the errors a
//! tenant can act on (allowlist, status, key).

use std::sync::Arc;

use bulkhead_voice::agent::llm::{Decided, Llm, LlmError, Message};
use bulkhead_voice::agent::openai::{chat_request, error_message, parse_chat_response};
use bulkhead_voice::agent::AgentDoc;
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

    fn decide(&self, conversation: Arc<[Message]>) -> Decided {
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            let body = chat_request(&inner.model, &conversation, &inner.targets).to_string();
            let endpoint = &inner.endpoint;
            let answer = inner
                .http
                .post(
                    endpoint,
                    "/chat/completions",
                    inner.api_key.as_deref().map(String::as_str),
                    "application/json",
                    body.into_bytes(),
                )
                .await
                .map_err(|e| LlmError(format!("{}:{}: {e}", endpoint.host, endpoint.port)))?;
            if !(200..300).contains(&answer.status) {
                let detail = error_message(&answer.body).unwrap_or_default();
                return Err(LlmError(format!(
                    "{}:{} answered HTTP {} {detail}",
                    endpoint.host, endpoint.port, answer.status
                )));
            }
            parse_chat_response(&answer.body)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressClient;
    use crate::providers::test_server::server;
    use bulkhead_voice::agent::llm::{Decision, Role};

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
        let decision = model(port).decide(turn()).await.unwrap();
        assert_eq!(decision, Decision::Say("Hi there.".into()));
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
        assert!(!format!("{:?}", model(port)).contains("sk-test"));
    }

    #[tokio::test]
    async fn errors_name_the_server_and_its_reason() {
        let (port, _) = server(401, br#"{"error": {"message": "Invalid API key"}}"#).await;
        let e = model(port).decide(turn()).await.unwrap_err().0;
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
        let e = model(port).decide(turn()).await.unwrap_err().0;
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
