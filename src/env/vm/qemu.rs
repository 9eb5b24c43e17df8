//! QEMU's command line and the guest kernel's, built by pure functions.
//!
//! Nothing here starts a process or reads a file: [`qemu_args`] turns a
//! [`VmConfig`] (what every guest of a run shares) and a [`Guest`] (what one
//! instance adds: its initramfs, its agent arguments, its disk) into the
//! exact argument list, which the unit tests below pin down.
//!
//! The guest has two serial ports. `ttyS0` is the console: kernel messages
//! (silenced by `quiet loglevel=1` unless the kernel panics) and, later, the
//! output of a program the agent runs; QEMU writes it to its stdout. `ttyS1`
//! carries only the agent's frames; QEMU writes it to file descriptor
//! [`FRAMES_FD`], which the host has made the write end of a pipe. Kernel
//! output can therefore never cut a frame in two.

use super::accel::Accel;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file descriptor on which QEMU finds the write end of the frames pipe.
pub const FRAMES_FD: i32 = 3;

/// The guest device the agent writes its frames to (the second serial port).
pub const FRAMES_DEVICE: &str = "/dev/ttyS1";

/// The guest device of the instance's scratch disk (the first virtio disk).
pub const DISK_DEVICE: &str = "/dev/vda";

/// A QEMU machine type isobench boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Machine {
    /// QEMU's minimal machine modelled on Firecracker: no PCI, virtio
    /// devices on MMIO, a minimal firmware (qboot without ACPI, SeaBIOS's
    /// microvm build with it). The default.
    #[default]
    Microvm,
    /// The classic i440FX PC with SeaBIOS: PCI, HPET, ACPI PM timer.
    Pc,
    /// The Q35 (ICH9) PC with SeaBIOS and PCI Express.
    Q35,
}

impl Machine {
    /// The name used in scenarios and `meta.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm",
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
        }
    }

    /// The value of QEMU's `-M` option. microvm leaves out the option ROMs,
    /// which a guest booted straight from `-kernel` never needs. (Leaving
    /// out its RTC too, `rtc=off`, was measured to make the boot about 2 s
    /// slower under TCG, so the RTC stays.)
    ///
    /// Without `acpi`, microvm has no ACPI tables, as Firecracker's machine
    /// has none: the firmware's MP table names the CPUs and the interrupt
    /// controller, the PIT and the PIC are wired as on a PC, and each virtio
    /// device's place is a kernel argument ([`VmConfig::virtio_kernel_arg`];
    /// QEMU's own `auto-kernel-cmdline` would append it after `--`, among
    /// the agent's arguments). Only a kernel that reads its virtio devices
    /// from the command line can boot so: see [`VmConfig::acpi`].
    pub fn qemu_value(self, acpi: bool) -> String {
        match self {
            Machine::Microvm if acpi => "microvm,x-option-roms=off".into(),
            Machine::Microvm => "microvm,x-option-roms=off,acpi=off,auto-kernel-cmdline=off".into(),
            Machine::Pc => "pc".into(),
            Machine::Q35 => "q35".into(),
        }
    }

    /// The virtio transport of this machine: MMIO on microvm, PCI otherwise.
    pub fn virtio_transport(self) -> &'static str {
        match self {
            Machine::Microvm => "virtio_mmio",
            Machine::Pc | Machine::Q35 => "virtio_pci",
        }
    }

    /// The QEMU device that puts a virtio block device on this transport.
    fn virtio_blk_device(self) -> &'static str {
        match self {
            Machine::Microvm => "virtio-blk-device",
            Machine::Pc | Machine::Q35 => "virtio-blk-pci",
        }
    }
}

/// microvm's virtio-mmio transports (QEMU's `hw/i386/microvm.h`): the
/// first at this address, each this many bytes after the last, and, on a
/// microvm without ACPI (8 transports, one I/O APIC), wired to the
/// interrupts from `MICROVM_VIRTIO_IRQ` on: ISA interrupts, which the MP
/// table routes.
const MICROVM_VIRTIO_BASE: u64 = 0xfeb0_0000;
const MICROVM_VIRTIO_SIZE: u64 = 512;
const MICROVM_VIRTIO_IRQ: u64 = 5;

/// The virtio devices a guest may have, each on a transport of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VirtioSlot {
    /// The scratch or raw disk (`/dev/vda`).
    Disk = 0,
    /// The network card (`eth0`).
    Nic = 1,
}

/// Everything that shapes the guests of one environment. Recorded whole in
/// `meta.json`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmConfig {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The guest kernel (bzImage).
    pub kernel: PathBuf,
    /// QEMU machine type.
    pub machine: Machine,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// Virtual CPUs.
    pub cpus: u64,
    /// The accelerator.
    pub accel: Accel,
    /// Whether a microvm guest gets ACPI tables (the PCs always have them).
    /// Off for the minimal kernel, which needs none: it finds its virtio
    /// devices on the command line, and with no ACPI its timer can be the
    /// PIT (see [`crate::kernel::minimal::boot_args`]). On for every other
    /// kernel: Debian's finds microvm's virtio devices only through ACPI
    /// (its `virtio_mmio` module takes no `device=` parameter).
    pub acpi: bool,
    /// The host's TSC rate, set under TCG: see [`tcg_clock_args`].
    pub tsc_khz: Option<u64>,
    /// The guest kernel's own boot arguments (the minimal kernel's, see
    /// [`crate::kernel::minimal::boot_args`]; none for other kernels).
    pub boot_args: Vec<String>,
    /// Extra kernel command-line arguments from the scenario, after
    /// isobench's own (so they win where the kernel takes the last value).
    pub kernel_args: Vec<String>,
    /// Spawn → `ready` limit.
    #[serde(serialize_with = "secs")]
    pub boot_timeout: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl VmConfig {
    /// Whether guests are told on the command line where their virtio
    /// devices are: on a microvm without ACPI.
    fn devices_on_cmdline(&self) -> bool {
        self.machine == Machine::Microvm && !self.acpi
    }

    /// What a virtio device's `-device` option adds to place it: on a
    /// microvm without ACPI, its own virtio-mmio transport, the one its
    /// kernel argument names. Elsewhere QEMU picks (and ACPI, or the PCI
    /// bus, tells the guest): a disk put on microvm's first transport by
    /// hand hung Debian's kernel when it loaded `virtio_blk` (measured).
    pub fn virtio_bus(&self, slot: VirtioSlot) -> String {
        if self.devices_on_cmdline() {
            format!(",bus=virtio-mmio-bus.{}", slot as u64)
        } else {
            String::new()
        }
    }

    /// The kernel argument that tells a guest where a virtio device is,
    /// when it learns that from the command line: the address and
    /// interrupt of its virtio-mmio transport
    /// (`virtio_mmio.device=512@<base>:<irq>`, as QEMU's own
    /// `auto-kernel-cmdline` writes it).
    pub fn virtio_kernel_arg(&self, slot: VirtioSlot) -> Option<String> {
        let n = slot as u64;
        self.devices_on_cmdline().then(|| {
            format!(
                "virtio_mmio.device={MICROVM_VIRTIO_SIZE}@{:#x}:{}",
                MICROVM_VIRTIO_BASE + n * MICROVM_VIRTIO_SIZE,
                MICROVM_VIRTIO_IRQ + n
            )
        })
    }
}

/// What one guest adds to the shared [`VmConfig`].
#[derive(Debug, Clone, Copy)]
pub struct Guest<'a> {
    /// The initramfs (newc cpio) with the agent as `/init`.
    pub initramfs: &'a Path,
    /// The agent's arguments (after `--` on the kernel command line).
    pub agent_args: &'a [String],
    /// A raw file on the host to attach as the guest's virtio disk.
    pub disk: Option<&'a Path>,
    /// Whether the guest has a network card (its `-netdev` and `-device`
    /// options come from [`super::nic::Nic::qemu_args`]).
    pub nic: bool,
}

/// Kernel arguments that only make the boot faster; none changes what a
/// workload measures once the agent runs. Each was measured (see
/// README.md, "How fast a VM starts"); the ones that did not help
/// (`initcall_blacklist` of slow initcalls, `8250.nr_uarts=2`, `pci=off` on
/// microvm, `init_on_alloc=0`, `lsm=capability`, `rcupdate.rcu_expedited=1`,
/// `mitigations=off`) are not here.
///
/// - `cryptomgr.notests`: skip the crypto self-tests, which run emulated
///   under TCG (about 0.5 s of a 2.5 s boot).
pub const FAST_BOOT_ARGS: &[&str] = &["cryptomgr.notests"];

/// Kernel arguments for the guest's clock under TCG, where the emulated
/// CPU's TSC is the only good clocksource:
///
/// - `tsc_early_khz=<the host TSC rate, [`measured_tsc_khz`]>`: microvm has no other clock to
///   calibrate the TSC against, and without it a boot sometimes hangs;
/// - `tsc=reliable`: no clocksource watchdog, which under a busy host marks
///   the TSC unstable mid-boot and falls back to jiffies — 4 ms steps for
///   every timing the agent takes in the guest.
pub fn tcg_clock_args(tsc_khz: u64) -> [String; 2] {
    [format!("tsc_early_khz={tsc_khz}"), "tsc=reliable".into()]
}

/// The start of every guest's kernel command line.
pub const BASE_ARGS: &[&str] = &[
    "console=ttyS0",
    "quiet",
    // Only KERN_EMERG reaches the console. Not 0: a panic raises the
    // console's level to show itself only when it is not 0.
    "loglevel=1",
    // Reboot at once on a panic; with -no-reboot QEMU then exits.
    "panic=-1",
    // Reboot (the agent's way to end a guest, and a panic's) by a triple
    // fault, which QEMU takes as a reset. The kernel's default tries
    // ACPI, then the keyboard controller, which microvm has neither of
    // (a second of waiting), then jumps into the firmware, which boots
    // the guest again instead of resetting it.
    "reboot=t",
    "rdinit=/init",
];

/// The guest kernel's command line for one guest.
pub fn kernel_cmdline(cfg: &VmConfig, guest: &Guest<'_>) -> String {
    let mut parts: Vec<String> = BASE_ARGS.iter().map(|a| a.to_string()).collect();
    parts.extend(FAST_BOOT_ARGS.iter().map(|a| a.to_string()));
    if let Some(khz) = cfg.tsc_khz {
        parts.extend(tcg_clock_args(khz));
    }
    let slots = [
        guest.disk.map(|_| VirtioSlot::Disk),
        guest.nic.then_some(VirtioSlot::Nic),
    ];
    parts.extend(
        slots
            .into_iter()
            .flatten()
            .filter_map(|slot| cfg.virtio_kernel_arg(slot)),
    );
    parts.extend(cfg.boot_args.iter().cloned());
    parts.extend(cfg.kernel_args.iter().cloned());
    // Everything after `--` is passed to init as its arguments. The kernel
    // also passes init any word it does not know (`nokaslr`, ...) before
    // them; the agent skips everything up to `--vm`.
    parts.push("--".into());
    parts.push("--vm".into());
    parts.extend(guest.agent_args.iter().cloned());
    parts.join(" ")
}

/// The longest kernel command line x86 Linux accepts (`COMMAND_LINE_SIZE`
/// is 2048 bytes with the terminating NUL).
pub const CMDLINE_MAX: usize = 2047;

/// Whether the kernel passes a word to init unchanged: its command-line
/// parser splits at blanks, strips double quotes, has no escapes, and ends
/// init's arguments at a second `--`.
fn kernel_safe(word: &str) -> bool {
    !word.is_empty()
        && word != "--"
        && !word
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c.is_control())
}

/// The workload's arguments as init arguments: unchanged when the kernel
/// passes every word through, otherwise as one `--args-hex=` word holding
/// them as a hex-encoded JSON array, which the agent decodes (a `command`
/// workload's `--` and its program's arguments, blanks and quotes included).
pub fn encode_workload_args(args: &[String]) -> Vec<String> {
    if args.iter().all(|a| kernel_safe(a)) {
        return args.to_vec();
    }
    let json = serde_json::to_string(args).unwrap_or_default();
    let hex = crate::util::hex(json.as_bytes());
    vec![format!("--args-hex={hex}")]
}

/// Checks that a guest's kernel command line, agent arguments included,
/// fits in [`CMDLINE_MAX`].
pub fn check_cmdline(cfg: &VmConfig, guest: &Guest<'_>) -> Result<(), String> {
    if let Some(bad) = guest.agent_args.iter().find(|a| !kernel_safe(a)) {
        return Err(format!(
            "internal: the init argument {bad:?} would not survive the kernel command line"
        ));
    }
    let len = kernel_cmdline(cfg, guest).len();
    if len > CMDLINE_MAX {
        return Err(format!(
            "the guest kernel command line would be {len} bytes, over the {CMDLINE_MAX} the kernel accepts; use fewer or shorter arguments (or fewer [vm] kernel_args)"
        ));
    }
    Ok(())
}

/// QEMU's arguments for one guest.
pub fn qemu_args(cfg: &VmConfig, guest: &Guest<'_>) -> Vec<String> {
    let cpu = match cfg.accel {
        Accel::Kvm => "host",
        Accel::Tcg => "max",
    };
    let mut args: Vec<String> = [
        "-M",
        &cfg.machine.qemu_value(cfg.acpi),
        "-accel",
        cfg.accel.as_str(),
        "-cpu",
        cpu,
        "-m",
        &cfg.memory_mib.to_string(),
        "-smp",
        &cfg.cpus.to_string(),
        "-nodefaults",
        "-no-user-config",
        "-nographic",
        "-no-reboot",
        // ttyS0, the console, on QEMU's stdout.
        "-serial",
        "stdio",
        // ttyS1, the frames, on the pipe at FRAMES_FD.
        "-chardev",
        &format!("file,id=frames,path=/proc/self/fd/{FRAMES_FD}"),
        "-device",
        "isa-serial,chardev=frames,index=1",
    ]
    .map(String::from)
    .to_vec();
    if let Some(disk) = guest.disk {
        // cache=none opens the file with O_DIRECT: the guest's I/O reaches
        // the host's disk, not the host's page cache.
        args.extend([
            "-drive".to_string(),
            format!(
                "file={},format=raw,if=none,id=disk0,cache=none,aio=native",
                qemu_escape(&disk.display().to_string())
            ),
            "-device".to_string(),
            format!(
                "{},drive=disk0{}",
                cfg.machine.virtio_blk_device(),
                cfg.virtio_bus(VirtioSlot::Disk)
            ),
        ]);
    }
    args.extend([
        "-kernel".to_string(),
        cfg.kernel.display().to_string(),
        "-initrd".to_string(),
        guest.initramfs.display().to_string(),
        "-append".to_string(),
        kernel_cmdline(cfg, guest),
    ]);
    args
}

/// Escapes a value for QEMU's comma-separated option syntax (`,` → `,,`).
fn qemu_escape(value: &str) -> String {
    value.replace(',', ",,")
}

/// The host's TSC rate in kHz, measured once per process: the counter's
/// ticks over 50 ms of the monotonic clock, each end read between two TSC
/// reads (the narrowest of five such stamps, their midpoint: a stamp the
/// scheduler cut into is wide and loses). A TCG guest's TSC runs at the
/// host's, and `cpu MHz` in `/proc/cpuinfo` is the core's current clock on
/// a host that scales it, not the TSC's. `None` off x86-64 or for an
/// implausible result (below 100 MHz or above 100 GHz).
pub fn measured_tsc_khz() -> Option<u64> {
    static RATE: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *RATE.get_or_init(measure_tsc_khz)
}

/// One measurement of [`measured_tsc_khz`].
fn measure_tsc_khz() -> Option<u64> {
    use std::time::Instant;
    let stamp = || {
        (0..5)
            .filter_map(|_| {
                let before = crate::util::tsc()?;
                let at = Instant::now();
                let after = crate::util::tsc()?;
                let width = after.checked_sub(before)?;
                Some((width, before + width / 2, at))
            })
            .min_by_key(|s| s.0)
    };
    let (_, t0, i0) = stamp()?;
    std::thread::sleep(Duration::from_millis(50));
    let (_, t1, i1) = stamp()?;
    let ns = i1.duration_since(i0).as_nanos() as f64;
    let khz = t1.saturating_sub(t0) as f64 / ns * 1e6;
    (1e5..1e8).contains(&khz).then(|| khz.round() as u64)
}

/// A TSC rate in kHz from the text of `/proc/cpuinfo` (parsed by
/// `procfs`): the first CPU's `cpu MHz`. Inside a guest under KVM that is
/// the TSC's rate; on a host, [`measured_tsc_khz`] is the one to use.
pub fn host_tsc_khz(cpuinfo: &str) -> Option<u64> {
    use procfs::FromRead;
    let info = procfs::CpuInfo::from_read(cpuinfo.as_bytes()).ok()?;
    let mhz: f64 = info.get_field(0, "cpu MHz")?.parse().ok()?;
    Some((mhz * 1000.0).round() as u64)
}

/// Default spawn → `ready` limit for an accelerator: a TCG boot takes about
/// 2–3 s on a 2-core machine (more when the machine is busy), a KVM boot
/// well under one.
pub fn default_boot_timeout(accel: Accel) -> Duration {
    match accel {
        Accel::Kvm => Duration::from_secs(10),
        Accel::Tcg => Duration::from_secs(30),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn config(accel: Accel) -> VmConfig {
        VmConfig {
            qemu: "qemu-system-x86_64".into(),
            kernel: "/k/vmlinuz".into(),
            machine: Machine::Microvm,
            memory_mib: 256,
            cpus: 1,
            accel,
            acpi: false,
            tsc_khz: (accel == Accel::Tcg).then_some(2_300_000),
            boot_args: Vec::new(),
            kernel_args: Vec::new(),
            boot_timeout: default_boot_timeout(accel),
        }
    }

    fn guest<'a>(args: &'a [String], disk: Option<&'a Path>) -> Guest<'a> {
        Guest {
            initramfs: Path::new("/r/initramfs.cpio"),
            agent_args: args,
            disk,
            nic: false,
        }
    }

    const FAST: &str = "cryptomgr.notests";

    #[test]
    fn qemu_command_line_is_exact() {
        let agent = ["cpu".to_string(), "rounds=5".to_string()];
        let args = qemu_args(&config(Accel::Tcg), &guest(&agent, None));
        let append = format!(
            "console=ttyS0 quiet loglevel=1 panic=-1 reboot=t rdinit=/init {FAST} tsc_early_khz=2300000 tsc=reliable -- --vm cpu rounds=5"
        );
        let expected = [
            "-M",
            "microvm,x-option-roms=off,acpi=off,auto-kernel-cmdline=off",
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
            "-no-reboot",
            "-serial",
            "stdio",
            "-chardev",
            "file,id=frames,path=/proc/self/fd/3",
            "-device",
            "isa-serial,chardev=frames,index=1",
            "-kernel",
            "/k/vmlinuz",
            "-initrd",
            "/r/initramfs.cpio",
            "-append",
            &append,
        ];
        assert_eq!(args, expected);
    }

    #[test]
    fn kvm_uses_the_host_cpu_and_no_tsc_hint() {
        let agent = ["noop".to_string()];
        let args = qemu_args(&config(Accel::Kvm), &guest(&agent, None));
        assert_eq!(&args[2..6], ["-accel", "kvm", "-cpu", "host"]);
        let append = args.last().unwrap();
        assert!(
            !append.contains("tsc_early_khz") && !append.contains("tsc="),
            "{append}"
        );
        assert!(
            append.ends_with("cryptomgr.notests -- --vm noop"),
            "{append}"
        );
    }

    #[test]
    fn no_network_device_ever_and_scenario_resources_apply() {
        let mut cfg = config(Accel::Tcg);
        cfg.memory_mib = 1024;
        cfg.cpus = 2;
        let agent = ["noop".to_string()];
        let args = qemu_args(&cfg, &guest(&agent, None));
        let at = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
        assert_eq!(at("-m"), "1024");
        assert_eq!(at("-smp"), "2");
        for flag in ["-net", "-netdev", "-nic"] {
            assert!(!args.iter().any(|a| a == flag), "{flag} in {args:?}");
        }
        assert!(!args.iter().any(|a| a.contains("virtio-net")));
    }

    #[test]
    fn disk_is_raw_uncached_and_on_the_machine_transport() {
        let agent = ["noop".to_string()];
        let disk = Path::new("/run/isobench/r,1/disk.img");
        let args = qemu_args(&config(Accel::Tcg), &guest(&agent, Some(disk)));
        let drive = args.iter().position(|a| a == "-drive").unwrap();
        assert_eq!(
            args[drive + 1],
            "file=/run/isobench/r,,1/disk.img,format=raw,if=none,id=disk0,cache=none,aio=native"
        );
        assert_eq!(
            args[drive + 2..drive + 4],
            [
                "-device",
                "virtio-blk-device,drive=disk0,bus=virtio-mmio-bus.0"
            ]
        );
        // microvm has no ACPI to describe the transport: the kernel is told.
        let append = args.last().unwrap();
        assert!(
            append.contains(" virtio_mmio.device=512@0xfeb00000:5 "),
            "{append}"
        );
        let mut pc = config(Accel::Tcg);
        pc.machine = Machine::Q35;
        let args = qemu_args(&pc, &guest(&agent, Some(disk)));
        assert!(args.iter().any(|a| a == "virtio-blk-pci,drive=disk0"));
        assert!(!args.last().unwrap().contains("virtio_mmio"));
        assert_eq!(args[1], "q35");
    }

    #[test]
    fn each_virtio_device_has_its_own_transport_named_before_the_agent_args() {
        let cfg = config(Accel::Tcg);
        let agent = ["net_rr".to_string()];
        let mut both = guest(&agent, Some(Path::new("/d.img")));
        both.nic = true;
        let line = kernel_cmdline(&cfg, &both);
        let disk = line.find("virtio_mmio.device=512@0xfeb00000:5").unwrap();
        let nic = line.find("virtio_mmio.device=512@0xfeb00200:6").unwrap();
        assert!(disk < nic && nic < line.find(" -- ").unwrap(), "{line}");
        let mut acpi = cfg.clone();
        acpi.acpi = true;
        let args = qemu_args(&acpi, &both);
        assert_eq!(args[1], "microvm,x-option-roms=off");
        assert!(!args.last().unwrap().contains("virtio_mmio"), "{args:?}");
        assert!(!args.iter().any(|a| a.contains("bus=")), "{args:?}");
        let mut nic_only = guest(&agent, None);
        nic_only.nic = true;
        let line = kernel_cmdline(&cfg, &nic_only);
        assert_eq!(line.matches("virtio_mmio.device=").count(), 1, "{line}");
        assert!(line.contains("512@0xfeb00200:6"), "{line}");
        assert_eq!(cfg.virtio_bus(VirtioSlot::Nic), ",bus=virtio-mmio-bus.1");
        let mut pc = cfg.clone();
        pc.machine = Machine::Pc;
        assert_eq!(pc.virtio_kernel_arg(VirtioSlot::Disk), None);
    }

    #[test]
    fn scenario_kernel_args_come_after_isobench_own() {
        let mut cfg = config(Accel::Tcg);
        cfg.kernel_args = vec!["mitigations=off".into(), "rdinit=/other".into()];
        cfg.boot_args = vec!["noreplace-smp".into()];
        let line = kernel_cmdline(&cfg, &guest(&["noop".to_string()], None));
        let own = line.find("rdinit=/init").unwrap();
        let kernels = line.find("noreplace-smp").unwrap();
        let theirs = line.find("rdinit=/other").unwrap();
        assert!(
            own < kernels && kernels < theirs && theirs < line.find(" -- ").unwrap(),
            "{line}"
        );
    }

    #[test]
    fn workload_arguments_the_kernel_would_mangle_travel_hex_encoded() {
        let plain = ["cpu".to_string(), "rounds=5".to_string()];
        assert_eq!(encode_workload_args(&plain), plain);
        let command: Vec<String> = ["command", "--", "/bin/sh", "-c", "echo \"hi there\""]
            .map(String::from)
            .to_vec();
        let encoded = encode_workload_args(&command);
        assert_eq!(encoded.len(), 1);
        let hex = encoded[0].strip_prefix("--args-hex=").unwrap();
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit()));
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let back: Vec<String> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back, command);
        let cfg = config(Accel::Tcg);
        assert_eq!(check_cmdline(&cfg, &guest(&encoded, None)), Ok(()));
        assert!(check_cmdline(&cfg, &guest(&["a b".to_string()], None)).is_err());
        let long = ["x".repeat(CMDLINE_MAX)];
        let err = check_cmdline(&cfg, &guest(&long, None)).unwrap_err();
        assert!(err.contains("over the 2047"), "{err}");
    }

    #[test]
    fn the_measured_tsc_rate_is_plausible_and_repeatable() {
        if !cfg!(target_arch = "x86_64") {
            eprintln!("skipped: the TSC is x86-64's");
            return;
        }
        // Two independent 50 ms measurements agree (each end is the
        // narrowest of five stamps, so a preempted read does not count).
        let a = measure_tsc_khz().expect("a TSC rate") as f64;
        let b = measure_tsc_khz().expect("a TSC rate") as f64;
        assert!((a / b - 1.0).abs() < 0.02, "{a} vs {b} kHz");
        // Once per process: every VM environment of a run gets the same.
        let khz = measured_tsc_khz();
        assert_eq!(measured_tsc_khz(), khz);
    }

    #[test]
    fn tsc_rate_comes_from_cpuinfo() {
        let cpuinfo = "processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\ncpu MHz\t\t: 2299.998\n";
        assert_eq!(host_tsc_khz(cpuinfo), Some(2_299_998));
        assert_eq!(host_tsc_khz("processor: 0\n"), None);
        assert_eq!(host_tsc_khz(""), None);
        // Two CPUs at different rates: the first one's.
        let two = "processor\t: 0\ncpu MHz\t\t: 2299.998\n\n\
                   processor\t: 1\ncpu MHz\t\t: 1200.000\n";
        assert_eq!(host_tsc_khz(two), Some(2_299_998));
    }
}
