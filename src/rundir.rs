//! Runtime state of a run on the host, and `isobench clean`.
//!
//! Everything transient that a run creates on the host lives in one
//! directory, `<runtime dir>/isobench/<run-id>/`: the image, the initramfs,
//! the container instance directories, a marker written when the directory
//! is made (`.isobench-run`: the run id and the isobench process that owns
//! it), and `state.json`, which names every QEMU process the run started
//! (pid and start time). The runtime directory is `/run` for root,
//! `$XDG_RUNTIME_DIR` otherwise, or what `ISOBENCH_RUNTIME_DIR` names;
//! isobench only ever works inside its own `isobench/` there, which it
//! creates with mode 0700 and refuses to use unless it belongs to the caller
//! and nobody else can write to it.
//!
//! On success the run removes its directory. If isobench dies without
//! removing it, `isobench clean` (and the start of every later run) finds
//! it — but only a directory whose name is a run id *and* which holds
//! isobench's marker naming that run, and whose owner is dead: nothing else
//! is ever removed, at most reported. It kills the recorded processes that
//! are still the same processes (never by name), detaches any mount left
//! under the directory, removes the run's cgroups, and removes it.

use procfs::process::MountInfo;
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Environment variable naming the runtime directory; isobench works in
/// its own `isobench/` subdirectory of it.
pub const BASE_ENV: &str = "ISOBENCH_RUNTIME_DIR";
/// isobench's own subdirectory of the runtime directory.
pub const OWN_DIR: &str = "isobench";
const STATE_FILE: &str = "state.json";
/// The marker a run writes into its directory when it creates it.
pub const MARKER: &str = ".isobench-run";

/// Why isobench will not use a runtime directory.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeDirError {
    /// The directory exists but another user could tamper with it.
    #[error(
        "{path}: {reason}; isobench keeps its runtime state only in a directory that belongs to \
         you and that nobody else can write to: remove it, or set {BASE_ENV} to a directory of \
         your own"
    )]
    Unsafe {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// It could not be created or inspected.
    #[error("{path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

/// The runtime directory the user has (`ISOBENCH_RUNTIME_DIR`, `/run` for
/// root, `$XDG_RUNTIME_DIR`), or the private fallback
/// `/tmp/isobench-<uid>`; the flag says whether it is that fallback, which
/// isobench must create and verify itself.
pub fn runtime_dir() -> (PathBuf, bool) {
    if let Some(dir) = std::env::var_os(BASE_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return (std::path::absolute(&dir).unwrap_or(dir), false);
    }
    let uid = nix::unistd::geteuid();
    if uid.is_root() {
        return (PathBuf::from("/run"), false);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => (PathBuf::from(dir), false),
        None => (std::env::temp_dir().join(format!("isobench-{uid}")), true),
    }
}

/// isobench's own directory for runtime state, `<runtime dir>/isobench`:
/// created with mode 0700 when missing, and verified (see
/// [`ensure_private`]) every time.
pub fn base_dir() -> Result<PathBuf, RuntimeDirError> {
    let (root, fallback) = runtime_dir();
    if fallback {
        ensure_private(&root)?;
    } else {
        std::fs::create_dir_all(&root).map_err(|source| RuntimeDirError::Io {
            path: root.clone(),
            source,
        })?;
    }
    let base = root.join(OWN_DIR);
    ensure_private(&base)?;
    Ok(base)
}

/// Creates `path` with mode 0700 unless it exists, then checks that it is a
/// real directory (not a symlink), owned by the caller, and not writable by
/// group or others. Another user's directory at a predictable path (a
/// `/tmp/isobench-1000` made mode 777 by someone else) is refused.
pub fn ensure_private(path: &Path) -> Result<(), RuntimeDirError> {
    let io_err = |source| RuntimeDirError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(e)),
    }
    let md = std::fs::symlink_metadata(path).map_err(io_err)?;
    let unsafe_because = |reason: String| RuntimeDirError::Unsafe {
        path: path.to_path_buf(),
        reason,
    };
    if md.file_type().is_symlink() {
        return Err(unsafe_because("is a symbolic link".into()));
    }
    if !md.is_dir() {
        return Err(unsafe_because("is not a directory".into()));
    }
    let me = nix::unistd::geteuid().as_raw();
    if md.uid() != me {
        return Err(unsafe_because(format!(
            "belongs to uid {}, not to you (uid {me})",
            md.uid()
        )));
    }
    if md.mode() & 0o022 != 0 {
        return Err(unsafe_because(format!(
            "is writable by other users (mode {:04o})",
            md.mode() & 0o7777
        )));
    }
    Ok(())
}

/// Whether `name` has the shape of a run id: `20261128T204700Z-04f0`,
/// optionally prefixed `exec-` (see [`crate::run::new_run_id`]).
pub fn is_run_id(name: &str) -> bool {
    let id = name.strip_prefix("exec-").unwrap_or(name);
    let b = id.as_bytes();
    b.len() == 21
        && b[..8].iter().all(u8::is_ascii_digit)
        && b[8] == b'T'
        && b[9..15].iter().all(u8::is_ascii_digit)
        && b[15] == b'Z'
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
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

/// The content of a run directory's marker: written once, when the
/// directory is made, and never changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// The run; must equal the directory's name.
    pub run_id: String,
    /// The isobench process that made the directory.
    pub owner: Tracked,
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
    use procfs::FromRead;
    let path = proc_root.join(pid.to_string()).join("stat");
    procfs::process::Stat::from_file(path)
        .ok()
        .map(|s| s.starttime)
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
    /// Creates `<base>/<run_id>/` (mode 0700), its marker and its state
    /// file. `base` is isobench's own directory ([`base_dir`]); if a
    /// concurrent run removed it when it emptied, it is made again.
    pub fn create(base: &Path, run_id: &str) -> io::Result<RunDir> {
        let path = base.join(run_id);
        let mut tries = 0;
        loop {
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries < 3 => {
                    tries += 1;
                    ensure_private(base).map_err(io::Error::other)?;
                }
                Err(e) => return Err(e),
            }
        }
        let pid = std::process::id();
        let owner = Tracked {
            pid,
            start: start_time(Path::new("/proc"), pid).unwrap_or(0),
            what: "isobench".into(),
        };
        let marker = Marker {
            run_id: run_id.to_string(),
            owner: owner.clone(),
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path.join(MARKER))?;
        io::Write::write_all(&mut file, &serde_json::to_vec(&marker)?)?;
        let state = State {
            run_id: run_id.to_string(),
            owner,
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

    /// Removes the directory and everything in it, and isobench's own
    /// directory above it when that is then empty.
    pub fn remove(&self) -> io::Result<()> {
        remove_tree(&self.path)?;
        if let Some(base) = self.path.parent() {
            // Fails, harmlessly, while another run has its directory there.
            let _ = std::fs::remove_dir(base);
        }
        Ok(())
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
    /// Runtime containers and images removed (runc, crun, gvisor, docker,
    /// podman), one line each.
    pub runtime: Vec<String>,
    /// Mount points detached.
    pub unmounted: Vec<PathBuf>,
    /// cgroups removed.
    pub cgroups: Vec<PathBuf>,
    /// Network links (bridge, veth host ends, taps) removed.
    pub links: Vec<String>,
    /// Run directories left alone, and why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Decodes the octal escapes (`\040` for a space) of a mountinfo path
/// (`procfs` leaves them in).
fn unescape_mount_path(raw: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\'
            && i + 3 < raw.len()
            && raw[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (raw[i + 1] - b'0') * 64 + (raw[i + 2] - b'0') * 8 + (raw[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsString::from_vec(out))
}

/// The mounts of a mountinfo text (`/proc/PID/mountinfo`), parsed by
/// `procfs` line by line, in order, with their mount points unescaped. A
/// line `procfs` cannot read is left out, not the whole table.
pub fn mount_table(mountinfo: &str) -> Vec<MountInfo> {
    mountinfo
        .lines()
        .filter_map(|line| MountInfo::from_line(line).ok())
        .map(|mut m| {
            m.mount_point = unescape_mount_path(m.mount_point.as_os_str().as_encoded_bytes());
            m
        })
        .collect()
}

/// Mount points under `dir` in a mountinfo text, deepest first.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = mount_table(mountinfo)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// The file system holding `path`, from `/proc/self/mountinfo` text: its
/// type, source (`none` when it has none) and mount point (the longest
/// mount point above `path`; of several on one point, the last mounted).
pub fn filesystem_of(mountinfo: &str, path: &Path) -> Option<(String, String, PathBuf)> {
    let mut best: Option<MountInfo> = None;
    for m in mount_table(mountinfo) {
        let deeper = best.as_ref().is_none_or(|b| {
            m.mount_point.components().count() >= b.mount_point.components().count()
        });
        if path.starts_with(&m.mount_point) && deeper {
            best = Some(m);
        }
    }
    best.map(|m| {
        let source = m.mount_source.unwrap_or_else(|| "none".into());
        (m.fs_type, source, m.mount_point)
    })
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
    let mut dirs: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    dirs.sort();
    // Runs still going: a dead run's links are left alone when a live run
    // carries the same tag in its links' names.
    let live: Vec<String> = dirs
        .iter()
        .filter(|d| stale_run(d, proc_root).is_err())
        .filter_map(|d| d.file_name()?.to_str().map(String::from))
        .filter(|n| is_run_id(n))
        .collect();
    for dir in dirs {
        let marker = match stale_run(&dir, proc_root) {
            Ok(marker) => marker,
            Err(reason) => {
                report.skipped.push((dir, reason));
                continue;
            }
        };
        let state: Option<State> = read_small(&dir.join(STATE_FILE), 1 << 20)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        for t in state.iter().flat_map(|s| s.tracked.iter()) {
            if !is_same_process(proc_root, t) {
                continue;
            }
            // Only a process whose command line names this run's directory
            // is ours: a QEMU of this run carries its initramfs path.
            let cmdline = std::fs::read(proc_root.join(t.pid.to_string()).join("cmdline"))
                .unwrap_or_default();
            let needle = dir.as_os_str().as_encoded_bytes();
            if !cmdline.windows(needle.len()).any(|w| w == needle) {
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
        // Containers of real runtimes go before their roots are unmounted.
        report
            .runtime
            .extend(crate::env::oci::clean::clean_run(&dir));
        // Instance cgroups are named `<run-id>.<instance>` (see
        // `RunDir::unique_name`), so the run's id finds them all.
        for cg in run_cgroups(cgroup_root, &marker.run_id) {
            if remove_cgroup(&cg) {
                report.cgroups.push(cg);
            }
        }
        // Links are named with a tag of the run id (see `net`); a veth
        // went with its container's namespace, a tap and the bridge did not.
        match crate::net::clean_run(&marker.run_id, &live) {
            Ok(names) => report.links.extend(names),
            Err(e) => report.skipped.push((
                dir.clone(),
                format!("its network links could not be listed: {e}"),
            )),
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
    // isobench's own directory goes too once it is empty (rmdir fails otherwise).
    let _ = std::fs::remove_dir(base);
    report
        .cgroups
        .extend(crate::cgroup::remove_empty_parents(cgroup_root));
    Ok(report)
}

/// Whether `dir` is the directory of a dead run that isobench made: a
/// directory (not a link) named like a run, holding isobench's marker that
/// names the same run, whose owner is no longer running. Returns the
/// marker, or why the entry is left alone.
pub fn stale_run(dir: &Path, proc_root: &Path) -> Result<Marker, String> {
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let is_dir = std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir());
    if !is_dir || !is_run_id(name) {
        return Err("not an isobench run directory (isobench removes only its own runs)".into());
    }
    let marker: Marker = read_small(&dir.join(MARKER), 4096)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            format!("named like a run but without isobench's marker ({MARKER}): not removed")
        })?;
    if marker.run_id != name {
        return Err(format!(
            "its marker names another run ({}): not removed",
            marker.run_id
        ));
    }
    if is_same_process(proc_root, &marker.owner) {
        return Err(format!(
            "in use by running isobench pid {}",
            marker.owner.pid
        ));
    }
    Ok(marker)
}

/// Reads a small regular file (never a FIFO, device or link), at most
/// `limit` bytes.
fn read_small(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(limit).read_to_end(&mut bytes)?;
    Ok(bytes)
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
        // A real stat line (Linux 6.1) with a command name that has spaces
        // and parentheses; start time (field 22) 987654.
        std::fs::write(
            root.join("42/stat"),
            "42 (a b) c)) S 665 665 17282 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 \
             987654 3133440 383 18446744073709551615 93885223882752 93885223902633 \
             140726074533856 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0 93885223918640 \
             93885223920256 93886011465728 140726074538720 140726074538740 \
             140726074538740 140726074540011 0\n",
        )
        .unwrap();
        assert_eq!(start_time(&root, 42), Some(987654));
        assert_eq!(start_time(&root, 43), None);
        std::fs::write(root.join("42/stat"), "42 (x) S 1 2\n").unwrap();
        assert_eq!(start_time(&root, 42), None, "a cut-off line");
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
                    39 25 0:35 / /run/isobench/r1/with\\040space rw - tmpfs t rw\n\
                    not a mount line\n\
                    40 25 0:36 / /run/isobench/r1/a rw,relatime shared:5 master:2 - proc none rw\n";
        let found = mounts_under(info, Path::new("/run/isobench/r1"));
        assert_eq!(
            found,
            [
                PathBuf::from("/run/isobench/r1/merged/proc"),
                PathBuf::from("/run/isobench/r1/merged"),
                PathBuf::from("/run/isobench/r1/with space"),
                PathBuf::from("/run/isobench/r1/a"),
            ]
        );
        let a = filesystem_of(info, Path::new("/run/isobench/r1/a/b")).unwrap();
        assert_eq!(
            a,
            ("proc".into(), "none".into(), "/run/isobench/r1/a".into())
        );
    }

    const LIVE: &str = "20261128T100000Z-0a0a";
    const DEAD: &str = "20261128T090000Z-dead";

    /// A run directory as a killed isobench leaves it: marker and state
    /// naming an owner that is gone (this pid with a start time that cannot
    /// match), and a tracked "qemu" that is pid 1 (not ours).
    fn dead_run(base: &Path, name: &str) -> PathBuf {
        let dead = base.join(name);
        std::fs::create_dir_all(dead.join("instances/x/upper")).unwrap();
        let owner = Tracked {
            pid: std::process::id(),
            start: 1,
            what: "isobench".into(),
        };
        let marker = Marker {
            run_id: name.into(),
            owner: owner.clone(),
        };
        std::fs::write(dead.join(MARKER), serde_json::to_vec(&marker).unwrap()).unwrap();
        let state = State {
            run_id: name.into(),
            owner,
            tracked: vec![Tracked {
                pid: 1,
                start: 1,
                what: "qemu".into(),
            }],
        };
        std::fs::write(dead.join(STATE_FILE), serde_json::to_vec(&state).unwrap()).unwrap();
        dead
    }

    #[test]
    fn clean_removes_dead_runs_and_keeps_live_ones() {
        let base = temp("clean");
        let live = RunDir::create(&base, LIVE).unwrap();
        let dead = dead_run(&base, DEAD);
        // A fixture cgroup tree with two of the dead run's cgroups and one
        // of another run.
        let cg_root = temp("clean-cgroupfs");
        for d in [
            format!("memory/isobench/{DEAD}.x-container-r1"),
            "memory/isobench/other.y".into(),
            format!("unified/isobench/{DEAD}.x-container-r2"),
        ] {
            std::fs::create_dir_all(cg_root.join(d)).unwrap();
        }
        assert_eq!(run_cgroups(&cg_root, DEAD).len(), 2);
        let report = clean(&base, Path::new("/proc"), &cg_root).unwrap();
        // The dead run's two cgroups, and the parent that is then empty.
        let mut cgroups = report.cgroups.clone();
        cgroups.sort();
        assert_eq!(
            cgroups,
            [
                cg_root.join(format!("memory/isobench/{DEAD}.x-container-r1")),
                cg_root.join("unified/isobench"),
                cg_root.join(format!("unified/isobench/{DEAD}.x-container-r2")),
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
        assert!(report.skipped[0].1.contains("in use"), "{report:?}");
        assert!(!dead.exists() && live.path().exists());
        live.remove().unwrap();
        assert!(!base.exists(), "the emptied base goes with the last run");
    }

    /// The data-loss defect: a user's old project in the runtime directory
    /// was taken for a leftover and removed. Only a directory named like a
    /// run *and* holding a marker that names it is ever removed.
    #[test]
    fn clean_never_removes_what_isobench_did_not_make() {
        let base = temp("clean-foreign");
        let project = base.join("projectA");
        std::fs::create_dir_all(&project).unwrap();
        std::fs::write(project.join("main.c"), "int main(){}").unwrap();
        // Named like a run, but no marker.
        let unmarked = base.join("20261128T080000Z-beef");
        std::fs::create_dir_all(&unmarked).unwrap();
        std::fs::write(unmarked.join("notes.txt"), "mine").unwrap();
        // A marker of another run copied into a run-like name.
        let copied = dead_run(&base, "20261128T070000Z-0001");
        let renamed = base.join("20261128T070000Z-0002");
        std::fs::rename(&copied, &renamed).unwrap();
        // A link named like a run, pointing at the user's project.
        let link = base.join("20261128T060000Z-0003");
        std::os::unix::fs::symlink(&project, &link).unwrap();
        // A plain file named like a run.
        std::fs::write(base.join("20261128T050000Z-0004"), "x").unwrap();
        // Make them all old: age must not matter.
        for p in [&project, &unmarked, &renamed] {
            let old = std::time::SystemTime::now() - Duration::from_secs(3600);
            let f = std::fs::File::open(p).unwrap();
            f.set_modified(old).unwrap();
        }
        let report = clean(&base, Path::new("/proc"), Path::new("/nonexistent")).unwrap();
        assert!(report.removed.is_empty(), "{report:?}");
        assert_eq!(report.skipped.len(), 5, "{report:?}");
        assert!(project.join("main.c").is_file());
        assert!(unmarked.join("notes.txt").is_file());
        assert!(renamed.join(MARKER).is_file());
        assert!(link.symlink_metadata().is_ok());
        let why = |p: &Path| {
            report
                .skipped
                .iter()
                .find(|(d, _)| d == p)
                .map(|(_, w)| w.clone())
                .unwrap()
        };
        assert!(why(&project).contains("not an isobench run"), "{report:?}");
        assert!(why(&unmarked).contains("without isobench's marker"));
        assert!(why(&renamed).contains("another run"));
        assert!(why(&link).contains("not an isobench run"));
    }

    #[test]
    fn run_ids_are_recognised_exactly() {
        assert!(is_run_id("20261128T204700Z-04f0"));
        assert!(is_run_id("exec-20261128T204700Z-04f0"));
        assert!(is_run_id(&crate::run::new_run_id()));
        for bad in [
            "projectA",
            "20261128T204700Z-04F0",
            "20261128T204700Z-04f",
            "20261128T204700Z-04f00",
            "2026112xT204700Z-04f0",
            "run-20261128T204700Z-04f0",
            "",
        ] {
            assert!(!is_run_id(bad), "{bad}");
        }
    }

    #[test]
    fn private_directories_are_made_and_checked() {
        use std::os::unix::fs::PermissionsExt;
        let root = temp("private");
        let mine = root.join("mine");
        ensure_private(&mine).unwrap();
        assert_eq!(
            std::fs::metadata(&mine).unwrap().permissions().mode() & 0o777,
            0o700
        );
        ensure_private(&mine).unwrap();
        // A directory anyone may write to is refused (the /tmp takeover).
        let open = root.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ensure_private(&open).unwrap_err().to_string();
        assert!(
            err.contains("writable by other users") && err.contains(BASE_ENV),
            "{err}"
        );
        // A link is refused, even to a good directory.
        let link = root.join("link");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        assert!(
            ensure_private(&link)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
        // A file is refused.
        let file = root.join("file");
        std::fs::write(&file, "").unwrap();
        assert!(
            ensure_private(&file)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
        // Someone else's directory is refused (as root, chown it away).
        if nix::unistd::geteuid().is_root() {
            let theirs = root.join("theirs");
            std::fs::create_dir(&theirs).unwrap();
            std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
            nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
            let err = ensure_private(&theirs).unwrap_err().to_string();
            assert!(err.contains("belongs to uid 65534"), "{err}");
        }
    }

    #[test]
    fn tracking_is_persisted() {
        let base = temp("track");
        let dir = RunDir::create(&base, LIVE).unwrap();
        let marker: Marker =
            serde_json::from_slice(&std::fs::read(dir.path().join(MARKER)).unwrap()).unwrap();
        assert_eq!(marker.run_id, LIVE);
        dir.track(std::process::id(), "qemu").unwrap();
        let state: State =
            serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(state.tracked.len(), 1);
        assert_eq!(state.tracked[0].start, state.owner.start);
        dir.untrack(std::process::id()).unwrap();
        drop(dir);
        assert!(!base.join(LIVE).exists(), "dropping a RunDir removes it");
    }
}
