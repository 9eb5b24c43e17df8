//! The history store: one SQLite file (`reports/history.sqlite` by default)
//! holding every run appended to it, with every raw repetition.
//!
//! Schema (versioned with SQLite's `user_version`, migrated forward by
//! [`MIGRATIONS`] when a store is opened):
//!
//! - `runs`: one row per run, keyed by its run id (so importing a run
//!   twice changes nothing): start time, status, git revision of the code
//!   under test, host key and fingerprint, scenario name and hash,
//!   accelerator, isobench version, the directory it came from and its
//!   whole `meta.json`.
//! - `series`: one row per (workload, environment, metric, unit,
//!   direction) ever seen. Environments are stored by name, so a store
//!   needs no change when isobench gains an environment.
//! - `observations`: one row per `results.csv` row (run, series,
//!   repetition, value), keyed by run, series and repetition; the run and
//!   the series by number, so a row costs a few bytes, not its names.
//!
//! The run directory stays the source of truth: a store that is locked,
//! damaged or made by a newer isobench is a clear error ([`HistoryError`]),
//! and the store can always be rebuilt with `isobench history import`.

use super::HistoryError;
use crate::meta::{Host, Meta};
use crate::record::{self, RESULTS};
use rusqlite::{Connection, ErrorCode, OpenFlags, params};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema, one migration per version: migration `i` takes a store from
/// version `i` to `i + 1`. Only ever append to this list.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, series, and the raw observations (a run and a series by
    // number: the names are stored once, not on every row).
    "CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        started TEXT NOT NULL,
        status TEXT NOT NULL,
        revision TEXT,
        host TEXT NOT NULL,
        host_fingerprint TEXT NOT NULL,
        scenario TEXT NOT NULL,
        scenario_hash TEXT NOT NULL,
        accel TEXT,
        isobench TEXT NOT NULL,
        source TEXT NOT NULL,
        imported TEXT NOT NULL,
        meta TEXT NOT NULL
    );
    CREATE TABLE series (
        id INTEGER PRIMARY KEY,
        workload TEXT NOT NULL,
        environment TEXT NOT NULL,
        metric TEXT NOT NULL,
        unit TEXT NOT NULL,
        better TEXT NOT NULL,
        UNIQUE (workload, environment, metric, unit, better)
    );
    CREATE TABLE observations (
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        series INTEGER NOT NULL REFERENCES series(id),
        repetition INTEGER NOT NULL,
        value REAL NOT NULL,
        PRIMARY KEY (run, series, repetition)
    ) WITHOUT ROWID;",
    // 2: a series is read across runs, and runs in time order.
    "CREATE INDEX observations_series ON observations (series);
    CREATE INDEX runs_started ON runs (started, run_id);",
];

/// The schema version this isobench writes.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// How long to wait for another process's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// An open history store.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

/// What [`Store::import`] did with a run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Imported {
    /// The run was added with this many observations.
    Added {
        /// Its run id.
        run_id: String,
        /// Rows of its `results.csv`.
        observations: usize,
    },
    /// The store already held this run; nothing changed.
    AlreadyThere {
        /// Its run id.
        run_id: String,
    },
}

/// A host's key in the store and in merged reports: the label it was given
/// (`ISOBENCH_HOST_LABEL`), else its [`fingerprint`].
pub fn host_key(host: &Host) -> String {
    host.label
        .as_deref()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map_or_else(|| fingerprint(host), str::to_string)
}

/// A short hash of what makes a machine the machine it is for a benchmark:
/// its CPU model, its logical CPUs and its memory in whole GiB (not the
/// kernel, whose update is a change the history should show in a series,
/// not a new series).
pub fn fingerprint(host: &Host) -> String {
    let text = format!(
        "{}\n{}\n{}",
        host.cpu_model,
        host.logical_cores.unwrap_or(host.cores),
        (host.memory_mib + 512) / 1024
    );
    format!(
        "host-{}",
        &crate::util::hex(&Sha256::digest(text.as_bytes()))[..10]
    )
}

/// SHA-256 of the validated scenario in `meta.json` (overrides applied),
/// without the path it was read from: two runs of the same scenario from
/// two checkouts hash the same.
pub fn scenario_hash(meta: &Meta) -> String {
    let mut scenario = meta.scenario.clone();
    if let Some(map) = scenario.as_object_mut() {
        map.remove("source");
    }
    let text = serde_json::to_string(&scenario).unwrap_or_default();
    crate::util::hex(&Sha256::digest(text.as_bytes()))
}

impl Store {
    /// Opens (creating it and its directory when missing) and migrates the
    /// store at `path`.
    pub fn open(path: &Path) -> Result<Store, HistoryError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| HistoryError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let sql = |e| sql_error(path, e);
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(sql)?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        Ok(store)
    }

    /// Opens the store only if it exists (for reading commands), read-only:
    /// a file that is not an isobench store (schema version 0: every store
    /// gets its version when it is made) is an error, left as it was. An
    /// older store of isobench's own is migrated first, as a writing
    /// command would.
    pub fn open_existing(path: &Path) -> Result<Store, HistoryError> {
        if !path.exists() {
            return Err(HistoryError::NoStore {
                path: path.to_path_buf(),
            });
        }
        let sql = |e| sql_error(path, e);
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sql)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        let found = store.version()?;
        if found == 0 {
            return Err(HistoryError::NotAStore {
                path: path.to_path_buf(),
            });
        }
        if found != schema_version() {
            // Older: migrated; newer: refused, unchanged (by `migrate`).
            drop(store);
            return Store::open(path);
        }
        Ok(store)
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for the queries of this module's siblings.
    pub(super) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// The store's schema version.
    pub fn version(&self) -> Result<i64, HistoryError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(|e| sql_error(&self.path, e))
    }

    /// Applies every migration the store lacks, in one transaction.
    fn migrate(&mut self) -> Result<(), HistoryError> {
        let found = self.version()?;
        let supported = schema_version();
        if found > supported {
            return Err(HistoryError::Newer {
                path: self.path.clone(),
                found,
                supported,
            });
        }
        if found == supported {
            return Ok(());
        }
        let path = self.path.clone();
        let sql = |e| sql_error(&path, e);
        let tx = self.conn.transaction().map_err(sql)?;
        for m in &MIGRATIONS[found as usize..] {
            tx.execute_batch(m).map_err(sql)?;
        }
        tx.pragma_update(None, "user_version", supported)
            .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Adds a run directory; a run already in the store is left as it is.
    /// `revision` is used when the run's `meta.json` names none.
    pub fn import(&mut self, dir: &Path, revision: Option<&str>) -> Result<Imported, HistoryError> {
        record::check_run_dir(dir)?;
        let meta = Meta::load(dir)?;
        let records = record::read_results(&dir.join(RESULTS))?;
        let path = self.path.clone();
        let sql = |e| sql_error(&path, e);
        let tx = self.conn.transaction().map_err(sql)?;
        let revision = meta.revision.as_deref().or(revision);
        let source = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let meta_text = serde_json::to_string(&meta).unwrap_or_default();
        let added = tx
            .execute(
                "INSERT OR IGNORE INTO runs (run_id, started, status, revision, host,
                 host_fingerprint, scenario, scenario_hash, accel, isobench, source,
                 imported, meta) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    meta.run_id,
                    meta.started,
                    meta.status.as_str(),
                    revision,
                    host_key(&meta.host),
                    fingerprint(&meta.host),
                    scenario_name(&meta),
                    scenario_hash(&meta),
                    meta.accelerator.as_ref().map(|a| a.accel.as_str()),
                    meta.isobench,
                    source.to_string_lossy(),
                    crate::util::now_utc(),
                    meta_text,
                ],
            )
            .map_err(sql)?;
        if added == 0 {
            return Ok(Imported::AlreadyThere {
                run_id: meta.run_id,
            });
        }
        let run = tx.last_insert_rowid();
        {
            let mut series = tx
                .prepare(
                    "INSERT INTO series (workload, environment, metric, unit, better)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT DO UPDATE SET unit = excluded.unit RETURNING id",
                )
                .map_err(sql)?;
            let mut insert = tx
                .prepare(
                    "INSERT INTO observations (run, series, repetition, value)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sql)?;
            let mut ids: std::collections::HashMap<(&str, &str, &str, &str, &str), i64> =
                std::collections::HashMap::new();
            for r in &records {
                let key = (
                    r.workload.as_str(),
                    r.environment.as_str(),
                    r.metric.as_str(),
                    r.unit.as_str(),
                    r.better.as_str(),
                );
                let id = match ids.get(&key) {
                    Some(&id) => id,
                    None => {
                        let id: i64 = series
                            .query_row(params![key.0, key.1, key.2, key.3, key.4], |row| row.get(0))
                            .map_err(sql)?;
                        ids.insert(key, id);
                        id
                    }
                };
                insert
                    .execute(params![run, id, r.repetition, r.value])
                    .map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)?;
        Ok(Imported::Added {
            run_id: meta.run_id,
            observations: records.len(),
        })
    }

    /// How many runs the store holds.
    pub fn run_count(&self) -> Result<usize, HistoryError> {
        self.conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(|e| sql_error(&self.path, e))
    }
}

/// The scenario's name from `meta.json`.
pub fn scenario_name(meta: &Meta) -> String {
    meta.scenario
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string()
}

/// Turns a SQLite error into the error that says what to do about it.
pub(super) fn sql_error(path: &Path, source: rusqlite::Error) -> HistoryError {
    let path = path.to_path_buf();
    match source.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            HistoryError::Locked { path, source }
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            HistoryError::Corrupt { path, source }
        }
        _ => HistoryError::Sqlite { path, source },
    }
}

#[cfg(test)]
mod tests {
    use super::super::synth::{self, Spec};
    use super::*;
    use crate::testutil::TempDir;

    #[test]
    fn importing_twice_changes_nothing() {
        let tmp = TempDir::new("hist-import");
        let dir = synth::write(&tmp, &Spec::nth(0)).unwrap();
        let mut store = Store::open(&tmp.join("h.sqlite")).unwrap();
        let first = store.import(&dir, None).unwrap();
        assert_eq!(
            first,
            Imported::Added {
                run_id: Spec::nth(0).run_id,
                observations: 2 * 2 * 2 * 6
            }
        );
        let size = std::fs::metadata(tmp.join("h.sqlite")).unwrap().len();
        let again = store.import(&dir, None).unwrap();
        assert!(matches!(again, Imported::AlreadyThere { .. }), "{again:?}");
        assert_eq!(store.run_count().unwrap(), 1);
        let rows: i64 = store
            .conn()
            .query_row("SELECT count(*) FROM observations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 48);
        assert_eq!(std::fs::metadata(tmp.join("h.sqlite")).unwrap().len(), size);
    }

    #[test]
    fn an_old_store_is_migrated_and_keeps_its_runs() {
        let tmp = TempDir::new("hist-migrate");
        let path = tmp.join("old.sqlite");
        {
            // A store as the first schema left it, with one run in it.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO runs (run_id, started, status, host, host_fingerprint, scenario,
                 scenario_hash, isobench, source, imported, meta) VALUES ('r1',
                 '2026-01-01T00:00:00Z', 'complete', 'h', 'h', 'quick', 'x', 'old', '/tmp',
                 '2026-01-01T00:00:00Z', '{}')",
                [],
            )
            .unwrap();
        }
        // Through a reading command's door: an older store of isobench's
        // own is migrated all the same.
        let store = Store::open_existing(&path).unwrap();
        assert_eq!(store.version().unwrap(), schema_version());
        assert_eq!(store.run_count().unwrap(), 1);
        let index: i64 = store
            .conn()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'observations_series'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(index, 1);
    }

    #[test]
    fn a_reading_command_leaves_a_foreign_database_as_it_was() {
        let tmp = TempDir::new("hist-foreign");
        let foreign = tmp.join("other.sqlite");
        Connection::open(&foreign)
            .unwrap()
            .execute_batch("CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('mine');")
            .unwrap();
        let before = std::fs::read(&foreign).unwrap();
        let e = Store::open_existing(&foreign).unwrap_err();
        assert!(matches!(e, HistoryError::NotAStore { .. }), "{e:?}");
        assert!(
            e.to_string()
                .contains("other.sqlite is an SQLite database but not an isobench history store"),
            "{e}"
        );
        assert_eq!(std::fs::read(&foreign).unwrap(), before, "the file changed");
        // A newer store is refused by reading commands too, unchanged.
        let newer = tmp.join("newer.sqlite");
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let before = std::fs::read(&newer).unwrap();
        let e = Store::open_existing(&newer).unwrap_err();
        assert!(matches!(e, HistoryError::Newer { found: 99, .. }), "{e:?}");
        assert_eq!(std::fs::read(&newer).unwrap(), before, "the file changed");
        // A store of isobench's own opens read-only for reading.
        let own = tmp.join("own.sqlite");
        Store::open(&own).unwrap();
        let s = Store::open_existing(&own).unwrap();
        assert_eq!(s.version().unwrap(), schema_version());
        assert!(s.conn().execute_batch("CREATE TABLE x (y)").is_err());
    }

    #[test]
    fn a_newer_damaged_or_locked_store_is_a_clear_error() {
        let tmp = TempDir::new("hist-errors");
        let newer = tmp.join("newer.sqlite");
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", 99)
            .unwrap();
        let e = Store::open(&newer).unwrap_err().to_string();
        assert!(e.contains("schema version 99, newer than the 2"), "{e}");

        let junk = tmp.join("junk.sqlite");
        std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
        let e = Store::open(&junk).unwrap_err();
        assert!(matches!(e, HistoryError::Corrupt { .. }), "{e:?}");
        let e = e.to_string();
        assert!(
            e.contains("junk.sqlite is damaged") && e.contains("history import"),
            "{e}"
        );

        let locked = tmp.join("locked.sqlite");
        Store::open(&locked).unwrap();
        let holder = Connection::open(&locked).unwrap();
        holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
        let dir = synth::write(&tmp, &Spec::nth(1)).unwrap();
        let t = std::time::Instant::now();
        let e = Store::open(&locked)
            .and_then(|mut s| s.import(&dir, None))
            .unwrap_err();
        assert!(matches!(e, HistoryError::Locked { .. }), "{e:?}");
        assert!(
            t.elapsed() >= BUSY_TIMEOUT / 2,
            "it waited for the lock first"
        );
        assert!(e.to_string().contains("--history PATH"), "{e}");
        holder.execute_batch("ROLLBACK").unwrap();
        let mut s = Store::open(&locked).unwrap();
        assert!(matches!(
            s.import(&dir, None).unwrap(),
            Imported::Added { .. }
        ));
    }

    #[test]
    fn hosts_are_keyed_by_label_else_fingerprint() {
        let mut host = crate::meta::Host::detect();
        host.label = None;
        let fp = fingerprint(&host);
        assert!(fp.starts_with("host-") && fp.len() == 15, "{fp}");
        assert_eq!(host_key(&host), fp);
        host.kernel = "another".into();
        assert_eq!(fingerprint(&host), fp, "a kernel update is not a new host");
        host.cpu_model = "another CPU".into();
        assert_ne!(fingerprint(&host), fp);
        host.label = Some(" ci-kvm ".into());
        assert_eq!(host_key(&host), "ci-kvm");
    }
}
