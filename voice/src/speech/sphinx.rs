//! libpocketsphinx (Debian `libpocketsphinx3` + `pocketsphinx-en-us`): the
//! embedded recognizer, constrained to the tenant's intents by a JSGF
//! grammar ([`super::grammar`]). A decoder is not thread-safe and takes
//! tens of megabytes, so a small pool of threads each owns one, opened on
//! first use; an utterance is decoded whole once the caller stops speaking.
//!
//! The en-US acoustic model is trained on 16 kHz speech: the 8 kHz
//! telephone audio is resampled up to it (the model's filter bank reaches
//! 6.8 kHz and refuses an 8 kHz front end).

use std::collections::HashSet;
use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{mpsc, Arc, Mutex};

use tokio::sync::oneshot;

use super::grammar::{jsgf, IntentPhrases};
use super::{open_library, symbol, SpeechError};
use crate::media::{resample::resample, RATE};

const LIBRARY: &str = "libpocketsphinx.so.3";
const PACKAGE: &str = "libpocketsphinx3";
const MODEL: &str = "/usr/share/pocketsphinx/model/en-us/en-us";
const DICTIONARY: &str = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict";
const MODEL_RATE: u32 = 16000;

type PsArgs = unsafe extern "C" fn() -> *const c_void;
type ParseArgs =
    unsafe extern "C" fn(*mut c_void, *const c_void, i32, *mut *mut c_char, i32) -> *mut c_void;
type Init = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type Free = unsafe extern "C" fn(*mut c_void) -> c_int;
type SetJsgf = unsafe extern "C" fn(*mut c_void, *const c_char, *const c_char) -> c_int;
type SetSearch = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;
type Utterance = unsafe extern "C" fn(*mut c_void) -> c_int;
type ProcessRaw = unsafe extern "C" fn(*mut c_void, *const i16, usize, c_int, c_int) -> c_int;
type GetHyp = unsafe extern "C" fn(*mut c_void, *mut i32) -> *const c_char;
type SetLogFile = unsafe extern "C" fn(*mut c_void) -> *mut c_void;
type LookupWord = unsafe extern "C" fn(*mut c_void, *const c_char) -> *mut c_char;

/// One decoder, used only on the thread that opened it.
struct Decoder {
    _lib: libloading::Library,
    ps: *mut c_void,
    free: Free,
    set_jsgf: SetJsgf,
    set_search: SetSearch,
    start_utt: Utterance,
    end_utt: Utterance,
    process_raw: ProcessRaw,
    get_hyp: GetHyp,
    lookup_word: LookupWord,
    grammars: HashSet<u64>,
}

impl Decoder {
    fn open() -> Result<Self, SpeechError> {
        for path in [MODEL, DICTIONARY] {
            if !std::path::Path::new(path).exists() {
                return Err(SpeechError::Missing {
                    library: "the PocketSphinx en-US model",
                    package: "pocketsphinx-en-us",
                    reason: format!("{path} is missing"),
                });
            }
        }
        let lib = open_library(LIBRARY, PACKAGE)?;
        let ps_args: PsArgs = symbol(&lib, "ps_args")?;
        let parse: ParseArgs = symbol(&lib, "cmd_ln_parse_r")?;
        let init: Init = symbol(&lib, "ps_init")?;
        let set_log: SetLogFile = symbol(&lib, "err_set_logfp")?;
        // SAFETY: err_set_logfp(NULL) turns PocketSphinx's logging off (its
        // configuration dump would flood the worker's log; and the sandbox
        // cannot open /dev/null for writing, which -logfn would need).
        unsafe { set_log(std::ptr::null_mut()) };
        let args = ["bulkhead", "-hmm", MODEL, "-dict", DICTIONARY];
        let args: Vec<CString> = args
            .iter()
            .map(|a| CString::new(*a).expect("no NUL"))
            .collect();
        let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
        // SAFETY: prototypes from pocketsphinx.h and cmd_ln.h; argv holds
        // NUL-terminated strings that outlive the call, which copies them.
        let ps = unsafe {
            let config = parse(
                std::ptr::null_mut(),
                ps_args(),
                argv.len() as i32,
                argv.as_mut_ptr(),
                1,
            );
            if config.is_null() {
                return Err(SpeechError::Failed(
                    "PocketSphinx refused its arguments".into(),
                ));
            }
            // ps_init takes its own reference to the configuration.
            init(config)
        };
        if ps.is_null() {
            return Err(SpeechError::Failed(format!(
                "PocketSphinx could not load the model at {MODEL}"
            )));
        }
        Ok(Self {
            ps,
            free: symbol(&lib, "ps_free")?,
            set_jsgf: symbol(&lib, "ps_set_jsgf_string")?,
            set_search: symbol(&lib, "ps_set_search")?,
            start_utt: symbol(&lib, "ps_start_utt")?,
            end_utt: symbol(&lib, "ps_end_utt")?,
            process_raw: symbol(&lib, "ps_process_raw")?,
            get_hyp: symbol(&lib, "ps_get_hyp")?,
            lookup_word: symbol(&lib, "ps_lookup_word")?,
            grammars: HashSet::new(),
            _lib: lib,
        })
    }

    fn knows(&self, word: &str) -> bool {
        let Ok(w) = CString::new(word) else {
            return false;
        };
        // SAFETY: ps is live; the returned string is malloc'ed by
        // PocketSphinx (ckd_malloc) and ours to free.
        unsafe {
            let phones = (self.lookup_word)(self.ps, w.as_ptr());
            let found = !phones.is_null();
            libc::free(phones.cast());
            found
        }
    }

    /// Selects the grammar for `key`, compiling `build`'s text the first time.
    fn select(
        &mut self,
        key: u64,
        build: impl FnOnce(&dyn Fn(&str) -> bool) -> Option<String>,
    ) -> Result<(), SpeechError> {
        let name = CString::new(format!("g{key:x}")).expect("no NUL");
        if !self.grammars.contains(&key) {
            let text = build(&|w| self.knows(w)).ok_or_else(|| {
                SpeechError::Failed("no intent phrase uses words the recognizer knows".into())
            })?;
            let text =
                CString::new(text).map_err(|_| SpeechError::Failed("NUL in a phrase".into()))?;
            // SAFETY: ps is live; both strings are NUL-terminated and copied.
            if unsafe { (self.set_jsgf)(self.ps, name.as_ptr(), text.as_ptr()) } != 0 {
                return Err(SpeechError::Failed(
                    "PocketSphinx rejected the intent grammar".into(),
                ));
            }
            self.grammars.insert(key);
        }
        // SAFETY: ps is live and the search exists.
        if unsafe { (self.set_search)(self.ps, name.as_ptr()) } != 0 {
            return Err(SpeechError::Failed(
                "PocketSphinx could not select the grammar".into(),
            ));
        }
        Ok(())
    }

    /// Decodes 16 kHz audio with the selected grammar: words and path score.
    fn run(&mut self, wide: &[i16]) -> Result<(String, i32), SpeechError> {
        // SAFETY: ps is live; `wide` is valid for its length during the call.
        unsafe {
            if (self.start_utt)(self.ps) < 0 {
                return Err(SpeechError::Failed("ps_start_utt failed".into()));
            }
            (self.process_raw)(self.ps, wide.as_ptr(), wide.len(), 0, 1);
            (self.end_utt)(self.ps);
            let mut score = 0i32;
            let hyp = (self.get_hyp)(self.ps, &mut score);
            if hyp.is_null() {
                return Ok((String::new(), 0));
            }
            Ok((CStr::from_ptr(hyp).to_string_lossy().into_owned(), score))
        }
    }

    /// The intent grammar's words for the utterance (empty when no path
    /// of the grammar fits it). A grammar finds its closest phrase for any
    /// speech: see docs/voice.md for what that means for unrelated sentences.
    fn decode(
        &mut self,
        key: u64,
        intents: &[IntentPhrases],
        audio: &[i16],
    ) -> Result<String, SpeechError> {
        let wide = resample(audio, RATE, MODEL_RATE);
        self.select(key, |known| jsgf(intents, known))?;
        Ok(self.run(&wide)?.0)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: ps came from ps_init and is freed once.
        unsafe { (self.free)(self.ps) };
    }
}

struct Job {
    grammar_key: u64,
    intents: Arc<Vec<IntentPhrases>>,
    audio: Vec<i16>,
    reply: oneshot::Sender<Result<String, SpeechError>>,
}

/// A handle to the decoder pool; cheap to clone.
#[derive(Debug, Clone)]
pub struct Sphinx {
    jobs: mpsc::Sender<Job>,
}

impl Sphinx {
    /// Opens `decoders` decoders, each on its own thread. Fails, naming the
    /// package, when the library or the model is missing.
    pub fn start(decoders: usize) -> Result<Self, SpeechError> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..decoders.max(1) {
            let (ready_tx, ready_rx) = mpsc::channel();
            let rx = Arc::clone(&rx);
            std::thread::Builder::new()
                .name(format!("pocketsphinx-{i}"))
                .spawn(move || {
                    let mut decoder = match Decoder::open() {
                        Ok(d) => {
                            let _ = ready_tx.send(Ok(()));
                            d
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        let text = decoder.decode(job.grammar_key, &job.intents, &job.audio);
                        let _ = job.reply.send(text);
                    }
                })
                .map_err(|e| {
                    SpeechError::Failed(format!("cannot start a PocketSphinx thread: {e}"))
                })?;
            ready_rx.recv().map_err(|_| SpeechError::Stopped)??;
        }
        Ok(Self { jobs })
    }

    /// The words heard in one utterance of 8 kHz audio, constrained to the
    /// intents' grammar (`grammar_key` names that grammar for caching).
    /// Empty when nothing in the grammar matched.
    pub async fn transcribe(
        &self,
        grammar_key: u64,
        intents: Arc<Vec<IntentPhrases>>,
        audio: Vec<i16>,
    ) -> Result<String, SpeechError> {
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send(Job {
                grammar_key,
                intents,
                audio,
                reply,
            })
            .map_err(|_| SpeechError::Stopped)?;
        rx.await.map_err(|_| SpeechError::Stopped)?
    }
}
