//! History: every run kept in one SQLite store, trends over runs with
//! their change points, and a page of trend charts.
//!
//! - [`store`]: the store, its schema and migrations, importing runs;
//! - [`changepoint`]: where a series shifted for real (the method is
//!   justified there);
//! - [`trend`]: series over runs, ratios to native, `history show`'s table;
//! - [`page`]: `history report`'s HTML page and charts.

pub mod changepoint;
pub mod command;
pub mod page;
pub mod store;
pub mod synth;
pub mod trend;

pub use store::{Imported, Store, fingerprint, host_key, scenario_hash};
pub use trend::{Filter, History};

use crate::record::{RecordError, RunDirError};
use std::path::{Path, PathBuf};

/// The store's file name, beside the run directories.
pub const STORE_FILE: &str = "history.sqlite";

/// A history store that cannot be used, or a run that cannot be added.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Another process holds the store's lock for longer than the wait.
    #[error(
        "history store {}: it is locked by another process ({source}); wait for that isobench to finish and retry, or use another store with --history PATH",
        path.display()
    )]
    Locked {
        /// The store.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Not a SQLite file, or a damaged one.
    #[error(
        "history store {} is damaged or not a SQLite database ({source}); move it aside and rebuild it from the run directories (the source of truth): mv {0} {0}.bad && isobench history import --history {0} reports/*/",
        path.display()
    )]
    Corrupt {
        /// The store.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// Made by a newer isobench.
    #[error(
        "history store {} has schema version {found}, newer than the {supported} this isobench knows; use a newer isobench, or another store with --history PATH",
        path.display()
    )]
    Newer {
        /// The store.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// This isobench's.
        supported: i64,
    },
    /// Any other SQLite failure.
    #[error("history store {}: {source}", path.display())]
    Sqlite {
        /// The store.
        path: PathBuf,
        /// SQLite's error.
        source: rusqlite::Error,
    },
    /// A reading command was given an SQLite file isobench did not make.
    #[error(
        "{} is an SQLite database but not an isobench history store (its schema version is 0); give the store's path with --history PATH (`isobench run` and `isobench history import` create one)",
        path.display()
    )]
    NotAStore {
        /// The file.
        path: PathBuf,
    },
    /// A reading command was given a store that does not exist.
    #[error(
        "history store {} does not exist; `isobench run` creates it (or `isobench history import DIR...`), or give its path with --history PATH",
        path.display()
    )]
    NoStore {
        /// The path.
        path: PathBuf,
    },
    /// A directory or file could not be made or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The path is not a run directory.
    #[error(transparent)]
    Dir(#[from] RunDirError),
    /// A file of the run directory is unreadable or corrupt.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A chart failed.
    #[error(transparent)]
    Chart(#[from] crate::report::chart::ChartError),
}

/// The git revision of the working directory (`git rev-parse HEAD`), when
/// it is a git work tree and git is installed; `None` otherwise.
pub fn git_revision(dir: &Path) -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "--verify", "HEAD"])
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !rev.is_empty() && rev.chars().all(|c| c.is_ascii_hexdigit()))
        .then_some(rev)
}

/// Workload name → kind from the `meta.json` of every run in the store
/// (the newest run's word wins), for the report's families.
pub fn workload_kinds(
    store: &Store,
) -> Result<std::collections::BTreeMap<String, String>, HistoryError> {
    let sql = |e| store::sql_error(store.path(), e);
    let mut stmt = store
        .conn()
        .prepare("SELECT meta FROM runs ORDER BY started, run_id")
        .map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    let mut kinds = std::collections::BTreeMap::new();
    while let Some(row) = rows.next().map_err(sql)? {
        let text: String = row.get(0).map_err(sql)?;
        if let Ok(meta) = serde_json::from_str::<crate::meta::Meta>(&text) {
            kinds.extend(crate::report::workload_kinds(&meta));
        }
    }
    Ok(kinds)
}
