//! The container runtime, end to end through `isobench exec`: isolation,
//! limits, exit status, volumes, rootless mode, and cleanup.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn exec(s: &Scratch, args: &[&str], cmd: &[&str]) -> Output {
    s.isobench()
        .arg("exec")
        .args(args)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// isobench cgroups of this scratch's runs left anywhere under /sys/fs/cgroup.
fn leftover_cgroups() -> Vec<PathBuf> {
    let mut found = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let parent = h.path().join("isobench");
        for c in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
            if c.path().is_dir() && c.file_name().to_string_lossy().starts_with("exec") {
                found.push(c.path());
            }
        }
    }
    found
}

fn root_only() -> bool {
    require(
        is_root(),
        "containers with cgroups need root (rootless has its own test)",
    )
}

/// The tests here check the host's cgroup tree for leftovers, which another
/// test's running container would show: they take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn a_container_sees_only_itself() {
    if !root_only() {
        return;
    }
    let _serial = serial();
    let s = Scratch::new("isolation");
    // Only the loopback interface.
    let o = exec(&s, &[], &["cat", "/proc/net/dev"]);
    assert!(o.status.success(), "{}", text(&o));
    let ifaces: Vec<String> = stdout(&o)
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next().map(|n| n.trim().to_string()))
        .collect();
    assert_eq!(ifaces, ["lo"]);
    // Its own hostname.
    let o = exec(&s, &[], &["cat", "/proc/sys/kernel/hostname"]);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_eq!(stdout(&o).trim(), "exec");
    assert_ne!(stdout(&o).trim(), host.trim());
    // Only its own processes: the agent (pid 1) and the program (pid 2).
    let o = exec(&s, &[], &["ls", "/proc"]);
    let pids: Vec<u32> = stdout(&o).lines().filter_map(|l| l.parse().ok()).collect();
    assert_eq!(pids, [1, 2], "{}", stdout(&o));
    // No host file outside its layers: a marker on the host is invisible.
    let marker = s.write("marker-on-the-host", "secret");
    let o = exec(&s, &[], &["cat", marker.to_str().unwrap()]);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("No such file"), "{}", text(&o));
    let o = exec(&s, &[], &["ls", "/"]);
    let mut root: Vec<String> = stdout(&o).lines().map(String::from).collect();
    root.sort();
    for entry in &root {
        assert!(
            [
                "dev", "etc", "init", "lib", "lib64", "proc", "sys", "tmp", "usr"
            ]
            .contains(&entry.as_str()),
            "unexpected {entry} in the container's root: {root:?}"
        );
    }
    // It cannot mount anything (no CAP_SYS_ADMIN).
    let o = exec(&s, &[], &["mount", "-t", "tmpfs", "none", "/tmp"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    // Docker's default capabilities, no_new_privs, masked /proc/kcore.
    let o = exec(&s, &[], &["cat", "/proc/self/status"]);
    let status = stdout(&o);
    assert!(status.contains("CapEff:\t00000000a80425fb"), "{status}");
    assert!(status.contains("CapBnd:\t00000000a80425fb"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    let o = exec(&s, &[], &["wc", "-c", "/proc/kcore"]);
    if o.status.success() {
        assert!(
            stdout(&o).starts_with("0 "),
            "/proc/kcore is masked: {}",
            stdout(&o)
        );
    }
    // /proc/sys is read-only, /sys too.
    let o = exec(
        &s,
        &[],
        &["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"],
    );
    assert!(stderr(&o).contains("Read-only"), "{}", text(&o));
    let o = exec(&s, &[], &["touch", "/sys/x"]);
    assert_ne!(o.status.code(), Some(0));
    assert_clean(&s);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn exit_status_and_signals_pass_through() {
    if !root_only() {
        return;
    }
    let _serial = serial();
    let s = Scratch::new("status");
    for (env, cmd, code) in [
        ("container", "exit 7", 7),
        ("native", "exit 7", 7),
        ("container", "kill -TERM $$", 143),
        ("container", "true", 0),
    ] {
        let o = exec(&s, &["--env", env], &["sh", "-c", cmd]);
        assert_eq!(o.status.code(), Some(code), "{env} {cmd}: {}", text(&o));
    }
    let o = exec(&s, &[], &["no-such-program-isobench"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`no-such-program-isobench` not found"),
        "{}",
        text(&o)
    );
    // Output streams straight through, stdout and stderr apart.
    let o = exec(&s, &[], &["sh", "-c", "echo out; echo err >&2"]);
    assert_eq!(stdout(&o), "out\n");
    assert_eq!(stderr(&o), "err\n");
    assert_clean(&s);
}

#[test]
fn an_allocation_past_the_memory_limit_is_oom_killed_and_reported() {
    if !root_only() {
        return;
    }
    let _serial = serial();
    let s = Scratch::new("oom");
    // Natively too: the program gets a cgroup of its own with the limit,
    // exactly as in a container (the README's exec example).
    for env in ["container", "native"] {
        // dd's 64 MiB buffer is filled from /dev/zero: 64 MiB charged to the cgroup.
        let o = exec(
            &s,
            &["--env", env, "--memory", "32M"],
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        );
        assert_eq!(o.status.code(), Some(137), "{env}: {}", text(&o));
        assert!(
            stderr(&o).contains(&format!(
                "the kernel's OOM killer ended a process of this {env}: it used more memory than allowed (limit 32 MiB)"
            )),
            "{env}: {}",
            text(&o)
        );
        // Below the limit it works.
        let o = exec(
            &s,
            &["--env", env, "--memory", "64M"],
            &["dd", "if=/dev/zero", "of=/dev/null", "bs=8M", "count=1"],
        );
        assert!(o.status.success(), "{env}: {}", text(&o));
    }
    assert_clean(&s);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn a_pids_limit_stops_a_fork_bomb() {
    if !root_only() {
        return;
    }
    let _serial = serial();
    let s = Scratch::new("forkbomb");
    let start = Instant::now();
    let o = exec(
        &s,
        &["--pids", "16", "--timeout", "30"],
        &["sh", "-c", "f() { f | f; }; f"],
    );
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "the bomb ended by itself"
    );
    assert!(
        stderr(&o).contains("fork(s) refused by the pids limit (16)"),
        "{}",
        text(&o)
    );
    assert_clean(&s);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn a_timeout_kills_the_program() {
    if !root_only() {
        return;
    }
    let _serial = serial();
    let s = Scratch::new("timeout");
    let start = Instant::now();
    let o = exec(
        &s,
        &["--timeout", "1"],
        &["sh", "-c", "while :; do :; done"],
    );
    assert_eq!(o.status.code(), Some(124), "{}", text(&o));
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(stderr(&o).contains("--timeout 1 s"), "{}", text(&o));
    assert_clean(&s);
}

#[test]
fn volumes_are_bound_read_write_or_read_only() {
    if !root_only() {
        return;
    }
    let _serial = serial();
    let s = Scratch::new("volumes");
    let data = s.path.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let rw = format!("{}:/data", data.display());
    let o = exec(
        &s,
        &["--volume", &rw],
        &["sh", "-c", "echo hello > /data/out"],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(data.join("out")).unwrap(),
        "hello\n"
    );
    let ro = format!("{}:/in/data:ro", data.display());
    let o = exec(&s, &["--volume", &ro], &["cat", "/in/data/out"]);
    assert_eq!(stdout(&o), "hello\n", "{}", text(&o));
    let o = exec(
        &s,
        &["--volume", &ro],
        &["sh", "-c", "echo x > /in/data/out"],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("Read-only"), "{}", text(&o));
    let o = exec(&s, &["--volume", "/nonexistent-isobench:/x"], &["true"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_clean(&s);
}

/// The user the rootless test runs as, created on demand.
const ROOTLESS_USER: &str = "isobench-rootless";

fn ensure_user() -> Option<u32> {
    let lookup = || {
        std::process::Command::new("id")
            .args(["-u", ROOTLESS_USER])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
    };
    if let Some(uid) = lookup() {
        return Some(uid);
    }
    let made = std::process::Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            ROOTLESS_USER,
        ])
        .status()
        .ok()?;
    if !made.success() {
        return None;
    }
    lookup()
}

#[test]
fn rootless_containers_map_the_caller_to_root() {
    if !require(is_root(), "creating the test user needs root") {
        return;
    }
    let Some(uid) = ensure_user() else {
        require(false, "useradd could not create the rootless test user");
        return;
    };
    let s = Scratch::new("rootless");
    // The user must be able to reach its scratch directory.
    std::fs::set_permissions(&s.path, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let runtime = s.path.join("rootless-runtime");
    let o = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_isobench"))
        .args([
            "exec",
            "--memory",
            "64M",
            "--",
            "cat",
            "/proc/self/status",
            "/proc/self/uid_map",
        ])
        .env("ISOBENCH_RUNTIME_DIR", &runtime)
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("Uid:\t0\t0\t0\t0"), "root inside: {out}");
    let map: Vec<&str> = out.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(
        map,
        ["0", &uid.to_string(), "1"],
        "the caller's uid is mapped to 0"
    );
    // What cannot work rootless is said once.
    let err = stderr(&o);
    assert_eq!(err.matches("rootless containers:").count(), 1, "{err}");
    assert!(err.contains("NOT applied"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&runtime)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");

    // A whole run in rootless containers records what it could not do.
    let reports = s.path.join("rootless-reports");
    let o = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
            "--",
        ])
        .arg(env!("CARGO_BIN_EXE_isobench"))
        .args([
            "run",
            "--env",
            "container",
            "--workload",
            "noop",
            "--reps",
            "2",
            "--out",
        ])
        .arg(&reports)
        .env("ISOBENCH_RUNTIME_DIR", &runtime)
        .env_remove("XDG_RUNTIME_DIR")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let run = latest(&reports);
    assert_eq!(
        results(&run).iter().filter(|r| r.3 == "startup_ms").count(),
        2
    );
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap();
    let notes = meta["notes"].to_string();
    assert!(notes.contains("rootless containers"), "{notes}");
    assert!(
        meta["environments"]["container"]["namespaces"]
            .to_string()
            .contains("user")
    );
}

#[test]
fn sigkill_of_isobench_then_clean_removes_cgroups_and_dirs() {
    if !root_only() {
        return;
    }
    let _serial = serial();
    let s = Scratch::new("killcg");
    let mut child = s
        .isobench()
        .args([
            "exec",
            "--memory",
            "64M",
            "--",
            "sh",
            "-c",
            "while :; do :; done",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the instance's cgroups exist: the memory limit needs a v1
    // cgroup on v1 and hybrid hosts, beside the cgroup2 one.
    let want = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        1
    } else {
        2
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let cgroups: Vec<PathBuf> = loop {
        let run_id = std::fs::read_dir(s.runs())
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned());
        let cg = run_id
            .map(|id| isobench::rundir::run_cgroups(Path::new("/sys/fs/cgroup"), &id))
            .unwrap_or_default();
        if cg.len() >= want {
            break cg;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no cgroup appeared within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    child.wait().unwrap();
    assert!(
        cgroups.iter().all(|c| Path::new(c).exists()),
        "left behind until clean: {cgroups:?}"
    );
    let o = s.isobench().arg("clean").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    for c in &cgroups {
        assert!(!c.exists(), "{} survived clean: {}", c.display(), text(&o));
    }
    assert_clean(&s);
}

#[test]
fn sigterm_to_exec_kills_the_container_and_cleans_up() {
    if !root_only() {
        return;
    }
    let _serial = serial();
    let s = Scratch::new("execterm");
    // A script no other test runs, to find the container's processes by.
    let script = format!("while :; do :; done # execterm-{}", std::process::id());
    let mut child = s
        .isobench()
        .args(["exec", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the container runs: a process other than isobench carries
    // the script (its init, then the shell).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !processes_mentioning(Path::new(&script))
        .iter()
        .any(|pid| *pid != child.id())
    {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the container did not start within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(100));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_clean(&s);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}
