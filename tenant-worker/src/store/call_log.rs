//! The call log: call records read one page at a time, newest first, with
//! the tenant API's filters, or one by id.

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

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
/// reach the SQL (the cursor's `seq < ?` included), so SQLite can use the
/// index for each (an `?1 IS NULL OR …` form would hide them from the
/// planner). Where the filters make SQLite sort (a time range, a number),
/// the page's keys are chosen in a subquery, from the indexes alone, and
/// only the page's own rows are read: a one-day range used to read,
/// decrypt and sort every row of that day, all columns, to return 50
/// (BENCHMARKS.md: 4.5 times the requests per second now).
pub fn list(conn: &Connection, f: &CallFilter) -> rusqlite::Result<CallPage> {
    // One row more than the page, to know whether another page exists.
    let limit = i64::from(f.limit) + 1;
    let (sql, args) = page_query(f, &limit);
    let mut stmt = conn.prepare_cached(&sql)?;
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

/// The statement [`list`] runs for `f` with `limit`, and its arguments.
fn page_query<'a>(f: &'a CallFilter, limit: &'a i64) -> (String, Vec<&'a dyn rusqlite::ToSql>) {
    let mut filters: Vec<String> = Vec::with_capacity(4);
    let mut args: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(6);
    if let Some(before) = &f.before_seq {
        args.push(before);
        filters.push(format!("seq < ?{}", args.len()));
    }
    if let Some(since) = &f.since {
        args.push(since);
        filters.push(format!("started_at >= ?{}", args.len()));
    }
    if let Some(until) = &f.until {
        args.push(until);
        filters.push(format!("started_at < ?{}", args.len()));
    }
    if let Some(number) = &f.number {
        args.push(number);
        let n = args.len();
        filters.push(format!("(to_number = ?{n} OR from_user = ?{n})"));
    }
    if let Some(outcome) = &f.outcome {
        args.push(outcome);
        filters.push(format!("outcome = ?{}", args.len()));
    }
    args.push(limit);
    let filters = if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    };
    let n = args.len();
    // Walking the table by seq (no filter, a cursor) or the covering
    // outcome index stops at the page's end by itself; the time and number
    // filters collect their matches from other indexes and sort them.
    let sorted = f.since.is_some() || f.until.is_some() || f.number.is_some();
    let sql = if sorted {
        format!(
            "SELECT {COLUMNS} FROM calls WHERE seq IN \
             (SELECT seq FROM calls{filters} ORDER BY seq DESC LIMIT ?{n}) ORDER BY seq DESC"
        )
    } else {
        format!("SELECT {COLUMNS} FROM calls{filters} ORDER BY seq DESC LIMIT ?{n}")
    };
    (sql, args)
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
    use crate::store::calls::{answered, call, ended, insert, Outcome};
    use crate::store::test_util::temp_store;
    use crate::store::NewCall;

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

    /// Five calls a day apart, c0 the oldest.
    fn five_days(conn: &Connection) {
        for n in 0..5 {
            let at = format!("2026-11-0{}T10:00:00.000Z", n + 1);
            insert(
                conn,
                &NewCall {
                    started_at: at,
                    ..call(n)
                },
            )
            .unwrap();
        }
    }

    #[test]
    fn a_time_range_pages_newest_first_through_its_cursor() {
        let (_d, conn) = temp_store();
        five_days(&conn);
        let range = |before_seq| CallFilter {
            limit: 2,
            before_seq,
            since: Some("2026-11-02T00:00:00.000Z".into()),
            until: Some("2026-11-05T00:00:00.000Z".into()),
            number: Some("+15550100".into()),
            ..CallFilter::default()
        };
        let ids = |p: &CallPage| p.calls.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        let first = list(&conn, &range(None)).unwrap();
        assert_eq!(ids(&first), ["c3", "c2"]);
        let cursor = first.next_cursor.as_deref().unwrap().parse().unwrap();
        let second = list(&conn, &range(Some(cursor))).unwrap();
        assert_eq!(ids(&second), ["c1"]);
        assert_eq!(second.next_cursor, None);
    }

    /// SQLite's plan for the page query of `f`, one line per step.
    fn plan(conn: &Connection, f: &CallFilter) -> String {
        let limit = i64::from(f.limit) + 1;
        let (sql, args) = page_query(f, &limit);
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let steps = stmt
            .query_map(args.as_slice(), |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<rusqlite::Result<Vec<_>>>()
            .unwrap();
        steps.join("\n")
    }

    #[test]
    fn a_time_range_takes_its_keys_from_the_start_index_alone() {
        let (_d, conn) = temp_store();
        five_days(&conn);
        let day = CallFilter {
            limit: 50,
            since: Some("2026-11-02T00:00:00.000Z".into()),
            until: Some("2026-11-03T00:00:00.000Z".into()),
            ..CallFilter::default()
        };
        let plan = plan(&conn, &day);
        // The range's keys from the index alone: sorting the range's whole
        // rows instead was 4.5 times slower for a day 60 days back in a
        // store of 100,000 calls (BENCHMARKS.md).
        assert!(plan.contains("COVERING INDEX calls_by_start"), "{plan}");
        assert!(!plan.contains("SCAN calls"), "{plan}");
    }
}
