//! The `openai` speech layers: audio transcriptions (STT) and audio speech
//! (TTS) on any OpenAI-compatible server, reached through the egress broker.
//! The wire formats are `bulkhead_voice::speech::openai`.

use std::sync::Arc;

use bulkhead_voice::agent::doc::Provider;
use bulkhead_voice::agent::endpoint::Endpoint;
use bulkhead_voice::agent::openai::error_message;
use bulkhead_voice::speech::openai::{
    parse_transcription, speech_request, transcription_form, SpeechDecoder,
};
use bulkhead_voice::speech::remote::{SpeechChunks, Synthesizer, Transcribed, Transcriber};
use bulkhead_voice::speech::SpeechError;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::http::{ProviderHttp, Streamed};

/// One `openai` speech layer's server.
struct Server {
    endpoint: Endpoint,
    model: String,
    api_key: Option<Zeroizing<String>>,
    http: Arc<ProviderHttp>,
}

impl Server {
    fn new(p: &Provider, http: Arc<ProviderHttp>) -> Result<Self, String> {
        Ok(Self {
            endpoint: Endpoint::parse(p.base_url.as_deref().unwrap_or_default())?,
            model: p.model.clone().unwrap_or_default(),
            api_key: p.api_key.clone().map(Zeroizing::new),
            http,
        })
    }

    /// POSTs; a 2xx answer's body streams, any other status is an error
    /// naming the server's reason.
    async fn open(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<Streamed, SpeechError> {
        let e = &self.endpoint;
        let failed = |why: String| SpeechError::Failed(format!("{}:{}: {why}", e.host, e.port));
        let key = self.api_key.as_deref().map(String::as_str);
        let answer = self
            .http
            .open(e, path, key, content_type, body)
            .await
            .map_err(failed)?;
        if (200..300).contains(&answer.status) {
            return Ok(answer);
        }
        let status = answer.status;
        let body = answer.collect().await.map_err(failed)?;
        let detail = error_message(&body).unwrap_or_default();
        Err(failed(format!("answered HTTP {status} {detail}")))
    }
}

/// The key stays out of logs.
impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("endpoint", &self.endpoint)
            .field("model", &self.model)
            .field("api_key_set", &self.api_key.is_some())
            .finish()
    }
}

#[derive(Debug)]
pub struct OpenAiTranscriber(Arc<Server>);

impl OpenAiTranscriber {
    pub fn new(p: &Provider, http: Arc<ProviderHttp>) -> Result<Self, String> {
        Server::new(p, http).map(|s| Self(Arc::new(s)))
    }
}

impl Transcriber for OpenAiTranscriber {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn transcribe(&self, audio: Arc<[i16]>, hint: String) -> Transcribed {
        let server = Arc::clone(&self.0);
        Box::pin(async move {
            // A boundary the audio cannot contain by chance.
            let mut random = [0u8; 12];
            getrandom::getrandom(&mut random)
                .map_err(|e| SpeechError::Failed(format!("no randomness: {e}")))?;
            let boundary: String = random.iter().map(|b| format!("{b:02x}")).collect();
            let (content_type, body) = transcription_form(&server.model, &audio, &hint, &boundary);
            let answer = server
                .open("/audio/transcriptions", &content_type, body)
                .await?;
            let body = answer.collect().await.map_err(SpeechError::Failed)?;
            parse_transcription(&body)
        })
    }
}

#[derive(Debug)]
pub struct OpenAiSynthesizer {
    server: Arc<Server>,
    voice: Arc<str>,
}

impl OpenAiSynthesizer {
    /// `voice` is the persona's voice for this provider (`alloy` when none).
    pub fn new(p: &Provider, voice: Option<&str>, http: Arc<ProviderHttp>) -> Result<Self, String> {
        Ok(Self {
            server: Arc::new(Server::new(p, http)?),
            voice: voice.unwrap_or("alloy").into(),
        })
    }
}

impl Synthesizer for OpenAiSynthesizer {
    fn name(&self) -> &'static str {
        "openai"
    }

    /// Streams the server's PCM as it arrives, resampled to 8 kHz.
    fn synthesize(&self, text: String) -> SpeechChunks {
        let (server, voice) = (Arc::clone(&self.server), Arc::clone(&self.voice));
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            let body = speech_request(&server.model, &voice, &text).to_string();
            let opened = server
                .open("/audio/speech", "application/json", body.into_bytes())
                .await;
            let mut answer = match opened {
                Ok(answer) => answer,
                Err(e) => return drop(tx.send(Err(e)).await),
            };
            let mut decoder = SpeechDecoder::default();
            while let Some(piece) = answer.next_piece().await {
                let chunk = piece
                    .map(|bytes| decoder.push(&bytes))
                    .map_err(SpeechError::Failed);
                if matches!(&chunk, Ok(pcm) if pcm.is_empty()) {
                    continue;
                }
                let broke = chunk.is_err();
                // The call ended (nobody receives), or the stream broke.
                if tx.send(chunk).await.is_err() || broke {
                    return;
                }
            }
            let _ = tx.send(decoder.finish()).await;
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::EgressClient;
    use crate::providers::test_server::server;

    fn provider(port: u16) -> Provider {
        let mut p = Provider::named("openai");
        p.base_url = Some(format!("http://127.0.0.1:{port}/v1"));
        p.model = Some("m".into());
        p.api_key = Some("sk-voice".into());
        p
    }

    fn http() -> Arc<ProviderHttp> {
        Arc::new(ProviderHttp::new(Arc::new(EgressClient::direct())))
    }

    #[tokio::test]
    async fn transcription_uploads_a_wav_and_reads_the_text() {
        let (port, request) = server(200, br#"{"text": "talk to a human"}"#).await;
        let ears = OpenAiTranscriber::new(&provider(port), http()).unwrap();
        let text = ears
            .transcribe(vec![0i16; 800].into(), "opening hours".into())
            .await
            .unwrap();
        assert_eq!(text, "talk to a human");
        let request = request.await.unwrap();
        assert!(
            request.starts_with("POST /v1/audio/transcriptions HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("content-type: multipart/form-data; boundary="));
        assert!(request.contains("authorization: Bearer sk-voice\r\n"));
        assert!(request.contains("name=\"prompt\"\r\n\r\nopening hours\r\n"));
        assert!(request.contains("RIFF") && request.contains("WAVEfmt "));
    }

    #[tokio::test]
    async fn speech_is_requested_as_pcm_and_resampled() {
        static PCM: [u8; 4800] = [0; 4800]; // 100 ms at 24 kHz
        let (port, request) = server(200, &PCM).await;
        let voice = OpenAiSynthesizer::new(&provider(port), Some("nova"), http()).unwrap();
        let mut chunks = voice.synthesize("Hello.".into());
        let mut pcm = Vec::new();
        while let Some(chunk) = chunks.recv().await {
            pcm.extend(chunk.unwrap());
        }
        assert_eq!(pcm.len(), 800, "100 ms at 8 kHz");
        let request = request.await.unwrap();
        assert!(
            request.starts_with("POST /v1/audio/speech HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.contains(r#""voice":"nova""#) && request.contains(r#""response_format":"pcm""#)
        );
    }

    #[tokio::test]
    async fn a_server_error_names_the_status_and_reason() {
        let (port, _) = server(429, br#"{"error": {"message": "Rate limit reached"}}"#).await;
        let voice = OpenAiSynthesizer::new(&provider(port), None, http()).unwrap();
        let e = voice
            .synthesize("Hello.".into())
            .recv()
            .await
            .unwrap()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("HTTP 429") && e.contains("Rate limit reached"),
            "{e}"
        );
    }
}
