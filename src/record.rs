//! Records: one tidy row per observation, appended as it is measured.
//!
//! `results.csv` holds `workload,environment,repetition,metric,unit,value`;
//! `instances.jsonl` holds one JSON line per instance started (warm-ups
//! included): its status, exit, error, digest and log file. Both files are
//! flushed after every instance, so a crash loses nothing already measured,
//! and `isobench report DIR` re-renders everything from them and `meta.json`.
//!
//! A run directory is input like any other: it may have been copied, edited
//! by hand, cut off by a full disk, or made by someone else. Every file of
//! one is opened through [`open_run_file`] (a regular file, at most a
//! documented size), and [`read_results`] checks every row, naming the file
//! and the line of the first one that is wrong.

use crate::env::EnvKind;
use crate::workload::{Better, Metric};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
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
    /// The environment.
    pub environment: EnvKind,
    /// Repetition number, from 1 (warm-ups are not recorded here).
    pub repetition: u32,
    /// Metric name.
    pub metric: String,
    /// Unit of `value`.
    pub unit: String,
    /// Which direction is better, as the workload that measured it said:
    /// a property of the series, never looked up by the metric's name
    /// (`score` is µs for `net` and rounds/s for `cpu`).
    pub better: Better,
    /// The value.
    pub value: f64,
}

impl Record {
    /// The records of one instance's figures.
    pub fn of(
        workload: &str,
        environment: crate::env::EnvKind,
        repetition: u32,
        metrics: &[Metric],
    ) -> Vec<Record> {
        metrics
            .iter()
            .map(|m| Record {
                workload: workload.to_string(),
                environment,
                repetition,
                metric: m.name.clone(),
                unit: m.unit.clone(),
                better: m.better,
                value: m.value,
            })
            .collect()
    }
}

/// What happened to one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// Workload name.
    pub workload: String,
    /// Environment.
    pub environment: EnvKind,
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

/// The most isobench reads of a `results.csv`, `instances.jsonl` or
/// `samples.csv`: 1 GiB. A long run writes a few MiB of them (about 40
/// bytes a row); anything larger is not a run's, and reading it would
/// only exhaust memory.
pub const TABLE_LIMIT: u64 = 1 << 30;

/// The header `results.csv` has, in this order.
pub const RESULTS_HEADER: [&str; 7] = [
    "workload",
    "environment",
    "repetition",
    "metric",
    "unit",
    "better",
    "value",
];

/// The header of a `results.csv` written before records carried their
/// direction; read with [`Better::legacy_for_unit`].
pub const LEGACY_HEADER: [&str; 6] = [
    "workload",
    "environment",
    "repetition",
    "metric",
    "unit",
    "value",
];

/// A file of a run directory that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The path is not a regular file: a FIFO (whose reading would wait
    /// for a writer forever), a device (`/dev/zero` never ends), a
    /// directory or a socket.
    #[error(
        "{}{} is {kind}, not a regular file: isobench reads only the regular files a run writes; put the run's own file there",
        path.display(),
        target.as_ref().map_or(String::new(), |t| format!(" (a link to {})", t.display()))
    )]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is instead (`a FIFO`, `a character device`, ...).
        kind: &'static str,
        /// Where it points, when the path is a symbolic link.
        target: Option<PathBuf>,
    },
    /// The file is larger than isobench reads of it.
    #[error(
        "{} is {size} bytes, more than the {limit} bytes isobench reads of this file; no run writes that much, so it is not a run's file",
        path.display()
    )]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit ([`TABLE_LIMIT`], [`crate::meta::META_LIMIT`]).
        limit: u64,
    },
    /// A row or line is malformed.
    #[error("{}:{line}: {message}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
}

/// A path given as a run directory that is not one.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// Nothing is there.
    #[error("directory {} does not exist", path.display())]
    Missing {
        /// The path given.
        path: PathBuf,
    },
    /// A file (or anything else that is not a directory) is there.
    #[error(
        "{} is not a directory: give a run directory (such as reports/latest), which holds {} and {RESULTS}",
        path.display(),
        crate::meta::META
    )]
    NotDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// A directory without a file every run writes.
    #[error("{} is not a run directory: it has no {file}", path.display())]
    NotRun {
        /// The path given.
        path: PathBuf,
        /// The missing file.
        file: &'static str,
    },
    /// The directory or one of its files could not be looked at.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// Checks that `dir` is a run directory: a directory (or a link to one)
/// with a `meta.json` and a `results.csv`. Whether those are readable is
/// for their readers to say.
pub fn check_run_dir(dir: &Path) -> Result<(), RunDirError> {
    let gone = |e: &io::Error| {
        matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
        )
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(RunDirError::NotDirectory {
                path: dir.to_path_buf(),
            });
        }
        Err(e) if gone(&e) => {
            return Err(RunDirError::Missing {
                path: dir.to_path_buf(),
            });
        }
        Err(source) => {
            return Err(RunDirError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    }
    for file in [crate::meta::META, RESULTS] {
        match std::fs::symlink_metadata(dir.join(file)) {
            Ok(_) => {}
            Err(e) if gone(&e) => {
                return Err(RunDirError::NotRun {
                    path: dir.to_path_buf(),
                    file,
                });
            }
            Err(source) => {
                return Err(RunDirError::Io {
                    path: dir.join(file),
                    source,
                });
            }
        }
    }
    Ok(())
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
        recorder
            .samples
            .write_record(crate::report::samples::HEADER)?;
        recorder.samples.flush()?;
        recorder.results.write_record(RESULTS_HEADER)?;
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

/// A file of a run directory opened by [`open_run_file`]: a regular file,
/// read up to its limit and not a byte further.
#[derive(Debug)]
pub struct RunFile {
    file: io::Take<File>,
    limit: u64,
}

impl Read for RunFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && !buf.is_empty() && self.file.limit() == 0 {
            // The limit is used up: the file was at most `limit` bytes when
            // opened, so anything past it was written since.
            let mut probe = [0u8; 1];
            if self.file.get_mut().read(&mut probe)? > 0 {
                return Err(io::Error::new(
                    io::ErrorKind::FileTooLarge,
                    format!(
                        "the file grew past {} bytes, the most isobench reads of it, while it was read",
                        self.limit
                    ),
                ));
            }
        }
        Ok(n)
    }
}

/// What a file is when it is not a regular file, in words.
fn kind_of(file_type: std::fs::FileType) -> Option<&'static str> {
    if file_type.is_file() {
        None
    } else if file_type.is_fifo() {
        Some("a FIFO (named pipe)")
    } else if file_type.is_char_device() {
        Some("a character device")
    } else if file_type.is_block_device() {
        Some("a block device")
    } else if file_type.is_dir() {
        Some("a directory")
    } else if file_type.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

/// Opens a file of a run directory for reading, refusing what is not a
/// regular file and what is larger than `limit` bytes; the reader returned
/// stops with an error should the file grow past `limit` while it is read.
///
/// Every reader of a run directory goes through here. The path is looked
/// at before it is opened, because opening is not harmless for everything
/// (a FIFO's open waits for a writer, a device's may act); it is opened
/// with `O_NONBLOCK`, so that a path swapped for a FIFO in between cannot
/// block either, and the descriptor is checked again with `fstat`. A
/// symbolic link to a regular file is read like that file.
pub fn open_run_file(path: &Path, limit: u64) -> Result<RunFile, RecordError> {
    let io_error = |source| RecordError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_regular = |kind| RecordError::NotRegular {
        path: path.to_path_buf(),
        kind,
        target: std::fs::read_link(path).ok(),
    };
    let meta = std::fs::metadata(path).map_err(io_error)?;
    if let Some(kind) = kind_of(meta.file_type()) {
        return Err(not_regular(kind));
    }
    // O_NONBLOCK changes nothing for a regular file's reads; O_NOCTTY keeps
    // a terminal swapped in from becoming the controlling one.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io_error)?;
    let meta = file.metadata().map_err(io_error)?;
    if let Some(kind) = kind_of(meta.file_type()) {
        return Err(not_regular(kind));
    }
    if meta.len() > limit {
        return Err(RecordError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            limit,
        });
    }
    Ok(RunFile {
        file: file.take(limit),
        limit,
    })
}

/// Writes `bytes` to `path` as a new file: first to a temporary file
/// beside it, created exclusively (never through a link someone put
/// there), then renamed over `path` (which replaces a link at `path`
/// instead of writing through it). Readers never see a half-written file,
/// and a crash leaves at most a `.*.tmp` file of isobench's own.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()));
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Text from a file, for an error message: control characters escaped, so
/// that a hostile file cannot drive the terminal the message is shown on.
fn shown(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Reads `results.csv`, checking every row.
pub fn read_results(path: &Path) -> Result<Vec<Record>, RecordError> {
    parse_results(open_run_file(path, TABLE_LIMIT)?, path)
}

/// Parses the text of a `results.csv` (`path` names it in errors).
///
/// Refused, each with its line: a header other than [`RESULTS_HEADER`]; a
/// row with another number of fields (a file cut off mid-row); an
/// environment isobench does not have; a repetition that is not a whole
/// number; an empty workload or metric name; a value that is not a number,
/// or is NaN or infinite (no measurement is); and a second row for the
/// same workload, environment, repetition and metric (statistics over it
/// would count one repetition twice).
pub fn parse_results(reader: impl Read, path: &Path) -> Result<Vec<Record>, RecordError> {
    let corrupt = |line: u64, message: String| RecordError::Corrupt {
        path: path.to_path_buf(),
        line,
        message,
    };
    // With `flexible` and no header handling, reading a row fails only on
    // a read error or on bytes that are not UTF-8.
    let csv_error = |e: csv::Error, line: u64| {
        let line = e.position().map_or(line, |p| p.line());
        let message = match e.kind() {
            csv::ErrorKind::Utf8 { err, .. } => format!(
                "field {} is not valid UTF-8; the file is damaged",
                err.field() + 1
            ),
            _ => e.to_string(),
        };
        match e.into_kind() {
            csv::ErrorKind::Io(source) => RecordError::Io {
                path: path.to_path_buf(),
                source,
            },
            _ => corrupt(line, message),
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let mut row = csv::StringRecord::new();
    let has_header = reader.read_record(&mut row).map_err(|e| csv_error(e, 1))?;
    let legacy = has_header && row.iter().eq(LEGACY_HEADER);
    if !has_header || (!legacy && row.iter().ne(RESULTS_HEADER)) {
        return Err(corrupt(
            1,
            format!("the header must be `{}`", RESULTS_HEADER.join(",")),
        ));
    }
    // Unit and direction of every (workload, metric), with the line that
    // first gave them: one series, one unit, one direction, in every
    // environment (a ratio to native divides like by like).
    let mut declared: std::collections::HashMap<(String, String), (String, Better, u64)> =
        std::collections::HashMap::new();
    let mut out = Vec::new();
    let mut lines = Vec::new();
    let mut last = 1;
    while reader
        .read_record(&mut row)
        .map_err(|e| csv_error(e, last + 1))?
    {
        let line = row.position().map_or(last + 1, |p| p.line());
        last = line;
        let record = parse_row(&row, legacy).map_err(|message| corrupt(line, message))?;
        let key = (record.workload.clone(), record.metric.clone());
        match declared.get(&key) {
            Some((unit, better, first)) if *unit != record.unit || *better != record.better => {
                return Err(corrupt(
                    line,
                    format!(
                        "{}/{} metric {} is in {} ({} is better) here but in {} ({} is better) at line {first}; one series has one unit and one direction",
                        shown(&record.workload),
                        record.environment.as_str(),
                        shown(&record.metric),
                        shown(&record.unit),
                        record.better.as_str(),
                        shown(unit),
                        better.as_str()
                    ),
                ));
            }
            Some(_) => {}
            None => {
                declared.insert(key, (record.unit.clone(), record.better, line));
            }
        }
        out.push(record);
        lines.push(line);
    }
    if let Some((first, again)) = first_duplicate(&out) {
        let r = &out[again];
        return Err(corrupt(
            lines[again],
            format!(
                "duplicate row for {}/{} repetition {} metric {} (first at line {}); each is measured once, so one of them is not a measurement: remove it",
                shown(&r.workload),
                r.environment.as_str(),
                r.repetition,
                shown(&r.metric),
                lines[first]
            ),
        ));
    }
    Ok(out)
}

/// One row of `results.csv`, checked; the error says what is wrong with it.
fn parse_row(row: &csv::StringRecord, legacy: bool) -> Result<Record, String> {
    let fields: Vec<&str> = row.iter().collect();
    let header: &[&str] = if legacy {
        &LEGACY_HEADER
    } else {
        &RESULTS_HEADER
    };
    let cut = || {
        format!(
            "the row has {} field{} where `{}` are {}; the file may have been cut off",
            fields.len(),
            if fields.len() == 1 { "" } else { "s" },
            header.join(","),
            header.len()
        )
    };
    let (workload, environment, repetition, metric, unit, better, value) = match fields[..] {
        [w, e, r, m, u, v] if legacy => (w, e, r, m, u, Better::legacy_for_unit(u), v),
        [w, e, r, m, u, b, v] if !legacy => {
            let better = Better::parse(b).ok_or_else(|| {
                format!(
                    "direction `{}` of {}/{e} metric {} is neither `higher` nor `lower`",
                    shown(b),
                    shown(w),
                    shown(m)
                )
            })?;
            (w, e, r, m, u, better, v)
        }
        _ => return Err(cut()),
    };
    if workload.is_empty() || metric.is_empty() {
        return Err("the workload or the metric name is empty".into());
    }
    let Some(kind) = EnvKind::from_name(environment) else {
        return Err(format!(
            "unknown environment `{}` for {}: isobench's are {}",
            shown(environment),
            shown(workload),
            EnvKind::ALL.map(|k| k.as_str()).join(", ")
        ));
    };
    let series = || {
        format!(
            "{}/{environment} repetition {} metric {}",
            shown(workload),
            shown(repetition),
            shown(metric)
        )
    };
    let repetition: u32 = repetition.parse().map_err(|_| {
        format!(
            "repetition `{}` of {}/{environment} is not a whole number",
            shown(repetition),
            shown(workload)
        )
    })?;
    let number: f64 = value
        .parse()
        .map_err(|_| format!("value `{}` of {} is not a number", shown(value), series()))?;
    if !number.is_finite() {
        return Err(format!(
            "value `{}` of {} is not a finite number; no measurement is NaN or infinite",
            shown(value),
            series()
        ));
    }
    Ok(Record {
        workload: workload.to_string(),
        environment: kind,
        repetition,
        metric: metric.to_string(),
        unit: unit.to_string(),
        better,
        value: number,
    })
}

/// The first pair of rows, in file order of the second, with the same
/// workload, environment, repetition and metric.
fn first_duplicate(records: &[Record]) -> Option<(usize, usize)> {
    let key = |i: usize| {
        let r = &records[i];
        (&r.workload, &r.environment, r.repetition, &r.metric)
    };
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&a, &b| key(a).cmp(&key(b)).then(a.cmp(&b)));
    order
        .windows(2)
        .filter(|w| key(w[0]) == key(w[1]))
        .map(|w| (w[0], w[1]))
        .min_by_key(|&(_, again)| again)
}

/// A JSON document's error as a [`RecordError::Corrupt`] at `line` of
/// `path` (by default the line serde_json reports), with the column in
/// the message instead of serde_json's own position suffix.
pub fn json_error(path: &Path, line: Option<u64>, e: &serde_json::Error) -> RecordError {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = match text.strip_suffix(&suffix) {
        Some(m) => format!("{m} (column {})", e.column()),
        None => text,
    };
    RecordError::Corrupt {
        path: path.to_path_buf(),
        line: line.unwrap_or(e.line() as u64),
        message,
    }
}

/// Reads `instances.jsonl`; a missing file is an empty list.
pub fn read_instances(path: &Path) -> Result<Vec<InstanceRecord>, RecordError> {
    let file = match open_run_file(path, TABLE_LIMIT) {
        Ok(f) => f,
        Err(RecordError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(Vec::new());
        }
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut line = Vec::new();
    for number in 1u64.. {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| RecordError::Io {
                path: path.to_path_buf(),
                source,
            })?;
        if n == 0 {
            break;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        out.push(serde_json::from_slice(&line).map_err(|e| json_error(path, Some(number), &e))?);
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
            better: Better::Lower,
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
        let third = Record {
            repetition: 3,
            ..record(3.0)
        };
        rec.append(&[record(2.5), third.clone()], &instance)
            .unwrap();
        // Read while the writer is still open: everything is already on disk.
        assert_eq!(
            read_results(&dir.join(RESULTS)).unwrap(),
            [record(2.5), third]
        );
        assert_eq!(read_instances(&dir.join(INSTANCES)).unwrap(), [instance]);
        let text = std::fs::read_to_string(dir.join(RESULTS)).unwrap();
        assert!(text.starts_with(
            "workload,environment,repetition,metric,unit,better,value\ncpu,vm,2,startup_ms,ms,lower,2.5\n"
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }

    const HEADER: &str = "workload,environment,repetition,metric,unit,value\n";

    /// The error `parse_results` gives for this text after the header.
    fn results_error(rows: &str) -> String {
        let text = format!("{HEADER}{rows}");
        parse_results(text.as_bytes(), Path::new("runs/x/results.csv"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn each_row_carries_its_series_direction_and_legacy_files_infer_it() {
        let text = "workload,environment,repetition,metric,unit,better,value\n\
                    net,native,1,score,µs,lower,30\n\
                    cpu,native,1,score,rounds/s,higher,5000\n";
        let rows = parse_results(text.as_bytes(), Path::new("r.csv")).unwrap();
        assert_eq!(
            (rows[0].better, rows[1].better),
            (Better::Lower, Better::Higher)
        );
        // Before the column existed: a rate is better higher, a time lower.
        let legacy = format!("{HEADER}net,native,1,score,µs,30\ncpu,vm,1,score,rounds/s,900\n");
        let rows = parse_results(legacy.as_bytes(), Path::new("r.csv")).unwrap();
        assert_eq!(
            (rows[0].better, rows[1].better),
            (Better::Lower, Better::Higher)
        );
        // One series, one unit and one direction, in every environment.
        let mixed = "workload,environment,repetition,metric,unit,better,value\n\
                     net,native,1,score,µs,lower,30\n\
                     net,vm,1,score,µs,higher,300\n";
        let err = parse_results(mixed.as_bytes(), Path::new("r.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("r.csv:3:") && err.contains("line 2"), "{err}");
        let bad = "workload,environment,repetition,metric,unit,better,value\n\
                   net,native,1,score,µs,sideways,30\n";
        let err = parse_results(bad.as_bytes(), Path::new("r.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sideways"), "{err}");
    }

    #[test]
    fn a_fifo_is_refused_at_once() {
        let dir = temp("fifo");
        let path = dir.join(RESULTS);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let started = std::time::Instant::now();
        // Without a writer, a blocking open of a FIFO never returns.
        let err = read_results(&path).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(matches!(err, RecordError::NotRegular { .. }), "{err:?}");
        let err = err.to_string();
        assert!(
            err.contains("results.csv is a FIFO (named pipe), not a regular file"),
            "{err}"
        );
        let err = read_instances(&path).unwrap_err().to_string();
        assert!(err.contains("is a FIFO"), "{err}");
    }

    #[test]
    fn a_link_to_a_device_or_a_directory_is_refused() {
        let dir = temp("dev");
        let path = dir.join(RESULTS);
        std::os::unix::fs::symlink("/dev/zero", &path).unwrap();
        let err = read_results(&path).unwrap_err().to_string();
        assert!(
            err.contains("results.csv (a link to /dev/zero) is a character device"),
            "{err}"
        );
        std::fs::create_dir(dir.join(INSTANCES)).unwrap();
        let err = read_instances(&dir.join(INSTANCES))
            .unwrap_err()
            .to_string();
        assert!(err.contains("instances.jsonl is a directory"), "{err}");
        // A link to a regular file is read like the file.
        let real = dir.join("real.csv");
        std::fs::write(&real, format!("{HEADER}cpu,vm,2,startup_ms,ms,2.5\n")).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&real, &path).unwrap();
        assert_eq!(read_results(&path).unwrap(), [record(2.5)]);
    }

    #[test]
    fn files_are_read_up_to_their_limit_only() {
        let dir = temp("limit");
        let path = dir.join("f");
        std::fs::write(&path, "0123456789").unwrap();
        let err = open_run_file(&path, 9).unwrap_err();
        assert!(
            matches!(
                err,
                RecordError::TooLarge {
                    size: 10,
                    limit: 9,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("is 10 bytes, more than the 9 bytes")
        );
        let mut text = String::new();
        open_run_file(&path, 10)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "0123456789");
        // A file that grows while it is read stops at the limit, with an error.
        let mut file = open_run_file(&path, 12).unwrap();
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"abcdef")
            .unwrap();
        let mut bytes = Vec::new();
        let err = file.read_to_end(&mut bytes).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(bytes.len(), 12);
    }

    #[test]
    fn a_cut_off_or_unparsable_value_names_its_line_and_value() {
        let err = results_error("cpu,vm,1,startup_ms,ms,2.5\ncpu,vm,2,startup_ms,ms,1.5e\n");
        assert_eq!(
            err,
            "runs/x/results.csv:3: value `1.5e` of cpu/vm repetition 2 metric startup_ms is not a number"
        );
        let err = results_error("cpu,vm,1,startup_ms,ms,\n");
        assert!(
            err.starts_with("runs/x/results.csv:2: value `` of"),
            "{err}"
        );
        // Cut off before the last field.
        let err = results_error("cpu,vm,1,startup_ms,ms,2.5\ncpu,vm,2,start");
        assert!(
            err.starts_with("runs/x/results.csv:3: the row has 4 fields"),
            "{err}"
        );
        let err = results_error("cpu,vm,x,startup_ms,ms,1\n");
        assert!(
            err.starts_with("runs/x/results.csv:2: repetition `x` of cpu/vm"),
            "{err}"
        );
        let err = results_error(",vm,1,startup_ms,ms,1\n");
        assert!(
            err.contains(":2: the workload or the metric name is empty"),
            "{err}"
        );
        let mut bytes = format!("{HEADER}cpu,vm,1,startup_ms,ms,1\n").into_bytes();
        bytes.extend(b"cpu,vm,2,st\xffart,ms,1\n");
        let err = parse_results(&bytes[..], Path::new("r.csv"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("r.csv:3: field 4 is not valid UTF-8"),
            "{err}"
        );
    }

    #[test]
    fn nan_and_infinities_are_refused_with_their_line() {
        for value in ["NaN", "nan", "inf", "-inf", "infinity", "1e400", "-1e999"] {
            let err = results_error(&format!(
                "cpu,vm,1,startup_ms,ms,2.5\ncpu,vm,2,startup_ms,ms,2.5\ncpu,vm,3,score,ms,{value}\n"
            ));
            assert_eq!(
                err,
                format!(
                    "runs/x/results.csv:4: value `{value}` of cpu/vm repetition 3 metric score is not a finite number; no measurement is NaN or infinite"
                )
            );
        }
    }

    #[test]
    fn a_duplicate_row_names_both_lines() {
        let err = results_error(
            "cpu,container,1,score,ops,1\ncpu,container,3,score,ops,2\ncpu,vm,3,score,ops,2\n\
             cpu,container,3,startup_ms,ms,2\ncpu,container,3,score,ops,9\ncpu,container,1,score,ops,1\n",
        );
        assert_eq!(
            err,
            "runs/x/results.csv:6: duplicate row for cpu/container repetition 3 metric score (first at line 3); \
             each is measured once, so one of them is not a measurement: remove it"
        );
    }

    #[test]
    fn an_unknown_environment_is_refused() {
        let err = results_error("cpu,vm,1,score,ops,1\ncpu,kata,1,score,ops,1\n");
        assert_eq!(
            err,
            "runs/x/results.csv:3: unknown environment `kata` for cpu: isobench's are native, \
             container, runc, crun, gvisor, docker, podman, vm, vm-minimal"
        );
        // Control characters from the file are shown escaped.
        let err = results_error("cpu,\"\x1b[2J\",1,score,ops,1\n");
        assert!(err.contains("unknown environment `\\u{1b}[2J`"), "{err}");
    }

    #[test]
    fn run_directories_are_checked_before_they_are_read() {
        let dir = temp("rundir");
        let err = check_run_dir(&dir.join("nope")).unwrap_err().to_string();
        assert!(err.ends_with("nope does not exist"), "{err}");
        let file = dir.join("file");
        std::fs::write(&file, "x").unwrap();
        let err = check_run_dir(&file).unwrap_err().to_string();
        assert!(err.contains("file is not a directory"), "{err}");
        let err = check_run_dir(&file.join("below")).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        let err = check_run_dir(&dir).unwrap_err().to_string();
        assert!(
            err.ends_with("is not a run directory: it has no meta.json"),
            "{err}"
        );
        std::fs::write(dir.join(crate::meta::META), "{}").unwrap();
        let err = check_run_dir(&dir).unwrap_err().to_string();
        assert!(err.ends_with("it has no results.csv"), "{err}");
        // A FIFO is there: whether it can be read is for its reader to say.
        nix::unistd::mkfifo(&dir.join(RESULTS), nix::sys::stat::Mode::S_IRWXU).unwrap();
        check_run_dir(&dir).unwrap();
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
