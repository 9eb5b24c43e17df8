//! The harness: runs a [`Plan`] and records what every instance did.
//!
//! For each workload, the warm-ups run first, then the repetitions; within
//! a repetition the environments take turns, so slow drift of the host
//! affects all of them alike. Every instance is a fresh process, container
//! or VM. Its timings are defined here:
//!
//! - `startup_ms`: host monotonic time from just before the spawn system
//!   call (fork, clone, QEMU's exec) to the arrival of the agent's `ready`
//!   frame on the host;
//! - `teardown_ms`: from the arrival of the agent's `done` frame to the
//!   instance being reaped and its host resources removed;
//! - `boot_kernel_ms` (vm): the guest's uptime when the agent started;
//! - `first_byte_ms` (vm): from the spawn to the arrival of the guest's
//!   first byte on the frames channel (the agent's `boot` frame, its very
//!   first act), so `first_byte_ms - boot_kernel_ms` (`boot_vmm_ms`) is what
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
use crate::env::container::Container;
use crate::env::native::Native;
use crate::env::vm::{self, AccelChoice, AccelRequest, Devices, KernelFiles, Vm, VmConfig};
use crate::env::{EnvError, EnvKind, Environment, Exit, Launch};
use crate::image::{self, Image, ImageError};
use crate::kernel::{self, GuestKernel};
use crate::meta::{Host, Meta, MetricInfo};
use crate::record::{InstanceRecord, Record, Recorder};
use crate::report::{self, ReportError};
use crate::runtime::{self, RunDir};
use crate::scenario::{Plan, VmSettings};
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
        return Err(RunError::Prerequisite(
            "the container environment needs root (rootless containers are not supported yet): run as root, or leave it out with --env native,vm".into(),
        ));
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
}

impl Testbed {
    /// Builds the image and the environments. `logs` receives the KVM
    /// probe's log when one is needed; leftovers of dead runs are cleaned first.
    pub fn build(
        prereqs: &Prerequisites,
        run_id: &str,
        environments: &[EnvKind],
        vm_settings: &VmSettings,
        accel: AccelRequest,
        logs: &Path,
        stop: &AtomicBool,
    ) -> Result<Testbed, RunError> {
        let base = runtime::base_dir();
        match runtime::clean(&base, Path::new("/proc")) {
            Ok(report) => {
                for d in &report.removed {
                    eprintln!("removed leftovers of an earlier run: {}", d.display());
                }
            }
            Err(e) => eprintln!("warning: cleaning {} failed: {e}", base.display()),
        }
        let run_dir = Arc::new(
            RunDir::create(&base, run_id)
                .map_err(io_err(format!("creating {}", base.join(run_id).display())))?,
        );
        let image = image::build(
            &prereqs.agent,
            &run_dir.path().join("image"),
            &run_dir.path().join("initramfs.cpio"),
        )?;
        let mut envs: Vec<Box<dyn Environment>> = Vec::new();
        let mut vm_info = None;
        for kind in environments {
            match kind {
                EnvKind::Native => envs.push(Box::new(Native::new(prereqs.agent.clone()))),
                EnvKind::Container => envs.push(Box::new(Container::new(
                    image.dir.clone(),
                    run_dir.path().join("instances"),
                ))),
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
                    eprintln!("accelerator: {} — {}", choice.accel.as_str(), choice.reason);
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
    /// What went wrong; `None` when the instance did everything it should.
    pub error: Option<String>,
    /// How the host process ended.
    pub exit: Option<Exit>,
    /// Whether SIGINT/SIGTERM cut it short.
    pub interrupted: bool,
}

enum Event {
    FirstByte(Instant),
    Frame(Instant, Frame),
    Garbled(String),
    Eof,
}

/// Starts one instance, reads its frames with their arrival times, and
/// tears it down. Never panics; every failure ends up in `error`.
pub fn run_instance(
    env: &dyn Environment,
    spec: &WorkloadSpec,
    id: &str,
    log_path: &Path,
    run_timeout: Duration,
    stop: &AtomicBool,
) -> InstanceResult {
    let mut result = InstanceResult::default();
    let log = match OpenOptions::new().create(true).append(true).open(log_path) {
        Ok(f) => f,
        Err(e) => {
            result.error = Some(format!("cannot create {}: {e}", log_path.display()));
            return result;
        }
    };
    let mut log_for_reader = match log.try_clone() {
        Ok(f) => f,
        Err(e) => {
            result.error = Some(format!("cannot duplicate the log handle: {e}"));
            return result;
        }
    };
    let mut instance = match env.spawn(Launch { spec, id, log }) {
        Ok(i) => i,
        Err(e) => {
            result.error = Some(e.to_string());
            return result;
        }
    };
    let spawned_at = instance.spawned_at();
    let Some(output) = instance.take_output() else {
        result.error = Some("instance has no output stream".into());
        let _ = instance.cleanup();
        return result;
    };

    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || read_frames(output, &mut log_for_reader, tx));

    let mut ready_at = None;
    let mut done_at = None;
    let mut first_byte_at = None;
    let mut deadline = spawned_at + env.startup_timeout();
    loop {
        if stop.load(Ordering::SeqCst) {
            result.interrupted = true;
            result.error = Some("interrupted".into());
            instance.process().kill();
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            result.error = Some(match ready_at {
                None => format!(
                    "no `ready` frame within {} s of the spawn (startup timeout); the instance was killed",
                    env.startup_timeout().as_secs()
                ),
                Some(_) => format!(
                    "still running {} s after `ready` (timeout_s); the instance was killed",
                    run_timeout.as_secs()
                ),
            });
            instance.process().kill();
            break;
        }
        match rx.recv_timeout((deadline - now).min(Duration::from_millis(100))) {
            Ok(Event::FirstByte(at)) => first_byte_at = Some(at),
            Ok(Event::Frame(at, frame)) => match frame {
                Frame::Boot => {
                    result.first_byte = first_byte_at.or(Some(at)).map(|t| t - spawned_at);
                }
                Frame::Ready {
                    uptime_ms,
                    setup_ms,
                    ..
                } => {
                    if ready_at.is_none() {
                        ready_at = Some(at);
                        result.startup = Some(at - spawned_at);
                        result.boot_kernel_ms = uptime_ms;
                        result.boot_agent_ms = setup_ms;
                        deadline = at + run_timeout;
                    }
                }
                Frame::Result { metrics, digest } => {
                    result.metrics.extend(metrics);
                    if digest.is_some() {
                        result.digest = digest;
                    }
                }
                Frame::Error { message } => {
                    result.error.get_or_insert(format!("agent: {message}"));
                }
                Frame::Done => {
                    done_at = Some(at);
                    result.host_metrics.extend(instance.at_done());
                }
            },
            Ok(Event::Garbled(text)) => {
                result
                    .error
                    .get_or_insert(format!("unreadable frame: {text}"));
            }
            Ok(Event::Eof) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
    }

    let process = instance.process();
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
    if result.exit.is_some() {
        result.host_metrics.extend(instance.after_exit());
    }
    if result.error.is_none() {
        if ready_at.is_none() {
            result.error = Some("the output ended without a `ready` frame".into());
        } else if done_at.is_none() {
            result.error =
                Some("the output ended without a `done` frame (did the agent crash?)".into());
        } else if let Some(exit) = result.exit.filter(|e| !e.success()) {
            result.error = Some(format!("the instance ended with {exit}"));
        }
    }
    if let Some(error) = result.error.as_mut().filter(|_| !result.interrupted)
        && let Some(why) = instance.diagnose()
    {
        error.push_str(&format!("; {why}"));
    }
    if let Err(e) = instance.cleanup() {
        result.error.get_or_insert(format!("cleanup: {e}"));
    }
    let cleaned_at = Instant::now();
    let _ = reader.join();

    if result.error.is_none() {
        result.teardown = done_at.map(|d| cleaned_at - d);
    }
    result
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

/// The reader thread: copies the output stream to the log and passes
/// frames on with their arrival time.
fn read_frames(output: File, log: &mut File, tx: mpsc::Sender<Event>) {
    let mut reader = BufReader::new(FirstByte {
        inner: output,
        tx: Some(tx.clone()),
    });
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let at = Instant::now();
                let _ = log.write_all(&line);
                let text = String::from_utf8_lossy(&line);
                let event = match Frame::parse_line(&text) {
                    Some(Ok(frame)) => Event::Frame(at, frame),
                    Some(Err(e)) => Event::Garbled(format!("{e}: {}", text.trim_end())),
                    None => continue,
                };
                if tx.send(event).is_err() {
                    break;
                }
            }
        }
    }
    let _ = tx.send(Event::Eof);
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
        metrics.push(Metric::lower("first_byte_ms", "ms", first_ms));
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
            &logs.join("kvm-probe.log"),
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
    let prereqs = preflight_with(
        &plan.environments,
        settings.kernel.as_deref(),
        settings.modules.as_deref(),
    )?;

    let run_id = new_run_id();
    let dir = settings.out_root.join(&run_id);
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io_err(format!("creating {}", logs.display())))?;
    let testbed = Testbed::build(
        &prereqs,
        &run_id,
        &plan.environments,
        &plan.vm,
        settings.accel,
        &logs,
        stop,
    )
    .inspect_err(|_| {
        // Nothing ran: leave no empty run directory behind (a probe's log stays).
        let _ = std::fs::remove_dir(&logs);
        let _ = std::fs::remove_dir(&dir);
    })?;

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
        notes: Vec::new(),
    };
    meta.save(&dir).map_err(io_err(format!(
        "writing {}",
        dir.join(crate::meta::META).display()
    )))?;
    let mut recorder =
        Recorder::create(&dir).map_err(io_err(format!("creating records in {}", dir.display())))?;

    let total = plan.instance_count();
    eprintln!(
        "run {run_id}: scenario `{}`, {} workload(s) × {} environment(s), {total} instances; results in {}",
        plan.name,
        plan.workloads.len(),
        testbed.envs.len(),
        dir.display()
    );
    let mut done = 0usize;
    let mut failed = 0usize;
    let mut interrupted = false;
    'workloads: for w in &plan.workloads {
        let mut digests: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let slots = (1..=w.warmups)
            .map(|k| (true, k))
            .chain((1..=w.reps).map(|r| (false, r)));
        for (warmup, number) in slots {
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
                    format!("rep {number}/{}", w.reps)
                };
                eprint!(
                    "[{done:>3}/{total}] {:<10} {:<10} {:<14}",
                    w.name, kind, what
                );
                let r = run_instance(
                    env.as_ref(),
                    &w.spec,
                    &id,
                    &dir.join(&log_rel),
                    w.timeout,
                    stop,
                );
                let metrics = metrics_of(&r);
                eprintln!("{}", progress_line(&r, &metrics, &log_rel));
                if r.interrupted {
                    interrupted = true;
                }
                if r.error.is_some() && !r.interrupted {
                    failed += 1;
                }
                if let Some(d) = &r.digest {
                    digests.entry(d.clone()).or_default().push(id.clone());
                }
                for m in &metrics {
                    meta.metrics.entry(m.name.clone()).or_insert(MetricInfo {
                        unit: m.unit.clone(),
                        better: m.better,
                    });
                }
                let records: Vec<Record> = if warmup || r.error.is_some() {
                    Vec::new()
                } else {
                    metrics
                        .iter()
                        .map(|m| Record {
                            workload: w.name.clone(),
                            environment: kind.to_string(),
                            repetition: number,
                            metric: m.name.clone(),
                            unit: m.unit.clone(),
                            value: m.value,
                        })
                        .collect()
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
                };
                recorder
                    .append(&records, &instance)
                    .map_err(io_err(format!("appending records in {}", dir.display())))?;
                meta.save(&dir).map_err(io_err("updating meta.json"))?;
                if interrupted {
                    break 'workloads;
                }
            }
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
                eprintln!("{note}");
                meta.notes.push(note);
            }
        }
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
    point_latest(&settings.out_root, &run_id).map_err(io_err(format!(
        "pointing {}/latest at {run_id}",
        settings.out_root.display()
    )))?;
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

/// Points `<root>/latest` at `run_id` (a relative symlink, replaced atomically).
pub fn point_latest(root: &Path, run_id: &str) -> std::io::Result<()> {
    let tmp = root.join(format!(".latest-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(run_id, &tmp)?;
    std::fs::rename(&tmp, root.join("latest"))
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
        let root = std::env::temp_dir().join(format!("isobench-latest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        point_latest(&root, "one").unwrap();
        point_latest(&root, "two").unwrap();
        assert_eq!(
            std::fs::read_link(root.join("latest")).unwrap(),
            PathBuf::from("two")
        );
        std::fs::remove_dir_all(root).unwrap();
    }
}
