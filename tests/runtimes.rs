//! The real runtimes as environments (runc, crun, gvisor, docker, podman):
//! noop and cpu in every one installed, one digest everywhere, the
//! runtime's footprint recorded, frames only from the agent, and nothing
//! left behind — also after SIGKILL of isobench and `isobench clean`.
//!
//! Docker runs on a private dockerd this test starts (own socket, data and
//! exec roots in its scratch directory, no bridge, no iptables) and stops
//! by its pid; Podman on a private storage (`CONTAINERS_STORAGE_CONF`).
//! No daemon or storage of the host is touched.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A dockerd of this test's own, stopped (by its pid) on drop.
struct PrivateDocker {
    child: Child,
    host: String,
    dir: PathBuf,
}

impl PrivateDocker {
    fn start(dir: &Path) -> Option<PrivateDocker> {
        if !installed("dockerd") || !installed("docker") {
            return None;
        }
        std::fs::create_dir_all(dir).ok()?;
        let sock = dir.join("docker.sock");
        let host = format!("unix://{}", sock.display());
        let log = std::fs::File::create(dir.join("dockerd.log")).ok()?;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--host")
            .arg(&host)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .args(["--bridge=none", "--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(log);
        for (name, program) in [("runsc", "runsc"), ("crun", "crun")] {
            if installed(program) {
                cmd.arg(format!("--add-runtime={name}={program}"));
            }
        }
        let child = cmd.spawn().ok()?;
        let docker = PrivateDocker {
            child,
            host,
            dir: dir.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if docker.cli(&["version"]).is_some() {
                return Some(docker);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!(
            "private dockerd did not answer: {}",
            std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default()
        );
        None
    }

    /// `docker ARGS` against this daemon; its stdout when it succeeds.
    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("docker")
            .env("DOCKER_HOST", &self.host)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for PrivateDocker {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        for m in mounts_under(&self.dir).iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// A private Podman storage, its mounts detached on drop.
struct PrivatePodman {
    conf: PathBuf,
    dir: PathBuf,
}

impl PrivatePodman {
    fn new(dir: &Path) -> Option<PrivatePodman> {
        if !installed("podman") {
            return None;
        }
        std::fs::create_dir_all(dir).ok()?;
        let conf = dir.join("storage.conf");
        std::fs::write(
            &conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                dir.join("root").display(),
                dir.join("runroot").display()
            ),
        )
        .ok()?;
        Some(PrivatePodman {
            conf,
            dir: dir.to_path_buf(),
        })
    }

    fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new("podman")
            .env("CONTAINERS_STORAGE_CONF", &self.conf)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for PrivatePodman {
    fn drop(&mut self) {
        let _ = self.cli(&["system", "reset", "--force"]);
        for m in mounts_under(&self.dir).iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

/// The runtimes this host can run, with the private daemons they need.
struct Runtimes {
    envs: Vec<&'static str>,
    docker: Option<PrivateDocker>,
    podman: Option<PrivatePodman>,
    /// Beside the scratch directory (whose mounts must all be gone at the
    /// end), removed once the daemons are stopped.
    dir: PathBuf,
}

impl Drop for Runtimes {
    fn drop(&mut self) {
        drop(self.docker.take());
        drop(self.podman.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Runtimes {
    fn find(s: &Scratch) -> Runtimes {
        let mut envs = Vec::new();
        for (env, program) in [("runc", "runc"), ("crun", "crun"), ("gvisor", "runsc")] {
            if installed(program) {
                envs.push(env);
            }
        }
        // Not under the scratch directory, whose mounts must all be gone.
        let dir = s.path.with_file_name(format!(
            "isobench-daemons-{}",
            s.path.file_name().unwrap().to_string_lossy()
        ));
        let docker = PrivateDocker::start(&dir.join("d"));
        if docker.is_some() {
            envs.push("docker");
        }
        let podman = PrivatePodman::new(&dir.join("p"));
        if podman.is_some() {
            envs.push("podman");
        }
        Runtimes {
            envs,
            docker,
            podman,
            dir,
        }
    }

    /// `isobench` in `s`, pointed at the private daemons.
    fn isobench(&self, s: &Scratch) -> Command {
        let mut cmd = s.isobench();
        if let Some(d) = &self.docker {
            cmd.env("DOCKER_HOST", &d.host);
        }
        if let Some(p) = &self.podman {
            cmd.env("CONTAINERS_STORAGE_CONF", &p.conf);
        }
        cmd
    }

    /// Starts a run of one 2-minute `idle` instance in `envs` in the
    /// background (long enough to be caught by a signal), its output
    /// discarded.
    fn spawn_idle(&self, s: &Scratch, envs: &str) -> Child {
        s.run_command(
            self.isobench(s),
            "idle.toml",
            "name = \"idle\"\nreps = 1\nwarmups = 0\n[[workload]]\nkind = \"idle\"\nduration_ms = 120000\n",
            &["--env", envs, "--quiet"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
    }

    /// Nothing of run `run_id` is left in the daemons.
    fn assert_daemons_clean(&self, run_id: &str) {
        let label = format!("label=isobench.run={run_id}");
        let image = format!("isobench/{}", run_id.to_ascii_lowercase());
        if let Some(d) = &self.docker {
            assert_eq!(
                d.cli(&["ps", "-aq", "--filter", &label]).as_deref(),
                Some("")
            );
            assert_eq!(d.cli(&["images", "-q", &image]).as_deref(), Some(""));
        }
        if let Some(p) = &self.podman {
            assert_eq!(
                p.cli(&["ps", "-aq", "--filter", &label]).as_deref(),
                Some("")
            );
            assert_eq!(p.cli(&["images", "-q", &image]).as_deref(), Some(""));
        }
    }
}

fn meta(run: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap()
}

fn all_installed(r: &Runtimes) -> bool {
    require(
        r.envs.len() == 5,
        &format!(
            "runc, crun, runsc, docker.io and podman (scripts/setup.sh installs them); found {:?}",
            r.envs
        ),
    )
}

#[test]
fn noop_and_cpu_run_in_every_runtime_with_one_digest() {
    if !require(is_root(), "the runtimes need root") {
        return;
    }
    let s = Scratch::new("runtimes");
    let r = Runtimes::find(&s);
    if !all_installed(&r) && r.envs.is_empty() {
        return;
    }
    let mut envs = vec!["native"];
    envs.extend(&r.envs);
    let scenario = s.write(
        "rt.toml",
        "name = \"rt\"\nreps = 2\nwarmups = 0\n[[workload]]\nkind = \"noop\"\n\
         [[workload]]\nkind = \"cpu\"\nrounds = 200\n",
    );
    let out = r
        .isobench(&s)
        .args(["run", "--env", &envs.join(","), "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(s.reports())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let run = latest(&s.reports());
    let rows = results(&run);
    for env in &envs {
        let startups = rows
            .iter()
            .filter(|x| x.1 == *env && x.3 == "startup_ms")
            .count();
        assert_eq!(startups, 4, "two reps of two workloads in {env}");
    }
    for env in &r.envs {
        // Read while the cpu workload runs, the helpers are surely there;
        // after a noop they may be gone by `done`, and nothing is recorded.
        let overhead: Vec<f64> = rows
            .iter()
            .filter(|x| x.1 == *env && x.3 == "runtime_overhead_mib")
            .map(|x| x.5)
            .collect();
        let cpu = rows
            .iter()
            .filter(|x| x.0 == "cpu" && x.1 == *env && x.3 == "runtime_overhead_mib")
            .count();
        assert_eq!(cpu, 2, "{env}: {rows:?}");
        assert!(overhead.iter().all(|v| *v > 0.0), "{env}: {overhead:?}");
    }
    // The cpu workload's digest is the same in every environment.
    let mut digests = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(run.join("instances.jsonl"))
        .unwrap()
        .lines()
    {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(d) = v["digest"].as_str() {
            digests.insert(v["environment"].to_string(), d.to_string());
        }
    }
    assert_eq!(digests.len(), envs.len(), "{digests:?}");
    assert_eq!(
        digests
            .values()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        1,
        "{digests:?}"
    );
    let m = meta(&run);
    for env in &r.envs {
        assert!(
            m["runtimes"][env]["version"].is_string(),
            "{env}: {}",
            m["runtimes"]
        );
    }
    r.assert_daemons_clean(m["run_id"].as_str().unwrap());
    assert_clean(&s);
}

/// A frame as a workload would forge it.
const FORGED: &str = r#"@@isobench {"type":"result","metrics":[{"name":"forged","unit":"1","value":1,"better":"lower"}]}"#;

#[test]
fn a_workload_cannot_forge_frames_in_a_runtime() {
    if !require(is_root(), "the runtimes need root") {
        return;
    }
    let s = Scratch::new("rt-forge");
    let r = Runtimes::find(&s);
    let envs: Vec<&str> = r
        .envs
        .iter()
        .copied()
        .filter(|e| ["runc", "docker"].contains(e))
        .collect();
    if !require(!envs.is_empty(), "runc or docker") {
        return;
    }
    // On stdout and stderr (the runtime CLI's streams), and through the
    // agent's frames descriptor (/proc/<agent>/fd/3: the agent is not
    // dumpable and the container has no CAP_SYS_PTRACE).
    let script = s.write(
        "forge.sh",
        &format!(
            "f='{FORGED}'\necho \"$f\"\necho \"$f\" >&2\n\
             for fd in 1 2 3 4 5; do echo \"$f\" > /proc/$PPID/fd/$fd; done 2>/dev/null\ntrue\n"
        ),
    );
    let scenario = s.write(
        "forge.toml",
        &format!(
            "name = \"forge\"\nreps = 1\nwarmups = 0\n\
             [[workload]]\nkind = \"command\"\nargv = [\"sh\", {p:?}]\nfiles = [{p:?}]\n",
            p = script.display().to_string()
        ),
    );
    let out = r
        .isobench(&s)
        .args(["run", "--env", &envs.join(","), "--scenario"])
        .arg(&scenario)
        .arg("--out")
        .arg(s.reports())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let run = latest(&s.reports());
    let rows = results(&run);
    assert!(!rows.iter().any(|x| x.3 == "forged"), "{rows:?}");
    for env in &envs {
        assert!(
            rows.iter().any(|x| x.1 == *env && x.3 == "startup_ms"),
            "{env}: {rows:?}"
        );
        // What the workload printed is kept in the log, as output.
        let log = std::fs::read_to_string(run.join(format!("logs/command-{env}-r1.log"))).unwrap();
        assert!(log.contains("\"forged\""), "{log}");
    }
    assert_clean(&s);
}

#[test]
fn sigkill_then_clean_removes_runtime_containers_and_images() {
    if !require(is_root(), "the runtimes need root") {
        return;
    }
    let s = Scratch::new("rt-kill");
    let r = Runtimes::find(&s);
    let envs: Vec<&str> = r
        .envs
        .iter()
        .copied()
        .filter(|e| ["runc", "docker"].contains(e))
        .collect();
    if !require(!envs.is_empty(), "runc or docker") {
        return;
    }
    // An instance that lives long enough to be caught by the SIGKILL.
    let mut child = r.spawn_idle(&s, &envs.join(","));
    // Wait until the first environment's container is up.
    let run_id = s.wait_for_run(
        &mut child,
        Duration::from_secs(120),
        &format!("no {} container appeared", envs[0]),
        |id| match envs[0] {
            "runc" => std::fs::read_dir(s.runs().join(id).join("oci/runc"))
                .is_ok_and(|mut d| d.next().is_some()),
            _ => r
                .docker
                .as_ref()
                .and_then(|d| d.cli(&["ps", "-q", "--filter", &format!("label=isobench.run={id}")]))
                .is_some_and(|o| !o.is_empty()),
        },
    );
    let run_dir = s.runs().join(&run_id);
    // Give docker's instance (if it is the one running) time to exist too.
    std::thread::sleep(Duration::from_millis(500));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let out = r.isobench(&s).arg("clean").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("container"),
        "clean removed no container: {said}"
    );
    assert!(!run_dir.exists(), "{said}");
    let cgroups: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|h| {
            std::fs::read_dir(h.path().join("isobench"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(&run_id))
        .collect();
    assert!(cgroups.is_empty(), "cgroups left: {cgroups:?}");
    r.assert_daemons_clean(&run_id);
    assert_clean(&s);
}

/// A descriptor the caller left open (not close-on-exec: `exec 7</etc` in
/// a shell) reaches neither a runtime CLI nor the program in its
/// container, and `exec` prints the program's stdout as the user's.
#[test]
fn a_descriptor_of_the_caller_does_not_reach_a_runtime_container() {
    use std::os::unix::process::CommandExt;
    if !require(is_root(), "the runtimes need root") {
        return;
    }
    let s = Scratch::new("rt-fdleak");
    let r = Runtimes::find(&s);
    let envs: Vec<&str> = r
        .envs
        .iter()
        .copied()
        .filter(|e| ["runc", "docker"].contains(e))
        .collect();
    if !require(!envs.is_empty(), "runc or docker") {
        return;
    }
    let script = "if cd /proc/self/fd/7 2>/dev/null; then echo LEAKED; else echo sealed; fi; \
                  for f in /proc/self/fd/*; do echo fd $f; done";
    for env in envs {
        let etc = std::fs::File::open("/etc").unwrap();
        let raw = std::os::fd::AsRawFd::as_raw_fd(&etc);
        let mut cmd = r.isobench(&s);
        cmd.args(["exec", "--env", env, "--", "sh", "-c", script])
            .stdin(Stdio::null());
        // SAFETY: dup2 in the forked child before exec; async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(raw, 7) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let out = cmd.output().unwrap();
        drop(etc);
        assert!(out.status.success(), "{env}: {}", text(&out));
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(
            said.contains("sealed") && !said.contains("LEAKED"),
            "{env}: {said}"
        );
        let fds = said.lines().filter(|l| l.starts_with("fd ")).count();
        assert!(fds <= 4, "{env}: descriptors in the container: {said}");
    }
    assert_clean(&s);
}

/// An instance stopped by Ctrl-C: isobench kills the Docker/Podman CLI, and
/// the container (which `run --rm` would have removed) is removed by the id
/// the CLI wrote, leaving nothing of the run in the daemon.
#[test]
fn an_interrupted_daemon_container_is_removed_by_its_id() {
    if !require(is_root(), "the runtimes need root") {
        return;
    }
    let s = Scratch::new("rt-sigint");
    let r = Runtimes::find(&s);
    let Some(d) = r.docker.as_ref() else {
        require(false, "docker (scripts/setup.sh installs docker.io)");
        return;
    };
    let mut child = r.spawn_idle(&s, "docker");
    let run_id = s.wait_for_run(
        &mut child,
        Duration::from_secs(120),
        "no docker container of the run appeared",
        |id| {
            d.cli(&["ps", "-q", "--filter", &format!("label=isobench.run={id}")])
                .is_some_and(|o| !o.is_empty())
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert!(!status.success(), "an interrupted run is not a success");
    r.assert_daemons_clean(&run_id);
    assert_clean(&s);
}
