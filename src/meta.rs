//! Run metadata: the host, the tools and every knob, written once per run
//! to `meta.json` (and rewritten as the run goes, so a crash keeps it).

use crate::record::{self, RecordError};
use crate::workload::Better;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

/// File name of the metadata.
pub const META: &str = "meta.json";

/// The most isobench reads of a `meta.json`: 64 MiB. A run's is a few KiB
/// (its scenario, host and knobs); a larger one is not a run's.
pub const META_LIMIT: u64 = 64 << 20;

/// The isobench version and the git revision it was built from.
pub fn version() -> String {
    format!(
        "{} ({})",
        env!("CARGO_PKG_VERSION"),
        env!("ISOBENCH_GIT_REV")
    )
}

/// The host a run ran on: its inventory as `sysinfo` reads it, plus what
/// `sysinfo` does not know (the CPUs isobench may use, the cgroup layout).
///
/// Fields added after the first `meta.json`s were written default when a
/// file lacks them, so `report` and `compare` still read old run
/// directories.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// The CPU's brand (`sysinfo`; on Linux the `model name` of
    /// `/proc/cpuinfo`).
    pub cpu_model: String,
    /// The CPU's frequency in MHz as `sysinfo` reads it (cpufreq's current
    /// frequency, else `cpu MHz` of `/proc/cpuinfo`); `None` when unknown.
    #[serde(default)]
    pub cpu_mhz: Option<u64>,
    /// Physical cores of the host.
    #[serde(default)]
    pub physical_cores: Option<usize>,
    /// Logical CPUs of the host (hardware threads).
    #[serde(default)]
    pub logical_cores: Option<usize>,
    /// CPUs available to isobench (`available_parallelism`: the affinity
    /// mask and a cgroup quota count), which may be fewer than
    /// `logical_cores`.
    pub cores: usize,
    /// Host kernel release (`uname -r`).
    pub kernel: String,
    /// The operating system in one line (`sysinfo`'s long OS version:
    /// `Linux (Debian GNU/Linux 12)`; older files have `PRETTY_NAME`).
    pub os: String,
    /// The distribution's name (`NAME` of `/etc/os-release`).
    #[serde(default)]
    pub os_name: Option<String>,
    /// The distribution's version (`VERSION_ID` of `/etc/os-release`).
    #[serde(default)]
    pub os_version: Option<String>,
    /// Total memory in MiB.
    pub memory_mib: u64,
    /// cgroup setup: `v1`, `v2` or `hybrid`.
    pub cgroup_mode: String,
    /// The name this host goes by in merged reports and the history store
    /// (`ISOBENCH_HOST_LABEL`, when set and not empty; otherwise the host
    /// is known by a fingerprint of its CPU and memory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// The environment variable that names the host in `meta.json`
/// (`host.label`): a CI matrix sets it per runner.
pub const HOST_LABEL_ENV: &str = "ISOBENCH_HOST_LABEL";

impl Host {
    /// Takes the host's inventory (`sysinfo`) and its cgroup layout (`/sys`).
    pub fn detect() -> Host {
        use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
        let sys = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_frequency())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        )
        .ok();
        let cpus = sys.as_ref().map_or(&[][..], |s| s.cpus());
        let first = cpus.first();
        let known = |s: &str| (!s.trim().is_empty()).then(|| s.trim().to_string());
        Host {
            cpu_model: first
                .and_then(|c| known(c.brand()))
                .unwrap_or_else(|| "unknown".into()),
            cpu_mhz: first.map(|c| c.frequency()).filter(|&f| f > 0),
            physical_cores: System::physical_core_count().ok().filter(|&n| n > 0),
            logical_cores: (!cpus.is_empty()).then_some(cpus.len()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: System::kernel_version().unwrap_or_else(|_| "unknown".into()),
            os: System::long_os_version().unwrap_or_else(|_| "unknown".into()),
            os_name: System::name().ok(),
            os_version: System::os_version().ok(),
            memory_mib: sys.as_ref().map_or(0, |s| s.total_memory() >> 20),
            cgroup_mode: crate::cgroup::detect(Path::new("/sys/fs/cgroup")).to_string(),
            label: std::env::var(HOST_LABEL_ENV)
                .ok()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty()),
        }
    }
}

/// The value of the first `key : value` line with this key. The agent's
/// reader (of the guest's `/proc/self/status` and `/proc/meminfo`): it is in
/// every image and initramfs, and stays with the standard library; the host
/// side reads `/proc` through `procfs`.
pub fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// A `/proc/meminfo` figure (`MemTotal:   24000 kB`), in KiB; the agent's
/// (see [`field`]).
pub fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    field(meminfo, key).and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `meminfo` under a procfs root (`/proc`), parsed by `procfs`; its figures
/// are in bytes.
pub fn meminfo(proc_root: &Path) -> Option<procfs::Meminfo> {
    use procfs::FromRead;
    procfs::Meminfo::from_file(proc_root.join("meminfo")).ok()
}

/// Unit and direction of a metric, so reports and `compare` know which way is better.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricInfo {
    /// The unit.
    pub unit: String,
    /// Which direction is better.
    pub better: Better,
}

/// Where a run is: running, or how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still going (or killed before it could say otherwise).
    Running,
    /// Every instance did what it should.
    Complete,
    /// Some instance failed, or digests differed.
    Failed,
    /// Stopped by a signal or a closed output.
    Interrupted,
}

impl RunStatus {
    /// The status as `meta.json` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Complete => "complete",
            RunStatus::Failed => "failed",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The run's id (also its directory name).
    pub run_id: String,
    /// Running, complete, failed (some instance failed) or interrupted.
    pub status: RunStatus,
    /// UTC start time, RFC 3339.
    pub started: String,
    /// UTC end time, RFC 3339.
    pub finished: Option<String>,
    /// Wall time of the whole run in seconds.
    pub wall_s: Option<f64>,
    /// isobench version and git revision.
    pub isobench: String,
    /// The git revision of the code under test (`run --revision`, else
    /// `git rev-parse HEAD` of the working directory when it is a git
    /// work tree), for the history store.
    #[serde(default)]
    pub revision: Option<String>,
    /// The host.
    pub host: Host,
    /// QEMU's version line, when the run used VMs.
    pub qemu: Option<String>,
    /// The accelerator and why it was chosen, when the run used VMs.
    pub accelerator: Option<crate::env::vm::AccelChoice>,
    /// The guest kernel, when the run used VMs.
    pub guest_kernel: Option<String>,
    /// Each real runtime's program, path, version, flags, cgroup driver
    /// and the workarounds this host needed, by environment (runc, crun,
    /// gvisor, docker, podman).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub runtimes: BTreeMap<String, serde_json::Value>,
    /// The image (agent checksum and sizes).
    pub image: Option<serde_json::Value>,
    /// The validated scenario, overrides applied.
    pub scenario: serde_json::Value,
    /// Every environment's knobs.
    pub environments: BTreeMap<String, serde_json::Value>,
    /// Unit and direction of every series recorded, keyed
    /// `<workload>/<metric>` (the same in every environment): a metric's
    /// name alone does not say it (`score` is µs for `net`, rounds/s for
    /// `cpu`).
    pub metrics: BTreeMap<String, MetricInfo>,
    /// The order instances ran in.
    pub order: String,
    /// Remarks a reader needs (digest checks, skipped pieces).
    pub notes: Vec<String>,
}

impl Meta {
    /// Records the unit and direction of a workload's figures.
    pub fn declare(&mut self, workload: &str, metrics: &[crate::workload::Metric]) {
        for m in metrics {
            self.metrics
                .entry(format!("{workload}/{}", m.name))
                .or_insert(MetricInfo {
                    unit: m.unit.clone(),
                    better: m.better,
                });
        }
    }

    /// Writes `meta.json` into `dir` (through a temporary file and a rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        crate::record::write_file(&dir.join(META), &serde_json::to_vec_pretty(self)?)
    }

    /// Reads `meta.json` from `dir` (through [`record::open_run_file`], at
    /// most [`META_LIMIT`] bytes).
    pub fn load(dir: &Path) -> Result<Meta, RecordError> {
        let path = dir.join(META);
        let mut bytes = Vec::new();
        record::open_run_file(&path, META_LIMIT)?
            .read_to_end(&mut bytes)
            .map_err(|source| RecordError::Io {
                path: path.clone(),
                source,
            })?;
        Meta::parse(&bytes, &path)
    }

    /// Parses the bytes of a `meta.json` (`path` names it in errors).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Meta, RecordError> {
        serde_json::from_slice(bytes).map_err(|e| record::json_error(path, None, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_by_key() {
        let text =
            "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\ncpu MHz\t\t: 2299.998\n";
        assert_eq!(
            field(text, "model name").as_deref(),
            Some("Intel(R) Xeon(R) Processor")
        );
        assert_eq!(field(text, "cpu MHz").as_deref(), Some("2299.998"));
        assert_eq!(field(text, "flags"), None);
        let meminfo = "MemTotal:       24562856 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(meminfo_kib(meminfo, "MemTotal"), Some(24562856));
        assert_eq!(meminfo_kib(meminfo, "MemAvailable"), Some(20000000));
        assert_eq!(meminfo_kib(meminfo, "SwapTotal"), None);
    }

    #[test]
    fn a_bad_meta_json_is_named_with_its_line() {
        let path = Path::new("runs/x/meta.json");
        let err = Meta::parse(
            b"{\n  \"run_id\": \"a\",\n  \"status\": \"running\",\n",
            path,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("runs/x/meta.json:4: EOF while parsing"),
            "{err}"
        );
        let err = Meta::parse(b"{\"run_id\": 7}", path)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "runs/x/meta.json:1: invalid type: integer `7`, expected a string (column 12)"
        );
        let dir = crate::testutil::TempDir::new("meta-fifo");
        nix::unistd::mkfifo(&dir.join(META), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = Meta::load(&dir).unwrap_err().to_string();
        assert!(err.contains("meta.json is a FIFO"), "{err}");
    }

    /// The `/proc/meminfo` of a 2-core, 24 GiB Debian 12 host (kernel 6.1),
    /// trimmed to the lines `procfs` requires and a few it does not.
    const MEMINFO: &str = "\
MemTotal:       24684084 kB
MemFree:        20795812 kB
MemAvailable:   23864776 kB
Buffers:           15904 kB
Cached:          3204696 kB
SwapCached:            0 kB
Active:          2291628 kB
Inactive:        1266384 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Dirty:             18512 kB
Writeback:             0 kB
AnonPages:        351324 kB
Mapped:           134896 kB
Shmem:              8872 kB
Slab:             200696 kB
Committed_AS:    2979584 kB
VmallocTotal:   34359738367 kB
VmallocUsed:       14636 kB
VmallocChunk:          0 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    #[test]
    fn meminfo_is_read_under_a_proc_root() {
        let root = crate::testutil::TempDir::new("meta-meminfo");
        assert!(meminfo(&root).is_none(), "no file, no figures");
        std::fs::write(root.join("meminfo"), MEMINFO).unwrap();
        let m = meminfo(&root).unwrap();
        assert_eq!(m.mem_total, 24684084 * 1024);
        assert_eq!(m.mem_available, Some(23864776 * 1024));
        std::fs::write(root.join("meminfo"), "MemTotal: lots kB\n").unwrap();
        assert!(meminfo(&root).is_none());
    }

    /// The inventory `sysinfo` takes of this machine, checked for
    /// plausibility (no figure of a particular machine is asserted).
    #[test]
    fn host_is_described() {
        let host = Host::detect();
        crate::say!("this host: {host:?}");
        assert!(host.cores >= 1);
        assert!(!host.kernel.is_empty() && host.kernel != "unknown");
        let release = nix::sys::utsname::uname().unwrap();
        assert_eq!(host.kernel, release.release().to_string_lossy());
        assert!(["v1", "v2", "hybrid", "none"].contains(&host.cgroup_mode.as_str()));
        assert!(
            !host.cpu_model.is_empty() && host.cpu_model != "unknown",
            "{host:?}"
        );
        let logical = host.logical_cores.expect("logical CPUs");
        assert!(logical >= host.cores, "{host:?}");
        let physical = host.physical_cores.expect("physical cores");
        assert!((1..=logical).contains(&physical), "{host:?}");
        assert!(
            host.cpu_mhz.is_some_and(|f| (100..20_000).contains(&f)),
            "{host:?}"
        );
        // The memory `sysinfo` sees is MemTotal.
        let total = meminfo(Path::new("/proc")).unwrap().mem_total >> 20;
        assert_eq!(host.memory_mib, total, "{host:?}");
        assert!(host.os.starts_with("Linux"), "{host:?}");
        assert!(host.os_name.as_deref().is_some_and(|n| !n.is_empty()));
    }

    /// A `meta.json` written before the inventory came from `sysinfo`
    /// still loads (what `report` and `compare` do with old runs).
    #[test]
    fn an_old_host_description_still_loads() {
        let old = r#"{"cpu_model": "AMD EPYC", "cores": 2, "kernel": "6.1.0-18-cloud-amd64",
            "os": "Debian GNU/Linux 12 (bookworm)", "memory_mib": 24105, "cgroup_mode": "hybrid"}"#;
        let host: Host = serde_json::from_str(old).unwrap();
        assert_eq!(host.cpu_model, "AMD EPYC");
        assert_eq!(host.memory_mib, 24105);
        assert_eq!(
            (host.cpu_mhz, host.physical_cores, host.logical_cores),
            (None, None, None)
        );
        assert_eq!(host.os_name, None);
    }
}
