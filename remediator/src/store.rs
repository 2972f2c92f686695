//! The audit trail and the remediator's durable state: one SQLite table in
//! `--state-dir`, one row per decision (taken or not). Dedupe keys,
//! cooldowns and circuit state are rebuilt from it at start, so a restart of
//! the remediator does not repeat an action or forget a cooldown. Rows past
//! the retention period are pruned ([`Store::prune`]), except those that
//! state still needs.
//!
//! Before an action stops its first process, the processes it is about to
//! stop are written to a second table, `stopped` ([`Store::journal_stopped`]),
//! durably: a remediator that dies mid-action leaves the list of what it may
//! have left frozen, and the next start continues those processes
//! ([`Store::interrupted`]). The audit row itself holds a bounded list.
//!
//! [`InstanceKey`] is the alert instance rows are deduplicated by;
//! [`AuditError`] is a write to the trail that failed (in the store or
//! before reaching it).
//!
//! The calls here block; async callers run them in `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};

use crate::alert::RequestedAction;
use crate::outcome::Outcome;
use crate::task::TaskFailed;

/// File name of the database inside the state directory.
pub const DB_FILE: &str = "pidwarden-remediator.sqlite";

/// Processes listed in one audit row at most; the row also stores the total.
pub const ROW_PROCESSES_MAX: usize = 200;

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
    r#"
ALTER TABLE actions ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
UPDATE actions SET dry_run = 1 WHERE result = 'dry_run';
ALTER TABLE actions ADD COLUMN retry INTEGER NOT NULL DEFAULT 0;
ALTER TABLE actions ADD COLUMN process_count INTEGER NOT NULL DEFAULT 0;
UPDATE actions SET process_count = json_array_length(processes) WHERE json_valid(processes);
CREATE TABLE stopped (
    action_id  INTEGER NOT NULL,
    pid        INTEGER NOT NULL,
    start_time INTEGER NOT NULL,
    PRIMARY KEY (action_id, pid, start_time)
) WITHOUT ROWID;
"#,
    r#"
ALTER TABLE actions ADD COLUMN restraint_key TEXT;
"#,
    r#"
ALTER TABLE actions ADD COLUMN victim_memory_bytes INTEGER;
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
    /// Action: `kill-duplicates`, `restart`, none, or the unrecognised label value.
    pub action: RequestedAction,
    /// What became of it.
    pub result: Outcome,
    /// Why, in words.
    pub reason: String,
    /// True when this decision claimed the alert instance (an action was
    /// started for it; redeliveries are duplicates).
    pub claimed: bool,
    /// True when this decision opened the container's circuit breaker (the
    /// escalated restart, or the refusal when escalation is off).
    pub opened_circuit: bool,
    /// True when the decision was taken in dry-run mode (globally or by the
    /// container's label): its dedupe key and restraint are dry-run's own.
    pub dry_run: bool,
    /// True when the action failed without changing anything and released
    /// its claim: a redelivery of the alert instance may try again.
    pub retry: bool,
    /// Processes signalled (or, in dry-run, that would be): JSON array of at
    /// most [`ROW_PROCESSES_MAX`] entries.
    pub processes: serde_json::Value,
    /// How many processes the action concerned (may exceed the list).
    pub process_count: u64,
    /// When the background work finished (Unix milliseconds).
    pub finished_ms: Option<i64>,
    /// What restraint counts the decision for when it is not the container
    /// id: `pod:<uid>/<container>` for a Kubernetes container (see
    /// [`crate::restraint::Subject`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restraint_key: Option<String>,
    /// Resident memory (RSS, bytes) the copies a kill-duplicates killed
    /// held when it planned (in dry-run: the copies it would have killed);
    /// `None` for other actions and for rows written before it was recorded.
    #[serde(default)]
    pub victim_memory_bytes: Option<u64>,
}

/// The columns of a row that restraint is rebuilt from: no reasons, no
/// process lists.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    /// When the decision was taken (Unix ms).
    pub at_ms: i64,
    /// When its action finished (Unix ms).
    pub finished_ms: Option<i64>,
    /// Container id.
    pub container_id: String,
    /// Container name.
    pub container_name: String,
    /// The action.
    pub action: RequestedAction,
    /// Outcome.
    pub result: Outcome,
    /// Claimed the alert instance.
    pub claimed: bool,
    /// Opened the circuit.
    pub opened_circuit: bool,
    /// Dry-run decision.
    pub dry_run: bool,
    /// Released its claim after a failure that changed nothing.
    pub retry: bool,
    /// Restraint key, when not the container id.
    pub restraint_key: Option<String>,
}

/// An alert instance and mode with the failed attempts recorded for it.
/// An alert instance in one mode: what deduplication and retry counting
/// are keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceKey {
    /// The alert's fingerprint (clipped as stored).
    pub fingerprint: String,
    /// The alert's `startsAt` (clipped as stored).
    pub starts_at: String,
    /// Dry-run decisions are a mode of their own.
    pub dry_run: bool,
}

impl InstanceKey {
    /// The key of (fingerprint, startsAt) in a mode.
    pub fn new(
        fingerprint: impl Into<String>,
        starts_at: impl Into<String>,
        dry_run: bool,
    ) -> Self {
        InstanceKey {
            fingerprint: fingerprint.into(),
            starts_at: starts_at.into(),
            dry_run,
        }
    }
}

/// Failed attempts of one alert instance.
pub type Attempts = (InstanceKey, u32);

/// An action a previous run left pending, with the processes it journaled.
#[derive(Debug, Clone, PartialEq)]
pub struct Interrupted {
    /// Row id.
    pub id: i64,
    /// The action.
    pub action: RequestedAction,
    /// (pid, start time) of every process it was about to stop.
    pub stopped: Vec<(i32, u64)>,
}

/// The outcome of a pending row, for [`Store::finish`].
#[derive(Debug, Clone)]
pub struct Finish<'a> {
    /// Final outcome.
    pub result: Outcome,
    /// Why, in words.
    pub reason: &'a str,
    /// The bounded process list.
    pub processes: &'a serde_json::Value,
    /// How many processes the action concerned.
    pub process_count: u64,
    /// The action failed without changing anything: release the claim.
    pub retry: bool,
    /// When (Unix ms).
    pub finished_ms: i64,
    /// See [`Record::victim_memory_bytes`].
    pub victim_memory_bytes: Option<u64>,
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

const COLUMNS: &str = "id, at_ms, status, alertname, fingerprint, starts_at, container_id, container_name, action, result, reason, claimed, opened_circuit, processes, finished_ms, dry_run, retry, process_count, restraint_key, victim_memory_bytes";

fn outcome(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Outcome> {
    let text: String = r.get(i)?;
    Outcome::parse(&text).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("unknown result {text:?}").into(),
        )
    })
}

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
        action: RequestedAction::from_label(Some(&r.get::<_, String>(8)?)),
        result: outcome(r, 9)?,
        reason: r.get(10)?,
        claimed: r.get::<_, i64>(11)? != 0,
        opened_circuit: r.get::<_, i64>(12)? != 0,
        processes: serde_json::from_str(&processes).unwrap_or(serde_json::Value::Null),
        finished_ms: r.get(14)?,
        dry_run: r.get::<_, i64>(15)? != 0,
        retry: r.get::<_, i64>(16)? != 0,
        process_count: r.get::<_, i64>(17)?.max(0) as u64,
        restraint_key: r.get(18)?,
        victim_memory_bytes: r.get::<_, Option<i64>>(19)?.map(|v| v.max(0) as u64),
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

    /// Runs `f` as one transaction committed with `synchronous = FULL`:
    /// in WAL mode that fsyncs the log at the commit, so what `f` wrote
    /// survives a crash or power loss right after it returns. Every other
    /// write keeps `NORMAL` (durable at the next checkpoint): losing a
    /// refusal row or an outcome to a power cut costs an audit line, but a
    /// pending row or a journal of stopped processes that was lost would
    /// leave an action that is neither deduplicated nor recoverable, so
    /// those two are written before any signal and paid for with a fsync.
    fn durably<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let run = |conn: &mut Connection| -> rusqlite::Result<T> {
            conn.pragma_update(None, "synchronous", "FULL")?;
            let tx = conn.transaction()?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        let out = run(&mut conn);
        let restored = conn.pragma_update(None, "synchronous", "NORMAL");
        out.and_then(|v| restored.map(|_| v))
            .map_err(|source| StoreError::Sqlite {
                path: self.path.clone(),
                source,
            })
    }

    /// The `synchronous` setting in force (tests check it is restored).
    #[cfg(test)]
    fn synchronous(&self) -> Result<i64, StoreError> {
        self.with(|c| c.pragma_query_value(None, "synchronous", |r| r.get(0)))
    }

    /// Inserts a row (its `id` is ignored) and returns the new id. A pending
    /// row is written durably (see [`Store::durably`]).
    pub fn insert(&self, r: &Record) -> Result<i64, StoreError> {
        let write = |c: &Connection| {
            c.execute(
                "INSERT INTO actions (at_ms, status, alertname, fingerprint, starts_at, container_id, container_name, action, result, reason, claimed, opened_circuit, processes, finished_ms, dry_run, retry, process_count, restraint_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
                params![
                    r.at_ms,
                    r.status,
                    r.alertname,
                    r.fingerprint,
                    r.starts_at,
                    r.container_id,
                    r.container_name,
                    r.action.as_str(),
                    r.result.as_str(),
                    r.reason,
                    r.claimed as i64,
                    r.opened_circuit as i64,
                    r.processes.to_string(),
                    r.finished_ms,
                    r.dry_run as i64,
                    r.retry as i64,
                    r.process_count.min(i64::MAX as u64) as i64,
                    r.restraint_key
                ],
            )?;
            Ok(c.last_insert_rowid())
        };
        if r.result == Outcome::Pending {
            self.durably(|tx| write(tx))
        } else {
            self.with(write)
        }
    }

    /// Journals, durably, processes an action is about to stop (SIGSTOP):
    /// what a restart after a crash must continue.
    pub fn journal_stopped(&self, id: i64, procs: &[(i32, u64)]) -> Result<(), StoreError> {
        self.durably(|tx| {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO stopped (action_id, pid, start_time) VALUES (?1, ?2, ?3)",
            )?;
            for &(pid, start) in procs {
                st.execute(params![id, pid, start.min(i64::MAX as u64) as i64])?;
            }
            Ok(())
        })
    }

    /// Sets the outcome of a pending row and drops its journal of stopped
    /// processes. `processes` is bounded by the caller; `process_count` is
    /// the full count. `retry` releases the row's claim on its alert instance.
    pub fn finish(&self, id: i64, fin: &Finish<'_>) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE actions SET result = ?2, reason = ?3, processes = ?4, finished_ms = ?5, retry = ?6, process_count = ?7, victim_memory_bytes = ?8 WHERE id = ?1",
                params![
                    id,
                    fin.result.as_str(),
                    fin.reason,
                    fin.processes.to_string(),
                    fin.finished_ms,
                    fin.retry as i64,
                    fin.process_count.min(i64::MAX as u64) as i64,
                    fin.victim_memory_bytes.map(|v| v.min(i64::MAX as u64) as i64)
                ],
            )?;
            c.execute("DELETE FROM stopped WHERE action_id = ?1", [id])?;
            Ok(())
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

    /// The key columns of the rows at or after `since_ms`, oldest first
    /// (the rebuild source; no reason or process list is read).
    pub fn since(&self, since_ms: i64) -> Result<Vec<KeyRow>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT at_ms, finished_ms, container_id, container_name, action, result, claimed, opened_circuit, dry_run, retry, restraint_key
                 FROM actions WHERE at_ms >= ?1 ORDER BY id",
            )?;
            let rows = st.query_map([since_ms], |r| {
                Ok(KeyRow {
                    at_ms: r.get(0)?,
                    finished_ms: r.get(1)?,
                    container_id: r.get(2)?,
                    container_name: r.get(3)?,
                    action: RequestedAction::from_label(Some(&r.get::<_, String>(4)?)),
                    result: outcome(r, 5)?,
                    claimed: r.get::<_, i64>(6)? != 0,
                    opened_circuit: r.get::<_, i64>(7)? != 0,
                    dry_run: r.get::<_, i64>(8)? != 0,
                    retry: r.get::<_, i64>(9)? != 0,
                    restraint_key: r.get(10)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Alert instances (fingerprint, startsAt, dry-run) an action was
    /// started for and still claims: the dedupe keys. With `seen_since`
    /// (Unix ms), only instances with a row at or after it — the ones
    /// [`Store::prune`] with the same instant keeps; without, every instance
    /// ever claimed.
    pub fn claimed_instances(
        &self,
        seen_since: Option<i64>,
    ) -> Result<Vec<InstanceKey>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT DISTINCT a.fingerprint, a.starts_at, a.dry_run FROM actions AS a
                 WHERE a.claimed = 1 AND a.retry = 0 AND (?1 IS NULL OR {INSTANCE_SEEN_SINCE})"
            ))?;
            let rows = st.query_map([seen_since], |r| {
                Ok(InstanceKey::new(
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)? != 0,
                ))
            })?;
            rows.collect()
        })
    }

    /// Failed attempts that released their claim, per alert instance and
    /// mode (same `seen_since` as [`Store::claimed_instances`]).
    pub fn failed_attempts(&self, seen_since: Option<i64>) -> Result<Vec<Attempts>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(&format!(
                "SELECT a.fingerprint, a.starts_at, a.dry_run, count(*) FROM actions AS a
                 WHERE a.claimed = 1 AND a.retry = 1 AND (?1 IS NULL OR {INSTANCE_SEEN_SINCE})
                 GROUP BY a.fingerprint, a.starts_at, a.dry_run"
            ))?;
            let rows = st.query_map([seen_since], |r| {
                Ok((
                    InstanceKey::new(
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)? != 0,
                    ),
                    r.get::<_, i64>(3)?.clamp(0, u32::MAX as i64) as u32,
                ))
            })?;
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
            let n = self.with(|c| {
                c.execute(
                    &sql,
                    params![before_ms, Outcome::Pending.as_str(), batch as i64],
                )
            })?;
            total += n;
            if n < batch {
                return Ok(total);
            }
            std::thread::yield_now();
        }
    }

    /// Rows a previous process left pending, with the processes each
    /// journaled as about to be stopped.
    pub fn interrupted(&self) -> Result<Vec<Interrupted>, StoreError> {
        self.with(|c| {
            let mut st =
                c.prepare("SELECT id, action FROM actions WHERE result = ?1 ORDER BY id")?;
            let rows: Vec<(i64, String)> = st
                .query_map([Outcome::Pending.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let mut procs =
                c.prepare("SELECT pid, start_time FROM stopped WHERE action_id = ?1 ORDER BY pid")?;
            rows.into_iter()
                .map(|(id, action)| {
                    let action = RequestedAction::from_label(Some(&action));
                    let stopped = procs
                        .query_map([id], |r| {
                            Ok((r.get::<_, i32>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
                        })?
                        .collect::<rusqlite::Result<_>>()?;
                    Ok(Interrupted {
                        id,
                        action,
                        stopped,
                    })
                })
                .collect()
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

/// Writing to the audit trail failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The write could not run.
    #[error(transparent)]
    Task(#[from] TaskFailed),
    /// The store refused it.
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(fp: &str, result: Outcome) -> Record {
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
            result,
            reason: "r".into(),
            claimed: result == Outcome::Pending,
            opened_circuit: false,
            dry_run: false,
            retry: false,
            processes: serde_json::json!([]),
            process_count: 0,
            finished_ms: None,
            restraint_key: None,
            victim_memory_bytes: None,
        }
    }

    fn finish(s: &Store, id: i64, result: Outcome, retry: bool) {
        s.finish(
            id,
            &Finish {
                result,
                reason: "ok",
                processes: &serde_json::json!([{"pid": 5}]),
                process_count: 7,
                retry,
                finished_ms: 2000,
                victim_memory_bytes: Some(3 << 20),
            },
        )
        .unwrap();
    }

    #[test]
    fn round_trip_migrate_twice_and_finish() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let id = s.insert(&rec("f1", Outcome::Pending)).unwrap();
        s.insert(&rec("f2", Outcome::Cooldown)).unwrap();
        finish(&s, id, Outcome::Done, false);
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let r = s.get(id).unwrap().unwrap();
        assert_eq!(r.result, Outcome::Done);
        assert_eq!(r.processes[0]["pid"], 5);
        assert_eq!(r.process_count, 7);
        assert_eq!(r.victim_memory_bytes, Some(3 << 20));
        assert_eq!(s.recent(10).unwrap().len(), 2);
        assert_eq!(s.recent(10).unwrap()[0].fingerprint, "f2");
        assert_eq!(
            s.claimed_instances(None).unwrap(),
            vec![InstanceKey::new("f1", "2024-01-01T00:00:00Z", false)]
        );
        let v: i64 = s
            .with(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap();
        assert_eq!(v, MIGRATIONS.len() as i64);
    }

    #[test]
    fn a_store_written_before_memory_was_recorded_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        {
            // The schema as it was: every migration but the last.
            let c = Connection::open(dir.path().join(DB_FILE)).unwrap();
            for m in &MIGRATIONS[..MIGRATIONS.len() - 1] {
                c.execute_batch(m).unwrap();
            }
            c.pragma_update(None, "user_version", MIGRATIONS.len() as i64 - 1)
                .unwrap();
            c.execute(
                "INSERT INTO actions (at_ms, status, alertname, fingerprint, starts_at, container_id, container_name, action, result, reason, processes, finished_ms, process_count)
                 VALUES (1, 'firing', 'A', 'f0', 's', 'c', 'n', 'kill-duplicates', 'done', 'old', '[]', 2, 3)",
                [],
            )
            .unwrap();
        }
        let s = Store::open(dir.path()).unwrap();
        let old = &s.recent(10).unwrap()[0];
        assert_eq!((old.reason.as_str(), old.process_count), ("old", 3));
        assert_eq!(old.victim_memory_bytes, None);
        let json = serde_json::to_value(old).unwrap();
        assert!(json["victim_memory_bytes"].is_null(), "{json}");
        let id = s.insert(&rec("f1", Outcome::Pending)).unwrap();
        finish(&s, id, Outcome::Done, false);
        assert_eq!(
            s.get(id).unwrap().unwrap().victim_memory_bytes,
            Some(3 << 20)
        );
    }

    #[test]
    fn pending_rows_list_their_journal_until_finished() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let a = s.insert(&rec("f1", Outcome::Pending)).unwrap();
        let b = s.insert(&rec("f2", Outcome::Pending)).unwrap();
        s.journal_stopped(a, &[(20, 7), (10, 5)]).unwrap();
        s.journal_stopped(a, &[(10, 5), (30, u64::MAX)]).unwrap();
        assert_eq!(
            s.synchronous().unwrap(),
            1,
            "NORMAL restored after a durable write"
        );
        drop(s);
        let s = Store::open(dir.path()).unwrap();
        let got = s.interrupted().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].id, a);
        assert_eq!(
            got[0].stopped,
            vec![(10, 5), (20, 7), (30, i64::MAX as u64)]
        );
        assert_eq!(got[1].id, b);
        assert!(got[1].stopped.is_empty());
        finish(&s, a, Outcome::Failed, false);
        let got = s.interrupted().unwrap();
        assert_eq!(got.len(), 1);
        let left: i64 = s
            .with(|c| c.query_row("SELECT count(*) FROM stopped", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(left, 0, "a finished row keeps no journal");
    }

    #[test]
    fn released_claims_are_attempts_not_dedupe_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for _ in 0..2 {
            let id = s.insert(&rec("f1", Outcome::Pending)).unwrap();
            finish(&s, id, Outcome::Failed, true);
        }
        let dry = s
            .insert(&Record {
                dry_run: true,
                ..rec("f1", Outcome::Pending)
            })
            .unwrap();
        finish(&s, dry, Outcome::DryRun, false);
        let st = "2024-01-01T00:00:00Z".to_string();
        assert_eq!(
            s.claimed_instances(None).unwrap(),
            vec![InstanceKey::new("f1", st.clone(), true)]
        );
        assert_eq!(
            s.failed_attempts(None).unwrap(),
            vec![(InstanceKey::new("f1", st, false), 2)]
        );
    }

    #[test]
    fn prune_deletes_in_batches_and_uses_the_time_index() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        for i in 0..1203 {
            s.insert(&Record {
                at_ms: i,
                ..rec("old", Outcome::Ignored)
            })
            .unwrap();
        }
        let recent = s
            .insert(&Record {
                at_ms: 5000,
                ..rec("new", Outcome::Ignored)
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
