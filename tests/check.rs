//! The bounds gate, `isobench check --bounds FILE RUN_DIR`, end to end:
//! on run directories written by hand (exact figures, so the verdicts are
//! known), on the shipped bounds file, and on a real native + container
//! run (root only).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A `meta.json` of the default scenario with its VMs under TCG.
const META: &str = r#"{
  "run_id": "20260101T000000Z-c4ec",
  "status": "complete",
  "started": "2026-01-01T00:00:00Z",
  "finished": "2026-01-01T00:01:00Z",
  "wall_s": 60.0,
  "isobench": "0.1.0 (check test)",
  "host": {"cpu_model": "CPU", "cores": 2, "kernel": "6.1.0", "os": "Debian 12",
           "memory_mib": 4096, "cgroup_mode": "hybrid"},
  "qemu": "QEMU emulator version 7.2",
  "accelerator": {"accel": "tcg", "reason": "test"},
  "guest_kernel": null,
  "image": null,
  "scenario": {"name": "quick", "workloads": [
    {"name": "noop", "spec": {"kind": "noop"}},
    {"name": "cpu", "spec": {"kind": "cpu", "rounds": 1000, "buffer_kib": 64}}
  ]},
  "environments": {},
  "metrics": {
    "noop/startup_ms": {"unit": "ms", "better": "lower"},
    "cpu/startup_ms": {"unit": "ms", "better": "lower"},
    "cpu/score": {"unit": "rounds/s", "better": "higher"}
  },
  "order": "interleaved",
  "notes": []
}
"#;

/// workload, environment, metric, unit, better, the 3 values.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    [f64; 3],
);

/// Three repetitions a series: a container as fast as native for CPU
/// work, a VM under TCG at a fifth, startups of 1 ms, 4 ms and 2 s.
fn results() -> String {
    let mut s = String::from("workload,environment,repetition,metric,unit,better,value\n");
    let series: [Series; 6] = [
        (
            "noop",
            "native",
            "startup_ms",
            "ms",
            "lower",
            [1.0, 1.1, 0.9],
        ),
        (
            "noop",
            "container",
            "startup_ms",
            "ms",
            "lower",
            [4.0, 4.5, 3.8],
        ),
        (
            "noop",
            "vm",
            "startup_ms",
            "ms",
            "lower",
            [1900.0, 2100.0, 2000.0],
        ),
        (
            "cpu",
            "native",
            "score",
            "rounds/s",
            "higher",
            [4000.0, 3900.0, 4100.0],
        ),
        (
            "cpu",
            "container",
            "score",
            "rounds/s",
            "higher",
            [3950.0, 3900.0, 4050.0],
        ),
        (
            "cpu",
            "vm",
            "score",
            "rounds/s",
            "higher",
            [800.0, 780.0, 820.0],
        ),
    ];
    for rep in 0..3 {
        for (w, e, m, unit, better, values) in &series {
            s += &format!("{w},{e},{},{m},{unit},{better},{}\n", rep + 1, values[rep]);
        }
    }
    s
}

const BOUNDS: &str = r#"# bounds for the check test
scenario = "quick"
accelerator = "tcg"

[[bound]]
workload = "cpu"
environment = "container"
metric = "score"
unit = "rounds/s"
ratio_min = 0.9

[[bound]]
workload = "cpu"
environment = "vm"
metric = "score"
ratio_min = 0.1

[[bound]]
workload = "noop"
environment = "container"
metric = "startup_ms"
ratio_max = 10
max = 20

[[bound]]
workload = "noop"
environment = "vm"
metric = "startup_ms"
max = 5000
"#;

fn write_run(dir: &Path, results: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("meta.json"), META).unwrap();
    std::fs::write(dir.join("results.csv"), results).unwrap();
    dir.to_path_buf()
}

/// A copy of `run` in `to` whose container `cpu` scores are multiplied by
/// `factor`.
fn with_container_cpu_score(run: &Path, to: &Path, factor: f64) -> PathBuf {
    std::fs::create_dir_all(to).unwrap();
    std::fs::copy(run.join("meta.json"), to.join("meta.json")).unwrap();
    let text = std::fs::read_to_string(run.join("results.csv")).unwrap();
    let mut changed = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            if f.len() == 7 && f[0] == "cpu" && f[1] == "container" && f[3] == "score" {
                changed += 1;
                let v: f64 = f[6].parse().unwrap();
                format!("{},{}", f[..6].join(","), v * factor)
            } else {
                l.to_string()
            }
        })
        .collect();
    assert!(changed > 0, "no container cpu score in {}", run.display());
    std::fs::write(to.join("results.csv"), lines.join("\n") + "\n").unwrap();
    to.to_path_buf()
}

fn check(bounds: &Path, run: &Path, extra: &[&str]) -> Output {
    isobench()
        .arg("check")
        .arg("--bounds")
        .arg(bounds)
        .arg(run)
        .args(extra)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_good_run_passes_and_a_slower_container_fails_naming_the_series() {
    let s = Scratch::new("check-gate");
    let bounds = s.write("bounds.toml", BOUNDS);
    let run = write_run(&s.path.join("run"), &results());

    let out = check(&bounds, &run, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let md = stdout(&out);
    assert!(
        md.contains(
            "| cpu/container/score | ≥ 0.900× native | 0.988× (3950 / 4000 rounds/s, n = 3 / 3) |"
        ),
        "{md}"
    );
    assert!(md.contains("| noop/vm/startup_ms | ≤ 5000 ms | 2000 ms (n = 3) | [1900, 2100] range (n = 3) | pass |"), "{md}");
    assert!(md.contains("**PASS**: all 5 bounds hold."), "{md}");

    let slow = with_container_cpu_score(&run, &s.path.join("slow"), 0.8);
    let out = check(&bounds, &slow, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let md = stdout(&out);
    assert!(
        md.contains(
            "**FAIL**: 1 of 5 bounds not met: cpu/container/score ratio_min 0.900, measured 0.790."
        ),
        "{md}"
    );
    assert!(
        md.contains("| cpu/container/score | ≥ 0.900× native | 0.790×"),
        "{md}"
    );

    let out = check(&bounds, &slow, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["passed"], false);
    assert_eq!(json["failures"], 1);
    let failed: Vec<_> = json["bounds"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["verdict"] == "fail")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["workload"], "cpu");
    assert_eq!(failed[0]["environment"], "container");
    assert_eq!(failed[0]["metric"], "score");
}

#[test]
fn bad_input_exits_2_with_the_file_line_and_key() {
    let s = Scratch::new("check-bad");
    let run = write_run(&s.path.join("run"), &results());

    let typo = s.write(
        "typo.toml",
        &BOUNDS.replace("ratio_min = 0.9", "ratio_mn = 0.9"),
    );
    let out = check(&typo, &run, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "{}:10:1: bound[0].ratio_mn: unknown field `ratio_mn`",
            typo.display()
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "{}", text(&out));

    let native = s.write(
        "native.toml",
        "[[bound]]\nworkload = \"cpu\"\nenvironment = \"native\"\nmetric = \"score\"\nratio_min = 0.9\n",
    );
    let out = check(&native, &run, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains(
            "native.toml:5:13: bound[0].ratio_min: a ratio to native on the native series is 1"
        ),
        "{}",
        text(&out)
    );

    let kvm = s.write("kvm.toml", &BOUNDS.replace("\"tcg\"", "\"kvm\""));
    let out = check(&kvm, &run, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out)
            .contains("these bounds are for VMs under kvm, but this run's VMs ran under tcg"),
        "{}",
        text(&out)
    );

    let good = s.write("bounds.toml", BOUNDS);
    let out = check(&good, &s.path.join("nowhere"), &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("nowhere does not exist"),
        "{}",
        text(&out)
    );

    let out = check(&s.path.join("none.toml"), &run, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("cannot read bounds file"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_shipped_bounds_file_fails_a_run_that_lacks_its_series() {
    let s = Scratch::new("check-shipped");
    let run = write_run(&s.path.join("run"), &results());
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/bounds/quick-tcg.toml");
    let out = check(&shipped, &run, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let md = stdout(&out);
    assert!(
        md.contains("| memory/container/score | ≥ 0.400× native | — | — | **missing**: no such series in the run — did the scenario change? |"),
        "{md}"
    );
    assert!(md.contains("memory/container/score missing"), "{md}");
}

#[test]
fn a_real_native_and_container_run_is_judged() {
    if !require(is_root(), "isobench's container needs root") {
        return;
    }
    let s = Scratch::new("check-real");
    let out = s
        .isobench()
        .args([
            "run",
            "--env",
            "native,container",
            "--workload",
            "noop,cpu",
            "--reps",
            "3",
            "--out",
        ])
        .arg(s.reports())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let run = latest(&s.reports());

    // The run's own ratio, from its summary: a bound just below it holds,
    // and the same bound fails once the container's scores are 20% lower,
    // however noisy the host was.
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    let ratio = summary["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| {
            x["workload"] == "cpu" && x["environment"] == "container" && x["metric"] == "score"
        })
        .and_then(|x| x["ratio_to_native"].as_f64())
        .expect("a container cpu score with its ratio to native");
    let bounds = s.write(
        "bounds.toml",
        &format!(
            "[[bound]]\nworkload = \"cpu\"\nenvironment = \"container\"\nmetric = \"score\"\n\
             ratio_min = {}\n\n[[bound]]\nworkload = \"noop\"\nenvironment = \"container\"\n\
             metric = \"startup_ms\"\nmax = 1000\n",
            ratio * 0.9
        ),
    );
    let out = check(&bounds, &run, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        stdout(&out).contains("**PASS**: all 2 bounds hold"),
        "{}",
        text(&out)
    );

    let slow = with_container_cpu_score(&run, &s.path.join("slow"), 0.8);
    let out = check(&bounds, &slow, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stdout(&out).contains("**FAIL**: 1 of 2 bounds not met: cpu/container/score ratio_min"),
        "{}",
        text(&out)
    );
}
