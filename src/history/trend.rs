//! Series over runs, read from the store: the medians and intervals of
//! every (host, workload, environment, metric) per run, each environment's
//! ratio to its own host's native per run, and their change points; and
//! the trend table `isobench history show` prints.

use super::HistoryError;
use super::changepoint::{self, ChangePoint};
use super::store::{Store, sql_error};
use crate::env::EnvKind;
use crate::report::fmt_value;
use crate::stats::{self, Summary};
use crate::workload::Better;
use rusqlite::params;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Which series to read (`None`: all).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filter {
    /// Workload name.
    pub workload: Option<String>,
    /// Environment name.
    pub env: Option<String>,
    /// Metric name.
    pub metric: Option<String>,
    /// Host key or fingerprint.
    pub host: Option<String>,
    /// Only the last N runs of each series.
    pub last: Option<usize>,
}

/// A run, as the store knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// Its id.
    pub run_id: String,
    /// Its start time (RFC 3339, UTC).
    pub started: String,
    /// Git revision of the code under test.
    pub revision: Option<String>,
    /// Host key.
    pub host: String,
    /// Accelerator of its VMs.
    pub accel: Option<String>,
    /// Its status.
    pub status: String,
    /// Scenario name.
    pub scenario: String,
}

/// One run's repetitions of a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Index into [`History::runs`].
    pub run: usize,
    /// The raw repetitions, in order.
    pub values: Vec<f64>,
    /// Their statistics.
    pub summary: Summary,
}

/// Which series: host, workload, environment, metric.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// Host key.
    pub host: String,
    /// Workload name.
    pub workload: String,
    /// Environment name.
    pub environment: String,
    /// Metric name.
    pub metric: String,
}

impl Key {
    /// `workload/environment/metric @ host`.
    pub fn label(&self) -> String {
        format!(
            "{}/{}/{} @ {}",
            self.workload, self.environment, self.metric, self.host
        )
    }
}

/// A series over runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Which.
    pub key: Key,
    /// Unit (of the latest run).
    pub unit: String,
    /// Direction.
    pub better: Better,
    /// One point per run that measured it, in time order.
    pub points: Vec<Point>,
    /// Shifts of its per-run medians.
    pub change_points: Vec<ChangePoint>,
}

/// An environment's ratio to its host's native over runs.
#[derive(Debug, Clone, PartialEq)]
pub struct RatioSeries {
    /// The environment's series key.
    pub key: Key,
    /// (run index, ratio of the two medians): a trend shows the ratio's
    /// level; the change points, not per-run intervals, judge its shifts.
    pub points: Vec<(usize, f64)>,
    /// Shifts of the ratio.
    pub change_points: Vec<ChangePoint>,
}

/// Everything read for a trend.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct History {
    /// The runs the series come from, in time order.
    pub runs: Vec<RunInfo>,
    /// The series.
    pub series: Vec<Series>,
    /// Ratios to native of every non-native series.
    pub ratios: Vec<RatioSeries>,
}

/// A series as read: unit, direction, and the repetitions per run index.
type Raw = (String, Better, Vec<(usize, Vec<f64>)>);

fn env_rank(name: &str) -> usize {
    EnvKind::from_name(name)
        .and_then(|k| EnvKind::ALL.iter().position(|x| *x == k))
        .unwrap_or(usize::MAX)
}

impl Store {
    /// Reads the series `filter` selects, with their ratios to native and
    /// change points.
    pub fn history(
        &self,
        filter: &Filter,
        settings: &changepoint::Settings,
    ) -> Result<History, HistoryError> {
        let sql = |e| sql_error(self.path(), e);
        // Native is read even when another environment is asked for: the
        // ratios need it.
        let mut stmt = self
            .conn()
            .prepare(
                "SELECT r.run_id, r.started, r.revision, r.host, r.accel, r.status, r.scenario,
                        s.workload, s.environment, s.metric, s.unit, s.better, o.value
                 FROM observations o JOIN runs r ON r.id = o.run JOIN series s ON s.id = o.series
                 WHERE (?1 IS NULL OR s.workload = ?1) AND (?2 IS NULL OR s.metric = ?2)
                   AND (?3 IS NULL OR r.host = ?3 OR r.host_fingerprint = ?3)
                 ORDER BY r.started, r.run_id, o.repetition",
            )
            .map_err(sql)?;
        let mut rows = stmt
            .query(params![filter.workload, filter.metric, filter.host])
            .map_err(sql)?;
        let mut runs: Vec<RunInfo> = Vec::new();
        let mut run_index: HashMap<String, usize> = HashMap::new();
        let mut order: Vec<Key> = Vec::new();
        let mut data: HashMap<Key, Raw> = HashMap::new();
        while let Some(row) = rows.next().map_err(sql)? {
            let run_id: String = row.get(0).map_err(sql)?;
            let run = match run_index.get(&run_id) {
                Some(&i) => i,
                None => {
                    runs.push(RunInfo {
                        run_id: run_id.clone(),
                        started: row.get(1).map_err(sql)?,
                        revision: row.get(2).map_err(sql)?,
                        host: row.get(3).map_err(sql)?,
                        accel: row.get(4).map_err(sql)?,
                        status: row.get(5).map_err(sql)?,
                        scenario: row.get(6).map_err(sql)?,
                    });
                    run_index.insert(run_id, runs.len() - 1);
                    runs.len() - 1
                }
            };
            let key = Key {
                host: runs[run].host.clone(),
                workload: row.get(7).map_err(sql)?,
                environment: row.get(8).map_err(sql)?,
                metric: row.get(9).map_err(sql)?,
            };
            let unit: String = row.get(10).map_err(sql)?;
            let better: String = row.get(11).map_err(sql)?;
            let better = Better::parse(&better).unwrap_or(Better::Lower);
            let value: f64 = row.get(12).map_err(sql)?;
            let entry = data.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                (unit.clone(), better, Vec::new())
            });
            (entry.0, entry.1) = (unit, better);
            match entry.2.last_mut() {
                Some((r, values)) if *r == run => values.push(value),
                _ => entry.2.push((run, vec![value])),
            }
        }
        let rank = |v: &[Key], f: fn(&Key) -> &String| {
            let mut m: HashMap<String, usize> = HashMap::new();
            for k in v {
                let n = m.len();
                m.entry(f(k).clone()).or_insert(n);
            }
            m
        };
        let (wr, mr) = (rank(&order, |k| &k.workload), rank(&order, |k| &k.metric));
        order.sort_by_key(|k| {
            (
                k.host.clone(),
                wr[&k.workload],
                mr[&k.metric],
                env_rank(&k.environment),
                k.environment.clone(),
            )
        });
        let mut all = Vec::new();
        for key in order {
            let Some((unit, better, mut per_run)) = data.remove(&key) else {
                continue;
            };
            if let Some(n) = filter.last {
                let cut = per_run.len().saturating_sub(n);
                per_run.drain(..cut);
            }
            let points: Vec<Point> = per_run
                .into_iter()
                .filter_map(|(run, values)| {
                    let summary = stats::summarize(&values)?;
                    Some(Point {
                        run,
                        values,
                        summary,
                    })
                })
                .collect();
            let medians: Vec<f64> = points.iter().map(|p| p.summary.median).collect();
            all.push(Series {
                change_points: changepoint::find(&medians, settings),
                key,
                unit,
                better,
                points,
            });
        }
        let ratios = ratios(&all, settings);
        let wanted = |k: &Key| filter.env.as_ref().is_none_or(|e| *e == k.environment);
        Ok(History {
            runs,
            series: all.into_iter().filter(|s| wanted(&s.key)).collect(),
            ratios: ratios.into_iter().filter(|s| wanted(&s.key)).collect(),
        })
    }
}

/// Each non-native series over the native series of the same host,
/// workload and metric, run by run (only runs that measured both).
fn ratios(series: &[Series], settings: &changepoint::Settings) -> Vec<RatioSeries> {
    let native: HashMap<(&str, &str, &str), &Series> = series
        .iter()
        .filter(|s| s.key.environment == EnvKind::Native.as_str())
        .map(|s| ((&*s.key.host, &*s.key.workload, &*s.key.metric), s))
        .collect();
    let mut out = Vec::new();
    for s in series
        .iter()
        .filter(|s| s.key.environment != EnvKind::Native.as_str())
    {
        let Some(base) = native.get(&(&*s.key.host, &*s.key.workload, &*s.key.metric)) else {
            continue;
        };
        let base_of: HashMap<usize, f64> = base
            .points
            .iter()
            .map(|b| (b.run, b.summary.median))
            .collect();
        let points: Vec<(usize, f64)> = s
            .points
            .iter()
            .filter_map(|p| {
                let b = *base_of.get(&p.run)?;
                (b > 0.0).then(|| (p.run, p.summary.median / b))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let values: Vec<f64> = points.iter().map(|(_, r)| *r).collect();
        out.push(RatioSeries {
            key: s.key.clone(),
            change_points: changepoint::find(&values, settings),
            points,
        });
    }
    out
}

/// A signed percentage, or `—`.
fn pct(from: f64, to: f64) -> String {
    if from == 0.0 {
        return "—".into();
    }
    format!("{:+.1}%", (to - from) / from.abs() * 100.0)
}

/// Pads the columns of `rows` (the first is the header) into lines.
pub fn columns(rows: &[Vec<String>]) -> String {
    let mut widths = Vec::new();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            let w = c.chars().count();
            if widths.len() <= i {
                widths.push(w);
            } else {
                widths[i] = widths[i].max(w);
            }
        }
    }
    let mut s = String::new();
    for r in rows {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        let _ = writeln!(s, "{}", line.join("  ").trim_end());
    }
    s
}

impl History {
    /// The ratio series of a series' key, if any.
    pub fn ratio_of(&self, key: &Key) -> Option<&RatioSeries> {
        self.ratios.iter().find(|r| r.key == *key)
    }

    /// The rows of one series' trend: run, time, revision, n, median,
    /// interval, change from the previous and from the first run, ratio
    /// to native, and a mark where a change point starts.
    pub fn rows(&self, s: &Series) -> Vec<Vec<String>> {
        let mut rows = vec![
            [
                "run",
                "started",
                "revision",
                "n",
                "median",
                "interval",
                "vs prev",
                "vs first",
                "× native",
                "shift",
            ]
            .map(String::from)
            .to_vec(),
        ];
        let ratio = self.ratio_of(&s.key);
        let first = s.points.first().map(|p| p.summary.median);
        let mut prev: Option<f64> = None;
        for (i, p) in s.points.iter().enumerate() {
            let run = &self.runs[p.run];
            let sp = p.summary.spread();
            let interval = format!(
                "{}[{}, {}]",
                if sp.is_ci { "" } else { "range " },
                fmt_value(sp.lo),
                fmt_value(sp.hi)
            );
            let r = ratio
                .and_then(|r| r.points.iter().find(|(run, _)| *run == p.run))
                .map_or("—".into(), |(_, r)| format!("{r:.2}×"));
            let shift = s
                .change_points
                .iter()
                .find(|c| c.index == i)
                .map_or(String::new(), |c| {
                    format!("◆ {:+.1}% (p {:.4})", c.change_pct, c.p_adjusted)
                });
            let m = p.summary.median;
            rows.push(vec![
                run.run_id.clone(),
                run.started.clone(),
                run.revision
                    .as_deref()
                    .map_or("—".into(), |r| r.chars().take(12).collect()),
                p.summary.n.to_string(),
                format!("{} {}", fmt_value(m), s.unit),
                interval,
                prev.map_or("—".into(), |p| pct(p, m)),
                first.filter(|_| i > 0).map_or("—".into(), |f| pct(f, m)),
                r,
                shift,
            ]);
            prev = Some(m);
        }
        rows
    }

    /// The heading of a series: what, where, which direction is better.
    pub fn heading(s: &Series) -> String {
        format!(
            "{} · {} · {} ({}, {} is better) · host {}",
            s.key.workload,
            s.key.environment,
            s.key.metric,
            s.unit,
            s.better.as_str(),
            s.key.host
        )
    }

    /// The trend table of every series (`isobench history show`).
    pub fn table(&self) -> String {
        let mut s = String::new();
        if self.series.is_empty() {
            return "no runs in the store match (import run directories with `isobench history import DIR...`)\n".into();
        }
        for series in &self.series {
            let _ = writeln!(s, "{}", History::heading(series));
            s.push_str(&columns(&self.rows(series)));
            if let Some(r) = self.ratio_of(&series.key) {
                for c in &r.change_points {
                    let _ = writeln!(
                        s,
                        "ratio to native shifted at run {}: {:.2}× → {:.2}× (p {:.4})",
                        self.runs[r.points[c.index].0].run_id, c.before, c.after, c.p_adjusted
                    );
                }
            }
            s.push('\n');
        }
        s
    }
}
