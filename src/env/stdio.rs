//! The standard streams of an instance's first process, prepared on the
//! host before the spawn.
//!
//! Every descriptor is duplicated to a number of at least 10, close-on-exec,
//! so that installing it as 0, 1, 2 (and [`FRAME_FD`]) in the child can
//! never overwrite another source descriptor, whatever isobench's own
//! descriptors are.

use super::{EnvError, FRAME_FD, Io};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

fn high(fd: impl AsFd, what: &str) -> Result<OwnedFd, EnvError> {
    rustix::io::fcntl_dupfd_cloexec(fd, 10)
        .map_err(|e| EnvError::io(format!("duplicating {what}"), e.into()))
}

/// The descriptors the child installs, and the read end the host keeps.
pub struct Stdio {
    /// Child descriptors: (source, target number).
    pub targets: Vec<(OwnedFd, RawFd)>,
    /// The read end of the frame stream, for the harness.
    pub output: File,
    /// Whether the agent must be told to write frames to [`FRAME_FD`].
    pub frames_on_fd: bool,
}

impl Stdio {
    /// Prepares the streams for `io`.
    pub fn prepare(io: &Io) -> Result<Stdio, EnvError> {
        let (read, write) =
            std::io::pipe().map_err(|e| EnvError::io("creating the output pipe", e))?;
        let write = OwnedFd::from(write);
        let mut targets = Vec::new();
        let frames_on_fd = match io {
            Io::Captured { log } => {
                let null =
                    File::open("/dev/null").map_err(|e| EnvError::io("opening /dev/null", e))?;
                targets.push((high(&null, "/dev/null")?, 0));
                targets.push((high(&write, "the output pipe")?, 1));
                targets.push((high(log, "the instance log")?, 2));
                false
            }
            Io::Inherited => {
                for fd in 0..3 {
                    // SAFETY: 0, 1 and 2 are this process's standard streams;
                    // they are only borrowed to duplicate them.
                    let std = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                    targets.push((high(std, "a standard stream")?, fd));
                }
                targets.push((high(&write, "the frame pipe")?, FRAME_FD));
                true
            }
        };
        Ok(Stdio {
            targets,
            output: File::from(OwnedFd::from(read)),
            frames_on_fd,
        })
    }

    /// Raw (source, target) pairs for a child that must not allocate.
    pub fn raw(&self) -> Vec<(RawFd, RawFd)> {
        self.targets
            .iter()
            .map(|(fd, to)| (fd.as_raw_fd(), *to))
            .collect()
    }

    /// Installs the descriptors in the calling (child) process. Allocation-free.
    pub fn install(raw: &[(RawFd, RawFd)]) -> Result<(), nix::Error> {
        for &(from, to) in raw {
            // SAFETY: `from` is open in this process (duplicated above, and
            // at least 10); dup2 only replaces `to`, which nothing else in
            // the child uses, and clears close-on-exec on it.
            if unsafe { libc::dup2(from, to) } < 0 {
                return Err(nix::Error::last());
            }
        }
        Ok(())
    }
}
