//! `isobench exec`: run one host program once in a fresh environment, like
//! `docker run --rm`.
//!
//! The program and its shared-library closure are packed into an
//! application layer (see [`image::app_layer`]) that sits above the image
//! (the agent as `/init`); the agent runs the program as its child (it is
//! the container's init), the program's standard streams are isobench's
//! own, frames travel on a separate descriptor, and isobench exits with the
//! program's status.
//!
//! Both layers come from the layer cache ([`image::cache`]): built on the
//! first exec of a program (or of a new agent), then reused as they are —
//! a few `stat`s per call instead of copying megabytes and packing a cpio
//! that only a VM boots. Where the cache cannot be used (it is not the
//! caller's own, as under `setpriv` with root's `$HOME`), they are built in
//! the run directory per call, as before.
//!
//! The container's writable layer is a tmpfs (see [`Scratch`]), and what
//! exec leaves on the host is removed as soon as the container no longer
//! needs it, while the program runs: on a busy disk every directory
//! removal waits for a journal commit.

use crate::cgroup::{Driver, Limits};
use crate::env::container::rootless_note;
use crate::env::container::{Container, ContainerConfig, Volume, seccomp_filters};
use crate::env::native::Native;
use crate::env::{BedSpec, VmBoot};
use crate::env::{EnvKind, Environment};
use crate::image::{
    self, ImageError,
    cache::{self, LayerCache},
    oci::ImageLayers,
};
use crate::run::{self, RunError};
use crate::rundir::{self, RunDir};
use crate::scenario::{ContainerSettings, VmSettings};
use crate::seccomp::SeccompChoice;
use crate::workload::{Metric, WorkloadSpec};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Exit status when isobench itself could not run the program (as Docker's 125).
pub const EXIT_NOT_RUN: u8 = 125;
/// Exit status when the program ran past `--timeout` (as timeout(1)).
pub const EXIT_TIMEOUT: u8 = 124;

/// What to run, and how.
#[derive(Debug, Clone)]
pub struct ExecSettings {
    /// The environment.
    pub env: EnvKind,
    /// The program (a name looked up in `$PATH`, or a path) and its arguments.
    pub argv: Vec<String>,
    /// cgroup limits.
    pub limits: Limits,
    /// Bind mounts (container only).
    pub volumes: Vec<Volume>,
    /// The seccomp profile (container only; `None`: Docker's default).
    pub seccomp: Option<SeccompChoice>,
    /// Longest run time after the environment is ready.
    pub timeout: Duration,
    /// Print a one-line summary (startup, CPU, memory) on stderr at the end.
    pub stats: bool,
    /// For `--env vm`: how the guest boots.
    pub boot: VmBoot,
    /// A real image to run on (`--image`): container and vm.
    pub image: Option<PathBuf>,
}

/// How `exec` ended: the exit status for isobench, and what to tell the user.
#[derive(Debug)]
pub struct ExecOutcome {
    /// isobench's exit status.
    pub code: u8,
    /// Lines for stderr (errors, OOM and pids-limit reports, stats).
    pub messages: Vec<String>,
}

fn metric(metrics: &[Metric], name: &str) -> Option<f64> {
    metrics.iter().find(|m| m.name == name).map(|m| m.value)
}

/// Runs the program; `Err` only for bad input or missing prerequisites
/// (exit 2), everything else is in the outcome.
pub fn exec(s: &ExecSettings, stop: &AtomicBool) -> Result<ExecOutcome, RunError> {
    let (name, args) = s
        .argv
        .split_first()
        .ok_or_else(|| RunError::Prerequisite("no program given after --".into()))?;
    // A real image: its layers checked and unpacked (once, into the layer
    // cache), and the program looked up there first.
    let oci = match &s.image {
        Some(_) if s.env == EnvKind::Native => {
            return Err(RunError::Prerequisite(
                "--image needs --env container or vm: a native program runs on the host's own files"
                    .into(),
            ));
        }
        Some(path) => Some(image::oci::load(path)?),
        None => None,
    };
    let in_image = oci
        .as_ref()
        .and_then(|o| image::rootfs::find_in_layers(&o.dirs, name));
    let packed = in_image.is_none();
    let program = match in_image {
        Some(p) => p,
        None => image::find_program(name).ok_or_else(|| {
            RunError::Prerequisite(format!(
                "program `{name}` not found{}{}",
                match &s.image {
                    Some(i) => format!(" in the image {} nor on the host", i.display()),
                    None => String::new(),
                },
                if name.contains('/') {
                    " (or not executable)".to_string()
                } else {
                    " in $PATH".to_string()
                }
            ))
        })?,
    };
    match s.env {
        EnvKind::Vm if !s.volumes.is_empty() => {
            return Err(RunError::Prerequisite(
                "--volume needs --env container (a VM has no shared host directories here)".into(),
            ));
        }
        EnvKind::Vm | EnvKind::Native if s.seccomp.is_some() => {
            return Err(RunError::Prerequisite(
                "--seccomp needs --env container (isobench filters system calls only in its containers)"
                    .into(),
            ));
        }
        EnvKind::VmMinimal => {
            return Err(RunError::Prerequisite(
                "--env vm-minimal names a run's environment; for exec use `--env vm --kernel minimal`"
                    .into(),
            ));
        }
        EnvKind::Vm => return exec_vm(s, (&program, packed), args, oci.as_ref(), stop),
        e if e.is_runtime() && (!s.volumes.is_empty() || s.seccomp.is_some()) => {
            return Err(RunError::Prerequisite(format!(
                "--volume and --seccomp are not supported with --env {e} yet (use --env container)"
            )));
        }
        EnvKind::Native if !s.volumes.is_empty() => {
            return Err(RunError::Prerequisite(
                "--volume needs --env container (a native program sees the host's files anyway)"
                    .into(),
            ));
        }
        _ => {}
    }
    let seccomp = match s.env {
        EnvKind::Container => seccomp_filters(&s.seccomp.clone().unwrap_or_default())
            .map_err(|e| RunError::Prerequisite(format!("--seccomp: {e}")))?,
        _ => None,
    };
    let (vm, container) = (VmSettings::default(), ContainerSettings::default());
    let agent = run::preflight(&[s.env], &bed_spec(s, &vm, &container))?;
    let rootless = !nix::unistd::geteuid().is_root();
    let mut messages = Vec::new();
    if rootless && s.limits.any() {
        messages.push(format!("isobench: warning: {}", rootless_note(&s.limits)));
    }

    let base = rundir::base_dir().map_err(|e| RunError::Prerequisite(e.to_string()))?;
    // Leftovers of dead runs go first, when there can be any: `clean` also
    // removes isobench's own directory when it is empty, which the run
    // directory below would only make again (on a busy disk an rmdir waits
    // for a journal commit, ≈4 ms here).
    if std::fs::read_dir(&base).is_ok_and(|mut d| d.next().is_some()) {
        let _ = rundir::clean(&base, Path::new("/proc"), Path::new("/sys/fs/cgroup"));
    }
    let id = format!("exec-{}", run::new_run_id());
    let run_dir = Arc::new(RunDir::create(&base, &id).map_err(|e| {
        RunError::Prerequisite(format!("creating {}: {e}", base.join(&id).display()))
    })?);
    // A cgroup only where something uses it: limits, or the container's
    // figures that --stats prints (a native program's come from wait4).
    let driver = if rootless
        || s.env.is_runtime()
        || (!s.limits.any() && (s.env == EnvKind::Native || !s.stats))
    {
        None
    } else {
        Some(
            Driver::detect(Path::new("/sys/fs/cgroup"), &run::mountinfo())
                .map_err(|e| RunError::Prerequisite(e.to_string()))?,
        )
    };
    let no_cgroup = driver.is_none();
    if let Some(d) = &driver
        && let Some(problem) = d.unsupported_limits(&s.limits).into_iter().next()
    {
        return Err(RunError::Prerequisite(problem));
    }

    // The cached layers stay locked (never pruned) until the container is gone.
    let mut held = None;
    let mut scratch = None;
    let (env, argv): (Box<dyn Environment>, Vec<String>) = match s.env {
        EnvKind::Container => {
            let lowers = layers(
                &agent,
                packed.then_some(program.as_path()),
                oci.as_ref(),
                &run_dir,
            )?;
            if !rootless {
                scratch = Scratch::mount(&run_dir);
            }
            let config = ContainerConfig {
                layers: lowers.dirs.clone(),
                volumes: s.volumes.clone(),
                limits: if rootless {
                    Limits::default()
                } else {
                    s.limits
                },
                cgroups: crate::cgroup::CgroupUse::Auto,
                rootless,
                seccomp,
                network: crate::net::Mode::None,
            };
            held = Some(lowers);
            (
                Box::new(Container::new(config, driver, Arc::clone(&run_dir))),
                std::iter::once(program.display().to_string())
                    .chain(args.iter().cloned())
                    .collect(),
            )
        }
        e if e.is_runtime() => {
            // The program and its closure above the image, as for
            // `container`; the runtime's own cgroup holds the limits.
            let lowers = layers(
                &agent,
                packed.then_some(program.as_path()),
                oci.as_ref(),
                &run_dir,
            )?;
            let settings = ContainerSettings {
                limits: s.limits,
                ..ContainerSettings::default()
            };
            let env: Box<dyn Environment> = match e {
                EnvKind::Docker | EnvKind::Podman => {
                    // The daemon imports one tree: the layers as overlayfs
                    // merges them (whiteouts applied), mounted in the run's
                    // directory while the image is imported.
                    let merged = match lowers.dirs.as_slice() {
                        [_] => None,
                        dirs => Some(image::rootfs::merge(
                            dirs.to_vec(),
                            &run_dir.path().join("merged"),
                        )?),
                    };
                    let root = merged.as_ref().map_or(&lowers.dirs[0], |m| &m.merged);
                    Box::new(
                        crate::env::oci::daemon::Daemon::new(e, root, &settings, &run_dir)
                            .map_err(|e| RunError::Prerequisite(e.to_string()))?,
                    )
                }
                _ => Box::new(
                    crate::env::oci::direct::Oci::new(e, lowers.dirs.clone(), &settings, &run_dir)
                        .map_err(|e| RunError::Prerequisite(e.to_string()))?,
                ),
            };
            held = Some(lowers);
            (
                env,
                std::iter::once(program.display().to_string())
                    .chain(args.iter().cloned())
                    .collect(),
            )
        }
        _ => {
            let env: Box<dyn Environment> = match driver {
                Some(d) if s.limits.any() => Box::new(Native::with_limits(
                    agent.clone(),
                    d,
                    s.limits,
                    Arc::clone(&run_dir),
                )),
                _ => Box::new(Native::new(agent.clone())),
            };
            (
                env,
                std::iter::once(program.display().to_string())
                    .chain(args.iter().cloned())
                    .collect(),
            )
        }
    };

    let spec = WorkloadSpec::Command { argv };
    let extras = run::Extras::default();
    let r = match run::Running::start(env.as_ref(), &spec, "exec", None, s.timeout, extras) {
        Ok(mut running) => {
            // The container is set up: its overlay holds its upper and work
            // directories itself, so the host's mount of the scratch tmpfs
            // and its mount point go while the program runs. Without a
            // cgroup, nothing of the container is left on the host then for
            // a later `isobench clean` to find (its processes die with
            // isobench: PR_SET_PDEATHSIG), and the run directory goes too.
            // On a busy disk each removal waits for a journal commit: done
            // now, the wait overlaps the program's run instead of following it.
            if let Some(scratch) = scratch.take() {
                drop(scratch);
                if no_cgroup {
                    let _ = run_dir.remove();
                }
            }
            running.pump(stop, false);
            running.finish()
        }
        Err(failed) => *failed,
    };
    drop(env);
    drop(held);
    drop(scratch);
    let _ = run_dir.remove();
    Ok(outcome(s, &program, r, messages))
}

/// A tmpfs over the run directory's `instances/`, where the container's
/// upper and work directories and its root's mount point are made — as
/// they are anyway wherever the runtime directory is a tmpfs (`/run` on
/// most hosts). On a disk (`/run` on ext4 here) the directories' removal
/// costs a journal commit each when the disk is busy (about 4 ms apiece,
/// five of them), and unmounting the overlay syncs its upper file system
/// (10 ms and more); on a tmpfs both cost microseconds. Unmounted (and its
/// mount point removed) on drop, as soon as the container is set up: the
/// overlay in the container's own mount namespace keeps the tmpfs alive,
/// and the tmpfs goes when the container does. Left mounted by a crash
/// before that, `isobench clean` (or the next run) unmounts it with the
/// run's directory.
struct Scratch(PathBuf);

impl Scratch {
    /// Mounts it, unless the runtime directory is a tmpfs already; `None`
    /// when it cannot be (then the directories are made on the runtime
    /// directory's file system, as before).
    fn mount(run_dir: &RunDir) -> Option<Scratch> {
        use nix::mount::{MsFlags, mount};
        use nix::sys::statfs::{TMPFS_MAGIC, statfs};
        if statfs(run_dir.path()).is_ok_and(|fs| fs.filesystem_type() == TMPFS_MAGIC) {
            return None;
        }
        let dir = run_dir.path().join("instances");
        std::fs::DirBuilder::new().mode(0o700).create(&dir).ok()?;
        mount(
            Some("tmpfs"),
            &dir,
            Some("tmpfs"),
            MsFlags::empty(),
            Some("mode=0700"),
        )
        .ok()?;
        Some(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH).is_ok() {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
}

/// A container's read-only layers, top first: the program with its
/// closure (when packed from the host) above the image (the agent as
/// `/init`), above a real image's layers (`--image`).
struct Layers {
    dirs: Vec<PathBuf>,
    /// Cache entries in use (their locks), when they came from the cache.
    _cached: Vec<cache::Layer>,
}

/// The layers from the layer cache, built there when missing; or, when the
/// cache cannot be used (not the caller's own, unwritable), built in the
/// run directory as before. No cpio: only a VM boots one.
fn layers(
    agent: &Path,
    program: Option<&Path>,
    oci: Option<&ImageLayers>,
    run_dir: &RunDir,
) -> Result<Layers, RunError> {
    let below: Vec<PathBuf> = oci.map(|o| o.dirs.clone()).unwrap_or_default();
    let cached = LayerCache::open(&LayerCache::default_dir())
        .map_err(ImageError::from)
        .and_then(|c| {
            let app = program.map(|p| c.app(p)).transpose()?;
            Ok((app, c.image(agent)?))
        });
    match cached {
        Ok((app, img)) => {
            let mut held: Vec<cache::Layer> = app.into_iter().collect();
            held.push(img);
            let mut dirs: Vec<PathBuf> = held.iter().map(|l| l.root.clone()).collect();
            dirs.extend(below);
            Ok(Layers {
                dirs,
                _cached: held,
            })
        }
        // A closure that cannot be worked out fails the same either way.
        Err(e @ ImageError::Closure { .. }) => Err(e.into()),
        Err(_) => {
            let image = run_dir.path().join("image");
            image::build_tree(agent, &image)?;
            let mut dirs = Vec::new();
            if let Some(p) = program {
                dirs.push(image::app_layer(p, &run_dir.path().join("app"))?.dir);
            }
            dirs.push(image);
            dirs.extend(below);
            Ok(Layers {
                dirs,
                _cached: Vec::new(),
            })
        }
    }
}

/// `exec --env vm`: the program and its closure go into the image, which
/// the guest boots as its initramfs; the agent runs it as PID 1's child with
/// the serial console as its stdout and stderr.
fn exec_vm(
    s: &ExecSettings,
    (program, packed): (&Path, bool),
    args: &[String],
    oci: Option<&ImageLayers>,
    stop: &AtomicBool,
) -> Result<ExecOutcome, RunError> {
    let mut messages = Vec::new();
    if s.limits.pids.is_some() {
        messages
            .push("isobench: warning: --pids applies to containers; a VM ignores it".to_string());
    }
    let mut vm = VmSettings::default();
    if let Some(bytes) = s.limits.memory_bytes {
        if bytes % (1 << 20) != 0 {
            return Err(RunError::Prerequisite(format!(
                "--memory: a VM's memory is a whole number of MiB, got {bytes} bytes"
            )));
        }
        vm.memory_mib = (bytes >> 20).max(1);
    }
    if let Some(n) = s.limits.cpus {
        if n.fract() != 0.0 || !(1.0..=255.0).contains(&n) {
            return Err(RunError::Prerequisite(format!(
                "--cpus {n}: a VM has a whole number of vCPUs (1 to 255)"
            )));
        }
        vm.cpus = n as u64;
    }
    let container = ContainerSettings::default();
    let spec = bed_spec(s, &vm, &container);
    let agent = run::preflight(&[EnvKind::Vm], &spec)?;
    let id = format!("exec-{}", run::new_run_id());
    let programs: Vec<PathBuf> = packed.then(|| program.to_path_buf()).into_iter().collect();
    let contents = run::Contents {
        programs: &programs,
        files: &[],
        image: oci,
    };
    let logs = std::env::temp_dir();
    let bed = run::Testbed::build(&agent, &id, &[EnvKind::Vm], spec, contents, &logs, stop)?;
    let env = bed
        .env(EnvKind::Vm)
        .ok_or_else(|| RunError::Prerequisite("the VM environment could not be built".into()))?;
    let argv: Vec<String> = std::iter::once(program.display().to_string())
        .chain(args.iter().cloned())
        .collect();
    let spec = WorkloadSpec::Command { argv };
    let r = run::run_instance(env, &spec, "exec", None, s.timeout, stop);
    let run_dir = Arc::clone(&bed.run_dir);
    drop(bed);
    let _ = run_dir.remove();
    Ok(outcome(s, program, r, messages))
}

/// What `exec` asks of its environment.
fn bed_spec<'a>(
    s: &'a ExecSettings,
    vm: &'a VmSettings,
    container: &'a ContainerSettings,
) -> BedSpec<'a> {
    BedSpec {
        vm,
        container,
        boot: &s.boot,
        workloads: &[],
        quiet: true,
    }
}

/// What `exec` tells the user, and its exit status, from what the instance did.
fn outcome(
    s: &ExecSettings,
    program: &Path,
    r: run::InstanceResult,
    mut messages: Vec<String>,
) -> ExecOutcome {
    let host = &r.host_metrics;
    if metric(host, "oom_kills").is_some_and(|n| n > 0.0) {
        let limit = s
            .limits
            .memory_bytes
            .map_or(String::new(), |b| format!(" (limit {} MiB)", b >> 20));
        messages.push(format!(
            "isobench: the kernel's OOM killer ended a process of this {}: it used more memory than allowed{limit}",
            s.env
        ));
    }
    if let Some(n) = metric(host, "forks_refused").filter(|n| *n > 0.0) {
        messages.push(format!(
            "isobench: {n} fork(s) refused by the pids limit ({})",
            s.limits.pids.unwrap_or(0)
        ));
    }
    if s.stats {
        let mut parts = vec![format!("env {}", s.env)];
        if let Some(st) = r.startup {
            parts.push(format!("startup {:.2} ms", st.as_secs_f64() * 1e3));
        }
        if let Some(e) = metric(&r.metrics, "elapsed_ms") {
            parts.push(format!("program {e:.1} ms"));
        }
        if let Some(c) = metric(host, "cgroup_cpu_ms").or_else(|| metric(host, "host_cpu_ms")) {
            parts.push(format!("cpu {c:.1} ms"));
        }
        if let Some(m) = metric(host, "cgroup_peak_mib") {
            parts.push(format!("peak memory {m:.1} MiB"));
        }
        messages.push(format!("isobench: {}", parts.join(" · ")));
    }

    let code = if r.interrupted {
        130
    } else if let Some(status) = r.status {
        // The agent ran the program and reported how it ended.
        u8::try_from(status).unwrap_or(EXIT_NOT_RUN)
    } else if r
        .error
        .as_deref()
        .is_some_and(|e| e.contains("after `ready`"))
    {
        messages.push(format!(
            "isobench: the program was still running after --timeout {} s; it was killed",
            s.timeout.as_secs()
        ));
        EXIT_TIMEOUT
    } else {
        messages.push(format!(
            "isobench: could not run {}: {}",
            program.display(),
            r.error
                .as_deref()
                .unwrap_or("the agent reported no exit status")
        ));
        EXIT_NOT_RUN
    };
    ExecOutcome { code, messages }
}
