//! The sampler's time series, read back from `samples.csv` for the charts
//! over time.
//!
//! `samples.csv` has one row per tick of every measured instance (see
//! [`crate::record::Recorder::append_samples`]). A report draws one instance
//! per workload and environment, so [`read`] keeps, for each, only the rows
//! of its lowest repetition: memory stays bounded by one instance's series
//! however long the run was.
//!
//! The file is optional: a run directory without it (an old run) has no
//! charts over time. It is opened like every other run file, through
//! [`record::open_run_file`], which refuses a FIFO, a device or a file larger
//! than [`record::TABLE_LIMIT`]. A row that cannot be read (a damaged line,
//! a field that is not a number) is skipped and counted, so that a
//! hand-edited or truncated file costs only its bad rows; the charts say how
//! many were skipped.

use crate::record::{self, RecordError};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// The header `samples.csv` has, in this order.
pub const HEADER: [&str; 8] = [
    "workload",
    "environment",
    "repetition",
    "t_ms",
    "processes",
    "cpu_ms",
    "rss_kib",
    "pss_kib",
];

/// One tick of the sampler.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tick {
    /// Time since the instance's `ready` frame, in ms.
    pub t_ms: f64,
    /// CPU time (user + system) of the instance's process tree so far, in ms.
    pub cpu_ms: f64,
    /// Resident memory of the process tree, in KiB.
    pub rss_kib: u64,
    /// Proportional set size, in KiB, on the ticks it was read.
    pub pss_kib: Option<u64>,
}

/// The ticks of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// Workload name.
    pub workload: String,
    /// Environment.
    pub environment: String,
    /// The repetition, the lowest of its workload and environment.
    pub repetition: u32,
    /// Its ticks, in file order.
    pub ticks: Vec<Tick>,
}

/// What [`read`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Samples {
    /// One trace per workload and environment, in order of first
    /// appearance in the file.
    pub traces: Vec<Trace>,
    /// Rows skipped because they could not be read.
    pub damaged: usize,
}

/// Reads the run directory's `samples.csv`; a missing or empty file gives
/// no traces. Only a file that cannot be read at all is an error: one that
/// is not a regular file or too large, an I/O error, or a header other
/// than [`HEADER`].
pub fn read(dir: &Path) -> Result<Samples, RecordError> {
    let path = dir.join(record::SAMPLES);
    let file = match record::open_run_file(&path, record::TABLE_LIMIT) {
        Ok(f) => f,
        Err(RecordError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            return Ok(Samples::default());
        }
        Err(e) => return Err(e),
    };
    parse(file, &path)
}

/// Parses the content of a `samples.csv` (`path` names it in errors).
pub fn parse(reader: impl io::Read, path: &Path) -> Result<Samples, RecordError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(reader);
    let io_error = |e: csv::Error| match e.into_kind() {
        csv::ErrorKind::Io(source) => RecordError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => RecordError::Corrupt {
            path: path.to_path_buf(),
            line: 0,
            message: format!("{other:?}"),
        },
    };
    let mut row = csv::ByteRecord::new();
    if !reader.read_byte_record(&mut row).map_err(io_error)? {
        return Ok(Samples::default());
    }
    if row.iter().ne(HEADER.iter().map(|h| h.as_bytes())) {
        return Err(RecordError::Corrupt {
            path: path.to_path_buf(),
            line: 1,
            message: format!("the header must be `{}`", HEADER.join(",")),
        });
    }
    let mut out = Samples::default();
    // (workload, environment) → index into out.traces.
    let mut index: BTreeMap<(String, String), usize> = BTreeMap::new();
    loop {
        match reader.read_byte_record(&mut row) {
            Ok(false) => break,
            Ok(true) => {}
            // A read error is the file's; anything else is one bad row.
            Err(e) if matches!(e.kind(), csv::ErrorKind::Io(_)) => return Err(io_error(e)),
            Err(_) => {
                out.damaged += 1;
                continue;
            }
        }
        let Some((workload, environment, repetition, tick)) = parse_row(&row) else {
            out.damaged += 1;
            continue;
        };
        let key = (workload, environment);
        match index.get(&key) {
            None => {
                index.insert(key.clone(), out.traces.len());
                out.traces.push(Trace {
                    workload: key.0,
                    environment: key.1,
                    repetition,
                    ticks: vec![tick],
                });
            }
            Some(&i) => {
                let trace = &mut out.traces[i];
                if repetition == trace.repetition {
                    trace.ticks.push(tick);
                } else if repetition < trace.repetition {
                    trace.repetition = repetition;
                    trace.ticks = vec![tick];
                }
            }
        }
    }
    Ok(out)
}

/// One row, or `None` if a field is missing, not UTF-8 or not a number.
fn parse_row(row: &csv::ByteRecord) -> Option<(String, String, u32, Tick)> {
    if row.len() != HEADER.len() {
        return None;
    }
    let field = |i: usize| std::str::from_utf8(row.get(i)?).ok();
    let number = |i: usize| field(i)?.parse::<f64>().ok().filter(|v| v.is_finite());
    let pss = field(7)?;
    let tick = Tick {
        t_ms: number(3)?,
        cpu_ms: number(5)?,
        rss_kib: field(6)?.parse().ok()?,
        pss_kib: if pss.is_empty() {
            None
        } else {
            Some(pss.parse().ok()?)
        },
    };
    Some((
        field(0)?.to_owned(),
        field(1)?.to_owned(),
        field(2)?.parse().ok()?,
        tick,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Samples, RecordError> {
        parse(text.as_bytes(), Path::new("samples.csv"))
    }

    #[test]
    fn keeps_the_lowest_repetition_of_each_series() {
        let text = "workload,environment,repetition,t_ms,processes,cpu_ms,rss_kib,pss_kib\n\
                    idle,vm,2,0.0,1,5.0,1000,\n\
                    idle,vm,2,10.0,1,6.0,1100,900\n\
                    idle,native,1,0.0,1,0.0,500,\n\
                    idle,vm,1,0.0,1,4.0,2000,\n\
                    idle,vm,1,10.0,1,4.5,2100,1800\n\
                    idle,vm,3,0.0,1,4.0,9999,\n";
        let s = parsed(text).unwrap();
        assert_eq!(s.damaged, 0);
        let names: Vec<(&str, u32, usize)> = s
            .traces
            .iter()
            .map(|t| (t.environment.as_str(), t.repetition, t.ticks.len()))
            .collect();
        assert_eq!(names, [("vm", 1, 2), ("native", 1, 1)]);
        assert_eq!(s.traces[0].ticks[1].pss_kib, Some(1800));
        assert_eq!(s.traces[0].ticks[0].pss_kib, None);
        assert_eq!(s.traces[0].ticks[1].rss_kib, 2100);
    }

    #[test]
    fn damaged_rows_are_skipped_and_counted_a_wrong_header_is_an_error() {
        let text = "workload,environment,repetition,t_ms,processes,cpu_ms,rss_kib,pss_kib\n\
                    idle,native,1,0.0,1,0.0,500,\n\
                    idle,native,1,ten,1,0.0,500,\n\
                    idle,native,1,20.0,1,0.0\n\
                    idle,native,1,NaN,1,0.0,500,\n\
                    idle,native,1,30.0,1,0.0,500,x\n\
                    idle,native,1,40.0,1,0.1,600,550\n";
        let s = parsed(text).unwrap();
        assert_eq!(s.damaged, 4);
        assert_eq!(s.traces[0].ticks.len(), 2);
        let mut bytes = text.as_bytes().to_vec();
        bytes.extend_from_slice(b"idle,native,1,50.0,1,0.1,\xff,\n");
        let s = parse(&bytes[..], Path::new("samples.csv")).unwrap();
        assert_eq!(s.damaged, 5);

        assert_eq!(parsed("").unwrap(), Samples::default());
        let err = parsed("a,b\n1,2\n").unwrap_err().to_string();
        assert!(
            err.contains("the header must be `workload,environment"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_file_is_no_samples_a_fifo_or_device_is_refused() {
        let dir = crate::testutil::TempDir::new("samples-read");
        assert_eq!(read(&dir).unwrap(), Samples::default());
        std::os::unix::fs::symlink("/dev/zero", dir.join(record::SAMPLES)).unwrap();
        let err = read(&dir).unwrap_err().to_string();
        assert!(err.contains("character device"), "{err}");
        std::fs::remove_file(dir.join(record::SAMPLES)).unwrap();
        let fifo = std::ffi::CString::new(
            dir.join(record::SAMPLES)
                .into_os_string()
                .into_encoded_bytes(),
        )
        .unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let err = read(&dir).unwrap_err().to_string();
        assert!(err.contains("FIFO"), "{err}");
    }
}
