//! `scripts/ci-local.sh`: the CI workflow's steps (a run per host, merge,
//! check per host, job summary) with two simulated hosts, for real; and an
//! `isobench run` whose history store is damaged still succeeds. The only
//! test of the history that starts instances.

mod common;
use common::{is_root, require};
use std::process::Command;

#[test]
fn the_ci_workflow_steps_run_locally_with_two_hosts() {
    if !require(
        is_root(),
        "the ci-local script runs containers, which needs root",
    ) {
        return;
    }
    let work = std::env::temp_dir().join(format!("isobench-ci-local-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let out = Command::new("scripts/ci-local.sh")
        .arg(&work)
        .env("ISOBENCH", env!("CARGO_BIN_EXE_isobench"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let summary = std::fs::read_to_string(work.join("summary.md")).unwrap();
    for host in ["ci-host-a", "ci-host-b"] {
        assert!(summary.contains(&format!("## {host}")), "{summary}");
        let meta =
            std::fs::read_to_string(work.join("artifacts").join(host).join("meta.json")).unwrap();
        assert!(meta.contains(&format!("\"label\": \"{host}\"")), "{meta}");
        assert!(summary.contains(&format!("noop@{host}")), "{summary}");
    }
    assert_eq!(summary.matches("**PASS**").count(), 2, "{summary}");
    assert!(summary.contains("| workload | environment | metric | ci-host-a | ci-host-b |"));
    // --no-history: the runners wrote no store.
    assert!(
        !work
            .join("runner-ci-host-a")
            .join("history.sqlite")
            .exists()
    );

    // A damaged store: the run succeeds, warns, and keeps its directory.
    let store = work.join("damaged.sqlite");
    std::fs::write(&store, vec![b'x'; 8192]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_isobench"))
        .args([
            "run",
            "--env",
            "native",
            "--workload",
            "noop",
            "--reps",
            "1",
            "--quiet",
            "--history",
        ])
        .arg(&store)
        .arg("--out")
        .arg(work.join("runs"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("warning: the run was not added to the history store"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is damaged or not a SQLite database"),
        "{stderr}"
    );
    assert!(
        work.join("runs")
            .join("latest")
            .join("results.csv")
            .is_file()
    );
    // And a good one gets the run, with the revision given.
    let store = work.join("good.sqlite");
    let out = Command::new(env!("CARGO_BIN_EXE_isobench"))
        .args([
            "run",
            "--env",
            "native",
            "--workload",
            "noop",
            "--reps",
            "1",
            "--quiet",
        ])
        .args(["--revision", "abc123", "--history"])
        .arg(&store)
        .arg("--out")
        .arg(work.join("runs"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let show = Command::new(env!("CARGO_BIN_EXE_isobench"))
        .args(["history", "--history"])
        .arg(&store)
        .args(["show", "--workload", "noop", "--metric", "startup_ms"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("noop · native · startup_ms") && text.contains("abc123"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&work);
}
