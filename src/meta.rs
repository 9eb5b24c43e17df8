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

/// The host a run ran on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// `model name` from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// CPUs available to isobench.
    pub cores: usize,
    /// Host kernel release (`uname -r`).
    pub kernel: String,
    /// `PRETTY_NAME` from `/etc/os-release`.
    pub os: String,
    /// `MemTotal` in MiB.
    pub memory_mib: u64,
    /// cgroup setup: `v1`, `v2` or `hybrid`.
    pub cgroup_mode: String,
}

impl Host {
    /// Reads the host's description from `/proc`, `/etc` and `/sys`.
    pub fn detect() -> Host {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
        Host {
            cpu_model: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".into()),
            os: os
                .lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_else(|| "unknown".into()),
            memory_mib: meminfo_kib(&meminfo, "MemTotal").map_or(0, |kib| kib / 1024),
            cgroup_mode: crate::cgroup::detect(Path::new("/sys/fs/cgroup")).to_string(),
        }
    }
}

/// The value of the first `key : value` line with this key.
pub fn field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}

/// A `/proc/meminfo` figure (`MemTotal:   24000 kB`), in KiB.
pub fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    field(meminfo, key).and_then(|v| v.split_whitespace().next()?.parse().ok())
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
    /// The host.
    pub host: Host,
    /// QEMU's version line, when the run used VMs.
    pub qemu: Option<String>,
    /// The accelerator and why it was chosen, when the run used VMs.
    pub accelerator: Option<crate::env::vm::AccelChoice>,
    /// The guest kernel, when the run used VMs.
    pub guest_kernel: Option<String>,
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

    #[test]
    fn host_is_described() {
        let host = Host::detect();
        assert!(host.cores >= 1);
        assert!(!host.kernel.is_empty() && host.kernel != "unknown");
        assert!(["v1", "v2", "hybrid", "none"].contains(&host.cgroup_mode.as_str()));
    }
}
