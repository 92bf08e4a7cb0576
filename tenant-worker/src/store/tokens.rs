//! API tokens, stored as SHA-256 hashes only. The supervisor issues a token,
//! shows it once to the admin and hands the worker just its hash.

use rusqlite::{params, Connection, OptionalExtension};

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

/// True when a live (unrevoked, unexpired at `now`) token has this hash.
/// The lookup is by hash, so timing reveals nothing about valid tokens.
pub fn is_valid(conn: &Connection, sha256_hex: &str, now: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM tokens WHERE sha256_hex = ?1 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?2)",
        params![sha256_hex, now],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::temp_store;

    #[test]
    fn valid_expired_and_unknown() {
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
        assert!(is_valid(&conn, "aa", now).unwrap());
        assert!(!is_valid(&conn, "bb", now).unwrap(), "expired");
        assert!(!is_valid(&conn, "cc", now).unwrap(), "unknown");
    }
}
