//! The OpenAI-compatible audio wire formats: `POST /audio/transcriptions`
//! (multipart, a WAV file; answers `{"text"}`) and `POST /audio/speech`
//! (JSON; with `response_format: "pcm"` the answer is raw 24 kHz 16-bit
//! little-endian mono). Transport is the worker's.

use serde::Deserialize;
use serde_json::{json, Value};

use super::SpeechError;
use crate::media::resample::Resampler;
use crate::media::RATE;

/// The sample rate of `response_format: "pcm"`.
pub const SPEECH_RATE: u32 = 24_000;
/// The longest text sent for one utterance (the API's limit is 4096 characters).
const MAX_INPUT: usize = 4096;
const MAX_TEXT: usize = 2000;

/// A 16-bit mono WAV file of 8 kHz `audio`.
pub fn wav(audio: &[i16]) -> Vec<u8> {
    let data_len = (audio.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + audio.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes()); // fmt chunk size
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&(RATE * 2).to_le_bytes()); // bytes per second
    out.extend_from_slice(&2u16.to_le_bytes()); // block align
    out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in audio {
        out.extend_from_slice(&s.to_le_bytes());
    }
    out
}

/// The multipart body of a transcription request and its content type.
/// `prompt` biases the recognizer toward the tenant's phrases.
pub fn transcription_form(
    model: &str,
    audio: &[i16],
    prompt: &str,
    boundary: &str,
) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    let mut field = |name: &str, value: &str| {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                .as_bytes(),
        );
    };
    field("model", model);
    field("response_format", "json");
    if !prompt.is_empty() {
        field("prompt", prompt);
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"turn.wav\"\r\nContent-Type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&wav(audio));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[derive(Deserialize)]
struct Transcription {
    text: String,
}

/// The text of a transcription answer, trimmed and bounded.
pub fn parse_transcription(body: &[u8]) -> Result<String, SpeechError> {
    let t: Transcription = serde_json::from_slice(body)
        .map_err(|e| SpeechError::Failed(format!("the transcription answer is unusable: {e}")))?;
    let mut text = t.text.trim().to_owned();
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    Ok(text)
}

/// The speech request body.
pub fn speech_request(model: &str, voice: &str, text: &str) -> Value {
    let input: String = text.chars().take(MAX_INPUT).collect();
    json!({"model": model, "voice": voice, "input": input, "response_format": "pcm"})
}

/// Raw 24 kHz 16-bit little-endian PCM, as it streams in, to 8 kHz samples.
#[derive(Debug)]
pub struct SpeechDecoder {
    resampler: Resampler,
    /// A sample split between two pieces of the stream.
    odd: Option<u8>,
    bytes: usize,
}

impl Default for SpeechDecoder {
    fn default() -> Self {
        Self {
            resampler: Resampler::new(SPEECH_RATE, RATE),
            odd: None,
            bytes: 0,
        }
    }
}

impl SpeechDecoder {
    /// The 8 kHz samples a piece of the stream completes.
    pub fn push(&mut self, piece: &[u8]) -> Vec<i16> {
        self.bytes += piece.len();
        let mut bytes = Vec::with_capacity(piece.len() + 1);
        bytes.extend(self.odd.take());
        bytes.extend_from_slice(piece);
        if bytes.len() % 2 == 1 {
            self.odd = bytes.pop();
        }
        let wide: Vec<i16> = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        let mut out = Vec::new();
        self.resampler.push(&wide, &mut out);
        out
    }

    /// The stream ended: the last samples, or why it was not 16-bit PCM.
    pub fn finish(mut self) -> Result<Vec<i16>, SpeechError> {
        if self.bytes == 0 || self.odd.is_some() {
            return Err(SpeechError::Failed(format!(
                "the speech answer is not 16-bit PCM ({} bytes)",
                self.bytes
            )));
        }
        let mut out = Vec::new();
        self.resampler.finish(&mut out);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole 24 kHz PCM answer as 8 kHz samples.
    fn speech_samples(body: &[u8]) -> Result<Vec<i16>, SpeechError> {
        let mut decoder = SpeechDecoder::default();
        let mut out = decoder.push(body);
        out.extend(decoder.finish()?);
        Ok(out)
    }

    #[test]
    fn the_wav_header_describes_8khz_16bit_mono() {
        let w = wav(&[0, 1, -1]);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(w[4..8].try_into().unwrap()), 36 + 6);
        assert_eq!(u32::from_le_bytes(w[24..28].try_into().unwrap()), 8000);
        assert_eq!(u16::from_le_bytes(w[34..36].try_into().unwrap()), 16);
        assert_eq!(&w[36..40], b"data");
        assert_eq!(w.len(), 44 + 6);
        assert_eq!(&w[46..48], &1i16.to_le_bytes());
    }

    #[test]
    fn the_form_carries_model_prompt_and_file() {
        let (ctype, body) = transcription_form("whisper-1", &[0; 80], "talk to a human", "XyZ");
        assert_eq!(ctype, "multipart/form-data; boundary=XyZ");
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(
            "--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        ));
        assert!(text.contains("name=\"prompt\"\r\n\r\ntalk to a human\r\n"));
        assert!(text.contains("filename=\"turn.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF"));
        assert!(text.ends_with("\r\n--XyZ--\r\n"));
    }

    #[test]
    fn answers_are_read_and_checked() {
        assert_eq!(
            parse_transcription(br#"{"text": " operator please "}"#).unwrap(),
            "operator please"
        );
        assert!(parse_transcription(b"<html>").is_err());
        // One second at 24 kHz becomes one second at 8 kHz.
        let pcm: Vec<u8> = (0..24_000)
            .flat_map(|i| ((i % 100) as i16).to_le_bytes())
            .collect();
        assert_eq!(speech_samples(&pcm).unwrap().len(), 8000);
        assert!(speech_samples(&[1, 2, 3]).is_err());
        assert!(speech_samples(&[]).is_err());
        // Split anywhere, even inside a sample, the stream decodes the same.
        let mut decoder = SpeechDecoder::default();
        let mut streamed = Vec::new();
        for piece in pcm.chunks(4801) {
            streamed.extend(decoder.push(piece));
        }
        streamed.extend(decoder.finish().unwrap());
        assert_eq!(streamed, speech_samples(&pcm).unwrap());
        let long = "a".repeat(5000);
        assert_eq!(
            speech_request("tts-1", "alloy", &long)["input"]
                .as_str()
                .unwrap()
                .len(),
            4096
        );
    }
}
