//! Synthetic run directories, for the history's and merge's tests and for
//! measuring the store (no command writes these): a `meta.json` and a
//! `results.csv` shaped exactly like a real run's, with values drawn from
//! a seeded generator, so a test knows what the history must find.

use crate::record::{RESULTS, RESULTS_HEADER};
use rand::{Rng, SeedableRng};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// One synthetic run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The run id (sorts by time, as real ones do).
    pub run_id: String,
    /// Start time, RFC 3339.
    pub started: String,
    /// Host label (`host.label` in `meta.json`).
    pub host: Option<String>,
    /// Scenario name.
    pub scenario: String,
    /// Git revision.
    pub revision: Option<String>,
    /// Workloads (each its own kind when it is one of isobench's).
    pub workloads: Vec<String>,
    /// Environments.
    pub environments: Vec<String>,
    /// Metrics per workload: (name, unit, better).
    pub metrics: Vec<(String, String, String)>,
    /// Repetitions per series.
    pub reps: u32,
    /// Level of a series: `f(workload, environment, metric)`.
    pub level: fn(&str, &str, &str) -> f64,
    /// Relative noise of each repetition (a sum of 4 uniforms, scaled).
    pub noise: f64,
    /// Seed of the noise.
    pub seed: u64,
}

impl Spec {
    /// Run `i` of a series of synthetic runs (one per hour from
    /// 2026-01-01), `noop` and `cpu` in native and container, startup and
    /// score.
    pub fn nth(i: usize) -> Spec {
        Spec {
            run_id: format!(
                "2026{:02}{:02}T{:02}0000Z-s{i:03}",
                1 + i / 720,
                1 + (i / 24) % 30,
                i % 24
            ),
            started: format!(
                "2026-{:02}-{:02}T{:02}:00:00Z",
                1 + i / 720,
                1 + (i / 24) % 30,
                i % 24
            ),
            host: Some("synthetic".into()),
            scenario: "quick".into(),
            revision: Some(format!("{:040x}", i + 1)),
            workloads: vec!["noop".into(), "cpu".into()],
            environments: vec!["native".into(), "container".into()],
            metrics: vec![
                ("startup_ms".into(), "ms".into(), "lower".into()),
                ("host_cpu_ms".into(), "ms".into(), "lower".into()),
            ],
            reps: 6,
            level: |_, e, _| if e == "native" { 1.5 } else { 4.5 },
            noise: 0.1,
            seed: i as u64,
        }
    }
}

/// Writes the run directory `root/<run_id>` and returns its path.
pub fn write(root: &Path, spec: &Spec) -> std::io::Result<PathBuf> {
    let dir = root.join(&spec.run_id);
    std::fs::create_dir_all(&dir)?;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(spec.seed);
    let mut csv = RESULTS_HEADER.join(",");
    csv.push('\n');
    let mut metrics = serde_json::Map::new();
    for w in &spec.workloads {
        for (m, unit, better) in &spec.metrics {
            metrics.insert(
                format!("{w}/{m}"),
                serde_json::json!({"unit": unit, "better": better}),
            );
        }
        for rep in 1..=spec.reps {
            for e in &spec.environments {
                for (m, unit, better) in &spec.metrics {
                    let u: f64 = (0..4)
                        .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
                        .sum();
                    let v = (spec.level)(w, e, m) * (1.0 + spec.noise * u);
                    let _ = writeln!(csv, "{w},{e},{rep},{m},{unit},{better},{v}");
                }
            }
        }
    }
    let workloads: Vec<serde_json::Value> = spec
        .workloads
        .iter()
        .map(|w| serde_json::json!({"name": w, "spec": {"kind": w}}))
        .collect();
    let mut host = serde_json::json!({
        "cpu_model": "Synthetic CPU", "cores": 2, "kernel": "6.1.0", "os": "Linux",
        "memory_mib": 4096, "cgroup_mode": "v2"
    });
    if let Some(label) = &spec.host {
        host["label"] = label.clone().into();
    }
    let meta = serde_json::json!({
        "run_id": spec.run_id,
        "status": "complete",
        "started": spec.started,
        "finished": spec.started,
        "wall_s": 1.0,
        "isobench": "synthetic",
        "revision": spec.revision,
        "host": host,
        "qemu": null, "accelerator": null, "guest_kernel": null, "image": null,
        "scenario": {"name": spec.scenario, "source": "synthetic", "workloads": workloads},
        "environments": {},
        "metrics": metrics,
        "order": "synthetic",
        "notes": ["synthetic run for tests"]
    });
    std::fs::write(dir.join(RESULTS), csv)?;
    std::fs::write(
        dir.join(crate::meta::META),
        serde_json::to_vec_pretty(&meta).map_err(std::io::Error::other)?,
    )?;
    Ok(dir)
}
