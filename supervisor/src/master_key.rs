//! Where the master key comes from (`master_key` in the configuration):
//!
//! - `file:PATH` (the default, `file:<state_dir>/master.key`): 32 bytes,
//!   mode 0600, created with fresh random bytes on first start;
//! - `credential:NAME`: a systemd credential, `$CREDENTIALS_DIRECTORY/NAME`
//!   (`LoadCredential=` / `LoadCredentialEncrypted=`, so it can be sealed
//!   with the machine's TPM);
//! - `command:PROGRAM [ARG...]`: a hook for a KMS or an HSM. The program
//!   runs with an empty environment (and `PATH`), no stdin, and must print
//!   the key on stdout within 10 s.
//!
//! A credential or a command gives 32 raw bytes or 64 hex digits (a
//! trailing newline is allowed). The key never passes through argv, the
//! environment or a log line; it is held zeroized on drop, locked in RAM
//! where the kernel allows, and the supervisor is not dumpable.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

/// How long a `command:` source may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// The configured source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Credential(String),
    Command(Vec<String>),
}

/// Why the master key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("master_key {0:?}: expected file:PATH, credential:NAME or command:PROGRAM [ARG...]")]
    Syntax(String),
    #[error("master_key credential:{name}: $CREDENTIALS_DIRECTORY is not set (is the supervisor started by systemd with LoadCredential=?)")]
    NoCredentialsDirectory { name: String },
    #[error("master_key credential:{name}: cannot read {path}: {source}")]
    Credential {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("master_key command {program}: {why}")]
    Command { program: String, why: String },
    #[error("master_key from {from}: expected 32 bytes or 64 hex digits, got {len} bytes")]
    Format { from: String, len: usize },
}

impl Source {
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        let bad = || SourceError::Syntax(s.to_owned());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let rest = rest.trim();
        if rest.is_empty() {
            return Err(bad());
        }
        match kind {
            "file" => Ok(Self::File(rest.into())),
            "credential" if !rest.contains('/') && rest != ".." => {
                Ok(Self::Credential(rest.to_owned()))
            }
            "command" => Ok(Self::Command(
                rest.split_whitespace().map(str::to_owned).collect(),
            )),
            _ => Err(bad()),
        }
    }
}

/// Reads a key from a credential or a command (`file:` is the keystore's).
pub fn load(source: &Source) -> Result<Zeroizing<[u8; 32]>, SourceError> {
    match source {
        Source::File(_) => unreachable!("file: keys are opened by the keystore"),
        Source::Credential(name) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                .ok_or_else(|| SourceError::NoCredentialsDirectory { name: name.clone() })?;
            let path = Path::new(&dir).join(name);
            let bytes =
                Zeroizing::new(
                    std::fs::read(&path).map_err(|source| SourceError::Credential {
                        name: name.clone(),
                        path: path.clone(),
                        source,
                    })?,
                );
            decode(&bytes, &format!("credential:{name}"))
        }
        Source::Command(argv) => run(argv),
    }
}

fn run(argv: &[String]) -> Result<Zeroizing<[u8; 32]>, SourceError> {
    let program = argv[0].clone();
    let fail = |why: String| SourceError::Command {
        program: program.clone(),
        why,
    };
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    let mut stdout = child.stdout.take().expect("piped");
    // Read on a thread so a command that never closes stdout still times out.
    let reader = std::thread::spawn(move || {
        let mut out = Zeroizing::new(Vec::with_capacity(80));
        stdout
            .by_ref()
            .take(4096)
            .read_to_end(&mut out)
            .map(|_| out)
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| fail(e.to_string()))? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("gave no key within {COMMAND_TIMEOUT:?}")));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        return Err(fail(format!("exited with {status}")));
    }
    let out = reader
        .join()
        .map_err(|_| fail("its output could not be read".into()))?
        .map_err(|e| fail(format!("reading its output: {e}")))?;
    decode(&out, &format!("command {program}"))
}

/// 32 raw bytes, or 64 hex digits; one trailing newline allowed.
fn decode(bytes: &[u8], from: &str) -> Result<Zeroizing<[u8; 32]>, SourceError> {
    let mut key = Zeroizing::new([0u8; 32]);
    if bytes.len() == 32 {
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    let trimmed = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bad = || SourceError::Format {
        from: from.to_owned(),
        len: bytes.len(),
    };
    if trimmed.len() != 64 {
        return Err(bad());
    }
    for (i, pair) in trimmed.chunks(2).enumerate() {
        let hex = std::str::from_utf8(pair).map_err(|_| bad())?;
        key[i] = u8::from_str_radix(hex, 16).map_err(|_| bad())?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_sources() {
        assert_eq!(
            Source::parse("file:/etc/bulkhead/master.key").unwrap(),
            Source::File("/etc/bulkhead/master.key".into())
        );
        assert_eq!(
            Source::parse("credential:bulkhead-master").unwrap(),
            Source::Credential("bulkhead-master".into())
        );
        assert_eq!(
            Source::parse("command:/usr/bin/kms-get --key bulkhead").unwrap(),
            Source::Command(vec![
                "/usr/bin/kms-get".into(),
                "--key".into(),
                "bulkhead".into()
            ])
        );
        for bad in ["", "master.key", "file:", "credential:../x", "vault:abc"] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn decodes_raw_and_hex_and_refuses_the_rest() {
        assert_eq!(*decode(&[7u8; 32], "t").unwrap(), [7u8; 32]);
        let hex = "07".repeat(32) + "\n";
        assert_eq!(*decode(hex.as_bytes(), "t").unwrap(), [7u8; 32]);
        assert!(decode(b"short", "t").is_err());
        assert!(decode("zz".repeat(32).as_bytes(), "t").is_err());
    }

    #[test]
    fn a_command_gives_the_key_fails_loudly_or_times_out() {
        let sh = |script: &str| vec!["/bin/sh".to_string(), "-c".into(), script.into()];
        let key = run(&sh(&format!("printf '{}\\n'", "ab".repeat(32)))).unwrap();
        assert_eq!(*key, [0xab; 32]);
        // The environment is empty: nothing of the supervisor's leaks to it.
        let env = run(&sh("test -z \"$HOME$RUST_LOG\" && printf '%064d' 0")).unwrap();
        assert_eq!(*env, [0; 32]);
        let err = run(&sh("exit 3")).unwrap_err().to_string();
        assert!(err.contains("exited"), "{err}");
        let err = run(&sh("echo nope")).unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }
}
