//! The tenant's configuration documents (agent, routing, escalation), as
//! JSON with a version that rises on every change (the HTTP API's ETag).

use rusqlite::{params, Connection, OptionalExtension};

/// A stored document and its version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub json: String,
    pub version: i64,
}

pub fn get(conn: &Connection, name: &str) -> rusqlite::Result<Option<Document>> {
    conn.query_row(
        "SELECT json, version FROM documents WHERE name = ?1",
        [name],
        |r| {
            Ok(Document {
                json: r.get(0)?,
                version: r.get(1)?,
            })
        },
    )
    .optional()
}

/// Stores `json` as the new version of `name`.
pub fn put(conn: &Connection, name: &str, json: &str, now: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO documents (name, json, version, updated_at) VALUES (?1, ?2, 1, ?3)
         ON CONFLICT(name) DO UPDATE SET json = ?2, version = version + 1, updated_at = ?3",
        params![name, json, now],
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_rise_with_each_put() {
        let (_dir, conn) = crate::store::test_util::temp_store();
        assert_eq!(get(&conn, "agent").unwrap(), None);
        put(&conn, "agent", "{}", "t").unwrap();
        put(&conn, "agent", r#"{"greeting":"hi"}"#, "t").unwrap();
        let d = get(&conn, "agent").unwrap().unwrap();
        assert_eq!((d.json.as_str(), d.version), (r#"{"greeting":"hi"}"#, 2));
    }
}
