//! The `command` workload: the agent runs a program as its child, the way
//! a container's init does (Docker's `--init`, tini).
//!
//! The program inherits the agent's standard streams, so its output goes
//! where the agent's goes: in a run, stdout and stderr are one pipe the host
//! reads as data (the metric rules read it); with `exec`, the user's. It
//! never gets the frames channel: that descriptor is close-on-exec, and the
//! agent makes itself non-dumpable first, so the program cannot reopen it
//! through `/proc/<agent>/fd` either (that needs CAP_SYS_PTRACE, which a
//! container does not have); in a guest, the program runs with Docker's
//! default capabilities only, so it cannot reopen the frames port, which
//! the agent holds in exclusive mode. The agent forwards the termination
//! signals it receives (TERM, INT, HUP, QUIT, USR1, USR2) to the program,
//! reaps every orphan that is re-parented to it (it is PID 1 in a container
//! or a VM), and reports the program's exit status; it then exits with that
//! status, or 128 + the signal number when a signal ended the program.

use super::workloads::Outcome;
use crate::workload::Metric;
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Instant;

/// The program's pid, for the signal handler.
static CHILD: AtomicI32 = AtomicI32::new(0);

/// Signals forwarded to the program.
const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

extern "C" fn forward(sig: libc::c_int) {
    let pid = CHILD.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe; `pid` is our child.
        unsafe { libc::kill(pid, sig) };
    }
}

/// Runs `argv` to its end; the outcome carries its exit status. With
/// `drop_caps`, the program keeps only these capabilities (a guest's
/// programs get Docker's default set, as a container's do).
pub fn run(
    argv: &[String],
    drop_caps: Option<&'static [(u32, &'static str)]>,
) -> Result<Outcome, String> {
    let start = Instant::now();
    let pid = spawn(argv, drop_caps)?;
    let status = reap(pid, &argv[0])?;
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Outcome {
        metrics: vec![Metric::lower("elapsed_ms", "ms", elapsed * 1e3)],
        digest: None,
        status: Some(status),
    })
}

/// The `service` workload: starts the server `argv`, serves the control
/// protocol on `control` (see [`crate::net::wire`]) until the host says
/// `q`, then stops the server with SIGTERM and reaps it. A server that
/// ended before it was told to is a failure.
pub fn serve(
    argv: &[String],
    drop_caps: Option<&'static [(u32, &'static str)]>,
    control: &std::net::TcpListener,
) -> Result<Outcome, String> {
    let pid = spawn(argv, drop_caps)?;
    let served = crate::net::wire::serve(control);
    let early = match waitpid(
        Pid::from_raw(pid),
        Some(nix::sys::wait::WaitPidFlag::WNOHANG),
    ) {
        Ok(WaitStatus::StillAlive) => None,
        Ok(WaitStatus::Exited(_, code)) => Some(code),
        Ok(WaitStatus::Signaled(_, sig, _)) => Some(128 + sig as i32),
        _ => None,
    };
    if let Some(code) = early {
        return Err(format!(
            "the server {} ended on its own with status {code}",
            argv[0]
        ));
    }
    // SAFETY: kill(2) on our own child, which has not been reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    reap(pid, &argv[0])?;
    let served = served.map_err(|e| format!("service: the control connection: {e}"))?;
    Ok(Outcome {
        metrics: vec![Metric::higher("control_connections", "1", served as f64)],
        digest: None,
        status: None,
    })
}

/// Starts `argv` as the agent's child, signals forwarded to it.
fn spawn(
    argv: &[String],
    drop_caps: Option<&'static [(u32, &'static str)]>,
) -> Result<i32, String> {
    let (program, args) = argv.split_first().ok_or("no program given")?;
    let handler = SigAction::new(
        SigHandler::Handler(forward),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in FORWARDED {
        // SAFETY: `forward` only calls kill(2) and reads an atomic, both
        // async-signal-safe.
        unsafe { sigaction(sig, &handler) }
            .map_err(|e| format!("installing a handler for {sig}: {e}"))?;
    }
    // Non-dumpable: /proc/<agent>/fd is then closed to the program.
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(args).env_remove(crate::env::FRAME_FD_ENV);
    if let Some(keep) = drop_caps {
        use std::os::unix::process::CommandExt;
        // SAFETY: runs in the forked child before exec; drop_capabilities
        // makes only prctl/capset calls and does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                crate::env::container::drop_capabilities(keep).map_err(std::io::Error::from)
            });
        }
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let pid = child.id() as i32;
    CHILD.store(pid, Ordering::SeqCst);
    Ok(pid)
}

/// Reaps everything until `pid` ends (orphans re-parented to PID 1 must
/// not stay zombies); its exit status, 128 + N for signal N.
fn reap(pid: i32, program: &str) -> Result<i32, String> {
    let status = loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(WaitStatus::Exited(p, code)) if p.as_raw() == pid => break code,
            Ok(WaitStatus::Signaled(p, sig, _)) if p.as_raw() == pid => break 128 + sig as i32,
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    CHILD.store(0, Ordering::SeqCst);
    Ok(status)
}
