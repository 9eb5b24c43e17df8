//! The harness: runs a [`Plan`] and records what every instance did.
//!
//! For each workload, the warm-ups run first, then the repetitions; within
//! a repetition the environments take turns, so slow drift of the host
//! affects all of them alike. Every instance is a fresh process, container
//! or VM. Its timings are defined here:
//!
//! - `startup_ms`: host monotonic time from the instance's first host-side
//!   step (native: its pipes and the fork; container: its directory and
//!   cgroup, then `clone3`; vm: QEMU's spawn) to the arrival of the agent's
//!   `ready` frame on the host;
//! - `teardown_ms`: from the arrival of the agent's `done` frame to the
//!   instance being reaped and its host resources removed;
//! - `boot_kernel_ms` (vm): from QEMU's reset of the virtual CPU to the
//!   agent's start, by the virtual CPU's time-stamp counter (x86-64; QEMU
//!   and KVM start it at 0 there). The guest's own clocks stand still in
//!   the early boot (alternatives patching, the APIC timer's calibration),
//!   so its uptime, kept as `boot_uptime_ms`, misses that part; without
//!   the counter's reading there is no `boot_kernel_ms` (nor `boot_vmm_ms`);
//! - `boot_first_byte_ms` (vm): from the spawn to the arrival of the guest's
//!   first byte on the frames channel (the agent's `boot` frame, its very
//!   first act), so `boot_first_byte_ms - boot_kernel_ms` (`boot_vmm_ms`) is what
//!   QEMU cost before its virtual CPU ran (process start, machine set-up,
//!   loading the kernel image and the initramfs) plus the frame's trip;
//! - `boot_agent_ms` (vm): the agent's set-up (mounts, modules, disk check)
//!   from its start to its `ready` frame, by the guest's clock.
//!
//! So for a VM, `startup_ms ≈ boot_vmm_ms + boot_kernel_ms + boot_agent_ms`
//! (plus the frames' trip over the serial port).
//!
//! Workload figures (`score`, `elapsed_ms`, ...) come from the agent's own
//! clock. Records are appended after every instance.

pub mod book;
pub mod density;
pub mod harness;
pub mod instance;
pub mod netclient;
pub mod progress;
pub mod testbed;

pub use book::{Latest, point_latest};
pub use instance::{Extras, InstanceResult, MAX_OUTPUT, Running, run_instance, run_instance_with};
pub use testbed::{Contents, Testbed, find_agent, preflight};

use crate::env::{BedSpec, VmBoot};
use crate::env::{EnvError, EnvKind};
use crate::image;
use crate::image::ImageError;
use crate::image::oci::ImageLayers;
use crate::meta::{Host, Meta, RunStatus};
use crate::report::ReportError;
use crate::rundir;
use crate::scenario::Plan;
use crate::workload::WorkloadSpec;
use book::Book;
use harness::Harness;
use progress::Progress;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

/// Everything a run needs besides the plan's own settings.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// What to run.
    pub plan: Plan,
    /// Where run directories go (`reports/`).
    pub out_root: PathBuf,
    /// How guests boot (`--accel`, `--kernel`, `--modules`).
    pub boot: VmBoot,
    /// Progress output: a bar, lines, or nothing.
    pub progress: progress::Mode,
    /// The git revision of the code under test, recorded in `meta.json`.
    pub revision: Option<String>,
    /// A real image every environment runs (`--image`): an OCI layout or a
    /// `docker save` tarball.
    pub image: Option<PathBuf>,
}

/// Why a run could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A prerequisite is missing; the message says how to get it (exit 2).
    #[error("{0}")]
    Prerequisite(String),
    /// A file operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The image could not be built.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An environment could not be set up.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] ReportError),
}

impl RunError {
    /// The process exit code for this error: 2 for what the user must fix.
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Prerequisite(_) | RunError::Image(_) => 2,
            RunError::Env(EnvError::Unavailable(_)) => 2,
            _ => 1,
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    /// The run directory.
    pub dir: PathBuf,
    /// Instances that failed (and workloads whose digests differed).
    pub failed: usize,
    /// Whether SIGINT/SIGTERM (or a closed output) stopped the run.
    pub interrupted: bool,
    /// The summary table for the terminal.
    pub table: String,
}

/// A new run id: UTC time plus a short random suffix.
pub fn new_run_id() -> String {
    let now = chrono::DateTime::<chrono::Utc>::from(std::time::SystemTime::now())
        .format("%Y%m%dT%H%M%SZ");
    format!("{now}-{:04x}", rand::random::<u16>())
}

/// The mount table of isobench's own mount namespace.
pub fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// What [`resolve_commands`] gives.
type Commands = BTreeMap<String, (Option<PathBuf>, WorkloadSpec)>;

/// The host program of every `command` workload, by workload name: its
/// absolute path and the spec the agent runs. A program that is not on the
/// host is a prerequisite error, before anything starts.
fn resolve_commands(
    plan: &Plan,
    oci: Option<&ImageLayers>,
) -> Result<BTreeMap<String, (Option<PathBuf>, WorkloadSpec)>, RunError> {
    let mut out = BTreeMap::new();
    for w in &plan.workloads {
        let Some(c) = w.command.as_ref() else {
            continue;
        };
        let name = &c.argv[0];
        // A program of the image itself: run as it is, nothing packed.
        if let Some(inside) = oci.and_then(|o| image::rootfs::find_in_layers(&o.dirs, name)) {
            let mut argv = c.argv.clone();
            argv[0] = inside.display().to_string();
            out.insert(w.name.clone(), (None, WorkloadSpec::Command { argv }));
            continue;
        }
        let path = image::find_program(name).ok_or_else(|| {
            if let Some(o) = oci {
                return RunError::Prerequisite(format!(
                    "workload `{}`: program `{name}` is neither an executable file in the image {} nor on the host{} (fix the path in argv)",
                    w.name,
                    o.facts.path.display(),
                    if name.contains('/') { "" } else { " in $PATH" }
                ));
            }
            RunError::Prerequisite(format!(
                "workload `{}`: {}",
                w.name,
                if name.contains('/') {
                    format!("program `{name}` not found on the host, or not executable (fix the path in argv)")
                } else {
                    format!("program `{name}` not found on the host in $PATH (install it, or give its path in argv)")
                }
            ))
        })?;
        let mut argv = c.argv.clone();
        argv[0] = path.display().to_string();
        let spec = match w.spec {
            WorkloadSpec::Service { .. } => WorkloadSpec::Service { argv },
            _ => WorkloadSpec::Command { argv },
        };
        out.insert(w.name.clone(), (Some(path), spec));
    }
    Ok(out)
}

/// Which file system the `fileio` workloads measure: native scratch
/// directories, container layers and volumes and VM disk files all live
/// under the run's runtime directory. A tmpfs there turns disk figures into
/// memory figures, which the note says.
fn scratch_note(run_dir: &Path) -> String {
    let info = mountinfo();
    match rundir::filesystem_of(&info, run_dir) {
        Some((fstype, source, point)) => {
            let mut note = format!(
                "fileio: every environment's files (native scratch, container layers and \
                 volumes, VM disk images) are on {fstype} ({source} at {}), under {}",
                point.display(),
                run_dir.display()
            );
            if fstype == "tmpfs" {
                note.push_str(
                    "; that is memory, not a disk: set ISOBENCH_RUNTIME_DIR to a directory on \
                     a disk to measure one",
                );
            }
            note
        }
        None => format!(
            "fileio: the file system of {} could not be read from /proc/self/mountinfo",
            run_dir.display()
        ),
    }
}

/// Runs the plan, step by step. Progress goes to stderr; the result is a
/// run directory.
pub fn run(settings: &RunSettings, stop: &AtomicBool) -> Result<RunOutcome, RunError> {
    let started = Instant::now();
    let plan = &settings.plan;
    // Everything a bad plan or a missing tool would stop, before anything starts.
    if settings.image.is_some() && plan.environments.contains(&EnvKind::Native) {
        return Err(RunError::Prerequisite(
            "--image: the native environment runs the host's own programs and has no root file system to put an image in; leave it out (for example --env container,vm)".into(),
        ));
    }
    let spec = bed_spec(plan, &settings.boot);
    let agent = preflight(&plan.environments, &spec)?;
    // The image's layers (checked, unpacked once into the layer cache),
    // locked against pruning until the run ends.
    let oci = settings
        .image
        .as_deref()
        .map(image::oci::load)
        .transpose()?;
    let commands = resolve_commands(plan, oci.as_ref())?;
    // The run directory, the test bed, the records.
    let run_id = new_run_id();
    let dir = settings.out_root.join(&run_id);
    let testbed = build_testbed(
        &agent,
        &run_id,
        plan,
        spec,
        (&commands, oci.as_ref()),
        &dir,
        stop,
    )?;
    let mut progress = Progress::new(settings.progress, plan.instance_count());
    for note in &testbed.notes {
        progress.say(&format!("note: {note}"));
    }
    let mut book = Book::open(
        &dir,
        first_meta(&run_id, plan, &testbed, settings.revision.as_deref()),
    )?;
    progress.say(&format!(
        "run {run_id}: scenario `{}`, {} workload(s) × {} environment(s), {} instances; results in {}",
        plan.name,
        plan.workloads.len(),
        testbed.envs.len(),
        plan.instance_count(),
        dir.display()
    ));
    // Every instance.
    let tally = Harness {
        plan,
        envs: &testbed.envs,
        commands: &commands,
        scratch: testbed.run_dir.path(),
        stop,
    }
    .run(&mut book, &mut progress)?;
    progress.finish();
    // The end: status, report, `latest`, the runtime directory removed.
    book.finish(status_of(&tally), plan.sample_interval, started.elapsed())?;
    let rendered = crate::report::render(&dir)?;
    let latest = point_latest(&settings.out_root, &run_id).map_err(io_err(format!(
        "pointing {}/latest at {run_id}",
        settings.out_root.display()
    )))?;
    if let Latest::Kept(why) = latest {
        crate::say!("note: {why} (the run is in {})", dir.display());
    }
    remove_testbed(testbed)?;
    Ok(RunOutcome {
        dir,
        failed: tally.failed,
        interrupted: tally.interrupted,
        table: rendered.table,
    })
}

/// What the environments of a run are asked for.
fn bed_spec<'a>(plan: &'a Plan, boot: &'a VmBoot) -> BedSpec<'a> {
    BedSpec {
        vm: &plan.vm,
        container: &plan.container,
        boot,
        workloads: &plan.workloads,
        quiet: false,
    }
}

/// Makes the run directory (with `logs/`) and builds the test bed on the
/// image holding every `command` workload's program and files; a test bed
/// that cannot be built leaves no empty run directory behind.
fn build_testbed(
    agent: &Path,
    run_id: &str,
    plan: &Plan,
    spec: BedSpec<'_>,
    (commands, oci): (&Commands, Option<&ImageLayers>),
    dir: &Path,
    stop: &AtomicBool,
) -> Result<Testbed, RunError> {
    let programs: Vec<PathBuf> = commands.values().filter_map(|c| c.0.clone()).collect();
    let files: Vec<PathBuf> = plan
        .workloads
        .iter()
        .filter(|w| commands.contains_key(&w.name))
        .flat_map(|w| w.command.iter().flat_map(|c| c.files.iter().cloned()))
        .collect();
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io_err(format!("creating {}", logs.display())))?;
    let contents = Contents {
        programs: &programs,
        files: &files,
        image: oci,
    };
    Testbed::build(
        agent,
        run_id,
        &plan.environments,
        spec,
        contents,
        &logs,
        stop,
    )
    .inspect_err(|_| {
        // Nothing ran: leave no empty run directory behind (a probe's log stays).
        let _ = std::fs::remove_dir(&logs);
        let _ = std::fs::remove_dir(dir);
    })
}

/// The run's metadata as it starts.
fn first_meta(run_id: &str, plan: &Plan, testbed: &Testbed, revision: Option<&str>) -> Meta {
    let facts: Vec<crate::env::EnvFacts> = testbed.envs.iter().map(|e| e.facts()).collect();
    let mut meta = Meta {
        run_id: run_id.to_string(),
        status: RunStatus::Running,
        started: crate::util::now_utc(),
        finished: None,
        wall_s: None,
        isobench: crate::meta::version(),
        revision: revision.map(str::to_string),
        host: Host::detect(),
        qemu: facts.iter().find_map(|f| f.qemu.clone()),
        accelerator: facts.iter().find_map(|f| f.accelerator.clone()),
        guest_kernel: facts.iter().find_map(|f| f.guest_kernel.clone()),
        runtimes: testbed
            .envs
            .iter()
            .zip(&facts)
            .filter_map(|(e, f)| Some((e.kind().to_string(), f.runtime.clone()?)))
            .collect(),
        image: serde_json::to_value(&testbed.image).ok(),
        scenario: serde_json::to_value(plan).unwrap_or_default(),
        environments: testbed
            .envs
            .iter()
            .map(|e| (e.kind().to_string(), e.knobs()))
            .collect(),
        metrics: BTreeMap::new(),
        order: "per workload: warm-ups, then repetitions; environments interleaved within each repetition".into(),
        notes: testbed.notes.clone(),
    };
    if plan
        .workloads
        .iter()
        .any(|w| w.spec.kind() == crate::workload::WorkloadKind::Fileio)
    {
        meta.notes.push(scratch_note(testbed.run_dir.path()));
    }
    meta
}

/// The run's status from how its instances went.
fn status_of(tally: &harness::Tally) -> RunStatus {
    if tally.interrupted {
        RunStatus::Interrupted
    } else if tally.failed > 0 {
        RunStatus::Failed
    } else {
        RunStatus::Complete
    }
}

/// Ends every environment and removes the run's runtime directory.
fn remove_testbed(testbed: Testbed) -> Result<(), RunError> {
    let run_dir = Arc::clone(&testbed.run_dir);
    drop(testbed);
    run_dir
        .remove()
        .map_err(io_err(format!("removing {}", run_dir.path().display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_sort_by_time_and_differ() {
        let a = new_run_id();
        assert_eq!(a.len(), "20261127T225500Z-abcd".len());
        assert!(a.ends_with(char::is_alphanumeric));
    }
}
