//! `vm`: the agent as PID 1 of a QEMU guest.
//!
//! QEMU boots the guest kernel directly (`-kernel`, no firmware menu, no
//! disk) with the run's image packed as the initramfs and the agent as
//! `/init`. The agent's arguments travel on the kernel command line after
//! `--`; its frames come back over the serial console on QEMU's stdout. At
//! the end the agent powers the guest off and QEMU exits.
//!
//! The accelerator is chosen by [`choose_accel`]: KVM only where it really
//! works, TCG (QEMU's emulator) otherwise, and the reason is recorded.

use super::native::die_with_parent;
use super::{EnvError, EnvKind, Environment, Instance, Launch, ProcessHandle};
use crate::runtime::RunDir;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The QEMU binary isobench runs.
pub const QEMU: &str = "qemu-system-x86_64";

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's Tiny Code Generator: the guest CPU is emulated in software.
    Tcg,
}

impl Accel {
    /// QEMU's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the user asked for with `--accel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AccelRequest {
    /// KVM where it really works, TCG otherwise.
    #[default]
    Auto,
    /// KVM, or fail with the reason it cannot work.
    Kvm,
    /// TCG always.
    Tcg,
}

/// The accelerator a run uses, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccelChoice {
    /// The accelerator.
    pub accel: Accel,
    /// Why it was chosen, in words, for `meta.json`, `doctor` and the report.
    pub reason: String,
}

/// Why KVM cannot be used on this host, if something already says so
/// without booting: a PVM nested hypervisor, or no usable /dev/kvm.
/// `sys_module` and `dev_kvm` are parameters so tests can use fixtures.
pub fn kvm_unusable(sys_module: &Path, dev_kvm: &Path) -> Option<String> {
    if sys_module.join("kvm_pvm").exists() {
        return Some(format!(
            "{} is the PVM nested hypervisor ({}): stock guest kernels hang right after decompression under it",
            dev_kvm.display(),
            sys_module.join("kvm_pvm").display()
        ));
    }
    if !dev_kvm.exists() {
        return Some(format!(
            "{} does not exist: no hardware virtualization here, or the kvm module is not loaded (modprobe kvm_intel or kvm_amd)",
            dev_kvm.display()
        ));
    }
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev_kvm)
    {
        Ok(_) => None,
        Err(e) => Some(format!(
            "cannot open {} for reading and writing: {e} (run as root or join the `kvm` group)",
            dev_kvm.display()
        )),
    }
}

/// Picks the accelerator. `probe` boots a guest under KVM with a short
/// timeout and says whether the agent answered; it is called only when
/// nothing else rules KVM out, and its verdict is cached per host kernel.
pub fn choose_accel(
    request: AccelRequest,
    sys_module: &Path,
    dev_kvm: &Path,
    probe: impl FnOnce() -> Result<Duration, String>,
) -> Result<AccelChoice, EnvError> {
    match request {
        AccelRequest::Tcg => Ok(AccelChoice {
            accel: Accel::Tcg,
            reason: "requested with --accel tcg".into(),
        }),
        AccelRequest::Kvm => match kvm_unusable(sys_module, dev_kvm) {
            Some(why) => Err(EnvError::Unavailable(format!(
                "--accel kvm: KVM is not usable here: {why}; use --accel tcg (or auto)"
            ))),
            None => Ok(AccelChoice {
                accel: Accel::Kvm,
                reason: "requested with --accel kvm".into(),
            }),
        },
        AccelRequest::Auto => {
            if let Some(why) = kvm_unusable(sys_module, dev_kvm) {
                return Ok(AccelChoice {
                    accel: Accel::Tcg,
                    reason: format!("KVM unusable: {why}"),
                });
            }
            Ok(match probe() {
                Ok(took) => AccelChoice {
                    accel: Accel::Kvm,
                    reason: format!(
                        "KVM usable: /dev/kvm opens and a probe guest reached its agent in {} ms",
                        took.as_millis()
                    ),
                },
                Err(why) => AccelChoice {
                    accel: Accel::Tcg,
                    reason: format!("KVM unusable: a probe boot under KVM failed: {why}"),
                },
            })
        }
    }
}

/// Everything that shapes a guest. Recorded whole in `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmConfig {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The guest kernel (bzImage).
    pub kernel: PathBuf,
    /// The initramfs (newc cpio) holding the image.
    pub initramfs: PathBuf,
    /// QEMU machine type.
    pub machine: String,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub cpus: u64,
    /// The accelerator.
    pub accel: Accel,
    /// Passed as `tsc_early_khz` under TCG: microvm has no other clock to
    /// calibrate the TSC against, and without it a boot sometimes hangs.
    pub tsc_khz: Option<u64>,
    /// Spawn → `ready` limit.
    #[serde(serialize_with = "secs")]
    pub boot_timeout: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Default spawn → `ready` limit for an accelerator: a TCG boot takes about
/// 2–3 s on a 2-core machine, a KVM boot well under one.
pub fn default_boot_timeout(accel: Accel) -> Duration {
    match accel {
        Accel::Kvm => Duration::from_secs(10),
        Accel::Tcg => Duration::from_secs(30),
    }
}

/// The guest kernel's command line.
pub fn kernel_cmdline(cfg: &VmConfig, agent_args: &[String]) -> String {
    let mut parts: Vec<String> = [
        "console=ttyS0",
        "quiet",
        "loglevel=0",
        "panic=-1",
        "rdinit=/init",
    ]
    .map(String::from)
    .to_vec();
    if let Some(khz) = cfg.tsc_khz {
        parts.push(format!("tsc_early_khz={khz}"));
    }
    // Everything after `--` is passed to init as its arguments.
    parts.push("--".into());
    parts.push("--vm".into());
    parts.extend(agent_args.iter().cloned());
    parts.join(" ")
}

/// QEMU's arguments for one guest (a pure function: unit-tested on its output).
pub fn qemu_args(cfg: &VmConfig, agent_args: &[String]) -> Vec<String> {
    let cpu = match cfg.accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };
    let mut args: Vec<String> = vec![
        "-M".into(),
        cfg.machine.clone(),
        "-accel".into(),
        cfg.accel.as_str().into(),
        "-cpu".into(),
        cpu.into(),
        "-m".into(),
        cfg.memory_mib.to_string(),
        "-smp".into(),
        cfg.cpus.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-nographic".into(),
        "-serial".into(),
        "stdio".into(),
        "-no-reboot".into(),
        "-kernel".into(),
        cfg.kernel.display().to_string(),
        "-initrd".into(),
        cfg.initramfs.display().to_string(),
        "-append".into(),
    ];
    args.push(kernel_cmdline(cfg, agent_args));
    args
}

/// The host's TSC rate in kHz, from the first `cpu MHz` line of `cpuinfo`.
pub fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("cpu MHz"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|mhz| (mhz * 1000.0).round() as u64)
}

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

/// Boots guests with QEMU.
pub struct Vm {
    config: VmConfig,
    run_dir: Arc<RunDir>,
}

impl Vm {
    /// An environment booting guests as `config` says; QEMU pids are
    /// recorded in `run_dir` so `isobench clean` can find them after a crash.
    pub fn new(config: VmConfig, run_dir: Arc<RunDir>) -> Self {
        Vm { config, run_dir }
    }

    /// The configuration.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }
}

impl Environment for Vm {
    fn kind(&self) -> EnvKind {
        EnvKind::Vm
    }

    fn knobs(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.config,
            "qemu_args_example": qemu_args(&self.config, &["noop".to_string()]),
        })
    }

    fn startup_timeout(&self) -> Duration {
        self.config.boot_timeout
    }

    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError> {
        let super::Io::Captured { log } = &launch.io else {
            return Err(EnvError::Unavailable(
                "a VM cannot stream a program's output to the terminal yet; use --env native or container".into(),
            ));
        };
        let stderr = log
            .try_clone()
            .map_err(|e| EnvError::io("duplicating the instance log", e))?;
        let mut cmd = Command::new(&self.config.qemu);
        cmd.args(qemu_args(&self.config, &launch.spec.to_args()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .process_group(0);
        // SAFETY: the closure runs in the forked child before exec and only
        // makes one async-signal-safe system call (prctl).
        unsafe {
            cmd.pre_exec(die_with_parent);
        }
        let spawned_at = Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            EnvError::io(
                format!(
                    "starting {} (install it with: apt-get install qemu-system-x86)",
                    self.config.qemu.display()
                ),
                e,
            )
        })?;
        let pid = child.id();
        let output = child.stdout.take().map(|s| File::from(OwnedFd::from(s)));
        let process =
            ProcessHandle::new(pid).map_err(|e| EnvError::io("opening a pidfd for QEMU", e))?;
        self.run_dir
            .track(pid, "qemu")
            .map_err(|e| EnvError::io("recording the QEMU pid in the run's state file", e))?;
        Ok(Box::new(VmInstance {
            spawned_at,
            output,
            process,
            run_dir: Arc::clone(&self.run_dir),
        }))
    }
}

struct VmInstance {
    spawned_at: Instant,
    output: Option<File>,
    process: ProcessHandle,
    run_dir: Arc<RunDir>,
}

impl Instance for VmInstance {
    fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    fn take_output(&mut self) -> Option<File> {
        self.output.take()
    }

    fn process(&mut self) -> &mut ProcessHandle {
        &mut self.process
    }

    fn cleanup(&mut self) -> Result<(), EnvError> {
        self.process
            .kill_and_reap()
            .map_err(|e| EnvError::io("reaping QEMU", e))?;
        self.run_dir
            .untrack(self.process.pid())
            .map_err(|e| EnvError::io("updating the run's state file", e))
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

    fn config(accel: Accel) -> VmConfig {
        VmConfig {
            qemu: QEMU.into(),
            kernel: "/k/vmlinuz".into(),
            initramfs: "/r/initramfs.cpio".into(),
            machine: "microvm".into(),
            memory_mib: 256,
            cpus: 1,
            accel,
            tsc_khz: if accel == Accel::Tcg {
                Some(2_300_000)
            } else {
                None
            },
            boot_timeout: default_boot_timeout(accel),
        }
    }

    #[test]
    fn qemu_command_line_is_exact() {
        let args = qemu_args(&config(Accel::Tcg), &["cpu".into(), "rounds=5".into()]);
        let expected = [
            "-M",
            "microvm",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "256",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-nographic",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
            "/k/vmlinuz",
            "-initrd",
            "/r/initramfs.cpio",
            "-append",
            "console=ttyS0 quiet loglevel=0 panic=-1 rdinit=/init tsc_early_khz=2300000 -- --vm cpu rounds=5",
        ];
        assert_eq!(args, expected);
        let kvm = qemu_args(&config(Accel::Kvm), &["noop".into()]);
        assert_eq!(&kvm[2..6], ["-accel", "kvm", "-cpu", "host"]);
        assert!(kvm.last().unwrap().ends_with("rdinit=/init -- --vm noop"));
    }

    #[test]
    fn tsc_rate_comes_from_cpuinfo() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\ncpu MHz\t\t: 2299.998\n";
        assert_eq!(host_tsc_khz(cpuinfo), Some(2_299_998));
        assert_eq!(host_tsc_khz("processor: 0\n"), None);
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("isobench-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("module")).unwrap();
        dir
    }

    #[test]
    fn pvm_rules_out_kvm_without_probing() {
        let dir = temp("pvm");
        std::fs::create_dir_all(dir.join("module/kvm_pvm")).unwrap();
        std::fs::write(dir.join("kvm"), "").unwrap();
        let choice = choose_accel(
            AccelRequest::Auto,
            &dir.join("module"),
            &dir.join("kvm"),
            || panic!("must not probe"),
        )
        .unwrap();
        assert_eq!(choice.accel, Accel::Tcg);
        assert!(choice.reason.contains("PVM"), "{}", choice.reason);
        let err = choose_accel(
            AccelRequest::Kvm,
            &dir.join("module"),
            &dir.join("kvm"),
            || Ok(Duration::ZERO),
        )
        .unwrap_err();
        assert!(err.to_string().contains("--accel tcg"), "{err}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn probe_decides_when_kvm_opens() {
        let dir = temp("probe");
        std::fs::write(dir.join("kvm"), "").unwrap();
        let (m, k) = (dir.join("module"), dir.join("kvm"));
        let ok = choose_accel(AccelRequest::Auto, &m, &k, || {
            Ok(Duration::from_millis(180))
        })
        .unwrap();
        assert_eq!(ok.accel, Accel::Kvm);
        assert!(ok.reason.contains("180 ms"));
        let bad = choose_accel(AccelRequest::Auto, &m, &k, || {
            Err("timed out after 10 s".into())
        })
        .unwrap();
        assert_eq!(bad.accel, Accel::Tcg);
        assert!(bad.reason.contains("timed out"));
        let missing = choose_accel(AccelRequest::Auto, &m, &dir.join("nope"), || {
            panic!("no probe")
        })
        .unwrap();
        assert!(missing.reason.contains("does not exist"));
        let tcg = choose_accel(AccelRequest::Tcg, &m, &k, || panic!("no probe")).unwrap();
        assert_eq!(tcg.accel, Accel::Tcg);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
