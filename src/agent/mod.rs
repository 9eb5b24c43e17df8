//! The agent: the one program that runs inside every environment.
//!
//! `isobench-agent [--vm] WORKLOAD [key=value ...]`
//!
//! Its first act is a `ready` frame; then it runs the workload, sends one
//! `result` frame (or an `error` frame) and a `done` frame, and exits. With
//! `--vm` it is the guest's PID 1 (`/init` of the initramfs): it mounts
//! `/proc`, `/sys` and `/dev` first, reports the guest's uptime in its `ready`
//! frame, and powers the guest off at the end instead of exiting — also after
//! a failure, so a broken workload never leaves a VM running.
//!
//! The binary is linked statically (see `.cargo/config.toml`): the same file
//! runs on the host, in a container image and in an initramfs.

pub mod command;
pub mod frame;
pub mod workloads;

use crate::workload::WorkloadSpec;
use frame::Frame;
use std::io::Write;

/// Exit status when the workload failed.
pub const EXIT_FAILED: i32 = 1;
/// Exit status when the arguments were bad.
pub const EXIT_USAGE: i32 = 2;

/// Where the agent runs, as far as it needs to know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A plain process (native or container): exit at the end.
    Process,
    /// PID 1 of a guest: set the system up first, power off at the end.
    Vm,
}

/// Runs the agent with the process's arguments; never returns.
pub fn main() -> ! {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mode = if args.first().map(String::as_str) == Some("--vm") {
        args.remove(0);
        Mode::Vm
    } else {
        Mode::Process
    };

    let mut uptime_ms = None;
    if mode == Mode::Vm {
        if let Err(message) = guest::setup() {
            emit(&Frame::Error { message });
            finish(mode, EXIT_FAILED);
        }
        uptime_ms = Some(guest::uptime_ms());
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

    emit(&Frame::Ready {
        pid: std::process::id(),
        uptime_ms,
    });
    let code = match workloads::run(&spec) {
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
    emit(&Frame::Done);
    finish(mode, code)
}

/// The descriptor frames go to: `$ISOBENCH_FRAME_FD` when the host keeps
/// standard output for a program's own output, else stdout.
fn frame_fd() -> i32 {
    static FD: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *FD.get_or_init(|| {
        let fd = std::env::var(crate::env::FRAME_FD_ENV)
            .ok()
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

/// Writes one frame in a single write, so frames from one agent never interleave.
fn emit(frame: &Frame) {
    let line = frame.encode();
    let fd = frame_fd();
    if fd == 1 {
        let mut out = std::io::stdout().lock();
        // If stdout is gone there is nobody left to tell; the host sees the
        // missing frames and reports the instance as failed.
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
        Mode::Vm => guest::power_off(),
    }
}

/// What only PID 1 of a guest does.
mod guest {
    use nix::mount::{MsFlags, mount};
    use nix::sys::reboot::{RebootMode, reboot};
    use nix::time::{ClockId, clock_gettime};

    /// Mounts the pseudo file systems a workload may need.
    pub fn setup() -> Result<(), String> {
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
        Ok(())
    }

    /// The guest's uptime: CLOCK_BOOTTIME, which starts with the kernel.
    pub fn uptime_ms() -> f64 {
        clock_gettime(ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as f64 * 1e3 + t.tv_nsec() as f64 / 1e6)
            .unwrap_or(f64::NAN)
    }

    /// Waits until the console has sent every byte, then powers off. If the
    /// power-off fails, PID 1 exits, the kernel panics, and `panic=-1` with
    /// QEMU's `-no-reboot` ends the VM all the same.
    pub fn power_off() -> ! {
        let _ = nix::sys::termios::tcdrain(std::io::stdout());
        nix::unistd::sync();
        let _ = reboot(RebootMode::RB_POWER_OFF);
        std::process::exit(super::EXIT_FAILED)
    }
}
