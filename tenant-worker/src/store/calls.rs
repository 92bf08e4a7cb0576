//! Call records: written when the INVITE arrives, updated as the call goes
//! on, purged when retention says so. Reading them is the call log's
//! (`call_log.rs`).

use rusqlite::{params, Connection};
use serde::Serialize;

/// How a call ended (INTERFACES.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Completed,
    Escalated,
    Abandoned,
    Rejected,
    Failed,
    InProgress,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Escalated => "escalated",
            Self::Abandoned => "abandoned",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::InProgress => "in_progress",
        }
    }
}

/// A call as it starts.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub id: String,
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub started_at: String,
}

pub fn insert(conn: &Connection, c: &NewCall) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO calls (id, call_id, from_user, to_number, started_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![c.id, c.call_id, c.from, c.to, c.started_at, Outcome::InProgress.as_str()])?;
    Ok(())
}

pub fn answered(conn: &Connection, id: &str, at: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE calls SET answered_at = ?2 WHERE id = ?1")?
        .execute(params![id, at])?;
    Ok(())
}

pub fn ended(
    conn: &Connection,
    id: &str,
    at: &str,
    outcome: Outcome,
    duration_ms: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE calls SET ended_at = ?2, outcome = ?3, duration_ms = ?4 WHERE id = ?1",
    )?
    .execute(params![id, at, outcome.as_str(), duration_ms])?;
    Ok(())
}

pub fn escalated_to(conn: &Connection, id: &str, target: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE calls SET escalated_to = ?2 WHERE id = ?1")?
        .execute(params![id, target])?;
    Ok(())
}

/// Calls a previous run left `in_progress` (the worker died mid-call) are
/// marked `failed` at start-up: a record, not a gap.
pub fn mark_interrupted(conn: &Connection, at: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE calls SET outcome = 'failed', ended_at = ?1 WHERE outcome = 'in_progress'",
        params![at],
    )
}

/// Calls that started before `before` and are over (retention).
pub fn count_expired(conn: &Connection, before: &str) -> rusqlite::Result<usize> {
    conn.query_row(
        "SELECT COUNT(*) FROM calls WHERE started_at < ?1 AND outcome != 'in_progress'",
        params![before],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as usize)
}

/// Deletes up to `limit` of those calls, oldest first, with their
/// transcripts; returns how many calls went.
pub fn purge(conn: &Connection, before: &str, limit: usize) -> rusqlite::Result<usize> {
    const EXPIRED: &str = "SELECT seq FROM calls WHERE started_at < ?1 AND outcome != 'in_progress' ORDER BY seq LIMIT ?2";
    let limit = limit as i64;
    conn.execute(
        &format!("DELETE FROM turns WHERE call IN (SELECT id FROM calls WHERE seq IN ({EXPIRED}))"),
        params![before, limit],
    )?;
    conn.execute(
        &format!("DELETE FROM calls WHERE seq IN ({EXPIRED})"),
        params![before, limit],
    )
}

/// Call `n` of a test: id `cN`, from alice to +15550100.
#[cfg(test)]
pub(super) fn call(n: usize) -> NewCall {
    NewCall {
        id: format!("c{n}"),
        call_id: format!("cid{n}"),
        from: "alice".into(),
        to: "+15550100".into(),
        started_at: "2026-11-28T00:00:00.000Z".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::call_log::get;
    use crate::store::test_util::temp_store;

    #[test]
    fn interrupted_calls_become_failed() {
        let (_d, conn) = temp_store();
        insert(&conn, &call(1)).unwrap();
        assert_eq!(mark_interrupted(&conn, "t").unwrap(), 1);
        assert_eq!(get(&conn, "c1").unwrap().unwrap().outcome, "failed");
    }
}
