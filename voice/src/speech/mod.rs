//! The embedded speech providers, opened at run time with `libloading` so
//! the build needs neither library and a worker without one still answers
//! calls (without that layer), saying which Debian package to install.
//!
//! Both libraries keep global or per-decoder state that is not thread-safe,
//! so each lives on threads of its own; async callers get answers over
//! channels and never block.

pub mod espeak;
pub mod grammar;
pub mod openai;
pub mod remote;
pub mod sphinx;

use thiserror::Error;

#[derive(Debug, Clone, Error)]
pub enum SpeechError {
    #[error("{library} is not installed ({reason}); install the Debian package {package}")]
    Missing {
        library: &'static str,
        package: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Failed(String),
    #[error("the speech thread has stopped")]
    Stopped,
}

/// Opens a shared library, naming the package that provides it when it is missing.
fn open_library(
    name: &'static str,
    package: &'static str,
) -> Result<libloading::Library, SpeechError> {
    // SAFETY: loading runs the library's initializers; these are Debian's
    // libespeak-ng and libpocketsphinx, whose initializers only set up
    // static tables.
    unsafe { libloading::Library::new(name) }.map_err(|e| SpeechError::Missing {
        library: name,
        package,
        reason: e.to_string(),
    })
}

/// Looks up one C function; the caller's type must match the C prototype.
fn symbol<T: Copy>(lib: &libloading::Library, name: &str) -> Result<T, SpeechError> {
    // SAFETY: every call site names a symbol together with the function
    // type of its C prototype (from the library's installed headers).
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| SpeechError::Failed(format!("{name}: {e}")))
}
