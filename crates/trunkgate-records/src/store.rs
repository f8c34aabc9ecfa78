//! The record store: one SQLite file in WAL mode. The writer thread ([`crate::writer`])
//! holds the only writing connection and commits batches; readers (the admin API) open
//! their own read-only connections, which WAL lets run beside the writer without blocking
//! it. `synchronous = NORMAL`: a committed batch survives a crash of the process (it is in
//! the WAL, in the kernel's page cache); only a power loss can take the last commits.
//! Retention: records older than `keep` are deleted, then the oldest until the live pages
//! fit in `max_size` (with `auto_vacuum = INCREMENTAL` the file shrinks too).

use crate::record::{CallRecord, Direction};
use rusqlite::{Connection, OpenFlags, params};
use std::path::Path;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("record store {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("record store {path}: cannot create its directory: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("record store {path} is damaged ({detail}); move it aside and restart")]
    Damaged { path: String, detail: String },
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS calls (
    id INTEGER PRIMARY KEY,
    call_id TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    answer_ms INTEGER,
    end_ms INTEGER NOT NULL,
    direction TEXT NOT NULL,
    trunk TEXT,
    route TEXT,
    pbx_node TEXT,
    caller TEXT NOT NULL,
    callee TEXT NOT NULL,
    code INTEGER NOT NULL,
    first_provisional_ms INTEGER,
    setup_ms INTEGER,
    duration_ms INTEGER NOT NULL,
    failovers INTEGER NOT NULL,
    attempts TEXT NOT NULL,
    end_reason TEXT NOT NULL,
    reject TEXT,
    transfer INTEGER NOT NULL,
    media TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_start ON calls(start_ms);
CREATE INDEX IF NOT EXISTS calls_end ON calls(end_ms);
";

/// Records deleted by one retention statement, and statements per [`Store::retain`].
const RETAIN_CHUNK: i64 = 5000;
const RETAIN_PASSES: usize = 10;

/// A connection to the record store.
pub struct Store {
    conn: Connection,
    path: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Open (creating it and its directory if needed) for writing, and check it: a store
    /// that fails SQLite's `quick_check` is refused with what to do.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
                path: shown.clone(),
                source,
            })?;
        }
        let conn = Connection::open(path).map_err(|source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        })?;
        let store = Store { conn, path: shown };
        // auto_vacuum only takes effect on a new, empty database: set it before the schema.
        store
            .conn
            .execute_batch(
                "PRAGMA auto_vacuum = INCREMENTAL;
                 PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA busy_timeout = 5000;",
            )
            .map_err(|e| store.err(e))?;
        store.conn.execute_batch(SCHEMA).map_err(|e| store.err(e))?;
        let check: String = store
            .conn
            .query_row("PRAGMA quick_check", [], |r| r.get(0))
            .map_err(|e| store.err(e))?;
        if check != "ok" {
            return Err(StoreError::Damaged {
                path: store.path.clone(),
                detail: check,
            });
        }
        Ok(store)
    }

    /// Open an existing store read-only (the admin API's queries).
    pub fn open_read(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StoreError::Sqlite {
            path: shown.clone(),
            source,
        })?;
        let store = Store { conn, path: shown };
        store
            .conn
            .execute_batch("PRAGMA busy_timeout = 5000;")
            .map_err(|e| store.err(e))?;
        Ok(store)
    }

    /// Insert `records` in one transaction.
    pub fn insert(&mut self, records: &[CallRecord]) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO calls (call_id, start_ms, answer_ms, end_ms, direction, trunk,
                     route, pbx_node, caller, callee, code, first_provisional_ms, setup_ms,
                     duration_ms, failovers, attempts, end_reason, reject, transfer, media)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15,
                     ?16, ?17, ?18, ?19, ?20)",
                )
                .map_err(err)?;
            for r in records {
                let attempts = serde_json::to_string(&r.attempts).unwrap_or_else(|_| "[]".into());
                let media = serde_json::to_string(&r.media).unwrap_or_else(|_| "[]".into());
                stmt.execute(params![
                    r.call_id,
                    r.start_ms,
                    r.answer_ms,
                    r.end_ms,
                    r.direction.as_str(),
                    r.trunk,
                    r.route,
                    r.pbx_node,
                    r.caller,
                    r.callee,
                    r.code,
                    r.first_provisional_ms,
                    r.setup_ms,
                    r.duration_ms,
                    r.failovers() as i64,
                    attempts,
                    r.end_reason,
                    r.reject,
                    r.transfer,
                    media,
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Records that were up at any time from `since_ms` on (ended at or after it), oldest
    /// first; only trunk `trunk`'s when given; at most `limit`.
    pub fn query(
        &self,
        since_ms: i64,
        trunk: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CallRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT call_id, start_ms, answer_ms, end_ms, direction, trunk, route, pbx_node,
                 caller, callee, code, first_provisional_ms, setup_ms, duration_ms, attempts,
                 end_reason, reject, transfer, media FROM calls
                 WHERE end_ms >= ?1 AND (?2 IS NULL OR trunk = ?2)
                 ORDER BY start_ms, id LIMIT ?3",
            )
            .map_err(|e| self.err(e))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map(params![since_ms, trunk, limit], |row| {
                let direction: String = row.get(4)?;
                let attempts: String = row.get(14)?;
                let media: String = row.get(18)?;
                Ok(CallRecord {
                    call_id: row.get(0)?,
                    start_ms: row.get(1)?,
                    answer_ms: row.get(2)?,
                    end_ms: row.get(3)?,
                    direction: Direction::parse(&direction).unwrap_or(Direction::Outbound),
                    trunk: row.get(5)?,
                    route: row.get(6)?,
                    pbx_node: row.get(7)?,
                    caller: row.get(8)?,
                    callee: row.get(9)?,
                    code: row.get(10)?,
                    first_provisional_ms: row.get(11)?,
                    setup_ms: row.get(12)?,
                    duration_ms: row.get(13)?,
                    attempts: serde_json::from_str(&attempts).unwrap_or_default(),
                    end_reason: row.get(15)?,
                    reject: row.get(16)?,
                    transfer: row.get(17)?,
                    media: serde_json::from_str(&media).unwrap_or_default(),
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }

    /// Number of records.
    pub fn count(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(|e| self.err(e))
    }

    /// Bytes in use by live pages (the file may be larger until it is vacuumed).
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let get = |pragma: &str| -> Result<i64, StoreError> {
            self.conn
                .query_row(pragma, [], |r| r.get::<_, i64>(0))
                .map_err(|e| self.err(e))
        };
        let pages = get("PRAGMA page_count")? - get("PRAGMA freelist_count")?;
        Ok(u64::try_from(pages.max(0) * get("PRAGMA page_size")?).unwrap_or(0))
    }

    /// Delete records that ended before `now_ms - keep` (at most 50,000 per call), then the
    /// oldest ones until the live data fits in `max_size` bytes; give the freed pages back to
    /// the file system. Returns the number deleted.
    pub fn retain(
        &mut self,
        now_ms: i64,
        keep: Duration,
        max_size: u64,
    ) -> Result<u64, StoreError> {
        let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
        // In chunks (a bounded time per call; the rest goes on the next minute): the writer
        // thread does this between batches, and its queue must not fill meanwhile.
        let mut deleted = 0u64;
        for _ in 0..RETAIN_PASSES {
            let n = self
                .conn
                .execute(
                    "DELETE FROM calls WHERE id IN \
                     (SELECT id FROM calls WHERE end_ms < ?1 ORDER BY end_ms LIMIT ?2)",
                    params![now_ms.saturating_sub(keep_ms), RETAIN_CHUNK],
                )
                .map_err(|e| self.err(e))? as u64;
            deleted += n;
            if n < RETAIN_CHUNK as u64 {
                break;
            }
        }
        // Over the size bound: drop the oldest records, as many as the excess holds at the
        // mean record size (plus a tenth), in a few bounded passes.
        for _ in 0..8 {
            let live = self.live_bytes()?;
            if live <= max_size {
                break;
            }
            let total = self.count()?;
            if total == 0 {
                break;
            }
            let per_record = (live / total).max(1);
            let excess = (live - max_size) / per_record;
            let chunk = (excess + excess / 10 + 1).min(total);
            deleted += self
                .conn
                .execute(
                    "DELETE FROM calls WHERE id IN (SELECT id FROM calls ORDER BY end_ms, id LIMIT ?1)",
                    params![i64::try_from(chunk).unwrap_or(i64::MAX)],
                )
                .map_err(|e| self.err(e))? as u64;
        }
        if deleted > 0 {
            self.conn
                .execute_batch("PRAGMA incremental_vacuum;")
                .map_err(|e| self.err(e))?;
        }
        Ok(deleted)
    }

    /// SQLite's full `integrity_check`: `"ok"` for a sound file.
    pub fn integrity(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::Attempt;

    pub(crate) fn record(i: i64, trunk: &str) -> CallRecord {
        CallRecord {
            call_id: format!("call-{i}"),
            start_ms: 1_000_000 + i * 1000,
            answer_ms: Some(1_000_500 + i * 1000),
            end_ms: 1_002_000 + i * 1000,
            direction: Direction::Outbound,
            trunk: Some(trunk.to_owned()),
            route: Some("default".to_owned()),
            pbx_node: None,
            caller: "4930111".to_owned(),
            callee: "4940222".to_owned(),
            code: 200,
            first_provisional_ms: Some(20),
            setup_ms: Some(500),
            duration_ms: 1500,
            attempts: vec![Attempt {
                to: trunk.to_owned(),
                offset_ms: 1,
                duration_ms: 499,
                outcome: "200".to_owned(),
                first_provisional_ms: Some(19),
                failover: false,
            }],
            end_reason: "bye-caller".to_owned(),
            reject: None,
            transfer: false,
            media: Vec::new(),
        }
    }

    pub(crate) fn temp(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("trunkgate-records-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("records.sqlite")
    }

    #[test]
    fn records_round_trip_and_filter_by_trunk_and_time() {
        let path = temp("roundtrip");
        let mut store = Store::open(&path).unwrap();
        let records: Vec<CallRecord> = (0..10)
            .map(|i| record(i, if i % 2 == 0 { "a" } else { "b" }))
            .collect();
        store.insert(&records).unwrap();
        assert_eq!(store.count().unwrap(), 10);
        let back = store.query(0, None, 100).unwrap();
        assert_eq!(back, records);
        let a = store.query(0, Some("a"), 100).unwrap();
        assert_eq!(a.len(), 5);
        // Ended at or after the 8th record's end.
        let late = store.query(records[7].end_ms, None, 100).unwrap();
        assert_eq!(late.len(), 3);
        assert_eq!(store.query(0, None, 2).unwrap().len(), 2);
        // A reader beside the writer.
        let reader = Store::open_read(&path).unwrap();
        assert_eq!(reader.count().unwrap(), 10);
        assert_eq!(store.integrity().unwrap(), "ok");
    }

    #[test]
    fn retention_by_age_and_size() {
        let path = temp("retention");
        let mut store = Store::open(&path).unwrap();
        let records: Vec<CallRecord> = (0..2000).map(|i| record(i, "a")).collect();
        store.insert(&records).unwrap();
        let now = records[1999].end_ms;
        // Keep the last 100 s: records ending within it stay.
        let deleted = store
            .retain(now, Duration::from_secs(100), u64::MAX)
            .unwrap();
        // (inclusive: the one that ended exactly 100 s ago stays)
        assert_eq!(deleted, 1899);
        assert_eq!(store.count().unwrap(), 101);
        // Size: refill, then bound the live pages to 64 KiB.
        store.insert(&records).unwrap();
        store
            .retain(now, Duration::from_secs(86_400 * 365), 64 * 1024)
            .unwrap();
        assert!(store.live_bytes().unwrap() <= 64 * 1024);
        let left = store.query(0, None, 10_000).unwrap();
        assert!(!left.is_empty());
        // The newest survive.
        assert_eq!(left.last().map(|r| r.end_ms), Some(now));
    }

    #[test]
    fn a_damaged_file_is_refused_with_its_path() {
        let path = temp("damaged");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            b"this is not a database, just sixty-odd bytes of text....",
        )
        .unwrap();
        let err = Store::open(&path).unwrap_err().to_string();
        assert!(err.contains("records.sqlite"), "{err}");
    }
}
