//! isobench's container as an [`Environment`]: per instance, its
//! directories and cgroup, one `clone3` into new namespaces (and straight
//! into the cgroup2 directory), the child's set-up plan, and the teardown.

use super::linux::Linux;
use super::plan::{Step, c, plan};
use super::sys::execute;
use super::{ContainerConfig, DEFAULT_CAPS, MASKED_DIRS, MASKED_FILES, NAMESPACES, READ_ONLY};
use crate::cgroup::{Cgroup, Driver};
use crate::env::native::cgroup_metrics;
use crate::env::stdio::Stdio;
use crate::env::{
    EnvError, EnvKind, Environment, FRAME_FD, FRAME_FD_ENV, Instance, Launch, ProcessHandle,
    Streams,
};
use crate::rundir::RunDir;
use crate::workload::Metric;
use nix::errno::Errno;
use nix::sched::CloneFlags;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Runs the agent in a fresh container.
pub struct Container {
    config: ContainerConfig,
    driver: Option<Driver>,
    instances: PathBuf,
    run_dir: Arc<RunDir>,
    net: Option<Arc<crate::net::Fabric>>,
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
            net: None,
        }
    }

    /// The run's network, for instances with `bridge` networking.
    pub fn with_net(mut self, net: Arc<crate::net::Fabric>) -> Self {
        self.net = Some(net);
        self
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
                .map(|l| crate::env::tree_bytes(l))
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
            net: None,
            network: launch.network,
        };
        let fabric = match launch.network {
            crate::net::Mode::Bridge if self.config.rootless => {
                return Err(EnvError::Unavailable(
                    "network `bridge` needs root (creating links on the host); run as root or use `host`".into(),
                ));
            }
            crate::net::Mode::Bridge => Some(self.net.as_ref().ok_or_else(|| {
                EnvError::Unavailable(
                    "network `bridge` is not supported here (no run network)".into(),
                )
            })?),
            crate::net::Mode::User => {
                return Err(EnvError::Unavailable(
                    "network `user` is QEMU's: a container takes none, bridge or host".into(),
                ));
            }
            _ => None,
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
        let config = if launch.volumes.is_empty() && launch.network == self.config.network {
            std::borrow::Cow::Borrowed(&self.config)
        } else {
            let mut c = self.config.clone();
            c.volumes.extend(launch.volumes.iter().cloned());
            c.network = launch.network;
            std::borrow::Cow::Owned(c)
        };
        let steps = plan(&config, &instance.dir, &procs, &hostname)?;

        let mut argv = vec![c"/init".to_owned()];
        argv.extend(launch.spec.to_args().iter().map(|a| c(a.as_bytes())));
        let mut env = vec![
            c"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
            c(format!("{}=container", crate::env::ENV_NAME_VAR).as_bytes()),
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
            | CloneFlags::CLONE_NEWIPC;
        if launch.network != crate::net::Mode::Host {
            flags |= CloneFlags::CLONE_NEWNET;
        }
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
        if let Some(fabric) = fabric {
            // While the child mounts its root; it waits for this before
            // bringing lo up and going on.
            let plumbed = fabric
                .plumb_veth(Path::new(&format!("/proc/{}/ns/net", pid.as_raw())))
                .and_then(|p| {
                    sync_w
                        .write_all(b"1")
                        .map_err(|source| crate::net::NetError::Link {
                            what: "telling the container its network is ready".into(),
                            source,
                        })?;
                    Ok(p)
                });
            match plumbed {
                Ok(p) => instance.net = Some((Arc::clone(fabric), p)),
                Err(e) => {
                    let _ = process.kill_and_reap();
                    instance.process = Some(process);
                    let _ = instance.cleanup();
                    return Err(EnvError::Unavailable(e.to_string()));
                }
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
    /// The run's network and this instance's veth on it (`bridge`).
    net: Option<(Arc<crate::net::Fabric>, crate::net::Plumbed)>,
    network: crate::net::Mode,
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
        if let Some((_, p)) = &self.net {
            m.push(Metric::lower(
                "net_setup_ms",
                "ms",
                p.setup.as_secs_f64() * 1e3,
            ));
        }
        m
    }

    fn reach(&self, port: u16) -> Option<std::net::SocketAddr> {
        match (&self.net, self.network) {
            (Some((_, p)), _) => Some((p.addr, port).into()),
            (None, crate::net::Mode::Host) => Some(([127, 0, 0, 1], port).into()),
            _ => None,
        }
    }

    fn network_facts(&self) -> Vec<(String, String)> {
        let mut f = vec![("network".to_string(), self.network.as_str().to_string())];
        if let Some((fabric, p)) = &self.net {
            f.push(("bridge".into(), fabric.bridge_name()));
            f.push(("link".into(), format!("veth {} / eth0", p.host_link)));
            f.push(("address".into(), format!("{}/{}", p.addr, p.prefix)));
            f.push(("host_address".into(), p.host_addr.to_string()));
        }
        f
    }

    fn after_exit(&mut self) -> Vec<Metric> {
        self.cgroup.as_ref().map(cgroup_metrics).unwrap_or_default()
    }

    fn cleanup(&mut self) -> Result<(), EnvError> {
        if let Some(p) = self.process.as_mut() {
            p.kill_and_reap()
                .map_err(|e| EnvError::io("reaping the container", e))?;
        }
        if let Some((fabric, p)) = self.net.take() {
            // Gone with the namespace already, as a rule; deleted if not.
            fabric
                .remove(&p.host_link)
                .map_err(|e| EnvError::Unavailable(e.to_string()))?;
        }
        if let Some(mut cg) = self.cgroup.take() {
            cg.remove().map_err(|e| {
                EnvError::Unavailable(format!("removing the instance's cgroup: {e}"))
            })?;
        }
        crate::rundir::remove_tree(&self.dir)
            .map_err(|e| EnvError::io(format!("removing {}", self.dir.display()), e))
    }
}

impl Drop for ContainerInstance {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}
