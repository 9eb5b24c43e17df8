//! cgroups: how the host's hierarchy is set up.
//!
//! Detected once, from the file system types under the cgroup root (the way
//! youki and systemd do it): `cgroup2` at the root is the unified (v2)
//! layout; a tmpfs root with a `cgroup2` mount at `unified/` is hybrid (v1
//! controllers plus an empty v2 tree, as on these build machines); a tmpfs
//! root without it is legacy v1.

use nix::sys::statfs::{CGROUP2_SUPER_MAGIC, TMPFS_MAGIC, statfs};
use std::fmt;
use std::path::Path;

/// The cgroup layout of a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
        f.write_str(match self {
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
        // Whatever the host, detection must not say "none" when
        // /sys/fs/cgroup is mounted; print what it found for the log.
        let mode = detect(Path::new("/sys/fs/cgroup"));
        eprintln!("cgroup mode of this host: {mode}");
        if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            assert_eq!(mode, CgroupMode::V2);
        } else if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
            assert_eq!(mode, CgroupMode::Hybrid);
        }
    }
}
