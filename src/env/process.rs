//! A host process that isobench started, held by a pidfd.
//!
//! The pidfd makes waiting with a timeout exact (poll on it, then reap) and
//! makes signalling safe: a signal sent through it can only reach the
//! process it was opened for, never a later process that reused the pid.

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid as RPid, PidfdFlags, Signal as RSignal, pidfd_open, pidfd_send_signal};
use serde::Serialize;
use std::fmt;
use std::io;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this status.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
}

impl Exit {
    /// Whether the process exited with status 0.
    pub fn success(self) -> bool {
        self == Exit::Code(0)
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit status {c}"),
            Exit::Signal(s) => {
                let name = nix::sys::signal::Signal::try_from(*s)
                    .map(|s| s.as_str())
                    .unwrap_or("unknown signal");
                write!(f, "killed by signal {s} ({name})")
            }
        }
    }
}

/// What `wait4` reports for a reaped process: its own resource usage plus
/// that of every descendant it reaped (a container's init reaps its whole
/// tree; QEMU's threads are part of QEMU).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    /// User plus system CPU time, in ms.
    pub cpu_ms: f64,
    /// Largest resident set size of the process or of any reaped
    /// descendant, in KiB.
    pub max_rss_kib: u64,
}

/// A child process of isobench, until it is reaped.
#[derive(Debug)]
pub struct ProcessHandle {
    pid: u32,
    pidfd: OwnedFd,
    exit: Option<Exit>,
    usage: Option<Usage>,
}

impl ProcessHandle {
    /// Takes hold of a child that isobench has just started.
    pub fn new(pid: u32) -> io::Result<Self> {
        let rpid = RPid::from_raw(pid as i32)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "pid 0"))?;
        let pidfd = pidfd_open(rpid, PidfdFlags::empty())?;
        Ok(ProcessHandle {
            pid,
            pidfd,
            exit: None,
            usage: None,
        })
    }

    /// The process id on the host.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How it ended, once reaped.
    pub fn exit(&self) -> Option<Exit> {
        self.exit
    }

    /// Waits up to `timeout` for the process to end and reaps it.
    /// `Ok(None)`: still running at the deadline.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<Exit>> {
        if let Some(exit) = self.exit {
            return Ok(Some(exit));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ts = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: left.subsec_nanos() as i64,
            };
            let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
            match poll(&mut fds, Some(&ts)) {
                Ok(0) => return Ok(None),
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) if Instant::now() < deadline => continue,
                Err(rustix::io::Errno::INTR) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        }
        self.reap(true)
    }

    /// What the kernel counted for the process and the descendants it
    /// reaped, once it has been reaped.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// Reaps the process if it has ended (with wait4, for its resource
    /// usage); with `block`, waits for it.
    fn reap(&mut self, block: bool) -> io::Result<Option<Exit>> {
        let flags = if block { 0 } else { libc::WNOHANG };
        loop {
            let mut status = 0;
            // SAFETY: an all-zero rusage is a valid value for wait4 to fill.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own child with valid out-pointers.
            let r = unsafe { libc::wait4(self.pid as i32, &mut status, flags, &mut ru) };
            if r < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if r == 0 {
                return Ok(None);
            }
            let exit = if libc::WIFEXITED(status) {
                Exit::Code(libc::WEXITSTATUS(status))
            } else if libc::WIFSIGNALED(status) {
                Exit::Signal(libc::WTERMSIG(status))
            } else {
                continue; // stopped/continued: not an end
            };
            let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
            self.usage = Some(Usage {
                cpu_ms: (secs(ru.ru_utime) + secs(ru.ru_stime)) * 1e3,
                max_rss_kib: ru.ru_maxrss.max(0) as u64,
            });
            self.exit = Some(exit);
            return Ok(self.exit);
        }
    }

    /// Sends SIGKILL (through the pidfd) unless the process was already reaped.
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            // ESRCH (already exited, not yet reaped) is the only expected error.
            let _ = pidfd_send_signal(&self.pidfd, RSignal::KILL);
        }
    }

    /// Kills the process if it still runs and reaps it.
    pub fn kill_and_reap(&mut self) -> io::Result<Exit> {
        self.kill();
        loop {
            if let Some(exit) = self.wait_timeout(Duration::from_secs(3600))? {
                return Ok(exit);
            }
        }
    }
}

impl Drop for ProcessHandle {
    fn drop(&mut self) {
        if self.exit.is_none() {
            let _ = self.kill_and_reap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn waits_with_a_timeout_and_kills() {
        // The handle, not the std Child, waits for the process.
        let pid = Command::new("sleep").arg("30").spawn().unwrap().id();
        let mut handle = ProcessHandle::new(pid).unwrap();
        let start = Instant::now();
        assert_eq!(
            handle.wait_timeout(Duration::from_millis(50)).unwrap(),
            None
        );
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(handle.kill_and_reap().unwrap(), Exit::Signal(9));
        assert_eq!(
            handle.exit().unwrap().to_string(),
            "killed by signal 9 (SIGKILL)"
        );
    }

    #[test]
    fn reports_exit_codes() {
        let pid = Command::new("sh")
            .args(["-c", "exit 3"])
            .spawn()
            .unwrap()
            .id();
        let mut handle = ProcessHandle::new(pid).unwrap();
        let exit = handle.wait_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(exit, Some(Exit::Code(3)));
        let usage = handle.usage().expect("wait4 reports usage");
        assert!(usage.max_rss_kib > 0 && usage.cpu_ms >= 0.0);
        assert!(!Exit::Code(3).success() && Exit::Code(0).success());
    }
}
