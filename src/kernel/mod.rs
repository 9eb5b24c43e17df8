//! The guest kernel: `isobench kernel fetch|path`.
//!
//! `fetch` downloads the distribution's cloud kernel package with
//! `apt-get download` (no root filesystem change, no boot loader touched),
//! unpacks it with `dpkg-deb -x`, and keeps under
//! `$XDG_CACHE_HOME/isobench/kernels/<version>/` (default `~/.cache`):
//!
//! - `vmlinuz`, the kernel as packaged (a compressed bzImage);
//! - `vmlinux`, the same kernel uncompressed, when it has a PVH entry point
//!   (QEMU then loads it directly: no decompression in the guest, which
//!   under TCG saves a large share of the boot — see README.md);
//! - `modules/`, the modules isobench ships into guests ([`MODULES`] and
//!   what they depend on, with the package's directory layout) and the
//!   package's `modules.builtin`.
//!
//! A file `current` names the version in use. `--kernel PATH` (with
//! `--modules DIR`) overrides it; `--kernel minimal` (or `[vm] kernel =
//! "minimal"`) boots the kernel `isobench kernel build` made instead
//! ([`minimal`]).

mod choice;
mod make;
pub mod minimal;

pub use choice::{KernelChoice, resolve_choice};

use crate::env::vm::modules::{ModuleDir, ModuleError};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Packages tried in order: Debian's cloud kernel (virtio as modules, 8250
/// serial built in), then Ubuntu's equivalents.
pub const PACKAGES: &[&str] = &[
    "linux-image-cloud-amd64",
    "linux-image-kvm",
    "linux-image-virtual",
];

/// The modules kept for guests, by name; what they depend on is kept too.
/// Transports: virtio_mmio (microvm), virtio_pci (pc, q35); devices:
/// virtio_blk (the scratch disk), virtio_net (for network workloads).
pub const MODULES: &[&str] = &["virtio_mmio", "virtio_pci", "virtio_blk", "virtio_net"];

/// The command that fixes a missing kernel.
pub const FIX: &str = "isobench kernel fetch";

/// A guest kernel problem.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// No kernel has been fetched and none was given.
    #[error(
        "no guest kernel: none was given with --kernel and none is in {cache}; fetch one with `{FIX}` (or pass --kernel PATH)"
    )]
    Missing {
        /// The cache directory looked in.
        cache: String,
    },
    /// `--kernel` names no file.
    #[error("--kernel {0}: no such file")]
    NotFound(PathBuf),
    /// `--kernel` names a file that is no kernel QEMU can boot.
    #[error(
        "--kernel {}: not a guest kernel: {why}; pass a bzImage (such as /boot/vmlinuz-*) or an uncompressed x86-64 vmlinux with a PVH entry point, or leave --kernel out and get one with `{FIX}`",
        path.display()
    )]
    NotAKernel {
        /// The file given.
        path: PathBuf,
        /// What it is not.
        why: String,
    },
    /// `--kernel` names a file that cannot be read.
    #[error("--kernel {}: cannot read it: {source}", path.display())]
    Unreadable {
        /// The file given.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A fetch step failed.
    #[error("kernel fetch: {0}")]
    Fetch(String),
    /// The minimal kernel is asked for but not built (for this source and
    /// fragment).
    #[error(
        "the minimal guest kernel is not built (looked for {dir}); build it with `{}` (a few minutes; see README.md)",
        minimal::BUILD_FIX
    )]
    MinimalMissing {
        /// The directory it would be in.
        dir: String,
    },
    /// A step of `isobench kernel build` failed.
    #[error("kernel build, {step}: {why}{}", log.as_ref().map(|(p, t)| format!("\nthe log's last lines ({}):\n{t}", p.display())).unwrap_or_default())]
    Build {
        /// The step.
        step: String,
        /// What went wrong.
        why: String,
        /// The log and its last lines, when the step logged.
        log: Option<(PathBuf, String)>,
    },
}

/// The two kinds of kernel image QEMU boots directly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    /// A bzImage: the `HdrS` boot-protocol magic at offset 0x202.
    BzImage,
    /// An uncompressed vmlinux: an ELF64 x86-64 executable with a PVH
    /// entry point.
    PvhElf,
}

/// The format of a kernel image from its bytes, or what it is not.
pub fn image_format(bytes: &[u8]) -> Result<ImageFormat, String> {
    if bytes.get(0x202..0x206) == Some(b"HdrS") {
        return Ok(ImageFormat::BzImage);
    }
    if !bytes.starts_with(b"\x7fELF") {
        return Err(
            "neither a bzImage (no `HdrS` magic at offset 0x202) nor an ELF file".to_string(),
        );
    }
    let elf = goblin::elf::Elf::parse(bytes).map_err(|e| format!("a damaged ELF file ({e})"))?;
    let h = &elf.header;
    if !elf.is_64 || h.e_machine != goblin::elf::header::EM_X86_64 {
        return Err(format!(
            "an ELF file for {} ({}-bit), not for x86-64",
            goblin::elf::header::machine_to_str(h.e_machine),
            if elf.is_64 { 64 } else { 32 }
        ));
    }
    if h.e_type != goblin::elf::header::ET_EXEC {
        return Err(format!(
            "an x86-64 ELF {}, not an executable kernel",
            goblin::elf::header::et_to_str(h.e_type)
        ));
    }
    if !is_pvh_elf(bytes) {
        return Err(
            "an x86-64 ELF executable without a PVH entry point (no `Xen` note of type 18, \
             XEN_ELFNOTE_PHYS32_ENTRY, in a PT_NOTE segment), which QEMU needs to boot it"
                .to_string(),
        );
    }
    Ok(ImageFormat::PvhElf)
}

/// Checks that `--kernel PATH` is a bootable kernel image before anything
/// starts (QEMU would otherwise fail at the first boot).
pub fn check_image(path: &Path) -> Result<ImageFormat, KernelError> {
    use std::io::Read;
    let unreadable = |source| KernelError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(unreadable)?;
    // The boot header is enough for a bzImage; only an ELF file is read whole.
    let mut head = Vec::with_capacity(4096);
    file.by_ref()
        .take(4096)
        .read_to_end(&mut head)
        .map_err(unreadable)?;
    let bytes = if head.starts_with(b"\x7fELF") {
        file.read_to_end(&mut head).map_err(unreadable)?;
        head
    } else {
        head
    };
    image_format(&bytes).map_err(|why| KernelError::NotAKernel {
        path: path.to_path_buf(),
        why,
    })
}

/// A guest kernel on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GuestKernel {
    /// Its version (`6.1.0-56-cloud-amd64`), or the file name for `--kernel`.
    pub version: String,
    /// The kernel image as packaged, or as given with `--kernel`.
    pub vmlinuz: PathBuf,
    /// The same kernel uncompressed, with a PVH entry point, if kept.
    pub vmlinux: Option<PathBuf>,
    /// Directory of the modules kept with it, if any.
    pub modules: Option<PathBuf>,
}

impl GuestKernel {
    /// The file QEMU boots: the uncompressed PVH kernel when there is one.
    pub fn boot_image(&self) -> &Path {
        self.vmlinux.as_deref().unwrap_or(&self.vmlinuz)
    }
}

/// `$XDG_CACHE_HOME/isobench`, or `~/.cache/isobench`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("isobench"),
        None => {
            let home =
                std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
            home.join(".cache").join("isobench")
        }
    }
}

fn kernels_dir(cache: &Path) -> PathBuf {
    cache.join("kernels")
}

/// The fetched kernel named by `kernels/current` in `cache`, if complete.
pub fn installed(cache: &Path) -> Option<GuestKernel> {
    let dir = kernels_dir(cache);
    let version = std::fs::read_to_string(dir.join("current")).ok()?;
    let version = version.trim();
    let vmlinuz = dir.join(version).join("vmlinuz");
    let vmlinux = dir.join(version).join("vmlinux");
    vmlinuz.is_file().then(|| GuestKernel {
        version: version.to_string(),
        modules: Some(dir.join(version).join("modules")).filter(|m| m.is_dir()),
        vmlinux: vmlinux.is_file().then_some(vmlinux),
        vmlinuz,
    })
}

/// The kernel to boot: `--kernel PATH` if given, else the fetched one.
pub fn resolve(cli: Option<&Path>, cache: &Path) -> Result<GuestKernel, KernelError> {
    match cli {
        Some(path) if path.is_file() => {
            check_image(path)?;
            Ok(GuestKernel {
                version: path.file_name().map_or_else(
                    || path.display().to_string(),
                    |n| n.to_string_lossy().into_owned(),
                ),
                vmlinuz: path.to_path_buf(),
                vmlinux: None,
                modules: None,
            })
        }
        Some(path) => Err(KernelError::NotFound(path.to_path_buf())),
        None => installed(cache).ok_or_else(|| KernelError::Missing {
            cache: kernels_dir(cache).display().to_string(),
        }),
    }
}

fn run(cmd: &mut Command) -> Result<String, KernelError> {
    let shown = format!("{cmd:?}").replace('"', "");
    let out = cmd
        .output()
        .map_err(|e| KernelError::Fetch(format!("cannot run {shown}: {e}")))?;
    if !out.status.success() {
        return Err(KernelError::Fetch(format!(
            "{shown} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The versioned package a meta-package depends on, from `apt-cache depends` output.
pub fn versioned_dependency(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(str::trim)
        .find(|p| p.starts_with("linux-image-"))
        .map(str::to_string)
}

/// Downloads and unpacks the guest kernel into `cache`; prints progress
/// through `say`. Returns the kernel, which becomes `current`.
pub fn fetch(cache: &Path, say: &mut dyn FnMut(&str)) -> Result<GuestKernel, KernelError> {
    let mut chosen = None;
    for meta in PACKAGES {
        if let Ok(out) = run(Command::new("apt-cache").args(["depends", "--important", meta]))
            && let Some(pkg) = versioned_dependency(&out)
        {
            chosen = Some((meta, pkg));
            break;
        }
    }
    let (meta, pkg) = chosen.ok_or_else(|| {
        KernelError::Fetch(format!(
            "apt knows none of the packages {}; run `apt-get update` first (a Debian or Ubuntu host is needed), or pass --kernel PATH",
            PACKAGES.join(", ")
        ))
    })?;
    say(&format!("guest kernel: {meta} -> {pkg}"));

    let kernels = kernels_dir(cache);
    std::fs::create_dir_all(&kernels)
        .map_err(|e| KernelError::Fetch(format!("cannot create {}: {e}", kernels.display())))?;
    // One fetch at a time: the lock also proves that no other fetch (say
    // from another PID namespace, whose pids /proc does not show) is using
    // a work directory about to be removed as a crashed fetch's.
    let lock_path = kernels.join("fetch.lock");
    let lock = std::fs::File::create(&lock_path)
        .and_then(|f| f.lock().map(|()| f))
        .map_err(|e| KernelError::Fetch(format!("locking {}: {e}", lock_path.display())))?;
    remove_dead_work(&kernels, ".fetch-");
    let work = kernels.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)
        .map_err(|e| KernelError::Fetch(format!("cannot create {}: {e}", work.display())))?;
    let result = fetch_into(&work, &kernels, &pkg, say);
    let _ = std::fs::remove_dir_all(&work);
    drop(lock);
    result
}

/// Removes the work directories `<prefix>…-<pid>` (or `<prefix><pid>`) in
/// `root` whose process is gone, and this process's own: names isobench
/// gives its fetches and builds, never another's. Called with the lock of
/// those fetches or builds held, so none of them is in use.
pub(crate) fn remove_dead_work(root: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|r| r.rsplit('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() || pid == std::process::id() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn fetch_into(
    work: &Path,
    kernels: &Path,
    pkg: &str,
    say: &mut dyn FnMut(&str),
) -> Result<GuestKernel, KernelError> {
    say(&format!("downloading {pkg} with apt-get download"));
    // The _apt sandbox user cannot write into root's cache; download as the caller.
    run(Command::new("apt-get")
        .args(["download", "-q", "-o", "APT::Sandbox::User=root", pkg])
        .current_dir(work))?;
    let deb = std::fs::read_dir(work)
        .map_err(|e| KernelError::Fetch(format!("{}: {e}", work.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| {
            KernelError::Fetch(format!(
                "apt-get download left no .deb in {}",
                work.display()
            ))
        })?;
    let unpacked = work.join("root");
    say(&format!(
        "unpacking {}",
        deb.file_name().unwrap_or_default().to_string_lossy()
    ));
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked))?;

    let boot = unpacked.join("boot");
    let image = std::fs::read_dir(&boot)
        .map_err(|e| KernelError::Fetch(format!("{}: {e}", boot.display())))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or_else(|| KernelError::Fetch(format!("no vmlinuz-* in {}", boot.display())))?;
    let version = image
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .trim_start_matches("vmlinuz-")
                .to_string()
        })
        .unwrap_or_default();
    // The version names the directory replaced below: it must be one plain
    // path component, never `kernels` itself or its parent.
    if version.is_empty() || version == "." || version == ".." {
        return Err(KernelError::Fetch(format!(
            "{} names no kernel version",
            image.display()
        )));
    }

    let dest = kernels.join(&version);
    let staging = work.join("dest");
    std::fs::create_dir_all(staging.join("modules"))
        .map_err(|e| KernelError::Fetch(format!("{}: {e}", staging.display())))?;
    copy(&image, &staging.join("vmlinuz"))?;
    match extract_vmlinux(&image, &staging.join("vmlinux")) {
        Ok(how) => say(&format!("kept the uncompressed kernel (vmlinux, {how})")),
        Err(why) => say(&format!(
            "kept no uncompressed kernel: {why}; guests boot the compressed one, which is slower"
        )),
    }
    let module_root = unpacked.join("lib/modules").join(&version);
    let kept = keep_modules(&module_root, &version, &staging.join("modules"), say)?;
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest)
        .map_err(|e| KernelError::Fetch(format!("moving into {}: {e}", dest.display())))?;
    std::fs::write(kernels.join("current"), format!("{version}\n")).map_err(|e| {
        KernelError::Fetch(format!(
            "writing {}: {e}",
            kernels.join("current").display()
        ))
    })?;
    say(&format!("kept {kept} module files in {}", dest.display()));
    installed(kernels.parent().unwrap_or(kernels)).ok_or_else(|| {
        KernelError::Fetch(format!("{} is incomplete after the fetch", dest.display()))
    })
}

/// Copies [`MODULES`] and their dependencies from a package's module tree
/// to `to` (same relative paths), plus `modules.builtin`. A module that
/// is built into the kernel needs no file; one that is missing altogether
/// is reported and skipped (the guests that need it will say so).
fn keep_modules(
    root: &Path,
    release: &str,
    to: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<usize, KernelError> {
    let fetch_err = |e: ModuleError| KernelError::Fetch(e.to_string());
    let dir = ModuleDir::open(root).map_err(fetch_err)?;
    let mut kept = 0;
    let mut copied = std::collections::BTreeSet::new();
    for name in MODULES {
        let modules = match dir.resolve(&[name], Some(release)) {
            Ok(m) => m,
            Err(e @ ModuleError::NotFound { .. }) => {
                say(&format!("skipped `{name}`: {e}"));
                continue;
            }
            Err(e) => return Err(fetch_err(e)),
        };
        for m in modules {
            if !copied.insert(m.path.clone()) {
                continue;
            }
            let rel = m.path.strip_prefix(root).unwrap_or(&m.path);
            let dest = to.join(rel);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| KernelError::Fetch(format!("{}: {e}", parent.display())))?;
            }
            copy(&m.path, &dest)?;
            kept += 1;
        }
    }
    let builtin = root.join("modules.builtin");
    if builtin.is_file() {
        copy(&builtin, &to.join("modules.builtin"))?;
        kept += 1;
    }
    Ok(kept)
}

/// How a bzImage's payload is compressed, from its first bytes: the
/// compression's name and the command that decompresses it to stdout.
pub fn payload_compression(payload: &[u8]) -> Option<(&'static str, &'static [&'static str])> {
    const KINDS: &[(&[u8], &str, &[&str])] = &[
        (b"\x1f\x8b", "gzip", &["gzip", "-dc"]),
        (b"\xfd7zXZ\x00", "xz", &["xz", "-dc"]),
        (b"\x28\xb5\x2f\xfd", "zstd", &["zstd", "-dc"]),
        (b"\x02\x21\x4c\x18", "lz4", &["lz4", "-dc"]),
        (b"\x5d\x00\x00", "lzma", &["xz", "-dc", "--format=lzma"]),
        (b"BZh", "bzip2", &["bzip2", "-dc"]),
        (b"\x89LZO", "lzo", &["lzop", "-dc"]),
    ];
    KINDS
        .iter()
        .find(|(magic, _, _)| payload.starts_with(magic))
        .map(|(_, name, cmd)| (*name, *cmd))
}

/// The compressed payload of a bzImage (the kernel proper), located through
/// its boot header (`setup_sects`, `payload_offset`, `payload_length`).
pub fn bzimage_payload(image: &[u8]) -> Option<&[u8]> {
    if image.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let u32_at = |at: usize| Some(u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?));
    let setup_sects = match *image.get(0x1f1)? {
        0 => 4,
        n => n as usize,
    };
    let start = (setup_sects + 1) * 512 + u32_at(0x248)? as usize;
    image.get(start..start + u32_at(0x24c)? as usize)
}

/// Whether an ELF kernel has a PVH entry point (a Xen note of type
/// `XEN_ELFNOTE_PHYS32_ENTRY`, 18), which QEMU needs to boot it directly.
pub fn is_pvh_elf(bytes: &[u8]) -> bool {
    let Ok(elf) = goblin::elf::Elf::parse(bytes) else {
        return false;
    };
    elf.iter_note_headers(bytes).is_some_and(|notes| {
        notes
            .filter_map(Result::ok)
            .any(|n| n.name == "Xen" && n.n_type == 18)
    })
}

/// Decompresses a bzImage's payload into `out` with the host's tool for
/// its compression, and keeps it when it is an ELF kernel with a PVH entry
/// point. Returns how it was done, or why not.
pub fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<String, String> {
    let image = std::fs::read(bzimage).map_err(|e| format!("{}: {e}", bzimage.display()))?;
    let payload = bzimage_payload(&image)
        .ok_or_else(|| format!("{} has no bzImage boot header", bzimage.display()))?;
    let (name, cmd) = payload_compression(payload)
        .ok_or_else(|| format!("{}: unknown payload compression", bzimage.display()))?;
    let mut child = Command::new(cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "the payload is {name}-compressed and `{}` cannot run: {e} (install it)",
                cmd[0]
            )
        })?;
    let mut stdin = child.stdin.take();
    let feed = payload.to_vec();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        // The tool may stop reading at the end of its stream (the kernel
        // appends the uncompressed size); a broken pipe then is expected.
        let _ = stdin.as_mut().map(|s| s.write_all(&feed));
    });
    let output = child
        .wait_with_output()
        .map_err(|e| format!("{}: {e}", cmd[0]))?;
    let _ = writer.join();
    // Trailing bytes after the compressed stream make some tools exit
    // non-zero after writing everything: judge the result, not the status.
    let elf = output.stdout;
    if !is_pvh_elf(&elf) {
        return Err(format!(
            "`{}` did not give an ELF kernel with a PVH entry point",
            cmd.join(" ")
        ));
    }
    std::fs::write(out, &elf).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok(format!("{name}, {} MiB", elf.len() / (1024 * 1024)))
}

fn copy(from: &Path, to: &Path) -> Result<(), KernelError> {
    std::fs::copy(from, to).map(drop).map_err(|e| {
        KernelError::Fetch(format!(
            "copying {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_fetchs_work_directory_is_removed_and_nothing_else() {
        let dir = crate::testutil::TempDir::new("kfetch");
        // pid 0 never names a live process under /proc; pid 1 always does.
        let dead = dir.join(".fetch-0");
        let live = dir.join(".fetch-1");
        let other = dir.join(".fetchy-0");
        let kernel = dir.join("6.1.0-56-cloud-amd64");
        for d in [&dead, &live, &other, &kernel] {
            std::fs::create_dir_all(d).unwrap();
        }
        remove_dead_work(&dir, ".fetch-");
        assert!(!dead.exists());
        assert!(live.exists() && other.exists() && kernel.exists());
    }

    #[test]
    fn dependency_is_read_from_apt_cache() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            versioned_dependency(out).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(versioned_dependency("foo\n  Depends: libc6\n"), None);
    }

    #[test]
    fn resolve_prefers_the_flag_and_explains_absence() {
        let cache_dir = crate::testutil::TempDir::new("kcache");
        let cache = cache_dir.join("cache");
        let err = resolve(None, &cache).unwrap_err().to_string();
        assert!(err.contains("isobench kernel fetch"), "{err}");
        let err = resolve(Some(Path::new("/nonexistent/vmlinuz")), &cache).unwrap_err();
        assert!(matches!(err, KernelError::NotFound(_)));

        let dir = kernels_dir(&cache).join("6.1.0-test");
        std::fs::create_dir_all(dir.join("modules")).unwrap();
        std::fs::write(dir.join("vmlinuz"), b"k").unwrap();
        std::fs::write(kernels_dir(&cache).join("current"), "6.1.0-test\n").unwrap();
        let k = resolve(None, &cache).unwrap();
        assert_eq!(k.version, "6.1.0-test");
        assert_eq!(k.vmlinuz, dir.join("vmlinuz"));
        assert_eq!(k.modules, Some(dir.join("modules")));
        assert_eq!(k.boot_image(), dir.join("vmlinuz"));
        std::fs::write(dir.join("vmlinux"), b"elf").unwrap();
        let k = resolve(None, &cache).unwrap();
        assert_eq!(k.boot_image(), dir.join("vmlinux"));
        // `--kernel` must be a kernel image.
        let err = resolve(Some(&dir.join("vmlinuz")), &cache).unwrap_err();
        assert!(matches!(err, KernelError::NotAKernel { .. }), "{err}");
        std::fs::write(dir.join("vmlinuz"), fake_bzimage()).unwrap();
        let flag = resolve(Some(&dir.join("vmlinuz")), &cache).unwrap();
        assert_eq!(flag.modules, None);
        assert_eq!(flag.boot_image(), dir.join("vmlinuz"));
        std::fs::remove_dir_all(cache).unwrap();
    }

    /// The smallest file with a bzImage boot header.
    fn fake_bzimage() -> Vec<u8> {
        let mut image = vec![0u8; 1024];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image
    }

    /// A minimal ELF64 executable for `machine`, with one PT_NOTE segment
    /// holding one note (`name`, `n_type`).
    fn elf(machine: u16, e_type: u16, name: &[u8], n_type: u32) -> Vec<u8> {
        let mut b = vec![0u8; 64 + 56];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2; // 64-bit
        b[5] = 1; // little-endian
        b[6] = 1; // version
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        b[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        b[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
        let mut note = Vec::new();
        note.extend_from_slice(&(name.len() as u32 + 1).to_le_bytes());
        note.extend_from_slice(&4u32.to_le_bytes());
        note.extend_from_slice(&n_type.to_le_bytes());
        note.extend_from_slice(name);
        note.push(0);
        while note.len() % 4 != 0 {
            note.push(0);
        }
        note.extend_from_slice(&0x0100_0000u32.to_le_bytes());
        let ph = 64;
        b[ph..ph + 4].copy_from_slice(&4u32.to_le_bytes()); // PT_NOTE
        b[ph + 8..ph + 16].copy_from_slice(&120u64.to_le_bytes()); // p_offset
        b[ph + 32..ph + 40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        b[ph + 40..ph + 48].copy_from_slice(&(note.len() as u64).to_le_bytes());
        b[ph + 48..ph + 56].copy_from_slice(&4u64.to_le_bytes()); // p_align
        b.extend_from_slice(&note);
        b
    }

    #[test]
    fn kernel_images_are_recognised_and_anything_else_is_named() {
        use goblin::elf::header::{EM_AARCH64, EM_X86_64, ET_DYN, ET_EXEC};
        assert_eq!(image_format(&fake_bzimage()), Ok(ImageFormat::BzImage));
        let pvh = elf(EM_X86_64, ET_EXEC, b"Xen", 18);
        assert_eq!(image_format(&pvh), Ok(ImageFormat::PvhElf));
        assert!(is_pvh_elf(&pvh));
        let err = image_format(b"myhost\n").unwrap_err();
        assert!(
            err.contains("neither a bzImage") && err.contains("0x202"),
            "{err}"
        );
        let err = image_format(&elf(EM_X86_64, ET_EXEC, b"GNU", 18)).unwrap_err();
        assert!(err.contains("without a PVH entry point"), "{err}");
        let err = image_format(&elf(EM_X86_64, ET_EXEC, b"Xen", 3)).unwrap_err();
        assert!(err.contains("without a PVH entry point"), "{err}");
        let err = image_format(&elf(EM_AARCH64, ET_EXEC, b"Xen", 18)).unwrap_err();
        assert!(err.contains("not for x86-64"), "{err}");
        let err = image_format(&elf(EM_X86_64, ET_DYN, b"Xen", 18)).unwrap_err();
        assert!(err.contains("not an executable kernel"), "{err}");

        let dir = crate::testutil::TempDir::new("kimage");
        let path = dir.join("hostname");
        std::fs::write(&path, "myhost\n").unwrap();
        let msg = resolve(Some(&path), &dir.join("cache"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with(&format!(
                "--kernel {}: not a guest kernel: neither",
                path.display()
            )) && msg.contains("isobench kernel fetch"),
            "{msg}"
        );
        // The kernel `isobench kernel fetch` keeps, when there is one here.
        if let Some(k) = installed(&cache_dir()) {
            assert_eq!(check_image(&k.vmlinuz).unwrap(), ImageFormat::BzImage);
            if let Some(x) = &k.vmlinux {
                assert_eq!(check_image(x).unwrap(), ImageFormat::PvhElf);
            }
        }
    }

    #[test]
    fn payload_is_found_through_the_boot_header_and_named() {
        let mut image = vec![0u8; 8192];
        image[0x1f1] = 2; // setup sectors: the payload area starts at 3 * 512
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x248..0x24c].copy_from_slice(&100u32.to_le_bytes());
        image[0x24c..0x250].copy_from_slice(&6u32.to_le_bytes());
        image[1536 + 100..1536 + 106].copy_from_slice(b"\x02\x21\x4c\x18ab");
        let payload = bzimage_payload(&image).unwrap();
        assert_eq!(payload, b"\x02\x21\x4c\x18ab");
        assert_eq!(payload_compression(payload).unwrap().0, "lz4");
        assert_eq!(
            payload_compression(b"\x1f\x8b\x08").unwrap().1,
            ["gzip", "-dc"]
        );
        assert_eq!(payload_compression(b"ELF"), None);
        assert_eq!(bzimage_payload(b"not a kernel"), None);
        assert!(!is_pvh_elf(b"\x7fELF"));
    }
}
