//! What a runtime keeps alive beside the workload, in memory: the PSS of
//! every host process whose command line names the instance (the runtime
//! CLI, containerd's shim, conmon, gVisor's sentry and gofer), plus a
//! daemon's growth while the instance lives.

use crate::workload::Metric;
use std::path::Path;

/// The metric's name.
pub const METRIC: &str = "runtime_overhead_mib";

/// PSS of a process, in KiB (`/proc/PID/smaps_rollup`).
pub fn pss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    crate::sample::parse_rollup_pss_kib(&text)
}

/// Whether `cmdline` contains `needle` not followed by a letter or digit:
/// instance `…-i1`'s name must not match `…-i10`'s helpers.
fn names(cmdline: &[u8], needle: &[u8]) -> bool {
    cmdline.windows(needle.len()).enumerate().any(|(i, w)| {
        w == needle
            && !cmdline
                .get(i + needle.len())
                .is_some_and(u8::is_ascii_alphanumeric)
    })
}

/// The pids of host processes, other than isobench itself, whose command
/// line contains `needle` (an instance's unique container name) as a whole
/// name.
pub fn naming(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let needle = needle.as_bytes();
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if names(&cmdline, needle) {
            pids.push(pid);
        }
    }
    pids
}

/// The summed PSS of `pids`, in KiB, and the processes' names.
pub fn sum_pss(pids: &[u32]) -> (u64, Vec<String>) {
    let mut kib = 0;
    let mut names = Vec::new();
    for &pid in pids {
        if let Some(p) = pss_kib(pid) {
            kib += p;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            names.push(comm.trim().to_string());
        }
    }
    (kib, names)
}

/// The pid of the process that listens on the unix socket `path`
/// (`/proc/net/unix`, then every process's descriptors), if any.
pub fn socket_owner(path: &Path) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let want = path.to_str()?;
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 8 && f[7] == want).then(|| f[6].to_string())
    })?;
    let link = format!("socket:[{inode}]");
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        for fd in std::fs::read_dir(e.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == link.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// `pid` and its direct children (a dockerd and the containerd it runs).
pub fn with_children(pid: u32) -> Vec<u32> {
    let mut pids = vec![pid];
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            pids.push(child);
        }
    }
    pids
}

/// An instance's runtime footprint, read at `ready` and at `done`: the
/// larger reading counts (after a short workload the helpers may be gone
/// by `done`). No reading that found a helper: no figure.
#[derive(Debug, Default)]
pub struct Overhead {
    /// The daemon's processes (dockerd and its containerd), whose growth
    /// since the spawn counts.
    daemon: Vec<u32>,
    /// The largest reading so far, in KiB.
    max_kib: Option<u64>,
}

impl Overhead {
    /// With a daemon's processes.
    pub fn new(daemon: Vec<u32>) -> Overhead {
        Overhead {
            daemon,
            max_kib: None,
        }
    }

    /// One reading: the helpers naming `name` or one of `ids`, plus the
    /// daemon's PSS above `baseline` KiB.
    pub fn read(&mut self, name: &str, ids: &[&str], baseline: u64) {
        let mut pids = naming(name);
        for id in ids.iter().filter(|i| !i.is_empty()) {
            pids.extend(naming(id));
        }
        pids.sort_unstable();
        pids.dedup();
        pids.retain(|p| !self.daemon.contains(p));
        let (helpers, found) = sum_pss(&pids);
        if found.is_empty() {
            return;
        }
        let growth = sum_pss(&self.daemon).0.saturating_sub(baseline);
        let kib = helpers + growth;
        self.max_kib = Some(self.max_kib.map_or(kib, |m| m.max(kib)));
    }

    /// The figure, when a reading found the helpers.
    pub fn metric(&self) -> Option<Metric> {
        self.max_kib.map(metric)
    }
}

/// The metric from KiB.
pub fn metric(kib: u64) -> Metric {
    Metric::lower(METRIC, "MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_does_not_match_a_longer_one() {
        let n = b"isobench-x-cpu-i1";
        assert!(names(b"runc\0run\0isobench-x-cpu-i1", n));
        assert!(names(b"runc\0isobench-x-cpu-i1\0--bundle", n));
        assert!(names(b"/run/isobench-x-cpu-i1/state.json", n));
        assert!(!names(b"runc\0run\0isobench-x-cpu-i10", n));
        assert!(!names(b"runc\0run\0isobench-x-cpu-i1b\0x", n));
    }

    #[test]
    fn a_child_naming_a_token_is_found_and_measured() {
        let token = format!("isobench-footprint-test-{}", std::process::id());
        // `read` is built in: the shell waits on its stdin without forking
        // a child that would carry the same command line.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; true", &token])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Until the child has exec'd, its command line is ours.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut pids = naming(&token);
        while pids.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            pids = naming(&token);
        }
        assert_eq!(pids, vec![child.id()]);
        let (kib, names) = sum_pss(&pids);
        assert!(kib > 0);
        assert_eq!(names, vec!["sh".to_string()]);
        assert!(with_children(std::process::id()).contains(&child.id()));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(naming(&token).is_empty());
        assert_eq!(metric(2048).value, 2.0);
    }
}
