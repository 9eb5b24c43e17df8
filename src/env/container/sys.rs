//! The seam between a container's set-up plan and the kernel: the small
//! [`Sys`] trait the child's steps run through ([`execute`]), implemented
//! by [`super::linux`] for real and, in the tests, by a recording fake.

use super::DEFAULT_CAPS;
use super::plan::Step;
use nix::errno::Errno;
use nix::mount::MsFlags;
use nix::sched::CloneFlags;
use std::ffi::{CStr, CString};

/// The privileged system calls of the set-up, so that their order can be
/// tested without root. Implementations must not allocate.
pub trait Sys {
    /// Blocks until the parent says go (one byte on the sync pipe): it has
    /// written the id maps, or plumbed the network namespace.
    fn wait_for_maps(&self) -> nix::Result<()>;
    /// PR_SET_PDEATHSIG and setsid.
    fn detach(&self) -> nix::Result<()>;
    /// Writes `0` to a `cgroup.procs` file.
    fn join_cgroup(&self, procs: &CString) -> nix::Result<()>;
    /// unshare(2).
    fn unshare(&self, flags: CloneFlags) -> nix::Result<()>;
    /// mount(2).
    fn mount(
        &self,
        source: Option<&CStr>,
        target: &CStr,
        fstype: Option<&CStr>,
        flags: MsFlags,
        data: Option<&CStr>,
    ) -> nix::Result<()>;
    /// mkdir(2).
    fn mkdir(&self, path: &CStr, mode: u32) -> nix::Result<()>;
    /// Creates an empty file.
    fn mkfile(&self, path: &CStr) -> nix::Result<()>;
    /// mknod(2) of a character device, then chmod to `mode` (past the umask).
    fn mknod(&self, path: &CStr, mode: u32, dev: u64) -> nix::Result<()>;
    /// symlink(2).
    fn symlink(&self, target: &CStr, link: &CStr) -> nix::Result<()>;
    /// chdir(2).
    fn chdir(&self, path: &CStr) -> nix::Result<()>;
    /// pivot_root(".", ".") and umount2(".", MNT_DETACH).
    fn pivot_root(&self) -> nix::Result<()>;
    /// sethostname(2).
    fn hostname(&self, name: &CStr) -> nix::Result<()>;
    /// Sets IFF_UP on `lo`.
    fn loopback_up(&self) -> nix::Result<()>;
    /// Installs the standard streams.
    fn stdio(&self) -> nix::Result<()>;
    /// prctl(PR_SET_NO_NEW_PRIVS).
    fn no_new_privs(&self) -> nix::Result<()>;
    /// Drops capabilities outside `keep`.
    fn drop_caps(&self, keep: &[(u32, &str)]) -> nix::Result<()>;
    /// Installs the seccomp filters.
    fn seccomp(&self) -> nix::Result<()>;
    /// execve; returns only on failure.
    fn exec(&self) -> nix::Error;
}

/// Runs the plan through `sys`. Returns the index of the failed step and
/// its errno; `Exec` never returns on success.
pub fn execute(steps: &[Step], sys: &dyn Sys) -> (usize, Errno) {
    for (i, step) in steps.iter().enumerate() {
        let r = match step {
            Step::WaitForMaps | Step::WaitForNet => sys.wait_for_maps(),
            Step::Detach => sys.detach(),
            Step::JoinCgroup(p) => sys.join_cgroup(p),
            Step::Unshare(f) => sys.unshare(*f),
            Step::Mount {
                source,
                target,
                fstype,
                flags,
                data,
                optional,
            } => match sys.mount(
                source.as_deref(),
                target,
                fstype.as_deref(),
                *flags,
                data.as_deref(),
            ) {
                Err(Errno::ENOENT) if *optional => Ok(()),
                other => other,
            },
            Step::MakeDir(p, mode) => match sys.mkdir(p, *mode) {
                Err(Errno::EEXIST) => Ok(()),
                other => other,
            },
            Step::MakeFile(p) => sys.mkfile(p),
            Step::MakeDevice(p, mode, dev) => sys.mknod(p, *mode, *dev),
            Step::Symlink(t, l) => sys.symlink(t, l),
            Step::Chdir(p) => sys.chdir(p),
            Step::PivotRoot => sys.pivot_root(),
            Step::Hostname(h) => sys.hostname(h),
            Step::LoopbackUp => sys.loopback_up(),
            Step::Stdio => sys.stdio(),
            Step::NoNewPrivs => sys.no_new_privs(),
            Step::DropCaps => sys.drop_caps(DEFAULT_CAPS),
            Step::Seccomp => sys.seccomp(),
            Step::Exec => Err(sys.exec()),
        };
        if let Err(e) = r {
            return (i, e);
        }
    }
    (steps.len(), Errno::UnknownErrno)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::container::fixture::config;
    use crate::env::container::plan;
    use std::cell::RefCell;
    use std::path::Path;

    /// A fake that records every call and fails on request.
    struct Recording {
        calls: RefCell<Vec<String>>,
        fail_on: Option<(&'static str, Errno)>,
    }

    impl Recording {
        fn call(&self, what: String) -> nix::Result<()> {
            let fail = self
                .fail_on
                .filter(|(needle, _)| what.contains(needle))
                .map(|(_, e)| e);
            self.calls.borrow_mut().push(what);
            fail.map_or(Ok(()), Err)
        }
    }

    impl Sys for Recording {
        fn wait_for_maps(&self) -> nix::Result<()> {
            self.call("wait".into())
        }
        fn detach(&self) -> nix::Result<()> {
            self.call("detach".into())
        }
        fn join_cgroup(&self, p: &CString) -> nix::Result<()> {
            self.call(format!("join {p:?}"))
        }
        fn unshare(&self, f: CloneFlags) -> nix::Result<()> {
            self.call(format!("unshare {f:?}"))
        }
        fn mount(
            &self,
            _: Option<&CStr>,
            t: &CStr,
            f: Option<&CStr>,
            _: MsFlags,
            _: Option<&CStr>,
        ) -> nix::Result<()> {
            self.call(format!("mount {f:?} {t:?}"))
        }
        fn mkdir(&self, p: &CStr, _: u32) -> nix::Result<()> {
            self.call(format!("mkdir {p:?}"))
        }
        fn mkfile(&self, p: &CStr) -> nix::Result<()> {
            self.call(format!("mkfile {p:?}"))
        }
        fn mknod(&self, p: &CStr, _: u32, _: u64) -> nix::Result<()> {
            self.call(format!("mknod {p:?}"))
        }
        fn symlink(&self, _: &CStr, l: &CStr) -> nix::Result<()> {
            self.call(format!("symlink {l:?}"))
        }
        fn chdir(&self, p: &CStr) -> nix::Result<()> {
            self.call(format!("chdir {p:?}"))
        }
        fn pivot_root(&self) -> nix::Result<()> {
            self.call("pivot".into())
        }
        fn hostname(&self, h: &CStr) -> nix::Result<()> {
            self.call(format!("hostname {h:?}"))
        }
        fn loopback_up(&self) -> nix::Result<()> {
            self.call("lo up".into())
        }
        fn stdio(&self) -> nix::Result<()> {
            self.call("stdio".into())
        }
        fn no_new_privs(&self) -> nix::Result<()> {
            self.call("nnp".into())
        }
        fn drop_caps(&self, keep: &[(u32, &str)]) -> nix::Result<()> {
            self.call(format!("caps {}", keep.len()))
        }
        fn seccomp(&self) -> nix::Result<()> {
            self.call("seccomp".into())
        }
        fn exec(&self) -> nix::Error {
            let _ = self.call("exec".into());
            Errno::ENOENT
        }
    }

    #[test]
    fn execution_follows_the_plan_and_stops_at_the_first_failure() {
        let steps = plan(&config(false, vec![]), Path::new("/r/i"), &[], "h").unwrap();
        let all = Recording {
            calls: RefCell::new(Vec::new()),
            fail_on: None,
        };
        let (index, errno) = execute(&steps, &all);
        assert_eq!(
            (index, errno),
            (steps.len() - 1, Errno::ENOENT),
            "only exec can fail here"
        );
        assert_eq!(all.calls.borrow().len(), steps.len());
        assert_eq!(all.calls.borrow().last().map(String::as_str), Some("exec"));
        let calls = all.calls.borrow();
        assert_eq!(calls[calls.len() - 2], "seccomp");
        assert_eq!(
            calls[calls.len() - 3],
            format!("caps {}", DEFAULT_CAPS.len())
        );
        drop(calls);

        // A failing mandatory mount stops everything after it.
        let failing = Recording {
            calls: RefCell::new(Vec::new()),
            fail_on: Some(("\"overlay\"", Errno::EPERM)),
        };
        let (index, errno) = execute(&steps, &failing);
        assert_eq!(errno, Errno::EPERM);
        assert!(steps[index].describe().contains("(overlay)"));
        assert_eq!(failing.calls.borrow().len(), index + 1);

        // A missing optional target (a masked path this kernel lacks) is skipped.
        let optional = Recording {
            calls: RefCell::new(Vec::new()),
            fail_on: Some(("proc/keys", Errno::ENOENT)),
        };
        let (index, _) = execute(&steps, &optional);
        assert_eq!(
            index,
            steps.len() - 1,
            "ENOENT on a masked path is not an error"
        );
    }
}
