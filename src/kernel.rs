//! The guest kernel: `isobench kernel fetch|path`.
//!
//! `fetch` downloads the distribution's cloud kernel package with
//! `apt-get download` (no root filesystem change, no boot loader touched),
//! unpacks it with `dpkg-deb -x`, and keeps the kernel image plus the
//! virtio modules a guest may need under
//! `$XDG_CACHE_HOME/isobench/kernels/<version>/` (default `~/.cache`).
//! A file `current` names the version in use. `--kernel PATH` overrides it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Packages tried in order: Debian's cloud kernel (virtio as modules, 8250
/// serial built in), then Ubuntu's equivalents.
pub const PACKAGES: &[&str] = &[
    "linux-image-cloud-amd64",
    "linux-image-kvm",
    "linux-image-virtual",
];

/// Module files kept for later use (paths under `lib/modules/<version>/`).
pub const MODULES: &[&str] = &[
    "kernel/drivers/virtio/virtio.ko",
    "kernel/drivers/virtio/virtio_ring.ko",
    "kernel/drivers/virtio/virtio_mmio.ko",
    "kernel/drivers/block/virtio_blk.ko",
    "kernel/drivers/net/virtio_net.ko",
    "kernel/drivers/net/net_failover.ko",
    "kernel/net/core/failover.ko",
    "modules.dep",
];

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
    /// A fetch step failed.
    #[error("kernel fetch: {0}")]
    Fetch(String),
}

/// A guest kernel on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GuestKernel {
    /// Its version (`6.1.0-56-cloud-amd64`), or the file name for `--kernel`.
    pub version: String,
    /// The kernel image.
    pub vmlinuz: PathBuf,
    /// Directory of the modules kept with it, if any.
    pub modules: Option<PathBuf>,
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
    vmlinuz.is_file().then(|| GuestKernel {
        version: version.to_string(),
        modules: Some(dir.join(version).join("modules")).filter(|m| m.is_dir()),
        vmlinuz,
    })
}

/// The kernel to boot: `--kernel PATH` if given, else the fetched one.
pub fn resolve(cli: Option<&Path>, cache: &Path) -> Result<GuestKernel, KernelError> {
    match cli {
        Some(path) if path.is_file() => Ok(GuestKernel {
            version: path.file_name().map_or_else(
                || path.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            ),
            vmlinuz: path.to_path_buf(),
            modules: None,
        }),
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
    let work = kernels.join(format!(".fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)
        .map_err(|e| KernelError::Fetch(format!("cannot create {}: {e}", work.display())))?;
    let result = fetch_into(&work, &kernels, &pkg, say);
    let _ = std::fs::remove_dir_all(&work);
    result
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

    let dest = kernels.join(&version);
    let staging = work.join("dest");
    std::fs::create_dir_all(staging.join("modules"))
        .map_err(|e| KernelError::Fetch(format!("{}: {e}", staging.display())))?;
    copy(&image, &staging.join("vmlinuz"))?;
    let module_root = unpacked.join("lib/modules").join(&version);
    let mut kept = 0;
    for m in MODULES {
        let from = module_root.join(m);
        if from.is_file() {
            let to = staging.join("modules").join(m);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| KernelError::Fetch(format!("{}: {e}", parent.display())))?;
            }
            copy(&from, &to)?;
            kept += 1;
        }
    }
    let _ = std::fs::remove_dir_all(&dest);
    std::fs::rename(&staging, &dest)
        .map_err(|e| KernelError::Fetch(format!("moving into {}: {e}", dest.display())))?;
    std::fs::write(kernels.join("current"), format!("{version}\n")).map_err(|e| {
        KernelError::Fetch(format!(
            "writing {}: {e}",
            kernels.join("current").display()
        ))
    })?;
    say(&format!(
        "kept vmlinuz and {kept} module files in {}",
        dest.display()
    ));
    Ok(GuestKernel {
        version,
        vmlinuz: dest.join("vmlinuz"),
        modules: Some(dest.join("modules")),
    })
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
        let cache = std::env::temp_dir().join(format!("isobench-kcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&cache);
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
        let flag = resolve(Some(&dir.join("vmlinuz")), &cache).unwrap();
        assert_eq!(flag.modules, None);
        std::fs::remove_dir_all(cache).unwrap();
    }
}
