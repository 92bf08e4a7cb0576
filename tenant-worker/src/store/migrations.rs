//! Schema migrations, applied in order at every open. The schema version is
//! SQLite's `user_version`; a migration never changes once released — add a
//! new one instead.

use rusqlite::Connection;

/// Migration `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: call records and API tokens.
    "CREATE TABLE calls (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        call_id      TEXT NOT NULL,
        from_user    TEXT NOT NULL,
        to_number    TEXT NOT NULL,
        started_at   TEXT NOT NULL,
        answered_at  TEXT,
        ended_at     TEXT,
        duration_ms  INTEGER NOT NULL DEFAULT 0,
        outcome      TEXT NOT NULL,
        escalated_to TEXT,
        providers    TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE tokens (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL,
        sha256_hex  TEXT NOT NULL UNIQUE,
        created_at  TEXT NOT NULL,
        expires_at  TEXT,
        revoked_at  TEXT
    );",
    // 2: the voice agent: transcripts, turn by turn, and the tenant's
    // configuration documents (agent, routing, escalation).
    "CREATE TABLE turns (
        call        TEXT NOT NULL REFERENCES calls(id),
        n           INTEGER NOT NULL,
        speaker     TEXT NOT NULL,
        text        TEXT NOT NULL,
        at_ms       INTEGER NOT NULL,
        latency_ms  INTEGER,
        PRIMARY KEY (call, n)
    ) WITHOUT ROWID;
    CREATE TABLE documents (
        name        TEXT PRIMARY KEY,
        json        TEXT NOT NULL,
        version     INTEGER NOT NULL,
        updated_at  TEXT NOT NULL
    );",
    // 3: the call's media quality (RTCP both ways), JSON, null until known.
    "ALTER TABLE calls ADD COLUMN media TEXT;",
    // 4: indexes for the call log's filters (BENCHMARKS.md: GET /v1/calls
    // with 100k records). Each ends in seq, the page order, so a filtered
    // page is read in order and stops at its limit.
    "CREATE INDEX calls_by_to ON calls (to_number, seq);
     CREATE INDEX calls_by_from ON calls (from_user, seq);
     CREATE INDEX calls_by_outcome ON calls (outcome, seq);
     CREATE INDEX calls_by_start ON calls (started_at);",
];

/// Brings the schema up to date; on failure returns the version that failed.
pub fn apply(conn: &Connection) -> Result<(), (usize, rusqlite::Error)> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| (0, e))? as usize;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i + 1;
        let step = || -> rusqlite::Result<()> {
            let tx = conn.unchecked_transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version as i64)?;
            tx.commit()
        };
        step().map_err(|e| (version, e))?;
    }
    Ok(())
}

/// The schema version this build creates.
#[cfg(test)]
pub const LATEST: usize = MIGRATIONS.len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_idempotent_and_reach_latest() {
        let (_dir, conn) = crate::store::test_util::temp_store();
        apply(&conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, LATEST);
    }
}
