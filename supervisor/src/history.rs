//! The admin history: every admin action (who by peer uid, what, on what,
//! when, with what result), in the registry, hash-chained. Each entry's
//! hash covers the previous entry's hash and its own fields, so editing or
//! deleting an entry (or reordering entries) breaks the chain from there on,
//! and `bulkhead history --verify` names the first entry that no longer
//! fits. Bodies are never recorded: no key, password or token reaches it.

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The hash the first entry chains from.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS history (
    seq      INTEGER PRIMARY KEY,
    at       TEXT NOT NULL,
    peer_uid INTEGER NOT NULL,
    action   TEXT NOT NULL,
    target   TEXT NOT NULL,
    result   TEXT NOT NULL,
    hash     TEXT NOT NULL
);";

/// One recorded action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub seq: i64,
    pub at: String,
    pub peer_uid: u32,
    /// `tenant.add`, `tenant.shred`, `number.add`, ...
    pub action: String,
    pub target: String,
    /// `ok`, or `error: ` and the message the admin saw.
    pub result: String,
    pub hash: String,
}

/// What `--verify` found wrong first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("history entry {seq} does not fit the chain: {why}")]
pub struct Broken {
    pub seq: i64,
    pub why: String,
}

fn digest(prev: &str, e: &Event) -> String {
    let mut h = Sha256::new();
    // Length-prefixed fields: no two different entries hash the same text.
    for field in [
        prev,
        &e.seq.to_string(),
        &e.at,
        &e.peer_uid.to_string(),
        &e.action,
        &e.target,
        &e.result,
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends an entry chained to the last one, in one transaction.
pub fn append(
    conn: &Connection,
    peer_uid: u32,
    action: &str,
    target: &str,
    result: &str,
) -> rusqlite::Result<Event> {
    let tx = conn.unchecked_transaction()?;
    let (seq, prev): (i64, String) = tx.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1, COALESCE((SELECT hash FROM history ORDER BY seq DESC LIMIT 1), ?1) FROM history",
        [GENESIS],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut e = Event {
        seq,
        at: bulkhead_shared::time::now_rfc3339(),
        peer_uid,
        action: action.to_owned(),
        target: target.to_owned(),
        result: result.to_owned(),
        hash: String::new(),
    };
    e.hash = digest(&prev, &e);
    tx.execute(
        "INSERT INTO history (seq, at, peer_uid, action, target, result, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![e.seq, e.at, e.peer_uid, e.action, e.target, e.result, e.hash],
    )?;
    tx.commit()?;
    Ok(e)
}

/// Every entry, oldest first.
pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Event>> {
    let mut stmt = conn.prepare(
        "SELECT seq, at, peer_uid, action, target, result, hash FROM history ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(Event {
            seq: r.get(0)?,
            at: r.get(1)?,
            peer_uid: r.get(2)?,
            action: r.get(3)?,
            target: r.get(4)?,
            result: r.get(5)?,
            hash: r.get(6)?,
        })
    })?;
    rows.collect()
}

/// Records the last entry outside the database (written to a temporary
/// file, then renamed: never half-written).
pub fn write_head(path: &std::path::Path, last: &Event) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{} {}\n", last.seq, last.hash))?;
    std::fs::rename(&tmp, path)
}

pub fn read_head(path: &std::path::Path) -> Option<(i64, String)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (seq, hash) = text.trim().split_once(' ')?;
    Some((seq.parse().ok()?, hash.to_owned()))
}

/// Recomputes the chain: sequence numbers must run 1, 2, 3... and every
/// hash must be the digest of its entry and the previous hash; the last
/// entry must be the one `head` (from `history.head`) names, so entries
/// deleted from the end are found too.
pub fn verify(events: &[Event], head: Option<(i64, String)>) -> Result<(), Broken> {
    let mut prev = GENESIS.to_owned();
    for (i, e) in events.iter().enumerate() {
        let expected_seq = i as i64 + 1;
        if e.seq != expected_seq {
            return Err(Broken {
                seq: e.seq,
                why: format!("expected entry {expected_seq} here (an entry was deleted)"),
            });
        }
        if digest(&prev, e) != e.hash {
            return Err(Broken {
                seq: e.seq,
                why: "its hash does not match its fields and the previous entry (edited)".into(),
            });
        }
        prev = e.hash.clone();
    }
    let last = events.last().map(|e| e.seq).unwrap_or(0);
    match head {
        Some((seq, _)) if seq > last => Err(Broken {
            seq: last + 1,
            why: format!("history.head records {seq} entries; entries after {last} were deleted"),
        }),
        Some((seq, hash)) if seq == last && hash != prev => Err(Broken {
            seq,
            why: "it is not the entry history.head records (replaced)".into(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history() -> (Connection, Vec<Event>) {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        append(&conn, 0, "tenant.add", "clinic", "ok").unwrap();
        append(&conn, 0, "number.add", "clinic +15550100", "ok").unwrap();
        append(
            &conn,
            1000,
            "tenant.remove",
            "clinic",
            "error: no tenant clinic",
        )
        .unwrap();
        let events = list(&conn).unwrap();
        (conn, events)
    }

    #[test]
    fn an_intact_chain_verifies() {
        let (_c, events) = history();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2].peer_uid, 1000);
        assert_ne!(events[0].hash, events[1].hash);
        assert_eq!(verify(&events, None), Ok(()));
        let head = Some((3, events[2].hash.clone()));
        assert_eq!(verify(&events, head.clone()), Ok(()));
        // Entries cut from the end: only the head file can tell.
        assert_eq!(verify(&events[..2], head).unwrap_err().seq, 3);
    }

    #[test]
    fn an_edit_a_deletion_or_a_swap_is_found_and_named() {
        let (conn, _) = history();
        conn.execute("UPDATE history SET target = 'insurance' WHERE seq = 2", [])
            .unwrap();
        assert_eq!(verify(&list(&conn).unwrap(), None).unwrap_err().seq, 2);

        let (conn, _) = history();
        conn.execute("DELETE FROM history WHERE seq = 2", [])
            .unwrap();
        let err = verify(&list(&conn).unwrap(), None).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(err.why.contains("deleted"), "{err}");

        // Rewriting an entry's hash to fit its new fields breaks the next one.
        let (conn, mut events) = history();
        events[0].result = "error: forged".into();
        events[0].hash = digest(GENESIS, &events[0]);
        conn.execute(
            "UPDATE history SET result = ?1, hash = ?2 WHERE seq = 1",
            params![events[0].result, events[0].hash],
        )
        .unwrap();
        assert_eq!(verify(&list(&conn).unwrap(), None).unwrap_err().seq, 2);
    }

    #[test]
    fn field_boundaries_are_part_of_the_hash() {
        let a = Event {
            seq: 1,
            at: "t".into(),
            peer_uid: 0,
            action: "ab".into(),
            target: "c".into(),
            result: "ok".into(),
            hash: String::new(),
        };
        let b = Event {
            action: "a".into(),
            target: "bc".into(),
            ..a.clone()
        };
        assert_ne!(digest(GENESIS, &a), digest(GENESIS, &b));
    }
}
