//! Nothing left behind: Ctrl-C during a run, and SIGKILL of isobench
//! followed by `isobench clean`.

mod common;

use common::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const LONG: &str = "name = \"long\"\nreps = 20\nwarmups = 0\n[[workload]]\nkind = \"noop\"\n";

/// Starts a long run and waits until one of its instances is running: a
/// process whose command line names the run's runtime directory (QEMU), or
/// a container instance directory.
// The child is returned and the caller waits for it; clippy cannot see that.
#[allow(clippy::zombie_processes)]
fn start_long_run(s: &Scratch, env: &str) -> Child {
    let mut child = s.spawn_run("run.toml", LONG, &["--env", env]);
    s.wait_for_run(
        &mut child,
        Duration::from_secs(60),
        &format!("no {env} instance appeared"),
        |id| match env {
            "vm" => !processes_mentioning(&s.runtime()).is_empty(),
            _ => s.has_instances(id),
        },
    );
    child
}

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
}

#[test]
fn sigint_during_a_vm_boot_stops_cleanly_and_keeps_partial_results() {
    if !require(
        vm_ready(),
        "QEMU and a guest kernel (scripts/setup.sh installs both)",
    ) {
        return;
    }
    let s = Scratch::new("sigint");
    let mut child = start_long_run(&s, "vm");
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130));
    let run = latest(&s.reports());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap();
    assert_eq!(meta["status"], "interrupted");
    assert!(
        run.join("report.md").is_file(),
        "the partial run is still reported"
    );
    assert_clean(&s);
}

#[test]
fn sigterm_during_container_runs_stops_cleanly() {
    if !require(is_root(), "the container environment needs root") {
        return;
    }
    let s = Scratch::new("sigterm");
    let mut child = start_long_run(&s, "container");
    signal(&child, nix::sys::signal::Signal::SIGTERM);
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(130));
    assert_clean(&s);
}

#[test]
fn sigkill_then_clean_leaves_nothing() {
    if !require(
        vm_ready(),
        "QEMU and a guest kernel (scripts/setup.sh installs both)",
    ) {
        return;
    }
    let s = Scratch::new("sigkill");
    let mut child = start_long_run(&s, "vm");
    signal(&child, nix::sys::signal::Signal::SIGKILL);
    wait_exit(&mut child, Duration::from_secs(10));
    // The kernel kills QEMU with isobench (PR_SET_PDEATHSIG).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(&s.runtime()).is_empty() {
        assert!(
            Instant::now() < deadline,
            "QEMU outlived a SIGKILLed isobench"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its runtime directory is left behind, with the record that names it.
    let runs: Vec<_> = std::fs::read_dir(s.runs())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(runs[0].join("state.json").is_file());
    let out = s.isobench().arg("clean").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("removed {}", runs[0].display())),
        "{stdout}"
    );
    assert_clean(&s);
    // A second clean finds nothing.
    let out = s.isobench().arg("clean").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to clean"));
}

#[test]
fn clean_kills_a_recorded_qemu_that_is_still_running() {
    if !require(
        vm_ready(),
        "QEMU and a guest kernel (scripts/setup.sh installs both)",
    ) {
        return;
    }
    // A QEMU that outlived its isobench (as if PR_SET_PDEATHSIG had not
    // fired): clean must find it through the state record and kill it.
    let s = Scratch::new("orphan");
    let run = s.runs().join("20260101T000000Z-dead");
    std::fs::create_dir_all(&run).unwrap();
    let marker = run.join("initramfs.cpio");
    std::fs::write(&marker, b"").unwrap();
    let mut qemu = std::process::Command::new("qemu-system-x86_64")
        .args(["-M", "none", "-nodefaults", "-display", "none", "-name"])
        .arg(&marker)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::fs::read_to_string(format!("/proc/{}/stat", qemu.id())).unwrap();
    let start: u64 = start[start.rfind(')').unwrap() + 1..]
        .split_whitespace()
        .nth(19)
        .unwrap()
        .parse()
        .unwrap();
    // The owner is a process that no longer exists: our pid with a wrong
    // start time. The marker says isobench made the directory.
    let owner = serde_json::json!({"pid": std::process::id(), "start": 1, "what": "isobench"});
    let run_marker = serde_json::json!({"run_id": "20260101T000000Z-dead", "owner": owner});
    std::fs::write(run.join(".isobench-run"), run_marker.to_string()).unwrap();
    let state = serde_json::json!({
        "run_id": "20260101T000000Z-dead",
        "owner": {"pid": std::process::id(), "start": 1, "what": "isobench"},
        "tracked": [{"pid": qemu.id(), "start": start, "what": "qemu"}],
    });
    std::fs::write(run.join("state.json"), state.to_string()).unwrap();
    let out = s.isobench().arg("clean").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("killed qemu pid {}", qemu.id())),
        "{stdout}"
    );
    assert!(
        qemu.wait().unwrap().code().is_none(),
        "QEMU was killed by a signal"
    );
    assert_clean(&s);
}

#[test]
fn sigint_during_density_ends_every_live_instance() {
    if !require(
        vm_ready(),
        "QEMU and a guest kernel (scripts/setup.sh installs both)",
    ) {
        return;
    }
    let s = Scratch::new("density-int");
    let mut child = s.spawn_run(
        "run.toml",
        "name = \"d\"\n[vm]\nmemory_mib = 128\n\
         [[workload]]\nkind = \"density\"\ninstances = 8\nsettle_ms = 50\n",
        &["--env", "vm"],
    );
    // Wait until two guests are alive at once.
    let deadline = Instant::now() + Duration::from_secs(60);
    while processes_mentioning(&s.runtime()).len() < 2 {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("two density guests did not come up within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, nix::sys::signal::Signal::SIGINT);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    assert_eq!(status.code(), Some(130));
    let run = latest(&s.reports());
    let rows = results(&run);
    assert!(
        rows.iter().any(|r| r.3 == "density_pss_total_mib"),
        "the instances that started are recorded: {rows:?}"
    );
    assert_clean(&s);
}
