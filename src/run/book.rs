//! The run directory as the run writes it: `meta.json`, rewritten as the
//! run goes; `results.csv`, `instances.jsonl` and `samples.csv`, appended
//! after every instance through [`Book::record`] (the one place an
//! instance is recorded, for the main loop and density alike); and the
//! output root's `latest` link.

use super::RunError;
use super::instance::InstanceResult;
use crate::env::EnvKind;
use crate::meta::{Meta, RunStatus};
use crate::record::{InstanceRecord, Record, Recorder, SamplerCost};
use crate::workload::Metric;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// One instance to record.
pub struct Entry<'a> {
    /// Its workload's name.
    pub workload: &'a str,
    /// Its environment.
    pub env: EnvKind,
    /// Its repetition (density: its k).
    pub repetition: u32,
    /// An unrecorded warm-up.
    pub warmup: bool,
    /// Its log, relative to the run directory.
    pub log: String,
}

/// A run directory being written.
pub struct Book {
    dir: PathBuf,
    /// The run's metadata.
    pub meta: Meta,
    recorder: Recorder,
    /// The sampler's CPU time and running time, summed over instances.
    sampler: (Duration, Duration),
}

impl Book {
    /// Writes `meta.json` and creates the record files in `dir`.
    pub fn open(dir: &Path, meta: Meta) -> Result<Book, RunError> {
        meta.save(dir).map_err(io_err(format!(
            "writing {}",
            dir.join(crate::meta::META).display()
        )))?;
        let recorder = Recorder::create(dir)
            .map_err(io_err(format!("creating records in {}", dir.display())))?;
        Ok(Book {
            dir: dir.to_path_buf(),
            meta,
            recorder,
            sampler: (Duration::ZERO, Duration::ZERO),
        })
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records one instance: its figures (unless it is a warm-up or
    /// failed), its line in `instances.jsonl`, its samples, and the units
    /// and directions in `meta.json`, which is saved again.
    pub fn record(
        &mut self,
        e: &Entry<'_>,
        r: &InstanceResult,
        metrics: Vec<Metric>,
    ) -> Result<(), RunError> {
        self.meta.declare(e.workload, &metrics);
        let records = if e.warmup || r.error.is_some() {
            Vec::new()
        } else {
            Record::of(e.workload, e.env, e.repetition, &metrics)
        };
        let instance = InstanceRecord {
            workload: e.workload.to_string(),
            environment: e.env,
            repetition: e.repetition,
            warmup: e.warmup,
            ok: r.error.is_none(),
            error: r.error.clone(),
            exit: r.exit.map(|x| x.to_string()),
            digest: r.digest.clone(),
            metrics,
            log: e.log.clone(),
            sampler: r.samples.as_ref().map(|c| SamplerCost {
                samples: c.samples.len(),
                cpu_ms: c.cpu.as_secs_f64() * 1e3,
                cost_pct: c.cost_share() * 100.0,
            }),
        };
        if let (Some(c), false) = (&r.samples, e.warmup) {
            self.sampler.0 += c.cpu;
            self.sampler.1 += c.wall;
            self.recorder
                .append_samples(e.workload, e.env.as_str(), e.repetition, &c.samples)
                .map_err(io_err(format!(
                    "appending samples in {}",
                    self.dir.display()
                )))?;
        }
        self.recorder
            .append(&records, &instance)
            .map_err(io_err(format!(
                "appending records in {}",
                self.dir.display()
            )))?;
        self.save()
    }

    /// Adds a note for the report.
    pub fn note(&mut self, note: String) {
        self.meta.notes.push(note);
    }

    /// Writes `meta.json` again.
    pub fn save(&self) -> Result<(), RunError> {
        self.meta
            .save(&self.dir)
            .map_err(io_err("updating meta.json"))
    }

    /// Ends the run's metadata: the sampler's cost, the status, the end
    /// and the wall time.
    pub fn finish(
        &mut self,
        status: RunStatus,
        sample_interval: Option<Duration>,
        wall: Duration,
    ) -> Result<(), RunError> {
        let (cpu, ran) = self.sampler;
        if !ran.is_zero() {
            self.note(format!(
                "sampler: every {} ms (PSS on a 0.5% budget); it used {:.1} ms of CPU over {:.2} s of sampling: {:.2}% of one core",
                sample_interval.map_or(0, |d| d.as_millis()),
                cpu.as_secs_f64() * 1e3,
                ran.as_secs_f64(),
                100.0 * cpu.as_secs_f64() / ran.as_secs_f64()
            ));
        }
        self.meta.status = status;
        self.meta.finished = Some(crate::util::now_utc());
        self.meta.wall_s = Some(wall.as_secs_f64());
        self.save()
    }
}

/// What [`point_latest`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Latest {
    /// `<root>/latest` is now a link to the run.
    Updated,
    /// `<root>/latest` is not a symbolic link (a directory, a file): not
    /// isobench's, so it was left as it was. The text says what it is.
    Kept(String),
}

/// Points `<root>/latest` at `run_id`: a relative symlink, replaced
/// atomically (a new link renamed over the old one).
///
/// Only a symbolic link is ever replaced. A directory or a file named
/// `latest` is the user's: it is left alone and the outcome says so
/// ([`Latest::Kept`]). When nothing is there, the new link is renamed in
/// with `RENAME_NOREPLACE`, so that a file created in the meantime is not
/// replaced either. (A link that is swapped for a file between the look
/// and the rename would still be replaced; only a concurrent writer of
/// the same directory could do that.)
pub fn point_latest(root: &Path, run_id: &str) -> std::io::Result<Latest> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;
    let latest = root.join("latest");
    let tmp = root.join(format!(".latest-{}", std::process::id()));
    // A link left by an earlier run that had this pid (never anything else).
    if std::fs::symlink_metadata(&tmp).is_ok_and(|m| m.file_type().is_symlink()) {
        std::fs::remove_file(&tmp)?;
    }
    // Twice at most: once more should a file appear where there was none.
    for _ in 0..2 {
        let replace = match std::fs::symlink_metadata(&latest) {
            Ok(m) if m.file_type().is_symlink() => true,
            Ok(m) => {
                let what = if m.is_dir() {
                    "a directory"
                } else if m.is_file() {
                    "a regular file"
                } else {
                    "not a symbolic link"
                };
                return Ok(Latest::Kept(format!(
                    "{} is {what}, not a link isobench made; left it alone",
                    latest.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(e),
        };
        std::os::unix::fs::symlink(run_id, &tmp)?;
        let renamed = if replace {
            std::fs::rename(&tmp, &latest)
        } else {
            match renameat_with(CWD, &tmp, CWD, &latest, RenameFlags::NOREPLACE) {
                // A file system without RENAME_NOREPLACE: nothing was there
                // a moment ago.
                Err(Errno::INVAL | Errno::NOSYS) => std::fs::rename(&tmp, &latest),
                other => other.map_err(std::io::Error::from),
            }
        };
        match renamed {
            Ok(()) => return Ok(Latest::Updated),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                if e.kind() != std::io::ErrorKind::AlreadyExists {
                    return Err(e);
                }
            }
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!(
            "{} keeps changing while isobench points it at the run",
            latest.display()
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_is_replaced() {
        let root = crate::testutil::TempDir::new("latest");
        assert_eq!(point_latest(&root, "one").unwrap(), Latest::Updated);
        assert_eq!(point_latest(&root, "two").unwrap(), Latest::Updated);
        assert_eq!(
            std::fs::read_link(root.join("latest")).unwrap(),
            PathBuf::from("two")
        );
        // A link that points nowhere is still isobench's to replace.
        std::fs::remove_file(root.join("latest")).unwrap();
        std::os::unix::fs::symlink("gone", root.join("latest")).unwrap();
        assert_eq!(point_latest(&root, "three").unwrap(), Latest::Updated);
        assert_eq!(
            std::fs::read_link(root.join("latest")).unwrap(),
            PathBuf::from("three")
        );
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }

    #[test]
    fn a_directory_or_file_named_latest_is_left_alone() {
        let root = crate::testutil::TempDir::new("latest-kept");
        std::fs::create_dir(root.join("latest")).unwrap();
        std::fs::write(root.join("latest/notes.txt"), "mine").unwrap();
        let Latest::Kept(why) = point_latest(&root, "one").unwrap() else {
            panic!("a directory named latest was replaced");
        };
        assert!(why.contains("latest is a directory, not a link"), "{why}");
        assert_eq!(
            std::fs::read_to_string(root.join("latest/notes.txt")).unwrap(),
            "mine"
        );

        std::fs::remove_dir_all(root.join("latest")).unwrap();
        std::fs::write(root.join("latest"), "my file").unwrap();
        let Latest::Kept(why) = point_latest(&root, "two").unwrap() else {
            panic!("a file named latest was replaced");
        };
        assert!(why.contains("latest is a regular file"), "{why}");
        assert_eq!(
            std::fs::read_to_string(root.join("latest")).unwrap(),
            "my file"
        );
        // No temporary link is left beside it.
        let left: Vec<_> = std::fs::read_dir(&root).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
