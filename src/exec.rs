//! `isobench exec`: run one host program once in a fresh environment, like
//! `docker run --rm`.
//!
//! The program and its shared-library closure are packed into an
//! application layer (see [`image::app_layer`]) that sits above the run's
//! image; the agent runs the program as its child (it is the container's
//! init), the program's standard streams are isobench's own, frames travel
//! on a separate descriptor, and isobench exits with the program's status.

use crate::cgroup::{Driver, Limits};
use crate::env::container::rootless_note;
use crate::env::container::{Container, ContainerConfig, Volume, seccomp_filters};
use crate::env::native::Native;
use crate::env::{BedSpec, VmBoot};
use crate::env::{EnvKind, Environment};
use crate::image;
use crate::run::{self, RunError};
use crate::rundir::{self, RunDir};
use crate::scenario::{ContainerSettings, VmSettings};
use crate::seccomp::SeccompChoice;
use crate::workload::{Metric, WorkloadSpec};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Exit status when isobench itself could not run the program (as Docker's 125).
pub const EXIT_NOT_RUN: u8 = 125;
/// Exit status when the program ran past `--timeout` (as timeout(1)).
pub const EXIT_TIMEOUT: u8 = 124;

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// The environment.
    pub env: EnvKind,
    /// The program (a name looked up in `$PATH`, or a path) and its arguments.
    pub argv: Vec<String>,
    /// cgroup limits.
    pub limits: Limits,
    /// Bind mounts (container only).
    pub volumes: Vec<Volume>,
    /// The seccomp profile (container only; `None`: Docker's default).
    pub seccomp: Option<SeccompChoice>,
    /// Longest run time after the environment is ready.
    pub timeout: Duration,
    /// Print a one-line summary (startup, CPU, memory) on stderr at the end.
    pub stats: bool,
    /// For `--env vm`: how the guest boots.
    pub boot: VmBoot,
}

/// How `exec` ended: the exit status for isobench, and what to tell the user.
#[derive(Debug)]
pub struct ExecOutcome {
    /// isobench's exit status.
    pub code: u8,
    /// Lines for stderr (errors, OOM and pids-limit reports, stats).
    pub messages: Vec<String>,
}

fn metric(metrics: &[Metric], name: &str) -> Option<f64> {
    metrics.iter().find(|m| m.name == name).map(|m| m.value)
}

/// Runs the program; `Err` only for bad input or missing prerequisites
/// (exit 2), everything else is in the outcome.
pub fn exec(s: &ExecSettings, stop: &AtomicBool) -> Result<ExecOutcome, RunError> {
    let (name, args) = s
        .argv
        .split_first()
        .ok_or_else(|| RunError::Prerequisite("no program given after --".into()))?;
    let program = image::find_program(name).ok_or_else(|| {
        RunError::Prerequisite(format!(
            "program `{name}` not found{}",
            if name.contains('/') {
                " (or not executable)".to_string()
            } else {
                " in $PATH".to_string()
            }
        ))
    })?;
    match s.env {
        EnvKind::Vm if !s.volumes.is_empty() => {
            return Err(RunError::Prerequisite(
                "--volume needs --env container (a VM has no shared host directories here)".into(),
            ));
        }
        EnvKind::Vm | EnvKind::Native if s.seccomp.is_some() => {
            return Err(RunError::Prerequisite(
                "--seccomp needs --env container (isobench filters system calls only in its containers)"
                    .into(),
            ));
        }
        EnvKind::Vm => return exec_vm(s, &program, args, stop),
        EnvKind::Native if !s.volumes.is_empty() => {
            return Err(RunError::Prerequisite(
                "--volume needs --env container (a native program sees the host's files anyway)"
                    .into(),
            ));
        }
        _ => {}
    }
    let seccomp = match s.env {
        EnvKind::Container => seccomp_filters(&s.seccomp.clone().unwrap_or_default())
            .map_err(|e| RunError::Prerequisite(format!("--seccomp: {e}")))?,
        _ => None,
    };
    let (vm, container) = (VmSettings::default(), ContainerSettings::default());
    let agent = run::preflight(&[s.env], &bed_spec(s, &vm, &container))?;
    let rootless = !nix::unistd::geteuid().is_root();
    let mut messages = Vec::new();
    if rootless && s.limits.any() {
        messages.push(format!("isobench: warning: {}", rootless_note(&s.limits)));
    }

    let base = rundir::base_dir().map_err(|e| RunError::Prerequisite(e.to_string()))?;
    let _ = rundir::clean(&base, Path::new("/proc"), Path::new("/sys/fs/cgroup"));
    let id = format!("exec-{}", run::new_run_id());
    let run_dir = Arc::new(RunDir::create(&base, &id).map_err(|e| {
        RunError::Prerequisite(format!("creating {}: {e}", base.join(&id).display()))
    })?);
    let driver = if rootless || (s.env == EnvKind::Native && !s.limits.any()) {
        None
    } else {
        Some(
            Driver::detect(Path::new("/sys/fs/cgroup"), &run::mountinfo())
                .map_err(|e| RunError::Prerequisite(e.to_string()))?,
        )
    };
    if let Some(d) = &driver
        && let Some(problem) = d.unsupported_limits(&s.limits).into_iter().next()
    {
        return Err(RunError::Prerequisite(problem));
    }

    let (env, argv): (Box<dyn Environment>, Vec<String>) = match s.env {
        EnvKind::Container => {
            let img = image::build(
                &agent,
                &run_dir.path().join("image"),
                &run_dir.path().join("initramfs.cpio"),
            )?;
            let app = image::app_layer(&program, &run_dir.path().join("app"))?;
            let config = ContainerConfig {
                layers: vec![app.dir.clone(), img.dir],
                volumes: s.volumes.clone(),
                limits: if rootless {
                    Limits::default()
                } else {
                    s.limits
                },
                cgroups: crate::cgroup::CgroupUse::Auto,
                rootless,
                seccomp,
            };
            (
                Box::new(Container::new(config, driver, Arc::clone(&run_dir))),
                std::iter::once(app.program.display().to_string())
                    .chain(args.iter().cloned())
                    .collect(),
            )
        }
        _ => {
            let env: Box<dyn Environment> = match driver {
                Some(d) if s.limits.any() => Box::new(Native::with_limits(
                    agent.clone(),
                    d,
                    s.limits,
                    Arc::clone(&run_dir),
                )),
                _ => Box::new(Native::new(agent.clone())),
            };
            (
                env,
                std::iter::once(program.display().to_string())
                    .chain(args.iter().cloned())
                    .collect(),
            )
        }
    };

    let spec = WorkloadSpec::Command { argv };
    let r = run::run_instance(env.as_ref(), &spec, "exec", None, s.timeout, stop);
    drop(env);
    let _ = run_dir.remove();
    Ok(outcome(s, &program, r, messages))
}

/// `exec --env vm`: the program and its closure go into the image, which
/// the guest boots as its initramfs; the agent runs it as PID 1's child with
/// the serial console as its stdout and stderr.
fn exec_vm(
    s: &ExecSettings,
    program: &Path,
    args: &[String],
    stop: &AtomicBool,
) -> Result<ExecOutcome, RunError> {
    let mut messages = Vec::new();
    if s.limits.pids.is_some() {
        messages
            .push("isobench: warning: --pids applies to containers; a VM ignores it".to_string());
    }
    let mut vm = VmSettings::default();
    if let Some(bytes) = s.limits.memory_bytes {
        if bytes % (1 << 20) != 0 {
            return Err(RunError::Prerequisite(format!(
                "--memory: a VM's memory is a whole number of MiB, got {bytes} bytes"
            )));
        }
        vm.memory_mib = (bytes >> 20).max(1);
    }
    if let Some(n) = s.limits.cpus {
        if n.fract() != 0.0 || !(1.0..=255.0).contains(&n) {
            return Err(RunError::Prerequisite(format!(
                "--cpus {n}: a VM has a whole number of vCPUs (1 to 255)"
            )));
        }
        vm.cpus = n as u64;
    }
    let container = ContainerSettings::default();
    let spec = bed_spec(s, &vm, &container);
    let agent = run::preflight(&[EnvKind::Vm], &spec)?;
    let id = format!("exec-{}", run::new_run_id());
    let programs = [program.to_path_buf()];
    let contents = run::Contents {
        programs: &programs,
        files: &[],
    };
    let logs = std::env::temp_dir();
    let bed = run::Testbed::build(&agent, &id, &[EnvKind::Vm], spec, contents, &logs, stop)?;
    let env = bed
        .env(EnvKind::Vm)
        .ok_or_else(|| RunError::Prerequisite("the VM environment could not be built".into()))?;
    let argv: Vec<String> = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect();
    let spec = WorkloadSpec::Command { argv };
    let r = run::run_instance(env, &spec, "exec", None, s.timeout, stop);
    let run_dir = Arc::clone(&bed.run_dir);
    drop(bed);
    let _ = run_dir.remove();
    Ok(outcome(s, program, r, messages))
}

/// What `exec` asks of its environment.
fn bed_spec<'a>(
    s: &'a ExecSettings,
    vm: &'a VmSettings,
    container: &'a ContainerSettings,
) -> BedSpec<'a> {
    BedSpec {
        vm,
        container,
        boot: &s.boot,
        workloads: &[],
        quiet: true,
    }
}

/// What `exec` tells the user, and its exit status, from what the instance did.
fn outcome(
    s: &ExecSettings,
    program: &Path,
    r: run::InstanceResult,
    mut messages: Vec<String>,
) -> ExecOutcome {
    let host = &r.host_metrics;
    if metric(host, "oom_kills").is_some_and(|n| n > 0.0) {
        let limit = s
            .limits
            .memory_bytes
            .map_or(String::new(), |b| format!(" (limit {} MiB)", b >> 20));
        messages.push(format!(
            "isobench: the kernel's OOM killer ended a process of this {}: it used more memory than allowed{limit}",
            s.env
        ));
    }
    if let Some(n) = metric(host, "forks_refused").filter(|n| *n > 0.0) {
        messages.push(format!(
            "isobench: {n} fork(s) refused by the pids limit ({})",
            s.limits.pids.unwrap_or(0)
        ));
    }
    if s.stats {
        let mut parts = vec![format!("env {}", s.env)];
        if let Some(st) = r.startup {
            parts.push(format!("startup {:.2} ms", st.as_secs_f64() * 1e3));
        }
        if let Some(e) = metric(&r.metrics, "elapsed_ms") {
            parts.push(format!("program {e:.1} ms"));
        }
        if let Some(c) = metric(host, "cgroup_cpu_ms").or_else(|| metric(host, "host_cpu_ms")) {
            parts.push(format!("cpu {c:.1} ms"));
        }
        if let Some(m) = metric(host, "cgroup_peak_mib") {
            parts.push(format!("peak memory {m:.1} MiB"));
        }
        messages.push(format!("isobench: {}", parts.join(" · ")));
    }

    let code = if r.interrupted {
        130
    } else if let Some(status) = r.status {
        // The agent ran the program and reported how it ended.
        u8::try_from(status).unwrap_or(EXIT_NOT_RUN)
    } else if r
        .error
        .as_deref()
        .is_some_and(|e| e.contains("after `ready`"))
    {
        messages.push(format!(
            "isobench: the program was still running after --timeout {} s; it was killed",
            s.timeout.as_secs()
        ));
        EXIT_TIMEOUT
    } else {
        messages.push(format!(
            "isobench: could not run {}: {}",
            program.display(),
            r.error
                .as_deref()
                .unwrap_or("the agent reported no exit status")
        ));
        EXIT_NOT_RUN
    };
    ExecOutcome { code, messages }
}
