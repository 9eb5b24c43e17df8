//! cgroup v2 on any host: a cgroup2 hierarchy mounted in a private mount
//! namespace is the test bed. A real container instance is started in it
//! (entered at birth with CLONE_INTO_CGROUP) and accounted from its cpu.stat.

mod common;

use common::*;
use isobench::cgroup::{CgroupUse, Driver, Limits};
use isobench::env::container::{Container, ContainerConfig};
use isobench::run;
use isobench::rundir::RunDir;
use isobench::workload::WorkloadSpec;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const BED: &str = "ISOBENCH_V2_BED";

#[test]
fn cgroup2_in_a_private_mount_namespace() {
    if !require(is_root(), "mounting a cgroup2 test bed needs root") {
        return;
    }
    let s = Scratch::new("v2bed");
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "v2_bed_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(BED, &s.path)
        .env("ISOBENCH_RUNTIME_DIR", s.runtime())
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("v2 test bed: ok"),
        "the child test really ran: {t}"
    );
    assert!(
        mounts_under(&s.path).is_empty(),
        "the bed's mount stayed in its namespace"
    );
    assert_clean(&s);
}

#[test]
#[ignore = "run by cgroup2_in_a_private_mount_namespace inside a private mount namespace"]
fn v2_bed_child() {
    let dir = PathBuf::from(std::env::var_os(BED).expect("started by the parent test"));
    let mnt = dir.join("cgroup2");
    std::fs::create_dir_all(&mnt).unwrap();
    nix::mount::mount(
        Some("cgroup2"),
        &mnt,
        Some("cgroup2"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .expect("mounting cgroup2");
    let driver = Driver::v2_only(&mnt);
    let (_, controllers) = driver.v2.clone().unwrap();
    eprintln!("controllers in this cgroup2 hierarchy: {controllers:?}");

    // Limits the hierarchy cannot apply are refused with the controller named.
    let memory = Limits {
        memory_bytes: Some(64 << 20),
        ..Limits::default()
    };
    if !controllers.iter().any(|c| c == "memory") {
        let problems = driver.unsupported_limits(&memory);
        assert!(problems[0].contains("memory controller"), "{problems:?}");
    }

    // A real container, born into its cgroup2 directory.
    let agent = run::find_agent().unwrap();
    let run_dir =
        Arc::new(RunDir::create(&isobench::rundir::base_dir().unwrap(), "v2bed").unwrap());
    let image = isobench::image::build(
        &agent,
        &run_dir.path().join("image"),
        &run_dir.path().join("initramfs.cpio"),
    )
    .unwrap();
    let config = ContainerConfig {
        layers: vec![image.dir],
        volumes: vec![],
        limits: Limits::default(),
        cgroups: CgroupUse::Auto,
        rootless: false,
        seccomp: isobench::env::container::seccomp_filters(&Default::default()).unwrap(),
        network: isobench::net::Mode::None,
    };
    let env = Container::new(config, Some(driver), Arc::clone(&run_dir));
    let spec = WorkloadSpec::Cpu {
        rounds: 200,
        buffer_kib: 64,
        threads: 1,
    };
    let stop = AtomicBool::new(false);
    let log = dir.join("v2.log");
    let r = run::run_instance(
        &env,
        &spec,
        "v2",
        Some(&log),
        Duration::from_secs(60),
        &stop,
    );
    assert_eq!(
        r.error,
        None,
        "log: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let cpu = r
        .host_metrics
        .iter()
        .find(|m| m.name == "cgroup_cpu_ms")
        .expect("cgroup2 accounts CPU time without any controller");
    // The same hashing in this thread, timed in CPU time (not wall time,
    // which waits for the CPU on a loaded host and says nothing of the
    // work): the cgroup must have seen at least half of it.
    let cpu_time = || {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
            .map(|t| t.tv_sec() as f64 * 1e3 + t.tv_nsec() as f64 / 1e6)
            .unwrap()
    };
    let buffer = vec![0x5au8; 64 << 10];
    let before = cpu_time();
    std::hint::black_box(isobench::agent::workloads::cpu_digest(200, &buffer, 1));
    let work_ms = cpu_time() - before;
    assert!(
        cpu.value >= work_ms * 0.5,
        "the cgroup saw the workload's CPU time: {} ms of CPU for hashing that takes {work_ms} \
         ms of CPU in this thread",
        cpu.value
    );
    // Only this test's cgroup: other runs on the host share the hierarchy.
    let ours = run_dir.unique_name("v2");
    let leftovers: Vec<_> = std::fs::read_dir(mnt.join("isobench"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir() && e.file_name().to_string_lossy() == ours)
        .map(|e| e.path())
        .collect();
    assert!(
        leftovers.is_empty(),
        "the instance's cgroup was removed: {leftovers:?}"
    );
    drop(env);
    run_dir.remove().unwrap();
    nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH).unwrap();
    println!("v2 test bed: ok");
}
