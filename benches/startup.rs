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
//!
//! The `container` group also times `isobench exec --env container --
//! /bin/true` as a whole command (`container/exec`: the built binary,
//! spawned, wall time to its exit — its start, the layer cache's lookup,
//! the container, the clean-up) beside `crun run` of `/bin/true`
//! (`container/crun-run`) on a rootfs holding the closure isobench packs,
//! then an interleaved pass of `exec`, `crun run`, `runc run` and
//! `unshare(1)` + `chroot` with a closing table of medians and the median
//! per-round ratio of exec to crun.
//!
//! Beside isobench's `vm/noop`, the `vm` group times a hand-tuned plain
//! QEMU command booting the same kernel file, on the same machine type,
//! accelerator, CPU model, memory and kernel command line, with a minimal
//! initramfs (busybox-static; its `/init` prints a line and powers off):
//!
//! - `vm/plain-qemu`: spawn → the line → QEMU reaped;
//! - `vm/plain-qemu-bzimage`: the same with the packaged, compressed
//!   kernel (`vmlinuz`), when isobench boots an uncompressed one, to show
//!   what decompression in the guest costs.
//!
//! criterion times the whole cycle (spawn → reaped); the start → ready (or
//! start → line) part of the very same boots is printed at the end as a
//! table of medians. Since criterion runs one benchmark after the other, a
//! busy host can favour either; so the group ends with an interleaved pass
//! (`PAIRS` pairs, the order alternating: isobench first, then plain first)
//! and prints the medians and the median of the per-pair ratios, which is
//! the comparison that counts.

mod common;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use isobench::env::EnvKind;
use isobench::env::vm;
use isobench::image::{self, Node};
use isobench::run::{self, Testbed};
use isobench::workload::WorkloadSpec;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static STOP: AtomicBool = AtomicBool::new(false);

/// Start → ready (or → line) of every boot, per benchmark, for the table.
static STARTS: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());

const PLAIN_LINE: &str = "PLAIN-READY";

/// Pairs of boots in the interleaved pass.
const PAIRS: usize = 20;

fn startup(c: &mut Criterion) {
    // criterion draws its charts with plotters, which has no system fonts here.
    isobench::report::chart::font_registered();
    let logs_dir = common::Logs::new("bench");
    let logs = logs_dir.0.clone();
    for kind in EnvKind::DEFAULT {
        let Some(bed) = common::testbed(kind, "bench", &logs, &STOP) else {
            continue;
        };
        let env = bed
            .env(kind)
            .expect("the testbed has the environment it was built for");
        let mut group = c.benchmark_group(kind.as_str());
        if kind == EnvKind::Vm {
            common::vm_sampling(&mut group);
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
                    if kind == EnvKind::Vm
                        && let Some(s) = r.startup
                    {
                        STARTS
                            .lock()
                            .unwrap()
                            .push(("vm/noop (isobench)".into(), s));
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
            EnvKind::Container => {
                container_peers(&mut group, &bed.image.dir, &logs);
                exec_peers(&mut group, &logs);
            }
            EnvKind::Vm => plain_benches(&mut group, &bed, &logs),
            // Its plain QEMU peers would be the same as vm's; the real
            // runtimes have no peer of their own here (crun and runc are the
            // container's peers above).
            _ => {}
        }
        group.finish();
    }
    print_starts();
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

/// An OCI bundle whose root is `rootfs` (read-only) and whose process is `args`.
fn oci_bundle(rootfs: &Path, dir: &Path, args: &[&str]) -> Option<PathBuf> {
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
    config["process"]["args"] = serde_json::json!(args);
    config["root"] = serde_json::json!({ "path": rootfs, "readonly": true });
    std::fs::write(&path, serde_json::to_vec_pretty(&config).ok()?).ok()?;
    Some(dir.to_path_buf())
}

fn container_peers(group: &mut BenchmarkGroup<'_, WallTime>, rootfs: &Path, logs: &Path) {
    if installed("unshare") {
        peer(group, "unshare", || {
            unshare_chroot(rootfs, &["/init", "noop"])
        });
    }
    let Some(bundle) = installed("crun")
        .then(|| oci_bundle(rootfs, &logs.join("bundle"), &["/init", "noop"]))
        .flatten()
    else {
        eprintln!("skipping crun and runc: crun is not installed (apt-get install crun runc)");
        return;
    };
    peer(group, "crun", || crun_run(&bundle));
    if installed("runc") {
        peer(group, "runc", || runc_run(&bundle));
    }
}

/// A name for a container no other instance uses.
fn container_name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "isobench-bench-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// `crun run` of `bundle`, its cgroup manager disabled; crun refuses
/// hybrid hosts, so its child first hides the cgroup2 mount in a private
/// mount namespace (two system calls).
fn crun_run(bundle: &Path) -> Command {
    let mut c = Command::new("crun");
    c.args(["--cgroup-manager=disabled", "run", "--bundle"])
        .arg(bundle)
        .arg(container_name());
    // SAFETY: runs in the forked child before exec; unshare and umount2
    // are plain system calls on static strings.
    unsafe {
        c.pre_exec(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)?;
            let private = nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE;
            nix::mount::mount(None::<&str>, "/", None::<&str>, private, None::<&str>)?;
            // crun rejects hybrid hosts; in its own namespace it sees v1 only.
            let _ = nix::mount::umount2("/sys/fs/cgroup/unified", nix::mount::MntFlags::MNT_DETACH);
            Ok(())
        });
    }
    c
}

/// `runc run` of `bundle`.
fn runc_run(bundle: &Path) -> Command {
    let mut c = Command::new("runc");
    c.args(["run", "--bundle"])
        .arg(bundle)
        .arg(container_name());
    c
}

/// `unshare(1)` with pid, mount, uts, ipc and net namespaces, `chroot`
/// into `rootfs`, then `args`.
fn unshare_chroot(rootfs: &Path, args: &[&str]) -> Command {
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
    .args(args);
    c
}

/// Makes a fresh command for each run.
type MakeCommand<'a> = Box<dyn Fn() -> Command + 'a>;

/// Rounds of the interleaved `exec` pass.
const ROUNDS: usize = 30;

/// `isobench exec --env container -- /bin/true` as a whole command (the
/// built binary, spawned, wall time to its exit) beside `crun run`, `runc
/// run` and `unshare(1)` + `chroot` of the same program on the same rootfs:
/// the program with the closure isobench packs (`image::app_layer`) and
/// the mount points. criterion times `exec` and `crun-run`; then an
/// interleaved pass (`ROUNDS` rounds, each running every command once, the
/// order rotating) prints the medians and the median per-round ratio of
/// exec to crun, the comparison that counts. The first exec (criterion's
/// probe) fills isobench's layer cache; the others find it there, as every
/// exec after the first of a program does.
fn exec_peers(group: &mut BenchmarkGroup<'_, WallTime>, logs: &Path) {
    let Some(program) = image::find_program("true") else {
        eprintln!("skipping exec: no `true` on this host");
        return;
    };
    let program = program.display().to_string();
    let rootfs = logs.join("exec-rootfs");
    if let Err(e) = image::app_layer(Path::new(&program), &rootfs) {
        eprintln!("skipping exec: packing {program}: {e}");
        return;
    }
    for m in ["dev", "proc", "sys", "tmp"] {
        std::fs::create_dir_all(rootfs.join(m)).expect("making the rootfs' mount points");
    }
    let isobench = Path::new(env!("CARGO_BIN_EXE_isobench"));
    let exec = || {
        let mut c = Command::new(isobench);
        c.args(["exec", "--env", "container", "--", &program]);
        c
    };
    let Some(bundle) = installed("crun")
        .then(|| oci_bundle(&rootfs, &logs.join("exec-bundle"), &[&program]))
        .flatten()
    else {
        eprintln!("skipping exec: crun is not installed (apt-get install crun runc)");
        return;
    };
    peer(group, "exec", exec);
    peer(group, "crun-run", || crun_run(&bundle));
    if !criterion_filter_allows("container/exec") {
        return;
    }
    let mut commands: Vec<(&str, MakeCommand<'_>)> = vec![
        ("isobench exec", Box::new(exec)),
        ("crun run", Box::new(|| crun_run(&bundle))),
    ];
    if installed("runc") {
        commands.push(("runc run", Box::new(|| runc_run(&bundle))));
    }
    if installed("unshare") {
        let args = [program.as_str()];
        commands.push((
            "unshare + chroot",
            Box::new(move || unshare_chroot(&rootfs, &args)),
        ));
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); commands.len()];
    for round in 0..ROUNDS {
        for k in 0..commands.len() {
            let i = (round + k) % commands.len();
            let (name, make) = &commands[i];
            let mut cmd = make();
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let start = Instant::now();
            let status = cmd.status().expect("spawning a command");
            times[i].push(start.elapsed());
            assert!(status.success(), "{name} failed: {status}");
        }
    }
    eprintln!(
        "\nexec side by side, spawn → exit of /bin/true on one rootfs, {ROUNDS} rounds, order rotating (load {}):",
        std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default()
    );
    eprintln!(
        "  {:<18} {:>12} {:>7} {:>7}",
        "", "median (ms)", "min", "max"
    );
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for ((name, _), v) in commands.iter().zip(&times) {
        eprintln!(
            "  {name:<18} {:>12.2} {:>7.2} {:>7.2}",
            common::median_ms(v),
            ms(*v.iter().min().unwrap()),
            ms(*v.iter().max().unwrap())
        );
    }
    let mut ratios: Vec<f64> = times[0]
        .iter()
        .zip(&times[1])
        .map(|(a, b)| a.as_secs_f64() / b.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "  per-round ratio isobench exec / crun run: median {:.3} (min {:.3}, max {:.3})",
        isobench::stats::median(&ratios),
        ratios[0],
        ratios[ratios.len() - 1]
    );
}

/// Writes the plain command's initramfs with isobench's cpio writer:
/// busybox-static and an `/init` script that prints a line and powers off.
fn plain_initramfs(dir: &Path) -> Result<PathBuf, String> {
    let busybox = Path::new("/bin/busybox");
    image::check_static(busybox).map_err(|e| {
        format!(
            "{e} (the plain QEMU comparison needs busybox-static: apt-get install busybox-static)"
        )
    })?;
    let root = dir.join("plain-root");
    std::fs::create_dir_all(root.join("bin")).map_err(|e| e.to_string())?;
    std::fs::copy(busybox, root.join("bin/busybox")).map_err(|e| e.to_string())?;
    let init =
        format!("#!/bin/busybox sh\n/bin/busybox echo {PLAIN_LINE}\n/bin/busybox reboot -f\n");
    std::fs::write(root.join("init"), init).map_err(|e| e.to_string())?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("init"), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| e.to_string())?;
    let out = dir.join("plain.cpio");
    let file = std::fs::File::create(&out).map_err(|e| e.to_string())?;
    image::write_newc(&root, &[Node::console()], file).map_err(|e| e.to_string())?;
    Ok(out)
}

/// The hand-tuned plain QEMU command: what a person who tuned QEMU for a
/// fast boot would type, with isobench's devices and agent left out.
fn plain_command(config: &vm::VmConfig, kernel: &Path, initramfs: &Path) -> Command {
    // isobench's own start of the command line (the reboot by triple fault
    // included, as its guests end), without its devices and agent.
    let mut append: Vec<String> = vm::qemu::BASE_ARGS.iter().map(|a| a.to_string()).collect();
    append.extend(vm::qemu::FAST_BOOT_ARGS.iter().map(|a| a.to_string()));
    if let Some(khz) = config.tsc_khz {
        append.extend(vm::qemu::tcg_clock_args(khz));
    }
    let cpu = match config.accel {
        vm::Accel::Kvm => "host",
        vm::Accel::Tcg => "max",
    };
    let mut cmd = Command::new(&config.qemu);
    cmd.args(["-M", &config.machine.qemu_value(config.acpi)])
        .args(["-accel", config.accel.as_str(), "-cpu", cpu])
        .args(["-m", &config.memory_mib.to_string()])
        .args(["-smp", &config.cpus.to_string()])
        .args(["-nodefaults", "-no-user-config", "-nographic", "-no-reboot"])
        .args(["-serial", "stdio", "-kernel"])
        .arg(kernel)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", &append.join(" ")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// One plain boot: (spawn → the line, spawn → reaped, QEMU's CPU time).
// The ProcessHandle reaps the child (wait4); clippy cannot see that.
#[allow(clippy::zombie_processes)]
fn plain_boot(cmd: &mut Command) -> (Duration, Duration, Duration) {
    let start = Instant::now();
    let mut child = cmd.spawn().expect("starting the plain QEMU command");
    // Reaped through a ProcessHandle (wait4) for QEMU's CPU time.
    let mut handle = isobench::env::ProcessHandle::new(child.id()).expect("a pidfd for QEMU");
    let mut line_at = None;
    let stdout = child.stdout.take().expect("piped stdout");
    for line in BufReader::new(stdout).split(b'\n') {
        let Ok(line) = line else { break };
        if line_at.is_none() && String::from_utf8_lossy(&line).contains(PLAIN_LINE) {
            line_at = Some(start.elapsed());
        }
    }
    let status = handle
        .wait_timeout(Duration::from_secs(60))
        .expect("waiting for the plain QEMU command")
        .expect("the plain QEMU command ends");
    let total = start.elapsed();
    let line_at =
        line_at.unwrap_or_else(|| panic!("the plain guest never printed its line ({status})"));
    (
        line_at,
        total,
        handle
            .usage()
            .map_or(Duration::ZERO, |u| Duration::from_secs_f64(u.cpu_ms / 1e3)),
    )
}

fn print_starts() {
    let starts = STARTS.lock().unwrap_or_else(|e| e.into_inner());
    if starts.is_empty() {
        return;
    }
    let mut names: Vec<String> = starts.iter().map(|(n, _)| n.clone()).collect();
    names.dedup();
    eprintln!("\nstart → ready (isobench) / start → line (plain), same boots as above:");
    eprintln!(
        "{:<24} {:>4} {:>10} {:>10} {:>10}",
        "benchmark", "n", "median", "min", "max"
    );
    for name in names {
        let v: Vec<Duration> = starts
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, d)| *d)
            .collect();
        let ms = |d: Duration| format!("{:.0} ms", d.as_secs_f64() * 1e3);
        eprintln!(
            "{name:<24} {:>4} {:>10} {:>10} {:>10}",
            v.len(),
            format!("{:.0} ms", common::median_ms(&v)),
            ms(*v.iter().min().unwrap()),
            ms(*v.iter().max().unwrap())
        );
    }
}

/// The plain QEMU commands beside isobench's `vm/noop`.
fn plain_benches(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    bed: &Testbed,
    logs: &Path,
) {
    let Some(vm) = bed
        .env(EnvKind::Vm)
        .and_then(|e| e.as_any().downcast_ref::<isobench::env::vm::Vm>())
    else {
        return;
    };
    let Ok(guest) = isobench::kernel::resolve(None, &isobench::kernel::cache_dir()) else {
        return;
    };
    let initramfs = match plain_initramfs(logs) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping vm/plain-qemu: {e}");
            return;
        }
    };
    let config = vm.config();
    let mut kernels = vec![("plain-qemu", config.kernel.clone())];
    if config.kernel != guest.vmlinuz {
        kernels.push(("plain-qemu-bzimage", guest.vmlinuz.clone()));
    }
    for (name, kernel) in &kernels {
        let mut cmd = plain_command(config, kernel, &initramfs);
        group.bench_function(*name, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let (line, all, _) = plain_boot(&mut cmd);
                    total += all;
                    STARTS.lock().unwrap().push((format!("vm/{name}"), line));
                }
                total
            })
        });
    }
    if let Some(env) = bed.env(EnvKind::Vm)
        && criterion_filter_allows("vm/plain-qemu")
    {
        let mut cmd = plain_command(config, &kernels[0].1, &initramfs);
        interleaved(env, &mut cmd, logs);
    }
}

/// Whether the command line's benchmark filter (if any) selects `name`, so
/// `cargo bench -- vm/noop` does not also run the interleaved pass.
fn criterion_filter_allows(name: &str) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()))
}

/// isobench and the plain command in alternating order, side by side.
fn interleaved(env: &dyn isobench::env::Environment, plain: &mut Command, logs: &Path) {
    let log = logs.join("interleaved.log");
    // (start → ready or line, QEMU's CPU time) per boot.
    let mut iso: Vec<(Duration, Duration)> = Vec::new();
    let mut pln: Vec<(Duration, Duration)> = Vec::new();
    for pair in 0..PAIRS {
        let run_iso = || {
            let r = run::run_instance(
                env,
                &WorkloadSpec::Noop,
                &format!("pair-{pair}"),
                Some(&log),
                Duration::from_secs(30),
                &STOP,
            );
            let cpu = r
                .host_metrics
                .iter()
                .find(|m| m.name == "host_cpu_ms")
                .map_or(Duration::ZERO, |m| Duration::from_secs_f64(m.value / 1e3));
            match (r.error, r.startup) {
                (None, Some(s)) => (s, cpu),
                (e, _) => panic!("isobench instance failed: {e:?} (log: {})", log.display()),
            }
        };
        let plain_run = |cmd: &mut Command| {
            let (line, _, cpu) = plain_boot(cmd);
            (line, cpu)
        };
        if pair % 2 == 0 {
            iso.push(run_iso());
            pln.push(plain_run(plain));
        } else {
            pln.push(plain_run(plain));
            iso.push(run_iso());
        }
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    eprintln!("\ninterleaved side by side, {PAIRS} pairs, order alternating:");
    eprintln!(
        "  {:<24} {:>12} {:>7} {:>7} {:>17}",
        "", "median (ms)", "min", "max", "QEMU CPU (median)"
    );
    for (name, v) in [
        ("isobench start → ready", &iso),
        ("plain start → line", &pln),
    ] {
        let wall: Vec<Duration> = v.iter().map(|x| x.0).collect();
        let cpu: Vec<Duration> = v.iter().map(|x| x.1).collect();
        eprintln!(
            "  {name:<24} {:>12.0} {:>7.0} {:>7.0} {:>14.0} ms",
            common::median_ms(&wall),
            ms(*wall.iter().min().unwrap()),
            ms(*wall.iter().max().unwrap()),
            common::median_ms(&cpu)
        );
    }
    let mut ratios: Vec<f64> = iso
        .iter()
        .zip(&pln)
        .map(|(a, b)| a.0.as_secs_f64() / b.0.as_secs_f64())
        .collect();
    ratios.sort_by(f64::total_cmp);
    eprintln!(
        "  per-pair ratio isobench / plain: median {:.3} (min {:.3}, max {:.3})",
        isobench::stats::median(&ratios),
        ratios[0],
        ratios[ratios.len() - 1]
    );
    // Whether going first or second matters (page cache, frequency, a
    // neighbour's load): the same ratio by order.
    for (first, parity) in [("isobench", 0), ("plain", 1)] {
        let mut r: Vec<f64> = iso
            .iter()
            .zip(&pln)
            .enumerate()
            .filter(|(i, _)| i % 2 == parity)
            .map(|(_, (a, b))| a.0.as_secs_f64() / b.0.as_secs_f64())
            .collect();
        r.sort_by(f64::total_cmp);
        eprintln!(
            "    when {first} boots first: median ratio {:.3} over {} pairs",
            isobench::stats::median(&r),
            r.len()
        );
    }
}

criterion_group!(benches, startup);
criterion_main!(benches);
