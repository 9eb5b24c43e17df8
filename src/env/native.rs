//! `native`: the agent as a plain child process of isobench — the floor
//! every other environment is compared against.
//!
//! In a run, a native instance gets no cgroup: it is the baseline of
//! fork/exec and nothing else. With limits (`isobench exec --memory ...`) it
//! gets one, joined before exec, exactly as a container does.

use super::stdio::Stdio;
use super::{
    EnvError, EnvKind, Environment, FRAME_FD_ENV, Instance, Launch, ProcessHandle, Streams,
};
use crate::cgroup::{Cgroup, CgroupUse, Driver, Limits};
use crate::rundir::RunDir;
use crate::workload::Metric;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the agent with fork/exec on the host.
pub struct Native {
    agent: PathBuf,
    limits: Option<(Driver, Limits, Arc<RunDir>)>,
}

impl Native {
    /// An environment that runs this agent binary, without a cgroup.
    pub fn new(agent: PathBuf) -> Self {
        Native {
            agent,
            limits: None,
        }
    }

    /// The same, with every instance in a cgroup of its own with these
    /// limits (recorded in `run_dir` for `isobench clean`).
    pub fn with_limits(
        agent: PathBuf,
        driver: Driver,
        limits: Limits,
        run_dir: Arc<RunDir>,
    ) -> Self {
        Native {
            agent,
            limits: Some((driver, limits, run_dir)),
        }
    }
}

/// Natives need nothing beyond the agent.
pub fn check_host(_spec: &super::BedSpec<'_>) -> Result<(), EnvError> {
    Ok(())
}

/// The native environment of a run: the agent, fork/exec, no cgroup.
pub fn build(bed: &super::Bed<'_>) -> Result<super::Built, EnvError> {
    Ok(super::Built {
        env: Box::new(Native::new(bed.agent.to_path_buf())),
        notes: Vec::new(),
    })
}

/// Docker's default seccomp profile, as a container gets it, compiled once
/// and encoded for the agent; `None` when it cannot be compiled here.
fn default_seccomp_bpf() -> Option<&'static str> {
    static BPF: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BPF.get_or_init(|| {
        super::container::seccomp_filters(&crate::seccomp::SeccompChoice::Default)
            .ok()
            .flatten()
            .map(|f| f.encode())
    })
    .as_deref()
}

/// Asks the kernel to SIGKILL the calling process when its parent thread
/// dies: a child of isobench never outlives it, even after a SIGKILL.
pub fn die_with_parent() -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
}

/// Moves the calling process into the cgroup whose `cgroup.procs` file is
/// `procs`, by writing `0` to it. Allocation-free, for a forked child.
pub fn join_cgroup(procs: &CString) -> nix::Result<()> {
    // SAFETY: `procs` is a NUL-terminated path; the descriptor is closed
    // before returning and the buffer is valid for one byte.
    unsafe {
        let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(nix::Error::last());
        }
        let written = libc::write(fd, b"0".as_ptr().cast(), 1);
        let err = nix::Error::last();
        libc::close(fd);
        if written != 1 {
            return Err(err);
        }
    }
    Ok(())
}

/// The host-side figures of a cgroup at the end of an instance.
pub fn cgroup_metrics(cgroup: &Cgroup) -> Vec<Metric> {
    let u = cgroup.usage();
    let mut m = Vec::new();
    if let Some(ns) = u.cpu_ns {
        m.push(Metric::lower("cgroup_cpu_ms", "ms", ns as f64 / 1e6));
    }
    if let Some(b) = u.memory_peak {
        m.push(Metric::lower(
            "cgroup_peak_mib",
            "MiB",
            b as f64 / (1 << 20) as f64,
        ));
    }
    if let Some(n) = u.oom_kills {
        m.push(Metric::lower("oom_kills", "count", n as f64));
    }
    if let Some(n) = u.pids_refused {
        m.push(Metric::lower("forks_refused", "count", n as f64));
    }
    m
}

impl Environment for Native {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn kind(&self) -> EnvKind {
        EnvKind::Native
    }

    fn knobs(&self) -> serde_json::Value {
        serde_json::json!({
            "agent": self.agent,
            "spawn": "fork/exec",
            "cgroup": self.limits.as_ref().map(|(d, l, _)| serde_json::json!({"driver": d, "limits": l})),
        })
    }

    fn startup_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn artifact_bytes(&self, _spec: &crate::workload::WorkloadSpec) -> Option<u64> {
        std::fs::metadata(&self.agent).ok().map(|m| m.len())
    }

    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError> {
        let spawned_at = Instant::now();
        let stdio = Stdio::prepare(&launch.io)?;
        let raw = stdio.raw();
        let cgroup = match &self.limits {
            Some((driver, limits, run_dir)) => {
                let cg = driver
                    .create(&run_dir.unique_name(launch.id), limits, CgroupUse::Auto)
                    .map_err(|e| {
                        EnvError::Unavailable(format!("creating the instance's cgroup: {e}"))
                    })?;
                Some(cg)
            }
            None => None,
        };
        let procs: Vec<CString> = cgroup
            .iter()
            .flat_map(|c| c.all_procs_files())
            .map(|p| CString::new(p.as_os_str().as_bytes()).unwrap_or_default())
            .collect();

        let mut cmd = Command::new(&self.agent);
        cmd.args(launch.spec.to_args())
            .envs(launch.env.iter().map(|(k, v)| (k, v)))
            .process_group(0);
        cmd.env(FRAME_FD_ENV, super::FRAME_FD.to_string())
            .env(super::ENV_NAME_VAR, "native");
        if matches!(launch.spec, crate::workload::WorkloadSpec::Syscall { .. })
            && let Some(bpf) = default_seccomp_bpf()
        {
            cmd.env(super::SECCOMP_BPF_VAR, bpf);
        }
        // SAFETY: the closure runs in the forked child before exec; it only
        // makes async-signal-safe system calls (prctl, open, write, close,
        // dup2) on data prepared before the fork, and does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                die_with_parent()?;
                for p in &procs {
                    join_cgroup(p)?;
                }
                Stdio::install(&raw)?;
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| EnvError::io(format!("starting {}", self.agent.display()), e))?;
        let process = ProcessHandle::new(child.id())
            .map_err(|e| EnvError::io("opening a pidfd for the agent", e))?;
        let Stdio { streams, .. } = stdio;
        Ok(Box::new(NativeInstance {
            spawned_at,
            streams: Some(streams),
            process,
            cgroup,
        }))
    }
}

struct NativeInstance {
    spawned_at: Instant,
    streams: Option<Streams>,
    process: ProcessHandle,
    cgroup: Option<Cgroup>,
}

impl Instance for NativeInstance {
    fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    /// The host's own stack: its loopback is the baseline path.
    fn reach(&self, port: u16) -> Option<std::net::SocketAddr> {
        Some(([127, 0, 0, 1], port).into())
    }

    fn take_streams(&mut self) -> Option<Streams> {
        self.streams.take()
    }

    fn process(&mut self) -> &mut ProcessHandle {
        &mut self.process
    }

    fn after_exit(&mut self) -> Vec<Metric> {
        self.cgroup.as_ref().map(cgroup_metrics).unwrap_or_default()
    }

    fn cleanup(&mut self) -> Result<(), EnvError> {
        self.process
            .kill_and_reap()
            .map_err(|e| EnvError::io("reaping the agent", e))?;
        if let Some(mut cg) = self.cgroup.take() {
            cg.remove().map_err(|e| {
                EnvError::Unavailable(format!("removing the instance's cgroup: {e}"))
            })?;
        }
        Ok(())
    }
}
