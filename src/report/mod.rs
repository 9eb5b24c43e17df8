//! Reports: everything a run directory shows, rendered from its records.
//!
//! [`render`] reads `results.csv`, `instances.jsonl` and `meta.json` and
//! writes `summary.json`, `report.md` and the charts. It depends on nothing
//! but those files, so `isobench report DIR` re-renders an old or an
//! interrupted run the same way. The text outputs are [`Exporter`]s that turn
//! the data into bytes without doing I/O; [`render`] writes them.

pub mod chart;

use crate::env::EnvKind;
use crate::meta::{META, Meta};
use crate::record::{self, INSTANCES, InstanceRecord, RESULTS, Record, RecordError};
use crate::stats::{self, Interval, Summary};
use crate::workload::Better;
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Seed of the bootstrap of ratios, fixed so re-rendering gives the same report.
pub const RATIO_SEED: u64 = 0x0150_BE4C_0000_0002;

/// A report that cannot be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A record file is unreadable.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// `meta.json` is missing or unreadable.
    #[error("{0}")]
    Meta(String),
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
    pub environment: String,
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

/// Everything the exporters see.
#[derive(Debug, Clone, Serialize)]
pub struct ReportData {
    /// The run's metadata.
    pub meta: Meta,
    /// One entry per series, in scenario order.
    pub series: Vec<SeriesSummary>,
    /// Instances that failed.
    pub failures: Vec<InstanceRecord>,
}

/// Groups records into series and computes their statistics.
pub fn summarize(records: &[Record], meta: &Meta) -> Vec<SeriesSummary> {
    // Keys in first-appearance order; environments in report order.
    let mut keys: Vec<(String, String, String, String)> = Vec::new();
    for r in records {
        let key = (
            r.workload.clone(),
            r.environment.clone(),
            r.metric.clone(),
            r.unit.clone(),
        );
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    let env_rank = |e: &str| {
        EnvKind::ALL
            .iter()
            .position(|k| k.as_str() == e)
            .unwrap_or(99)
    };
    let workload_rank = |w: &str| keys.iter().position(|k| k.0 == w).unwrap_or(usize::MAX);
    let metric_rank = |m: &str| keys.iter().position(|k| k.2 == m).unwrap_or(usize::MAX);
    let mut sorted = keys.clone();
    sorted.sort_by_key(|k| (workload_rank(&k.0), metric_rank(&k.2), env_rank(&k.1)));

    let values_of = |w: &str, e: &str, m: &str| -> Vec<f64> {
        let mut v: Vec<(u32, f64)> = records
            .iter()
            .filter(|r| r.workload == w && r.environment == e && r.metric == m)
            .map(|r| (r.repetition, r.value))
            .collect();
        v.sort_by_key(|x| x.0);
        v.into_iter().map(|x| x.1).collect()
    };
    let mut out = Vec::new();
    for (w, e, m, unit) in sorted {
        let values = values_of(&w, &e, &m);
        let Some(stats) = stats::summarize(&values) else {
            continue;
        };
        let native = values_of(&w, EnvKind::Native.as_str(), &m);
        let ratio = (e != EnvKind::Native.as_str() && !native.is_empty())
            .then(|| stats::ratio_of_medians(&values, &native, RATIO_SEED))
            .flatten();
        let better = meta
            .metrics
            .get(&m)
            .map_or(Better::Lower, |info| info.better);
        out.push(SeriesSummary {
            workload: w,
            environment: e,
            metric: m,
            unit,
            better,
            stats,
            values,
            ratio_to_native: ratio.as_ref().map(|r| r.value),
            ratio_ci95: ratio.map(|r| r.ci95),
        });
    }
    out
}

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

/// `summary.json`: every series with its statistics and ratio to native.
pub struct SummaryJson;

impl Exporter for SummaryJson {
    fn file_name(&self) -> &'static str {
        "summary.json"
    }
    fn export(&self, data: &ReportData) -> Result<Vec<u8>, ReportError> {
        let doc = serde_json::json!({
            "run_id": data.meta.run_id,
            "status": data.meta.status,
            "scenario": data.meta.scenario.get("name"),
            "accelerator": data.meta.accelerator,
            "series": data.series,
            "failures": data.failures,
        });
        let mut bytes =
            serde_json::to_vec_pretty(&doc).map_err(|e| ReportError::Meta(e.to_string()))?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// `report.md`: the summary tables, fit for a pull-request comment.
pub struct Markdown;

impl Exporter for Markdown {
    fn file_name(&self) -> &'static str {
        "report.md"
    }
    fn export(&self, data: &ReportData) -> Result<Vec<u8>, ReportError> {
        Ok(markdown(data).into_bytes())
    }
}

/// Escapes the characters that would break a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

fn markdown(data: &ReportData) -> String {
    let m = &data.meta;
    let mut s = String::new();
    let name = m
        .scenario
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("?");
    let _ = writeln!(s, "# isobench report: `{}`\n", cell(name));
    if let Some(desc) = m.scenario.get("description").and_then(|v| v.as_str())
        && !desc.is_empty()
    {
        let _ = writeln!(s, "{}\n", cell(desc));
    }
    let _ = writeln!(
        s,
        "Run `{}` · status **{}** · started {} · wall time {} · isobench {}\n",
        m.run_id,
        m.status,
        m.started,
        m.wall_s.map_or("—".into(), |w| format!("{w:.0} s")),
        m.isobench
    );
    let _ = writeln!(
        s,
        "Host: {} ({} cores, {} MiB) · kernel {} · {} · cgroups {}",
        m.host.cpu_model,
        m.host.cores,
        m.host.memory_mib,
        m.host.kernel,
        m.host.os,
        m.host.cgroup_mode
    );
    if let Some(acc) = &m.accelerator {
        let _ = writeln!(
            s,
            "\nVM: {} · accelerator **{}** ({}) · guest kernel {}",
            m.qemu.as_deref().unwrap_or("QEMU"),
            acc.accel.as_str(),
            cell(&acc.reason),
            m.guest_kernel.as_deref().unwrap_or("?")
        );
        if acc.accel == crate::env::vm::Accel::Tcg {
            let _ = writeln!(
                s,
                "\n> **Warning: the VM ran under TCG**, QEMU's software emulator, not hardware \
                 virtualization. Its boot times and CPU scores show the cost of emulation, which is \
                 far higher than the cost of a KVM guest on ordinary hardware."
            );
        }
    }
    let _ = writeln!(
        s,
        "\nEvery figure is the median of n repetitions, each in a fresh instance, with a 95% \
         bootstrap confidence interval of the median; outliers (modified Z-score > 3.5) are \
         counted, never dropped. `startup_ms` runs from just before the spawn to the arrival of \
         the agent's `ready` frame; `× native` is the ratio of medians to the native one.\n"
    );

    let startup: Vec<&SeriesSummary> = data
        .series
        .iter()
        .filter(|x| x.metric == "startup_ms")
        .collect();
    if !startup.is_empty() {
        let _ = writeln!(
            s,
            "## Startup\n\n![startup time per environment](charts/startup.svg)\n"
        );
        table(&mut s, &startup);
    }
    let mut workloads: Vec<&str> = Vec::new();
    for x in &data.series {
        if !workloads.contains(&x.workload.as_str()) {
            workloads.push(&x.workload);
        }
    }
    for w in workloads {
        let rows: Vec<&SeriesSummary> = data
            .series
            .iter()
            .filter(|x| x.workload == w && x.metric != "startup_ms")
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "## Workload `{}`\n", cell(w));
        table(&mut s, &rows);
    }
    if !data.failures.is_empty() {
        let _ = writeln!(s, "## Failures\n");
        for f in &data.failures {
            let _ = writeln!(
                s,
                "- `{}` in `{}`, {} {}: {} (log: `{}`)",
                cell(&f.workload),
                f.environment,
                if f.warmup { "warm-up" } else { "repetition" },
                f.repetition,
                cell(f.error.as_deref().unwrap_or("?")),
                f.log
            );
        }
        s.push('\n');
    }
    if !m.notes.is_empty() {
        let _ = writeln!(s, "## Notes\n");
        for n in &m.notes {
            let _ = writeln!(s, "- {}", cell(n));
        }
        s.push('\n');
    }
    s
}

fn table(s: &mut String, rows: &[&SeriesSummary]) {
    let _ = writeln!(
        s,
        "| workload | environment | metric | n | median | 95% CI | min | max | outliers | × native |"
    );
    let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for x in rows {
        let _ = writeln!(
            s,
            "| {} | {} | {} ({}, {} is better) | {} | {} | [{}, {}] | {} | {} | {} | {} |",
            cell(&x.workload),
            x.environment,
            cell(&x.metric),
            cell(&x.unit),
            match x.better {
                Better::Higher => "higher",
                Better::Lower => "lower",
            },
            x.stats.n,
            fmt_value(x.stats.median),
            fmt_value(x.stats.ci95.lo),
            fmt_value(x.stats.ci95.hi),
            fmt_value(x.stats.min),
            fmt_value(x.stats.max),
            x.stats.outliers.len(),
            fmt_ratio(x)
        );
    }
    s.push('\n');
}

/// The terminal summary: startup and score per workload and environment.
pub fn terminal_table(series: &[SeriesSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<12} {:<10} {:<14} {:>3} {:>12} {:>22} {:>10}",
        "workload", "env", "metric", "n", "median", "95% CI", "× native"
    );
    for x in series
        .iter()
        .filter(|x| ["startup_ms", "score", "boot_kernel_ms"].contains(&x.metric.as_str()))
    {
        let _ = writeln!(
            s,
            "{:<12} {:<10} {:<14} {:>3} {:>12} {:>22} {:>10}",
            x.workload,
            x.environment,
            x.metric,
            x.stats.n,
            format!("{} {}", fmt_value(x.stats.median), x.unit),
            format!(
                "[{}, {}]",
                fmt_value(x.stats.ci95.lo),
                fmt_value(x.stats.ci95.hi)
            ),
            x.ratio_to_native.map_or("—".into(), |r| format!("{r:.2}×")),
        );
    }
    s
}

/// The startup chart: one group per workload, one bar per environment.
pub fn startup_chart(series: &[SeriesSummary], meta: &Meta) -> Option<chart::BarChart> {
    let mut groups: Vec<chart::Group> = Vec::new();
    for x in series.iter().filter(|x| x.metric == "startup_ms") {
        let bar = chart::Bar {
            series: x.environment.clone(),
            median: x.stats.median,
            lo: x.stats.min,
            hi: x.stats.max,
            points: x.values.clone(),
            outliers: x
                .stats
                .outliers
                .iter()
                .filter_map(|i| x.values.get(*i).copied())
                .collect(),
        };
        match groups.iter_mut().find(|g| g.name == x.workload) {
            Some(g) => g.bars.push(bar),
            None => groups.push(chart::Group {
                name: x.workload.clone(),
                bars: vec![bar],
            }),
        }
    }
    if groups.is_empty() {
        return None;
    }
    let accel = meta
        .accelerator
        .as_ref()
        .map(|a| format!(", VM under {}", a.accel.as_str().to_uppercase()))
        .unwrap_or_default();
    Some(chart::BarChart {
        title: format!("Startup time: spawn to agent ready (log scale{accel})"),
        y_label: "startup_ms (ms)".into(),
        groups,
        log_y: true,
        caption: Some("bar: median · whisker: min–max · dots: repetitions".into()),
    })
}

/// What [`render`] produced.
#[derive(Debug)]
pub struct Rendered {
    /// The terminal summary table.
    pub table: String,
    /// Every file written.
    pub files: Vec<PathBuf>,
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    std::fs::write(path, bytes).map_err(|source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a run directory's records and writes every report file into it.
pub fn render(dir: &Path) -> Result<Rendered, ReportError> {
    if !dir.join(META).is_file() {
        return Err(ReportError::Meta(format!(
            "{} is not a run directory: it has no {META}",
            dir.display()
        )));
    }
    let meta = Meta::load(dir).map_err(ReportError::Meta)?;
    let records = record::read_results(&dir.join(RESULTS))?;
    let instances = record::read_instances(&dir.join(INSTANCES))?;
    let series = summarize(&records, &meta);
    let data = ReportData {
        meta,
        series,
        failures: instances.into_iter().filter(|i| !i.ok).collect(),
    };
    let mut files = Vec::new();
    let exporters: [&dyn Exporter; 2] = [&SummaryJson, &Markdown];
    for e in exporters {
        let path = dir.join(e.file_name());
        write(&path, &e.export(&data)?)?;
        files.push(path);
    }
    if let Some(c) = startup_chart(&data.series, &data.meta) {
        let charts = dir.join("charts");
        std::fs::create_dir_all(&charts).map_err(|source| ReportError::Write {
            path: charts.clone(),
            source,
        })?;
        let (svg, png) = (charts.join("startup.svg"), charts.join("startup.png"));
        chart::write_both(&c, &svg, &png)?;
        files.extend([svg, png]);
    }
    Ok(Rendered {
        table: terminal_table(&data.series),
        files,
    })
}
