//! Progress output of a run, on stderr: on a terminal a progress bar with
//! the elapsed time and an estimate of what remains (the finished
//! instances' lines scroll above it); elsewhere (a CI log) one plain line
//! per instance; with `--quiet` nothing but errors.

use super::instance::InstanceResult;
use crate::report::fmt_value;
use crate::workload::Metric;
use std::io::IsTerminal;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A bar on a terminal.
    Bar,
    /// One line per instance.
    Lines,
    /// Nothing.
    Quiet,
}

impl Mode {
    /// A bar when stderr is a terminal, lines otherwise; `quiet` wins.
    pub fn detect(quiet: bool) -> Mode {
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Bar
        } else {
            Mode::Lines
        }
    }
}

/// The progress of one run.
pub struct Progress {
    mode: Mode,
    total: usize,
    done: usize,
    bar: Option<indicatif::ProgressBar>,
    /// The line of the instance under way (`[  3/24] cpu container rep 1/3`).
    current: String,
}

impl Progress {
    /// Progress over `total` instances.
    pub fn new(mode: Mode, total: usize) -> Progress {
        let bar = (mode == Mode::Bar).then(|| {
            let bar = indicatif::ProgressBar::new(total as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} instances, about {eta} left  {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress {
            mode,
            total,
            done: 0,
            bar,
            current: String::new(),
        }
    }

    /// Says something about the run (not about one instance).
    pub fn say(&self, text: &str) {
        match (&self.bar, self.mode) {
            (_, Mode::Quiet) => {}
            (Some(bar), _) => bar.println(text),
            (None, _) => crate::say!("{text}"),
        }
    }

    /// An instance starts: `what` is `rep 2/3`, `warm-up 1/1`, `instance 4/10`.
    pub fn start(&mut self, workload: &str, env: &str, what: &str) {
        self.done += 1;
        self.current = format!(
            "[{:>3}/{}] {workload:<10} {env:<10} {what:<14} ",
            self.done, self.total
        );
        match (&self.bar, self.mode) {
            (Some(bar), _) => bar.set_message(format!("{workload} {env} {what}")),
            (None, Mode::Lines) => crate::say_part!("{}", self.current),
            _ => {}
        }
    }

    /// The instance under way ended with `outcome` (its figures or its error).
    pub fn end(&mut self, outcome: &str) {
        match (&self.bar, self.mode) {
            (Some(bar), _) => {
                bar.println(format!("{}{outcome}", self.current));
                bar.inc(1);
            }
            (None, Mode::Lines) => crate::say!("{outcome}"),
            _ => {}
        }
    }

    /// Removes the bar at the end.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What a finished instance shows: its startup and headline figure, or why
/// it failed and where its log is.
pub fn outcome_line(r: &InstanceResult, metrics: &[Metric], log: &str) -> String {
    if let Some(e) = &r.error {
        return format!("FAILED: {e} (log: {log})");
    }
    metrics
        .iter()
        .filter(|m| ["startup_ms", "score", "pss_mib"].contains(&m.name.as_str()))
        .map(|m| format!("{} {} {}", m.name, fmt_value(m.value), m.unit))
        .collect::<Vec<_>>()
        .join("  ")
}
