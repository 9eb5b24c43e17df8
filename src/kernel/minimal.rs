//! The minimal guest kernel isobench builds itself: `isobench kernel build`.
//!
//! Source: Debian's `linux-source-6.1` package (a `.tar.xz` under
//! `/usr/src`). Configuration: `make tinyconfig`, then the fragment
//! `kernels/minimal.config` (built into the binary; `--config FILE` for
//! another) appended and settled with `make olddefconfig`; every symbol the
//! fragment sets is then checked to have taken its value. Target:
//! `make -j N vmlinux`, the uncompressed ELF kernel, which QEMU boots
//! through its PVH entry point. Everything is built in, so guests load no
//! modules.
//!
//! The result lives in `$XDG_CACHE_HOME/isobench/kernels/minimal-<hash>/`,
//! the hash covering the source package's version and the fragment, so a
//! rebuild happens only when either changes:
//!
//! - `vmlinux`, the kernel; `config`, the full configuration;
//! - `build.log`, make's output; `build.json`, [`BuildInfo`] (the time the
//!   build took here, with the load it ran under);
//! - `modules/modules.builtin`, naming the drivers built in, so the VM
//!   environment knows no module file is needed.
//!
//! A build works in `kernels/.build-minimal-<hash>-<pid>/` and renames its
//! result into place: a half-built kernel is never used. An exclusive lock on
//! `kernels/minimal.lock` keeps two builds apart (the second waits, then
//! finds the kernel built). A build's log is also kept as
//! `kernels/minimal-<hash>.log`, so a failed one can be read.

use super::make::Step;
use super::{GuestKernel, KernelError};
use crate::env::vm::accel::Accel;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The fragment shipped with isobench.
pub const FRAGMENT: &str = include_str!("../../kernels/minimal.config");

/// The Debian package holding the kernel source.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";

/// The source tarball the package installs.
pub const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";

/// The command that fixes a missing minimal kernel.
pub const BUILD_FIX: &str = "isobench kernel build";

/// The drivers the fragment builds in that the VM environment would
/// otherwise load as modules (see [`super::MODULES`]).
const BUILTIN: &[&str] = &[
    "kernel/drivers/virtio/virtio_mmio.ko",
    "kernel/drivers/virtio/virtio_pci.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/fs/ext4/ext4.ko",
];

/// Bump when the build's steps change what comes out for the same input.
const RECIPE: &str = "isobench-minimal-1";

/// What `build.json` records about a build.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BuildInfo {
    /// The kernel release (`make kernelrelease`), such as `6.1.158`.
    pub release: String,
    /// The source package's version (`6.1.158-1`).
    pub source_version: String,
    /// The hash over the source version and the fragment (the directory's
    /// suffix).
    pub config_hash: String,
    /// Size of `vmlinux` in bytes.
    pub vmlinux_bytes: u64,
    /// Wall-clock seconds from unpacking the source to `vmlinux`.
    pub build_secs: f64,
    /// `make -j` used.
    pub jobs: usize,
    /// CPUs the host has.
    pub host_cpus: usize,
    /// The host's 1-minute load average when the build started and ended.
    pub load_start: f64,
    /// As above, at the end.
    pub load_end: f64,
    /// When it was built (UTC, RFC 3339).
    pub built_at: String,
}

/// A built minimal kernel.
#[derive(Debug, Clone)]
pub struct Built {
    /// Its directory.
    pub dir: PathBuf,
    /// What the build recorded.
    pub info: BuildInfo,
}

impl Built {
    /// The kernel as the VM environment takes it.
    pub fn guest_kernel(&self) -> GuestKernel {
        let vmlinux = self.dir.join("vmlinux");
        GuestKernel {
            version: format!("{} (minimal-{})", self.info.release, self.info.config_hash),
            vmlinuz: vmlinux.clone(),
            vmlinux: Some(vmlinux),
            modules: Some(self.dir.join("modules")),
        }
    }
}

/// The version of the installed source package, or why there is none.
pub fn source_version() -> Result<String, KernelError> {
    let missing = || KernelError::Build {
        step: "source".into(),
        why: format!(
            "{SOURCE_TARBALL} is missing; install it with `apt-get install -y --no-install-recommends {SOURCE_PACKAGE} bc bison flex libelf-dev libssl-dev make gcc` (scripts/setup.sh does)"
        ),
        log: None,
    };
    if !Path::new(SOURCE_TARBALL).is_file() {
        return Err(missing());
    }
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", SOURCE_PACKAGE])
        .stderr(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() && !o.stdout.is_empty() => {
            Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
        }
        // A tarball not installed by dpkg: its size and time stand in.
        _ => {
            let m = std::fs::metadata(SOURCE_TARBALL).map_err(|_| missing())?;
            let mtime = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs());
            Ok(format!("tarball-{}-{mtime}", m.len()))
        }
    }
}

/// The hash naming a build: the source version and the fragment.
pub fn config_hash(source_version: &str, fragment: &str) -> String {
    let mut h = Sha256::new();
    for part in [RECIPE, source_version, fragment] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    h.finalize()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The symbols a fragment sets, in order: `CONFIG_X=v` lines and
/// `# CONFIG_X is not set` lines (as `n`). Other comments and blank lines
/// are skipped; anything else is an error naming the line.
pub fn fragment_symbols(fragment: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in fragment.lines().enumerate() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("# ")
            && let Some(name) = rest.strip_suffix(" is not set")
            && name.starts_with("CONFIG_")
        {
            out.push((name.to_string(), "n".to_string()));
        } else if line.is_empty() || line.starts_with('#') {
            continue;
        } else if let Some((k, v)) = line.split_once('=')
            && k.starts_with("CONFIG_")
            && !k.contains(char::is_whitespace)
        {
            out.push((k.to_string(), v.to_string()));
        } else {
            return Err(format!(
                "line {}: `{line}` is neither `CONFIG_NAME=value` nor `# CONFIG_NAME is not set`",
                i + 1
            ));
        }
    }
    Ok(out)
}

/// The fragment's symbols whose value in the final `.config` differs from
/// the one asked for, as `NAME (asked v, got w)`.
pub fn unmet(wanted: &[(String, String)], config: &str) -> Vec<String> {
    let mut have = std::collections::HashMap::new();
    for line in config.lines() {
        if let Some((k, v)) = line.split_once('=') {
            have.insert(k, v);
        }
    }
    wanted
        .iter()
        .filter_map(|(k, v)| {
            let got = have.get(k.as_str()).copied().unwrap_or("n");
            (got != v).then(|| format!("{k} (asked {v}, got {got})"))
        })
        .collect()
}

fn kernels(cache: &Path) -> PathBuf {
    cache.join("kernels")
}

/// The directory of the build for this source version and fragment.
pub fn dir_for(cache: &Path, hash: &str) -> PathBuf {
    kernels(cache).join(format!("minimal-{hash}"))
}

/// The built kernel in `dir`, if complete.
pub fn open(dir: &Path) -> Option<Built> {
    let text = std::fs::read_to_string(dir.join("build.json")).ok()?;
    let info: BuildInfo = serde_json::from_str(&text).ok()?;
    dir.join("vmlinux").is_file().then(|| Built {
        dir: dir.to_path_buf(),
        info,
    })
}

/// The minimal kernel for the installed source and the shipped fragment,
/// if built.
pub fn installed(cache: &Path) -> Result<Option<Built>, KernelError> {
    let version = source_version()?;
    Ok(open(&dir_for(cache, &config_hash(&version, FRAGMENT))))
}

/// The boot arguments the minimal kernel is booted with, after isobench's
/// own ([`crate::env::vm::qemu::FAST_BOOT_ARGS`] and, under TCG, the clock's):
/// part of the minimal kernel as much as its configuration is, recorded in
/// `meta.json` (`environments.vm-minimal.kernel.boot_args`) and named in
/// the report. None changes what a user-space workload computes. Found
/// with a sampling profile of the boot and measured by the guest's TSC at
/// `/init` (interleaved boots, TCG, 2-core host):
///
/// - `noreplace-smp`: keep the SMP kernel's `lock` prefixes when the guest
///   has one CPU, instead of rewriting each of them (about 5000 one-byte
///   patches through `text_poke`, every one a page-table switch and a
///   flush of QEMU's translated code): −50 ms;
/// - `dhash_entries`, `ihash_entries`, `mhash_entries`, `mphash_entries`,
///   `thash_entries`, `uhash_entries`: hash tables sized for one workload,
///   not for the guest's RAM, so boot zeroes less memory: −17 ms;
///
/// and under TCG only (on KVM the CPU's string instructions are fast and
/// its APIC timer has a TSC-deadline mode, which needs no calibration):
///
/// - `clearcpuid=erms,rep_good`: the kernel's `memset`/`memcpy`/
///   `clear_page` use plain moves instead of `rep stos`/`rep movs`, which
///   TCG emulates one element at a time: −25 ms (the kernel notes the
///   cleared flags as a taint; user space still sees the CPU's own);
/// - `noapictimer no_timer_check`: the PIT, not the local APIC, is the
///   kernel's timer, so it skips calibrating the APIC timer against the
///   TSC for 100 ms (QEMU's emulated APIC has no TSC-deadline mode), and
///   does not test that the PIT's interrupt arrives (it does on QEMU's
///   machines). A microvm with ACPI has no PIT interrupt (its ACPI is the
///   "hardware-reduced" kind), so the minimal kernel's microvm goes without
///   ACPI ([`crate::env::vm::qemu::VmConfig::acpi`]) and its MP table
///   routes the PIT. With the same two arguments on the same platform the
///   Debian kernel reached `/init` no sooner (measured, 7 boots each).
///   Together with skipping ACPI's start: −170 ms (431 → 261 ms to
///   `/init`, medians of 7).
pub fn boot_args(accel: Accel) -> Vec<&'static str> {
    let mut args = vec![
        "noreplace-smp",
        "dhash_entries=4096",
        "ihash_entries=4096",
        "mhash_entries=256",
        "mphash_entries=256",
        "thash_entries=1024",
        "uhash_entries=256",
    ];
    if accel == Accel::Tcg {
        args.extend(["clearcpuid=erms,rep_good", "noapictimer", "no_timer_check"]);
    }
    args
}

/// The minimal kernel to boot, or the error saying how to build it.
pub fn resolve(cache: &Path) -> Result<GuestKernel, KernelError> {
    let version = source_version()?;
    let dir = dir_for(cache, &config_hash(&version, FRAGMENT));
    open(&dir)
        .map(|b| b.guest_kernel())
        .ok_or_else(|| KernelError::MinimalMissing {
            dir: dir.display().to_string(),
        })
}

/// What `isobench kernel build` asks.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// The fragment's text.
    pub fragment: String,
    /// `make -j`.
    pub jobs: usize,
}

fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// Builds the minimal kernel unless it is built; prints a line per phase
/// and make's progress through `say`.
pub fn build(
    cache: &Path,
    req: &BuildRequest,
    say: &mut dyn FnMut(&str),
) -> Result<Built, KernelError> {
    let wanted = fragment_symbols(&req.fragment).map_err(|why| KernelError::Build {
        step: "fragment".into(),
        why,
        log: None,
    })?;
    let version = source_version()?;
    let hash = config_hash(&version, &req.fragment);
    let dest = dir_for(cache, &hash);
    let root = kernels(cache);
    std::fs::create_dir_all(&root).map_err(|e| io_err("cache", &root, e))?;
    let lock_path = root.join("minimal.lock");
    let lock = std::fs::File::create(&lock_path).map_err(|e| io_err("lock", &lock_path, e))?;
    if lock.try_lock().is_err() {
        say("another isobench is building a kernel; waiting for it");
        lock.lock().map_err(|e| io_err("lock", &lock_path, e))?;
    }
    if let Some(b) = open(&dest) {
        say(&format!("already built: {}", dest.display()));
        return Ok(b);
    }
    remove_stale_work(&root);
    let work = root.join(format!(".build-minimal-{hash}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let log = root.join(format!("minimal-{hash}.log"));
    // The result is staged inside the work directory: move it into place
    // before the work directory (sources, objects) goes.
    let installed = build_in(&work, &log, req, &wanted, &version, &hash, say).and_then(|staged| {
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&staged.dir, &dest).map_err(|e| io_err("install", &dest, e))?;
        Ok(staged)
    });
    let _ = std::fs::remove_dir_all(&work);
    let staged = installed?;
    drop(lock);
    say(&format!(
        "built {} in {:.0} s: {}",
        staged.info.release,
        staged.info.build_secs,
        dest.join("vmlinux").display()
    ));
    open(&dest).ok_or_else(|| KernelError::Build {
        step: "install".into(),
        why: format!("{} is incomplete after the build", dest.display()),
        log: None,
    })
}

/// Removes work directories of builds whose process is gone (a crash or
/// Ctrl-C); called with the lock held, so none is in use.
fn remove_stale_work(root: &Path) {
    super::remove_dead_work(root, ".build-minimal-");
}

pub(super) fn io_err(step: &str, path: &Path, e: std::io::Error) -> KernelError {
    KernelError::Build {
        step: step.into(),
        why: format!("{}: {e}", path.display()),
        log: None,
    }
}

fn build_in(
    work: &Path,
    log_path: &Path,
    req: &BuildRequest,
    wanted: &[(String, String)],
    version: &str,
    hash: &str,
    say: &mut dyn FnMut(&str),
) -> Result<Built, KernelError> {
    let src = work.join("src");
    let out = work.join("out");
    let result = work.join("result");
    for d in [&src, &out, &result.join("modules")] {
        std::fs::create_dir_all(d).map_err(|e| io_err("work", d, e))?;
    }
    let log = std::fs::File::create(log_path).map_err(|e| io_err("log", log_path, e))?;
    let started = Instant::now();
    let load_start = load_avg();
    let mut step = Step {
        log,
        log_path: log_path.to_path_buf(),
    };

    say(&format!(
        "[1/4] unpacking {SOURCE_TARBALL} ({SOURCE_PACKAGE} {version})"
    ));
    step.run(
        "unpack",
        Command::new("tar")
            .arg("-xf")
            .arg(SOURCE_TARBALL)
            .arg("-C")
            .arg(&src)
            .arg("--strip-components=1"),
        None,
    )?;
    let make = |args: &[&str]| {
        let mut c = Command::new("make");
        c.arg("-C")
            .arg(&src)
            .arg(format!("O={}", out.display()))
            .arg("ARCH=x86_64")
            .args(args);
        c
    };
    say("[2/4] configuring: make tinyconfig + the fragment, make olddefconfig");
    step.run("tinyconfig", &mut make(&["tinyconfig"]), None)?;
    let config_path = out.join(".config");
    let mut config =
        std::fs::read_to_string(&config_path).map_err(|e| io_err("config", &config_path, e))?;
    config.push('\n');
    config.push_str(&req.fragment);
    std::fs::write(&config_path, config).map_err(|e| io_err("config", &config_path, e))?;
    step.run("olddefconfig", &mut make(&["olddefconfig"]), None)?;
    let config =
        std::fs::read_to_string(&config_path).map_err(|e| io_err("config", &config_path, e))?;
    let missed = unmet(wanted, &config);
    if !missed.is_empty() {
        return Err(KernelError::Build {
            step: "configure".into(),
            why: format!(
                "these fragment settings did not take (a dependency is off, or the symbol does not exist in this source): {}",
                missed.join(", ")
            ),
            log: None,
        });
    }

    say(&format!(
        "[3/4] compiling: make -j{} vmlinux (minutes; log: {})",
        req.jobs,
        log_path.display()
    ));
    step.run(
        "make vmlinux",
        &mut make(&[&format!("-j{}", req.jobs), "vmlinux"]),
        Some(say),
    )?;
    let release = String::from_utf8_lossy(
        &make(&["-s", "kernelrelease"])
            .stderr(Stdio::null())
            .output()
            .map_err(|e| io_err("kernelrelease", &src, e))?
            .stdout,
    )
    .trim()
    .to_string();

    say("[4/4] checking and keeping vmlinux");
    let vmlinux = out.join("vmlinux");
    let fmt = super::check_image(&vmlinux).map_err(|e| KernelError::Build {
        step: "check".into(),
        why: e.to_string(),
        log: None,
    })?;
    if fmt != super::ImageFormat::PvhElf {
        return Err(KernelError::Build {
            step: "check".into(),
            why: "vmlinux has no PVH entry point (is CONFIG_PVH=y in the fragment?)".into(),
            log: None,
        });
    }
    let keep = |from: &Path, to: &str| {
        std::fs::copy(from, result.join(to))
            .map(drop)
            .map_err(|e| io_err("keep", from, e))
    };
    keep(&vmlinux, "vmlinux")?;
    keep(&config_path, "config")?;
    let builtin: String = BUILTIN.iter().map(|m| format!("{m}\n")).collect();
    std::fs::write(result.join("modules/modules.builtin"), builtin)
        .map_err(|e| io_err("keep", &result, e))?;
    let info = BuildInfo {
        release,
        source_version: version.to_string(),
        config_hash: hash.to_string(),
        vmlinux_bytes: std::fs::metadata(&vmlinux).map_or(0, |m| m.len()),
        build_secs: started.elapsed().as_secs_f64(),
        jobs: req.jobs,
        host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_start,
        load_end: load_avg(),
        built_at: crate::util::now_utc(),
    };
    let json = serde_json::to_string_pretty(&info).unwrap_or_default();
    std::fs::write(result.join("build.json"), json).map_err(|e| io_err("keep", &result, e))?;
    drop(step.log);
    keep(log_path, "build.log")?;
    Ok(Built { dir: result, info })
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcg_only_arguments_stay_off_kvm() {
        let tcg = boot_args(Accel::Tcg);
        let kvm = boot_args(Accel::Kvm);
        for a in ["noapictimer", "no_timer_check", "clearcpuid=erms,rep_good"] {
            assert!(tcg.contains(&a) && !kvm.contains(&a), "{a}");
        }
        assert!(kvm.contains(&"noreplace-smp") && tcg.starts_with(&kvm));
    }

    #[test]
    fn the_shipped_fragment_parses_and_asks_for_the_essentials() {
        let syms = fragment_symbols(FRAGMENT).unwrap();
        for essential in [
            "CONFIG_64BIT",
            "CONFIG_PVH",
            "CONFIG_SERIAL_8250_CONSOLE",
            "CONFIG_VIRTIO_MMIO",
            "CONFIG_VIRTIO_PCI",
            "CONFIG_VIRTIO_BLK",
            "CONFIG_EXT4_FS",
            "CONFIG_DEVTMPFS",
            "CONFIG_BLK_DEV_INITRD",
            "CONFIG_FUTEX",
            "CONFIG_EPOLL",
            "CONFIG_INET",
            "CONFIG_UNIX",
        ] {
            assert!(
                syms.iter().any(|(k, v)| k == essential && v == "y"),
                "{essential} missing from kernels/minimal.config"
            );
        }
        assert!(!syms.iter().any(|(k, _)| k == "CONFIG_MODULES"));
    }

    #[test]
    fn fragment_lines_are_parsed_or_named() {
        let f = "# a comment\n\nCONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=\"x y\"\n";
        assert_eq!(
            fragment_symbols(f).unwrap(),
            [
                ("CONFIG_A".to_string(), "y".to_string()),
                ("CONFIG_B".into(), "n".into()),
                ("CONFIG_C".into(), "\"x y\"".into())
            ]
        );
        let err = fragment_symbols("CONFIG_A=y\nPVH=y\n").unwrap_err();
        assert!(err.starts_with("line 2: `PVH=y`"), "{err}");
    }

    #[test]
    fn unmet_settings_are_named_with_what_they_got() {
        let wanted =
            fragment_symbols("CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\nCONFIG_D=4\n")
                .unwrap();
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_D=8\n";
        assert_eq!(
            unmet(&wanted, config),
            ["CONFIG_B (asked y, got n)", "CONFIG_D (asked 4, got 8)"]
        );
    }

    #[test]
    fn the_hash_covers_source_and_fragment() {
        let a = config_hash("6.1.1-1", "CONFIG_A=y\n");
        assert_eq!(a.len(), 12);
        assert_eq!(a, config_hash("6.1.1-1", "CONFIG_A=y\n"));
        assert_ne!(a, config_hash("6.1.1-2", "CONFIG_A=y\n"));
        assert_ne!(a, config_hash("6.1.1-1", "CONFIG_A=m\n"));
    }

    #[test]
    fn a_complete_build_directory_is_opened_and_an_incomplete_one_is_not() {
        let dir = crate::testutil::TempDir::new("kmin");
        let d = dir.join("minimal-abc");
        std::fs::create_dir_all(&d).unwrap();
        assert!(open(&d).is_none());
        let info = BuildInfo {
            release: "6.1.1".into(),
            source_version: "6.1.1-1".into(),
            config_hash: "abc".into(),
            vmlinux_bytes: 3,
            build_secs: 1.5,
            jobs: 2,
            host_cpus: 2,
            load_start: 1.0,
            load_end: 2.0,
            built_at: "2026-01-01T00:00:00Z".into(),
        };
        std::fs::write(d.join("build.json"), serde_json::to_string(&info).unwrap()).unwrap();
        assert!(open(&d).is_none(), "no vmlinux yet");
        std::fs::write(d.join("vmlinux"), b"elf").unwrap();
        let b = open(&d).unwrap();
        assert_eq!(b.info, info);
        let k = b.guest_kernel();
        assert_eq!(k.boot_image(), d.join("vmlinux"));
        assert_eq!(k.modules, Some(d.join("modules")));
        assert_eq!(k.version, "6.1.1 (minimal-abc)");
    }

    #[test]
    fn stale_work_directories_of_dead_builds_are_removed() {
        let dir = crate::testutil::TempDir::new("kstale");
        // pid 0 never names a live process under /proc.
        let dead = dir.join(".build-minimal-abc-0");
        let mine = dir.join(format!(".build-minimal-abc-{}", std::process::id()));
        let other = dir.join("minimal-abc");
        for d in [&dead, &mine, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        remove_stale_work(&dir);
        assert!(!dead.exists() && !mine.exists());
        assert!(other.exists());
    }
}
