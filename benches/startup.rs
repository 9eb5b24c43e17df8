//! Startup cost per environment: spawn → `ready` → reaped and cleaned up,
//! for the `noop` workload, timed around `run::run_instance`.
//!
//! Groups: `native`, `container` (needs root), `vm` (needs QEMU and a guest
//! kernel; flat sampling, 10 samples, since a TCG boot takes seconds). A
//! group whose prerequisite is missing prints why and is skipped.
//!
//! Beside isobench's own numbers, each group times its peers on the same
//! rootfs (the run's image, whose `/init` is the agent) from spawn to exit,
//! where they are installed: `native/fork-exec` (a plain `Command` of the
//! agent, without isobench's harness), `container/unshare` (`unshare(1)`
//! with pid, mount, uts, ipc and net namespaces and `chroot`),
//! `container/crun` (its cgroup manager disabled; crun refuses hybrid
//! hosts, so its child first hides the cgroup2 mount in a private mount
//! namespace, which costs two system calls) and `container/runc`.

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, criterion_group, criterion_main};
use isobench::env::EnvKind;
use isobench::env::vm::AccelRequest;
use isobench::run::{self, BedSpec, Testbed};
use isobench::scenario::{ContainerSettings, VmSettings};
use isobench::workload::WorkloadSpec;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

fn testbed(kind: EnvKind, logs: &std::path::Path) -> Option<Testbed> {
    let prereqs = match run::preflight(&[kind], None) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the {kind} group: {e}");
            return None;
        }
    };
    let vm = VmSettings {
        memory_mib: 256,
        cpus: 1,
        boot_timeout: None,
    };
    let id = format!("bench-{kind}-{}", std::process::id());
    let container = ContainerSettings::default();
    let spec = BedSpec {
        environments: &[kind],
        vm: &vm,
        container: &container,
        accel: AccelRequest::Auto,
        programs: &[],
        files: &[],
    };
    match Testbed::build(&prereqs, &id, &spec, logs, &STOP) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("skipping the {kind} group: {e}");
            None
        }
    }
}

fn startup(c: &mut Criterion) {
    // criterion draws its charts with plotters, which has no system fonts here.
    isobench::report::chart::font_registered();
    let logs = std::env::temp_dir().join(format!("isobench-bench-{}", std::process::id()));
    std::fs::create_dir_all(&logs).expect("creating the bench log directory");
    // Removed also when a benchmark panics.
    struct RemoveOnDrop(std::path::PathBuf);
    impl Drop for RemoveOnDrop {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _guard = RemoveOnDrop(logs.clone());
    for kind in EnvKind::ALL {
        let Some(bed) = testbed(kind, &logs) else {
            continue;
        };
        let env = bed
            .env(kind)
            .expect("the testbed has the environment it was built for");
        let mut group = c.benchmark_group(kind.as_str());
        if kind == EnvKind::Vm {
            group
                .sample_size(10)
                .sampling_mode(SamplingMode::Flat)
                .measurement_time(Duration::from_secs(40));
        }
        let log = logs.join(format!("{kind}.log"));
        group.bench_function("noop", |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let start = Instant::now();
                    let r = run::run_instance(
                        env,
                        &WorkloadSpec::Noop,
                        &format!("bench-{i}"),
                        Some(&log),
                        Duration::from_secs(30),
                        &STOP,
                    );
                    total += start.elapsed();
                    if let Some(e) = r.error {
                        panic!("{kind} instance failed: {e} (log: {})", log.display());
                    }
                }
                total
            })
        });
        match kind {
            EnvKind::Native => peer(&mut group, "fork-exec", || {
                let mut c = Command::new(&bed.image.agent_source);
                c.arg("noop");
                c
            }),
            EnvKind::Container => container_peers(&mut group, &bed.image.dir, &logs),
            EnvKind::Vm => {}
        }
        group.finish();
    }
}

/// Times a command from spawn to exit, with its output discarded.
fn peer(group: &mut BenchmarkGroup<'_, WallTime>, name: &str, make: impl Fn() -> Command) {
    let probe = make().stdout(Stdio::null()).stderr(Stdio::null()).status();
    match probe {
        Ok(s) if s.success() => {}
        other => {
            eprintln!("skipping {name}: a first run failed ({other:?})");
            return;
        }
    }
    group.bench_function(name, |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut cmd = make();
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
                let start = Instant::now();
                let status = cmd.status().expect("spawning a peer");
                total += start.elapsed();
                assert!(status.success(), "{name} failed: {status}");
            }
            total
        })
    });
}

fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// An OCI bundle whose root is `rootfs` (read-only) and whose process is `/init noop`.
fn oci_bundle(rootfs: &Path, dir: &Path) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let ok = Command::new("crun")
        .args(["spec"])
        .current_dir(dir)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return None;
    }
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    config["process"]["terminal"] = false.into();
    config["process"]["args"] = serde_json::json!(["/init", "noop"]);
    config["root"] = serde_json::json!({ "path": rootfs, "readonly": true });
    std::fs::write(&path, serde_json::to_vec_pretty(&config).ok()?).ok()?;
    Some(dir.to_path_buf())
}

fn container_peers(group: &mut BenchmarkGroup<'_, WallTime>, rootfs: &Path, logs: &Path) {
    if installed("unshare") {
        peer(group, "unshare", || {
            let mut c = Command::new("unshare");
            c.args([
                "--pid",
                "--fork",
                "--mount",
                "--uts",
                "--ipc",
                "--net",
                "--kill-child",
                "chroot",
            ])
            .arg(rootfs)
            .args(["/init", "noop"]);
            c
        });
    }
    let Some(bundle) = installed("crun")
        .then(|| oci_bundle(rootfs, &logs.join("bundle")))
        .flatten()
    else {
        eprintln!("skipping crun and runc: crun is not installed (apt-get install crun runc)");
        return;
    };
    static N: AtomicUsize = AtomicUsize::new(0);
    peer(group, "crun", || {
        let mut c = Command::new("crun");
        c.args(["--cgroup-manager=disabled", "run", "--bundle"])
            .arg(&bundle)
            .arg(format!(
                "isobench-bench-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
        // SAFETY: runs in the forked child before exec; unshare and umount2
        // are plain system calls on static strings.
        unsafe {
            c.pre_exec(|| {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
                let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
                nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>)?;
                // crun rejects hybrid hosts; in its own namespace it sees v1 only.
                let _ =
                    nix::mount::umount2("/sys/fs/cgroup/unified", nix::mount::MntFlags::MNT_DETACH);
                Ok(())
            });
        }
        c
    });
    if installed("runc") {
        peer(group, "runc", || {
            let mut c = Command::new("runc");
            c.args(["run", "--bundle"]).arg(&bundle).arg(format!(
                "isobench-bench-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            ));
            c
        });
    }
}

criterion_group!(benches, startup);
criterion_main!(benches);
