//! What the benches share: a testbed per environment, and a log directory
//! removed when the bench ends (also when a benchmark panics).

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, SamplingMode};
use isobench::env::{BedSpec, EnvKind, VmBoot};
use isobench::run::{self, Contents, Testbed};
use isobench::scenario::{ContainerSettings, VmSettings};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

/// A testbed with the one environment `kind` and the default settings, or
/// `None` after printing why it cannot be built (the group is skipped).
pub fn testbed(kind: EnvKind, bench: &str, logs: &Path, stop: &AtomicBool) -> Option<Testbed> {
    let vm = VmSettings::default();
    let container = ContainerSettings::default();
    let boot = VmBoot::default();
    let spec = BedSpec {
        vm: &vm,
        container: &container,
        boot: &boot,
        workloads: &[],
        quiet: false,
    };
    let agent = match run::preflight(&[kind], &spec) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("skipping the {kind} group: {e}");
            return None;
        }
    };
    let id = format!("{bench}-{kind}-{}", std::process::id());
    match Testbed::build(&agent, &id, &[kind], spec, Contents::default(), logs, stop) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("skipping the {kind} group: {e}");
            None
        }
    }
}

/// The median of durations, in ms (isobench's own median: the mean of the
/// middle two for an even count).
pub fn median_ms(v: &[std::time::Duration]) -> f64 {
    let ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    isobench::stats::median(&ms)
}

/// A VM group samples flat, 10 times: a TCG boot takes seconds.
pub fn vm_sampling(group: &mut BenchmarkGroup<'_, WallTime>) {
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .measurement_time(std::time::Duration::from_secs(40));
}

/// A fresh directory for a bench's logs, removed on drop.
pub struct Logs(pub PathBuf);

impl Logs {
    pub fn new(bench: &str) -> Logs {
        let dir = std::env::temp_dir().join(format!("isobench-{bench}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the bench log directory");
        Logs(dir)
    }
}

impl Drop for Logs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
