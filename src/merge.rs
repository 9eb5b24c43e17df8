//! `isobench merge RUN_DIR... --out DIR`: one report over runs from several
//! hosts (a KVM host beside a TCG host, a laptop beside a CI runner).
//!
//! The merged directory is a run directory like any other, so the report
//! is the one [`crate::report::render`] writes for a single run: each
//! workload is renamed `<workload>@<host>` (the host's key: its
//! `ISOBENCH_HOST_LABEL`, else a fingerprint of its CPU and memory, see
//! [`crate::history::host_key`]), which groups every table and chart by host and
//! makes each environment's ratio to native the ratio to *its own host's*
//! native — the comparison that holds across machines. Beside the report,
//! `fleet.md` puts those ratios side by side, one column per host.
//!
//! Runs of different scenarios (name or [`crate::history::scenario_hash`])
//! are refused unless `allow_different`, naming each run's scenario. Two
//! runs from the same host get `#2`, `#3` ... after its key.

use crate::history::{host_key, scenario_hash};
use crate::meta::Meta;
use crate::record::{self, INSTANCES, RESULTS, RESULTS_HEADER, Record, RecordError, RunDirError};
use crate::report::{self, ReportError, fmt_value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// File name of the side-by-side table of ratios.
pub const FLEET: &str = "fleet.md";

/// Why a merge did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Fewer than one run directory.
    #[error("give at least one run directory to merge")]
    NoRuns,
    /// The runs ran different scenarios.
    #[error(
        "the runs ran different scenarios: {}; merge runs of one scenario, or pass --allow-different-scenarios to merge them anyway",
        list.join("; ")
    )]
    DifferentScenarios {
        /// `dir: name (hash)` of every run.
        list: Vec<String>,
    },
    /// A path is not a run directory.
    #[error(transparent)]
    Dir(#[from] RunDirError),
    /// A file of a run directory is unreadable or corrupt.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The output could not be written.
    #[error("writing {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The report failed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// `--out` holds a run (or other results) that merging would overwrite.
    #[error(
        "--out {}: {why}; give a new directory (or one an earlier `isobench merge` wrote)",
        path.display()
    )]
    WouldOverwrite {
        /// The output directory.
        path: PathBuf,
        /// What is there.
        why: String,
    },
}

impl MergeError {
    /// The exit code: 2 for every refusal and bad input.
    pub fn exit_code(&self) -> u8 {
        2
    }
}

/// One run to merge.
struct Input {
    dir: PathBuf,
    meta: Meta,
    records: Vec<Record>,
    instances: Vec<record::InstanceRecord>,
    host: String,
}

/// What [`merge`] wrote.
#[derive(Debug)]
pub struct Merged {
    /// The hosts, in the order given.
    pub hosts: Vec<String>,
    /// The side-by-side table (`fleet.md`).
    pub fleet: String,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

fn load(dir: &Path) -> Result<Input, MergeError> {
    record::check_run_dir(dir)?;
    let meta = Meta::load(dir)?;
    let records = record::read_results(&dir.join(RESULTS))?;
    let instances = record::read_instances(&dir.join(INSTANCES))?;
    Ok(Input {
        dir: dir.to_path_buf(),
        host: host_key(&meta.host),
        meta,
        records,
        instances,
    })
}

/// Merges run directories into `out` (created when missing) and renders
/// its report.
pub fn merge(dirs: &[PathBuf], out: &Path, allow_different: bool) -> Result<Merged, MergeError> {
    let mut inputs = dirs
        .iter()
        .map(|d| load(d))
        .collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() {
        return Err(MergeError::NoRuns);
    }
    let scenario = |i: &Input| {
        let name = crate::history::store::scenario_name(&i.meta);
        (name, scenario_hash(&i.meta))
    };
    let first = scenario(&inputs[0]);
    if !allow_different && inputs.iter().any(|i| scenario(i) != first) {
        let list = inputs
            .iter()
            .map(|i| {
                let (name, hash) = scenario(i);
                format!("{}: `{name}` ({})", i.dir.display(), &hash[..12])
            })
            .collect();
        return Err(MergeError::DifferentScenarios { list });
    }
    // Distinct host keys.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for i in &mut inputs {
        let n = seen.entry(i.host.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            i.host = format!("{}#{n}", i.host);
        }
    }
    refuse_to_overwrite(out, dirs)?;
    std::fs::create_dir_all(out).map_err(|source| MergeError::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let meta = merged_meta(&inputs);
    let rename = |w: &str, host: &str| format!("{w}@{host}");
    let mut csv_out = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(Vec::new());
    let mut jsonl = Vec::new();
    let csv_err = |e: csv::Error| MergeError::Write {
        path: out.join(RESULTS),
        source: std::io::Error::other(e),
    };
    csv_out.write_record(RESULTS_HEADER).map_err(csv_err)?;
    for i in &inputs {
        for r in &i.records {
            let mut r = r.clone();
            r.workload = rename(&r.workload, &i.host);
            csv_out.serialize(&r).map_err(csv_err)?;
        }
        for x in &i.instances {
            let mut x = x.clone();
            x.workload = rename(&x.workload, &i.host);
            x.log = i.dir.join(&x.log).display().to_string();
            jsonl.extend(serde_json::to_vec(&x).unwrap_or_default());
            jsonl.push(b'\n');
        }
    }
    let results = csv_out.into_inner().map_err(|e| MergeError::Write {
        path: out.join(RESULTS),
        source: std::io::Error::other(e.to_string()),
    })?;
    let fleet = fleet_table(&inputs);
    let meta_bytes = serde_json::to_vec_pretty(&meta).unwrap_or_default();
    for (name, bytes) in [
        (RESULTS, &results),
        (INSTANCES, &jsonl),
        (crate::meta::META, &meta_bytes),
        (FLEET, &fleet.clone().into_bytes()),
    ] {
        let path = out.join(name);
        record::write_file(&path, bytes).map_err(|source| MergeError::Write { path, source })?;
    }
    let rendered = report::render(out)?;
    let mut files: Vec<PathBuf> = [RESULTS, INSTANCES, crate::meta::META, FLEET]
        .iter()
        .map(|f| out.join(f))
        .collect();
    files.extend(rendered.files);
    Ok(Merged {
        hosts: inputs.iter().map(|i| i.host.clone()).collect(),
        fleet,
        files,
    })
}

/// Refuses an output directory that is one of the runs, or is not empty
/// and not an earlier merge's (whose `meta.json` names a `merge-of-…`
/// run): merging writes its results, meta and report there.
fn refuse_to_overwrite(out: &Path, dirs: &[PathBuf]) -> Result<(), MergeError> {
    let refuse = |why: String| {
        Err(MergeError::WouldOverwrite {
            path: out.to_path_buf(),
            why,
        })
    };
    let same = |d: &PathBuf| match (out.canonicalize(), d.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if dirs.iter().any(same) {
        return refuse("it is one of the runs being merged".into());
    }
    let meta = out.join(crate::meta::META);
    if meta.exists() {
        let run_id = std::fs::read(&meta)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v.get("run_id")?.as_str().map(str::to_string));
        return match run_id {
            Some(id) if id.starts_with("merge-of-") => Ok(()),
            Some(id) => refuse(format!("it holds run {id}")),
            None => refuse(format!(
                "it holds a {} that is not a merge's",
                crate::meta::META
            )),
        };
    }
    // Anything else there (a report, charts, the user's files) would be
    // mixed with or overwritten by the merge's own.
    if std::fs::read_dir(out).is_ok_and(|mut d| d.next().is_some()) {
        return refuse("it is not empty, and no earlier merge wrote it".into());
    }
    Ok(())
}

/// The merged `meta.json`: the first run's, with every workload renamed
/// per host, and a note per host saying what it was.
fn merged_meta(inputs: &[Input]) -> Meta {
    let mut meta = inputs[0].meta.clone();
    meta.run_id = format!("merge-of-{}-runs", inputs.len());
    meta.host.label = Some(
        inputs
            .iter()
            .map(|i| i.host.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    );
    // A TCG warning in any host's run must show.
    meta.accelerator = inputs
        .iter()
        .filter_map(|i| i.meta.accelerator.clone())
        .find(|a| a.accel == crate::env::vm::Accel::Tcg)
        .or_else(|| inputs.iter().find_map(|i| i.meta.accelerator.clone()));
    let mut workloads = Vec::new();
    meta.metrics.clear();
    meta.notes = vec![format!(
        "merged report of {} runs: each workload is named `<workload>@<host>`, and each ratio is to the same host's native; {FLEET} puts the hosts side by side",
        inputs.len()
    )];
    for i in inputs {
        let w = i.meta.scenario.get("workloads").and_then(|w| w.as_array());
        for entry in w.into_iter().flatten() {
            let mut entry = entry.clone();
            if let Some(name) = entry.get("name").and_then(|n| n.as_str()) {
                let renamed = format!("{name}@{}", i.host);
                entry["name"] = serde_json::Value::String(renamed);
            }
            workloads.push(entry);
        }
        for (k, v) in &i.meta.metrics {
            meta.metrics.insert(format!("{k}@{}", i.host), v.clone());
        }
        let h = &i.meta.host;
        meta.notes.push(format!(
            "host `{}`: run {} ({}), {} ({} CPUs, {} MiB), kernel {}, accelerator {}, status {}",
            i.host,
            i.meta.run_id,
            i.dir.display(),
            h.cpu_model,
            h.cores,
            h.memory_mib,
            h.kernel,
            i.meta
                .accelerator
                .as_ref()
                .map_or("none (no VM)", |a| a.accel.as_str()),
            i.meta.status
        ));
    }
    if let Some(map) = meta.scenario.as_object_mut() {
        map.insert("workloads".into(), serde_json::Value::Array(workloads));
    }
    meta
}

/// Every non-native series' ratio to its own host's native, one column per
/// host (Markdown).
fn fleet_table(inputs: &[Input]) -> String {
    type Key = (String, String, String);
    let mut rows: Vec<Key> = Vec::new();
    let mut cells: BTreeMap<(Key, usize), String> = BTreeMap::new();
    for (h, i) in inputs.iter().enumerate() {
        for s in report::summarize(&i.records) {
            let Some(r) = s.ratio_to_native else {
                continue;
            };
            let key = (
                s.workload.clone(),
                s.environment.to_string(),
                s.metric.clone(),
            );
            if !rows.contains(&key) {
                rows.push(key.clone());
            }
            let ci = s.ratio_ci95.map_or(String::new(), |c| {
                format!(" [{}, {}]", fmt_value(c.lo), fmt_value(c.hi))
            });
            cells.insert((key, h), format!("{r:.2}×{ci}"));
        }
    }
    let mut s = String::from("# Ratios to each host's own native\n\n");
    let _ = writeln!(
        s,
        "Median over the same host's native median, with its bootstrap 95% interval (from {} repetitions a side).\n",
        crate::stats::CI_MIN_N
    );
    s.push_str("| workload | environment | metric |");
    for i in inputs {
        let _ = write!(s, " {} |", report::cell(&i.host));
    }
    s.push_str("\n|---|---|---|");
    s.push_str(&"---|".repeat(inputs.len()));
    s.push('\n');
    for key in &rows {
        let _ = write!(
            s,
            "| {} | {} | {} |",
            report::cell(&key.0),
            report::cell(&key.1),
            report::cell(&key.2)
        );
        for h in 0..inputs.len() {
            let c = cells.get(&(key.clone(), h)).map_or("—", String::as_str);
            let _ = write!(s, " {c} |");
        }
        s.push('\n');
    }
    s
}

/// `isobench merge`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directories, one or more per host.
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Output directory (created when missing).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Merge runs of different scenarios too.
    #[arg(long)]
    pub allow_different_scenarios: bool,
}

/// Runs `isobench merge`.
pub fn main(args: Args) -> std::process::ExitCode {
    match merge(&args.dirs, &args.out, args.allow_different_scenarios) {
        Ok(m) => {
            crate::show_part!("{}", m.fleet);
            crate::show!(
                "\nmerged {} run(s) from host(s) {}: {}",
                args.dirs.len(),
                m.hosts.join(", "),
                args.out.join("report.md").display()
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            crate::say!("isobench: error: {e}");
            std::process::ExitCode::from(e.exit_code())
        }
    }
}
