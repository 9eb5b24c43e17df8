//! `runc`, `crun` and `gvisor`: an OCI bundle per instance ([`bundle`]),
//! run in the foreground by the runtime's CLI (`runc run --bundle B ID`),
//! with the runtime's state in a run-private `--root` under the run
//! directory, so `isobench clean` finds what a crash left by the run id.

use super::{Tool, bundle, footprint};
use crate::env::{
    Bed, Built, EnvError, EnvFacts, EnvKind, Environment, Instance, Launch, ProcessHandle, Streams,
};
use crate::workload::Metric;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The runtime program of each of these environments.
pub fn program(kind: EnvKind) -> &'static str {
    match kind {
        EnvKind::Crun => "crun",
        EnvKind::Gvisor => "runsc",
        _ => "runc",
    }
}

/// An OCI runtime run directly on bundles.
pub struct Oci {
    kind: EnvKind,
    tool: Tool,
    /// Global flags before the subcommand (`--root R`, runsc's platform).
    flags: Vec<String>,
    /// crun on a hybrid cgroup host: run it in a private mount namespace
    /// with `/sys/fs/cgroup/unified` unmounted.
    hide_unified: bool,
    /// Conditions detected on this host and what was done about them.
    workarounds: Vec<String>,
    layers: Vec<PathBuf>,
    template: bundle::Template,
    instances: PathBuf,
    root: PathBuf,
    run_dir: Arc<crate::rundir::RunDir>,
    run_id: String,
}

/// The runtime is installed and isobench is root.
pub fn check_host(kind: EnvKind) -> Result<(), EnvError> {
    super::need_root(kind)?;
    super::find(program(kind), kind).map(|_| ())
}

/// Builds the environment for a run.
pub fn build(kind: EnvKind, bed: &Bed<'_>) -> Result<Built, EnvError> {
    let env = Oci::new(
        kind,
        super::image_layers(bed),
        bed.spec.container,
        bed.run_dir,
    )?;
    Ok(Built {
        env: Box::new(env),
        notes: Vec::new(),
    })
}

impl Oci {
    /// The environment running instances on `layers` (top first) with
    /// these settings, its state under `run_dir`.
    pub fn new(
        kind: EnvKind,
        layers: Vec<PathBuf>,
        settings: &crate::scenario::ContainerSettings,
        run_dir: &Arc<crate::rundir::RunDir>,
    ) -> Result<Oci, EnvError> {
        let tool = super::find(program(kind), kind)?;
        let root = run_dir.path().join("oci").join(tool.name);
        let instances = run_dir.path().join("oci").join("bundles");
        for d in [&root, &instances] {
            std::fs::create_dir_all(d)
                .map_err(|e| EnvError::io(format!("creating {}", d.display()), e))?;
        }
        let mut flags = vec!["--root".to_string(), root.display().to_string()];
        let mut workarounds = Vec::new();
        let mut hide_unified = false;
        if kind == EnvKind::Crun && super::hybrid_cgroups() {
            hide_unified = true;
            workarounds.push(
            "hybrid cgroup layout (v1 controllers + cgroup2 at /sys/fs/cgroup/unified), which crun \
             refuses: crun runs in a private mount namespace with /sys/fs/cgroup/unified unmounted"
                .to_string(),
        );
        }
        if kind == EnvKind::Gvisor {
            flags.push(format!("--platform={}", settings.gvisor_platform));
            flags.push("--network=none".to_string());
            workarounds.push(format!(
                "gVisor platform `{}` (the scenario's `[container] gvisor_platform`; `kvm` needs a \
             KVM that can run gVisor's guest, `systrap` a runsc newer than 2023)",
                settings.gvisor_platform
            ));
        }
        let (nofile, _) = super::rlimits();
        Ok(Oci {
            kind,
            tool,
            flags,
            hide_unified,
            workarounds,
            layers,
            template: bundle::Template {
                limits: settings.limits,
                nofile: (nofile.0.min(1 << 20), nofile.1.min(1 << 20)),
            },
            instances,
            root,
            run_dir: Arc::clone(run_dir),
            run_id: super::run_id(run_dir),
        })
    }

    fn runtime_facts(&self) -> serde_json::Value {
        serde_json::json!({
            "program": self.tool.name,
            "path": self.tool.path,
            "version": self.tool.version,
            "flags": self.flags,
            "cgroup_driver": "cgroupfs (cgroupsPath /isobench/<run-id>.<instance>)",
            "workarounds": self.workarounds,
        })
    }
}

impl Environment for Oci {
    fn kind(&self) -> EnvKind {
        self.kind
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn knobs(&self) -> serde_json::Value {
        serde_json::json!({
            "runtime": self.runtime_facts(),
            "bundle": "config.json from oci-spec: namespaces pid, net, ipc, uts, mount; \
                       Docker's capabilities, masked and read-only paths; no_new_privs",
            "root": "overlay of the image under a per-instance upper layer",
            "layers": self.layers,
            "limits": self.template.limits,
            "rlimit_nofile": self.template.nofile,
            "seccomp": "none (isobench's seccomp profile is not translated to OCI yet)",
            "frames": "the agent's stdout, moved to a private descriptor; output on stderr",
        })
    }

    fn facts(&self) -> EnvFacts {
        EnvFacts {
            runtime: Some(self.runtime_facts()),
            ..EnvFacts::default()
        }
    }

    fn startup_timeout(&self) -> Duration {
        // gVisor under ptrace on a busy host takes seconds.
        Duration::from_secs(if self.kind == EnvKind::Gvisor { 60 } else { 20 })
    }

    fn artifact_bytes(&self, _spec: &crate::workload::WorkloadSpec) -> Option<u64> {
        Some(self.layers.iter().map(|l| crate::env::tree_bytes(l)).sum())
    }

    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError> {
        // The clock starts with the host-side set-up: the bundle and its
        // root are part of what an OCI runtime's start costs.
        let spawned_at = Instant::now();
        let name = super::container_name(&self.run_id, launch.id);
        let dir = self.instances.join(launch.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| EnvError::io(format!("creating {}", dir.display()), e))?;
        let mut instance = OciInstance {
            spawned_at,
            streams: None,
            process: None,
            dir: dir.clone(),
            name: name.clone(),
            program: self.tool.path.clone(),
            flags: self.flags.clone(),
            root: self.root.clone(),
            hide_unified: self.hide_unified,
            overhead: footprint::Overhead::default(),
        };
        let rootfs = bundle::mount_root(&self.layers, &dir)?;
        let (stdio, streams) = super::standard_streams(&launch.io)?;
        let mut env = vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            format!("{}={}", crate::env::ENV_NAME_VAR, self.kind),
            format!("{}={}", crate::env::FRAME_FD_ENV, stdio.agent_var),
        ];
        env.extend(launch.env.iter().map(|(k, v)| format!("{k}={v}")));
        let cgroups_path = format!(
            "/{}/{}",
            crate::cgroup::PARENT,
            self.run_dir.unique_name(launch.id)
        );
        let spec = bundle::spec(
            &self.template,
            &bundle::InstanceSpec {
                rootfs: &rootfs,
                hostname: &launch.id.chars().take(63).collect::<String>(),
                cgroups_path: &cgroups_path,
                args: std::iter::once("/init".to_string())
                    .chain(launch.spec.to_args())
                    .collect(),
                env,
            },
        )?;
        bundle::write(&spec, &dir)?;
        let mut cmd = super::cli(&self.tool.path, stdio);
        cmd.args(&self.flags)
            .args(["run", "--bundle"])
            .arg(&dir)
            .arg(&name);
        if self.hide_unified {
            hide_unified(&mut cmd);
        }
        let child = cmd
            .spawn()
            .map_err(|e| EnvError::io(format!("starting {}", self.tool.path.display()), e))?;
        drop(cmd);
        instance.process = Some(
            ProcessHandle::new(child.id())
                .map_err(|e| EnvError::io(format!("opening a pidfd for {}", self.tool.name), e))?,
        );
        instance.streams = Some(streams);
        Ok(Box::new(instance))
    }
}

struct OciInstance {
    spawned_at: Instant,
    streams: Option<Streams>,
    process: Option<ProcessHandle>,
    dir: PathBuf,
    name: String,
    program: PathBuf,
    flags: Vec<String>,
    root: PathBuf,
    hide_unified: bool,
    overhead: footprint::Overhead,
}

/// Runs `cmd` in a private mount namespace without
/// `/sys/fs/cgroup/unified` (crun on a hybrid cgroup host).
pub fn hide_unified(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: runs in the forked child before exec; unshare, mount and
    // umount2 are plain system calls on static strings.
    unsafe {
        cmd.pre_exec(|| {
            use nix::mount::{MntFlags, MsFlags, mount, umount2};
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
            mount(None::<&str>, "/", None::<&str>, private, None::<&str>)?;
            umount2("/sys/fs/cgroup/unified", MntFlags::MNT_DETACH)?;
            Ok(())
        });
    }
}

/// Whether the runtime still holds state for container `name` in `root`
/// (runc and crun: a directory named so; runsc: files starting so).
pub fn has_state(root: &Path, name: &str) -> bool {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(name))
}

impl Instance for OciInstance {
    fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    fn take_streams(&mut self) -> Option<Streams> {
        self.streams.take()
    }

    fn process(&mut self) -> &mut ProcessHandle {
        self.process
            .as_mut()
            .expect("an OCI instance has its process once spawned")
    }

    fn at_ready(&mut self) {
        self.overhead.read(&self.name, &[], 0);
    }

    fn at_done(&mut self) -> Vec<Metric> {
        self.overhead.read(&self.name, &[], 0);
        self.overhead.metric().into_iter().collect()
    }

    fn cleanup(&mut self) -> Result<(), EnvError> {
        // A failed reap is reported after the rest of the clean-up, not
        // instead of it.
        let reaped = match self.process.as_mut() {
            Some(p) => p
                .kill_and_reap()
                .map(drop)
                .map_err(|e| EnvError::io("reaping the runtime", e)),
            None => Ok(()),
        };
        // The runtime deletes its container when `run` ends normally; one
        // killed (timeout, Ctrl-C) leaves it to `delete --force`.
        if has_state(&self.root, &self.name) {
            let mut cmd = super::tool(&self.program);
            if self.hide_unified {
                hide_unified(&mut cmd);
            }
            let _ = cmd
                .args(&self.flags)
                .args(["delete", "--force", &self.name])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status();
        }
        bundle::unmount_root(&self.dir);
        crate::rundir::remove_tree(&self.dir)
            .map_err(|e| EnvError::io(format!("removing {}", self.dir.display()), e))?;
        reaped
    }
}

impl Drop for OciInstance {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}
