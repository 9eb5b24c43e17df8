//! The report's charts: which chart each family gets, built from the series
//! summaries. Each builder is one function from data to a
//! [`chart::BarChart`] (or `None` when there is nothing to draw); [`all`]
//! lists every chart of a report, and [`super::render`] writes them to
//! `charts/<name>.svg` and `.png` and the HTML report embeds the SVG.
//!
//! | chart            | family  | what it shows                                                  |
//! |------------------|---------|----------------------------------------------------------------|
//! | `startup`        | startup | `startup_ms` per workload and environment (log scale)          |
//! | `vm_boot`        | startup | the VM's startup split: guest kernel boot, QEMU + firmware (the rest of `startup_ms`), and any other VM boot metric |
//! | `memory`         | memory  | the headline memory metric (`pss_mib`, else `rss_mib`, else the first) |
//! | `vmm_overhead`   | memory  | `vmm_overhead_mib`, when it was measured                        |
//! | `memory_bandwidth` | memory | the `memory` workload's `score` (STREAM triad, MB/s)          |
//! | `density_startup`| density | the k-th instance's `startup_ms` against k (log scale when wide) |
//! | `density_memory` | density | `density_pss_total_mib`, the PSS of all k instances alive       |
//! | `<family>`       | others  | each workload's headline metric (`score`, else its first): absolute when all share one unit, else relative to native |
//!
//! Every bar is a series' median, its whisker runs from min to max, dots are
//! the repetitions and red circles the outliers (modified Z-score > 3.5). A
//! value axis turns logarithmic when the values span more than
//! [`LOG_SPAN`]× (0.4 ms and 2500 ms on one axis).

use super::family::Family;
use super::{ReportData, SeriesSummary, chart};
use crate::env::EnvKind;

/// Largest ratio of highest to lowest value drawn on a linear axis.
pub const LOG_SPAN: f64 = 30.0;

/// The caption of every chart built here.
const CAPTION: &str =
    "bar: median · whisker: min–max · dots: repetitions · red circles: outliers (modified Z > 3.5)";

/// One chart of a report.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem under `charts/` and HTML anchor, e.g. `startup`.
    pub name: String,
    /// The section it belongs to.
    pub family: Family,
    /// The chart.
    pub chart: chart::BarChart,
}

/// Every chart of a report, in report order.
pub fn all(data: &ReportData) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut push = |name: &str, family: Family, chart: Option<chart::BarChart>| {
        if let Some(chart) = chart {
            out.push(Figure {
                name: name.to_string(),
                family,
                chart,
            });
        }
    };
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
                push("startup", family, startup_chart(&data.series, data));
                push("vm_boot", family, vm_boot_chart(&series));
            }
            Family::Memory => {
                push("memory", family, family_chart(family, &series));
                // The overhead gets its own chart unless it is all there is
                // (then the main chart shows it already).
                let overhead: Vec<&SeriesSummary> = series
                    .iter()
                    .copied()
                    .filter(|s| s.metric == "vmm_overhead_mib")
                    .collect();
                let has_headline = series
                    .iter()
                    .any(|s| family.headline().contains(&s.metric.as_str()));
                let bandwidth: Vec<&SeriesSummary> = series
                    .iter()
                    .copied()
                    .filter(|s| data.kind_of(&s.workload) == "memory" && s.metric == "score")
                    .collect();
                if !bandwidth.is_empty() {
                    push(
                        "memory_bandwidth",
                        family,
                        absolute_chart(
                            "Memory bandwidth (STREAM triad), higher is better".into(),
                            &bandwidth,
                            false,
                        ),
                    );
                }
                if !overhead.is_empty() && has_headline {
                    push(
                        "vmm_overhead",
                        family,
                        absolute_chart(
                            "VMM overhead: QEMU's memory beyond guest RAM".into(),
                            &overhead,
                            false,
                        ),
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
                    push(family.slug(), family, family_chart(family, &series));
                }
                push("density_startup", family, startup);
                push("density_memory", family, memory);
            }
            _ => push(family.slug(), family, family_chart(family, &series)),
        }
    }
    out
}

/// A density chart of `metric`: one group per instance count k (the k-th
/// instance started with k − 1 alive), one bar per environment holding the
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
                    series: s.environment.clone(),
                    median: *v,
                    lo: *v,
                    hi: *v,
                    points: vec![],
                    outliers: vec![],
                },
            );
        }
    }
    let log_y = wants_log(&groups);
    Some(chart::BarChart {
        title: format!("{title}{}", if log_y { " (log scale)" } else { "" }),
        y_label: format!("{metric} ({})", first.unit),
        groups,
        log_y,
        caption: Some(
            "groups: k, the number of instances alive once the k-th has started · one bar per environment"
                .into(),
        ),
    })
}

/// A bar for one series, with every value divided by `scale`.
fn bar(series: &SeriesSummary, scale: f64) -> chart::Bar {
    let x = &series.stats;
    chart::Bar {
        series: series.environment.clone(),
        median: x.median / scale,
        lo: x.min / scale,
        hi: x.max / scale,
        points: series.values.iter().map(|v| v / scale).collect(),
        outliers: x
            .outliers
            .iter()
            .filter_map(|i| series.values.get(*i))
            .map(|v| v / scale)
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

fn accel_note(data: &ReportData) -> String {
    data.meta
        .accelerator
        .as_ref()
        .map(|a| format!(", VM under {}", a.accel.as_str().to_uppercase()))
        .unwrap_or_default()
}

/// The startup chart: one group per workload, one bar per environment.
pub fn startup_chart(series: &[SeriesSummary], data: &ReportData) -> Option<chart::BarChart> {
    let mut groups = Vec::new();
    for x in series.iter().filter(|x| x.metric == "startup_ms") {
        push_bar(&mut groups, &x.workload, bar(x, 1.0));
    }
    if groups.is_empty() {
        return None;
    }
    let log_y = wants_log(&groups);
    Some(chart::BarChart {
        title: format!(
            "Startup time: spawn to agent ready ({}{})",
            if log_y { "log scale" } else { "linear scale" },
            accel_note(data)
        ),
        y_label: "startup_ms (ms)".into(),
        groups,
        log_y,
        caption: Some(CAPTION.into()),
    })
}

/// The VM's startup split into the guest kernel's boot and the rest, per
/// workload; other VM boot metrics of the startup family (say
/// `vmm_start_ms`) get their own bars. `None` without VM boot figures.
pub fn vm_boot_chart(series: &[&SeriesSummary]) -> Option<chart::BarChart> {
    let vm = EnvKind::Vm.as_str();
    let mut groups = Vec::new();
    let mut workloads: Vec<&str> = Vec::new();
    for s in series.iter().filter(|s| s.environment == vm) {
        if !workloads.contains(&s.workload.as_str()) {
            workloads.push(&s.workload);
        }
    }
    for w in workloads {
        let get = |m: &str| {
            series
                .iter()
                .find(|s| s.workload == w && s.environment == vm && s.metric == m)
        };
        let (Some(total), Some(kernel)) = (get("startup_ms"), get("boot_kernel_ms")) else {
            continue;
        };
        let mut total_bar = bar(total, 1.0);
        total_bar.series = "total (startup_ms)".into();
        push_bar(&mut groups, w, total_bar);
        let mut kernel_bar = bar(kernel, 1.0);
        kernel_bar.series = "guest kernel (boot_kernel_ms)".into();
        push_bar(&mut groups, w, kernel_bar);
        // Both come from the same instances, in repetition order: the rest
        // of each instance's startup is QEMU's start, its set-up before the
        // kernel runs and the ready frame's way out.
        if total.values.len() == kernel.values.len() {
            let rest: Vec<f64> = total
                .values
                .iter()
                .zip(&kernel.values)
                .map(|(t, k)| t - k)
                .collect();
            if let Some(stats) = crate::stats::summarize(&rest) {
                let outliers = stats
                    .outliers
                    .iter()
                    .filter_map(|i| rest.get(*i).copied())
                    .collect();
                push_bar(
                    &mut groups,
                    w,
                    chart::Bar {
                        series: "QEMU + firmware (the rest)".into(),
                        median: stats.median,
                        lo: stats.min,
                        hi: stats.max,
                        points: rest,
                        outliers,
                    },
                );
            }
        }
        for other in series.iter().filter(|s| {
            s.workload == w
                && s.environment == vm
                && !["startup_ms", "boot_kernel_ms", "teardown_ms"].contains(&s.metric.as_str())
        }) {
            let mut b = bar(other, 1.0);
            b.series = other.metric.clone();
            push_bar(&mut groups, w, b);
        }
    }
    if groups.is_empty() {
        return None;
    }
    let log_y = wants_log(&groups);
    Some(chart::BarChart {
        title: "VM startup, broken down".into(),
        y_label: "ms".into(),
        groups,
        log_y,
        caption: Some(format!(
            "{CAPTION} · the rest = startup_ms − boot_kernel_ms per instance"
        )),
    })
}

/// A chart of series that share one unit: one group per workload (and
/// metric, when several), one bar per environment.
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
        push_bar(&mut groups, &group, bar(s, 1.0));
    }
    let log_y = wants_log(&groups);
    let y_label = if with_metric {
        unit
    } else {
        format!("{metric} ({unit})")
    };
    Some(chart::BarChart {
        title: format!("{title}{}", if log_y { " (log scale)" } else { "" }),
        y_label,
        groups,
        log_y,
        caption: Some(CAPTION.into()),
    })
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
/// [`Family::headline`] it has, else its first metric in the family).
/// Absolute when all headline metrics share a unit; otherwise every value
/// is divided by the native median of its workload and metric.
pub fn family_chart(family: Family, series: &[&SeriesSummary]) -> Option<chart::BarChart> {
    let picked = headline_series(family, series);
    let first = picked.first()?;
    let one_unit = picked.iter().all(|s| s.unit == first.unit);
    let one_metric = picked.iter().all(|s| s.metric == first.metric);
    if one_unit {
        let better = match first.better {
            crate::workload::Better::Higher => "higher",
            crate::workload::Better::Lower => "lower",
        };
        let title = if one_metric {
            format!("{}: {}, {better} is better", family.title(), first.metric)
        } else {
            format!("{}: {}", family.title(), first.unit)
        };
        return absolute_chart(title, &picked, !one_metric);
    }
    // Several units: relative to native, per workload and metric.
    let native = EnvKind::Native.as_str();
    let mut groups = Vec::new();
    for s in &picked {
        let Some(reference) = picked
            .iter()
            .find(|r| r.workload == s.workload && r.metric == s.metric && r.environment == native)
            .map(|r| r.stats.median)
            .filter(|m| *m > 0.0)
        else {
            continue;
        };
        // A value that overflows when divided by a tiny native median
        // (1e3 / 1e-306) cannot be drawn: leave that bar out.
        let relative = bar(s, reference);
        if !is_finite(&relative) {
            continue;
        }
        push_bar(
            &mut groups,
            &format!("{} · {}", s.workload, s.metric),
            relative,
        );
    }
    if groups.is_empty() {
        return None;
    }
    let log_y = wants_log(&groups);
    Some(chart::BarChart {
        title: format!(
            "{}: relative to native (native median = 1){}",
            family.title(),
            if log_y { ", log scale" } else { "" }
        ),
        y_label: "× native median".into(),
        groups,
        log_y,
        caption: Some(format!(
            "{CAPTION} · each value divided by the native median of its workload and metric"
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats;
    use crate::workload::Better;

    fn series(workload: &str, env: &str, unit: &str, values: &[f64]) -> SeriesSummary {
        SeriesSummary {
            workload: workload.into(),
            environment: env.into(),
            metric: "score".into(),
            unit: unit.into(),
            better: Better::Higher,
            stats: stats::summarize(values).unwrap(),
            values: values.to_vec(),
            ratio_to_native: None,
            ratio_ci95: None,
        }
    }

    /// Regressions from tests/fuzz.rs: a relative chart divided by a native
    /// median that is negative (whiskers came out upside down) or so small
    /// that the quotient overflows (infinite values); either made the
    /// whole report fail.
    #[test]
    fn a_relative_chart_leaves_out_what_it_cannot_divide() {
        let all = [
            // Negative natively: no ratio scale, left out.
            series("a", "native", "ms", &[-2.0, -1.0, -3.0]),
            series("a", "vm", "ms", &[1.0, 2.0, 3.0]),
            // A subnormal native median: 138 / 3.7e-310 is infinite.
            series("b", "native", "ops", &[3.7e-310]),
            series("b", "vm", "ops", &[138.0]),
            // Ordinary.
            series("c", "native", "MiB", &[2.0, 2.0]),
            series("c", "vm", "MiB", &[4.0, 6.0]),
        ];
        let refs: Vec<&SeriesSummary> = all.iter().collect();
        let chart = family_chart(Family::Cpu, &refs).unwrap();
        assert!(
            chart.title.contains("relative to native"),
            "{}",
            chart.title
        );
        let names: Vec<(&str, usize)> = chart
            .groups
            .iter()
            .map(|g| (g.name.as_str(), g.bars.len()))
            .collect();
        assert_eq!(names, [("b · score", 1), ("c · score", 2)]);
        chart::render_svg(&chart).unwrap();
    }
}
