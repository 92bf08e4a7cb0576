//! Which provider serves each layer of a call, and the call record of that
//! choice. A network provider (`openai`) serves its layer with the embedded
//! one standing by; a layer nothing can serve, or one whose provider fails
//! during the call, is named in the record's `fallback` with the reason.

pub mod http;
pub mod openai;
pub mod speech;
#[cfg(test)]
mod test_server;

use std::sync::Arc;

use bulkhead_voice::agent::llm::Llm;
use bulkhead_voice::agent::{AgentDoc, Voices};
use bulkhead_voice::speech::espeak::Espeak;
use bulkhead_voice::speech::remote::{Synthesizer, Transcriber};
use bulkhead_voice::speech::sphinx::Sphinx;
use serde_json::{json, Map, Value};

use self::http::ProviderHttp;

/// An embedded provider, or why this worker could not open it.
pub type Opened<T> = Result<T, String>;

/// The providers for one call and the record's `providers` JSON:
/// `{"stt", "llm", "tts", "fallback": {layer: reason}}`, where a layer's
/// name is null when nothing serves it.
pub fn choose(
    doc: &AgentDoc,
    tts: &Opened<Espeak>,
    stt: &Opened<Sphinx>,
    targets: Vec<String>,
    http: &Arc<ProviderHttp>,
) -> (Voices, Value) {
    let mut fallback = Map::new();
    let remote_stt: Option<Arc<dyn Transcriber>> = match doc.stt.provider.as_str() {
        "openai" => match speech::OpenAiTranscriber::new(&doc.stt, Arc::clone(http)) {
            Ok(t) => Some(Arc::new(t)),
            Err(e) => {
                fallback.insert(
                    "stt".into(),
                    json!(format!("openai: {e}; used pocketsphinx")),
                );
                None
            }
        },
        _ => None,
    };
    let remote_tts: Option<Arc<dyn Synthesizer>> = match doc.tts.provider.as_str() {
        "openai" => {
            let voice = doc.persona.voice.as_deref();
            match speech::OpenAiSynthesizer::new(&doc.tts, voice, Arc::clone(http)) {
                Ok(t) => Some(Arc::new(t)),
                Err(e) => {
                    fallback.insert("tts".into(), json!(format!("openai: {e}; used espeak-ng")));
                    None
                }
            }
        }
        _ => None,
    };
    let mut embedded = |layer: &str, name: &str, opened: Result<(), &String>| match opened {
        Ok(()) => json!(name),
        Err(e) => {
            let why = match fallback.get(layer).and_then(Value::as_str) {
                Some(earlier) => format!("{earlier}; {e}"),
                None => e.clone(),
            };
            fallback.insert(layer.to_owned(), json!(why));
            Value::Null
        }
    };
    // The embedded provider serves its layer, or stands by behind a network one.
    let stt_name = match &remote_stt {
        Some(r) => json!(r.name()),
        None => embedded("stt", "pocketsphinx", stt.as_ref().map(|_| ())),
    };
    let tts_name = match &remote_tts {
        Some(r) => json!(r.name()),
        None => embedded("tts", "espeak-ng", tts.as_ref().map(|_| ())),
    };
    let llm: Option<Arc<dyn Llm>> = match doc.llm.provider.as_str() {
        "openai" => match openai::OpenAiChat::new(doc, targets, Arc::clone(http)) {
            Ok(model) => Some(Arc::new(model)),
            Err(e) => {
                fallback.insert("llm".into(), json!(format!("openai: {e}; used rules")));
                None
            }
        },
        _ => None,
    };
    let llm_name = llm.as_ref().map_or("rules", |l| l.name());
    let voices = Voices {
        tts: tts.as_ref().ok().cloned(),
        stt: stt.as_ref().ok().cloned(),
        llm,
        remote_stt,
        remote_tts,
    };
    let record = json!({"stt": stt_name, "llm": llm_name, "tts": tts_name, "fallback": fallback});
    (voices, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(doc: &str) -> Value {
        let doc = AgentDoc::from_json(doc.as_bytes()).unwrap();
        let missing: Opened<Espeak> = Err("install libespeak-ng1".into());
        let missing_stt: Opened<Sphinx> = Err("install libpocketsphinx3".into());
        let egress = Arc::new(crate::egress::EgressClient::direct());
        choose(
            &doc,
            &missing,
            &missing_stt,
            vec![],
            &Arc::new(ProviderHttp::new(egress)),
        )
        .1
    }

    #[test]
    fn the_record_names_each_layer_and_every_fallback() {
        let r = record("{}");
        assert_eq!(
            (&r["stt"], &r["llm"], &r["tts"]),
            (&Value::Null, &json!("rules"), &Value::Null)
        );
        assert_eq!(r["fallback"]["tts"], "install libespeak-ng1");
        let r = record(
            r#"{"llm": {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}}"#,
        );
        assert_eq!(
            (&r["llm"], r["fallback"].get("llm")),
            (&json!("openai"), None)
        );
        let r = record(
            r#"{"stt": {"provider": "openai", "base_url": "http://127.0.0.1:9", "model": "whisper-1"},
                "tts": {"provider": "openai", "base_url": "https://tts.example/v1", "model": "tts-1"}}"#,
        );
        assert_eq!(
            (&r["stt"], &r["tts"]),
            (&json!("openai"), &json!("openai")),
            "{r}"
        );
        assert!(
            r["fallback"].get("stt").is_none() && r["fallback"].get("tts").is_none(),
            "{r}"
        );
    }
}
