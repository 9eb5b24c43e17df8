//! Runtime state of a run on the host, and `isobench clean`.
//!
//! Everything transient that a run creates on the host lives in one
//! directory, `<base>/<run-id>/` (base: `/run/isobench` for root): the image,
//! the initramfs, the container instance directories, and `state.json`,
//! which names the isobench process that owns the run and every QEMU process
//! it started (pid and start time). On success the run removes its
//! directory. If isobench dies without removing it, `isobench clean` (and
//! the start of every later run) finds it by that record — never by process
//! name — kills the recorded processes that are still the same processes,
//! detaches any mount left under the directory, and removes it.

use serde::{Deserialize, Serialize};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Environment variable that overrides the base directory.
pub const BASE_ENV: &str = "ISOBENCH_RUNTIME_DIR";
const STATE_FILE: &str = "state.json";

/// The directory that holds the runtime state of every run.
pub fn base_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(BASE_ENV) {
        return PathBuf::from(dir);
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/run/isobench");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("isobench"),
        None => std::env::temp_dir().join(format!("isobench-{}", nix::unistd::geteuid())),
    }
}

/// A process recorded in a state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracked {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot (`/proc/PID/stat` field 22),
    /// which tells it apart from a later process with the same pid.
    pub start: u64,
    /// What it is (`qemu`).
    pub what: String,
}

/// The content of `state.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The run.
    pub run_id: String,
    /// The isobench process that owns the run.
    pub owner: Tracked,
    /// Processes the run started that outlive a single call.
    pub tracked: Vec<Tracked>,
}

/// Start time of a process from its `stat` file (field 22), or `None`
/// when it does not exist.
pub fn start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

fn is_same_process(proc_root: &Path, t: &Tracked) -> bool {
    start_time(proc_root, t.pid) == Some(t.start)
}

/// Removes a directory tree; a missing one is fine. Directories without
/// permissions (overlayfs leaves its `work/work` at mode 000, which only
/// root can read through) are opened up first, once, if that is what stops
/// the removal.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    fn open_up(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                open_up(&entry.path());
            }
        }
    }
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(path);
            std::fs::remove_dir_all(path)
        }
        Err(e) => Err(e),
    }
}

/// The runtime directory of one run.
#[derive(Debug)]
pub struct RunDir {
    path: PathBuf,
    state: Mutex<State>,
}

impl RunDir {
    /// Creates `<base>/<run_id>/` and its state file.
    pub fn create(base: &Path, run_id: &str) -> io::Result<RunDir> {
        std::fs::create_dir_all(base)?;
        let path = base.join(run_id);
        std::fs::create_dir(&path)?;
        let pid = std::process::id();
        let state = State {
            run_id: run_id.to_string(),
            owner: Tracked {
                pid,
                start: start_time(Path::new("/proc"), pid).unwrap_or(0),
                what: "isobench".into(),
            },
            tracked: Vec::new(),
        };
        let dir = RunDir {
            path,
            state: Mutex::new(state),
        };
        dir.save()?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A name for an instance's host resources (its cgroup) that is unique
    /// across concurrent runs: `<run-id>.<instance>`.
    pub fn unique_name(&self, instance: &str) -> String {
        let run = self
            .path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        format!("{run}.{instance}")
    }

    fn save(&self) -> io::Result<()> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let tmp = self.path.join(format!("{STATE_FILE}.tmp"));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&*state)?)?;
        std::fs::rename(tmp, self.path.join(STATE_FILE))
    }

    /// Records a process the run started, before anything else can fail.
    pub fn track(&self, pid: u32, what: &str) -> io::Result<()> {
        let start = start_time(Path::new("/proc"), pid).unwrap_or(0);
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tracked
            .push(Tracked {
                pid,
                start,
                what: what.into(),
            });
        self.save()
    }

    /// Forgets a process once it has been reaped.
    pub fn untrack(&self, pid: u32) -> io::Result<()> {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tracked
            .retain(|t| t.pid != pid);
        self.save()
    }

    /// Removes the directory and everything in it.
    pub fn remove(&self) -> io::Result<()> {
        remove_tree(&self.path)
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// What `clean` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Run directories removed.
    pub removed: Vec<PathBuf>,
    /// Processes killed: pid and what they were.
    pub killed: Vec<(u32, String)>,
    /// Mount points detached.
    pub unmounted: Vec<PathBuf>,
    /// cgroups removed.
    pub cgroups: Vec<PathBuf>,
    /// Run directories left alone, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Decodes the octal escapes (`\040` for a space) of a mountinfo path.
fn unescape_mount_path(raw: &str) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// Mount points under `dir` in a mountinfo text, deepest first.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// The file system holding `path`, from `/proc/self/mountinfo` text: its
/// type, source and mount point (the longest mount point above `path`; of
/// several on one point, the last mounted).
pub fn filesystem_of(mountinfo: &str, path: &Path) -> Option<(String, String, PathBuf)> {
    let mut best: Option<(String, String, PathBuf)> = None;
    for line in mountinfo.lines() {
        let Some(point) = line.split(' ').nth(4).map(unescape_mount_path) else {
            continue;
        };
        let Some((_, after)) = line.split_once(" - ") else {
            continue;
        };
        let mut rest = after.split(' ');
        let (Some(fstype), Some(source)) = (rest.next(), rest.next()) else {
            continue;
        };
        let deeper = best
            .as_ref()
            .is_none_or(|(_, _, b)| point.components().count() >= b.components().count());
        if path.starts_with(&point) && deeper {
            best = Some((fstype.to_string(), source.to_string(), point));
        }
    }
    best
}

/// The instance cgroups of run `run_id`: `isobench/<run-id>.*` in every
/// hierarchy under `cgroup_root` (`/sys/fs/cgroup`, its v1 controller
/// directories, and `unified/` on hybrid hosts).
pub fn run_cgroups(cgroup_root: &Path, run_id: &str) -> Vec<PathBuf> {
    let prefix = format!("{run_id}.");
    let mut parents = vec![cgroup_root.join(crate::cgroup::PARENT)];
    for h in std::fs::read_dir(cgroup_root)
        .into_iter()
        .flatten()
        .flatten()
    {
        parents.push(h.path().join(crate::cgroup::PARENT));
    }
    let mut found = Vec::new();
    for parent in parents {
        for entry in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with(&prefix) && entry.path().is_dir() {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// Removes the leftovers of every run under `base` whose owner is gone.
/// `proc_root` is `/proc` and `cgroup_root` `/sys/fs/cgroup` (parameters
/// for tests).
pub fn clean(base: &Path, proc_root: &Path, cgroup_root: &Path) -> io::Result<CleanReport> {
    let mut report = CleanReport::default();
    let entries = match std::fs::read_dir(base) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            report.cgroups = crate::cgroup::remove_empty_parents(cgroup_root);
            return Ok(report);
        }
        Err(e) => return Err(e),
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let state: Option<State> = std::fs::read(dir.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match &state {
            Some(s) if is_same_process(proc_root, &s.owner) => {
                report.skipped.push((
                    dir.clone(),
                    format!("in use by running isobench pid {}", s.owner.pid),
                ));
                continue;
            }
            None => {
                // A run writes its state right after creating the directory;
                // give a run that is just starting the benefit of the doubt.
                let young = std::fs::metadata(&dir)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age < Duration::from_secs(60));
                if young {
                    report
                        .skipped
                        .push((dir.clone(), "no state file yet (younger than 60 s)".into()));
                    continue;
                }
            }
            Some(_) => {}
        }
        for t in state.iter().flat_map(|s| s.tracked.iter()) {
            if !is_same_process(proc_root, t) {
                continue;
            }
            // Only a process whose command line names this run's directory
            // is ours: a QEMU of this run carries its initramfs path.
            let cmdline = std::fs::read(proc_root.join(t.pid.to_string()).join("cmdline"))
                .unwrap_or_default();
            let marker = dir.as_os_str().as_encoded_bytes();
            if !cmdline.windows(marker.len()).any(|w| w == marker) {
                continue;
            }
            if nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(t.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .is_ok()
            {
                for _ in 0..200 {
                    if !is_same_process(proc_root, t) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                report.killed.push((t.pid, t.what.clone()));
            }
        }
        // Instance cgroups are named `<run-id>.<instance>` (see
        // `RunDir::unique_name`), so the run's id finds them all.
        if let Some(run_id) = dir.file_name().and_then(|n| n.to_str()) {
            for cg in run_cgroups(cgroup_root, run_id) {
                if remove_cgroup(&cg) {
                    report.cgroups.push(cg);
                }
            }
        }
        let mountinfo =
            std::fs::read_to_string(proc_root.join("self/mountinfo")).unwrap_or_default();
        for m in mounts_under(&mountinfo, &dir) {
            if nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH).is_ok() {
                report.unmounted.push(m);
            }
        }
        remove_tree(&dir)?;
        report.removed.push(dir);
    }
    report
        .cgroups
        .extend(crate::cgroup::remove_empty_parents(cgroup_root));
    Ok(report)
}

/// Removes a cgroup that a dead run recorded: every process still in it is
/// the run's own (it was created for one instance and joined only by it),
/// so those are killed first. Only paths named `isobench/<name>` are
/// touched. Returns whether it was removed.
fn remove_cgroup(dir: &Path) -> bool {
    let ours = dir
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|n| n == crate::cgroup::PARENT);
    if !ours || !dir.is_dir() {
        return false;
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    crate::cgroup::remove_dir_retrying(dir).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> crate::testutil::TempDir {
        crate::testutil::TempDir::new(&format!("rt-{name}"))
    }

    #[test]
    fn start_time_parses_names_with_spaces_and_parens() {
        let root = temp("stat");
        std::fs::create_dir_all(root.join("42")).unwrap();
        let mut fields = vec!["S".to_string(); 50];
        fields[19] = "987654".into();
        std::fs::write(
            root.join("42/stat"),
            format!("42 (a b) c)) {}", fields.join(" ")),
        )
        .unwrap();
        assert_eq!(start_time(&root, 42), Some(987654));
        assert_eq!(start_time(&root, 43), None);
    }

    #[test]
    fn the_file_system_of_a_path_is_its_deepest_mount() {
        let info = "22 1 254:0 / / rw - ext4 /dev/vda rw\n\
                    25 22 0:23 / /run rw,nosuid - tmpfs tmpfs rw\n\
                    26 25 0:24 / /run/user/0 rw - tmpfs tmpfs rw\n\
                    27 22 0:25 / /runner rw - xfs /dev/vdb rw\n";
        let fs = |p: &str| filesystem_of(info, Path::new(p));
        assert_eq!(
            fs("/run/isobench/r1"),
            Some(("tmpfs".into(), "tmpfs".into(), PathBuf::from("/run")))
        );
        assert_eq!(
            fs("/runner/x"),
            Some(("xfs".into(), "/dev/vdb".into(), PathBuf::from("/runner")))
        );
        assert_eq!(fs("/srv").unwrap().0, "ext4");
        // A later mount on the same point hides the earlier one.
        let over = format!("{info}30 25 0:40 / /run rw - ext4 /dev/vdc rw\n");
        assert_eq!(
            filesystem_of(&over, Path::new("/run/x")).unwrap().1,
            "/dev/vdc"
        );
        assert_eq!(filesystem_of("", Path::new("/x")), None);
    }

    #[test]
    fn mountinfo_paths_under_a_dir_deepest_first() {
        let info = "36 25 0:32 / /run/isobench/r1/merged rw - overlay overlay rw\n\
                    37 36 0:33 / /run/isobench/r1/merged/proc rw - proc proc rw\n\
                    38 25 0:34 / /run/isobench/r10 rw - tmpfs t rw\n\
                    39 25 0:35 / /run/isobench/r1/with\\040space rw - tmpfs t rw\n";
        let found = mounts_under(info, Path::new("/run/isobench/r1"));
        assert_eq!(
            found,
            [
                PathBuf::from("/run/isobench/r1/merged/proc"),
                PathBuf::from("/run/isobench/r1/merged"),
                PathBuf::from("/run/isobench/r1/with space"),
            ]
        );
    }

    #[test]
    fn clean_removes_dead_runs_and_keeps_live_ones() {
        let base = temp("clean");
        let live = RunDir::create(&base, "live").unwrap();
        // A run whose owner is gone: a pid with a start time that cannot match.
        let dead = base.join("dead");
        std::fs::create_dir_all(dead.join("instances/x/upper")).unwrap();
        let state = State {
            run_id: "dead".into(),
            owner: Tracked {
                pid: std::process::id(),
                start: 1,
                what: "isobench".into(),
            },
            tracked: vec![Tracked {
                pid: 1,
                start: 1,
                what: "qemu".into(),
            }],
        };
        std::fs::write(dead.join(STATE_FILE), serde_json::to_vec(&state).unwrap()).unwrap();
        // A fixture cgroup tree with one of the dead run's cgroups, one of
        // another run and a file that is not a cgroup directory.
        let cg_root = temp("clean-cgroupfs");
        for d in [
            "memory/isobench/dead.x-container-r1",
            "memory/isobench/other.y",
            "unified/isobench/dead.x-container-r2",
        ] {
            std::fs::create_dir_all(cg_root.join(d)).unwrap();
        }
        assert_eq!(run_cgroups(&cg_root, "dead").len(), 2);
        let report = clean(&base, Path::new("/proc"), &cg_root).unwrap();
        // The dead run's two cgroups, and the parent that is then empty.
        let mut cgroups = report.cgroups.clone();
        cgroups.sort();
        assert_eq!(
            cgroups,
            [
                cg_root.join("memory/isobench/dead.x-container-r1"),
                cg_root.join("unified/isobench"),
                cg_root.join("unified/isobench/dead.x-container-r2"),
            ],
            "{report:?}"
        );
        assert!(
            cg_root.join("memory/isobench/other.y").exists(),
            "another run's cgroup stays, and so does its parent"
        );
        assert_eq!(report.removed, std::slice::from_ref(&dead));
        assert!(report.killed.is_empty(), "pid 1 is not ours: {report:?}");
        assert_eq!(report.skipped.len(), 1);
        assert!(!dead.exists() && live.path().exists());
        live.remove().unwrap();
    }

    #[test]
    fn tracking_is_persisted() {
        let base = temp("track");
        let dir = RunDir::create(&base, "r").unwrap();
        dir.track(std::process::id(), "qemu").unwrap();
        let state: State =
            serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(state.tracked.len(), 1);
        assert_eq!(state.tracked[0].start, state.owner.start);
        dir.untrack(std::process::id()).unwrap();
        drop(dir);
        assert!(!base.join("r").exists(), "dropping a RunDir removes it");
    }
}
