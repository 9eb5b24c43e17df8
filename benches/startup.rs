//! Startup cost per environment: spawn → `ready` → reaped and cleaned up,
//! for the `noop` workload, timed around `run::run_instance`.
//!
//! Groups: `native`, `container` (needs root), `vm` (needs QEMU and a guest
//! kernel; flat sampling, 10 samples, since a TCG boot takes seconds). A
//! group whose prerequisite is missing prints why and is skipped.

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use isobench::env::EnvKind;
use isobench::env::vm::AccelRequest;
use isobench::run::{self, Testbed};
use isobench::scenario::VmSettings;
use isobench::workload::WorkloadSpec;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

fn testbed(kind: EnvKind, logs: &std::path::Path) -> Option<Testbed> {
    let prereqs = match run::preflight(&[kind], None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the {kind} group: {e}");
            return None;
        }
    };
    let vm = VmSettings::default();
    let id = format!("bench-{kind}-{}", std::process::id());
    match Testbed::build(&prereqs, &id, &[kind], &vm, AccelRequest::Auto, logs, &STOP) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("skipping the {kind} group: {e}");
            None
        }
    }
}

fn startup(c: &mut Criterion) {
    // criterion draws its charts with plotters, which has no system fonts here.
    isobench::report::chart::font_registered();
    let logs = std::env::temp_dir().join(format!("isobench-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("creating the bench log directory");
    // Removed also when a benchmark panics.
    struct RemoveOnDrop(std::path::PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _guard = RemoveOnDrop(logs.clone());
    for kind in EnvKind::ALL {
        let Some(bed) = testbed(kind, &logs) else {
            continue;
        };
        let env = bed
            .env(kind)
            .expect("the testbed has the environment it was built for");
        let mut group = c.benchmark_group(kind.as_str());
        if kind == EnvKind::Vm {
            group
                .sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .measurement_time(Duration::from_secs(40));
        }
        let log = logs.join(format!("{kind}.log"));
        group.bench_function("noop", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let start = Instant::now();
                    let r = run::run_instance(
                        env,
                        &WorkloadSpec::Noop,
                        &format!("bench-{i}"),
                        &log,
                        Duration::from_secs(30),
                        &STOP,
                    );
                    total += start.elapsed();
                    if let Some(e) = r.error {
                        panic!("{kind} instance failed: {e} (log: {})", log.display());
                    }
                }
                total
            })
        });
        group.finish();
    }
}

criterion_group!(benches, startup);
criterion_main!(benches);
