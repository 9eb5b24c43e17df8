//! Runtime cost per environment: the `cpu` and `syscall` workloads, timed by
//! the agent inside each environment, so startup and teardown are left out.
//!
//! Groups: `native`, `container` (needs root), `vm` (needs QEMU and a guest
//! kernel; flat sampling, 10 samples). A group whose prerequisite is missing
//! prints why and is skipped.
//!
//! Each criterion iteration is one fresh instance running one workload; the
//! time criterion records for it is the workload's own interval, measured
//! by the agent with the monotonic clock of its environment (for a VM the
//! guest's clock, which under TCG runs at host speed):
//!
//! - `cpu`: [`CPU_ROUNDS`] hash rounds over a [`CPU_BUFFER_KIB`] KiB buffer
//!   on one thread (the agent's `elapsed_ms`);
//! - `syscall`: [`SYSCALL_ITERATIONS`] trivial system calls (the agent's
//!   ns per call × the iterations).
//!
//! At the end, a table gives every benchmark's median and its ratio to the
//! native median of the same workload, from the very same instances.

mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use isobench::env::EnvKind;
use isobench::run;
use isobench::workload::WorkloadSpec;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);

/// Hash rounds of the `cpu` benchmark (about 60 ms natively here).
const CPU_ROUNDS: u64 = 1_000;
/// Buffer hashed per round, in KiB.
const CPU_BUFFER_KIB: u64 = 16;
/// System calls of the `syscall` benchmark (about 20 ms natively here).
const SYSCALL_ITERATIONS: u64 = 200_000;

/// Every measured interval, per `(workload, environment)`, for the table.
static TIMES: Mutex<BTreeMap<(String, String), Vec<Duration>>> = Mutex::new(BTreeMap::new());

/// The interval the agent measured for one instance of `spec`.
fn measured(spec: &WorkloadSpec, r: &run::InstanceResult) -> Option<Duration> {
    let metric = |name: &str| r.metrics.iter().find(|m| m.name == name).map(|m| m.value);
    let secs = match spec {
        WorkloadSpec::Cpu { .. } => metric("elapsed_ms")? / 1e3,
        WorkloadSpec::Syscall { iterations } => metric("score")? * *iterations as f64 / 1e9,
        _ => return None,
    };
    (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

fn workloads(c: &mut Criterion) {
    // criterion draws its charts with plotters, which has no system fonts here.
    isobench::report::chart::font_registered();
    let logs_dir = common::Logs::new("bench-wl");
    let logs = logs_dir.0.clone();
    let specs = [
        (
            "cpu",
            WorkloadSpec::Cpu {
                rounds: CPU_ROUNDS,
                buffer_kib: CPU_BUFFER_KIB,
                threads: 1,
            },
        ),
        (
            "syscall",
            WorkloadSpec::Syscall {
                iterations: SYSCALL_ITERATIONS,
            },
        ),
    ];
    for kind in EnvKind::DEFAULT {
        let Some(bed) = common::testbed(kind, "bench-wl", &logs, &STOP) else {
            continue;
        };
        let env = bed
            .env(kind)
            .expect("the testbed has the environment it was built for");
        let mut group = c.benchmark_group(kind.as_str());
        if kind == EnvKind::Vm {
            common::vm_sampling(&mut group);
        } else {
            group.sample_size(30);
        }
        let log = logs.join(format!("{kind}.log"));
        for (name, spec) in &specs {
            group.bench_function(*name, |b| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for i in 0..iters {
                        let r = run::run_instance(
                            env,
                            spec,
                            &format!("bench-{name}-{i}"),
                            Some(&log),
                            Duration::from_secs(120),
                            &STOP,
                        );
                        if let Some(e) = &r.error {
                            panic!("{kind}/{name} failed: {e} (log: {})", log.display());
                        }
                        let t = measured(spec, &r).unwrap_or_else(|| {
                            panic!("{kind}/{name}: the agent reported no time: {:?}", r.metrics)
                        });
                        TIMES
                            .lock()
                            .unwrap()
                            .entry((name.to_string(), kind.to_string()))
                            .or_default()
                            .push(t);
                        total += t;
                    }
                    total
                })
            });
        }
        group.finish();
    }
    print_table();
}

/// Medians of every benchmark, and each over the native median.
fn print_table() {
    let times = TIMES.lock().unwrap();
    if times.is_empty() {
        return;
    }
    println!("\nworkload  environment     n     median   × native");
    let mut keys: Vec<&(String, String)> = times.keys().collect();
    keys.sort_by_key(|(w, e)| (w.clone(), EnvKind::ALL.iter().position(|k| k.as_str() == e)));
    for key in keys {
        let (workload, env) = key;
        let v = &times[key];
        let m = common::median_ms(v);
        let ratio = times
            .get(&(workload.clone(), EnvKind::Native.to_string()))
            .map(|n| common::median_ms(n))
            .filter(|n| *n > 0.0)
            .map_or("—".to_string(), |n| format!("{:.2}×", m / n));
        println!(
            "{workload:<9} {env:<12} {:>5} {:>9.2} ms {ratio:>9}",
            v.len(),
            m
        );
    }
}

criterion_group!(benches, workloads);
criterion_main!(benches);
