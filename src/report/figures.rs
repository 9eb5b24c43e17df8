//! The report's charts: which chart each family gets, built from the series
//! summaries. Each builder is one function from data to a chart (or `None`
//! when there is nothing to draw); [`all`] lists every chart of a report,
//! and [`super::render`] writes them to `charts/<name>.svg` and `.png` and
//! the HTML report embeds the SVG.
//!
//! | chart              | family  | what it shows                                                  |
//! |--------------------|---------|----------------------------------------------------------------|
//! | `startup`          | startup | `startup_ms` per workload and environment (log scale when wide) |
//! | `vm_boot`          | startup | one stacked bar per workload: the medians of `boot_vmm_ms` + `boot_kernel_ms` + `boot_agent_ms`, with `startup_ms`'s median as a line (older runs: `boot_kernel_ms` and the rest of `startup_ms`) |
//! | `memory_pss`       | memory  | one PSS metric: `pss_steady_mib`, `pss_mib` or `pss_peak_mib`, whichever covers the most series measured in two environments or more |
//! | `memory_rss`       | memory  | one RSS metric, chosen the same way among `rss_peak_mib`, `max_rss_mib`, `rss_mib` |
//! | `memory`           | memory  | only without either: the memory metric with the most series     |
//! | `memory_bandwidth` | memory  | the `memory` workload's `score` (STREAM triad, MB/s)           |
//! | `vmm_overhead`     | memory  | `vmm_overhead_mib`, when it was measured                        |
//! | `timeline_memory`  | memory¹ | from `samples.csv`: RSS (and PSS where read) of each environment against time, one instance of the `idle` workload (else `density`, else the first sampled) |
//! | `timeline_cpu`     | memory¹ | the same instances' CPU time since ready against time           |
//! | `density_startup`  | density | the k-th instance's `startup_ms` against k (log scale when wide) |
//! | `density_memory`   | density | `density_pss_total_mib`, the PSS of all k instances alive       |
//! | `<family>`         | others  | each workload's headline metric (`score`, else its first): in its unit when all share one unit and one direction, else "× worse than native" |
//!
//! ¹ In the first family the run has when it has no memory figures.
//!
//! Rules every chart keeps, so that none can mislead:
//!
//! * Distributions are points, never bars: a median mark, a whisker and
//!   the repetitions as dots. A bar's length means something only on a
//!   linear axis from 0; the only bars left are the stacked parts of the VM
//!   boot, on such an axis.
//! * A whisker is a 95% confidence interval (solid, with caps) only when
//!   the series has one (n ≥ 6); otherwise it is the range min–max
//!   (dashed), and legend and caption say which. Outliers (red circles)
//!   come from the statistics, which look for them from n ≥ 5.
//! * "× worse than native" reads the same way for every figure: value ÷
//!   native median where lower is better, native median ÷ value where
//!   higher is better (so 0.078× as many forks per second shows as 12.8×
//!   worse), with a reference line at 1×.
//! * One metric per memory chart: `max_rss_mib` (wait4's peak) and
//!   `pss_steady_mib` (the sampler's steady PSS) measure different things.
//! * A value axis turns logarithmic when the values span more than
//!   [`LOG_SPAN`]× (0.4 ms and 2500 ms on one axis), and the title says so.

use super::family::Family;
use super::samples::Trace;
use super::{ReportData, SeriesSummary, chart};
use crate::env::EnvKind;
use crate::workload::Better;
use chart::Whisker;

/// Largest ratio of highest to lowest value drawn on a linear axis.
pub const LOG_SPAN: f64 = 30.0;

/// What a solid whisker is on a chart of medians.
const MEDIAN_CI: &str = "95% CI of the median (n ≥ 6)";
/// What a dashed whisker is on a chart of medians.
const MEDIAN_RANGE: &str = "min–max of the repetitions (n < 6: too few for a confidence interval)";

/// Most points drawn of one line over time (a long run's are thinned).
const MAX_LINE_POINTS: usize = 1000;

/// One chart of a report.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem under `charts/` and HTML anchor, e.g. `startup`.
    pub name: String,
    /// The section it belongs to.
    pub family: Family,
    /// The chart.
    pub chart: chart::Chart,
}

/// Every chart of a report, in report order.
pub fn all(data: &ReportData) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut push = |name: &str, family: Family, chart: Option<chart::Chart>| {
        if let Some(chart) = chart {
            out.push(Figure {
                name: name.to_string(),
                family,
                chart,
            });
        }
    };
    let bars = |c: Option<chart::BarChart>| c.map(chart::Chart::Bars);
    for family in Family::ALL {
        let series: Vec<&SeriesSummary> = data
            .series
            .iter()
            .filter(|s| data.family_of(s) == Some(family))
            .collect();
        if series.is_empty() {
            continue;
        }
        match family {
            Family::Startup => {
                push("startup", family, bars(startup_chart(&data.series, data)));
                push("vm_boot", family, bars(vm_boot_chart(&series)));
            }
            Family::Memory => {
                for (name, chart) in memory_charts(&series) {
                    push(name, family, Some(chart::Chart::Bars(chart)));
                }
                let bandwidth: Vec<&SeriesSummary> = series
                    .iter()
                    .copied()
                    .filter(|s| data.kind_of(&s.workload) == "memory" && s.metric == "score")
                    .collect();
                if !bandwidth.is_empty() {
                    push(
                        "memory_bandwidth",
                        family,
                        bars(absolute_chart(
                            "Memory bandwidth (STREAM triad), higher is better".into(),
                            &bandwidth,
                            false,
                        )),
                    );
                }
                let overhead: Vec<&SeriesSummary> = series
                    .iter()
                    .copied()
                    .filter(|s| s.metric == "vmm_overhead_mib")
                    .collect();
                if !overhead.is_empty() {
                    push(
                        "vmm_overhead",
                        family,
                        bars(absolute_chart(
                            "VMM overhead: QEMU's memory beyond guest RAM, lower is better".into(),
                            &overhead,
                            false,
                        )),
                    );
                }
            }
            Family::Density => {
                let startup = density_chart(
                    &series,
                    "startup_ms",
                    "Density: startup against instances already running",
                );
                let memory = density_chart(
                    &series,
                    "density_pss_total_mib",
                    "Density: PSS of all instances alive",
                );
                if startup.is_none() && memory.is_none() {
                    push(family.slug(), family, bars(family_chart(family, &series)));
                }
                push("density_startup", family, bars(startup));
                push("density_memory", family, bars(memory));
            }
            _ => push(family.slug(), family, bars(family_chart(family, &series))),
        }
    }
    // Over time: in the memory section, else the first the run has.
    let families = data.families();
    let home = families
        .iter()
        .copied()
        .find(|f| *f == Family::Memory)
        .or(families.first().copied());
    if let Some(family) = home {
        let (memory, cpu) = timeline_charts(data);
        push("timeline_memory", family, memory.map(chart::Chart::Lines));
        push("timeline_cpu", family, cpu.map(chart::Chart::Lines));
    }
    out
}

/// A density chart of `metric`: one group per instance count k (the k-th
/// instance started with k − 1 alive), one mark per environment holding the
/// k-th value of its series (density records the k-th instance as
/// repetition k, and series values are in repetition order).
fn density_chart(series: &[&SeriesSummary], metric: &str, title: &str) -> Option<chart::BarChart> {
    let picked: Vec<&&SeriesSummary> = series.iter().filter(|s| s.metric == metric).collect();
    let first = picked.first()?;
    let mut groups = Vec::new();
    let several = picked.iter().any(|s| s.workload != first.workload);
    for s in &picked {
        for (i, v) in s.values.iter().enumerate() {
            let group = if several {
                format!("{} · {}", s.workload, i + 1)
            } else {
                (i + 1).to_string()
            };
            push_bar(
                &mut groups,
                &group,
                chart::Bar {
                    series: s.environment.to_string(),
                    median: *v,
                    lo: *v,
                    hi: *v,
                    whisker: Whisker::None,
                    points: vec![],
                    outliers: vec![],
                },
            );
        }
    }
    let log_y = wants_log(&groups);
    Some(chart::BarChart {
        title: titled(title, &[log_y.then_some("log scale")]),
        y_label: format!("{metric} ({})", first.unit),
        groups,
        log_y,
        style: chart::Style::Points,
        reference: None,
        caption: Some(
            "groups: k, the number of instances alive once the k-th has started · one mark per \
             environment: the k-th instance's own value (one measurement, so no whisker)"
                .into(),
        ),
    })
}

/// A series' median, whisker and repetitions: the whisker is its 95% CI
/// when it has one (n ≥ 6), else its range.
fn bar(series: &SeriesSummary) -> chart::Bar {
    let x = &series.stats;
    let spread = x.spread();
    chart::Bar {
        series: series.environment.to_string(),
        median: x.median,
        lo: spread.lo,
        hi: spread.hi,
        whisker: if spread.is_ci {
            Whisker::Ci95
        } else {
            Whisker::Range
        },
        points: series.values.clone(),
        outliers: x
            .outliers
            .iter()
            .filter_map(|i| series.values.get(*i))
            .copied()
            .collect(),
    }
}

/// Whether every value of a bar is a finite number.
fn is_finite(bar: &chart::Bar) -> bool {
    [bar.median, bar.lo, bar.hi]
        .iter()
        .chain(&bar.points)
        .chain(&bar.outliers)
        .all(|v| v.is_finite())
}

fn push_bar(groups: &mut Vec<chart::Group>, group: &str, bar: chart::Bar) {
    match groups.iter_mut().find(|g| g.name == group) {
        Some(g) => g.bars.push(bar),
        None => groups.push(chart::Group {
            name: group.to_string(),
            bars: vec![bar],
            total: None,
        }),
    }
}

/// Whether the chart's values span more than [`LOG_SPAN`] (and can go on a
/// log axis: all positive).
fn wants_log(groups: &[chart::Group]) -> bool {
    let values: Vec<f64> = groups
        .iter()
        .flat_map(|g| &g.bars)
        .flat_map(|b| [b.median, b.hi].into_iter().chain(b.points.iter().copied()))
        .collect();
    let (lo, hi) = values.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(*v), hi.max(*v))
    });
    values.iter().all(|v| *v > 0.0) && hi / lo > LOG_SPAN
}

/// What the marks of a points chart mean, from what it holds: `ci` says
/// what a solid whisker is, `range` what a dashed one is; a kind of
/// whisker no series has is not mentioned (no "95% CI" where n < 6).
fn marks_caption(groups: &[chart::Group], ci: &str, range: &str) -> String {
    let bars = || groups.iter().flat_map(|g| &g.bars);
    let has = |w: Whisker| bars().any(|b| b.whisker == w);
    let mut parts = vec!["mark: median".to_string()];
    match (has(Whisker::Ci95), has(Whisker::Range)) {
        (true, true) => parts.push(format!("solid whisker: {ci}; dashed whisker: {range}")),
        (true, false) => parts.push(format!("whisker: {ci}")),
        (false, true) => parts.push(format!("dashed whisker: {range}")),
        (false, false) => {}
    }
    if bars().any(|b| !b.points.is_empty()) {
        parts.push("dots: repetitions".into());
    }
    if bars().any(|b| !b.outliers.is_empty()) {
        parts.push("red circles: outliers (modified Z > 3.5)".into());
    }
    parts.join(" · ")
}

/// `title (notes…)`, the notes that are there.
fn titled(title: &str, notes: &[Option<&str>]) -> String {
    let notes: Vec<&str> = notes.iter().flatten().copied().collect();
    if notes.is_empty() {
        title.to_string()
    } else {
        format!("{title} ({})", notes.join(", "))
    }
}

/// A points chart of medians: log axis when wide (said in the title, with
/// `note`).
fn medians_chart(
    title: &str,
    note: Option<&str>,
    y_label: String,
    groups: Vec<chart::Group>,
) -> chart::BarChart {
    let log_y = wants_log(&groups);
    let caption = marks_caption(&groups, MEDIAN_CI, MEDIAN_RANGE);
    chart::BarChart {
        title: titled(title, &[log_y.then_some("log scale"), note]),
        y_label,
        groups,
        log_y,
        style: chart::Style::Points,
        reference: None,
        caption: Some(caption),
    }
}

fn accel_note(data: &ReportData) -> Option<String> {
    data.meta
        .accelerator
        .as_ref()
        .map(|a| format!("VM under {}", a.accel.as_str().to_uppercase()))
}

/// The startup chart: one group per workload, one mark per environment.
pub fn startup_chart(series: &[SeriesSummary], data: &ReportData) -> Option<chart::BarChart> {
    let mut groups = Vec::new();
    for x in series.iter().filter(|x| x.metric == "startup_ms") {
        push_bar(&mut groups, &x.workload, bar(x));
    }
    if groups.is_empty() {
        return None;
    }
    Some(medians_chart(
        "Startup time: spawn to agent ready",
        accel_note(data).as_deref(),
        "startup_ms (ms)".into(),
        groups,
    ))
}

/// The parts of a VM's startup, in the order they happen, with their
/// legend names.
pub const BOOT_PARTS: [(&str, &str); 3] = [
    ("boot_vmm_ms", "QEMU's start (boot_vmm_ms)"),
    ("boot_kernel_ms", "guest kernel (boot_kernel_ms)"),
    ("boot_agent_ms", "agent set-up (boot_agent_ms)"),
];

/// The VM's startup as one stacked bar per workload: the medians of
/// [`BOOT_PARTS`], with the median `startup_ms` as the total line. A
/// workload without all three parts (a run from before they were
/// recorded) stacks `boot_kernel_ms` and the rest of `startup_ms` (its
/// median per instance). `None` without VM boot figures.
pub fn vm_boot_chart(series: &[&SeriesSummary]) -> Option<chart::BarChart> {
    // One bar per workload and VM environment (`vm`, and `vm-minimal`
    // beside it when the run has both kernels).
    let mut workloads: Vec<(&str, EnvKind)> = Vec::new();
    for s in series.iter().filter(|s| s.environment.is_vm()) {
        if !workloads.contains(&(s.workload.as_str(), s.environment)) {
            workloads.push((&s.workload, s.environment));
        }
    }
    let segment = |name: &str, median: f64| chart::Bar {
        series: name.to_string(),
        median,
        lo: median,
        hi: median,
        whisker: Whisker::None,
        points: vec![],
        outliers: vec![],
    };
    let mut groups = Vec::new();
    let mut fallback = false;
    for (w, vm) in workloads {
        let get = |m: &str| series.iter().find(|s| s.is(w, vm, m));
        let total = get("startup_ms");
        let parts: Vec<chart::Bar> = BOOT_PARTS
            .iter()
            .filter_map(|(m, label)| get(m).map(|s| segment(label, s.stats.median)))
            .collect();
        let bars = if parts.len() == BOOT_PARTS.len() {
            parts
        } else if let (Some(total), Some(kernel)) = (total, get("boot_kernel_ms")) {
            // Both come from the same instances, in repetition order.
            let rest = total.median_excess_over(kernel);
            fallback = true;
            vec![
                segment(BOOT_PARTS[1].1, kernel.stats.median),
                segment("the rest of startup_ms", rest),
            ]
        } else {
            continue;
        };
        // A part that came out negative or not a number cannot be stacked,
        // nor parts whose sum overflows.
        let sum: f64 = bars.iter().map(|b| b.median).sum();
        if bars.iter().any(|b| b.median.is_nan() || b.median < 0.0) || !sum.is_finite() {
            continue;
        }
        groups.push(chart::Group {
            name: match vm {
                EnvKind::VmMinimal => format!("{w} (vm-minimal)"),
                _ => w.to_string(),
            },
            bars,
            total: total.map(|t| t.stats.median).filter(|t| t.is_finite()),
        });
    }
    if groups.is_empty() {
        return None;
    }
    let mut caption = "segments: medians of boot_vmm_ms (QEMU's start and loading the kernel, \
                       before the virtual CPU runs), boot_kernel_ms (the guest's boot, by the \
                       virtual CPU's clock) and \
                       boot_agent_ms (the agent's set-up until ready); they add up to about \
                       startup_ms, whose median is the black line (a sum of medians need not \
                       equal the median of the sums)"
        .to_string();
    if fallback {
        caption.push_str(
            " · where the parts were not recorded: boot_kernel_ms and the rest, startup_ms − \
             boot_kernel_ms per instance",
        );
    }
    Some(chart::BarChart {
        title: "VM startup, broken down (medians per workload)".into(),
        y_label: "ms".into(),
        groups,
        log_y: false,
        style: chart::Style::Stacked {
            total_label: "startup_ms".into(),
        },
        reference: None,
        caption: Some(caption),
    })
}

/// A chart of series that share one unit: one group per workload (and
/// metric, when several), one mark per environment.
fn absolute_chart(
    title: String,
    series: &[&SeriesSummary],
    with_metric: bool,
) -> Option<chart::BarChart> {
    let unit = series.first()?.unit.clone();
    let metric = series.first()?.metric.clone();
    let mut groups = Vec::new();
    for s in series {
        let group = if with_metric {
            format!("{} · {}", s.workload, s.metric)
        } else {
            s.workload.clone()
        };
        push_bar(&mut groups, &group, bar(s));
    }
    let y_label = if with_metric {
        unit
    } else {
        format!("{metric} ({unit})")
    };
    Some(medians_chart(&title, None, y_label, groups))
}

/// PSS metrics, in order of preference on a tie.
const PSS_METRICS: [&str; 3] = ["pss_steady_mib", "pss_mib", "pss_peak_mib"];
/// RSS metrics, in order of preference on a tie.
const RSS_METRICS: [&str; 3] = ["rss_peak_mib", "max_rss_mib", "rss_mib"];

/// What a memory metric is, for a chart's title.
fn memory_description(metric: &str) -> &str {
    match metric {
        "pss_steady_mib" => "steady-state PSS of the instance's processes",
        "pss_mib" => "PSS when the workload is done",
        "pss_peak_mib" => "peak PSS of the instance's processes",
        "rss_peak_mib" => "peak RSS of the instance's processes",
        "max_rss_mib" => "peak RSS (wait4's ru_maxrss)",
        "rss_mib" => "RSS when the workload is done",
        other => other,
    }
}

/// Of `candidates`, the metric with the most series in workloads that
/// measured it in two environments or more, then with the most series at
/// all; the first on a tie. `None` if no candidate has a series.
fn pick_metric<'a>(series: &[&SeriesSummary], candidates: &[&'a str]) -> Option<&'a str> {
    let coverage = |m: &str| {
        let of = || series.iter().filter(|s| s.metric == m);
        let compared = of()
            .filter(|s| of().filter(|o| o.workload == s.workload).count() >= 2)
            .count();
        (compared, of().count())
    };
    candidates
        .iter()
        .rev()
        .copied()
        .map(|m| (m, coverage(m)))
        .filter(|(_, c)| c.1 > 0)
        // `max_by_key` keeps the last of equals, hence the reversal.
        .max_by_key(|(_, c)| *c)
        .map(|(m, _)| m)
}

/// The memory family's charts of footprint, one metric each: the best PSS
/// metric (`memory_pss`) and the best RSS metric (`memory_rss`); without
/// either, the memory metric with the most series (`memory`).
fn memory_charts(series: &[&SeriesSummary]) -> Vec<(&'static str, chart::BarChart)> {
    let chart = |metric: &str| {
        let of: Vec<&SeriesSummary> = series
            .iter()
            .copied()
            .filter(|s| s.metric == metric)
            .collect();
        let better = match of.first()?.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        };
        absolute_chart(
            format!("Memory: {}, {better} is better", memory_description(metric)),
            &of,
            false,
        )
    };
    let mut out = Vec::new();
    for (name, candidates) in [("memory_pss", &PSS_METRICS), ("memory_rss", &RSS_METRICS)] {
        if let Some(c) = pick_metric(series, candidates).and_then(chart) {
            out.push((name, c));
        }
    }
    if out.is_empty() {
        let mut others: Vec<&str> = Vec::new();
        for s in series {
            let footprint = s.metric.ends_with("_mib") || s.metric.ends_with("_kib");
            let own_chart = s.metric == "vmm_overhead_mib" || s.metric.starts_with("guest_");
            if footprint && !own_chart && !others.contains(&s.metric.as_str()) {
                others.push(&s.metric);
            }
        }
        if let Some(c) = pick_metric(series, &others).and_then(chart) {
            out.push(("memory", c));
        }
    }
    out
}

/// Every workload's headline series in a family: for each workload, the
/// series of the first metric of [`Family::headline`] it has, else of its
/// first metric in the family; in the given order.
pub fn headline_series<'a>(family: Family, series: &[&'a SeriesSummary]) -> Vec<&'a SeriesSummary> {
    let mut workloads: Vec<&str> = Vec::new();
    for s in series {
        if !workloads.contains(&s.workload.as_str()) {
            workloads.push(&s.workload);
        }
    }
    let headline: Vec<(&str, &str)> = workloads
        .iter()
        .filter_map(|w| {
            let mine = || series.iter().filter(|s| s.workload == *w);
            // The listed metric measured in the most environments (a chart
            // of one environment compares nothing); the first on a tie.
            let coverage = |m: &str| mine().filter(|s| s.metric == m).count();
            // (`max_by_key` keeps the last of equals, hence the reversal.)
            let best = family
                .headline()
                .iter()
                .rev()
                .copied()
                .filter(|m| coverage(m) > 0)
                .max_by_key(|m| coverage(m));
            let metric = best.or_else(|| mine().next().map(|s| s.metric.as_str()))?;
            Some((*w, metric))
        })
        .collect();
    series
        .iter()
        .copied()
        .filter(|s| headline.contains(&(s.workload.as_str(), s.metric.as_str())))
        .collect()
}

/// A family's main chart: every workload's headline metric (the first of
/// [`Family::headline`] it has, else its first metric in the family). In
/// its unit when all headline metrics share one unit and one direction;
/// otherwise [`worse_than_native_chart`].
pub fn family_chart(family: Family, series: &[&SeriesSummary]) -> Option<chart::BarChart> {
    let picked = headline_series(family, series);
    let first = picked.first()?;
    let one_unit = picked.iter().all(|s| s.unit == first.unit);
    let one_direction = picked.iter().all(|s| s.better == first.better);
    if !(one_unit && one_direction) {
        return worse_than_native_chart(family, &picked);
    }
    let one_metric = picked.iter().all(|s| s.metric == first.metric);
    let better = match first.better {
        Better::Higher => "higher",
        Better::Lower => "lower",
    };
    let title = if one_metric {
        format!("{}: {}, {better} is better", family.title(), first.metric)
    } else {
        format!("{}: {}, {better} is better", family.title(), first.unit)
    };
    absolute_chart(title, &picked, !one_metric)
}

/// What a solid whisker is on a "× worse than native" chart.
const RATIO_CI: &str =
    "95% CI of the ratio (bootstrap, n ≥ 6 on both sides; native: of its own median)";
/// What a dashed whisker is on a "× worse than native" chart.
const RATIO_RANGE: &str = "min–max of the repetitions, each against the native median (n < 6: \
                           too few for a confidence interval)";

/// One series as "× worse than native", given the native median of its
/// workload and metric: value ÷ native where lower is better, native ÷
/// value where higher is better, so that above 1 is always worse. The
/// whisker is the ratio's 95% CI when it has one (the native series: its
/// median's), else the range of the repetitions so divided. `None` when a
/// value cannot be inverted (0 or below) or the result is not finite.
pub fn worse_than_native(s: &SeriesSummary, native_median: f64) -> Option<chart::Bar> {
    if native_median.is_nan() || native_median <= 0.0 {
        return None;
    }
    let worse = |v: f64| match s.better {
        Better::Lower => Some(v / native_median),
        Better::Higher => (v > 0.0).then(|| native_median / v),
    };
    // An interval [lo, hi] of value ÷ native, turned the same way.
    let turn = |lo: f64, hi: f64| match s.better {
        Better::Lower => Some((lo, hi)),
        Better::Higher => (lo > 0.0).then(|| (1.0 / hi, 1.0 / lo)),
    };
    let median = worse(s.stats.median)?;
    let points: Vec<f64> = s.values.iter().map(|v| worse(*v)).collect::<Option<_>>()?;
    let outliers: Vec<f64> = s
        .stats
        .outliers
        .iter()
        .filter_map(|i| s.values.get(*i))
        .map(|v| worse(*v))
        .collect::<Option<_>>()?;
    let ci = if s.environment == EnvKind::Native {
        s.stats
            .ci95
            .as_ref()
            .and_then(|ci| turn(ci.lo / native_median, ci.hi / native_median))
    } else {
        s.ratio_ci95.as_ref().and_then(|ci| turn(ci.lo, ci.hi))
    };
    let (lo, hi, whisker) = match ci {
        Some((lo, hi)) => (lo, hi, Whisker::Ci95),
        None => {
            let lo = points.iter().copied().fold(median, f64::min);
            let hi = points.iter().copied().fold(median, f64::max);
            (lo, hi, Whisker::Range)
        }
    };
    let bar = chart::Bar {
        series: s.environment.to_string(),
        median,
        lo,
        hi,
        whisker,
        points,
        outliers,
    };
    is_finite(&bar).then_some(bar)
}

/// The headline figures of a family as "× worse than native" (see
/// [`worse_than_native`]), one group per workload and metric, with a
/// reference line at 1×; the axis title says that higher-is-better figures
/// are inverted and the caption names them. A figure without a positive
/// native median is left out.
pub fn worse_than_native_chart(
    family: Family,
    picked: &[&SeriesSummary],
) -> Option<chart::BarChart> {
    let native = EnvKind::Native;
    let mut groups = Vec::new();
    let mut inverted: Vec<String> = Vec::new();
    let mut divided: Vec<String> = Vec::new();
    for s in picked {
        let Some(reference) = picked
            .iter()
            .find(|r| r.workload == s.workload && r.metric == s.metric && r.environment == native)
            .map(|r| r.stats.median)
        else {
            continue;
        };
        let Some(b) = worse_than_native(s, reference) else {
            continue;
        };
        let group = format!("{} · {}", s.workload, s.metric);
        let named = format!("{group} ({})", s.unit);
        let list = match s.better {
            Better::Higher => &mut inverted,
            Better::Lower => &mut divided,
        };
        if !list.contains(&named) {
            list.push(named);
        }
        push_bar(&mut groups, &group, b);
    }
    if groups.is_empty() {
        return None;
    }
    let log_y = wants_log(&groups);
    let mut caption = marks_caption(&groups, RATIO_CI, RATIO_RANGE);
    caption.push_str(" · above 1 is worse than native for every figure");
    if !divided.is_empty() {
        caption.push_str(&format!(
            " · value ÷ native median (lower is better): {}",
            divided.join(", ")
        ));
    }
    if !inverted.is_empty() {
        caption.push_str(&format!(
            " · inverted, native median ÷ value (higher is better): {}",
            inverted.join(", ")
        ));
    }
    Some(chart::BarChart {
        title: titled(
            &format!("{}: how many times worse than native", family.title()),
            &[log_y.then_some("log scale")],
        ),
        y_label: "× worse than native (higher-is-better figures inverted)".into(),
        groups,
        log_y,
        style: chart::Style::Points,
        reference: Some(chart::Reference {
            value: 1.0,
            label: "native = 1×".into(),
        }),
        caption: Some(caption),
    })
}

/// At most [`MAX_LINE_POINTS`] of `points`, evenly thinned, the last kept.
fn thin(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let step = points.len().div_ceil(MAX_LINE_POINTS).max(1);
    if step == 1 {
        return points;
    }
    let last = points.last().copied();
    let mut out: Vec<(f64, f64)> = points.into_iter().step_by(step).collect();
    if out.last().copied() != last {
        out.extend(last);
    }
    out
}

/// The charts over time, from `samples.csv`: memory (RSS, and PSS on the
/// ticks it was read) and CPU time since ready, of one instance per
/// environment of one workload — the first `idle` workload sampled, else
/// the first `density` one, else the first sampled — each environment's
/// lowest repetition. `(None, None)` without samples.
pub fn timeline_charts(data: &ReportData) -> (Option<chart::LineChart>, Option<chart::LineChart>) {
    let traces: Vec<&Trace> = data
        .samples
        .traces
        .iter()
        .filter(|t| !t.ticks.is_empty())
        .collect();
    let kind_first = |kind: &str| {
        traces
            .iter()
            .find(|t| data.kind_of(&t.workload) == kind)
            .map(|t| t.workload.as_str())
    };
    // Else the workload sampled longest (its ticks in every environment
    // together), the first on a tie: a noop's one tick draws no line.
    let longest = || {
        let ticks = |w: &str| -> usize {
            traces
                .iter()
                .filter(|t| t.workload == w)
                .map(|t| t.ticks.len())
                .sum()
        };
        traces
            .iter()
            .rev()
            .max_by_key(|t| ticks(&t.workload))
            .map(|t| t.workload.as_str())
    };
    let Some(workload) = kind_first("idle")
        .or_else(|| kind_first("density"))
        .or_else(longest)
    else {
        return (None, None);
    };
    let mut picked: Vec<&Trace> = traces
        .iter()
        .copied()
        .filter(|t| t.workload == workload)
        .collect();
    let env_rank = |e: &str| {
        EnvKind::ALL
            .iter()
            .position(|k| k.as_str() == e)
            .unwrap_or(EnvKind::ALL.len())
    };
    picked.sort_by(|a, b| {
        (env_rank(&a.environment), &a.environment).cmp(&(env_rank(&b.environment), &b.environment))
    });
    if picked.iter().all(|t| t.ticks.len() < 2) {
        return (None, None);
    }
    let last_ms = picked
        .iter()
        .flat_map(|t| &t.ticks)
        .map(|t| t.t_ms)
        .fold(0.0, f64::max);
    let (scale, x_unit) = if last_ms > 10_000.0 {
        (1000.0, "s")
    } else {
        (1.0, "ms")
    };
    let which = if picked.iter().all(|t| t.repetition == picked[0].repetition) {
        format!("repetition {}", picked[0].repetition)
    } else {
        "each environment's first repetition".to_string()
    };
    let damaged = match data.samples.damaged {
        0 => String::new(),
        n => format!(" · {n} damaged rows of samples.csv skipped"),
    };
    let x_label = format!("time since the instance's ready frame ({x_unit})");

    let mut memory = Vec::new();
    let mut cpu = Vec::new();
    for t in &picked {
        let at = |tick: &super::samples::Tick| tick.t_ms / scale;
        memory.push(chart::Line {
            series: t.environment.to_string(),
            kind: "RSS".into(),
            dashed: false,
            markers: false,
            // A tick with no resident memory saw the process exiting (a
            // zombie has none): not a footprint.
            points: thin(
                t.ticks
                    .iter()
                    .filter(|k| k.rss_kib > 0)
                    .map(|k| (at(k), k.rss_kib as f64 / 1024.0))
                    .collect(),
            ),
        });
        let pss: Vec<(f64, f64)> = t
            .ticks
            .iter()
            .filter_map(|k| {
                k.pss_kib
                    .filter(|p| *p > 0)
                    .map(|p| (at(k), p as f64 / 1024.0))
            })
            .collect();
        if !pss.is_empty() {
            memory.push(chart::Line {
                series: t.environment.to_string(),
                kind: "PSS".into(),
                dashed: true,
                markers: true,
                points: thin(pss),
            });
        }
        let start = t.ticks[0].cpu_ms;
        cpu.push(chart::Line {
            series: t.environment.to_string(),
            kind: "CPU".into(),
            dashed: false,
            markers: false,
            points: thin(t.ticks.iter().map(|k| (at(k), k.cpu_ms - start)).collect()),
        });
    }
    let pss = if memory.iter().any(|l| l.kind == "PSS") {
        " · PSS (dashed, dots): shared pages divided among their sharers, read on a budget, \
         so only on some ticks"
    } else {
        ""
    };
    // Native's 2 MiB and a VM's 200 MiB on one axis: log when wide.
    let (lo, hi) = memory
        .iter()
        .flat_map(|l| &l.points)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let log_y = lo > 0.0 && hi / lo > LOG_SPAN;
    let memory = chart::LineChart {
        title: titled(
            &format!("Memory over time: {workload}, {which}"),
            &[log_y.then_some("log scale")],
        ),
        x_label: x_label.clone(),
        y_label: "MiB".into(),
        lines: memory,
        log_y,
        caption: Some(format!(
            "RSS (solid): resident memory of the instance's processes at every tick (a VM: \
             QEMU's, the guest memory it has touched included){pss} · one instance per \
             environment, from samples.csv{damaged}"
        )),
    };
    let cpu = chart::LineChart {
        title: format!("CPU time over time: {workload}, {which}"),
        x_label,
        y_label: "CPU time since ready (ms)".into(),
        lines: cpu,
        log_y: false,
        caption: Some(format!(
            "user + system CPU time of the instance's processes since its ready frame (a VM: \
             QEMU with all its threads), counted in clock ticks (10 ms steps); a slope of 1 ms \
             per ms is one core kept busy · one instance per environment, from samples.csv{damaged}"
        )),
    };
    (Some(memory), Some(cpu))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Record;
    use crate::report::samples::{Samples, Tick};
    use crate::report::{fixture, summarize};
    use crate::stats;

    fn series(
        workload: &str,
        env: &str,
        unit: &str,
        better: Better,
        values: &[f64],
    ) -> SeriesSummary {
        SeriesSummary {
            workload: workload.into(),
            environment: env.into(),
            metric: "score".into(),
            unit: unit.into(),
            better,
            stats: stats::summarize(values).unwrap(),
            values: values.to_vec(),
            ratio_to_native: None,
            ratio_ci95: None,
        }
    }

    /// Records of one metric: `values` per environment, repetitions 1..
    fn records(
        workload: &str,
        metric: &str,
        unit: &str,
        better: Better,
        by_env: &[(&str, &[f64])],
    ) -> Vec<Record> {
        let mut out = Vec::new();
        for (env, values) in by_env {
            for (i, v) in values.iter().enumerate() {
                out.push(Record {
                    workload: workload.into(),
                    environment: (*env).into(),
                    repetition: i as u32 + 1,
                    metric: metric.into(),
                    unit: unit.into(),
                    better,
                    value: *v,
                });
            }
        }
        out
    }

    fn bars_of<'a>(chart: &'a chart::BarChart, group: &str) -> &'a [chart::Bar] {
        &chart
            .groups
            .iter()
            .find(|g| g.name == group)
            .unwrap_or_else(|| panic!("no group {group}"))
            .bars
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    /// Regressions from tests/fuzz.rs: a relative chart divided by a native
    /// median that is negative (whiskers came out upside down) or so small
    /// that the quotient overflows (infinite values); either made the
    /// whole report fail.
    #[test]
    fn a_relative_chart_leaves_out_what_it_cannot_divide() {
        let all = [
            // Negative natively: no ratio scale, left out.
            series("a", "native", "ms", Better::Lower, &[-2.0, -1.0, -3.0]),
            series("a", "vm", "ms", Better::Lower, &[1.0, 2.0, 3.0]),
            // A subnormal native median: 138 / 3.7e-310 is infinite.
            series("b", "native", "ns", Better::Lower, &[3.7e-310]),
            series("b", "vm", "ns", Better::Lower, &[138.0]),
            // Higher is better and a value of 0: it cannot be inverted.
            series("z", "native", "ops", Better::Higher, &[5.0]),
            series("z", "vm", "ops", Better::Higher, &[0.0, 1.0]),
            // Ordinary.
            series("c", "native", "MiB", Better::Lower, &[2.0, 2.0]),
            series("c", "vm", "MiB", Better::Lower, &[4.0, 6.0]),
        ];
        let refs: Vec<&SeriesSummary> = all.iter().collect();
        let chart = family_chart(Family::Cpu, &refs).unwrap();
        assert!(
            chart.title.contains("times worse than native"),
            "{}",
            chart.title
        );
        let names: Vec<(&str, usize)> = chart
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.bars.len()))
            .collect();
        assert_eq!(
            names,
            [("b · score", 1), ("z · score", 1), ("c · score", 2)]
        );
        chart::render_svg(&chart).unwrap();
    }

    /// "× worse than native" reads the same way for every figure: a
    /// page-fault cost 6.3× native's and a fork rate 0.078× native's are
    /// both worse, so both come out above 1.
    #[test]
    fn the_normalised_chart_inverts_higher_is_better_figures() {
        let mut recs = records(
            "pagefault",
            "score",
            "ns/page",
            Better::Lower,
            &[
                ("native", &[100.0, 90.0, 110.0]),
                ("vm", &[630.0, 600.0, 700.0]),
            ],
        );
        recs.extend(records(
            "fork",
            "score",
            "forks/s",
            Better::Higher,
            &[
                ("native", &[1000.0, 1000.0, 1000.0]),
                ("vm", &[78.0, 80.0, 50.0]),
            ],
        ));
        let all = summarize(&recs);
        let refs: Vec<&SeriesSummary> = all.iter().collect();
        let chart = family_chart(Family::Syscalls, &refs).unwrap();
        assert_eq!(
            chart.y_label,
            "× worse than native (higher-is-better figures inverted)"
        );
        assert_eq!(chart.reference.as_ref().map(|r| r.value), Some(1.0));
        let vm = |g: &str| {
            bars_of(&chart, g)
                .iter()
                .find(|b| b.series == "vm")
                .unwrap()
                .clone()
        };
        // Lower is better: value ÷ native median.
        let pf = vm("pagefault · score");
        assert!(close(pf.median, 6.3), "{}", pf.median);
        assert_eq!(pf.points.len(), 3);
        assert!(close(pf.points[2], 7.0));
        // Higher is better: native median ÷ value, 1000 / 78.
        let fork = vm("fork · score");
        assert!(close(fork.median, 1000.0 / 78.0), "{}", fork.median);
        assert!(fork.median > 1.0);
        assert!(close(fork.points[2], 20.0), "{:?}", fork.points);
        // n = 3: the whisker is the range of the inverted repetitions.
        assert_eq!(fork.whisker, Whisker::Range);
        assert!(close(fork.lo, 12.5) && close(fork.hi, 20.0), "{fork:?}");
        let native = &bars_of(&chart, "fork · score")[0];
        assert_eq!(native.series, "native");
        assert!(close(native.median, 1.0));
        let caption = chart.caption.as_deref().unwrap();
        assert!(
            caption.contains(
                "inverted, native median ÷ value (higher is better): fork · score (forks/s)"
            ),
            "{caption}"
        );
        assert!(caption.contains("value ÷ native median (lower is better): pagefault · score"));
        assert!(!caption.contains("95% CI"), "n = 3: {caption}");
        chart::render_svg(&chart).unwrap();
    }

    /// With 6 repetitions a side the ratio has a bootstrap CI; inverted, its
    /// ends swap: [1/hi, 1/lo].
    #[test]
    fn an_inverted_ratio_keeps_its_confidence_interval() {
        let native = [1000.0, 990.0, 1010.0, 1005.0, 995.0, 1000.0];
        let vm = [100.0, 95.0, 105.0, 98.0, 102.0, 100.0];
        let mut recs = records(
            "fork",
            "score",
            "forks/s",
            Better::Higher,
            &[("native", &native), ("vm", &vm)],
        );
        recs.extend(records(
            "sys",
            "score",
            "ns",
            Better::Lower,
            &[("native", &native), ("vm", &vm)],
        ));
        let all = summarize(&recs);
        let vm_fork = all
            .iter()
            .find(|s| s.workload == "fork" && s.environment == EnvKind::Vm)
            .unwrap();
        let ci = vm_fork.ratio_ci95.as_ref().expect("n = 6 a side");
        let refs: Vec<&SeriesSummary> = all.iter().collect();
        let chart = family_chart(Family::Syscalls, &refs).unwrap();
        let bar = &bars_of(&chart, "fork · score")[1];
        assert_eq!(bar.whisker, Whisker::Ci95);
        assert!(
            close(bar.lo, 1.0 / ci.hi) && close(bar.hi, 1.0 / ci.lo),
            "{bar:?} {ci:?}"
        );
        assert!(close(bar.median, 10.0));
        assert!(
            chart
                .caption
                .as_deref()
                .unwrap()
                .contains("95% CI of the ratio")
        );
    }

    #[test]
    fn the_vm_boot_chart_is_one_stacked_bar_per_workload() {
        let mut recs = Vec::new();
        for (w, f) in [("noop", 1.0), ("cpu", 1.1)] {
            for (m, v) in [
                ("startup_ms", 1900.0),
                ("boot_vmm_ms", 700.0),
                ("boot_kernel_ms", 1150.0),
                ("boot_agent_ms", 20.0),
                ("boot_first_byte_ms", 1850.0),
            ] {
                let values: Vec<f64> = [v, v * 1.02, v * 0.98].iter().map(|x| x * f).collect();
                recs.extend(records(w, m, "ms", Better::Lower, &[("vm", &values)]));
            }
            recs.extend(records(
                w,
                "startup_ms",
                "ms",
                Better::Lower,
                &[("native", &[1.0, 1.1, 1.2])],
            ));
        }
        let all = summarize(&recs);
        let refs: Vec<&SeriesSummary> = all.iter().collect();
        let chart = vm_boot_chart(&refs).unwrap();
        assert!(matches!(chart.style, chart::Style::Stacked { .. }));
        assert!(!chart.log_y);
        assert_eq!(chart.groups.len(), 2, "one bar per workload");
        for (g, f) in chart.groups.iter().zip([1.0, 1.1]) {
            let parts: Vec<(&str, f64)> = g
                .bars
                .iter()
                .map(|b| (b.series.as_str(), b.median))
                .collect();
            let want: Vec<(&str, f64)> = BOOT_PARTS
                .iter()
                .zip([700.0, 1150.0, 20.0])
                .map(|((_, label), v)| (*label, v * f))
                .collect();
            assert_eq!(parts.len(), 3, "{parts:?}");
            for (p, w) in parts.iter().zip(&want) {
                assert_eq!(p.0, w.0);
                assert!(close(p.1, w.1), "{p:?} {w:?}");
            }
            assert!(close(g.total.unwrap(), 1900.0 * f));
        }
        assert!(
            chart
                .caption
                .as_deref()
                .unwrap()
                .contains("add up to about startup_ms")
        );
        let svg = chart::render_svg(&chart).unwrap();
        assert!(svg.contains("startup_ms"));
        // And on a log axis it would be refused.
        let mut log = chart.clone();
        log.log_y = true;
        assert!(matches!(
            chart::render_svg(&log),
            Err(chart::ChartError::StackedOnLogAxis { .. })
        ));
    }

    /// Every chart a report draws: on a log axis only points, never bars,
    /// and nothing in the plot taller than a median mark except a stacked
    /// bar on a linear axis.
    #[test]
    fn no_chart_draws_bars_on_a_log_axis() {
        let mut data = fixture::data(true);
        // Startup spans 1 ms to 2 s: a log axis.
        data.samples = samples_of(&["native", "vm"]);
        let figures = all(&data);
        assert!(
            figures
                .iter()
                .any(|f| matches!(&f.chart, chart::Chart::Bars(c) if c.log_y))
        );
        for f in &figures {
            let chart::Chart::Bars(c) = &f.chart else {
                continue;
            };
            let stacked = matches!(c.style, chart::Style::Stacked { .. });
            assert!(
                !(c.log_y && stacked),
                "{}: a stacked bar on a log axis",
                f.name
            );
            let svg = chart::render_svg(c).unwrap();
            let tall = chart::tests::tall_rects(&svg);
            if stacked {
                assert!(!tall.is_empty(), "{}", f.name);
            } else {
                assert!(tall.is_empty(), "{}: bars {tall:?}", f.name);
            }
        }
    }

    #[test]
    fn whiskers_say_whether_they_are_a_ci_or_the_range() {
        let three = [10.0, 11.0, 12.0];
        let six = [10.0, 11.0, 12.0, 10.5, 11.5, 11.0];
        let short = [
            series("w", "native", "ms", Better::Lower, &three),
            series("w", "vm", "ms", Better::Lower, &three),
        ];
        let refs: Vec<&SeriesSummary> = short.iter().collect();
        let chart = family_chart(Family::Cpu, &refs).unwrap();
        assert!(
            chart.groups[0]
                .bars
                .iter()
                .all(|b| b.whisker == Whisker::Range)
        );
        let caption = chart.caption.clone().unwrap();
        assert!(
            caption.contains("dashed whisker: min–max") && !caption.contains("95% CI"),
            "{caption}"
        );
        let svg = chart::render_svg(&chart).unwrap();
        assert!(svg.contains("min–max") && !svg.contains("95% CI"));
        assert!(chart.groups[0].bars.iter().all(|b| b.outliers.is_empty()));

        let long = [
            series("w", "native", "ms", Better::Lower, &six),
            series("w", "vm", "ms", Better::Lower, &three),
        ];
        let refs: Vec<&SeriesSummary> = long.iter().collect();
        let chart = family_chart(Family::Cpu, &refs).unwrap();
        let kinds: Vec<Whisker> = chart.groups[0].bars.iter().map(|b| b.whisker).collect();
        assert_eq!(kinds, [Whisker::Ci95, Whisker::Range]);
        let ci = long[0].stats.ci95.as_ref().unwrap();
        assert_eq!(
            (chart.groups[0].bars[0].lo, chart.groups[0].bars[0].hi),
            (ci.lo, ci.hi)
        );
        let caption = chart.caption.clone().unwrap();
        assert!(
            caption
                .contains("solid whisker: 95% CI of the median (n ≥ 6); dashed whisker: min–max"),
            "{caption}"
        );
        let svg = chart::render_svg(&chart).unwrap();
        assert!(svg.contains("95% CI") && svg.contains("min–max"));
    }

    #[test]
    fn each_memory_chart_holds_one_metric() {
        let mut recs = Vec::new();
        for w in ["cpu", "fork"] {
            let envs: &[(&str, &[f64])] = &[
                ("native", &[3.0, 3.0]),
                ("container", &[3.5, 3.5]),
                ("vm", &[200.0, 201.0]),
            ];
            recs.extend(records(w, "max_rss_mib", "MiB", Better::Lower, envs));
            recs.extend(records(w, "rss_peak_mib", "MiB", Better::Lower, envs));
            recs.extend(records(
                w,
                "pss_mib",
                "MiB",
                Better::Lower,
                &[("vm", &[170.0, 171.0])],
            ));
        }
        // The steady PSS only where the instance lived long enough.
        recs.extend(records(
            "cpu",
            "pss_steady_mib",
            "MiB",
            Better::Lower,
            &[("native", &[1.7]), ("vm", &[172.0])],
        ));
        let all = summarize(&recs);
        let refs: Vec<&SeriesSummary> = all.iter().collect();
        let charts = memory_charts(&refs);
        let names: Vec<&str> = charts.iter().map(|c| c.0).collect();
        assert_eq!(names, ["memory_pss", "memory_rss"]);
        let metric_of = |c: &chart::BarChart| c.y_label.clone();
        // pss_steady_mib is compared in two environments, pss_mib in one.
        assert_eq!(metric_of(&charts[0].1), "pss_steady_mib (MiB)");
        // A tie on coverage: the first listed.
        assert_eq!(metric_of(&charts[1].1), "rss_peak_mib (MiB)");
        for (_, c) in &charts {
            // One metric: groups are workloads, not "workload · metric".
            assert!(
                c.groups.iter().all(|g| !g.name.contains('·')),
                "{:?}",
                c.groups
            );
        }
    }

    /// A trace of `ticks` ticks 10 ms apart, PSS on every fifth.
    fn trace(workload: &str, env: &str, rss_kib: u64, ticks: usize) -> Trace {
        Trace {
            workload: workload.into(),
            environment: env.into(),
            repetition: 1,
            ticks: (0..ticks)
                .map(|i| Tick {
                    t_ms: i as f64 * 10.0,
                    cpu_ms: 100.0 + i as f64,
                    rss_kib: rss_kib + i as u64,
                    pss_kib: (i % 5 == 0).then_some(rss_kib / 2),
                })
                .collect(),
        }
    }

    fn samples_of(envs: &[&str]) -> Samples {
        let mut traces = vec![trace("noop", "native", 1000, 1)];
        for (i, e) in envs.iter().enumerate() {
            traces.push(trace("cpu", e, 2000 * (1 + 100 * i as u64), 50));
        }
        Samples { traces, damaged: 2 }
    }

    #[test]
    fn the_charts_over_time_come_from_samples_and_only_from_them() {
        let mut data = fixture::data(true);
        let names =
            |data: &ReportData| -> Vec<String> { all(data).into_iter().map(|f| f.name).collect() };
        assert!(!names(&data).iter().any(|n| n.starts_with("timeline")));

        data.samples = samples_of(&["native", "container", "vm"]);
        let figures = all(&data);
        let timeline: Vec<&Figure> = figures
            .iter()
            .filter(|f| f.name.starts_with("timeline"))
            .collect();
        assert_eq!(timeline.len(), 2);
        assert!(timeline.iter().all(|f| f.family == Family::Memory));
        let (Some(memory), Some(cpu)) = timeline_charts(&data) else {
            panic!("no charts over time");
        };
        // The noop's one tick draws nothing: the longest-sampled workload.
        assert!(
            memory.title.contains("cpu, repetition 1"),
            "{}",
            memory.title
        );
        // 2 MB next to 400 MB: a log axis, said in the title.
        assert!(memory.log_y && memory.title.contains("log scale"));
        let kinds: Vec<(&str, &str)> = memory
            .lines
            .iter()
            .map(|l| (l.series.as_str(), l.kind.as_str()))
            .collect();
        assert_eq!(kinds[..2], [("native", "RSS"), ("native", "PSS")]);
        assert_eq!(memory.lines[1].points.len(), 10);
        assert!(
            memory
                .caption
                .as_deref()
                .unwrap()
                .contains("2 damaged rows")
        );
        // CPU time since ready: from 0.
        assert_eq!(cpu.lines[0].points[0], (0.0, 0.0));
        assert_eq!(cpu.lines[0].points[49], (490.0, 49.0));
        chart::render_svg(&memory).unwrap();
        chart::render_svg(&cpu).unwrap();

        // An idle workload is preferred, however short.
        data.kinds.insert("sleepy".into(), "idle".into());
        data.samples.traces.push(trace("sleepy", "vm", 5000, 3));
        let (Some(memory), _) = timeline_charts(&data) else {
            panic!("no charts over time");
        };
        assert!(memory.title.contains("sleepy"), "{}", memory.title);

        // Samples too short for a line: no chart.
        data.samples.traces = vec![trace("noop", "native", 1000, 1)];
        assert!(timeline_charts(&data).0.is_none());
    }
}
