//! Call records: written when the INVITE arrives, updated as the call goes on.

use rusqlite::{params, Connection, OptionalExtension, Row};
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

/// A call record in the API's shape.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct CallRecord {
    pub id: String,
    pub call_id: String,
    pub from: String,
    pub to: String,
    pub started_at: String,
    pub answered_at: Option<String>,
    pub ended_at: Option<String>,
    pub duration_ms: i64,
    pub outcome: String,
    pub escalated_to: Option<String>,
    pub providers: serde_json::Value,
    /// Packets, loss and jitter both ways, and the round trip (null until
    /// the first report).
    pub media: serde_json::Value,
}

/// One page of calls, newest first.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CallPage {
    pub calls: Vec<CallRecord>,
    pub next_cursor: Option<String>,
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

const COLUMNS: &str = "seq, id, call_id, from_user, to_number, started_at, answered_at, ended_at, duration_ms, outcome, escalated_to, providers, media";

fn record(row: &Row<'_>) -> rusqlite::Result<(i64, CallRecord)> {
    let providers: String = row.get(11)?;
    let media: Option<String> = row.get(12)?;
    Ok((
        row.get(0)?,
        CallRecord {
            id: row.get(1)?,
            call_id: row.get(2)?,
            from: row.get(3)?,
            to: row.get(4)?,
            started_at: row.get(5)?,
            answered_at: row.get(6)?,
            ended_at: row.get(7)?,
            duration_ms: row.get(8)?,
            outcome: row.get(9)?,
            escalated_to: row.get(10)?,
            providers: serde_json::from_str(&providers).unwrap_or_default(),
            media: media
                .and_then(|m| serde_json::from_str(&m).ok())
                .unwrap_or_default(),
        },
    ))
}

/// Which calls a page holds: `limit` of them, older than the cursor
/// (`before_seq`), optionally narrowed by start time, number and outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallFilter {
    pub limit: u32,
    pub before_seq: Option<i64>,
    /// Canonical RFC 3339 UTC: started at or after.
    pub since: Option<String>,
    /// Canonical RFC 3339 UTC: started before.
    pub until: Option<String>,
    /// Calls to or from this number.
    pub number: Option<String>,
    pub outcome: Option<String>,
}

/// One page of calls matching `f`, newest first. Only the filters given
/// reach the SQL, so SQLite can use the index for each (an `?1 IS NULL OR
/// …` form would hide them from the planner).
pub fn list(conn: &Connection, f: &CallFilter) -> rusqlite::Result<CallPage> {
    let mut sql = format!("SELECT {COLUMNS} FROM calls WHERE seq < ?1");
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(6);
    let before = f.before_seq.unwrap_or(i64::MAX);
    let limit = i64::from(f.limit) + 1;
    args.push(&before);
    if let Some(since) = &f.since {
        args.push(since);
        sql.push_str(&format!(" AND started_at >= ?{}", args.len()));
    }
    if let Some(until) = &f.until {
        args.push(until);
        sql.push_str(&format!(" AND started_at < ?{}", args.len()));
    }
    if let Some(number) = &f.number {
        args.push(number);
        let n = args.len();
        sql.push_str(&format!(" AND (to_number = ?{n} OR from_user = ?{n})"));
    }
    if let Some(outcome) = &f.outcome {
        args.push(outcome);
        sql.push_str(&format!(" AND outcome = ?{}", args.len()));
    }
    args.push(&limit);
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT ?{}", args.len()));
    let mut stmt = conn.prepare_cached(&sql)?;
    // Fetch one extra row to know whether another page exists.
    let rows: Vec<(i64, CallRecord)> = stmt
        .query_map(args.as_slice(), record)?
        .collect::<rusqlite::Result<_>>()?;
    let more = rows.len() > f.limit as usize;
    let mut calls = Vec::with_capacity(f.limit as usize);
    let mut last_seq = None;
    for (seq, rec) in rows.into_iter().take(f.limit as usize) {
        last_seq = Some(seq);
        calls.push(rec);
    }
    let next_cursor = if more {
        last_seq.map(|s| s.to_string())
    } else {
        None
    };
    Ok(CallPage { calls, next_cursor })
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<CallRecord>> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM calls WHERE id = ?1"),
        params![id],
        record,
    )
    .optional()
    .map(|r| r.map(|(_, rec)| rec))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::test_util::temp_store;

    fn call(n: usize) -> NewCall {
        NewCall {
            id: format!("c{n}"),
            call_id: format!("cid{n}"),
            from: "alice".into(),
            to: "+15550100".into(),
            started_at: "2026-11-28T00:00:00.000Z".into(),
        }
    }

    #[test]
    fn lifecycle_and_pagination() {
        let (_d, conn) = temp_store();
        for n in 0..5 {
            insert(&conn, &call(n)).unwrap();
        }
        answered(&conn, "c4", "t1").unwrap();
        ended(&conn, "c4", "t2", Outcome::Completed, 1500).unwrap();
        let page = list(&conn, &page_of(2, None)).unwrap();
        assert_eq!(
            page.calls.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
            ["c4", "c3"]
        );
        assert_eq!(page.calls[0].outcome, "completed");
        assert_eq!(page.calls[0].duration_ms, 1500);
        let cursor = page.next_cursor.unwrap().parse().unwrap();
        let page2 = list(&conn, &page_of(2, Some(cursor))).unwrap();
        assert_eq!(
            page2
                .calls
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>(),
            ["c2", "c1"]
        );
        let page3 = list(
            &conn,
            &page_of(2, page2.next_cursor.map(|c| c.parse().unwrap())),
        )
        .unwrap();
        assert_eq!(page3.calls.len(), 1);
        assert_eq!(page3.next_cursor, None);
        assert_eq!(get(&conn, "c0").unwrap().unwrap().outcome, "in_progress");
        assert_eq!(get(&conn, "nope").unwrap(), None);
    }

    fn page_of(limit: u32, before_seq: Option<i64>) -> CallFilter {
        CallFilter {
            limit,
            before_seq,
            ..CallFilter::default()
        }
    }

    #[test]
    fn filters_by_time_number_and_outcome() {
        let (_d, conn) = temp_store();
        for (n, (at, to)) in [
            ("2026-11-01T10:00:00.000Z", "+15550100"),
            ("2026-11-02T10:00:00.000Z", "+15550101"),
            ("2026-11-03T10:00:00.000Z", "+15550100"),
        ]
        .into_iter()
        .enumerate()
        {
            insert(
                &conn,
                &NewCall {
                    started_at: at.into(),
                    to: to.into(),
                    ..call(n)
                },
            )
            .unwrap();
        }
        ended(&conn, "c0", "t", Outcome::Completed, 1).unwrap();
        let ids = |f: CallFilter| {
            list(&conn, &f)
                .unwrap()
                .calls
                .into_iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
        };
        let all = page_of(10, None);
        assert_eq!(
            ids(CallFilter {
                since: Some("2026-11-02T00:00:00.000Z".into()),
                ..all.clone()
            }),
            ["c2", "c1"]
        );
        assert_eq!(
            ids(CallFilter {
                until: Some("2026-11-02T10:00:00.000Z".into()),
                ..all.clone()
            }),
            ["c0"]
        );
        assert_eq!(
            ids(CallFilter {
                number: Some("+15550100".into()),
                ..all.clone()
            }),
            ["c2", "c0"]
        );
        assert_eq!(
            ids(CallFilter {
                number: Some("alice".into()),
                ..all.clone()
            }),
            ["c2", "c1", "c0"],
            "from matches too"
        );
        assert_eq!(
            ids(CallFilter {
                outcome: Some("completed".into()),
                ..all.clone()
            }),
            ["c0"]
        );
        assert_eq!(
            ids(CallFilter {
                outcome: Some("in_progress".into()),
                number: Some("+15550101".into()),
                ..all
            }),
            ["c1"]
        );
    }

    #[test]
    fn interrupted_calls_become_failed() {
        let (_d, conn) = temp_store();
        insert(&conn, &call(1)).unwrap();
        assert_eq!(mark_interrupted(&conn, "t").unwrap(), 1);
        assert_eq!(get(&conn, "c1").unwrap().unwrap().outcome, "failed");
    }
}
