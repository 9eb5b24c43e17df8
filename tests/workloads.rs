//! The workload catalog and command workloads, end to end.

mod common;

use common::*;

fn metric_values(
    rows: &[(String, String, u32, String, String, f64)],
    w: &str,
    e: &str,
    m: &str,
) -> Vec<f64> {
    rows.iter()
        .filter(|r| r.0 == w && r.1 == e && r.3 == m)
        .map(|r| r.5)
        .collect()
}

fn environments() -> Vec<&'static str> {
    let mut envs = vec!["native"];
    if require(is_root(), "the container environment needs root") {
        envs.push("container");
    }
    if require(
        vm_ready(),
        "QEMU and a guest kernel (scripts/setup.sh installs both)",
    ) {
        envs.push("vm");
    }
    envs
}

#[test]
fn every_builtin_workload_yields_its_score_everywhere() {
    let envs = environments();
    let s = Scratch::new("catalog");
    let scenario = format!(
        r#"
name = "catalog"
reps = 1
warmups = 0
environments = [{}]
[vm]
memory_mib = 256
[[workload]]
kind = "idle"
duration_ms = 50
[[workload]]
kind = "cpu"
rounds = 20
buffer_kib = 16
threads = 2
[[workload]]
kind = "memory"
array_mib = 4
passes = 1
[[workload]]
kind = "pagefault"
mib = 8
[[workload]]
kind = "syscall"
iterations = 20000
[[workload]]
kind = "fork"
count = 10
[[workload]]
kind = "net"
requests = 50
bulk_mib = 2
"#,
        toml_items(&envs)
    );
    let out = s.run("catalog.toml", &scenario, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = results(&latest(&s.reports()));
    for env in &envs {
        for w in ["cpu", "memory", "pagefault", "syscall", "fork", "net"] {
            let score = metric_values(&rows, w, env, "score");
            assert_eq!(score.len(), 1, "{w} in {env}: {rows:?}");
            assert!(
                score[0] > 0.0 && score[0].is_finite(),
                "{w} in {env}: {score:?}"
            );
        }
        assert_eq!(metric_values(&rows, "idle", env, "idle_ms").len(), 1);
        for m in ["rr_p50_us", "rr_p99_us", "bulk_mbs"] {
            assert_eq!(
                metric_values(&rows, "net", env, m).len(),
                1,
                "net {m} in {env}"
            );
        }
        for m in ["copy_mbs", "scale_mbs", "add_mbs", "triad_mbs"] {
            assert_eq!(
                metric_values(&rows, "memory", env, m).len(),
                1,
                "memory {m} in {env}"
            );
        }
    }
    assert_clean(&s);
}

#[test]
fn a_dynamically_linked_program_runs_everywhere_and_a_failing_one_fails_alone() {
    let envs = environments();
    if !require(
        std::process::Command::new("sysbench")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "sysbench (scripts/setup.sh installs it)",
    ) {
        return;
    }
    let s = Scratch::new("command");
    let scenario = format!(
        r#"
name = "cmd"
reps = 1
warmups = 0
environments = [{}]
[[workload]]
kind = "command"
name = "primes"
argv = ["sysbench", "cpu", "--threads=1", "--events=100", "--time=0", "run"]
metrics = [{{ name = "events_per_s", unit = "1/s", regex = 'events per second:\s+([0-9.]+)', better = "higher" }}]

[[workload]]
kind = "command"
name = "silent"
argv = ["sysbench", "--version"]
metrics = [{{ name = "never", unit = "1", regex = 'no such line ([0-9]+)', better = "higher" }}]
"#,
        toml_items(&envs)
    );
    let out = s.run("cmd.toml", &scenario, &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one workload fails: {}",
        text(&out)
    );
    let run = latest(&s.reports());
    let rows = results(&run);
    for env in &envs {
        let eps = metric_values(&rows, "primes", env, "events_per_s");
        assert_eq!(eps.len(), 1, "sysbench in {env}: {}", text(&out));
        assert!(eps[0] > 0.0);
    }
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    // (A program missing on the host is refused before the run starts:
    // tests/pipeline.rs.)
    assert!(
        report.contains("metric `never`") && report.contains("matched nothing"),
        "{report}"
    );
    assert_clean(&s);
}

#[test]
fn density_keeps_instances_alive_and_records_each() {
    let envs = environments();
    let s = Scratch::new("density");
    let scenario = format!(
        "name = \"d\"\nenvironments = [{}]\n[vm]\nmemory_mib = 128\n[[workload]]\nkind = \"density\"\ninstances = 3\nsettle_ms = 50\n",
        toml_items(&envs)
    );
    let out = s.run("d.toml", &scenario, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let run = latest(&s.reports());
    let rows = results(&run);
    for env in &envs {
        for m in [
            "startup_ms",
            "pss_mib",
            "density_pss_total_mib",
            "density_mem_drop_mib",
        ] {
            let v = metric_values(&rows, "density", env, m);
            assert_eq!(v.len(), 3, "{m} for each of 3 {env} instances: {rows:?}");
        }
        // All three were alive together: the total covers more than one.
        let totals = metric_values(&rows, "density", env, "density_pss_total_mib");
        let own = metric_values(&rows, "density", env, "pss_mib");
        assert!(totals[2] > own[2], "{env}: {totals:?} vs {own:?}");
    }
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("<section id=\"density\""),
        "the report has a density section"
    );
    for chart in ["density_startup", "density_memory"] {
        assert!(run.join(format!("charts/{chart}.svg")).exists(), "{chart}");
    }
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    for env in &envs {
        assert!(
            md.contains(&format!("| `density` | `{env}` | 3 |")),
            "the third {env} instance has its row in the per-instance table:\n{md}"
        );
    }
    assert_clean(&s);
}
