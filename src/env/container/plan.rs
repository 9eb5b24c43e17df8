//! The set-up of a container's first process as data: the [`Step`]s that
//! [`plan`] prepares before the clone (every string they need already
//! built), so that the child runs them without allocating and tests check
//! their order without root.

use super::{ContainerConfig, DEVICES, EnvError, MASKED_DIRS, MASKED_FILES, READ_ONLY};
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// One set-up step of the child, with every string it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Rootless: wait until the parent has written the id maps.
    WaitForMaps,
    /// Wait until the host has plumbed the network namespace (`bridge`).
    WaitForNet,
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
            Step::WaitForNet => "wait for the host to plumb the network namespace".into(),
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

pub(super) fn c(bytes: &[u8]) -> CString {
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
    // An empty read-only tmpfs over each masked directory under `prefix`.
    let mask_dirs = |prefix: &str| -> Vec<Step> {
        MASKED_DIRS
            .iter()
            .filter(|d| d.starts_with(prefix) && exists(d))
            .map(|d| {
                optional(mount(
                    Some(b"tmpfs"),
                    at(d),
                    Some(b"tmpfs"),
                    MsFlags::MS_RDONLY,
                    Some(b"size=0"),
                ))
            })
            .collect()
    };
    steps.extend(mask_dirs("proc/"));
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
    steps.extend(mask_dirs("sys/"));

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
    match config.network {
        // The host brings lo up with eth0 while the child mounts.
        crate::net::Mode::Bridge => steps.push(Step::WaitForNet),
        // The host's own network: nothing of it to touch.
        crate::net::Mode::Host => {}
        crate::net::Mode::None | crate::net::Mode::User => steps.push(Step::LoopbackUp),
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::container::Volume;
    use crate::env::container::fixture::config;
    use crate::env::container::seccomp_filters;
    use crate::seccomp::SeccompChoice;

    fn names(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::describe).collect()
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
}
