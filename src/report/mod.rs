//! Reports: everything a run directory shows, rendered from its records.
//!
//! [`render`] reads `results.csv`, `instances.jsonl`, `meta.json` and (for
//! the charts over time, when it is there) `samples.csv`, and writes `summary.json`, `report.md`, `report.html`, `bmf.json`, the
//! github-action-benchmark files and the charts. It depends on nothing but
//! those files, so `isobench report DIR` re-renders an old or an interrupted
//! run the same way. The text outputs are [`Exporter`]s that turn the data
//! into bytes without doing I/O; [`render`] writes them.
//!
//! Series are grouped into sections by [`family`]; [`figures`] decides the
//! charts of each section.

pub mod chart;
pub mod claims;
pub mod dashboard;
pub mod family;
pub mod figures;
pub mod html;
pub mod kernels;
pub mod markdown;
pub mod network;
pub mod runtimes;
pub mod samples;
pub mod summary;

use crate::env::EnvKind;
use crate::meta::Meta;
use crate::record::{self, INSTANCES, InstanceRecord, RESULTS, Record, RecordError, RunDirError};
use crate::stats::{self, Interval, Summary};
use crate::workload::Better;
use family::Family;
pub use markdown::{Markdown, cell, code};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
pub use summary::SummaryJson;

/// Seed of the bootstrap of ratios, fixed so re-rendering gives the same report.
pub const RATIO_SEED: u64 = 0x0150_BE4C_0000_0002;

/// A report that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The path is not a run directory.
    #[error(transparent)]
    Dir(#[from] RunDirError),
    /// A file of the run directory is unreadable or corrupt.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A JSON output could not be encoded.
    #[error("encoding {file}: {source}")]
    Encode {
        /// The output file.
        file: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// A chart failed.
    #[error(transparent)]
    Chart(#[from] chart::ChartError),
    /// An output file could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The statistics of one series: a (workload, environment, metric).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSummary {
    /// Workload name.
    pub workload: String,
    /// Environment.
    pub environment: EnvKind,
    /// Metric name.
    pub metric: String,
    /// Unit.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// n, median, mean, stddev, min, max, MAD, CI, outliers.
    #[serde(flatten)]
    pub stats: Summary,
    /// The raw values, in repetition order.
    pub values: Vec<f64>,
    /// Median of this series over the median of the same workload and
    /// metric natively (absent for native itself or without native data).
    pub ratio_to_native: Option<f64>,
    /// Bootstrap 95% interval of that ratio.
    pub ratio_ci95: Option<Interval>,
}

impl SeriesSummary {
    /// Whether this is the series of `workload` in `env` with `metric`.
    pub fn is(&self, workload: &str, env: EnvKind, metric: &str) -> bool {
        self.workload == workload && self.environment == env && self.metric == metric
    }

    /// How much this series exceeds `other`, measured on the same
    /// instances: the median of the per-instance differences when both
    /// hold one value per instance in repetition order (equal lengths),
    /// else the difference of the two medians.
    pub fn median_excess_over(&self, other: &SeriesSummary) -> f64 {
        if self.values.len() == other.values.len() {
            let diffs: Vec<f64> = self
                .values
                .iter()
                .zip(&other.values)
                .map(|(a, b)| a - b)
                .collect();
            stats::median(&diffs)
        } else {
            self.stats.median - other.stats.median
        }
    }
}

/// Everything the exporters see.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    /// The run's metadata.
    pub meta: Meta,
    /// One entry per series, in scenario order.
    pub series: Vec<SeriesSummary>,
    /// Instances that failed.
    pub failures: Vec<InstanceRecord>,
    /// Workload name → kind, from the scenario in `meta.json`.
    #[serde(skip)]
    pub kinds: BTreeMap<String, String>,
    /// The sampler's time series, for the charts over time: set by
    /// [`render`] from `samples.csv`, empty otherwise.
    #[serde(skip)]
    pub samples: samples::Samples,
}

impl ReportData {
    /// Summarizes a run's records.
    pub fn new(meta: Meta, records: &[Record], instances: Vec<InstanceRecord>) -> ReportData {
        let series = summarize(records);
        let kinds = workload_kinds(&meta);
        ReportData {
            meta,
            series,
            failures: instances.into_iter().filter(|i| !i.ok).collect(),
            kinds,
            samples: samples::Samples::default(),
        }
    }

    /// The kind of a workload (`cpu`, `noop`, ...): from the scenario, else
    /// its name (a workload is named after its kind unless the scenario
    /// names it).
    pub fn kind_of<'a>(&'a self, workload: &'a str) -> &'a str {
        self.kinds.get(workload).map_or(workload, String::as_str)
    }

    /// The series of `workload` in `env` with `metric`.
    pub fn series_of(&self, workload: &str, env: EnvKind, metric: &str) -> Option<&SeriesSummary> {
        self.series.iter().find(|s| s.is(workload, env, metric))
    }

    /// The report section of a series; `None` is "other figures".
    pub fn family_of(&self, s: &SeriesSummary) -> Option<Family> {
        family::classify(self.kind_of(&s.workload), &s.metric)
    }

    /// The series of one section (`None`: those of no family), in order.
    pub fn in_family(&self, f: Option<Family>) -> Vec<&SeriesSummary> {
        self.series
            .iter()
            .filter(|s| self.family_of(s) == f)
            .collect()
    }

    /// The families that have at least one series, in report order.
    pub fn families(&self) -> Vec<Family> {
        Family::ALL
            .into_iter()
            .filter(|f| self.series.iter().any(|s| self.family_of(s) == Some(*f)))
            .collect()
    }

    /// Whether the run's VMs ran under TCG (software emulation).
    pub fn tcg(&self) -> bool {
        self.meta
            .accelerator
            .as_ref()
            .is_some_and(|a| a.accel == crate::env::vm::Accel::Tcg)
    }

    /// Whether any series comes from a VM.
    pub fn has_vm(&self) -> bool {
        self.series.iter().any(|s| s.environment.is_vm())
    }

    /// The scenario's name.
    pub fn scenario_name(&self) -> &str {
        self.meta
            .scenario
            .get("name")
            .and_then(|v| v.as_str())
            .unwrap_or("?")
    }
}

/// Workload name → kind, read from the scenario in `meta.json`
/// (`scenario.workloads[].name` and `.spec.kind`).
pub fn workload_kinds(meta: &Meta) -> BTreeMap<String, String> {
    let mut kinds = BTreeMap::new();
    let workloads = meta.scenario.get("workloads").and_then(|w| w.as_array());
    for w in workloads.into_iter().flatten() {
        let name = w.get("name").and_then(|v| v.as_str());
        let kind = w
            .get("spec")
            .and_then(|s| s.get("kind"))
            .and_then(|v| v.as_str());
        if let (Some(name), Some(kind)) = (name, kind) {
            kinds.insert(name.to_string(), kind.to_string());
        }
    }
    kinds
}

/// Groups records into series and computes their statistics. A series
/// takes its unit and direction from its own records (which the reader has
/// checked agree), never from the metric's name.
pub fn summarize(records: &[Record]) -> Vec<SeriesSummary> {
    // One pass: the values of every series, in repetition order, and the
    // order in which workloads and metrics first appear.
    type Key = (String, EnvKind, String);
    let mut values: HashMap<Key, Vec<(u32, f64)>> = HashMap::new();
    let mut info: HashMap<Key, (String, Better)> = HashMap::new();
    let mut workload_rank: HashMap<&str, usize> = HashMap::new();
    let mut metric_rank: HashMap<&str, usize> = HashMap::new();
    for r in records {
        let n = workload_rank.len();
        workload_rank.entry(&r.workload).or_insert(n);
        let n = metric_rank.len();
        metric_rank.entry(&r.metric).or_insert(n);
        let key = (r.workload.clone(), r.environment, r.metric.clone());
        info.entry(key.clone())
            .or_insert_with(|| (r.unit.clone(), r.better));
        values.entry(key).or_default().push((r.repetition, r.value));
    }
    let mut keys: Vec<&Key> = values.keys().collect();
    keys.sort_by_key(|k| (workload_rank[k.0.as_str()], metric_rank[k.2.as_str()], k.1));
    let ordered = |k: &Key| -> Vec<f64> {
        let mut v = values.get(k).cloned().unwrap_or_default();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|x| x.1).collect()
    };
    let mut out = Vec::new();
    for key in keys {
        let series = ordered(key);
        let Some(stats) = stats::summarize(&series) else {
            continue;
        };
        let (w, e, m) = key;
        let native_key = (w.clone(), EnvKind::Native, m.clone());
        let native = ordered(&native_key);
        let ratio = (*e != EnvKind::Native && !native.is_empty())
            .then(|| stats::ratio_of_medians(&series, &native, RATIO_SEED))
            .flatten();
        let (unit, better) = info[key].clone();
        let enough = stats.n >= stats::CI_MIN_N && native.len() >= stats::CI_MIN_N;
        out.push(SeriesSummary {
            workload: w.clone(),
            environment: *e,
            metric: m.clone(),
            unit,
            better,
            stats,
            values: series,
            ratio_to_native: ratio.as_ref().map(|r| r.value),
            // Like a median's, a ratio's interval needs 6 values a side.
            ratio_ci95: ratio.map(|r| r.ci95).filter(|_| enough),
        });
    }
    out
}

/// The per-instance density table: one row per workload, environment and
/// instance count k (the k-th instance started with k − 1 alive), with the
/// columns of [`DENSITY_COLUMNS`]; a cell is `—` where nothing was recorded.
/// Density records the k-th instance as repetition k and series values are
/// in repetition order, so value k − 1 of each series is instance k.
pub fn density_rows(data: &ReportData) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let density: Vec<&SeriesSummary> = data
        .in_family(Some(Family::Density))
        .into_iter()
        .filter(|s| data.kind_of(&s.workload) == "density")
        .collect();
    let mut keys: Vec<(&str, EnvKind)> = Vec::new();
    for s in &density {
        if !keys.contains(&(s.workload.as_str(), s.environment)) {
            keys.push((&s.workload, s.environment));
        }
    }
    for (w, e) in keys {
        let of = |m: &str| {
            density
                .iter()
                .find(|s| s.is(w, e, m))
                .map(|s| s.values.as_slice())
                .unwrap_or(&[])
        };
        let n = DENSITY_COLUMNS
            .iter()
            .map(|(m, _)| of(m).len())
            .max()
            .unwrap_or(0);
        for k in 0..n {
            let mut row = vec![w.to_string(), e.to_string(), (k + 1).to_string()];
            for (m, _) in DENSITY_COLUMNS {
                row.push(of(m).get(k).map_or("—".into(), |v| fmt_value(*v)));
            }
            rows.push(row);
        }
    }
    rows
}

/// The metric columns of [`density_rows`] (after workload, environment and
/// k), with their headers.
pub const DENSITY_COLUMNS: [(&str, &str); 5] = [
    ("startup_ms", "startup (ms)"),
    ("pss_mib", "its PSS (MiB)"),
    ("density_pss_total_mib", "PSS of all k (MiB)"),
    ("density_mem_drop_mib", "MemAvailable drop (MiB)"),
    ("density_mem_per_instance_mib", "drop ÷ k (MiB)"),
];

/// Formats a value with a precision that suits its size.
pub fn fmt_value(v: f64) -> String {
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn fmt_ratio(s: &SeriesSummary) -> String {
    match (s.ratio_to_native, &s.ratio_ci95) {
        (Some(r), Some(ci)) => format!("{r:.2}× [{:.2}, {:.2}]", ci.lo, ci.hi),
        (Some(r), None) => format!("{r:.2}×"),
        _ => "—".into(),
    }
}

/// Turns report data into the bytes of one output file; does no I/O.
pub trait Exporter {
    /// The output file name.
    fn file_name(&self) -> &'static str;
    /// The file's content.
    fn export(&self, data: &ReportData) -> Result<Vec<u8>, ReportError>;
}

/// `× native` of one series, e.g. `1.52× native (95% CI 1.10–2.30)`.
fn ratio_phrase(s: &SeriesSummary) -> Option<String> {
    let r = s.ratio_to_native?;
    Some(match &s.ratio_ci95 {
        Some(ci) => format!(
            "{}× native (95% CI {}–{})",
            fmt_ratio_value(r),
            fmt_ratio_value(ci.lo),
            fmt_ratio_value(ci.hi)
        ),
        None => format!("{}× native", fmt_ratio_value(r)),
    })
}

fn fmt_ratio_value(r: f64) -> String {
    if r.abs() >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.2}")
    }
}

/// What this run measured in one section, as plain sentences: per
/// workload, its headline metric in every environment with the ratio to
/// native, and which differences are within noise. `name` formats a name
/// (a workload, environment or metric) and `text` escapes free text, so
/// Markdown and HTML share the wording.
pub fn findings(
    data: &ReportData,
    family: Family,
    name: &dyn Fn(&str) -> String,
    text: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let series = data.in_family(Some(family));
    let headline = figures::headline_series(family, &series);
    let mut out = Vec::new();
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for s in &headline {
        if !keys.contains(&(s.workload.as_str(), s.metric.as_str())) {
            keys.push((&s.workload, &s.metric));
        }
    }
    for (w, m) in keys {
        let rows: Vec<&&SeriesSummary> = headline
            .iter()
            .filter(|s| s.workload == w && s.metric == m)
            .collect();
        let parts: Vec<String> = rows
            .iter()
            .map(|s| {
                let value = format!("{} {}", fmt_value(s.stats.median), text(&s.unit));
                match ratio_phrase(s) {
                    Some(r) => format!("{} {value}, {r}", name(s.environment.as_str())),
                    None => format!("{} {value}", name(s.environment.as_str())),
                }
            })
            .collect();
        let mut sentence = format!(
            "{} {} (median of n = {}): {}.",
            name(w),
            name(m),
            rows.iter()
                .map(|s| s.stats.n.to_string())
                .collect::<Vec<_>>()
                .join("/"),
            parts.join("; ")
        );
        let within: Vec<String> = rows
            .iter()
            .filter(|s| s.ratio_ci95.as_ref().is_some_and(|ci| ci.contains(1.0)))
            .map(|s| name(s.environment.as_str()))
            .collect();
        let short: Vec<String> = rows
            .iter()
            .filter(|s| s.ratio_to_native.is_some() && s.ratio_ci95.is_none())
            .map(|s| name(s.environment.as_str()))
            .collect();
        if !short.is_empty() {
            let _ = write!(
                sentence,
                " With fewer than {} repetitions a side no interval says whether {} differs from \
                 native by more than the noise.",
                stats::CI_MIN_N,
                short.join(" or ")
            );
        }
        if !within.is_empty() {
            let (noun, verb) = if within.len() == 1 {
                ("interval", "includes")
            } else {
                ("intervals", "include")
            };
            let _ = write!(
                sentence,
                " The {noun} of {} {verb} 1×: at this n the difference from native is within \
                 the noise.",
                within.join(" and ")
            );
        }
        out.push(sentence);
    }
    if family == Family::Startup {
        out.extend(boot_breakdown(data, name));
    }
    if family == Family::Syscalls {
        out.extend(seccomp_cost(data, name));
    }
    out
}

/// What Docker's seccomp filter adds to a system call: the native `syscall`
/// instance times its loop, then installs the filter on itself and times
/// it again (`score_seccomp`).
fn seccomp_cost(data: &ReportData, name: &dyn Fn(&str) -> String) -> Vec<String> {
    let native = EnvKind::Native;
    let mut out = Vec::new();
    for plain in data
        .series
        .iter()
        .filter(|s| s.environment == native && s.metric == "score")
    {
        let Some(filtered) = data.series_of(&plain.workload, native, "score_seccomp") else {
            continue;
        };
        // Both figures come from the same instances: pair them.
        let added = filtered.median_excess_over(plain);
        out.push(format!(
            "{} {}: Docker's default seccomp filter adds {} {} to a call (medians {} without it, \
             {} with it, both timed natively in one process; the added figure is the median of \
             the {} per-instance differences). A container runs under \
             that filter unless its scenario says `seccomp = \"none\"`, so its {} includes \
             this cost; the kernel caches the verdict for calls without argument checks, so \
             what remains is mostly the slower system-call entry a filtered task takes.",
            name(&plain.workload),
            name("score_seccomp"),
            fmt_value(added),
            plain.unit,
            fmt_value(plain.stats.median),
            fmt_value(filtered.stats.median),
            filtered.stats.n,
            name("score"),
        ));
    }
    out
}

/// Per workload, how the VM's median startup splits into the guest
/// kernel's boot and the rest.
fn boot_breakdown(data: &ReportData, name: &dyn Fn(&str) -> String) -> Vec<String> {
    let vm = EnvKind::Vm;
    let get = |w: &str, m: &str| data.series_of(w, vm, m);
    let mut out = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for s in data.series.iter().filter(|s| s.environment == vm) {
        if seen.contains(&s.workload.as_str()) {
            continue;
        }
        seen.push(&s.workload);
        let (Some(total), Some(kernel)) = (
            get(&s.workload, "startup_ms"),
            get(&s.workload, "boot_kernel_ms"),
        ) else {
            continue;
        };
        let (t, k) = (total.stats.median, kernel.stats.median);
        if t <= 0.0 {
            continue;
        }
        // The rest per instance, as in the vm_boot chart (both series come
        // from the same instances, in repetition order).
        let rest = total.median_excess_over(kernel);
        out.push(format!(
            "For {}, the VM's median startup of {} ms holds a median guest kernel boot of {} ms \
             ({:.0}%); the rest, a median {} ms per instance, is QEMU's own start, its set-up \
             of the machine before the kernel runs, and the ready frame's way out over the \
             serial console.",
            name(&s.workload),
            fmt_value(t),
            fmt_value(k),
            100.0 * k / t,
            fmt_value(rest)
        ));
    }
    out
}

/// The warning shown when the VM ran under TCG.
pub const TCG_WARNING: &str = "The VM ran under TCG, QEMU's software emulator, not hardware \
     virtualization. Its boot times and CPU scores show the cost of emulation, which is far \
     higher than the cost of a KVM guest on ordinary hardware.";

/// How to read the figures.
pub const HOW_TO_READ: &str = "Every figure is the median of n repetitions, each in a fresh \
     instance. Beside it: with 6 or more repetitions, a 95% confidence interval of the median \
     (the sign-test interval between two order statistics, which assumes no distribution); with \
     fewer, no 95% interval exists at all (the range of 3 values covers the median only 75% of \
     the time, of 5 values 94%), so the range is shown and labelled as one. Outliers (modified \
     Z-score above 3.5) are looked for from 5 repetitions on, counted and shown, never dropped. \
     startup_ms runs from just before the spawn to the arrival of the agent's ready frame; × \
     native is the ratio of the medians to the native one, with a bootstrap interval when both \
     sides have 6 or more repetitions. A CI that means 95% needs at least 6 repetitions; for the \
     compare gate to reach p < 0.01, 8 per side.";

/// The terminal summary: startup and score per workload and environment.
pub fn terminal_table(series: &[SeriesSummary]) -> String {
    // Per workload: its startup, and its headline figure — `score` when it
    // has one, else the first figure the workload measured itself (a
    // command workload's first extracted metric).
    let headline = |w: &str| -> Option<&str> {
        let of_w = series.iter().filter(|x| x.workload == w);
        of_w.clone()
            .find(|x| x.metric == "score")
            .or_else(|| {
                of_w.clone()
                    .find(|x| !crate::workload::is_host_metric(&x.metric))
            })
            .map(|x| x.metric.as_str())
    };
    let width = series
        .iter()
        .map(|x| x.workload.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<width$} {:<10} {:<16} {:>3} {:>16} {:>22} {:>10}",
        "workload", "env", "metric", "n", "median", "95% CI or range", "× native"
    );
    for x in series.iter().filter(|x| {
        ["startup_ms", "boot_kernel_ms"].contains(&x.metric.as_str())
            || headline(&x.workload) == Some(x.metric.as_str())
    }) {
        let _ = writeln!(
            s,
            "{:<width$} {:<10} {:<16} {:>3} {:>16} {:>22} {:>10}",
            x.workload,
            x.environment,
            x.metric,
            x.stats.n,
            format!("{} {}", fmt_value(x.stats.median), x.unit),
            {
                let sp = x.stats.spread();
                let mark = if sp.is_ci { "" } else { "range " };
                format!("{mark}[{}, {}]", fmt_value(sp.lo), fmt_value(sp.hi))
            },
            x.ratio_to_native.map_or("—".into(), |r| format!("{r:.2}×")),
        );
    }
    s
}

/// The list of chart files a rendering wrote, in `charts/`.
const CHART_LIST: &str = ".isobench-charts";

/// What [`render`] produced.
#[derive(Debug)]
pub struct Rendered {
    /// The terminal summary table.
    pub table: String,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    record::write_file(path, bytes).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a run directory's records and writes every report file into it.
pub fn render(dir: &Path) -> Result<Rendered, ReportError> {
    record::check_run_dir(dir)?;
    let meta = Meta::load(dir)?;
    let records = record::read_results(&dir.join(RESULTS))?;
    let instances = record::read_instances(&dir.join(INSTANCES))?;
    let mut data = ReportData::new(meta, &records, instances);
    data.samples = samples::read(dir)?;
    let mut files = Vec::new();
    let exporters: [&dyn Exporter; 6] = [
        &SummaryJson,
        &Markdown,
        &html::Html,
        &dashboard::Bmf,
        &dashboard::BenchmarkAction(Better::Lower),
        &dashboard::BenchmarkAction(Better::Higher),
    ];
    for e in exporters {
        let path = dir.join(e.file_name());
        write(&path, &e.export(&data)?)?;
        files.push(path);
    }
    let figures = figures::all(&data);
    let charts = dir.join("charts");
    // The charts an earlier rendering wrote, from its list: those this one
    // no longer draws (a re-render by a newer isobench) would otherwise
    // pass for current. Only files on that list are ever removed.
    let listed = std::fs::read_to_string(charts.join(CHART_LIST)).unwrap_or_default();
    let mut drawn = Vec::new();
    if !figures.is_empty() {
        std::fs::create_dir_all(&charts).map_err(|source| ReportError::Write {
            path: charts.clone(),
            source,
        })?;
        for f in figures {
            let svg = charts.join(format!("{}.svg", f.name));
            let png = charts.join(format!("{}.png", f.name));
            chart::write_both(&f.chart, &svg, &png)?;
            drawn.push(format!("{}.svg", f.name));
            drawn.push(format!("{}.png", f.name));
            files.extend([svg, png]);
        }
    }
    for old in listed.lines() {
        let plain = !old.is_empty() && !old.contains('/') && !old.starts_with('.');
        if plain && !drawn.iter().any(|d| d == old) {
            let _ = std::fs::remove_file(charts.join(old));
        }
    }
    if charts.is_dir() {
        write(&charts.join(CHART_LIST), drawn.join("\n").as_bytes())?;
    }
    Ok(Rendered {
        table: terminal_table(&data.series),
        files,
    })
}

#[cfg(test)]
pub(crate) mod fixture {
    //! Report data for the exporters' tests: every family, hostile text in
    //! every free-text field a run can carry, and a VM under TCG.

    use super::*;

    /// A hostile workload name, as a hand-edited results.csv could hold.
    pub const EVIL: &str = "<script>alert('x')</script>|`";

    pub fn meta(tcg: bool) -> Meta {
        let accel = if tcg {
            serde_json::json!({"accel": "tcg", "reason": "forced <b>by</b> test"})
        } else {
            serde_json::Value::Null
        };
        serde_json::from_value(serde_json::json!({
            "run_id": "20260101T000000Z-abcd",
            "status": "complete",
            "started": "2026-01-01T00:00:00Z",
            "finished": "2026-01-01T00:01:00Z",
            "wall_s": 60.0,
            "isobench": "0.1.0 (test)",
            "host": {
                "cpu_model": "Evil <img src=x onerror=alert(1)> CPU & \"co\"",
                "cores": 2, "kernel": "6.1.0", "os": "Debian <12>",
                "memory_mib": 4096, "cgroup_mode": "hybrid"
            },
            "qemu": "QEMU emulator version 7.2",
            "accelerator": accel,
            "guest_kernel": "6.1.0-cloud",
            "image": null,
            "scenario": {
                "name": "fx",
                "description": "fixture <script>alert(2)</script> & more",
                "source": "fx.toml",
                "source_sha256": "00ff",
                "workloads": [
                    {"name": "noop", "spec": {"kind": "noop"}},
                    {"name": "cpu", "spec": {"kind": "cpu", "rounds": 10, "buffer_kib": 1}},
                    {"name": "sys", "spec": {"kind": "syscall"}},
                    {"name": "forks", "spec": {"kind": "fork"}},
                    {"name": "io", "spec": {"kind": "fileio"}},
                    {"name": "tcp", "spec": {"kind": "net"}},
                    {"name": "many", "spec": {"kind": "density"}},
                    {"name": EVIL, "spec": {"kind": "cpu"}}
                ]
            },
            "environments": {"vm": {"config": {"machine": "microvm", "cpus": 1, "memory_mib": 256}}},
            "metrics": {
                "startup_ms": {"unit": "ms", "better": "lower"},
                "boot_kernel_ms": {"unit": "ms", "better": "lower"},
                "score": {"unit": "rounds/s", "better": "higher"},
                "pss_mib": {"unit": "MiB", "better": "lower"},
                "vmm_overhead_mib": {"unit": "MiB", "better": "lower"},
                "ns_per_call": {"unit": "ns", "better": "lower"},
                "forks_per_s": {"unit": "forks/s", "better": "higher"},
                "read": {"unit": "MiB/s", "better": "higher"},
                "rtt_us": {"unit": "µs", "better": "lower"},
                "host_cpu_ms": {"unit": "ms", "better": "lower"}
            },
            "order": "interleaved",
            "notes": ["a note with <tags>"]
        }))
        .unwrap()
    }

    /// Records of one series. A 4-value series gets two more values near
    /// its first two, so that the fixture has the 6 repetitions a 95%
    /// interval needs (the n < 6 case has tests of its own).
    pub fn push(out: &mut Vec<Record>, w: &str, e: &str, m: &str, unit: &str, values: &[f64]) {
        let mut values = values.to_vec();
        if values.len() == 4 {
            values.insert(2, values[0] * 1.01);
            values.insert(3, values[1] * 0.99);
        }
        for (i, v) in values.iter().enumerate() {
            out.push(Record {
                workload: w.into(),
                environment: e.into(),
                repetition: i as u32 + 1,
                metric: m.into(),
                unit: unit.into(),
                better: Better::legacy_for_unit(unit),
                value: *v,
            });
        }
    }

    /// Records of every family; with `vm`, a VM environment too.
    pub fn records(vm: bool) -> Vec<Record> {
        let mut r = Vec::new();
        let envs: &[(&str, f64)] = if vm {
            &[("native", 1.0), ("container", 1.1), ("vm", 3.0)]
        } else {
            &[("native", 1.0), ("container", 1.1)]
        };
        for (w, base) in [("noop", 1.0), ("cpu", 1.2), (EVIL, 1.3)] {
            for (e, f) in envs {
                let s = if *e == "vm" { 2000.0 } else { base * f };
                push(
                    &mut r,
                    w,
                    e,
                    "startup_ms",
                    "ms",
                    &[s, s * 1.05, s * 0.97, s * 1.5],
                );
            }
        }
        if vm {
            push(
                &mut r,
                "noop",
                "vm",
                "boot_kernel_ms",
                "ms",
                &[1200.0, 1250.0, 1190.0, 1300.0],
            );
            push(
                &mut r,
                "noop",
                "vm",
                "vmm_overhead_mib",
                "MiB",
                &[140.0, 141.0, 139.0, 140.5],
            );
        }
        for (e, f) in envs {
            push(
                &mut r,
                "noop",
                e,
                "pss_mib",
                "MiB",
                &[2.0 * f, 2.1 * f, 2.0 * f, 2.2 * f],
            );
            push(
                &mut r,
                "cpu",
                e,
                "score",
                "rounds/s",
                &[4000.0 / f, 3900.0 / f, 4100.0 / f, 4050.0 / f],
            );
            push(
                &mut r,
                EVIL,
                e,
                "score",
                "rounds/s",
                &[10.0, 11.0, 12.0, 13.0],
            );
            push(
                &mut r,
                "sys",
                e,
                "ns_per_call",
                "ns",
                &[100.0 * f, 101.0 * f, 99.0 * f, 100.0 * f],
            );
            push(
                &mut r,
                "forks",
                e,
                "forks_per_s",
                "forks/s",
                &[5000.0 / f, 5100.0 / f, 4900.0 / f, 5000.0 / f],
            );
            push(
                &mut r,
                "io",
                e,
                "read",
                "MiB/s",
                &[800.0 / f, 790.0 / f, 810.0 / f, 805.0 / f],
            );
            push(
                &mut r,
                "tcp",
                e,
                "rtt_us",
                "µs",
                &[40.0 * f, 41.0 * f, 39.0 * f, 40.0 * f],
            );
            push(
                &mut r,
                "many",
                e,
                "pss_mib",
                "MiB",
                &[3.0 * f, 3.1 * f, 2.9 * f, 3.0 * f],
            );
            push(
                &mut r,
                "noop",
                e,
                "host_cpu_ms",
                "ms",
                &[1.0, 1.1, 0.9, 1.0],
            );
        }
        r
    }

    pub fn data(vm: bool) -> ReportData {
        ReportData::new(meta(vm), &records(vm), Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_fall_into_their_families() {
        let data = fixture::data(true);
        assert_eq!(data.families(), Family::ALL.to_vec());
        let family = |w: &str, m: &str| {
            let s = data
                .series
                .iter()
                .find(|s| s.workload == w && s.metric == m)
                .unwrap();
            data.family_of(s)
        };
        assert_eq!(family("noop", "startup_ms"), Some(Family::Startup));
        assert_eq!(family("noop", "vmm_overhead_mib"), Some(Family::Memory));
        assert_eq!(family("many", "pss_mib"), Some(Family::Density));
        assert_eq!(family(fixture::EVIL, "score"), Some(Family::Cpu));
        assert_eq!(family("noop", "host_cpu_ms"), None);
        // A workload the scenario does not list is its own kind.
        assert_eq!(data.kind_of("cpu"), "cpu");
        assert_eq!(data.kind_of("unlisted"), "unlisted");
    }

    #[test]
    fn families_that_did_not_run_are_left_out() {
        let records: Vec<Record> = fixture::records(false)
            .into_iter()
            .filter(|r| ["noop", "cpu"].contains(&r.workload.as_str()) && r.metric != "host_cpu_ms")
            .collect();
        let data = ReportData::new(fixture::meta(false), &records, Vec::new());
        assert_eq!(
            data.families(),
            [Family::Startup, Family::Memory, Family::Cpu]
        );
        let md = markdown::markdown(&data);
        assert!(md.contains("## Startup") && md.contains("## CPU"), "{md}");
        for absent in [
            "## Disk",
            "## Network",
            "## Density",
            "## System calls",
            "## Other",
        ] {
            assert!(!md.contains(absent), "{absent} in\n{md}");
        }
        assert!(!md.contains("Warning"), "no VM, no TCG warning");
    }

    #[test]
    fn the_memory_chart_takes_the_metric_most_environments_have() {
        let rec = |w: &str, e: &str, m: &str| Record {
            workload: w.into(),
            environment: e.into(),
            repetition: 1,
            metric: m.into(),
            unit: "MiB".into(),
            better: Better::Lower,
            value: 1.0,
        };
        let mut records = Vec::new();
        for e in ["native", "container", "vm"] {
            // `short`: PSS only from the VM; wait4's peak RSS everywhere.
            records.push(rec("short", e, "max_rss_mib"));
            // `long`: PSS everywhere, so PSS wins the tie on coverage.
            records.push(rec("long", e, "max_rss_mib"));
            records.push(rec("long", e, "pss_steady_mib"));
        }
        records.push(rec("short", "vm", "pss_mib"));
        let series = summarize(&records);
        let refs: Vec<&SeriesSummary> = series.iter().collect();
        let picked: Vec<(&str, &str)> = figures::headline_series(Family::Memory, &refs)
            .iter()
            .map(|s| (s.workload.as_str(), s.metric.as_str()))
            .collect();
        assert!(
            picked.iter().all(|p| *p != ("short", "pss_mib")),
            "{picked:?}"
        );
        assert_eq!(
            picked
                .iter()
                .filter(|p| **p == ("short", "max_rss_mib"))
                .count(),
            3
        );
        assert_eq!(
            picked
                .iter()
                .filter(|p| **p == ("long", "pss_steady_mib"))
                .count(),
            3
        );
    }

    #[test]
    fn terminal_table_shows_a_command_workloads_own_figure() {
        let rec = |e: &str, m: &str, v: f64| Record {
            workload: "app".into(),
            environment: e.into(),
            repetition: 1,
            metric: m.into(),
            unit: "x".into(),
            better: Better::Higher,
            value: v,
        };
        let mut records = Vec::new();
        for e in ["native", "container"] {
            // The sampler's figures come first in the records.
            records.push(rec(e, "startup_ms", 2.0));
            records.push(rec(e, "rss_peak_mib", 9.0));
            records.push(rec(e, "pss_steady_mib", 8.0));
            records.push(rec(e, "events_per_s", 2400.0));
        }
        let table = terminal_table(&summarize(&records));
        assert!(table.contains("events_per_s"), "{table}");
        assert!(
            !table.contains("rss_peak_mib") && !table.contains("pss_"),
            "{table}"
        );
    }

    #[test]
    fn markdown_escapes_free_text_and_keeps_tables_intact() {
        let md = markdown::markdown(&fixture::data(true));
        assert!(!md.contains("<script>") && !md.contains("<img"), "{md}");
        assert!(md.contains("&lt;img src=x"), "{md}");
        assert!(md.contains("> **Warning:** The VM ran under TCG"), "{md}");
        // Every table row has the header's number of cells despite the `|`
        // in the hostile name (escaped as `\|`).
        let mut header_cells = 0;
        for line in md.lines().filter(|l| l.starts_with("| ")) {
            let cells = line.replace("\\|", "").matches('|').count();
            if line.starts_with("| workload") {
                header_cells = cells;
                continue;
            }
            assert_eq!(cells, header_cells, "{line}");
        }
        assert!(md.contains("| workload | environment | metric |"), "{md}");
        assert!(
            md.contains("![VM startup, broken down (medians per workload)](charts/vm_boot.svg)")
        );
    }

    #[test]
    fn findings_state_ratios_and_noise() {
        let data = fixture::data(true);
        let lines = findings(&data, Family::Cpu, &|x| format!("[{x}]"), &|x| {
            x.to_string()
        });
        let cpu = lines
            .iter()
            .find(|l| l.starts_with("[cpu] [score]"))
            .unwrap();
        assert!(cpu.contains("[vm] 1340 rounds/s, 0.33× native"), "{cpu}");
        // The hostile workload scores the same everywhere: within noise.
        let evil = lines.iter().find(|l| l.contains(fixture::EVIL)).unwrap();
        assert!(evil.contains("intervals of"), "{evil}");
        let startup = findings(&data, Family::Startup, &|x| x.to_string(), &|x| {
            x.to_string()
        });
        assert!(
            startup
                .iter()
                .any(|l| l.starts_with("For noop, the VM's median startup of 2050 ms holds a median guest kernel boot of 1225 ms (60%)")),
            "{startup:?}"
        );
    }

    #[test]
    fn render_refuses_what_is_not_a_run_directory() {
        let dir = crate::testutil::TempDir::new("render-not");
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        let err = render(&file).unwrap_err();
        assert!(matches!(
            err,
            ReportError::Dir(RunDirError::NotDirectory { .. })
        ));
        assert!(err.to_string().contains("file is not a directory"), "{err}");
        let err = render(&dir.join("gone")).unwrap_err().to_string();
        assert!(err.ends_with("gone does not exist"), "{err}");
        let err = render(&dir).unwrap_err().to_string();
        assert!(err.ends_with("it has no meta.json"), "{err}");
        fixture::meta(true).save(&dir).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join(RESULTS)).unwrap();
        let err = render(&dir).unwrap_err().to_string();
        assert!(
            err.contains("(a link to /dev/zero) is a character device"),
            "{err}"
        );
    }

    #[test]
    fn render_writes_every_output_from_the_records() {
        let dir = crate::testutil::TempDir::new("render");
        fixture::meta(true).save(&dir).unwrap();
        let mut rec = record::Recorder::create(&dir).unwrap();
        let instance = InstanceRecord {
            workload: "noop".into(),
            environment: "vm".into(),
            repetition: 1,
            warmup: false,
            ok: false,
            error: Some("boom <b>".into()),
            exit: None,
            digest: None,
            metrics: Vec::new(),
            log: "logs/x.log".into(),
            sampler: None,
        };
        rec.append(&fixture::records(true), &instance).unwrap();
        drop(rec);
        let rendered = render(&dir).unwrap();
        for f in [
            "summary.json",
            "report.md",
            "report.html",
            "bmf.json",
            "benchmark-action-smaller.json",
            "benchmark-action-bigger.json",
            "charts/startup.svg",
            "charts/vm_boot.png",
            "charts/memory_pss.svg",
            "charts/vmm_overhead.svg",
            "charts/cpu.png",
            "charts/syscalls.svg",
            "charts/disk.svg",
            "charts/network.svg",
            "charts/density.svg",
        ] {
            assert!(rendered.files.contains(&dir.join(f)), "{f} not reported");
            assert!(std::fs::metadata(dir.join(f)).unwrap().len() > 100, "{f}");
        }
        // samples.csv has its header and no row: no chart over time.
        assert!(!dir.join("charts/timeline_memory.svg").exists());
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(
            md.contains("## Failures") && md.contains("boom &lt;b&gt;"),
            "{md}"
        );
        // Rendering again gives the same bytes.
        let html = std::fs::read(dir.join("report.html")).unwrap();
        // A chart an earlier rendering listed and this one does not draw
        // goes; a file isobench did not write stays.
        let stale = dir.join("charts/gone.svg");
        std::fs::write(&stale, "<svg/>").unwrap();
        let list = dir.join("charts").join(CHART_LIST);
        let mut listed = std::fs::read_to_string(&list).unwrap();
        listed.push_str("\ngone.svg");
        std::fs::write(&list, listed).unwrap();
        let mine = dir.join("charts/my-notes.png");
        std::fs::write(&mine, "not a chart of isobench's").unwrap();
        // A report file that is a link is replaced, not written through.
        let outside = dir.with_extension("outside");
        std::fs::write(&outside, "precious").unwrap();
        std::fs::remove_file(dir.join("report.md")).unwrap();
        std::os::unix::fs::symlink(&outside, dir.join("report.md")).unwrap();
        render(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("report.html")).unwrap(), html);
        assert!(!stale.exists(), "a stale chart was kept");
        assert!(mine.exists(), "a file isobench did not write was removed");
        assert!(dir.join("charts/startup.svg").exists());
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
        assert!(
            !dir.join("report.md")
                .symlink_metadata()
                .unwrap()
                .is_symlink()
        );
        std::fs::remove_file(&outside).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn render_draws_the_samples_over_time() {
        let dir = crate::testutil::TempDir::new("render-samples");
        fixture::meta(true).save(&dir).unwrap();
        let mut rec = record::Recorder::create(&dir).unwrap();
        let instance = InstanceRecord {
            workload: "noop".into(),
            environment: "vm".into(),
            repetition: 1,
            warmup: false,
            ok: true,
            error: None,
            exit: None,
            digest: None,
            metrics: Vec::new(),
            log: "logs/x.log".into(),
            sampler: None,
        };
        rec.append(&fixture::records(true), &instance).unwrap();
        for (env, kib) in [("native", 1200), ("vm", 210_000)] {
            let ticks: Vec<crate::sample::Sample> = (0..20)
                .map(|i| crate::sample::Sample {
                    t_ms: f64::from(i) * 10.0,
                    processes: 1,
                    cpu_ms: f64::from(i),
                    rss_kib: kib,
                    pss_kib: (i % 5 == 0).then_some(kib / 2),
                })
                .collect();
            rec.append_samples("noop", env, 1, &ticks).unwrap();
        }
        drop(rec);
        let rendered = render(&dir).unwrap();
        for f in ["charts/timeline_memory.svg", "charts/timeline_cpu.png"] {
            assert!(rendered.files.contains(&dir.join(f)), "{f} not reported");
        }
        let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
        let memory = page.find("<section id=\"memory\"").unwrap();
        let chart = page.find("id=\"chart-timeline_memory\"").unwrap();
        assert!(
            chart > memory,
            "the chart over time is in the memory section"
        );
        let html = page.clone();
        render(&dir).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.join("report.html")).unwrap(),
            html
        );
        // A samples.csv that is a device is refused like any run file.
        std::fs::remove_file(dir.join(record::SAMPLES)).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join(record::SAMPLES)).unwrap();
        let err = render(&dir).unwrap_err().to_string();
        assert!(err.contains("character device"), "{err}");
    }

    /// Three repetitions 1% apart: no "95% CI" and no outlier anywhere a
    /// student reads, but "range (n = 3)".
    #[test]
    fn three_repetitions_show_a_range_and_no_outlier() {
        let mut records = Vec::new();
        for (e, f) in [("native", 1.0), ("container", 1.01)] {
            for (i, v) in [100.0, 100.5, 101.0].iter().enumerate() {
                records.push(Record {
                    workload: "cpu".into(),
                    environment: e.into(),
                    repetition: i as u32 + 1,
                    metric: "score".into(),
                    unit: "rounds/s".into(),
                    better: Better::Higher,
                    value: v * f,
                });
            }
        }
        let data = ReportData::new(fixture::meta(false), &records, Vec::new());
        assert!(data.series.iter().all(|s| s.stats.outliers.is_empty()));
        let md = String::from_utf8(Markdown.export(&data).unwrap()).unwrap();
        let page = String::from_utf8(html::Html.export(&data).unwrap()).unwrap();
        let table = terminal_table(&data.series);
        let action = String::from_utf8(
            dashboard::BenchmarkAction(Better::Higher)
                .export(&data)
                .unwrap(),
        )
        .unwrap();
        for (what, text) in [("md", &md), ("html", &page), ("action", &action)] {
            assert!(text.contains("range (n = 3)"), "{what}");
            assert!(!text.contains("95% CI ["), "{what}: {text}");
        }
        assert!(table.contains("range [100"), "{table}");
        assert!(!page.contains("class=\"outlier\""));
        assert!(md.contains("With fewer than 6 repetitions"), "{md}");
    }
}
