//! `docker` and `podman`: the run's image imported once per run (`docker
//! import` of the image as a tar, tagged `isobench/<run-id>:<digest>`,
//! removed at the end), then per instance `docker run --rm --network none`
//! with the limits, its name and the run's label, `--runtime` as the
//! scenario says. isobench talks to the user's daemon (`DOCKER_HOST`
//! honoured) and never starts or reconfigures one.

use super::{Tool, footprint};
use crate::env::{
    Bed, Built, EnvError, EnvFacts, EnvKind, Environment, Exit, Instance, Io, Launch,
    ProcessHandle, Streams,
};
use crate::workload::Metric;
use sha2::Digest;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The CLI of each of these environments.
pub fn program(kind: EnvKind) -> &'static str {
    match kind {
        EnvKind::Podman => "podman",
        _ => "docker",
    }
}

/// The environment variables that choose which daemon or storage a CLI
/// uses; recorded so that `isobench clean` talks to the same one.
pub const CLI_ENV: &[&str] = &[
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CONTEXT",
    "CONTAINER_HOST",
    "CONTAINERS_CONF",
    "CONTAINERS_STORAGE_CONF",
];

/// Runs `tool args...` and returns its trimmed stdout; the error carries
/// its stderr.
pub fn output(tool: &Tool, args: &[&str]) -> Result<String, EnvError> {
    let out = super::tool(&tool.path)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| EnvError::io(format!("running {} {}", tool.name, args.join(" ")), e))?;
    if !out.status.success() {
        return Err(EnvError::Unavailable(format!(
            "`{} {}` failed ({}): {}",
            tool.name,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The daemon's version, or why it does not answer.
pub fn server_version(tool: &Tool) -> Result<String, EnvError> {
    output(tool, &["version", "--format", "{{.Server.Version}}"])
}

/// The CLI is installed, and Docker's daemon answers (isobench does not
/// start one); Podman runs as root here.
pub fn check_host(kind: EnvKind) -> Result<(), EnvError> {
    let tool = super::find(program(kind), kind)?;
    if kind == EnvKind::Docker {
        server_version(&tool).map_err(|e| {
            EnvError::Unavailable(format!(
                "environment `docker`: the Docker daemon does not answer ({e}); start it or set \
                 DOCKER_HOST (isobench never starts a daemon)"
            ))
        })?;
    } else {
        super::need_root(kind)?;
    }
    Ok(())
}

/// A daemon-run environment.
pub struct Daemon {
    kind: EnvKind,
    tool: Tool,
    image: String,
    run_flags: Vec<String>,
    info: serde_json::Value,
    workarounds: Vec<String>,
    daemon_pids: Vec<u32>,
    cid_dir: PathBuf,
    run_id: String,
    import_ms: f64,
    image_bytes: u64,
}

/// What `isobench clean` needs to remove a crashed run's containers and
/// image from a daemon: the CLI, the environment that chose the daemon,
/// the run's label and the image's tag. Written before anything is made.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Record {
    /// The CLI's path.
    pub cli: PathBuf,
    /// The environment variables of [`CLI_ENV`] that were set.
    pub env: Vec<(String, String)>,
    /// The run id, as the containers' `isobench.run` label.
    pub run_id: String,
    /// The imported image's tag.
    pub image: String,
}

/// The file a record goes to in the run directory.
pub fn record_path(run_dir: &Path, kind: EnvKind) -> PathBuf {
    run_dir.join(format!("daemon-{kind}.json"))
}

/// Builds the environment for a run.
pub fn build(kind: EnvKind, bed: &Bed<'_>) -> Result<Built, EnvError> {
    let env = Daemon::new(kind, bed.image_dir, bed.spec.container, bed.run_dir)?;
    Ok(Built {
        env: Box::new(env),
        notes: Vec::new(),
    })
}

impl Daemon {
    /// The environment: records what `isobench clean` needs, imports
    /// `root` (the run's merged tree) as the run's image, and finds the
    /// workarounds this host needs.
    pub fn new(
        kind: EnvKind,
        root: &Path,
        settings: &crate::scenario::ContainerSettings,
        run_dir: &crate::rundir::RunDir,
    ) -> Result<Daemon, EnvError> {
        check_host(kind)?;
        let tool = super::find(program(kind), kind)?;
        let run_id = super::run_id(run_dir);
        let runtime = match kind {
            EnvKind::Docker => settings.docker_runtime,
            _ => settings.podman_runtime,
        };
        let info = match kind {
            EnvKind::Docker => output(
                &tool,
                &[
                    "info",
                    "--format",
                    "{{.ServerVersion}}|{{.DefaultRuntime}}|{{.CgroupDriver}}|{{.Driver}}",
                ],
            )?,
            _ => output(
                &tool,
                &[
                    "info",
                    "--format",
                    "{{.Version.Version}}|{{.Host.OCIRuntime.Name}}|{{.Host.CgroupManager}}|{{.Store.GraphDriverName}}",
                ],
            )?,
        };
        let f: Vec<&str> = info.split('|').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("").to_string();
        let mut workarounds = Vec::new();
        let mut run_flags: Vec<String> = ["--rm", "--network", "none", "--label"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        run_flags.push(format!("isobench.run={run_id}"));
        run_flags.extend(limit_flags(&settings.limits));
        if let Some(r) = runtime.flag() {
            run_flags.extend(["--runtime".to_string(), r.to_string()]);
        }
        let effective_runtime = runtime.flag().map_or_else(|| get(1), str::to_string);
        if kind == EnvKind::Podman && effective_runtime.ends_with("runsc") {
            run_flags.extend(["--runtime-flag".to_string(), "network=none".to_string()]);
            workarounds.push(
                "runsc under Podman: --runtime-flag network=none (runsc's own network stack \
             otherwise wants a network namespace Podman does not make with --network none)"
                    .to_string(),
            );
        }
        let dir = run_dir.path().join("oci").join(kind.as_str());
        let cid_dir = dir.join("cid");
        std::fs::create_dir_all(&cid_dir)
            .map_err(|e| EnvError::io(format!("creating {}", cid_dir.display()), e))?;
        // The tar, and its digest for the tag.
        let tar_path = dir.join("image.tar");
        let (digest, image_bytes) = write_tar(root, &tar_path)?;
        let image = format!("isobench/{}:{}", run_id.to_ascii_lowercase(), &digest[..16]);
        let record = Record {
            cli: tool.path.clone(),
            env: CLI_ENV
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
                .collect(),
            run_id: run_id.clone(),
            image: image.clone(),
        };
        let rec_path = record_path(run_dir.path(), kind);
        std::fs::write(&rec_path, serde_json::to_vec(&record).unwrap_or_default())
            .map_err(|e| EnvError::io(format!("writing {}", rec_path.display()), e))?;
        let started = Instant::now();
        let tar = tar_path.display().to_string();
        output(&tool, &["import", &tar, &image])?;
        let import_ms = started.elapsed().as_secs_f64() * 1e3;
        let _ = std::fs::remove_file(&tar_path);
        let mut effective_runtime = effective_runtime;
        if kind == EnvKind::Podman {
            let found = podman_workarounds(&tool, &image, &run_flags, runtime);
            let (extra, notes, rt) = found.inspect_err(|_| {
                let _ = output(&tool, &["rmi", "--force", &image]);
            })?;
            run_flags.extend(extra);
            workarounds.extend(notes);
            if let Some(rt) = rt {
                effective_runtime = rt;
            }
        }
        let daemon_pids = if kind == EnvKind::Docker {
            docker_socket()
                .and_then(|s| footprint::socket_owner(&s))
                .map(footprint::with_children)
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let info = serde_json::json!({
            "program": tool.name,
            "path": tool.path,
            "version": tool.version,
            "server_version": get(0),
            "default_runtime": get(1),
            "runtime": effective_runtime,
            "cgroup_driver": get(2),
            "storage_driver": get(3),
            "flags": run_flags,
            "workarounds": workarounds,
            "image": image,
            "image_sha256": digest,
            "import_ms": import_ms,
            "daemon_pids": daemon_pids,
        });
        Ok(Daemon {
            kind,
            tool,
            image,
            run_flags,
            info,
            workarounds,
            daemon_pids,
            cid_dir,
            run_id,
            import_ms,
            image_bytes,
        })
    }
}

/// Whether `podman run` of the image's agent works with these flags; the
/// error is Podman's message.
fn probe(tool: &Tool, image: &str, flags: &[String]) -> Result<(), String> {
    let out = super::tool(&tool.path)
        .arg("run")
        .args(flags)
        .args([image, "/init", "noop"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// What this host needs for `podman run` to start the agent at all, found
/// by trying (one `podman run` of a noop each): a root without
/// `CAP_SYS_RESOURCE` cannot have Podman raise `nofile` and `nproc` past
/// what its runtime process may (tried: this process's hard limits, then
/// `nproc` halved down to 8192); crun on a hybrid cgroup host refuses to
/// run (then `--runtime runc`, when the scenario left the runtime to
/// Podman). Returns the extra flags, what was done and why, and the
/// runtime chosen instead of Podman's default.
#[allow(clippy::type_complexity)]
fn podman_workarounds(
    tool: &Tool,
    image: &str,
    base: &[String],
    runtime: super::DaemonRuntime,
) -> Result<(Vec<String>, Vec<String>, Option<String>), EnvError> {
    let (nofile, nproc) = super::rlimits();
    let mut limits: Vec<Option<(u64, u64)>> = vec![None, Some((nofile.1, nproc.1))];
    let mut n = 65536;
    while n >= 8192 {
        if n < nproc.1 {
            limits.push(Some((nofile.1, n)));
        }
        n /= 2;
    }
    // (runtime, first limit to try): a runtime tried after another got
    // past the rlimits starts at the limits that got past them.
    let mut runtimes: Vec<(Option<&str>, usize)> = vec![(None, 0)];
    let mut runtime_error = String::new();
    let mut last = String::new();
    let mut i = 0;
    while i < runtimes.len() {
        let (rt, from) = runtimes[i];
        for (j, l) in limits.iter().enumerate().skip(from) {
            let mut flags = base.to_vec();
            if let Some(rt) = rt {
                flags.extend(["--runtime".to_string(), rt.to_string()]);
            }
            if let Some((f, p)) = l {
                flags.push(format!("--ulimit=nofile={f}:{f}"));
                flags.push(format!("--ulimit=nproc={p}:{p}"));
            }
            match probe(tool, image, &flags) {
                Ok(()) => {
                    let extra = flags[base.len()..].to_vec();
                    let mut notes = Vec::new();
                    if let Some(rt) = rt {
                        notes.push(format!(
                            "Podman's default runtime fails here (`{}`): --runtime {rt}",
                            first_line(&runtime_error)
                        ));
                    }
                    if let Some((f, p)) = l {
                        notes.push(format!(
                            "`podman run` cannot set its default rlimits here (CAP_SYS_RESOURCE: \
                             {}): --ulimit nofile={f}:{f} --ulimit nproc={p}:{p}, the first of \
                             this process's hard limits and halved nproc values that works",
                            if super::has_cap_sys_resource() {
                                "held"
                            } else {
                                "lacking"
                            }
                        ));
                    }
                    return Ok((extra, notes, rt.map(str::to_string)));
                }
                Err(e) => {
                    let other_runtime = e.contains("hybrid")
                        && runtime == super::DaemonRuntime::Default
                        && rt.is_none()
                        && super::find("runc", EnvKind::Podman).is_ok();
                    last = e;
                    if other_runtime {
                        runtime_error = last.clone();
                        runtimes.push((Some("runc"), j));
                        break;
                    }
                }
            }
        }
        i += 1;
    }
    Err(EnvError::Unavailable(format!(
        "environment `podman`: `podman run` of the agent fails on this host with every \
         workaround isobench knows (--ulimit nofile/nproc, --runtime runc): {}",
        first_line(&last)
    )))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The unix socket Docker's CLI talks to: `DOCKER_HOST` (`unix://PATH`),
/// else `/var/run/docker.sock`; `None` for a remote daemon.
fn docker_socket() -> Option<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => h.strip_prefix("unix://").map(PathBuf::from),
        _ => Some(PathBuf::from("/var/run/docker.sock")),
    }
}

/// The limits as `docker run` / `podman run` flags.
pub fn limit_flags(limits: &crate::cgroup::Limits) -> Vec<String> {
    let mut f = Vec::new();
    if let Some(b) = limits.memory_bytes {
        f.push(format!("--memory={b}b"));
        f.push(format!("--memory-swap={b}b"));
    }
    if let Some(c) = limits.cpus {
        f.push(format!("--cpus={c}"));
    }
    if let Some(n) = limits.pids {
        f.push(format!("--pids-limit={n}"));
    }
    f
}

struct HashWriter<W: Write> {
    inner: W,
    hasher: sha2::Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the tree `root` as one tar at `path`; returns its sha256 (hex)
/// and size. `root` is the run's merged tree (the image's layers as
/// overlayfs shows them, whiteouts and opaque directories applied), so the
/// daemon imports the very tree the other environments run.
pub fn write_tar(root: &Path, path: &Path) -> Result<(String, u64), EnvError> {
    let io = |e| EnvError::io(format!("writing {}", path.display()), e);
    let file = std::fs::File::create(path).map_err(io)?;
    let mut tar = tar::Builder::new(HashWriter {
        inner: std::io::BufWriter::new(file),
        hasher: sha2::Sha256::new(),
        bytes: 0,
    });
    tar.follow_symlinks(false);
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let full = root.join(&rel);
        let entries = std::fs::read_dir(&full)
            .map_err(|e| EnvError::io(format!("reading {}", full.display()), e))?;
        let mut names: Vec<_> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            let r = rel.join(&name);
            let p = root.join(&r);
            tar.append_path_with_name(&p, &r).map_err(io)?;
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                stack.push(r);
            }
        }
    }
    let mut w = tar.into_inner().map_err(io)?;
    w.flush().map_err(io)?;
    Ok((crate::util::hex(&w.hasher.finalize()), w.bytes))
}

impl Drop for Daemon {
    /// The run's image goes with the environment.
    fn drop(&mut self) {
        let _ = super::tool(&self.tool.path)
            .args(["rmi", "--force", &self.image])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Environment for Daemon {
    fn kind(&self) -> EnvKind {
        self.kind
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn knobs(&self) -> serde_json::Value {
        serde_json::json!({
            "runtime": self.info,
            "image": self.image,
            "image_tar_bytes": self.image_bytes,
            "import_ms": self.import_ms,
            "limits": self.run_flags,
            "frames": "the agent's stdout (the CLI's stdout), moved to a private descriptor; output on stderr",
            "overhead": "PSS of every process naming the container (CLI, shim/conmon, runtime) plus the daemon's growth (docker: dockerd and its containerd)",
            "workarounds": self.workarounds,
        })
    }

    fn facts(&self) -> EnvFacts {
        EnvFacts {
            runtime: Some(self.info.clone()),
            ..EnvFacts::default()
        }
    }

    fn startup_timeout(&self) -> Duration {
        Duration::from_secs(60)
    }

    fn artifact_bytes(&self, _spec: &crate::workload::WorkloadSpec) -> Option<u64> {
        Some(self.image_bytes)
    }

    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError> {
        let baseline = footprint::sum_pss(&self.daemon_pids).0;
        let spawned_at = Instant::now();
        let name = super::container_name(&self.run_id, launch.id);
        let cidfile = self.cid_dir.join(&name);
        let _ = std::fs::remove_file(&cidfile);
        let interactive = matches!(launch.io, Io::Inherited);
        let (stdio, streams) = super::standard_streams(&launch.io)?;
        let agent_var = stdio.agent_var;
        let mut cmd = super::cli(&self.tool.path, stdio);
        cmd.arg("run").args(&self.run_flags);
        if interactive {
            cmd.arg("--interactive");
        }
        cmd.args(["--name", &name, "--cidfile"]).arg(&cidfile);
        cmd.args([
            "--env",
            &format!("{}={}", crate::env::ENV_NAME_VAR, self.kind),
        ]);
        cmd.args([
            "--env",
            &format!("{}={}", crate::env::FRAME_FD_ENV, agent_var),
        ]);
        for (k, v) in &launch.env {
            cmd.args(["--env", &format!("{k}={v}")]);
        }
        cmd.arg(&self.image)
            .arg("/init")
            .args(launch.spec.to_args());
        let child = cmd
            .spawn()
            .map_err(|e| EnvError::io(format!("starting {}", self.tool.path.display()), e))?;
        drop(cmd);
        let process = ProcessHandle::new(child.id())
            .map_err(|e| EnvError::io(format!("opening a pidfd for {}", self.tool.name), e))?;
        Ok(Box::new(DaemonInstance {
            spawned_at,
            streams: Some(streams),
            process,
            name,
            run_id: self.run_id.clone(),
            cidfile,
            cli: self.tool.path.clone(),
            baseline,
            overhead: footprint::Overhead::new(self.daemon_pids.clone()),
        }))
    }
}

struct DaemonInstance {
    spawned_at: Instant,
    streams: Option<Streams>,
    process: ProcessHandle,
    name: String,
    run_id: String,
    cidfile: PathBuf,
    cli: PathBuf,
    baseline: u64,
    overhead: footprint::Overhead,
}

impl Instance for DaemonInstance {
    fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    fn take_streams(&mut self) -> Option<Streams> {
        self.streams.take()
    }

    fn process(&mut self) -> &mut ProcessHandle {
        &mut self.process
    }

    fn at_ready(&mut self) {
        let cid = std::fs::read_to_string(&self.cidfile).unwrap_or_default();
        self.overhead.read(&self.name, &[cid.trim()], self.baseline);
    }

    fn at_done(&mut self) -> Vec<Metric> {
        self.at_ready();
        self.overhead.metric().into_iter().collect()
    }

    fn cleanup(&mut self) -> Result<(), EnvError> {
        let exited = self.process.exit().is_some_and(Exit::success);
        // A failed reap is reported after the rest of the clean-up.
        let reaped = self
            .process
            .kill_and_reap()
            .map(drop)
            .map_err(|e| EnvError::io("reaping the runtime CLI", e));
        // `run --rm` returns once the container is removed; a CLI that was
        // killed or failed may leave it. Removed by the id the CLI wrote
        // into our cidfile, or else only if it has this instance's name
        // and carries this run's label: never a container of the same
        // name that isobench did not make.
        if !exited {
            for id in self.own_containers() {
                let _ = super::tool(&self.cli)
                    .args(["rm", "--force", &id])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        let _ = std::fs::remove_file(&self.cidfile);
        reaped
    }
}

impl DaemonInstance {
    /// The ids of this instance's container: the cidfile's, or the
    /// containers of its name that carry the run's label.
    fn own_containers(&self) -> Vec<String> {
        let cid = std::fs::read_to_string(&self.cidfile).unwrap_or_default();
        if !cid.trim().is_empty() {
            return vec![cid.trim().to_string()];
        }
        let out = super::tool(&self.cli)
            .args(["ps", "--all", "--quiet", "--no-trunc", "--filter"])
            .arg(format!("name=^/?{}$", self.name))
            .arg("--filter")
            .arg(format!("label=isobench.run={}", self.run_id))
            .stderr(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Drop for DaemonInstance {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_become_flags() {
        let l = crate::cgroup::Limits {
            memory_bytes: Some(1 << 20),
            cpus: Some(1.5),
            pids: Some(9),
        };
        assert_eq!(
            limit_flags(&l),
            vec![
                "--memory=1048576b",
                "--memory-swap=1048576b",
                "--cpus=1.5",
                "--pids-limit=9"
            ]
        );
        assert!(limit_flags(&crate::cgroup::Limits::default()).is_empty());
    }

    #[test]
    fn the_tree_goes_into_the_tar_once_per_path_links_kept() {
        let t = crate::testutil::TempDir::new("oci-tar");
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/a"), "top").unwrap();
        std::fs::write(root.join("init"), "agent").unwrap();
        std::os::unix::fs::symlink("init", root.join("link")).unwrap();
        let tar_path = t.path().join("x.tar");
        let (digest, bytes) = write_tar(&root, &tar_path).unwrap();
        assert_eq!(digest.len(), 64);
        assert_eq!(bytes, std::fs::metadata(&tar_path).unwrap().len());
        let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
        let mut found = std::collections::BTreeMap::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            let mut s = String::new();
            if e.header().entry_type().is_file() {
                std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            }
            if p == "link" {
                assert!(e.header().entry_type().is_symlink(), "a link stays a link");
            }
            assert!(found.insert(p, s).is_none(), "one entry per path");
        }
        assert_eq!(found["etc/a"], "top");
        assert_eq!(found["init"], "agent");
        assert!(found.contains_key("link") && found.contains_key("etc"));
    }
}
