//! Landlock rules: read-write only in the tenant's data directory; read-only
//! on the system paths a running worker needs; no TCP bind or connect at all
//! (its listeners arrive already bound); no signals to and no abstract-socket
//! connections with anything outside its own domain.

use std::path::Path;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, Scope, ABI,
};

/// The Landlock ABI these rules were written and tested against (this
/// machine's kernel offers 7). Older kernels enforce what they can.
const ABI_TESTED: ABI = ABI::V7;

/// Read-only paths: libraries and the loader cache (for anything loaded
/// late), randomness, and the worker's own `/proc/self` — not `/proc`, so
/// other processes stay unreadable even where a pid namespace is missing.
const READ_ONLY: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/etc",
    "/dev/null",
    "/dev/zero",
    "/dev/urandom",
    "/proc/self",
];

/// How much of the ruleset the kernel enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LandlockStatus {
    Full,
    Partial,
    None,
}

impl LandlockStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::Partial => "partial",
            Self::None => "none",
        }
    }
}

pub fn restrict(data_dir: &Path) -> Result<LandlockStatus, landlock::RulesetError> {
    let abi = ABI_TESTED;
    let read_only: Vec<&Path> = READ_ONLY
        .iter()
        .map(Path::new)
        .filter(|p| p.exists())
        .collect();
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        // Handled with no rule granting them: every TCP bind and connect is denied.
        .handle_access(AccessNet::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules([data_dir], AccessFs::from_all(abi)))?
        .add_rules(path_beneath_rules(read_only, AccessFs::from_read(abi)))?
        .restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => LandlockStatus::Full,
        RulesetStatus::PartiallyEnforced => LandlockStatus::Partial,
        RulesetStatus::NotEnforced => LandlockStatus::None,
    })
}
