//! `vm`: the agent as PID 1 of a QEMU guest.
//!
//! QEMU boots the guest kernel directly (`-kernel`, no boot loader, no root
//! disk) with the run's image packed as the initramfs and the agent as
//! `/init`. The agent's arguments travel on the kernel command line after
//! `--`. Its frames come back over the guest's second serial port, which
//! QEMU writes into a pipe (see [`qemu`]); the console (kernel messages,
//! QEMU's own errors) is copied into the instance's log, and its last lines
//! explain a failure (a guest panic, a QEMU that would not start). At the
//! end the agent powers the guest off and QEMU exits.
//!
//! The parts:
//! - [`qemu`]: the QEMU and kernel command lines (pure functions);
//! - [`accel`]: KVM or TCG, and why (with the cached KVM probe);
//! - [`modules`]: the kernel modules a guest needs, checked and ordered;
//! - [`smaps`]: QEMU's memory, and the VMM's own share of it.
//!
//! What each guest costs on the host is read from `/proc/PID/smaps` when the
//! agent sends `done` (the guest still runs): QEMU's PSS and RSS, the PSS
//! of the guest-RAM mapping, and the rest, the VMM overhead.
//!
//! Running an arbitrary program (`isobench exec --env vm`) fits in as
//! follows: the program and its libraries go into the image tree, which
//! every guest's initramfs packs whole; the agent runs it as its child with
//! the console (`ttyS0`) as its stdout and stderr, so its output reaches the
//! host on QEMU's stdout, which [`Vm`] copies into the instance's log
//! (or, for `exec`, to isobench's own stdout), while the agent's frames keep
//! their own port; its arguments travel on the kernel command line,
//! hex-encoded when the kernel would mangle them
//! ([`qemu::encode_workload_args`]), within the kernel's length limit
//! ([`check_cmdline`]).

pub mod accel;
pub mod bed;
pub mod modules;
pub mod nic;
pub mod qemu;
pub mod smaps;

pub use accel::{
    Accel, AccelChoice, AccelRequest, PROBE_TIMEOUT, Probe, ProbeCache, choose_accel, kvm_unusable,
};
pub use qemu::{
    CMDLINE_MAX, DISK_DEVICE, FRAMES_DEVICE, FRAMES_FD, Guest, Machine, VmConfig, check_cmdline,
    default_boot_timeout, encode_workload_args, host_tsc_khz, kernel_cmdline, measured_tsc_khz,
    qemu_args,
};

use super::native::die_with_parent;
use super::{EnvError, EnvKind, Environment, Exit, Instance, Io, Launch, ProcessHandle, Streams};
use crate::image::{self, Node};
use crate::rundir::RunDir;
use crate::workload::{Metric, WorkloadSpec};
use modules::{Module, ModuleDir, ModuleError};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

/// The QEMU binary isobench runs.
pub const QEMU: &str = "qemu-system-x86_64";

/// The first line of `qemu-system-x86_64 --version`, or why there is none.
pub fn qemu_version(qemu: &Path) -> Result<String, String> {
    match Command::new(qemu).arg("--version").output() {
        Ok(out) if out.status.success() => Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string()),
        Ok(out) => Err(format!(
            "{} --version failed: {}",
            qemu.display(),
            out.status
        )),
        Err(e) => Err(format!(
            "{} not found ({e}); install it with: apt-get install qemu-system-x86",
            qemu.display()
        )),
    }
}

/// The guest kernel a VM environment boots, and where its modules are.
#[derive(Debug, Clone)]
pub struct KernelFiles {
    /// The kernel's release, from its boot header (`6.1.0-56-cloud-amd64`),
    /// when it could be read; modules must match it.
    pub release: Option<String>,
    /// Its modules, when known.
    pub modules: Option<ModuleDir>,
}

impl KernelFiles {
    /// Reads the release of `vmlinuz` and indexes `modules`.
    pub fn open(vmlinuz: &Path, modules: Option<&Path>) -> Result<KernelFiles, ModuleError> {
        let release = std::fs::read(vmlinuz)
            .ok()
            .and_then(|b| modules::kernel_release(&b));
        let modules = modules.map(ModuleDir::open).transpose()?;
        Ok(KernelFiles { release, modules })
    }

    /// The modules to load, in order, for a guest with these devices.
    pub fn modules_for(
        &self,
        machine: Machine,
        devices: &Devices,
    ) -> Result<Vec<Module>, ModuleError> {
        let wanted = devices.modules(machine);
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        match &self.modules {
            Some(dir) => dir.resolve(&wanted, self.release.as_deref()),
            None => Err(ModuleError::NoDirectory {
                needed: wanted.join(", "),
                kernel: self.release.clone().unwrap_or_else(|| "this kernel".into()),
            }),
        }
    }
}

/// The devices a guest has besides its two serial ports. Nothing by
/// default: no network device, no disk. A guest has at most one disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Devices {
    /// A raw virtio disk of this many MiB (`[vm] disk_mib`), backed by a
    /// file on the host opened with O_DIRECT (`cache=none`); the agent
    /// checks it with one O_DIRECT write and read.
    pub disk_mib: Option<u64>,
    /// Instead, a disk of this many MiB formatted ext4 on the host and
    /// mounted by the agent at `/scratch`, where I/O workloads (`fileio`)
    /// put their files; sized from the workload.
    pub scratch_mib: Option<u64>,
    /// A virtio-net card (network `bridge` or `user`).
    pub nic: bool,
}

/// Room for ext4's own structures (journal, inode tables) on a scratch disk.
const SCRATCH_HEADROOM_MIB: u64 = 64;

impl Devices {
    /// The environment's devices plus what this workload asks for: a
    /// `fileio` workload gets a scratch disk large enough for its file.
    pub fn for_workload(self, spec: &WorkloadSpec) -> Devices {
        match spec {
            WorkloadSpec::Fileio { file_mib, .. } => Devices {
                nic: self.nic,
                disk_mib: None,
                scratch_mib: Some(
                    (file_mib + file_mib / 8 + SCRATCH_HEADROOM_MIB)
                        .max(self.disk_mib.unwrap_or(0)),
                ),
            },
            _ => self,
        }
    }

    /// The size of the guest's disk, if it has one.
    pub fn disk_size_mib(&self) -> Option<u64> {
        self.scratch_mib.or(self.disk_mib)
    }

    /// The kernel modules these devices need, by name (dependencies are
    /// added by [`ModuleDir::resolve`]).
    pub fn modules(&self, machine: Machine) -> Vec<&'static str> {
        let mut wanted = Vec::new();
        if self.disk_size_mib().is_some() {
            wanted.push(machine.virtio_transport());
            wanted.push("virtio_blk");
        }
        if self.nic {
            if !wanted.contains(&machine.virtio_transport()) {
                wanted.push(machine.virtio_transport());
            }
            wanted.push("virtio_net");
        }
        wanted
    }
}

/// The `mkfs.ext4` that formats scratch disks, or how to get one.
pub fn mkfs_ext4() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("mkfs.ext4"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "mkfs.ext4 not found (a VM's scratch disk for I/O workloads is formatted on the host): install it with apt-get install e2fsprogs".to_string()
        })
}

/// Where modules go in the initramfs: a directory of isobench's own, not
/// `lib/modules`, because an image with packed programs has `/lib` as a
/// link to `usr/lib` (merged /usr), and the link would swallow them.
const MODULES_DIR: &str = ".isobench-modules";

/// Writes the initramfs of a guest: the image tree (the agent as `/init`),
/// the console and frames serial device nodes, and the modules.
/// Deterministic: the same inputs give the same bytes.
pub fn write_initramfs(image_dir: &Path, modules: &[Module], out: &Path) -> std::io::Result<u64> {
    let mut nodes = vec![
        Node::console(),
        // ttyS1 (4, 65): the frames port, opened by the agent before it
        // mounts devtmpfs over /dev.
        Node {
            path: "dev/ttyS1".into(),
            mode: 0o020600,
            rdev: (4, 65),
        },
    ];
    let mut files = Vec::new();
    if !modules.is_empty() {
        nodes.push(Node::directory(MODULES_DIR));
        for m in modules {
            files.push((format!("{MODULES_DIR}/{}.ko", m.name), m.path.clone()));
        }
    }
    let file = File::create(out)?;
    let mut w = image::write_newc_with(image_dir, &nodes, &files, BufWriter::new(file))?;
    w.flush()?;
    Ok(std::fs::metadata(out)?.len())
}

/// RAM a guest needs beside its initramfs: the kernel, its page tables
/// and the agent (a guest with less than 128 MiB panics anyway).
const GUEST_BASE_MIB: u64 = 64;

/// Whether an initramfs of `bytes` fits a guest of `memory_mib`: the guest
/// holds the archive and the tree it unpacks from it in RAM at once
/// (the archive's pages are freed only after), beside the kernel.
pub fn fits_in_ram(bytes: u64, memory_mib: u64) -> Result<(), String> {
    let mib = bytes.div_ceil(1 << 20);
    let need = 2 * mib + GUEST_BASE_MIB;
    if need <= memory_mib {
        return Ok(());
    }
    Err(format!(
        "the guest's initramfs (the image packed with the agent) is {mib} MiB; a guest unpacks it into its RAM and needs about 2 × {mib} + {GUEST_BASE_MIB} = {need} MiB, more than its {memory_mib} MiB: raise `[vm] memory` (or --memory) to at least {need} MiB, or use a smaller image"
    ))
}

/// Boots guests with QEMU.
pub struct Vm {
    config: VmConfig,
    devices: Devices,
    image_dir: PathBuf,
    kernel: KernelFiles,
    run_dir: Arc<RunDir>,
    /// Initramfs per module set, written on first use.
    initramfs: Mutex<BTreeMap<Vec<String>, (PathBuf, u64)>>,
    /// QEMU's version, the accelerator and the guest kernel, for meta.json.
    pub facts: super::EnvFacts,
    /// The run's network, for guests with `bridge` networking.
    pub net: Option<Arc<crate::net::Fabric>>,
    /// `vm`, or `vm-minimal` when it boots the minimal kernel as its own
    /// environment.
    pub kind: EnvKind,
    /// The guest kernel as meta.json records it: which one, its version,
    /// image and size, and for the minimal kernel its config hash and build.
    pub kernel_meta: serde_json::Value,
}

impl Vm {
    /// An environment booting guests as `config` says, each with `devices`,
    /// from the image tree in `image_dir`. QEMU pids are recorded in
    /// `run_dir` so `isobench clean` can find them after a crash; the
    /// initramfs and disk files live there too.
    pub fn new(
        config: VmConfig,
        devices: Devices,
        image_dir: PathBuf,
        kernel: KernelFiles,
        run_dir: Arc<RunDir>,
    ) -> Self {
        Vm {
            config,
            devices,
            image_dir,
            kernel,
            run_dir,
            initramfs: Mutex::new(BTreeMap::new()),
            facts: super::EnvFacts::default(),
            net: None,
            kind: EnvKind::Vm,
            kernel_meta: serde_json::Value::Null,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// Checks that the guests can be built (their modules exist and match
    /// the kernel) and writes their initramfs, before any boot.
    pub fn prepare(&self) -> Result<(), EnvError> {
        self.initramfs_for(&self.devices).map(drop)
    }

    /// The initramfs for a guest with these devices, and the modules the
    /// agent must load, in order.
    fn initramfs_for(&self, devices: &Devices) -> Result<(PathBuf, Vec<String>), EnvError> {
        let modules = self
            .kernel
            .modules_for(self.config.machine, devices)
            .map_err(|e| EnvError::Unavailable(e.to_string()))?;
        let names: Vec<String> = modules.iter().map(|m| m.name.clone()).collect();
        let mut cache = self.initramfs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((path, _)) = cache.get(&names) {
            return Ok((path.clone(), names));
        }
        let file = if names.is_empty() {
            format!("initramfs-{}.cpio", self.kind.as_str())
        } else {
            format!("initramfs-{}-{}.cpio", self.kind.as_str(), names.join("+"))
        };
        let path = self.run_dir.path().join(file);
        let bytes = write_initramfs(&self.image_dir, &modules, &path)
            .map_err(|e| EnvError::io(format!("writing the initramfs {}", path.display()), e))?;
        if let Err(why) = fits_in_ram(bytes, self.config.memory_mib) {
            let _ = std::fs::remove_file(&path);
            return Err(EnvError::Unavailable(why));
        }
        cache.insert(names.clone(), (path.clone(), bytes));
        Ok((path, names))
    }

    /// The agent's arguments for one guest.
    fn agent_args(
        &self,
        modules: &[String],
        devices: &Devices,
        launch: &Launch<'_>,
        nic: Option<&nic::Nic>,
    ) -> Vec<String> {
        let mut args = vec![format!("--frames={FRAMES_DEVICE}")];
        if let Some(nic) = nic {
            args.push(nic.agent_arg());
        }
        if !modules.is_empty() {
            args.push(format!("--load={}", modules.join(",")));
        }
        if devices.scratch_mib.is_some() {
            args.push(format!("--scratch={DISK_DEVICE}"));
        } else if devices.disk_mib.is_some() {
            args.push(format!("--disk={DISK_DEVICE}"));
        }
        for (key, value) in &launch.env {
            args.push(format!("--env={key}={value}"));
        }
        args.extend(qemu::encode_workload_args(&launch.spec.to_args()));
        args
    }
}

/// A pipe whose ends are closed on exec.
fn pipe() -> Result<(OwnedFd, OwnedFd), EnvError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| EnvError::io("creating a pipe for QEMU", e.into()))
}

/// Formats a scratch disk's file as ext4: no reserved blocks, inode tables
/// and journal written now rather than by a kernel thread in the guest
/// while a workload measures.
fn format_scratch(path: &Path) -> Result<(), EnvError> {
    let mkfs = mkfs_ext4().map_err(EnvError::Unavailable)?;
    let out = Command::new(&mkfs)
        .args(["-q", "-F", "-m", "0", "-L", "isobench-scratch"])
        .args(["-E", "lazy_itable_init=0,lazy_journal_init=0"])
        .arg(path)
        .output()
        .map_err(|e| EnvError::io(format!("running {}", mkfs.display()), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(EnvError::Unavailable(format!(
            "{} {} failed ({}): {}",
            mkfs.display(),
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Creates the raw file behind a guest's disk, its blocks allocated so the
/// guest's writes measure I/O rather than the host file system's allocator.
fn create_disk(path: &Path, mib: u64) -> Result<(), EnvError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| EnvError::io(format!("creating {}", dir.display()), e))?;
    }
    let file =
        File::create(path).map_err(|e| EnvError::io(format!("creating {}", path.display()), e))?;
    let len = (mib * 1024 * 1024) as i64;
    nix::fcntl::posix_fallocate(&file, 0, len).or_else(|e| {
        // File systems without fallocate (tmpfs before 6.x, some overlays):
        // a sparse file still works, it just allocates on first write.
        file.set_len(len as u64)
            .map_err(|io| EnvError::io(format!("sizing {} ({e})", path.display()), io))
    })
}

impl Environment for Vm {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn kind(&self) -> EnvKind {
        self.kind
    }

    fn facts(&self) -> super::EnvFacts {
        self.facts.clone()
    }

    fn knobs(&self) -> serde_json::Value {
        let example = ["noop".to_string()];
        let initramfs = self
            .initramfs
            .lock()
            .map(|c| {
                c.iter()
                    .map(|(mods, (path, bytes))| {
                        serde_json::json!({"modules": mods, "path": path, "bytes": bytes})
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        serde_json::json!({
            "config": self.config,
            "devices": self.devices,
            "kernel": self.kernel_meta,
            "kernel_release": self.kernel.release,
            "modules_dir": self.kernel.modules.as_ref().map(|m| m.root()),
            "initramfs": initramfs,
            "qemu_args_example": qemu_args(&self.config, &Guest {
                initramfs: Path::new("initramfs-vm.cpio"),
                agent_args: &example,
                disk: None,
                nic: false,
            }),
        })
    }

    fn startup_timeout(&self) -> std::time::Duration {
        self.config.boot_timeout
    }

    fn artifact_bytes(&self, spec: &WorkloadSpec) -> Option<u64> {
        let devices = self.devices.for_workload(spec);
        let (initramfs, _) = self.initramfs_for(&devices).ok()?;
        let kernel = std::fs::metadata(&self.config.kernel).ok()?.len();
        let initramfs = std::fs::metadata(initramfs).ok()?.len();
        let disk = devices.disk_size_mib().unwrap_or(0) << 20;
        Some(kernel + initramfs + disk)
    }

    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError> {
        if !launch.volumes.is_empty() {
            return Err(EnvError::Unavailable(
                "volumes are bind mounts into containers; a VM has none (its I/O workloads get a scratch disk)".into(),
            ));
        }
        let mut devices = self.devices.for_workload(launch.spec);
        devices.nic = launch.network != crate::net::Mode::None;
        let (initramfs, modules) = self.initramfs_for(&devices)?;
        // Created before the clock starts: not part of the guest's start-up.
        let disk = devices
            .disk_size_mib()
            .map(|mib| {
                let path = self
                    .run_dir
                    .path()
                    .join("disks")
                    .join(format!("{}.img", launch.id));
                create_disk(&path, mib)?;
                if devices.scratch_mib.is_some() {
                    format_scratch(&path)?;
                }
                Ok::<_, EnvError>(path)
            })
            .transpose()?;
        // The clock starts here for a guest with a network: its tap is part
        // of what it costs (the run's bridge is not: the testbed made it).
        let net_start = Instant::now();
        let nic = nic::Nic::attach(launch.network, self.net.as_ref(), &launch.ports)?;
        let agent_args = self.agent_args(&modules, &devices, &launch, nic.as_ref());
        let guest = Guest {
            initramfs: &initramfs,
            agent_args: &agent_args,
            disk: disk.as_deref(),
            nic: nic.is_some(),
        };
        qemu::check_cmdline(&self.config, &guest).map_err(EnvError::Unavailable)?;
        let mut args = qemu_args(&self.config, &guest);
        if let Some(nic) = &nic {
            args.extend(nic.qemu_args(&self.config));
        }
        // Where the console goes: to the harness as the instance's output,
        // which it logs (a run); or to the user's terminal (exec), with
        // QEMU's own errors on isobench's stderr.
        let dup = |log: &File| {
            log.try_clone()
                .map_err(|e| EnvError::io("duplicating the instance log", e))
        };
        let log = match &launch.io {
            Io::Captured { log } => Some(dup(log)?),
            Io::Inherited => None,
        };
        let stderr_log = log.as_ref().map(dup).transpose()?;
        let mut instance = VmInstance {
            spawned_at: Instant::now(),
            streams: None,
            process: None,
            console: None,
            tail: Arc::new(Mutex::new(Tail::default())),
            disk,
            run_dir: Arc::clone(&self.run_dir),
            guest_ram_kib: self.config.memory_mib * 1024,
            log,
            nic,
            machine: self.config.machine,
        };

        let (frames_read, frames_write) = pipe()?;
        let (console_read, console_write) = pipe()?;
        // In a run, the console is the instance's output (data for the
        // harness, never frames) and QEMU's stderr goes to the log.
        let (output, stderr_read, stderr) = match &launch.io {
            Io::Captured { .. } => {
                let (out_read, out_write) = pipe()?;
                let (read, write) = pipe()?;
                (
                    Some((File::from(out_read), File::from(out_write))),
                    Some(read),
                    Stdio::from(write),
                )
            }
            Io::Inherited => (None, None, Stdio::inherit()),
        };
        let mut cmd = Command::new(&self.config.qemu);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(console_write))
            .stderr(stderr)
            .process_group(0);
        let frames_fd = frames_write.as_raw_fd();
        // SAFETY: the closure runs in the forked child before exec and makes
        // only async-signal-safe system calls (prctl, dup2, fcntl,
        // close_range) on file descriptors that are open in the child.
        unsafe {
            cmd.pre_exec(move || {
                die_with_parent()?;
                if frames_fd == FRAMES_FD {
                    // Already in place: only the close-on-exec flag must go.
                    if libc::fcntl(FRAMES_FD, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(frames_fd, FRAMES_FD) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing else of isobench's caller reaches QEMU.
                crate::env::stdio::cloexec_from(FRAMES_FD + 1)?;
                Ok(())
            });
        }
        instance.spawned_at = if instance.nic.is_some() {
            net_start
        } else {
            Instant::now()
        };
        let child = cmd.spawn().map_err(|e| {
            EnvError::io(
                format!(
                    "starting {} (install it with: apt-get install qemu-system-x86)",
                    self.config.qemu.display()
                ),
                e,
            )
        })?;
        // Only QEMU may hold the write ends now, so EOF means QEMU is gone.
        drop(frames_write);
        drop(cmd);
        let pid = child.id();
        instance.process =
            Some(ProcessHandle::new(pid).map_err(|e| EnvError::io("opening a pidfd for QEMU", e))?);
        self.run_dir
            .track(pid, "qemu")
            .map_err(|e| EnvError::io("recording the QEMU pid in the run's state file", e))?;
        let (output_read, output_write) = output.unzip();
        instance.streams = Some(Streams {
            frames: File::from(frames_read),
            output: output_read,
        });
        let console = Console {
            console: File::from(console_read),
            stderr: stderr_read.map(File::from),
            output: output_write,
            stderr_log,
        };
        let tail = Arc::clone(&instance.tail);
        instance.console = Some(std::thread::spawn(move || console.run(&tail)));
        Ok(Box::new(instance))
    }
}

/// The last bytes of a guest's console and QEMU's stderr.
#[derive(Debug, Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    const KEEP: usize = 16 * 1024;

    fn push(&mut self, data: &[u8]) {
        self.bytes.extend_from_slice(data);
        if self.bytes.len() > 2 * Self::KEEP {
            let cut = self.bytes.len() - Self::KEEP;
            self.bytes.drain(..cut);
        }
    }
}

/// A guest's console and QEMU's stderr on the host, until QEMU exits.
/// The frames do not pass here: their pipe goes straight to the harness,
/// and nothing on the console is ever read as a frame.
struct Console {
    /// The console (`ttyS0`, QEMU's stdout).
    console: File,
    /// QEMU's stderr, in a run (it is isobench's own stderr for exec).
    stderr: Option<File>,
    /// Where console bytes go: the instance's output pipe (a run), or
    /// isobench's stdout (exec) when `None`.
    output: Option<File>,
    /// Where QEMU's stderr goes.
    stderr_log: Option<File>,
}

impl Console {
    /// Moves bytes until both sources have ended; keeps their tail for
    /// [`explain`].
    fn run(mut self, tail: &Mutex<Tail>) {
        use rustix::event::{PollFd, PollFlags, poll};
        // A harness that stopped reading must not kill isobench with
        // SIGPIPE: get EPIPE instead. The signal for a broken pipe goes to
        // the writing thread, this one.
        let mut pipe_sig = nix::sys::signal::SigSet::empty();
        pipe_sig.add(nix::sys::signal::Signal::SIGPIPE);
        let _ = pipe_sig.thread_block();
        let mut console_open = true;
        let mut stderr_open = self.stderr.is_some();
        let mut buf = vec![0u8; 16 * 1024];
        while console_open || stderr_open {
            let (console_ready, stderr_ready) = {
                let mut fds = Vec::with_capacity(2);
                if console_open {
                    fds.push(PollFd::new(&self.console, PollFlags::IN));
                }
                if let (true, Some(f)) = (stderr_open, self.stderr.as_ref()) {
                    fds.push(PollFd::new(f, PollFlags::IN));
                }
                match poll(&mut fds, None) {
                    Ok(_) => {}
                    Err(rustix::io::Errno::INTR) => continue,
                    Err(_) => break,
                }
                let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
                match (console_open, stderr_open) {
                    (true, true) => (ready[0], ready[1]),
                    (true, false) => (ready[0], false),
                    _ => (false, ready[0]),
                }
            };
            if console_ready {
                match read_some(&mut self.console, &mut buf) {
                    Some(data) => {
                        tail.lock().unwrap_or_else(|e| e.into_inner()).push(data);
                        let _ = match self.output.as_mut() {
                            Some(out) => out.write_all(data),
                            None => {
                                let mut out = std::io::stdout().lock();
                                out.write_all(data).and_then(|()| out.flush())
                            }
                        };
                    }
                    None => console_open = false,
                }
            }
            if stderr_ready && let Some(f) = self.stderr.as_mut() {
                match read_some(f, &mut buf) {
                    Some(data) => {
                        tail.lock().unwrap_or_else(|e| e.into_inner()).push(data);
                        if let Some(log) = self.stderr_log.as_mut() {
                            let _ = log.write_all(data);
                        }
                    }
                    None => stderr_open = false,
                }
            }
        }
    }
}

/// One read; `None` at the end of the stream (or on an error).
fn read_some<'a>(f: &mut File, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    loop {
        match f.read(buf) {
            Ok(0) => return None,
            Ok(n) => return Some(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// Why a guest ended badly, from how QEMU ended and the console's last
/// lines; `None` when they say nothing useful.
pub fn explain(exit: Option<Exit>, console: &str) -> Option<String> {
    let mut why = Vec::new();
    if let Some(line) = console
        .lines()
        .map(|l| l.trim_matches(|c: char| c.is_whitespace() || c.is_control()))
        .find(|l| l.contains("Kernel panic - not syncing"))
    {
        let at = line.find("Kernel panic").unwrap_or(0);
        why.push(format!("the guest kernel panicked: {}", &line[at..]));
    }
    if let Some(line) = console
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with("isobench-agent:"))
    {
        why.push(format!("the agent said on the console: {line}"));
    }
    match exit {
        Some(Exit::Signal(sig)) if sig != libc::SIGKILL => {
            why.push(format!("QEMU crashed: {}", Exit::Signal(sig)));
        }
        Some(Exit::Code(code)) if code != 0 => {
            let said: Vec<&str> = console
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with(QEMU))
                .collect();
            why.push(match said.last() {
                Some(line) => format!("QEMU failed (exit status {code}): {line}"),
                None => format!("QEMU failed with exit status {code}"),
            });
        }
        _ => {}
    }
    (!why.is_empty()).then(|| why.join("; "))
}

struct VmInstance {
    spawned_at: Instant,
    streams: Option<Streams>,
    process: Option<ProcessHandle>,
    console: Option<JoinHandle<()>>,
    tail: Arc<Mutex<Tail>>,
    disk: Option<PathBuf>,
    run_dir: Arc<RunDir>,
    guest_ram_kib: u64,
    /// The instance's log, for isobench's own notes (stderr when `None`).
    log: Option<File>,
    /// Its network card's host side.
    nic: Option<nic::Nic>,
    machine: qemu::Machine,
}

impl VmInstance {
    /// Waits for the console copy to end (QEMU has exited).
    fn join_console(&mut self) {
        if let Some(handle) = self.console.take() {
            let _ = handle.join();
        }
    }

    fn note(&mut self, text: &str) {
        match self.log.as_mut() {
            Some(log) => {
                let _ = writeln!(log, "isobench: {text}");
            }
            None => crate::say!("isobench: {text}"),
        }
    }
}

impl VmInstance {
    /// QEMU's memory, from its smaps.
    fn memory_figures(&mut self) -> Vec<Metric> {
        let pid = self.process().pid();
        let path = format!("/proc/{pid}/smaps");
        let maps = match std::fs::read_to_string(&path)
            .map_err(|e| format!("reading {path}: {e}"))
            .and_then(|t| smaps::parse(&t))
        {
            Ok(m) => m,
            Err(e) => {
                self.note(&format!("no memory figures: {e}"));
                return Vec::new();
            }
        };
        let mib = |kib: u64| kib as f64 / 1024.0;
        match smaps::vmm_memory(&maps, self.guest_ram_kib) {
            Ok(mem) => vec![
                Metric::lower("pss_mib", "MiB", mib(mem.pss_kib)),
                Metric::lower("rss_mib", "MiB", mib(mem.rss_kib)),
                Metric::lower("vmm_overhead_mib", "MiB", mib(mem.overhead_pss_kib)),
                Metric::lower("guest_ram_pss_mib", "MiB", mib(mem.guest_ram_pss_kib)),
            ],
            Err(e) => {
                self.note(&format!(
                    "no vmm_overhead_mib: {e} in {path}; only QEMU's total PSS is recorded"
                ));
                vec![Metric::lower(
                    "pss_mib",
                    "MiB",
                    mib(maps.iter().map(|m| m.pss_kib).sum()),
                )]
            }
        }
    }
}

impl Instance for VmInstance {
    fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    fn take_streams(&mut self) -> Option<Streams> {
        self.streams.take()
    }

    fn process(&mut self) -> &mut ProcessHandle {
        // Set before the instance is handed out.
        self.process.as_mut().expect("VM instance has a process")
    }

    fn at_done(&mut self) -> Vec<Metric> {
        let mut m = self.memory_figures();
        if let Some(nic) = &self.nic {
            m.push(Metric::lower(
                "net_setup_ms",
                "ms",
                nic.setup.as_secs_f64() * 1e3,
            ));
        }
        m
    }

    fn reach(&self, port: u16) -> Option<std::net::SocketAddr> {
        self.nic.as_ref().and_then(|n| n.reach(port))
    }

    fn network_facts(&self) -> Vec<(String, String)> {
        match &self.nic {
            Some(n) => n.facts(self.machine),
            None => vec![("network".into(), "none".into())],
        }
    }

    fn diagnose(&mut self) -> Option<String> {
        let exit = self.process.as_ref().and_then(ProcessHandle::exit);
        if exit.is_some() {
            self.join_console();
        }
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        explain(exit, &String::from_utf8_lossy(&tail.bytes))
    }

    fn cleanup(&mut self) -> Result<(), EnvError> {
        if let Some(p) = self.process.as_mut() {
            p.kill_and_reap()
                .map_err(|e| EnvError::io("reaping QEMU", e))?;
            let pid = p.pid();
            self.run_dir
                .untrack(pid)
                .map_err(|e| EnvError::io("updating the run's state file", e))?;
        }
        self.join_console();
        if let Some(nic) = self.nic.as_mut() {
            nic.release()?;
        }
        if let Some(disk) = self.disk.take() {
            match std::fs::remove_file(&disk) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(EnvError::io(format!("removing {}", disk.display()), e));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl Drop for VmInstance {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_panic_is_named() {
        let console = "\r\n[    1.90] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)\r\n[    1.91] CPU: 0 PID: 1\r\n";
        let why = explain(Some(Exit::Code(0)), console).unwrap();
        assert_eq!(
            why,
            "the guest kernel panicked: Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)"
        );
    }

    #[test]
    fn qemu_failures_are_named_and_our_own_kill_is_not() {
        let console = "qemu-system-x86_64: -M nosuch: unsupported machine type\nUse -machine help to list supported machines\n";
        assert_eq!(
            explain(Some(Exit::Code(1)), console).unwrap(),
            "QEMU failed (exit status 1): qemu-system-x86_64: -M nosuch: unsupported machine type"
        );
        assert_eq!(
            explain(Some(Exit::Signal(libc::SIGSEGV)), "").unwrap(),
            "QEMU crashed: killed by signal 11 (SIGSEGV)"
        );
        assert_eq!(explain(Some(Exit::Signal(libc::SIGKILL)), ""), None);
        assert_eq!(explain(Some(Exit::Code(0)), "all fine\n"), None);
        assert_eq!(explain(None, ""), None);
        assert_eq!(
            explain(
                None,
                "isobench-agent: cannot open the frames port /dev/ttyS1: No such device; frames go to the console\n"
            )
            .unwrap(),
            "the agent said on the console: isobench-agent: cannot open the frames port /dev/ttyS1: No such device; frames go to the console"
        );
    }

    #[test]
    fn disks_ask_for_the_transport_and_block_modules() {
        let none = Devices::default();
        assert!(none.modules(Machine::Microvm).is_empty());
        let disk = Devices {
            disk_mib: Some(8),
            scratch_mib: None,
            nic: false,
        };
        assert_eq!(
            disk.modules(Machine::Microvm),
            ["virtio_mmio", "virtio_blk"]
        );
        assert_eq!(disk.modules(Machine::Pc), ["virtio_pci", "virtio_blk"]);
        let kernel = KernelFiles {
            release: Some("6.1.0-test".into()),
            modules: None,
        };
        let err = kernel
            .modules_for(Machine::Microvm, &disk)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("virtio_mmio, virtio_blk") && err.contains("--modules"),
            "{err}"
        );
        assert!(
            kernel
                .modules_for(Machine::Microvm, &none)
                .unwrap()
                .is_empty()
        );
        // A fileio workload gets a scratch disk that holds its file.
        let fileio = WorkloadSpec::Fileio {
            file_mib: 256,
            block_kib: 1024,
            ops: 100,
        };
        let scratch = disk.for_workload(&fileio);
        assert_eq!(scratch.scratch_mib, Some(256 + 32 + 64));
        assert_eq!(scratch.disk_mib, None);
        assert_eq!(
            scratch.modules(Machine::Microvm),
            ["virtio_mmio", "virtio_blk"]
        );
        assert_eq!(none.for_workload(&WorkloadSpec::Noop), none);
    }

    #[test]
    fn initramfs_is_deterministic_and_holds_agent_nodes_and_modules() {
        let dir = crate::testutil::TempDir::new("vm-initramfs");
        std::fs::create_dir_all(dir.join("image/dev")).unwrap();
        std::fs::write(dir.join("image/init"), b"agent").unwrap();
        let ko = dir.join("virtio_blk.ko");
        std::fs::write(&ko, modules::tests::fake_module("name=virtio_blk;")).unwrap();
        let module = Module {
            name: "virtio_blk".into(),
            path: ko,
            depends: Vec::new(),
        };
        let (a, b) = (dir.join("a.cpio"), dir.join("b.cpio"));
        write_initramfs(&dir.join("image"), std::slice::from_ref(&module), &a).unwrap();
        std::fs::write(dir.join("image/init"), b"agent").unwrap(); // new mtime, same bytes
        write_initramfs(&dir.join("image"), std::slice::from_ref(&module), &b).unwrap();
        let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
        assert_eq!(a, b, "same inputs, same bytes");
        let names = image::tests::entry_names(&a);
        assert_eq!(
            names,
            [
                ".isobench-modules",
                ".isobench-modules/virtio_blk.ko",
                "dev",
                "dev/console",
                "dev/ttyS1",
                "init"
            ]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
