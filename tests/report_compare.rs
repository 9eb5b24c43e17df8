//! Reports and the regression gate on real runs: `isobench run` in the
//! native environment (fast, no root or VM needed), then `isobench report`
//! and `isobench compare` on what it wrote.

mod common;

use common::*;
use isobench::compare::{PERMUTATIONS, SEED};
use isobench::stats::permutation_test;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Twenty quick repetitions (well under a second natively). At alpha = 0.01
/// the gate's median test needs at least 8 per side to fire at all; 20
/// give it the power to see a 20% change on a busy shared host.
const GATE: &str = r#"
name = "gate"
description = "compare test"
reps = 20
warmups = 1

[[workload]]
kind = "noop"

[[workload]]
kind = "cpu"
rounds = 100
buffer_kib = 16
"#;

/// Runs `scenario` natively into the scratch directory; returns the run.
fn native_run(s: &Scratch, scenario: &str, reps: Option<&str>) -> PathBuf {
    let file = s.write("scenario.toml", scenario);
    let mut cmd = s.isobench();
    cmd.args(["run", "--env", "native", "--scenario"])
        .arg(&file)
        .arg("--out")
        .arg(s.reports());
    if let Some(r) = reps {
        cmd.args(["--reps", r]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    latest(&s.reports())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
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

type Row = (String, String, u32, String, String, f64);

fn write_results(run: &Path, rows: &[Row]) {
    let mut w = csv::Writer::from_path(run.join("results.csv")).unwrap();
    w.write_record(isobench::record::RESULTS_HEADER).unwrap();
    for r in rows {
        let better = direction(run, &r.0, &r.3);
        w.write_record([
            r.0.clone(),
            r.1.clone(),
            r.2.to_string(),
            r.3.clone(),
            r.4.clone(),
            better,
            r.5.to_string(),
        ])
        .unwrap();
    }
    w.flush().unwrap();
}

fn direction(run: &Path, workload: &str, metric: &str) -> String {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap();
    meta["metrics"][format!("{workload}/{metric}")]["better"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The tests of this file run their `isobench run`s one at a time, so they
/// do not add to each other's noise on a small machine.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

type Key = (String, String, String);

/// The factor that makes a metric 20% worse: slower for a time, lower for
/// a score.
fn worse_factor(run: &Path, workload: &str, metric: &str) -> f64 {
    if direction(run, workload, metric) == "lower" {
        1.2
    } else {
        0.8
    }
}

/// The series of a run whose own spread lets its repetitions show a 20%
/// change best, with the p-value the gate's test gives that change.
fn steadiest(run: &Path) -> (Key, f64, Vec<Row>) {
    let rows = results(run);
    let mut keys: Vec<Key> = Vec::new();
    for r in &rows {
        let k = (r.0.clone(), r.1.clone(), r.3.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let values = |k: &Key| -> Vec<f64> {
        rows.iter()
            .filter(|r| r.0 == k.0 && r.1 == k.1 && r.3 == k.2)
            .map(|r| r.5)
            .collect()
    };
    let (key, p) = keys
        .iter()
        .map(|k| {
            let a = values(k);
            let b: Vec<f64> = a
                .iter()
                .map(|v| v * worse_factor(run, &k.0, &k.2))
                .collect();
            (k.clone(), permutation_test(&a, &b, PERMUTATIONS, SEED))
        })
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .unwrap();
    if p >= 0.01 {
        for k in &keys {
            eprintln!("{k:?}: {:?}", values(k));
        }
    }
    (key, p, rows)
}

#[test]
fn compare_is_quiet_on_itself_and_catches_a_series_made_20_percent_worse() {
    let _serial = serial();
    let s = Scratch::new("gate");
    // On a busy host the repetitions of every series can spread so widely
    // that no 20% change is significant in them (the gate is right to stay
    // quiet then); the run is repeated up to three times to find a steady
    // series, as Firecracker's A/B tests rerun.
    let mut attempt = 0;
    let (run, key, p, rows) = loop {
        attempt += 1;
        let run = native_run(&s, GATE, None);
        let (key, p, rows) = steadiest(&run);
        if p < 0.01 || attempt == 3 {
            break (run, key, p, rows);
        }
        eprintln!("attempt {attempt}: no series steady enough (best p = {p}); running again");
    };

    // The run against itself: every p is 1, exit 0.
    let out = compare(&run, &run, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("**No regression**"), "{stdout}");
    assert!(stdout.contains("| cpu | native | score (rounds/s, higher is better) |"));

    // A copy with one series 20% worse: the steadiest one, whose change the
    // library's test on the raw numbers calls significant.
    assert!(
        p < 0.01,
        "in 3 runs no series was steady enough for 20 repetitions to show a 20% change \
         (best p = {p} for {key:?}); the host is very noisy"
    );
    let factor = |metric: &str| worse_factor(&run, &key.0, metric);
    let worse = s.path.join("worse");
    copy_dir(&run, &worse);
    let scaled: Vec<Row> = rows
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if (&r.0, &r.1, &r.3) == (&key.0, &key.1, &key.2) {
                r.5 *= factor(&r.3);
            }
            r
        })
        .collect();
    write_results(&worse, &scaled);

    let table = s.path.join("compare.md");
    let out = compare(&run, &worse, &["--output", table.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("**1 regression**"), "{stdout}");
    let change = if factor(&key.2) > 1.0 {
        "+20.0%"
    } else {
        "-20.0%"
    };
    assert!(
        stdout.contains(&format!(
            "- `{}` in `{}`: `{}` {change}",
            key.0, key.1, key.2
        )),
        "{stdout}"
    );
    assert_eq!(std::fs::read_to_string(&table).unwrap(), stdout);

    // The other way round the same series improved: no regression.
    let out = compare(&worse, &run, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("improvement"));

    // A noise threshold above the change silences it.
    let out = compare(&run, &worse, &["--noise", "25"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn compare_names_bad_input_and_exits_2() {
    let _serial = serial();
    let s = Scratch::new("gatebad");
    let run = native_run(&s, GATE, Some("2"));
    let expect_2 = |out: std::process::Output, needle: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{needle:?} not in: {err}");
        assert!(!err.contains("panicked"), "{err}");
    };

    expect_2(
        compare(&run, Path::new("/nonexistent/run"), &[]),
        "current directory /nonexistent/run does not exist",
    );
    let empty = s.path.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    expect_2(compare(&empty, &run, &[]), "has no meta.json");

    let corrupt = s.path.join("corrupt");
    copy_dir(&run, &corrupt);
    let mut csv = std::fs::read_to_string(corrupt.join("results.csv")).unwrap();
    let line = csv.lines().count() + 1;
    csv.push_str("cpu,native,two,score,rounds/s,1\n");
    std::fs::write(corrupt.join("results.csv"), csv).unwrap();
    expect_2(
        compare(&run, &corrupt, &[]),
        &format!("results.csv:{line}:"),
    );

    let other = s.path.join("other");
    copy_dir(&run, &other);
    let meta = std::fs::read_to_string(other.join("meta.json")).unwrap();
    std::fs::write(
        other.join("meta.json"),
        meta.replace("\"name\": \"gate\"", "\"name\": \"other\""),
    )
    .unwrap();
    expect_2(
        compare(&run, &other, &[]),
        "different scenarios: baseline `gate`, current `other`",
    );

    let params = s.path.join("params");
    copy_dir(&run, &params);
    let meta = std::fs::read_to_string(params.join("meta.json")).unwrap();
    std::fs::write(
        params.join("meta.json"),
        meta.replace("\"rounds\": 100", "\"rounds\": 200"),
    )
    .unwrap();
    expect_2(
        compare(&run, &params, &[]),
        "workload `cpu` has different parameters",
    );

    expect_2(compare(&run, &run, &["--alpha", "1.5"]), "--alpha");
    expect_2(compare(&run, &run, &["--noise=-1"]), "--noise");

    // Three repetitions cannot reach p < 0.01: said, and not a failure.
    let out = compare(&run, &run, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("inconclusive: n = ")
            && stdout.contains(" < 8 |")
            && stdout.contains("--reps 8 or more"),
        "{stdout}"
    );
}

/// The ids of the family sections of a report.html, each checked to hold
/// an inline SVG chart.
fn families_with_charts(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in html.split("<section id=\"").skip(1) {
        let (id, rest) = part.split_once('"').unwrap();
        if !rest.starts_with(" class=\"family\">") {
            continue;
        }
        let body = &rest[..rest.find("</section>").unwrap()];
        assert!(
            body.contains("<figure id=\"chart-") && body.contains("<svg "),
            "family section {id} has no chart"
        );
        out.push(id.to_string());
    }
    out
}

#[test]
fn the_report_of_a_real_run_has_a_chart_per_family_and_re_renders_identically() {
    let _serial = serial();
    let s = Scratch::new("html");
    let run = native_run(&s, GATE, Some("3"));
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    // max_rss_mib (from wait4) puts every run in the memory family.
    assert_eq!(families_with_charts(&html), ["startup", "memory", "cpu"]);
    assert!(!html.contains("tcg-warning"), "no VM ran");
    assert!(html.contains("<h2>Host and system</h2>"));
    for f in [
        "report.md",
        "summary.json",
        "bmf.json",
        "benchmark-action-smaller.json",
        "benchmark-action-bigger.json",
        "charts/startup.svg",
        "charts/startup.png",
        "charts/cpu.svg",
        "charts/cpu.png",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    let bmf: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("bmf.json")).unwrap()).unwrap();
    assert!(bmf["gate/cpu/native"]["score"]["value"].as_f64().unwrap() > 0.0);
    let bigger: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("benchmark-action-bigger.json")).unwrap())
            .unwrap();
    assert!(
        bigger
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "gate/cpu/native/score" && e["unit"] == "rounds/s")
    );

    // Everything comes back the same from the records alone.
    let names = [
        "report.html",
        "report.md",
        "summary.json",
        "bmf.json",
        "benchmark-action-smaller.json",
        "charts/cpu.svg",
    ];
    let before: Vec<Vec<u8>> = names
        .iter()
        .map(|f| std::fs::read(run.join(f)).unwrap())
        .collect();
    for f in names {
        std::fs::remove_file(run.join(f)).unwrap();
    }
    let out = isobench().arg("report").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    for (f, bytes) in names.iter().zip(before) {
        assert_eq!(std::fs::read(run.join(f)).unwrap(), bytes, "{f} differs");
    }
}

/// Runs `cmd` and returns its output; fails the test (killing the command)
/// if it has not ended within `limit`.
fn output_within(cmd: &mut std::process::Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}; killed\n{}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// `isobench report DIR` and `isobench compare DIR GOOD` must both refuse
/// `dir` within a few seconds, exit 2 and say `needle`.
fn both_refuse(good: &Path, dir: &Path, needle: &str) {
    let limit = Duration::from_secs(20);
    // A memory limit, so that a reader that does not stop fails here
    // instead of taking the host's memory.
    let capped = |args: &[&std::ffi::OsStr]| {
        let mut cmd = std::process::Command::new("sh");
        cmd.arg("-c")
            .arg("ulimit -v 4194304 && exec \"$@\"")
            .arg("sh")
            .arg(env!("CARGO_BIN_EXE_isobench"))
            .args(args);
        cmd
    };
    for (what, mut cmd) in [
        ("report", capped(&["report".as_ref(), dir.as_os_str()])),
        (
            "compare",
            capped(&["compare".as_ref(), dir.as_os_str(), good.as_os_str()]),
        ),
    ] {
        let out = output_within(&mut cmd, limit);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {}", text(&out));
        assert!(err.contains(needle), "{what}: {needle:?} not in: {err}");
        assert!(!err.contains("panicked"), "{what}: {err}");
    }
}

/// A copy of `run` named `name`, with `edit` applied to its results.csv
/// text (rows after the header; the header is line 1).
fn with_results(s: &Scratch, run: &Path, name: &str, edit: impl Fn(&mut Vec<String>)) -> PathBuf {
    let dir = s.path.join(name);
    copy_dir(run, &dir);
    let text = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    edit(&mut lines);
    std::fs::write(dir.join("results.csv"), lines.join("\n") + "\n").unwrap();
    dir
}

#[test]
fn damaged_run_directories_are_refused_with_the_file_and_line() {
    let _serial = serial();
    let s = Scratch::new("damaged");
    // A directory named `latest` where the run would put its link is the
    // user's: the run leaves it alone, says so, and still succeeds.
    let mine = s.reports().join("latest");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("notes.txt"), "mine").unwrap();
    let file = s.write("scenario.toml", GATE);
    let out = s
        .isobench()
        .args(["run", "--env", "native", "--reps", "2", "--scenario"])
        .arg(&file)
        .arg("--out")
        .arg(s.reports())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("latest is a directory, not a link isobench made; left it alone"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(mine.join("notes.txt")).unwrap(),
        "mine"
    );
    let run = std::fs::read_dir(s.reports())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        // The run's directory: not `latest`, nor the history store beside it.
        .find(|p| p.is_dir() && p.file_name().unwrap() != "latest")
        .unwrap();

    // A FIFO: a blocking open would wait for a writer forever.
    for name in ["results.csv", "meta.json", "instances.jsonl"] {
        let dir = s.path.join(format!("fifo-{name}"));
        copy_dir(&run, &dir);
        std::fs::remove_file(dir.join(name)).unwrap();
        nix::unistd::mkfifo(&dir.join(name), nix::sys::stat::Mode::S_IRWXU).unwrap();
        if name == "instances.jsonl" {
            // Only `report` reads it.
            let out = output_within(isobench().arg("report").arg(&dir), Duration::from_secs(20));
            assert_eq!(out.status.code(), Some(2), "{}", text(&out));
            assert!(text(&out).contains(&format!("{name} is a FIFO (named pipe)")));
        } else {
            both_refuse(&run, &dir, &format!("{name} is a FIFO (named pipe)"));
        }
    }

    // A link to /dev/zero never ends.
    let zero = s.path.join("zero");
    copy_dir(&run, &zero);
    std::fs::remove_file(zero.join("results.csv")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", zero.join("results.csv")).unwrap();
    both_refuse(
        &run,
        &zero,
        "results.csv (a link to /dev/zero) is a character device, not a regular file",
    );

    // A value cut off: the line and the value are named.
    let cut = with_results(&s, &run, "cut", |l| {
        let v = l[3].rfind(',').unwrap();
        l[3].truncate(v + 2);
        l[3].push('e');
    });
    let lines = std::fs::read_to_string(cut.join("results.csv")).unwrap();
    let row: Vec<&str> = lines.lines().nth(3).unwrap().split(',').collect();
    both_refuse(
        &run,
        &cut,
        &format!(
            "results.csv:4: value `{}` of {}/native repetition {} metric {} is not a number",
            row[6], row[0], row[2], row[3]
        ),
    );
    // The file ends in the middle of a row.
    let short = with_results(&s, &run, "short", |l| {
        let last = l.len() - 1;
        l[last].truncate(3);
    });
    let n = std::fs::read_to_string(short.join("results.csv"))
        .unwrap()
        .lines()
        .count();
    both_refuse(
        &run,
        &short,
        &format!("results.csv:{n}: the row has 1 field"),
    );

    // A row twice: statistics would count one repetition two times.
    let twice = with_results(&s, &run, "twice", |l| {
        let row = l[2].clone();
        l.push(row);
    });
    let rows = results(&run);
    let r = &rows[1];
    let n = rows.len() + 2;
    both_refuse(
        &run,
        &twice,
        &format!(
            "results.csv:{n}: duplicate row for {}/{} repetition {} metric {} (first at line 3)",
            r.0, r.1, r.2, r.3
        ),
    );

    // An environment isobench does not have.
    let unknown = with_results(&s, &run, "unknown", |l| {
        l[2] = l[2].replacen(",native,", ",kata,", 1);
    });
    both_refuse(&run, &unknown, "results.csv:3: unknown environment `kata`");

    // NaN and infinities are no measurements.
    for (i, value) in ["NaN", "inf", "-inf"].into_iter().enumerate() {
        let bad = with_results(&s, &run, &format!("nonfinite{i}"), |l| {
            let v = l[4].rfind(',').unwrap();
            l[4].truncate(v + 1);
            l[4].push_str(value);
        });
        both_refuse(&run, &bad, &format!("results.csv:5: value `{value}` of"));
    }

    // A file where a directory should be, and nothing at all.
    let file = s.write("not-a-dir", "x");
    let out = isobench().arg("report").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{} is not a directory", file.display())),
        "{}",
        text(&out)
    );
    let out = compare(&file, &run, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("baseline {} is not a directory", file.display())),
        "{}",
        text(&out)
    );
    let missing = s.path.join("missing");
    let out = isobench().arg("report").arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("directory {} does not exist", missing.display())),
        "{}",
        text(&out)
    );

    // The untouched run still reports and compares.
    let out = isobench().arg("report").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
}
