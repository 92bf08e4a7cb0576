//! Transcripts, written turn by turn as the call goes, and the providers
//! that served the call.

use rusqlite::{params, Connection};
use serde::Serialize;

/// One turn of a call.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Turn {
    pub speaker: String,
    pub text: String,
    pub at_ms: i64,
    /// For agent replies: end of the caller's speech → first reply packet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
}

const ADD: &str = "INSERT INTO turns (call, n, speaker, text, at_ms, latency_ms)
     VALUES (?1, (SELECT COALESCE(MAX(n), 0) + 1 FROM turns WHERE call = ?1), ?2, ?3, ?4, ?5)";

/// Appends a turn; its number follows the call's last one.
pub fn add(conn: &Connection, call: &str, t: &Turn) -> rusqlite::Result<()> {
    conn.prepare_cached(ADD)?
        .execute(params![call, t.speaker, t.text, t.at_ms, t.latency_ms])?;
    Ok(())
}

pub fn list(conn: &Connection, call: &str) -> rusqlite::Result<Vec<Turn>> {
    let mut stmt = conn.prepare_cached(
        "SELECT speaker, text, at_ms, latency_ms FROM turns WHERE call = ?1 ORDER BY n",
    )?;
    let rows = stmt.query_map([call], |r| {
        Ok(Turn {
            speaker: r.get(0)?,
            text: r.get(1)?,
            at_ms: r.get(2)?,
            latency_ms: r.get(3)?,
        })
    })?;
    rows.collect()
}

pub fn set_media(conn: &Connection, call: &str, media: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE calls SET media = ?2 WHERE id = ?1")?
        .execute(params![call, media])?;
    Ok(())
}

pub fn set_providers(conn: &Connection, call: &str, providers: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE calls SET providers = ?2 WHERE id = ?1")?
        .execute(params![call, providers])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{calls, NewCall};

    #[test]
    fn turns_come_back_in_order_per_call() {
        let (_dir, conn) = crate::store::test_util::temp_store();
        for id in ["a", "b"] {
            calls::insert(
                &conn,
                &NewCall {
                    id: id.into(),
                    call_id: format!("{id}@x"),
                    from: "1".into(),
                    to: "+15550100".into(),
                    started_at: "2026-01-01T00:00:00Z".into(),
                },
            )
            .unwrap();
        }
        let turn = |speaker: &str, text: &str| Turn {
            speaker: speaker.into(),
            text: text.into(),
            at_ms: 5,
            latency_ms: None,
        };
        add(&conn, "a", &turn("agent", "hello")).unwrap();
        add(&conn, "b", &turn("agent", "other call")).unwrap();
        add(&conn, "a", &turn("caller", "talk to a human")).unwrap();
        let a = list(&conn, "a").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].text.as_str(), a[1].text.as_str()),
            ("hello", "talk to a human")
        );
        assert!(list(&conn, "missing").unwrap().is_empty());
        // A turn for a call that does not exist is refused.
        conn.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        assert!(add(&conn, "nope", &turn("agent", "x")).is_err());
    }

    #[test]
    fn a_turn_insert_is_planned_once_not_at_every_turn() {
        let (_dir, conn) = crate::store::test_util::temp_store();
        let turn = Turn {
            speaker: "agent".into(),
            text: "hello".into(),
            at_ms: 5,
            latency_ms: None,
        };
        for i in 0..4 {
            let id = format!("c{i}");
            calls::insert(
                &conn,
                &NewCall {
                    id: id.clone(),
                    call_id: format!("{id}@x"),
                    from: "1".into(),
                    to: "+15550100".into(),
                    started_at: "2026-01-01T00:00:00Z".into(),
                },
            )
            .unwrap();
            add(&conn, &id, &turn).unwrap();
            add(&conn, &id, &turn).unwrap();
        }
        let stmt = conn.prepare_cached(ADD).unwrap();
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::Run), 8);
        // Without the planner stability guarantee SQLite re-prepares this
        // statement at each run after the first (7 here).
        assert_eq!(stmt.get_status(rusqlite::StatementStatus::RePrepare), 0);
        assert_eq!(list(&conn, "c3").unwrap().len(), 2);
    }
}
