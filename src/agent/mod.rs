//! The agent: the one program that runs inside every environment.
//!
//! `isobench-agent [--vm [--frames=DEV] [--load=MOD,...] [--disk=DEV | --scratch=DEV]
//! [--env=KEY=VALUE]...] WORKLOAD [key=value ...]`
//!
//! Its first act is a `ready` frame; then it runs the workload, sends one
//! `result` frame (or an `error` frame) and a `done` frame, and exits.
//!
//! With `--vm` it is the guest's PID 1 (`/init` of the initramfs), and does
//! more:
//! - it opens the frames port (`--frames`, the second serial port) and sends
//!   a `boot` frame there at once, so the host sees when the guest's user
//!   space started;
//! - it mounts `/proc`, `/sys` and `/dev` (devtmpfs), loads the kernel
//!   modules named by `--load` from `/.isobench-modules/<name>.ko` with
//!   `finit_module`, in the order given (dependencies first), and either
//!   checks a raw disk (`--disk`) with one O_DIRECT write and read or mounts
//!   an ext4 scratch disk (`--scratch`) at `/scratch`, where I/O workloads
//!   work; `--env` sets environment variables for the workload; for `net`
//!   and `command` workloads it brings `lo` up;
//! - its `ready` frame carries the guest's uptime at the agent's start (the
//!   kernel's boot time) and the time its own set-up took;
//! - after the workload it reports the guest's `MemTotal` and `MemAvailable`;
//! - it powers the guest off at the end instead of exiting, also after any
//!   failure (an `error` frame first) and after a panic of its own, so a
//!   broken workload never leaves a VM running.
//!
//! The kernel passes init the command-line words it does not know (such as
//! `nokaslr`) before the arguments isobench put after `--`; the agent skips
//! everything before `--vm`.
//!
//! The binary is linked statically (see `.cargo/config.toml`): the same file
//! runs on the host, in a container image and in an initramfs.

pub mod command;
pub mod frame;
pub mod workloads;

use crate::workload::{WorkloadKind, WorkloadSpec};
use frame::Frame;
use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

/// Exit status when the workload failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit status when the arguments were bad.
pub const EXIT_USAGE: i32 = 2;

/// Where the agent runs, as far as it needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A plain process (native or container): exit at the end.
    Process,
    /// PID 1 of a guest: set the system up first, end the VM at the end.
    Vm,
}

/// The agent's own options, before the workload's arguments.
#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    vm: bool,
    frames: Option<String>,
    load: Vec<String>,
    disk: Option<String>,
    scratch: Option<String>,
    env: Vec<(String, String)>,
    net: Option<(std::net::Ipv4Addr, u8)>,
}

/// Splits the command line into the agent's options and the workload's
/// arguments. Words before `--vm` came from the kernel and are dropped.
fn parse_options(args: &[String]) -> Result<(Options, Vec<String>), String> {
    let mut opts = Options::default();
    let rest = match args.iter().position(|a| a == "--vm") {
        Some(at) => {
            opts.vm = true;
            &args[at + 1..]
        }
        None => args,
    };
    let mut i = 0;
    while let Some(arg) = rest.get(i).filter(|a| a.starts_with("--")) {
        let (key, value) = arg.split_once('=').unwrap_or((arg, ""));
        match key {
            "--frames" if opts.vm => opts.frames = Some(value.to_string()),
            "--load" if opts.vm => {
                opts.load = value
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
            }
            "--disk" if opts.vm => opts.disk = Some(value.to_string()),
            "--scratch" if opts.vm => opts.scratch = Some(value.to_string()),
            "--net" if opts.vm => {
                let bad = || format!("agent option `{arg}`: expected --net=IPV4/PREFIX");
                let (ip, prefix) = value.split_once('/').ok_or_else(bad)?;
                let ip = ip.parse().map_err(|_| bad())?;
                let prefix = prefix
                    .parse::<u8>()
                    .ok()
                    .filter(|p| *p <= 32)
                    .ok_or_else(bad)?;
                opts.net = Some((ip, prefix));
            }
            "--args-hex" if opts.vm => {
                // The workload's arguments, hex-encoded JSON (see
                // env::vm::qemu::encode_workload_args): they end the options.
                return Ok((opts, decode_args(value)?));
            }
            "--env" if opts.vm => {
                let (k, v) = value
                    .split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .ok_or_else(|| format!("agent option `{arg}`: expected --env=KEY=VALUE"))?;
                opts.env.push((k.to_string(), v.to_string()));
            }
            _ => return Err(format!("unknown agent option `{arg}`")),
        }
        i += 1;
    }
    Ok((opts, rest[i..].to_vec()))
}

/// Decodes `--args-hex=`: a JSON array of strings, hex-encoded.
fn decode_args(hex: &str) -> Result<Vec<String>, String> {
    let bad = || format!("agent option --args-hex: not hex-encoded JSON: {hex}");
    if !hex.len().is_multiple_of(2) {
        return Err(bad());
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, String>>()?;
    serde_json::from_slice(&bytes).map_err(|_| bad())
}

/// The frames sink: the frames port in a guest, stdout otherwise.
static FRAMES: Mutex<Option<File>> = Mutex::new(None);

/// Runs the agent with the process's arguments; never returns.
pub fn main() -> ! {
    // The CPU's clock first (in a VM it counts from the virtual CPU's
    // reset), then the guest's own: both cheap outside a VM too.
    let boot_tsc = guest::cpu_clock();
    let boot_uptime = guest::uptime_ms();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (opts, args) = match parse_options(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            let vm = args.iter().any(|a| a == "--vm");
            emit(&Frame::Error { message });
            emit(&Frame::Done);
            finish(if vm { Mode::Vm } else { Mode::Process }, EXIT_USAGE);
        }
    };
    let mode = if opts.vm { Mode::Vm } else { Mode::Process };

    let mut uptime_ms = None;
    let mut setup_ms = None;
    let mut cpu_clock_ms = None;
    if mode == Mode::Vm {
        let start = boot_uptime;
        guest::install_panic_hook();
        if let Some(dev) = &opts.frames {
            match guest::open_frames(dev) {
                Ok(file) => *FRAMES.lock().unwrap_or_else(|e| e.into_inner()) = Some(file),
                // Nowhere to send frames: say so on the console; the host
                // finds it in the instance's log.
                Err(e) => eprintln!("isobench-agent: {e}; frames go to the console"),
            }
        }
        emit(&Frame::Boot);
        if let Err(message) = guest::setup(&opts) {
            emit(&Frame::Error { message });
            emit(&Frame::Done);
            finish(mode, EXIT_FAILED);
        }
        uptime_ms = Some(start);
        // /proc is mounted now: the kernel's TSC rate converts the count.
        cpu_clock_ms = boot_tsc.and_then(guest::cpu_clock_ms);
    }

    frame_fd();
    let spec = match WorkloadSpec::from_args(&args) {
        Ok(spec) => spec,
        Err(e) => {
            emit(&Frame::Error {
                message: e.to_string(),
            });
            emit(&Frame::Done);
            finish(mode, EXIT_USAGE);
        }
    };
    if let Some(start) = uptime_ms {
        // `lo` up only for workloads that may talk over it: under TCG it
        // costs a guest about 17 ms (measured), a tenth of a noop's set-up.
        let up = || -> Result<(), String> {
            guest::loopback_up()?;
            match opts.net {
                Some((ip, prefix)) => guest::eth0_up(ip, prefix),
                None => Ok(()),
            }
        };
        if matches!(
            spec.kind(),
            WorkloadKind::Net
                | WorkloadKind::Command
                | WorkloadKind::NetRr
                | WorkloadKind::NetStream
                | WorkloadKind::Service
        ) && let Err(message) = up()
        {
            emit(&Frame::Error { message });
            emit(&Frame::Done);
            finish(mode, EXIT_FAILED);
        }
        setup_ms = Some(guest::uptime_ms() - start);
    }

    let listener = match workloads::listen(&spec) {
        Ok(l) => l,
        Err(message) => {
            emit(&Frame::Error { message });
            emit(&Frame::Done);
            finish(mode, EXIT_FAILED);
        }
    };
    emit(&Frame::Ready {
        pid: std::process::id(),
        uptime_ms,
        cpu_clock_ms,
        setup_ms,
        port: listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port()),
    });
    if mode == Mode::Vm && matches!(spec, WorkloadSpec::Command { .. }) {
        guest::raw_console();
    }
    let code = match workloads::run(&spec, mode == Mode::Vm, listener.as_ref()) {
        Ok(None) => 0,
        Ok(Some(outcome)) => {
            let code = outcome.status.unwrap_or(0);
            emit(&Frame::Result {
                metrics: outcome.metrics,
                digest: outcome.digest,
                status: outcome.status,
            });
            code
        }
        Err(message) => {
            emit(&Frame::Error { message });
            EXIT_FAILED
        }
    };
    if mode == Mode::Vm {
        let metrics = guest::figures(&opts);
        if !metrics.is_empty() {
            emit(&Frame::Result {
                metrics,
                digest: None,
                status: None,
            });
        }
    }
    emit(&Frame::Done);
    finish(mode, code)
}

/// A TSC count in ms. The rate: the `tsc_early_khz=` of the kernel's
/// command line (`/proc/cmdline`), which isobench gives a TCG guest and
/// whose TSC runs at it; else the kernel's `cpu MHz` (`/proc/cpuinfo`,
/// parsed as for the host), which under KVM is the TSC rate. `None`
/// without a usable rate.
fn tsc_ms(ticks: u64, cmdline: &str, cpuinfo: impl FnOnce() -> String) -> Option<f64> {
    let khz = kernel_words(cmdline)
        .into_iter()
        .find_map(|w| w.strip_prefix("tsc_early_khz=")?.parse::<u64>().ok())
        .or_else(|| crate::env::vm::host_tsc_khz(&cpuinfo()))
        .filter(|k| *k > 0)?;
    Some(ticks as f64 / khz as f64)
}

/// The descriptor frames go to: `$ISOBENCH_FRAME_FD`, which the host sets
/// for native and container instances (their standard streams are data),
/// else stdout (the agent started by hand).
fn frame_fd() -> i32 {
    static FD: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *FD.get_or_init(|| {
        let var = std::env::var(crate::env::FRAME_FD_ENV).ok();
        if let Some(fd) = var.as_deref().and_then(frames_on_stream) {
            return fd;
        }
        let fd = var
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|fd| *fd > 2)
            .unwrap_or(1);
        if fd != 1 {
            // Programs the agent starts must not inherit the frame stream.
            // SAFETY: fcntl on a descriptor number; an invalid one just fails.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        fd
    })
}

/// `$ISOBENCH_FRAME_FD` = `stdout` or `stderr` (a runtime that passes
/// only the standard streams: Docker, gVisor): that stream becomes the
/// frames channel, moved to a close-on-exec descriptor of at least 3, and
/// the stream's number is pointed at the other one, so everything printed
/// after this — by the agent's workloads or a program it runs — is output,
/// never a frame. The new descriptor's number, or `None` for another value.
fn frames_on_stream(var: &str) -> Option<i32> {
    let (frames, other) = match var {
        "stdout" => (1, 2),
        "stderr" => (2, 1),
        _ => return None,
    };
    // SAFETY: fcntl and dup2 on the process's own standard descriptors,
    // before any other thread or program uses them.
    unsafe {
        let fd = libc::fcntl(frames, libc::F_DUPFD_CLOEXEC, 3);
        if fd < 0 || libc::dup2(other, frames) < 0 {
            // Frames cannot get a stream of their own (no descriptor left,
            // say): run nothing rather than let a workload's output share
            // the frames' stream, where it could pass for a frame.
            let err = std::io::Error::last_os_error();
            let line = Frame::Error {
                message: format!("agent: cannot move the frames off {var}: {err}"),
            }
            .encode();
            libc::write(frames, line.as_ptr().cast(), line.len());
            libc::_exit(EXIT_FAILED);
        }
        Some(fd)
    }
}

/// Writes one frame in a single write, so frames from one agent never interleave.
fn emit(frame: &Frame) {
    let line = frame.encode();
    // If the sink is gone there is nobody left to tell; the host sees the
    // missing frames and reports the instance as failed.
    // In a guest: the frames port (opened close-on-exec, so a program the
    // agent starts never inherits it).
    if let Some(file) = FRAMES.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let _ = file.write_all(line.as_bytes());
        return;
    }
    let fd = frame_fd();
    if fd == 1 {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    } else {
        // SAFETY: the descriptor stays open for the agent's whole life; the
        // File is never dropped, so it is never closed here.
        let mut out = std::mem::ManuallyDrop::new(unsafe {
            <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd)
        });
        let _ = out.write_all(line.as_bytes());
    }
}

fn finish(mode: Mode, code: i32) -> ! {
    match mode {
        Mode::Process => std::process::exit(code),
        Mode::Vm => guest::end_vm(),
    }
}

/// The parameters a kernel command line gives module `name` (its
/// `name.param=value` words, as modprobe reads them from `/proc/cmdline`),
/// as `finit_module` takes them: `param=value` words joined by blanks. The
/// kernel treats `-` and `_` in a module's name alike.
fn module_params(cmdline: &str, name: &str) -> String {
    let norm = |s: &str| s.replace('-', "_");
    let name = norm(name);
    kernel_words(cmdline)
        .into_iter()
        .filter_map(|w| {
            let (module, param) = w.split_once('.')?;
            (norm(module) == name && !param.is_empty()).then(|| param.to_string())
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A kernel command line's words as the kernel splits it: at blanks outside
/// double quotes (`mod.p="a b"` is one word; the quotes stay, and
/// `finit_module` strips them as the kernel does).
fn cmdline_words(cmdline: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let mut start = None;
    let mut quoted = false;
    for (i, c) in cmdline.char_indices() {
        if c == '"' {
            quoted = !quoted;
        }
        match (c.is_whitespace() && !quoted, start) {
            (true, Some(s)) => {
                words.push(&cmdline[s..i]);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        words.push(&cmdline[s..]);
    }
    words
}

/// The kernel's own words of a command line: those before `--`, after
/// which init's (the agent's) begin.
fn kernel_words(cmdline: &str) -> Vec<&str> {
    let mut words = cmdline_words(cmdline);
    if let Some(end) = words.iter().position(|w| *w == "--") {
        words.truncate(end);
    }
    words
}

/// What only PID 1 of a guest does.
mod guest {
    use super::{FRAMES, Frame, Options, emit};
    use crate::workload::Metric;
    use nix::mount::{MsFlags, mount};
    use nix::sys::reboot::{RebootMode, reboot};
    use nix::time::{ClockId, clock_gettime};
    use std::fs::{File, OpenOptions};
    use std::os::unix::fs::OpenOptionsExt;
    use std::time::{Duration, Instant};

    /// Where the modules are in the initramfs.
    const MODULES: &str = "/.isobench-modules";

    /// The virtual CPU's time-stamp counter (x86-64). QEMU starts it at 0
    /// when it resets the virtual CPU, just before the guest runs (under
    /// TCG it then advances with the host's TSC; under KVM the guest's TSC
    /// starts at 0 at the same point), so it counts the kernel's whole
    /// boot, including the early part in which the kernel's own clocks
    /// stand still (alternatives patching, the APIC timer's calibration:
    /// 0.25 s of a minimal kernel's boot under TCG, measured).
    pub fn cpu_clock() -> Option<u64> {
        crate::util::tsc()
    }

    /// A [`cpu_clock`] count in ms (see [`super::tsc_ms`] for the rate).
    pub fn cpu_clock_ms(ticks: u64) -> Option<f64> {
        super::tsc_ms(ticks, cmdline(), || {
            std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default()
        })
    }

    /// The kernel's command line, read once.
    fn cmdline() -> &'static str {
        static LINE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        LINE.get_or_init(|| std::fs::read_to_string("/proc/cmdline").unwrap_or_default())
    }

    /// The guest's uptime: CLOCK_BOOTTIME, which starts with the kernel.
    pub fn uptime_ms() -> f64 {
        clock_gettime(ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as f64 * 1e3 + t.tv_nsec() as f64 / 1e6)
            .unwrap_or(f64::NAN)
    }

    /// A panic of PID 1 would panic the kernel and lose the message: send
    /// it as an `error` frame and end the VM instead.
    pub fn install_panic_hook() {
        std::panic::set_hook(Box::new(|info| {
            emit(&Frame::Error {
                message: format!("the agent panicked: {info}"),
            });
            emit(&Frame::Done);
            end_vm();
        }));
    }

    /// Opens the frames port for writing, raw: no `\n` → `\r\n`, no echo.
    pub fn open_frames(dev: &str) -> Result<File, String> {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(dev)
            .map_err(|e| format!("cannot open the frames port {dev}: {e}"))?;
        if let Ok(mut t) = nix::sys::termios::tcgetattr(&file) {
            nix::sys::termios::cfmakeraw(&mut t);
            let _ = nix::sys::termios::tcsetattr(&file, nix::sys::termios::SetArg::TCSANOW, &t);
        }
        // Exclusive: a second open fails (EBUSY) without CAP_SYS_ADMIN,
        // which a program the agent runs does not have, so it cannot write
        // frames of its own. (The descriptor itself is close-on-exec.)
        // SAFETY: TIOCEXCL takes no argument and only sets a flag on the tty.
        if unsafe { libc::ioctl(std::os::fd::AsRawFd::as_raw_fd(&file), libc::TIOCEXCL) } < 0 {
            return Err(format!(
                "cannot make the frames port {dev} exclusive: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(file)
    }

    /// Mounts the pseudo file systems, loads the modules, checks or mounts
    /// the disk.
    /// Makes the console pass a program's output through unchanged (no
    /// `\n` → `\r\n`), as a pipe would on the host.
    pub fn raw_console() {
        use nix::sys::termios::{OutputFlags, SetArg, tcgetattr, tcsetattr};
        let out = std::io::stdout();
        if let Ok(mut t) = tcgetattr(&out) {
            t.output_flags
                .remove(OutputFlags::OPOST | OutputFlags::ONLCR);
            let _ = tcsetattr(&out, SetArg::TCSADRAIN, &t);
        }
    }

    pub fn setup(opts: &Options) -> Result<(), String> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
        for (fstype, target, flags) in [
            ("proc", "/proc", flags),
            ("sysfs", "/sys", flags),
            ("devtmpfs", "/dev", MsFlags::MS_NOSUID),
        ] {
            std::fs::create_dir_all(target)
                .map_err(|e| format!("guest setup: cannot create {target}: {e}"))?;
            mount(Some(fstype), target, Some(fstype), flags, None::<&str>)
                .map_err(|e| format!("guest setup: mount {fstype} on {target}: {e}"))?;
        }
        for name in &opts.load {
            load_module(name)?;
        }
        if let Some(disk) = &opts.disk {
            wait_for(disk)?;
            check_disk(disk)?;
        }
        if let Some(dev) = &opts.scratch {
            wait_for(dev)?;
            std::fs::create_dir_all(SCRATCH)
                .map_err(|e| format!("guest setup: cannot create {SCRATCH}: {e}"))?;
            mount(
                Some(dev.as_str()),
                SCRATCH,
                Some("ext4"),
                MsFlags::MS_NOATIME,
                None::<&str>,
            )
            .map_err(|e| format!("guest setup: mount {dev} (ext4) on {SCRATCH}: {e}"))?;
        }
        // SAFETY: PID 1 of the guest is single-threaded here; nothing
        // reads the environment concurrently.
        unsafe { std::env::set_var(crate::env::ENV_NAME_VAR, "vm") };
        for (key, value) in &opts.env {
            // SAFETY: as above.
            unsafe { std::env::set_var(key, value) };
        }
        Ok(())
    }

    /// Where the scratch disk is mounted (the I/O workloads' default directory).
    const SCRATCH: &str = "/scratch";

    /// Waits for a block device to appear: drivers probe asynchronously.
    fn wait_for(dev: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(dev).is_err() {
            if Instant::now() >= deadline {
                return Err(format!(
                    "guest setup: the disk {dev} did not appear within 5 s of loading its driver"
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    /// Brings up `lo`, as the container runtime does.
    pub fn loopback_up() -> Result<(), String> {
        crate::env::container::loopback_up()
            .map_err(|e| format!("guest setup: bringing up lo: {e}"))
    }

    /// Gives `eth0` (the virtio-net NIC) its address and sets it up: the
    /// subnet's own route is the only one; no default route.
    pub fn eth0_up(ip: std::net::Ipv4Addr, prefix: u8) -> Result<(), String> {
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        let sin = |a: u32| {
            // SAFETY: an all-zero sockaddr_in is valid.
            let mut s: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_addr.s_addr = a.to_be();
            s
        };
        // SAFETY: a datagram socket only for the ioctls, closed at the end;
        // the ifreq is zeroed, named, and lives across every call; the
        // sockaddr_in copied into it fits its union (16 bytes).
        unsafe {
            let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
            if sock < 0 {
                return Err(format!(
                    "guest setup: socket: {}",
                    std::io::Error::last_os_error()
                ));
            }
            let mut req: libc::ifreq = std::mem::zeroed();
            for (d, s) in req.ifr_name.iter_mut().zip(b"eth0") {
                *d = *s as libc::c_char;
            }
            let step = |what: &str, op: libc::c_ulong, req: &mut libc::ifreq| {
                if libc::ioctl(sock, op, req as *mut libc::ifreq) < 0 {
                    Err(format!(
                        "guest setup: eth0 {what}: {} (is the virtio-net driver loaded?)",
                        std::io::Error::last_os_error()
                    ))
                } else {
                    Ok(())
                }
            };
            let addr = sin(u32::from(ip));
            std::ptr::copy_nonoverlapping(
                (&addr as *const libc::sockaddr_in).cast::<u8>(),
                &mut req.ifr_ifru as *mut _ as *mut u8,
                std::mem::size_of::<libc::sockaddr_in>(),
            );
            let r = step("address", libc::SIOCSIFADDR, &mut req).and_then(|()| {
                let m = sin(mask);
                std::ptr::copy_nonoverlapping(
                    (&m as *const libc::sockaddr_in).cast::<u8>(),
                    &mut req.ifr_ifru as *mut _ as *mut u8,
                    std::mem::size_of::<libc::sockaddr_in>(),
                );
                step("netmask", libc::SIOCSIFNETMASK, &mut req)?;
                step("flags", libc::SIOCGIFFLAGS, &mut req)?;
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                step("up", libc::SIOCSIFFLAGS, &mut req)
            });
            libc::close(sock);
            r
        }
    }

    /// Loads a module with the parameters the kernel command line gives it
    /// (`virtio_mmio.device=...`, as modprobe would pass them).
    fn load_module(name: &str) -> Result<(), String> {
        let path = format!("{MODULES}/{name}.ko");
        let file = File::open(&path).map_err(|e| format!("guest setup: open {path}: {e}"))?;
        let params = std::ffi::CString::new(super::module_params(cmdline(), name))
            .map_err(|_| format!("guest setup: a NUL in the parameters of {name}"))?;
        match nix::kmod::finit_module(&file, &params, nix::kmod::ModuleInitFlags::empty()) {
            // EEXIST: built in, or loaded already as another module's dependency.
            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
            Err(e) => Err(format!(
                "guest setup: loading kernel module {path} failed: {e} (is it built for this kernel? a kernel that enforces module signatures rejects unsigned ones)"
            )),
        }
    }

    /// Writes and reads one block of a raw disk with O_DIRECT.
    fn check_disk(dev: &str) -> Result<(), String> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(dev)
            .map_err(|e| format!("guest setup: open {dev} with O_DIRECT: {e}"))?;
        // One 4 KiB block, 4 KiB-aligned in memory, as O_DIRECT wants.
        let mut block = AlignedBlock([0u8; 4096]);
        for (i, b) in block.0.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let written = nix::sys::uio::pwrite(&file, &block.0, 0)
            .map_err(|e| format!("guest setup: O_DIRECT write to {dev}: {e}"))?;
        let mut back = AlignedBlock([0u8; 4096]);
        let read = nix::sys::uio::pread(&file, &mut back.0, 0)
            .map_err(|e| format!("guest setup: O_DIRECT read from {dev}: {e}"))?;
        if written != 4096 || read != 4096 || back.0 != block.0 {
            return Err(format!(
                "guest setup: {dev} did not read back what was written"
            ));
        }
        Ok(())
    }

    #[repr(C, align(4096))]
    struct AlignedBlock([u8; 4096]);

    /// The guest's own view of itself at the end: memory, and the disk's size.
    pub fn figures(opts: &Options) -> Vec<Metric> {
        let mut metrics = Vec::new();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib = |key: &str| crate::meta::meminfo_kib(&meminfo, key);
        if let Some(total) = kib("MemTotal") {
            metrics.push(Metric::higher(
                "guest_mem_total_mib",
                "MiB",
                total as f64 / 1024.0,
            ));
        }
        if let Some(avail) = kib("MemAvailable") {
            metrics.push(Metric::higher(
                "guest_mem_available_mib",
                "MiB",
                avail as f64 / 1024.0,
            ));
        }
        if let Some(dev) = opts.disk.as_ref().or(opts.scratch.as_ref())
            && let Some(bytes) = block_device_bytes(dev)
        {
            metrics.push(Metric::higher(
                "guest_disk_mib",
                "MiB",
                bytes as f64 / (1024.0 * 1024.0),
            ));
        }
        metrics
    }

    /// The size of a block device, from sysfs (`size` is in 512-byte sectors).
    fn block_device_bytes(dev: &str) -> Option<u64> {
        let name = std::path::Path::new(dev).file_name()?.to_str()?;
        let sectors = std::fs::read_to_string(format!("/sys/class/block/{name}/size")).ok()?;
        Some(sectors.trim().parse::<u64>().ok()? * 512)
    }

    /// Waits until the frames port has sent every byte, then reboots: QEMU
    /// runs with `-no-reboot`, so the guest's reset ends it. (Powering off
    /// needs ACPI, which isobench's microvm does not have; a kernel without
    /// a way to power off just halts, and QEMU would wait.) If the reboot
    /// fails, PID 1 exits, the kernel panics, and `panic=-1` reboots.
    pub fn end_vm() -> ! {
        // The kernel's own "reboot: Restarting system" must not end up in a
        // program's output on the console: from here on it prints nothing.
        let _ = std::fs::write("/proc/sys/kernel/printk", "0");
        if let Some(file) = FRAMES.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = nix::sys::termios::tcdrain(file);
        }
        let _ = nix::sys::termios::tcdrain(std::io::stdout());
        nix::unistd::sync();
        let _ = reboot(RebootMode::RB_AUTOBOOT);
        std::process::exit(super::EXIT_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_gets_its_own_command_line_parameters_and_no_others() {
        let line = "console=ttyS0 virtio_mmio.device=512@0xfeb00000:5 tsc=reliable \
            virtio-mmio.device=512@0xfeb00200:6 virtio_blk.queue_depth=8 virtio_mmiox.a=1 \
            -- --vm noop virtio_mmio.device=evil";
        assert_eq!(
            module_params(line, "virtio_mmio"),
            "device=512@0xfeb00000:5 device=512@0xfeb00200:6"
        );
        assert_eq!(module_params(line, "virtio_blk"), "queue_depth=8");
        let quoted = "a.x=\"1 2\"  a.y=3 \"b.z=4 5\" -- a.w=6\n";
        assert_eq!(module_params(quoted, "a"), "x=\"1 2\" y=3");
        assert_eq!(
            cmdline_words(quoted),
            ["a.x=\"1 2\"", "a.y=3", "\"b.z=4 5\"", "--", "a.w=6"]
        );
        assert_eq!(module_params(line, "ext4"), "");
        assert_eq!(module_params("", "virtio_mmio"), "");
    }

    fn strings(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn tsc_counts_convert_at_the_rate_the_guest_was_given() {
        let cpuinfo = "processor\t: 0\nmodel name\t: QEMU TCG CPU\ncpu MHz\t\t: 2596.134\ncache size\t: 512 KB\n";
        // Under TCG: the rate on the command line wins over the kernel's
        // own calibration of the CPU.
        let tcg = "console=ttyS0 tsc_early_khz=2000000 tsc=reliable -- --vm";
        let info = || cpuinfo.to_string();
        let ms = tsc_ms(2_000_000_000, tcg, || panic!("cpuinfo read")).unwrap();
        assert!((ms - 1000.0).abs() < 1e-6, "{ms}");
        let ms = tsc_ms(2_596_134_000, "console=ttyS0", info).unwrap();
        assert!((ms - 1000.0).abs() < 1e-6, "{ms}");
        // A word after `--` is the agent's, not the kernel's.
        let ms = tsc_ms(2_596_134_000, "quiet -- tsc_early_khz=1", info).unwrap();
        assert!((ms - 1000.0).abs() < 1e-6, "{ms}");
        let none = || "processor\t: 0\n".to_string();
        assert_eq!(tsc_ms(1, "", none), None);
        assert_eq!(tsc_ms(1, "tsc_early_khz=0", none), None);
    }

    #[test]
    fn plain_arguments_are_the_workload() {
        let (opts, rest) = parse_options(&strings(&["cpu", "rounds=3"])).unwrap();
        assert_eq!(opts, Options::default());
        assert_eq!(rest, ["cpu", "rounds=3"]);
    }

    #[test]
    fn kernel_leftovers_before_vm_are_dropped_and_options_read() {
        let args = strings(&[
            "nokaslr",
            "--vm",
            "--frames=/dev/ttyS1",
            "--load=virtio,virtio_ring,virtio_blk",
            "--disk=/dev/vda",
            "--env=ISOBENCH_SCRATCH=/scratch/x=y",
            "noop",
        ]);
        let (opts, rest) = parse_options(&args).unwrap();
        assert!(opts.vm);
        assert_eq!(opts.frames.as_deref(), Some("/dev/ttyS1"));
        assert_eq!(opts.load, ["virtio", "virtio_ring", "virtio_blk"]);
        assert_eq!(opts.disk.as_deref(), Some("/dev/vda"));
        assert_eq!(
            opts.env,
            [("ISOBENCH_SCRATCH".to_string(), "/scratch/x=y".to_string())]
        );
        assert_eq!(rest, ["noop"]);
        let (opts, _) = parse_options(&strings(&["--vm", "--scratch=/dev/vda", "fileio"])).unwrap();
        assert_eq!(opts.scratch.as_deref(), Some("/dev/vda"));
        assert!(parse_options(&strings(&["--vm", "--env=novalue", "noop"])).is_err());
        // Arguments the kernel would mangle arrive hex-encoded.
        let command = strings(&["command", "--", "/bin/echo", "a \"b\""]);
        let encoded = crate::env::vm::encode_workload_args(&command);
        let mut args = strings(&["--vm", "--frames=/dev/ttyS1"]);
        args.extend(encoded);
        let (opts, rest) = parse_options(&args).unwrap();
        assert_eq!(opts.frames.as_deref(), Some("/dev/ttyS1"));
        assert_eq!(rest, command);
        assert!(parse_options(&strings(&["--vm", "--args-hex=zz"])).is_err());
    }

    #[test]
    fn guest_options_outside_a_guest_are_refused() {
        let err = parse_options(&strings(&["--load=x", "noop"])).unwrap_err();
        assert!(err.contains("--load=x"), "{err}");
        assert!(parse_options(&strings(&["--vm", "--bogus", "noop"])).is_err());
    }
}
