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
//!
//! The files: [`plan`] (the steps as data), [`sys`] (the seam through which
//! they run, and its recording fake), [`linux`] (the real system calls),
//! [`volume`] (bind mounts), [`runtime`] (the environment: the clone, the
//! instance, its teardown).

pub mod linux;
pub mod plan;
pub mod runtime;
pub mod sys;
pub mod volume;

pub use linux::{drop_capabilities, loopback_up};
pub use plan::{Step, overlay_options, plan};
pub use runtime::Container;
pub use sys::{Sys, execute};
pub use volume::Volume;

use super::EnvError;
use crate::cgroup::{CgroupUse, Driver, Limits};
use crate::seccomp::{Filters, SeccompChoice, SeccompError};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    /// The instance's network: `none` (its own namespace with `lo`),
    /// `bridge` (plus a veth onto the run's bridge), `host` (no network
    /// namespace). Set per instance from its launch.
    #[serde(skip)]
    pub network: crate::net::Mode,
}

/// Compiles the chosen seccomp profile for this runtime's containers,
/// which keep [`DEFAULT_CAPS`].
pub fn seccomp_filters(choice: &SeccompChoice) -> Result<Option<Arc<Filters>>, SeccompError> {
    let caps: Vec<&str> = DEFAULT_CAPS.iter().map(|(_, n)| *n).collect();
    Ok(crate::seccomp::compile(choice, &caps)?.map(Arc::new))
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
        layers: bed.layers.to_vec(),
        volumes: settings.volumes.clone(),
        limits: settings.limits,
        cgroups: settings.cgroups,
        rootless,
        seccomp,
        network: crate::net::Mode::None,
    };
    Ok(super::Built {
        env: Box::new(
            Container::new(config, driver, Arc::clone(bed.run_dir)).with_net(Arc::clone(bed.net)),
        ),
        notes,
    })
}

#[cfg(test)]
pub(crate) mod fixture {
    use super::*;

    pub fn config(rootless: bool, volumes: Vec<Volume>) -> ContainerConfig {
        ContainerConfig {
            layers: vec!["/r/app".into(), "/r/image".into()],
            volumes,
            limits: Limits::default(),
            cgroups: CgroupUse::Auto,
            rootless,
            seccomp: seccomp_filters(&SeccompChoice::Default).unwrap(),
            network: crate::net::Mode::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_caps_are_dockers_fourteen() {
        assert_eq!(DEFAULT_CAPS.len(), 14);
        assert!(!DEFAULT_CAPS.iter().any(|(_, n)| *n == "CAP_SYS_ADMIN"));
        assert!(DEFAULT_CAPS.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
