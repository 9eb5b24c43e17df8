//! cgroups: one per instance, for limits and accounting.
//!
//! The host's layout is detected once, from the file system types under the
//! cgroup root (the way youki and systemd do it): `cgroup2` at the root is
//! the unified (v2) layout; a tmpfs root with a `cgroup2` mount at
//! `unified/` is hybrid (v1 controllers plus an empty v2 tree, as on these
//! build machines); a tmpfs root without it is legacy v1. Hybrid hosts are
//! driven through their v1 controllers, where the controllers are.
//!
//! isobench creates its cgroups under a parent of its own, `isobench/`, at
//! the root of each hierarchy it uses (as Docker does with `docker/`), one
//! per instance: `isobench/<instance>`. The instance's first process joins
//! it before exec (it writes `0` to `cgroup.procs`), so accounting starts at
//! its first instruction. Every path function takes the root as a
//! parameter, so tests run on fixture trees and on a private cgroup2 mount.

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The name of isobench's parent cgroup in every hierarchy.
pub const PARENT: &str = "isobench";

/// The CFS period isobench uses for CPU limits (the kernel's default).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Only cgroup v1 hierarchies.
    V1,
    /// v1 controllers plus a cgroup2 mount at `unified/`.
    Hybrid,
    /// Only cgroup v2.
    V2,
    /// No cgroup file system found at the root.
    None,
}

impl fmt::Display for CgroupMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            CgroupMode::V1 => "v1",
            CgroupMode::Hybrid => "hybrid",
            CgroupMode::V2 => "v2",
            CgroupMode::None => "none",
        })
    }
}

/// Detects the layout under `root` (normally `/sys/fs/cgroup`).
pub fn detect(root: &Path) -> CgroupMode {
    let Ok(fs) = statfs(root) else {
        return CgroupMode::None;
    };
    if fs.filesystem_type() == CGROUP2_SUPER_MAGIC {
        return CgroupMode::V2;
    }
    if fs.filesystem_type() != TMPFS_MAGIC {
        return CgroupMode::None;
    }
    match statfs(&root.join("unified")) {
        Ok(u) if u.filesystem_type() == CGROUP2_SUPER_MAGIC => CgroupMode::Hybrid,
        _ => CgroupMode::V1,
    }
}

/// Resource limits of one instance. `None`: unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Memory limit in bytes (swap is not allowed on top of it).
    pub memory_bytes: Option<u64>,
    /// CPU bandwidth in CPUs: `1.5` is a quota of 150 ms per 100 ms period.
    pub cpus: Option<f64>,
    /// Maximum number of processes and threads.
    pub pids: Option<u64>,
}

impl Limits {
    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.memory_bytes.is_some() || self.cpus.is_some() || self.pids.is_some()
    }

    /// The CFS quota for `cpus`, in µs per [`CPU_PERIOD_US`].
    pub fn cpu_quota_us(&self) -> Option<u64> {
        self.cpus
            .map(|c| ((c * CPU_PERIOD_US as f64).round() as u64).max(1000))
    }
}

/// Parses a size such as `512M`, `1.5G`, `64k` or `1048576` (bytes; the
/// suffixes are binary: k = 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_lowercase() {
                'k' => 1 << 10,
                'm' => 1 << 20,
                'g' => 1 << 30,
                't' => 1 << 40,
                'b' => 1,
                _ => {
                    return Err(format!(
                        "`{text}`: unknown size suffix `{c}` (use k, M, G or T)"
                    ));
                }
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{text}`: expected a size such as 256M, 1.5G or 1048576"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("`{text}`: a size must be positive"));
    }
    let exact = (value * mult as f64).round();
    // `as u64` would saturate: 99999999T would become 16 EiB.
    if exact >= u64::MAX as f64 {
        return Err(format!(
            "`{text}`: too large; a size must be below 16777216T (2^64 bytes)"
        ));
    }
    let bytes = exact as u64;
    if bytes < 4096 {
        return Err(format!("`{text}`: at least 4k is needed"));
    }
    Ok(bytes)
}

/// The smallest memory limit taken: 6 MiB, Docker's minimum too. Below it
/// a program is OOM-killed as it starts, which reads as a failed run, not as
/// the bad limit it is.
pub const MIN_MEMORY_LIMIT: u64 = 6 << 20;

/// Parses a memory limit (`run --memory`, `exec --memory`, `[container]
/// memory`): a size of at least [`MIN_MEMORY_LIMIT`].
pub fn parse_memory_limit(text: &str) -> Result<u64, String> {
    let bytes = parse_size(text)?;
    if bytes < MIN_MEMORY_LIMIT {
        return Err(format!(
            "`{text}`: a memory limit must be at least 6M (as Docker requires: less \
             leaves no room for the program to start)"
        ));
    }
    Ok(bytes)
}

/// What a cgroup counted for one instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// CPU time (user + system) of every process that ran in it, in ns.
    pub cpu_ns: Option<u64>,
    /// Highest memory charge, in bytes.
    pub memory_peak: Option<u64>,
    /// Memory charge when read, in bytes.
    pub memory_current: Option<u64>,
    /// Processes killed by the OOM killer for this cgroup's limit.
    pub oom_kills: Option<u64>,
    /// Forks refused because of the pids limit.
    pub pids_refused: Option<u64>,
}

/// A cgroup problem; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// No hierarchy with the controllers isobench needs.
    #[error("{0}")]
    Unsupported(String),
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A limit cannot be applied here.
    #[error("{0}")]
    Limit(String),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Which hierarchies an instance's cgroup spans (`[container] cgroups`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupUse {
    /// The cgroup2 hierarchy, entered at birth with `CLONE_INTO_CGROUP`
    /// (free: CPU accounting, plus whatever controllers it offers), and v1
    /// controllers only for limits that cgroup2 cannot apply.
    #[default]
    Auto,
    /// Also every v1 controller present, for memory accounting on v1 and
    /// hybrid hosts. Joining a v1 cgroup costs an RCU grace period (about
    /// 5–15 ms on these machines), paid inside the startup interval.
    All,
    /// No cgroup at all.
    None,
}

/// The mount points of the v1 controllers isobench uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct V1Mounts {
    /// The `memory` hierarchy.
    pub memory: Option<PathBuf>,
    /// The `cpu` hierarchy.
    pub cpu: Option<PathBuf>,
    /// The `cpuacct` hierarchy.
    pub cpuacct: Option<PathBuf>,
    /// The `pids` hierarchy.
    pub pids: Option<PathBuf>,
}

/// The hierarchies of a host that isobench can use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Driver {
    /// The host's layout.
    pub mode: CgroupMode,
    /// v1 controller hierarchies (v1 and hybrid hosts).
    pub v1: V1Mounts,
    /// The cgroup2 hierarchy (the root on v2 hosts, `unified/` on hybrid
    /// ones) and the controllers it offers.
    pub v2: Option<(PathBuf, Vec<String>)>,
}

/// Mount points of the v1 hierarchies, by controller, from a mountinfo text
/// (parsed by `procfs`, through [`crate::rundir::mount_table`]): each
/// `cgroup` mount whose super options name a controller isobench uses.
pub fn v1_mounts(mountinfo: &str) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for m in crate::rundir::mount_table(mountinfo) {
        if m.fs_type != "cgroup" {
            continue;
        }
        for c in ["memory", "cpu", "cpuacct", "pids"] {
            if m.super_options.contains_key(c) {
                out.push((c.to_string(), m.mount_point.clone()));
            }
        }
    }
    out
}

fn v2_controllers(root: &Path) -> Vec<String> {
    std::fs::read_to_string(root.join("cgroup.controllers"))
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// The controller that applies a limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Controller {
    Memory,
    Cpu,
    Cpuacct,
    Pids,
}

impl Controller {
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Pids => "pids",
        }
    }
}

impl Driver {
    /// The hierarchies of this host. `root` is `/sys/fs/cgroup`.
    pub fn detect(root: &Path, mountinfo: &str) -> Result<Driver, CgroupError> {
        let mode = detect(root);
        let mounts = v1_mounts(mountinfo);
        let find = |c: &str| mounts.iter().find(|(n, _)| n == c).map(|(_, p)| p.clone());
        let v1 = V1Mounts {
            memory: find("memory"),
            cpu: find("cpu"),
            cpuacct: find("cpuacct"),
            pids: find("pids"),
        };
        let v2_root = match mode {
            CgroupMode::V2 => Some(root.to_path_buf()),
            CgroupMode::Hybrid => Some(root.join("unified")),
            CgroupMode::V1 => None,
            CgroupMode::None => {
                return Err(CgroupError::Unsupported(format!(
                    "no cgroup file system at {}; mount cgroup2 there (or the v1 controllers)",
                    root.display()
                )));
            }
        };
        Ok(Driver {
            mode,
            v1,
            v2: v2_root.map(|r| {
                let c = v2_controllers(&r);
                (r, c)
            }),
        })
    }

    /// A driver for only the cgroup2 hierarchy mounted at `root` (a test
    /// bed: a private cgroup2 mount).
    pub fn v2_only(root: &Path) -> Driver {
        Driver {
            mode: CgroupMode::V2,
            v1: V1Mounts::default(),
            v2: Some((root.to_path_buf(), v2_controllers(root))),
        }
    }

    /// Removes isobench's parent cgroup from each of this driver's
    /// hierarchies where it is empty (another run's instances keep it).
    pub fn remove_empty_parents(&self) {
        let v1 = [
            &self.v1.memory,
            &self.v1.cpu,
            &self.v1.cpuacct,
            &self.v1.pids,
        ];
        let v2 = self.v2.as_ref().map(|(root, _)| root);
        for root in v1.into_iter().flatten().chain(v2) {
            let _ = std::fs::remove_dir(root.join(PARENT));
        }
    }

    fn v1_mount(&self, c: Controller) -> Option<&PathBuf> {
        match c {
            Controller::Memory => self.v1.memory.as_ref(),
            Controller::Cpu => self.v1.cpu.as_ref(),
            Controller::Cpuacct => self.v1.cpuacct.as_ref(),
            Controller::Pids => self.v1.pids.as_ref(),
        }
    }

    fn in_v2(&self, c: Controller) -> bool {
        self.v2
            .as_ref()
            .is_some_and(|(_, cs)| cs.iter().any(|x| x == c.name()))
    }

    /// The controllers these limits need.
    fn needed(limits: &Limits) -> Vec<Controller> {
        let mut n = Vec::new();
        if limits.memory_bytes.is_some() {
            n.push(Controller::Memory);
        }
        if limits.cpus.is_some() {
            n.push(Controller::Cpu);
        }
        if limits.pids.is_some() {
            n.push(Controller::Pids);
        }
        n
    }

    /// What this host cannot do with these limits, if anything.
    pub fn unsupported_limits(&self, limits: &Limits) -> Vec<String> {
        Self::needed(limits)
            .into_iter()
            .filter(|c| !self.in_v2(*c) && self.v1_mount(*c).is_none())
            .map(|c| {
                format!(
                    "the {} controller is available neither in a cgroup v1 hierarchy nor in cgroup2 here",
                    c.name()
                )
            })
            .collect()
    }

    /// The v1 controllers an instance joins for `limits` and `usage`.
    fn v1_controllers(&self, limits: &Limits, usage: CgroupUse) -> Vec<Controller> {
        let all = [
            Controller::Memory,
            Controller::Cpu,
            Controller::Cpuacct,
            Controller::Pids,
        ];
        let mut chosen: Vec<Controller> = match usage {
            CgroupUse::None => Vec::new(),
            CgroupUse::All => all.to_vec(),
            // Only what cgroup2 cannot do; CPU time comes from cgroup2.
            CgroupUse::Auto if self.v2.is_some() => Self::needed(limits)
                .into_iter()
                .filter(|c| !self.in_v2(*c))
                .collect(),
            // A v1-only host: accounting needs the v1 controllers.
            CgroupUse::Auto => all.to_vec(),
        };
        chosen.retain(|c| self.v1_mount(*c).is_some());
        chosen
    }

    /// Creates the instance cgroup `isobench/<name>` in the hierarchies
    /// `usage` and `limits` call for, and applies the limits.
    pub fn create(
        &self,
        name: &str,
        limits: &Limits,
        usage: CgroupUse,
    ) -> Result<Cgroup, CgroupError> {
        if let Some(problem) = self.unsupported_limits(limits).into_iter().next() {
            return Err(CgroupError::Limit(problem));
        }
        if usage == CgroupUse::None && limits.any() {
            return Err(CgroupError::Limit(
                "limits need a cgroup, but cgroups = \"none\" was asked for".into(),
            ));
        }
        let mut cgroup = Cgroup {
            v1: Vec::new(),
            v2: None,
        };
        if usage == CgroupUse::None {
            return Ok(cgroup);
        }
        let mut v1_dirs: Vec<PathBuf> = Vec::new();
        for c in self.v1_controllers(limits, usage) {
            let Some(mount) = self.v1_mount(c) else {
                continue;
            };
            let dir = mount.join(PARENT).join(name);
            // Co-mounted controllers (cpu,cpuacct) share one directory.
            if !v1_dirs.contains(&dir) {
                make_dir(&mount.join(PARENT), &dir, &[])?;
                v1_dirs.push(dir.clone());
            }
            cgroup.v1.push((c, dir));
        }
        if let Some((root, controllers)) = &self.v2 {
            let dir = root.join(PARENT).join(name);
            make_dir(&root.join(PARENT), &dir, controllers)?;
            cgroup.v2 = Some(dir);
        }
        // On failure the partly made cgroup is removed by its Drop.
        cgroup.apply(limits, self)?;
        Ok(cgroup)
    }
}

/// Removes isobench's parent cgroup (`isobench/`) from the root of
/// `cgroup_root` and from every hierarchy under it, where it is empty: a
/// parent that holds another run's instances stays (rmdir refuses). Returns
/// the ones removed.
pub fn remove_empty_parents(cgroup_root: &Path) -> Vec<PathBuf> {
    let mut candidates = vec![cgroup_root.join(PARENT)];
    for h in std::fs::read_dir(cgroup_root)
        .into_iter()
        .flatten()
        .flatten()
    {
        candidates.push(h.path().join(PARENT));
    }
    candidates
        .into_iter()
        .filter(|p| p.is_dir() && std::fs::remove_dir(p).is_ok())
        .collect()
}

/// Creates `parent` (enabling the cgroup2 `controllers` in it) if needed,
/// then `dir`. Should another run remove the empty parent in between
/// ([`remove_empty_parents`]), it is made again once.
fn make_dir(parent: &Path, dir: &Path, controllers: &[String]) -> Result<(), CgroupError> {
    make_parent(parent, controllers)?;
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            make_parent(parent, controllers)?;
            std::fs::create_dir(dir).map_err(io_at(dir))
        }
        other => other.map_err(io_at(dir)),
    }
}

fn make_parent(parent: &Path, controllers: &[String]) -> Result<(), CgroupError> {
    if !parent.is_dir() {
        match std::fs::create_dir(parent) {
            Ok(()) => enable_v2_controllers(parent, controllers)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(CgroupError::Io {
                    path: parent.to_path_buf(),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

fn enable_v2_controllers(parent: &Path, available: &[String]) -> Result<(), CgroupError> {
    let wanted: Vec<String> = ["cpu", "memory", "pids"]
        .iter()
        .filter(|c| available.iter().any(|a| a == *c))
        .map(|c| format!("+{c}"))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let file = parent.join("cgroup.subtree_control");
    std::fs::write(&file, wanted.join(" ")).map_err(io_at(&file))
}

/// One instance's cgroup: a directory per hierarchy. Removed on drop.
#[derive(Debug)]
pub struct Cgroup {
    v1: Vec<(Controller, PathBuf)>,
    v2: Option<PathBuf>,
}

fn write(path: PathBuf, value: &str) -> Result<(), CgroupError> {
    std::fs::write(&path, value).map_err(|source| CgroupError::Io { path, source })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file (`cpu.stat`, `memory.events`, ...).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(char::is_whitespace)?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    keyed(&std::fs::read_to_string(path).ok()?, key)
}

impl Cgroup {
    /// Every directory of this cgroup (v1 ones first), deduplicated.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut d: Vec<PathBuf> = self.v1.iter().map(|(_, p)| p.clone()).collect();
        d.dedup();
        d.extend(self.v2.iter().cloned());
        d
    }

    /// The cgroup2 directory, entered at birth with `CLONE_INTO_CGROUP`.
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// The v1 `cgroup.procs` files a process writes `0` into to join.
    pub fn v1_procs_files(&self) -> Vec<PathBuf> {
        let mut d: Vec<PathBuf> = self
            .v1
            .iter()
            .map(|(_, p)| p.join("cgroup.procs"))
            .collect();
        d.dedup();
        d
    }

    /// Every `cgroup.procs` file, for a process that joins by writing (no
    /// `CLONE_INTO_CGROUP`): the v1 ones and the cgroup2 one.
    pub fn all_procs_files(&self) -> Vec<PathBuf> {
        let mut d = self.v1_procs_files();
        d.extend(self.v2.iter().map(|p| p.join("cgroup.procs")));
        d
    }

    fn v1_dir(&self, c: Controller) -> Option<&PathBuf> {
        self.v1.iter().find(|(x, _)| *x == c).map(|(_, p)| p)
    }

    fn apply(&self, limits: &Limits, driver: &Driver) -> Result<(), CgroupError> {
        if let Some(bytes) = limits.memory_bytes {
            if let Some(dir) = self.v1_dir(Controller::Memory) {
                write(dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                // No swap beyond the limit, where swap is accounted at all.
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(memsw, &bytes.to_string())?;
                }
            } else if let (Some(dir), true) = (&self.v2, driver.in_v2(Controller::Memory)) {
                write(dir.join("memory.max"), &bytes.to_string())?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(swap, "0")?;
                }
            }
        }
        if let Some(quota) = limits.cpu_quota_us() {
            if let Some(dir) = self.v1_dir(Controller::Cpu) {
                write(dir.join("cpu.cfs_period_us"), &CPU_PERIOD_US.to_string())?;
                write(dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            } else if let (Some(dir), true) = (&self.v2, driver.in_v2(Controller::Cpu)) {
                write(dir.join("cpu.max"), &format!("{quota} {CPU_PERIOD_US}"))?;
            }
        }
        if let Some(max) = limits.pids {
            if let Some(dir) = self.v1_dir(Controller::Pids) {
                write(dir.join("pids.max"), &max.to_string())?;
            } else if let (Some(dir), true) = (&self.v2, driver.in_v2(Controller::Pids)) {
                write(dir.join("pids.max"), &max.to_string())?;
            }
        }
        Ok(())
    }

    /// Reads the counters; what no hierarchy offers stays `None`.
    pub fn usage(&self) -> Usage {
        let v2 = self.v2.as_ref();
        let v2_read = |f: &str| v2.and_then(|d| read_u64(&d.join(f)));
        let v2_keyed = |f: &str, k: &str| v2.and_then(|d| read_keyed(&d.join(f), k));
        let mem = self.v1_dir(Controller::Memory);
        Usage {
            cpu_ns: self
                .v1_dir(Controller::Cpuacct)
                .and_then(|d| read_u64(&d.join("cpuacct.usage")))
                .or_else(|| v2_keyed("cpu.stat", "usage_usec").map(|us| us * 1000)),
            memory_peak: mem
                .and_then(|d| read_u64(&d.join("memory.max_usage_in_bytes")))
                .or_else(|| v2_read("memory.peak")),
            memory_current: mem
                .and_then(|d| read_u64(&d.join("memory.usage_in_bytes")))
                .or_else(|| v2_read("memory.current")),
            oom_kills: mem
                .and_then(|d| read_keyed(&d.join("memory.oom_control"), "oom_kill"))
                .or_else(|| v2_keyed("memory.events", "oom_kill")),
            pids_refused: self
                .v1_dir(Controller::Pids)
                .and_then(|d| read_keyed(&d.join("pids.events"), "max"))
                .or_else(|| v2_keyed("pids.events", "max")),
        }
    }

    /// Removes the cgroup. Its processes must have ended; a directory that
    /// is still busy (a process just exiting) is retried for up to a second.
    pub fn remove(&mut self) -> Result<(), CgroupError> {
        let dirs = self.dirs();
        self.v1.clear();
        self.v2 = None;
        let mut first_error = None;
        for dir in dirs {
            if let Err(e) = remove_dir_retrying(&dir) {
                first_error.get_or_insert(CgroupError::Io {
                    path: dir,
                    source: e,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Removes an (empty) cgroup directory, retrying while it is busy.
pub fn remove_dir_retrying(dir: &Path) -> io::Result<()> {
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 100 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_no_cgroup_root() {
        assert_eq!(detect(&std::env::temp_dir()), CgroupMode::None);
        assert_eq!(detect(Path::new("/nonexistent/cgroup")), CgroupMode::None);
    }

    #[test]
    fn this_host_has_a_known_layout() {
        let mode = detect(Path::new("/sys/fs/cgroup"));
        crate::say!("cgroup mode of this host: {mode}");
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            assert_eq!(mode, CgroupMode::V2);
        } else if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
            assert_eq!(mode, CgroupMode::Hybrid);
        }
    }

    #[test]
    fn v1_mounts_are_found_by_controller_including_co_mounts() {
        let info = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:5 - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
        let m = v1_mounts(info);
        let get = |c: &str| m.iter().find(|(n, _)| n == c).map(|(_, p)| p.clone());
        assert_eq!(
            get("cpu"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            get("cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(get("memory"), Some(PathBuf::from("/sys/fs/cgroup/memory")));
        assert_eq!(get("pids"), Some(PathBuf::from("/sys/fs/cgroup/pids")));
        assert_eq!(
            m.len(),
            4,
            "name=systemd and cgroup2 are not controllers: {m:?}"
        );
    }

    #[test]
    fn keyed_files_parse() {
        let stat = "usage_usec 1234\nuser_usec 1000\nsystem_usec 234\n";
        assert_eq!(keyed(stat, "usage_usec"), Some(1234));
        assert_eq!(keyed(stat, "system_usec"), Some(234));
        assert_eq!(keyed(stat, "nr_periods"), None);
        let oom = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(keyed(oom, "oom_kill"), Some(2));
    }

    #[test]
    fn sizes_and_cpu_quota() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert!(parse_size("12Q").unwrap_err().contains("suffix"));
        assert!(parse_size("-5M").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("10").unwrap_err().contains("4k"));
        // Past 2^64 bytes: refused, not saturated.
        let err = parse_size("99999999T").unwrap_err();
        assert!(err.contains("`99999999T`: too large"), "{err}");
        assert!(parse_size("1e20").unwrap_err().contains("too large"));
        assert_eq!(parse_size("16777215T"), Ok(16_777_215 << 40));
        // A memory limit has Docker's minimum.
        let err = parse_memory_limit("4k").unwrap_err();
        assert!(
            err.contains("`4k`: a memory limit must be at least 6M"),
            "{err}"
        );
        assert!(parse_memory_limit("5.9M").is_err());
        assert_eq!(parse_memory_limit("6M"), Ok(6 << 20));
        assert!(
            parse_memory_limit("99999999T")
                .unwrap_err()
                .contains("too large")
        );
        let l = Limits {
            cpus: Some(1.5),
            ..Limits::default()
        };
        assert_eq!(l.cpu_quota_us(), Some(150_000));
        assert!(l.any() && !Limits::default().any());
    }

    fn fixture(name: &str) -> (crate::testutil::TempDir, Driver) {
        let root = crate::testutil::TempDir::new(&format!("cg-{name}"));
        for c in ["memory", "cpu", "cpuacct", "pids", "unified"] {
            std::fs::create_dir_all(root.join(c)).unwrap();
        }
        let driver = Driver {
            mode: CgroupMode::Hybrid,
            v1: V1Mounts {
                memory: Some(root.join("memory")),
                cpu: Some(root.join("cpu")),
                cpuacct: Some(root.join("cpuacct")),
                pids: Some(root.join("pids")),
            },
            v2: Some((root.join("unified"), vec![])),
        };
        (root, driver)
    }

    /// Empties fixture directories so removal works (a real cgroupfs
    /// removes its files with the directory; a fixture tree cannot).
    fn empty(cg: &Cgroup) {
        for d in cg.dirs() {
            for f in std::fs::read_dir(d).unwrap() {
                std::fs::remove_file(f.unwrap().path()).unwrap();
            }
        }
    }

    /// Empty parents go, with either the driver's hierarchies or a scan of
    /// the root; a parent holding another run's instance stays.
    #[test]
    fn empty_parents_are_removed_and_busy_ones_kept() {
        let (root, driver) = fixture("parents");
        let mut busy = driver
            .create("i1", &Limits::default(), CgroupUse::All)
            .unwrap();
        let mut other = driver
            .create("i2", &Limits::default(), CgroupUse::All)
            .unwrap();
        empty(&other);
        other.remove().unwrap();
        driver.remove_empty_parents();
        for h in ["memory", "unified"] {
            assert!(root.join(h).join(PARENT).join("i1").is_dir(), "{h} kept");
        }
        empty(&busy);
        busy.remove().unwrap();
        // A make_dir after the parent vanished makes it again.
        driver.remove_empty_parents();
        assert!(!root.join("memory").join(PARENT).exists());
        let mut again = driver
            .create("i3", &Limits::default(), CgroupUse::All)
            .unwrap();
        assert!(root.join("memory/isobench/i3").is_dir());
        empty(&again);
        again.remove().unwrap();
        let removed = remove_empty_parents(&root);
        assert!(
            removed.contains(&root.join("memory").join(PARENT)),
            "{removed:?}"
        );
        assert!(!root.join("unified").join(PARENT).exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    /// On a hybrid fixture: limits go to the v1 controllers (cgroup2 has
    /// none), CPU time comes from v1 cpuacct when joined, and removal takes
    /// every directory away.
    #[test]
    fn hybrid_fixture_limits_usage_and_removal() {
        let (root, driver) = fixture("hybrid");
        let limits = Limits {
            memory_bytes: Some(64 << 20),
            cpus: Some(0.5),
            pids: Some(32),
        };
        let mut cg = driver.create("i1", &limits, CgroupUse::Auto).unwrap();
        let mem = root.join("memory/isobench/i1");
        assert_eq!(
            std::fs::read_to_string(mem.join("memory.limit_in_bytes")).unwrap(),
            "67108864"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("cpu/isobench/i1/cpu.cfs_quota_us")).unwrap(),
            "50000"
        );
        assert_eq!(
            std::fs::read_to_string(root.join("pids/isobench/i1/pids.max")).unwrap(),
            "32"
        );
        assert!(
            !root.join("cpuacct/isobench/i1").exists(),
            "auto joins v1 only for limits"
        );
        assert_eq!(cg.v1_procs_files().len(), 3);
        assert_eq!(
            cg.v2_dir(),
            Some(root.join("unified/isobench/i1").as_path())
        );
        std::fs::write(
            root.join("unified/isobench/i1/cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .unwrap();
        std::fs::write(mem.join("memory.max_usage_in_bytes"), "2097152\n").unwrap();
        std::fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n",
        )
        .unwrap();
        std::fs::write(root.join("pids/isobench/i1/pids.events"), "max 7\n").unwrap();
        let u = cg.usage();
        assert_eq!(
            u.cpu_ns,
            Some(1_500_000),
            "CPU time from cgroup2's cpu.stat"
        );
        assert_eq!(u.memory_peak, Some(2 << 20));
        assert_eq!(u.memory_current, None, "missing files stay None");
        assert_eq!(u.oom_kills, Some(1));
        assert_eq!(u.pids_refused, Some(7));
        empty(&cg);
        cg.remove().unwrap();
        assert!(!mem.exists() && !root.join("unified/isobench/i1").exists());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn auto_without_limits_uses_only_cgroup2_and_all_uses_everything() {
        let (root, driver) = fixture("use");
        let cg = driver
            .create("a", &Limits::default(), CgroupUse::Auto)
            .unwrap();
        assert!(
            cg.v1_procs_files().is_empty(),
            "no v1 join, no grace period"
        );
        assert!(cg.v2_dir().is_some());
        empty(&cg);
        drop(cg);
        let cg = driver
            .create("b", &Limits::default(), CgroupUse::All)
            .unwrap();
        assert_eq!(cg.v1_procs_files().len(), 4);
        std::fs::write(root.join("cpuacct/isobench/b/cpuacct.usage"), "42\n").unwrap();
        assert_eq!(cg.usage().cpu_ns, Some(42), "v1 cpuacct when joined");
        empty(&cg);
        drop(cg);
        let none = driver
            .create("c", &Limits::default(), CgroupUse::None)
            .unwrap();
        assert!(none.dirs().is_empty());
        let limited = Limits {
            pids: Some(3),
            ..Limits::default()
        };
        assert!(driver.create("d", &limited, CgroupUse::None).is_err());
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn missing_controllers_are_named() {
        let driver = Driver {
            mode: CgroupMode::V2,
            v1: V1Mounts::default(),
            v2: Some(("/x".into(), vec!["cpu".into()])),
        };
        let l = Limits {
            memory_bytes: Some(1 << 20),
            cpus: Some(1.0),
            pids: None,
        };
        let missing = driver.unsupported_limits(&l);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].contains("memory controller"), "{missing:?}");
        assert!(matches!(
            driver.create("x", &l, CgroupUse::Auto),
            Err(CgroupError::Limit(_))
        ));
    }
}
