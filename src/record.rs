//! Records: one tidy row per observation, appended as it is measured.
//!
//! `results.csv` holds `workload,environment,repetition,metric,unit,value`;
//! `instances.jsonl` holds one JSON line per instance started (warm-ups
//! included): its status, exit, error, digest and log file. Both files are
//! flushed after every instance, so a crash loses nothing already measured,
//! and `isobench report DIR` re-renders everything from them and `meta.json`.

use crate::workload::Metric;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// File name of the results table.
pub const RESULTS: &str = "results.csv";
/// File name of the per-instance log.
pub const INSTANCES: &str = "instances.jsonl";

/// One observation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Workload name from the scenario.
    pub workload: String,
    /// `native`, `container` or `vm`.
    pub environment: String,
    /// Repetition number, from 1 (warm-ups are not recorded here).
    pub repetition: u32,
    /// Metric name.
    pub metric: String,
    /// Unit of `value`.
    pub unit: String,
    /// The value.
    pub value: f64,
}

/// What happened to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Workload name.
    pub workload: String,
    /// Environment.
    pub environment: String,
    /// Repetition number from 1, or the warm-up number when `warmup`.
    pub repetition: u32,
    /// Whether this was an unrecorded warm-up.
    pub warmup: bool,
    /// Whether the instance did everything it should have.
    pub ok: bool,
    /// What went wrong, when not `ok`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How the instance's host process ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<String>,
    /// The workload's digest, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Everything measured, with directions (warm-ups too).
    pub metrics: Vec<Metric>,
    /// The instance's log, relative to the run directory.
    pub log: String,
    /// What sampling it cost, when it was sampled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampler: Option<SamplerCost>,
}

/// The sampler's work on one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplerCost {
    /// Samples taken.
    pub samples: usize,
    /// CPU time of the sampler thread, in ms.
    pub cpu_ms: f64,
    /// That CPU time over the time it ran, in percent of one core.
    pub cost_pct: f64,
}

/// File name of the sampler's time series.
pub const SAMPLES: &str = "samples.csv";

/// A results or instances file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A row or line is malformed.
    #[error("{path}:{line}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// Appends records and instance lines to a run directory.
pub struct Recorder {
    results: csv::Writer<File>,
    instances: File,
    samples: csv::Writer<File>,
}

impl Recorder {
    /// Creates `results.csv` (with its header) and `instances.jsonl` in `dir`.
    pub fn create(dir: &Path) -> io::Result<Recorder> {
        // The header is written by hand, so that a run that records nothing
        // still leaves a well-formed (empty) table.
        let results = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(File::create(dir.join(RESULTS))?);
        let instances = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(INSTANCES))?;
        let samples = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(File::create(dir.join(SAMPLES))?);
        let mut recorder = Recorder {
            results,
            instances,
            samples,
        };
        recorder.samples.write_record([
            "workload",
            "environment",
            "repetition",
            "t_ms",
            "processes",
            "cpu_ms",
            "rss_kib",
            "pss_kib",
        ])?;
        recorder.samples.flush()?;
        recorder.results.write_record([
            "workload",
            "environment",
            "repetition",
            "metric",
            "unit",
            "value",
        ])?;
        recorder.results.flush()?;
        Ok(recorder)
    }

    /// Appends one instance's time series to `samples.csv` (the PSS column
    /// is empty on ticks without a PSS reading).
    pub fn append_samples(
        &mut self,
        workload: &str,
        environment: &str,
        repetition: u32,
        samples: &[crate::sample::Sample],
    ) -> io::Result<()> {
        for s in samples {
            self.samples.write_record([
                workload.to_string(),
                environment.to_string(),
                repetition.to_string(),
                format!("{:.3}", s.t_ms),
                s.processes.to_string(),
                format!("{:.3}", s.cpu_ms),
                s.rss_kib.to_string(),
                s.pss_kib.map_or_else(String::new, |p| p.to_string()),
            ])?;
        }
        self.samples.flush()
    }

    /// Appends one instance's records and its instance line, then flushes both.
    pub fn append(&mut self, records: &[Record], instance: &InstanceRecord) -> io::Result<()> {
        for r in records {
            self.results.serialize(r)?;
        }
        self.results.flush()?;
        let mut line = serde_json::to_vec(instance)?;
        line.push(b'\n');
        self.instances.write_all(&line)?;
        self.instances.flush()
    }
}

/// Reads `results.csv`, checking every row.
pub fn read_results(path: &Path) -> Result<Vec<Record>, RecordError> {
    let file = File::open(path).map_err(|source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = csv::Reader::from_reader(file);
    let expected = [
        "workload",
        "environment",
        "repetition",
        "metric",
        "unit",
        "value",
    ];
    let headers = reader.headers().map_err(|e| RecordError::Corrupt {
        path: path.to_path_buf(),
        line: 1,
        message: e.to_string(),
    })?;
    if headers.iter().collect::<Vec<_>>() != expected {
        return Err(RecordError::Corrupt {
            path: path.to_path_buf(),
            line: 1,
            message: format!("header must be `{}`", expected.join(",")),
        });
    }
    let mut out = Vec::new();
    for row in reader.deserialize::<Record>() {
        let record = row.map_err(|e| RecordError::Corrupt {
            path: path.to_path_buf(),
            line: e.position().map_or(0, |p| p.line()),
            message: e.to_string(),
        })?;
        if !record.value.is_finite() {
            return Err(RecordError::Corrupt {
                path: path.to_path_buf(),
                line: 0,
                message: format!(
                    "{}/{}/{} repetition {}: value is not a finite number",
                    record.workload, record.environment, record.metric, record.repetition
                ),
            });
        }
        out.push(record);
    }
    Ok(out)
}

/// Reads `instances.jsonl`; a missing file is an empty list.
pub fn read_instances(path: &Path) -> Result<Vec<InstanceRecord>, RecordError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(RecordError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut out = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| RecordError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        out.push(
            serde_json::from_str(&line).map_err(|e| RecordError::Corrupt {
                path: path.to_path_buf(),
                line: i as u64 + 1,
                message: e.to_string(),
            })?,
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> crate::testutil::TempDir {
        crate::testutil::TempDir::new(&format!("rec-{name}"))
    }

    fn record(value: f64) -> Record {
        Record {
            workload: "cpu".into(),
            environment: "vm".into(),
            repetition: 2,
            metric: "startup_ms".into(),
            unit: "ms".into(),
            value,
        }
    }

    #[test]
    fn records_round_trip_and_survive_without_finishing() {
        let dir = temp("rt");
        let instance = InstanceRecord {
            workload: "cpu".into(),
            environment: "vm".into(),
            repetition: 2,
            warmup: false,
            ok: true,
            error: None,
            exit: Some("exit status 0".into()),
            digest: Some("ab".into()),
            metrics: vec![Metric::lower("startup_ms", "ms", 2.5)],
            log: "logs/cpu-vm-2.log".into(),
            sampler: None,
        };
        let mut rec = Recorder::create(&dir).unwrap();
        rec.append(&[record(2.5), record(3.0)], &instance).unwrap();
        // Read while the writer is still open: everything is already on disk.
        assert_eq!(
            read_results(&dir.join(RESULTS)).unwrap(),
            [record(2.5), record(3.0)]
        );
        assert_eq!(read_instances(&dir.join(INSTANCES)).unwrap(), [instance]);
        let text = std::fs::read_to_string(dir.join(RESULTS)).unwrap();
        assert!(text.starts_with(
            "workload,environment,repetition,metric,unit,value\ncpu,vm,2,startup_ms,ms,2.5\n"
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn corrupt_files_are_named_with_their_line() {
        let dir = temp("bad");
        let path = dir.join(RESULTS);
        std::fs::write(
            &path,
            "workload,environment,repetition,metric,unit,value\ncpu,vm,x,startup_ms,ms,1\n",
        )
        .unwrap();
        let err = read_results(&path).unwrap_err().to_string();
        assert!(err.contains("results.csv:2:"), "{err}");
        std::fs::write(&path, "a,b\n").unwrap();
        let err = read_results(&path).unwrap_err().to_string();
        assert!(err.contains("header must be"), "{err}");
        std::fs::write(dir.join(INSTANCES), "{\"workload\":1}\n").unwrap();
        let err = read_instances(&dir.join(INSTANCES))
            .unwrap_err()
            .to_string();
        assert!(err.contains("instances.jsonl:1:"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
