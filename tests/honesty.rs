//! Every figure honest: each series keeps its own unit and direction in
//! every output file, and `compare` works on the default scenario and
//! reads latencies the right way round.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The headline figure of every built-in workload of the default scenario:
/// its unit and whether higher is better.
const HEADLINES: &[(&str, &str, &str)] = &[
    ("cpu", "rounds/s", "higher"),
    ("memory", "MB/s", "higher"),
    ("pagefault", "ns/page", "lower"),
    ("syscall", "ns/call", "lower"),
    ("fork", "forks/s", "higher"),
    ("fileio", "IOPS", "higher"),
    ("net", "µs", "lower"),
];

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Runs the default scenario natively and returns its run directory.
fn default_run(s: &Scratch, extra: &[&str]) -> PathBuf {
    let out = s
        .isobench()
        .args(["run", "--env", "native", "--out"])
        .arg(s.reports())
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    latest(&s.reports())
}

#[test]
fn every_headline_keeps_its_unit_and_direction_in_every_output() {
    let s = Scratch::new("directions");
    let run = default_run(&s, &["--reps", "1"]);
    let rows = std::fs::read_to_string(run.join("results.csv")).unwrap();
    let meta = json(&run.join("meta.json"));
    let summary = json(&run.join("summary.json"));
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    let smaller = json(&run.join("benchmark-action-smaller.json"));
    let bigger = json(&run.join("benchmark-action-bigger.json"));
    let names = |doc: &serde_json::Value| -> Vec<String> {
        doc.as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (smaller, bigger) = (names(&smaller), names(&bigger));
    for (w, unit, better) in HEADLINES {
        let row = format!("{w},native,1,score,{unit},{better},");
        assert!(rows.contains(&row), "results.csv lacks `{row}`");
        let info = &meta["metrics"][format!("{w}/score")];
        assert_eq!(info["unit"], *unit, "meta.json {w}");
        assert_eq!(info["better"], *better, "meta.json {w}");
        let series = summary["series"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["workload"] == *w && x["metric"] == "score")
            .unwrap_or_else(|| panic!("summary.json has no {w} score"));
        assert_eq!(series["unit"], *unit, "summary.json {w}");
        assert_eq!(series["better"], *better, "summary.json {w}");
        let cell = format!("| {w} | native | score ({unit}, {better} is better) |");
        assert!(md.contains(&cell), "report.md lacks `{cell}`");
        let html_cell = format!(
            "<code>{w}</code></td><td><code>native</code></td><td><code>score</code><br><span class=\"dir\">{unit}, {better} is better</span>"
        );
        assert!(html.contains(&html_cell), "report.html lacks `{html_cell}`");
        let name = format!("quick/{w}/native/score");
        let (right, wrong) = if *better == "lower" {
            (&smaller, &bigger)
        } else {
            (&bigger, &smaller)
        };
        assert!(
            right.contains(&name),
            "{name} not in its benchmark-action file"
        );
        assert!(
            !wrong.contains(&name),
            "{name} in the wrong benchmark-action file"
        );
    }
    // Two copies of a default run compare clean.
    let copy = s.path.join("copy");
    copy_dir(&run, &copy);
    let out = compare(&run, &copy, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = compare(&run, &copy, &["--strict"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "--strict fails on inconclusive series"
    );
}

fn compare(base: &Path, cur: &Path, extra: &[&str]) -> std::process::Output {
    isobench()
        .arg("compare")
        .arg(base)
        .arg(cur)
        .args(extra)
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// A copy of `run` whose `net` scores are set to `value`, each rep 0.1%
/// above the one before: the copies' medians are in the ratio of their
/// values, and no host noise can make two of them overlap.
fn with_net_scores(run: &Path, to: &Path, value: f64) {
    copy_dir(run, to);
    let text = std::fs::read_to_string(run.join("results.csv")).unwrap();
    let mut out = String::new();
    let mut k = 0;
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() == 7 && fields[0] == "net" && fields[3] == "score" {
            let v = value * (1.0 + 0.001 * f64::from(k));
            k += 1;
            out.push_str(&format!("{},{v}\n", fields[..6].join(",")));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(k >= 8, "the run has {k} net scores");
    std::fs::write(to.join("results.csv"), out).unwrap();
}

#[test]
fn compare_reads_a_latency_the_right_way_round() {
    let s = Scratch::new("latency");
    let measured = default_run(&s, &["--workload", "net,cpu", "--reps", "8"]);
    let run = s.path.join("base");
    with_net_scores(&measured, &run, 10.0);
    let slower = s.path.join("slower");
    with_net_scores(&measured, &slower, 15.0);
    let out = compare(&run, &slower, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("- `net` in `native`: `score` +50.0%"),
        "{said}"
    );
    let faster = s.path.join("faster");
    with_net_scores(&measured, &faster, 7.0);
    let out = compare(&run, &faster, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let net = doc["series"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["workload"] == "net" && r["metric"] == "score")
        .unwrap();
    assert_eq!(net["verdict"], "improvement", "{net}");
    assert_eq!(net["better"], "lower");
    assert_eq!(doc["regressions"], 0);
}
