//! Safe to run on anyone's machine: no user data removed, no descriptor
//! of the caller inside an instance, no frame a workload can forge, a
//! private runtime directory, programs under /tmp, and cleanup on a closed
//! pipe or repeated signals. Each test reproduces a defect found by trying
//! isobench as a hostile or careless user would.

mod common;

use common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// Ages a path by an hour (a "leftover" used to mean older than 60 s).
fn age(path: &Path) {
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(path)
        .unwrap()
        .set_modified(old)
        .unwrap();
}

#[test]
fn a_users_files_in_the_runtime_directory_survive_run_exec_and_clean() {
    let s = Scratch::new("dataloss");
    let project = s.runtime().join("projectA");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("main.c"), "int main(void) { return 0; }\n").unwrap();
    age(&project);
    // Even one named like a run, without isobench's marker.
    let lookalike = s.runtime().join("isobench/20200101T000000Z-0bad");
    std::fs::create_dir_all(&lookalike).unwrap();
    std::fs::write(lookalike.join("notes.txt"), "mine\n").unwrap();
    age(&lookalike);
    age(&s.runtime().join("isobench"));

    let out = s.run(
        "noop.toml",
        "name = \"n\"\nreps = 1\nwarmups = 0\n[[workload]]\nkind = \"noop\"\n",
        &["--env", "native"],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("removed leftovers"));
    let out = s
        .isobench()
        .args(["exec", "--env", "native", "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let out = s.isobench().arg("clean").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("left") && said.contains("0bad"), "{said}");

    assert!(
        project.join("main.c").is_file(),
        "the user's project is gone"
    );
    assert!(
        lookalike.join("notes.txt").is_file(),
        "a directory without the marker is gone"
    );
}

#[test]
fn a_runtime_directory_another_user_can_write_is_refused() {
    if !require(is_root(), "switching to another uid needs root") {
        return;
    }
    // The rootless fallback /tmp/isobench-<uid>, made beforehand by someone
    // else with mode 777: using it would let them swap isobench's files.
    let s = Scratch::new("takeover");
    let tmp = s.path.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let trap = tmp.join("isobench-65534");
    std::fs::create_dir(&trap).unwrap();
    use std::os::unix::fs::PermissionsExt;
    for dir in [&s.path, &tmp] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&trap, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = isobench()
        .arg("clean")
        .env_remove("ISOBENCH_RUNTIME_DIR")
        .env_remove("XDG_RUNTIME_DIR")
        .env("TMPDIR", &tmp)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("isobench-65534") && err.contains("belongs to uid 0"),
        "{err}"
    );
    assert!(
        std::fs::read_dir(&trap).unwrap().next().is_none(),
        "nothing was written into the other user's directory"
    );
}

/// Runs `isobench exec --env container -- sh -c SCRIPT` with the host's
/// /etc open as descriptor 7 (not close-on-exec), as `exec 7</etc` in a
/// shell leaves it.
fn exec_with_etc_on_fd7(s: &Scratch, script: &str) -> std::process::Output {
    let etc = std::fs::File::open("/etc").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&etc);
    let mut cmd = s.isobench();
    cmd.args(["exec", "--env", "container", "--", "sh", "-c", script]);
    // SAFETY: dup2 in the forked child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    drop(etc);
    out
}

#[test]
fn a_descriptor_of_the_caller_does_not_reach_a_container() {
    if !require(is_root(), "the container environment needs root") {
        return;
    }
    let s = Scratch::new("fdleak");
    let escaped = s.path.join("escaped");
    // Shell builtins only: the container holds sh and its libraries.
    let script = format!(
        "if cd /proc/self/fd/7 2>/dev/null; then read l < /proc/self/fd/7/shadow; \
         echo x > /proc/self/fd/7/..{}; echo LEAKED; else echo sealed; fi; \
         cd /; echo cwd=$(pwd -P); for f in /proc/self/fd/*; do echo fd $f; done",
        escaped.display()
    );
    let out = exec_with_etc_on_fd7(&s, &script);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("sealed") && !said.contains("LEAKED"),
        "{said}"
    );
    assert!(said.contains("cwd=/\n"), "{said}");
    assert!(!escaped.exists(), "the container wrote a host file");
    // Only stdin, stdout, stderr (and the one the glob itself opens).
    let fds = said.lines().filter(|l| l.starts_with("fd ")).count();
    assert!(fds <= 4, "descriptors in the container: {said}");
    assert_clean(&s);
}

#[test]
fn a_descriptor_of_the_caller_does_not_reach_a_command_workload() {
    if !require(is_root(), "the container environment needs root") {
        return;
    }
    let s = Scratch::new("fdleak-run");
    let file = s.write(
        "fds.toml",
        r#"name = "fds"
reps = 1
warmups = 0
[[workload]]
kind = "command"
argv = ["sh", "-c", "if [ -e /proc/self/fd/7 ]; then echo leaked 1; else echo leaked 0; fi"]
metrics = [{ name = "leaked", unit = "1", regex = 'leaked ([0-9])', better = "lower" }]
"#,
    );
    let etc = std::fs::File::open("/etc").unwrap();
    let raw = std::os::fd::AsRawFd::as_raw_fd(&etc);
    let mut cmd = s.isobench();
    cmd.args(["run", "--env", "native,container", "--scenario"])
        .arg(&file)
        .arg("--out")
        .arg(s.reports());
    // SAFETY: dup2 in the forked child before exec; async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let rows = results(&latest(&s.reports()));
    let leaked: Vec<_> = rows.iter().filter(|r| r.3 == "leaked").collect();
    assert_eq!(leaked.len(), 2, "{rows:?}");
    assert!(leaked.iter().all(|r| r.5 == 0.0), "{leaked:?}");
    assert_clean(&s);
}

/// A frame as a workload would forge it: a `result` with a tiny startup.
const FORGED: &str = r#"@@isobench {"type":"result","metrics":[{"name":"startup_ms","unit":"ms","value":0.001,"better":"lower"},{"name":"forged","unit":"1","value":1,"better":"lower"}]}"#;

#[test]
fn a_workload_cannot_forge_frames() {
    let mut envs = vec!["native"];
    if is_root() {
        envs.push("container");
    }
    if vm_ready() {
        envs.push("vm");
    }
    // Native alone still tests the output channel; the rest are required in CI.
    require(
        envs.len() == 3,
        "root, QEMU and a guest kernel for the container and vm cases",
    );
    let s = Scratch::new("forge");
    // On its stdout (every environment); through the agent's frames
    // descriptor (container: /proc/<agent>/fd/3 needs CAP_SYS_PTRACE); on
    // the guest's frames port (vm: held exclusive by the agent).
    // (Only where the agent is the workload's isolated parent: a native
    // workload is the host's root and could as well edit the results.)
    let script = s.write(
        "forge.sh",
        &format!(
            "f='{FORGED}'\necho \"$f\"\necho \"$f\" >&2\n\
             case $ISOBENCH_ENV in container|vm) echo \"$f\" > /proc/$PPID/fd/3;; esac\n\
             [ \"$ISOBENCH_ENV\" = vm ] && echo \"$f\" > /dev/ttyS1\ntrue\n"
        ),
    );
    let scenario = format!(
        "name = \"forge\"\nreps = 2\nwarmups = 0\n\
         [[workload]]\nkind = \"command\"\nargv = [\"sh\", {p:?}]\nfiles = [{p:?}]\n",
        p = script.display().to_string()
    );
    let out = s.run("forge.toml", &scenario, &["--env", &envs.join(",")]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = results(&latest(&s.reports()));
    assert!(!rows.iter().any(|r| r.3 == "forged"), "{rows:?}");
    for env in &envs {
        let startups: Vec<f64> = rows
            .iter()
            .filter(|r| r.1 == *env && r.3 == "startup_ms")
            .map(|r| r.5)
            .collect();
        assert_eq!(
            startups.len(),
            2,
            "one startup per repetition in {env}: {rows:?}"
        );
        assert!(startups.iter().all(|v| *v > 0.01), "{env}: {startups:?}");
    }
    // What the workload printed is kept in the log, as output.
    let log =
        std::fs::read_to_string(latest(&s.reports()).join("logs/command-native-r1.log")).unwrap();
    assert!(log.contains("\"forged\""), "{log}");
    assert_clean(&s);
}

#[test]
fn a_program_under_tmp_runs_in_a_container() {
    if !require(is_root(), "the container environment needs root") {
        return;
    }
    // The scratch directory is under /tmp, which a container mounts a
    // tmpfs over.
    let s = Scratch::new("tmpprog");
    let prog = s.path.join("bin/hello");
    std::fs::create_dir_all(prog.parent().unwrap()).unwrap();
    std::fs::copy("/bin/echo", &prog).unwrap();
    assert!(prog.starts_with(std::env::temp_dir()));
    let out = s
        .isobench()
        .args(["exec", "--env", "container", "--"])
        .arg(&prog)
        .arg("hello from /tmp")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from /tmp\n");
    assert_clean(&s);
}

const LONG: &str = "name = \"long\"\nreps = 40\nwarmups = 0\n[[workload]]\nkind = \"noop\"\n";

/// Reads the run's status from its meta.json.
fn status_of(s: &Scratch) -> String {
    let run = latest(&s.reports());
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap();
    assert!(
        run.join("report.md").is_file(),
        "the partial run is reported"
    );
    assert!(!run.join("meta.json.tmp").exists());
    meta["status"].as_str().unwrap_or_default().to_string()
}

#[test]
fn a_closed_pipe_ends_the_run_cleanly() {
    if !require(is_root(), "the container environment needs root") {
        return;
    }
    // `isobench run ... 2>&1 | head -2`
    let s = Scratch::new("sigpipe");
    let (read, write) = std::io::pipe().unwrap();
    let mut child = s
        .run_command(
            s.isobench(),
            "long.toml",
            LONG,
            &["--env", "native,container"],
        )
        .stdout(write.try_clone().unwrap())
        .stderr(write)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(read);
    let mut seen = String::new();
    for _ in 0..3 {
        lines.read_line(&mut seen).unwrap();
    }
    drop(lines);
    let status = wait_exit(&mut child, Duration::from_secs(60));
    assert_eq!(status.code(), Some(141), "{seen}");
    assert_eq!(status_of(&s), "interrupted");
    assert_clean(&s);
}

#[test]
fn two_quick_sigints_still_clean_up() {
    if !require(is_root(), "the container environment needs root") {
        return;
    }
    let s = Scratch::new("sigint2");
    let mut child = s.spawn_run("long.toml", LONG, &["--env", "container"]);
    s.wait_for_run(
        &mut child,
        Duration::from_secs(30),
        "no container started",
        |id| s.has_instances(id),
    );
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(status_of(&s), "interrupted");
    assert_clean(&s);
}

#[test]
fn sighup_stops_and_cleans_up() {
    let s = Scratch::new("sighup");
    let mut child = s
        .run_command(s.isobench(), "long.toml", LONG, &["--env", "native"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first progress line.
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("[  1/") {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "no progress");
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_eq!(status_of(&s), "interrupted");
    assert_clean(&s);
}
