//! Density: N idle instances started one after another in one environment
//! and all kept alive. For the k-th (its `repetition` in the records): its
//! `startup_ms` with k−1 already running, its own `pss_mib` (its process
//! tree; for a VM, QEMU) after `settle_ms`, `density_pss_total_mib` of all
//! k, and the host's `MemAvailable` drop since before the first
//! (`density_mem_drop_mib`) and per instance
//! (`density_mem_per_instance_mib`). Then all are ended at once.

use super::RunError;
use super::book::{Book, Entry};
use super::harness::Tally;
use super::instance::{Extras, InstanceResult, Running};
use super::progress::{Progress, outcome_line};
use crate::env::Environment;
use crate::scenario::PlannedWorkload;
use crate::workload::{Metric, WorkloadSpec};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// `MemAvailable` of the host, in MiB.
fn mem_available_mib() -> Option<f64> {
    let available = crate::meta::meminfo(Path::new("/proc"))?.mem_available?;
    Some(available as f64 / f64::from(1 << 20))
}

/// The density measurement of workload `w` in `env`. A failed instance
/// ends it (and counts in `tally`); a stop sets `tally.interrupted`.
pub fn run(
    w: &PlannedWorkload,
    env: &dyn Environment,
    book: &mut Book,
    progress: &mut Progress,
    stop: &AtomicBool,
    tally: &mut Tally,
) -> Result<(), RunError> {
    let WorkloadSpec::Density {
        instances,
        settle_ms,
    } = w.spec
    else {
        return Ok(());
    };
    let kind = env.kind();
    let baseline = mem_available_mib();
    let mut live: Vec<Running> = Vec::new();
    for k in 1..=instances {
        if stop.load(Ordering::SeqCst) {
            tally.interrupted = true;
            break;
        }
        let id = format!("{}-{kind}-i{k}", w.name);
        let entry = Entry {
            workload: &w.name,
            env: kind,
            repetition: k as u32,
            warmup: false,
            log: format!("logs/{id}.log"),
        };
        progress.start(&w.name, kind.as_str(), &format!("instance {k}/{instances}"));
        let started = Running::start(
            env,
            &w.spec,
            &id,
            Some(&book.dir().join(&entry.log)),
            w.timeout,
            Extras::default(),
        )
        .map(|mut r| {
            let ready = r.pump(stop, true);
            (r, ready)
        });
        let mut metrics = Vec::new();
        let mut error = None;
        match started {
            Ok((r, true)) => {
                std::thread::sleep(Duration::from_millis(settle_ms));
                let startup = r.result().startup.unwrap_or_default();
                metrics.push(Metric::lower(
                    "startup_ms",
                    "ms",
                    startup.as_secs_f64() * 1e3,
                ));
                live.push(r);
                // PSS of every live instance, read now (sharing changes as
                // instances come); the newest one's is its own.
                let pss: Vec<Option<f64>> = live
                    .iter_mut()
                    .map(|r| {
                        crate::sample::sample_once(Path::new("/proc"), r.pid(), true)
                            .and_then(|s| s.pss_kib)
                            .map(|kib| kib as f64 / 1024.0)
                    })
                    .collect();
                if let Some(Some(own)) = pss.last() {
                    metrics.push(Metric::lower("pss_mib", "MiB", *own));
                }
                let all: f64 = pss.iter().flatten().sum();
                metrics.push(Metric::lower("density_pss_total_mib", "MiB", all));
                if let (Some(before), Some(now)) = (baseline, mem_available_mib()) {
                    let drop = before - now;
                    metrics.push(Metric::lower("density_mem_drop_mib", "MiB", drop));
                    metrics.push(Metric::lower(
                        "density_mem_per_instance_mib",
                        "MiB",
                        drop / k as f64,
                    ));
                }
            }
            Ok((r, false)) => {
                let res = r.finish();
                tally.interrupted |= res.interrupted;
                error = Some(res.error.unwrap_or_else(|| "no `ready` frame".into()));
            }
            Err(res) => error = res.error,
        }
        let r = InstanceResult {
            error,
            ..InstanceResult::default()
        };
        progress.end(&outcome_line(&r, &metrics, &entry.log));
        book.record(&entry, &r, metrics)?;
        if r.error.is_some() {
            if !tally.interrupted {
                tally.failed += 1;
            }
            break;
        }
    }
    let n = live.len();
    for mut r in live {
        r.kill();
        let _ = r.finish();
    }
    book.note(format!(
        "{}: {n} {kind} instance(s) were alive at once; all ended",
        w.name
    ));
    book.save()
}
