//! `tenant backup` and `tenant restore`.
//!
//! A backup file is a 4 KiB header (JSON, padded with spaces) and the
//! tenant's store as the worker exported it: one consistent snapshot,
//! still encrypted under the tenant's data key. The header names the
//! tenant, the key (by a key id, never the key), its numbers and ports, and
//! the payload's length and SHA-256.
//!
//! The supervisor never parses the payload: it was written by a worker,
//! which is untrusted. It only hashes and copies bytes. The worker writes
//! into a file the supervisor opened (`O_EXCL`, 0600) and passed to it.
//!
//! A restore needs the tenant's key, kept (wrapped) in `retired_keys` when
//! the tenant was removed without `--shred`. Once shredded, no key opens
//! the payload, and the restore says so.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulkhead_shared::ipc::message::ControlOp;
use bulkhead_shared::{Number, TenantId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Tenants;
use crate::api::{TenantSpec, TenantView};
use crate::daemon::AdminError;
use crate::keystore::key_id;

/// The header's size; the payload starts here.
pub const HEADER_LEN: u64 = 4096;
const FORMAT: &str = "bulkhead-backup/1";
/// How long a worker may take to export (large stores, slow disks).
const BACKUP_TIMEOUT: Duration = Duration::from_secs(600);

/// The backup file's header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub tenant: TenantId,
    pub key_version: u32,
    /// Names the data key the payload is encrypted under (see `key_id`).
    pub key_id: String,
    pub created_at: String,
    pub numbers: Vec<Number>,
    pub sip_port: u16,
    pub http_port: u16,
    pub payload_bytes: u64,
    pub payload_sha256: String,
    /// The admin's settings kept in the registry, not in the tenant's
    /// store. Trunk digest credentials are left out (password-equivalent).
    #[serde(default)]
    pub limits: crate::limits::LimitOverrides,
    #[serde(default)]
    pub trunk_allow: Vec<bulkhead_shared::Cidr>,
    #[serde(default)]
    pub egress: Vec<(String, u16)>,
    /// Set when the trunk asked for digest credentials (not kept: say so).
    #[serde(default)]
    pub trunk_auth_username: Option<String>,
    /// The HTTPS certificate (kept in the store) this fingerprint names.
    #[serde(default)]
    pub tls_fingerprint: Option<String>,
}

/// `tenant backup --json`.
#[derive(Debug, Serialize)]
pub struct BackupDone {
    pub file: String,
    pub tenant: TenantId,
    pub key_version: u32,
    pub bytes: u64,
    pub sha256: String,
}

/// What a restore hands to tenant creation.
#[derive(Debug)]
pub struct Restored {
    pub wrapped_key: Vec<u8>,
    pub key_version: u32,
    pub backup: PathBuf,
    pub payload_bytes: u64,
}

impl Restored {
    /// Copies the payload into the new data directory as the tenant's store.
    pub fn place(&self, data_dir: &Path, uid: u32) -> std::io::Result<()> {
        let store = data_dir.join(bulkhead_shared::ipc::message::STORE_FILE);
        let mut src = File::open(&self.backup)?;
        std::io::Seek::seek(&mut src, std::io::SeekFrom::Start(HEADER_LEN))?;
        let mut dst = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&store)?;
        let copied = std::io::copy(&mut src.take(self.payload_bytes), &mut dst)?;
        if copied != self.payload_bytes {
            return Err(std::io::Error::other(
                "the backup is shorter than its header says",
            ));
        }
        dst.sync_all()?;
        std::os::unix::fs::chown(&store, Some(uid), Some(uid))?;
        std::fs::set_permissions(&store, std::fs::Permissions::from_mode(0o600))
    }
}

/// Length and SHA-256 of everything after the header.
fn hash_payload(file: &Path) -> std::io::Result<(u64, String)> {
    let mut f = File::open(file)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(HEADER_LEN))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    Ok((
        total,
        h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    ))
}

/// Reads and checks a backup's header and payload hash.
pub fn read_header(file: &Path) -> Result<Header, String> {
    let mut f = File::open(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let mut head = vec![0u8; HEADER_LEN as usize];
    f.read_exact(&mut head)
        .map_err(|_| format!("{} is not a Bulkhead backup (too short)", file.display()))?;
    let header: Header = serde_json::from_slice(head.trim_ascii_end())
        .map_err(|e| format!("{} is not a Bulkhead backup: {e}", file.display()))?;
    if header.format != FORMAT {
        return Err(format!(
            "{} is a {:?} backup; this build reads {FORMAT}",
            file.display(),
            header.format
        ));
    }
    let (bytes, sha) = hash_payload(file).map_err(|e| e.to_string())?;
    if bytes != header.payload_bytes || sha != header.payload_sha256 {
        return Err(format!(
            "{} is damaged: its data does not match its header (truncated or altered)",
            file.display()
        ));
    }
    Ok(header)
}

impl Tenants {
    pub async fn backup(&self, id: &TenantId, out: &Path) -> Result<BackupDone, AdminError> {
        if !out.is_absolute() {
            return Err(AdminError::BadRequest(format!(
                "{} must be an absolute path",
                out.display()
            )));
        }
        // The key named in the header is the one the copy is under.
        let _key_ops = self.key_ops.lock().await;
        let worker = self.running_worker(id)?;
        let row = self
            .live
            .lock()
            .expect("live lock")
            .get(id)
            .map(|l| l.row.clone())
            .ok_or_else(|| AdminError::NotFound(format!("no tenant {id}")))?;
        let key = self
            .keystore
            .read()
            .expect("keystore lock")
            .unwrap(id, &row.wrapped_key)
            .map_err(|e| AdminError::Failed(e.to_string()))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => AdminError::BadRequest(format!(
                    "{} exists; a backup never overwrites a file",
                    out.display()
                )),
                _ => AdminError::Failed(format!("cannot create {}: {e}", out.display())),
            })?;
        let fail = |e: String| {
            let _ = std::fs::remove_file(out);
            AdminError::Failed(format!("tenant {id}: backup failed: {e}"))
        };
        file.write_all(&[b' '; HEADER_LEN as usize])
            .map_err(|e| fail(e.to_string()))?;
        let reply = worker
            .ask_with(ControlOp::Backup, &[file.as_fd()], BACKUP_TIMEOUT)
            .await
            .map_err(fail)?;
        let claimed = reply.as_ref().and_then(|d| d["bytes"].as_u64());
        let path = out.to_owned();
        let (bytes, sha256) = tokio::task::spawn_blocking(move || hash_payload(&path))
            .await
            .map_err(|e| fail(e.to_string()))?
            .map_err(|e| fail(e.to_string()))?;
        if claimed != Some(bytes) || bytes == 0 {
            return Err(fail(format!(
                "the worker reported {claimed:?} bytes, the file holds {bytes}"
            )));
        }
        let header = Header {
            format: FORMAT.into(),
            tenant: id.clone(),
            key_version: row.key_version,
            key_id: key_id(&key),
            created_at: bulkhead_shared::time::now_rfc3339(),
            numbers: row.numbers.clone(),
            sip_port: row.sip_port,
            http_port: row.http_port,
            payload_bytes: bytes,
            payload_sha256: sha256.clone(),
            limits: row.limits.clone(),
            trunk_allow: row.trunk.allow.clone(),
            egress: self
                .egress_list(Some(id))
                .map_err(|e| fail(e.to_string()))?
                .into_iter()
                .map(|(_, host, port)| (host, port))
                .collect(),
            tls_fingerprint: row.tls_fingerprint.clone(),
            trunk_auth_username: row.trunk.auth.as_ref().map(|a| a.username.clone()),
        };
        let mut text = serde_json::to_vec(&header).expect("serializable");
        if text.len() >= HEADER_LEN as usize {
            return Err(fail(
                "the header outgrew its 4 KiB (too many numbers)".into(),
            ));
        }
        text.resize(HEADER_LEN as usize - 1, b' ');
        text.push(b'\n');
        file.write_all_at(&text, 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| fail(e.to_string()))?;
        Ok(BackupDone {
            file: out.display().to_string(),
            tenant: id.clone(),
            key_version: row.key_version,
            bytes,
            sha256,
        })
    }

    /// `tenant restore`: the tenant back from a backup, with its numbers and
    /// ports where they are still free; returns once it serves.
    pub async fn restore(
        self: &Arc<Self>,
        id: &TenantId,
        from: &Path,
        accept_other_tenant: bool,
    ) -> Result<(TenantView, Vec<String>), AdminError> {
        let header = read_header(from).map_err(AdminError::BadRequest)?;
        if header.tenant != *id && !accept_other_tenant {
            return Err(AdminError::BadRequest(format!(
                "{} is a backup of tenant {}, not {id}; to restore it as {id}, say --accept-other-tenant",
                from.display(),
                header.tenant
            )));
        }
        let _one_at_a_time = self.adding.lock().await;
        if self.live.lock().expect("live lock").contains_key(id) {
            return Err(AdminError::Conflict(format!(
                "tenant {id} exists; remove it first (without --shred) to restore over it"
            )));
        }
        // The key: a retired key of the backed-up tenant whose id matches,
        // or its live one (a copy restored under another id). Rowid 0
        // marks the live key, which stays where it is.
        let mut retired = self
            .registry
            .lock()
            .expect("registry lock")
            .retired_keys_of(&header.tenant)
            .map_err(AdminError::from_registry)?;
        if let Some(l) = self.live.lock().expect("live lock").get(&header.tenant) {
            retired.push((0, l.row.wrapped_key.clone()));
        }
        let (rowid, wrapped_key) = {
            let keystore = self.keystore.read().expect("keystore lock");
            let found = retired.iter().find_map(|(rowid, wrapped)| {
                let key = keystore.unwrap(&header.tenant, wrapped).ok()?;
                (key_id(&key) == header.key_id).then_some((*rowid, key))
            });
            let Some((rowid, key)) = found else {
                return Err(AdminError::BadRequest(format!(
                    "the key of this backup of tenant {} is gone: the tenant was removed with --shred (or the backup is from another installation), so its data can never be read",
                    header.tenant
                )));
            };
            let wrapped = keystore
                .wrap(id, &key)
                .map_err(|e| AdminError::Failed(e.to_string()))?;
            (rowid, wrapped)
        };
        let mut notes = Vec::new();
        let owned: std::collections::HashSet<Number> = self
            .live
            .lock()
            .expect("live lock")
            .values()
            .flat_map(|l| l.row.numbers.clone())
            .collect();
        let numbers = header
            .numbers
            .iter()
            .filter(|n| {
                let free = !owned.contains(*n);
                if !free {
                    notes.push(format!(
                        "number {n} belongs to another tenant now; not restored"
                    ));
                }
                free
            })
            .cloned()
            .collect();
        let restored = Restored {
            wrapped_key,
            key_version: header.key_version,
            backup: from.to_owned(),
            payload_bytes: header.payload_bytes,
        };
        let spec = |sip_port, http_port| TenantSpec {
            id: id.clone(),
            numbers,
            sip_port,
            http_port,
            limits: Some(header.limits.clone()),
            trunk_allow: Some(header.trunk_allow.clone()),
            trunk_auth: None,
            agent: None,
        };
        let ports_free = self.ports_free(header.sip_port, header.http_port);
        let spec = if ports_free {
            spec(Some(header.sip_port), Some(header.http_port))
        } else {
            notes.push(format!(
                "ports {} / {} are taken; new ones were chosen",
                header.sip_port, header.http_port
            ));
            spec(None, None)
        };
        self.create(spec, Some(restored)).await?;
        // The worker serves the certificate from its restored store; the
        // registry learns its fingerprint back.
        if header.tls_fingerprint.is_some() {
            self.registry
                .lock()
                .expect("registry lock")
                .set_tls(id, header.tls_fingerprint.as_deref())
                .map_err(AdminError::from_registry)?;
            if let Some(l) = self.live.lock().expect("live lock").get_mut(id) {
                l.row.tls_fingerprint = header.tls_fingerprint.clone();
            }
        }
        for (host, port) in &header.egress {
            if let Err(e) = self.egress_add(id, host, *port) {
                notes.push(format!("egress {host}:{port} not restored: {e}"));
            }
        }
        if let Some(user) = &header.trunk_auth_username {
            notes.push(format!(
                "trunk digest credentials (user {user}) are not kept in backups; set them again with tenant trunk-auth"
            ));
        }
        if rowid != 0 {
            self.registry
                .lock()
                .expect("registry lock")
                .drop_retired_key(rowid)
                .map_err(AdminError::from_registry)?;
        }
        Ok((self.view(id)?, notes))
    }

    fn ports_free(&self, sip: u16, http: u16) -> bool {
        let live = self.live.lock().expect("live lock");
        !live.values().any(|l| {
            [l.row.sip_port, l.row.http_port]
                .iter()
                .any(|p| *p == sip || *p == http)
        })
    }
}
