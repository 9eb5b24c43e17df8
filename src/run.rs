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
//! - `boot_kernel_ms` (vm): the guest's uptime when the agent started;
//! - `boot_first_byte_ms` (vm): from the spawn to the arrival of the guest's
//!   first byte on the frames channel (the agent's `boot` frame, its very
//!   first act), so `boot_first_byte_ms - boot_kernel_ms` (`boot_vmm_ms`) is what
//!   QEMU, the firmware and the kernel's decompression cost before the
//!   guest's clock started;
//! - `boot_agent_ms` (vm): the agent's set-up (mounts, modules, disk check)
//!   from its start to its `ready` frame, by the guest's clock.
//!
//! So for a VM, `startup_ms ≈ boot_vmm_ms + boot_kernel_ms + boot_agent_ms`
//! (plus the frames' trip over the serial port).
//!
//! Workload figures (`score`, `elapsed_ms`, ...) come from the agent's own
//! clock. Records are appended after every instance.

use crate::agent::frame::Frame;
use crate::cgroup::Driver;
use crate::env::Io;
use crate::env::container::Container;
use crate::env::container::ContainerConfig;
use crate::env::native::Native;
use crate::env::vm::{self, AccelChoice, AccelRequest, Devices, KernelFiles, Vm, VmConfig};
use crate::env::{EnvError, EnvKind, Environment, Exit, Instance, Launch};
use crate::image::{self, Image, ImageError};
use crate::kernel::{self, GuestKernel};
use crate::meta::{Host, Meta};
use crate::record::{InstanceRecord, Record, Recorder, SamplerCost};
use crate::report::{self, ReportError};
use crate::runtime::{self, RunDir};
use crate::scenario::{ContainerSettings, Plan, PlannedWorkload, VmSettings};
use crate::workload::{Metric, WorkloadSpec};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

/// Longest wait for an instance to end after its last frame.
const EXIT_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest wait, after an instance was torn down, for the end of its output.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// Everything a run needs besides the plan's own settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// What to run.
    pub plan: Plan,
    /// Where run directories go (`reports/`).
    pub out_root: PathBuf,
    /// `--accel`.
    pub accel: AccelRequest,
    /// `--kernel`.
    pub kernel: Option<PathBuf>,
    /// `--modules`: the guest kernel's modules (default: those kept by
    /// `isobench kernel fetch` with its kernel).
    pub modules: Option<PathBuf>,
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
pub struct Outcome {
    /// The run directory.
    pub dir: PathBuf,
    /// Instances that failed.
    pub failed: usize,
    /// Whether SIGINT/SIGTERM stopped the run.
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

/// What rootless mode cannot do, said once and recorded in `meta.json`.
pub fn rootless_note(limits: &crate::cgroup::Limits) -> String {
    let mut note = "rootless containers: a user namespace maps the caller's uid to root; \
                    cgroups are not used (no delegated cgroup), so there is no CPU or memory \
                    accounting per container"
        .to_string();
    if limits.any() {
        note.push_str(", and the requested limits (memory, cpus, pids) are NOT applied");
    }
    note
}

/// Whether unprivileged user namespaces are available, or why not.
fn user_namespaces_available() -> Result<(), String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err("user namespaces are disabled (user.max_user_namespaces = 0); enable them with `sysctl user.max_user_namespaces=15000`, or run as root".into());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err("unprivileged user namespaces are disabled; enable them with `sysctl kernel.unprivileged_userns_clone=1`, or run as root".into());
    }
    Ok(())
}

/// What the environments of a run need, found before anything starts.
#[derive(Debug, Clone)]
pub struct Prerequisites {
    /// The static agent binary.
    pub agent: PathBuf,
    /// For VMs: the guest kernel and QEMU's version line.
    pub vm: Option<(GuestKernel, String)>,
    /// For VMs: the kernel's release and its modules, indexed.
    pub kernel_files: Option<KernelFiles>,
}

/// Checks what these environments need, before anything starts; the error
/// names what is missing and how to get it.
pub fn preflight(
    environments: &[EnvKind],
    kernel: Option<&Path>,
) -> Result<Prerequisites, RunError> {
    preflight_with(environments, kernel, None)
}

/// [`preflight`] with `--modules DIR` for the guest kernel.
pub fn preflight_with(
    environments: &[EnvKind],
    kernel: Option<&Path>,
    modules: Option<&Path>,
) -> Result<Prerequisites, RunError> {
    if environments.contains(&EnvKind::Container) && !nix::unistd::geteuid().is_root() {
        user_namespaces_available()
            .map_err(|e| RunError::Prerequisite(format!("rootless containers: {e}")))?;
    }
    let agent = image::find_agent()?;
    image::check_static(&agent)?;
    let vm = if environments.contains(&EnvKind::Vm) {
        let qemu = vm::qemu_version(Path::new(vm::QEMU)).map_err(RunError::Prerequisite)?;
        let mut kernel = kernel::resolve(kernel, &kernel::cache_dir())
            .map_err(|e| RunError::Prerequisite(e.to_string()))?;
        if let Some(dir) = modules {
            kernel.modules = Some(dir.to_path_buf());
        }
        Some((kernel, qemu))
    } else {
        None
    };
    let kernel_files = match &vm {
        Some((k, _)) => Some(
            KernelFiles::open(&k.vmlinuz, k.modules.as_deref())
                .map_err(|e| RunError::Prerequisite(e.to_string()))?,
        ),
        None => None,
    };
    Ok(Prerequisites {
        agent,
        vm,
        kernel_files,
    })
}

/// The VM side of a testbed: what it boots and on which accelerator.
#[derive(Debug, Clone)]
pub struct VmInfo {
    /// QEMU's version line.
    pub qemu: String,
    /// The guest kernel.
    pub kernel: GuestKernel,
    /// The accelerator and why.
    pub accel: AccelChoice,
    /// What every guest is made of.
    pub config: VmConfig,
}

/// What a testbed is built for.
#[derive(Debug, Clone, Copy)]
pub struct BedSpec<'a> {
    /// The environments, in order.
    pub environments: &'a [EnvKind],
    /// VM settings.
    pub vm: &'a VmSettings,
    /// Container settings.
    pub container: &'a ContainerSettings,
    /// `--accel`.
    pub accel: AccelRequest,
    /// Programs packed into the image with their library closures
    /// (`command` workloads), as absolute host paths.
    pub programs: &'a [PathBuf],
    /// Extra host files and directories copied into the image.
    pub files: &'a [PathBuf],
    /// Say nothing on stderr (`exec`, whose stderr is the program's).
    pub quiet: bool,
}

/// The environments of a run, built on one image in one runtime directory.
/// Used by [`run`], and by benchmarks that time single instances.
pub struct Testbed {
    /// The run's runtime directory (removed when the testbed is dropped).
    pub run_dir: Arc<RunDir>,
    /// The image every environment runs.
    pub image: Image,
    /// The environments, in the order asked for.
    pub envs: Vec<Box<dyn Environment>>,
    /// Present when the testbed has a VM environment.
    pub vm: Option<VmInfo>,
    /// What could not be set up as asked, in words (rootless limits, ...).
    pub notes: Vec<String>,
}

impl Testbed {
    /// Builds the image and the environments. `logs` receives the KVM
    /// probe's log when one is needed; leftovers of dead runs are cleaned first.
    pub fn build(
        prereqs: &Prerequisites,
        run_id: &str,
        spec: &BedSpec<'_>,
        logs: &Path,
        stop: &AtomicBool,
    ) -> Result<Testbed, RunError> {
        let mut notes = Vec::new();
        let base = runtime::base_dir().map_err(|e| RunError::Prerequisite(e.to_string()))?;
        match runtime::clean(&base, Path::new("/proc"), Path::new("/sys/fs/cgroup")) {
            Ok(report) => {
                for d in &report.removed {
                    crate::say!("removed leftovers of an earlier run: {}", d.display());
                }
            }
            Err(e) => crate::say!("warning: cleaning {} failed: {e}", base.display()),
        }
        let run_dir = Arc::new(
            RunDir::create(&base, run_id)
                .map_err(io_err(format!("creating {}", base.join(run_id).display())))?,
        );
        let image = image::build_with(
            &prereqs.agent,
            &run_dir.path().join("image"),
            &run_dir.path().join("initramfs.cpio"),
            spec.programs,
            spec.files,
        )?;
        let mut envs: Vec<Box<dyn Environment>> = Vec::new();
        let mut vm_info = None;
        let (container, vm_settings, accel) = (spec.container, spec.vm, spec.accel);
        for kind in spec.environments {
            match kind {
                EnvKind::Native => envs.push(Box::new(Native::new(prereqs.agent.clone()))),
                EnvKind::Container => {
                    let rootless = !nix::unistd::geteuid().is_root();
                    let driver = if rootless {
                        notes.push(rootless_note(&container.limits));
                        None
                    } else {
                        Some(
                            Driver::detect(Path::new("/sys/fs/cgroup"), &mountinfo())
                                .map_err(|e| RunError::Prerequisite(e.to_string()))?,
                        )
                    };
                    let seccomp = crate::env::container::seccomp_filters(&container.seccomp)
                        .map_err(|e| RunError::Prerequisite(format!("[container] seccomp: {e}")))?;
                    let config = ContainerConfig {
                        layers: vec![image.dir.clone()],
                        volumes: container.volumes.clone(),
                        limits: container.limits,
                        cgroups: container.cgroups,
                        rootless,
                        seccomp,
                    };
                    envs.push(Box::new(Container::new(
                        config,
                        driver,
                        Arc::clone(&run_dir),
                    )));
                }
                EnvKind::Vm => {
                    let Some((kernel, qemu)) = &prereqs.vm else {
                        return Err(RunError::Prerequisite(
                            "internal: VM prerequisites were not checked".into(),
                        ));
                    };
                    let files = prereqs.kernel_files.clone().ok_or_else(|| {
                        RunError::Prerequisite("internal: the guest kernel was not indexed".into())
                    })?;
                    let mut config = VmConfig {
                        qemu: PathBuf::from(vm::QEMU),
                        kernel: kernel.boot_image().to_path_buf(),
                        machine: vm_settings.machine,
                        memory_mib: vm_settings.memory_mib,
                        cpus: vm_settings.cpus,
                        accel: vm::Accel::Tcg,
                        tsc_khz: None,
                        kernel_args: vm_settings.kernel_args.clone(),
                        boot_timeout: Duration::ZERO,
                    };
                    let probe = ProbeSetup {
                        base: &config,
                        image_dir: &image.dir,
                        kernel: &files,
                        qemu,
                    };
                    let choice = choose_accel(accel, &probe, &run_dir, logs, stop)?;
                    if !spec.quiet {
                        crate::say!("accelerator: {} — {}", choice.accel.as_str(), choice.reason);
                    }
                    config.accel = choice.accel;
                    if choice.accel == vm::Accel::Tcg {
                        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
                        config.tsc_khz = vm::host_tsc_khz(&cpuinfo);
                    }
                    config.boot_timeout = vm_settings
                        .boot_timeout
                        .unwrap_or_else(|| vm::default_boot_timeout(choice.accel));
                    vm_info = Some(VmInfo {
                        qemu: qemu.clone(),
                        kernel: kernel.clone(),
                        accel: choice,
                        config: config.clone(),
                    });
                    let devices = Devices {
                        disk_mib: vm_settings.disk_mib,
                        scratch_mib: None,
                    };
                    let env = Vm::new(
                        config,
                        devices,
                        image.dir.clone(),
                        files,
                        Arc::clone(&run_dir),
                    );
                    // Modules found and matching, initramfs written: before any boot.
                    env.prepare()?;
                    envs.push(Box::new(env));
                }
            }
        }
        Ok(Testbed {
            run_dir,
            image,
            envs,
            vm: vm_info,
            notes,
        })
    }

    /// The environment of this kind, if the testbed has it.
    pub fn env(&self, kind: EnvKind) -> Option<&dyn Environment> {
        self.envs
            .iter()
            .find(|e| e.kind() == kind)
            .map(|e| e.as_ref())
    }
}

/// What one instance did.
#[derive(Debug, Default)]
pub struct InstanceResult {
    /// Spawn → arrival of `ready`.
    pub startup: Option<Duration>,
    /// Spawn → arrival of the first byte, for instances that send a `boot`
    /// frame (VMs).
    pub first_byte: Option<Duration>,
    /// The agent's set-up before `ready`, by its own clock (vm).
    pub boot_agent_ms: Option<f64>,
    /// Arrival of `done` → reaped and cleaned up (only for a clean end).
    pub teardown: Option<Duration>,
    /// The guest's uptime at the agent's start (vm).
    pub boot_kernel_ms: Option<f64>,
    /// The workload's own figures.
    pub metrics: Vec<Metric>,
    /// Figures the environment read on the host (memory, CPU time, ...).
    pub host_metrics: Vec<Metric>,
    /// The workload's digest.
    pub digest: Option<String>,
    /// For a program run by the agent: its exit status.
    pub status: Option<i32>,
    /// What went wrong; `None` when the instance did everything it should.
    pub error: Option<String>,
    /// How the host process ended.
    pub exit: Option<Exit>,
    /// Whether SIGINT/SIGTERM cut it short.
    pub interrupted: bool,
    /// Everything on the output stream that was not a frame (a program's
    /// own output), up to [`MAX_OUTPUT`] bytes.
    pub output: String,
    /// What the sampler collected, when the instance was sampled.
    pub samples: Option<crate::sample::Collected>,
}

/// How much of an instance's non-frame output is kept for metric extraction.
pub const MAX_OUTPUT: usize = 4 << 20;

enum Event {
    /// The first byte on the frames channel arrived.
    FirstByte(Instant),
    Frame(Instant, Frame),
    /// Something on the frames channel that is not a valid frame.
    Garbled(String),
    /// A line of the instance's output (data: a program's output, a
    /// guest's console), never a frame.
    Output(String),
    /// The frames channel ended: the agent (or QEMU) is gone.
    Eof,
    /// The output stream ended.
    OutputEof,
}

/// Starts one instance, reads its frames with their arrival times, and
/// tears it down. Never panics; every failure ends up in `error`.
pub fn run_instance(
    env: &dyn Environment,
    spec: &WorkloadSpec,
    id: &str,
    log_path: Option<&Path>,
    run_timeout: Duration,
    stop: &AtomicBool,
) -> InstanceResult {
    run_instance_with(
        env,
        spec,
        id,
        log_path,
        run_timeout,
        stop,
        Extras::default(),
    )
}

/// What an instance gets besides its workload: extra environment variables
/// for the agent and extra bind mounts (container).
#[derive(Debug, Clone, Default)]
pub struct Extras {
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Bind mounts.
    pub volumes: Vec<crate::env::container::Volume>,
    /// Sample the instance's processes at this interval from `ready` on.
    pub sample_every: Option<Duration>,
}

/// [`run_instance`] with [`Extras`].
pub fn run_instance_with(
    env: &dyn Environment,
    spec: &WorkloadSpec,
    id: &str,
    log_path: Option<&Path>,
    run_timeout: Duration,
    stop: &AtomicBool,
    extras: Extras,
) -> InstanceResult {
    match Running::start(env, spec, id, log_path, run_timeout, extras) {
        Ok(mut running) => {
            running.pump(stop, false);
            running.finish()
        }
        Err(result) => *result,
    }
}

/// An instance between its spawn and its end: its frames are read as they
/// come ([`Running::pump`]) and [`Running::finish`] reaps it and tears it
/// down. [`run_instance_with`] runs one to its end; density keeps several
/// alive at once.
pub struct Running {
    instance: Box<dyn Instance>,
    rx: mpsc::Receiver<Event>,
    reader: Option<std::thread::JoinHandle<()>>,
    output_reader: Option<std::thread::JoinHandle<()>>,
    result: InstanceResult,
    spawned_at: Instant,
    startup_timeout: Duration,
    run_timeout: Duration,
    deadline: Instant,
    ready_at: Option<Instant>,
    done_at: Option<Instant>,
    first_byte_at: Option<Instant>,
    sample_every: Option<Duration>,
    sampler: Option<crate::sample::Sampler>,
    ended: bool,
}

impl Running {
    /// Spawns the instance; `Err` holds the failed instance's result.
    pub fn start(
        env: &dyn Environment,
        spec: &WorkloadSpec,
        id: &str,
        log_path: Option<&Path>,
        run_timeout: Duration,
        extras: Extras,
    ) -> Result<Running, Box<InstanceResult>> {
        let fail = |e: String| {
            Box::new(InstanceResult {
                error: Some(e),
                ..InstanceResult::default()
            })
        };
        let (log, mut log_for_reader) = match log_path.map(open_log).transpose() {
            Ok(Some((a, b))) => (Some(a), Some(b)),
            Ok(None) => (None, None),
            Err(e) => return Err(fail(e)),
        };
        let io = match log {
            Some(log) => Io::Captured { log },
            None => Io::Inherited,
        };
        let launch = Launch {
            spec,
            id,
            io,
            env: extras.env,
            volumes: extras.volumes,
        };
        let mut instance = env.spawn(launch).map_err(|e| fail(e.to_string()))?;
        let spawned_at = instance.spawned_at();
        let Some(streams) = instance.take_streams() else {
            let _ = instance.cleanup();
            return Err(fail("instance has no frames stream".into()));
        };
        let (tx, rx) = mpsc::channel();
        let mut log_for_output = match (&streams.output, &log_for_reader) {
            (Some(_), Some(log)) => match log.try_clone() {
                Ok(l) => Some(l),
                Err(e) => {
                    let _ = instance.cleanup();
                    return Err(fail(format!("duplicating the log handle: {e}")));
                }
            },
            _ => None,
        };
        let output_reader = streams.output.map(|output| {
            let tx = tx.clone();
            std::thread::spawn(move || read_output(output, &mut log_for_output, tx))
        });
        let frames = streams.frames;
        let reader = std::thread::spawn(move || read_frames(frames, &mut log_for_reader, tx));
        Ok(Running {
            instance,
            rx,
            reader: Some(reader),
            output_reader,
            result: InstanceResult::default(),
            spawned_at,
            startup_timeout: env.startup_timeout(),
            run_timeout,
            deadline: spawned_at + env.startup_timeout(),
            ready_at: None,
            done_at: None,
            first_byte_at: None,
            sample_every: extras.sample_every,
            sampler: None,
            ended: false,
        })
    }

    /// The instance's host process id.
    pub fn pid(&mut self) -> u32 {
        self.instance.process().pid()
    }

    /// The result so far (startup once `ready` arrived).
    pub fn result(&self) -> &InstanceResult {
        &self.result
    }

    /// Reads frames until the output ends, a deadline passes or `stop` is
    /// set; with `until_ready`, returns as soon as `ready` arrived. Returns
    /// whether the instance is still going.
    pub fn pump(&mut self, stop: &AtomicBool, until_ready: bool) -> bool {
        while !self.ended {
            if until_ready && self.ready_at.is_some() {
                return true;
            }
            if stop.load(Ordering::SeqCst) {
                self.result.interrupted = true;
                self.result.error = Some("interrupted".into());
                self.instance.process().kill();
                self.ended = true;
                break;
            }
            let now = Instant::now();
            if now >= self.deadline {
                self.result.error = Some(match self.ready_at {
                    None => format!(
                        "no `ready` frame within {} s of the spawn (startup timeout); the instance was killed",
                        self.startup_timeout.as_secs()
                    ),
                    Some(_) => format!(
                        "still running {} s after `ready` (timeout_s); the instance was killed",
                        self.run_timeout.as_secs()
                    ),
                });
                self.instance.process().kill();
                self.ended = true;
                break;
            }
            match self
                .rx
                .recv_timeout((self.deadline - now).min(Duration::from_millis(100)))
            {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Disconnected) => self.ended = true,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        false
    }

    fn handle(&mut self, event: Event) {
        let result = &mut self.result;
        match event {
            Event::FirstByte(at) => self.first_byte_at = Some(at),
            Event::Frame(at, frame) => match frame {
                Frame::Boot => {
                    result.first_byte =
                        self.first_byte_at.or(Some(at)).map(|t| t - self.spawned_at);
                }
                Frame::Ready {
                    uptime_ms,
                    setup_ms,
                    ..
                } => {
                    if self.ready_at.is_none() {
                        self.ready_at = Some(at);
                        result.startup = Some(at - self.spawned_at);
                        // From `ready` on the instance is the agent (before
                        // it, a forked copy of isobench may still be there).
                        if let Some(interval) = self.sample_every {
                            self.sampler = Some(crate::sample::Sampler::start(
                                Path::new("/proc"),
                                self.instance.process().pid(),
                                interval,
                                crate::sample::DEFAULT_PSS_EVERY,
                            ));
                        }
                        result.boot_kernel_ms = uptime_ms;
                        result.boot_agent_ms = setup_ms;
                        self.deadline = at + self.run_timeout;
                    }
                }
                Frame::Result {
                    metrics,
                    digest,
                    status,
                } => {
                    result.metrics.extend(metrics);
                    // The guest's own figures come in a second `result`
                    // frame without a digest or status: keep the first's.
                    if digest.is_some() {
                        result.digest = digest;
                    }
                    if status.is_some() {
                        result.status = status;
                    }
                }
                Frame::Error { message } => {
                    result.error.get_or_insert(format!("agent: {message}"));
                }
                Frame::Done => {
                    self.done_at = Some(at);
                    result.host_metrics.extend(self.instance.at_done());
                }
            },
            Event::Output(line) => {
                if result.output.len() < MAX_OUTPUT {
                    result.output.push_str(&line);
                }
            }
            Event::Garbled(text) => {
                result
                    .error
                    .get_or_insert(format!("unreadable frame: {text}"));
            }
            Event::Eof => self.ended = true,
            Event::OutputEof => {}
        }
    }

    /// Ends the instance now (SIGKILL) without calling it a failure: for
    /// instances whose job is to stay up until told (density).
    pub fn kill(&mut self) {
        self.instance.process().kill();
        self.ended = true;
        self.done_at.get_or_insert_with(Instant::now);
    }

    /// Reaps the instance, reads its host-side figures, tears it down.
    pub fn finish(mut self) -> InstanceResult {
        let mut result = std::mem::take(&mut self.result);
        // The sampler stops now, without being waited for: its work must
        // not end up in `teardown_ms`. Its figures are read at the end.
        if let Some(s) = &self.sampler {
            s.request_stop();
        }
        let process = self.instance.process();
        match process.wait_timeout(EXIT_TIMEOUT) {
            Ok(Some(exit)) => result.exit = Some(exit),
            Ok(None) => {
                result.error.get_or_insert(format!(
                    "did not exit within {} s of its last frame; killed",
                    EXIT_TIMEOUT.as_secs()
                ));
                result.exit = process.kill_and_reap().ok();
            }
            Err(e) => {
                result
                    .error
                    .get_or_insert(format!("waiting for the instance: {e}"));
            }
        }
        if let Some(u) = self.instance.process().usage() {
            result
                .host_metrics
                .push(Metric::lower("host_cpu_ms", "ms", u.cpu_ms));
            result.host_metrics.push(Metric::lower(
                "max_rss_mib",
                "MiB",
                u.max_rss_kib as f64 / 1024.0,
            ));
        }
        if result.exit.is_some() {
            result.host_metrics.extend(self.instance.after_exit());
        }
        if result.error.is_none() {
            if self.ready_at.is_none() {
                result.error = Some("the output ended without a `ready` frame".into());
            } else if self.done_at.is_none() {
                result.error =
                    Some("the output ended without a `done` frame (did the agent crash?)".into());
            } else if let Some(exit) = result.exit.filter(|e| !e.success()) {
                result.error = Some(format!("the instance ended with {exit}"));
            }
        }
        if let Some(error) = result.error.as_mut().filter(|_| !result.interrupted)
            && let Some(why) = self.instance.diagnose()
        {
            error.push_str(&format!("; {why}"));
        }
        if let Err(e) = self.instance.cleanup() {
            result.error.get_or_insert(format!("cleanup: {e}"));
        }
        let cleaned_at = Instant::now();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        if result.error.is_none() {
            result.teardown = self.done_at.map(|d| cleaned_at - d);
        }
        if let Some(s) = self.sampler.take() {
            let collected = s.stop();
            if let Some(sum) = crate::sample::summarize(&collected.samples) {
                result
                    .host_metrics
                    .push(Metric::lower("rss_peak_mib", "MiB", sum.rss_peak_mib));
                if let Some(p) = sum.pss_peak_mib {
                    result
                        .host_metrics
                        .push(Metric::lower("pss_peak_mib", "MiB", p));
                }
                if let Some(p) = sum.pss_steady_mib {
                    result
                        .host_metrics
                        .push(Metric::lower("pss_steady_mib", "MiB", p));
                }
            }
            result.samples = Some(collected);
        }
        self.result = result;
        self.drain_output();
        std::mem::take(&mut self.result)
    }

    /// Takes in what is left of the instance's output, once it has been
    /// torn down. Every writer of a container's or a guest's output is gone
    /// by then; a native program's own orphan may still hold the pipe, so
    /// the wait is bounded (its reader thread ends whenever the pipe does).
    fn drain_output(&mut self) {
        let Some(reader) = self.output_reader.take() else {
            return;
        };
        let deadline = Instant::now() + OUTPUT_DRAIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::OutputEof) => {
                    let _ = reader.join();
                    return;
                }
                Ok(event) => self.handle(event),
                Err(_) => return,
            }
        }
    }
}

/// Opens an instance log for appending, twice: for the instance's stderr
/// and for the reader thread.
fn open_log(path: &Path) -> Result<(File, File), String> {
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    let copy = log
        .try_clone()
        .map_err(|e| format!("cannot duplicate the handle of {}: {e}", path.display()))?;
    Ok((log, copy))
}

/// A reader that reports when its first byte arrived.
struct FirstByte<R> {
    inner: R,
    tx: Option<mpsc::Sender<Event>>,
}

impl<R: std::io::Read> std::io::Read for FirstByte<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0
            && let Some(tx) = self.tx.take()
        {
            let _ = tx.send(Event::FirstByte(Instant::now()));
        }
        Ok(n)
    }
}

/// The frames reader: copies the frames channel to the log (if any) and
/// passes frames on with their arrival time. Only the agent writes here.
fn read_frames(frames: File, log: &mut Option<File>, tx: mpsc::Sender<Event>) {
    let mut reader = BufReader::new(FirstByte {
        inner: frames,
        tx: Some(tx.clone()),
    });
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let at = Instant::now();
                if let Some(log) = log {
                    let _ = log.write_all(&line);
                }
                let text = String::from_utf8_lossy(&line);
                let event = match Frame::parse_line(&text) {
                    Some(Ok(frame)) => Event::Frame(at, frame),
                    Some(Err(e)) => Event::Garbled(format!("{e}: {}", text.trim_end())),
                    None => Event::Garbled(format!("not a frame: {}", text.trim_end())),
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Event::Eof);
}

/// The output reader: copies the instance's output to the log (if any) and
/// passes it on line by line, as data.
fn read_output(output: File, log: &mut Option<File>, tx: mpsc::Sender<Event>) {
    let mut reader = BufReader::new(output);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if let Some(log) = log {
                    let _ = log.write_all(&line);
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                if tx.send(Event::Output(text)).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Event::OutputEof);
}

/// Whether every environment's series has a relative standard deviation
/// under `target_pct` (and at least two values).
fn spread_reached(series: &BTreeMap<EnvKind, Vec<f64>>, target_pct: f64) -> bool {
    !series.is_empty()
        && series.values().all(|v| {
            crate::stats::summarize(v).is_some_and(|s| s.n >= 2 && s.rsd * 100.0 < target_pct)
        })
}

/// Which file system the `fileio` workloads measure: native scratch
/// directories, container layers and volumes and VM disk files all live
/// under the run's runtime directory. A tmpfs there turns disk figures into
/// memory figures, which the note says.
fn scratch_note(run_dir: &Path) -> String {
    let info = mountinfo();
    match runtime::filesystem_of(&info, run_dir) {
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

/// The scratch space of a `fileio` instance on the host: a directory of
/// the run's, removed when the instance is done. Native instances do their
/// I/O in it; container instances of a `target = "volume"` workload get it
/// bind-mounted at `/scratch`; everything else uses its own `/scratch`.
struct Scratch {
    dir: Option<PathBuf>,
    extras: Extras,
}

impl Scratch {
    fn for_instance(
        w: &PlannedWorkload,
        env: EnvKind,
        run_dir: &Path,
        id: &str,
    ) -> Result<Scratch, String> {
        let mut scratch = Scratch {
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

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = runtime::remove_tree(d);
        }
    }
}

/// The host program of every `command` workload, by workload name: its
/// absolute path and the spec the agent runs. A program that is not on the
/// host is a prerequisite error, before anything starts.
fn resolve_commands(plan: &Plan) -> Result<BTreeMap<String, (PathBuf, WorkloadSpec)>, RunError> {
    let mut out = BTreeMap::new();
    for w in &plan.workloads {
        let Some(c) = w.command.as_ref() else {
            continue;
        };
        let name = &c.argv[0];
        let path = image::find_program(name).ok_or_else(|| {
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
        out.insert(w.name.clone(), (path, WorkloadSpec::Command { argv }));
    }
    Ok(out)
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

/// A VM instance of an I/O workload gets a scratch disk: its modules must
/// exist for the guest kernel and `mkfs.ext4` on the host, before anything
/// starts.
fn check_vm_scratch(plan: &Plan, files: &KernelFiles) -> Result<(), RunError> {
    let base = Devices {
        disk_mib: plan.vm.disk_mib,
        scratch_mib: None,
    };
    for w in &plan.workloads {
        let devices = base.for_workload(&w.spec);
        if devices.scratch_mib.is_some() {
            let context =
                |e: String| RunError::Prerequisite(format!("workload `{}` in a VM: {e}", w.name));
            files
                .modules_for(plan.vm.machine, &devices)
                .map_err(|e| context(e.to_string()))?;
            vm::mkfs_ext4().map_err(context)?;
        }
    }
    Ok(())
}

/// What a KVM probe guest is made of.
struct ProbeSetup<'a> {
    base: &'a VmConfig,
    image_dir: &'a Path,
    kernel: &'a KernelFiles,
    qemu: &'a str,
}

/// Picks the accelerator, probing KVM with a noop guest when nothing rules
/// it out and no earlier probe's verdict is cached.
fn choose_accel(
    request: AccelRequest,
    setup: &ProbeSetup<'_>,
    run_dir: &Arc<RunDir>,
    logs: &Path,
    stop: &AtomicBool,
) -> Result<AccelChoice, RunError> {
    let probe = || {
        let mut config = setup.base.clone();
        config.accel = vm::Accel::Kvm;
        config.tsc_khz = None;
        config.boot_timeout = vm::PROBE_TIMEOUT;
        let env = Vm::new(
            config,
            Devices::default(),
            setup.image_dir.to_path_buf(),
            setup.kernel.clone(),
            Arc::clone(run_dir),
        );
        let r = run_instance(
            &env,
            &WorkloadSpec::Noop,
            "kvm-probe",
            Some(&logs.join("kvm-probe.log")),
            vm::PROBE_TIMEOUT,
            stop,
        );
        match (r.error, r.startup) {
            _ if r.interrupted => vm::Probe::Interrupted,
            (None, Some(s)) => vm::Probe::Booted(s),
            (Some(e), _) => vm::Probe::Failed(format!("{e} (see logs/kvm-probe.log)")),
            (None, None) => vm::Probe::Failed("no `ready` frame".into()),
        }
    };
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let cache = vm::ProbeCache::new(
        &kernel::cache_dir(),
        &boot_id,
        setup.qemu,
        &setup.base.kernel,
    );
    Ok(vm::choose_accel(
        request,
        Path::new("/sys/module"),
        Path::new("/dev/kvm"),
        Some(&cache),
        probe,
    )?)
}

/// Runs the plan. Progress goes to stderr; the result is a run directory.
pub fn run(settings: &Settings, stop: &AtomicBool) -> Result<Outcome, RunError> {
    let started = Instant::now();
    let plan = &settings.plan;
    // A `command` workload's program missing on the host is a bad plan:
    // exit 2 before anything starts, not a run whose every instance fails.
    let commands = resolve_commands(plan)?;
    let prereqs = preflight_with(
        &plan.environments,
        settings.kernel.as_deref(),
        settings.modules.as_deref(),
    )?;
    if let Some(files) = &prereqs.kernel_files {
        check_vm_scratch(plan, files)?;
    }
    let programs: Vec<PathBuf> = commands.values().map(|c| c.0.clone()).collect();
    let files: Vec<PathBuf> = plan
        .workloads
        .iter()
        .filter(|w| commands.contains_key(&w.name))
        .flat_map(|w| w.command.iter().flat_map(|c| c.files.iter().cloned()))
        .collect();

    let run_id = new_run_id();
    let dir = settings.out_root.join(&run_id);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io_err(format!("creating {}", logs.display())))?;
    let testbed = Testbed::build(
        &prereqs,
        &run_id,
        &BedSpec {
            environments: &plan.environments,
            vm: &plan.vm,
            container: &plan.container,
            accel: settings.accel,
            programs: &programs,
            files: &files,
            quiet: false,
        },
        &logs,
        stop,
    )
    .inspect_err(|_| {
        // Nothing ran: leave no empty run directory behind (a probe's log stays).
        let _ = std::fs::remove_dir(&logs);
        let _ = std::fs::remove_dir(&dir);
    })?;
    for note in &testbed.notes {
        crate::say!("note: {note}");
    }

    let mut meta = Meta {
        run_id: run_id.clone(),
        status: "running".into(),
        started: crate::meta::now_utc(),
        finished: None,
        wall_s: None,
        isobench: crate::meta::version(),
        host: Host::detect(),
        qemu: testbed.vm.as_ref().map(|v| v.qemu.clone()),
        accelerator: testbed.vm.as_ref().map(|v| v.accel.clone()),
        guest_kernel: testbed
            .vm
            .as_ref()
            .map(|v| format!("{} ({})", v.kernel.version, v.kernel.boot_image().display())),
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
    meta.save(&dir).map_err(io_err(format!(
        "writing {}",
        dir.join(crate::meta::META).display()
    )))?;
    let mut recorder =
        Recorder::create(&dir).map_err(io_err(format!("creating records in {}", dir.display())))?;

    let total = plan.instance_count();
    crate::say!(
        "run {run_id}: scenario `{}`, {} workload(s) × {} environment(s), {total} instances; results in {}",
        plan.name,
        plan.workloads.len(),
        testbed.envs.len(),
        dir.display()
    );
    let mut done = 0usize;
    let mut failed = 0usize;
    // The sampler's CPU time and running time, summed over instances.
    let mut sampler_cost = (Duration::ZERO, Duration::ZERO);
    let mut interrupted = false;
    'workloads: for w in &plan.workloads {
        if let WorkloadSpec::Density {
            instances,
            settle_ms,
        } = w.spec
        {
            for env in &testbed.envs {
                let d = Density {
                    w,
                    env: env.as_ref(),
                    instances,
                    settle: Duration::from_millis(settle_ms),
                    dir: &dir,
                    stop,
                };
                let (ok, errors) = d.run(&mut recorder, &mut meta, &mut done, total)?;
                failed += errors;
                if !ok {
                    interrupted = stop.load(Ordering::SeqCst);
                    if interrupted {
                        break 'workloads;
                    }
                }
            }
            continue;
        }
        // What every environment ships for this workload (`artifact_mib`).
        let spec = commands.get(&w.name).map_or(&w.spec, |(_, spec)| spec);
        let artifacts: BTreeMap<EnvKind, Option<u64>> = testbed
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
                meta.notes.push(format!(
                    "{}: adaptive repetitions stopped after {} (relative spread under {}% in every environment)",
                    w.name,
                    number - 1,
                    a.target_rsd
                ));
                break 'slots;
            }
            for env in &testbed.envs {
                if stop.load(Ordering::SeqCst) {
                    interrupted = true;
                    break 'workloads;
                }
                done += 1;
                let kind = env.kind();
                let tag = if warmup {
                    format!("warmup{number}")
                } else {
                    format!("r{number}")
                };
                let id = format!("{}-{kind}-{tag}", w.name);
                let log_rel = format!("logs/{id}.log");
                let what = if warmup {
                    format!("warm-up {number}/{}", w.warmups)
                } else {
                    match w.adaptive {
                        Some(a) => format!("rep {number}/≤{}", a.max_reps),
                        None => format!("rep {number}/{}", w.reps),
                    }
                };
                crate::say_part!(
                    "[{done:>3}/{total}] {:<10} {:<10} {:<14} ",
                    w.name,
                    kind,
                    what
                );
                let log = dir.join(&log_rel);
                let mut r = match commands.get(&w.name) {
                    Some((_, spec)) => {
                        let extras = Extras {
                            sample_every: plan.sample_interval,
                            ..Extras::default()
                        };
                        let env = env.as_ref();
                        let mut r =
                            run_instance_with(env, spec, &id, Some(&log), w.timeout, stop, extras);
                        apply_rules(&mut r, w);
                        r
                    }
                    None => match Scratch::for_instance(w, kind, testbed.run_dir.path(), &id) {
                        Ok(scratch) => {
                            let mut extras = scratch.extras();
                            extras.sample_every = plan.sample_interval;
                            let env = env.as_ref();
                            run_instance_with(
                                env,
                                &w.spec,
                                &id,
                                Some(&log),
                                w.timeout,
                                stop,
                                extras,
                            )
                        }
                        Err(e) => InstanceResult {
                            error: Some(e),
                            ..InstanceResult::default()
                        },
                    },
                };
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
                crate::say!("{}", progress_line(&r, &metrics, &log_rel));
                if r.interrupted {
                    interrupted = true;
                }
                if r.error.is_some() && !r.interrupted {
                    failed += 1;
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
                meta.declare(&w.name, &metrics);
                let records: Vec<Record> = if warmup || r.error.is_some() {
                    Vec::new()
                } else {
                    Record::of(&w.name, kind, number, &metrics)
                };
                let instance = InstanceRecord {
                    workload: w.name.clone(),
                    environment: kind.to_string(),
                    repetition: number,
                    warmup,
                    ok: r.error.is_none(),
                    error: r.error.clone(),
                    exit: r.exit.map(|e| e.to_string()),
                    digest: r.digest.clone(),
                    metrics,
                    log: log_rel,
                    sampler: r.samples.as_ref().map(|c| SamplerCost {
                        samples: c.samples.len(),
                        cpu_ms: c.cpu.as_secs_f64() * 1e3,
                        cost_pct: c.cost_share() * 100.0,
                    }),
                };
                if let (Some(c), false) = (&r.samples, warmup) {
                    sampler_cost.0 += c.cpu;
                    sampler_cost.1 += c.wall;
                    recorder
                        .append_samples(&w.name, kind.as_str(), number, &c.samples)
                        .map_err(io_err(format!("appending samples in {}", dir.display())))?;
                }
                recorder
                    .append(&records, &instance)
                    .map_err(io_err(format!("appending records in {}", dir.display())))?;
                meta.save(&dir).map_err(io_err("updating meta.json"))?;
                if interrupted {
                    break 'workloads;
                }
            }
        }
        if let Some(a) = w.adaptive
            && !interrupted
            && headline.values().all(|v| v.len() >= a.max_reps as usize)
        {
            let verdict = if spread_reached(&headline, a.target_rsd) {
                "reached"
            } else {
                "not reached"
            };
            meta.notes.push(format!(
                "{}: adaptive repetitions ran to the cap of {}; relative spread under {}%: {verdict}",
                w.name, a.max_reps, a.target_rsd
            ));
        }
        match digests.len() {
            0 => {}
            1 => meta.notes.push(format!(
                "{}: the digest is identical in all {} instances that reported one",
                w.name,
                digests.values().map(Vec::len).sum::<usize>()
            )),
            _ => {
                failed += 1;
                let detail: Vec<String> = digests
                    .iter()
                    .map(|(d, ids)| format!("{} in {}", &d[..d.len().min(16)], ids.join(", ")))
                    .collect();
                let note = format!(
                    "{}: DIGEST MISMATCH between environments: {}",
                    w.name,
                    detail.join("; ")
                );
                crate::say!("{note}");
                meta.notes.push(note);
            }
        }
    }

    if !sampler_cost.1.is_zero() {
        meta.notes.push(format!(
            "sampler: every {} ms (PSS on a 0.5% budget); it used {:.1} ms of CPU over {:.2} s of sampling: {:.2}% of one core",
            plan.sample_interval.map_or(0, |d| d.as_millis()),
            sampler_cost.0.as_secs_f64() * 1e3,
            sampler_cost.1.as_secs_f64(),
            100.0 * sampler_cost.0.as_secs_f64() / sampler_cost.1.as_secs_f64()
        ));
    }
    meta.status = if interrupted {
        "interrupted".into()
    } else if failed > 0 {
        "failed".into()
    } else {
        "complete".into()
    };
    meta.finished = Some(crate::meta::now_utc());
    meta.wall_s = Some(started.elapsed().as_secs_f64());
    meta.save(&dir).map_err(io_err("updating meta.json"))?;
    let rendered = report::render(&dir)?;
    let latest = point_latest(&settings.out_root, &run_id).map_err(io_err(format!(
        "pointing {}/latest at {run_id}",
        settings.out_root.display()
    )))?;
    if let Latest::Kept(why) = latest {
        eprintln!("note: {why} (the run is in {})", dir.display());
    }
    let run_dir = Arc::clone(&testbed.run_dir);
    drop(testbed);
    run_dir
        .remove()
        .map_err(io_err(format!("removing {}", run_dir.path().display())))?;
    Ok(Outcome {
        dir,
        failed,
        interrupted,
        table: rendered.table,
    })
}

/// `MemAvailable` of the host, in MiB.
fn mem_available_mib() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    crate::meta::meminfo_kib(&meminfo, "MemAvailable").map(|kib| kib as f64 / 1024.0)
}

/// A density measurement in one environment: `instances` idle instances
/// started one after another and all kept alive. For the k-th (its
/// `repetition` in the records): its `startup_ms` with k−1 already running,
/// its own `pss_mib` (its process tree; for a VM, QEMU) after `settle`,
/// `density_pss_total_mib` of all k, and the host's `MemAvailable` drop
/// since before the first (`density_mem_drop_mib`) and per instance
/// (`density_mem_per_instance_mib`). Then all are ended at once.
struct Density<'a> {
    w: &'a PlannedWorkload,
    env: &'a dyn Environment,
    instances: u64,
    settle: Duration,
    dir: &'a Path,
    stop: &'a AtomicBool,
}

impl Density<'_> {
    /// Returns whether every instance started, and how many failed.
    fn run(
        &self,
        recorder: &mut Recorder,
        meta: &mut Meta,
        done: &mut usize,
        total: usize,
    ) -> Result<(bool, usize), RunError> {
        let kind = self.env.kind();
        let baseline = mem_available_mib();
        let mut live: Vec<Running> = Vec::new();
        let mut failed = 0;
        let mut complete = true;
        for k in 1..=self.instances {
            if self.stop.load(Ordering::SeqCst) {
                complete = false;
                break;
            }
            *done += 1;
            let id = format!("{}-{kind}-i{k}", self.w.name);
            let log_rel = format!("logs/{id}.log");
            crate::say_part!(
                "[{:>3}/{total}] {:<10} {:<10} {:<14} ",
                *done,
                self.w.name,
                kind,
                format!("instance {k}/{}", self.instances)
            );
            let started = Running::start(
                self.env,
                &self.w.spec,
                &id,
                Some(&self.dir.join(&log_rel)),
                self.w.timeout,
                Extras::default(),
            )
            .map(|mut r| {
                let ready = r.pump(self.stop, true);
                (r, ready)
            });
            let mut metrics = Vec::new();
            let mut error = None;
            match started {
                Ok((r, true)) => {
                    std::thread::sleep(self.settle);
                    let startup = r.result().startup.unwrap_or_default();
                    metrics.push(Metric::lower(
                        "startup_ms",
                        "ms",
                        startup.as_secs_f64() * 1e3,
                    ));
                    live.push(r);
                    // PSS of every live instance, read now (sharing changes
                    // as instances come); the newest one's is its own.
                    let pss: Vec<Option<f64>> = live
                        .iter_mut()
                        .map(|r| {
                            crate::sample::sample_once(Path::new("/proc"), r.pid(), true)
                                .and_then(|s| s.pss_kib)
                                .map(|kib| kib as f64 / 1024.0)
                        })
                        .collect();
                    if let Some(Some(own)) = pss.last() {
                        metrics.push(Metric::lower("pss_mib", "MiB", *own));
                    }
                    let all: f64 = pss.iter().flatten().sum();
                    metrics.push(Metric::lower("density_pss_total_mib", "MiB", all));
                    if let (Some(before), Some(now)) = (baseline, mem_available_mib()) {
                        let drop = before - now;
                        metrics.push(Metric::lower("density_mem_drop_mib", "MiB", drop));
                        metrics.push(Metric::lower(
                            "density_mem_per_instance_mib",
                            "MiB",
                            drop / k as f64,
                        ));
                    }
                }
                Ok((r, false)) => {
                    let res = r.finish();
                    error = Some(res.error.unwrap_or_else(|| "no `ready` frame".into()));
                }
                Err(res) => error = res.error,
            }
            match &error {
                Some(e) => crate::say!("FAILED: {e} (log: {log_rel})"),
                None => crate::say!(
                    "{}",
                    metrics
                        .iter()
                        .filter(|m| ["startup_ms", "pss_mib"].contains(&m.name.as_str()))
                        .map(|m| format!("{} {} {}", m.name, report::fmt_value(m.value), m.unit))
                        .collect::<Vec<_>>()
                        .join("  ")
                ),
            }
            meta.declare(&self.w.name, &metrics);
            let records = Record::of(&self.w.name, kind, k as u32, &metrics);
            let instance = InstanceRecord {
                workload: self.w.name.clone(),
                environment: kind.to_string(),
                repetition: k as u32,
                warmup: false,
                ok: error.is_none(),
                error: error.clone(),
                exit: None,
                digest: None,
                metrics,
                log: log_rel,
                sampler: None,
            };
            recorder
                .append(if error.is_none() { &records } else { &[] }, &instance)
                .map_err(io_err(format!(
                    "appending records in {}",
                    self.dir.display()
                )))?;
            if error.is_some() {
                failed += 1;
                complete = false;
                break;
            }
        }
        let n = live.len();
        for mut r in live {
            r.kill();
            let _ = r.finish();
        }
        meta.notes.push(format!(
            "{}: {n} {kind} instance(s) were alive at once; all ended",
            self.w.name
        ));
        meta.save(self.dir).map_err(io_err("updating meta.json"))?;
        Ok((complete, failed))
    }
}

fn progress_line(r: &InstanceResult, metrics: &[Metric], log: &str) -> String {
    if let Some(e) = &r.error {
        return format!("FAILED: {e} (log: {log})");
    }
    let mut parts = Vec::new();
    for m in metrics {
        if ["startup_ms", "score"].contains(&m.name.as_str()) {
            parts.push(format!(
                "{} {} {}",
                m.name,
                report::fmt_value(m.value),
                m.unit
            ));
        }
    }
    parts.join("  ")
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
    fn run_ids_sort_by_time_and_differ() {
        let a = new_run_id();
        assert_eq!(a.len(), "20261127T225500Z-abcd".len());
        assert!(a.ends_with(char::is_alphanumeric));
    }

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
