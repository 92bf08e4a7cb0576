//! The worker's embedded speech engines (espeak-ng, PocketSphinx): opened
//! by the first call rather than at start, so a worker that takes no call
//! stays small; shared by every call; released again once the tenant has
//! been quiet for a while, with the freed heap handed back to the kernel.
//!
//! Why release: a worker that ever took a call held its recognizer (28 MiB
//! of model) and whatever its busiest minute had allocated, for good; glibc
//! keeps freed heap. 1,000 tenants that each once had a busy minute would
//! hold about 80 GB while idle (docs/voice.md). The price: the first call
//! after a quiet spell waits for one load of the recognizer (138–176 ms,
//! on a blocking thread) before its agent starts. espeak-ng is one global
//! per process and is never released.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead_voice::speech::espeak::Espeak;
use bulkhead_voice::speech::sphinx::Sphinx;
use tokio::sync::Notify;

use crate::providers::Opened;

/// The engines as opened (each, or why it could not be).
pub type Engines = (Opened<Espeak>, Opened<Sphinx>);

/// Decoder threads: each holds 28 MiB of model, and one decodes an
/// utterance in ~0.1–0.2× real time (BENCHMARKS.md has the concurrency this
/// carries), so one per worker.
const DECODERS: usize = 1;

/// The memory limit (RLIMIT_DATA, set from `limits.memory`) below which a
/// provider is not opened. A worker with both open after 20 calls: 51 MB
/// of VmData, 50 MB resident (docs/voice.md).
const TTS_NEEDS: u64 = 32 << 20;
const STT_NEEDS: u64 = 80 << 20;

/// How long a tenant goes without a call before its engines are released.
pub const RELEASE_AFTER: Duration = Duration::from_secs(300);

/// How often a worker looks for quiet: after a minute with no agent
/// running, freed heap is handed back (a call's SIP transactions, kept 32 s
/// after its end, are gone by then).
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
enum State {
    #[default]
    Closed,
    Opening,
    Open(Engines),
}

/// The engines' cell, the calls using them, and when the tenant was last
/// active.
#[derive(Debug, Default)]
pub struct SpeechEngines {
    state: Mutex<State>,
    /// Told when a load ends.
    opened: Notify,
    /// Calls whose agent runs now.
    running: AtomicUsize,
    /// The last call's start or end, whichever came later.
    last_activity: Mutex<Option<Instant>>,
    /// `last_activity` as of the last heap trim: no trim twice for one quiet spell.
    trimmed_for: Mutex<Option<Instant>>,
}

/// Counts a call's agent as running until dropped.
#[derive(Debug)]
pub struct Running(Arc<SpeechEngines>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
        self.0.touch(Instant::now());
    }
}

impl SpeechEngines {
    /// The engines, opened if they are not: the first caller starts one
    /// load on one blocking thread, every caller waits for that load
    /// without a thread of its own, and the load finishes even if the
    /// call that started it has ended. Waiting on a blocking thread each
    /// grew the pool to its 16 threads in a 200-call burst on a fresh
    /// worker, and was 9% of the user agent's thread in a capacity profile.
    pub async fn get(self: &Arc<Self>) -> Engines {
        loop {
            // Created before the check, so the load's end is not missed.
            let opened = self.opened.notified();
            let start = {
                let mut state = self.state.lock().expect("engines lock");
                match &*state {
                    State::Open(engines) => return engines.clone(),
                    State::Opening => false,
                    State::Closed => {
                        *state = State::Opening;
                        true
                    }
                }
            };
            if start {
                self.start_opening();
            }
            opened.await;
        }
    }

    /// One blocking thread opens the engines; a task waits for it, so the
    /// load ends (and is told) even if every call waiting for it has ended.
    fn start_opening(self: &Arc<Self>) {
        let load = tokio::task::spawn_blocking(open);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let engines = load
                .await
                .unwrap_or_else(|e| (Err(e.to_string()), Err(e.to_string())));
            *me.state.lock().expect("engines lock") = State::Open(engines);
            me.opened.notify_waiters();
        });
    }

    /// A call's agent starts; it counts as running until the guard drops.
    pub fn call_started(self: &Arc<Self>) -> Running {
        self.running.fetch_add(1, Ordering::AcqRel);
        self.touch(Instant::now());
        Running(Arc::clone(self))
    }

    fn touch(&self, now: Instant) {
        *self.last_activity.lock().expect("activity lock") = Some(now);
    }

    /// Quiet since when, if no agent runs (and some call ever did).
    fn quiet_since(&self) -> Option<Instant> {
        if self.running.load(Ordering::Acquire) > 0 {
            return None;
        }
        *self.last_activity.lock().expect("activity lock")
    }

    /// At `now`: releases the engines after [`RELEASE_AFTER`] of quiet
    /// (calls still holding them keep them until they end, which none
    /// does when quiet). Returns whether the heap should be trimmed:
    /// after [`CHECK_EVERY`] of quiet, once per quiet spell, and once more
    /// at the check after a release.
    pub fn on_check(&self, now: Instant) -> bool {
        let Some(since) = self.quiet_since() else {
            return false;
        };
        let quiet = now.saturating_duration_since(since);
        if quiet >= RELEASE_AFTER {
            let mut state = self.state.lock().expect("engines lock");
            if matches!(*state, State::Open(_)) {
                *state = State::Closed;
                drop(state);
                tracing::info!("speech engines released after a quiet spell");
                // The recognizer's thread frees its model as it exits, a
                // moment from now: the heap is trimmed at the next check.
                *self.trimmed_for.lock().expect("trim lock") = None;
                return false;
            }
        }
        let mut trimmed = self.trimmed_for.lock().expect("trim lock");
        if quiet < CHECK_EVERY || *trimmed == Some(since) {
            return false;
        }
        *trimmed = Some(since);
        true
    }

    /// Checks every [`CHECK_EVERY`], for as long as the worker runs.
    pub async fn release_when_quiet(self: Arc<Self>) {
        let mut ticks = tokio::time::interval(CHECK_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if self.on_check(Instant::now()) {
                // A walk of the heap: off the runtime's thread.
                let _ = tokio::task::spawn_blocking(trim_heap).await;
            }
        }
    }

    /// The engines if open (tests).
    #[cfg(test)]
    pub fn current(&self) -> Option<Engines> {
        match &*self.state.lock().unwrap() {
            State::Open(e) => Some(e.clone()),
            _ => None,
        }
    }

    /// Whether a load has started or ended (tests).
    #[cfg(test)]
    pub fn started(&self) -> bool {
        !matches!(*self.state.lock().unwrap(), State::Closed)
    }
}

/// Hands glibc's free heap pages back to the kernel.
#[allow(unsafe_code)] // one FFI call, justified below
fn trim_heap() {
    // SAFETY: malloc_trim takes an integer, touches only the allocator's
    // own arenas under their locks, and is safe to call from any thread.
    unsafe { libc::malloc_trim(0) };
}

/// The worker's data limit in bytes (unlimited: `u64::MAX`), read from
/// `/proc/self/limits`: seccomp does not allow `prlimit64`, and a failed
/// call must not read as "unlimited".
fn data_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    parse_data_limit(&limits).unwrap_or(0)
}

/// The soft "Max data size" of a `/proc/PID/limits` text.
fn parse_data_limit(limits: &str) -> Option<u64> {
    let soft = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max data size"))?
        .split_whitespace()
        .next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// Opens the embedded speech engines. The C libraries do not survive a
/// failed allocation (a NULL dereference kills the worker), so they are
/// opened only when the tenant's memory limit leaves them room.
fn open() -> Engines {
    let room = data_limit();
    let tts = if room < TTS_NEEDS {
        Err(too_small("espeak-ng", room, TTS_NEEDS))
    } else {
        Espeak::shared().map_err(|e| e.to_string())
    };
    let stt = if room < STT_NEEDS {
        Err(too_small("PocketSphinx", room, STT_NEEDS))
    } else {
        Sphinx::start(DECODERS).map_err(|e| e.to_string())
    };
    for e in [tts.as_ref().err(), stt.as_ref().err()]
        .into_iter()
        .flatten()
    {
        tracing::warn!(error = %e, "an embedded speech provider is unavailable");
    }
    (tts, stt)
}

fn too_small(what: &str, room: u64, needs: u64) -> String {
    format!(
        "{what} needs a memory limit of at least {} MiB; this tenant's is {} MiB (raise limits.memory)",
        needs >> 20,
        room >> 20
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_limit_is_read_from_proc_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
Max cpu time              unlimited            unlimited            seconds\n\
Max data size             67108864             67108864             bytes\n";
        assert_eq!(parse_data_limit(text), Some(64 << 20));
        let unlimited = text.replace(
            "67108864             67108864",
            "unlimited            unlimited",
        );
        assert_eq!(parse_data_limit(&unlimited), Some(u64::MAX));
        assert_eq!(parse_data_limit("garbage"), None);
        // This process can read its own.
        assert!(data_limit() > 0);
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The first caller starts the load and may hang up before it ends
    /// (its call over); everyone else still gets the engines, from one load.
    #[test]
    fn callers_share_one_load_that_outlives_the_caller_that_started_it() {
        runtime().block_on(async {
            let engines = Arc::new(SpeechEngines::default());
            let first = tokio::spawn({
                let e = Arc::clone(&engines);
                async move { e.get().await }
            });
            while !engines.started() {
                tokio::task::yield_now().await;
            }
            first.abort();
            let callers: Vec<_> = (0..200)
                .map(|i| {
                    let e = Arc::clone(&engines);
                    tokio::spawn(async move {
                        let (tts, stt) = e.get().await;
                        (i, tts.is_ok(), stt.is_ok())
                    })
                })
                .collect();
            // Half of them hang up while waiting.
            tokio::task::yield_now().await;
            for c in callers.iter().step_by(2) {
                c.abort();
            }
            let wait = async {
                let mut done = Vec::new();
                for c in callers {
                    if let Ok(got) = c.await {
                        done.push(got);
                    }
                }
                done
            };
            let done = tokio::time::timeout(Duration::from_secs(60), wait)
                .await
                .expect("callers still waiting for the engines");
            assert!(done.len() >= 100, "{} of 200 callers finished", done.len());
            let opened = engines.current().expect("the load set the cell");
            let want = (opened.0.is_ok(), opened.1.is_ok());
            assert!(done.iter().all(|(_, tts, stt)| (*tts, *stt) == want));
        });
    }

    #[test]
    fn quiet_releases_the_engines_a_call_keeps_them_and_the_next_call_reopens_them() {
        runtime().block_on(async {
            let engines = Arc::new(SpeechEngines::default());
            assert!(
                !engines.on_check(Instant::now()),
                "never called: nothing to do"
            );
            let call = engines.call_started();
            let _opened = engines.get().await;
            let start = Instant::now();
            // A call in progress, however long: nothing is released or trimmed.
            assert!(!engines.on_check(start + RELEASE_AFTER * 10));
            assert!(engines.current().is_some());
            drop(call);
            let ended = Instant::now();
            assert!(!engines.on_check(ended), "not quiet yet");
            assert!(
                engines.on_check(ended + CHECK_EVERY),
                "a minute quiet: trim"
            );
            assert!(!engines.on_check(ended + CHECK_EVERY * 2), "once per spell");
            assert!(engines.current().is_some(), "kept until RELEASE_AFTER");
            assert!(!engines.on_check(ended + RELEASE_AFTER), "released");
            assert!(engines.current().is_none());
            assert!(!engines.started());
            let next = ended + RELEASE_AFTER + CHECK_EVERY;
            assert!(engines.on_check(next), "what they held is trimmed next");
            assert!(!engines.on_check(next + CHECK_EVERY), "once");
            // The next call opens them again.
            let _call = engines.call_started();
            let (tts, stt) = engines.get().await;
            assert!(engines.current().is_some());
            let again = engines.current().unwrap();
            assert_eq!(
                (tts.is_ok(), stt.is_ok()),
                (again.0.is_ok(), again.1.is_ok())
            );
        });
    }
}
