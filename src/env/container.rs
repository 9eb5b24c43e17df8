//! `container`: isobench's own namespace runtime.
//!
//! One `clone(2)` creates the instance's first process directly in new pid,
//! mount, uts, ipc and net namespaces (and a user namespace when isobench is
//! not root). That child, pid 1 of its namespace, runs a list of set-up
//! [`Step`]s prepared by [`plan`] and then execs the agent:
//!
//! 1. joins its cgroup (before anything else, so accounting covers it all)
//!    and unshares a cgroup namespace rooted there;
//! 2. makes every mount private, mounts the overlay root (the read-only
//!    layers below, a per-instance upper layer above), a fresh `/proc` with
//!    Docker's masked and read-only paths, a read-only `/sys`, `/dev` as a
//!    tmpfs with `null zero full random urandom tty`, `pts` and `shm`, a
//!    tmpfs `/tmp`, and the volumes;
//! 3. `pivot_root`s into it and detaches the old root; sets its hostname;
//! 4. installs its standard streams, sets `no_new_privs`, drops every
//!    capability outside Docker's default set, installs the seccomp
//!    filters (Docker's default profile unless configured otherwise; see
//!    [`crate::seccomp`]), and execs `/init`.
//!
//! Every mount lives only in the child's mount namespace: the host sees
//! none of them, and the kernel removes them all when the instance ends,
//! even if isobench itself is killed. What remains on the host is the
//! instance directory and its cgroup, which [`Instance::cleanup`] (or
//! `isobench clean`, from the run's state record) removes.
//!
//! The child runs in a copy of a multi-threaded process, so it must not
//! allocate: the plan is built before the clone, the steps run through the
//! small [`Sys`] trait (a recording fake tests their order without root),
//! and a failure travels back as two numbers on a pipe: the step's index
//! and the errno.

use super::native::{cgroup_metrics, die_with_parent, join_cgroup};
use super::stdio::Stdio;
use super::{
    EnvError, EnvKind, Environment, FRAME_FD, FRAME_FD_ENV, Instance, Launch, ProcessHandle,
    Streams,
};
use crate::cgroup::{Cgroup, CgroupUse, Driver, Limits};
use crate::runtime::RunDir;
use crate::seccomp::{Filters, SeccompChoice, SeccompError};
use crate::workload::Metric;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use serde::Serialize;
use std::ffi::{CStr, CString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The namespaces every container gets (`user` too when rootless).
pub const NAMESPACES: &[&str] = &["pid", "mnt", "uts", "ipc", "net", "cgroup"];

/// Docker's default capabilities; every other one is dropped.
pub const DEFAULT_CAPS: &[(u32, &str)] = &[
    (0, "CAP_CHOWN"),
    (1, "CAP_DAC_OVERRIDE"),
    (3, "CAP_FOWNER"),
    (4, "CAP_FSETID"),
    (5, "CAP_KILL"),
    (6, "CAP_SETGID"),
    (7, "CAP_SETUID"),
    (8, "CAP_SETPCAP"),
    (10, "CAP_NET_BIND_SERVICE"),
    (13, "CAP_NET_RAW"),
    (18, "CAP_SYS_CHROOT"),
    (27, "CAP_MKNOD"),
    (29, "CAP_AUDIT_WRITE"),
    (31, "CAP_SETFCAP"),
];

/// Paths Docker hides from containers by default: files get /dev/null
/// bound over them, directories an empty read-only tmpfs.
pub const MASKED_FILES: &[&str] = &[
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
];
/// Directories masked with an empty read-only tmpfs.
pub const MASKED_DIRS: &[&str] = &[
    "proc/acpi",
    "proc/asound",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];
/// Paths Docker makes read-only by default.
pub const READ_ONLY: &[&str] = &[
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];
/// Device nodes bound from the host into the container's `/dev`.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// A bind mount of a host path into the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Volume {
    /// The host path (must exist).
    pub host: PathBuf,
    /// The absolute path inside the container.
    pub guest: PathBuf,
    /// Mounted read-only.
    pub read_only: bool,
}

impl Volume {
    /// Parses `HOST:GUEST[:ro|:rw]`; both paths must be absolute, and the
    /// host path must exist.
    pub fn parse(spec: &str) -> Result<Volume, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        let (host, guest, read_only) = match parts.as_slice() {
            [h, g] => (*h, *g, false),
            [h, g, "ro"] => (*h, *g, true),
            [h, g, "rw"] => (*h, *g, false),
            [_, _, mode] => {
                return Err(format!(
                    "volume `{spec}`: unknown mode `{mode}` (use ro or rw)"
                ));
            }
            _ => return Err(format!("volume `{spec}`: expected HOST:GUEST[:ro]")),
        };
        let (host, guest) = (PathBuf::from(host), PathBuf::from(guest));
        if !host.is_absolute() || !guest.is_absolute() {
            return Err(format!("volume `{spec}`: both paths must be absolute"));
        }
        if guest
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!(
                "volume `{spec}`: the container path may not contain `..`"
            ));
        }
        // `components` drops `.` and repeated slashes: `//` and `/./` are `/`.
        let top = guest.components().find_map(|c| match c {
            std::path::Component::Normal(n) => Some(n),
            _ => None,
        });
        match top.map(|n| n.to_string_lossy()).as_deref() {
            None => {
                return Err(format!(
                    "volume `{spec}`: cannot mount over the container's root `/` (its root is \
                     the image); mount into a directory such as /data"
                ));
            }
            Some(top @ ("proc" | "sys" | "dev")) => {
                return Err(format!(
                    "volume `{spec}`: the container mounts its own /{top} (a fresh one, \
                     with masks), which a volume would hide or be hidden by; mount elsewhere, \
                     such as /data"
                ));
            }
            Some(_) => {}
        }
        if !host.exists() {
            return Err(format!(
                "volume `{spec}`: {} does not exist on the host",
                host.display()
            ));
        }
        Ok(Volume {
            host,
            guest,
            read_only,
        })
    }
}

/// How a container is built.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerConfig {
    /// Read-only layers, top first (an application layer above the image).
    pub layers: Vec<PathBuf>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// cgroup limits.
    pub limits: Limits,
    /// Which cgroup hierarchies instances use.
    pub cgroups: CgroupUse,
    /// Whether isobench runs unprivileged: a user namespace maps the
    /// caller's uid to 0, and cgroups are not used.
    pub rootless: bool,
    /// The seccomp filters, compiled once per environment by
    /// [`seccomp_filters`]; `None`: no filter. (Recorded by `knobs`.)
    #[serde(skip)]
    pub seccomp: Option<Arc<Filters>>,
}

/// Compiles the chosen seccomp profile for this runtime's containers,
/// which keep [`DEFAULT_CAPS`].
pub fn seccomp_filters(choice: &SeccompChoice) -> Result<Option<Arc<Filters>>, SeccompError> {
    let caps: Vec<&str> = DEFAULT_CAPS.iter().map(|(_, n)| *n).collect();
    Ok(crate::seccomp::compile(choice, &caps)?.map(Arc::new))
}

/// One set-up step of the child, with every string it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Rootless: wait until the parent has written the id maps.
    WaitForMaps,
    /// Ask to be SIGKILLed when isobench dies; leave its session.
    Detach,
    /// Join a cgroup: write `0` to this `cgroup.procs`.
    JoinCgroup(CString),
    /// Enter a new namespace of this kind.
    Unshare(CloneFlags),
    /// `mount(2)`. `optional`: a missing target (ENOENT) is skipped.
    Mount {
        /// Source.
        source: Option<CString>,
        /// Target.
        target: CString,
        /// File system type.
        fstype: Option<CString>,
        /// Flags.
        flags: MsFlags,
        /// Options.
        data: Option<CString>,
        /// Skip when the target does not exist.
        optional: bool,
    },
    /// `mkdir(2)`; an existing directory is fine.
    MakeDir(CString, u32),
    /// Create an empty file (a bind-mount target).
    MakeFile(CString),
    /// `mknod(2)` a character device with this mode and device number.
    MakeDevice(CString, u32, u64),
    /// `symlink(target, link)`.
    Symlink(CString, CString),
    /// `chdir(2)`.
    Chdir(CString),
    /// `pivot_root(".", ".")` then detach the old root.
    PivotRoot,
    /// `sethostname(2)`.
    Hostname(CString),
    /// Bring the new network namespace's `lo` up (as Docker does), so a
    /// workload can use 127.0.0.1.
    LoopbackUp,
    /// Install stdin, stdout, stderr (and the frame descriptor).
    Stdio,
    /// `prctl(PR_SET_NO_NEW_PRIVS)`.
    NoNewPrivs,
    /// Drop every capability outside [`DEFAULT_CAPS`].
    DropCaps,
    /// Install the seccomp filters (after `no_new_privs`, which lets an
    /// unprivileged task do it; before execve, which they allow).
    Seccomp,
    /// `execve` the agent.
    Exec,
}

impl Step {
    /// The step in words, for error messages.
    pub fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Step::WaitForMaps => "wait for the user namespace's id maps".into(),
            Step::Detach => "prctl(PR_SET_PDEATHSIG), default SIGPIPE and setsid".into(),
            Step::JoinCgroup(p) => format!("join cgroup {}", s(p)),
            Step::Unshare(f) => format!("unshare {f:?}"),
            Step::Mount {
                source,
                target,
                fstype,
                ..
            } => format!(
                "mount {} ({}) on {}",
                source.as_ref().map_or("-".into(), s),
                fstype.as_ref().map_or("bind".into(), s),
                s(target)
            ),
            Step::MakeDir(p, _) => format!("mkdir {}", s(p)),
            Step::MakeFile(p) => format!("create {}", s(p)),
            Step::MakeDevice(p, _, dev) => format!(
                "mknod {} c {} {}",
                s(p),
                libc::major(*dev),
                libc::minor(*dev)
            ),
            Step::Symlink(t, l) => format!("symlink {} -> {}", s(l), s(t)),
            Step::Chdir(p) => format!("chdir {}", s(p)),
            Step::PivotRoot => "pivot_root into the new root and detach the old one".into(),
            Step::Hostname(h) => format!("sethostname {}", s(h)),
            Step::LoopbackUp => "bring lo up".into(),
            Step::Stdio => "install the standard streams".into(),
            Step::NoNewPrivs => "prctl(PR_SET_NO_NEW_PRIVS)".into(),
            Step::DropCaps => "drop capabilities to Docker's default set".into(),
            Step::Seccomp => "install the seccomp filters".into(),
            Step::Exec => "execve /init".into(),
        }
    }
}

fn c(bytes: &[u8]) -> CString {
    // Paths come from the OS and names from the scenario parser, which
    // rejects NUL; a NUL here is a bug, and an empty string fails loudly
    // at its step rather than silently elsewhere.
    CString::new(bytes).unwrap_or_default()
}

fn cpath(p: &Path) -> CString {
    c(p.as_os_str().as_bytes())
}

/// Overlay option values may not contain `,` or `:` (they separate options
/// and lower layers); such paths are refused instead of mounting the wrong thing.
fn overlay_path(path: &Path) -> Result<&[u8], EnvError> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.iter().any(|b| *b == b',' || *b == b':') {
        return Err(EnvError::Unavailable(format!(
            "path {} contains `,` or `:`, which overlayfs options cannot express; use a runtime directory without them",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The overlay mount options for one instance (`lowers` top first).
pub fn overlay_options(lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<Vec<u8>, EnvError> {
    let mut opts = b"lowerdir=".to_vec();
    for (i, l) in lowers.iter().enumerate() {
        if i > 0 {
            opts.push(b':');
        }
        opts.extend_from_slice(overlay_path(l)?);
    }
    opts.extend_from_slice(b",upperdir=");
    opts.extend_from_slice(overlay_path(upper)?);
    opts.extend_from_slice(b",workdir=");
    opts.extend_from_slice(overlay_path(work)?);
    Ok(opts)
}

/// The set-up steps for one instance whose root is built at `dir/merged`
/// (`dir/upper`, `dir/work` beside it), joining the cgroups whose
/// `cgroup.procs` files are given.
pub fn plan(
    config: &ContainerConfig,
    dir: &Path,
    cgroup_procs: &[PathBuf],
    hostname: &str,
) -> Result<Vec<Step>, EnvError> {
    let root = dir.join("merged");
    let at = |rel: &str| cpath(&root.join(rel));
    let mut steps = Vec::new();
    if config.rootless {
        steps.push(Step::WaitForMaps);
    }
    steps.push(Step::Detach);
    for p in cgroup_procs {
        steps.push(Step::JoinCgroup(cpath(p)));
    }
    // After joining, so the namespace's root is the instance's own cgroup.
    steps.push(Step::Unshare(CloneFlags::CLONE_NEWCGROUP));
    let mount = |source: Option<&[u8]>,
                 target: CString,
                 fstype: Option<&[u8]>,
                 flags: MsFlags,
                 data: Option<&[u8]>| Step::Mount {
        source: source.map(c),
        target,
        fstype: fstype.map(c),
        flags,
        data: data.map(c),
        optional: false,
    };
    let optional = |step: Step| match step {
        Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
            ..
        } => Step::Mount {
            source,
            target,
            fstype,
            flags,
            data,
            optional: true,
        },
        other => other,
    };
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;

    steps.push(mount(
        None,
        c(b"/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    ));
    let opts = overlay_options(&config.layers, &dir.join("upper"), &dir.join("work"))?;
    steps.push(mount(
        Some(b"overlay"),
        cpath(&root),
        Some(b"overlay"),
        MsFlags::empty(),
        Some(&opts),
    ));

    steps.push(mount(
        Some(b"proc"),
        at("proc"),
        Some(b"proc"),
        nosuid_nodev_noexec,
        None,
    ));
    // Paths this kernel does not have are left out of the plan (the
    // container's /proc and /sys come from the same kernel as the host's);
    // the mounts stay optional in case one vanished since.
    let exists = |rel: &str| Path::new("/").join(rel).exists();
    for f in MASKED_FILES.iter().filter(|f| exists(f)) {
        steps.push(optional(mount(
            Some(b"/dev/null"),
            at(f),
            None,
            MsFlags::MS_BIND,
            None,
        )));
    }
    for d in MASKED_DIRS
        .iter()
        .filter(|d| d.starts_with("proc/") && exists(d))
    {
        steps.push(optional(mount(
            Some(b"tmpfs"),
            at(d),
            Some(b"tmpfs"),
            MsFlags::MS_RDONLY,
            Some(b"size=0"),
        )));
    }
    for p in READ_ONLY.iter().filter(|p| exists(p)) {
        let target = at(p);
        steps.push(optional(mount(
            Some(target.as_bytes()),
            target.clone(),
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        )));
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        steps.push(optional(mount(None, at(p), None, remount, None)));
    }
    steps.push(mount(
        Some(b"sysfs"),
        at("sys"),
        Some(b"sysfs"),
        nosuid_nodev_noexec | MsFlags::MS_RDONLY,
        None,
    ));
    for d in MASKED_DIRS
        .iter()
        .filter(|d| d.starts_with("sys/") && exists(d))
    {
        steps.push(optional(mount(
            Some(b"tmpfs"),
            at(d),
            Some(b"tmpfs"),
            MsFlags::MS_RDONLY,
            Some(b"size=0"),
        )));
    }

    let dev_flags = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
    steps.push(mount(
        Some(b"tmpfs"),
        at("dev"),
        Some(b"tmpfs"),
        dev_flags,
        Some(b"mode=755,size=65536k"),
    ));
    for d in DEVICES {
        let host = format!("/dev/{d}");
        let rdev = std::fs::metadata(&host).map(|m| std::os::unix::fs::MetadataExt::rdev(&m));
        match rdev {
            // As root a device node is one mknod, and no mount to tear down.
            Ok(rdev) if !config.rootless => {
                steps.push(Step::MakeDevice(at(&format!("dev/{d}")), 0o666, rdev));
            }
            // In a user namespace mknod is not allowed: bind the host's node.
            _ => {
                steps.push(Step::MakeFile(at(&format!("dev/{d}"))));
                steps.push(mount(
                    Some(host.as_bytes()),
                    at(&format!("dev/{d}")),
                    None,
                    MsFlags::MS_BIND,
                    None,
                ));
            }
        }
    }
    steps.push(Step::MakeDir(at("dev/pts"), 0o755));
    let pts_opts: &[u8] = if config.rootless {
        b"newinstance,ptmxmode=0666,mode=0620"
    } else {
        b"newinstance,ptmxmode=0666,mode=0620,gid=5"
    };
    steps.push(mount(
        Some(b"devpts"),
        at("dev/pts"),
        Some(b"devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(pts_opts),
    ));
    steps.push(Step::Symlink(c(b"pts/ptmx"), at("dev/ptmx")));
    steps.push(Step::MakeDir(at("dev/shm"), 0o1777));
    steps.push(mount(
        Some(b"shm"),
        at("dev/shm"),
        Some(b"tmpfs"),
        nosuid_nodev_noexec,
        Some(b"mode=1777,size=65536k"),
    ));
    for (link, target) in [
        ("dev/fd", "/proc/self/fd"),
        ("dev/stdin", "/proc/self/fd/0"),
        ("dev/stdout", "/proc/self/fd/1"),
        ("dev/stderr", "/proc/self/fd/2"),
    ] {
        steps.push(Step::Symlink(c(target.as_bytes()), at(link)));
    }
    steps.push(mount(
        Some(b"tmpfs"),
        at("tmp"),
        Some(b"tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(b"mode=1777"),
    ));
    // What the image holds under /tmp (a program packed from the host's
    // /tmp) would be hidden by that tmpfs: bind it back in, read-only,
    // lowest layer first so that an upper layer's file wins.
    for layer in config.layers.iter().rev() {
        let mut entries = Vec::new();
        image_tmp_entries(&layer.join("tmp"), Path::new("tmp"), &mut entries);
        for (rel, kind) in entries {
            let target = at(&rel.to_string_lossy());
            match kind {
                TmpEntry::Dir => steps.push(Step::MakeDir(target, 0o755)),
                TmpEntry::Link(to) => steps.push(Step::Symlink(cpath(&to), target)),
                TmpEntry::File => {
                    steps.push(Step::MakeFile(target.clone()));
                    steps.push(mount(
                        Some(cpath(&layer.join(&rel)).as_bytes()),
                        target.clone(),
                        None,
                        MsFlags::MS_BIND,
                        None,
                    ));
                    let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
                    steps.push(mount(None, target, None, remount, None));
                }
            }
        }
    }

    for v in &config.volumes {
        // mkdir -p of the mount point inside the container (in the upper layer).
        let mut sofar = root.clone();
        for comp in v.guest.components().skip(1) {
            sofar.push(comp);
            steps.push(Step::MakeDir(cpath(&sofar), 0o755));
        }
        let target = cpath(&root.join(v.guest.strip_prefix("/").unwrap_or(&v.guest)));
        if v.host.is_file() {
            // A file volume: the mkdir above made a directory; bind needs a file.
            steps.pop();
            steps.push(Step::MakeFile(target.clone()));
        }
        steps.push(Step::Mount {
            source: Some(cpath(&v.host)),
            target: target.clone(),
            fstype: None,
            flags: MsFlags::MS_BIND | MsFlags::MS_REC,
            data: None,
            optional: false,
        });
        if v.read_only {
            steps.push(Step::Mount {
                source: None,
                target,
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                data: None,
                optional: false,
            });
        }
    }

    steps.push(Step::Chdir(cpath(&root)));
    steps.push(Step::PivotRoot);
    steps.push(Step::Chdir(c(b"/")));
    steps.push(Step::Hostname(c(hostname.as_bytes())));
    steps.push(Step::LoopbackUp);
    steps.push(Step::Stdio);
    steps.push(Step::NoNewPrivs);
    steps.push(Step::DropCaps);
    if config.seccomp.is_some() {
        steps.push(Step::Seccomp);
    }
    steps.push(Step::Exec);
    Ok(steps)
}

/// An entry of an image layer under `tmp/`.
enum TmpEntry {
    Dir,
    File,
    Link(PathBuf),
}

/// Every entry under `dir` (a layer's `tmp/`), parents before children, as
/// paths relative to the layer (`tmp/...`), in name order.
fn image_tmp_entries(dir: &Path, rel: &Path, out: &mut Vec<(PathBuf, TmpEntry)>) {
    let Ok(read) = std::fs::read_dir(dir) else {
        return;
    };
    let mut names: Vec<_> = read.flatten().map(|e| e.file_name()).collect();
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = rel.join(&name);
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if md.file_type().is_symlink() {
            if let Ok(to) = std::fs::read_link(&path) {
                out.push((rel, TmpEntry::Link(to)));
            }
        } else if md.is_dir() {
            out.push((rel.clone(), TmpEntry::Dir));
            image_tmp_entries(&path, &rel, out);
        } else {
            out.push((rel, TmpEntry::File));
        }
    }
}

/// The privileged system calls of the set-up, so that their order can be
/// tested without root. Implementations must not allocate.
pub trait Sys {
    /// Blocks until the parent has written the id maps.
    fn wait_for_maps(&self) -> nix::Result<()>;
    /// PR_SET_PDEATHSIG and setsid.
    fn detach(&self) -> nix::Result<()>;
    /// Writes `0` to a `cgroup.procs` file.
    fn join_cgroup(&self, procs: &CString) -> nix::Result<()>;
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    /// mount(2).
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> nix::Result<()>;
    /// mkdir(2).
    fn mkdir(&self, path: &CStr, mode: u32) -> nix::Result<()>;
    /// Creates an empty file.
    fn mkfile(&self, path: &CStr) -> nix::Result<()>;
    /// mknod(2) of a character device, then chmod to `mode` (past the umask).
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> nix::Result<()>;
    /// symlink(2).
    fn symlink(&self, target: &CStr, link: &CStr) -> nix::Result<()>;
    /// chdir(2).
    fn chdir(&self, path: &CStr) -> nix::Result<()>;
    /// pivot_root(".", ".") and umount2(".", MNT_DETACH).
    fn pivot_root(&self) -> nix::Result<()>;
    /// sethostname(2).
    fn hostname(&self, name: &CStr) -> nix::Result<()>;
    /// Sets IFF_UP on `lo`.
    fn loopback_up(&self) -> nix::Result<()>;
    /// Installs the standard streams.
    fn stdio(&self) -> nix::Result<()>;
    /// prctl(PR_SET_NO_NEW_PRIVS).
    fn no_new_privs(&self) -> nix::Result<()>;
    /// Drops capabilities outside `keep`.
    fn drop_caps(&self, keep: &[(u32, &str)]) -> nix::Result<()>;
    /// Installs the seccomp filters.
    fn seccomp(&self) -> nix::Result<()>;
    /// execve; returns only on failure.
    fn exec(&self) -> nix::Error;
}

/// Runs the plan through `sys`. Returns the index of the failed step and
/// its errno; `Exec` never returns on success.
pub fn execute(steps: &[Step], sys: &dyn Sys) -> (usize, Errno) {
    for (i, step) in steps.iter().enumerate() {
        let r = match step {
            Step::WaitForMaps => sys.wait_for_maps(),
            Step::Detach => sys.detach(),
            Step::JoinCgroup(p) => sys.join_cgroup(p),
            Step::Unshare(f) => sys.unshare(*f),
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
                optional,
            } => match sys.mount(
                source.as_deref(),
                target,
                fstype.as_deref(),
                *flags,
                data.as_deref(),
            ) {
                Err(Errno::ENOENT) if *optional => Ok(()),
                other => other,
            },
            Step::MakeDir(p, mode) => match sys.mkdir(p, *mode) {
                Err(Errno::EEXIST) => Ok(()),
                other => other,
            },
            Step::MakeFile(p) => sys.mkfile(p),
            Step::MakeDevice(p, mode, dev) => sys.mknod(p, *mode, *dev),
            Step::Symlink(t, l) => sys.symlink(t, l),
            Step::Chdir(p) => sys.chdir(p),
            Step::PivotRoot => sys.pivot_root(),
            Step::Hostname(h) => sys.hostname(h),
            Step::LoopbackUp => sys.loopback_up(),
            Step::Stdio => sys.stdio(),
            Step::NoNewPrivs => sys.no_new_privs(),
            Step::DropCaps => sys.drop_caps(DEFAULT_CAPS),
            Step::Seccomp => sys.seccomp(),
            Step::Exec => Err(sys.exec()),
        };
        if let Err(e) = r {
            return (i, e);
        }
    }
    (steps.len(), Errno::UnknownErrno)
}

/// The real system calls, for the cloned child.
struct Linux<'a> {
    sync: RawFd,
    stdio: &'a [(RawFd, RawFd)],
    init: &'a CStr,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    seccomp: Option<&'a Filters>,
}

fn check(ret: libc::c_int) -> nix::Result<()> {
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

impl Sys for Linux<'_> {
    fn wait_for_maps(&self) -> nix::Result<()> {
        let mut byte = [0u8; 1];
        // SAFETY: reading one byte from the sync pipe into a valid buffer.
        let n = unsafe { libc::read(self.sync, byte.as_mut_ptr().cast(), 1) };
        if n == 1 { Ok(()) } else { Err(Errno::EPIPE) }
    }
    fn detach(&self) -> nix::Result<()> {
        die_with_parent().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
        // isobench ignores SIGPIPE; an ignored signal stays ignored across
        // execve, and the workload must start with the default.
        // SAFETY: signal(2) with a constant disposition, no handler.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        nix::unistd::setsid().map(drop)
    }
    fn join_cgroup(&self, procs: &CString) -> nix::Result<()> {
        join_cgroup(procs)
    }
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> nix::Result<()> {
        // SAFETY: `path` is NUL-terminated.
        check(unsafe { libc::mkdir(path.as_ptr(), mode) })?;
        // The umask must not narrow /dev/shm's 1777 (chmod is exact).
        // SAFETY: as above.
        check(unsafe { libc::chmod(path.as_ptr(), mode) })
    }
    fn mkfile(&self, path: &CStr) -> nix::Result<()> {
        // SAFETY: `path` is NUL-terminated; the descriptor is closed at once.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            )
        };
        check(fd)?;
        // SAFETY: `fd` was just opened by this function.
        unsafe { libc::close(fd) };
        Ok(())
    }
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> nix::Result<()> {
        // SAFETY: `path` is NUL-terminated; integer arguments only otherwise.
        check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | mode, dev) })?;
        // SAFETY: as above.
        check(unsafe { libc::chmod(path.as_ptr(), mode) })
    }
    fn symlink(&self, target: &CStr, link: &CStr) -> nix::Result<()> {
        // SAFETY: both are NUL-terminated.
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
    }
    fn chdir(&self, path: &CStr) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }
    fn pivot_root(&self) -> nix::Result<()> {
        // The new root stacks on the old one; detaching "." drops the old.
        nix::unistd::pivot_root(c".", c".")?;
        nix::mount::umount2(c".", MntFlags::MNT_DETACH)
    }
    fn hostname(&self, name: &CStr) -> nix::Result<()> {
        nix::unistd::sethostname(std::ffi::OsStr::from_bytes(name.to_bytes()))
    }
    fn loopback_up(&self) -> nix::Result<()> {
        loopback_up()
    }
    fn stdio(&self) -> nix::Result<()> {
        Stdio::install(self.stdio)
    }
    fn no_new_privs(&self) -> nix::Result<()> {
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
    }
    fn drop_caps(&self, keep: &[(u32, &str)]) -> nix::Result<()> {
        drop_capabilities(keep)
    }
    fn seccomp(&self) -> nix::Result<()> {
        self.seccomp.map_or(Ok(()), Filters::install)
    }
    fn exec(&self) -> nix::Error {
        // SAFETY: `init` is NUL-terminated; `argv` and `envp` are
        // NULL-terminated arrays of pointers into strings that outlive this call.
        unsafe { libc::execve(self.init.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        Errno::last()
    }
}

/// The highest capability number this kernel knows.
/// Sets IFF_UP on `lo` (a new network namespace's `lo` starts down). Makes
/// no allocation, so a container's child can call it between clone and
/// exec; the VM agent uses it too.
pub fn loopback_up() -> nix::Result<()> {
    // SAFETY: a datagram socket only for the ioctls, closed below; the
    // ifreq is zeroed, named "lo", and valid for both calls.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(sock)?;
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = Errno::last();
        libc::close(sock);
        if r < 0 { Err(err) } else { Ok(()) }
    }
}

fn last_cap() -> u32 {
    // Read before the clone would be cleaner, but the file is tiny and the
    // read does not allocate: a fixed buffer and raw calls.
    let mut buf = [0u8; 16];
    // SAFETY: NUL-terminated path; the descriptor is closed at once; the
    // buffer is valid for its length.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/sys/kernel/cap_last_cap".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 40;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let mut v = 0u32;
    for b in buf.iter().take(n.max(0) as usize) {
        if b.is_ascii_digit() {
            v = v * 10 + u32::from(b - b'0');
        }
    }
    if v == 0 { 40 } else { v }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability outside `keep` from the bounding set, the
/// effective, permitted and inheritable sets, and the ambient set.
/// Allocation-free.
pub fn drop_capabilities(keep: &[(u32, &str)]) -> nix::Result<()> {
    let kept = |cap: u32| keep.iter().any(|(n, _)| *n == cap);
    for cap in 0..=last_cap() {
        if !kept(cap) {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            // EINVAL: a capability this kernel does not know.
            if r < 0 && Errno::last() != Errno::EINVAL {
                return Err(Errno::last());
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    for (cap, _) in keep {
        let (word, bit) = ((*cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective |= bit;
        data[word].permitted |= bit;
    }
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    // SAFETY: capset with a version-3 header and two data words, as the
    // kernel expects for that version.
    check(unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    } as libc::c_int)
}

/// What rootless mode cannot do, said once and recorded in `meta.json`.
pub fn rootless_note(limits: &Limits) -> String {
    let mut note = "rootless containers: a user namespace maps the caller's uid to root; \
                    cgroups are not used (no delegated cgroup), so there is no CPU or memory \
                    accounting per container"
        .to_string();
    if limits.any() {
        note.push_str(", and the requested limits (memory, cpus, pids) are NOT applied");
    }
    note
}

/// Whether unprivileged user namespaces are available, or why not.
fn user_namespaces_available() -> Result<(), String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err("user namespaces are disabled (user.max_user_namespaces = 0); enable them with `sysctl user.max_user_namespaces=15000`, or run as root".into());
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err("unprivileged user namespaces are disabled; enable them with `sysctl kernel.unprivileged_userns_clone=1`, or run as root".into());
    }
    Ok(())
}

/// What a run's containers need: root, or user namespaces when rootless.
pub fn check_host(_spec: &super::BedSpec<'_>) -> Result<(), EnvError> {
    if !nix::unistd::geteuid().is_root() {
        user_namespaces_available()
            .map_err(|e| EnvError::Unavailable(format!("rootless containers: {e}")))?;
    }
    Ok(())
}

/// The container environment of a run: the image as the overlay's lower
/// layer, the scenario's volumes, limits and seccomp profile, cgroups as
/// the host has them (none rootless, said in a note).
pub fn build(bed: &super::Bed<'_>) -> Result<super::Built, EnvError> {
    let settings = bed.spec.container;
    let rootless = !nix::unistd::geteuid().is_root();
    let mut notes = Vec::new();
    let driver = if rootless {
        notes.push(rootless_note(&settings.limits));
        None
    } else {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        Some(
            Driver::detect(Path::new("/sys/fs/cgroup"), &mountinfo)
                .map_err(|e| EnvError::Unavailable(e.to_string()))?,
        )
    };
    let seccomp = seccomp_filters(&settings.seccomp)
        .map_err(|e| EnvError::Unavailable(format!("[container] seccomp: {e}")))?;
    let config = ContainerConfig {
        layers: vec![bed.image_dir.to_path_buf()],
        volumes: settings.volumes.clone(),
        limits: settings.limits,
        cgroups: settings.cgroups,
        rootless,
        seccomp,
    };
    Ok(super::Built {
        env: Box::new(Container::new(config, driver, Arc::clone(bed.run_dir))),
        notes,
    })
}

/// Runs the agent in a fresh container.
pub struct Container {
    config: ContainerConfig,
    driver: Option<Driver>,
    instances: PathBuf,
    run_dir: Arc<RunDir>,
}

impl Container {
    /// A runtime building containers as `config` says, with instance
    /// directories under `run_dir/instances`. `driver` is the cgroup driver
    /// (`None` when cgroups cannot be used, as rootless without delegation).
    pub fn new(config: ContainerConfig, driver: Option<Driver>, run_dir: Arc<RunDir>) -> Self {
        Container {
            config,
            driver,
            instances: run_dir.path().join("instances"),
            run_dir,
        }
    }
}

impl Drop for Container {
    /// The parent cgroups go with the last instance (unless another run
    /// still has instances in them).
    fn drop(&mut self) {
        if let Some(driver) = &self.driver {
            driver.remove_empty_parents();
        }
    }
}

impl Environment for Container {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn kind(&self) -> EnvKind {
        EnvKind::Container
    }

    fn knobs(&self) -> serde_json::Value {
        let mut ns: Vec<&str> = NAMESPACES.to_vec();
        if self.config.rootless {
            ns.push("user");
        }
        serde_json::json!({
            "runtime": "isobench (clone + overlayfs + pivot_root)",
            "namespaces": ns,
            "config": self.config,
            "cgroup_driver": self.driver,
            "capabilities": DEFAULT_CAPS.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
            "no_new_privs": true,
            "seccomp": match &self.config.seccomp {
                Some(f) => serde_json::json!(f.summary()),
                None => serde_json::json!({ "profile": "none" }),
            },
            "masked_paths": MASKED_FILES.iter().chain(MASKED_DIRS).collect::<Vec<_>>(),
            "read_only_paths": READ_ONLY,
        })
    }

    fn startup_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn artifact_bytes(&self, _spec: &crate::workload::WorkloadSpec) -> Option<u64> {
        Some(
            self.config
                .layers
                .iter()
                .map(|l| super::tree_bytes(l))
                .sum(),
        )
    }

    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError> {
        // The clock starts with the first host-side set-up step: the
        // instance directory and cgroup are part of what a container costs.
        let spawned_at = Instant::now();
        let dir = self.instances.join(launch.id);
        for d in ["upper", "work", "merged"] {
            let d = dir.join(d);
            std::fs::create_dir_all(&d)
                .map_err(|e| EnvError::io(format!("creating {}", d.display()), e))?;
        }
        let mut instance = ContainerInstance {
            dir,
            spawned_at,
            streams: None,
            process: None,
            cgroup: None,
        };
        if let Some(driver) = &self.driver {
            let cg = driver
                .create(
                    &self.run_dir.unique_name(launch.id),
                    &self.config.limits,
                    self.config.cgroups,
                )
                .map_err(|e| {
                    EnvError::Unavailable(format!("creating the instance's cgroup: {e}"))
                })?;
            instance.cgroup = Some(cg);
        }
        // Entered at birth through CLONE_INTO_CGROUP: no migration, no cost.
        let v2_dir = match instance.cgroup.as_ref().and_then(|c| c.v2_dir()) {
            Some(d) => Some(
                File::open(d).map_err(|e| EnvError::io(format!("opening {}", d.display()), e))?,
            ),
            None => None,
        };
        // Joined from inside (each join of a v1 cgroup waits for an RCU grace period).
        let procs = instance
            .cgroup
            .as_ref()
            .map(|c| c.v1_procs_files())
            .unwrap_or_default();
        let hostname: String = launch.id.chars().take(63).collect();
        let config = if launch.volumes.is_empty() {
            std::borrow::Cow::Borrowed(&self.config)
        } else {
            let mut c = self.config.clone();
            c.volumes.extend(launch.volumes.iter().cloned());
            std::borrow::Cow::Owned(c)
        };
        let steps = plan(&config, &instance.dir, &procs, &hostname)?;

        let mut argv = vec![c"/init".to_owned()];
        argv.extend(launch.spec.to_args().iter().map(|a| c(a.as_bytes())));
        let mut env = vec![
            c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            c(format!("{}=container", super::ENV_NAME_VAR).as_bytes()),
        ];
        let stdio = Stdio::prepare(&launch.io)?;
        env.push(c(format!("{FRAME_FD_ENV}={FRAME_FD}").as_bytes()));
        for (k, v) in &launch.env {
            env.push(c(format!("{k}={v}").as_bytes()));
        }
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        let raw_stdio = stdio.raw();

        let (mut report_r, report_w) =
            std::io::pipe().map_err(|e| EnvError::io("creating the set-up report pipe", e))?;
        let (sync_r, mut sync_w) =
            std::io::pipe().map_err(|e| EnvError::io("creating the sync pipe", e))?;
        let sys = Linux {
            sync: sync_r.as_raw_fd(),
            stdio: &raw_stdio,
            init: c"/init",
            argv: &argv_ptrs,
            envp: &envp_ptrs,
            seccomp: config.seccomp.as_deref(),
        };
        let report_fd = report_w.as_raw_fd();
        let mut flags = CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC
            | CloneFlags::CLONE_NEWNET;
        if self.config.rootless {
            flags |= CloneFlags::CLONE_NEWUSER;
        }
        let mut args = CloneArgs {
            flags: flags.bits() as u64,
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        if let Some(fd) = &v2_dir {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = fd.as_raw_fd() as u64;
        }
        // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy
        // of this (multi-threaded) process and returns 0 here. It then only
        // runs `execute`, which does not allocate, lock or unwind — it makes
        // system calls on data prepared above and ends in execve — or
        // writes five bytes to the report pipe and leaves with _exit.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            )
        };
        if ret == 0 {
            let (step, errno) = execute(&steps, &sys);
            let mut msg = [0u8; 5];
            msg[0] = step.min(255) as u8;
            msg[1..].copy_from_slice(&(errno as i32).to_le_bytes());
            // SAFETY: the report pipe's write end is open in the child; the
            // buffer is valid for 5 bytes; _exit ends the child at once.
            unsafe {
                libc::write(report_fd, msg.as_ptr().cast(), msg.len());
                libc::_exit(127);
            }
        }
        if ret < 0 {
            let e = Errno::last();
            return Err(EnvError::sys(
                format!(
                    "clone3 with new namespaces{}",
                    if v2_dir.is_some() {
                        " into the instance's cgroup"
                    } else {
                        ""
                    }
                ),
                e,
            ));
        }
        let pid = nix::unistd::Pid::from_raw(ret as i32);
        drop(v2_dir);
        drop(report_w);
        drop(sync_r);
        let mut process = ProcessHandle::new(pid.as_raw() as u32)
            .map_err(|e| EnvError::io("opening a pidfd for the container", e))?;
        if self.config.rootless {
            let mapped = write_id_maps(pid.as_raw()).and_then(|()| sync_w.write_all(b"1"));
            if let Err(e) = mapped {
                let _ = process.kill_and_reap();
                instance.process = Some(process);
                return Err(EnvError::io("writing the user namespace's id maps", e));
            }
        }
        drop(sync_w);
        let Stdio { streams, targets } = stdio;
        drop(targets);

        // Blocks until the child execs (the pipe is close-on-exec) or reports.
        let mut report = Vec::new();
        let _ = report_r.read_to_end(&mut report);
        instance.process = Some(process);
        if report.len() == 5 {
            let step = steps
                .get(report[0] as usize)
                .map_or_else(|| "an unknown step".to_string(), Step::describe);
            let errno = Errno::from_raw(i32::from_le_bytes([
                report[1], report[2], report[3], report[4],
            ]));
            let _ = instance.cleanup();
            return Err(EnvError::ContainerSetup {
                step,
                source: errno,
            });
        }
        instance.streams = Some(streams);
        Ok(Box::new(instance))
    }
}

/// `struct clone_args` of clone3(2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// clone3(2): start the child in the cgroup2 directory `cgroup` names.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Maps uid and gid 0 in the child's user namespace to the caller's.
fn write_id_maps(pid: i32) -> std::io::Result<()> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    std::fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    std::fs::write(format!("/proc/{pid}/uid_map"), format!("0 {uid} 1\n"))?;
    std::fs::write(format!("/proc/{pid}/gid_map"), format!("0 {gid} 1\n"))
}

struct ContainerInstance {
    dir: PathBuf,
    spawned_at: Instant,
    streams: Option<Streams>,
    process: Option<ProcessHandle>,
    cgroup: Option<Cgroup>,
}

impl Instance for ContainerInstance {
    fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    fn take_streams(&mut self) -> Option<Streams> {
        self.streams.take()
    }

    fn process(&mut self) -> &mut ProcessHandle {
        // Set before the instance is handed out.
        self.process
            .as_mut()
            .expect("container instance has a process")
    }

    fn at_done(&mut self) -> Vec<Metric> {
        let mut m = Vec::new();
        if let Some(b) = self.cgroup.as_ref().and_then(|c| c.usage().memory_current) {
            m.push(Metric::lower(
                "cgroup_current_mib",
                "MiB",
                b as f64 / (1 << 20) as f64,
            ));
        }
        m
    }

    fn after_exit(&mut self) -> Vec<Metric> {
        self.cgroup.as_ref().map(cgroup_metrics).unwrap_or_default()
    }

    fn cleanup(&mut self) -> Result<(), EnvError> {
        if let Some(p) = self.process.as_mut() {
            p.kill_and_reap()
                .map_err(|e| EnvError::io("reaping the container", e))?;
        }
        if let Some(mut cg) = self.cgroup.take() {
            cg.remove().map_err(|e| {
                EnvError::Unavailable(format!("removing the instance's cgroup: {e}"))
            })?;
        }
        crate::runtime::remove_tree(&self.dir)
            .map_err(|e| EnvError::io(format!("removing {}", self.dir.display()), e))
    }
}

impl Drop for ContainerInstance {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    fn config(rootless: bool, volumes: Vec<Volume>) -> ContainerConfig {
        ContainerConfig {
            layers: vec!["/r/app".into(), "/r/image".into()],
            volumes,
            limits: Limits::default(),
            cgroups: CgroupUse::Auto,
            rootless,
            seccomp: seccomp_filters(&SeccompChoice::Default).unwrap(),
        }
    }

    #[test]
    fn overlay_options_stack_layers_top_first_and_reject_separators() {
        let opts = overlay_options(
            &["/a/app".into(), "/a/img".into()],
            Path::new("/b/up"),
            Path::new("/b/work"),
        )
        .unwrap();
        assert_eq!(
            opts,
            b"lowerdir=/a/app:/a/img,upperdir=/b/up,workdir=/b/work"
        );
        assert!(overlay_options(&["/a,b".into()], Path::new("/u"), Path::new("/w")).is_err());
        assert!(overlay_options(&["/a".into()], Path::new("/u:x"), Path::new("/w")).is_err());
    }

    #[test]
    fn volumes_parse_and_are_checked() {
        let tmp = std::env::temp_dir();
        let spec = format!("{}:/data:ro", tmp.display());
        assert_eq!(
            Volume::parse(&spec).unwrap(),
            Volume {
                host: tmp.clone(),
                guest: "/data".into(),
                read_only: true
            }
        );
        assert!(
            !Volume::parse(&format!("{}:/data", tmp.display()))
                .unwrap()
                .read_only
        );
        assert!(
            Volume::parse("relative:/data")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(
            Volume::parse("/nonexistent-isobench:/data")
                .unwrap_err()
                .contains("does not exist")
        );
        assert!(
            Volume::parse(&format!("{}:/data:rx", tmp.display()))
                .unwrap_err()
                .contains("mode")
        );
        assert!(
            Volume::parse(&format!("{}:/a/../b", tmp.display()))
                .unwrap_err()
                .contains("..")
        );
        assert!(Volume::parse("/only").is_err());
        // Not over the container's root, nor where it mounts /proc, /sys
        // and /dev itself, however the path is spelled.
        let tmp = tmp.display();
        for guest in ["/", "//", "/./", "/.."] {
            let err = Volume::parse(&format!("{tmp}:{guest}")).unwrap_err();
            assert!(
                err.contains("the container's root") || err.contains(".."),
                "{guest}: {err}"
            );
        }
        for guest in [
            "/proc",
            "/proc/sys",
            "//sys/",
            "/dev",
            "/dev/shm",
            "/./sys/fs",
        ] {
            let err = Volume::parse(&format!("{tmp}:{guest}:ro")).unwrap_err();
            assert!(err.contains("mounts its own"), "{guest}: {err}");
        }
        assert!(Volume::parse(&format!("{tmp}:/procfs")).is_ok());
        assert!(Volume::parse(&format!("{tmp}:/data/proc")).is_ok());
    }

    fn names(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::describe).collect()
    }

    #[test]
    fn plan_orders_the_set_up_as_documented() {
        let steps = plan(
            &config(false, vec![]),
            Path::new("/r/i"),
            &["/cg/mem/cgroup.procs".into()],
            "h1",
        )
        .unwrap();
        let d = names(&steps);
        let pos = |needle: &str| {
            d.iter()
                .position(|s| s.contains(needle))
                .unwrap_or_else(|| panic!("no step `{needle}` in {d:#?}"))
        };
        assert_eq!(steps[0], Step::Detach, "root mode waits for no maps");
        assert!(
            pos("join cgroup /cg/mem/cgroup.procs") < pos("unshare"),
            "cgroup namespace roots at the instance's cgroup"
        );
        assert!(pos("unshare") < pos("(overlay) on /r/i/merged"));
        assert!(
            pos("mount - (bind) on /") < pos("(overlay)"),
            "mounts are made private before anything is mounted"
        );
        assert!(pos("(overlay)") < pos("(proc) on /r/i/merged/proc"));
        // Masks exist only for paths this kernel has.
        if let Some(f) = MASKED_FILES
            .iter()
            .find(|f| Path::new("/").join(f).exists())
        {
            assert!(pos("(proc) on") < pos(&format!("/dev/null (bind) on /r/i/merged/{f}")));
        }
        if Path::new("/sys/firmware").exists() {
            assert!(pos("(sysfs) on /r/i/merged/sys") < pos("(tmpfs) on /r/i/merged/sys/firmware"));
        }
        assert!(
            !d.iter().any(|s| MASKED_FILES
                .iter()
                .any(|f| s.ends_with(*f) && !Path::new("/").join(f).exists())),
            "no step for a path this kernel lacks"
        );
        assert!(pos("(tmpfs) on /r/i/merged/dev") < pos("mknod /r/i/merged/dev/null c 1 3"));
        assert!(pos("(devpts) on /r/i/merged/dev/pts") < pos("pivot_root"));
        assert!(pos("chdir /r/i/merged") < pos("pivot_root"));
        let tail: Vec<&Step> = steps.iter().rev().take(8).collect();
        assert_eq!(
            tail,
            [
                &Step::Exec,
                &Step::Seccomp,
                &Step::DropCaps,
                &Step::NoNewPrivs,
                &Step::Stdio,
                &Step::LoopbackUp,
                &Step::Hostname(c"h1".to_owned()),
                &Step::Chdir(c"/".to_owned())
            ]
        );
        for dev in DEVICES {
            let node = format!("mknod /r/i/merged/dev/{dev} c ");
            assert!(d.iter().any(|s| s.starts_with(&node)), "{dev}");
        }
        // The overlay's data names both layers, top first.
        let overlay = steps
            .iter()
            .find_map(|s| match s {
                Step::Mount {
                    fstype: Some(t),
                    data,
                    ..
                } if t.as_bytes() == b"overlay" => data.clone(),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            overlay.to_bytes(),
            b"lowerdir=/r/app:/r/image,upperdir=/r/i/upper,workdir=/r/i/work"
        );
    }

    #[test]
    fn seccomp_none_leaves_the_filter_step_out() {
        let mut c = config(false, vec![]);
        c.seccomp = seccomp_filters(&SeccompChoice::None).unwrap();
        let steps = plan(&c, Path::new("/r/i"), &[], "h").unwrap();
        assert!(!steps.contains(&Step::Seccomp));
        assert_eq!(&steps[steps.len() - 2..], [Step::DropCaps, Step::Exec]);
    }

    #[test]
    fn rootless_plan_waits_for_maps_and_has_no_cgroup() {
        let steps = plan(&config(true, vec![]), Path::new("/r/i"), &[], "h").unwrap();
        assert_eq!(steps[0], Step::WaitForMaps);
        assert!(!names(&steps).iter().any(|s| s.contains("join cgroup")));
        let pts = steps.iter().find_map(|s| match s {
            Step::Mount {
                fstype: Some(t),
                data,
                ..
            } if t.as_bytes() == b"devpts" => data.clone(),
            _ => None,
        });
        assert!(
            !pts.unwrap().to_string_lossy().contains("gid="),
            "gid 5 is not mapped in a user namespace"
        );
        let d = names(&steps);
        for dev in DEVICES {
            let bind = format!("mount /dev/{dev} (bind) on /r/i/merged/dev/{dev}");
            assert!(d.contains(&bind), "rootless binds the host's {dev}");
        }
    }

    #[test]
    fn volumes_are_created_bound_and_made_read_only() {
        let tmp = std::env::temp_dir();
        let v = Volume {
            host: tmp.clone(),
            guest: "/data/in".into(),
            read_only: true,
        };
        let steps = plan(&config(false, vec![v]), Path::new("/r/i"), &[], "h").unwrap();
        let d = names(&steps);
        let i = d
            .iter()
            .position(|s| s == "mkdir /r/i/merged/data")
            .unwrap();
        assert_eq!(d[i + 1], "mkdir /r/i/merged/data/in");
        assert_eq!(
            d[i + 2],
            format!("mount {} (bind) on /r/i/merged/data/in", tmp.display())
        );
        assert!(
            matches!(&steps[i + 3], Step::Mount { flags, .. } if flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY))
        );
        assert!(i < d.iter().position(|s| s.contains("pivot_root")).unwrap());
    }

    /// A fake that records every call and fails on request.
    struct Recording {
        calls: RefCell<Vec<String>>,
        fail_on: Option<(&'static str, Errno)>,
    }

    impl Recording {
        fn call(&self, what: String) -> nix::Result<()> {
            let fail = self
                .fail_on
                .filter(|(needle, _)| what.contains(needle))
                .map(|(_, e)| e);
            self.calls.borrow_mut().push(what);
            fail.map_or(Ok(()), Err)
        }
    }

    impl Sys for Recording {
        fn wait_for_maps(&self) -> nix::Result<()> {
            self.call("wait".into())
        }
        fn detach(&self) -> nix::Result<()> {
            self.call("detach".into())
        }
        fn join_cgroup(&self, p: &CString) -> nix::Result<()> {
            self.call(format!("join {p:?}"))
        }
        fn unshare(&self, f: CloneFlags) -> nix::Result<()> {
            self.call(format!("unshare {f:?}"))
        }
        fn mount(
            &self,
            _: Option<&CStr>,
            t: &CStr,
            f: Option<&CStr>,
            _: MsFlags,
            _: Option<&CStr>,
        ) -> nix::Result<()> {
            self.call(format!("mount {f:?} {t:?}"))
        }
        fn mkdir(&self, p: &CStr, _: u32) -> nix::Result<()> {
            self.call(format!("mkdir {p:?}"))
        }
        fn mkfile(&self, p: &CStr) -> nix::Result<()> {
            self.call(format!("mkfile {p:?}"))
        }
        fn mknod(&self, p: &CStr, _: u32, _: u64) -> nix::Result<()> {
            self.call(format!("mknod {p:?}"))
        }
        fn symlink(&self, _: &CStr, l: &CStr) -> nix::Result<()> {
            self.call(format!("symlink {l:?}"))
        }
        fn chdir(&self, p: &CStr) -> nix::Result<()> {
            self.call(format!("chdir {p:?}"))
        }
        fn pivot_root(&self) -> nix::Result<()> {
            self.call("pivot".into())
        }
        fn hostname(&self, h: &CStr) -> nix::Result<()> {
            self.call(format!("hostname {h:?}"))
        }
        fn loopback_up(&self) -> nix::Result<()> {
            self.call("lo up".into())
        }
        fn stdio(&self) -> nix::Result<()> {
            self.call("stdio".into())
        }
        fn no_new_privs(&self) -> nix::Result<()> {
            self.call("nnp".into())
        }
        fn drop_caps(&self, keep: &[(u32, &str)]) -> nix::Result<()> {
            self.call(format!("caps {}", keep.len()))
        }
        fn seccomp(&self) -> nix::Result<()> {
            self.call("seccomp".into())
        }
        fn exec(&self) -> nix::Error {
            let _ = self.call("exec".into());
            Errno::ENOENT
        }
    }

    #[test]
    fn execution_follows_the_plan_and_stops_at_the_first_failure() {
        let steps = plan(&config(false, vec![]), Path::new("/r/i"), &[], "h").unwrap();
        let all = Recording {
            calls: RefCell::new(Vec::new()),
            fail_on: None,
        };
        let (index, errno) = execute(&steps, &all);
        assert_eq!(
            (index, errno),
            (steps.len() - 1, Errno::ENOENT),
            "only exec can fail here"
        );
        assert_eq!(all.calls.borrow().len(), steps.len());
        assert_eq!(all.calls.borrow().last().map(String::as_str), Some("exec"));
        let calls = all.calls.borrow();
        assert_eq!(calls[calls.len() - 2], "seccomp");
        assert_eq!(
            calls[calls.len() - 3],
            format!("caps {}", DEFAULT_CAPS.len())
        );
        drop(calls);

        // A failing mandatory mount stops everything after it.
        let failing = Recording {
            calls: RefCell::new(Vec::new()),
            fail_on: Some(("\"overlay\"", Errno::EPERM)),
        };
        let (index, errno) = execute(&steps, &failing);
        assert_eq!(errno, Errno::EPERM);
        assert!(steps[index].describe().contains("(overlay)"));
        assert_eq!(failing.calls.borrow().len(), index + 1);

        // A missing optional target (a masked path this kernel lacks) is skipped.
        let optional = Recording {
            calls: RefCell::new(Vec::new()),
            fail_on: Some(("proc/keys", Errno::ENOENT)),
        };
        let (index, _) = execute(&steps, &optional);
        assert_eq!(
            index,
            steps.len() - 1,
            "ENOENT on a masked path is not an error"
        );
    }

    #[test]
    fn default_caps_are_dockers_fourteen() {
        assert_eq!(DEFAULT_CAPS.len(), 14);
        assert!(!DEFAULT_CAPS.iter().any(|(_, n)| *n == "CAP_SYS_ADMIN"));
        assert!(DEFAULT_CAPS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
