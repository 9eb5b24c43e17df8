//! The main loop of a run: for each workload its warm-ups, then its
//! repetitions (more of them while adaptive repetitions say the spread is
//! too wide), and within each the environments in turn, each instance a
//! fresh process, container or VM; density workloads go to [`super::density`].
//! Every instance is recorded as it ends (see [`super::book`]).

use super::RunError;
use super::book::{Book, Entry};
use super::instance::{Extras, InstanceResult, run_instance_with};
use super::progress::{Progress, outcome_line};
use crate::env::{EnvKind, Environment};
use crate::runtime;
use crate::scenario::{Plan, PlannedWorkload};
use crate::workload::{Metric, WorkloadSpec};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The harness over a standing test bed.
pub struct Harness<'a> {
    /// What to run.
    pub plan: &'a Plan,
    /// The environments, in the order they take turns.
    pub envs: &'a [Box<dyn Environment>],
    /// Every `command` workload's host program and the spec the agent runs.
    pub commands: &'a BTreeMap<String, (PathBuf, WorkloadSpec)>,
    /// Where instances' scratch directories go (the run's runtime directory).
    pub scratch: &'a Path,
    /// Set on Ctrl-C (or a closed output).
    pub stop: &'a AtomicBool,
}

/// How the instances went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Instances that failed, and workloads whose digests differed.
    pub failed: usize,
    /// Whether the run was stopped.
    pub interrupted: bool,
}

impl Harness<'_> {
    /// Runs every workload of the plan; stops early when told.
    pub fn run(&self, book: &mut Book, progress: &mut Progress) -> Result<Tally, RunError> {
        let mut tally = Tally::default();
        for w in &self.plan.workloads {
            if let WorkloadSpec::Density { .. } = w.spec {
                for env in self.envs {
                    super::density::run(w, env.as_ref(), book, progress, self.stop, &mut tally)?;
                    if tally.interrupted {
                        return Ok(tally);
                    }
                }
            } else {
                self.workload(w, book, progress, &mut tally)?;
            }
            if tally.interrupted {
                break;
            }
        }
        Ok(tally)
    }

    /// One workload: its warm-ups and repetitions in every environment,
    /// then its digest check and adaptive-repetition notes.
    fn workload(
        &self,
        w: &PlannedWorkload,
        book: &mut Book,
        progress: &mut Progress,
        tally: &mut Tally,
    ) -> Result<(), RunError> {
        // What every environment ships for this workload (`artifact_mib`).
        let spec = self.commands.get(&w.name).map_or(&w.spec, |(_, spec)| spec);
        let artifacts: BTreeMap<EnvKind, Option<u64>> = self
            .envs
            .iter()
            .map(|e| (e.kind(), e.artifact_bytes(spec)))
            .collect();
        let mut digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let max_reps = w.adaptive.map_or(w.reps, |a| a.max_reps);
        let slots = (1..=w.warmups)
            .map(|k| (true, k))
            .chain((1..=max_reps).map(|r| (false, r)));
        // The headline figure of every measured instance, per environment,
        // for adaptive repetitions.
        let mut headline: BTreeMap<EnvKind, Vec<f64>> = BTreeMap::new();
        'slots: for (warmup, number) in slots {
            if let Some(a) = w.adaptive
                && !warmup
                && number > w.reps
                && spread_reached(&headline, a.target_rsd)
            {
                book.note(format!(
                    "{}: adaptive repetitions stopped after {} (relative spread under {}% in every environment)",
                    w.name,
                    number - 1,
                    a.target_rsd
                ));
                break 'slots;
            }
            for env in self.envs {
                if self.stop.load(Ordering::SeqCst) {
                    tally.interrupted = true;
                    return Ok(());
                }
                let kind = env.kind();
                let tag = if warmup {
                    format!("warmup{number}")
                } else {
                    format!("r{number}")
                };
                let id = format!("{}-{kind}-{tag}", w.name);
                let what = if warmup {
                    format!("warm-up {number}/{}", w.warmups)
                } else {
                    match w.adaptive {
                        Some(a) => format!("rep {number}/≤{}", a.max_reps),
                        None => format!("rep {number}/{}", w.reps),
                    }
                };
                progress.start(&w.name, kind.as_str(), &what);
                let entry = Entry {
                    workload: &w.name,
                    env: kind,
                    repetition: number,
                    warmup,
                    log: format!("logs/{id}.log"),
                };
                let mut r = self.instance(w, env.as_ref(), &id, &book.dir().join(&entry.log));
                if r.error.is_none()
                    && let Some(bytes) = artifacts.get(&kind).copied().flatten()
                {
                    r.host_metrics.push(Metric::lower(
                        "artifact_mib",
                        "MiB",
                        bytes as f64 / (1 << 20) as f64,
                    ));
                }
                let metrics = metrics_of(&r);
                progress.end(&outcome_line(&r, &metrics, &entry.log));
                tally.interrupted |= r.interrupted;
                if r.error.is_some() && !r.interrupted {
                    tally.failed += 1;
                }
                if let Some(d) = &r.digest {
                    digests.entry(d.clone()).or_default().push(id.clone());
                }
                if !warmup && r.error.is_none() {
                    let figure = metrics
                        .iter()
                        .find(|m| m.name == "score")
                        .or_else(|| metrics.iter().find(|m| m.name == "startup_ms"));
                    if let Some(m) = figure {
                        headline.entry(kind).or_default().push(m.value);
                    }
                }
                book.record(&entry, &r, metrics)?;
                if tally.interrupted {
                    return Ok(());
                }
            }
        }
        if let Some(a) = w.adaptive
            && headline.values().all(|v| v.len() >= a.max_reps as usize)
        {
            let verdict = if spread_reached(&headline, a.target_rsd) {
                "reached"
            } else {
                "not reached"
            };
            book.note(format!(
                "{}: adaptive repetitions ran to the cap of {}; relative spread under {}%: {verdict}",
                w.name, a.max_reps, a.target_rsd
            ));
        }
        if let Some(note) = digest_note(&w.name, &digests) {
            if digests.len() > 1 {
                tally.failed += 1;
                progress.say(&note);
            }
            book.note(note);
        }
        book.save()
    }

    /// Runs one instance of `w` in `env` to its end.
    fn instance(
        &self,
        w: &PlannedWorkload,
        env: &dyn Environment,
        id: &str,
        log: &Path,
    ) -> InstanceResult {
        if let Some((_, spec)) = self.commands.get(&w.name) {
            let extras = Extras {
                sample_every: self.plan.sample_interval,
                ..Extras::default()
            };
            let mut r = run_instance_with(env, spec, id, Some(log), w.timeout, self.stop, extras);
            apply_rules(&mut r, w);
            return r;
        }
        match InstanceScratch::for_instance(w, env.kind(), self.scratch, id) {
            Ok(scratch) => {
                let mut extras = scratch.extras();
                extras.sample_every = self.plan.sample_interval;
                run_instance_with(env, &w.spec, id, Some(log), w.timeout, self.stop, extras)
            }
            Err(e) => InstanceResult {
                error: Some(e),
                ..InstanceResult::default()
            },
        }
    }
}

/// What the digests of a workload's instances say: identical everywhere,
/// or a mismatch naming the instances of each (`None` without digests).
fn digest_note(workload: &str, digests: &BTreeMap<String, Vec<String>>) -> Option<String> {
    match digests.len() {
        0 => None,
        1 => Some(format!(
            "{workload}: the digest is identical in all {} instances that reported one",
            digests.values().map(Vec::len).sum::<usize>()
        )),
        _ => {
            let detail: Vec<String> = digests
                .iter()
                .map(|(d, ids)| format!("{} in {}", &d[..d.len().min(16)], ids.join(", ")))
                .collect();
            Some(format!(
                "{workload}: DIGEST MISMATCH between environments: {}",
                detail.join("; ")
            ))
        }
    }
}

/// Whether every environment's series has a relative standard deviation
/// under `target_pct` (and at least two values).
fn spread_reached(series: &BTreeMap<EnvKind, Vec<f64>>, target_pct: f64) -> bool {
    !series.is_empty()
        && series.values().all(|v| {
            crate::stats::summarize(v).is_some_and(|s| s.n >= 2 && s.rsd * 100.0 < target_pct)
        })
}

/// The scratch space of a `fileio` instance on the host: a directory of
/// the run's, removed when the instance is done. Native instances do their
/// I/O in it; container instances of a `target = "volume"` workload get it
/// bind-mounted at `/scratch`; everything else uses its own `/scratch`.
struct InstanceScratch {
    dir: Option<PathBuf>,
    extras: Extras,
}

impl InstanceScratch {
    fn for_instance(
        w: &PlannedWorkload,
        env: EnvKind,
        run_dir: &Path,
        id: &str,
    ) -> Result<InstanceScratch, String> {
        let mut scratch = InstanceScratch {
            dir: None,
            extras: Extras::default(),
        };
        if w.spec.kind() != crate::workload::WorkloadKind::Fileio {
            return Ok(scratch);
        }
        let sub = match (env, w.target) {
            (EnvKind::Native, _) => "scratch",
            (EnvKind::Container, crate::scenario::FileTarget::Volume) => "volumes",
            _ => return Ok(scratch),
        };
        let d = run_dir.join(sub).join(id);
        std::fs::create_dir_all(&d)
            .map_err(|e| format!("creating the scratch directory {}: {e}", d.display()))?;
        if env == EnvKind::Native {
            scratch.extras.env.push((
                crate::agent::workloads::SCRATCH_ENV.to_string(),
                d.display().to_string(),
            ));
        } else {
            scratch.extras.volumes.push(crate::env::container::Volume {
                host: d.clone(),
                guest: "/scratch".into(),
                read_only: false,
            });
        }
        scratch.dir = Some(d);
        Ok(scratch)
    }

    fn extras(&self) -> Extras {
        self.extras.clone()
    }
}

impl Drop for InstanceScratch {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = runtime::remove_tree(d);
        }
    }
}

/// For a `command` workload that ran: its exit status and the figures its
/// rules extract from its output.
fn apply_rules(r: &mut InstanceResult, w: &PlannedWorkload) {
    let Some(c) = &w.command else { return };
    if r.interrupted || r.startup.is_none() {
        return;
    }
    match r.status {
        Some(0) => {}
        Some(status) => {
            r.error = Some(format!(
                "`{}` exited with status {status}; its output is in the instance's log",
                c.argv.join(" ")
            ));
            return;
        }
        None => return,
    }
    match crate::extract::extract(&c.metrics, &r.output) {
        Ok(metrics) => r.metrics.extend(metrics),
        Err(e) => {
            r.error.get_or_insert(e);
        }
    }
}

/// Everything measured for one instance: the host's timings, then the workload's figures.
fn metrics_of(r: &InstanceResult) -> Vec<Metric> {
    let mut metrics = Vec::new();
    if let Some(s) = r.startup {
        metrics.push(Metric::lower("startup_ms", "ms", s.as_secs_f64() * 1e3));
    }
    if let Some(t) = r.teardown {
        metrics.push(Metric::lower("teardown_ms", "ms", t.as_secs_f64() * 1e3));
    }
    if let Some(f) = r.first_byte {
        let first_ms = f.as_secs_f64() * 1e3;
        metrics.push(Metric::lower("boot_first_byte_ms", "ms", first_ms));
        if let Some(k) = r.boot_kernel_ms {
            metrics.push(Metric::lower("boot_vmm_ms", "ms", first_ms - k));
        }
    }
    if let Some(k) = r.boot_kernel_ms {
        metrics.push(Metric::lower("boot_kernel_ms", "ms", k));
    }
    if let Some(a) = r.boot_agent_ms {
        metrics.push(Metric::lower("boot_agent_ms", "ms", a));
    }
    metrics.extend(r.host_metrics.iter().cloned());
    metrics.extend(r.metrics.iter().cloned());
    metrics
}
