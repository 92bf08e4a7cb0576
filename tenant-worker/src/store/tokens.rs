//! API tokens, stored as SHA-256 hashes only. The supervisor issues a token,
//! shows it once to the admin and hands the worker just its hash.

use rusqlite::{params, Connection};
use serde::Serialize;

/// A token as its tenant sees it: never its value or hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub created_at: String,
    pub expires_at: Option<String>,
}

/// A live token's hash, kept in memory so requests are checked without a
/// database read and compared in constant time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveToken {
    pub id: String,
    pub sha256_hex: String,
    pub expires_at: Option<String>,
}

pub fn add(
    conn: &Connection,
    id: &str,
    name: &str,
    sha256_hex: &str,
    created_at: &str,
    expires_at: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO tokens (id, name, sha256_hex, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id, name, sha256_hex, created_at, expires_at],
    )?;
    Ok(())
}

/// The tokens not revoked, newest first (expired ones included: the tenant
/// sees them until revoking them).
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<TokenInfo>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, created_at, expires_at FROM tokens WHERE revoked_at IS NULL
         ORDER BY created_at DESC, id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(TokenInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            created_at: r.get(2)?,
            expires_at: r.get(3)?,
        })
    })?;
    rows.collect()
}

/// Every unrevoked token's hash.
pub fn live(conn: &Connection) -> rusqlite::Result<Vec<LiveToken>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, sha256_hex, expires_at FROM tokens WHERE revoked_at IS NULL")?;
    let rows = stmt.query_map([], |r| {
        Ok(LiveToken {
            id: r.get(0)?,
            sha256_hex: r.get(1)?,
            expires_at: r.get(2)?,
        })
    })?;
    rows.collect()
}

/// Marks a token revoked; false when no unrevoked token has this id.
pub fn revoke(conn: &Connection, id: &str, now: &str) -> rusqlite::Result<bool> {
    let n = conn.execute(
        "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
        params![id, now],
    )?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::temp_store;

    #[test]
    fn listed_until_revoked() {
        let (_d, conn) = temp_store();
        add(&conn, "t1", "first", "aa", "2026-01-01T00:00:00.000Z", None).unwrap();
        add(
            &conn,
            "t2",
            "old",
            "bb",
            "2026-01-01T00:00:00.000Z",
            Some("2026-02-01T00:00:00.000Z"),
        )
        .unwrap();
        let now = "2026-11-28T00:00:00.000Z";
        assert_eq!(live(&conn).unwrap().len(), 2);
        assert!(revoke(&conn, "t1", now).unwrap());
        assert!(!revoke(&conn, "t1", now).unwrap(), "already revoked");
        let listed: Vec<_> = list(&conn).unwrap().into_iter().map(|t| t.id).collect();
        assert_eq!(listed, ["t2"]);
        assert_eq!(live(&conn).unwrap()[0].id, "t2");
    }
}
