//! The worker restricting itself, in `main`, after it opened its store and
//! before it starts any thread or reads a byte of untrusted input: Landlock
//! first (file system, TCP, signals, abstract sockets), then the seccomp
//! allowlist of [`seccomp`]. Both
//! apply to the calling thread and every thread it creates later, which is
//! why no thread may exist yet.

mod landlock;
pub mod seccomp;

use std::path::Path;

pub use self::landlock::LandlockStatus;

/// Why hardening failed. The worker refuses to run unhardened.
#[derive(Debug, thiserror::Error)]
pub enum HardenError {
    #[error("failed to apply Landlock rules: {0}")]
    Landlock(#[from] ::landlock::RulesetError),
    #[error("failed to compile the seccomp allowlist: {0}")]
    SeccompCompile(#[from] seccompiler::BackendError),
    #[error("failed to install the seccomp filter: {0}")]
    SeccompInstall(#[from] seccompiler::Error),
}

/// What the worker ended up with.
#[derive(Debug, Clone)]
pub struct Hardened {
    pub landlock: LandlockStatus,
}

/// Which of the worker's own layers to apply: both, always, except in a
/// probe worker that `bulkhead audit` runs with a layer switched off.
#[derive(Debug, Clone, Copy)]
pub struct Layers {
    pub landlock: bool,
    pub seccomp: bool,
}

impl Layers {
    pub const ALL: Self = Self {
        landlock: true,
        seccomp: true,
    };
}

/// Restricts this process. `data_dir` is the only writable path.
pub fn apply(data_dir: &Path, layers: Layers) -> Result<Hardened, HardenError> {
    let landlock = if layers.landlock {
        self::landlock::restrict(data_dir)?
    } else {
        LandlockStatus::None
    };
    if layers.seccomp {
        // Compiled before installing: compiling allocates and may need calls
        // the filter then denies.
        let filter = seccomp::compile()?;
        seccompiler::apply_filter(&filter)?;
    }
    Ok(Hardened { landlock })
}
