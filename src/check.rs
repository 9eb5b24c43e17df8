//! The bounds gate: `isobench check --bounds FILE RUN_DIR`.
//!
//! Kata Containers' `checkmetrics` holds every CI run to fixed absolute
//! bounds per metric, which a project must reset whenever its CI hardware
//! changes. isobench's bounds are above all **ratios to native measured in
//! the same run**: a container's CPU score over the native CPU score of the
//! same run, on the same host, in the same minutes (the environments take
//! turns within every repetition). The host's speed cancels out of such a
//! ratio, so a file of ratio bounds survives a change of CI machine far
//! better than absolute figures do. And a bound needs no test between two
//! runs: it judges one run at 3 repetitions, where `compare`'s permutation
//! test cannot reach a verdict at all (it needs 8 a side).
//!
//! A bounds file (TOML; `scenarios/bounds/quick-tcg.toml` is one) lists
//! `[[bound]]` tables, each a series (workload, environment, metric),
//! optionally the unit it must be in, and at least one limit:
//!
//! - `ratio_min`, `ratio_max`: on the series' median over the median of the
//!   native series of the same workload and metric, in the same run;
//! - `min`, `max`: on the series' median itself, in its unit.
//!
//! Optional top-level keys `scenario` and `accelerator` say which runs the
//! bounds were calibrated on; a run of another scenario, or whose VMs ran
//! under another accelerator, is refused (exit 2) rather than judged.
//!
//! **Noise.** Every limit is checked on the median. Beside it the table
//! shows the interval of what was measured: the distribution-free 95% CI of
//! the median from 6 repetitions on (for a ratio, its bootstrap CI, from 6
//! a side), else the range of the repetitions. A bound that holds for the
//! median but lies inside that interval is *marginal*: it passes, the table
//! says so, and `--strict` fails it. A ratio below 6 repetitions a side has
//! no interval, so it cannot be marginal.
//!
//! Exit codes: 0 every bound holds; 1 a bound failed, or its series is not
//! in the run (a gate that silently passes a renamed series guards
//! nothing); 2 bad input (a bad bounds file or run directory).

use crate::compare::{self, CompareError, Run};
use crate::env::EnvKind;
use crate::env::vm::Accel;
use crate::report::{SeriesSummary, fmt_value};
use crate::workload::Better;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use toml::Spanned;

/// The largest bounds file isobench reads: 1 MiB (a bound is a few lines).
pub const BOUNDS_LIMIT: u64 = 1 << 20;

/// Input the gate cannot judge. Every variant maps to exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The bounds file could not be read.
    #[error("cannot read bounds file {path}: {message}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// A value in the bounds file is bad; `location` is `file:line:column`.
    #[error(transparent)]
    Invalid(#[from] crate::tomlfile::Located),
    /// The run directory cannot be read.
    #[error("{0}")]
    Run(#[from] CompareError),
    /// A bound asserts a unit the run does not record its series in.
    #[error(
        "{location}: bound on {series} expects `{expected}`, but the run records it in `{actual}`: the bound's figure means something else now; recalibrate it in `{actual}`"
    )]
    UnitMismatch {
        /// Where the bound's `unit` is.
        location: String,
        /// The series, `workload/environment/metric`.
        series: String,
        /// The unit in the bounds file.
        expected: String,
        /// The unit in the run.
        actual: String,
    },
    /// The bounds are for another accelerator than the run's VMs used.
    #[error(
        "{location}: these bounds are for VMs under {expected}, but this run's VMs ran under {actual} ({reason}); use bounds calibrated under {actual}, or run with --accel {expected}"
    )]
    AccelMismatch {
        /// Where `accelerator` is.
        location: String,
        /// The accelerator in the bounds file.
        expected: &'static str,
        /// The run's accelerator.
        actual: &'static str,
        /// Why the run chose it.
        reason: String,
    },
    /// The bounds are for another scenario than the run ran.
    #[error(
        "{location}: these bounds are for scenario `{expected}`, but the run ran `{actual}`; check a run of `{expected}`, or write bounds for `{actual}`"
    )]
    ScenarioMismatch {
        /// Where `scenario` is.
        location: String,
        /// The scenario in the bounds file.
        expected: String,
        /// The run's scenario.
        actual: String,
    },
}

/// The bounds file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    description: Option<String>,
    scenario: Option<Spanned<String>>,
    accelerator: Option<Spanned<Accel>>,
    #[serde(default)]
    bound: Vec<Spanned<Entry>>,
}

/// One `[[bound]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    workload: Spanned<String>,
    environment: Spanned<EnvKind>,
    metric: Spanned<String>,
    unit: Option<Spanned<String>>,
    ratio_min: Option<Spanned<f64>>,
    ratio_max: Option<Spanned<f64>>,
    min: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
}

/// A value of the bounds file and where it was written.
#[derive(Debug, Clone, PartialEq)]
pub struct At<T> {
    /// The value.
    pub value: T,
    /// `file:line:column`.
    pub location: String,
}

/// Which limit a bound sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// The ratio to native must be at least the value.
    RatioMin,
    /// The ratio to native must be at most the value.
    RatioMax,
    /// The median must be at least the value.
    Min,
    /// The median must be at most the value.
    Max,
}

impl LimitKind {
    /// The key in the bounds file.
    pub fn key(self) -> &'static str {
        match self {
            LimitKind::RatioMin => "ratio_min",
            LimitKind::RatioMax => "ratio_max",
            LimitKind::Min => "min",
            LimitKind::Max => "max",
        }
    }

    /// Whether the limit is on the ratio to native.
    pub fn is_ratio(self) -> bool {
        matches!(self, LimitKind::RatioMin | LimitKind::RatioMax)
    }

    /// Whether the limit is a floor (else a ceiling).
    pub fn is_floor(self) -> bool {
        matches!(self, LimitKind::RatioMin | LimitKind::Min)
    }

    /// Whether `measured` keeps within a limit of `value`.
    pub fn holds(self, measured: f64, value: f64) -> bool {
        if self.is_floor() {
            measured >= value
        } else {
            measured <= value
        }
    }
}

/// One limit of a bound.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// Which.
    pub kind: LimitKind,
    /// Its value: a ratio, or a figure in the series' unit.
    pub value: f64,
    /// Where it was written, `file:line:column`.
    pub location: String,
}

/// One `[[bound]]`: a series and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// Workload name, as the scenario names it.
    pub workload: String,
    /// Environment.
    pub environment: EnvKind,
    /// Metric.
    pub metric: String,
    /// The unit the series must be in, when the file says.
    pub unit: Option<At<String>>,
    /// At least one limit.
    pub limits: Vec<Limit>,
}

impl Bound {
    /// `workload/environment/metric`.
    pub fn series(&self) -> String {
        format!("{}/{}/{}", self.workload, self.environment, self.metric)
    }
}

/// A validated bounds file.
#[derive(Debug, Clone, PartialEq)]
pub struct Bounds {
    /// The file, as errors and the output name it.
    pub origin: String,
    /// What the file says it is for.
    pub description: Option<String>,
    /// The scenario the bounds were calibrated on.
    pub scenario: Option<At<String>>,
    /// The accelerator of the VMs they were calibrated on.
    pub accelerator: Option<At<Accel>>,
    /// The bounds, in file order.
    pub bounds: Vec<Bound>,
}

impl Bounds {
    /// Reads and validates a bounds file.
    pub fn load(path: &Path) -> Result<Bounds, CheckError> {
        let text = crate::tomlfile::read(
            path,
            BOUNDS_LIMIT,
            "a bounds file (TOML), such as scenarios/bounds/quick-tcg.toml",
        )
        .map_err(|e| CheckError::Read {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Bounds::parse(&text, &path.display().to_string())
    }

    /// Parses and validates the text of a bounds file; `origin` names it.
    pub fn parse(text: &str, origin: &str) -> Result<Bounds, CheckError> {
        let at = |span: Option<Range<usize>>| {
            crate::tomlfile::locate(text, origin, span, "", String::new()).location
        };
        let invalid = |span: Option<Range<usize>>, key: &str, message: String| {
            CheckError::from(crate::tomlfile::locate(text, origin, span, key, message))
        };
        let file: File = crate::tomlfile::parse(text, origin).map_err(CheckError::from)?;
        if file.bound.is_empty() {
            return Err(invalid(
                None,
                "bound",
                "the file has no [[bound]] table; add at least one (workload, environment, \
                 metric and a limit: ratio_min, ratio_max, min or max)"
                    .into(),
            ));
        }

        let mut bounds: Vec<Bound> = Vec::with_capacity(file.bound.len());
        // Series bounded so far and where: a map, so a large file is checked
        // in linear time.
        let mut seen: HashMap<String, String> = HashMap::with_capacity(file.bound.len());
        for (index, entry) in file.bound.iter().enumerate() {
            let key = |k: &str| format!("bound[{index}].{k}");
            let table = entry.span();
            let entry = entry.get_ref();
            for (k, v) in [("workload", &entry.workload), ("metric", &entry.metric)] {
                if v.get_ref().trim().is_empty() {
                    return Err(invalid(
                        Some(v.span()),
                        &key(k),
                        format!("the {k} is empty; name it as results.csv does"),
                    ));
                }
            }
            let environment = *entry.environment.get_ref();
            let given = [
                (LimitKind::RatioMin, &entry.ratio_min),
                (LimitKind::RatioMax, &entry.ratio_max),
                (LimitKind::Min, &entry.min),
                (LimitKind::Max, &entry.max),
            ];
            let mut limits = Vec::new();
            for (kind, value) in given {
                let Some(value) = value else { continue };
                let v = *value.get_ref();
                let bad = |message: String| invalid(Some(value.span()), &key(kind.key()), message);
                if !v.is_finite() {
                    return Err(bad(format!("expected a finite number, got {v}")));
                }
                if kind.is_ratio() {
                    if environment == EnvKind::Native {
                        return Err(bad(
                            "a ratio to native on the native series is 1 by definition; bound \
                             native's own median with min or max instead"
                                .into(),
                        ));
                    }
                    if v <= 0.0 {
                        return Err(bad(format!(
                            "a ratio to native is positive; expected a number above 0, got {v} \
                             (1.0 is native's median, 0.9 is 10% below it)"
                        )));
                    }
                }
                limits.push(Limit {
                    kind,
                    value: v,
                    location: at(Some(value.span())),
                });
            }
            if limits.is_empty() {
                return Err(invalid(
                    Some(table),
                    &format!("bound[{index}]"),
                    format!(
                        "the bound on {}/{}/{} sets no limit; give at least one of ratio_min, \
                         ratio_max (the ratio to native in the same run), min, max (the median)",
                        entry.workload.get_ref(),
                        environment,
                        entry.metric.get_ref()
                    ),
                ));
            }
            for (lo_key, lo, hi_key, hi) in [
                ("ratio_min", &entry.ratio_min, "ratio_max", &entry.ratio_max),
                ("min", &entry.min, "max", &entry.max),
            ] {
                if let (Some(lo), Some(hi)) = (lo, hi)
                    && lo.get_ref() > hi.get_ref()
                {
                    return Err(invalid(
                        Some(hi.span()),
                        &key(hi_key),
                        format!(
                            "{hi_key} = {} is below {lo_key} = {}: no median can keep within both",
                            hi.get_ref(),
                            lo.get_ref()
                        ),
                    ));
                }
            }
            let series = Bound {
                workload: entry.workload.get_ref().clone(),
                environment,
                metric: entry.metric.get_ref().clone(),
                unit: entry.unit.as_ref().map(|u| At {
                    value: u.get_ref().clone(),
                    location: at(Some(u.span())),
                }),
                limits,
            };
            let name = series.series();
            if let Some(first) = seen.get(&name) {
                return Err(invalid(
                    Some(table),
                    &format!("bound[{index}]"),
                    format!(
                        "{name} is already bounded at {first}; put all its limits in one [[bound]]"
                    ),
                ));
            }
            seen.insert(name, at(Some(table)));
            bounds.push(series);
        }
        Ok(Bounds {
            origin: origin.to_string(),
            description: file.description,
            scenario: file.scenario.map(|s| At {
                location: at(Some(s.span())),
                value: s.into_inner(),
            }),
            accelerator: file.accelerator.map(|a| At {
                location: at(Some(a.span())),
                value: a.into_inner(),
            }),
            bounds,
        })
    }
}

/// What the gate concluded about one limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The median (or ratio) keeps within the limit, and so does its
    /// interval.
    Pass,
    /// The median keeps within the limit, but the limit lies inside the
    /// interval: some repetitions (or the CI) reach past it.
    Marginal,
    /// The median (or ratio) is past the limit.
    Fail,
    /// The series, or the native series its ratio needs, is not in the run.
    Missing,
}

impl Verdict {
    /// The verdict as the table prints it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Marginal => "pass, marginal",
            Verdict::Fail => "**FAIL**",
            Verdict::Missing => "**missing**",
        }
    }
}

/// The interval shown beside a measured figure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shown {
    /// Lower end.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
    /// `95% CI` or `range (n = 3)`.
    pub kind: String,
}

/// One judged limit.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Workload.
    pub workload: String,
    /// Environment.
    pub environment: String,
    /// Metric.
    pub metric: String,
    /// The series' unit in the run (absent when the series is missing).
    pub unit: Option<String>,
    /// Which direction is better for the series.
    pub better: Option<Better>,
    /// The limit.
    pub limit: LimitKind,
    /// Its value.
    pub bound: f64,
    /// The figure judged: the median, or for a ratio limit the ratio of
    /// the medians.
    pub measured: Option<f64>,
    /// The series' median.
    pub median: Option<f64>,
    /// Its repetitions.
    pub n: Option<usize>,
    /// Native's median, for a ratio limit.
    pub native_median: Option<f64>,
    /// Native's repetitions, for a ratio limit.
    pub native_n: Option<usize>,
    /// The interval of `measured`, when there is one.
    pub interval: Option<Shown>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why a series is missing.
    pub reason: Option<String>,
    /// Where the limit is written.
    pub location: String,
}

impl Row {
    /// `workload/environment/metric`.
    pub fn series(&self) -> String {
        format!("{}/{}/{}", self.workload, self.environment, self.metric)
    }

    /// The limit in words: `≥ 0.85× native`, `≤ 5000 ms`.
    pub fn bound_text(&self) -> String {
        let op = if self.limit.is_floor() { "≥" } else { "≤" };
        if self.limit.is_ratio() {
            format!("{op} {}× native", fmt_value(self.bound))
        } else {
            let unit = self.unit.as_deref().unwrap_or("");
            format!("{op} {} {unit}", fmt_value(self.bound))
                .trim_end()
                .to_string()
        }
    }

    /// What was measured, in words: `0.97× (3412 / 3514 rounds/s)`,
    /// `2063 ms (n = 3)`.
    pub fn measured_text(&self) -> String {
        let unit = self.unit.as_deref().unwrap_or("");
        match (self.measured, self.limit.is_ratio()) {
            (None, _) => "—".into(),
            (Some(r), true) => format!(
                "{:.3}× ({} / {} {unit}, n = {} / {})",
                r,
                fmt_value(self.median.unwrap_or(f64::NAN)),
                fmt_value(self.native_median.unwrap_or(f64::NAN)),
                self.n.unwrap_or(0),
                self.native_n.unwrap_or(0)
            ),
            (Some(m), false) => format!("{} {unit} (n = {})", fmt_value(m), self.n.unwrap_or(0)),
        }
    }

    /// The interval in words.
    pub fn interval_text(&self) -> String {
        match (&self.interval, self.measured) {
            (Some(i), _) => format!("[{}, {}] {}", fmt_value(i.lo), fmt_value(i.hi), i.kind),
            (None, Some(_)) if self.limit.is_ratio() => {
                format!("none below n = {} a side", crate::stats::CI_MIN_N)
            }
            (None, _) => "—".into(),
        }
    }
}

/// A whole check.
#[derive(Debug, Clone)]
pub struct Check {
    /// The bounds file.
    pub bounds_file: String,
    /// What the bounds file says it is for.
    pub description: Option<String>,
    /// The run's id and directory.
    pub run: (String, PathBuf),
    /// The run's scenario.
    pub scenario: String,
    /// The accelerator of the run's VMs, when it had any.
    pub accelerator: Option<Accel>,
    /// Whether a marginal bound fails.
    pub strict: bool,
    /// One row per limit, in file order.
    pub rows: Vec<Row>,
    /// Things a reader must know, each with what to do about it.
    pub warnings: Vec<String>,
}

fn scenario_name(run: &Run) -> String {
    run.meta
        .scenario
        .get("name")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_string()
}

fn find<'a>(
    run: &'a Run,
    workload: &str,
    environment: &str,
    metric: &str,
) -> Option<&'a SeriesSummary> {
    run.series.iter().find(|s| {
        s.workload == workload && s.environment.as_str() == environment && s.metric == metric
    })
}

/// Judges one limit of `bound` on the run.
fn judge(bound: &Bound, limit: &Limit, run: &Run) -> Row {
    let env = bound.environment.as_str();
    let series = find(run, &bound.workload, env, &bound.metric);
    let mut row = Row {
        workload: bound.workload.clone(),
        environment: env.to_string(),
        metric: bound.metric.clone(),
        unit: series.map(|s| s.unit.clone()),
        better: series.map(|s| s.better),
        limit: limit.kind,
        bound: limit.value,
        measured: None,
        median: series.map(|s| s.stats.median),
        n: series.map(|s| s.stats.n),
        native_median: None,
        native_n: None,
        interval: None,
        verdict: Verdict::Missing,
        reason: None,
        location: limit.location.clone(),
    };
    let Some(s) = series else {
        row.reason = Some("no such series in the run — did the scenario change?".into());
        return row;
    };
    if limit.kind.is_ratio() {
        let native = find(
            run,
            &bound.workload,
            EnvKind::Native.as_str(),
            &bound.metric,
        );
        row.native_median = native.map(|n| n.stats.median);
        row.native_n = native.map(|n| n.stats.n);
        if native.is_none() {
            row.reason = Some(format!(
                "no native series {}/native/{} in the run to take the ratio to — run native too",
                bound.workload, bound.metric
            ));
            return row;
        }
        let Some(ratio) = s.ratio_to_native else {
            row.reason = Some(
                "no ratio to native: native's median is 0 or a value is negative; bound the \
                 median with min or max instead"
                    .into(),
            );
            return row;
        };
        row.measured = Some(ratio);
        row.interval = s.ratio_ci95.as_ref().map(|ci| Shown {
            lo: ci.lo,
            hi: ci.hi,
            kind: "95% CI".into(),
        });
    } else {
        let spread = s.stats.spread();
        row.measured = Some(s.stats.median);
        row.interval = Some(Shown {
            lo: spread.lo,
            hi: spread.hi,
            kind: spread.label(),
        });
    }
    let measured = row.measured.unwrap_or(f64::NAN);
    row.verdict = if !limit.kind.holds(measured, limit.value) {
        Verdict::Fail
    } else if row.interval.as_ref().is_some_and(|i| {
        !limit.kind.holds(i.lo, limit.value) || !limit.kind.holds(i.hi, limit.value)
    }) {
        Verdict::Marginal
    } else {
        Verdict::Pass
    };
    row
}

/// Judges a run against bounds. Errors are bad input (exit 2): bounds for
/// another scenario or accelerator, or a series in another unit.
pub fn check(bounds: &Bounds, run: &Run, strict: bool) -> Result<Check, CheckError> {
    let scenario = scenario_name(run);
    if let Some(want) = &bounds.scenario
        && want.value != scenario
    {
        return Err(CheckError::ScenarioMismatch {
            location: want.location.clone(),
            expected: want.value.clone(),
            actual: scenario,
        });
    }
    let accelerator = run.meta.accelerator.as_ref().map(|a| a.accel);
    if let (Some(want), Some(got)) = (&bounds.accelerator, &run.meta.accelerator)
        && want.value != got.accel
    {
        return Err(CheckError::AccelMismatch {
            location: want.location.clone(),
            expected: want.value.as_str(),
            actual: got.accel.as_str(),
            reason: got.reason.clone(),
        });
    }
    let mut rows = Vec::new();
    let mut warnings = Vec::new();
    for bound in &bounds.bounds {
        let env = bound.environment.as_str();
        let series = find(run, &bound.workload, env, &bound.metric);
        if let (Some(want), Some(s)) = (&bound.unit, series)
            && want.value != s.unit
        {
            return Err(CheckError::UnitMismatch {
                location: want.location.clone(),
                series: bound.series(),
                expected: want.value.clone(),
                actual: s.unit.clone(),
            });
        }
        // A bound that only limits the good direction cannot catch a
        // regression of its series (absolute limits only: a ratio floor on
        // a cost, say vm/native startup, is a sanity check of its own).
        if let Some(s) = series {
            let abs: Vec<&Limit> = bound.limits.iter().filter(|l| !l.kind.is_ratio()).collect();
            let only_good = !abs.is_empty()
                && bound.limits.iter().all(|l| match s.better {
                    Better::Higher => l.kind == LimitKind::Max,
                    Better::Lower => l.kind == LimitKind::Min,
                });
            if only_good {
                let (has, want) = match s.better {
                    Better::Higher => ("max", "min"),
                    Better::Lower => ("min", "max"),
                };
                warnings.push(format!(
                    "{}: {} sets only `{has}` but {} is better for it, so it cannot catch a \
                     regression; did you mean `{want}`?",
                    abs[0].location,
                    bound.series(),
                    s.better.as_str()
                ));
            }
        }
        for limit in &bound.limits {
            rows.push(judge(bound, limit, run));
        }
    }
    if run.meta.status != crate::meta::RunStatus::Complete {
        warnings.push(format!(
            "the run's status is `{}`, not complete: some series may be missing or short. Its \
             report's Failures section says why.",
            run.meta.status
        ));
    }
    Ok(Check {
        bounds_file: bounds.origin.clone(),
        description: bounds.description.clone(),
        run: (run.meta.run_id.clone(), run.dir.clone()),
        scenario,
        accelerator,
        strict,
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

impl Check {
    /// Whether a row makes the gate fail.
    fn fails(&self, row: &Row) -> bool {
        match row.verdict {
            Verdict::Fail | Verdict::Missing => true,
            Verdict::Marginal => self.strict,
            Verdict::Pass => false,
        }
    }

    /// The rows that make the gate fail.
    pub fn failures(&self) -> Vec<&Row> {
        self.rows.iter().filter(|r| self.fails(r)).collect()
    }

    /// The exit status of `isobench check`: 1 when a row fails, else 0.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.failures().is_empty())
    }

    fn count(&self, verdict: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == verdict).count()
    }

    /// One line: how many limits held, and which did not.
    pub fn summary_line(&self) -> String {
        let failures = self.failures();
        let total = self.rows.len();
        if failures.is_empty() {
            let marginal = self.count(Verdict::Marginal);
            let note = if marginal > 0 {
                format!(
                    " ({marginal} marginal: the bound lies inside the interval; --strict fails them)"
                )
            } else {
                String::new()
            };
            return format!("**PASS**: all {total} bounds hold{note}.");
        }
        let named: Vec<String> = failures
            .iter()
            .map(|r| match r.verdict {
                Verdict::Missing if r.median.is_none() => format!("{} missing", r.series()),
                Verdict::Missing if r.native_median.is_none() => {
                    format!("{} {}: no native series", r.series(), r.limit.key())
                }
                Verdict::Missing => format!("{} {}: no ratio to native", r.series(), r.limit.key()),
                _ => format!(
                    "{} {} {}, measured {}",
                    r.series(),
                    r.limit.key(),
                    fmt_value(r.bound),
                    r.measured.map_or("—".into(), |m| format!("{m:.3}"))
                ),
            })
            .collect();
        format!(
            "**FAIL**: {} of {total} bounds not met: {}.",
            failures.len(),
            named.join("; ")
        )
    }

    /// The check as Markdown: what was checked, one table row per limit,
    /// and the summary line.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "## isobench check: `{}` on run `{}`\n",
            cell(&self.bounds_file),
            cell(&self.run.0)
        );
        if let Some(d) = &self.description {
            let _ = writeln!(s, "{}\n", cell(d.trim()));
        }
        let accel = self
            .accelerator
            .map_or(String::new(), |a| format!(", VMs under {}", a.as_str()));
        let _ = writeln!(
            s,
            "Scenario `{}`{accel}. Every bound is checked on the median of its series; a ratio \
             is the series' median over the native median of the same workload and metric in \
             this run. The interval (95% CI from {} repetitions, else the range) does not \
             decide; a bound inside it is marginal{}.\n",
            cell(&self.scenario),
            crate::stats::CI_MIN_N,
            if self.strict {
                ", which fails with --strict"
            } else {
                " (--strict fails it)"
            }
        );
        for w in &self.warnings {
            let _ = writeln!(s, "> **Warning:** {}\n", cell(w));
        }
        let _ = writeln!(s, "| series | bound | measured | interval | verdict |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for r in &self.rows {
            let verdict = match (&r.reason, r.verdict) {
                (Some(why), _) => format!("{}: {}", r.verdict.as_str(), why),
                (None, Verdict::Marginal) if self.strict => "**FAIL** (marginal, --strict)".into(),
                (None, v) => v.as_str().to_string(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                cell(&r.series()),
                cell(&r.bound_text()),
                cell(&r.measured_text()),
                cell(&r.interval_text()),
                cell(&verdict)
            );
        }
        let _ = writeln!(s, "\n{}", self.summary_line());
        s
    }

    /// The check as JSON: the run, the bounds file, and one object per limit.
    pub fn json(&self) -> String {
        let doc = serde_json::json!({
            "bounds_file": self.bounds_file,
            "run": {"run_id": self.run.0, "dir": self.run.1},
            "scenario": self.scenario,
            "accelerator": self.accelerator,
            "strict": self.strict,
            "passed": self.exit_code() == 0,
            "failures": self.failures().len(),
            "warnings": self.warnings,
            "summary": self.summary_line(),
            "bounds": self.rows,
        });
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        text.push('\n');
        text
    }
}

/// `isobench check`'s arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bounds file (TOML), such as scenarios/bounds/quick-tcg.toml.
    #[arg(long, value_name = "FILE")]
    pub bounds: PathBuf,
    /// The run directory to judge (for example reports/latest).
    pub run_dir: PathBuf,
    /// Fail (exit 1) also when a bound lies inside the interval of what
    /// was measured (the 95% CI, or the range below 6 repetitions).
    #[arg(long)]
    pub strict: bool,
    /// Output format: a Markdown table, or JSON (one object per limit).
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
}

/// `isobench check --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A Markdown table (for a pull-request comment or a CI log).
    Md,
    /// JSON, one object per limit.
    Json,
}

/// Runs `isobench check`; returns its exit code (0 pass, 1 fail, 2 bad input).
pub fn main(args: Args) -> ExitCode {
    let result = Bounds::load(&args.bounds).and_then(|bounds| {
        let run = compare::load("run", &args.run_dir)?;
        check(&bounds, &run, args.strict)
    });
    let checked = match result {
        Ok(c) => c,
        Err(e) => {
            crate::say!("isobench: error: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match args.format {
        Format::Md => checked.markdown(),
        Format::Json => checked.json(),
    };
    crate::show_part!("{text}");
    ExitCode::from(checked.exit_code())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;

    fn parse(text: &str) -> Result<Bounds, CheckError> {
        Bounds::parse(text, "b.toml")
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    const GOOD: &str = r#"# a comment
description = "test bounds"
scenario = "fx"
accelerator = "tcg"

[[bound]]
workload = "cpu"
environment = "container"
metric = "score"
unit = "rounds/s"
ratio_min = 0.9

[[bound]]
workload = "noop"
environment = "vm"
metric = "startup_ms"
max = 5000
ratio_max = 3000.0
"#;

    /// A run of scenario `fx` (VMs under TCG): cpu score at `native` and
    /// `container` rounds/s in 3 repetitions, noop vm startup near 2 s.
    fn run(native: f64, container: f64) -> Run {
        let mut records = Vec::new();
        let mut push = |w: &str, e: &str, m: &str, unit: &str, better, values: [f64; 3]| {
            for (i, value) in values.into_iter().enumerate() {
                records.push(Record {
                    workload: w.into(),
                    environment: e.into(),
                    repetition: i as u32 + 1,
                    metric: m.into(),
                    unit: unit.into(),
                    better,
                    value,
                });
            }
        };
        let spread = |x: f64| [x * 0.98, x, x * 1.01];
        push(
            "cpu",
            "native",
            "score",
            "rounds/s",
            Better::Higher,
            spread(native),
        );
        push(
            "cpu",
            "container",
            "score",
            "rounds/s",
            Better::Higher,
            spread(container),
        );
        push(
            "noop",
            "native",
            "startup_ms",
            "ms",
            Better::Lower,
            spread(1.0),
        );
        push(
            "noop",
            "vm",
            "startup_ms",
            "ms",
            Better::Lower,
            [1900.0, 2000.0, 2100.0],
        );
        Run {
            dir: PathBuf::from("/runs/fx"),
            meta: crate::report::fixture::meta(true),
            series: crate::report::summarize(&records),
        }
    }

    #[test]
    fn a_good_file_is_read_with_every_limit() {
        let b = parse(GOOD).unwrap();
        assert_eq!(b.description.as_deref(), Some("test bounds"));
        assert_eq!(b.scenario.as_ref().unwrap().value, "fx");
        assert_eq!(b.scenario.as_ref().unwrap().location, "b.toml:3:12");
        assert_eq!(b.accelerator.as_ref().unwrap().value, Accel::Tcg);
        assert_eq!(b.bounds.len(), 2);
        assert_eq!(b.bounds[0].series(), "cpu/container/score");
        assert_eq!(b.bounds[0].unit.as_ref().unwrap().value, "rounds/s");
        assert_eq!(
            b.bounds[0].limits,
            vec![Limit {
                kind: LimitKind::RatioMin,
                value: 0.9,
                location: "b.toml:11:13".into()
            }]
        );
        // Integers are read as numbers; limits in a fixed order.
        let kinds: Vec<_> = b.bounds[1]
            .limits
            .iter()
            .map(|l| (l.kind, l.value))
            .collect();
        assert_eq!(
            kinds,
            [(LimitKind::RatioMax, 3000.0), (LimitKind::Max, 5000.0)]
        );
    }

    #[test]
    fn the_shipped_bounds_file_is_valid() {
        let text = include_str!("../scenarios/bounds/quick-tcg.toml");
        let b = Bounds::parse(text, "quick-tcg.toml").unwrap();
        assert_eq!(b.scenario.as_ref().unwrap().value, "quick");
        assert_eq!(b.accelerator.as_ref().unwrap().value, Accel::Tcg);
        // Every workload of the default scenario has a bound on its score.
        let plan = crate::scenario::Plan::load(None, &Default::default()).unwrap();
        for w in &plan.workloads {
            if w.name == "noop" {
                continue;
            }
            assert!(
                b.bounds
                    .iter()
                    .any(|x| x.workload == w.name && x.metric == "score"),
                "no bound on {}'s score",
                w.name
            );
        }
    }

    #[test]
    fn bad_keys_are_named_with_line_and_column() {
        let msg = error(
            "[[bound]]\nworkload = \"cpu\"\nenvironment = \"container\"\nmetric = \"score\"\nratio_mn = 0.9\n",
        );
        assert!(
            msg.starts_with("b.toml:5:1: bound[0].ratio_mn: unknown field"),
            "{msg}"
        );
        assert!(msg.contains("unknown field `ratio_mn`"), "{msg}");
        assert!(msg.contains("ratio_min"), "{msg}");
        assert!(msg.ends_with("ratio_mn = 0.9\n      | ^"), "{msg}");

        let msg = error("bounds = 3\n");
        assert!(msg.starts_with("b.toml:1:1:"), "{msg}");
        assert!(msg.contains("unknown field `bounds`"), "{msg}");

        let msg = error(
            "[[bound]]\nworkload = \"cpu\"\nenvironment = \"container\"\nmetric = \"score\"\nratio_min = \"high\"\n",
        );
        assert!(msg.starts_with("b.toml:5:13: bound[0].ratio_min:"), "{msg}");

        let msg = error("[[bound]]\nworkload = \"cpu\"\nmetric = \"score\"\nmin = 1\n");
        assert!(msg.contains("missing field `environment`"), "{msg}");

        let msg = error("[[bound\n");
        assert!(msg.starts_with("b.toml:1:"), "{msg}");
        assert!(msg.contains("(document)"), "{msg}");

        let msg = error("# nothing\n");
        assert!(
            msg.starts_with("b.toml: bound: the file has no [[bound]] table"),
            "{msg}"
        );

        let msg = error(
            "accelerator = \"hvf\"\n[[bound]]\nworkload = \"cpu\"\nenvironment = \"vm\"\nmetric = \"score\"\nmin = 1\n",
        );
        assert!(msg.starts_with("b.toml:1:15: accelerator:"), "{msg}");
        assert!(msg.contains("expected `kvm` or `tcg`"), "{msg}");
    }

    #[test]
    fn a_bound_without_a_limit_is_refused() {
        let msg = error(
            "[[bound]]\nworkload = \"cpu\"\nenvironment = \"container\"\nmetric = \"score\"\nunit = \"rounds/s\"\n",
        );
        // Located at the table's header.
        assert!(
            msg.starts_with("b.toml:1:1: bound[0]: the bound on cpu/container/score sets no limit"),
            "{msg}"
        );
        assert!(msg.contains("ratio_min, ratio_max"), "{msg}");
    }

    #[test]
    fn a_ratio_on_native_is_refused() {
        let msg = error(
            "[[bound]]\nworkload = \"cpu\"\nenvironment = \"native\"\nmetric = \"score\"\nratio_min = 0.9\n",
        );
        assert!(
            msg.starts_with(
                "b.toml:5:13: bound[0].ratio_min: a ratio to native on the native series is 1"
            ),
            "{msg}"
        );
        assert!(msg.contains("min or max instead"), "{msg}");
        // An absolute bound on native is fine.
        parse("[[bound]]\nworkload = \"cpu\"\nenvironment = \"native\"\nmetric = \"score\"\nmin = 100\n").unwrap();
    }

    #[test]
    fn an_unknown_environment_is_refused() {
        let msg = error(
            "[[bound]]\nworkload = \"cpu\"\nenvironment = \"kata\"\nmetric = \"score\"\nmin = 1\n",
        );
        assert!(
            msg.starts_with("b.toml:3:15: bound[0].environment: unknown variant `kata`"),
            "{msg}"
        );
        assert!(msg.contains("`native`, `container`, `runc`"), "{msg}");
    }

    #[test]
    fn bad_values_are_refused() {
        let bound = |limits: &str| {
            error(&format!(
                "[[bound]]\nworkload = \"cpu\"\nenvironment = \"vm\"\nmetric = \"score\"\n{limits}\n"
            ))
        };
        let msg = bound("ratio_min = 0");
        assert!(
            msg.starts_with("b.toml:5:13: bound[0].ratio_min: a ratio to native is positive"),
            "{msg}"
        );
        let msg = bound("max = nan");
        assert!(
            msg.starts_with("b.toml:5:7: bound[0].max: expected a finite number"),
            "{msg}"
        );
        let msg = bound("min = 10\nmax = 5");
        assert!(
            msg.starts_with("b.toml:6:7: bound[0].max: max = 5 is below min = 10"),
            "{msg}"
        );
        let msg = bound("ratio_min = 1.2\nratio_max = 1.1");
        assert!(
            msg.starts_with(
                "b.toml:6:13: bound[0].ratio_max: ratio_max = 1.1 is below ratio_min = 1.2"
            ),
            "{msg}"
        );
        let msg = error(
            "[[bound]]\nworkload = \"\"\nenvironment = \"vm\"\nmetric = \"score\"\nmin = 1\n",
        );
        assert!(
            msg.starts_with("b.toml:2:12: bound[0].workload: the workload is empty"),
            "{msg}"
        );
        let twice =
            "[[bound]]\nworkload = \"cpu\"\nenvironment = \"vm\"\nmetric = \"score\"\nmin = 1\n";
        let msg = error(&format!("{twice}{twice}"));
        assert!(
            msg.starts_with("b.toml:6:1: bound[1]: cpu/vm/score is already bounded at b.toml:1:1"),
            "{msg}"
        );
    }

    #[test]
    fn a_good_run_passes() {
        let c = check(&parse(GOOD).unwrap(), &run(1000.0, 990.0), false).unwrap();
        assert_eq!(c.exit_code(), 0);
        assert!(
            c.rows.iter().all(|r| r.verdict == Verdict::Pass),
            "{:?}",
            c.rows
        );
        let ratio = &c.rows[0];
        assert!((ratio.measured.unwrap() - 0.99).abs() < 1e-9);
        assert_eq!(ratio.native_median, Some(1000.0));
        // 3 repetitions: no interval for a ratio, the range for a median.
        assert_eq!(ratio.interval, None);
        let max = c.rows.iter().find(|r| r.limit == LimitKind::Max).unwrap();
        assert_eq!(max.measured, Some(2000.0));
        assert_eq!(
            max.interval,
            Some(Shown {
                lo: 1900.0,
                hi: 2100.0,
                kind: "range (n = 3)".into()
            })
        );
        let md = c.markdown();
        assert!(md.contains("| cpu/container/score | ≥ 0.900× native | 0.990× (990 / 1000 rounds/s, n = 3 / 3) | none below n = 6 a side | pass |"), "{md}");
        assert!(md.contains("| noop/vm/startup_ms | ≤ 5000 ms | 2000 ms (n = 3) | [1900, 2100] range (n = 3) | pass |"), "{md}");
        assert!(md.ends_with("**PASS**: all 3 bounds hold.\n"), "{md}");
        let json: serde_json::Value = serde_json::from_str(&c.json()).unwrap();
        assert_eq!(json["passed"], true);
        assert_eq!(json["bounds"][0]["limit"], "ratio_min");
        assert_eq!(json["bounds"][0]["verdict"], "pass");
    }

    #[test]
    fn a_slow_container_fails_and_is_named() {
        let c = check(&parse(GOOD).unwrap(), &run(1000.0, 800.0), false).unwrap();
        assert_eq!(c.exit_code(), 1);
        let failed = c.failures();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].series(), "cpu/container/score");
        assert_eq!(failed[0].verdict, Verdict::Fail);
        let line = c.summary_line();
        assert_eq!(
            line,
            "**FAIL**: 1 of 3 bounds not met: cpu/container/score ratio_min 0.900, measured 0.800."
        );
        assert!(c.markdown().contains("| **FAIL** |"));
        let json: serde_json::Value = serde_json::from_str(&c.json()).unwrap();
        assert_eq!(json["passed"], false);
        assert_eq!(json["bounds"][0]["verdict"], "fail");
    }

    #[test]
    fn a_bound_inside_the_range_is_marginal_and_fails_only_when_strict() {
        let b = parse("[[bound]]\nworkload = \"noop\"\nenvironment = \"vm\"\nmetric = \"startup_ms\"\nmax = 2050\n").unwrap();
        let c = check(&b, &run(1000.0, 1000.0), false).unwrap();
        assert_eq!(c.rows[0].verdict, Verdict::Marginal);
        assert_eq!(c.exit_code(), 0);
        assert!(
            c.summary_line().contains("1 marginal"),
            "{}",
            c.summary_line()
        );
        let c = check(&b, &run(1000.0, 1000.0), true).unwrap();
        assert_eq!(c.exit_code(), 1);
        assert!(c.markdown().contains("**FAIL** (marginal, --strict)"));
    }

    #[test]
    fn a_missing_series_fails_the_gate() {
        let b = parse("[[bound]]\nworkload = \"fork\"\nenvironment = \"container\"\nmetric = \"score\"\nratio_min = 0.8\n\n[[bound]]\nworkload = \"noop\"\nenvironment = \"vm\"\nmetric = \"startup_ms\"\nratio_max = 5000\n").unwrap();
        let mut r = run(1000.0, 1000.0);
        r.series
            .retain(|s| !(s.workload == "noop" && s.environment == EnvKind::Native));
        let c = check(&b, &r, false).unwrap();
        assert_eq!(c.exit_code(), 1);
        assert!(c.rows.iter().all(|r| r.verdict == Verdict::Missing));
        let md = c.markdown();
        assert!(md.contains("| fork/container/score | ≥ 0.800× native | — | — | **missing**: no such series in the run — did the scenario change? |"), "{md}");
        assert!(
            md.contains("no native series noop/native/startup_ms in the run"),
            "{md}"
        );
        assert!(md.ends_with("**FAIL**: 2 of 2 bounds not met: fork/container/score missing; noop/vm/startup_ms ratio_max: no native series.\n"), "{md}");
    }

    #[test]
    fn bounds_for_another_unit_scenario_or_accelerator_are_bad_input() {
        let r = run(1000.0, 1000.0);
        let b = parse(&GOOD.replace("unit = \"rounds/s\"", "unit = \"ops/s\"")).unwrap();
        let msg = check(&b, &r, false).unwrap_err().to_string();
        assert!(msg.starts_with("b.toml:10:8: bound on cpu/container/score expects `ops/s`, but the run records it in `rounds/s`"), "{msg}");
        let b = parse(&GOOD.replace("scenario = \"fx\"", "scenario = \"quick\"")).unwrap();
        let msg = check(&b, &r, false).unwrap_err().to_string();
        assert!(
            msg.starts_with(
                "b.toml:3:12: these bounds are for scenario `quick`, but the run ran `fx`"
            ),
            "{msg}"
        );
        let b = parse(&GOOD.replace("accelerator = \"tcg\"", "accelerator = \"kvm\"")).unwrap();
        let msg = check(&b, &r, false).unwrap_err().to_string();
        assert!(
            msg.starts_with(
                "b.toml:4:15: these bounds are for VMs under kvm, but this run's VMs ran under tcg"
            ),
            "{msg}"
        );
        assert!(msg.contains("--accel kvm"), "{msg}");
        // A run without VMs has no accelerator to disagree with.
        let mut no_vm = run(1000.0, 1000.0);
        no_vm.meta.accelerator = None;
        assert!(check(&b, &no_vm, false).is_ok());
    }

    #[test]
    fn a_limit_only_on_the_good_side_is_warned_about() {
        let b = parse("[[bound]]\nworkload = \"cpu\"\nenvironment = \"container\"\nmetric = \"score\"\nmax = 1000000\n").unwrap();
        let c = check(&b, &run(1000.0, 1000.0), false).unwrap();
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert!(
            c.warnings[0].starts_with(
                "b.toml:5:7: cpu/container/score sets only `max` but higher is better"
            ),
            "{:?}",
            c.warnings
        );
        assert!(c.warnings[0].contains("did you mean `min`?"));
    }

    #[test]
    fn a_bounds_file_that_is_not_a_file_is_refused() {
        let dir = crate::testutil::TempDir::new("check-bounds");
        let msg = Bounds::load(&dir).unwrap_err().to_string();
        assert!(
            msg.contains("not a regular file; give a bounds file"),
            "{msg}"
        );
        let msg = Bounds::load(&dir.join("none.toml"))
            .unwrap_err()
            .to_string();
        assert!(msg.starts_with("cannot read bounds file"), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
    }
}
