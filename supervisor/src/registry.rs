//! `registry.db`: the supervisor's record of tenants, their numbers, ports,
//! uids and wrapped keys. Plain SQLite: it holds no tenant data, and the one
//! secret in it (each data key) is stored wrapped by the keystore.
//!
//! Uniqueness is the database's job: a number, uid or port has exactly one
//! owner because the schema says so, not because callers checked first.

use std::path::Path;

use bulkhead_shared::trunk::TrunkPolicy;
use bulkhead_shared::{Number, TenantId};
use rusqlite::{params, Connection, OptionalExtension};

mod key_rotation;
pub use key_rotation::PendingKey;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("failed to open registry {path}: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error("number {number} already belongs to tenant {owner}")]
    NumberTaken { number: Number, owner: String },
    #[error("tenant {0} already exists")]
    TenantExists(TenantId),
    #[error("registry query failed: {0}")]
    Query(#[from] rusqlite::Error),
    #[error("registry row is corrupt: {0}")]
    Corrupt(String),
    #[error("the tenant is removed, but its shredded key may remain in the registry's write-ahead log until the next checkpoint: another process holds registry.db open")]
    ShredIncomplete,
}

/// One tenant as registered.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantRow {
    pub id: TenantId,
    pub uid: u32,
    pub sip_port: u16,
    pub http_port: u16,
    pub wrapped_key: Vec<u8>,
    pub key_version: u32,
    pub agent: String,
    pub numbers: Vec<Number>,
    /// The admin's per-tenant limit overrides.
    pub limits: crate::limits::LimitOverrides,
    /// Who may call on the tenant's trunk port.
    pub trunk: TrunkPolicy,
    /// SHA-256 of the tenant's HTTPS certificate (the certificate and key
    /// live in the tenant's encrypted store); None: plain HTTP.
    pub tls_fingerprint: Option<String>,
}

/// A wrapped key and where it is kept.
#[derive(Debug, Clone)]
pub struct WrappedKey {
    /// `tenants`, `retired_keys` or `pending_keys`.
    pub table: &'static str,
    pub rowid: i64,
    pub tenant: TenantId,
    pub wrapped: Vec<u8>,
}

#[derive(Debug)]
pub struct Registry {
    conn: Connection,
    /// `history.head` beside the registry: the last history entry's seq and
    /// hash, so deleting entries from the end is detected too.
    history_head: std::path::PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tenants (
    id          TEXT PRIMARY KEY,
    uid         INTEGER NOT NULL UNIQUE,
    sip_port    INTEGER NOT NULL UNIQUE,
    http_port   INTEGER NOT NULL UNIQUE,
    wrapped_key BLOB NOT NULL,
    key_version INTEGER NOT NULL DEFAULT 1,
    agent       TEXT NOT NULL DEFAULT '{}',
    created_at  TEXT NOT NULL,
    limits      TEXT NOT NULL DEFAULT '{}',
    trunk_allow TEXT NOT NULL DEFAULT '[]',
    -- Digest credentials for the trunk as HA1 hashes (JSON), or NULL.
    trunk_auth  TEXT,
    -- The HTTPS certificate's SHA-256 (never the key), or NULL.
    tls_fingerprint TEXT
);
-- Keys of removed tenants, kept (wrapped) unless the removal shredded them,
-- so a backup of the tenant's store can still be restored.
CREATE TABLE IF NOT EXISTS retired_keys (
    id          TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    removed_at  TEXT NOT NULL
);
-- Where the egress broker may connect on a tenant's behalf.
CREATE TABLE IF NOT EXISTS egress (
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    host      TEXT NOT NULL,
    port      INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, host, port)
);
CREATE TABLE IF NOT EXISTS numbers (
    number    TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE CASCADE
);
";

impl Registry {
    pub fn open(path: &Path) -> Result<Self, RegistryError> {
        let open = |source| RegistryError::Open {
            path: path.display().to_string(),
            source,
        };
        let conn = Connection::open(path).map_err(open)?;
        conn.execute_batch(
            // secure_delete: a deleted row (a shredded key) is overwritten
            // with zeros in its page and in freed pages, not left behind.
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA secure_delete = ON;",
        )
        .map_err(open)?;
        conn.execute_batch(SCHEMA).map_err(open)?;
        conn.execute_batch(crate::history::SCHEMA).map_err(open)?;
        conn.execute_batch(key_rotation::SCHEMA).map_err(open)?;
        // Registries from before these columns were added lack them.
        for (column, ddl) in [
            (
                "limits",
                "ALTER TABLE tenants ADD COLUMN limits TEXT NOT NULL DEFAULT '{}'",
            ),
            (
                "trunk_allow",
                "ALTER TABLE tenants ADD COLUMN trunk_allow TEXT NOT NULL DEFAULT '[]'",
            ),
            (
                "trunk_auth",
                "ALTER TABLE tenants ADD COLUMN trunk_auth TEXT",
            ),
            (
                "tls_fingerprint",
                "ALTER TABLE tenants ADD COLUMN tls_fingerprint TEXT",
            ),
        ] {
            let present: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM pragma_table_info('tenants') WHERE name = ?1",
                    [column],
                    |r| r.get(0),
                )
                .map_err(open)?;
            if present == 0 {
                conn.execute_batch(ddl).map_err(open)?;
            }
        }
        Ok(Self {
            conn,
            history_head: path.with_file_name("history.head"),
        })
    }

    /// Inserts a tenant and its numbers atomically.
    pub fn insert(&mut self, t: &TenantRow) -> Result<(), RegistryError> {
        let tx = self.conn.transaction()?;
        if tx
            .query_row(
                "SELECT 1 FROM tenants WHERE id = ?1",
                [t.id.as_str()],
                |_| Ok(()),
            )
            .optional()?
            .is_some()
        {
            return Err(RegistryError::TenantExists(t.id.clone()));
        }
        tx.execute(
            "INSERT INTO tenants (id, uid, sip_port, http_port, wrapped_key, key_version, agent, created_at, limits, trunk_allow, trunk_auth) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![t.id.as_str(), t.uid, t.sip_port, t.http_port, t.wrapped_key, t.key_version, t.agent, bulkhead_shared::time::now_rfc3339(), limits_json(&t.limits), cidrs_json(&t.trunk.allow), auth_json(&t.trunk)],
        )?;
        for n in &t.numbers {
            claim(&tx, &t.id, n)?;
        }
        tx.commit()?;
        Ok(())
    }

    pub fn add_number(&mut self, tenant: &TenantId, number: &Number) -> Result<(), RegistryError> {
        let tx = self.conn.transaction()?;
        claim(&tx, tenant, number)?;
        tx.commit()?;
        Ok(())
    }

    /// Releases `number`; returns the tenant that held it.
    pub fn remove_number(&mut self, number: &Number) -> Result<Option<TenantId>, RegistryError> {
        let owner = self.owner_of(number)?;
        self.conn
            .execute("DELETE FROM numbers WHERE number = ?1", [number.as_str()])?;
        Ok(owner)
    }

    pub fn egress_add(
        &mut self,
        id: &TenantId,
        host: &str,
        port: u16,
    ) -> Result<bool, RegistryError> {
        Ok(self.conn.execute(
            "INSERT OR IGNORE INTO egress (tenant_id, host, port) VALUES (?1, ?2, ?3)",
            params![id.as_str(), host, port],
        )? > 0)
    }

    pub fn egress_remove(
        &mut self,
        id: &TenantId,
        host: &str,
        port: u16,
    ) -> Result<bool, RegistryError> {
        Ok(self.conn.execute(
            "DELETE FROM egress WHERE tenant_id = ?1 AND host = ?2 AND port = ?3",
            params![id.as_str(), host, port],
        )? > 0)
    }

    /// (tenant, host, port) rows, for one tenant or all.
    pub fn egress_list(
        &self,
        id: Option<&TenantId>,
    ) -> Result<Vec<(String, String, u16)>, RegistryError> {
        let mut stmt = self.conn.prepare("SELECT tenant_id, host, port FROM egress WHERE ?1 IS NULL OR tenant_id = ?1 ORDER BY 1, 2, 3")?;
        let rows = stmt.query_map([id.map(|i| i.as_str())], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn egress_allowed(
        &self,
        id: &TenantId,
        host: &str,
        port: u16,
    ) -> Result<bool, RegistryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT 1 FROM egress WHERE tenant_id = ?1 AND host = ?2 AND port = ?3",
                params![id.as_str(), host, port],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }

    pub fn owner_of(&self, number: &Number) -> Result<Option<TenantId>, RegistryError> {
        let owner: Option<String> = self
            .conn
            .query_row(
                "SELECT tenant_id FROM numbers WHERE number = ?1",
                [number.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        owner
            .map(|o| TenantId::parse(&o).map_err(|e| RegistryError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Removes a tenant and (by cascade) its numbers. Without `shred` its
    /// wrapped key moves to `retired_keys`; with it, every copy is deleted.
    pub fn remove(&mut self, id: &TenantId, shred: bool) -> Result<bool, RegistryError> {
        let tx = self.conn.transaction()?;
        retire_key(&tx, id, shred)?;
        let removed = tx.execute("DELETE FROM tenants WHERE id = ?1", [id.as_str()])? > 0;
        tx.commit()?;
        if shred {
            self.erase_old_page_versions()?;
        }
        Ok(removed)
    }

    /// Every wrapped key the registry holds (tenants', retired ones and
    /// those of rotations not yet settled): master key rotation re-wraps
    /// them all.
    pub fn wrapped_keys(&self) -> Result<Vec<WrappedKey>, RegistryError> {
        let mut out = Vec::new();
        for table in ["tenants", "retired_keys", "pending_keys"] {
            let mut stmt = self
                .conn
                .prepare(&format!("SELECT rowid, id, wrapped_key FROM {table}"))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?;
            for row in rows {
                let (rowid, id, wrapped) = row?;
                let id = TenantId::parse(&id).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
                out.push(WrappedKey {
                    table,
                    rowid,
                    tenant: id,
                    wrapped,
                });
            }
        }
        Ok(out)
    }

    /// Replaces wrapped keys, all in one transaction (all or none), then
    /// erases the old forms from the write-ahead log.
    pub fn replace_wrapped_keys(&mut self, keys: &[WrappedKey]) -> Result<(), RegistryError> {
        let tx = self.conn.transaction()?;
        for k in keys {
            tx.execute(
                &format!("UPDATE {} SET wrapped_key = ?2 WHERE rowid = ?1", k.table),
                params![k.rowid, k.wrapped],
            )?;
        }
        tx.commit()?;
        self.erase_old_page_versions()
    }

    /// The kept (wrapped) keys of removed tenants named `id`, newest first,
    /// as (rowid, wrapped).
    pub fn retired_keys_of(&self, id: &TenantId) -> Result<Vec<(i64, Vec<u8>)>, RegistryError> {
        let mut stmt = self.conn.prepare(
            "SELECT rowid, wrapped_key FROM retired_keys WHERE id = ?1 ORDER BY removed_at DESC",
        )?;
        let rows = stmt.query_map([id.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Forgets one retired key (a restore made it live again).
    pub fn drop_retired_key(&mut self, rowid: i64) -> Result<(), RegistryError> {
        self.conn
            .execute("DELETE FROM retired_keys WHERE rowid = ?1", [rowid])?;
        Ok(())
    }

    /// Copies the zeroed pages into the database file (fsync) and truncates
    /// the write-ahead log, whose older frames still hold the deleted rows
    /// as they were. Readers holding an old snapshot would keep those frames
    /// alive, so a busy checkpoint is an error, not a silent success.
    fn erase_old_page_versions(&self) -> Result<(), RegistryError> {
        for _ in 0..20 {
            let (busy, _, _): (i64, i64, i64) =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
            if busy == 0 {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err(RegistryError::ShredIncomplete)
    }

    pub fn all(&self) -> Result<Vec<TenantRow>, RegistryError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, uid, sip_port, http_port, wrapped_key, key_version, agent, limits, trunk_allow, trunk_auth, tls_fingerprint FROM tenants ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get::<_, String>(7)?,
                r.get::<_, String>(8)?,
                r.get::<_, Option<String>>(9)?,
                r.get::<_, Option<String>>(10)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (
                id,
                uid,
                sip_port,
                http_port,
                wrapped_key,
                key_version,
                agent,
                limits,
                allow,
                auth,
                tls_fingerprint,
            ) = row?;
            let id = TenantId::parse(&id).map_err(|e| RegistryError::Corrupt(e.to_string()))?;
            let limits = serde_json::from_str(&limits)
                .map_err(|e| RegistryError::Corrupt(format!("limits of tenant {id}: {e}")))?;
            let corrupt = |what: &str, e: serde_json::Error| {
                RegistryError::Corrupt(format!("{what} of tenant {id}: {e}"))
            };
            let trunk = TrunkPolicy {
                allow: serde_json::from_str(&allow).map_err(|e| corrupt("trunk_allow", e))?,
                auth: auth
                    .map(|a| serde_json::from_str(&a))
                    .transpose()
                    .map_err(|e| corrupt("trunk_auth", e))?,
            };
            let numbers = self.numbers_of(&id)?;
            out.push(TenantRow {
                id,
                uid,
                sip_port,
                http_port,
                wrapped_key,
                key_version,
                agent,
                numbers,
                limits,
                trunk,
                tls_fingerprint,
            });
        }
        Ok(out)
    }

    /// Replaces the tenant's limit overrides.
    pub fn set_limits(
        &mut self,
        id: &TenantId,
        limits: &crate::limits::LimitOverrides,
    ) -> Result<(), RegistryError> {
        self.conn.execute(
            "UPDATE tenants SET limits = ?2 WHERE id = ?1",
            params![id.as_str(), limits_json(limits)],
        )?;
        Ok(())
    }

    /// Replaces the tenant's trunk policy.
    pub fn set_trunk(&mut self, id: &TenantId, trunk: &TrunkPolicy) -> Result<(), RegistryError> {
        self.conn.execute(
            "UPDATE tenants SET trunk_allow = ?2, trunk_auth = ?3 WHERE id = ?1",
            params![id.as_str(), cidrs_json(&trunk.allow), auth_json(trunk)],
        )?;
        Ok(())
    }

    /// Appends an admin action to the hash-chained history.
    pub fn record(
        &mut self,
        peer_uid: u32,
        action: &str,
        target: &str,
        result: &str,
    ) -> Result<crate::history::Event, RegistryError> {
        let event = crate::history::append(&self.conn, peer_uid, action, target, result)?;
        crate::history::write_head(&self.history_head, &event).map_err(|e| {
            RegistryError::Corrupt(format!("cannot write {}: {e}", self.history_head.display()))
        })?;
        Ok(event)
    }

    /// The last entry as `history.head` recorded it, if the file exists.
    pub fn history_head(&self) -> Option<(i64, String)> {
        crate::history::read_head(&self.history_head)
    }

    /// The whole admin history, oldest first.
    pub fn history(&self) -> Result<Vec<crate::history::Event>, RegistryError> {
        Ok(crate::history::list(&self.conn)?)
    }

    /// Records the tenant's HTTPS certificate fingerprint (None: off).
    pub fn set_tls(
        &mut self,
        id: &TenantId,
        fingerprint: Option<&str>,
    ) -> Result<(), RegistryError> {
        self.conn.execute(
            "UPDATE tenants SET tls_fingerprint = ?2 WHERE id = ?1",
            params![id.as_str(), fingerprint],
        )?;
        Ok(())
    }

    pub fn numbers_of(&self, id: &TenantId) -> Result<Vec<Number>, RegistryError> {
        let mut stmt = self
            .conn
            .prepare("SELECT number FROM numbers WHERE tenant_id = ?1 ORDER BY number")?;
        let numbers = stmt.query_map([id.as_str()], |r| r.get::<_, String>(0))?;
        numbers
            .map(|n| Number::parse(&n?).map_err(|e| RegistryError::Corrupt(e.to_string())))
            .collect()
    }
}

fn limits_json(l: &crate::limits::LimitOverrides) -> String {
    serde_json::to_string(l).expect("limit overrides serialize")
}

fn auth_json(t: &TrunkPolicy) -> Option<String> {
    t.auth
        .as_ref()
        .map(|a| serde_json::to_string(a).expect("trunk auth serializes"))
}

fn cidrs_json(c: &[bulkhead_shared::Cidr]) -> String {
    serde_json::to_string(c).expect("address blocks serialize")
}

fn claim(conn: &Connection, tenant: &TenantId, number: &Number) -> Result<(), RegistryError> {
    let owner: Option<String> = conn
        .query_row(
            "SELECT tenant_id FROM numbers WHERE number = ?1",
            [number.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    match owner {
        Some(o) if o == tenant.as_str() => Ok(()),
        Some(owner) => Err(RegistryError::NumberTaken {
            number: number.clone(),
            owner,
        }),
        None => {
            conn.execute(
                "INSERT INTO numbers (number, tenant_id) VALUES (?1, ?2)",
                params![number.as_str(), tenant.as_str()],
            )?;
            Ok(())
        }
    }
}

/// The tenant's current wrapped key leaves service: kept in `retired_keys`
/// (a backup under it can still be restored), or, with `forget`, every
/// retired key of the tenant is deleted and the current one with the row.
fn retire_key(tx: &rusqlite::Transaction<'_>, id: &TenantId, forget: bool) -> rusqlite::Result<()> {
    if forget {
        tx.execute("DELETE FROM retired_keys WHERE id = ?1", [id.as_str()])?;
    } else {
        tx.execute(
            "INSERT INTO retired_keys (id, wrapped_key, removed_at) SELECT id, wrapped_key, ?2 FROM tenants WHERE id = ?1",
            params![id.as_str(), bulkhead_shared::time::now_rfc3339()],
        )?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn row(id: &str, uid: u32, port: u16, numbers: &[&str]) -> TenantRow {
        TenantRow {
            id: TenantId::parse(id).unwrap(),
            uid,
            sip_port: port,
            http_port: port + 1,
            wrapped_key: vec![1, 2, 3],
            key_version: 1,
            agent: "{}".into(),
            numbers: numbers.iter().map(|n| Number::parse(n).unwrap()).collect(),
            limits: Default::default(),
            trunk: TrunkPolicy::default(),
            tls_fingerprint: None,
        }
    }

    #[test]
    fn a_number_has_exactly_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(&dir.path().join("registry.db")).unwrap();
        reg.insert(&row("clinic", 1, 100, &["+15550100"])).unwrap();
        let err = reg
            .insert(&row("insurance", 2, 200, &["+15550100"]))
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::NumberTaken { ref owner, .. } if owner == "clinic"),
            "{err}"
        );
        assert_eq!(
            reg.all().unwrap().len(),
            1,
            "the failed insert left nothing behind"
        );
        reg.insert(&row("insurance", 2, 200, &["+15550200"]))
            .unwrap();
        let n = Number::parse("+15550200").unwrap();
        assert!(matches!(
            reg.add_number(&TenantId::parse("clinic").unwrap(), &n),
            Err(RegistryError::NumberTaken { .. })
        ));
        assert!(matches!(
            reg.insert(&row("clinic", 3, 300, &[])),
            Err(RegistryError::TenantExists(_))
        ));
    }

    #[test]
    fn removal_releases_numbers_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        let mut reg = Registry::open(&path).unwrap();
        reg.insert(&row("clinic", 1, 100, &["+15550100", "+15550101"]))
            .unwrap();
        drop(reg);
        let mut reg = Registry::open(&path).unwrap();
        assert_eq!(reg.all().unwrap()[0].numbers.len(), 2);
        assert!(reg
            .remove(&TenantId::parse("clinic").unwrap(), false)
            .unwrap());
        assert_eq!(
            reg.owner_of(&Number::parse("+15550100").unwrap()).unwrap(),
            None
        );
        let kept: i64 = reg
            .conn
            .query_row("SELECT count(*) FROM retired_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 1, "without --shred the wrapped key is kept");
        reg.insert(&row("clinic", 1, 100, &[])).unwrap();
        assert!(reg
            .remove(&TenantId::parse("clinic").unwrap(), true)
            .unwrap());
        let kept: i64 = reg
            .conn
            .query_row("SELECT count(*) FROM retired_keys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kept, 0, "--shred destroys every copy of the key");
    }

    #[test]
    fn limits_are_stored_and_an_older_registry_gains_the_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registry.db");
        // A registry as the foundation issue wrote it: no limits column.
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE tenants (id TEXT PRIMARY KEY, uid INTEGER NOT NULL UNIQUE,
                 sip_port INTEGER NOT NULL UNIQUE, http_port INTEGER NOT NULL UNIQUE,
                 wrapped_key BLOB NOT NULL, key_version INTEGER NOT NULL DEFAULT 1,
                 agent TEXT NOT NULL DEFAULT '{}', created_at TEXT NOT NULL);
                 INSERT INTO tenants VALUES ('clinic', 1, 100, 101, x'01', 1, '{}', 't');",
            )
            .unwrap();
        let mut reg = Registry::open(&path).unwrap();
        let id = TenantId::parse("clinic").unwrap();
        assert_eq!(reg.all().unwrap()[0].limits, Default::default());
        let limits =
            crate::limits::LimitOverrides::from_pairs(&["calls_per_second=7".into()]).unwrap();
        reg.set_limits(&id, &limits).unwrap();
        drop(reg);
        let reg = Registry::open(&path).unwrap();
        assert_eq!(reg.all().unwrap()[0].limits, limits);
    }
}
