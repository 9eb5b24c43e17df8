//! `isobench doctor`: one line per prerequisite, each OK or with its fix.
//!
//! The namespace and overlayfs checks really try the operation, in a forked
//! child that exits right after, so the answer is what a run would meet.

use crate::cgroup::{self, CgroupMode};
use crate::env::vm;
use crate::image;
use crate::kernel;
use nix::sched::CloneFlags;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;
use std::fmt;
use std::path::Path;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Works.
    Ok,
    /// Works in a reduced way (a VM under TCG instead of KVM).
    Warn,
    /// Does not work; the check's fix says what to do.
    Fail,
}

/// One prerequisite.
#[derive(Debug, Clone)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it, when not OK.
    pub fix: Option<String>,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self.status {
            Status::Ok => "[ OK ]",
            Status::Warn => "[WARN]",
            Status::Fail => "[FAIL]",
        };
        write!(f, "{tag} {:<16} {}", self.name, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n       {:<16} fix: {fix}", "")?;
        }
        Ok(())
    }
}

fn check(name: &str, status: Status, detail: impl Into<String>, fix: Option<&str>) -> Check {
    Check {
        name: name.into(),
        status,
        detail: detail.into(),
        fix: fix.map(String::from),
    }
}

/// Runs `f` in a forked child and returns its exit status (0: it worked).
fn in_child(f: impl FnOnce() -> i32) -> Result<i32, String> {
    // SAFETY: doctor runs these checks before starting any thread, so the
    // child is a copy of a single-threaded process and may do anything; it
    // leaves with _exit and never returns into the caller's code.
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Child) => {
            let code = f();
            // SAFETY: _exit ends the child at once, without running the
            // parent's atexit handlers or destructors a second time.
            unsafe { libc::_exit(code) }
        }
        Ok(ForkResult::Parent { child }) => match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => Ok(code),
            Ok(other) => Err(format!("check process ended with {other:?}")),
            Err(e) => Err(format!("waitpid: {e}")),
        },
        Err(e) => Err(format!("fork: {e}")),
    }
}

fn namespace_check(name: &str, flag: CloneFlags) -> Check {
    let result = in_child(|| match nix::sched::unshare(flag) {
        Ok(()) => 0,
        Err(e) => e as i32,
    });
    match result {
        Ok(0) => check(&format!("ns {name}"), Status::Ok, "unshare works", None),
        Ok(errno) => check(
            &format!("ns {name}"),
            Status::Fail,
            format!("unshare failed: {}", nix::errno::Errno::from_raw(errno)),
            Some("run as root on a kernel with this namespace enabled"),
        ),
        Err(e) => check(&format!("ns {name}"), Status::Fail, e, Some("run as root")),
    }
}

fn overlay_check(scratch: &Path) -> Check {
    let dirs = ["lower", "upper", "work", "merged"].map(|d| scratch.join(d));
    for d in &dirs {
        if let Err(e) = std::fs::create_dir_all(d) {
            return check(
                "overlayfs",
                Status::Fail,
                format!("{}: {e}", d.display()),
                Some("run as root"),
            );
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        dirs[0].display(),
        dirs[1].display(),
        dirs[2].display()
    );
    let result = in_child(|| {
        use nix::mount::{MsFlags, mount};
        if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWNS) {
            return e as i32;
        }
        let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
        if let Err(e) = mount(None::<&str>, "/", None::<&str>, private, None::<&str>) {
            return e as i32;
        }
        match mount(
            Some("overlay"),
            &dirs[3],
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        ) {
            Ok(()) => 0,
            Err(e) => e as i32,
        }
    });
    let _ = std::fs::remove_dir_all(scratch);
    match result {
        Ok(0) => check(
            "overlayfs",
            Status::Ok,
            "an overlay mounts in a private mount namespace",
            None,
        ),
        Ok(errno) => check(
            "overlayfs",
            Status::Fail,
            format!(
                "mount -t overlay failed: {}",
                nix::errno::Errno::from_raw(errno)
            ),
            Some("modprobe overlay (and run as root)"),
        ),
        Err(e) => check("overlayfs", Status::Fail, e, Some("run as root")),
    }
}

/// KVM opens: what the cached probe verdict says, if a run has probed it.
fn kvm_probe_check(kernel: Option<&kernel::GuestKernel>) -> Check {
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let verdict = kernel
        .zip(vm::qemu_version(Path::new(vm::QEMU)).ok())
        .and_then(|(k, qemu)| {
            vm::ProbeCache::new(&kernel::cache_dir(), &boot_id, &qemu, k.boot_image()).load()
        });
    match verdict {
        Some(v) if v.kvm_works => check(
            "kvm",
            Status::Ok,
            format!("usable: {} (probed {})", v.detail, v.probed_at),
            None,
        ),
        Some(v) => check(
            "kvm",
            Status::Warn,
            format!(
                "/dev/kvm opens but guests do not boot under it, VMs run under TCG: {} (probed {})",
                v.detail, v.probed_at
            ),
            None,
        ),
        None => check(
            "kvm",
            Status::Ok,
            "/dev/kvm opens; the first run with VMs confirms it with one probe boot (its verdict is cached until the host reboots)",
            None,
        ),
    }
}

/// Every check, in order: the agent, then each environment's (from the
/// registry).
pub fn checks() -> Vec<Check> {
    let mut out = vec![agent_check()];
    for entry in crate::env::registry::ENTRIES {
        out.extend((entry.doctor)());
    }
    out
}

fn agent_check() -> Check {
    match image::find_agent().and_then(|a| image::check_static(&a).map(|()| a)) {
        Ok(a) => check(
            "agent",
            Status::Ok,
            format!("{} (static)", a.display()),
            None,
        ),
        Err(e) => check(
            "agent",
            Status::Fail,
            e.to_string(),
            Some("cargo build --release"),
        ),
    }
}

/// The native environment needs only the agent.
pub fn native_checks() -> Vec<Check> {
    Vec::new()
}

/// isobench's container: root, every namespace, overlayfs, cgroups.
pub fn container_checks() -> Vec<Check> {
    let mut out = Vec::new();
    let root = nix::unistd::geteuid().is_root();
    out.push(if root {
        check("root", Status::Ok, "running as root", None)
    } else {
        check(
            "root",
            Status::Fail,
            format!("running as uid {}", nix::unistd::geteuid()),
            Some("run as root: the container environment needs it"),
        )
    });
    for (name, flag) in [
        ("pid", CloneFlags::CLONE_NEWPID),
        ("mount", CloneFlags::CLONE_NEWNS),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("net", CloneFlags::CLONE_NEWNET),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("user", CloneFlags::CLONE_NEWUSER),
    ] {
        out.push(namespace_check(name, flag));
    }
    let scratch = std::env::temp_dir().join(format!("isobench-doctor-{}", std::process::id()));
    out.push(overlay_check(&scratch));
    let mode = cgroup::detect(Path::new("/sys/fs/cgroup"));
    out.push(match mode {
        CgroupMode::None => check(
            "cgroups",
            Status::Fail,
            "no cgroup file system at /sys/fs/cgroup",
            Some("mount cgroup2 (or the v1 controllers) at /sys/fs/cgroup"),
        ),
        CgroupMode::Hybrid => check(
            "cgroups",
            Status::Ok,
            "hybrid: v1 controllers plus a cgroup2 tree at /sys/fs/cgroup/unified",
            None,
        ),
        other => check("cgroups", Status::Ok, other.to_string(), None),
    });
    out
}

/// `vm-minimal`: whether the minimal kernel is built, and how long its
/// build took here. Not built is a warning: only `vm-minimal` and
/// `--kernel minimal` need it.
pub fn vm_minimal_checks() -> Vec<Check> {
    let cache = kernel::cache_dir();
    let fix = "isobench kernel build";
    vec![match kernel::minimal::installed(&cache) {
        Ok(Some(b)) => check(
            "minimal kernel",
            Status::Ok,
            format!(
                "{} built ({:.1} MiB vmlinux, config {}); the build took {:.0} s here with make -j{} (load {:.1} at its start)",
                b.info.release,
                b.info.vmlinux_bytes as f64 / 1048576.0,
                b.info.config_hash,
                b.info.build_secs,
                b.info.jobs,
                b.info.load_start
            ),
            None,
        ),
        Ok(None) => check(
            "minimal kernel",
            Status::Warn,
            "not built (needed by the vm-minimal environment and --kernel minimal); a build takes several minutes on 2 CPUs",
            Some(fix),
        ),
        Err(e) => check(
            "minimal kernel",
            Status::Warn,
            e.to_string(),
            Some(
                "apt-get install -y --no-install-recommends linux-source-6.1 bc bison flex libelf-dev libssl-dev make gcc",
            ),
        ),
    }]
}

/// The VM: QEMU, KVM or why not, the guest kernel.
pub fn vm_checks() -> Vec<Check> {
    let mut out = Vec::new();
    out.push(match vm::qemu_version(Path::new(vm::QEMU)) {
        Ok(v) => check("qemu", Status::Ok, v, None),
        Err(e) => check(
            "qemu",
            Status::Fail,
            e,
            Some("apt-get install qemu-system-x86"),
        ),
    });
    let guest_kernel = kernel::resolve(None, &kernel::cache_dir());
    out.push(
        match vm::kvm_unusable(Path::new("/sys/module"), Path::new("/dev/kvm")) {
            None => kvm_probe_check(guest_kernel.as_ref().ok()),
            Some(why) => check(
                "kvm",
                Status::Warn,
                format!("not usable, VMs run under TCG: {why}"),
                None,
            ),
        },
    );
    out.push(match guest_kernel {
        Ok(k) => check(
            "guest kernel",
            Status::Ok,
            format!(
                "{} (boots {}; modules: {})",
                k.version,
                k.boot_image().display(),
                k.modules
                    .as_ref()
                    .map_or("none kept".into(), |m| m.display().to_string())
            ),
            None,
        ),
        Err(e) => check(
            "guest kernel",
            Status::Fail,
            e.to_string(),
            Some(kernel::FIX),
        ),
    });
    out
}

/// The checks of a real runtime (runc, crun, gvisor, docker, podman):
/// installed, and for Docker a daemon that answers. A runtime is optional
/// (the default scenario does not use it): a missing one is a warning that
/// names its package.
pub fn runtime_checks(kind: crate::env::EnvKind) -> Vec<Check> {
    use crate::env::oci;
    let program = match kind {
        crate::env::EnvKind::Docker | crate::env::EnvKind::Podman => oci::daemon::program(kind),
        _ => oci::direct::program(kind),
    };
    let name = kind.as_str();
    let mut out = Vec::new();
    match oci::find(program, kind) {
        Ok(tool) => {
            out.push(check(
                name,
                Status::Ok,
                format!("{} ({})", tool.version, tool.path.display()),
                None,
            ));
            if kind == crate::env::EnvKind::Docker {
                out.push(match oci::daemon::server_version(&tool) {
                    Ok(v) => check("docker daemon", Status::Ok, format!("server {v}"), None),
                    Err(e) => check(
                        "docker daemon",
                        Status::Warn,
                        e.to_string(),
                        Some("start your Docker daemon (or set DOCKER_HOST); isobench never starts one"),
                    ),
                });
            }
        }
        Err(_) => {
            let fix = format!(
                "apt-get install --no-install-recommends {}",
                oci::package(program)
            );
            out.push(check(
                name,
                Status::Warn,
                format!("`{program}` is not installed; --env {name} cannot run"),
                Some(&fix),
            ));
        }
    }
    out
}
