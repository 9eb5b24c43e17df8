//! The OCI bundle of one instance: `config.json`, built with the `oci-spec`
//! crate from the scenario's `[container]` section, and the instance's root
//! (an overlay of the run's image under a per-instance upper layer, mounted
//! on the host under the run directory, so a crash leaves it where
//! `isobench clean` finds it).

use crate::cgroup::{CPU_PERIOD_US, Limits};
use crate::env::EnvError;
use crate::env::container::{DEFAULT_CAPS, MASKED_DIRS, MASKED_FILES, READ_ONLY};
use oci_spec::runtime::{
    Capability, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, RootBuilder, Spec,
};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What every instance's `config.json` shares.
#[derive(Debug, Clone)]
pub struct Template {
    /// cgroup limits.
    pub limits: Limits,
    /// `RLIMIT_NOFILE` (soft, hard) the process starts with.
    pub nofile: (u64, u64),
}

/// The cgroup limits as OCI resources (memory without swap on top, CFS
/// quota, pids); `None` when no limit is set.
pub fn resources(limits: &Limits) -> Result<Option<LinuxResources>, EnvError> {
    if !limits.any() {
        return Ok(None);
    }
    let bad = |e: oci_spec::OciSpecError| {
        EnvError::Unavailable(format!("[container] limits as OCI resources: {e}"))
    };
    let mut r = LinuxResourcesBuilder::default();
    if let Some(b) = limits.memory_bytes {
        let b = b as i64;
        r = r.memory(
            LinuxMemoryBuilder::default()
                .limit(b)
                .swap(b)
                .build()
                .map_err(bad)?,
        );
    }
    if let Some(q) = limits.cpu_quota_us() {
        r = r.cpu(
            LinuxCpuBuilder::default()
                .quota(q as i64)
                .period(CPU_PERIOD_US)
                .build()
                .map_err(bad)?,
        );
    }
    if let Some(n) = limits.pids {
        r = r.pids(
            LinuxPidsBuilder::default()
                .limit(n as i64)
                .build()
                .map_err(bad)?,
        );
    }
    r.build().map(Some).map_err(bad)
}

fn capabilities() -> HashSet<Capability> {
    DEFAULT_CAPS
        .iter()
        .filter_map(|(_, n)| serde_json::from_value(serde_json::json!(n)).ok())
        .collect()
}

/// What varies per instance.
pub struct InstanceSpec<'a> {
    /// The root directory (the overlay's mount point).
    pub rootfs: &'a Path,
    /// The container's hostname.
    pub hostname: &'a str,
    /// The cgroup path (absolute: `/isobench/<run-id>.<instance>`).
    pub cgroups_path: &'a str,
    /// The process: `/init` and the workload's arguments.
    pub args: Vec<String>,
    /// Its environment, `KEY=value`.
    pub env: Vec<String>,
}

/// The `config.json` of one instance: runc's defaults (namespaces pid,
/// net, ipc, uts, mount; `/proc`, `/dev`, `/sys`, ...) with Docker's
/// capabilities, masked and read-only paths, no new privileges, the
/// limits, and the agent as the process.
pub fn spec(t: &Template, i: &InstanceSpec<'_>) -> Result<Spec, EnvError> {
    let bad = |e: oci_spec::OciSpecError| EnvError::Unavailable(format!("OCI config.json: {e}"));
    let mut spec = Spec::default();
    spec.set_hostname(Some(i.hostname.to_string()));
    spec.set_root(Some(
        RootBuilder::default()
            .path(i.rootfs.to_path_buf())
            .readonly(false)
            .build()
            .map_err(bad)?,
    ));
    let mut process = spec.process().clone().unwrap_or_default();
    process.set_args(Some(i.args.clone()));
    process.set_env(Some(i.env.clone()));
    process.set_no_new_privileges(Some(true));
    let caps = capabilities();
    let mut c = process.capabilities().clone().unwrap_or_default();
    c.set_bounding(Some(caps.clone()));
    c.set_effective(Some(caps.clone()));
    c.set_permitted(Some(caps));
    c.set_inheritable(None);
    c.set_ambient(None);
    process.set_capabilities(Some(c));
    let nofile: PosixRlimit = PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(t.nofile.0)
        .hard(t.nofile.1)
        .build()
        .map_err(bad)?;
    process.set_rlimits(Some(vec![nofile]));
    spec.set_process(Some(process));
    let mut linux = spec.linux().clone().unwrap_or_default();
    linux.set_cgroups_path(Some(PathBuf::from(i.cgroups_path)));
    linux.set_resources(resources(&t.limits)?);
    let slash = |p: &&str| format!("/{p}");
    linux.set_masked_paths(Some(
        MASKED_FILES.iter().chain(MASKED_DIRS).map(slash).collect(),
    ));
    linux.set_readonly_paths(Some(READ_ONLY.iter().map(slash).collect()));
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Writes `spec` as `dir/config.json`.
pub fn write(spec: &Spec, dir: &Path) -> Result<(), EnvError> {
    let path = dir.join("config.json");
    spec.save(&path)
        .map_err(|e| EnvError::Unavailable(format!("writing {}: {e}", path.display())))
}

/// Mounts the instance's root: an overlay of `layers` (top first) under
/// `dir/upper`, on `dir/rootfs`. Returns the mount point.
pub fn mount_root(layers: &[PathBuf], dir: &Path) -> Result<PathBuf, EnvError> {
    let (upper, work, root) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
    for d in [&upper, &work, &root] {
        std::fs::create_dir_all(d)
            .map_err(|e| EnvError::io(format!("creating {}", d.display()), e))?;
    }
    let opts = crate::env::container::overlay_options(layers, &upper, &work)?;
    nix::mount::mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_slice()),
    )
    .map_err(|e| {
        EnvError::sys(
            format!("mounting the overlay root on {}", root.display()),
            e,
        )
    })?;
    Ok(root)
}

/// Detaches the instance's root; a root not mounted is fine.
pub fn unmount_root(dir: &Path) {
    let _ = nix::mount::umount2(&dir.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_resources_and_the_agent_the_process() {
        let t = Template {
            limits: Limits {
                memory_bytes: Some(64 << 20),
                cpus: Some(0.5),
                pids: Some(32),
            },
            nofile: (1024, 4096),
        };
        let i = InstanceSpec {
            rootfs: Path::new("/r/rootfs"),
            hostname: "noop-runc-r1",
            cgroups_path: "/isobench/run.noop-runc-r1",
            args: vec!["/init".into(), "noop".into()],
            env: vec!["ISOBENCH_ENV=runc".into()],
        };
        let json = serde_json::to_value(spec(&t, &i).unwrap()).unwrap();
        let r = &json["linux"]["resources"];
        assert_eq!(r["memory"]["limit"], 64 << 20);
        assert_eq!(r["memory"]["swap"], 64 << 20);
        assert_eq!(r["cpu"]["quota"], 50_000);
        assert_eq!(r["pids"]["limit"], 32);
        assert_eq!(json["process"]["args"][1], "noop");
        assert_eq!(json["process"]["noNewPrivileges"], true);
        assert_eq!(json["root"]["path"], "/r/rootfs");
        assert_eq!(json["linux"]["cgroupsPath"], "/isobench/run.noop-runc-r1");
        let caps = json["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPS.len());
        assert!(
            !caps
                .iter()
                .any(|c| c == "CAP_SYS_ADMIN" || c == "CAP_SYS_PTRACE")
        );
        let masked = json["linux"]["maskedPaths"].as_array().unwrap();
        assert!(masked.iter().any(|p| p == "/proc/kcore"));
        let ns: Vec<&str> = json["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert!(ns.contains(&"network") && ns.contains(&"pid"), "{ns:?}");
        assert!(resources(&Limits::default()).unwrap().is_none());
    }
}
