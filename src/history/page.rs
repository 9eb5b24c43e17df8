//! `isobench history report --out DIR`: `index.html`, `history.md` and a
//! PNG and an SVG trend chart per series and per family of ratios.
//!
//! Charts: x is the run's number in the page's table of runs (time order,
//! 1 = oldest; the table gives every run's time and revision); per environment a solid
//! line of the per-run medians with a dot per run and two dashed lines at
//! the ends of its interval (the 95% CI of the median from 6 repetitions
//! on, else the range); a change point is a dashed vertical line at the
//! first run after the shift. One chart per (host, family) shows every
//! environment's ratio to its own host's native over runs: the figure that
//! survives a change of hardware.

use super::HistoryError;
use super::trend::{History, Series};
use crate::report::chart::{self, Line, LineChart};
use crate::report::family::{self, Family};
use crate::report::html::escape;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A chart file name from free text: letters and digits, the rest `-`.
fn slug(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.chars().take(60).collect()
}

/// A vertical dashed line at x from `lo` to `hi`.
fn marker(x: f64, lo: f64, hi: f64) -> Line {
    Line {
        series: "change point".into(),
        kind: "change point".into(),
        dashed: true,
        markers: false,
        points: vec![(x, lo), (x, hi)],
    }
}

/// The trend chart of one series.
fn series_chart(s: &Series) -> LineChart {
    let env = s.key.environment.clone();
    // x: the run's number in the page's table of runs.
    let x = |i: usize| (s.points[i].run + 1) as f64;
    let median = Line {
        series: env.clone(),
        kind: "median".into(),
        dashed: false,
        markers: true,
        points: s
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| (x(i), p.summary.median))
            .collect(),
    };
    let edge = |hi: bool| Line {
        series: env.clone(),
        kind: "interval".into(),
        dashed: true,
        markers: false,
        points: s
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let sp = p.summary.spread();
                (x(i), if hi { sp.hi } else { sp.lo })
            })
            .collect(),
    };
    let top = s
        .points
        .iter()
        .map(|p| p.summary.spread().hi)
        .fold(0.0f64, f64::max);
    let mut lines = vec![median, edge(false), edge(true)];
    lines.extend(s.change_points.iter().map(|c| marker(x(c.index), 0.0, top)));
    LineChart {
        title: format!(
            "{} / {} / {} @ {}",
            s.key.workload, s.key.environment, s.key.metric, s.key.host
        ),
        x_label: "run # (as in the table of runs; 1 = oldest)".into(),
        y_label: format!("{} ({})", s.key.metric, s.unit),
        lines,
        log_y: false,
        caption: Some(format!(
            "Median per run; dashed: its 95% interval (the range below 6 repetitions); \
             vertical dashed: a change point ({} is better).",
            s.better.as_str()
        )),
    }
}

/// The ratio-to-native chart of one host and family.
fn ratio_chart(
    h: &History,
    host: &str,
    fam: Option<Family>,
    kinds: &BTreeMap<String, String>,
) -> Option<LineChart> {
    let mut lines = Vec::new();
    let mut runs = 0usize;
    for r in h.ratios.iter().filter(|r| r.key.host == host) {
        let kind = kinds
            .get(&r.key.workload)
            .map_or(&*r.key.workload, String::as_str);
        if family::classify(kind, &r.key.metric) != fam {
            continue;
        }
        let points: Vec<(f64, f64)> = r
            .points
            .iter()
            .map(|(run, ratio)| ((run + 1) as f64, *ratio))
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .collect();
        if points.is_empty() {
            continue;
        }
        runs = runs.max(points.len());
        lines.push(Line {
            series: format!("{} {} {}", r.key.workload, r.key.metric, r.key.environment),
            kind: "× native".into(),
            dashed: false,
            markers: true,
            points,
        });
    }
    if lines.is_empty() {
        return None;
    }
    let name = fam.map_or("Other figures", Family::title);
    Some(LineChart {
        title: format!("{name}: ratio to native @ {host}"),
        x_label: "run # (as in the table of runs; 1 = oldest)".into(),
        y_label: "× native (median over median, log scale)".into(),
        lines,
        // Ratios from 0.9× to 500× share the chart: a log axis keeps each
        // readable (and 2× above is as far as 2× below).
        log_y: true,
        caption: Some(
            "Each environment's median over its own host's native median, per run: 1 is as fast \
             as native."
                .into(),
        ),
    })
}

/// What `history report` wrote.
#[derive(Debug)]
pub struct Written {
    /// Every file.
    pub files: Vec<PathBuf>,
}

/// Writes the page, the Markdown table and the charts into `out`.
pub fn write(
    h: &History,
    kinds: &BTreeMap<String, String>,
    store: &Path,
    out: &Path,
) -> Result<Written, HistoryError> {
    let charts = out.join("charts");
    std::fs::create_dir_all(&charts).map_err(|source| HistoryError::Io {
        path: charts.clone(),
        source,
    })?;
    let mut files = Vec::new();
    let draw =
        |name: String, c: &LineChart, files: &mut Vec<PathBuf>| -> Result<String, HistoryError> {
            let svg = charts.join(format!("{name}.svg"));
            let png = charts.join(format!("{name}.png"));
            chart::write_both(c, &svg, &png)?;
            files.extend([svg, png]);
            Ok(format!("charts/{name}.svg"))
        };
    let family_of = |s: &Series| {
        let kind = kinds
            .get(&s.key.workload)
            .map_or(&*s.key.workload, String::as_str);
        family::classify(kind, &s.key.metric)
    };
    let mut hosts: Vec<&str> = h.series.iter().map(|s| &*s.key.host).collect();
    hosts.dedup();
    let mut families: Vec<Option<Family>> = Family::ALL.into_iter().map(Some).collect();
    families.push(None);
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>isobench history</title>\
         <style>body{{font-family:sans-serif;max-width:1200px;margin:auto;padding:1em}}\
         table{{border-collapse:collapse;font-size:0.85em}}td,th{{border:1px solid #ccc;padding:2px 6px}}\
         img{{max-width:100%}}.shift{{color:#b00;font-weight:bold}}</style></head><body>\n\
         <h1>isobench history</h1>\n<p>Store <code>{}</code>: {} run(s). Every point is a run's median of \
         its repetitions with its interval; a change point is where the permutation test of \
         <code>isobench compare</code>, corrected for every split scanned, says the median shifted \
         (and by at least the noise threshold).</p>\n",
        escape(&store.display().to_string()),
        h.runs.len()
    );
    html.push_str("<h2>Runs</h2>\n<table><tr><th>#</th><th>run</th><th>started</th><th>revision</th><th>host</th><th>scenario</th><th>accelerator</th><th>status</th></tr>\n");
    for (i, r) in h.runs.iter().enumerate() {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            escape(&r.run_id),
            escape(&r.started),
            escape(r.revision.as_deref().unwrap_or("—")),
            escape(&r.host),
            escape(&r.scenario),
            escape(r.accel.as_deref().unwrap_or("—")),
            escape(&r.status)
        );
    }
    html.push_str("</table>\n");
    let mut n = 0usize;
    for host in &hosts {
        let _ = writeln!(html, "<h2>Host {}</h2>", escape(host));
        for fam in &families {
            let members: Vec<&Series> = h
                .series
                .iter()
                .filter(|s| s.key.host == *host && family_of(s) == *fam)
                .collect();
            if members.is_empty() {
                continue;
            }
            let title = fam.map_or("Other figures", Family::title);
            let _ = writeln!(html, "<h3>{}</h3>", escape(title));
            if let Some(c) = ratio_chart(h, host, *fam, kinds) {
                n += 1;
                let fam_slug = fam.map_or("other", Family::slug);
                let src = draw(
                    format!("{n:03}-ratio-{}-{fam_slug}", slug(host)),
                    &c,
                    &mut files,
                )?;
                let _ = writeln!(
                    html,
                    "<p><img src=\"{src}\" alt=\"{}\"></p>",
                    escape(&c.title)
                );
            }
            for s in members {
                n += 1;
                let c = series_chart(s);
                let name = format!(
                    "{n:03}-{}",
                    slug(&format!(
                        "{}-{}-{}",
                        s.key.workload, s.key.environment, s.key.metric
                    ))
                );
                let src = draw(name, &c, &mut files)?;
                let _ = writeln!(
                    html,
                    "<h4>{}</h4>\n<p><img src=\"{src}\" alt=\"{}\"></p>",
                    escape(&History::heading(s)),
                    escape(&c.title)
                );
                html.push_str("<details><summary>per run</summary><table>\n");
                for (i, row) in h.rows(s).iter().enumerate() {
                    let cell = if i == 0 { "th" } else { "td" };
                    html.push_str("<tr>");
                    for (j, c) in row.iter().enumerate() {
                        let class = if j == row.len() - 1 && !c.is_empty() && i > 0 {
                            " class=\"shift\""
                        } else {
                            ""
                        };
                        let _ = write!(html, "<{cell}{class}>{}</{cell}>", escape(c));
                    }
                    html.push_str("</tr>\n");
                }
                html.push_str("</table></details>\n");
            }
        }
    }
    html.push_str("</body></html>\n");
    for (name, bytes) in [
        ("index.html", html.into_bytes()),
        ("history.md", h.table().into_bytes()),
    ] {
        let path = out.join(name);
        crate::record::write_file(&path, &bytes).map_err(|source| HistoryError::Io {
            path: path.clone(),
            source,
        })?;
        files.push(path);
    }
    Ok(Written { files })
}
