//! `native`: the agent as a plain child process of isobench — the floor
//! every other environment is compared against.

use super::{EnvError, EnvKind, Environment, Instance, Launch, ProcessHandle};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs the agent with fork/exec on the host.
pub struct Native {
    agent: PathBuf,
}

impl Native {
    /// An environment that runs this agent binary.
    pub fn new(agent: PathBuf) -> Self {
        Native { agent }
    }
}

/// Asks the kernel to SIGKILL the calling process when its parent thread
/// dies: a child of isobench never outlives it, even after a SIGKILL.
pub fn die_with_parent() -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)
}

impl Environment for Native {
    fn kind(&self) -> EnvKind {
        EnvKind::Native
    }

    fn knobs(&self) -> serde_json::Value {
        serde_json::json!({ "agent": self.agent, "spawn": "fork/exec" })
    }

    fn startup_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError> {
        let stderr = launch
            .log
            .try_clone()
            .map_err(|e| EnvError::io("duplicating the instance log", e))?;
        let mut cmd = Command::new(&self.agent);
        cmd.args(launch.spec.to_args())
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
        let mut child = cmd
            .spawn()
            .map_err(|e| EnvError::io(format!("starting {}", self.agent.display()), e))?;
        let output = child.stdout.take().map(|s| File::from(OwnedFd::from(s)));
        let process = ProcessHandle::new(child.id())
            .map_err(|e| EnvError::io("opening a pidfd for the agent", e))?;
        Ok(Box::new(NativeInstance {
            spawned_at,
            output,
            process,
        }))
    }
}

struct NativeInstance {
    spawned_at: Instant,
    output: Option<File>,
    process: ProcessHandle,
}

impl Instance for NativeInstance {
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
        Ok(())
    }
}
