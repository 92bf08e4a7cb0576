//! libespeak-ng (Debian `libespeak-ng1`): text to 22,050 Hz speech,
//! resampled here to the telephone's 8 kHz. The engine is one global per
//! process, so one thread owns it and synthesizes jobs in turn. What it made
//! recently is kept in a cache that callers read themselves: a greeting
//! already made comes back without a trip to that thread and back, two
//! thread wake-ups per call (BENCHMARKS.md, seventh session).

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_char, c_int, c_short, c_uint, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};

use tokio::sync::oneshot;

use super::{open_library, symbol, SpeechError};
use crate::media::{resample::resample, RATE};

const LIBRARY: &str = "libespeak-ng.so.1";
const PACKAGE: &str = "libespeak-ng1";
/// espeak-ng's `AUDIO_OUTPUT_SYNCHRONOUS`: samples go to our callback.
const OUTPUT_SYNCHRONOUS: c_int = 2;
const POS_CHARACTER: c_int = 1;
const CHARS_UTF8: c_uint = 1;
/// `espeakRATE`, words per minute.
const PARAM_RATE: c_int = 1;

type Callback = extern "C" fn(*mut c_short, c_int, *mut c_void) -> c_int;
type Initialize = unsafe extern "C" fn(c_int, c_int, *const c_char, c_int) -> c_int;
type SetCallback = unsafe extern "C" fn(Callback);
type SetVoiceByName = unsafe extern "C" fn(*const c_char) -> c_int;
type SetParameter = unsafe extern "C" fn(c_int, c_int, c_int) -> c_int;
type Synth = unsafe extern "C" fn(
    *const c_void,
    usize,
    c_uint,
    c_int,
    c_uint,
    c_uint,
    *mut c_uint,
    *mut c_void,
) -> c_int;

thread_local! {
    /// Where the callback puts samples; only the engine's thread synthesizes.
    static SAMPLES: RefCell<Vec<i16>> = const { RefCell::new(Vec::new()) };
}

extern "C" fn collect(wav: *mut c_short, count: c_int, _events: *mut c_void) -> c_int {
    if !wav.is_null() && count > 0 {
        // SAFETY: espeak-ng passes `count` valid samples at `wav` for the
        // duration of this call.
        let samples = unsafe { std::slice::from_raw_parts(wav, count as usize) };
        SAMPLES.with(|s| s.borrow_mut().extend_from_slice(samples));
    }
    0 // continue synthesis
}

struct Engine {
    _lib: libloading::Library,
    set_voice: SetVoiceByName,
    set_parameter: SetParameter,
    synth: Synth,
    rate: u32,
}

impl Engine {
    fn open() -> Result<Self, SpeechError> {
        let lib = open_library(LIBRARY, PACKAGE)?;
        let initialize: Initialize = symbol(&lib, "espeak_Initialize")?;
        let set_callback: SetCallback = symbol(&lib, "espeak_SetSynthCallback")?;
        let engine = Self {
            set_voice: symbol(&lib, "espeak_SetVoiceByName")?,
            set_parameter: symbol(&lib, "espeak_SetParameter")?,
            synth: symbol(&lib, "espeak_Synth")?,
            rate: 0,
            _lib: lib,
        };
        // SAFETY: the prototypes match speak_lib.h; a null path means the
        // packaged espeak-ng-data directory.
        let rate = unsafe { initialize(OUTPUT_SYNCHRONOUS, 200, std::ptr::null(), 0) };
        if rate <= 0 {
            return Err(SpeechError::Failed(format!(
                "espeak_Initialize failed ({rate}): is espeak-ng-data installed?"
            )));
        }
        // SAFETY: `collect` has the callback's C signature and lives for ever.
        unsafe { set_callback(collect) };
        Ok(Self {
            rate: rate as u32,
            ..engine
        })
    }

    fn speak(
        &self,
        voice: &str,
        words_per_minute: u32,
        text: &str,
    ) -> Result<Vec<i16>, SpeechError> {
        let voice_c =
            CString::new(voice).map_err(|_| SpeechError::Failed("NUL in voice".into()))?;
        let text_c = CString::new(text).map_err(|_| SpeechError::Failed("NUL in text".into()))?;
        // SAFETY: the strings are NUL-terminated and outlive the calls; the
        // synchronous mode runs the callback on this thread before returning.
        let status = unsafe {
            if (self.set_voice)(voice_c.as_ptr()) != 0 {
                return Err(SpeechError::Failed(format!(
                    "espeak-ng has no voice {voice:?}"
                )));
            }
            (self.set_parameter)(PARAM_RATE, words_per_minute as c_int, 0);
            SAMPLES.with(|s| s.borrow_mut().clear());
            (self.synth)(
                text_c.as_ptr().cast(),
                text.len() + 1,
                0,
                POS_CHARACTER,
                0,
                CHARS_UTF8,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if status != 0 {
            return Err(SpeechError::Failed(format!(
                "espeak_Synth failed ({status})"
            )));
        }
        let wide = SAMPLES.with(|s| std::mem::take(&mut *s.borrow_mut()));
        Ok(resample(&wide, self.rate, RATE))
    }
}

struct Job {
    voice: String,
    text: String,
    reply: oneshot::Sender<Result<Arc<[i16]>, SpeechError>>,
}

/// Samples the cache may hold: about two minutes of speech, 2 MiB.
const CACHE_SAMPLES: usize = 1 << 20;

/// Synthesized speech by (voice, text), oldest dropped first.
#[derive(Default)]
struct Cache {
    entries: HashMap<(String, String), Arc<[i16]>>,
    order: VecDeque<(String, String)>,
    samples: usize,
}

impl Cache {
    fn get(&self, key: &(String, String)) -> Option<Arc<[i16]>> {
        self.entries.get(key).cloned()
    }

    fn put(&mut self, key: (String, String), pcm: Arc<[i16]>) {
        if pcm.len() > CACHE_SAMPLES / 4 {
            return; // a long text is unlikely to come again
        }
        self.samples += pcm.len();
        self.order.push_back(key.clone());
        self.entries.insert(key, pcm);
        while self.samples > CACHE_SAMPLES {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&old) {
                self.samples -= gone.len();
            }
        }
    }
}

type SharedCache = Arc<Mutex<Cache>>;

fn cached(cache: &SharedCache, key: &(String, String)) -> Option<Arc<[i16]>> {
    cache.lock().unwrap_or_else(|p| p.into_inner()).get(key)
}

/// A handle to the synthesis thread; cheap to clone.
#[derive(Clone)]
pub struct Espeak {
    jobs: mpsc::Sender<Job>,
    cache: SharedCache,
    /// Jobs the thread received (read by the tests).
    jobs_received: Arc<AtomicU64>,
}

impl std::fmt::Debug for Espeak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Espeak").finish_non_exhaustive()
    }
}

impl Espeak {
    /// The process's engine, opened on first use on a thread of its own;
    /// fails (naming the package) when the library is missing. espeak-ng
    /// is one global per process, so there is never a second.
    pub fn shared() -> Result<Self, SpeechError> {
        static ENGINE: OnceLock<Result<Espeak, SpeechError>> = OnceLock::new();
        ENGINE.get_or_init(Self::start).clone()
    }

    fn start() -> Result<Self, SpeechError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (jobs, rx) = mpsc::channel::<Job>();
        let cache = SharedCache::default();
        let jobs_received = Arc::new(AtomicU64::new(0));
        let (thread_cache, received) = (Arc::clone(&cache), Arc::clone(&jobs_received));
        std::thread::Builder::new()
            .name("espeak-ng".into())
            .spawn(move || {
                let engine = match Engine::open() {
                    Ok(e) => {
                        let _ = ready_tx.send(Ok(()));
                        e
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                for job in rx {
                    received.fetch_add(1, Ordering::Relaxed);
                    // The call ended while the job waited: nobody will play it.
                    if job.reply.is_closed() {
                        continue;
                    }
                    let key = (job.voice, job.text);
                    // Asked for again while it was being made for another call.
                    let speech = match cached(&thread_cache, &key) {
                        Some(hit) => Ok(hit),
                        None => engine.speak(&key.0, 160, &key.1).map(|pcm| {
                            let pcm: Arc<[i16]> = pcm.into();
                            thread_cache
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .put(key, Arc::clone(&pcm));
                            pcm
                        }),
                    };
                    let _ = job.reply.send(speech);
                }
            })
            .map_err(|e| SpeechError::Failed(format!("cannot start the espeak-ng thread: {e}")))?;
        ready_rx.recv().map_err(|_| SpeechError::Stopped)??;
        Ok(Self {
            jobs,
            cache,
            jobs_received,
        })
    }

    /// 8 kHz speech for `text` in `voice` (an espeak-ng voice name such as
    /// `en-us+f3`). Recent results are kept: a greeting, a fixed answer or a
    /// prompt is synthesized once, not on every call.
    pub async fn synthesize(&self, voice: &str, text: &str) -> Result<Arc<[i16]>, SpeechError> {
        let key = (voice.to_owned(), text.to_owned());
        if let Some(hit) = cached(&self.cache, &key) {
            return Ok(hit);
        }
        let (reply, rx) = oneshot::channel();
        let (voice, text) = key;
        self.jobs
            .send(Job { voice, text, reply })
            .map_err(|_| SpeechError::Stopped)?;
        rx.await.map_err(|_| SpeechError::Stopped)?
    }

    /// How many jobs the synthesis thread has received (cache hits never
    /// reach it).
    pub fn jobs_received(&self) -> u64 {
        self.jobs_received.load(Ordering::Relaxed)
    }
}

/// The espeak-ng voice for an agent: its persona's voice, else its language
/// (`en-US` → `en-us`).
pub fn voice_for(persona_voice: Option<&str>, language: &str) -> String {
    match persona_voice {
        Some(v) if !v.is_empty() => v.to_owned(),
        _ => language.to_ascii_lowercase(),
    }
}
