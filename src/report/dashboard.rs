//! Files for continuous-benchmarking dashboards, so existing CI services
//! take isobench's numbers as they are.
//!
//! - `bmf.json`, Bencher Metric Format: an object keyed by benchmark name
//!   (`<scenario>/<workload>/<environment>`), each holding one object per
//!   measure (the metric name) with `value` (the median) and
//!   `lower_value`/`upper_value` (the 95% CI of the median, or the range of
//!   the values below 6 repetitions, where no 95% interval exists). Feed
//!   it to `bencher run --adapter json --file bmf.json`.
//! - `benchmark-action-smaller.json` and `benchmark-action-bigger.json`:
//!   JSON arrays of `{name, unit, value, range, extra}` as
//!   github-action-benchmark's `customSmallerIsBetter` and
//!   `customBiggerIsBetter` tools read them (one tool per file, hence two
//!   files, split by each metric's direction from `meta.json`). `name` is
//!   `<scenario>/<workload>/<environment>/<metric>`, `value` the median,
//!   `range` `± half the CI's width`, `extra` the exact interval and n.

use super::{Exporter, ReportData, ReportError, fmt_value};
use crate::workload::Better;
use serde::Serialize;
use std::collections::BTreeMap;

/// `bmf.json`, Bencher Metric Format.
pub struct Bmf;

/// One Bencher metric.
#[derive(Debug, Serialize)]
struct BmfMetric {
    value: f64,
    lower_value: f64,
    upper_value: f64,
}

fn to_json<T: Serialize>(file: &'static str, doc: &T) -> Result<Vec<u8>, ReportError> {
    let mut bytes =
        serde_json::to_vec_pretty(doc).map_err(|source| ReportError::Encode { file, source })?;
    bytes.push(b'\n');
    Ok(bytes)
}

impl Exporter for Bmf {
    fn file_name(&self) -> &'static str {
        "bmf.json"
    }
    fn export(&self, data: &ReportData) -> Result<Vec<u8>, ReportError> {
        let scenario = data.scenario_name();
        let mut doc: BTreeMap<String, BTreeMap<String, BmfMetric>> = BTreeMap::new();
        for s in &data.series {
            doc.entry(format!("{scenario}/{}/{}", s.workload, s.environment))
                .or_default()
                .insert(
                    s.metric.clone(),
                    BmfMetric {
                        value: s.stats.median,
                        lower_value: s.stats.spread().lo,
                        upper_value: s.stats.spread().hi,
                    },
                );
        }
        to_json(self.file_name(), &doc)
    }
}

/// A github-action-benchmark file with the metrics of one direction:
/// `BenchmarkAction(Better::Lower)` is `customSmallerIsBetter`.
pub struct BenchmarkAction(pub Better);

/// One github-action-benchmark entry.
#[derive(Debug, Serialize)]
struct ActionEntry {
    name: String,
    unit: String,
    value: f64,
    range: String,
    extra: String,
}

impl Exporter for BenchmarkAction {
    fn file_name(&self) -> &'static str {
        match self.0 {
            Better::Lower => "benchmark-action-smaller.json",
            Better::Higher => "benchmark-action-bigger.json",
        }
    }
    fn export(&self, data: &ReportData) -> Result<Vec<u8>, ReportError> {
        let scenario = data.scenario_name();
        let accel = data
            .meta
            .accelerator
            .as_ref()
            .map(|a| format!("; VM accelerator {}", a.accel.as_str()))
            .unwrap_or_default();
        let entries: Vec<ActionEntry> = data
            .series
            .iter()
            .filter(|s| s.better == self.0)
            .map(|s| {
                let spread = s.stats.spread();
                ActionEntry {
                    name: format!("{scenario}/{}/{}/{}", s.workload, s.environment, s.metric),
                    unit: s.unit.clone(),
                    value: s.stats.median,
                    range: format!("± {}", fmt_value((spread.hi - spread.lo) / 2.0)),
                    extra: format!(
                        "median of n={}; {} [{}, {}]; min {}; max {}; {} outlier(s){accel}",
                        s.stats.n,
                        spread.label(),
                        fmt_value(spread.lo),
                        fmt_value(spread.hi),
                        fmt_value(s.stats.min),
                        fmt_value(s.stats.max),
                        s.stats.outliers.len()
                    ),
                }
            })
            .collect();
        to_json(self.file_name(), &entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixture;

    fn json(e: &dyn Exporter) -> serde_json::Value {
        serde_json::from_slice(&e.export(&fixture::data(true)).unwrap()).unwrap()
    }

    #[test]
    fn bmf_holds_median_and_interval_per_benchmark_and_measure() {
        let data = fixture::data(true);
        let doc = json(&Bmf);
        let obj = doc.as_object().unwrap();
        let benchmarks: usize = data
            .series
            .iter()
            .map(|s| format!("{}/{}", s.workload, s.environment))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(obj.len(), benchmarks);
        let s = data
            .series_of("cpu", crate::env::EnvKind::Vm, "score")
            .unwrap();
        let m = &doc["fx/cpu/vm"]["score"];
        // (serde_json's default parser may be one ulp off in the last digit.)
        let close = |v: &serde_json::Value, want: f64| {
            (v.as_f64().unwrap() - want).abs() <= 1e-12 * want.abs()
        };
        assert!(close(&m["value"], s.stats.median), "{m}");
        assert!(close(&m["lower_value"], s.stats.spread().lo), "{m}");
        assert!(close(&m["upper_value"], s.stats.spread().hi), "{m}");
        // Every measure has exactly the three numbers Bencher reads.
        for bench in obj.values() {
            for measure in bench.as_object().unwrap().values() {
                let keys: Vec<&String> = measure.as_object().unwrap().keys().collect();
                assert_eq!(keys, ["lower_value", "upper_value", "value"]);
                assert!(measure["lower_value"].as_f64() <= measure["upper_value"].as_f64());
            }
        }
    }

    #[test]
    fn benchmark_action_files_split_by_direction() {
        let data = fixture::data(true);
        for (better, file) in [
            (Better::Lower, "benchmark-action-smaller.json"),
            (Better::Higher, "benchmark-action-bigger.json"),
        ] {
            let e = BenchmarkAction(better);
            assert_eq!(e.file_name(), file);
            let doc = json(&e);
            let entries = doc.as_array().unwrap();
            let want = data.series.iter().filter(|s| s.better == better).count();
            assert_eq!(entries.len(), want, "{file}");
            for entry in entries {
                assert!(entry["name"].is_string() && entry["unit"].is_string());
                assert!(entry["value"].is_number());
                assert!(entry["range"].as_str().unwrap().starts_with("± "));
                assert!(entry["extra"].as_str().unwrap().contains("95% CI"));
                let series = data
                    .series
                    .iter()
                    .find(|s| {
                        entry["name"]
                            .as_str()
                            .unwrap()
                            .ends_with(&format!("/{}/{}/{}", s.workload, s.environment, s.metric))
                    })
                    .unwrap();
                assert_eq!(series.better, better, "{entry}");
            }
        }
        let lower = json(&BenchmarkAction(Better::Lower));
        assert!(
            lower
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["name"] == "fx/noop/vm/startup_ms" && e["unit"] == "ms")
        );
    }
}
