//! The audit trail and the remediator's durable state: one SQLite table in
//! `--state-dir`, one row per decision (taken or not). Dedupe keys,
//! cooldowns and circuit state are rebuilt from it at start, so a restart of
//! the remediator does not repeat an action or forget a cooldown. Rows past
//! the retention period are pruned ([`Store::prune`]), except those that
//! state still needs.
//!
//! The calls here block; async callers run them in `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "pidwarden-remediator.sqlite";

/// Result stored while an action runs in the background.
pub const PENDING: &str = "pending";

/// Schema migrations, applied in order; `user_version` is the count applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE actions (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms          INTEGER NOT NULL,
    status         TEXT NOT NULL,
    alertname      TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,
    starts_at      TEXT NOT NULL,
    container_id   TEXT NOT NULL,
    container_name TEXT NOT NULL,
    action         TEXT NOT NULL,
    result         TEXT NOT NULL,
    reason         TEXT NOT NULL,
    claimed        INTEGER NOT NULL DEFAULT 0,
    opened_circuit INTEGER NOT NULL DEFAULT 0,
    processes      TEXT NOT NULL DEFAULT '[]',
    finished_ms    INTEGER
);
CREATE INDEX actions_instance ON actions (fingerprint, starts_at);
CREATE INDEX actions_container ON actions (container_id, at_ms);
"#,
    r#"
CREATE INDEX actions_at ON actions (at_ms);
"#,
];

/// Whether another row of the same alert instance (`a`) was written at or
/// after `?1`: Alertmanager still redelivers it, so its dedupe key is live.
const INSTANCE_SEEN_SINCE: &str = "EXISTS (SELECT 1 FROM actions AS b
    WHERE b.fingerprint = a.fingerprint AND b.starts_at = a.starts_at AND b.at_ms >= ?1)";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("state store {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// The state directory could not be created.
    #[error("creating state directory {path}: {source}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// One audit row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Row id.
    pub id: i64,
    /// When the decision was taken (Unix milliseconds).
    pub at_ms: i64,
    /// The alert's status: `firing` or `resolved`.
    pub status: String,
    /// The alert's `alertname`.
    pub alertname: String,
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The alert's `startsAt` as sent.
    pub starts_at: String,
    /// Full container id (empty when none was resolved).
    pub container_id: String,
    /// Container name.
    pub container_name: String,
    /// Action: `kill-duplicates`, `restart`, or the unrecognised label value.
    pub action: String,
    /// `done`, `dry_run`, `recovered`, `duplicate`, `cooldown`,
    /// `circuit_open`, `protected`, `unknown_container`, `failed`, or
    /// `pending` / `resolved` / `ignored`.
    pub result: String,
    /// Why, in words.
    pub reason: String,
    /// True when this decision claimed the alert instance (an action was
    /// started for it; redeliveries are duplicates).
    pub claimed: bool,
    /// True when this decision opened the container's circuit breaker (the
    /// escalated restart, or the refusal when escalation is off).
    pub opened_circuit: bool,
    /// Processes signalled (or, in dry-run, that would be): JSON array.
    pub processes: serde_json::Value,
    /// When the background work finished (Unix milliseconds).
    pub finished_ms: Option<i64>,
}

/// The store: one connection behind a mutex (SQLite serialises writers anyway).
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

const COLUMNS: &str = "id, at_ms, status, alertname, fingerprint, starts_at, container_id, container_name, action, result, reason, claimed, opened_circuit, processes, finished_ms";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    let processes: String = r.get(13)?;
    Ok(Record {
        id: r.get(0)?,
        at_ms: r.get(1)?,
        status: r.get(2)?,
        alertname: r.get(3)?,
        fingerprint: r.get(4)?,
        starts_at: r.get(5)?,
        container_id: r.get(6)?,
        container_name: r.get(7)?,
        action: r.get(8)?,
        result: r.get(9)?,
        reason: r.get(10)?,
        claimed: r.get::<_, i64>(11)? != 0,
        opened_circuit: r.get::<_, i64>(12)? != 0,
        processes: serde_json::from_str(&processes).unwrap_or(serde_json::Value::Null),
        finished_ms: r.get(14)?,
    })
}

impl Store {
    /// Opens (creating and migrating) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(DB_FILE);
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let conn = Connection::open(&path).map_err(err)?;
        conn.busy_timeout(Duration::from_secs(5)).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            conn.execute_batch(&format!(
                "BEGIN; {m}; PRAGMA user_version = {}; COMMIT;",
                i + 1
            ))
            .map_err(err)?;
        }
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// Inserts a row (its `id` is ignored) and returns the new id.
    pub fn insert(&self, r: &Record) -> Result<i64, StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO actions (at_ms, status, alertname, fingerprint, starts_at, container_id, container_name, action, result, reason, claimed, opened_circuit, processes, finished_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    r.at_ms,
                    r.status,
                    r.alertname,
                    r.fingerprint,
                    r.starts_at,
                    r.container_id,
                    r.container_name,
                    r.action,
                    r.result,
                    r.reason,
                    r.claimed as i64,
                    r.opened_circuit as i64,
                    r.processes.to_string(),
                    r.finished_ms
                ],
            )?;
            Ok(c.last_insert_rowid())
        })
    }

    /// Sets the outcome of a pending row.
    pub fn finish(
        &self,
        id: i64,
        result: &str,
        reason: &str,
        processes: &serde_json::Value,
        finished_ms: i64,
    ) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE actions SET result = ?2, reason = ?3, processes = ?4, finished_ms = ?5 WHERE id = ?1",
                params![id, result, reason, processes.to_string(), finished_ms],
            )
            .map(|_| ())
        })
    }

    /// One row by id.
    pub fn get(&self, id: i64) -> Result<Option<Record>, StoreError> {
        self.with(|c| {
            c.query_row(
                &format!("SELECT {COLUMNS} FROM actions WHERE id = ?1"),
                [id],
                row_to_record,
            )
            .optional()
        })
    }

    /// The most recent rows, newest first.
    pub fn recent(&self, limit: usize) -> Result<Vec<Record>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM actions ORDER BY id DESC LIMIT ?1"
            ))?;
            let rows = st.query_map([limit as i64], row_to_record)?;
            rows.collect()
        })
    }

    /// Rows at or after `since_ms`, oldest first (the rebuild source).
    pub fn since(&self, since_ms: i64) -> Result<Vec<Record>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT {COLUMNS} FROM actions WHERE at_ms >= ?1 ORDER BY id"
            ))?;
            let rows = st.query_map([since_ms], row_to_record)?;
            rows.collect()
        })
    }

    /// Alert instances (fingerprint, startsAt) an action was started for:
    /// the dedupe keys. With `seen_since` (Unix ms), only instances with a
    /// row at or after it — the ones [`Store::prune`] with the same instant
    /// keeps; without, every instance ever claimed.
    pub fn claimed_instances(
        &self,
        seen_since: Option<i64>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT DISTINCT a.fingerprint, a.starts_at FROM actions AS a
                 WHERE a.claimed = 1 AND (?1 IS NULL OR {INSTANCE_SEEN_SINCE})"
            ))?;
            let rows = st.query_map([seen_since], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Deletes the rows written before `before_ms` that no state needs, in
    /// batches of `batch` rows, each its own short write; the connection is
    /// free for the webhook between batches. Kept whatever their age: rows
    /// still pending, and claimed rows whose alert instance has a row at or
    /// after `before_ms` (a live dedupe key, see
    /// [`Store::claimed_instances`]). Callers pass an instant no later than
    /// the start of the restraint windows ([`crate::config::Settings::prune_before`]).
    /// Returns how many rows went.
    pub fn prune(&self, before_ms: i64, batch: usize) -> Result<usize, StoreError> {
        let batch = batch.max(1);
        let sql = format!(
            "DELETE FROM actions WHERE id IN (
                SELECT a.id FROM actions AS a
                WHERE a.at_ms < ?1 AND a.result <> ?2
                  AND NOT (a.claimed = 1 AND {INSTANCE_SEEN_SINCE})
                ORDER BY a.at_ms LIMIT ?3)"
        );
        let mut total = 0;
        loop {
            let n = self.with(|c| c.execute(&sql, params![before_ms, PENDING, batch as i64]))?;
            total += n;
            if n < batch {
                return Ok(total);
            }
            std::thread::yield_now();
        }
    }

    /// Marks rows left pending by a previous process as failed; returns how many.
    pub fn fail_interrupted(&self, now_ms: i64) -> Result<usize, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE actions SET result = 'failed', reason = reason || ' (interrupted: the remediator stopped before the action finished)', finished_ms = ?1 WHERE result = 'pending'",
                [now_ms],
            )
        })
    }

    /// Answers when the database does.
    pub fn ping(&self) -> Result<(), StoreError> {
        self.with(|c| {
            c.query_row("SELECT count(*) FROM actions", [], |r| r.get::<_, i64>(0))
                .map(|_| ())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fp: &str, result: &str) -> Record {
        Record {
            id: 0,
            at_ms: 1000,
            status: "firing".into(),
            alertname: "A".into(),
            fingerprint: fp.into(),
            starts_at: "2024-01-01T00:00:00Z".into(),
            container_id: "c".into(),
            container_name: "n".into(),
            action: "restart".into(),
            result: result.into(),
            reason: "r".into(),
            claimed: result == PENDING,
            opened_circuit: false,
            processes: serde_json::json!([]),
            finished_ms: None,
        }
    }

    #[test]
    fn round_trip_migrate_twice_and_finish() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let id = s.insert(&rec("f1", PENDING)).unwrap();
        s.insert(&rec("f2", "cooldown")).unwrap();
        s.finish(id, "done", "ok", &serde_json::json!([{"pid": 5}]), 2000)
            .unwrap();
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let r = s.get(id).unwrap().unwrap();
        assert_eq!(r.result, "done");
        assert_eq!(r.processes[0]["pid"], 5);
        assert_eq!(s.recent(10).unwrap().len(), 2);
        assert_eq!(s.recent(10).unwrap()[0].fingerprint, "f2");
        assert_eq!(
            s.claimed_instances(None).unwrap(),
            vec![("f1".to_string(), "2024-01-01T00:00:00Z".to_string())]
        );
        let v: i64 = s
            .with(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }

    #[test]
    fn interrupted_rows_become_failed() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let id = s.insert(&rec("f1", PENDING)).unwrap();
        assert_eq!(s.fail_interrupted(5).unwrap(), 1);
        let r = s.get(id).unwrap().unwrap();
        assert_eq!(r.result, "failed");
        assert!(r.reason.contains("interrupted"));
    }

    #[test]
    fn prune_deletes_in_batches_and_uses_the_time_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for i in 0..1203 {
            s.insert(&Record {
                at_ms: i,
                ..rec("old", "ignored")
            })
            .unwrap();
        }
        let recent = s
            .insert(&Record {
                at_ms: 5000,
                ..rec("new", "ignored")
            })
            .unwrap();
        assert_eq!(s.prune(5000, 500).unwrap(), 1203);
        assert_eq!(s.recent(10).unwrap().len(), 1);
        assert_eq!(s.recent(10).unwrap()[0].id, recent);
        let plan: Vec<String> = s
            .with(|c| {
                let mut st = c.prepare(
                    "EXPLAIN QUERY PLAN SELECT id FROM actions WHERE at_ms < 5000 ORDER BY at_ms",
                )?;
                let rows = st.query_map([], |r| r.get::<_, String>(3))?;
                rows.collect()
            })
            .unwrap();
        assert!(plan.iter().any(|p| p.contains("actions_at")), "{plan:?}");
    }
}
