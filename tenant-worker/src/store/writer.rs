//! The store's one writer: a dedicated thread that applies write commands in
//! the order they were sent and commits each burst of them together (group
//! commit, gathered as [`super::gather`] says), so the SIP task never waits
//! on fsync and never reorders a call's insert and its updates.

use std::sync::{Arc, Mutex};
use std::thread;

use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::{
    call_log, calls, documents, tokens, transcripts, CallFilter, CallPage, CallRecord, Document,
    NewCall, Outcome, StoreError, TokenInfo, Turn,
};

/// Most commands committed in one transaction.
pub(super) const MAX_BATCH: usize = 256;
/// Commands queued before senders wait (backpressure, never loss).
const QUEUE: usize = 4096;

/// A write to apply.
#[derive(Debug)]
pub enum Write {
    InsertCall(NewCall),
    Answered {
        id: String,
        at: String,
    },
    Ended {
        id: String,
        at: String,
        outcome: Outcome,
        duration_ms: i64,
    },
    AddToken {
        id: String,
        name: String,
        sha256_hex: String,
        expires_at: Option<String>,
    },
    RevokeToken {
        id: String,
    },
    /// One transcript turn of call record `call`.
    Turn {
        call: String,
        turn: Turn,
    },
    /// Which providers served the call (JSON).
    Providers {
        call: String,
        json: String,
    },
    /// The call's media quality (JSON).
    Media {
        call: String,
        json: String,
    },
    /// The escalation target that took the call.
    EscalatedTo {
        id: String,
        target: String,
    },
    /// Retention: up to `limit` calls that started before `before` and are
    /// over, with their transcripts.
    Purge {
        before: String,
        limit: usize,
    },
    /// A new version of a configuration document.
    PutDocument {
        name: &'static str,
        json: String,
    },
    /// Re-encrypt the store under a new key. Runs alone, after the writes
    /// queued before it are committed; the writes after it wait.
    Rekey(super::rekey::Rekey),
}

/// A write and, when the sender waits for it, where to report its commit.
pub(super) type Queued = (Write, Option<oneshot::Sender<Result<(), String>>>);

/// Cheap handle to the store, cloned into every task that needs it.
#[derive(Debug, Clone)]
pub struct Store {
    writes: mpsc::Sender<Queued>,
    reader: Arc<Mutex<Connection>>,
}

impl Store {
    /// Starts the writer thread on `writer` and reads through `reader`
    /// (two connections to the same file). Join the returned handle after
    /// dropping every `Store` clone: the writer then commits what is queued
    /// and closes its connection before the process exits (closing SQLCipher
    /// connections while `exit` tears OpenSSL down crashes).
    pub fn start(writer: Connection, reader: Connection) -> (Self, thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let reader = Arc::new(Mutex::new(reader));
        let handle = thread::Builder::new()
            .name("store-writer".into())
            .spawn({
                let reader = reader.clone();
                move || run_writer(writer, &reader, rx)
            })
            .expect("spawn store writer thread");
        let store = Self { writes: tx, reader };
        (store, handle)
    }

    /// Queues a write without waiting for its commit (waits only while the
    /// queue is full).
    pub async fn write(&self, w: Write) {
        if self.writes.send((w, None)).await.is_err() {
            tracing::error!("store writer has stopped; write lost");
        }
    }

    /// Queues a write and returns once it is committed to disk. Writes
    /// queued meanwhile share the same commit.
    pub async fn write_durable(&self, w: Write) -> Result<(), String> {
        self.write_committed(w).await.await
    }

    /// Queues a write (waiting only while the queue is full) and returns
    /// what resolves once it is committed, so a caller that must not wait
    /// for the disk (the user agent's task) can hand the wait to another
    /// task. Writes are applied in the order they were queued, whichever
    /// way they were sent.
    pub async fn write_committed(
        &self,
        w: Write,
    ) -> impl std::future::Future<Output = Result<(), String>> + Send + 'static {
        let (done, wait) = oneshot::channel();
        let queued = self.writes.send((w, Some(done))).await.is_ok();
        async move {
            if !queued {
                return Err("store writer stopped".to_string());
            }
            wait.await.map_err(|_| "store writer stopped".to_string())?
        }
    }

    /// Stores a token hash and returns once it is committed.
    #[cfg(test)]
    pub async fn add_token(
        &self,
        id: String,
        name: String,
        sha256_hex: String,
        expires_at: Option<String>,
    ) -> Result<(), String> {
        self.write_durable(Write::AddToken {
            id,
            name,
            sha256_hex,
            expires_at,
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn).map_err(StoreError::from)
        })
        .await
        .expect("store read task panicked")
    }

    pub async fn list_calls(&self, filter: CallFilter) -> Result<CallPage, StoreError> {
        self.read(move |c| call_log::list(c, &filter)).await
    }

    pub async fn get_call(&self, id: String) -> Result<Option<CallRecord>, StoreError> {
        self.read(move |c| call_log::get(c, &id)).await
    }

    pub async fn transcript(&self, id: String) -> Result<Vec<Turn>, StoreError> {
        self.read(move |c| transcripts::list(c, &id)).await
    }

    pub async fn document(&self, name: &'static str) -> Result<Option<Document>, StoreError> {
        self.read(move |c| documents::get(c, name)).await
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(tokens::list).await
    }

    /// A consistent copy of the whole store, encrypted under the same key,
    /// written to `path` (which must not exist). `sqlcipher_export` reads
    /// one snapshot, so calls being recorded meanwhile do not tear it.
    pub async fn export(&self, path: std::path::PathBuf) -> Result<(), StoreError> {
        self.read(move |c| super::export(c, &path)).await
    }

    /// How many calls retention would delete before `before`.
    pub async fn expired_calls(&self, before: String) -> Result<usize, StoreError> {
        self.read(move |c| calls::count_expired(c, &before)).await
    }
}

fn run_writer(mut conn: Connection, reader: &Mutex<Connection>, mut rx: mpsc::Receiver<Queued>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // A rekey that ended the last batch: it runs after that batch commits.
    let mut held: Option<Queued> = None;
    while let Some(first) = held.take().or_else(|| rx.blocking_recv()) {
        if let (Write::Rekey(job), done) = first {
            let result = super::rekey::swap(&mut conn, reader, &job);
            match &result {
                Ok(()) => tracing::info!("store re-encrypted under a new key"),
                Err(e) => tracing::error!(error = %e, "store rekey failed"),
            }
            if let Some(done) = done {
                let _ = done.send(result);
            }
            continue;
        }
        batch.push(first);
        held = super::gather::gather(&mut rx, &mut batch, super::gather::LINGER);
        let results = commit_batch(&conn, &batch);
        for ((_, done), result) in batch.drain(..).zip(results) {
            if let Err(e) = &result {
                tracing::error!(error = %e, "store write failed");
            }
            if let Some(done) = done {
                let _ = done.send(result.map_err(|e| e.to_string()));
            }
        }
    }
}

/// Commits the batch in one transaction; if any write fails, falls back to
/// one transaction per write so that one bad write loses no other.
fn commit_batch(conn: &Connection, batch: &[Queued]) -> Vec<rusqlite::Result<()>> {
    let together = || -> rusqlite::Result<()> {
        let tx = conn.unchecked_transaction()?;
        for (w, _) in batch {
            apply(&tx, w)?;
        }
        tx.commit()
    };
    if together().is_ok() {
        return batch.iter().map(|_| Ok(())).collect();
    }
    batch
        .iter()
        .map(|(w, _)| {
            let tx = conn.unchecked_transaction()?;
            apply(&tx, w)?;
            tx.commit()
        })
        .collect()
}

fn apply(conn: &Connection, w: &Write) -> rusqlite::Result<()> {
    match w {
        Write::InsertCall(c) => calls::insert(conn, c),
        Write::Answered { id, at } => calls::answered(conn, id, at),
        Write::Ended {
            id,
            at,
            outcome,
            duration_ms,
        } => calls::ended(conn, id, at, *outcome, *duration_ms),
        Write::AddToken {
            id,
            name,
            sha256_hex,
            expires_at,
            ..
        } => {
            let now = bulkhead_shared::time::now_rfc3339();
            tokens::add(conn, id, name, sha256_hex, &now, expires_at.as_deref())
        }
        Write::RevokeToken { id } => {
            tokens::revoke(conn, id, &bulkhead_shared::time::now_rfc3339()).map(|_| ())
        }
        Write::Turn { call, turn } => transcripts::add(conn, call, turn),
        Write::EscalatedTo { id, target } => calls::escalated_to(conn, id, target),
        Write::Providers { call, json } => transcripts::set_providers(conn, call, json),
        Write::Media { call, json } => transcripts::set_media(conn, call, json),
        Write::Purge { before, limit } => {
            let n = calls::purge(conn, before, *limit)?;
            if n > 0 {
                tracing::info!(calls = n, before = %before, "retention: deleted call records and transcripts");
            }
            Ok(())
        }
        Write::PutDocument { name, json } => {
            documents::put(conn, name, json, &bulkhead_shared::time::now_rfc3339())
        }
        // Never batched: run_writer takes it out of the queue on its own.
        Write::Rekey(_) => Err(rusqlite::Error::InvalidQuery),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_write_loses_no_other_write_in_its_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tenant.db");
        let open = || crate::store::open(&path, &[3; 32]).unwrap();
        let (store, writer) = Store::start(open(), open());
        store
            .add_token("t1".into(), "a".into(), "h1".into(), None)
            .await
            .unwrap();
        let call = |n: usize| NewCall {
            id: format!("c{n}"),
            call_id: "x".into(),
            from: "f".into(),
            to: "+1555".into(),
            started_at: "t".into(),
        };
        store.write(Write::InsertCall(call(1))).await;
        // Same token id again: a constraint violation, likely in the same batch.
        let dup = store.add_token("t1".into(), "b".into(), "h2".into(), None);
        store.write(Write::InsertCall(call(2))).await;
        assert!(dup.await.is_err());
        store
            .add_token("t3".into(), "c".into(), "h3".into(), None)
            .await
            .unwrap();
        let page = store
            .list_calls(CallFilter {
                limit: 10,
                ..CallFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(page.calls.len(), 2);
        // A read between writes must not pin an old snapshot.
        store
            .add_token("t4".into(), "d".into(), "h4".into(), None)
            .await
            .unwrap();
        store.write(Write::InsertCall(call(3))).await;
        store
            .add_token("t5".into(), "e".into(), "h5".into(), None)
            .await
            .unwrap();
        assert_eq!(
            store
                .list_calls(CallFilter {
                    limit: 10,
                    ..CallFilter::default()
                })
                .await
                .unwrap()
                .calls
                .len(),
            3
        );
        let live: Vec<_> = store
            .read(tokens::live)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.sha256_hex)
            .collect();
        assert_eq!(live, ["h1", "h3", "h4", "h5"]);
        drop(store);
        tokio::task::spawn_blocking(move || writer.join())
            .await
            .unwrap()
            .unwrap();
    }
}
