//! Scenarios: the TOML files that say what to run, validated into a [`Plan`].
//!
//! Every bad value is rejected here, before anything runs, with the file,
//! line, column and key path of the problem
//! (`quick.toml:14:8: workload[1].reps: expected a positive integer`).
//! `scenarios/quick.toml` is embedded in the binary and is the default, so
//! `isobench run` works from any directory.

use crate::cgroup::{CgroupUse, Limits, parse_memory_limit};
use crate::env::EnvKind;
use crate::env::container::Volume;
use crate::env::vm::Machine;
use crate::extract::MetricRule;
use crate::seccomp::SeccompChoice;
use crate::workload::{WorkloadKind, WorkloadSpec, param_list};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Spanned;

/// The largest scenario file isobench reads (the largest tried, 200,000
/// workloads, is 14 MB).
pub const SCENARIO_LIMIT: u64 = 256 << 20;

/// The name under which the built-in default scenario is reported.
pub const BUILTIN_NAME: &str = "scenarios/quick.toml (built in)";
/// The text of the built-in default scenario.
pub const BUILTIN_TEXT: &str = include_str!("../scenarios/quick.toml");

/// A scenario that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A value in the file is bad; `location` is `file:line:column` when known.
    #[error(transparent)]
    Invalid(#[from] crate::tomlfile::Located),
    /// A command-line override does not fit the scenario.
    #[error("{0}")]
    Override(String),
}

/// Most repetitions (`reps`, `max_reps`, `--reps`) a workload may have.
pub const MAX_REPS: u64 = 100_000;
/// Most warm-up runs (`warmups`) a workload may have.
pub const MAX_WARMUPS: u64 = 100_000;
/// Longest `timeout_s` and `vm.boot_timeout_s` (and `exec --timeout`): 7 days.
pub const MAX_TIMEOUT_S: u64 = 7 * 24 * 3600;
/// Longest sampling interval (`sample_ms`): a minute.
pub const MAX_SAMPLE_MS: u64 = 60_000;
/// Most vCPUs of a guest (`vm.cpus`, as QEMU's `microvm` and `pc` take).
pub const MAX_VCPUS: u64 = 255;
/// Largest guest disk (`vm.disk_mib`): 1 TiB.
pub const MAX_DISK_MIB: u64 = 1 << 20;
/// Largest pids limit (`container.pids`, `exec --pids`): the kernel's own
/// ceiling on process ids (`PID_MAX_LIMIT` on 64-bit).
pub const MAX_PIDS: u64 = 4 * 1024 * 1024;

/// The least memory a guest boots with, in MiB: the kernel and the image
/// (the initramfs, unpacked in RAM) must fit. Measured here: a Debian cloud
/// kernel with isobench's image panics out of memory at 64 MiB and boots at
/// 80 MiB; 128 leaves room for what workloads add.
pub const MIN_VM_MEMORY_MIB: u64 = 128;

/// Whether a guest of `mib` MiB can boot; the message says why not.
pub fn check_vm_memory(mib: u64) -> Result<(), String> {
    if mib < MIN_VM_MEMORY_MIB {
        return Err(format!(
            "{mib} MiB is too little for a guest: it needs at least {MIN_VM_MEMORY_MIB} MiB \
             (the kernel and the image, unpacked in RAM; at 64 MiB the guest kernel panics \
             out of memory)"
        ));
    }
    Ok(())
}

/// An integer from `MIN` to `MAX`, checked while the file is read, so a bad
/// value is named with its key, line and column like any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Int<const MIN: u64, const MAX: u64>(pub u64);

impl<const MIN: u64, const MAX: u64> Int<MIN, MAX> {
    /// The value as a `u32`: only for types whose cap fits, checked when
    /// the program is compiled, so nothing is ever cut.
    pub fn to_u32(self) -> u32 {
        const { assert!(MAX <= u32::MAX as u64) };
        self.0 as u32
    }
}

/// An integer greater than zero.
pub type Positive = Int<1, { u64::MAX }>;
/// An integer zero or greater.
pub type Count = Int<0, { u64::MAX }>;
/// Repetitions: 1 to [`MAX_REPS`].
pub type Reps = Int<1, MAX_REPS>;
/// Warm-ups: 0 to [`MAX_WARMUPS`].
pub type Warmups = Int<0, MAX_WARMUPS>;
/// A timeout in seconds: 1 to [`MAX_TIMEOUT_S`].
pub type Seconds = Int<1, MAX_TIMEOUT_S>;

struct IntVisitor {
    min: u64,
    max: u64,
}

impl IntVisitor {
    /// What is expected; the cap is named only to a value above it.
    fn what(&self, above: bool) -> String {
        let low = match self.min {
            0 => "a non-negative integer".to_string(),
            1 => "a positive integer".to_string(),
            n => format!("an integer of at least {n}"),
        };
        if above {
            format!("{low} no larger than {}", self.max)
        } else {
            low
        }
    }
    fn check<E: de::Error>(&self, v: i128) -> Result<u64, E> {
        if v < self.min as i128 || v > self.max as i128 {
            let above = v > self.max as i128;
            return Err(E::custom(format!("expected {}, got {v}", self.what(above))));
        }
        Ok(v as u64)
    }
}

impl Visitor<'_> for IntVisitor {
    type Value = u64;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.what(false))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        self.check(v.into())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        self.check(v.into())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
        Err(E::custom(format!("expected {}, got {v}", self.what(false))))
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Int<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_i64(IntVisitor { min: MIN, max: MAX })
            .map(Int)
    }
}

/// The scenario file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default = "all_environments")]
    environments: Vec<EnvKind>,
    #[serde(default = "default_reps")]
    reps: Reps,
    /// Adaptive repetitions: repeat until the spread is small enough.
    max_reps: Option<Spanned<Reps>>,
    target_rsd: Option<Spanned<f64>>,
    #[serde(default = "default_warmups")]
    warmups: Warmups,
    #[serde(default = "default_timeout")]
    timeout_s: Seconds,
    #[serde(default = "default_sample_ms")]
    sample_ms: Int<0, MAX_SAMPLE_MS>,
    #[serde(default)]
    vm: VmSection,
    #[serde(default)]
    container: ContainerSection,
    #[serde(default)]
    workload: Vec<Spanned<WorkloadEntry>>,
}

fn all_environments() -> Vec<EnvKind> {
    EnvKind::DEFAULT.to_vec()
}
fn default_reps() -> Reps {
    Int(3)
}
fn default_warmups() -> Warmups {
    Int(1)
}
fn default_sample_ms() -> Int<0, MAX_SAMPLE_MS> {
    Int(10)
}
fn default_timeout() -> Seconds {
    Int(300)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VmSection {
    #[serde(default = "default_vm_memory_spanned")]
    memory_mib: Spanned<Positive>,
    #[serde(default = "default_vm_cpus")]
    cpus: Int<1, MAX_VCPUS>,
    boot_timeout_s: Option<Seconds>,
    #[serde(default)]
    machine: Machine,
    #[serde(default)]
    kernel_args: Vec<Spanned<String>>,
    disk_mib: Option<Int<1, MAX_DISK_MIB>>,
    kernel: Option<Spanned<String>>,
}

fn default_vm_memory() -> Positive {
    Int(256)
}
fn default_vm_memory_spanned() -> Spanned<Positive> {
    Spanned::new(0..0, default_vm_memory())
}
fn default_vm_cpus() -> Int<1, MAX_VCPUS> {
    Int(1)
}

impl Default for VmSection {
    fn default() -> Self {
        VmSection {
            memory_mib: default_vm_memory_spanned(),
            cpus: default_vm_cpus(),
            boot_timeout_s: None,
            machine: Machine::default(),
            kernel_args: Vec::new(),
            disk_mib: None,
            kernel: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerSection {
    memory: Option<Spanned<String>>,
    cpus: Option<Spanned<f64>>,
    pids: Option<Int<1, MAX_PIDS>>,
    #[serde(default)]
    volumes: Vec<Spanned<String>>,
    #[serde(default)]
    cgroups: CgroupUse,
    seccomp: Option<Spanned<String>>,
    #[serde(default)]
    gvisor_platform: crate::env::oci::GvisorPlatform,
    #[serde(default)]
    docker_runtime: crate::env::oci::DaemonRuntime,
    #[serde(default)]
    podman_runtime: crate::env::oci::DaemonRuntime,
}

/// Declares `WorkloadEntry` with one optional field per workload parameter
/// (so `deny_unknown_fields` names any other key), and `params()`, which
/// lists the ones given.
macro_rules! workload_entry {
    ($($param:ident),* $(,)?) => {
        /// One `[[workload]]` table. The parameters of every kind are listed
        /// here; [`WorkloadKind::params`] says which kind takes which, and a
        /// parameter given to a kind that does not take it is an error.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct WorkloadEntry {
            kind: WorkloadKind,
            name: Option<Spanned<String>>,
            reps: Option<Reps>,
            max_reps: Option<Spanned<Reps>>,
            target_rsd: Option<Spanned<f64>>,
            warmups: Option<Warmups>,
            timeout_s: Option<Seconds>,
            // `fileio` workloads only:
            target: Option<Spanned<FileTarget>>,
            // `command` workloads only:
            argv: Option<Spanned<Vec<String>>>,
            files: Option<Vec<Spanned<String>>>,
            metrics: Option<Vec<Spanned<MetricRule>>>,
            // Any workload: the network of container and VM instances.
            network: Option<Spanned<NetworkEntry>>,
            // `service` workloads only:
            port: Option<Spanned<u16>>,
            client: Option<Spanned<Vec<String>>>,
            $($param: Option<Spanned<Positive>>,)*
        }

        impl WorkloadEntry {
            /// The parameters given, by name.
            fn params(&self) -> Vec<(&'static str, &Spanned<Positive>)> {
                let mut given = Vec::new();
                $(if let Some(v) = &self.$param {
                    given.push((stringify!($param), v));
                })*
                given
            }
        }

        /// Every parameter name a `[[workload]]` table may hold.
        #[cfg(test)]
        const ENTRY_PARAMS: &[&str] = &[$(stringify!($param)),*];
    };
}

workload_entry!(
    rounds,
    buffer_kib,
    threads,
    duration_ms,
    array_mib,
    passes,
    mib,
    iterations,
    count,
    requests,
    bulk_mib,
    file_mib,
    block_kib,
    ops,
    instances,
    settle_ms,
    connects,
);

/// `network = "bridge"` (container and VM alike) or
/// `network = { container = "host", vm = "user" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum NetworkEntry {
    Both(String),
    Each {
        #[serde(default)]
        container: Option<String>,
        #[serde(default)]
        vm: Option<String>,
    },
}

/// How a workload's container and VM instances are networked (native
/// instances use the host's own stack: its loopback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Networks {
    /// `none`, `bridge` or `host`.
    pub container: crate::net::Mode,
    /// `none`, `bridge` or `user`.
    pub vm: crate::net::Mode,
}

impl Networks {
    /// The mode of environment `env` (native: `host`, its own stack).
    pub fn of(&self, env: EnvKind) -> crate::net::Mode {
        match env {
            EnvKind::Native => crate::net::Mode::Host,
            EnvKind::Container => self.container,
            EnvKind::Vm | EnvKind::VmMinimal => self.vm,
            // The other runtimes get no network of isobench's yet (only
            // their own loopback); `Plan::check_host` refuses workloads
            // measured across the boundary in them.
            _ => crate::net::Mode::None,
        }
    }
}

/// The networks of a workload, checked: each mode exists for its
/// environment, and a workload served across the boundary has a path to it.
fn networks(entry: Option<&NetworkEntry>, kind: WorkloadKind) -> Result<Networks, String> {
    use crate::net::Mode;
    let across = matches!(
        kind,
        WorkloadKind::NetRr | WorkloadKind::NetStream | WorkloadKind::Service
    );
    let default = if across { Mode::Bridge } else { Mode::None };
    let (c, v) = match entry {
        None => (None, None),
        Some(NetworkEntry::Both(m)) => (Some(m.as_str()), Some(m.as_str())),
        Some(NetworkEntry::Each { container, vm }) => (container.as_deref(), vm.as_deref()),
    };
    let pick = |given: Option<&str>, env: &str, allowed: [Mode; 3]| -> Result<Mode, String> {
        let Some(name) = given else {
            return Ok(default);
        };
        let names: Vec<&str> = allowed.iter().map(|m| m.as_str()).collect();
        let mode = Mode::from_name(name)
            .filter(|m| allowed.contains(m))
            .ok_or_else(|| {
                format!(
                    "`{name}` is not a network mode of {env} (use one of: {})",
                    names.join(", ")
                )
            })?;
        if across && mode == Mode::None {
            return Err(format!(
                "`{kind}` is measured from the host, which cannot reach a {env} with network `none`; use {}",
                names[1..].join(" or ")
            ));
        }
        Ok(mode)
    };
    Ok(Networks {
        container: pick(c, "container", [Mode::None, Mode::Bridge, Mode::Host])?,
        vm: pick(v, "vm", [Mode::None, Mode::Bridge, Mode::User])?,
    })
}

/// What the host runs against a `service` workload's server.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSpec {
    /// The port the server listens on inside its environment; `{port}` in
    /// the server's `argv` becomes it (natively and in a container with
    /// `host` networking: a free host port instead).
    pub port: u16,
    /// The client program on the host and its arguments; `{addr}` and
    /// `{port}` become where the host reaches the server.
    pub client: Vec<String>,
}

/// Where a `fileio` workload's container instances do their I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileTarget {
    /// The container's writable overlay layer (native: a host directory;
    /// vm: the guest's virtio disk).
    #[default]
    Rootfs,
    /// A host directory bind-mounted into the container (native and vm as
    /// for `rootfs`).
    Volume,
}

/// What a `command` workload runs, as the scenario says it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandSpec {
    /// The program (a name looked up in the host's `$PATH`, or a path) and
    /// its arguments.
    pub argv: Vec<String>,
    /// Extra host files or directories shipped with it, at the same paths.
    pub files: Vec<PathBuf>,
    /// Figures to extract from its output.
    pub metrics: Vec<MetricRule>,
}

/// A workload as the harness runs it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedWorkload {
    /// Its name in records and reports (the kind unless the scenario names it).
    pub name: String,
    /// What the agent runs (for `command`, the program as the scenario
    /// names it; the harness resolves it on the host).
    pub spec: WorkloadSpec,
    /// For `command` workloads: the program, its files and metric rules.
    pub command: Option<CommandSpec>,
    /// For `fileio` workloads: where container instances do their I/O.
    pub target: FileTarget,
    /// Measured repetitions per environment (with `adaptive`: the minimum).
    pub reps: u32,
    /// Adaptive repetitions: more than `reps`, up to a cap, until the
    /// spread is small.
    pub adaptive: Option<Adaptive>,
    /// Unrecorded warm-up runs per environment before the repetitions.
    pub warmups: u32,
    /// Longest time an instance may run after its `ready` frame.
    #[serde(with = "duration_secs")]
    pub timeout: Duration,
    /// How container and VM instances are networked.
    pub network: Networks,
    /// For `service` workloads: the port and the host's client.
    pub service: Option<ServiceSpec>,
}

/// Adaptive repetitions, as the Phoronix Test Suite does them: after the
/// minimum, one more repetition (in every environment) at a time until the
/// relative standard deviation of the workload's headline figure (`score`,
/// else `startup_ms`) is under the target in every environment, or the cap
/// is hit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Adaptive {
    /// The cap on repetitions.
    pub max_reps: u32,
    /// The target relative standard deviation, in percent.
    pub target_rsd: f64,
}

/// VM settings of a scenario.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmSettings {
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub cpus: u64,
    /// Longest time from QEMU's spawn to the agent's `ready` frame; `None`
    /// picks a default by accelerator.
    #[serde(with = "opt_duration_secs")]
    pub boot_timeout: Option<Duration>,
    /// QEMU machine type (`microvm`, `pc`, `q35`).
    pub machine: Machine,
    /// Extra guest kernel command-line arguments.
    pub kernel_args: Vec<String>,
    /// A scratch virtio disk of this many MiB in every guest (backed by a
    /// raw host file opened with O_DIRECT), for I/O workloads.
    pub disk_mib: Option<u64>,
    /// The guest kernel (`minimal`, `distro` or a path); `--kernel` wins.
    pub kernel: crate::kernel::KernelChoice,
}

impl Default for VmSettings {
    fn default() -> Self {
        VmSettings {
            memory_mib: default_vm_memory().0,
            cpus: default_vm_cpus().0,
            boot_timeout: None,
            machine: Machine::default(),
            kernel_args: Vec::new(),
            disk_mib: None,
            kernel: crate::kernel::KernelChoice::default(),
        }
    }
}

/// Container settings of a scenario.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ContainerSettings {
    /// cgroup limits of every container instance.
    pub limits: Limits,
    /// Bind mounts into every container instance.
    pub volumes: Vec<Volume>,
    /// Which cgroup hierarchies container instances use.
    pub cgroups: CgroupUse,
    /// The seccomp profile (`"default"`: Docker's; `"none"`; or a path,
    /// relative to the scenario file's directory).
    pub seccomp: SeccompChoice,
    /// gVisor's platform (`ptrace`, `kvm`, `systrap`).
    pub gvisor_platform: crate::env::oci::GvisorPlatform,
    /// The OCI runtime Docker runs instances with (`default`: the daemon's).
    pub docker_runtime: crate::env::oci::DaemonRuntime,
    /// The OCI runtime Podman runs instances with (`default`: Podman's).
    pub podman_runtime: crate::env::oci::DaemonRuntime,
}

/// A validated scenario with command-line overrides applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The scenario's name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Where it came from (a path, or the built-in name).
    pub source: String,
    /// SHA-256 of the scenario text, so a report names exactly what ran.
    pub source_sha256: String,
    /// Environments, in the order they run within each repetition.
    pub environments: Vec<EnvKind>,
    /// Workloads, in order.
    pub workloads: Vec<PlannedWorkload>,
    /// VM settings.
    pub vm: VmSettings,
    /// Container settings.
    pub container: ContainerSettings,
    /// The sampler's interval (`sample_ms`; 0 turns sampling off).
    #[serde(with = "opt_duration_secs")]
    pub sample_interval: Option<Duration>,
}

/// What this host can give an instance: the ceilings a plan is checked
/// against before anything starts (a guest cannot have more memory or
/// vCPUs than its host, and a disk must fit where it is made). `None`: not
/// known, not checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostCapacity {
    /// The host's memory, `MemTotal` of `/proc/meminfo`, in MiB.
    pub memory_mib: Option<u64>,
    /// The CPUs isobench may use (`available_parallelism`: the affinity
    /// mask and cgroup quota count).
    pub cpus: Option<u64>,
    /// Free space where guests' disks are made (the runtime directory),
    /// with that directory, in MiB.
    pub disk_free: Option<(PathBuf, u64)>,
}

impl HostCapacity {
    /// This host's figures; VM disks are made under `runtime_dir`.
    pub fn detect(runtime_dir: &Path) -> HostCapacity {
        // The runtime directory may not exist yet: its nearest ancestor
        // that does is on the same file system, in all likelihood.
        let disk_free = runtime_dir
            .ancestors()
            .find(|d| d.is_dir())
            .and_then(|d| rustix::fs::statvfs(d).ok())
            .map(|v| {
                let free = v.f_bavail.saturating_mul(v.f_frsize) >> 20;
                (runtime_dir.to_path_buf(), free)
            });
        HostCapacity {
            memory_mib: crate::meta::meminfo(Path::new("/proc")).map(|m| m.mem_total >> 20),
            cpus: std::thread::available_parallelism()
                .ok()
                .map(|n| n.get() as u64),
            disk_free,
        }
    }

    /// Whether a guest of `mib` MiB fits; the message says why not.
    pub fn check_memory(&self, mib: u64) -> Result<(), String> {
        match self.memory_mib {
            Some(host) if mib > host => Err(format!(
                "{mib} MiB is more than this host's memory ({host} MiB, MemTotal in \
                 /proc/meminfo); a guest cannot have more than its host, lower it"
            )),
            _ => Ok(()),
        }
    }

    /// Whether `cpus` (a VM's vCPUs, a container's CPU bandwidth) fit.
    pub fn check_cpus(&self, cpus: f64) -> Result<(), String> {
        match self.cpus {
            Some(host) if cpus > host as f64 => Err(format!(
                "{cpus} CPUs are more than this host's {host} (available_parallelism); lower it \
                 (Docker refuses this too)"
            )),
            _ => Ok(()),
        }
    }

    /// Whether a guest disk of `mib` MiB (allocated in full) fits.
    pub fn check_disk(&self, mib: u64) -> Result<(), String> {
        match &self.disk_free {
            Some((dir, free)) if mib > *free => Err(format!(
                "a guest disk of {mib} MiB is more than the {free} MiB free in {} (the runtime \
                 directory, where guests' disks are made in full); make it smaller or free space \
                 (ISOBENCH_RUNTIME_DIR picks another directory)",
                dir.display()
            )),
            _ => Ok(()),
        }
    }
}

/// Command-line changes to a scenario.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Run only these environments.
    pub environments: Option<Vec<EnvKind>>,
    /// Run only the workloads with these names.
    pub workloads: Option<Vec<String>>,
    /// Repetitions for every workload (1 to [`MAX_REPS`]).
    pub reps: Option<u64>,
    /// Warm-ups for every workload (0 to [`MAX_REPS`]).
    pub warmups: Option<u64>,
}

impl Plan {
    /// Loads a scenario file, or the built-in default when `path` is `None`.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Plan, ScenarioError> {
        match path {
            None => Plan::parse(BUILTIN_TEXT, BUILTIN_NAME, overrides),
            Some(p) => {
                let text = crate::tomlfile::read(
                    p,
                    SCENARIO_LIMIT,
                    "a scenario file (TOML), such as scenarios/quick.toml",
                )
                .map_err(|source| ScenarioError::Read {
                    path: p.display().to_string(),
                    source,
                })?;
                Plan::parse(&text, &p.display().to_string(), overrides)
            }
        }
    }

    /// Parses and validates scenario text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str, overrides: &Overrides) -> Result<Plan, ScenarioError> {
        let invalid = |span: Option<std::ops::Range<usize>>, key: &str, message: String| {
            invalid_at(text, origin, span, key, message)
        };
        let file: File = crate::tomlfile::parse(text, origin).map_err(ScenarioError::from)?;

        if file.workload.is_empty() {
            return Err(invalid(
                None,
                "workload",
                "the scenario has no [[workload]] table; add at least one".into(),
            ));
        }
        if file.environments.is_empty() {
            return Err(invalid(
                None,
                "environments",
                "the list is empty; name at least one of native, container, vm".into(),
            ));
        }

        let mut workloads: Vec<PlannedWorkload> = Vec::with_capacity(file.workload.len());
        // Names taken so far: a set, so a scenario of n workloads is checked
        // in O(n), not O(n²) (200,000 workloads took 94 s with a list scan).
        let mut names: HashSet<String> = HashSet::with_capacity(file.workload.len());
        for (index, entry) in file.workload.iter().enumerate() {
            let span = entry.span();
            let entry = entry.get_ref();
            let key = |k: &str| format!("workload[{index}].{k}");
            let given = entry.params();
            for (param, value) in &given {
                let Some(known) = entry.kind.params().iter().find(|p| p.name == *param) else {
                    return Err(invalid(
                        Some(value.span()),
                        &key(param),
                        format!(
                            "workload kind `{}` has no parameter `{param}` (its parameters: {})",
                            entry.kind,
                            param_list(entry.kind)
                        ),
                    ));
                };
                if value.get_ref().0 > known.max {
                    return Err(invalid(
                        Some(value.span()),
                        &key(param),
                        format!(
                            "expected a positive integer no larger than {}, got {}",
                            known.max,
                            value.get_ref().0
                        ),
                    ));
                }
            }
            let get = |name: &'static str| {
                given
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.get_ref().0)
                    .or_else(|| entry.kind.default_of(name))
                    .unwrap_or(1)
            };
            let (spec, command) = match WorkloadSpec::from_params(entry.kind, get) {
                Some(spec) => {
                    let stray = [
                        ("argv", entry.argv.as_ref().map(|a| a.span())),
                        (
                            "files",
                            entry
                                .files
                                .as_ref()
                                .and_then(|f| f.first())
                                .map(|f| f.span()),
                        ),
                        (
                            "metrics",
                            entry
                                .metrics
                                .as_ref()
                                .and_then(|m| m.first())
                                .map(|m| m.span()),
                        ),
                    ];
                    if let Some((k, s)) = stray.into_iter().find(|(_, s)| s.is_some()) {
                        return Err(invalid(
                            s,
                            &key(k),
                            format!(
                                "`{k}` belongs to `command` workloads, not to `{}`",
                                entry.kind
                            ),
                        ));
                    }
                    (spec, None)
                }
                None => {
                    let command = command_spec(entry, index).map_err(|(at, k, msg)| {
                        invalid(Some(at.unwrap_or_else(|| span.clone())), &k, msg)
                    })?;
                    let argv = command.argv.clone();
                    (
                        if entry.kind == WorkloadKind::Service {
                            WorkloadSpec::Service { argv }
                        } else {
                            WorkloadSpec::Command { argv }
                        },
                        Some(command),
                    )
                }
            };
            let network = networks(entry.network.as_ref().map(|n| n.get_ref()), entry.kind)
                .map_err(|msg| {
                    invalid(
                        entry
                            .network
                            .as_ref()
                            .map(|n| n.span())
                            .or_else(|| Some(span.clone())),
                        &key("network"),
                        msg,
                    )
                })?;
            let service = if entry.kind == WorkloadKind::Service {
                let client = entry.client.as_ref().filter(|c| !c.get_ref().is_empty()).ok_or_else(|| {
                    invalid(
                        entry.client.as_ref().map(|c| c.span()).or_else(|| Some(span.clone())),
                        &key("client"),
                        "a `service` workload needs `client = [\"program\", \"-h\", \"{addr}\", \"-p\", \"{port}\", ...]`, the host's client".into(),
                    )
                })?;
                let port = entry
                    .port
                    .as_ref()
                    .map(|p| *p.get_ref())
                    .filter(|p| *p > 0)
                    .ok_or_else(|| {
                        invalid(
                            entry
                                .port
                                .as_ref()
                                .map(|p| p.span())
                                .or_else(|| Some(span.clone())),
                            &key("port"),
                            "a `service` workload needs `port`, the server's TCP port (1 to 65535)"
                                .into(),
                        )
                    })?;
                if port == crate::net::AGENT_PORT {
                    return Err(invalid(
                        entry.port.as_ref().map(|p| p.span()),
                        &key("port"),
                        format!("port {port} is the agent's own control port; pick another"),
                    ));
                }
                Some(ServiceSpec {
                    port,
                    client: client.get_ref().clone(),
                })
            } else {
                for (k, at) in [
                    ("client", entry.client.as_ref().map(|c| c.span())),
                    ("port", entry.port.as_ref().map(|p| p.span())),
                ] {
                    if at.is_some() {
                        return Err(invalid(
                            at,
                            &key(k),
                            format!(
                                "`{k}` belongs to `service` workloads, not to `{}`",
                                entry.kind
                            ),
                        ));
                    }
                }
                None
            };
            let name = entry
                .name
                .as_ref()
                .map_or_else(|| entry.kind.to_string(), |n| n.get_ref().clone());
            let name_span = entry.name.as_ref().map_or(span.clone(), |n| n.span());
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(invalid(
                    Some(name_span),
                    &key("name"),
                    format!(
                        "`{name}`: use letters, digits, `-` and `_` only (names become file names)"
                    ),
                ));
            }
            if !names.insert(name.clone()) {
                return Err(invalid(
                    Some(name_span),
                    &key("name"),
                    format!("a workload named `{name}` is already defined; give this one a `name`"),
                ));
            }
            if let Some(t) = &entry.target
                && entry.kind != WorkloadKind::Fileio
            {
                return Err(invalid(
                    Some(t.span()),
                    &key("target"),
                    format!(
                        "`target` belongs to `fileio` workloads, not to `{}`",
                        entry.kind
                    ),
                ));
            }
            let timeout_s = entry.timeout_s.unwrap_or(file.timeout_s).0;
            if let WorkloadSpec::Idle { duration_ms } = spec
                && duration_ms >= timeout_s.saturating_mul(1000)
            {
                let at = given
                    .iter()
                    .find(|(n, _)| *n == "duration_ms")
                    .map(|(_, v)| v.span());
                return Err(invalid(
                    at,
                    &key("duration_ms"),
                    format!(
                        "{duration_ms} ms is not shorter than the timeout ({timeout_s} s): every \
                         instance would be killed; raise `timeout_s` or shorten `duration_ms`"
                    ),
                ));
            }
            workloads.push(PlannedWorkload {
                name,
                spec,
                command,
                target: entry
                    .target
                    .as_ref()
                    .map_or(FileTarget::Rootfs, |t| *t.get_ref()),
                reps: entry.reps.unwrap_or(file.reps).to_u32(),
                adaptive: adaptive(
                    entry.max_reps.as_ref().or(file.max_reps.as_ref()),
                    entry.target_rsd.as_ref().or(file.target_rsd.as_ref()),
                    entry.reps.unwrap_or(file.reps).0,
                )
                .map_err(|(at, k, msg)| {
                    invalid(at.or_else(|| Some(span.clone())), &key(&k), msg)
                })?,
                warmups: entry.warmups.unwrap_or(file.warmups).to_u32(),
                timeout: Duration::from_secs(timeout_s),
                network,
                service,
            });
        }

        for (i, arg) in file.vm.kernel_args.iter().enumerate() {
            let text = arg.get_ref();
            if text.is_empty() || text.contains(char::is_whitespace) || text == "--" {
                return Err(invalid(
                    Some(arg.span()),
                    &format!("vm.kernel_args[{i}]"),
                    format!(
                        "`{text}`: give one kernel argument per string, without spaces (and not `--`, which starts init's own arguments)"
                    ),
                ));
            }
        }

        let memory = &file.vm.memory_mib;
        check_vm_memory(memory.get_ref().0).map_err(|m| {
            invalid(
                Some(memory.span()).filter(|s| !s.is_empty()),
                "vm.memory_mib",
                m,
            )
        })?;

        let mut container = ContainerSettings::default();
        if let Some(m) = &file.container.memory {
            container.limits.memory_bytes = Some(
                parse_memory_limit(m.get_ref())
                    .map_err(|e| invalid(Some(m.span()), "container.memory", e))?,
            );
        }
        if let Some(c) = &file.container.cpus {
            let v = *c.get_ref();
            if !(v.is_finite() && v >= 0.01) {
                return Err(invalid(
                    Some(c.span()),
                    "container.cpus",
                    format!("expected a number of CPUs of at least 0.01, got {v}"),
                ));
            }
            container.limits.cpus = Some(v);
        }
        container.limits.pids = file.container.pids.map(|p| p.0);
        container.cgroups = file.container.cgroups;
        container.gvisor_platform = file.container.gvisor_platform;
        container.docker_runtime = file.container.docker_runtime;
        container.podman_runtime = file.container.podman_runtime;
        for (i, v) in file.container.volumes.iter().enumerate() {
            container.volumes.push(
                Volume::parse(v.get_ref())
                    .map_err(|e| invalid(Some(v.span()), &format!("container.volumes[{i}]"), e))?,
            );
        }

        if let Some(v) = &file.container.seccomp {
            let key = "container.seccomp";
            let mut choice: SeccompChoice = v
                .get_ref()
                .parse()
                .map_err(|e| invalid(Some(v.span()), key, e))?;
            if let SeccompChoice::Profile(p) = &choice
                && p.is_relative()
                && origin != BUILTIN_NAME
                && let Some(dir) = Path::new(origin).parent()
            {
                choice = SeccompChoice::Profile(dir.join(p));
            }
            crate::env::container::seccomp_filters(&choice)
                .map_err(|e| invalid(Some(v.span()), key, e.to_string()))?;
            container.seccomp = choice;
        }

        let environments = first_of_each(&file.environments);
        let mut plan = Plan {
            name: file.name,
            description: file.description,
            source: origin.to_string(),
            source_sha256: crate::util::hex(&Sha256::digest(text.as_bytes())),
            environments,
            workloads,
            vm: VmSettings {
                memory_mib: file.vm.memory_mib.get_ref().0,
                cpus: file.vm.cpus.0,
                boot_timeout: file.vm.boot_timeout_s.map(|s| Duration::from_secs(s.0)),
                machine: file.vm.machine,
                kernel_args: file
                    .vm
                    .kernel_args
                    .iter()
                    .map(|a| a.get_ref().clone())
                    .collect(),
                disk_mib: file.vm.disk_mib.map(|d| d.0),
                kernel: match &file.vm.kernel {
                    None => crate::kernel::KernelChoice::default(),
                    Some(k) if k.get_ref().trim().is_empty() => {
                        return Err(invalid(
                            Some(k.span()),
                            "vm.kernel",
                            "empty: give \"minimal\", \"distro\" or a kernel image's path".into(),
                        ));
                    }
                    Some(k) => crate::kernel::KernelChoice::parse(k.get_ref()),
                },
            },
            container,
            sample_interval: (file.sample_ms.0 > 0)
                .then(|| Duration::from_millis(file.sample_ms.0)),
        };
        plan.apply(overrides)?;
        Ok(plan)
    }

    /// Checks the plan against this host, before anything starts: a VM's
    /// memory, vCPUs and disk (only when the plan has the `vm` environment),
    /// a container's CPUs (only with `container`). Values the command line
    /// set were checked where they were given (`cli::apply_resources`).
    pub fn check_host(&self, host: &HostCapacity) -> Result<(), ScenarioError> {
        let invalid = |key: &str, message: String| {
            ScenarioError::Invalid(crate::tomlfile::Located {
                location: self.source.clone(),
                key: key.to_string(),
                message,
                snippet: String::new(),
            })
        };
        if let Some(e) = self.environments.iter().find(|e| e.is_runtime())
            && let Some(w) = self.workloads.iter().find(|w| {
                matches!(
                    w.spec,
                    WorkloadSpec::NetRr { .. }
                        | WorkloadSpec::NetStream { .. }
                        | WorkloadSpec::Service { .. }
                )
            })
        {
            return Err(invalid(
                "environments",
                format!(
                    "workload `{}` is measured from the host across the isolation boundary, \
                     which isobench plumbs only for native, container and vm so far; drop `{e}` \
                     from this scenario's environments (or run `{}` in a scenario of its own)",
                    w.name, w.name
                ),
            ));
        }
        if self.environments.iter().any(|e| e.is_vm()) {
            host.check_memory(self.vm.memory_mib)
                .map_err(|m| invalid("vm.memory_mib", m))?;
            host.check_cpus(self.vm.cpus as f64)
                .map_err(|m| invalid("vm.cpus", m))?;
            let base = crate::env::vm::Devices {
                disk_mib: self.vm.disk_mib,
                scratch_mib: None,
                nic: false,
            };
            if let Some(mib) = base.disk_size_mib() {
                host.check_disk(mib)
                    .map_err(|m| invalid("vm.disk_mib", m))?;
            }
            for w in &self.workloads {
                let devices = base.for_workload(&w.spec);
                if let (Some(mib), Some(_)) = (devices.disk_size_mib(), devices.scratch_mib) {
                    host.check_disk(mib).map_err(|m| {
                        invalid(
                            &format!("workload `{}`", w.name),
                            format!("{m} (a `fileio` guest's disk holds its file_mib and more)"),
                        )
                    })?;
                }
            }
        }
        if self.environments.contains(&EnvKind::Container)
            && let Some(cpus) = self.container.limits.cpus
        {
            host.check_cpus(cpus)
                .map_err(|m| invalid("container.cpus", m))?;
        }
        Ok(())
    }

    fn apply(&mut self, o: &Overrides) -> Result<(), ScenarioError> {
        if let Some(envs) = &o.environments {
            if envs.is_empty() {
                return Err(ScenarioError::Override(
                    "--env: the list is empty; name at least one of native, container, vm".into(),
                ));
            }
            self.environments = first_of_each(envs);
        }
        if let Some(names) = &o.workloads {
            let have: HashSet<&str> = self.workloads.iter().map(|w| w.name.as_str()).collect();
            for name in names {
                if !have.contains(name.as_str()) {
                    // A long list is cut: a large scenario would print pages.
                    const SHOWN: usize = 20;
                    let mut known: Vec<&str> = self
                        .workloads
                        .iter()
                        .take(SHOWN)
                        .map(|w| w.name.as_str())
                        .collect();
                    let more = format!("… and {} more", self.workloads.len().saturating_sub(SHOWN));
                    if self.workloads.len() > SHOWN {
                        known.push(&more);
                    }
                    return Err(ScenarioError::Override(format!(
                        "--workload: scenario `{}` has no workload named `{name}` (it has: {})",
                        self.name,
                        known.join(", ")
                    )));
                }
            }
            let chosen: HashSet<&String> = names.iter().collect();
            self.workloads.retain(|w| chosen.contains(&w.name));
        }
        if let Some(reps) = o.reps {
            if !(1..=MAX_REPS).contains(&reps) {
                return Err(ScenarioError::Override(format!(
                    "--reps: expected a positive integer no larger than {MAX_REPS}, got {reps}"
                )));
            }
            let reps = Int::<1, MAX_REPS>(reps).to_u32();
            for w in &mut self.workloads {
                // An explicit count replaces adaptive repetitions.
                w.reps = reps;
                w.adaptive = None;
            }
        }
        if let Some(warmups) = o.warmups {
            if warmups > MAX_WARMUPS {
                return Err(ScenarioError::Override(format!(
                    "--warmup: expected a whole number no larger than {MAX_WARMUPS}, got {warmups}"
                )));
            }
            for w in &mut self.workloads {
                w.warmups = Int::<0, MAX_WARMUPS>(warmups).to_u32();
            }
        }
        Ok(())
    }

    /// Number of instances the plan starts, warm-ups included. Counted in
    /// 64 bits and saturating, so no plan, however built, can wrap it.
    pub fn instance_count(&self) -> usize {
        let per_env = self
            .workloads
            .iter()
            .map(|w| match w.spec {
                WorkloadSpec::Density { instances, .. } => instances,
                _ => u64::from(w.adaptive.map_or(w.reps, |a| a.max_reps)) + u64::from(w.warmups),
            })
            .fold(0u64, u64::saturating_add);
        let total = per_env.saturating_mul(self.environments.len() as u64);
        usize::try_from(total).unwrap_or(usize::MAX)
    }
}

/// Each environment once, where it is first named: `dedup` alone kept the
/// second `native` of `native, container, native`, which then ran twice
/// per repetition under the same instance names.
fn first_of_each(envs: &[EnvKind]) -> Vec<EnvKind> {
    let mut once: Vec<EnvKind> = Vec::new();
    for e in envs {
        if !once.contains(e) {
            once.push(*e);
        }
    }
    once
}

type EntryError = (Option<std::ops::Range<usize>>, String, String);

/// Validates `max_reps` and `target_rsd` (both or neither).
fn adaptive(
    max: Option<&Spanned<Reps>>,
    target: Option<&Spanned<f64>>,
    min: u64,
) -> Result<Option<Adaptive>, EntryError> {
    match (max, target) {
        (None, None) => Ok(None),
        (Some(m), None) => Err((
            Some(m.span()),
            "max_reps".into(),
            "adaptive repetitions need `target_rsd` too (the relative spread to reach, in percent)"
                .into(),
        )),
        (None, Some(t)) => Err((
            Some(t.span()),
            "target_rsd".into(),
            "adaptive repetitions need `max_reps` too (the cap)".into(),
        )),
        (Some(m), Some(t)) => {
            let rsd = *t.get_ref();
            if !(rsd.is_finite() && rsd > 0.0) {
                return Err((
                    Some(t.span()),
                    "target_rsd".into(),
                    format!("expected a positive percentage, got {rsd}"),
                ));
            }
            if m.get_ref().0 < min.max(2) {
                return Err((
                    Some(m.span()),
                    "max_reps".into(),
                    format!("must be at least `reps` ({min}) and at least 2"),
                ));
            }
            Ok(Some(Adaptive {
                max_reps: m.get_ref().to_u32(),
                target_rsd: rsd,
            }))
        }
    }
}

/// Validates the `command` part of a `[[workload]]` table.
fn command_spec(entry: &WorkloadEntry, index: usize) -> Result<CommandSpec, EntryError> {
    let key = |k: &str| format!("workload[{index}].{k}");
    let argv = entry.argv.as_ref().ok_or_else(|| {
        (
            None,
            key("argv"),
            "a `command` workload needs `argv = [\"program\", \"arg\", ...]`".to_string(),
        )
    })?;
    if argv.get_ref().is_empty() || argv.get_ref()[0].is_empty() {
        return Err((
            Some(argv.span()),
            key("argv"),
            "the list is empty; name the program first".into(),
        ));
    }
    let mut files = Vec::new();
    for (i, f) in entry.files.iter().flatten().enumerate() {
        let p = PathBuf::from(f.get_ref());
        if !p.is_absolute() {
            return Err((
                Some(f.span()),
                key(&format!("files[{i}]")),
                format!("`{}`: give an absolute host path", f.get_ref()),
            ));
        }
        if p.symlink_metadata().is_err() {
            return Err((
                Some(f.span()),
                key(&format!("files[{i}]")),
                format!(
                    "`{}` does not exist on the host; fix the path or drop it",
                    f.get_ref()
                ),
            ));
        }
        files.push(p);
    }
    let mut metrics: Vec<MetricRule> = Vec::new();
    for (i, m) in entry.metrics.iter().flatten().enumerate() {
        let rule = m.get_ref();
        let valid = !rule.name.is_empty()
            && rule
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        let problem = if !valid {
            Some(format!("`{}`: use letters, digits and `_` only", rule.name))
        } else if crate::workload::is_host_metric(&rule.name) {
            Some(format!(
                "`{}` is measured by isobench itself; pick another name",
                rule.name
            ))
        } else if metrics.iter().any(|r| r.name == rule.name) {
            Some(format!(
                "`{}` is already defined for this workload",
                rule.name
            ))
        } else {
            None
        };
        if let Some(msg) = problem {
            return Err((Some(m.span()), key(&format!("metrics[{i}].name")), msg));
        }
        metrics.push(rule.clone());
    }
    Ok(CommandSpec {
        argv: argv.get_ref().clone(),
        files,
        metrics,
    })
}

fn invalid_at(
    text: &str,
    origin: &str,
    span: Option<std::ops::Range<usize>>,
    key: &str,
    message: String,
) -> ScenarioError {
    crate::tomlfile::locate(text, origin, span, key, message).into()
}

mod duration_secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

mod opt_duration_secs {
    use serde::Serializer;
    use std::time::Duration;
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&d.as_secs_f64()),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Plan, ScenarioError> {
        Plan::parse(text, "t.toml", &Overrides::default())
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn vm_kernel_is_minimal_distro_or_a_path_and_vm_minimal_is_an_environment() {
        use crate::kernel::KernelChoice;
        let with = |k: &str| {
            parse(&format!(
                "name = \"x\"\nenvironments = [\"vm\", \"vm-minimal\"]\n[vm]\nkernel = {k}\n[[workload]]\nkind = \"noop\"\n"
            ))
        };
        let plan = with("\"minimal\"").unwrap();
        assert_eq!(plan.vm.kernel, KernelChoice::Minimal);
        assert_eq!(plan.environments, [EnvKind::Vm, EnvKind::VmMinimal]);
        assert_eq!(with("\"distro\"").unwrap().vm.kernel, KernelChoice::Distro);
        assert_eq!(
            with("\"/boot/vmlinuz\"").unwrap().vm.kernel,
            KernelChoice::Path("/boot/vmlinuz".into())
        );
        let msg = with("\"\"").unwrap_err().to_string();
        assert!(
            msg.contains("vm.kernel") && msg.contains("minimal"),
            "{msg}"
        );
        let plan = parse("name = \"x\"\n[[workload]]\nkind = \"noop\"\n").unwrap();
        assert_eq!(plan.vm.kernel, KernelChoice::Distro);
        // The shipped scenario comparing the kernels parses.
        let text = include_str!("../scenarios/kernels.toml");
        let plan = Plan::parse(text, "kernels.toml", &Overrides::default()).unwrap();
        assert_eq!(plan.environments, [EnvKind::Vm, EnvKind::VmMinimal]);
        assert!(plan.workloads.iter().all(|w| w.reps >= 7));
    }

    #[test]
    fn builtin_scenario_is_valid() {
        let plan = Plan::load(None, &Overrides::default()).unwrap();
        assert_eq!(plan.environments, EnvKind::DEFAULT.to_vec());
        let names: Vec<_> = plan.workloads.iter().map(|w| w.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "noop",
                "cpu",
                "memory",
                "pagefault",
                "syscall",
                "fork",
                "fileio",
                "net"
            ]
        );
        assert!(plan.workloads.iter().all(|w| w.reps == 6 && w.warmups == 1));
        assert_eq!(plan.instance_count(), 8 * 7 * 3);
    }

    #[test]
    fn negative_reps_names_key_line_and_column() {
        let text = "name = \"x\"\n[[workload]]\nkind = \"noop\"\n\n[[workload]]\nkind = \"cpu\"\nreps = -2\n";
        let msg = error(text);
        assert!(
            msg.starts_with("t.toml:7:8: workload[1].reps: expected a positive integer, got -2"),
            "{msg}"
        );
        assert!(msg.contains("reps = -2\n"), "{msg}");
        assert!(msg.ends_with("       ^"), "{msg}");
    }

    #[test]
    fn misspelled_key_is_named() {
        let msg = error("name = \"x\"\n[[workload]]\nkind = \"cpu\"\nrunds = 5\n");
        assert!(msg.starts_with("t.toml:4:1: workload[0]"), "{msg}");
        assert!(msg.contains("unknown field `runds`"), "{msg}");
        let msg = error("name = \"x\"\nrep = 3\n[[workload]]\nkind = \"cpu\"\n");
        assert!(msg.starts_with("t.toml:2:1:"), "{msg}");
        assert!(msg.contains("unknown field `rep`"), "{msg}");
    }

    #[test]
    fn bad_values_are_rejected() {
        let msg = error(
            "name = \"x\"\nenvironments = [\"native\", \"vmm\"]\n[[workload]]\nkind = \"noop\"\n",
        );
        assert!(
            msg.contains("t.toml:2:") && msg.contains("unknown variant `vmm`"),
            "{msg}"
        );
        let msg = error("name = \"x\"\n[[workload]]\nkind = \"gpu\"\n");
        assert!(
            msg.contains("t.toml:3:") && msg.contains("unknown variant `gpu`"),
            "{msg}"
        );
        let msg = error("name = \"x\"\n[[workload]]\nkind = \"noop\"\nrounds = 3\n");
        assert!(
            msg.starts_with(
                "t.toml:4:10: workload[0].rounds: workload kind `noop` has no parameter `rounds`"
            ),
            "{msg}"
        );
        let msg = error("name = \"x\"\nwarmups = 1.5\n[[workload]]\nkind = \"noop\"\n");
        assert!(
            msg.contains("warmups: expected a non-negative integer, got 1.5"),
            "{msg}"
        );
        let msg = error("name = \"x\"\n");
        assert!(msg.contains("no [[workload]] table"), "{msg}");
        let msg =
            error("name = \"x\"\n[[workload]]\nkind = \"noop\"\n[[workload]]\nkind = \"noop\"\n");
        assert!(msg.contains("already defined"), "{msg}");
        let msg = error("name = \"x\"\n[[workload]]\nkind = \"noop\"\nname = \"a/b\"\n");
        assert!(msg.contains("workload[0].name"), "{msg}");
        let msg = error("name = \"x\"\n[vm]\nmemory_mib = 0\n[[workload]]\nkind = \"noop\"\n");
        assert!(
            msg.starts_with("t.toml:3:14: vm.memory_mib: expected a positive integer, got 0"),
            "{msg}"
        );
        let msg = error(
            "name = \"x\"\n[vm]\nkernel_args = [\"quiet\", \"a b\"]\n[[workload]]\nkind = \"noop\"\n",
        );
        assert!(
            msg.starts_with("t.toml:3:25: vm.kernel_args[1]: `a b`: give one kernel argument"),
            "{msg}"
        );
        let msg = error("name = \"x\"\n[vm]\nmachine = \"isapc\"\n[[workload]]\nkind = \"noop\"\n");
        assert!(
            msg.contains("vm.machine") && msg.contains("expected one of `microvm`, `pc`, `q35`"),
            "{msg}"
        );
        let msg = error("name = = 3\n");
        assert!(msg.starts_with("t.toml:1:"), "{msg}");
    }

    #[test]
    fn numbers_above_their_caps_name_the_key_and_the_cap() {
        let msg = error("name = \"x\"\nreps = 4294967296\n[[workload]]\nkind = \"noop\"\n");
        assert!(
            msg.starts_with(
                "t.toml:2:8: reps: expected a positive integer no larger than 100000, got 4294967296"
            ),
            "{msg}"
        );
        let noop = "[[workload]]\nkind = \"noop\"\n";
        for (line, key, cap) in [
            ("warmups = 4294967296", "warmups", "100000"),
            ("max_reps = 100001\ntarget_rsd = 1.0", "max_reps", "100000"),
            ("timeout_s = 18446744073", "timeout_s", "604800"),
            ("sample_ms = 9223372036854775807", "sample_ms", "60000"),
            (
                "[vm]\nboot_timeout_s = 99999999999",
                "vm.boot_timeout_s",
                "604800",
            ),
            ("[vm]\ncpus = 4294967297", "vm.cpus", "255"),
            ("[vm]\ndisk_mib = 17592186044416", "vm.disk_mib", "1048576"),
            (
                "[container]\npids = 99999999999",
                "container.pids",
                "4194304",
            ),
        ] {
            let msg = error(&format!("name = \"x\"\n{line}\n{noop}"));
            assert!(
                msg.contains(&format!(": {key}: expected "))
                    && msg.contains(&format!("no larger than {cap}, got")),
                "{line}: {msg}"
            );
        }
        // In a [[workload]] table too, and for a kind's parameters.
        for (line, key, cap) in [
            ("reps = 4294967296", "workload[0].reps", "100000"),
            ("warmups = 100001", "workload[0].warmups", "100000"),
            (
                "array_mib = 17592186044416",
                "workload[0].array_mib",
                "1048576",
            ),
        ] {
            let msg = error(&format!(
                "name = \"x\"\n[[workload]]\nkind = \"memory\"\n{line}\n"
            ));
            assert!(
                msg.starts_with("t.toml:4:")
                    && msg.contains(&format!("{key}: expected "))
                    && msg.contains(&format!("integer no larger than {cap}, got")),
                "{line}: {msg}"
            );
        }
        let msg = error("name = \"x\"\n[[workload]]\nkind = \"density\"\ninstances = 4294967296\n");
        assert!(
            msg.contains("workload[0].instances: expected a positive integer no larger than 10000"),
            "{msg}"
        );
        // The caps themselves are fine.
        let plan =
            parse("name = \"x\"\nreps = 100000\nwarmups = 100000\n[[workload]]\nkind = \"noop\"\n")
                .unwrap();
        assert_eq!(
            (plan.workloads[0].reps, plan.workloads[0].warmups),
            (100_000, 100_000)
        );
        // --reps, as the command line gives it.
        let o = Overrides {
            reps: Some(4_294_967_296),
            ..Overrides::default()
        };
        let msg = Plan::parse(noop_named("x").as_str(), "t.toml", &o)
            .unwrap_err()
            .to_string();
        assert_eq!(
            msg,
            "--reps: expected a positive integer no larger than 100000, got 4294967296"
        );
    }

    fn noop_named(name: &str) -> String {
        format!("name = \"{name}\"\n[[workload]]\nkind = \"noop\"\n")
    }

    #[test]
    fn an_idle_workload_longer_than_its_timeout_is_refused() {
        let msg = error(
            "name = \"x\"\ntimeout_s = 10\n[[workload]]\nkind = \"idle\"\nduration_ms = 10000\n",
        );
        assert!(
            msg.starts_with("t.toml:5:15: workload[0].duration_ms: 10000 ms is not shorter than the timeout (10 s)"),
            "{msg}"
        );
        parse("name = \"x\"\n[[workload]]\nkind = \"idle\"\nduration_ms = 10000\ntimeout_s = 11\n")
            .unwrap();
    }

    #[test]
    fn a_vm_too_small_to_boot_is_refused() {
        let msg = error("name = \"x\"\n[vm]\nmemory_mib = 64\n[[workload]]\nkind = \"noop\"\n");
        assert!(
            msg.starts_with(
                "t.toml:3:14: vm.memory_mib: 64 MiB is too little for a guest: it needs at least 128 MiB"
            ),
            "{msg}"
        );
        parse("name = \"x\"\n[vm]\nmemory_mib = 128\n[[workload]]\nkind = \"noop\"\n").unwrap();
    }

    #[test]
    fn a_vm_or_container_larger_than_the_host_is_refused() {
        let host = HostCapacity {
            memory_mib: Some(1024),
            cpus: Some(2),
            disk_free: Some((PathBuf::from("/run/isobench"), 500)),
        };
        let check = |text: &str| parse(text).unwrap().check_host(&host);
        let ok = "name = \"x\"\n[vm]\nmemory_mib = 1024\ncpus = 2\ndisk_mib = 500\n[container]\ncpus = 2.0\n[[workload]]\nkind = \"noop\"\n";
        check(ok).unwrap();
        for (section, expected) in [
            (
                "[vm]\nmemory_mib = 1025",
                "t.toml: vm.memory_mib: 1025 MiB is more than this host's memory (1024 MiB, MemTotal in /proc/meminfo)",
            ),
            (
                "[vm]\ncpus = 3",
                "t.toml: vm.cpus: 3 CPUs are more than this host's 2 (available_parallelism)",
            ),
            (
                "[vm]\ndisk_mib = 501",
                "t.toml: vm.disk_mib: a guest disk of 501 MiB is more than the 500 MiB free in /run/isobench",
            ),
            (
                "[container]\ncpus = 2.5",
                "t.toml: container.cpus: 2.5 CPUs are more than this host's 2",
            ),
        ] {
            let text = format!("name = \"x\"\n{section}\n[[workload]]\nkind = \"noop\"\n");
            let msg = check(&text).unwrap_err().to_string();
            assert!(msg.starts_with(expected), "{msg}");
            // Only when the plan has the environment.
            let mut plan = parse(&text).unwrap();
            plan.environments = vec![EnvKind::Native];
            plan.check_host(&host).unwrap();
        }
        // A fileio guest's scratch disk: 400 + 50 + 64 MiB.
        let msg = check("name = \"x\"\n[[workload]]\nkind = \"fileio\"\nfile_mib = 400\n")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("t.toml: workload `fileio`: a guest disk of 514 MiB"),
            "{msg}"
        );
        // Figures not known: nothing is refused.
        let unknown = HostCapacity::default();
        parse("name = \"x\"\n[vm]\nmemory_mib = 99999999\n[[workload]]\nkind = \"noop\"\n")
            .unwrap()
            .check_host(&unknown)
            .unwrap();
        // This host's own figures are found.
        let here = HostCapacity::detect(Path::new("/nonexistent-isobench/run"));
        assert!(here.memory_mib.is_some_and(|m| m > 0), "{here:?}");
        assert!(here.cpus.is_some_and(|c| c > 0), "{here:?}");
        assert!(here.disk_free.is_some(), "{here:?}");
    }

    #[test]
    fn the_instance_count_cannot_wrap() {
        let mut plan = parse(&noop_named("x")).unwrap();
        plan.workloads[0].reps = u32::MAX;
        plan.workloads[0].warmups = u32::MAX;
        let mut second = plan.workloads[0].clone();
        second.name = "y".into();
        second.spec = WorkloadSpec::Density {
            instances: u64::MAX,
            settle_ms: 1,
        };
        plan.workloads.push(second);
        assert_eq!(plan.instance_count(), usize::MAX);
        plan.workloads.pop();
        assert_eq!(
            plan.instance_count(),
            2 * u32::MAX as usize * plan.environments.len()
        );
    }

    #[test]
    fn every_kind_parameter_can_be_written_in_a_scenario() {
        for kind in WorkloadKind::ALL {
            for p in kind.params() {
                assert!(
                    ENTRY_PARAMS.contains(&p.name),
                    "{kind}.{} missing from WorkloadEntry",
                    p.name
                );
            }
        }
        for name in ENTRY_PARAMS {
            assert!(
                WorkloadKind::ALL
                    .iter()
                    .any(|k| k.default_of(name).is_some()),
                "{name} belongs to no workload kind"
            );
        }
        let plan = parse("name = \"x\"\n[[workload]]\nkind = \"net\"\nrequests = 9\n").unwrap();
        assert_eq!(
            plan.workloads[0].spec,
            WorkloadSpec::Net {
                requests: 9,
                bulk_mib: 64
            }
        );
    }

    #[test]
    fn command_workloads_are_validated() {
        let ok = r#"
name = "apps"
[[workload]]
kind = "command"
name = "sysbench-cpu"
argv = ["sysbench", "cpu", "--time=5", "run"]
files = ["/etc/hostname"]
metrics = [{ name = "events_per_s", unit = "1/s", regex = 'events per second:\s+([0-9.]+)', better = "higher" }]
"#;
        let plan = parse(ok).unwrap();
        let w = &plan.workloads[0];
        let c = w.command.as_ref().unwrap();
        assert_eq!(c.argv[0], "sysbench");
        assert_eq!(c.metrics[0].name, "events_per_s");
        assert_eq!(
            w.spec,
            WorkloadSpec::Command {
                argv: c.argv.clone()
            }
        );
        let msg = error("name = \"x\"\n[[workload]]\nkind = \"command\"\n");
        assert!(
            msg.contains("workload[0].argv") && msg.contains("needs `argv"),
            "{msg}"
        );
        let msg = error("name = \"x\"\n[[workload]]\nkind = \"command\"\nargv = []\n");
        assert!(msg.starts_with("t.toml:4:8: workload[0].argv"), "{msg}");
        let msg = error("name = \"x\"\n[[workload]]\nkind = \"cpu\"\nargv = [\"ls\"]\n");
        assert!(msg.contains("belongs to `command` workloads"), "{msg}");
        let msg = error(
            "name = \"x\"\n[[workload]]\nkind = \"command\"\nargv = [\"ls\"]\nmetrics = [{ name = \"x\", unit = \"s\", regex = \"([\", better = \"lower\" }]\n",
        );
        assert!(
            msg.contains("invalid regex") && msg.contains("t.toml:5:"),
            "{msg}"
        );
        let msg = error(
            "name = \"x\"\n[[workload]]\nkind = \"command\"\nargv = [\"ls\"]\nmetrics = [{ name = \"startup_ms\", unit = \"s\", regex = \"(1)\", better = \"lower\" }]\n",
        );
        assert!(msg.contains("measured by isobench itself"), "{msg}");
        let msg = error(
            "name = \"x\"\n[[workload]]\nkind = \"command\"\nargv = [\"ls\"]\nfiles = [\"rel/path\"]\n",
        );
        assert!(
            msg.contains("workload[0].files[0]") && msg.contains("absolute"),
            "{msg}"
        );
        let msg = error(
            "name = \"x\"\n[[workload]]\nkind = \"command\"\nargv = [\"ls\"]\nfiles = [\"/etc\", \"/nonexistent-isobench\"]\n",
        );
        assert!(
            msg.starts_with("t.toml:5:18: workload[0].files[1]: `/nonexistent-isobench` does not exist on the host"),
            "{msg}"
        );
    }

    #[test]
    fn adaptive_repetitions_are_validated() {
        let plan = parse("name = \"x\"\nreps = 3\nmax_reps = 10\ntarget_rsd = 2.5\n[[workload]]\nkind = \"noop\"\n[[workload]]\nkind = \"cpu\"\nmax_reps = 4\ntarget_rsd = 5.0\n").unwrap();
        assert_eq!(
            plan.workloads[0].adaptive,
            Some(Adaptive {
                max_reps: 10,
                target_rsd: 2.5
            })
        );
        assert_eq!(
            plan.workloads[1].adaptive,
            Some(Adaptive {
                max_reps: 4,
                target_rsd: 5.0
            })
        );
        assert_eq!(plan.workloads[0].reps, 3);
        assert_eq!(plan.instance_count(), (10 + 1 + 4 + 1) * 3);
        let msg = error("name = \"x\"\nmax_reps = 5\n[[workload]]\nkind = \"noop\"\n");
        assert!(msg.contains("need `target_rsd` too"), "{msg}");
        let msg = error(
            "name = \"x\"\nreps = 6\nmax_reps = 5\ntarget_rsd = 1.0\n[[workload]]\nkind = \"noop\"\n",
        );
        assert!(msg.contains("at least `reps` (6)"), "{msg}");
        let msg =
            error("name = \"x\"\nmax_reps = 5\ntarget_rsd = -1.0\n[[workload]]\nkind = \"noop\"\n");
        assert!(msg.contains("positive percentage"), "{msg}");
    }

    #[test]
    fn container_section_is_validated() {
        let ok = "name = \"x\"\n[container]\nmemory = \"64M\"\ncpus = 0.5\npids = 64\nvolumes = [\"/tmp:/data:ro\"]\n[[workload]]\nkind = \"noop\"\n";
        let plan = parse(ok).unwrap();
        assert_eq!(plan.container.limits.memory_bytes, Some(64 << 20));
        assert_eq!(plan.container.limits.cpus, Some(0.5));
        assert_eq!(plan.container.limits.pids, Some(64));
        assert!(plan.container.volumes[0].read_only);
        let msg =
            error("name = \"x\"\n[container]\nmemory = \"lots\"\n[[workload]]\nkind = \"noop\"\n");
        assert!(
            msg.starts_with("t.toml:3:10: container.memory: `lots`"),
            "{msg}"
        );
        let msg = error("name = \"x\"\n[container]\ncpus = 0\n[[workload]]\nkind = \"noop\"\n");
        assert!(msg.starts_with("t.toml:3:8: container.cpus"), "{msg}");
        let msg =
            error("name = \"x\"\n[container]\nmemory = \"4k\"\n[[workload]]\nkind = \"noop\"\n");
        assert!(
            msg.starts_with(
                "t.toml:3:10: container.memory: `4k`: a memory limit must be at least 6M"
            ),
            "{msg}"
        );
        let msg = error(
            "name = \"x\"\n[container]\nvolumes = [\"/nope-isobench:/x\"]\n[[workload]]\nkind = \"noop\"\n",
        );
        assert!(
            msg.contains("container.volumes[0]") && msg.contains("does not exist"),
            "{msg}"
        );
    }

    /// A scenario of `n` distinctly named workloads.
    fn many_workloads(n: usize) -> String {
        let mut text = String::from("name = \"big\"\n");
        for i in 0..n {
            text.push_str(&format!(
                "[[workload]]\nkind = \"cpu\"\nname = \"w{i}\"\nrounds = 5\n\n"
            ));
        }
        text
    }

    #[test]
    fn a_large_scenario_is_validated_in_linear_time() {
        // No wall-time bound (the machines are shared): the figures are
        // printed; 50,000 workloads took 6.3 s with the quadratic name check.
        for n in [25_000, 50_000] {
            let text = many_workloads(n);
            let started = std::time::Instant::now();
            let plan = parse(&text).unwrap();
            eprintln!(
                "{n} workloads ({} MB): validated in {:?}",
                text.len() / 1_000_000,
                started.elapsed()
            );
            assert_eq!(plan.workloads.len(), n);
            assert_eq!(plan.workloads[n - 1].name, format!("w{}", n - 1));
        }
        // A duplicate at the very end is still found, and named.
        let text = many_workloads(1000) + "[[workload]]\nkind = \"noop\"\nname = \"w7\"\n";
        let msg = error(&text);
        assert!(
            msg.contains("workload[1000].name") && msg.contains("`w7` is already defined"),
            "{msg}"
        );
        // An unknown --workload lists only the first names.
        let o = Overrides {
            workloads: Some(vec!["nosuch".into()]),
            ..Overrides::default()
        };
        let msg = Plan::parse(&many_workloads(1000), "t.toml", &o)
            .unwrap_err()
            .to_string();
        assert!(msg.contains("w19, … and 980 more)"), "{msg}");
    }

    #[test]
    fn every_environment_runs_once() {
        let plan = parse("name = \"x\"\nenvironments = [\"native\", \"container\", \"native\", \"container\"]\n[[workload]]\nkind = \"noop\"\n").unwrap();
        assert_eq!(plan.environments, [EnvKind::Native, EnvKind::Container]);
        let o = Overrides {
            environments: Some(vec![EnvKind::Vm, EnvKind::Native, EnvKind::Vm]),
            ..Overrides::default()
        };
        let plan = Plan::parse(&noop_named("x"), "t.toml", &o).unwrap();
        assert_eq!(plan.environments, [EnvKind::Vm, EnvKind::Native]);
        assert_eq!(plan.instance_count(), 2 * (3 + 1));
    }

    #[test]
    fn the_runtimes_keys_are_read_and_checked() {
        use crate::env::oci::{DaemonRuntime, GvisorPlatform};
        let plan = parse("name = \"x\"\n[[workload]]\nkind = \"noop\"\n").unwrap();
        assert_eq!(plan.container.gvisor_platform, GvisorPlatform::Ptrace);
        assert_eq!(plan.container.docker_runtime, DaemonRuntime::Default);
        assert_eq!(plan.environments, EnvKind::DEFAULT.to_vec());
        let plan = parse(
            "name = \"x\"\nenvironments = [\"gvisor\", \"docker\"]\n[container]\n\
             gvisor_platform = \"systrap\"\ndocker_runtime = \"runsc\"\n\
             podman_runtime = \"runc\"\n[[workload]]\nkind = \"noop\"\n",
        )
        .unwrap();
        assert_eq!(plan.environments, [EnvKind::Gvisor, EnvKind::Docker]);
        assert_eq!(plan.container.gvisor_platform, GvisorPlatform::Systrap);
        assert_eq!(plan.container.docker_runtime.flag(), Some("runsc"));
        assert_eq!(plan.container.podman_runtime, DaemonRuntime::Runc);
        let e = parse(
            "name = \"x\"\n[container]\ndocker_runtime = \"kata\"\n[[workload]]\nkind = \"noop\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("docker_runtime") && e.contains("runsc"), "{e}");
    }

    #[test]
    fn container_seccomp_is_validated() {
        let scenario = |v: &str| {
            format!("name = \"x\"\n[container]\nseccomp = \"{v}\"\n[[workload]]\nkind = \"noop\"\n")
        };
        let plan = parse("name = \"x\"\n[[workload]]\nkind = \"noop\"\n").unwrap();
        assert_eq!(plan.container.seccomp, SeccompChoice::Default);
        assert_eq!(
            parse(&scenario("none")).unwrap().container.seccomp,
            SeccompChoice::None
        );
        // A relative path is the scenario file's neighbour.
        let dir = crate::testutil::TempDir::new("scenario-seccomp");
        std::fs::write(
            dir.join("p.json"),
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "keyctl", "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let origin = dir.join("t.toml").display().to_string();
        let plan = Plan::parse(&scenario("p.json"), &origin, &Overrides::default()).unwrap();
        assert_eq!(
            plan.container.seccomp,
            SeccompChoice::Profile(dir.join("p.json"))
        );
        // A missing file, or a bad profile: the key, the file and the fix.
        let msg = error(&scenario("/nope-isobench.json"));
        assert!(
            msg.starts_with(
                "t.toml:3:11: container.seccomp: cannot read seccomp profile /nope-isobench.json"
            ) && msg.contains("\"none\""),
            "{msg}"
        );
        std::fs::write(
            dir.join("bad.json"),
            r#"{"defaultAction": "SCMP_ACT_PERMIT"}"#,
        )
        .unwrap();
        let msg = Plan::parse(&scenario("bad.json"), &origin, &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("container.seccomp")
                && msg.contains("bad.json")
                && msg.contains("SCMP_ACT_PERMIT"),
            "{msg}"
        );
        assert!(error(&scenario("")).contains("container.seccomp"));
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let text = "name = \"x\"\n[[workload]]\nkind = \"noop\"\n[[workload]]\nkind = \"cpu\"\nrounds = 5\n";
        let o = Overrides {
            environments: Some(vec![EnvKind::Native]),
            workloads: Some(vec!["cpu".into()]),
            reps: Some(7),
            warmups: Some(0),
        };
        let plan = Plan::parse(text, "t.toml", &o).unwrap();
        assert_eq!(plan.environments, [EnvKind::Native]);
        assert_eq!(plan.workloads.len(), 1);
        assert_eq!(plan.workloads[0].reps, 7);
        assert_eq!(plan.workloads[0].warmups, 0);
        assert_eq!(
            plan.workloads[0].spec,
            WorkloadSpec::Cpu {
                rounds: 5,
                buffer_kib: crate::workload::CPU_DEFAULT_BUFFER_KIB,
                threads: 1,
            }
        );
        let o = Overrides {
            workloads: Some(vec!["fio".into()]),
            ..Overrides::default()
        };
        let msg = Plan::parse(text, "t.toml", &o).unwrap_err().to_string();
        assert!(
            msg.contains("no workload named `fio` (it has: noop, cpu)"),
            "{msg}"
        );
        let o = Overrides {
            reps: Some(0),
            ..Overrides::default()
        };
        assert!(Plan::parse(text, "t.toml", &o).is_err());
    }
}
