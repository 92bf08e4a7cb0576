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

/// The schema version a store has once [`apply`] ran.
#[cfg(test)]
pub(crate) fn latest() -> usize {
    MIGRATIONS.len()
}

/// Brings the schema up to date; on failure returns the version that failed.
/// Every pending migration runs in one transaction: all or none, and one
/// commit (with one per migration, a new tenant's worker made 10 fsyncs
/// before it served; now 7).
pub fn apply(conn: &Connection) -> Result<(), (usize, rusqlite::Error)> {
    let current: usize = conn
        .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
        .map_err(|e| (0, e))? as usize;
    if current >= MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.unchecked_transaction().map_err(|e| (current + 1, e))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let version = i + 1;
        tx.execute_batch(sql).map_err(|e| (version, e))?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(|e| (version, e))?;
    }
    tx.commit().map_err(|e| (MIGRATIONS.len(), e))
}

/// The schema version this build creates.
#[cfg(test)]
pub const LATEST: usize = MIGRATIONS.len();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_created_at_an_older_version_is_brought_up_to_date() {
        let conn = Connection::open_in_memory().unwrap();
        // As a worker of an older build left it: migration 1 only.
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        apply(&conn).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v as usize, LATEST);
    }

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
