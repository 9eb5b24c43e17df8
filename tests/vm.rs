//! The VM environment end to end: real QEMU guests under TCG (or KVM where
//! it works). Each test boots at most one guest, so the file adds about
//! three boots to the suite.

mod common;

use common::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const VM_PREREQ: &str = "QEMU and a guest kernel (scripts/setup.sh installs both)";

fn metric(rows: &[(String, String, u32, String, String, f64)], name: &str) -> Option<f64> {
    rows.iter()
        .find(|r| r.0 == "noop" && r.3 == name)
        .map(|r| r.5)
}

fn meta(run: &std::path::Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(run.join("meta.json")).unwrap()).unwrap()
}

/// Two guests: `noop` with a raw disk, `fileio` on its ext4 scratch disk.
const DISKS: &str = r#"
name = "disk"
reps = 1
warmups = 0
[vm]
disk_mib = 8
[[workload]]
kind = "noop"
[[workload]]
kind = "fileio"
file_mib = 8
ops = 50
"#;

#[test]
fn guests_with_disks_report_boot_breakdown_memory_io_and_leave_nothing() {
    if !require(vm_ready(), VM_PREREQ) {
        return;
    }
    let s = Scratch::new("vmdisk");
    let out = s.run(
        "disk.toml",
        DISKS,
        &["--env", "vm", "--cpus", "2", "--memory", "384M"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let run = latest(&s.reports());
    let rows = results(&run);
    let m = |name: &str| metric(&rows, name).unwrap_or_else(|| panic!("no {name} in {rows:?}"));

    // The boot breakdown adds up: VMM + kernel + agent ≈ startup.
    let (startup, first) = (m("startup_ms"), m("boot_first_byte_ms"));
    let (vmm, kernel, agent) = (m("boot_vmm_ms"), m("boot_kernel_ms"), m("boot_agent_ms"));
    assert!(0.0 < first && first <= startup, "{first} vs {startup}");
    assert!(
        vmm > 0.0 && kernel > 0.0 && agent > 0.0,
        "{vmm} {kernel} {agent}"
    );
    assert!(
        (vmm + kernel + agent - startup).abs() < 0.05 * startup + 50.0,
        "vmm {vmm} + kernel {kernel} + agent {agent} vs startup {startup}"
    );
    assert!(m("teardown_ms") > 0.0);
    // QEMU's CPU time: at least some, at most 2 vCPUs + its I/O thread busy
    // for the whole life of the guest.
    let cpu = m("host_cpu_ms");
    assert!(
        cpu > 10.0 && cpu < 3.0 * (startup + m("teardown_ms") + 1000.0),
        "{cpu}"
    );

    // Memory: QEMU's PSS splits into guest RAM and the VMM's own share.
    let (pss, overhead, ram) = (m("pss_mib"), m("vmm_overhead_mib"), m("guest_ram_pss_mib"));
    assert!(overhead > 1.0 && ram > 1.0, "{overhead} {ram}");
    assert!(
        (overhead + ram - pss).abs() < 0.01,
        "{overhead} + {ram} vs {pss}"
    );
    assert!(ram <= 384.0, "guest RAM PSS {ram} above its size");
    assert!(m("rss_mib") >= pss * 0.9);
    // The guest saw the memory and the disk it was given.
    let total = m("guest_mem_total_mib");
    assert!(
        (300.0..384.0).contains(&total),
        "MemTotal {total} MiB of 384"
    );
    assert!(m("guest_mem_available_mib") < total);
    assert_eq!(m("guest_disk_mib"), 8.0);

    // The I/O workload ran on its own scratch disk (ext4 at /scratch, file
    // size + an eighth + 64 MiB), its random I/O with O_DIRECT.
    let fileio = |name: &str| {
        rows.iter()
            .find(|r| r.0 == "fileio" && r.1 == "vm" && r.3 == name)
            .map(|r| r.5)
            .unwrap_or_else(|| panic!("no fileio {name} in {rows:?}"))
    };
    assert!(fileio("score") > 0.0 && fileio("seq_write_mbs") > 0.0);
    assert_eq!(fileio("guest_disk_mib"), 8.0 + 1.0 + 64.0);

    let meta = meta(&run);
    let vm = &meta["environments"]["vm"];
    assert_eq!(vm["config"]["cpus"], 2);
    assert_eq!(vm["config"]["memory_mib"], 384);
    assert_eq!(vm["devices"]["disk_mib"], 8);
    let modules: Vec<&str> = vm["initramfs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| !i["modules"].as_array().unwrap().is_empty())
        .expect("an initramfs with modules")["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    assert!(modules.ends_with(&["virtio_blk"]), "{modules:?}");
    let log = std::fs::read_to_string(run.join("logs/noop-vm-r1.log")).unwrap();
    assert!(log.contains("{\"type\":\"boot\"}"), "{log}");
    assert_clean(&s);
}

#[test]
fn guest_kernel_panic_is_a_clear_failure_and_leaves_nothing() {
    if !require(vm_ready(), VM_PREREQ) {
        return;
    }
    let s = Scratch::new("vmpanic");
    // No init where the kernel looks for it, and no root disk: the kernel
    // panics, `panic=-1` reboots, `-no-reboot` makes QEMU exit.
    let started = Instant::now();
    let out = s.run("panic.toml", "name = \"panic\"\nreps = 1\nwarmups = 0\n[vm]\nkernel_args = [\"rdinit=/nonexistent\"]\n[[workload]]\nkind = \"noop\"\n", &["--env", "vm"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the output ended without a `ready` frame; the guest kernel panicked: Kernel panic - not syncing:"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "a panic must end the guest at once, not by the boot timeout"
    );
    let report = std::fs::read_to_string(latest(&s.reports()).join("report.md")).unwrap();
    assert!(report.contains("Kernel panic"), "{report}");
    assert_clean(&s);
}

#[test]
fn qemu_crash_mid_boot_is_named_and_leaves_nothing() {
    if !require(vm_ready(), VM_PREREQ) {
        return;
    }
    let s = Scratch::new("vmcrash");
    let mut child = s
        .run_command(
            s.isobench(),
            "one.toml",
            "name = \"one\"\nreps = 1\nwarmups = 0\n[[workload]]\nkind = \"noop\"\n",
            &["--env", "vm"],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let qemu = loop {
        if let Some(pid) = processes_mentioning(&s.runtime()).first() {
            break *pid;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no QEMU appeared within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // As if QEMU hit a bug.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(qemu as i32),
        nix::sys::signal::Signal::SIGSEGV,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("QEMU crashed: killed by signal 11 (SIGSEGV)"),
        "{err}"
    );
    assert_clean(&s);
}

#[test]
fn missing_modules_are_a_prerequisite_error_before_any_boot() {
    if !require(vm_ready(), VM_PREREQ) {
        return;
    }
    let s = Scratch::new("vmmods");
    let empty = s.path.join("no-modules");
    std::fs::create_dir_all(&empty).unwrap();
    let file = s.write(
        "disk.toml",
        "name = \"disk\"\nreps = 1\nwarmups = 0\n[vm]\ndisk_mib = 8\n[[workload]]\nkind = \"noop\"\n",
    );
    let out = s
        .isobench()
        .args(["run", "--env", "vm", "--accel", "tcg", "--modules"])
        .arg(&empty)
        .arg("--scenario")
        .arg(&file)
        .arg("--out")
        .arg(s.reports())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("kernel module `virtio_mmio` is not in") && err.contains("--modules DIR"),
        "{err}"
    );
    assert!(processes_mentioning(&s.runtime()).is_empty());
    assert_clean(&s);

    let out = s
        .isobench()
        .args(["run", "--env", "vm", "--cpus", "1.5"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("whole number of vCPUs"));

    // Where KVM cannot work, --accel kvm says why, exits 2 and writes nothing.
    let sys = std::path::Path::new("/sys/module");
    if let Some(why) = isobench::env::vm::kvm_unusable(sys, std::path::Path::new("/dev/kvm")) {
        let out = s
            .isobench()
            .args(["run", "--env", "vm", "--accel", "kvm", "--out"])
            .arg(s.reports())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&why) && err.contains("--accel tcg"), "{err}");
        let runs = std::fs::read_dir(s.reports()).map_or(0, |d| d.count());
        assert_eq!(runs, 0, "no run directory for a run that could not start");
    }
    assert_clean(&s);
}

#[test]
fn exec_runs_a_host_program_in_a_fresh_guest() {
    if !require(
        vm_ready(),
        "QEMU and a guest kernel (scripts/setup.sh installs both)",
    ) {
        return;
    }
    let s = Scratch::new("execvm");
    let out = s
        .isobench()
        .args([
            "exec",
            "--env",
            "vm",
            "--",
            "sh",
            "-c",
            "uname -r; printf 'a\\nb\\n'; exit 5",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // The guest's own kernel, not the host's; the output exactly as printed.
    let host = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_ne!(lines[0], host.trim(), "{stdout}");
    assert_eq!(
        &lines[1..],
        ["a", "b"],
        "no kernel messages, no \\r: {stdout:?}"
    );
    assert!(!stdout.contains('\r'));
    assert!(
        String::from_utf8_lossy(&out.stderr).is_empty(),
        "exec is quiet: {}",
        text(&out)
    );
    let out = s
        .isobench()
        .args(["exec", "--env", "vm", "--cpus", "1.5", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "a VM takes whole vCPUs: {}",
        text(&out)
    );
    assert_clean(&s);
}

#[test]
fn a_kernel_that_is_not_a_kernel_exits_2_before_any_boot() {
    // QEMU used to start and complain, and `exec` exited 125.
    if !require(vm_ready(), VM_PREREQ) {
        return;
    }
    let s = Scratch::new("notkernel");
    let bogus = s.write("hostname", "myhost\n");
    let scenario = s.write("k.toml", "name = \"k\"\n[[workload]]\nkind = \"noop\"\n");
    let run = s
        .isobench()
        .args(["run", "--env", "vm", "--kernel"])
        .arg(&bogus)
        .arg("--scenario")
        .arg(&scenario)
        .arg("--out")
        .arg(s.reports())
        .output()
        .unwrap();
    let exec = s
        .isobench()
        .args(["exec", "--env", "vm", "--kernel"])
        .arg(&bogus)
        .args(["--", "true"])
        .output()
        .unwrap();
    for out in [run, exec] {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "--kernel {}: not a guest kernel: neither a bzImage",
                bogus.display()
            )) && err.contains("isobench kernel fetch"),
            "{err}"
        );
    }
    assert!(!s.reports().exists(), "no run directory");
    assert!(processes_mentioning(&s.runtime()).is_empty());
    assert_clean(&s);
}
