//! The descriptors of an instance's first process, prepared on the host
//! before the spawn.
//!
//! Every descriptor is duplicated to a number of at least 10, close-on-exec,
//! so that installing it as 0, 1, 2 and [`FRAME_FD`] in the child can never
//! overwrite another source descriptor, whatever isobench's own descriptors
//! are. [`Stdio::install`] then marks every other descriptor of the child
//! close-on-exec: nothing the caller of isobench left open (a descriptor of
//! `/etc` inherited from a shell, say) survives into an instance.

use super::{EnvError, FRAME_FD, Io, Streams};
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

fn high(fd: impl AsFd, what: &str) -> Result<OwnedFd, EnvError> {
    rustix::io::fcntl_dupfd_cloexec(fd, 10)
        .map_err(|e| EnvError::io(format!("duplicating {what}"), e.into()))
}

/// The descriptors the child installs, and the read ends the host keeps.
pub struct Stdio {
    /// Child descriptors: (source, target number).
    pub targets: Vec<(OwnedFd, RawFd)>,
    /// The read ends for the harness.
    pub streams: Streams,
}

impl Stdio {
    /// Prepares the streams for `io`: frames always on [`FRAME_FD`]; for a
    /// run, stdout and stderr on one output pipe and stdin from /dev/null;
    /// for `exec`, isobench's own standard streams.
    pub fn prepare(io: &Io) -> Result<Stdio, EnvError> {
        let (frames_r, frames_w) =
            std::io::pipe().map_err(|e| EnvError::io("creating the frames pipe", e))?;
        let mut targets = Vec::new();
        let output = match io {
            Io::Captured { .. } => {
                let (out_r, out_w) =
                    std::io::pipe().map_err(|e| EnvError::io("creating the output pipe", e))?;
                let null =
                    File::open("/dev/null").map_err(|e| EnvError::io("opening /dev/null", e))?;
                targets.push((high(&null, "/dev/null")?, 0));
                targets.push((high(&out_w, "the output pipe")?, 1));
                targets.push((high(&out_w, "the output pipe")?, 2));
                Some(File::from(OwnedFd::from(out_r)))
            }
            Io::Inherited => {
                for fd in 0..3 {
                    // SAFETY: 0, 1 and 2 are this process's standard streams;
                    // they are only borrowed to duplicate them.
                    let std = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
                    targets.push((high(std, "a standard stream")?, fd));
                }
                None
            }
        };
        targets.push((high(&frames_w, "the frames pipe")?, FRAME_FD));
        Ok(Stdio {
            targets,
            streams: Streams {
                frames: File::from(OwnedFd::from(frames_r)),
                output,
            },
        })
    }

    /// Raw (source, target) pairs for a child that must not allocate.
    pub fn raw(&self) -> Vec<(RawFd, RawFd)> {
        self.targets
            .iter()
            .map(|(fd, to)| (fd.as_raw_fd(), *to))
            .collect()
    }

    /// Installs the descriptors in the calling (child) process, then marks
    /// every descriptor above [`FRAME_FD`] close-on-exec, so that only
    /// these four reach the program it execs. Close-on-exec rather than
    /// closed: the child may still need its own pipes (a set-up report)
    /// until the exec. Allocation-free.
    pub fn install(raw: &[(RawFd, RawFd)]) -> Result<(), nix::Error> {
        for &(from, to) in raw {
            // SAFETY: `from` is open in this process (duplicated above, and
            // at least 10); dup2 only replaces `to`, which nothing else in
            // the child uses, and clears close-on-exec on it.
            if unsafe { libc::dup2(from, to) } < 0 {
                return Err(nix::Error::last());
            }
        }
        cloexec_from(FRAME_FD + 1)
    }
}

/// Marks every descriptor from `first` on close-on-exec: one
/// `close_range(CLOSE_RANGE_CLOEXEC)` (Linux 5.11), or on older kernels a
/// loop up to the descriptor limit. Allocation-free.
pub fn cloexec_from(first: RawFd) -> Result<(), nix::Error> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with integer arguments only; it changes flags of
    // this process's own descriptors.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        return Ok(());
    }
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills a valid rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } < 0 {
        return Err(nix::Error::last());
    }
    let last = limit.rlim_cur.min(1 << 20) as RawFd;
    for fd in first..last {
        // SAFETY: fcntl on a descriptor number; one that is not open fails
        // with EBADF, which is fine.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    /// A descriptor the caller left open (not close-on-exec) does not
    /// reach the program: the defect of runc's CVE-2024-21626.
    #[test]
    fn inherited_descriptors_do_not_reach_the_program() {
        let etc = File::open("/etc").unwrap();
        let leaked = rustix::io::fcntl_dupfd_cloexec(&etc, 40).unwrap();
        // Clear close-on-exec, as a shell's `exec 7</etc` would leave it.
        rustix::io::fcntl_setfd(&leaked, rustix::io::FdFlags::empty()).unwrap();
        let n = leaked.as_raw_fd();
        let check = format!("test -e /proc/self/fd/{n} && echo LEAKED || echo closed");
        let plain = Command::new("sh").args(["-c", &check]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), "LEAKED");
        let log = File::create("/dev/null").unwrap();
        let Stdio { targets, streams } = Stdio::prepare(&Io::Captured { log }).unwrap();
        let raw: Vec<(RawFd, RawFd)> = targets.iter().map(|(f, t)| (f.as_raw_fd(), *t)).collect();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            &format!("{check}; test -e /proc/self/fd/3 && echo frames"),
        ]);
        // SAFETY: install only makes dup2/close_range/fcntl calls.
        unsafe { cmd.pre_exec(move || Stdio::install(&raw).map_err(std::io::Error::from)) };
        let mut child = cmd.spawn().unwrap();
        drop(targets);
        let mut text = String::new();
        std::io::Read::read_to_string(&mut streams.output.unwrap(), &mut text).unwrap();
        child.wait().unwrap();
        assert!(text.contains("closed") && text.contains("frames"), "{text}");
        drop(leaked);
    }
}
