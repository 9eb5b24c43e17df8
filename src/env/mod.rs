//! Environments: where an instance of the agent runs.
//!
//! One trait, [`Environment`], with one implementation per environment:
//! [`native`] (fork/exec on the host), [`container`] (isobench's own
//! namespace runtime) and [`vm`] (a QEMU guest). An environment starts
//! [`Instance`]s; the harness in [`crate::run`] reads their frames, times
//! them and tears them down the same way for all three.

pub mod container;
#[cfg(test)]
pub mod fake;
pub mod native;
pub mod oci;
pub mod process;
pub mod registry;
pub mod stdio;
pub mod vm;

use crate::workload::{Metric, WorkloadSpec};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::File;
use std::time::{Duration, Instant};

pub use process::{Exit, ProcessHandle, Usage};
pub use vm::{AccelChoice, AccelRequest};

/// How a run's guests boot: `--accel`, `--kernel`, `--modules`.
#[derive(Debug, Clone, Default)]
pub struct VmBoot {
    /// The accelerator asked for.
    pub accel: AccelRequest,
    /// The guest kernel `--kernel` asks for (over the scenario's `[vm]
    /// kernel`): `minimal`, `distro` or a file.
    pub kernel: Option<crate::kernel::KernelChoice>,
    /// That kernel's modules.
    pub modules: Option<std::path::PathBuf>,
}

/// What a run asks of its environments, known before anything starts.
#[derive(Debug, Clone, Copy)]
pub struct BedSpec<'a> {
    /// VM settings.
    pub vm: &'a crate::scenario::VmSettings,
    /// Container settings.
    pub container: &'a crate::scenario::ContainerSettings,
    /// How guests boot.
    pub boot: &'a VmBoot,
    /// The workloads that will run (a VM needs a scratch disk, and its
    /// modules, for some).
    pub workloads: &'a [crate::scenario::PlannedWorkload],
    /// Say nothing on stderr (`exec`, whose stderr is the program's).
    pub quiet: bool,
}

/// Everything an environment of a run is built from.
pub struct Bed<'a> {
    /// What the run asks.
    pub spec: BedSpec<'a>,
    /// The static agent binary.
    pub agent: &'a std::path::Path,
    /// The run's root tree: the image tree, or with `--image` the real
    /// image merged under it (what a VM packs).
    pub image_dir: &'a std::path::Path,
    /// The same as overlay lower directories, top first (what a container
    /// mounts).
    pub layers: &'a [std::path::PathBuf],
    /// The run's runtime directory.
    pub run_dir: &'a std::sync::Arc<crate::rundir::RunDir>,
    /// Where logs of set-up instances (a KVM probe) go.
    pub logs: &'a std::path::Path,
    /// Set on Ctrl-C.
    pub stop: &'a std::sync::atomic::AtomicBool,
    /// The run's network (its bridge is made on first use).
    pub net: &'a std::sync::Arc<crate::net::Fabric>,
}

/// An environment built for a run, and what could not be set up as asked.
pub struct Built {
    /// The environment.
    pub env: Box<dyn Environment>,
    /// Remarks for the run's notes (rootless limits, ...).
    pub notes: Vec<String>,
}

/// What an environment adds to `meta.json` beyond its knobs.
#[derive(Debug, Clone, Default)]
pub struct EnvFacts {
    /// QEMU's version line.
    pub qemu: Option<String>,
    /// The accelerator and why.
    pub accelerator: Option<AccelChoice>,
    /// The guest kernel.
    pub guest_kernel: Option<String>,
    /// A real runtime's program, version, path, flags, cgroup driver and
    /// the workarounds this host needed (runc, crun, gvisor, docker, podman).
    pub runtime: Option<serde_json::Value>,
}

/// The bytes of every regular file under `path` (a file: its size).
pub fn tree_bytes(path: &std::path::Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if md.is_file() {
        return md.len();
    }
    if !md.is_dir() {
        return 0;
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| tree_bytes(&e.path()))
        .sum()
}

/// The environments isobench compares.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum EnvKind {
    /// A plain process on the host.
    Native,
    /// isobench's own container.
    Container,
    /// runc on an OCI bundle.
    Runc,
    /// crun on an OCI bundle.
    Crun,
    /// gVisor's runsc on an OCI bundle.
    Gvisor,
    /// A Docker daemon's container.
    Docker,
    /// A Podman container.
    Podman,
    /// A QEMU guest (booting the `[vm] kernel`, distro by default).
    Vm,
    /// A QEMU guest booting the minimal kernel `isobench kernel build`
    /// made, with the same `[vm]` settings otherwise: beside `vm` in one
    /// run, the guest kernel becomes a dimension of the comparison.
    #[serde(rename = "vm-minimal")]
    #[value(name = "vm-minimal")]
    VmMinimal,
}

impl EnvKind {
    /// All environments, in report order.
    pub const ALL: [EnvKind; 9] = [
        EnvKind::Native,
        EnvKind::Container,
        EnvKind::Runc,
        EnvKind::Crun,
        EnvKind::Gvisor,
        EnvKind::Docker,
        EnvKind::Podman,
        EnvKind::Vm,
        EnvKind::VmMinimal,
    ];

    /// What a scenario runs when it names no environments: the ones that
    /// need nothing beyond isobench and QEMU (`vm-minimal` only when asked
    /// for: it needs `isobench kernel build`).
    pub const DEFAULT: [EnvKind; 3] = [EnvKind::Native, EnvKind::Container, EnvKind::Vm];

    /// Whether it is a QEMU guest (`vm` or `vm-minimal`).
    pub fn is_vm(self) -> bool {
        matches!(self, EnvKind::Vm | EnvKind::VmMinimal)
    }

    /// Whether this is a real container runtime (runc, crun, gvisor,
    /// docker, podman) rather than one of isobench's own environments.
    pub fn is_runtime(self) -> bool {
        !matches!(
            self,
            EnvKind::Native | EnvKind::Container | EnvKind::Vm | EnvKind::VmMinimal
        )
    }

    /// The name used in scenarios, records and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            EnvKind::Native => "native",
            EnvKind::Container => "container",
            EnvKind::Runc => "runc",
            EnvKind::Crun => "crun",
            EnvKind::Gvisor => "gvisor",
            EnvKind::Docker => "docker",
            EnvKind::Podman => "podman",
            EnvKind::Vm => "vm",
            EnvKind::VmMinimal => "vm-minimal",
        }
    }
}

impl EnvKind {
    /// The environment with this name, as scenarios and records spell it.
    pub fn from_name(name: &str) -> Option<EnvKind> {
        EnvKind::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// For the unit tests' fixtures only: a name that is not an environment's
/// is a bug in the test.
#[cfg(test)]
impl From<&str> for EnvKind {
    fn from(name: &str) -> EnvKind {
        EnvKind::from_name(name).unwrap_or_else(|| panic!("no environment `{name}`"))
    }
}

impl fmt::Display for EnvKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What an environment failed at.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A file or process operation on the host failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the path or program.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was being done.
        what: String,
        /// The error number.
        source: nix::Error,
    },
    /// The container's child failed while setting itself up, before exec.
    #[error("container set-up failed at `{step}`: {source}")]
    ContainerSetup {
        /// The set-up step, in words (`mount overlay (overlay) on ...`).
        step: String,
        /// The error number.
        source: nix::Error,
    },
    /// A prerequisite is missing; the message says how to get it.
    #[error("{0}")]
    Unavailable(String),
}

impl EnvError {
    /// Wraps an I/O error with what was being done.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        EnvError::Io {
            what: what.into(),
            source,
        }
    }

    /// Wraps a system-call error with what was being done.
    pub fn sys(what: impl Into<String>, source: nix::Error) -> Self {
        EnvError::Sys {
            what: what.into(),
            source,
        }
    }
}

/// The file descriptor the agent writes frames to, in every environment
/// but a VM (whose agent writes them to its second serial port). It is the
/// only channel frames travel on: the agent marks it close-on-exec, so a
/// program it runs cannot write to it, and everything an instance prints
/// on its standard streams is data, never a frame.
pub const FRAME_FD: i32 = 3;

/// Environment variable telling the agent where to write frames.
pub const FRAME_FD_ENV: &str = "ISOBENCH_FRAME_FD";

/// Environment variable holding Docker's default seccomp profile compiled
/// to BPF (see [`crate::seccomp::Filters::encode`]), which a native
/// `syscall` instance installs after its main measurement to time a call
/// under the filter too (`score_seccomp`).
pub const SECCOMP_BPF_VAR: &str = "ISOBENCH_SECCOMP_BPF";

/// Environment variable that tells a workload which environment it runs
/// in (`native`, `container`, `vm`).
pub const ENV_NAME_VAR: &str = "ISOBENCH_ENV";

/// Where an instance's standard streams go.
pub enum Io {
    /// Stdout and stderr on one pipe the harness reads as the instance's
    /// output (the metric rules of a `command` workload read it; the harness
    /// copies it into the log), stdin from /dev/null. Used by runs.
    Captured {
        /// The instance's log, for the environment's own notes.
        log: File,
    },
    /// Stdin, stdout and stderr are isobench's own, so a program's output
    /// streams straight to the user. Used by `isobench exec`.
    Inherited,
}

/// What an instance sends the harness: the frames, and (for [`Io::Captured`])
/// its output. Two pipes, so that nothing the workload prints can pass for
/// a frame.
pub struct Streams {
    /// The read end of the frames channel.
    pub frames: File,
    /// The read end of the instance's output (stdout and stderr, or a
    /// guest's console), when captured.
    pub output: Option<File>,
}

/// What an environment needs to start one instance.
pub struct Launch<'a> {
    /// The workload the agent runs.
    pub spec: &'a WorkloadSpec,
    /// A name unique within the run (`cpu-vm-r2`), for host-side paths.
    pub id: &'a str,
    /// Where its standard streams go.
    pub io: Io,
    /// Extra environment variables for the agent (native and container).
    pub env: Vec<(String, String)>,
    /// Extra bind mounts for this instance only (container).
    pub volumes: Vec<container::Volume>,
    /// How the instance is networked (native: always the host's own stack).
    pub network: crate::net::Mode,
    /// Ports inside the instance the host must reach (a VM with `user`
    /// networking forwards each from a port on the host's 127.0.0.1).
    pub ports: Vec<u16>,
}

/// One environment: knows how to start instances of the agent.
pub trait Environment {
    /// Which environment this is.
    fn kind(&self) -> EnvKind;

    /// Every setting that shapes this environment's numbers, for `meta.json`.
    fn knobs(&self) -> serde_json::Value;

    /// What it adds to `meta.json` beyond its knobs (a VM's accelerator).
    fn facts(&self) -> EnvFacts {
        EnvFacts::default()
    }

    /// The environment itself, for code that knows its concrete type
    /// (benchmarks that start a peer with the very same settings).
    fn as_any(&self) -> &dyn std::any::Any;

    /// Longest time from spawn to the agent's `ready` frame.
    fn startup_timeout(&self) -> Duration;

    /// What this environment has to ship and keep on disk to run `spec`,
    /// in bytes, beyond what the host has anyway: the agent (native), the
    /// image tree (container), guest kernel + initramfs + disk image (vm).
    fn artifact_bytes(&self, _spec: &WorkloadSpec) -> Option<u64> {
        None
    }

    /// Starts one instance. The instance's clock ([`Instance::spawned_at`])
    /// is read just before the spawn system call.
    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError>;
}

/// One running instance.
pub trait Instance {
    /// Host monotonic time just before the spawn.
    fn spawned_at(&self) -> Instant;

    /// The frames and output streams (read ends of pipes). The harness
    /// takes them once.
    fn take_streams(&mut self) -> Option<Streams>;

    /// The host process that is the instance (agent, container init, QEMU).
    fn process(&mut self) -> &mut ProcessHandle;

    /// Called when the agent's `ready` frame arrives, after the startup
    /// time is taken: a moment the instance surely runs, for readings
    /// [`Instance::at_done`] reports (a runtime's helper processes, which
    /// may be gone by `done` after a short workload).
    fn at_ready(&mut self) {}

    /// Host-side figures read when the agent's `done` frame arrives, while
    /// the instance still runs (current memory, for example).
    fn at_done(&mut self) -> Vec<Metric> {
        Vec::new()
    }

    /// Host-side figures read after the process was reaped and before
    /// cleanup (CPU time and peak memory of its cgroup, for example).
    fn after_exit(&mut self) -> Vec<Metric> {
        Vec::new()
    }

    /// Why a failed instance failed, as far as the environment can tell
    /// beyond its frames (a guest kernel panic, a QEMU that crashed). Called
    /// after the process has been reaped, before cleanup.
    fn diagnose(&mut self) -> Option<String> {
        None
    }

    /// Where the host reaches the instance's TCP port `port`: its address
    /// on the run's bridge, the host's loopback (native, container `host`),
    /// or the forward on 127.0.0.1 (vm `user`). `None`: unreachable.
    fn reach(&self, _port: u16) -> Option<std::net::SocketAddr> {
        None
    }

    /// The network as set up for this instance, for the records: mode,
    /// links, addresses, why vhost is off (empty without a network).
    fn network_facts(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Releases what the instance holds on the host (directories, ...)
    /// after its process has been reaped. Safe to call twice.
    fn cleanup(&mut self) -> Result<(), EnvError>;
}
