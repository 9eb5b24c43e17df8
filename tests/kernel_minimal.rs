//! The minimal guest kernel end to end: built once when missing (minutes;
//! the cache under ~/.cache/isobench/kernels is reused), then booted under
//! TCG (or KVM where it works) beside the distribution's kernel, running
//! every built-in workload; the cpu digest must be the same on both.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::process::Stdio;

const PREREQ: &str = "QEMU, the fetched guest kernel and /usr/src/linux-source-6.1.tar.xz with make and gcc (scripts/setup.sh installs them)";

fn build_prereqs() -> bool {
    let tool = |t: &str| {
        std::process::Command::new(t)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    vm_ready()
        && std::path::Path::new(isobench::kernel::minimal::SOURCE_TARBALL).is_file()
        && tool("make")
        && tool("gcc")
}

/// The minimal kernel's path, built first if missing.
fn minimal_kernel() -> std::path::PathBuf {
    let path = || {
        isobench()
            .args(["kernel", "path", "minimal"])
            .output()
            .unwrap()
    };
    let mut out = path();
    if !out.status.success() {
        eprintln!("building the minimal guest kernel (minutes; progress follows)");
        let status = isobench()
            .args(["kernel", "build"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "isobench kernel build failed");
        out = path();
    }
    assert!(out.status.success(), "{}", text(&out));
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Every workload that runs inside a guest, at small sizes.
const EVERY_WORKLOAD: &str = r#"
name = "kernels-all"
environments = ["vm", "vm-minimal"]
reps = 1
warmups = 0
[[workload]]
kind = "noop"
[[workload]]
kind = "idle"
duration_ms = 200
[[workload]]
kind = "cpu"
rounds = 200
buffer_kib = 64
threads = 2
[[workload]]
kind = "memory"
array_mib = 16
passes = 1
[[workload]]
kind = "pagefault"
mib = 16
[[workload]]
kind = "syscall"
iterations = 20000
[[workload]]
kind = "fork"
count = 20
[[workload]]
kind = "fileio"
file_mib = 8
ops = 100
[[workload]]
kind = "net"
requests = 100
bulk_mib = 4
[[workload]]
kind = "net_rr"
requests = 100
connects = 10
network = { vm = "user" }
[[workload]]
kind = "density"
instances = 2
settle_ms = 100
[[workload]]
kind = "command"
argv = ["/bin/sh", "-c", "echo answer=42"]
metrics = [
  { name = "answer", unit = "1", regex = 'answer=([0-9]+)', better = "higher" },
]
"#;

#[test]
fn minimal_kernel_builds_boots_and_runs_every_workload_like_the_distro_kernel() {
    if !require(build_prereqs(), PREREQ) {
        return;
    }
    let vmlinux = minimal_kernel();
    assert_eq!(
        isobench::kernel::check_image(&vmlinux).unwrap(),
        isobench::kernel::ImageFormat::PvhElf,
        "{}",
        vmlinux.display()
    );
    let s = Scratch::new("kmin");
    // One vCPU, as scenarios/kernels.toml (sleeps must end: a guest
    // without a working timer would hang the idle workload).
    let out = s.run("k.toml", EVERY_WORKLOAD, &["--cpus", "1"]);
    assert!(out.status.success(), "{}", text(&out));
    let run = latest(&s.reports());
    let rows = results(&run);
    let has = |w: &str, e: &str, m: &str| rows.iter().any(|r| r.0 == w && r.1 == e && r.3 == m);
    for e in ["vm", "vm-minimal"] {
        for w in [
            "noop",
            "idle",
            "cpu",
            "memory",
            "pagefault",
            "syscall",
            "fork",
            "fileio",
            "net",
            "command",
        ] {
            assert!(has(w, e, "startup_ms"), "{w} in {e}: no startup_ms");
        }
        for w in [
            "cpu",
            "memory",
            "pagefault",
            "syscall",
            "fork",
            "fileio",
            "net",
        ] {
            assert!(has(w, e, "score"), "{w} in {e}: no score in {rows:?}");
        }
        // A network card (virtio-net): on the minimal kernel's microvm,
        // which has no ACPI, its place comes on the command line.
        assert!(has("net_rr", e, "rr_p50_us"), "net_rr in {e}: no rr_p50_us");
        assert!(has("command", e, "answer"), "command in {e}: no answer");
        assert!(
            rows.iter().any(|r| r.0 == "density" && r.1 == e),
            "density in {e}"
        );
        assert!(has("noop", e, "boot_kernel_ms"), "{e}: no boot_kernel_ms");
        // The CPU's clock counts the early boot the guest's uptime misses.
        let value = |rep: u32, m: &str| {
            rows.iter()
                .find(|r| r.0 == "noop" && r.1 == e && r.2 == rep && r.3 == m)
                .map(|r| r.5)
        };
        for r in rows
            .iter()
            .filter(|r| r.0 == "noop" && r.1 == e && r.3 == "boot_kernel_ms")
        {
            let uptime =
                value(r.2, "boot_uptime_ms").expect("boot_uptime_ms beside boot_kernel_ms");
            assert!(
                r.5 > uptime,
                "{e} rep {}: boot_kernel_ms {} not above boot_uptime_ms {uptime}",
                r.2,
                r.5
            );
        }
    }
    // The same cpu digest on both kernels.
    let instances = std::fs::read_to_string(run.join("instances.jsonl")).unwrap();
    let digests: BTreeSet<(String, String)> = instances
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["workload"] == "cpu")
        .map(|v| {
            (
                v["environment"].as_str().unwrap_or("?").to_string(),
                v["digest"]
                    .as_str()
                    .expect("cpu reports a digest")
                    .to_string(),
            )
        })
        .collect();
    let envs: BTreeSet<&str> = digests.iter().map(|(e, _)| e.as_str()).collect();
    let values: BTreeSet<&str> = digests.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(envs.len(), 2, "{digests:?}");
    assert_eq!(values.len(), 1, "the cpu digest differs: {digests:?}");
    // meta.json records both kernels; the minimal one with its config hash.
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap();
    let k = &meta["environments"]["vm-minimal"]["kernel"];
    assert_eq!(k["choice"], "minimal", "{k}");
    assert!(
        k["config_hash"].as_str().is_some_and(|h| h.len() == 12),
        "{k}"
    );
    assert!(
        k["image_bytes"].as_u64().is_some_and(|b| b > 1 << 20),
        "{k}"
    );
    assert_eq!(meta["environments"]["vm"]["kernel"]["choice"], "distro");
    // The minimal kernel's own boot arguments, and none for the distro's.
    use isobench::env::vm::accel::Accel;
    let accel = match meta["environments"]["vm-minimal"]["config"]["accel"].as_str() {
        Some("kvm") => Accel::Kvm,
        Some("tcg") => Accel::Tcg,
        other => panic!("vm-minimal's accelerator in meta.json: {other:?}"),
    };
    assert_eq!(
        k["boot_args"],
        serde_json::json!(isobench::kernel::minimal::boot_args(accel)),
        "{k}"
    );
    assert_eq!(
        meta["environments"]["vm"]["kernel"]["boot_args"],
        serde_json::json!([])
    );
    // The report puts the two kernels side by side.
    let report = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(report.contains("## Guest kernels side by side"), "{report}");
    assert_clean(&s);
}

#[test]
fn an_unbuilt_or_unknown_kernel_is_a_clear_error() {
    let out = isobench()
        .args(["kernel", "path", "newest"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("give `distro` or `minimal`"),
        "{}",
        text(&out)
    );
    let s = Scratch::new("kbad");
    let frag = s.write("bad.config", "CONFIG_PVH=y\nPVH=y\n");
    let out = isobench()
        .args(["kernel", "build", "--config"])
        .arg(&frag)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2: `PVH=y`"),
        "{}",
        text(&out)
    );
}

/// Two vCPUs on the minimal kernel: its timer is the PIT (`noapictimer`),
/// whose ticks reach the second CPU by broadcast; sleeps must end and both
/// threads must run.
#[test]
fn minimal_kernel_runs_on_two_vcpus() {
    if !require(build_prereqs(), PREREQ) {
        return;
    }
    minimal_kernel();
    let s = Scratch::new("kmin2");
    let scenario = r#"
name = "kernels-smp"
environments = ["vm-minimal"]
reps = 1
warmups = 0
[[workload]]
kind = "idle"
duration_ms = 300
[[workload]]
kind = "cpu"
rounds = 100
buffer_kib = 64
threads = 2
[[workload]]
kind = "command"
argv = ["/bin/sh", "-c", "n=0; while read k rest; do [ \"$k\" = processor ] && n=$((n+1)); done < /proc/cpuinfo; echo cpus=$n"]
metrics = [
  { name = "cpus", unit = "1", regex = 'cpus=([0-9]+)', better = "higher" },
]
"#;
    let out = s.run("k2.toml", scenario, &["--cpus", "2"]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = results(&latest(&s.reports()));
    for (w, m) in [("idle", "startup_ms"), ("cpu", "score")] {
        assert!(
            rows.iter()
                .any(|r| r.0 == w && r.1 == "vm-minimal" && r.3 == m && r.5 > 0.0),
            "{w}: no {m} in {rows:?}"
        );
    }
    // The guest brought both vCPUs up.
    let cpus = rows
        .iter()
        .find(|r| r.0 == "command" && r.3 == "cpus")
        .map(|r| r.5);
    assert_eq!(cpus, Some(2.0), "{rows:?}");
}
