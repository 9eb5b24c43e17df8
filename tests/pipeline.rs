//! End to end: the `isobench` binary really starts processes, containers
//! and VMs, and the run directory holds what the issue promises.

mod common;

use common::*;
use std::collections::BTreeSet;

const SMALL: &str = r#"
name = "small"
description = "integration test"
reps = 2
warmups = 1

[[workload]]
kind = "noop"

[[workload]]
kind = "cpu"
rounds = 40
buffer_kib = 16
"#;

#[test]
fn misspelled_key_exits_2_naming_key_and_line_and_starts_nothing() {
    let s = Scratch::new("badkey");
    let out = s.run(
        "bad.toml",
        "name = \"x\"\n[[workload]]\nkind = \"cpu\"\nrunds = 5\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4:1: workload[0]"), "{err}");
    assert!(err.contains("runds"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        !s.reports().exists(),
        "nothing may be written for a bad scenario"
    );
    assert!(
        !s.runtime().exists(),
        "nothing may be started for a bad scenario"
    );
}

#[test]
fn negative_repetitions_exit_2_with_the_key_path() {
    let s = Scratch::new("negreps");
    let out = s.run(
        "neg.toml",
        "name = \"x\"\n[[workload]]\nkind = \"noop\"\n[[workload]]\nkind = \"cpu\"\nreps = -3\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("neg.toml:6:8: workload[1].reps: expected a positive integer"),
        "{err}"
    );
    assert!(!s.reports().exists() && !s.runtime().exists());
}

#[test]
fn repetitions_above_the_cap_exit_2_naming_key_and_cap() {
    // 4294967296 used to be cut to u32::MAX; with `reps = 4294967296` in a
    // [[workload]] it became 0 and the run said "0 instances".
    let s = Scratch::new("hugereps");
    for (scenario, expected) in [
        (
            "name = \"x\"\nreps = 4294967296\n[[workload]]\nkind = \"noop\"\n",
            "huge.toml:2:8: reps: expected a positive integer no larger than 100000, got 4294967296",
        ),
        (
            "name = \"x\"\n[[workload]]\nkind = \"noop\"\nwarmups = 4294967296\n",
            "huge.toml:4:11: workload[0].warmups: expected a non-negative integer no larger than 100000, got 4294967296",
        ),
    ] {
        let out = s.run("huge.toml", scenario, &["--env", "native"]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{err}");
    }
    let out = s.run(
        "ok.toml",
        "name = \"x\"\n[[workload]]\nkind = \"noop\"\n",
        &["--env", "native", "--reps", "100001"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--reps: expected a positive integer no larger than 100000, got 100001"),
        "{err}"
    );
    assert!(!s.reports().exists() && !s.runtime().exists());
}

#[test]
fn memory_limits_that_overflow_or_are_below_6m_exit_2() {
    let s = Scratch::new("badmem");
    for (args, expected) in [
        (
            vec!["run", "--memory", "99999999T"],
            "`99999999T`: too large",
        ),
        (
            vec!["exec", "--memory", "99999999T", "--", "true"],
            "`99999999T`: too large",
        ),
        (
            vec!["exec", "--env", "native", "--memory", "4k", "--", "true"],
            "`4k`: a memory limit must be at least 6M",
        ),
        (
            vec!["run", "--memory", "4k"],
            "`4k`: a memory limit must be at least 6M",
        ),
    ] {
        let out = s.isobench().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    let out = s.run(
        "mem.toml",
        "name = \"x\"\n[container]\nmemory = \"4k\"\n[[workload]]\nkind = \"noop\"\n",
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("mem.toml:3:10: container.memory: `4k`: a memory limit must be at least 6M"),
        "{err}"
    );
    assert!(!s.reports().exists() && !s.runtime().exists());
}

#[test]
fn volumes_over_the_root_or_proc_sys_dev_exit_2() {
    let s = Scratch::new("badvol");
    let host = s.path.display().to_string();
    for (guest, expected) in [
        ("/", "cannot mount over the container's root `/`"),
        ("/proc/sys", "the container mounts its own /proc"),
        ("/dev", "the container mounts its own /dev"),
    ] {
        let volume = format!("{host}:{guest}");
        let out = s
            .isobench()
            .args(["exec", "--volume", &volume, "--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{volume}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{volume}: {err}");
    }
    let scenario = format!(
        "name = \"x\"\n[container]\nvolumes = [\"{host}:/\"]\n[[workload]]\nkind = \"noop\"\n"
    );
    let out = s.run("vol.toml", &scenario, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vol.toml:3:12: container.volumes[0]")
            && err.contains("cannot mount over the container's root"),
        "{err}"
    );
    assert!(!s.reports().exists() && !s.runtime().exists());
}

#[test]
fn a_command_workload_whose_program_is_missing_exits_2_before_anything_starts() {
    let s = Scratch::new("noprog");
    let out = s.run(
        "apps.toml",
        "name = \"apps\"\n[[workload]]\nkind = \"noop\"\n[[workload]]\nkind = \"command\"\nname = \"tool\"\nargv = [\"isobench-no-such-program\", \"--help\"]\n",
        &["--env", "native"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "workload `tool`: program `isobench-no-such-program` not found on the host in $PATH"
        ) && err.contains("install it, or give its path in argv"),
        "{err}"
    );
    assert!(
        !s.reports().exists(),
        "no run directory for a plan that cannot run"
    );
    assert!(!s.runtime().exists());
}

/// This host's MemTotal in MiB and its CPUs.
fn host_figures() -> (u64, u64) {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get() as u64;
    (kib / 1024, cpus)
}

#[test]
fn a_vm_or_container_larger_than_the_host_exits_2_with_the_hosts_figure() {
    let (mem, cpus) = host_figures();
    let s = Scratch::new("toobig");
    let big_mem = format!("{}M", mem + 1);
    let big_cpus = (cpus + 1).to_string();
    let host_mem = format!("this host's memory ({mem} MiB, MemTotal in /proc/meminfo)");
    let host_cpus = format!("CPUs are more than this host's {cpus} (available_parallelism)");
    for (args, expected) in [
        (
            vec!["run", "--env", "vm", "--memory", &big_mem],
            host_mem.as_str(),
        ),
        (vec!["run", "--env", "vm", "--cpus", &big_cpus], &host_cpus),
        (
            vec!["run", "--env", "container", "--cpus", "1e308"],
            "--cpus: ",
        ),
        (
            vec!["exec", "--env", "vm", "--memory", &big_mem, "--", "true"],
            &host_mem,
        ),
        (
            vec!["exec", "--env", "vm", "--cpus", &big_cpus, "--", "true"],
            &host_cpus,
        ),
        (vec!["exec", "--cpus", "1e308", "--", "true"], "--cpus: "),
        // Too little to boot: the guest kernel used to panic out of memory.
        (
            vec!["exec", "--env", "vm", "--memory", "64M", "--", "true"],
            "--memory (a VM's memory): 64 MiB is too little for a guest",
        ),
        (
            vec!["run", "--env", "vm", "--memory", "32M"],
            "--memory (a VM's memory): 32 MiB is too little for a guest",
        ),
    ] {
        let out = s.isobench().args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expected), "{args:?}: {err}");
    }
    // In the scenario: named by its key, but only when the plan has a VM.
    let scenario = format!(
        "name = \"x\"\nreps = 1\nwarmups = 0\n[vm]\nmemory_mib = {}\n[[workload]]\nkind = \"noop\"\n",
        mem + 1
    );
    let out = s.run("big.toml", &scenario, &["--env", "vm"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "big.toml: vm.memory_mib: {} MiB is more than {host_mem}",
            mem + 1
        )),
        "{err}"
    );
    assert!(!s.reports().exists() && !s.runtime().exists());
    let out = s.run("big.toml", &scenario, &["--env", "native"]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn exec_values_that_would_fail_later_exit_2() {
    let s = Scratch::new("badexec");
    for (args, expected) in [
        (vec!["--timeout", "18446744073709551615"], "--timeout"),
        (vec!["--timeout", "604801"], "--timeout"),
        (vec!["--pids", "99999999999"], "--pids"),
    ] {
        let out = s
            .isobench()
            .arg("exec")
            .args(&args)
            .args(["--", "true"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(expected) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    assert!(!s.runtime().exists());
}

#[test]
fn an_output_directory_that_is_a_file_exits_2_before_anything_starts() {
    let s = Scratch::new("outfile");
    let file = s.write("not-a-dir", "x");
    let out = s
        .isobench()
        .args(["run", "--env", "native", "--out"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "--out {0}: {0} is not a directory",
            file.display()
        )),
        "{err}"
    );
    assert!(!s.runtime().exists(), "nothing started");
}

#[test]
fn bad_command_line_values_exit_2() {
    let s = Scratch::new("badcli");
    for args in [
        vec!["run", "--env", "native,vmm"],
        vec!["run", "--reps", "0"],
        vec!["run", "--reps", "4294967296"],
        vec!["run", "--workload", "nosuch"],
        vec!["report", "/nonexistent/run"],
    ] {
        let out = s
            .isobench()
            .args(&args)
            .arg("--out")
            .arg(s.reports())
            .output();
        let out = match args[0] {
            "report" => s.isobench().args(&args).output().unwrap(),
            _ => out.unwrap(),
        };
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
    assert!(!s.runtime().exists());
}

#[test]
fn all_three_environments_give_records_with_equal_digests() {
    if !require(is_root(), "the container environment needs root")
        || !require(
            vm_ready(),
            "QEMU and a guest kernel (scripts/setup.sh installs both)",
        )
    {
        return;
    }
    let s = Scratch::new("three");
    let out = s.run("small.toml", SMALL, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let run = latest(&s.reports());
    let rows = results(&run);
    for w in ["noop", "cpu"] {
        for e in ["native", "container", "vm"] {
            let startups: Vec<_> = rows
                .iter()
                .filter(|r| r.0 == w && r.1 == e && r.3 == "startup_ms")
                .collect();
            assert_eq!(startups.len(), 2, "{w}/{e}: {startups:?}");
            assert!(startups.iter().all(|r| r.5 > 0.0 && r.4 == "ms"));
            let teardown = rows
                .iter()
                .filter(|r| r.0 == w && r.1 == e && r.3 == "teardown_ms")
                .count();
            assert_eq!(teardown, 2, "{w}/{e} teardown");
        }
        let boots = rows
            .iter()
            .filter(|r| r.0 == w && r.1 == "vm" && r.3 == "boot_kernel_ms")
            .count();
        assert_eq!(boots, 2, "{w}: guest kernel time recorded");
    }
    for e in ["native", "container", "vm"] {
        let scores = rows
            .iter()
            .filter(|r| r.0 == "cpu" && r.1 == e && r.3 == "score")
            .count();
        assert_eq!(scores, 2, "cpu score in {e}");
    }
    // The digest is the same everywhere (warm-ups included).
    let instances = std::fs::read_to_string(run.join("instances.jsonl")).unwrap();
    let digests: BTreeSet<String> = instances
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["workload"] == "cpu")
        .map(|v| {
            v["digest"]
                .as_str()
                .expect("cpu reports a digest")
                .to_string()
        })
        .collect();
    assert_eq!(digests.len(), 1, "{digests:?}");
    assert_eq!(
        instances.lines().count(),
        2 * 3 * 3,
        "2 workloads × 3 envs × (1 warm-up + 2 reps)"
    );

    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "complete");
    let accel = meta["accelerator"]["accel"].as_str().unwrap();
    assert!(["kvm", "tcg"].contains(&accel));
    assert!(!meta["accelerator"]["reason"].as_str().unwrap().is_empty());
    if std::path::Path::new("/sys/module/kvm_pvm").exists() {
        assert_eq!(accel, "tcg");
        assert!(
            meta["accelerator"]["reason"]
                .as_str()
                .unwrap()
                .contains("PVM")
        );
    }
    assert!(
        meta["qemu"]
            .as_str()
            .unwrap()
            .starts_with("QEMU emulator version")
    );
    assert!(meta["host"]["cpu_model"].as_str().is_some());

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("summary.json")).unwrap()).unwrap();
    let series = summary["series"].as_array().unwrap();
    let vm_startup = series
        .iter()
        .find(|s| {
            s["workload"] == "noop" && s["environment"] == "vm" && s["metric"] == "startup_ms"
        })
        .unwrap();
    assert_eq!(vm_startup["n"], 2);
    assert!(vm_startup["ratio_to_native"].as_f64().unwrap() > 1.0);
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("| noop | vm | startup_ms"), "{report}");
    // The HTML report: a chart for every family that ran (startup with the
    // VM boot breakdown, CPU), and the TCG warning when the VM ran under it.
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    for id in ["chart-startup", "chart-vm_boot", "chart-cpu"] {
        assert!(html.contains(&format!("<figure id=\"{id}\">")), "{id}");
    }
    assert_eq!(html.contains("id=\"tcg-warning\""), accel == "tcg");
    for chart in ["charts/startup.svg", "charts/startup.png"] {
        assert!(
            std::fs::metadata(run.join(chart)).unwrap().len() > 1000,
            "{chart}"
        );
    }
    for w in ["noop", "cpu"] {
        for e in ["native", "container", "vm"] {
            assert!(
                run.join(format!("logs/{w}-{e}-r1.log")).is_file(),
                "log of {w}/{e}"
            );
        }
    }
    assert_clean(&s);

    // The report re-renders from the records alone, identically.
    let before = std::fs::read(run.join("summary.json")).unwrap();
    let out = isobench().arg("report").arg(&run).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(std::fs::read(run.join("summary.json")).unwrap(), before);
}

#[test]
fn vm_boot_timeout_is_a_clear_failure_and_leaves_nothing() {
    if !require(
        vm_ready(),
        "QEMU and a guest kernel (scripts/setup.sh installs both)",
    ) {
        return;
    }
    let s = Scratch::new("timeout");
    let out = s.run("t.toml", "name = \"t\"\nreps = 1\nwarmups = 0\n[vm]\nboot_timeout_s = 1\n[[workload]]\nkind = \"noop\"\n", &["--env", "vm"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no `ready` frame within 1 s"), "{err}");
    let run = latest(&s.reports());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "failed");
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        report.contains("## Failures") && report.contains("startup timeout"),
        "{report}"
    );
    assert!(
        results(&run).is_empty(),
        "a failed instance records no figures"
    );
    assert_clean(&s);
}

#[test]
fn native_only_run_needs_no_vm_or_root() {
    let s = Scratch::new("native");
    let out = s
        .isobench()
        .args(["run", "--env", "native", "--reps", "3", "--out"])
        .arg(s.reports())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("startup_ms") && stdout.contains("report:"),
        "{stdout}"
    );
    let run = latest(&s.reports());
    let rows = results(&run);
    // Three repetitions of every workload of the built-in scenario.
    let workloads: std::collections::BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert!(
        workloads.contains("noop") && workloads.contains("cpu"),
        "{workloads:?}"
    );
    for w in &workloads {
        let n = rows
            .iter()
            .filter(|r| r.0 == *w && r.3 == "startup_ms")
            .count();
        assert_eq!(n, 3, "{w}");
    }
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap();
    assert!(meta["accelerator"].is_null(), "no VM, no accelerator");
    assert_clean(&s);
}

#[test]
fn doctor_reports_every_prerequisite() {
    let out = isobench().arg("doctor").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in [
        "root",
        "ns pid",
        "ns mount",
        "ns uts",
        "ns ipc",
        "ns net",
        "overlayfs",
        "cgroups",
        "qemu",
        "kvm",
        "guest kernel",
        "agent",
    ] {
        assert!(
            stdout.lines().any(|l| l.contains(&format!("] {name} "))),
            "doctor has no line for {name}:\n{stdout}"
        );
    }
    if is_root() && vm_ready() {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    }
}

#[test]
fn a_scenario_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let s = Scratch::new("scenario-fifo");
    let fifo = s.path.join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    for path in [fifo.as_path(), std::path::Path::new("/dev/zero")] {
        let started = std::time::Instant::now();
        let out = s
            .isobench()
            .args(["run", "--scenario"])
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("not a regular file"),
            "{}",
            text(&out)
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }
}

#[test]
fn validate_list_completions_and_dry_run_start_nothing() {
    let s = Scratch::new("validate");
    let out = s.isobench().arg("validate").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("total: 168 instances"), "{said}");
    let bad = s.write(
        "bad.toml",
        "name = \"x\"\n[[workload]]\nkind = \"cpu\"\nrounds = -1\n",
    );
    let out = s.isobench().arg("validate").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = s
        .isobench()
        .args(["run", "--dry-run", "--env", "native", "--out"])
        .arg(s.reports())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("total: 56 instances"));
    assert!(
        !s.reports().exists() && !s.runtime().exists(),
        "a dry run starts nothing"
    );
    let out = s.isobench().arg("list").output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && said.contains("pagefault") && said.contains("vm "));
    let out = s.isobench().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("isobench"));
}
