//! The real system calls of a container's set-up, run by the cloned
//! child: every one allocation-free.

use super::sys::Sys;
use crate::env::native::{die_with_parent, join_cgroup};
use crate::env::stdio::Stdio;
use crate::seccomp::Filters;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use std::ffi::{CStr, CString};
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

/// The real system calls, for the cloned child.
pub(super) struct Linux<'a> {
    pub(super) sync: RawFd,
    pub(super) stdio: &'a [(RawFd, RawFd)],
    pub(super) init: &'a CStr,
    pub(super) argv: &'a [*const libc::c_char],
    pub(super) envp: &'a [*const libc::c_char],
    pub(super) seccomp: Option<&'a Filters>,
}

fn check(ret: libc::c_int) -> nix::Result<()> {
    if ret < 0 { Err(Errno::last()) } else { Ok(()) }
}

impl Sys for Linux<'_> {
    fn wait_for_maps(&self) -> nix::Result<()> {
        let mut byte = [0u8; 1];
        // SAFETY: reading one byte from the sync pipe into a valid buffer.
        let n = unsafe { libc::read(self.sync, byte.as_mut_ptr().cast(), 1) };
        if n == 1 { Ok(()) } else { Err(Errno::EPIPE) }
    }
    fn detach(&self) -> nix::Result<()> {
        die_with_parent().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
        // isobench ignores SIGPIPE; an ignored signal stays ignored across
        // execve, and the workload must start with the default.
        // SAFETY: signal(2) with a constant disposition, no handler.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        nix::unistd::setsid().map(drop)
    }
    fn join_cgroup(&self, procs: &CString) -> nix::Result<()> {
        join_cgroup(procs)
    }
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()> {
        nix::sched::unshare(flags)
    }
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }
    fn mkdir(&self, path: &CStr, mode: u32) -> nix::Result<()> {
        // SAFETY: `path` is NUL-terminated.
        check(unsafe { libc::mkdir(path.as_ptr(), mode) })?;
        // The umask must not narrow /dev/shm's 1777 (chmod is exact).
        // SAFETY: as above.
        check(unsafe { libc::chmod(path.as_ptr(), mode) })
    }
    fn mkfile(&self, path: &CStr) -> nix::Result<()> {
        // SAFETY: `path` is NUL-terminated; the descriptor is closed at once.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            )
        };
        check(fd)?;
        // SAFETY: `fd` was just opened by this function.
        unsafe { libc::close(fd) };
        Ok(())
    }
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> nix::Result<()> {
        // SAFETY: `path` is NUL-terminated; integer arguments only otherwise.
        check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | mode, dev) })?;
        // SAFETY: as above.
        check(unsafe { libc::chmod(path.as_ptr(), mode) })
    }
    fn symlink(&self, target: &CStr, link: &CStr) -> nix::Result<()> {
        // SAFETY: both are NUL-terminated.
        check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) })
    }
    fn chdir(&self, path: &CStr) -> nix::Result<()> {
        nix::unistd::chdir(path)
    }
    fn pivot_root(&self) -> nix::Result<()> {
        // The new root stacks on the old one; detaching "." drops the old.
        nix::unistd::pivot_root(c".", c".")?;
        nix::mount::umount2(c".", MntFlags::MNT_DETACH)
    }
    fn hostname(&self, name: &CStr) -> nix::Result<()> {
        nix::unistd::sethostname(std::ffi::OsStr::from_bytes(name.to_bytes()))
    }
    fn loopback_up(&self) -> nix::Result<()> {
        loopback_up()
    }
    fn stdio(&self) -> nix::Result<()> {
        Stdio::install(self.stdio)
    }
    fn no_new_privs(&self) -> nix::Result<()> {
        // SAFETY: prctl with integer arguments only.
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
    }
    fn drop_caps(&self, keep: &[(u32, &str)]) -> nix::Result<()> {
        drop_capabilities(keep)
    }
    fn seccomp(&self) -> nix::Result<()> {
        self.seccomp.map_or(Ok(()), Filters::install)
    }
    fn exec(&self) -> nix::Error {
        // SAFETY: `init` is NUL-terminated; `argv` and `envp` are
        // NULL-terminated arrays of pointers into strings that outlive this call.
        unsafe { libc::execve(self.init.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        Errno::last()
    }
}

/// The highest capability number this kernel knows.
/// Sets IFF_UP on `lo` (a new network namespace's `lo` starts down). Makes
/// no allocation, so a container's child can call it between clone and
/// exec; the VM agent uses it too.
pub fn loopback_up() -> nix::Result<()> {
    // SAFETY: a datagram socket only for the ioctls, closed below; the
    // ifreq is zeroed, named "lo", and valid for both calls.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        check(sock)?;
        let mut req: libc::ifreq = std::mem::zeroed();
        req.ifr_name[0] = b'l' as libc::c_char;
        req.ifr_name[1] = b'o' as libc::c_char;
        let mut r = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if r == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            r = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = Errno::last();
        libc::close(sock);
        if r < 0 { Err(err) } else { Ok(()) }
    }
}

fn last_cap() -> u32 {
    // Read before the clone would be cleaner, but the file is tiny and the
    // read does not allocate: a fixed buffer and raw calls.
    let mut buf = [0u8; 16];
    // SAFETY: NUL-terminated path; the descriptor is closed at once; the
    // buffer is valid for its length.
    let n = unsafe {
        let fd = libc::open(
            c"/proc/sys/kernel/cap_last_cap".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 40;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    let mut v = 0u32;
    for b in buf.iter().take(n.max(0) as usize) {
        if b.is_ascii_digit() {
            v = v * 10 + u32::from(b - b'0');
        }
    }
    if v == 0 { 40 } else { v }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Drops every capability outside `keep` from the bounding set, the
/// effective, permitted and inheritable sets, and the ambient set.
/// Allocation-free.
pub fn drop_capabilities(keep: &[(u32, &str)]) -> nix::Result<()> {
    let kept = |cap: u32| keep.iter().any(|(n, _)| *n == cap);
    for cap in 0..=last_cap() {
        if !kept(cap) {
            // SAFETY: prctl with integer arguments only.
            let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            // EINVAL: a capability this kernel does not know.
            if r < 0 && Errno::last() != Errno::EINVAL {
                return Err(Errno::last());
            }
        }
    }
    // SAFETY: prctl with integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    })?;
    let mut data = [CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    for (cap, _) in keep {
        let (word, bit) = ((*cap / 32) as usize, 1u32 << (cap % 32));
        data[word].effective |= bit;
        data[word].permitted |= bit;
    }
    let mut header = CapHeader {
        version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
        pid: 0,
    };
    // SAFETY: capset with a version-3 header and two data words, as the
    // kernel expects for that version.
    check(unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    } as libc::c_int)
}
