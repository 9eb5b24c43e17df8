//! The regression gate: `isobench compare BASELINE CURRENT`.
//!
//! Two run directories are read from their records alone (`meta.json` and
//! `results.csv`). Series are matched by (workload, environment, metric);
//! for each pair the raw repetitions go through a two-sided permutation test
//! of the difference of medians ([`stats::permutation_test`], fixed seed, so
//! the same inputs always give the same verdict). A series **regressed**
//! only when both
//!
//! 1. the test is significant, `p < alpha` (default 0.01), and
//! 2. the median moved by more than the noise threshold (default 5%) in
//!    the direction that is worse for that metric (up for `lower` metrics
//!    such as `startup_ms`, down for `higher` ones such as `score`; the
//!    direction comes from `meta.json`).
//!
//! This is the Firecracker team's A/B method (a permutation test at
//! p < 0.01 and a 5% noise threshold), after fixed absolute bounds failed
//! them constantly on noisy hosts.
//!
//! With few repetitions a permutation test cannot reach a small p at all:
//! with 3 against 3 there are only 20 ways to split the pooled values and 4
//! of them give the largest possible gap between the medians, so p is never
//! below 0.2; at `alpha = 0.01` a median test needs 8 repetitions per side
//! ([`min_p_value`], [`reps_needed`]). Such series get the verdict
//! [`Verdict::TooFewRepetitions`] instead of a silent "no change", and the
//! output says how many repetitions would be needed.

use crate::meta::Meta;
use crate::record::{self, RESULTS, RecordError, RunDirError};
use crate::report::{self, SeriesSummary, fmt_value};
use crate::stats;
use crate::workload::Better;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Permutations drawn by the test (all splits are enumerated when there
/// are fewer).
pub const PERMUTATIONS: usize = 10_000;
/// Seed of the permutation test, fixed so a comparison is reproducible.
pub const SEED: u64 = 0x1500_BE4C_0000_0003;

/// The thresholds of the gate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Significance level of the permutation test, in (0, 1).
    pub alpha: f64,
    /// Noise threshold: the smallest relative change of the median, in
    /// percent, that counts.
    pub noise_pct: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            alpha: 0.01,
            noise_pct: 5.0,
        }
    }
}

/// Input that cannot be compared. Every variant maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A path is not a run directory (missing, a file, no `meta.json`).
    #[error("{role} {source}")]
    Dir {
        /// `baseline` or `current`.
        role: &'static str,
        /// What is wrong with it.
        source: RunDirError,
    },
    /// `meta.json` or `results.csv` is unreadable or corrupt.
    #[error("{role}: {source}")]
    Records {
        /// `baseline` or `current`.
        role: &'static str,
        /// The file, line and what is wrong.
        source: RecordError,
    },
    /// The runs ran different scenarios.
    #[error(
        "the runs ran different scenarios: baseline `{baseline}`, current `{current}`; compare runs of the same scenario"
    )]
    ScenarioMismatch {
        /// The baseline's scenario name.
        baseline: String,
        /// The current run's scenario name.
        current: String,
    },
    /// A workload has different parameters in the two runs.
    #[error(
        "workload `{workload}` has different parameters: baseline {baseline}, current {current}; its figures are not comparable"
    )]
    WorkloadMismatch {
        /// The workload.
        workload: String,
        /// Its spec in the baseline.
        baseline: String,
        /// Its spec in the current run.
        current: String,
    },
    /// A metric has different units in the two runs.
    #[error(
        "series `{series}` is in {baseline} in the baseline but in {current} in the current run; a unit that changed within a series cannot be compared: rerun the baseline with this isobench"
    )]
    UnitMismatch {
        /// The series, `workload/environment/metric`.
        series: String,
        /// Its unit in the baseline.
        baseline: String,
        /// Its unit in the current run.
        current: String,
    },
    /// No series is in both runs.
    #[error("the runs have no series (workload, environment, metric) in common")]
    NothingInCommon,
}

/// One run directory, loaded.
#[derive(Debug, Clone)]
pub struct Run {
    /// The directory.
    pub dir: PathBuf,
    /// Its `meta.json`.
    pub meta: Meta,
    /// Its series, summarized from `results.csv`.
    pub series: Vec<SeriesSummary>,
}

/// Reads a run directory for comparison; `role` (`baseline` or `current`)
/// names it in errors.
pub fn load(role: &'static str, dir: &Path) -> Result<Run, CompareError> {
    record::check_run_dir(dir).map_err(|source| CompareError::Dir { role, source })?;
    let records_error = |source| CompareError::Records { role, source };
    let meta = Meta::load(dir).map_err(records_error)?;
    let records = record::read_results(&dir.join(RESULTS)).map_err(records_error)?;
    let series = report::summarize(&records);
    Ok(Run {
        dir: dir.to_path_buf(),
        meta,
        series,
    })
}

/// What the gate concluded about one series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Significant, and worse by more than the noise threshold.
    Regression,
    /// Significant, and better by more than the noise threshold.
    Improvement,
    /// Significant, but the median moved less than the noise threshold.
    WithinNoise,
    /// Not significant.
    NoChange,
    /// Inconclusive: the test cannot reach `p < alpha` with this many
    /// repetitions, whatever the data.
    #[serde(rename = "inconclusive")]
    TooFewRepetitions,
    /// Only the baseline has this series.
    OnlyInBaseline,
    /// Only the current run has this series.
    OnlyInCurrent,
}

impl Verdict {
    /// The verdict as the table prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regression => "**regression**",
            Verdict::Improvement => "improvement",
            Verdict::WithinNoise => "within noise",
            Verdict::NoChange => "no significant change",
            Verdict::TooFewRepetitions => "inconclusive",
            Verdict::OnlyInBaseline => "only in baseline",
            Verdict::OnlyInCurrent => "only in current",
        }
    }
}

/// Median and n of one side.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Side {
    /// Median of the repetitions.
    pub median: f64,
    /// Number of repetitions.
    pub n: usize,
}

/// One compared series.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Row {
    /// Workload name.
    pub workload: String,
    /// Environment.
    pub environment: String,
    /// Metric.
    pub metric: String,
    /// Unit.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
    /// The baseline's figures.
    pub baseline: Option<Side>,
    /// The current run's figures.
    pub current: Option<Side>,
    /// Relative change of the median, `current / baseline - 1` (±∞ from a
    /// zero baseline).
    pub change: Option<f64>,
    /// p-value of the permutation test.
    pub p: Option<f64>,
    /// The smallest p-value the test could give with these sizes (computed
    /// only when `p` is not below alpha).
    pub min_p: Option<f64>,
    /// The verdict.
    pub verdict: Verdict,
    /// Repetitions per side the test needs to reach `p < alpha` at all,
    /// for an inconclusive verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reps_needed: Option<usize>,
}

impl Row {
    /// The verdict in words, with the repetitions it lacked when it is
    /// inconclusive (`inconclusive: n = 3 < 8`).
    pub fn verdict_text(&self) -> String {
        match (self.verdict, self.reps_needed) {
            (Verdict::TooFewRepetitions, Some(needed)) => {
                let n = [self.baseline, self.current]
                    .iter()
                    .flatten()
                    .map(|s| s.n)
                    .min()
                    .unwrap_or(0);
                format!("inconclusive: n = {n} < {needed}")
            }
            (v, _) => v.as_str().to_string(),
        }
    }
}

/// A whole comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The thresholds used.
    pub settings: Thresholds,
    /// The baseline's run id and directory.
    pub baseline: (String, PathBuf),
    /// The current run's id and directory.
    pub current: (String, PathBuf),
    /// The scenario both ran.
    pub scenario: String,
    /// One row per series in either run, in the current run's order.
    pub rows: Vec<Row>,
    /// Things a reader must know (different accelerators or hosts, too
    /// few repetitions), each with what to do about it.
    pub warnings: Vec<String>,
}

impl Comparison {
    /// The rows that regressed.
    pub fn regressions(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Regression)
            .collect()
    }

    /// The rows the test could not judge with so few repetitions.
    pub fn inconclusive(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::TooFewRepetitions)
            .collect()
    }

    /// The exit status of `isobench compare`: 1 for a regression, or with
    /// `strict` for an inconclusive series (a CI job that must not pass
    /// without a verdict); 0 otherwise.
    pub fn exit_code(&self, strict: bool) -> u8 {
        let failed = !self.regressions().is_empty() || (strict && !self.inconclusive().is_empty());
        u8::from(failed)
    }

    /// The comparison as JSON: the runs, thresholds and warnings, and one
    /// object per series (medians, change, p-value, verdict).
    pub fn json(&self) -> String {
        let doc = serde_json::json!({
            "scenario": self.scenario,
            "baseline": {"run_id": self.baseline.0, "dir": self.baseline.1},
            "current": {"run_id": self.current.0, "dir": self.current.1},
            "alpha": self.settings.alpha,
            "noise_pct": self.settings.noise_pct,
            "regressions": self.regressions().len(),
            "inconclusive": self.inconclusive().len(),
            "warnings": self.warnings,
            "series": self.rows.iter().map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                v["verdict_text"] = serde_json::Value::String(r.verdict_text());
                v
            }).collect::<Vec<_>>(),
        });
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// The smallest p-value [`stats::permutation_test`] can return for samples
/// of sizes `na` and `nb`.
///
/// The test's statistic is the gap between the medians, and it is largest
/// when the samples do not overlap at all. Even then many splits reach the
/// same gap: moving values that lie beyond both medians from one side to
/// the other changes neither median. With 6 against 6, 12 of the 924
/// splits do, so p cannot go below 0.013, however large the change. This
/// function computes that floor by running the test on two samples that
/// are as far apart as can be.
pub fn min_p_value(na: usize, nb: usize) -> f64 {
    // A deterministic function of the sizes, and up to PERMUTATIONS splits
    // to evaluate: remember it.
    static MEMO: Mutex<BTreeMap<(usize, usize), f64>> = Mutex::new(BTreeMap::new());
    if let Some(p) = MEMO.lock().ok().and_then(|m| m.get(&(na, nb)).copied()) {
        return p;
    }
    let a: Vec<f64> = (0..na).map(|i| i as f64).collect();
    let b: Vec<f64> = (0..nb).map(|i| 1e6 + i as f64).collect();
    let p = stats::permutation_test(&a, &b, PERMUTATIONS, SEED);
    if let Ok(mut m) = MEMO.lock() {
        m.insert((na, nb), p);
    }
    p
}

/// The smallest number of repetitions per side (equal sizes) with which
/// the test can reach `p < alpha`.
pub fn reps_needed(alpha: f64) -> usize {
    (1..=64).find(|n| min_p_value(*n, *n) < alpha).unwrap_or(64)
}

fn scenario_name(meta: &Meta) -> String {
    meta.scenario
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string()
}

/// Checks that two runs can be compared at all.
fn check_compatible(base: &Run, cur: &Run) -> Result<(), CompareError> {
    let (b, c) = (scenario_name(&base.meta), scenario_name(&cur.meta));
    if b != c {
        return Err(CompareError::ScenarioMismatch {
            baseline: b,
            current: c,
        });
    }
    let specs = |meta: &Meta| -> Vec<(String, serde_json::Value)> {
        meta.scenario
            .get("workloads")
            .and_then(|w| w.as_array())
            .into_iter()
            .flatten()
            .filter_map(|w| Some((w.get("name")?.as_str()?.to_string(), w.get("spec")?.clone())))
            .collect()
    };
    let base_specs = specs(&base.meta);
    for (name, spec) in specs(&cur.meta) {
        if let Some((_, other)) = base_specs.iter().find(|(n, _)| *n == name)
            && *other != spec
        {
            return Err(CompareError::WorkloadMismatch {
                workload: name,
                baseline: other.to_string(),
                current: spec.to_string(),
            });
        }
    }
    // A series is (workload, environment, metric); only a unit that changed
    // within one series makes two runs incomparable.
    for s in &cur.series {
        if let Some(o) = base.series.iter().find(|o| {
            o.workload == s.workload && o.environment == s.environment && o.metric == s.metric
        }) && (o.unit != s.unit || o.better != s.better)
        {
            return Err(CompareError::UnitMismatch {
                series: format!("{}/{}/{}", s.workload, s.environment, s.metric),
                baseline: format!("{} ({} is better)", o.unit, o.better.as_str()),
                current: format!("{} ({} is better)", s.unit, s.better.as_str()),
            });
        }
    }
    Ok(())
}

fn key(s: &SeriesSummary) -> (&str, &str, &str) {
    (&s.workload, s.environment.as_str(), &s.metric)
}

fn side(s: &SeriesSummary) -> Side {
    Side {
        median: s.stats.median,
        n: s.stats.n,
    }
}

/// The verdict on one matched pair of series.
fn judge(base: &SeriesSummary, cur: &SeriesSummary, settings: Thresholds) -> Row {
    let better = cur.better;
    let (b, c) = (base.stats.median, cur.stats.median);
    let change = if b != 0.0 {
        (c - b) / b.abs()
    } else if c == b {
        0.0
    } else {
        (c - b).signum() * f64::INFINITY
    };
    let p = stats::permutation_test(&base.values, &cur.values, PERMUTATIONS, SEED);
    // The floor only matters (and only costs time) when p is not below alpha.
    let min_p = (p >= settings.alpha).then(|| min_p_value(base.values.len(), cur.values.len()));
    let noise = settings.noise_pct / 100.0;
    let worse = match better {
        Better::Lower => change > noise,
        Better::Higher => change < -noise,
    };
    let improved = match better {
        Better::Lower => change < -noise,
        Better::Higher => change > noise,
    };
    let verdict = if p < settings.alpha {
        if worse {
            Verdict::Regression
        } else if improved {
            Verdict::Improvement
        } else {
            Verdict::WithinNoise
        }
    } else if min_p.is_some_and(|m| m >= settings.alpha) {
        Verdict::TooFewRepetitions
    } else {
        Verdict::NoChange
    };
    Row {
        workload: cur.workload.clone(),
        environment: cur.environment.to_string(),
        metric: cur.metric.clone(),
        unit: cur.unit.clone(),
        better,
        baseline: Some(side(base)),
        current: Some(side(cur)),
        change: Some(change),
        p: Some(p),
        min_p,
        verdict,
        reps_needed: (verdict == Verdict::TooFewRepetitions).then(|| reps_needed(settings.alpha)),
    }
}

/// Compares two loaded runs.
pub fn compare(base: &Run, cur: &Run, settings: Thresholds) -> Result<Comparison, CompareError> {
    check_compatible(base, cur)?;
    let mut rows = Vec::new();
    for s in &cur.series {
        match base.series.iter().find(|o| key(o) == key(s)) {
            Some(o) => rows.push(judge(o, s, settings)),
            None => rows.push(Row {
                workload: s.workload.clone(),
                environment: s.environment.to_string(),
                metric: s.metric.clone(),
                unit: s.unit.clone(),
                better: s.better,
                baseline: None,
                current: Some(side(s)),
                change: None,
                p: None,
                min_p: None,
                verdict: Verdict::OnlyInCurrent,
                reps_needed: None,
            }),
        }
    }
    for o in &base.series {
        if !cur.series.iter().any(|s| key(s) == key(o)) {
            rows.push(Row {
                workload: o.workload.clone(),
                environment: o.environment.to_string(),
                metric: o.metric.clone(),
                unit: o.unit.clone(),
                better: o.better,
                baseline: Some(side(o)),
                current: None,
                change: None,
                p: None,
                min_p: None,
                verdict: Verdict::OnlyInBaseline,
                reps_needed: None,
            });
        }
    }
    if !rows.iter().any(|r| r.p.is_some()) {
        return Err(CompareError::NothingInCommon);
    }

    let mut warnings = Vec::new();
    let too_few = rows
        .iter()
        .filter(|r| r.verdict == Verdict::TooFewRepetitions)
        .count();
    if too_few > 0 {
        let smallest = rows
            .iter()
            .filter_map(|r| r.min_p.filter(|_| r.verdict == Verdict::TooFewRepetitions))
            .fold(f64::INFINITY, f64::min);
        warnings.push(format!(
            "{too_few} series have too few repetitions for the test to reach p below {}: with them \
             the smallest possible p is {:.3}. Run both sides with --reps {} or more.",
            settings.alpha,
            smallest,
            reps_needed(settings.alpha)
        ));
    }
    for (role, run) in [("baseline", base), ("current", cur)] {
        if run.meta.status != crate::meta::RunStatus::Complete {
            warnings.push(format!(
                "the {role} run's status is `{}`, not complete: some of its series may be \
                 missing or short. Its report's Failures section says why.",
                run.meta.status
            ));
        }
    }
    if let (Some(a), Some(b)) = (&base.meta.accelerator, &cur.meta.accelerator)
        && a.accel != b.accel
    {
        warnings.push(format!(
            "the baseline's VMs ran under {} and the current run's under {}: the VM series \
             differ for that reason alone. Compare runs with the same --accel.",
            a.accel.as_str(),
            b.accel.as_str()
        ));
    }
    if base.meta.host.cpu_model != cur.meta.host.cpu_model
        || base.meta.host.cores != cur.meta.host.cores
    {
        warnings.push(format!(
            "the runs come from different hosts ({} with {} cores, and {} with {} cores): \
             differences may come from the hardware. Compare runs from the same machine.",
            base.meta.host.cpu_model,
            base.meta.host.cores,
            cur.meta.host.cpu_model,
            cur.meta.host.cores
        ));
    }
    Ok(Comparison {
        settings,
        baseline: (base.meta.run_id.clone(), base.dir.clone()),
        current: (cur.meta.run_id.clone(), cur.dir.clone()),
        scenario: scenario_name(&cur.meta),
        rows,
        warnings,
    })
}

/// Escapes free text for a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace(['\n', '\r'], " ")
}

fn fmt_change(change: f64) -> String {
    if change.is_infinite() {
        if change > 0.0 { "+∞%" } else { "−∞%" }.to_string()
    } else {
        format!("{:+.1}%", change * 100.0)
    }
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn fmt_side(s: Option<Side>) -> String {
    s.map_or("—".into(), |s| {
        format!("{} (n={})", fmt_value(s.median), s.n)
    })
}

impl Comparison {
    /// The comparison as Markdown: a verdict line, warnings and one table
    /// row per series.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let st = &self.settings;
        let _ = writeln!(s, "## isobench compare: `{}`\n", cell(&self.scenario));
        let _ = writeln!(
            s,
            "Baseline `{}` vs current `{}`. A regression is a series whose raw repetitions \
             differ in a two-sided permutation test of the medians with p < {} *and* whose \
             median is worse by more than {}%.\n",
            cell(&self.baseline.0),
            cell(&self.current.0),
            st.alpha,
            st.noise_pct
        );
        let regressions = self.regressions();
        let compared = self.rows.iter().filter(|r| r.p.is_some()).count();
        if regressions.is_empty() {
            let _ = writeln!(s, "**No regression** among {compared} compared series.\n");
        } else {
            let _ = writeln!(
                s,
                "**{} regression{}** among {compared} compared series:\n",
                regressions.len(),
                if regressions.len() == 1 { "" } else { "s" }
            );
            for r in &regressions {
                let _ = writeln!(
                    s,
                    "- `{}` in `{}`: `{}` {} (p = {})",
                    cell(&r.workload),
                    cell(r.environment.as_str()),
                    cell(&r.metric),
                    r.change.map_or("?".into(), fmt_change),
                    r.p.map_or("?".into(), fmt_p)
                );
            }
            s.push('\n');
        }
        for w in &self.warnings {
            let _ = writeln!(s, "> **Warning:** {}\n", cell(w));
        }
        let _ = writeln!(
            s,
            "| workload | environment | metric | baseline median | current median | change | p | verdict |"
        );
        let _ = writeln!(s, "|---|---|---|---:|---:|---:|---:|---|");
        for r in &self.rows {
            let dir = match r.better {
                Better::Lower => "lower",
                Better::Higher => "higher",
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} ({}, {dir} is better) | {} | {} | {} | {} | {} |",
                cell(&r.workload),
                cell(r.environment.as_str()),
                cell(&r.metric),
                cell(&r.unit),
                fmt_side(r.baseline),
                fmt_side(r.current),
                r.change.map_or("—".into(), fmt_change),
                r.p.map_or("—".into(), fmt_p),
                r.verdict_text()
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(metric: &str, better: Better, values: &[f64]) -> SeriesSummary {
        SeriesSummary {
            workload: "cpu".into(),
            environment: "native".into(),
            metric: metric.into(),
            unit: "ms".into(),
            better,
            stats: stats::summarize(values).unwrap(),
            values: values.to_vec(),
            ratio_to_native: None,
            ratio_ci95: None,
        }
    }

    fn strict() -> Thresholds {
        Thresholds::default()
    }

    const BASE: [f64; 8] = [100.0, 101.0, 99.5, 100.4, 100.9, 99.8, 100.2, 100.6];

    #[test]
    fn a_clear_slowdown_of_a_lower_metric_is_a_regression() {
        let worse: Vec<f64> = BASE.iter().map(|v| v * 1.2).collect();
        let row = judge(
            &series("startup_ms", Better::Lower, &BASE),
            &series("startup_ms", Better::Lower, &worse),
            strict(),
        );
        assert_eq!(row.verdict, Verdict::Regression, "{row:?}");
        assert!((row.change.unwrap() - 0.2).abs() < 1e-12);
        // Complete separation of 8 vs 8: close to the floor, 40/12870.
        assert!(row.p.unwrap() < 0.01, "{row:?}");
    }

    #[test]
    fn direction_decides_between_regression_and_improvement() {
        let up: Vec<f64> = BASE.iter().map(|v| v * 1.2).collect();
        let score_up = judge(
            &series("score", Better::Higher, &BASE),
            &series("score", Better::Higher, &up),
            strict(),
        );
        assert_eq!(score_up.verdict, Verdict::Improvement);
        let down: Vec<f64> = BASE.iter().map(|v| v * 0.8).collect();
        let score_down = judge(
            &series("score", Better::Higher, &BASE),
            &series("score", Better::Higher, &down),
            strict(),
        );
        assert_eq!(score_down.verdict, Verdict::Regression);
        let time_down = judge(
            &series("startup_ms", Better::Lower, &BASE),
            &series("startup_ms", Better::Lower, &down),
            strict(),
        );
        assert_eq!(time_down.verdict, Verdict::Improvement);
    }

    #[test]
    fn a_significant_change_below_the_noise_threshold_is_not_a_regression() {
        // 3% slower, perfectly separated: significant, but under 5%.
        let worse: Vec<f64> = BASE.iter().map(|v| v * 1.03).collect();
        let row = judge(
            &series("startup_ms", Better::Lower, &BASE),
            &series("startup_ms", Better::Lower, &worse),
            strict(),
        );
        assert!(row.p.unwrap() < 0.01);
        assert_eq!(row.verdict, Verdict::WithinNoise);
        // The same data with a 2% threshold is a regression.
        let row = judge(
            &series("startup_ms", Better::Lower, &BASE),
            &series("startup_ms", Better::Lower, &worse),
            Thresholds {
                alpha: 0.01,
                noise_pct: 2.0,
            },
        );
        assert_eq!(row.verdict, Verdict::Regression);
    }

    #[test]
    fn the_floor_of_p_matches_an_independent_enumeration() {
        // Reference values: Python's itertools.combinations over every split
        // of two non-overlapping samples, statistic |median(a) - median(b)|
        // (computed once, independently of this code). Closed form for
        // equal sizes n: 2 * C(k, k/2) / C(2n, n), k = 2 * floor((n - 1) / 2).
        let cases: [(usize, f64); 5] = [
            (3, 4.0 / 20.0),
            (5, 12.0 / 252.0),
            (6, 12.0 / 924.0),
            (7, 40.0 / 3432.0),
            (4, 4.0 / 70.0),
        ];
        for (n, want) in cases {
            let got = min_p_value(n, n);
            assert!((got - want).abs() < 1e-15, "n={n}: {got} vs {want}");
        }
        // 8 against 8 has 12870 splits, more than PERMUTATIONS: Monte Carlo
        // around the exact 40/12870 = 0.0031.
        assert!((min_p_value(8, 8) - 40.0 / 12870.0).abs() < 0.0015);
        assert_eq!(reps_needed(0.01), 8);
        assert_eq!(reps_needed(0.05), 5);
        let row = judge(
            &series("startup_ms", Better::Lower, &[1.0, 1.1, 1.2]),
            &series("startup_ms", Better::Lower, &[2.0, 2.1, 2.2]),
            strict(),
        );
        assert_eq!(row.p, Some(0.2));
        assert_eq!(row.verdict, Verdict::TooFewRepetitions);
    }

    #[test]
    fn p_values_match_an_independent_enumeration() {
        // Reference: itertools enumeration in Python (see above). 7% slower.
        let base = [10.1, 9.8, 10.4, 10.0, 9.9];
        let cur = [10.6, 10.9, 10.3, 11.2, 10.7];
        let row = judge(
            &series("startup_ms", Better::Lower, &base),
            &series("startup_ms", Better::Lower, &cur),
            Thresholds {
                alpha: 0.05,
                noise_pct: 5.0,
            },
        );
        assert!((row.p.unwrap() - 12.0 / 252.0).abs() < 1e-15, "{row:?}");
        assert!((row.change.unwrap() - 0.07).abs() < 1e-12);
        assert_eq!(row.verdict, Verdict::Regression);
        // The same at alpha = 0.01: 5 repetitions can never get there.
        let row = judge(
            &series("startup_ms", Better::Lower, &base),
            &series("startup_ms", Better::Lower, &cur),
            strict(),
        );
        assert_eq!(row.verdict, Verdict::TooFewRepetitions);
        // 6 against 6: p = 12/924, significant at 0.02 but not at 0.01.
        let base6 = [10.1, 9.8, 10.4, 10.0, 9.9, 10.2];
        let cur6 = [10.6, 10.9, 10.3, 11.2, 10.7, 10.8];
        let at = |alpha| {
            judge(
                &series("startup_ms", Better::Lower, &base6),
                &series("startup_ms", Better::Lower, &cur6),
                Thresholds {
                    alpha,
                    noise_pct: 5.0,
                },
            )
        };
        assert!((at(0.02).p.unwrap() - 12.0 / 924.0).abs() < 1e-15);
        assert_eq!(at(0.02).verdict, Verdict::Regression);
        assert_eq!(at(0.01).verdict, Verdict::TooFewRepetitions);
    }

    #[test]
    fn the_gate_stays_quiet_on_noise() {
        // 300 pairs of runs of 10 repetitions from one distribution (a 3%
        // relative spread, like a quiet host): the permutation test alone
        // fires at about its level, the gate (p < 0.01 and a change beyond
        // 5%) practically never.
        let mut rng = <rand_pcg::Pcg64 as rand::SeedableRng>::seed_from_u64(2026);
        let mut draw = || {
            (0..10)
                .map(|_| {
                    // Sum of 4 uniforms: bell-shaped, mean 100, sd about 3.
                    let u: f64 = (0..4)
                        .map(|_| (rand::Rng::next_u64(&mut rng) >> 11) as f64 / (1u64 << 53) as f64)
                        .sum();
                    100.0 + (u - 2.0) * 5.2
                })
                .collect::<Vec<f64>>()
        };
        let (mut significant, mut regressions) = (0, 0);
        for _ in 0..300 {
            let (a, b) = (draw(), draw());
            let row = judge(
                &series("startup_ms", Better::Lower, &a),
                &series("startup_ms", Better::Lower, &b),
                strict(),
            );
            significant += usize::from(row.p.unwrap() < 0.01);
            regressions += usize::from(row.verdict == Verdict::Regression);
        }
        assert!(significant <= 9, "{significant} of 300 significant at 1%");
        assert_eq!(regressions, 0, "the gate fired on noise");
    }

    #[test]
    fn a_zero_baseline_gives_an_infinite_change() {
        let row = judge(
            &series("errors", Better::Lower, &[-0.3, -0.2, -0.1, 0.1, 0.2, 0.3]),
            &series("errors", Better::Lower, &[9.7, 9.8, 9.9, 10.1, 10.2, 10.3]),
            Thresholds {
                alpha: 0.02,
                noise_pct: 5.0,
            },
        );
        assert_eq!(row.change, Some(f64::INFINITY));
        assert_eq!(row.verdict, Verdict::Regression);
        assert_eq!(fmt_change(f64::INFINITY), "+∞%");
    }

    #[test]
    fn identical_series_never_regress() {
        let row = judge(
            &series("startup_ms", Better::Lower, &BASE),
            &series("startup_ms", Better::Lower, &BASE),
            strict(),
        );
        assert_eq!(row.p, Some(1.0));
        assert_eq!(row.verdict, Verdict::NoChange);
    }

    #[test]
    fn load_names_what_is_wrong_with_a_directory() {
        let dir = crate::testutil::TempDir::new("cmp-load");
        let err = |path: &Path| load("baseline", path).unwrap_err().to_string();
        let missing = dir.join("missing");
        assert_eq!(
            err(&missing),
            format!("baseline directory {} does not exist", missing.display())
        );
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(
            err(&file).starts_with(&format!("baseline {} is not a directory", file.display())),
            "{}",
            err(&file)
        );
        assert!(err(&dir).ends_with("is not a run directory: it has no meta.json"));
        crate::report::fixture::meta(false).save(&dir).unwrap();
        std::fs::write(
            dir.join(RESULTS),
            "workload,environment,repetition,metric,unit,value\ncpu,native,1,score,ops,1\ncpu,native,1,score,ops,2\n",
        )
        .unwrap();
        assert!(
            err(&dir)
                .contains("results.csv:3: duplicate row for cpu/native repetition 1 metric score"),
            "{}",
            err(&dir)
        );
        std::fs::write(
            dir.join(crate::meta::META),
            "{\"run_id\": \"x\",\n\"status\": 3}",
        )
        .unwrap();
        assert!(
            err(&dir).starts_with(&format!(
                "baseline: {}:2: ",
                dir.join("meta.json").display()
            )),
            "{}",
            err(&dir)
        );
    }

    fn fixture_run() -> Run {
        let data = crate::report::fixture::data(true);
        Run {
            dir: PathBuf::from("/runs/fx"),
            meta: data.meta,
            series: data.series,
        }
    }

    #[test]
    fn whole_runs_compare_with_warnings_and_escaped_names() {
        let run = fixture_run();
        let c = compare(&run, &run, strict()).unwrap();
        assert!(c.regressions().is_empty());
        assert!(
            c.rows
                .iter()
                .all(|r| r.verdict == Verdict::TooFewRepetitions)
        );
        let md = c.markdown();
        assert!(md.contains("**No regression**"), "{md}");
        assert!(md.contains("Run both sides with --reps 8 or more"), "{md}");
        assert!(!md.contains("<script>"), "{md}");
        assert!(md.contains("&lt;script&gt;"), "{md}");

        // A series only one side has is listed, not compared.
        let mut fewer = fixture_run();
        fewer.series.retain(|s| s.metric != "rtt_us");
        let c = compare(&run, &fewer, strict()).unwrap();
        assert!(
            c.rows
                .iter()
                .any(|r| r.metric == "rtt_us" && r.verdict == Verdict::OnlyInBaseline)
        );

        let mut other = fixture_run();
        other.meta.scenario["name"] = "other".into();
        let err = compare(&run, &other, strict()).unwrap_err().to_string();
        assert!(err.contains("baseline `fx`, current `other`"), "{err}");
        let mut nothing = fixture_run();
        nothing.series.clear();
        assert!(matches!(
            compare(&run, &nothing, strict()),
            Err(CompareError::NothingInCommon)
        ));
    }
}
