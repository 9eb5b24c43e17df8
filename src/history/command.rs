//! The `isobench history` command line: import, show, report.

use super::changepoint::Settings;
use super::{Filter, HistoryError, Imported, Store, page};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The store `history` commands use unless `--history` says otherwise.
pub const DEFAULT_STORE: &str = "reports/history.sqlite";

/// `isobench history`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The history store (SQLite file).
    #[arg(long = "history", value_name = "PATH", default_value = DEFAULT_STORE, global = true)]
    pub store: PathBuf,
    #[command(subcommand)]
    pub action: Action,
}

/// What to do with the store.
#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Add run directories (a run already in the store is left alone).
    Import {
        /// Run directories.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Git revision to record for runs whose meta.json names none.
        #[arg(long, value_name = "REV")]
        revision: Option<String>,
    },
    /// A trend table per series: median and interval per run, change from
    /// the previous and from the first, ratio to native, change points.
    Show {
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// An HTML page with a trend chart (PNG and SVG) per series and a
    /// ratio-to-native chart per family.
    Report {
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

/// Which series.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only this workload.
    #[arg(long, value_name = "W")]
    workload: Option<String>,
    /// Only this environment (native, container, vm, ...).
    #[arg(long, value_name = "E")]
    env: Option<String>,
    /// Only this metric.
    #[arg(long, value_name = "M")]
    metric: Option<String>,
    /// Only this host (its label or fingerprint).
    #[arg(long, value_name = "H")]
    host: Option<String>,
    /// Only the last N runs of each series.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    last: Option<u64>,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        Filter {
            workload: self.workload.clone(),
            env: self.env.clone(),
            metric: self.metric.clone(),
            host: self.host.clone(),
            last: self.last.map(|n| n as usize),
        }
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    crate::say!("isobench: error: {message}");
    ExitCode::from(2)
}

/// Runs `isobench history`.
pub fn main(args: Args) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => fail(e),
    }
}

fn run(args: Args) -> Result<ExitCode, HistoryError> {
    match args.action {
        Action::Import { dirs, revision } => {
            let mut store = Store::open(&args.store)?;
            for dir in &dirs {
                match store.import(dir, revision.as_deref())? {
                    Imported::Added {
                        run_id,
                        observations,
                    } => crate::show!(
                        "added {run_id} ({observations} observations) from {}",
                        dir.display()
                    ),
                    Imported::AlreadyThere { run_id } => {
                        crate::show!("{run_id} is already in the store; unchanged")
                    }
                }
            }
            crate::show!("{}: {} run(s)", args.store.display(), store.run_count()?);
        }
        Action::Show { filter } => {
            let store = Store::open_existing(&args.store)?;
            let h = store.history(&filter.filter(), &Settings::default())?;
            crate::show_part!("{}", h.table());
        }
        Action::Report { out, filter } => {
            let started = std::time::Instant::now();
            let written = report(&args.store, &out, &filter.filter())?;
            for f in &written.files {
                if f.extension().is_some_and(|e| e != "png" && e != "svg") {
                    crate::show!("wrote {}", f.display());
                }
            }
            crate::show!(
                "wrote {} files in {:.1} s",
                written.files.len(),
                started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes the history page of the store at `store` into `out`.
pub fn report(store: &Path, out: &Path, filter: &Filter) -> Result<page::Written, HistoryError> {
    let store_handle = Store::open_existing(store)?;
    let h = store_handle.history(filter, &Settings::default())?;
    let kinds = super::workload_kinds(&store_handle)?;
    page::write(&h, &kinds, store, out)
}

/// What `isobench run` does at its end: appends the run to the store. A
/// failure is a warning naming the store and the fix; the run directory
/// stays the source of truth.
pub fn append_run(store: &Path, dir: &Path) -> Result<(), String> {
    let fix = |e: HistoryError| {
        format!(
            "warning: the run was not added to the history store: {e}. The run directory {} is complete; add it later with `isobench history import --history {} {}`, or run with --no-history",
            dir.display(),
            store.display(),
            dir.display()
        )
    };
    let mut s = Store::open(store).map_err(fix)?;
    s.import(dir, None).map_err(fix)?;
    Ok(())
}
