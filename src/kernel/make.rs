//! One step of a kernel build: a command whose output goes to the build's
//! log, with progress while make runs and the log's tail when it fails.

use super::KernelError;
use super::minimal::{io_err, tail};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One step of a build, its output appended to the log.
pub(super) struct Step {
    pub(super) log: std::fs::File,
    pub(super) log_path: PathBuf,
}

/// How often a long step says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(30);

impl Step {
    /// Runs `cmd` with its output going to the log; with `progress`, says
    /// every [`PROGRESS_EVERY`] how many files make has built and the last.
    pub(super) fn run(
        &mut self,
        name: &str,
        cmd: &mut Command,
        mut progress: Option<&mut dyn FnMut(&str)>,
    ) -> Result<(), KernelError> {
        use std::io::Write;
        use std::os::unix::process::CommandExt;
        let _ = writeln!(self.log, "### {name}: {cmd:?}");
        // SAFETY: runs in the forked child before exec; prctl is
        // async-signal-safe and nothing allocates.
        unsafe {
            // A make whose isobench was killed stops instead of writing on
            // into a work directory the next build will remove.
            cmd.pre_exec(crate::env::native::die_with_parent);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| KernelError::Build {
                step: name.into(),
                why: format!(
                    "cannot run {:?}: {e} (install the build tools: apt-get install -y --no-install-recommends make gcc bc bison flex libelf-dev libssl-dev)",
                    cmd.get_program()
                ),
                log: None,
            })?;
        // stderr is merged into the log through a thread; stdout is read here.
        let stderr = child.stderr.take();
        let err_log = self.log.try_clone().ok();
        let errs = std::thread::spawn(move || {
            if let (Some(s), Some(mut log)) = (stderr, err_log) {
                for line in BufReader::new(s).lines().map_while(Result::ok) {
                    let _ = writeln!(log, "{line}");
                }
            }
        });
        let started = Instant::now();
        let mut last_said = Instant::now();
        let mut built = 0usize;
        if let Some(out) = child.stdout.take() {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = writeln!(self.log, "{line}");
                if line.starts_with("  CC") || line.starts_with("  AS") {
                    built += 1;
                }
                if let Some(say) = progress.as_mut()
                    && last_said.elapsed() >= PROGRESS_EVERY
                {
                    last_said = Instant::now();
                    say(&format!(
                        "      {:>4} s: {built} files compiled; now {}",
                        started.elapsed().as_secs(),
                        line.trim()
                    ));
                }
            }
        }
        let status = child.wait().map_err(|e| io_err(name, &self.log_path, e))?;
        let _ = errs.join();
        if status.success() {
            return Ok(());
        }
        let _ = self.log.flush();
        Err(KernelError::Build {
            step: name.into(),
            why: format!("{status}"),
            log: Some((self.log_path.clone(), tail(&self.log_path, 20))),
        })
    }
}
