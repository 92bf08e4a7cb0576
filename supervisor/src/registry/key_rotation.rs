//! The registry's half of `tenant rotate-key`: while the worker re-encrypts
//! the store, the new wrapped key waits in `pending_keys`; it replaces the
//! tenant's key once the worker reports the store is under it, or is
//! dropped if the store is not. A crash in between leaves the row, and the
//! next worker start settles it by which key opens the store.

use bulkhead_shared::TenantId;
use rusqlite::{params, OptionalExtension};

use super::{Registry, RegistryError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pending_keys (
    id          TEXT PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    wrapped_key BLOB NOT NULL,
    -- 1: the rotation forgets every earlier key (backups under them die).
    forget_old  INTEGER NOT NULL DEFAULT 0,
    started_at  TEXT NOT NULL
);
";

/// A rotation begun and not yet settled.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingKey {
    pub wrapped: Vec<u8>,
    pub forget_old: bool,
}

impl Registry {
    /// Records the new wrapped key before the worker is asked to use it.
    pub fn begin_rotation(
        &mut self,
        id: &TenantId,
        wrapped: &[u8],
        forget_old: bool,
    ) -> Result<(), RegistryError> {
        self.conn.execute(
            "INSERT INTO pending_keys (id, wrapped_key, forget_old, started_at) VALUES (?1, ?2, ?3, ?4)",
            params![id.as_str(), wrapped, forget_old, bulkhead_shared::time::now_rfc3339()],
        )?;
        Ok(())
    }

    pub fn pending_key_of(&self, id: &TenantId) -> Result<Option<PendingKey>, RegistryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT wrapped_key, forget_old FROM pending_keys WHERE id = ?1",
                [id.as_str()],
                |r| {
                    Ok(PendingKey {
                        wrapped: r.get(0)?,
                        forget_old: r.get(1)?,
                    })
                },
            )
            .optional()?)
    }

    /// The store is under the pending key: it becomes the tenant's key and
    /// `key_version` goes up, in one transaction. The old key is kept as a
    /// retired key (backups made under it still restore) unless the
    /// rotation forgets old keys, which deletes every retired key of the
    /// tenant and erases them from the write-ahead log too. Returns the new
    /// version, or None when nothing was pending (already settled).
    pub fn finish_rotation(&mut self, id: &TenantId) -> Result<Option<u32>, RegistryError> {
        let tx = self.conn.transaction()?;
        let Some(forget_old) = tx
            .query_row(
                "SELECT forget_old FROM pending_keys WHERE id = ?1",
                [id.as_str()],
                |r| r.get::<_, bool>(0),
            )
            .optional()?
        else {
            return Ok(None);
        };
        super::retire_key(&tx, id, forget_old)?;
        tx.execute(
            "UPDATE tenants SET wrapped_key = (SELECT wrapped_key FROM pending_keys WHERE id = ?1), key_version = key_version + 1 WHERE id = ?1",
            [id.as_str()],
        )?;
        tx.execute("DELETE FROM pending_keys WHERE id = ?1", [id.as_str()])?;
        let version: u32 = tx.query_row(
            "SELECT key_version FROM tenants WHERE id = ?1",
            [id.as_str()],
            |r| r.get(0),
        )?;
        tx.commit()?;
        if forget_old {
            self.erase_old_page_versions()?;
        }
        Ok(Some(version))
    }

    /// The store is still under the current key: the rotation did not
    /// happen, and its key is forgotten.
    pub fn abandon_rotation(&mut self, id: &TenantId) -> Result<bool, RegistryError> {
        Ok(self
            .conn
            .execute("DELETE FROM pending_keys WHERE id = ?1", [id.as_str()])?
            > 0)
    }

    /// (version, wrapped key) of the tenant now.
    pub fn key_of(&self, id: &TenantId) -> Result<Option<(u32, Vec<u8>)>, RegistryError> {
        Ok(self
            .conn
            .query_row(
                "SELECT key_version, wrapped_key FROM tenants WHERE id = ?1",
                [id.as_str()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::row;
    use super::*;

    fn retired(reg: &Registry) -> i64 {
        reg.conn
            .query_row("SELECT count(*) FROM retired_keys", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn a_finished_rotation_bumps_the_version_and_keeps_the_old_key_retired() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(&dir.path().join("registry.db")).unwrap();
        let id = TenantId::parse("clinic").unwrap();
        reg.insert(&row("clinic", 1, 100, &[])).unwrap();
        reg.begin_rotation(&id, &[9, 9], false).unwrap();
        assert!(
            reg.begin_rotation(&id, &[8], false).is_err(),
            "one rotation at a time"
        );
        assert_eq!(reg.key_of(&id).unwrap(), Some((1, vec![1, 2, 3])));
        assert_eq!(reg.finish_rotation(&id).unwrap(), Some(2));
        assert_eq!(reg.key_of(&id).unwrap(), Some((2, vec![9, 9])));
        assert_eq!(reg.retired_keys_of(&id).unwrap()[0].1, vec![1, 2, 3]);
        assert_eq!(reg.finish_rotation(&id).unwrap(), None, "settled once");
        assert_eq!(reg.pending_key_of(&id).unwrap(), None);
    }

    #[test]
    fn an_abandoned_rotation_changes_nothing_and_forget_old_drops_every_old_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(&dir.path().join("registry.db")).unwrap();
        let id = TenantId::parse("clinic").unwrap();
        reg.insert(&row("clinic", 1, 100, &[])).unwrap();
        reg.begin_rotation(&id, &[9], false).unwrap();
        assert!(reg.abandon_rotation(&id).unwrap());
        assert_eq!(reg.key_of(&id).unwrap(), Some((1, vec![1, 2, 3])));
        assert_eq!(retired(&reg), 0);
        reg.begin_rotation(&id, &[9], false).unwrap();
        reg.finish_rotation(&id).unwrap();
        assert_eq!(retired(&reg), 1);
        reg.begin_rotation(&id, &[7], true).unwrap();
        assert_eq!(
            reg.pending_key_of(&id).unwrap(),
            Some(PendingKey {
                wrapped: vec![7],
                forget_old: true
            })
        );
        assert_eq!(reg.finish_rotation(&id).unwrap(), Some(3));
        assert_eq!(retired(&reg), 0, "--forget-old keeps no earlier key");
    }

    #[test]
    fn master_key_rotation_sees_a_pending_key_and_removal_drops_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut reg = Registry::open(&dir.path().join("registry.db")).unwrap();
        let id = TenantId::parse("clinic").unwrap();
        reg.insert(&row("clinic", 1, 100, &[])).unwrap();
        reg.begin_rotation(&id, &[9], false).unwrap();
        let tables: Vec<_> = reg
            .wrapped_keys()
            .unwrap()
            .iter()
            .map(|k| k.table)
            .collect();
        assert_eq!(tables, ["tenants", "pending_keys"]);
        reg.remove(&id, true).unwrap();
        assert_eq!(reg.pending_key_of(&id).unwrap(), None);
    }
}
