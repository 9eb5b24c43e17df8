//! The history store, its trends and change points, `history report` and
//! `isobench merge`, on generated run directories (no instance runs here;
//! `tests/ci_local.rs` does real runs).

use isobench::history::changepoint::Settings;
use isobench::history::synth::{self, Spec};
use isobench::history::{Filter, Store};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_isobench"))
}

fn tmp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("isobench-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// 50 runs; the container's startup is 20% slower from run 30 on.
fn stepped(root: &Path) -> Vec<PathBuf> {
    (0..50)
        .map(|i| {
            let mut s = Spec::nth(i);
            s.level = if i >= 29 {
                |_, e, m| match (e, m) {
                    ("container", "startup_ms") => 4.5 * 1.2,
                    ("native", _) => 1.5,
                    _ => 4.5,
                }
            } else {
                |_, e, _| if e == "native" { 1.5 } else { 4.5 }
            };
            synth::write(root, &s).unwrap()
        })
        .collect()
}

#[test]
fn a_step_at_run_30_of_50_is_found_there_and_nowhere_else() {
    let root = tmp("hist-step");
    let dirs = stepped(&root.join("runs"));
    let store_path = root.join("history.sqlite");
    let mut store = Store::open(&store_path).unwrap();
    for d in &dirs {
        store.import(d, None).unwrap();
    }
    let h = store
        .history(&Filter::default(), &Settings::default())
        .unwrap();
    assert_eq!(h.runs.len(), 50);
    for s in &h.series {
        let key = &s.key;
        if key.environment == "container" && key.metric == "startup_ms" {
            assert_eq!(
                s.change_points.len(),
                1,
                "{}: {:?}",
                key.label(),
                s.change_points
            );
            let run = s.change_points[0].index + 1;
            assert!((29..=31).contains(&run), "{}: run {run}", key.label());
        } else {
            assert!(
                s.change_points.is_empty(),
                "{}: {:?}",
                key.label(),
                s.change_points
            );
        }
    }
    // The ratio to native moves with it.
    let ratio = h
        .ratios
        .iter()
        .find(|r| r.key.workload == "noop" && r.key.metric == "startup_ms")
        .unwrap();
    assert_eq!(ratio.change_points.len(), 1, "{:?}", ratio.change_points);
    assert!((28..=30).contains(&ratio.change_points[0].index));

    // `history show` through the command line: a filter and --last.
    let out = bin()
        .args(["history", "--history"])
        .arg(&store_path)
        .args([
            "show",
            "--workload",
            "noop",
            "--env",
            "container",
            "--metric",
            "startup_ms",
            "--last",
            "5",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("-s0").count(), 5, "{text}");
    assert!(
        text.contains("noop · container · startup_ms (ms, lower is better) · host synthetic"),
        "{text}"
    );
    assert!(!text.contains("native ·"), "{text}");

    // Importing everything again adds nothing.
    let mut again = bin();
    again
        .args(["history", "--history"])
        .arg(&store_path)
        .arg("import")
        .args(&dirs);
    let out = again.output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.matches("already in the store").count(), 50);
    assert!(text.contains(": 50 run(s)"), "{text}");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn history_report_of_100_runs_and_the_store_size_per_run() {
    let root = tmp("hist-100");
    let store_path = root.join("history.sqlite");
    let mut store = Store::open(&store_path).unwrap();
    for i in 0..100 {
        let d = synth::write(&root.join("runs"), &Spec::nth(i)).unwrap();
        store.import(&d, None).unwrap();
    }
    drop(store);
    let bytes = std::fs::metadata(&store_path).unwrap().len();
    let meta_bytes = std::fs::metadata(
        root.join("runs")
            .join(Spec::nth(0).run_id)
            .join("meta.json"),
    )
    .unwrap()
    .len();
    eprintln!(
        "store: {bytes} bytes for 100 runs = {} bytes per run (48 observations and a {meta_bytes}-byte meta.json each)",
        bytes / 100
    );
    let out_dir = root.join("page");
    let t = Instant::now();
    let out = bin()
        .args(["history", "--history"])
        .arg(&store_path)
        .arg("report")
        .arg("--out")
        .arg(&out_dir)
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("history report of 100 runs: {:.2} s", took.as_secs_f64());
    let html = std::fs::read_to_string(out_dir.join("index.html")).unwrap();
    assert!(html.matches("<tr><td>").count() >= 100);
    // One ratio chart per family that ran, one trend chart per series.
    let charts: Vec<String> = std::fs::read_dir(out_dir.join("charts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let svgs = charts.iter().filter(|c| c.ends_with(".svg")).count();
    let pngs = charts.iter().filter(|c| c.ends_with(".png")).count();
    assert_eq!(svgs, pngs);
    assert!(
        charts
            .iter()
            .any(|c| c.contains("-ratio-synthetic-startup.svg")),
        "{charts:?}"
    );
    // cpu's host_cpu_ms is in the CPU family, noop's in none.
    assert_eq!(
        svgs,
        8 + 3,
        "8 series + ratio charts of startup, cpu, other: {charts:?}"
    );
    for c in charts.iter().filter(|c| c.ends_with(".svg")) {
        assert!(html.contains(&format!("charts/{c}")), "{c} is on the page");
    }
    let _ = std::fs::remove_dir_all(&root);
}

/// `isobench merge RUNS... [extra] --out OUT`.
fn merge(runs: &[&Path], extra: &[&str], out: &Path) -> std::process::Output {
    bin()
        .arg("merge")
        .args(runs)
        .args(extra)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn merge_puts_hosts_side_by_side_and_refuses_other_scenarios() {
    let root = tmp("hist-merge");
    let mut a = Spec::nth(0);
    a.host = Some("kvm-box".into());
    let mut b = Spec::nth(1);
    b.host = Some("tcg-box".into());
    b.level = |_, e, _| if e == "native" { 3.0 } else { 6.0 };
    let da = synth::write(&root, &a).unwrap();
    let db = synth::write(&root, &b).unwrap();
    let out_dir = root.join("merged");
    let out = merge(&[&da, &db], &[], &out_dir);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = std::fs::read_to_string(out_dir.join("report.md")).unwrap();
    assert!(
        report.contains("noop@kvm-box") && report.contains("noop@tcg-box"),
        "{report}"
    );
    let fleet = std::fs::read_to_string(out_dir.join("fleet.md")).unwrap();
    assert!(
        fleet.contains("| workload | environment | metric | kvm-box | tcg-box |"),
        "{fleet}"
    );
    // Each host against its own native: 4.5/1.5 = 3 and 6/3 = 2.
    let row = fleet
        .lines()
        .find(|l| l.starts_with("| noop | container | startup_ms |"))
        .unwrap();
    let cells: Vec<&str> = row.split('|').map(str::trim).collect();
    let ratio = |c: &str| c.split('×').next().unwrap().parse::<f64>().unwrap();
    assert!((ratio(cells[4]) - 3.0).abs() < 0.4, "{row}");
    assert!((ratio(cells[5]) - 2.0).abs() < 0.3, "{row}");
    assert!(out_dir.join("report.html").is_file() && out_dir.join("summary.json").is_file());
    // Merging again into the merge's own directory is fine; into a run, not.
    let again = |out_dir: &Path| merge(&[&da, &db], &[], out_dir);
    assert!(again(&out_dir).status.success());
    let results = |run: &Path| std::fs::read(run.join("results.csv")).unwrap();
    let before = [results(&da), results(&db)];
    for run in [&da, &db] {
        let out = again(run);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("one of the runs being merged"), "{err}");
    }
    let other = synth::write(&root, &Spec::nth(3)).unwrap();
    let other_before = results(&other);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(other.join("meta.json")).unwrap()).unwrap();
    let out = again(&other);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let id = meta["run_id"].as_str().unwrap();
    assert!(err.contains(&format!("it holds run {id}")), "{err}");
    assert_eq!([results(&da), results(&db)], before);
    assert_eq!(results(&other), other_before);
    let mine = root.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("report.md"), "my notes").unwrap();
    let out = again(&mine);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("it is not empty, and no earlier merge wrote it"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("report.md")).unwrap(),
        "my notes"
    );

    let mut c = Spec::nth(2);
    c.scenario = "teaching".into();
    let dc = synth::write(&root, &c).unwrap();
    let refused = root.join("refused");
    let out = merge(&[&da, &dc], &[], &refused);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`quick`") && err.contains("`teaching`"),
        "{err}"
    );
    assert!(err.contains("--allow-different-scenarios"), "{err}");
    assert!(!refused.exists(), "nothing written when refused");
    let out = merge(&[&da, &dc], &["--allow-different-scenarios"], &refused);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_damaged_store_is_named_with_the_fix() {
    let root = tmp("hist-damaged");
    let store = root.join("history.sqlite");
    std::fs::write(
        &store,
        b"not a database at all, but long enough to be read as one....",
    )
    .unwrap();
    let d = synth::write(&root, &Spec::nth(0)).unwrap();
    let out = bin()
        .args(["history", "--history"])
        .arg(&store)
        .arg("import")
        .arg(&d)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is damaged or not a SQLite database") && err.contains("mv "),
        "{err}"
    );
    // What `isobench run` does at its end: a warning, the run kept.
    let warning = isobench::history::command::append_run(&store, &d).unwrap_err();
    assert!(
        warning.contains("the run was not added") && warning.contains("--no-history"),
        "{warning}"
    );
    assert!(d.join("results.csv").is_file());
    let out = bin()
        .args(["history", "--history"])
        .arg(root.join("none.sqlite"))
        .arg("show")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let _ = std::fs::remove_dir_all(&root);
}
