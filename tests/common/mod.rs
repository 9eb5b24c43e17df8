//! Helpers shared by the integration tests: the binary, scratch
//! directories, and explicit skips.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// The `isobench` binary built for these tests.
pub fn isobench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isobench"))
}

/// A scratch directory unique to this test, removed on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("isobench-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch { path }
    }

    /// An isobench command whose runtime state and reports stay in here.
    pub fn isobench(&self) -> Command {
        let mut cmd = isobench();
        cmd.env("ISOBENCH_RUNTIME_DIR", self.runtime());
        cmd
    }

    /// The runtime directory isobench is pointed at (ISOBENCH_RUNTIME_DIR).
    pub fn runtime(&self) -> PathBuf {
        self.path.join("runtime")
    }

    /// isobench's own directory in it, which holds one directory per run.
    pub fn runs(&self) -> PathBuf {
        self.runtime().join("isobench")
    }

    pub fn reports(&self) -> PathBuf {
        self.path.join("reports")
    }

    /// Waits until a run of `child` (an `isobench run` started with this
    /// scratch's runtime directory) has a directory for which `ready`
    /// holds; returns its run id. Past `within`, kills the child and panics
    /// with `what`.
    pub fn wait_for_run(
        &self,
        child: &mut std::process::Child,
        within: std::time::Duration,
        what: &str,
        mut ready: impl FnMut(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + within;
        loop {
            let id = std::fs::read_dir(self.runs())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .find(|n| isobench::rundir::is_run_id(n));
            if let Some(id) = id
                && ready(&id)
            {
                return id;
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} within {} s", within.as_secs());
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Whether run `run_id` has its instance directory (a container
    /// instance has started): a condition for [`Scratch::wait_for_run`].
    pub fn has_instances(&self, run_id: &str) -> bool {
        self.runs().join(run_id).join("instances").is_dir()
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Writes `scenario` to `file` in here and makes `cmd` (this
    /// scratch's [`Scratch::isobench`], or one with more environment) into
    /// `isobench run [options] --scenario FILE --out REPORTS`.
    pub fn run_command(
        &self,
        mut cmd: Command,
        file: &str,
        scenario: &str,
        options: &[&str],
    ) -> Command {
        let file = self.write(file, scenario);
        cmd.arg("run")
            .args(options)
            .arg("--scenario")
            .arg(&file)
            .arg("--out")
            .arg(self.reports());
        cmd
    }

    /// Runs `scenario` (written to `file`) with `options`; its output.
    pub fn run(&self, file: &str, scenario: &str, options: &[&str]) -> Output {
        self.run_command(self.isobench(), file, scenario, options)
            .output()
            .unwrap()
    }

    /// Starts `scenario` (written to `file`) with `options` in the
    /// background, its output discarded.
    pub fn spawn_run(&self, file: &str, scenario: &str, options: &[&str]) -> Child {
        self.run_command(self.isobench(), file, scenario, options)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

/// Names as a TOML array's items: `"a", "b"`.
pub fn toml_items(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Waits for `child` to exit; past `limit`, kills it and fails the test.
pub fn wait_exit(child: &mut Child, limit: std::time::Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("isobench did not exit within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether a prerequisite holds. When it does not, the test prints why it
/// is skipped — or fails, when ISOBENCH_REQUIRE_ALL=1 (as in CI).
pub fn require(ok: bool, what: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var_os("ISOBENCH_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("prerequisite missing and ISOBENCH_REQUIRE_ALL=1: {what}");
    }
    eprintln!("SKIPPED: {what}");
    false
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether a VM can boot here: QEMU and a fetched guest kernel.
pub fn vm_ready() -> bool {
    let qemu = Command::new("qemu-system-x86_64")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let kernel = isobench()
        .args(["kernel", "path"])
        .output()
        .is_ok_and(|o| o.status.success());
    qemu && kernel
}

pub fn text(out: &Output) -> String {
    format!(
        "status: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The single run directory under `reports` (the target of `latest`).
pub fn latest(reports: &Path) -> PathBuf {
    let target = std::fs::read_link(reports.join("latest")).expect("reports/latest is a symlink");
    reports.join(target)
}

/// Rows of results.csv as (workload, environment, repetition, metric, unit, value).
pub fn results(run: &Path) -> Vec<(String, String, u32, String, String, f64)> {
    isobench::record::read_results(&run.join("results.csv"))
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                r.workload,
                r.environment.to_string(),
                r.repetition,
                r.metric,
                r.unit,
                r.value,
            )
        })
        .collect()
}

/// Processes whose command line contains `marker`.
pub fn processes_mentioning(marker: &Path) -> Vec<u32> {
    let marker = marker.as_os_str().as_encoded_bytes();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.windows(marker.len()).any(|w| w == marker) {
            found.push(pid);
        }
    }
    found
}

/// Mount points in this mount namespace that lie under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let prefix = dir.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&prefix))
        .map(String::from)
        .collect()
}

/// Asserts that nothing of isobench remains for this scratch directory:
/// no runtime directory entries, no mounts, no processes mentioning it.
pub fn assert_clean(s: &Scratch) {
    let leftovers: Vec<_> = std::fs::read_dir(s.runtime())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "runtime leftovers: {leftovers:?}");
    assert!(
        mounts_under(&s.path).is_empty(),
        "mounts left: {:?}",
        mounts_under(&s.path)
    );
    assert!(
        processes_mentioning(&s.runtime()).is_empty(),
        "processes left: {:?}",
        processes_mentioning(&s.runtime())
    );
}
