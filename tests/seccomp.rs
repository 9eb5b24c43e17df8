//! The seccomp filter end to end: a small static C program, run with
//! `isobench exec --env container`, tries the system calls Docker's default
//! profile denies. Under the default profile each gets EPERM; with
//! `--seccomp none` none is refused by a filter; a profile file in Docker's
//! format is applied as written; meta-data says which filter ran.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Tries each call once and prints `NAME ok` or `NAME errno N`.
const PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/perf_event.h>

static void report(const char *name, long r) {
    if (r < 0) printf("%s errno %d\n", name, errno);
    else printf("%s ok\n", name);
}

int main(void) {
    report("unshare", syscall(SYS_unshare, CLONE_NEWUSER | CLONE_NEWNS));
    report("add_key", syscall(SYS_add_key, "user", "isobench-probe", "x", 1L, -2L /* KEY_SPEC_PROCESS_KEYRING */));
    report("keyctl", syscall(SYS_keyctl, 0L /* KEYCTL_GET_KEYRING_ID */, -3L /* KEY_SPEC_SESSION_KEYRING */, 0L));
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.size = sizeof attr;
    attr.type = PERF_TYPE_SOFTWARE;
    attr.config = PERF_COUNT_SW_TASK_CLOCK;
    attr.exclude_kernel = 1;
    attr.exclude_hv = 1;
    report("perf_event_open", syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0UL));
    unsigned char params[120]; /* struct io_uring_params */
    memset(params, 0, sizeof params);
    report("io_uring_setup", syscall(SYS_io_uring_setup, 1U, params));
    report("personality", syscall(SYS_personality, 0x0040000UL /* ADDR_NO_RANDOMIZE */));
    /* Allowed by the default profile: the persona query, and clone3 answered ENOSYS. */
    report("personality_query", syscall(SYS_personality, 0xffffffffUL));
    report("clone3", syscall(SYS_clone3, NULL, 0UL));
    fflush(stdout);
    return 0;
}
"#;

/// The calls Docker's default profile must refuse with EPERM.
const DENIED: &[&str] = &[
    "unshare",
    "add_key",
    "keyctl",
    "perf_event_open",
    "io_uring_setup",
    "personality",
];

const EPERM: &str = "errno 1";

/// Builds the probe with `cc -static` in `dir`; `None` (with a skip
/// message) when a static C toolchain is missing. (Not under /tmp: the
/// container mounts a fresh tmpfs there, over the program's host path.)
fn build_probe(dir: &Path) -> Option<PathBuf> {
    let libc_a = Path::new("/usr/lib/x86_64-linux-gnu/libc.a");
    let cc = Command::new("cc")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !require(
        cc && libc_a.exists(),
        "the seccomp probe needs a C compiler and glibc's static library (apt-get install gcc libc6-dev)",
    ) {
        return None;
    }
    let src = dir.join("probe.c");
    let bin = dir.join("seccomp-probe");
    std::fs::write(&src, PROBE).unwrap();
    let out = Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "cc: {}", text(&out));
    Some(bin)
}

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

/// `NAME ok` / `NAME errno N` lines, by name.
fn outcomes(o: &Output) -> BTreeMap<String, String> {
    assert!(o.status.success(), "{}", text(o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect()
}

/// A directory under cargo's temp dir for integration tests, removed on drop.
struct ProbeDir(PathBuf);

impl Drop for ProbeDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn prepared(name: &str) -> Option<(Scratch, ProbeDir, String)> {
    if !require(is_root(), "containers with cgroups need root") {
        return None;
    }
    let s = Scratch::new(name);
    let dir = ProbeDir(
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let probe = build_probe(&dir.0)?.display().to_string();
    Some((s, dir, probe))
}

#[test]
fn the_default_profile_refuses_what_dockers_refuses() {
    let Some((s, _dir, probe)) = prepared("seccomp-default") else {
        return;
    };
    let got = outcomes(&exec(&s, &[], &[&probe]));
    for call in DENIED {
        assert_eq!(
            got.get(*call).map(String::as_str),
            Some(EPERM),
            "{call}: {got:?}"
        );
    }
    assert_eq!(got["personality_query"], "ok", "{got:?}");
    assert_eq!(
        got["clone3"], "errno 38",
        "ENOSYS, for libc's fallback: {got:?}"
    );
    // Spelled out, it is the same filter.
    let explicit = outcomes(&exec(&s, &["--seccomp", "default"], &[&probe]));
    assert_eq!(explicit, got);
}

#[test]
fn seccomp_none_lets_every_call_reach_the_kernel() {
    let Some((s, _dir, probe)) = prepared("seccomp-none") else {
        return;
    };
    let got = outcomes(&exec(&s, &["--seccomp", "none"], &[&probe]));
    // Deterministic without a filter: a user namespace needs no capability,
    // and ADDR_NO_RANDOMIZE is a plain persona.
    assert_eq!(got["unshare"], "ok", "{got:?}");
    assert_eq!(got["personality"], "ok", "{got:?}");
    assert_eq!(got["add_key"], "ok", "{got:?}");
    // The session keyring may not exist (ENOKEY); perf may be restricted
    // (EACCES) or absent; neither is EPERM.
    for call in ["keyctl", "perf_event_open"] {
        assert_ne!(got[call], EPERM, "{call}: {got:?}");
    }
    let io_uring = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "0".into());
    if io_uring == "0" {
        assert_eq!(got["io_uring_setup"], "ok", "{got:?}");
    } else {
        eprintln!("io_uring_disabled = {io_uring} on this host: io_uring_setup not checked");
    }
    assert_eq!(
        got["clone3"], "errno 22",
        "the kernel's own EINVAL: {got:?}"
    );
}

#[test]
fn a_profile_file_applies_as_written() {
    let Some((s, _dir, probe)) = prepared("seccomp-file") else {
        return;
    };
    // Everything allowed but keyctl, which gets EACCES.
    let profile = s.write(
        "profile.json",
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}"#,
    );
    let got = outcomes(&exec(
        &s,
        &["--seccomp", &profile.display().to_string()],
        &[&probe],
    ));
    assert_eq!(got["keyctl"], "errno 13", "{got:?}");
    assert_eq!(got["unshare"], "ok", "{got:?}");

    // A bad profile is bad input: exit 2, naming the file and the entry.
    let bad = s.write(
        "bad.json",
        r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_MAYBE"}]}"#,
    );
    let o = exec(&s, &["--seccomp", &bad.display().to_string()], &[&probe]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("bad.json")
            && err.contains("syscalls[0] (read)")
            && err.contains("SCMP_ACT_MAYBE"),
        "{err}"
    );
}

#[test]
fn a_run_records_the_filter_in_its_meta_data() {
    if !require(is_root(), "containers with cgroups need root") {
        return;
    }
    let s = Scratch::new("seccomp-meta");
    let scenario = "name = \"seccomp\"\nenvironments = [\"container\"]\nreps = 1\nwarmups = 0\n\
                    [container]\nseccomp = \"default\"\n[[workload]]\nkind = \"syscall\"\n";
    let o = s.run("s.toml", scenario, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(latest(&s.reports()).join("meta.json")).unwrap(),
    )
    .unwrap();
    let text = meta.to_string();
    assert!(
        text.contains("\"default_action\":\"SCMP_ACT_ERRNO(1)\"")
            && text.contains("clone3 → SCMP_ACT_ERRNO(38)"),
        "meta.json names the filter: {text}"
    );
}
