//! The real container runtimes as environments: `runc`, `crun` and
//! `gvisor` (runsc) run an OCI bundle isobench writes per instance
//! ([`bundle`], [`direct`]); `docker` and `podman` run the run's image,
//! imported once per run, through their CLI ([`daemon`]). All of them run
//! the very same agent bytes on the very same image tree as `container`
//! and `vm` ([`image_layers`] is where that tree is chosen).
//!
//! Frames: these runtimes pass the container only its standard streams
//! (runsc and Docker have nothing like `--preserve-fds`), so the agent is
//! told `ISOBENCH_FRAME_FD=stdout`: it moves stdout to a private
//! close-on-exec descriptor for its frames and points stdout at stderr, so
//! the runtime CLI's stdout carries frames only and its stderr the
//! instance's output (in `exec`, whose stdout is the user's, the two swap).
//!
//! What a runtime costs beside the workload ([`footprint`]): the PSS of
//! every process whose command line names the instance (the runtime CLI,
//! containerd's shim, conmon, gVisor's sentry and gofer) plus, for Docker,
//! the daemon's growth while the instance lives: `runtime_overhead_mib`.

pub mod bundle;
pub mod clean;
pub mod daemon;
pub mod direct;
pub mod footprint;

use super::{Bed, EnvError, EnvKind, Io, Streams};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The image layers (top first) an instance of a runtime runs: the run's
/// own layer (agent, packed programs) and, with `--image`, the real
/// image's layers under it — the same lowers isobench's container mounts.
pub fn image_layers(bed: &Bed<'_>) -> Vec<PathBuf> {
    bed.layers.to_vec()
}

/// gVisor's platform: how its sentry intercepts the workload's system
/// calls (`[container] gvisor_platform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GvisorPlatform {
    /// ptrace(2): works everywhere, slowest system calls.
    #[default]
    Ptrace,
    /// KVM: needs a KVM that can run gVisor's guest (hangs on nested
    /// PVM hosts).
    Kvm,
    /// seccomp traps: needs a runsc from 2023 on.
    Systrap,
}

impl std::fmt::Display for GvisorPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            GvisorPlatform::Ptrace => "ptrace",
            GvisorPlatform::Kvm => "kvm",
            GvisorPlatform::Systrap => "systrap",
        })
    }
}

/// The OCI runtime a daemon (Docker, Podman) runs instances with
/// (`[container] docker_runtime`, `podman_runtime`): "Docker + gVisor" is
/// `docker_runtime = "runsc"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DaemonRuntime {
    /// The daemon's default (recorded in `meta.json`).
    #[default]
    Default,
    /// runc.
    Runc,
    /// crun.
    Crun,
    /// gVisor's runsc.
    Runsc,
}

impl DaemonRuntime {
    /// The `--runtime` value, `None` for the default.
    pub fn flag(self) -> Option<&'static str> {
        match self {
            DaemonRuntime::Default => None,
            DaemonRuntime::Runc => Some("runc"),
            DaemonRuntime::Crun => Some("crun"),
            DaemonRuntime::Runsc => Some("runsc"),
        }
    }
}

/// A runtime program found on this host.
#[derive(Debug, Clone, Serialize)]
pub struct Tool {
    /// Its name (`runc`).
    pub name: &'static str,
    /// Its absolute path.
    pub path: PathBuf,
    /// The first line of its version output.
    pub version: String,
}

/// The Debian package that provides `program`.
pub fn package(program: &str) -> &'static str {
    match program {
        "runc" => "runc",
        "crun" => "crun",
        "runsc" => "runsc",
        "docker" => "docker.io",
        "podman" => "podman",
        _ => "the runtime's package",
    }
}

/// `program` in `$PATH`, with its version; the error names the package.
pub fn find(name: &'static str, kind: EnvKind) -> Result<Tool, EnvError> {
    let missing = || {
        EnvError::Unavailable(format!(
            "environment `{kind}` needs `{name}`, which is not installed: \
             apt-get install --no-install-recommends {}",
            package(name)
        ))
    };
    let path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(missing)?;
    let out = tool(&path)
        .arg("--version")
        .output()
        .map_err(|e| EnvError::io(format!("running {} --version", path.display()), e))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text.lines().next().unwrap_or("").trim().to_string();
    if !out.status.success() || version.is_empty() {
        return Err(EnvError::Unavailable(format!(
            "`{} --version` failed ({}): reinstall {}",
            path.display(),
            out.status,
            package(name)
        )));
    }
    Ok(Tool {
        name,
        path,
        version,
    })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The runtimes need root here: they create namespaces, cgroups and mounts
/// as root (rootless runtimes are not supported yet).
pub fn need_root(kind: EnvKind) -> Result<(), EnvError> {
    if nix::unistd::geteuid().is_root() {
        Ok(())
    } else {
        Err(EnvError::Unavailable(format!(
            "environment `{kind}` needs root (rootless runtimes are not supported yet): run isobench with sudo"
        )))
    }
}

/// The process's `RLIMIT_NOFILE` and `RLIMIT_NPROC` (soft, hard).
pub fn rlimits() -> ((u64, u64), (u64, u64)) {
    use nix::sys::resource::{Resource, getrlimit};
    let get = |r| getrlimit(r).unwrap_or((1024, 1024));
    (get(Resource::RLIMIT_NOFILE), get(Resource::RLIMIT_NPROC))
}

/// Whether this process holds `CAP_SYS_RESOURCE` (raising rlimits past
/// their hard limit needs it).
pub fn has_cap_sys_resource() -> bool {
    const CAP_SYS_RESOURCE: u32 = 24;
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// Whether the host has the hybrid cgroup layout (v1 controllers, cgroup2
/// at `/sys/fs/cgroup/unified`) that crun refuses, as the container
/// environment detects it.
pub fn hybrid_cgroups() -> bool {
    crate::cgroup::detect(Path::new("/sys/fs/cgroup")) == crate::cgroup::CgroupMode::Hybrid
}

/// The container name of an instance, unique across runs and hosts'
/// concurrent runs: `isobench-<run-id>-<instance>`, lower case (Docker's
/// rule), with only `[a-z0-9_.-]`.
pub fn container_name(run_id: &str, instance: &str) -> String {
    format!("isobench-{run_id}-{instance}")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The standard streams of a runtime CLI, and the agent's
/// `ISOBENCH_FRAME_FD` value. In a run: stdin from /dev/null, stdout the
/// frames pipe, stderr the output pipe (`stdout`). In `exec`: stdin and
/// stdout the user's, stderr the frames pipe (`stderr`), so the program's
/// stdout is the user's stdout.
pub fn standard_streams(io: &Io) -> Result<(CliStdio, Streams), EnvError> {
    let (frames_r, frames_w) =
        std::io::pipe().map_err(|e| EnvError::io("creating the frames pipe", e))?;
    let frames = std::fs::File::from(std::os::fd::OwnedFd::from(frames_r));
    Ok(match io {
        Io::Captured { .. } => {
            let (out_r, out_w) =
                std::io::pipe().map_err(|e| EnvError::io("creating the output pipe", e))?;
            (
                CliStdio {
                    stdin: Stdio::null(),
                    stdout: frames_w.into(),
                    stderr: out_w.into(),
                    agent_var: "stdout",
                },
                Streams {
                    frames,
                    output: Some(std::fs::File::from(std::os::fd::OwnedFd::from(out_r))),
                },
            )
        }
        Io::Inherited => (
            CliStdio {
                stdin: Stdio::inherit(),
                stdout: Stdio::inherit(),
                stderr: frames_w.into(),
                agent_var: "stderr",
            },
            Streams {
                frames,
                output: None,
            },
        ),
    })
}

/// A runtime CLI's standard streams.
pub struct CliStdio {
    stdin: Stdio,
    stdout: Stdio,
    stderr: Stdio,
    /// What the agent is told in `ISOBENCH_FRAME_FD`.
    pub agent_var: &'static str,
}

/// A command for a runtime's or CLI's helper call (version, `ps`, `rm`,
/// `rmi`, probes): stdin empty, and no descriptor of isobench's above
/// stderr inherited — another instance's frame pipe must not reach a
/// daemon's CLI.
pub fn tool(program: impl AsRef<std::ffi::OsStr>) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null());
    // SAFETY: runs in the forked child before exec; close_range/fcntl are
    // async-signal-safe and nothing allocates.
    unsafe {
        cmd.pre_exec(|| super::stdio::cloexec_from(3).map_err(std::io::Error::from));
    }
    cmd
}

/// A runtime CLI command for an instance: these streams, its own process
/// group, killed when isobench dies, and no descriptor of isobench's (or
/// its caller's) beyond the three.
pub fn cli(program: &Path, stdio: CliStdio) -> Command {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(program);
    cmd.stdin(stdio.stdin)
        .stdout(stdio.stdout)
        .stderr(stdio.stderr)
        .process_group(0);
    // SAFETY: runs in the forked child before exec; prctl and
    // close_range/fcntl are async-signal-safe and nothing allocates.
    unsafe {
        cmd.pre_exec(|| {
            super::native::die_with_parent()?;
            super::stdio::cloexec_from(3).map_err(std::io::Error::from)
        });
    }
    cmd
}

/// The run's id: its runtime directory's name.
pub fn run_id(run_dir: &crate::rundir::RunDir) -> String {
    run_dir
        .path()
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_and_unique_per_run() {
        assert_eq!(
            container_name("20261128T204700Z-04f0", "cpu-docker-r1"),
            "isobench-20261128t204700z-04f0-cpu-docker-r1"
        );
        assert_eq!(container_name("exec-X", "a/b"), "isobench-exec-x-a-b");
    }

    #[test]
    fn a_missing_runtime_names_its_package() {
        let e = find("isobench-no-such-runtime", EnvKind::Runc).unwrap_err();
        assert!(e.to_string().contains("apt-get install"), "{e}");
    }
}
