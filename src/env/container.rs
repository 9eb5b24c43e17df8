//! `container`: isobench's own namespace runtime.
//!
//! One `clone(2)` creates the instance's process directly in new pid, mount,
//! uts, ipc and net namespaces; that child, pid 1 of its namespace, makes its
//! mounts private, mounts an overlay (the run's image as the read-only lower
//! layer, a per-instance upper layer), mounts a fresh `/proc`, switches root
//! with `pivot_root`, detaches the old root, sets its hostname and execs the
//! agent. Every mount lives only in the child's mount namespace, so the host
//! sees none of them and the kernel removes them all when the instance ends
//! — even if isobench itself is killed. What remains on the host is the
//! instance directory, which [`Instance::cleanup`] (or `isobench clean`)
//! removes.
//!
//! The child runs between `clone` and `execve` in a copy of a multi-threaded
//! process, so it must not allocate: every string it needs is prepared
//! before the clone, and it reports a failure as two numbers on a pipe.

use super::native::die_with_parent;
use super::{EnvError, EnvKind, Environment, Instance, Launch, ProcessHandle};
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::CloneFlags;
use nix::unistd::{chdir, pivot_root, sethostname, setsid};
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The namespaces every container gets.
pub const NAMESPACES: &[&str] = &["pid", "mnt", "uts", "ipc", "net"];

fn clone_flags() -> CloneFlags {
    CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWNET
}

/// The set-up steps of the child, in order; a failure names its step.
const STEPS: &[&str] = &[
    "prctl(PR_SET_PDEATHSIG)",
    "setsid",
    "make / private",
    "mount overlay",
    "mount /proc",
    "chdir to new root",
    "pivot_root",
    "detach old root",
    "chdir /",
    "sethostname",
    "set up stdio",
    "execve /init",
];

/// Runs the agent in a fresh container built on the run's image.
pub struct Container {
    image: PathBuf,
    instances: PathBuf,
}

impl Container {
    /// A runtime using `image` as the read-only layer and making instance
    /// directories under `instances`.
    pub fn new(image: PathBuf, instances: PathBuf) -> Self {
        Container { image, instances }
    }
}

/// Everything the child needs, prepared before the clone.
struct ChildPlan {
    overlay_opts: CString,
    merged: CString,
    proc_dir: CString,
    hostname: CString,
    init: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

fn cstring(what: &str, bytes: &[u8]) -> Result<CString, EnvError> {
    CString::new(bytes).map_err(|_| {
        EnvError::Unavailable(format!(
            "{what} contains a NUL byte: {}",
            String::from_utf8_lossy(bytes)
        ))
    })
}

fn path_cstring(what: &str, path: &Path) -> Result<CString, EnvError> {
    cstring(what, path.as_os_str().as_bytes())
}

/// Overlay option values may not contain `,` or `:` (they separate options
/// and lower layers); reject such paths instead of mounting the wrong thing.
fn overlay_path(path: &Path) -> Result<&[u8], EnvError> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.iter().any(|b| *b == b',' || *b == b':') {
        return Err(EnvError::Unavailable(format!(
            "path {} contains `,` or `:`, which overlayfs options cannot express; use a runtime directory without them",
            path.display()
        )));
    }
    Ok(bytes)
}

/// The overlay mount options for one instance.
pub fn overlay_options(lower: &Path, upper: &Path, work: &Path) -> Result<Vec<u8>, EnvError> {
    let mut opts = b"lowerdir=".to_vec();
    opts.extend_from_slice(overlay_path(lower)?);
    opts.extend_from_slice(b",upperdir=");
    opts.extend_from_slice(overlay_path(upper)?);
    opts.extend_from_slice(b",workdir=");
    opts.extend_from_slice(overlay_path(work)?);
    Ok(opts)
}

/// The child side of the clone: set up, then exec. Returns only on failure.
///
/// Must not allocate or panic: see the module documentation.
fn child_main(
    plan: &ChildPlan,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    fds: ChildFds,
) -> isize {
    let fail = |step: usize, errno: Errno| -> isize {
        let mut msg = [0u8; 5];
        msg[0] = step as u8;
        msg[1..].copy_from_slice(&(errno as i32).to_le_bytes());
        // SAFETY: `fds.report` is the write end of the error pipe, open in
        // this process; the buffer is valid for 5 bytes.
        unsafe { libc::write(fds.report, msg.as_ptr().cast(), msg.len()) };
        127
    };
    let io = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(0));
    if let Err(e) = die_with_parent() {
        return fail(0, io(e));
    }
    if let Err(e) = setsid() {
        return fail(1, e);
    }
    let private = MsFlags::MS_REC | MsFlags::MS_PRIVATE;
    if let Err(e) = mount(None::<&CStr>, c"/", None::<&CStr>, private, None::<&CStr>) {
        return fail(2, e);
    }
    if let Err(e) = mount(
        Some(c"overlay"),
        plan.merged.as_c_str(),
        Some(c"overlay"),
        MsFlags::empty(),
        Some(plan.overlay_opts.as_c_str()),
    ) {
        return fail(3, e);
    }
    let proc_flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if let Err(e) = mount(
        Some(c"proc"),
        plan.proc_dir.as_c_str(),
        Some(c"proc"),
        proc_flags,
        None::<&CStr>,
    ) {
        return fail(4, e);
    }
    if let Err(e) = chdir(plan.merged.as_c_str()) {
        return fail(5, e);
    }
    // The new root stacks on the old one; detaching "." then drops the old.
    if let Err(e) = pivot_root(c".", c".") {
        return fail(6, e);
    }
    if let Err(e) = umount2(c".", MntFlags::MNT_DETACH) {
        return fail(7, e);
    }
    if let Err(e) = chdir(c"/") {
        return fail(8, e);
    }
    if let Err(e) = sethostname(OsStr::from_bytes(plan.hostname.as_bytes())) {
        return fail(9, e);
    }
    for (from, to) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
        // SAFETY: both are open descriptors of this process; dup2 only
        // replaces `to`, which nothing else in this process uses.
        if unsafe { libc::dup2(from, to) } < 0 {
            return fail(10, Errno::last());
        }
    }
    // SAFETY: `init`, `argv` and `envp` are NUL-terminated strings and
    // NULL-terminated pointer arrays that live in `plan` and the caller.
    unsafe { libc::execve(plan.init.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    fail(11, Errno::last())
}

#[derive(Clone, Copy)]
struct ChildFds {
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    report: RawFd,
}

impl Environment for Container {
    fn kind(&self) -> EnvKind {
        EnvKind::Container
    }

    fn knobs(&self) -> serde_json::Value {
        serde_json::json!({
            "runtime": "isobench (clone + overlayfs + pivot_root)",
            "namespaces": NAMESPACES,
            "image": self.image,
            "instances": self.instances,
        })
    }

    fn startup_timeout(&self) -> Duration {
        Duration::from_secs(10)
    }

    fn spawn(&self, launch: Launch<'_>) -> Result<Box<dyn Instance>, EnvError> {
        let dir = self.instances.join(launch.id);
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            std::fs::create_dir_all(d)
                .map_err(|e| EnvError::io(format!("creating {}", d.display()), e))?;
        }
        let mut instance = ContainerInstance {
            dir,
            spawned_at: Instant::now(),
            output: None,
            process: None,
        };

        let mut argv = vec![c"/init".to_owned()];
        for arg in launch.spec.to_args() {
            argv.push(cstring("workload argument", arg.as_bytes())?);
        }
        let hostname: String = launch.id.chars().take(63).collect();
        let plan = ChildPlan {
            overlay_opts: cstring(
                "overlay options",
                &overlay_options(&self.image, &upper, &work)?,
            )?,
            proc_dir: path_cstring("proc mount point", &merged.join("proc"))?,
            merged: path_cstring("container root", &merged)?,
            hostname: cstring("hostname", hostname.as_bytes())?,
            init: c"/init".to_owned(),
            argv,
            env: vec![c"PATH=/".to_owned(), c"ISOBENCH_ENV=container".to_owned()],
        };
        let mut argv_ptrs: Vec<*const libc::c_char> =
            plan.argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = plan.env.iter().map(|a| a.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());

        let (out_r, out_w) =
            std::io::pipe().map_err(|e| EnvError::io("creating the output pipe", e))?;
        let (mut report_r, report_w) =
            std::io::pipe().map_err(|e| EnvError::io("creating the set-up report pipe", e))?;
        let stdin = File::open("/dev/null").map_err(|e| EnvError::io("opening /dev/null", e))?;
        let fds = ChildFds {
            stdin: stdin.as_raw_fd(),
            stdout: out_w.as_raw_fd(),
            stderr: launch.log.as_raw_fd(),
            report: report_w.as_raw_fd(),
        };

        // The child only runs set-up code on this stack before exec; 256 KiB
        // is far more than it uses (untouched pages cost nothing).
        let mut stack = vec![0u8; 256 * 1024];
        instance.spawned_at = Instant::now();
        // SAFETY: the child is a copy of this process (no CLONE_VM) and runs
        // `child_main`, which does not allocate, lock or unwind, only makes
        // system calls on data prepared above, and ends in execve or returns
        // an exit status. The stack buffer is large enough for it.
        let pid = unsafe {
            nix::sched::clone(
                Box::new(|| child_main(&plan, &argv_ptrs, &envp_ptrs, fds)),
                &mut stack,
                clone_flags(),
                Some(libc::SIGCHLD),
            )
        }
        .map_err(|e| EnvError::sys("clone with new pid, mount, uts, ipc and net namespaces", e))?;
        drop((out_w, report_w, stdin));
        let mut process = ProcessHandle::new(pid.as_raw() as u32)
            .map_err(|e| EnvError::io("opening a pidfd for the container", e))?;

        // Blocks until the child execs (the pipe is close-on-exec) or reports.
        let mut report = Vec::new();
        let _ = report_r.read_to_end(&mut report);
        if report.len() == 5 {
            let _ = process.kill_and_reap();
            let step = STEPS
                .get(report[0] as usize)
                .copied()
                .unwrap_or("unknown step");
            let errno = i32::from_le_bytes([report[1], report[2], report[3], report[4]]);
            instance.process = Some(process);
            let _ = instance.cleanup();
            return Err(EnvError::ContainerSetup {
                step,
                source: Errno::from_raw(errno),
            });
        }
        instance.output = Some(File::from(OwnedFd::from(out_r)));
        instance.process = Some(process);
        Ok(Box::new(instance))
    }
}

struct ContainerInstance {
    dir: PathBuf,
    spawned_at: Instant,
    output: Option<File>,
    process: Option<ProcessHandle>,
}

impl Instance for ContainerInstance {
    fn spawned_at(&self) -> Instant {
        self.spawned_at
    }

    fn take_output(&mut self) -> Option<File> {
        self.output.take()
    }

    fn process(&mut self) -> &mut ProcessHandle {
        // Set before the instance is handed out.
        self.process
            .as_mut()
            .expect("container instance has a process")
    }

    fn cleanup(&mut self) -> Result<(), EnvError> {
        if let Some(p) = self.process.as_mut() {
            p.kill_and_reap()
                .map_err(|e| EnvError::io("reaping the container", e))?;
        }
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EnvError::io(format!("removing {}", self.dir.display()), e)),
        }
    }
}

impl Drop for ContainerInstance {
    fn drop(&mut self) {
        let _ = self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_are_exact_and_reject_separators() {
        let opts = overlay_options(
            Path::new("/a/img"),
            Path::new("/b/up"),
            Path::new("/b/work"),
        )
        .unwrap();
        assert_eq!(opts, b"lowerdir=/a/img,upperdir=/b/up,workdir=/b/work");
        assert!(overlay_options(Path::new("/a,b"), Path::new("/u"), Path::new("/w")).is_err());
        assert!(overlay_options(Path::new("/a"), Path::new("/u:x"), Path::new("/w")).is_err());
    }

    #[test]
    fn every_step_has_a_name() {
        // child_main reports steps 0..=11 by index.
        assert_eq!(STEPS.len(), 12);
    }
}
