//! Tenant data keys: random 256-bit keys, stored only wrapped (XChaCha20-
//! Poly1305) under the master key, with the tenant id as associated data so a
//! wrapped key copied onto another tenant's row fails to unwrap.
//!
//! `master.key` is 32 random bytes, mode 0600, created on first start.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bulkhead_shared::ipc::message::DATA_KEY_LEN;
use bulkhead_shared::TenantId;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    #[error("failed to read master key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("failed to create master key {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("master key {path} must be exactly 32 bytes; it is {len} (restore it from backup, never regenerate it: every tenant key is wrapped under it)")]
    BadLength { path: PathBuf, len: usize },
    #[error("master key {path} has mode {mode:o}; it must be 0600 and owned by the supervisor")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the wrapped key of tenant {tenant} does not unwrap under this master key (wrong master.key, or the registry row was altered)")]
    Unwrap { tenant: TenantId },
    #[error("kernel randomness unavailable: {0}")]
    Random(String),
}

/// A data key that is zeroized when dropped.
pub type DataKey = Zeroizing<[u8; DATA_KEY_LEN]>;

/// The master key, held for the supervisor's lifetime (boxed: its address
/// stays put, so the page locked in RAM is the one that holds it).
pub struct Keystore {
    master: Box<Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for Keystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keystore { master: <redacted> }")
    }
}

impl Keystore {
    /// The master key from its configured source (`master_key`).
    pub fn from_source(source: &crate::master_key::Source) -> anyhow::Result<Self> {
        let ks = match source {
            crate::master_key::Source::File(path) => Self::open_or_create(path)?,
            other => Self::with_master(crate::master_key::load(other)?),
        };
        if !crate::self_protect::lock_in_ram(&ks.master) {
            tracing::warn!(
                "could not lock the master key in RAM (RLIMIT_MEMLOCK); it may be swapped out"
            );
        }
        Ok(ks)
    }

    fn with_master(master: Zeroizing<[u8; 32]>) -> Self {
        Self {
            master: Box::new(master),
        }
    }

    /// Loads `path`, creating it (0600) with a fresh random key when absent.
    pub fn open_or_create(path: &Path) -> Result<Self, KeystoreError> {
        match fs::read(path) {
            Ok(bytes) => {
                let bytes = Zeroizing::new(bytes);
                let mode = fs::metadata(path)
                    .map_err(|source| KeystoreError::Read {
                        path: path.into(),
                        source,
                    })?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(KeystoreError::Permissions {
                        path: path.into(),
                        mode,
                    });
                }
                let master: [u8; 32] =
                    bytes[..].try_into().map_err(|_| KeystoreError::BadLength {
                        path: path.into(),
                        len: bytes.len(),
                    })?;
                Ok(Self::with_master(Zeroizing::new(master)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let ks = Self::fresh()?;
                ks.write_new(path)?;
                Ok(ks)
            }
            Err(source) => Err(KeystoreError::Read {
                path: path.into(),
                source,
            }),
        }
    }

    /// A keystore under a fresh random master key (rotation).
    pub fn fresh() -> Result<Self, KeystoreError> {
        let key = random_key()?;
        Ok(Self::with_master(Zeroizing::new(*key)))
    }

    /// Writes the master key to `path` (0600, fsync), failing if it exists.
    pub fn write_new(&self, path: &Path) -> Result<(), KeystoreError> {
        let create = |source| KeystoreError::Create {
            path: path.into(),
            source,
        };
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(create)?;
        f.write_all(&self.master[..]).map_err(create)?;
        f.sync_all().map_err(create)?;
        sync_dir(path).map_err(create)
    }

    /// `wrapped` (under this master key) re-wrapped under `to`'s.
    pub fn rewrap(
        &self,
        tenant: &TenantId,
        wrapped: &[u8],
        to: &Keystore,
    ) -> Result<Vec<u8>, KeystoreError> {
        let key = self.unwrap(tenant, wrapped)?;
        to.wrap(tenant, &key)
    }

    /// A fresh data key and its wrapped form for `tenant`.
    pub fn new_data_key(&self, tenant: &TenantId) -> Result<(DataKey, Vec<u8>), KeystoreError> {
        let key = random_key()?;
        let wrapped = self.wrap(tenant, &key)?;
        Ok((key, wrapped))
    }

    pub fn wrap(&self, tenant: &TenantId, key: &DataKey) -> Result<Vec<u8>, KeystoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| KeystoreError::Random(e.to_string()))?;
        let cipher = XChaCha20Poly1305::new((&**self.master).into());
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &key[..],
                    aad: tenant.as_str().as_bytes(),
                },
            )
            .expect("encryption of 32 bytes cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Unwraps `tenant`'s key; fails if it was wrapped for another tenant.
    pub fn unwrap(&self, tenant: &TenantId, wrapped: &[u8]) -> Result<DataKey, KeystoreError> {
        let fail = || KeystoreError::Unwrap {
            tenant: tenant.clone(),
        };
        if wrapped.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let cipher = XChaCha20Poly1305::new((&**self.master).into());
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ct,
                        aad: tenant.as_str().as_bytes(),
                    },
                )
                .map_err(|_| fail())?,
        );
        let key: [u8; DATA_KEY_LEN] = plain[..].try_into().map_err(|_| fail())?;
        Ok(Zeroizing::new(key))
    }
}

/// Makes a rename or a new file in `path`'s directory durable.
pub fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)?.sync_all()
}

/// A short public name for a data key (SHA-256 of a label and the key):
/// a backup's header names its key by it, so a restore finds the key
/// without decrypting anything, and learns nothing of the key itself.
pub fn key_id(key: &DataKey) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"bulkhead data key id\0");
    h.update(&key[..]);
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn random_key() -> Result<DataKey, KeystoreError> {
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    getrandom::getrandom(&mut key[..]).map_err(|e| KeystoreError::Random(e.to_string()))?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_unwraps_and_binds_to_the_tenant() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let ks = Keystore::open_or_create(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let clinic = TenantId::parse("clinic").unwrap();
        let (key, wrapped) = ks.new_data_key(&clinic).unwrap();
        assert!(
            !wrapped.windows(32).any(|w| w == &key[..]),
            "wrapped form must not contain the key"
        );
        assert_eq!(*ks.unwrap(&clinic, &wrapped).unwrap(), *key);
        let other = TenantId::parse("insurance").unwrap();
        assert!(matches!(
            ks.unwrap(&other, &wrapped),
            Err(KeystoreError::Unwrap { .. })
        ));
        let mut tampered = wrapped.clone();
        tampered[30] ^= 1;
        assert!(ks.unwrap(&clinic, &tampered).is_err());
        // Reopening reads the same master key.
        let again = Keystore::open_or_create(&path).unwrap();
        assert_eq!(*again.unwrap(&clinic, &wrapped).unwrap(), *key);
    }

    #[test]
    fn refuses_a_readable_or_short_master_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, [1u8; 32]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Keystore::open_or_create(&path),
            Err(KeystoreError::Permissions { .. })
        ));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, [1u8; 5]).unwrap();
        assert!(matches!(
            Keystore::open_or_create(&path),
            Err(KeystoreError::BadLength { len: 5, .. })
        ));
    }
}
